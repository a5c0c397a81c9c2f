import { expect } from 'chai';
import net from 'node:net';
import { startServer, type TestServer } from './helpers/server';
import { sharedRedisUrl } from './helpers/redis';
import { expectCommonHeaders, expectMatrixError, expectValidators, rawRequest } from './helpers/http';
import { Scrape } from './helpers/metrics';
import { until } from './helpers/topologies';

const PREFIX = '/_matrix/client/unstable/org.matrix.msc3886/rendezvous';
const MAX = 64;

for (const backend of ['memory', 'redis'] as const) {
  describe(`MSC3886 over HTTP (${backend} store)`, () => {
    let srv: TestServer;
    before(async () => {
      const env: Record<string, string> = { RZ_MAX_BYTES: String(MAX) };
      if (backend === 'redis') env.REDIS_URL = await sharedRedisUrl();
      srv = await startServer(env);
    });
    after(async () => {
      await srv?.stop();
    });

    async function create(body: string | Buffer = 'hello', type: string | null = 'text/plain', at = '/') {
      const headers: Record<string, string> = {};
      if (type !== null) headers['content-type'] = type;
      const res = await fetch(srv.url + at, { method: 'POST', headers, body });
      expect(res.status).to.equal(200);
      const json = (await res.json()) as { id: string; max_bytes: number };
      return { res, json, url: res.headers.get('location')!, ...expectValidators(res) };
    }

    describe('POST /', () => {
      it('answers 200 with {id, max_bytes}, an absolute Location, validators and the common headers', async () => {
        const before = Date.now();
        const { res, json, url, expires, lastModified } = await create('hi');
        expect(res.headers.get('content-type')).to.equal('application/json');
        expect(Number(res.headers.get('content-length'))).to.equal(Buffer.byteLength(JSON.stringify(json)));
        expect(Object.keys(json).sort()).to.deep.equal(['id', 'max_bytes']);
        expect(json.max_bytes).to.equal(MAX);
        expect(json.id).to.match(/^[A-Za-z0-9._~-]{22,255}$/);
        expect(url).to.equal(`${srv.url}/${json.id}`);
        expectCommonHeaders(res);
        // Expires is creation + the configured TTL (300 s), to the second.
        expect(expires - lastModified).to.be.within(299_000, 301_000);
        expect(lastModified).to.be.within(before - 2000, Date.now() + 1000);
      });

      it('draws ids from a large random space: never sequential, never repeated', async () => {
        const ids = new Set<string>();
        for (let i = 0; i < 20; i++) ids.add((await create('x')).json.id);
        expect(ids.size).to.equal(20);
        for (const id of ids) expect(Buffer.from(id, 'base64url')).to.have.length(16);
      });

      it('stores application/octet-stream when no Content-Type is given', async () => {
        const res = await rawRequest(srv.url + '/', { method: 'POST', headers: { 'content-length': 3 }, body: 'abc' });
        expect(res.status).to.equal(200);
        const get = await fetch(res.headers.location!);
        expect(get.headers.get('content-type')).to.equal('application/octet-stream');
        expect(await get.text()).to.equal('abc');
      });

      it('is also served under the Matrix prefix, with Location under that prefix', async () => {
        const { json, url } = await create('p', 'text/plain', PREFIX);
        expect(url).to.equal(`${srv.url}${PREFIX}/${json.id}`);
        expect(await (await fetch(url)).text()).to.equal('p');
        expect(await (await fetch(`${srv.url}/${json.id}`)).text()).to.equal('p');
      });

      it('refuses a body over max_bytes with 413 M_TOO_LARGE and stores nothing', async () => {
        const res = await fetch(srv.url + '/', { method: 'POST', body: 'x'.repeat(MAX + 1) });
        await expectMatrixError(res, 413, 'M_TOO_LARGE');
        expect(res.headers.get('location')).to.equal(null);
        expectCommonHeaders(res);
      });

      it('accepts a body of exactly max_bytes and an empty body', async () => {
        expect((await create('y'.repeat(MAX))).json.id).to.be.a('string');
        const { url } = await create('');
        const get = await fetch(url);
        expect(get.status).to.equal(200);
        expect(get.headers.get('content-length')).to.equal('0');
      });
    });

    describe('GET /<id>', () => {
      it('returns the stored bytes byte-exact with the stored Content-Type echoed exactly', async () => {
        const bytes = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 200) % 256));
        const type = 'application/x.custom; charset=latin1; foo="bar"';
        const { url, etag } = await create(bytes, type);
        const res = await fetch(url);
        expect(res.status).to.equal(200);
        expect(res.headers.get('content-type')).to.equal(type);
        expect(res.headers.get('content-length')).to.equal('64');
        expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).to.equal(true);
        expect(expectValidators(res).etag).to.equal(etag);
        expectCommonHeaders(res);
      });

      it('answers 304 with validators and no Content-Type or Content-Length when If-None-Match matches', async () => {
        const { url, etag, expires } = await create('cached', 'application/json');
        for (const inm of [etag, `W/${etag}`, '*', `"other", ${etag}`]) {
          const res = await fetch(url, { headers: { 'if-none-match': inm } });
          expect(res.status, inm).to.equal(304);
          const v = expectValidators(res);
          expect(v.etag).to.equal(etag);
          expect(v.expires).to.equal(expires);
          // RFC 9110 section 15.4.5: no representation metadata on a 304.
          expect(res.headers.get('content-type')).to.equal(null);
          expect(res.headers.get('content-length')).to.equal(null);
          expect((await res.arrayBuffer()).byteLength).to.equal(0);
          expectCommonHeaders(res);
        }
      });

      it('never lets a browser run a stored payload as a page of this origin, whatever its type', async () => {
        // The stored type is echoed exactly, so `text/html` comes back as HTML: opened from a link
        // (the Matrix prefix may be on the homeserver's own origin) it must not run as a document there.
        const { url } = await create('<script>alert(document.domain)</script>', 'text/html');
        const res = await fetch(url, { headers: { 'Sec-Fetch-Dest': 'document', 'Sec-Fetch-Mode': 'navigate' } });
        expect(res.status).to.equal(200);
        expect(res.headers.get('content-type')).to.equal('text/html');
        const csp = (res.headers.get('content-security-policy') ?? '').split(/\s*;\s*/);
        expect(csp).to.include.members(["default-src 'none'", 'sandbox']);
        // Every other answer too (errors included), and Node's own before Koa sees a request.
        const missing = await fetch(`${srv.url}/no-such-session`);
        expect(missing.headers.get('content-security-policy')).to.equal(res.headers.get('content-security-policy'));
        const raw = await new Promise<string>((resolve, reject) => {
          const socket = net.connect(srv.port, '127.0.0.1', () => socket.end('GET / HTTP/1.1\r\nBad Header\r\n\r\n'));
          let text = '';
          socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
          socket.on('close', () => resolve(text));
          socket.on('error', reject);
        });
        expect(raw).to.match(/^HTTP\/1\.1 400 /);
        expect(raw.toLowerCase()).to.include(`content-security-policy: ${res.headers.get('content-security-policy')}`);
      });

      it('answers 200 when If-None-Match does not match', async () => {
        const { url } = await create('fresh');
        const res = await fetch(url, { headers: { 'if-none-match': '"not-it", W/"nor-this"' } });
        expect(res.status).to.equal(200);
        expect(await res.text()).to.equal('fresh');
      });

      it('answers HEAD with the headers of a GET and no body', async () => {
        const { url, etag } = await create('head');
        const res = await fetch(url, { method: 'HEAD' });
        expect(res.status).to.equal(200);
        expect(res.headers.get('etag')).to.equal(etag);
        expect(res.headers.get('content-length')).to.equal('4');
      });

      it('answers 404 M_NOT_FOUND for unknown ids and for ids outside the grammar', async () => {
        for (const path of [
          '/AAAAAAAAAAAAAAAAAAAAAA',
          '/bad!id',
          `/${'a'.repeat(256)}`,
          '/%E2%82%AC',
          `${PREFIX}/nope`,
        ]) {
          const res = await fetch(srv.url + path);
          await expectMatrixError(res, 404, 'M_NOT_FOUND');
          expectCommonHeaders(res);
        }
      });

      it('refuses a malformed If-None-Match with 400 M_INVALID_PARAM', async () => {
        const { url } = await create('x');
        for (const bad of ['unquoted', '"a" "b"', 'W/unquoted', '"open']) {
          await expectMatrixError(await fetch(url, { headers: { 'if-none-match': bad } }), 400, 'M_INVALID_PARAM');
        }
      });
    });

    describe('PUT /<id>', () => {
      it('answers 202 with a new ETag, the same Expires, and stores the bytes and type', async () => {
        const c = await create('v1', 'text/plain');
        const res = await fetch(c.url, {
          method: 'PUT',
          headers: { 'content-type': 'application/json', 'if-match': c.etag },
          body: '{"v":2}',
        });
        expect(res.status).to.equal(202);
        expect(res.headers.get('content-type')).to.equal('application/json');
        expect(res.headers.get('content-length')).to.equal('2');
        const v = expectValidators(res);
        expect(v.etag).to.not.equal(c.etag);
        expect(v.expires).to.equal(c.expires);
        expectCommonHeaders(res);
        const get = await fetch(c.url);
        expect(get.headers.get('content-type')).to.equal('application/json');
        expect(get.headers.get('etag')).to.equal(v.etag);
        expect(await get.text()).to.equal('{"v":2}');
      });

      it('changes the ETag on every write, identical bytes included, and ETags differ between sessions', async () => {
        const a = await create('same');
        const b = await create('same');
        expect(a.etag).to.not.equal(b.etag);
        const r1 = await fetch(a.url, { method: 'PUT', body: 'same' });
        const r2 = await fetch(a.url, { method: 'PUT', body: 'same' });
        const tags = new Set([a.etag, r1.headers.get('etag'), r2.headers.get('etag')]);
        expect(tags.size).to.equal(3);
      });

      it('writes unconditionally without If-Match or with If-Match: *', async () => {
        const c = await create('v1');
        expect((await fetch(c.url, { method: 'PUT', body: 'v2' })).status).to.equal(202);
        expect((await fetch(c.url, { method: 'PUT', headers: { 'if-match': '*' }, body: 'v3' })).status).to.equal(202);
        expect(await (await fetch(c.url)).text()).to.equal('v3');
      });

      it('accepts the weak form and lists in If-Match, compared by opaque tag', async () => {
        const c = await create('v1');
        const weak = await fetch(c.url, { method: 'PUT', headers: { 'if-match': `W/${c.etag}` }, body: 'v2' });
        expect(weak.status).to.equal(202);
        const listed = await fetch(c.url, {
          method: 'PUT',
          headers: { 'if-match': `"x", ${weak.headers.get('etag')}` },
          body: 'v3',
        });
        expect(listed.status).to.equal(202);
      });

      it('answers 412 carrying the current validators on a mismatch and leaves the payload untouched', async () => {
        const c = await create('keep');
        const res = await fetch(c.url, { method: 'PUT', headers: { 'if-match': '"stale.1"' }, body: 'lost' });
        expect(res.status).to.equal(412);
        const v = expectValidators(res);
        expect(v.etag).to.equal(c.etag);
        expect(v.expires).to.equal(c.expires);
        expect(res.headers.get('content-type')).to.equal('application/json');
        expectCommonHeaders(res);
        expect(await (await fetch(c.url)).text()).to.equal('keep');
      });

      it('answers 404 for unknown and deleted sessions', async () => {
        await expectMatrixError(
          await fetch(srv.url + '/AAAAAAAAAAAAAAAAAAAAAA', { method: 'PUT', body: 'x' }),
          404,
          'M_NOT_FOUND',
        );
        const c = await create('x');
        await fetch(c.url, { method: 'DELETE' });
        await expectMatrixError(await fetch(c.url, { method: 'PUT', body: 'x' }), 404, 'M_NOT_FOUND');
      });

      it('refuses a body over max_bytes with 413 and keeps the old payload', async () => {
        const c = await create('old');
        await expectMatrixError(await fetch(c.url, { method: 'PUT', body: 'z'.repeat(MAX + 1) }), 413, 'M_TOO_LARGE');
        const get = await fetch(c.url);
        expect(await get.text()).to.equal('old');
        expect(get.headers.get('etag')).to.equal(c.etag);
      });

      it('refuses malformed If-Match with 400, compressed bodies with 415 and other transfer codings with 501', async () => {
        const c = await create('x');
        await expectMatrixError(
          await fetch(c.url, { method: 'PUT', headers: { 'if-match': 'nope' }, body: 'y' }),
          400,
          'M_INVALID_PARAM',
        );
        await expectMatrixError(
          await fetch(c.url, { method: 'PUT', headers: { 'content-encoding': 'gzip' }, body: 'y' }),
          415,
          'M_INVALID_PARAM',
        );
        // A transfer coding besides chunked is not implemented (Node undoes only the chunking).
        const coded = await rawRequest(c.url, {
          method: 'PUT',
          headers: { 'transfer-encoding': 'gzip, chunked' },
          body: 'y',
        });
        expect(coded.status).to.equal(501);
        expect(JSON.parse(coded.body.toString())).to.include({ errcode: 'M_UNRECOGNIZED' });
        // A well-formed list that is too long says what the bound is.
        const tooMany = Array.from({ length: 17 }, (_, i) => `"t${i}"`).join(', ');
        const long = await expectMatrixError(
          await fetch(c.url, { method: 'PUT', headers: { 'if-match': tooMany }, body: 'y' }),
          400,
          'M_INVALID_PARAM',
        );
        expect(long.error).to.include('at most 16');
        expect(await (await fetch(c.url)).text()).to.equal('x');
      });

      it('survives a body cut short and stores nothing from it', async () => {
        const c = await create('intact');
        const puts = async () =>
          (await Scrape.of(`${srv.url}/metrics`)).value('rendezvous_http_requests_total', {
            family: 'msc3886',
            method: 'PUT',
          });
        const before = await puts();
        // The head and part of the declared body, then the connection goes. A raw socket, so the
        // bytes surely leave: a client request destroyed at once may never send its head.
        const socket = net.connect(srv.port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.write(`PUT ${new URL(c.url).pathname} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\npartial`, () =>
          socket.destroy(),
        );
        // The server is done with the cut request once it has counted it.
        await until('the cut PUT to be counted', async () => (await puts()) > before);
        const get = await fetch(c.url);
        expect(await get.text()).to.equal('intact');
      });

      it('ignores Authorization headers on session calls', async () => {
        const c = await create('x');
        const res = await fetch(c.url, { method: 'PUT', headers: { authorization: 'Bearer garbage' }, body: 'y' });
        expect(res.status).to.equal(202);
        expect((await fetch(c.url, { headers: { authorization: 'Bearer garbage' } })).status).to.equal(200);
      });
    });

    describe('DELETE /<id>', () => {
      it('answers 204, after which the session is gone (404 on every call)', async () => {
        const c = await create('bye');
        const res = await fetch(c.url, { method: 'DELETE' });
        expect(res.status).to.equal(204);
        expectCommonHeaders(res);
        await expectMatrixError(await fetch(c.url), 404, 'M_NOT_FOUND');
        await expectMatrixError(await fetch(c.url, { method: 'DELETE' }), 404, 'M_NOT_FOUND');
      });
    });

    describe('routing and CORS', () => {
      it('answers unknown paths with 404 M_UNRECOGNIZED', async () => {
        for (const path of ['/a/b', '/_matrix/client/unstable/org.matrix.msc9999/rendezvous', `${PREFIX}/a/b`]) {
          const res = await fetch(srv.url + path);
          await expectMatrixError(res, 404, 'M_UNRECOGNIZED');
          expectCommonHeaders(res);
        }
      });

      it('matches the API prefix without regard to case, as it matches routes', async () => {
        const c = await create('any case', 'text/plain', PREFIX);
        const shouted = c.url.replace(PREFIX, PREFIX.toUpperCase());
        expect(shouted).to.not.equal(c.url);
        const res = await fetch(shouted);
        expect(res.status).to.equal(200);
        expect(await res.text()).to.equal('any case');
      });

      it('answers a wrong method on a known path with 405 M_UNRECOGNIZED and Allow', async () => {
        const c = await create('x');
        const patch = await fetch(c.url, { method: 'PATCH', body: 'x' });
        await expectMatrixError(patch, 405, 'M_UNRECOGNIZED');
        expect(patch.headers.get('allow')).to.include('PUT');
        const getRoot = await fetch(srv.url + '/');
        await expectMatrixError(getRoot, 405, 'M_UNRECOGNIZED');
        expect(getRoot.headers.get('allow')).to.include('POST');
        const odd = await rawRequest(c.url, { method: 'PROPFIND' });
        expect(odd.status).to.equal(405);
        expect(JSON.parse(odd.body.toString()).errcode).to.equal('M_UNRECOGNIZED');
      });

      it('answers a CORS preflight on every route with methods, headers and a day of Max-Age', async () => {
        const c = await create('x');
        for (const url of [srv.url + '/', c.url, srv.url + PREFIX]) {
          const res = await fetch(url, {
            method: 'OPTIONS',
            headers: {
              origin: 'https://app.example',
              'access-control-request-method': 'PUT',
              'access-control-request-headers': 'if-match, content-type',
            },
          });
          expect(res.status).to.equal(204);
          expect(res.headers.get('access-control-allow-origin')).to.equal('*');
          const methods = res.headers.get('access-control-allow-methods')!.split(/\s*,\s*/);
          expect(methods).to.include.members(['GET', 'PUT', 'POST', 'DELETE', 'OPTIONS']);
          const allowed = res.headers
            .get('access-control-allow-headers')!
            .toLowerCase()
            .split(/\s*,\s*/);
          expect(allowed).to.include.members([
            'content-type',
            'if-match',
            'if-none-match',
            'authorization',
            'x-requested-with',
          ]);
          expect(res.headers.get('access-control-max-age')).to.equal('86400');
        }
      });
    });
  });
}

describe('MSC3886 expiry over HTTP', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ RZ_TTL_SECONDS: '1', REDIS_URL: await sharedRedisUrl() });
  });
  after(async () => {
    await srv?.stop();
  });

  it('answers 404 M_NOT_FOUND to every call once Expires has passed', async () => {
    const res = await fetch(srv.url + '/', { method: 'POST', body: 'short-lived' });
    const url = res.headers.get('location')!;
    const expires = Date.parse(res.headers.get('expires')!);
    // Expires has one-second resolution and is rounded down, so the deadline is at most a second later.
    await new Promise((r) => setTimeout(r, Math.max(0, expires + 1000 - Date.now())));
    await expectMatrixError(await fetch(url), 404, 'M_NOT_FOUND');
    await expectMatrixError(await fetch(url, { method: 'PUT', body: 'x' }), 404, 'M_NOT_FOUND');
    await expectMatrixError(await fetch(url, { method: 'DELETE' }), 404, 'M_NOT_FOUND');
  });
});
