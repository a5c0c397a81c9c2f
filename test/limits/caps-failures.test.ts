import { expect } from 'chai';
import { Redis, type Cluster } from 'ioredis';
import type { Logger } from 'pino';
import { loadConfig } from '../../src/config';
import { newSessionIds } from '../../src/ids';
import { createLogger } from '../../src/logger';
import {
  CAPS_BY_ADDRESS_KEY,
  CAPS_JOURNAL_DETAILS_KEY,
  CAPS_JOURNAL_KEY,
  CAPS_KEY,
  sessionKey,
} from '../../src/store/format';
import { ClusterRedisSessions, createRedisBackend } from '../../src/store/redis';
import { MAX_SETTLING } from '../../src/store/redis/sessions';
import { defineScripts } from '../../src/store/redis/scripts';
import type { Backend, CreateInput, SessionMeta } from '../../src/store/types';
import { RedisServer } from '../helpers/redis';
import { ClusterSetup, until } from '../helpers/topologies';

const OWNER = '192.0.2.77';
const TIMEOUT_MS = 300;

const input = (id = newSessionIds().id): CreateInput => ({
  id,
  tag: 'salt',
  family: 'msc3886',
  contentType: 'text/plain',
  data: Buffer.from('x'),
  ttlMs: 60_000,
  owner: OWNER,
});

async function backendOn(env: Record<string, string>): Promise<Backend> {
  const config = loadConfig({ ...env, RZ_REDIS_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS) });
  return createRedisBackend(
    {
      redis: config,
      caps: { global: 100, perAddress: 50 },
      maxTxnsPerSession: 4,
      allowEviction: false,
      connectWaitMs: 20_000,
    },
    createLogger({ logLevel: 'silent' }),
  );
}

/**
 * The caps counted, and the sessions that exist, agree: every session counted, no slot held for a
 * session that is not there. `ids` are the sessions a test tried to make; `client` looks at keys.
 */
