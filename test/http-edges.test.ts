import { expect } from 'chai';
import net from 'node:net';
import { Replica } from './helpers/replica';
import { parseAnswers, rawExchange, type RawAnswer } from './helpers/raw';
import { loadConfig } from '../src/config';
import { start, type RunningServer } from '../src/main';
import { MAX_WAITING_TURN } from '../src/http/server';
import { NO_LIMITS, startServer, type TestServer } from './helpers/server';
import { CSP } from './helpers/http';
import { sharedRedisUrl } from './helpers/redis';

/** What every answer carries, whoever writes it (Koa, or the server before Koa sees the request). */
function expectCommonHeaders(a: RawAnswer): void {
  expect(a.headers).to.include({
    'cache-control': 'no-store, no-transform',
    pragma: 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': CSP,
    'access-control-allow-origin': '*',
  });
  expect(a.headers['access-control-expose-headers']).to.include('ETag');
}

describe('requests at the edges of HTTP', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server?.stop());

  const exchange = async (bytes: string): Promise<RawAnswer> =>
    parseAnswers((await rawExchange(server.port, bytes)).text)[0]!;
  const create = async (type: string) => {
    const res = await fetch(`${server.url}/`, { method: 'POST', headers: { 'Content-Type': type }, body: 'x' });
    expect(res.status).to.equal(200);
    return { url: res.headers.get('Location')!, etag: res.headers.get('ETag')! };
  };

  it('answers an OPTIONS that is no preflight (no Access-Control-Request-Method) with the CORS headers', async () => {
    const { url } = await create('text/plain');
    const extras: Record<string, string>[] = [{}, { 'Access-Control-Request-Method': '' }];
    for (const extra of extras) {
      const res = await fetch(url, { method: 'OPTIONS', headers: { Origin: 'https://app.example', ...extra } });
      expect(res.status).to.equal(204);
      expect(res.headers.get('Access-Control-Allow-Origin')).to.equal('*');
      expect(res.headers.get('Access-Control-Expose-Headers')).to.include('ETag');
      expect(res.headers.get('Allow')).to.include('PUT');
    }
  });

  it('answers OPTIONS * for the server as a whole: 204 with every method it supports in Allow', async () => {
    const a = await exchange('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(a.status).to.equal(204);
    expect(a.headers.allow?.split(/,\s*/).sort()).to.deep.equal(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);
    expectCommonHeaders(a);
    // A preflight is a preflight whatever its target; and `*` names no resource for other methods.
    const preflight = await exchange(
      'OPTIONS * HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n' +
        'Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n',
    );
    expect(preflight.status).to.equal(204);
    expect(preflight.headers['access-control-allow-methods']).to.include('PUT');
    expect((await exchange('GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).status).to.equal(404);
  });

  it('serves a request whose Expect it does not know, as RFC 9110 allows, rather than a bare 417', async () => {
    const { url, etag } = await create('text/plain');
    const a = await exchange(
      `PUT ${new URL(url).pathname} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
        `If-Match: ${etag}\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\ny`,
    );
    expect(a.status).to.equal(202);
    expect(await (await fetch(url)).text()).to.equal('y');
  });

  it('answers CONNECT 400 M_BAD_REQUEST with the usual headers, instead of closing unanswered', async () => {
    for (const target of ['example.org:443', '/abc']) {
      const a = await exchange(`CONNECT ${target} HTTP/1.1\r\nHost: example.org:443\r\n\r\n`);
      expect(a.status).to.equal(400);
      expect(JSON.parse(a.body)).to.include({ errcode: 'M_BAD_REQUEST' });
      expect(a.headers['content-type']).to.equal('application/json');
      expectCommonHeaders(a);
    }
  });

  it("carries the usual headers on the parser's own refusals (headers too large, not HTTP)", async () => {
    const large = await exchange(`GET /x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(large.status).to.equal(431);
    expectCommonHeaders(large);
    const broken = await exchange('GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
    expect(broken.status).to.equal(400);
    expectCommonHeaders(broken);
  });

  it('answers a request line of another major HTTP version 505 and closes, whether the parser takes it or not', async () => {
    const before = await server.metrics.registry.getSingleMetricAsString('rendezvous_http_requests_total');
    const count = (text: string) =>
      Number(
        /rendezvous_http_requests_total\{family="unmatched",method="OTHER",status="505"\} (\d+)/.exec(text)?.[1] ?? 0,
      );
    // Node's parser takes 2.0 and 0.9 (and would hand them over as any request), and refuses 3.0.
    for (const version of ['2.0', '0.9', '3.0']) {
      // A second request behind it: never answered, the connection is closed after the 505.
      const { text, closedByServer } = await rawExchange(
        server.port,
        `GET /health HTTP/${version}\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      const answers = parseAnswers(text);
      expect(
        answers.map((a) => a.status),
        version,
      ).to.deep.equal([505]);
      expect(closedByServer, version).to.equal(true);
      expect(answers[0]!.headers.connection).to.equal('close');
      expect(answers[0]!.headers['content-type']).to.equal('application/json');
      expect(JSON.parse(answers[0]!.body)).to.have.property('errcode').that.is.a('string');
      expectCommonHeaders(answers[0]!);
    }
    const after = await server.metrics.registry.getSingleMetricAsString('rendezvous_http_requests_total');
    expect(count(after) - count(before)).to.equal(3);
    // HTTP/1.0 and 1.1 are served as ever.
    for (const version of ['1.0', '1.1']) {
      const a = await exchange(`GET /health HTTP/${version}\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(a.status, version).to.equal(200);
    }
  });

  it('stores and echoes an MSC3886 Content-Type with a tab before its parameter (RFC 9110 whitespace)', async () => {
    const type = 'text/plain;\tcharset=utf-8';
    const { url } = await create(type);
    expect((await fetch(url)).headers.get('Content-Type')).to.equal(type);
    const tooLong = await fetch(`${server.url}/`, {
      method: 'POST',
      headers: { 'Content-Type': `application/${'x'.repeat(300)}` },
      body: 'x',
    });
    expect(tooLong.status).to.equal(400);
    expect(((await tooLong.json()) as { error: string }).error).to.include('at most 255');
  });
});

describe('CONNECT from a client that does not wait for the answer', function () {
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({});
  });
  after(async () => replica?.stop());

  /** Sends `bytes` and resets the connection at once; resolves once the socket is gone. */
  const sendAndReset = (bytes: string) =>
    new Promise<void>((resolve) => {
      const socket = net.connect(replica.port, '127.0.0.1', () => {
        socket.write(bytes);
        socket.resetAndDestroy();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });

  it('leaves the replica running: a reset before the answer is written is no crash', async () => {
    for (let i = 0; i < 50; i++)
      await sendAndReset('CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n');
    expect((await fetch(`${replica.url}/health`)).status).to.equal(200);
    expect(replica.proc.exitCode).to.equal(null);
  });

  it("never answers a CONNECT pipelined behind a request still being answered, in that request's place", async () => {
    const created = await fetch(`${replica.url}/`, { method: 'POST', body: 'x' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const held =
      `GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${created.headers.get('ETag')!}\r\nPrefer: wait=2\r\n\r\n` +
      'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n';
    const answers = parseAnswers((await rawExchange(replica.port, held)).text);
    expect(answers.map((a) => a.status)).to.not.include(400);
  });
});

describe('RZ_KEEPALIVE_TIMEOUT_MS=0', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer({ RZ_KEEPALIVE_TIMEOUT_MS: '0' });
  });
  after(async () => server?.stop());

  it('closes every connection once its answer is sent, rather than keeping it idle with no bound', async () => {
    const sent = await rawExchange(server.port, 'GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n', {
      giveUpMs: 10_000,
    });
    expect(sent.closedByServer).to.equal(true);
    const [answer] = parseAnswers(sent.text);
    expect(answer!.status).to.equal(200);
    expect(answer!.headers.connection).to.equal('close');
  });
});

describe('a server on a port the system picks (PORT=0)', function () {
  let server: RunningServer;
  before(async () => {
    server = await start(loadConfig({ HOST: '127.0.0.1', LOG_LEVEL: 'silent', PORT: '0', ...NO_LIMITS }));
  });
  after(async () => server?.stop());

  it('names the port it listens on in session URLs when no public base URL is set', async () => {
    const base = `http://127.0.0.1:${server.port}`;
    const msc3886 = await fetch(`${base}/`, { method: 'POST', body: 'x' });
    expect(msc3886.headers.get('Location')).to.match(new RegExp(`^http://localhost:${server.port}/[\\w-]+$`));
    const msc4108 = await fetch(`${base}/_matrix/client/unstable/org.matrix.msc4108/rendezvous`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: 'x',
    });
    const { url } = (await msc4108.json()) as { url: string };
    expect(new URL(url).port).to.equal(String(server.port));
  });
});

describe('requests pipelined on one connection, writes among them', function () {
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl(), RZ_MSC4388_ENABLED: 'true' });
  });
  after(async () => replica?.stop());

  const MSC4388 = '/_matrix/client/v1/rendezvous';

  // RFC 9112 section 9.3.2: only a run of safe requests may be processed in parallel. A write
  // reading its body must not be overtaken by a DELETE or a GET sent after it.
  it('applies a PUT before the DELETE sent behind it, and a GET behind a PUT reads what it wrote', async () => {
    const created = await fetch(`${replica.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const put = `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo`;
    const get = `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const del = `DELETE ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
    const answers = parseAnswers((await rawExchange(replica.port, put + get + del)).text);
    expect(answers.map((a) => [a.status, a.body])).to.deep.equal([
      [202, '{}'],
      [200, 'two'],
      [204, ''],
    ]);
  });

  // RFC 9112 section 9.6: a request asking to close is answered; what follows it is not processed.
  it('answers a DELETE that asked to close the connection, and ignores a request sent behind it', async () => {
    const created = await fetch(`${replica.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const del = `DELETE ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
    const put = `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo`;
    const answers = parseAnswers((await rawExchange(replica.port, del + put)).text);
    expect(answers.map((a) => a.status)).to.deep.equal([204]);
    expect(answers[0]!.headers.connection).to.equal('close');
    expect((await fetch(`${replica.url}${path}`)).status).to.equal(404);
  });

  it('answers an MSC4388 GET pipelined behind a PUT with the token that PUT returned', async () => {
    const res = await fetch(`${replica.url}${MSC4388}`, { method: 'POST', body: '{"data":""}' });
    const { id, sequence_token } = (await res.json()) as { id: string; sequence_token: string };
    const body = JSON.stringify({ sequence_token, data: 'x' });
    const put = `PUT ${MSC4388}/${id} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const get = `GET ${MSC4388}/${id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
    const [written, read] = parseAnswers((await rawExchange(replica.port, put + get)).text);
    expect(written!.status).to.equal(200);
    const token = (JSON.parse(written!.body) as { sequence_token: string }).sequence_token;
    expect(JSON.parse(read!.body)).to.include({ data: 'x', sequence_token: token });
  });
});

describe('Expect: 100-continue', function () {
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl() });
  });
  after(async () => replica?.stop());

  // The client holds its body back until told to continue: a request refused on its headers alone is
  // answered without inviting a body it would then send into a connection being closed.
  it('refuses a body declared over the limit with 413 alone, never a 100 Continue first', async () => {
    const { text, closedByServer } = await rawExchange(
      replica.port,
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n',
    );
    expect(closedByServer).to.equal(true);
    const answers = parseAnswers(text);
    expect(answers.map((a) => a.status)).to.deep.equal([413]);
    expect(JSON.parse(answers[0]!.body)).to.include({ errcode: 'M_TOO_LARGE' });
  });

  it('refuses an MSC4108 PUT without If-Match with 400 alone, and closes the connection', async () => {
    const path = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous/abc';
    const { text, closedByServer } = await rawExchange(
      replica.port,
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n`,
    );
    expect(closedByServer).to.equal(true);
    const answers = parseAnswers(text);
    expect(answers.map((a) => a.status)).to.deep.equal([400]);
    expect(answers[0]!.headers.connection).to.equal('close');
  });

  it('says 100 Continue to a body it will read, and stores what follows', async () => {
    const created = await fetch(`${replica.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const socket = net.connect(replica.port, '127.0.0.1');
    let text = '';
    const continued = new Promise<void>((resolve) =>
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (text.includes('\r\n\r\n')) resolve();
      }),
    );
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n`,
    );
    await continued;
    expect(text).to.match(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    socket.write('two');
    await closed;
    expect(parseAnswers(text).map((a) => a.status)).to.deep.equal([100, 202]);
    expect(await (await fetch(`${replica.url}${path}`)).text()).to.equal('two');
  });
});

describe('a request waiting its turn behind a held long-poll, whose client leaves', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server?.stop());

  const count = async (method: string, status: string, family = 'msc3886') => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const line = text
      .split('\n')
      .find(
        (l) =>
          l.startsWith('rendezvous_http_requests_total{') &&
          l.includes(`family="${family}",method="${method}",status="${status}"`),
      );
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  // Never handed to the app (not its turn yet), it is still a request the server took: counted as
  // one whose client closed it, as the long-poll ahead of it is.
  it('counts the waiting request as 499, as the long-poll ahead of it', async () => {
    const created = await fetch(`${server.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const etag = created.headers.get('ETag')!;
    const before = await count('PUT', '499');
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    const held = new Promise<void>((resolve) => server.longPoll.once('waiting', () => resolve()));
    const released = new Promise<void>((resolve) => server.longPoll.once('released', () => resolve()));
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\nPrefer: wait=30\r\n\r\n` +
        `PUT ${path} HTTP/1.1\r\nHost: x\r\nIf-Match: ${etag}\r\nContent-Length: 3\r\n\r\ntwo`,
    );
    await held;
    socket.destroy();
    await released;
    // The queued request is given up in the same close, its `close` a tick later.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await count('PUT', '499')).to.equal(before + 1);
    // And it was not applied: its client never learns of it.
    expect(await (await fetch(`${server.url}${path}`)).text()).to.equal('one');
  });

  it('leaves uncounted a request behind an answer that closed the connection, as the client was told', async () => {
    const created = await fetch(`${server.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const before = await count('PUT', '499');
    const { text } = await rawExchange(
      server.port,
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n` +
        `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo`,
    );
    expect(parseAnswers(text).map((a) => a.status)).to.deep.equal([415]);
    expect(await count('PUT', '499')).to.equal(before);
  });
});

