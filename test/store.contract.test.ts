import { expect } from 'chai';
import { Cluster, Redis } from 'ioredis';
import {
  MemoryStore,
  RedisStore,
  createRedisClient,
  redisOptions,
  whenReady,
  etagOf,
  type RedisClient,
  type SessionStore,
} from '../src/store';
import { loadConfig } from '../src/config';
import { newSessionIds } from '../src/ids';
import { sessionKey, txnKey } from '../src/store/keys';
import { sharedRedisUrl } from './helpers/redis';
import { sharedClusterSetup, sharedSentinelSetup } from './helpers/topologies';

interface Backend {
  /** Writes go through `a`; reads are checked through `b` (the same store, or a second connection). */
  a: SessionStore;
  b: SessionStore;
  redis?: RedisClient;
  close(): Promise<void>;
}

const TTL = 60_000;
const buf = (s: string) => Buffer.from(s);

async function redisBackend(twoConnections: boolean): Promise<Backend> {
  const url = await sharedRedisUrl();
  const opts = redisOptions({ redisCommandTimeoutMs: 2000 });
  const ca = new Redis(url, opts);
  const cb = twoConnections ? new Redis(url, opts) : ca;
  await Promise.all([whenReady(ca, 5000), whenReady(cb, 5000)]);
  const a = new RedisStore(ca, 4);
  const b = twoConnections ? new RedisStore(cb, 4) : a;
  const redis = new Redis(url);
  return {
    a,
    b,
    redis,
    async close() {
      await a.close();
      if (b !== a) await b.close();
      redis.disconnect();
    },
  };
}

/**
 * The same contract through Sentinel and Cluster clients, as the server builds them from its settings.
 * `inspect` is the client the tests look at raw keys through: it queues commands until it is ready,
 * so only the stores' own clients are under test.
 */
async function topologyBackend(env: Record<string, string>, inspect: () => Redis | Cluster): Promise<Backend> {
  const config = loadConfig({ ...env, RZ_REDIS_COMMAND_TIMEOUT_MS: '2000' });
  const ca = createRedisClient(config);
  const cb = createRedisClient(config);
  const redis = inspect();
  // A new Cluster client on a busy CI host has been seen to take more than 5 s to be ready.
  const ready = await Promise.all([whenReady(ca, 20_000), whenReady(cb, 20_000)]);
  expect(ready, "the stores' clients are ready").to.deep.equal([true, true]);
  const a = new RedisStore(ca, 4);
  const b = new RedisStore(cb, 4);
  return {
    a,
    b,
    redis,
    async close() {
      await Promise.all([a.close(), b.close()]);
      redis.disconnect();
    },
  };
}

const BACKENDS: [string, () => Promise<Backend>][] = [
  [
    'memory',
    async () => {
      const m = new MemoryStore(4);
      return { a: m, b: m, close: () => m.close() };
    },
  ],
  ['redis', () => redisBackend(false)],
  ['redis, two connections (as two replicas)', () => redisBackend(true)],
  [
    'redis sentinel, two connections',
    async () => {
      const setup = await sharedSentinelSetup();
      return topologyBackend(setup.env, () => createRedisClient(loadConfig(setup.env)));
    },
  ],
  [
    'redis cluster of 3 masters, two connections',
    async () => {
      const setup = await sharedClusterSetup();
      return topologyBackend(setup.env, () => setup.client());
    },
  ],
];