async function expectExact(backend: Backend, client: Redis | Cluster, ids: string[]): Promise<void> {
  // Read through the store: a deleted session's tombstone (Cluster) is no session.
  const found = await Promise.all(ids.map((id) => backend.sessions.get(id, 'msc3886')));
  const present = found.filter((s) => s !== null).length;
  const counts = await backend.sessions.counts();
  expect(counts.live, 'live sessions counted').to.equal(present);
  const owner = (await client.hget(CAPS_BY_ADDRESS_KEY, OWNER)) ?? '';
  const ownerCount = [...owner.matchAll(/\d+:(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  expect(ownerCount, 'sessions counted for their address').to.equal(present);
}

describe('session caps when a step fails (Redis Cluster: claim and create are separate steps)', function () {
  this.timeout(60_000);
  let setup: ClusterSetup;
  let backend: Backend;
  let admin: Cluster;

  before(async () => {
    setup = await ClusterSetup.start();
    backend = await backendOn(setup.env);
    admin = setup.client();
  });
  after(async () => {
    await backend?.close();
    admin?.disconnect();
    await setup?.destroy();
  });
  beforeEach(async () => {
    await admin.del(CAPS_KEY, CAPS_BY_ADDRESS_KEY);
  });

  /** The port of the master that holds `key`. */
  async function portOf(key: string): Promise<number> {
    const slot = (await admin.call('CLUSTER', 'KEYSLOT', key)) as number;
    const ranges = (await admin.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
  }

  /** A direct connection to the master that holds `key`. */
  async function masterOf(key: string): Promise<Redis> {
    return new Redis({ host: '127.0.0.1', port: await portOf(key) });
  }

  /** How a create of `id` ends: 'created', or the name of the error it fails with. */
  const createOutcome = (id: string): Promise<string> =>
    backend.sessions.create(input(id)).then(
      () => 'created',
      (err: Error) => err.name,
    );

  /** A session id on another node than the caps, so each step can be broken alone. */
  async function idApartFromCaps(): Promise<string> {
    const caps = await portOf(CAPS_KEY);
    for (;;) {
      const { id } = newSessionIds();
      if ((await portOf(sessionKey(id))) !== caps) return id;
    }
  }

  it('gives the claim back when the create is refused by its node (script error: out of memory)', async () => {
    const id = await idApartFromCaps();
    const node = await masterOf(sessionKey(id));
    try {
      await node.config('SET', 'maxmemory', '1');
      await node.config('SET', 'maxmemory-policy', 'noeviction');
      const error = await backend.sessions.create(input(id)).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(error?.name).to.equal('StoreUnavailableError');
      // Settled while the node is still full: the claim must not wait for memory to free.
      await (backend.sessions as ClusterRedisSessions).reconciled();
      await expectExact(backend, admin, [id]);
    } finally {
      await node.config('SET', 'maxmemory', '0');
      node.disconnect();
    }
  });

  it('keeps the caps exact when the connection is cut with the create waiting in it', async () => {
    const id = await idApartFromCaps();
    const node = await masterOf(sessionKey(id));
    try {
      await node.call('CLIENT', 'PAUSE', '5000', 'WRITE');
      const creating = createOutcome(id);
      await until('the create to wait in Redis', async () =>
        /flags=b/.test((await node.call('CLIENT', 'LIST')) as string),
      );
      await node.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      expect(await creating).to.equal('StoreUnavailableError');
    } finally {
      await node.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      node.disconnect();
    }
    // The client may send it again once reconnected (ioredis's Cluster does): counted if it landed.
    await (backend.sessions as ClusterRedisSessions).reconciled();
    await expectExact(backend, admin, [id]);
  });

  it('keeps the count of a create that landed after its answer was lost', async () => {
    const id = await idApartFromCaps();
    const node = await masterOf(sessionKey(id));
    try {
      // Held past the command timeout but within the claim's grace: it lands after the 503.
      await node.call('CLIENT', 'PAUSE', String(TIMEOUT_MS * 2), 'WRITE');
      const outcome = await createOutcome(id);
      expect(outcome).to.equal('StoreUnavailableError');
    } finally {
      node.disconnect();
    }
    await until('the create to land', async () => (await admin.exists(sessionKey(id))) === 1);
    // The replica looks at it after the claim's deadline, finds it, and keeps its count.
    await (backend.sessions as ClusterRedisSessions).reconciled();
    await expectExact(backend, admin, [id]);
  });

  it('gives the claim back when the tombstone that settles its create lands after its answer was lost', async () => {
    const id = await idApartFromCaps();
    const capsNode = await masterOf(CAPS_KEY);
    const node = await masterOf(sessionKey(id));
    try {
      // Both nodes held past two command timeouts: the claim times out (and lands later), and so does
      // the first tombstone put in the create's place; its retry then finds that very tombstone there.
      await Promise.all([capsNode, node].map((n) => n.call('CLIENT', 'PAUSE', String(TIMEOUT_MS * 3), 'WRITE')));
      const outcome = await createOutcome(id);
      expect(outcome).to.equal('StoreUnavailableError');
    } finally {
      capsNode.disconnect();
      node.disconnect();
    }
    await (backend.sessions as ClusterRedisSessions).reconciled();
    // A write in the caps' slot waits out the pause, after the claim queued before it: it has landed.
    await admin.set(`${CAPS_KEY}:probe`, '1', 'PX', 1000);
    await expectExact(backend, admin, [id]);
  });

  it('counts a claim and a create sent twice (re-sent after a dropped connection) once', async () => {
    const id = await idApartFromCaps();
    const scripts = defineScripts(admin);
    const journal = [CAPS_KEY, CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_KEY, CAPS_JOURNAL_DETAILS_KEY];
    const claim = () => scripts.rzClaimSlot(...journal, id, OWNER, 60_000, 100, 50, 120_000);
    const first = await claim();
    expect(await claim()).to.deep.equal(first);
    const [, created, expires] = first as number[];
    const make = () =>
      scripts.rzCreateClaimedSession(sessionKey(id), 'msc3886', 'text/plain', 'x', created!, expires!, 'salt', OWNER);
    expect(await make()).to.equal(1);
    expect(await make()).to.equal(1);
    await expectExact(backend, admin, [id]);
  });

  it('answers a delete sent twice 404 the second time, freeing the slots once', async () => {
    const ids = [await idApartFromCaps(), await idApartFromCaps()];
    for (const id of ids) expect((await backend.sessions.create(input(id))).status).to.equal('created');
    expect(await backend.sessions.delete(ids[0]!, 'msc3886')).to.equal(true);
    expect(await backend.sessions.delete(ids[0]!, 'msc3886')).to.equal(false);
    await (backend.sessions as ClusterRedisSessions).reconciled();
    await expectExact(backend, admin, ids);
  });

  it('frees the slots of a deleted session even when freeing fails at first', async () => {
    const ids = [await idApartFromCaps(), await idApartFromCaps()];
    for (const id of ids) expect((await backend.sessions.create(input(id))).status).to.equal('created');
    const capsNode = await masterOf(CAPS_KEY);
    try {
      await capsNode.call('CLIENT', 'PAUSE', String(TIMEOUT_MS * 3), 'WRITE');
      // The delete itself succeeds; freeing its slots times out, and is retried.
      expect(await backend.sessions.delete(ids[0]!, 'msc3886')).to.equal(true);
    } finally {
      capsNode.disconnect();
    }
    await (backend.sessions as ClusterRedisSessions).reconciled();
    expect(await backend.sessions.get(ids[0]!, 'msc3886')).to.equal(null);
    await expectExact(backend, admin, ids);
  });

  it('frees the slots of a session whose delete landed after its answer was lost', async () => {
    const ids = [await idApartFromCaps(), await idApartFromCaps()];
    for (const id of ids) expect((await backend.sessions.create(input(id))).status).to.equal('created');
    const node = await masterOf(sessionKey(ids[0]!));
    try {
      await node.call('CLIENT', 'PAUSE', String(TIMEOUT_MS * 2), 'WRITE');
      const outcome = await backend.sessions.delete(ids[0]!, 'msc3886').catch((err: Error) => err.name);
      expect(outcome).to.equal('StoreUnavailableError');
    } finally {
      node.disconnect();
    }
    await (backend.sessions as ClusterRedisSessions).reconciled();
    expect(await backend.sessions.get(ids[0]!, 'msc3886')).to.equal(null);
    await expectExact(backend, admin, ids);
  });

  it('leaves no retry behind once the backend is closed, however long a step keeps failing', async () => {
    const closing = await backendOn(setup.env);
    // Freeing a deleted session's slots keeps failing (its node unreachable, say): retried with backoff.
    let attempts = 0;
    const client = (closing.sessions as ClusterRedisSessions).client as unknown as Record<string, unknown>;
    client.rzReleaseSlot = () => (attempts++, Promise.reject(new Error('unreachable')));
    const id = await idApartFromCaps();
    expect((await closing.sessions.create(input(id))).status).to.equal('created');
    expect(await closing.sessions.delete(id, 'msc3886')).to.equal(true);
    await until('a retry to fail', async () => attempts > 1);
    await closing.close();
    const sent = attempts;
    // Past the next retry the backoff would have made (at most 5 s apart).
    await new Promise((resolve) => setTimeout(resolve, 5500));
    expect(attempts, 'attempts after the backend closed').to.equal(sent);
  });
});

describe('cap bookkeeping left to settle on Redis Cluster, bounded', () => {
  it(`keeps at most MAX_SETTLING steps to settle, and says what it gives up beyond them`, async () => {
    // Every claim's answer is lost, and every tombstone that would settle it hangs: each create
    // leaves one step to settle, none of which ends until the test lets it.
    const hanging: (() => void)[] = [];
    let tombstones = 0;
    const client = {
      defineCommand: () => undefined,
      rzClaimSlot: () => Promise.reject(new Error('Command timed out')),
      rzPlaceTombstone: () => (tombstones++, new Promise<number>((resolve) => hanging.push(() => resolve(0)))),
    };
    const warnings: [Record<string, unknown>, string][] = [];
    const log = { warn: (fields: Record<string, unknown>, msg: string) => void warnings.push([fields, msg]) };
    const sessions = new ClusterRedisSessions(
      client as unknown as Cluster,
      { caps: { global: 100, perAddress: 50 }, maxTxnsPerSession: 4, commandTimeoutMs: 1000 },
      log as unknown as Logger,
    );
    try {
      const lostCreates = MAX_SETTLING + 3;
      for (let i = 0; i < lostCreates; i++) {
        expect(await createFails(sessions)).to.equal('StoreUnavailableError');
      }
      expect(tombstones, 'steps taken on').to.equal(MAX_SETTLING);
      // Told in throttled lines (not one per step given up), naming what is lost and until when.
      expect(warnings.length).to.be.within(1, lostCreates - MAX_SETTLING);
      for (const [fields, msg] of warnings) {
        expect(msg).to.equal(
          'too many cap bookkeeping steps left to settle: one is given up; its slot frees when its session would have expired',
        );
        expect(fields).to.include({ step: 'settle a create', limit: MAX_SETTLING });
      }
      // Once the steps settle, there is room again.
      for (const settle of hanging.splice(0)) settle();
      await sessions.reconciled();
      expect(await createFails(sessions)).to.equal('StoreUnavailableError');
      expect(tombstones).to.equal(MAX_SETTLING + 1);
    } finally {
      for (const settle of hanging.splice(0)) settle();
      sessions.stop();
    }
  });
});

/** The name of the error a create fails with ('created' if it does not). */
const createFails = (sessions: ClusterRedisSessions): Promise<string> =>
  sessions.create(input()).then(
    () => 'created',
    (err: Error) => err.name,
  );

describe('session caps when a step fails (one Redis node: one script, all or nothing)', function () {
  this.timeout(30_000);
  let redis: RedisServer;
  let backend: Backend;
  let admin: Redis;

  before(async () => {
    redis = await RedisServer.start();
    backend = await backendOn({ REDIS_URL: redis.url });
    admin = redis.client();
  });
  // This suite's own Redis: each test starts from no session and no count.
  beforeEach(async () => {
    await admin.flushall();
  });
  after(async () => {
    await backend?.close();
    admin?.disconnect();
    await redis?.destroy();
  });

  it('counts nothing when the create never ran (connection cut while it waited)', async () => {
    const { id } = newSessionIds();
    await admin.call('CLIENT', 'PAUSE', '5000', 'WRITE');
    const creating = backend.sessions.create(input(id)).catch((err: Error) => err.name);
    await until('the create to wait in Redis', async () =>
      /flags=b/.test((await admin.call('CLIENT', 'LIST')) as string),
    );
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await admin.call('CLIENT', 'UNPAUSE');
    expect(await creating).to.equal('StoreUnavailableError');
    await until('the replica to reconnect', () => backend.ping().then(() => true));
    await expectExact(backend, admin, [id]);
  });

  /** The create script called directly, as a replica sends it, with a global cap of 100. */
  const scriptedCreate = (id: string, salt: string, perAddressCap: number) =>
    defineScripts(admin).rzCreateSession(
      sessionKey(id),
      CAPS_KEY,
      CAPS_BY_ADDRESS_KEY,
      'msc3886',
      't',
      'x',
      60_000,
      salt,
      OWNER,
      100,
      perAddressCap,
    );

  it('counts a create sent twice (same session, same salt) once', async () => {
    const { id } = newSessionIds();
    const create = () => scriptedCreate(id, 'salt', 50);
    const first = await create();
    expect(first[0]).to.equal(1);
    expect(await create()).to.deep.equal(first);
    await expectExact(backend, admin, [id]);
  });

  it('answers a create sent twice as made when the first filled the cap, refusing any other', async () => {
    const create = (id: string, salt: string) => scriptedCreate(id, salt, 1);
    const { id } = newSessionIds();
    const first = await create(id, 'salt');
    expect(first[0]).to.equal(1);
    // The owner's one slot is taken by this very session: its re-send is answered, counted once.
    expect(await create(id, 'salt')).to.deep.equal(first);
    // Another session of the owner is refused; the same id with another salt is taken.
    expect((await create(newSessionIds().id, 'other'))[0]).to.equal(0);
    expect(await create(id, 'other')).to.deep.equal([-1]);
    await expectExact(backend, admin, [id]);
  });

  it('drops the addresses whose sessions have all expired as creates go on', async () => {
    const past = Math.floor(Date.now() / 1000) - 5;
    const stale = Array.from({ length: 400 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    await admin.hset(CAPS_BY_ADDRESS_KEY, Object.fromEntries(stale.map((owner) => [owner, `${past}:1`])));
    // 400 creates under the global cap of 100: the first 40 stay, one per address; the rest are deleted.
    for (let i = 0; i < 400; i++) {
      const made = await backend.sessions.create({ ...input(newSessionIds().id), owner: `192.0.2.${i % 40}` });
      expect(made.status, `create ${i}`).to.equal('created');
      if (i >= 40)
        expect(await backend.sessions.delete((made as { session: SessionMeta }).session.id, 'msc3886')).to.equal(true);
    }
    expect((await admin.hmget(CAPS_BY_ADDRESS_KEY, ...stale)).filter((v) => v !== null)).to.deep.equal([]);
    // Every address with a live session keeps its count.
    const live = await admin.hmget(CAPS_BY_ADDRESS_KEY, ...Array.from({ length: 40 }, (_, i) => `192.0.2.${i}`));
    for (const list of live)
      expect([...list!.matchAll(/\d+:(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)).to.equal(1);
    expect((await backend.sessions.counts()).live).to.equal(40);
  });

  /** A counted session, and one in the previous release's layout (no owner, no count in these caps). */
  async function countedAndPreviousRelease(): Promise<{ counted: string; old: string }> {
    const counted = newSessionIds().id;
    expect((await backend.sessions.create(input(counted))).status).to.equal('created');
    const old = newSessionIds().id;
    const expires = Date.now() + 60_000;
    await admin.set(
      sessionKey(old),
      `msc3886 1 salt ${Date.now()} ${Date.now()} ${expires} text/plain\nolder`,
      'PXAT',
      expires,
    );
    return { counted, old };
  }

  it('reads and deletes a session of the previous release, freeing no slot it never held', async () => {
    const { counted, old } = await countedAndPreviousRelease();
    expect((await backend.sessions.get(old, 'msc3886'))?.data.toString()).to.equal('older');
    expect(await backend.sessions.delete(old, 'msc3886')).to.equal(true);
    await expectExact(backend, admin, [counted, old]);
  });

  it('keeps a session of the previous release uncounted when it is written before its delete', async () => {
    const { counted, old } = await countedAndPreviousRelease();
    const written = await backend.sessions.update(old, {
      family: 'msc3886',
      condition: { kind: 'any' },
      contentType: 'text/plain',
      data: Buffer.from('newer'),
    });
    expect(written.status).to.equal('updated');
    expect(await backend.sessions.delete(old, 'msc3886')).to.equal(true);
    await expectExact(backend, admin, [counted, old]);
  });

  it('counts a create that landed after its answer was lost, and frees it on delete', async () => {
    const { id } = newSessionIds();
    await admin.call('CLIENT', 'PAUSE', String(TIMEOUT_MS * 2), 'WRITE');
    expect(await backend.sessions.create(input(id)).catch((err: Error) => err.name)).to.equal('StoreUnavailableError');
    await until('the create to land', async () => (await admin.exists(sessionKey(id))) === 1);
    await expectExact(backend, admin, [id]);
    expect(await backend.sessions.delete(id, 'msc3886')).to.equal(true);
    await expectExact(backend, admin, [id]);
  });
});
