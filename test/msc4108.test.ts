import { expect } from 'chai';
import { RedisServer } from './helpers/redis';
import { CSP, request, type Reply } from './helpers/http';
import { startServer } from './helpers/server';

const PREFIX = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const PUBLIC = 'https://matrix.example.org';
const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/;
const TEXT = { 'Content-Type': 'text/plain' };

/** What every rendezvous answer carries, 304 included (caching, sniffing, CORS). */
function expectCaching(r: Reply): void {
  expect(r.headers['cache-control']).to.equal('no-store, no-transform');
  expect(r.headers['pragma']).to.equal('no-cache');
  expect(r.headers['x-content-type-options']).to.equal('nosniff');
  expect(r.headers['content-security-policy']).to.equal(CSP);
  expect(r.headers['access-control-allow-origin']).to.equal('*');
  expect(r.headers['access-control-expose-headers']).to.include('ETag');
}

/** What every rendezvous answer with content carries: the above and an explicit type and length. */
function expectCommon(r: Reply): void {
  expectCaching(r);
  expect(r.headers['content-type'], 'Content-Type').to.be.a('string');
  expect(r.headers['content-length'], 'Content-Length').to.be.a('string');
}

/** ETag (strong, quoted), Expires and Last-Modified (IMF-fixdate): what matrix-rust-sdk insists on. */
function expectValidators(r: Reply): void {
  expect(r.headers.etag).to.match(/^"[^"]+"$/);
  expect(r.headers.expires).to.match(IMF_FIXDATE);
  expect(r.headers['last-modified']).to.match(IMF_FIXDATE);
}

function expectError(r: Reply, status: number, errcode: string): void {
  expect(r.status, r.text).to.equal(status);
  expect(r.headers['content-type']).to.equal('application/json');
  expect(r.json.errcode).to.equal(errcode);
  expect(r.json.error).to.be.a('string');
}

