import { expect } from 'chai';
import { BAD_HOSTS } from './fuzz/generate';
import { req } from './helpers/exchange';
import { parseAnswers, rawExchange } from './helpers/raw';
import { sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';
import { CSP } from './helpers/http';

const MSC3886 = '/_matrix/client/unstable/org.matrix.msc3886/rendezvous';
const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = ['/_matrix/client/unstable/io.element.msc4388/rendezvous', '/_matrix/client/v1/rendezvous'];

/** What RFC 9110 allows (an empty value included): these must be served as before. */
const GOOD_HOSTS = [
  'localhost:8080',
  '127.0.0.1',
  '[::1]:8080',
  '[2001:db8::1]',
  'x:',
  'x:0',
  'x:65535',
  '',
  'ex%41mple',
];

interface Route {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

describe('Host header that is not a valid authority', function () {
  this.timeout(60_000);
  let replica: Replica;
  const sessions: { read: string; check: (r: Response) => Promise<void> }[] = [];
  let routes: Route[] = [];
  let msc4388Read = '';

  before(async () => {
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl() });
    const base = replica.url;
    const routesOf: Route[] = [];

    for (const prefix of ['', MSC3886]) {
      const created = await req(`${base}${prefix || '/'}`, { method: 'POST', body: 'kept' });
      const { id } = (await created.json()) as { id: string };
      const etag = created.headers.get('ETag')!;
      const at = `${prefix}/${id}`;
      sessions.push({ read: at, check: async (r) => void expect(await r.text()).to.equal('kept') });
      routesOf.push(
        { method: 'POST', path: prefix || '/', body: 'x' },
        { method: 'GET', path: at, headers: { 'If-None-Match': etag, Prefer: 'wait=5' } },
        { method: 'PUT', path: at, body: 'overwritten' },
        { method: 'DELETE', path: at },
      );
    }

    const created = await req(`${base}${MSC4108}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' } });
    const at4108 = new URL(((await created.json()) as { url: string }).url).pathname;
    const etag4108 = created.headers.get('ETag')!;
    sessions.push({ read: at4108, check: async (r) => void expect(await r.text()).to.equal('') });
    routesOf.push(
      { method: 'POST', path: MSC4108, headers: { 'Content-Type': 'text/plain' } },
      { method: 'GET', path: at4108, headers: { 'If-None-Match': etag4108, Prefer: 'wait=5' } },
      { method: 'PUT', path: at4108, headers: { 'Content-Type': 'text/plain', 'If-Match': etag4108 }, body: 'x' },
      { method: 'DELETE', path: at4108 },
    );

    for (const prefix of MSC4388) {
      const res = await req(`${base}${prefix}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{"data":"kept"}',
      });
      const { id, sequence_token: token } = (await res.json()) as { id: string; sequence_token: string };
      const at = `${prefix}/${id}`;
      msc4388Read = `${at}?sequence_token=${token}&timeout_ms=0`;
      sessions.push({
        read: at,
        check: async (r) => void expect(await r.json()).to.include({ data: 'kept', sequence_token: token }),
      });
      const write = JSON.stringify({ sequence_token: token, data: 'overwritten' });
      const json = { 'Content-Type': 'application/json' };
      routesOf.push(
        { method: 'GET', path: prefix },
        { method: 'POST', path: prefix, headers: json, body: '{"data":""}' },
        // The long-poll read that answered 500: Koa builds ctx.URL from the Host.
        { method: 'GET', path: `${at}?sequence_token=${token}&timeout_ms=5000` },
        { method: 'PUT', path: at, headers: json, body: write },
        { method: 'PUT', path: `${at}/txn-1`, headers: json, body: write },
        { method: 'DELETE', path: at },
      );
    }
    routesOf.push(
      { method: 'GET', path: '/health' },
      { method: 'GET', path: '/ready' },
      { method: 'GET', path: '/metrics' },
      { method: 'GET', path: '/no/such/route' },
      {
        method: 'OPTIONS',
        path: sessions[0]!.read,
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'PUT' },
      },
    );
    routes = routesOf;
  });
  after(() => replica?.stop());

  /** One request (`Connection: close` unless `then` follows it on the same connection). */
  function serialise(route: Route, host: string, close = true): string {
    let head = `${route.method} ${route.path} HTTP/1.1\r\nHost: ${host}\r\n`;
    for (const [k, v] of Object.entries(route.headers ?? {})) head += `${k}: ${v}\r\n`;
    if (close) head += 'Connection: close\r\n';
    const body = route.body ?? '';
    return `${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }

  function send(route: Route, host: string, then?: Route) {
    const first = serialise(route, host, then === undefined);
    const bytes = then === undefined ? first : first + serialise(then, 'x');
    return rawExchange(replica.port, Buffer.from(bytes, 'latin1'));
  }

  it('answers 400 M_BAD_REQUEST on every route, with the usual headers', async () => {
    for (const host of BAD_HOSTS) {
      for (const route of routes) {
        const what = `${route.method} ${route.path} with Host ${JSON.stringify(host)}`;
        const { text } = await send(route, host);
        const answers = parseAnswers(text);
        expect(answers, what).to.have.length(1);
        const a = answers[0]!;
        expect(a.status, what).to.equal(400);
        expect(a.headers['content-type'], what).to.equal('application/json');
        expect(JSON.parse(a.body), what).to.include({ errcode: 'M_BAD_REQUEST' });
        expect(a.headers['cache-control'], what).to.equal('no-store, no-transform');
        expect(a.headers['x-content-type-options'], what).to.equal('nosniff');
        expect(a.headers['content-security-policy'], what).to.equal(CSP);
        expect(a.headers['access-control-allow-origin'], what).to.equal('*');
        expect(a.headers['access-control-expose-headers'], what).to.include('ETag');
      }
    }
    expect(
      replica.logs.filter((l) => l.level >= 50),
      'error log lines',
    ).to.deep.equal([]);
  });

  it('changed no session: every one still reads as it was written', async () => {
    for (const s of sessions) {
      const r = await req(`${replica.url}${s.read}`);
      expect(r.status, s.read).to.equal(200);
      await s.check(r);
    }
  });

  it('answers 400 to an absolute-form target whose authority is bad, to a fragment, or to no form at all', async () => {
    const path = msc4388Read.replace('timeout_ms=0', 'timeout_ms=5000');
    for (const target of [
      `http://[${path}`,
      `HTTP://[${path}`,
      `http://x:99999999${path}`,
      `http://user@host${path}`,
      `http://[::1${path}`,
      `ftp://[${path}`,
      `x:[${path}`,
      'mailto:[x',
      `no-slash${path}`,
      // A fragment is no part of any request target, and with one Koa's path can come out null.
      `${path}#fragment`,
      '//#@x',
    ]) {
      const { text } = await send({ method: 'GET', path: target }, 'x');
      const answers = parseAnswers(text);
      expect(
        answers.map((a) => a.status),
        target,
      ).to.deep.equal([400]);
      expect(JSON.parse(answers[0]!.body), target).to.include({ errcode: 'M_BAD_REQUEST' });
    }
    // The authority of a good absolute-form target stands in for Host (RFC 9112 section 3.2.2).
    const { text } = await send({ method: 'GET', path: `http://rendezvous.example.org${msc4388Read}` }, 'x');
    expect(parseAnswers(text).map((a) => a.status)).to.deep.equal([200]);
    expect(
      replica.logs.filter((l) => l.level >= 50),
      'error log lines',
    ).to.deep.equal([]);
  });

  it('keeps the connection: its body is discarded and the next request on it is served', async () => {
    const refused = { method: 'PUT', path: sessions[0]!.read, body: 'x'.repeat(3000) };
    const { text } = await send(refused, 'a b', { method: 'GET', path: msc4388Read });
    expect(parseAnswers(text).map((a) => a.status)).to.deep.equal([400, 200]);
  });

  it('answers 400 M_BAD_REQUEST to HTTP/1.1 without Host or with two, and serves HTTP/1.0 without one', async () => {
    const get = (head: string) =>
      rawExchange(replica.port, Buffer.from(`GET ${msc4388Read} ${head}Connection: close\r\n\r\n`, 'latin1'));
    for (const head of ['HTTP/1.1\r\n', 'HTTP/1.1\r\nHost: x\r\nhost: y\r\n', 'HTTP/1.1\r\nHost: x\r\nHOST: x\r\n']) {
      const answers = parseAnswers((await get(head)).text);
      expect(
        answers.map((a) => a.status),
        head,
      ).to.deep.equal([400]);
      expect(answers[0]!.headers['content-type'], head).to.equal('application/json');
      expect(JSON.parse(answers[0]!.body), head).to.include({ errcode: 'M_BAD_REQUEST' });
      expect(answers[0]!.headers['access-control-allow-origin'], head).to.equal('*');
    }
    const old = parseAnswers((await get('HTTP/1.0\r\n')).text);
    expect(old.map((a) => a.status)).to.deep.equal([200]);
    expect(JSON.parse(old[0]!.body)).to.include({ data: 'kept' });
  });

  it('serves every Host that RFC 9110 allows, the empty one included', async () => {
    for (const host of GOOD_HOSTS) {
      const { text } = await send({ method: 'GET', path: msc4388Read }, host);
      const answers = parseAnswers(text);
      expect(
        answers.map((a) => a.status),
        JSON.stringify(host),
      ).to.deep.equal([200]);
      expect(JSON.parse(answers[0]!.body)).to.include({ data: 'kept' });
    }
  });
});
