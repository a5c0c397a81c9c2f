import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { createPolicy } from '../src/auth/policy';
import { WhoamiVerifier } from '../src/auth/whoami';
import { ConfigError, loadConfig } from '../src/config';
import { MatrixError } from '../src/http/errors';
import { MemoryVerdictCache } from '../src/store/memory';
import { FakeHomeserver } from './helpers/fake-homeserver';
import { RedisServer } from './helpers/redis';
import { request, type Reply } from './helpers/http';
import { startServer } from './helpers/server';
import { until } from './helpers/topologies';

const V1 = '/_matrix/client/v1/rendezvous';
const UNSTABLE = '/_matrix/client/unstable/io.element.msc4388/rendezvous';
const JSON_HEADERS = { 'Content-Type': 'application/json' };
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

function expectError(r: Reply, status: number, errcode: string): void {
  expect(r.status, r.text).to.equal(status);
  expect(r.headers['content-type']).to.equal('application/json');
  expect(r.json.errcode).to.equal(errcode);
  expect(r.json.error).to.be.a('string');
}

const create = (url: string, headers: Record<string, string | string[]> = {}) =>
  request('POST', url, { headers: { ...JSON_HEADERS, ...headers }, body: '{"data":""}' });

describe('create policy', () => {
  let redis: RedisServer;
  let hs: FakeHomeserver;
  let server: Awaited<ReturnType<typeof startServer>>;
  const env = () => ({
    REDIS_URL: redis.url,
    RZ_PUBLIC_BASE_URL: 'https://matrix.example.org',
    RZ_CREATE_POLICY: 'authenticated',
    RZ_HOMESERVER_URL: hs.url,
    RZ_HOMESERVER_TIMEOUT_MS: '300',
  });

  before(async () => {
    redis = await RedisServer.start();
    hs = await FakeHomeserver.start();
    hs.valid.add('good-token');
    server = await startServer(env());
  });
  after(async () => {
    await server?.stop();
    await hs?.stop();
    await redis?.destroy();
  });
  beforeEach(() => {
    hs.mode = 'normal';
    hs.retryAfter = '7';
    hs.calls = 0;
  });

  /**
   * A create with a token the homeserver would accept, while it is in `mode`: the answer, for the
   * test's own checks, and afterwards (the homeserver back to normal) the proof that nothing was
   * cached, the same token creating.
   */
  async function whileHomeserver(
    mode: FakeHomeserver['mode'],
    token: string,
    check: (r: Awaited<ReturnType<typeof create>>) => void | Promise<void>,
  ): Promise<void> {
    hs.mode = mode;
    hs.valid.add(token);
    await check(await create(server.url + V1, bearer(token)));
    hs.mode = 'normal';
    expect((await create(server.url + V1, bearer(token))).status).to.equal(200);
  }

  it('is open by default: discovery says true and anyone creates', async () => {
    const open = await startServer({ REDIS_URL: redis.url, RZ_PUBLIC_BASE_URL: 'https://x.example' });
    try {
      expect((await request('GET', open.url + V1)).json).to.deep.equal({ create_available: true });
      expect((await create(open.url + V1)).status).to.equal(200);
      expect((await create(open.url + V1, bearer('anything'))).status).to.equal(200);
    } finally {
      await open.stop();
    }
  });

  it('refuses to start authenticated without RZ_HOMESERVER_URL', () => {
    expect(() => loadConfig({ RZ_CREATE_POLICY: 'authenticated' })).to.throw(ConfigError, /RZ_HOMESERVER_URL/);
  });

  describe('authenticated', () => {
    for (const prefix of [V1, UNSTABLE]) {
      it(`discovery without a token answers 200 {"create_available": false} (${prefix})`, async () => {
        const r = await request('GET', server.url + prefix);
        expect(r.status).to.equal(200);
        expect(r.headers['content-type']).to.equal('application/json');
        expect(r.json).to.deep.equal({ create_available: false });
        expect(hs.calls).to.equal(0);
      });
    }

    it('discovery with a valid token answers 200 {"create_available": true}', async () => {
      const r = await request('GET', server.url + V1, { headers: bearer('good-token') });
      expect(r.json).to.deep.equal({ create_available: true });
    });

    it('discovery with an invalid token answers 401 M_UNKNOWN_TOKEN', async () => {
      expectError(await request('GET', server.url + V1, { headers: bearer('bad-token') }), 401, 'M_UNKNOWN_TOKEN');
    });

    it('create without a token answers 403 M_FORBIDDEN', async () => {
      expectError(await create(server.url + V1), 403, 'M_FORBIDDEN');
      expect(hs.calls).to.equal(0);
    });

    it('create with an invalid token answers 401 M_UNKNOWN_TOKEN', async () => {
      expectError(await create(server.url + V1, bearer('another-bad-token')), 401, 'M_UNKNOWN_TOKEN');
    });

    it('create with a malformed Authorization header answers 401 M_UNKNOWN_TOKEN without asking the homeserver', async () => {
      const basic = await create(server.url + V1, { Authorization: 'Basic dXNlcjpwYXNz' });
      expectError(basic, 401, 'M_UNKNOWN_TOKEN');
      // It says why, without claiming the homeserver was asked.
      expect(basic.json.error).to.equal('The Authorization header is not a Bearer access token');
      const long = await create(server.url + V1, bearer('x'.repeat(5000)));
      expectError(long, 401, 'M_UNKNOWN_TOKEN');
      expect(long.json.error).to.not.include('homeserver');
      expect(hs.calls).to.equal(0);
    });

    it('refuses a request with more than one Authorization header as malformed, whichever comes first', async () => {
      const twice = [
        ['Bearer good-token', 'Bearer not-a-token'],
        ['Bearer not-a-token', 'Bearer good-token'],
        ['', 'Bearer not-a-token'],
      ];
      for (const lines of twice) {
        const c = await create(server.url + V1, { Authorization: lines });
        expectError(c, 401, 'M_UNKNOWN_TOKEN');
        expect(c.json.error).to.equal('A request carries one Authorization header at most');
        expectError(
          await request('GET', server.url + V1, { headers: { Authorization: lines } }),
          401,
          'M_UNKNOWN_TOKEN',
        );
      }
      expect(hs.calls).to.equal(0);
      // One line, in any letter case, with spaces around the token, is fine.
      const one = await create(server.url + V1, { authorization: 'bearer   good-token ' });
      expect(one.status, one.text).to.equal(200);
    });

    it('create with a valid token answers 200 with a session', async () => {
      const r = await create(server.url + UNSTABLE, bearer('good-token'));
      expect(r.status, r.text).to.equal(200);
      expect(r.json.id).to.be.a('string');
    });

    it("caches verdicts in Redis: a second replica reuses the first one's whoami answer", async () => {
      hs.valid.add('cached-token');
      const other = await startServer(env());
      try {
        expect((await create(server.url + V1, bearer('cached-token'))).status).to.equal(200);
        expect((await create(server.url + V1, bearer('cached-token'))).status).to.equal(200);
        expect((await create(other.url + V1, bearer('cached-token'))).status).to.equal(200);
        expectError(await create(server.url + V1, bearer('cached-bad')), 401, 'M_UNKNOWN_TOKEN');
        expectError(await create(other.url + V1, bearer('cached-bad')), 401, 'M_UNKNOWN_TOKEN');
        expect(hs.calls).to.equal(2);
        const client = redis.client();
        const keys = await client.keys('rz:auth:*');
        client.disconnect();
        expect(keys.join(' ')).to.not.include('cached-token'); // tokens are stored hashed
      } finally {
        await other.stop();
      }
    });

    it('ignores Authorization on session reads, writes and deletes (no homeserver call)', async () => {
      const c = await create(server.url + V1, bearer('good-token'));
      const url = `${server.url}${V1}/${c.json.id}`;
      hs.calls = 0;
      const bad = bearer('garbage');
      expect((await request('GET', url, { headers: bad })).status).to.equal(200);
      const body = JSON.stringify({ sequence_token: c.json.sequence_token, data: 'x' });
      expect((await request('PUT', url, { headers: { ...JSON_HEADERS, ...bad }, body })).status).to.equal(200);
      expect((await request('DELETE', url, { headers: bad })).status).to.equal(200);
      expect(hs.calls).to.equal(0);
    });

    it("passes the homeserver's soft_logout on (so clients keep their data), and caches it", async () => {
      hs.mode = 'soft';
      for (let i = 0; i < 2; i++) {
        const r = await create(server.url + V1, bearer('expired-token'));
        expectError(r, 401, 'M_UNKNOWN_TOKEN');
        expect(r.json.soft_logout).to.equal(true);
      }
      expect(hs.calls).to.equal(1);
      const plain = await create(server.url + V1, bearer('bad-token-2'));
      expect(plain.json.soft_logout).to.equal(true);
      hs.mode = 'normal';
      const hard = await create(server.url + V1, bearer('bad-token-3'));
      expectError(hard, 401, 'M_UNKNOWN_TOKEN');
      expect(hard.json.soft_logout).to.equal(false);
    });

    it('takes a 403 or a 401 page from something in front of the homeserver for no verdict: 503, not cached', async () => {
      hs.mode = 'blocked';
      hs.valid.add('forbid-me-not');
      for (const token of ['forbid-me-not', 'proxied-token']) {
        const r = await create(server.url + V1, bearer(token));
        expectError(r, 503, 'M_UNKNOWN');
        expect(r.headers['retry-after']).to.equal('1');
      }
      hs.mode = 'normal';
      expect((await create(server.url + V1, bearer('forbid-me-not'))).status).to.equal(200);
    });

    it('takes a 401 M_MISSING_TOKEN (the token never reached the homeserver) for no verdict: 503, not cached', async () => {
      await whileHomeserver('stripped', 'stripped-token', async (r) => {
        expectError(r, 503, 'M_UNKNOWN');
        expect(r.json.soft_logout).to.equal(undefined);
        expectError(await request('GET', server.url + V1, { headers: bearer('stripped-token') }), 503, 'M_UNKNOWN');
      });
    });

    it("passes a rate-limiting homeserver's Retry-After on with its 503", async () => {
      hs.mode = 'limited';
      const r = await create(server.url + V1, bearer('limited-token'));
      expectError(r, 503, 'M_UNKNOWN');
      expect(r.headers['retry-after']).to.equal('7');
    });

    it("passes a homeserver's Retry-After on up to 60 s, however long it says", async () => {
      hs.mode = 'limited';
      for (const [given, passed] of [
        ['3600', '60'],
        ['86400000', '60'],
        ['9'.repeat(400), '60'],
        ['Wed, 21 Oct 2015 07:28:00 GMT', '1'],
      ]) {
        hs.retryAfter = given!;
        const r = await create(server.url + V1, bearer('limited-token'));
        expectError(r, 503, 'M_UNKNOWN');
        expect(r.headers['retry-after'], given).to.equal(passed);
      }
    });

    it('a slow homeserver gives 504 with Retry-After once RZ_HOMESERVER_TIMEOUT_MS passes, never a hang', async () => {
      hs.mode = 'slow';
      const slow = await create(server.url + V1, bearer('slow-token'));
      expectError(slow, 504, 'M_UNKNOWN');
      expect(slow.headers['retry-after']).to.equal('1');
      expectError(await request('GET', server.url + V1, { headers: bearer('slow-token-2') }), 504, 'M_UNKNOWN');
    });

    it('a homeserver whose answer stops arriving after its headers gives 504 as well, and nothing is cached', async () => {
      await whileHomeserver('stalled', 'stalled-token', (r) => {
        expectError(r, 504, 'M_UNKNOWN');
        expect(r.headers['retry-after']).to.equal('1');
      });
    });

    it('reads no more of a homeserver answer than a whoami answer can be: a huge one gives 503, not cached', async () => {
      await whileHomeserver('huge', 'padded-token', (r) => expectError(r, 503, 'M_UNKNOWN'));
    });

    it('a homeserver answering 500 gives 503 with Retry-After, and nothing is cached', async () => {
      await whileHomeserver('error', 'flaky-token', (r) => {
        expectError(r, 503, 'M_UNKNOWN');
        expect(r.headers['retry-after']).to.equal('1');
      });
    });

    it('a homeserver that is down gives 503 (and discovery without a token still answers 200)', async () => {
      const down = await FakeHomeserver.start();
      const url = down.url;
      await down.stop();
      const s = await startServer({ ...env(), RZ_HOMESERVER_URL: url });
      try {
        expectError(await create(s.url + V1, bearer('any-token')), 503, 'M_UNKNOWN');
        expect((await request('GET', s.url + V1)).json).to.deep.equal({ create_available: false });
      } finally {
        await s.stop();
      }
    });

    it('also works without Redis (in-memory verdict cache)', async () => {
      hs.valid.add('mem-token');
      const s = await startServer({ ...env(), REDIS_URL: '' });
      try {
        expect((await create(s.url + V1, bearer('mem-token'))).status).to.equal(200);
        expect((await create(s.url + V1, bearer('mem-token'))).status).to.equal(200);
        expect(hs.calls).to.equal(1);
      } finally {
        await s.stop();
      }
    });
  });

  it('logs why the homeserver could not be asked (a redirect, which is not followed), once a second', async () => {
    const redirecting = await redirectingHomeserver();
    const { log, lines } = warnings();
    try {
      const verifier = new WhoamiVerifier({
        homeserverUrl: redirecting.url,
        timeoutMs: 5000,
        cacheMs: 0,
        cache: new MemoryVerdictCache(10),
        log,
      });
      for (const token of ['a', 'b', 'c']) {
        const err = await verifier.verify(token).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(MatrixError);
        expect((err as MatrixError).status).to.equal(503);
      }
      // Three creates met it within a second: one line, saying why.
      expect(lines).to.have.length(1);
      expect(lines[0]!.cause).to.match(/redirect/i);
    } finally {
      redirecting.close();
    }
  });

  it('names the request that met a homeserver it could not ask in that log line (its X-Request-Id)', async () => {
    const redirecting = await redirectingHomeserver();
    const { log, lines } = warnings();
    try {
      const policy = createPolicy(
        loadConfig({
          RZ_CREATE_POLICY: 'authenticated',
          RZ_HOMESERVER_URL: redirecting.url,
          RZ_AUTH_CACHE_SECONDS: '0',
        }),
        new MemoryVerdictCache(10),
        log,
      );
      const err = await policy.authorizeCreate(['Authorization', 'Bearer some-token'], 'lb-42.create').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as MatrixError).status).to.equal(503);
      expect(lines).to.have.length(1);
      expect(lines[0]!.reqId).to.equal('lb-42.create');
      expect(JSON.stringify(lines)).to.not.include('some-token');
    } finally {
      redirecting.close();
    }
  });

  it('the in-memory verdict cache forgets expired verdicts and stays bounded', async () => {
    let now = 1000;
    const cache = new MemoryVerdictCache(2, () => now);
    await cache.set('a', 'valid', 100);
    await cache.set('b', 'invalid', 100);
    expect(await cache.get('a')).to.equal('valid');
    await cache.set('b', 'invalid', 100); // set again: replaces itself, and no other entry goes
    expect(await cache.get('a')).to.equal('valid');
    await cache.set('c', 'valid', 100); // over the bound: the oldest goes
    expect(await cache.get('a')).to.equal(undefined);
    expect(await cache.get('b')).to.equal('invalid');
    now += 100;
    expect(await cache.get('b')).to.equal(undefined);
    expect(await cache.get('c')).to.equal(undefined);
  });

  it('the in-memory verdict cache lets expired verdicts go with nothing asking for them', async () => {
    let now = 1000;
    const cache = new MemoryVerdictCache(10, () => now, 10);
    try {
      await cache.set('a', 'valid', 100);
      await cache.set('b', 'invalid', 200);
      now += 100;
      // Idle from here on: no get or set comes to find them expired.
      await until('the expired verdict to go', async () => cache.size === 1);
      now += 100;
      await until('every verdict to go', async () => cache.size === 0);
    } finally {
      cache.close();
    }
  });
});

/** A homeserver stand-in that answers every request with a redirect, which the token check never follows. */
async function redirectingHomeserver(): Promise<{ url: string; close: () => void }> {
  const server = http.createServer((_req, res) => res.writeHead(302, { Location: 'https://x.example/' }).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

/** A logger at warn whose lines are kept, parsed. */
function warnings(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'warn' },
    { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { log, lines };
}
