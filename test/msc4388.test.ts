import { expect } from 'chai';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { RedisSessions } from '../src/store/redis';
import { sessionKey } from '../src/store/format';
import { CSP, request, type Reply } from './helpers/http';
import { startServer } from './helpers/server';

const PATHS = [
  {
    name: 'unstable',
    prefix: '/_matrix/client/unstable/io.element.msc4388/rendezvous',
    conflict: 'IO_ELEMENT_MSC4388_CONCURRENT_WRITE',
  },
  { name: 'v1', prefix: '/_matrix/client/v1/rendezvous', conflict: 'M_CONCURRENT_WRITE' },
] as const;
const JSON_HEADERS = { 'Content-Type': 'application/json' };
const TOKEN = /^[A-Za-z0-9._~-]{1,255}$/;

function expectCommon(r: Reply): void {
  expect(r.headers['cache-control']).to.equal('no-store, no-transform');
  expect(r.headers['pragma']).to.equal('no-cache');
  expect(r.headers['x-content-type-options']).to.equal('nosniff');
  expect(r.headers['content-security-policy']).to.equal(CSP);
  expect(r.headers['access-control-allow-origin']).to.equal('*');
  expect(r.headers['content-length']).to.equal(String(r.body.length));
}

function expectJson(r: Reply, status: number): void {
  expect(r.status, r.text).to.equal(status);
  expect(r.headers['content-type']).to.equal('application/json');
  expectCommon(r);
}

function expectError(r: Reply, status: number, errcode: string): void {
  expectJson(r, status);
  expect(r.json.errcode).to.equal(errcode);
  expect(r.json.error).to.be.a('string');
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  request('POST', url, { headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) });
const put = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  request('PUT', url, { headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) });