describe('requests pipelined behind one still being answered', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server?.stop());

  /** A session and a long-poll GET of it that is held (nothing changes) for `seconds`. */
  const heldPoll = async (seconds: number): Promise<{ path: string; poll: string }> => {
    const created = await fetch(`${server.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const etag = created.headers.get('ETag')!;
    const poll = `GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\nPrefer: wait=${seconds}\r\n\r\n`;
    return { path, poll };
  };
  const deletes = (n: number) => 'DELETE /no-such-session HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(n);

  // Each waits, unanswered, for every answer ahead of it: without a bound, one connection could
  // queue requests for as long as a long-poll is held ahead of them.
  it('closes a connection that queues more requests than MAX_WAITING_TURN behind a held one', async () => {
    const { path, poll } = await heldPoll(2);
    const { text, closedByServer } = await rawExchange(server.port, poll + deletes(5 * MAX_WAITING_TURN));
    expect(closedByServer).to.equal(true);
    expect(parseAnswers(text)).to.deep.equal([]);
    // The queued requests were never handled; the session is still there.
    expect((await fetch(`${server.url}${path}`)).status).to.equal(200);
  });

  it('answers every one of MAX_WAITING_TURN requests queued behind a held one, in order', async () => {
    const { poll } = await heldPoll(1);
    const last = 'DELETE /no-such-session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { text } = await rawExchange(server.port, poll + deletes(MAX_WAITING_TURN - 1) + last);
    const statuses = parseAnswers(text).map((a) => a.status);
    expect(statuses).to.deep.equal([304, ...new Array<number>(MAX_WAITING_TURN).fill(404)]);
  });
});