for (const [name, make] of BACKENDS) {
  describe(`session store contract: ${name}`, () => {
    let be: Backend;
    before(async () => {
      be = await make();
    });
    after(async () => {
      await be?.close();
    });

    async function created(data = 'hello', family: 'msc3886' | 'msc4108' | 'msc4388' = 'msc3886', ttlMs = TTL) {
      const ids = newSessionIds();
      const meta = await be.a.create({ ...ids, family, contentType: 'application/json', data: buf(data), ttlMs });
      expect(meta).to.not.equal(null);
      return meta!;
    }

    it('creates a session readable byte-exact with its metadata', async () => {
      const bytes = Buffer.from([0, 1, 2, 255, 254, 0x80, 10, 13]);
      const ids = newSessionIds();
      const meta = await be.a.create({
        ...ids,
        family: 'msc3886',
        contentType: 'application/x-test; q=1',
        data: bytes,
        ttlMs: TTL,
      });
      expect(meta).to.include({
        id: ids.id,
        tag: ids.tag,
        rev: 1,
        family: 'msc3886',
        contentType: 'application/x-test; q=1',
      });
      expect(meta!.expiresAt - meta!.createdAt).to.equal(TTL);
      const got = await be.b.get(ids.id, 'msc3886');
      expect(got!.data.equals(bytes)).to.equal(true);
      expect(got).to.include({
        rev: 1,
        tag: ids.tag,
        contentType: 'application/x-test; q=1',
        expiresAt: meta!.expiresAt,
      });
    });

    it('refuses to create over an existing id', async () => {
      const meta = await created();
      const again = await be.a.create({
        id: meta.id,
        tag: 'x',
        family: 'msc3886',
        contentType: 't',
        data: buf('other'),
        ttlMs: TTL,
      });
      expect(again).to.equal(null);
      expect((await be.b.get(meta.id, 'msc3886'))!.data.toString()).to.equal('hello');
    });

    it('hides a session from every other family', async () => {
      const meta = await created('x', 'msc4388');
      expect(await be.b.get(meta.id, 'msc3886')).to.equal(null);
      expect(await be.b.get(meta.id, 'msc4108')).to.equal(null);
      const upd = await be.a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 't',
        data: buf('y'),
      });
      expect(upd.status).to.equal('not_found');
      expect(await be.a.delete(meta.id, 'msc4108')).to.equal(false);
      expect((await be.b.get(meta.id, 'msc4388'))!.data.toString()).to.equal('x');
    });

    it('answers not found for unknown ids', async () => {
      const { id } = newSessionIds();
      expect(await be.b.get(id, 'msc3886')).to.equal(null);
      expect(
        (await be.a.update(id, { family: 'msc3886', condition: { kind: 'any' }, contentType: 't', data: buf('') }))
          .status,
      ).to.equal('not_found');
      expect(await be.a.delete(id, 'msc3886')).to.equal(false);
    });

    it('writes unconditionally, bumping the revision even for identical bytes', async () => {
      const meta = await created('same');
      const r1 = await be.a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 'text/x',
        data: buf('same'),
      });
      expect(r1.status).to.equal('updated');
      if (r1.status !== 'updated') return;
      expect(r1.session.rev).to.equal(2);
      expect(etagOf(r1.session)).to.not.equal(etagOf(meta));
      expect(r1.session.expiresAt).to.equal(meta.expiresAt);
      const got = await be.b.get(meta.id, 'msc3886');
      expect(got).to.include({ rev: 2, contentType: 'text/x' });
    });

    it('compares ETags and leaves the payload untouched on a mismatch', async () => {
      const meta = await created('v1');
      const miss = await be.a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: ['nope.1', `${meta.tag}.7`] },
        contentType: 't',
        data: buf('v2'),
      });
      expect(miss.status).to.equal('conflict');
      if (miss.status === 'conflict') expect(miss.session.rev).to.equal(1);
      expect((await be.b.get(meta.id, 'msc3886'))!.data.toString()).to.equal('v1');
      const hit = await be.a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: ['nope.1', etagOf(meta)] },
        contentType: 't',
        data: buf('v2'),
      });
      expect(hit.status).to.equal('updated');
      expect((await be.b.get(meta.id, 'msc3886'))!.data.toString()).to.equal('v2');
    });

    it('lets exactly one of many racing writers on one ETag win', async () => {
      const meta = await created('start');
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          (i % 2 === 0 ? be.a : be.b).update(meta.id, {
            family: 'msc3886',
            condition: { kind: 'etag', etags: [etagOf(meta)] },
            contentType: 't',
            data: buf(`writer-${i}`),
          }),
        ),
      );
      const winners = results.map((r, i) => [r.status, i] as const).filter(([s]) => s === 'updated');
      expect(winners).to.have.length(1);
      expect(results.filter((r) => r.status === 'conflict')).to.have.length(15);
      expect((await be.b.get(meta.id, 'msc3886'))!.data.toString()).to.equal(`writer-${winners[0]![1]}`);
    });

    it('compares sequence tokens and treats a stale token with identical data as a retry', async () => {
      const meta = await created('', 'msc4388');
      const w = await be.a.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1' },
        contentType: 't',
        data: buf('m1'),
      });
      expect(w.status).to.equal('updated');
      const retry = await be.b.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1' },
        contentType: 't',
        data: buf('m1'),
      });
      expect(retry.status).to.equal('unchanged');
      if (retry.status === 'unchanged') expect(retry.session.rev).to.equal(2);
      const stale = await be.b.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1' },
        contentType: 't',
        data: buf('m2'),
      });
      expect(stale.status).to.equal('conflict');
      const got = await be.b.get(meta.id, 'msc4388');
      expect(got).to.include({ rev: 2 });
      expect(got!.data.toString()).to.equal('m1');
    });

    it('replays the recorded outcome of a repeated transaction id, a conflict included', async () => {
      const meta = await created('', 'msc4388');
      const put = (rev: string, txnId: string, data: string, store = be.a) =>
        store.update(meta.id, {
          family: 'msc4388',
          condition: { kind: 'token', rev, txnId },
          contentType: 't',
          data: buf(data),
        });
      expect((await put('1', 't1', 'a')).status).to.equal('updated');
      expect((await put('1', 't2', 'b')).status).to.equal('conflict');
      expect((await put('2', 't3', 'c')).status).to.equal('updated');
      const r1 = await put('1', 't1', 'a', be.b);
      expect(r1).to.deep.include({ status: 'replayed', outcome: 'updated', rev: 2 });
      const r2 = await put('3', 't2', 'zzz', be.b);
      expect(r2).to.deep.include({ status: 'replayed', outcome: 'conflict', rev: 2 });
      expect((await be.b.get(meta.id, 'msc4388'))!.data.toString()).to.equal('c');
    });

    it('bounds the transaction ids remembered per session', async () => {
      const meta = await created('', 'msc4388');
      for (let i = 0; i < 4; i++) {
        await be.a.update(meta.id, {
          family: 'msc4388',
          condition: { kind: 'token', rev: '99', txnId: `t${i}` },
          contentType: 't',
          data: buf('x'),
        });
      }
      const over = await be.a.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1', txnId: 'new' },
        contentType: 't',
        data: buf('x'),
      });
      expect(over.status).to.equal('txn_limit');
      expect((await be.b.get(meta.id, 'msc4388'))!.rev).to.equal(1);
    });

    it('deletes a session, its records included', async () => {
      const meta = await created('', 'msc4388');
      await be.a.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1', txnId: 't' },
        contentType: 't',
        data: buf('x'),
      });
      expect(await be.a.delete(meta.id, 'msc4388')).to.equal(true);
      expect(await be.b.get(meta.id, 'msc4388')).to.equal(null);
      expect(await be.b.delete(meta.id, 'msc4388')).to.equal(false);
      if (be.redis) expect(await be.redis.exists(sessionKey(meta.id), txnKey(meta.id))).to.equal(0);
    });

    it('expires a session at its expiry, never extended by writes', async () => {
      const meta = await created('short', 'msc3886', 300);
      const w = await be.a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 't',
        data: buf('x'),
      });
      if (w.status === 'updated') expect(w.session.expiresAt).to.equal(meta.expiresAt);
      if (be.redis) expect(await be.redis.pexpiretime(sessionKey(meta.id))).to.equal(meta.expiresAt);
      // Wait for the deadline itself (the event under test), then look from every side.
      await new Promise((r) => setTimeout(r, meta.expiresAt - Date.now() + 20));
      expect(await be.b.get(meta.id, 'msc3886')).to.equal(null);
      expect(
        (
          await be.a.update(meta.id, {
            family: 'msc3886',
            condition: { kind: 'any' },
            contentType: 't',
            data: buf('y'),
          })
        ).status,
      ).to.equal('not_found');
      if (be.redis) expect(await be.redis.exists(sessionKey(meta.id))).to.equal(0);
    });
  });
}

describe('memory store housekeeping', () => {
  it('sweeps expired sessions so memory stays bounded', async () => {
    let now = 1_000_000;
    const m = new MemoryStore(4, 60_000, () => now);
    for (let i = 0; i < 100; i++)
      await m.create({ ...newSessionIds(), family: 'msc3886', contentType: 't', data: buf('x'), ttlMs: 1000 });
    expect(m.size).to.equal(100);
    now += 1001;
    m.sweep();
    expect(m.size).to.equal(0);
    await m.close();
  });
});