describe('MSC4388 (2025)', () => {
  let redis: RedisServer;
  let server: Awaited<ReturnType<typeof startServer>>;

  before(async () => {
    redis = await RedisServer.start();
    server = await startServer({ REDIS_URL: redis.url, RZ_PUBLIC_BASE_URL: 'https://matrix.example.org' });
  });
  after(async () => {
    await server?.stop();
    await redis?.destroy();
  });

  for (const { name, prefix, conflict } of PATHS) {
    describe(`${name} path ${prefix}`, () => {
      let base: string;
      before(() => (base = server.url + prefix));

      async function create(data = ''): Promise<{ url: string; token: string }> {
        const r = await post(base, { data });
        expect(r.status, r.text).to.equal(200);
        return { url: `${base}/${r.json.id}`, token: r.json.sequence_token };
      }

      it('GET /rendezvous (discovery) answers 200 {"create_available": true} under the open policy', async () => {
        const r = await request('GET', base);
        expectJson(r, 200);
        expect(r.json).to.deep.equal({ create_available: true });
      });

      it('POST /rendezvous answers 200 {id, sequence_token, expires_in_ms} with exactly those fields', async () => {
        const r = await post(base, { data: '' });
        expectJson(r, 200);
        expect(Object.keys(r.json).sort()).to.deep.equal(['expires_in_ms', 'id', 'sequence_token']);
        expect(r.json.id).to.match(/^[A-Za-z0-9._~-]{22,255}$/);
        expect(r.json.sequence_token).to.match(TOKEN);
        expect(r.json.expires_in_ms).to.equal(300_000);
      });

      it('GET /rendezvous/{id} answers 200 {data, sequence_token, expires_in_ms}, data byte-exact', async () => {
        const data = 'héllo 🌍 "quoted" \\ \n';
        const c = await post(base, { data });
        const r = await request('GET', `${base}/${c.json.id}`);
        expectJson(r, 200);
        expect(Object.keys(r.json).sort()).to.deep.equal(['data', 'expires_in_ms', 'sequence_token']);
        expect(r.json.data).to.equal(data);
        expect(r.json.sequence_token).to.equal(c.json.sequence_token);
        expect(r.json.expires_in_ms).to.be.within(1, 300_000);
      });

      it('PUT /rendezvous/{id} with the current token answers 200 {sequence_token} with a new token', async () => {
        const { url, token } = await create();
        const r = await put(url, { sequence_token: token, data: 'one' });
        expectJson(r, 200);
        expect(Object.keys(r.json)).to.deep.equal(['sequence_token']);
        expect(r.json.sequence_token).to.match(TOKEN).and.not.equal(token);
        const g = await request('GET', url);
        expect(g.json.data).to.equal('one');
        expect(g.json.sequence_token).to.equal(r.json.sequence_token);
      });

      it('changes the token on every write, identical data included, and never extends expiry', async () => {
        const { url, token } = await create('same');
        // The stored expiry, to the millisecond: expires_in_ms counts down, so two readings of it a few
        // milliseconds apart only sometimes tell a kept expiry from one the write set again.
        const id = url.split('/').pop()!;
        const client = redis.client();
        try {
          const store = new RedisSessions(client, {
            caps: { global: 0, perAddress: 0 },
            maxTxnsPerSession: 4,
            commandTimeoutMs: 2000,
          });
          const expiry = async () => ({
            session: (await store.get(id, 'msc4388'))!.expiresAt,
            key: await client.pexpiretime(sessionKey(id)),
          });
          const before = await expiry();
          expect(before.key).to.equal(before.session);
          const r = await put(url, { sequence_token: token, data: 'same' });
          expect(r.status).to.equal(200);
          expect(r.json.sequence_token).to.not.equal(token);
          expect(await expiry()).to.deep.equal(before);
        } finally {
          client.disconnect();
        }
      });

      it(`PUT with a stale token and different data answers 409 ${conflict} and leaves the payload`, async () => {
        const { url, token } = await create();
        const w = await put(url, { sequence_token: token, data: 'first' });
        const r = await put(url, { sequence_token: token, data: 'second' });
        expectError(r, 409, conflict);
        const g = await request('GET', url);
        expect(g.json.data).to.equal('first');
        expect(g.json.sequence_token).to.equal(w.json.sequence_token);
      });

      it('PUT with a stale token whose data equals the payload answers 200 with the current token, changing nothing', async () => {
        const { url, token } = await create();
        const w = await put(url, { sequence_token: token, data: 'landed' });
        const retry = await put(url, { sequence_token: token, data: 'landed' });
        expectJson(retry, 200);
        expect(retry.json).to.deep.equal({ sequence_token: w.json.sequence_token });
        const g = await request('GET', url);
        expect(g.json.sequence_token).to.equal(w.json.sequence_token);
      });

      it('PUT /rendezvous/{id}/{txnId} writes, and a repeated txnId replays the recorded body', async () => {
        const { url, token } = await create();
        const first = await put(`${url}/txn-1`, { sequence_token: token, data: 'a' });
        expectJson(first, 200);
        // Someone else writes in between: a re-evaluation would now be a conflict, a replay is not.
        await put(url, { sequence_token: first.json.sequence_token, data: 'b' });
        const again = await put(`${url}/txn-1`, { sequence_token: token, data: 'a' });
        expectJson(again, 200);
        expect(again.text).to.equal(first.text);
        expect((await request('GET', url)).json.data).to.equal('b');
      });

      it('a repeated txnId replays a recorded 409 even once the token would match', async () => {
        const { url, token } = await create();
        const w = await put(url, { sequence_token: token, data: 'x' });
        const lost = await put(`${url}/t2`, { sequence_token: token, data: 'y' });
        expectError(lost, 409, conflict);
        const replay = await put(`${url}/t2`, { sequence_token: w.json.sequence_token, data: 'y' });
        expectError(replay, 409, conflict);
        expect((await request('GET', url)).json.data).to.equal('x');
      });

      it('DELETE /rendezvous/{id} answers 200 {}; then GET, PUT and DELETE answer 404 M_NOT_FOUND', async () => {
        const { url, token } = await create();
        const d = await request('DELETE', url);
        expectJson(d, 200);
        expect(d.json).to.deep.equal({});
        expectError(await request('GET', url), 404, 'M_NOT_FOUND');
        expectError(await put(url, { sequence_token: token, data: '' }), 404, 'M_NOT_FOUND');
        expectError(await put(`${url}/t`, { sequence_token: token, data: '' }), 404, 'M_NOT_FOUND');
        expectError(await request('DELETE', url), 404, 'M_NOT_FOUND');
      });

      it('answers 404 M_NOT_FOUND for unknown ids and for ids outside the opaque grammar', async () => {
        expectError(await request('GET', `${base}/unknownsession`), 404, 'M_NOT_FOUND');
        expectError(await request('GET', `${base}/${'a'.repeat(256)}`), 404, 'M_NOT_FOUND');
        expectError(await request('GET', `${base}/bad%21id`), 404, 'M_NOT_FOUND');
        expectError(await put(`${base}/bad%20id`, { sequence_token: '1', data: '' }), 404, 'M_NOT_FOUND');
        expectError(await request('DELETE', `${base}/bad%2Cid`), 404, 'M_NOT_FOUND');
      });

      it('ignores Authorization on GET, PUT and DELETE of a session', async () => {
        const auth = { Authorization: 'Bearer not-a-real-token' };
        const { url, token } = await create();
        expect((await request('GET', url, { headers: auth })).status).to.equal(200);
        expect((await put(url, { sequence_token: token, data: 'z' }, auth)).status).to.equal(200);
        expect((await request('DELETE', url, { headers: auth })).status).to.equal(200);
      });

      it('ignores unknown query parameters', async () => {
        const { url } = await create('q');
        const r = await request('GET', `${url}?sequence_token=1&timeout_ms=0&foo=bar`);
        expect(r.json.data).to.equal('q');
      });

      describe('unsafe browser fetches of GET /rendezvous/{id}', () => {
        const refused: [string, Record<string, string>][] = [
          ['Sec-Fetch-Dest: document', { 'Sec-Fetch-Dest': 'document' }],
          ['Sec-Fetch-Dest: image', { 'Sec-Fetch-Dest': 'image' }],
          ['Sec-Fetch-Mode: navigate', { 'Sec-Fetch-Mode': 'navigate' }],
          ['Sec-Fetch-User: ?1', { 'Sec-Fetch-User': '?1' }],
          ['Sec-Fetch-Site: none', { 'Sec-Fetch-Site': 'none' }],
        ];
        for (const [label, headers] of refused) {
          it(`refuses ${label} with 403 M_FORBIDDEN`, async () => {
            const { url } = await create('secret');
            const r = await request('GET', url, { headers });
            expectError(r, 403, 'M_FORBIDDEN');
            expect(r.text).to.not.include('secret');
          });
        }
        it('accepts a script fetch (Dest empty, Mode cors, Site cross-site) and no Sec-Fetch headers at all', async () => {
          const { url } = await create('ok');
          const fetchHeaders = {
            'Sec-Fetch-Dest': 'empty',
            'Sec-Fetch-Mode': 'cors',
            'Sec-Fetch-Site': 'cross-site',
            'Sec-Fetch-User': '?0',
          };
          expect((await request('GET', url, { headers: fetchHeaders })).json.data).to.equal('ok');
          expect((await request('GET', url)).json.data).to.equal('ok');
        });
      });

      describe('bad input', () => {
        it('POST: non-JSON → 400 M_NOT_JSON (also an empty body and invalid UTF-8)', async () => {
          expectError(await request('POST', base, { headers: JSON_HEADERS, body: '{data:' }), 400, 'M_NOT_JSON');
          expectError(await request('POST', base, { headers: JSON_HEADERS, body: '' }), 400, 'M_NOT_JSON');
          const badUtf8 = Buffer.concat([Buffer.from('{"data":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
          expectError(await request('POST', base, { headers: JSON_HEADERS, body: badUtf8 }), 400, 'M_NOT_JSON');
        });

        it('POST: JSON that is not an object, or data of the wrong type → 400 M_BAD_JSON', async () => {
          for (const body of [[], 'str', 7, null]) expectError(await post(base, body), 400, 'M_BAD_JSON');
          for (const data of [1, null, true, {}, ['a']]) expectError(await post(base, { data }), 400, 'M_BAD_JSON');
          const lone = '{"data":"\\ud800"}';
          expectError(await request('POST', base, { headers: JSON_HEADERS, body: lone }), 400, 'M_BAD_JSON');
        });

        it('POST: missing data → 400 M_MISSING_PARAM', async () => {
          expectError(await post(base, {}), 400, 'M_MISSING_PARAM');
        });

        it('POST: data over 4096 UTF-8 bytes → 413 M_TOO_LARGE, counting multi-byte characters as bytes', async () => {
          expect((await post(base, { data: 'a'.repeat(4096) })).status).to.equal(200);
          expect((await post(base, { data: 'é'.repeat(2048) })).status).to.equal(200);
          expectError(await post(base, { data: 'a'.repeat(4097) }), 413, 'M_TOO_LARGE');
          expectError(await post(base, { data: 'é'.repeat(2049) }), 413, 'M_TOO_LARGE'); // 2049 chars, 4098 bytes
          expectError(await post(base, { data: '🌍'.repeat(1025) }), 413, 'M_TOO_LARGE'); // 4100 bytes
        });

        it('POST: data at the limit but written with \\u escapes is accepted (the limit is on data, not JSON)', async () => {
          const escaped = `{"data":"${'\\u00e9'.repeat(2048)}"}`;
          const r = await request('POST', base, { headers: JSON_HEADERS, body: escaped });
          expect(r.status, r.text).to.equal(200);
        });

        it('POST: a body far over any limit → 413 M_TOO_LARGE without reading it all', async () => {
          const r = await request('POST', base, { headers: JSON_HEADERS, body: 'x'.repeat(64 * 1024) });
          expectError(r, 413, 'M_TOO_LARGE');
        });

        it('PUT: non-JSON, wrong types, missing fields, oversized data, bad token; nothing is written', async () => {
          const { url, token } = await create('kept');
          expectError(await request('PUT', url, { headers: JSON_HEADERS, body: 'nope' }), 400, 'M_NOT_JSON');
          expectError(await put(url, ['a']), 400, 'M_BAD_JSON');
          expectError(await put(url, { sequence_token: 1, data: 'x' }), 400, 'M_BAD_JSON');
          expectError(await put(url, { sequence_token: token, data: 5 }), 400, 'M_BAD_JSON');
          expectError(await put(url, { data: 'x' }), 400, 'M_MISSING_PARAM');
          expectError(await put(url, { sequence_token: token }), 400, 'M_MISSING_PARAM');
          expectError(await put(url, { sequence_token: token, data: 'é'.repeat(2049) }), 413, 'M_TOO_LARGE');
          expectError(await put(url, { sequence_token: 'bad token!', data: 'x' }), 400, 'M_INVALID_PARAM');
          expectError(await put(url, { sequence_token: 'a'.repeat(256), data: 'x' }), 400, 'M_INVALID_PARAM');
          const g = await request('GET', url);
          expect(g.json).to.include({ data: 'kept', sequence_token: token });
        });

        it('PUT /{id}/{txnId}: oversized txnIds and txnIds outside the grammar → 400 M_INVALID_PARAM', async () => {
          const { url, token } = await create();
          const body = { sequence_token: token, data: 'x' };
          expectError(await put(`${url}/${'t'.repeat(256)}`, body), 400, 'M_INVALID_PARAM');
          expectError(await put(`${url}/bad%20txn`, body), 400, 'M_INVALID_PARAM');
          expectError(await put(`${url}/bad%2Ftxn`, body), 400, 'M_INVALID_PARAM');
          expect((await put(`${url}/${'t'.repeat(255)}`, body)).status).to.equal(200);
        });

        it('a wrong method on a known path answers 405 M_UNRECOGNIZED with Allow', async () => {
          const { url } = await create();
          const r = await request('POST', url, { headers: JSON_HEADERS, body: '{}' });
          expectError(r, 405, 'M_UNRECOGNIZED');
          expect(r.headers.allow).to.include('PUT');
        });
      });
    });
  }

  it('reaches one session through both paths (same family), with each path its own errcode', async () => {
    const [unstable, v1] = PATHS.map((p) => server.url + p.prefix);
    const c = await post(unstable!, { data: 'x' });
    await put(`${v1}/${c.json.id}`, { sequence_token: c.json.sequence_token, data: 'y' });
    const r = await put(`${unstable}/${c.json.id}`, { sequence_token: c.json.sequence_token, data: 'z' });
    expectError(r, 409, 'IO_ELEMENT_MSC4388_CONCURRENT_WRITE');
    const r1 = await put(`${v1}/${c.json.id}`, { sequence_token: c.json.sequence_token, data: 'z' });
    expectError(r1, 409, 'M_CONCURRENT_WRITE');
  });

  it('keeps MSC4388 sessions off the ETag-family paths, and theirs off MSC4388', async () => {
    const v1 = server.url + PATHS[1].prefix;
    const c = await post(v1, { data: 'x' });
    expect((await request('GET', `${server.url}/${c.json.id}`)).json.errcode).to.equal('M_NOT_FOUND');
    const m4108 = `${server.url}/_matrix/client/unstable/org.matrix.msc4108/rendezvous/${c.json.id}`;
    expect((await request('GET', m4108)).json.errcode).to.equal('M_NOT_FOUND');
    const other = await request('POST', `${server.url}/`, { headers: { 'Content-Type': 'text/plain' }, body: 'y' });
    expectError(await request('GET', `${v1}/${other.json.id}`), 404, 'M_NOT_FOUND');
  });

  describe('TTL clamped to 120–300 s whatever RZ_TTL_SECONDS says', () => {
    for (const [ttl, expected] of [
      ['30', 120_000],
      ['200', 200_000],
      ['3600', 300_000],
    ] as const) {
      it(`RZ_TTL_SECONDS=${ttl} → expires_in_ms ${expected}`, async () => {
        const s = await startServer({
          REDIS_URL: redis.url,
          RZ_PUBLIC_BASE_URL: 'https://x.example',
          RZ_TTL_SECONDS: ttl,
        });
        try {
          const r = await post(s.url + PATHS[1].prefix, { data: '' });
          expect(r.json.expires_in_ms).to.equal(expected);
        } finally {
          await s.stop();
        }
      });
    }
  });

  it('answers 403 M_FORBIDDEN once a session has used RZ_MAX_TXNS_PER_SESSION transaction ids', async () => {
    const s = await startServer({
      REDIS_URL: redis.url,
      RZ_PUBLIC_BASE_URL: 'https://x.example',
      RZ_MAX_TXNS_PER_SESSION: '2',
    });
    try {
      const base = s.url + PATHS[1].prefix;
      const c = await post(base, { data: '' });
      const url = `${base}/${c.json.id}`;
      let token = c.json.sequence_token as string;
      for (const txn of ['a', 'b'])
        token = (await put(`${url}/${txn}`, { sequence_token: token, data: txn })).json.sequence_token;
      expectError(await put(`${url}/c`, { sequence_token: token, data: 'c' }), 403, 'M_FORBIDDEN');
      // Recorded ones still replay, and a PUT without a txnId still works.
      expect((await put(`${url}/a`, { sequence_token: '1', data: 'a' })).json.sequence_token).to.equal('2');
      expect((await put(url, { sequence_token: token, data: 'd' })).status).to.equal(200);
    } finally {
      await s.stop();
    }
  });

  it('answers 404 M_UNRECOGNIZED on every MSC4388 path when RZ_MSC4388_ENABLED=false', async () => {
    const s = await startServer({
      REDIS_URL: redis.url,
      RZ_PUBLIC_BASE_URL: 'https://x.example',
      RZ_MSC4388_ENABLED: 'false',
    });
    try {
      for (const { prefix } of PATHS) {
        expectError(await request('GET', s.url + prefix), 404, 'M_UNRECOGNIZED');
        expectError(await post(s.url + prefix, { data: '' }), 404, 'M_UNRECOGNIZED');
      }
    } finally {
      await s.stop();
    }
  });
});

describe('MSC4388 idempotency under retries, across two replicas', () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  const PREFIX = PATHS[0].prefix;

  before(async () => {
    redis = await RedisServer.start();
    const env = { REDIS_URL: redis.url, RZ_PUBLIC_BASE_URL: 'https://matrix.example.org' };
    [a, b] = await Promise.all([Replica.start(env), Replica.start(env)]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  async function session(): Promise<{ id: string; token: string }> {
    const r = await post(a.url + PREFIX, { data: '' });
    return { id: r.json.id, token: r.json.sequence_token };
  }

  async function revisionOf(id: string): Promise<string> {
    const client = redis.client();
    try {
      return String(
        (await new RedisSessions(client, {
          caps: { global: 0, perAddress: 0 },
          maxTxnsPerSession: 4,
          commandTimeoutMs: 2000,
        }).get(id, 'msc4388'))!.rev,
      );
    } finally {
      client.disconnect();
    }
  }

  it('a verbatim re-sent PUT /{id} after its write landed answers 200 with the same token and writes nothing, on either replica', async () => {
    const { id, token } = await session();
    const body = { sequence_token: token, data: 'hello from A' };
    const first = await put(`${a.url}${PREFIX}/${id}`, body);
    expect(first.status).to.equal(200);
    const sameReplica = await put(`${a.url}${PREFIX}/${id}`, body);
    const otherReplica = await put(`${b.url}${PREFIX}/${id}`, body);
    expect(sameReplica.status).to.equal(200);
    expect(otherReplica.status).to.equal(200);
    expect(sameReplica.json).to.deep.equal(first.json);
    expect(otherReplica.json).to.deep.equal(first.json);
    expect(await revisionOf(id)).to.equal(first.json.sequence_token);
  });

  it('a PUT repeated with the same txnId on the other replica returns the identical body', async () => {
    const { id, token } = await session();
    const body = { sequence_token: token, data: 'txn write' };
    const first = await put(`${a.url}${PREFIX}/${id}/m.txn.1`, body);
    expect(first.status).to.equal(200);
    const replay = await put(`${b.url}${PREFIX}/${id}/m.txn.1`, body);
    expect(replay.status).to.equal(200);
    expect(replay.body.equals(first.body)).to.equal(true);
    expect(await revisionOf(id)).to.equal(first.json.sequence_token);
  });

  it('two devices racing with different data on one token: exactly one 200, the other 409', async () => {
    for (let round = 0; round < 5; round++) {
      const { id, token } = await session();
      const [ra, rb] = await Promise.all([
        put(`${a.url}${PREFIX}/${id}`, { sequence_token: token, data: 'from device A' }),
        put(`${b.url}${PREFIX}/${id}`, { sequence_token: token, data: 'from device B' }),
      ]);
      expect([ra.status, rb.status].sort()).to.deep.equal([200, 409]);
      const loser = ra.status === 409 ? ra : rb;
      expect(loser.json.errcode).to.equal('IO_ELEMENT_MSC4388_CONCURRENT_WRITE');
      const winner = ra.status === 200 ? 'from device A' : 'from device B';
      expect((await request('GET', `${b.url}${PREFIX}/${id}`)).json.data).to.equal(winner);
    }
  });
});