describe('MSC4108 (2024) at /_matrix/client/unstable/org.matrix.msc4108/rendezvous', () => {
  let redis: RedisServer;
  let server: Awaited<ReturnType<typeof startServer>>;
  let base: string;

  before(async () => {
    redis = await RedisServer.start();
    server = await startServer({ REDIS_URL: redis.url, RZ_PUBLIC_BASE_URL: PUBLIC });
    base = server.url + PREFIX;
  });
  after(async () => {
    await server?.stop();
    await redis?.destroy();
  });

  /** The session URL on this replica (the answer names the public URL, as behind a proxy). */
  const local = (url: string) => url.replace(PUBLIC, server.url);

  async function create(body = ''): Promise<{ url: string; etag: string; r: Reply }> {
    const r = await request('POST', base, { headers: TEXT, body });
    expect(r.status, r.text).to.equal(201);
    return { url: local(r.json.url), etag: r.headers.etag!, r };
  }

  describe('POST (create)', () => {
    it('answers 201 with {"url"} built from RZ_PUBLIC_BASE_URL, validators and common headers', async () => {
      const r = await request('POST', base, { headers: TEXT, body: '' });
      expect(r.status).to.equal(201);
      expect(r.headers['content-type']).to.equal('application/json');
      expect(Object.keys(r.json)).to.deep.equal(['url']);
      expect(r.json.url).to.match(new RegExp(`^${PUBLIC}${PREFIX}/[A-Za-z0-9._~-]{22,}$`));
      expect(r.headers['content-length']).to.equal(String(r.body.length));
      expectCommon(r);
      expectValidators(r);
    });

    it('takes an empty body with Content-Length: 0 (what clients send) and the session reads back empty', async () => {
      const { url } = await create();
      const g = await request('GET', url);
      expect(g.status).to.equal(200);
      expect(g.body.length).to.equal(0);
      expect(g.headers['content-length']).to.equal('0');
    });

    it('never takes the session URL from the Host header', async () => {
      const r = await request('POST', base, { headers: { ...TEXT, Host: 'evil.example.com' }, body: '' });
      expect(r.json.url.startsWith(`${PUBLIC}${PREFIX}/`)).to.equal(true);
    });

    it('tolerates parameters such as "; charset=utf-8" and stores the body', async () => {
      const r = await request('POST', base, { headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'hi' });
      expect(r.status).to.equal(201);
      const g = await request('GET', local(r.json.url));
      expect(g.text).to.equal('hi');
    });

    it('refuses a missing Content-Type with 400 M_MISSING_PARAM', async () => {
      expectError(await request('POST', base, { body: 'x' }), 400, 'M_MISSING_PARAM');
    });

    it('refuses another Content-Type with 400 M_INVALID_PARAM', async () => {
      const r = await request('POST', base, { headers: { 'Content-Type': 'application/json' }, body: '{}' });
      expectError(r, 400, 'M_INVALID_PARAM');
      expectCommon(r);
    });

    it('refuses a body over the maximum with 413 M_TOO_LARGE', async () => {
      expectError(await request('POST', base, { headers: TEXT, body: 'x'.repeat(4097) }), 413, 'M_TOO_LARGE');
    });

    it('ignores an Authorization header (creates stay open for devices not yet signed in)', async () => {
      const r = await request('POST', base, { headers: { ...TEXT, Authorization: 'Bearer nonsense' }, body: '' });
      expect(r.status).to.equal(201);
    });
  });

  describe('PUT <url>', () => {
    it('answers 202 with a new ETag, Expires unchanged, when If-Match names the current ETag', async () => {
      const { url, etag, r: created } = await create('one');
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'two' });
      expect(r.status).to.equal(202);
      expectCommon(r);
      expectValidators(r);
      expect(r.headers.etag).to.not.equal(etag);
      expect(r.headers.expires).to.equal(created.headers.expires);
      expect((await request('GET', url)).text).to.equal('two');
    });

    it('changes the ETag even when the bytes are identical', async () => {
      const { url, etag } = await create('same');
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'same' });
      expect(r.status).to.equal(202);
      expect(r.headers.etag).to.not.equal(etag);
    });

    it('matches a weak form W/"x" of the current ETag', async () => {
      const { url, etag } = await create();
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': `W/${etag}` }, body: 'w' });
      expect(r.status).to.equal(202);
    });

    it('refuses a missing If-Match with 400 M_MISSING_PARAM and writes nothing', async () => {
      const { url, etag } = await create('kept');
      expectError(await request('PUT', url, { headers: TEXT, body: 'lost' }), 400, 'M_MISSING_PARAM');
      const g = await request('GET', url);
      expect(g.text).to.equal('kept');
      expect(g.headers.etag).to.equal(etag);
    });

    it('refuses If-Match: * with 400 M_INVALID_PARAM', async () => {
      const { url } = await create();
      expectError(
        await request('PUT', url, { headers: { ...TEXT, 'If-Match': '*' }, body: 'x' }),
        400,
        'M_INVALID_PARAM',
      );
    });

    it('refuses an If-Match list with 400 M_INVALID_PARAM', async () => {
      const { url, etag } = await create();
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': `${etag}, "other"` }, body: 'x' });
      expectError(r, 400, 'M_INVALID_PARAM');
    });

    it('refuses a malformed If-Match with 400 M_INVALID_PARAM', async () => {
      const { url } = await create();
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': 'unquoted' }, body: 'x' });
      expectError(r, 400, 'M_INVALID_PARAM');
    });

    it('answers a stale If-Match with 412, the unstable-prefixed errcode and the current validators', async () => {
      const { url, etag } = await create('a');
      const w = await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'b' });
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'c' });
      expect(r.status).to.equal(412);
      expect(r.headers['content-type']).to.equal('application/json');
      expect(r.json).to.deep.include({ errcode: 'M_UNKNOWN', 'org.matrix.msc4108.errcode': 'M_CONCURRENT_WRITE' });
      expect(r.json.error).to.be.a('string');
      expect(r.headers.etag).to.equal(w.headers.etag);
      expectValidators(r);
      expectCommon(r);
      expect((await request('GET', url)).text).to.equal('b');
    });

    it('refuses a missing Content-Type (400 M_MISSING_PARAM) and another one (400 M_INVALID_PARAM)', async () => {
      const { url, etag } = await create();
      expectError(await request('PUT', url, { headers: { 'If-Match': etag }, body: 'x' }), 400, 'M_MISSING_PARAM');
      const r = await request('PUT', url, {
        headers: { 'If-Match': etag, 'Content-Type': 'application/octet-stream' },
        body: 'x',
      });
      expectError(r, 400, 'M_INVALID_PARAM');
    });

    it('refuses a body over the maximum with 413 M_TOO_LARGE', async () => {
      const { url, etag } = await create();
      const r = await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'x'.repeat(4097) });
      expectError(r, 413, 'M_TOO_LARGE');
    });

    it('answers 404 M_NOT_FOUND for an unknown id and for an id outside the opaque grammar', async () => {
      const h = { ...TEXT, 'If-Match': '"x"' };
      expectError(await request('PUT', `${base}/nosuchsession`, { headers: h, body: 'x' }), 404, 'M_NOT_FOUND');
      expectError(await request('PUT', `${base}/bad%20id`, { headers: h, body: 'x' }), 404, 'M_NOT_FOUND');
    });

    it('ignores an Authorization header', async () => {
      const { url, etag } = await create();
      const r = await request('PUT', url, {
        headers: { ...TEXT, 'If-Match': etag, Authorization: 'Bearer whatever' },
        body: 'x',
      });
      expect(r.status).to.equal(202);
    });
  });

  describe('GET <url>', () => {
    it('answers 200 with Content-Type exactly "text/plain", the bytes, validators and common headers', async () => {
      const payload = Buffer.from([0x68, 0xc3, 0xa9, 0x00, 0xff]);
      const r0 = await request('POST', base, { headers: TEXT, body: payload });
      const r = await request('GET', local(r0.json.url), { headers: { Authorization: 'Bearer ignored' } });
      expect(r.status).to.equal(200);
      expect(r.headers['content-type']).to.equal('text/plain');
      expect(r.body.equals(payload)).to.equal(true);
      expect(r.headers.etag).to.equal(r0.headers.etag);
      expectValidators(r);
      expectCommon(r);
    });

    it('answers text/plain exactly even when the write said "text/plain; charset=utf-8"', async () => {
      const { url, etag } = await create();
      await request('PUT', url, {
        headers: { 'Content-Type': 'text/plain; charset=utf-8', 'If-Match': etag },
        body: 'é',
      });
      expect((await request('GET', url)).headers['content-type']).to.equal('text/plain');
    });

    it('answers 304 to a matching If-None-Match, with validators and caching headers, without Content-Type or Content-Length', async () => {
      const { url, etag } = await create('abc');
      const r = await request('GET', url, { headers: { 'If-None-Match': etag } });
      expect(r.status).to.equal(304);
      expect(r.body.length).to.equal(0);
      expect(r.headers.etag).to.equal(etag);
      expectValidators(r);
      expectCaching(r);
      // RFC 9110 section 15.4.5: no representation metadata on a 304.
      expect(r.headers['content-type']).to.equal(undefined);
      expect(r.headers['content-length']).to.equal(undefined);
    });

    it('answers 304 to a weak W/ form, and 200 once the session changed', async () => {
      const { url, etag } = await create('abc');
      expect((await request('GET', url, { headers: { 'If-None-Match': `W/${etag}` } })).status).to.equal(304);
      await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'new' });
      const r = await request('GET', url, { headers: { 'If-None-Match': etag } });
      expect(r.status).to.equal(200);
      expect(r.text).to.equal('new');
    });

    it('answers 404 M_NOT_FOUND for an unknown id', async () => {
      expectError(await request('GET', `${base}/nosuchsession`), 404, 'M_NOT_FOUND');
    });
  });

  describe('DELETE <url>', () => {
    it('answers 204, after which every call is 404 M_NOT_FOUND', async () => {
      const { url, etag } = await create('x');
      const d = await request('DELETE', url, { headers: { Authorization: 'Bearer ignored' } });
      expect(d.status).to.equal(204);
      expect(d.headers['cache-control']).to.equal('no-store, no-transform');
      expectError(await request('GET', url), 404, 'M_NOT_FOUND');
      expectError(await request('PUT', url, { headers: { ...TEXT, 'If-Match': etag }, body: 'y' }), 404, 'M_NOT_FOUND');
      expectError(await request('DELETE', url), 404, 'M_NOT_FOUND');
    });
  });

  describe('CORS', () => {
    it('answers a preflight for a session URL with methods, headers, exposed headers and a day of max-age', async () => {
      const { url } = await create();
      const r = await request('OPTIONS', url, {
        headers: {
          Origin: 'https://app.element.io',
          'Access-Control-Request-Method': 'PUT',
          'Access-Control-Request-Headers': 'content-type, if-match',
        },
      });
      expect(r.status).to.equal(204);
      expect(r.headers['access-control-allow-origin']).to.equal('*');
      expect(r.headers['access-control-allow-methods']).to.equal('GET,PUT,POST,DELETE,OPTIONS');
      const allowed = r.headers['access-control-allow-headers']!.toLowerCase();
      for (const h of ['content-type', 'if-match', 'if-none-match', 'authorization', 'x-requested-with']) {
        expect(allowed).to.include(h);
      }
      expect(r.headers['access-control-max-age']).to.equal('86400');
    });

    it('exposes ETag, Location, Expires and Last-Modified on answers to a cross-origin call', async () => {
      const r = await request('POST', base, { headers: { ...TEXT, Origin: 'https://app.element.io' }, body: '' });
      const exposed = r.headers['access-control-expose-headers']!.toLowerCase().split(/\s*,\s*/);
      expect(exposed).to.include.members(['etag', 'location', 'expires', 'last-modified']);
    });
  });

  describe('families', () => {
    it('keeps an MSC4108 session off the MSC3886 and MSC4388 paths, and an MSC3886 one off MSC4108', async () => {
      const { url } = await create('x');
      const id = url.slice(url.lastIndexOf('/') + 1);
      expectError(await request('GET', `${server.url}/${id}`), 404, 'M_NOT_FOUND');
      expectError(await request('GET', `${server.url}/_matrix/client/v1/rendezvous/${id}`), 404, 'M_NOT_FOUND');
      const other = await request('POST', `${server.url}/`, { headers: TEXT, body: 'y' });
      expectError(await request('GET', `${base}/${other.json.id}`), 404, 'M_NOT_FOUND');
    });
  });

  describe('delegation (RZ_MSC4108_DELEGATE_URL)', () => {
    it('answers POST with 307 Temporary Redirect to the configured server, and serves sessions as usual', async () => {
      const target = 'https://rendezvous.example.net/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
      const delegating = await startServer({
        REDIS_URL: redis.url,
        RZ_PUBLIC_BASE_URL: PUBLIC,
        RZ_MSC4108_DELEGATE_URL: target,
      });
      try {
        const r = await request('POST', delegating.url + PREFIX, { headers: TEXT, body: '' });
        expect(r.status).to.equal(307);
        expect(r.headers.location).to.equal(target);
        expectCommon(r);
        const { url } = await create('still here');
        const g = await request('GET', url.replace(server.url, delegating.url));
        expect(g.text).to.equal('still here');
      } finally {
        await delegating.stop();
      }
    });
  });
});
