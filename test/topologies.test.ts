import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config';
import { start, type RunningServer } from '../src/main';
import { rateWindowKey, sessionKey, wakeChannel } from '../src/store/format';
import { createRedisClient, RedisSessions } from '../src/store/redis';
import type { Family } from '../src/store/types';
import { Scrape } from './helpers/metrics';
import { everyFamilyExchange, msc3886Exchange, req } from './helpers/exchange';
import { heldGet, waiting } from './helpers/longpoll';
import type { RedisServer } from './helpers/redis';
import {
  ClusterSetup,
  SentinelSetup,
  SlotMigration,
  sharedClusterSetup,
  sharedSentinelSetup,
  until,
} from './helpers/topologies';

/**
 * One test client plays every device here, so the per-address budgets are off; the global session
 * cap stays on, so its script runs on every topology too.
 */
const ONE_CLIENT_IS_MANY = { RZ_REQUEST_RATE: '0', RZ_CREATE_RATE: '0', RZ_MAX_SESSIONS_PER_ADDRESS: '0' };

/**
 * A replica on the topology, once it is ready and its long-poll subscriber is connected: a new client
 * learns the topology (a Cluster's slot map, its shard subscribers) before it serves, which on a busy
 * machine can outlast the start-up wait; until then the replica rightly answers 503, and its waits
 * could only end at their timeout.
 */
async function serve(env: Record<string, string>): Promise<RunningServer> {
  const server = await start(
    loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...ONE_CLIENT_IS_MANY, ...env }),
  );
  const ready = `http://127.0.0.1:${server.port}/ready`;
  await until('a new replica to be ready', async () => (await req(ready)).status === 200);
  expect(await server.longPoll.notifier.connected(20_000), 'subscriber connected').to.equal(true);
  return server;
}

/**
 * A long-poll held on replica A is woken by a write on replica B: the wake-up crossed the topology.
 * `beforeWrite` runs while the wait is held, just before the write (to break something first).
 */
async function crossReplicaWake(env: Record<string, string>, beforeWrite?: () => Promise<void>): Promise<void> {
  const [a, b] = await Promise.all([serve(env), serve(env)]);
  try {
    const baseA = `http://127.0.0.1:${a.port}`;
    const baseB = `http://127.0.0.1:${b.port}`;
    const created = await unlessBusy(() => req(`${baseB}/`, { method: 'POST', body: 'first' }));
    const id = ((await created.json()) as { id: string }).id;
    const etag = created.headers.get('ETag')!;
    // The held GET, once it waits (a 503 from a replica whose Cluster client is still settling is
    // asked again, as clients do; any other early answer fails the test).
    let held: ReturnType<typeof heldGet> | undefined;
    for (let attempt = 0; held === undefined; attempt++) {
      const isWaiting = waiting(a.longPoll);
      const get = heldGet(`${baseA}/${id}`, etag, 60);
      const early = await Promise.race([isWaiting.then(() => undefined), get.response]);
      if (early === undefined) held = get;
      else if (early.status !== 503 || attempt === 4) {
        throw new Error(`the held GET was answered before it waited: ${early.status} ${early.body}`);
      } else await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await beforeWrite?.();
    expect((await unlessBusy(() => req(`${baseB}/${id}`, { method: 'PUT', body: 'second' }))).status).to.equal(202);
    const res = await held.response;
    expect(res.status).to.equal(200);
    expect(res.body).to.equal('second');
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

/** A request asked again (up to 5 times) while the replica answers 503, as clients do. */
async function unlessBusy(send: () => Promise<Response>): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    const res = await send();
    if (res.status !== 503 || attempt === 4) return res;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function createSession(base: string, body: string): Promise<string> {
  const res = await req(`${base}/`, { method: 'POST', body });
  expect(res.status).to.equal(200);
  return ((await res.json()) as { id: string }).id;
}

describe('Redis Sentinel', () => {
  it('serves an exchange of every family through the master the Sentinels name', async () => {
    const setup = await sharedSentinelSetup();
    const server = await serve(setup.env);
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect((await req(`${base}/ready`)).status).to.equal(200);
      await everyFamilyExchange(base);
    } finally {
      await server.stop();
    }
  });

  it('wakes a long-poll on one replica with a write on another', async () => {
    await crossReplicaWake((await sharedSentinelSetup()).env);
  });

  describe('failover of the master mid-run', () => {
    let setup: SentinelSetup;
    let server: RunningServer;
    before(async () => {
      setup = await SentinelSetup.start();
      server = await serve({ ...setup.env, RZ_REDIS_COMMAND_TIMEOUT_MS: '500' });
    });
    after(async () => {
      await server?.stop();
      await setup?.destroy();
    });

    it('keeps replicated sessions, answers 503 (never hangs) during it, and resumes by itself', async () => {
      const base = `http://127.0.0.1:${server.port}`;
      const sessions = new Map<string, string>();
      for (let i = 0; i < 20; i++) {
        const body = `before-failover-${i}`;
        sessions.set(await createSession(base, 'x'), body);
      }
      for (const [id, body] of sessions) {
        expect((await req(`${base}/${id}`, { method: 'PUT', body })).status).to.equal(202);
      }
      // The guarantee is "what reached the replica survives": make sure it did before the crash.
      const direct = setup.master.client();
      expect(await direct.wait(1, 5000)).to.equal(1);
      direct.disconnect();

      const oldPort = await setup.masterPort();
      const switched = await setup.switchMaster();
      await setup.master.stop('SIGKILL');

      // Until the Sentinels promote the replica there is no master: every request gets an answer.
      const during: number[] = [];
      let done = false;
      const moved = switched.wait.then((m) => ((done = true), m));
      const anyId = [...sessions.keys()][0]!;
      while (!done) {
        const [read, ready] = await Promise.all([req(`${base}/${anyId}`), req(`${base}/ready`)]);
        during.push(read.status);
        if (read.status === 503) {
          // In service all along (RZ_READINESS=startup): its answers are the server's own 503s.
          expect(ready.status).to.equal(200);
          expect(read.headers.get('Retry-After')).to.equal('1');
          expect(((await read.json()) as { errcode: string }).errcode).to.equal('M_UNKNOWN');
        }
        // A 404 here would mean a session was lost, not that the store is away.
        expect(read.status).to.be.oneOf([200, 503]);
      }
      expect(during).to.include(503);
      expect((await moved).split(' ')[4]).to.equal(String(setup.replica.port));
      expect(await setup.masterPort()).to.not.equal(oldPort);

      // The same process, not restarted, serves again once its client has found the new master.
      await until('the replica to reach the store again', async () => {
        const ready = (await (await req(`${base}/ready`)).json()) as { storeReachable?: boolean };
        return ready.storeReachable === true;
      });
      for (const [id, body] of sessions) {
        const res = await req(`${base}/${id}`);
        expect(res.status).to.equal(200);
        expect(await res.text()).to.equal(body);
      }
      await msc3886Exchange(base);
      // The long-poll subscriber found the new master too: a write wakes a held GET again.
      const [id, body] = [...sessions][0]!;
      const etag = (await req(`${base}/${id}`)).headers.get('ETag')!;
      const isWaiting = waiting(server.longPoll);
      const held = heldGet(`${base}/${id}`, etag, 60);
      await isWaiting;
      expect((await req(`${base}/${id}`, { method: 'PUT', body: `${body} after` })).status).to.equal(202);
      expect((await held.response).body).to.equal(`${body} after`);
    });
  });
});

describe('Redis Sentinel: failover with the whole service in motion', function () {
  this.timeout(60_000);
  let setup: SentinelSetup;
  before(async () => {
    setup = await SentinelSetup.start();
  });
  after(async () => {
    await setup?.destroy();
  });

  it('wakes held long-polls, replays a lost write re-sent verbatim and settles rate counts after it', async () => {
    await serviceThroughFailover({
      env: setup.env,
      ownerOf: async () => ((await setup.masterPort()) === setup.master.port ? setup.master : setup.replica),
      failOver: async (master) => {
        expect(master).to.equal(setup.master);
        const switched = await setup.switchMaster();
        await setup.master.stop('SIGKILL');
        await switched.wait;
      },
    });
  });
});

describe('Redis Cluster (3 masters)', () => {
  let setup: ClusterSetup;
  let server: RunningServer;
  let base: string;
  before(async () => {
    setup = await sharedClusterSetup();
    server = await serve(setup.env);
    base = `http://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server?.stop();
  });

  it('serves an exchange of every family', async () => {
    expect((await req(`${base}/ready`)).status).to.equal(200);
    await everyFamilyExchange(base);
  });

  it('spreads sessions over every master, each session whole on one node', async () => {
    const live = async () => (await Scrape.of(`${base}/metrics`)).value('rendezvous_sessions_live');
    const liveBefore = await live();
    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => createSession(base, `s${i}`)));
    // The gauge reads the global cap's set, one key on one shard, at scrape time.
    expect((await live()) - liveBefore).to.equal(30);
    const holders = new Set<number>();
    for (const node of setup.nodes) {
      const c = node.client();
      try {
        for (const id of ids) {
          // A node answers MOVED for keys it does not own: exactly one owns each session.
          const owned = await c.exists(sessionKey(id)).then(
            (n) => n === 1,
            () => false,
          );
          if (owned) holders.add(node.port);
        }
      } finally {
        c.disconnect();
      }
    }
    expect(holders.size).to.equal(3);
    for (const id of ids) expect((await req(`${base}/${id}`)).status).to.equal(200);
  });

  it('wakes a long-poll on one replica with a write on another (sharded subscriber per shard)', async () => {
    // Several sessions, so the waits land on different shards.
    for (let i = 0; i < 3; i++) await crossReplicaWake(setup.env);
  });

  it('keeps long-polls waking after the shard subscriber connections are killed', async () => {
    // The write lands while A's subscriber may still be reconnecting: the notice can be lost, the
    // re-read after the subscribers are back must not be.
    await crossReplicaWake(setup.env, async () => {
      let killed = 0;
      for (const node of setup.nodes) {
        const admin = node.client();
        killed += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
        admin.disconnect();
      }
      expect(killed).to.be.at.least(1);
    });
  });

  it('counts a request refused by a slot migrating for longer than its redirections last as a cluster failure', async () => {
    const path = '/_matrix/client/v1/rendezvous';
    const created = await req(`${base}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ data: 'p0' }),
    });
    const { id, sequence_token: token } = (await created.json()) as { id: string; sequence_token: string };
    const write = (txn: string, data: string, version: string) =>
      req(`${base}${path}/${id}/${txn}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sequence_token: version, data }),
      });
    // A transaction record: a second key of the session, left behind when the session's key moves.
    const first = await write('t1', 'p1', token);
    expect(first.status).to.equal(200);
    const version = ((await first.json()) as { sequence_token: string }).sequence_token;
    const { slot, owner } = await setup.slotOf(sessionKey(id));
    const migration = new SlotMigration(
      setup,
      [slot],
      owner,
      setup.nodes.find((n) => n !== owner)!,
    );
    try {
      await migration.open();
      await migration.move([sessionKey(id)]);
      // Half migrated until the test moves the rest: every try of the write's script is TRYAGAIN.
      const before = await Scrape.of(`${base}/metrics`);
      const res = await write('t2', 'p2', version);
      expect(res.status).to.equal(503);
      expect(res.headers.get('Retry-After')).to.equal('1');
      const after = await Scrape.of(`${base}/metrics`);
      // The write's own errors: background calls (rate settlement) may meet the migration too.
      const delta = (reason: string) =>
        after.value('rendezvous_redis_errors_total', { operation: 'update', reason }) -
        before.value('rendezvous_redis_errors_total', { operation: 'update', reason });
      expect({ cluster: delta('cluster'), connection: delta('connection'), timeout: delta('timeout') }).to.deep.equal({
        cluster: 1,
        connection: 0,
        timeout: 0,
      });
      for (const key of await migration.keysLeft(slot)) await migration.move([key]);
      await migration.close();
    } finally {
      migration.end();
    }
    // Once the slot has moved, the same write sent again is served.
    expect((await write('t2', 'p2', version)).status).to.equal(200);
  });

  it('publishes write and delete wake-ups on the sharded channel of the session slot', async () => {
    const id = await createSession(base, 'x');
    const any = setup.nodes[0]!.client();
    const slot = (await any.call('CLUSTER', 'KEYSLOT', sessionKey(id))) as number;
    const channelSlot = (await any.call('CLUSTER', 'KEYSLOT', wakeChannel(id))) as number;
    const ranges = (await any.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    any.disconnect();
    const owner = ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
    // The wake channel hashes like the session's keys, so the node that owns them carries it too.
    expect(channelSlot).to.equal(slot);
    const sub = new Redis({ port: owner, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    await sub.ssubscribe(wakeChannel(id));
    const messages: string[] = [];
    const twoMessages = new Promise<void>((resolve) =>
      sub.on('smessage', (_channel: string, message: string) => {
        messages.push(message);
        if (messages.length === 2) resolve();
      }),
    );
    expect((await req(`${base}/${id}`, { method: 'PUT', body: 'y' })).status).to.equal(202);
    expect((await req(`${base}/${id}`, { method: 'DELETE' })).status).to.equal(204);
    await twoMessages;
    sub.disconnect();
    // A write's notice is the new stored value (header line, then the payload); a delete's is `deleted`.
    expect(messages[0]).to.match(/^@\S+ msc3886 2 \S+ \d+ \d+ \d+ text\/plain[^\n]*\ny$/);
    expect(messages[1]).to.equal('deleted');
  });
});

describe('Redis Cluster: failover of a master with the whole service in motion', function () {
  this.timeout(60_000);
  let setup: ClusterSetup;
  before(async () => {
    setup = await ClusterSetup.start(1);
  });
  after(async () => {
    await setup?.destroy();
  });

  it('wakes held long-polls, replays a lost write re-sent verbatim and settles rate counts after it', async () => {
    await serviceThroughFailover({
      env: setup.env,
      ownerOf: async (key) => (await setup.slotOf(key)).owner,
      failOver: async (master) => {
        await setup.failOver(master);
      },
    });
  });
});

const MSC4108_PATH = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388_PATH = '/_matrix/client/v1/rendezvous';

/** A write as a client sends it: against `version`, with `payload`; sent again verbatim after a 503. */
interface Write {
  version: string;
  payload: string;
  txn: string;
}

/** What the test needs of one protocol family: create, compare-and-set, read, hold, delete. */
interface FamilyClient {
  name: string;
  create(base: string): Promise<{ id: string; path: string; version: string; payload: string }>;
  write(base: string, path: string, w: Write): Promise<Response>;
  /** The status of a won and of a lost compare-and-set, and of a delete. */
  won: number;
  lost: number;
  deleted: number;
  /** The new version a won write answers with. */
  versionAfter(res: Response): Promise<string>;
  payloadOf(res: Response): Promise<string>;
  /** A read held until the session differs from `version` (a long-poll). */
  hold(base: string, path: string, version: string): Promise<Response>;
}

const etagFamily = (
  name: string,
  post: (base: string) => Promise<{ id: string; path: string; res: Response; payload: string }>,
): FamilyClient => ({
  name,
  async create(base) {
    const { id, path, res, payload } = await post(base);
    return { id, path, version: res.headers.get('ETag')!, payload };
  },
  write: (base, path, w) =>
    req(`${base}${path}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'text/plain', 'If-Match': w.version },
      body: w.payload,
    }),
  won: 202,
  lost: 412,
  deleted: 204,
  versionAfter: async (res) => res.headers.get('ETag')!,
  payloadOf: (res) => res.text(),
  hold: (base, path, version) =>
    req(`${base}${path}`, { headers: { 'If-None-Match': version, Prefer: 'wait=30' } }, 60_000),
});

const FAMILIES: FamilyClient[] = [
  etagFamily('msc3886', async (base) => {
    const res = await req(`${base}/`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'p0' });
    expect(res.status).to.equal(200);
    const { id } = (await res.json()) as { id: string };
    return { id, path: `/${id}`, res, payload: 'p0' };
  }),
  etagFamily('msc4108', async (base) => {
    const res = await req(`${base}${MSC4108_PATH}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' } });
    expect(res.status).to.equal(201);
    const path = new URL(((await res.json()) as { url: string }).url).pathname;
    return { id: path.slice(path.lastIndexOf('/') + 1), path, res, payload: '' };
  }),
  {
    name: 'msc4388',
    async create(base) {
      const res = await req(`${base}${MSC4388_PATH}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ data: 'p0' }),
      });
      expect(res.status).to.equal(200);
      const { id, sequence_token } = (await res.json()) as { id: string; sequence_token: string };
      return { id, path: `${MSC4388_PATH}/${id}`, version: sequence_token, payload: 'p0' };
    },
    // With a transaction id, so the session has a second key that can be split from the first.
    write: (base, path, w) =>
      req(`${base}${path}/${w.txn}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sequence_token: w.version, data: w.payload }),
      }),
    won: 200,
    lost: 409,
    deleted: 200,
    versionAfter: async (res) => ((await res.json()) as { sequence_token: string }).sequence_token,
    payloadOf: async (res) => ((await res.json()) as { data: string }).data,
    hold: (base, path, version) => req(`${base}${path}?sequence_token=${version}&timeout_ms=30000`, {}, 60_000),
  },
];

/** What a failover test needs of its topology: where a key lives, and how its master is failed over. */
interface FailingOver {
  env: Record<string, string>;
  /** The master that holds `key` now. */
  ownerOf(key: string): Promise<RedisServer>;
  /** Fails `master` over to its replica; resolves once the replica is the master. */
  failOver(master: RedisServer): Promise<void>;
}

/** Client addresses (as a trusted proxy names them) that only ever reach one replica each. */
const VIA_A = '198.51.100.1';
const VIA_B = '198.51.100.2';

/**
 * The whole service in motion through a failover of the master holding the rate counts and the
 * sessions under test: long-polls held on two replicas, an MSC4388 write whose answer was lost (it
 * landed after its 503), and rate budgets settling. After it: writes wake the held waits, the lost
 * write re-sent verbatim answers as the original did, and every replica settles its counts again.
 */
async function serviceThroughFailover(topology: FailingOver): Promise<void> {
  const env = {
    ...topology.env,
    // Short: a paused master makes a write time out (503) while it is still queued.
    RZ_REDIS_COMMAND_TIMEOUT_MS: '300',
    // Rates counted for every request and never refused; one window for the whole test.
    RZ_REQUEST_RATE: '1000000',
    RZ_REQUEST_RATE_WINDOW_SECONDS: '3600',
    RZ_TRUSTED_PROXIES: '127.0.0.1',
  };
  const [a, b] = await Promise.all([serve(env), serve(env)]);
  try {
    const [baseA, baseB] = [`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`];
    const rateKey = rateWindowKey('request', 0, 0);
    const victim = await topology.ownerOf(rateKey);
    const [msc3886, , msc4388] = FAMILIES as [FamilyClient, FamilyClient, FamilyClient];
    /** A session of `family` on the master to fail over (others are left to expire). */
    const onVictim = async (family: FamilyClient, base: string) => {
      for (;;) {
        const s = await family.create(base);
        if ((await topology.ownerOf(sessionKey(s.id))) === victim) return s;
      }
    };

    /** Requests sent per client address: each must end up counted exactly once in the store. */
    const sent = { [VIA_A]: 0, [VIA_B]: 0 };
    const probe = (base: string, address: typeof VIA_A | typeof VIA_B, path: string) => {
      sent[address]++;
      return req(`${base}${path}`, { headers: { 'X-Forwarded-For': address } });
    };
    /** The counts of an address in every window of the request budget, on the master holding them. */
    const counted = async (address: string) => {
      const owner = await topology.ownerOf(rateKey);
      const c = owner.client();
      try {
        const keys = await c.keys('rz:{:rl}:request:*');
        let sum = 0;
        for (const key of keys.filter((k) => !k.endsWith(':batches'))) sum += Number((await c.hget(key, address)) ?? 0);
        return sum;
      } finally {
        c.disconnect();
      }
    };
    const settled = () =>
      until(
        'every count to be settled',
        async () => (await counted(VIA_A)) === sent[VIA_A] && (await counted(VIA_B)) === sent[VIA_B],
      );

    // A write that lands after its answer was lost: the master holds writes past the command timeout.
    const lost = await onVictim(msc4388, baseA);
    const control = victim.client();
    const write = { version: lost.version, payload: 'landed after its 503', txn: 'lost-answer' };
    await control.call('CLIENT', 'PAUSE', '1000', 'WRITE');
    expect((await msc4388.write(baseA, lost.path, write)).status).to.equal(503);
    await until(
      'the write to land',
      async () => (await msc4388.payloadOf(await req(`${baseB}${lost.path}`))) === write.payload,
    );
    const landed = (await (await req(`${baseB}${lost.path}`)).json()) as { sequence_token: string };

    // Long-polls held on both replicas.
    const heldA = await onVictim(msc3886, baseA);
    const heldB = await onVictim(msc4388, baseB);
    const [waitingA, waitingB] = [waiting(a.longPoll), waiting(b.longPoll)];
    const holds = [msc3886.hold(baseA, heldA.path, heldA.version), msc4388.hold(baseB, heldB.path, heldB.version)];
    await Promise.all([waitingA, waitingB]);

    // Rates settling on both replicas; all of it replicated before the failover, the write too.
    for (let i = 0; i < 5; i++) await Promise.all([probe(baseA, VIA_A, heldA.path), probe(baseB, VIA_B, heldB.path)]);
    await settled();
    expect(await control.wait(1, 5000)).to.equal(1);
    control.disconnect();

    // The failover, with requests (and so rate counts) going through both replicas all along.
    let done = false;
    const failedOver = topology.failOver(victim).finally(() => (done = true));
    while (!done) {
      for (const res of await Promise.all([probe(baseA, VIA_A, heldA.path), probe(baseB, VIA_B, heldB.path)])) {
        expect(res.status).to.be.oneOf([200, 503]);
      }
    }
    await failedOver;
    for (const base of [baseA, baseB]) {
      await until('the replica to reach the store again', async () => {
        const ready = (await (await req(`${base}/ready`)).json()) as { storeReachable?: boolean };
        return ready.storeReachable === true;
      });
    }

    // The lost write re-sent verbatim (through the other replica): answered as the original would have been.
    const resent = await unlessBusy(() => msc4388.write(baseB, lost.path, write));
    expect(resent.status, 'the re-sent write').to.equal(200);
    expect(await msc4388.versionAfter(resent)).to.equal(landed.sequence_token);

    // Writes after the failover wake the waits held through it, on both replicas.
    const woken = [
      { family: msc3886, s: heldA, base: baseB },
      { family: msc4388, s: heldB, base: baseA },
    ];
    for (const { family, s, base } of woken) {
      const w = { version: s.version, payload: `woken ${family.name}`, txn: 'wake' };
      expect((await unlessBusy(() => family.write(base, s.path, w))).status).to.equal(family.won);
    }
    for (const [i, held] of (await Promise.all(holds)).entries()) {
      expect(held.status, `held ${woken[i]!.family.name}`).to.equal(200);
      expect(await woken[i]!.family.payloadOf(held)).to.equal(`woken ${woken[i]!.family.name}`);
    }

    // Both replicas settle again: everything counted, during the failover too, reaches the new master.
    for (let i = 0; i < 5; i++) await Promise.all([probe(baseA, VIA_A, heldA.path), probe(baseB, VIA_B, heldB.path)]);
    await settled();
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

/** One session the test drives, and what it knows of it. */
interface Tracked {
  family: FamilyClient;
  id: string;
  path: string;
  role: 'writer' | 'deleter' | 'held';
  version: string;
  payload: string;
  /** Writes answered 503: each may or may not have landed until it is sent again and answered. */
  unknown: (Write & { replica: number })[];
  /** Won writes against the version they named (never two against one version). */
  winners: Map<string, string>;
  deleteState: 'live' | 'unknown' | 'deleted';
}

describe('Redis Cluster: resharding slots under live sessions', function () {
  this.timeout(120_000);
  let setup: ClusterSetup;
  let replicas: RunningServer[];
  let bases: string[];
  before(async () => {
    setup = await ClusterSetup.start();
    replicas = await Promise.all([serve(setup.env), serve(setup.env)]);
    bases = replicas.map((r) => `http://127.0.0.1:${r.port}`);
  });
  after(async () => {
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    await setup?.destroy();
  });

  const statuses: string[] = [];

  /** Any answer is a protocol answer: one of `expected`, or a store condition's 503 with Retry-After. */
  async function answer(res: Response, what: string, expected: number[]): Promise<number> {
    statuses.push(`${what}: ${res.status}`);
    expect(res.status, `${what} (${statuses.length})`).to.be.oneOf([...expected, 503]);
    if (res.status === 503) {
      expect(res.headers.get('Retry-After'), what).to.equal('1');
      expect(((await res.json()) as { errcode: string }).errcode).to.equal('M_UNKNOWN');
    }
    return res.status;
  }

  /** A write's outcome: won (the session moved on), lost (412/409) or unknown (503). */
  async function sendWrite(s: Tracked, w: Write & { replica: number }): Promise<void> {
    const f = s.family;
    const res = await f.write(bases[w.replica]!, s.path, w);
    const status = await answer(res, `${f.name} write ${w.txn}`, [f.won, f.lost]);
    s.unknown = s.unknown.filter((u) => u.txn !== w.txn);
    if (status === 503) s.unknown.push(w);
    else if (status === f.won) {
      const after = await f.versionAfter(res);
      const before = s.winners.get(w.version);
      expect(before === undefined || before === w.payload, `two writes won against ${w.version}`).to.equal(true);
      s.winners.set(w.version, w.payload);
      if (w.version === s.version) {
        s.version = after;
        s.payload = w.payload;
      }
    }
  }

  /**
   * One round of what clients do: every write answered 503 is sent again verbatim (through the other
   * replica, as a balancer would); writers with none pending race two writes through the two
   * replicas; every session is read through both; deleters delete.
   */
  async function round(sessions: Tracked[], n: number, deleting: boolean): Promise<void> {
    await Promise.all(
      sessions.map(async (s) => {
        const f = s.family;
        if (s.role === 'writer') {
          if (s.unknown.length > 0) {
            for (const w of [...s.unknown]) await sendWrite(s, { ...w, replica: 1 - w.replica });
          } else {
            const write = (replica: number) => ({
              version: s.version,
              payload: `${f.name} round ${n} via ${replica}`,
              txn: `r${n}-${replica}`,
              replica,
            });
            await Promise.all([sendWrite(s, write(0)), sendWrite(s, write(1))]);
          }
        }
        if (s.role === 'deleter' && deleting && s.deleteState !== 'deleted') {
          const res = await req(`${bases[n % 2]}${s.path}`, { method: 'DELETE' });
          // A 404 only for a delete sent again: the first attempt may have landed.
          const allowed = s.deleteState === 'unknown' ? [f.deleted, 404] : [f.deleted];
          const status = await answer(res, `${f.name} delete`, allowed);
          s.deleteState = status === 503 ? 'unknown' : 'deleted';
        }
        for (const base of bases) {
          const res = await req(`${base}${s.path}`);
          if (s.deleteState === 'deleted') {
            await answer(res, `${f.name} read of a deleted session`, [404]);
            continue;
          }
          const maybeGone = s.deleteState === 'unknown' ? [404] : [];
          const status = await answer(res, `${f.name} read`, [200, ...maybeGone]);
          if (status === 200) {
            // The last write known to have won, or one whose answer is still unknown.
            expect(await f.payloadOf(res)).to.be.oneOf([s.payload, ...s.unknown.map((u) => u.payload)]);
          }
        }
      }),
    );
  }

  /** A long-poll on the first replica, once it waits (asked again if the store was busy before). */
  async function holding(s: Tracked): Promise<{ answer: Promise<Response> }> {
    for (let attempt = 0; ; attempt++) {
      const isWaiting = waiting(replicas[0]!.longPoll);
      const answer = s.family.hold(bases[0]!, s.path, s.version);
      const early = await Promise.race([isWaiting.then(() => undefined), answer]);
      if (early === undefined) return { answer };
      expect(early.status, 'a long-poll answered before it waited').to.equal(503);
      expect(attempt, 'long-polls refused').to.be.below(4);
    }
  }

  it('serves every family through a slot migration, half-migrated slots included, and loses nothing', async () => {
    const [from, to] = [setup.nodes[0]!, setup.nodes[1]!];
    // Sessions of every family whose slots are on `from`: one written, one deleted, one long-polled.
    const sessions: Tracked[] = [];
    for (const family of FAMILIES) {
      for (const role of ['writer', 'deleter', 'held'] as const) {
        for (let i = 0; ; i++) {
          const made = await family.create(bases[i % 2]!);
          if ((await setup.slotOf(sessionKey(made.id))).owner !== from) {
            // Elsewhere: deleted, so the caps count only the sessions under test.
            expect((await req(`${bases[0]}${made.path}`, { method: 'DELETE' })).status).to.equal(family.deleted);
            continue;
          }
          sessions.push({ family, role, ...made, unknown: [], winners: new Map(), deleteState: 'live' });
          break;
        }
      }
    }
    const slots = [
      ...new Set(await Promise.all(sessions.map(async (s) => (await setup.slotOf(sessionKey(s.id))).slot))),
    ];
    // Every MSC4388 writer has a transaction record too: a second key to split from the session.
    await round(sessions, 0, false);

    // Long-polls held on one replica across the whole migration, woken by writes on the other after it.
    const held = sessions.filter((s) => s.role === 'held');
    const holds: Promise<Response>[] = [];
    for (const s of held) holds.push((await holding(s)).answer);

    // A store client of the replicas' kind that learned the slot map before the migration; after it,
    // it reads every session at once, as a busy replica's requests do (one batch to the old owner).
    const config = loadConfig({ ...setup.env, LOG_LEVEL: 'silent' });
    const store = new RedisSessions(createRedisClient(config), {
      caps: { global: 0, perAddress: 0 },
      maxTxnsPerSession: 16,
      commandTimeoutMs: config.redisCommandTimeoutMs,
    });
    const readAll = () => Promise.allSettled(sessions.map((s) => store.get(s.id, s.family.name as Family)));
    await until('the store client to read every session', async () =>
      (await readAll()).every((r) => r.status === 'fulfilled'),
    );

    const migration = new SlotMigration(setup, slots, from, to);
    try {
      await migration.open();
      await round(sessions, 1, false);
      // Half migrated: one key of each slot moved (the session's own key where it has two), the rest not.
      for (const slot of slots) {
        const keys = await migration.keysLeft(slot);
        await migration.move(keys.filter((k) => !k.endsWith(':txn')).slice(0, 1));
      }
      await round(sessions, 2, true);
      for (const slot of slots) await migration.move(await migration.keysLeft(slot));
      await round(sessions, 3, true);
      // Nothing is left behind (a write sent before the move may have landed late): moved too.
      for (const slot of slots) await migration.move(await migration.keysLeft(slot));
      await migration.close();
    } finally {
      migration.end();
    }

    // Each read told MOVED is sent to the new owner (and the slot map refreshed), batched or not.
    const after = await readAll();
    store.client.disconnect();
    expect(after.map((r) => (r.status === 'rejected' ? String(r.reason) : 'read'))).to.deep.equal(
      sessions.map(() => 'read'),
    );

    // Until every write answered 503 has been sent again and answered, and every delete done.
    for (let n = 4; sessions.some((s) => s.unknown.length > 0 || s.deleteState === 'unknown'); n++) {
      expect(n, `rounds after the migration ${statuses.slice(-40).join('; ')}`).to.be.below(20);
      await round(sessions, n, true);
    }
    await round(sessions, 20, true);

    // Everything lives on the new owner now, whole, with its last written payload.
    for (const s of sessions) {
      const { slot, owner } = await setup.slotOf(sessionKey(s.id), to);
      expect(slots).to.include(slot);
      expect(owner).to.equal(to);
      const direct = to.client();
      expect(await direct.exists(sessionKey(s.id))).to.equal(1);
      direct.disconnect();
      for (const base of bases) {
        const res = await req(`${base}${s.path}`);
        if (s.role === 'deleter') {
          expect(res.status).to.equal(404);
          continue;
        }
        expect(res.status).to.equal(200);
        expect(await s.family.payloadOf(res)).to.equal(s.payload);
      }
    }

    // The held long-polls, subscribed before the slots moved, are woken by writes after.
    for (const [i, s] of held.entries()) {
      const w = { version: s.version, payload: `woken ${s.family.name}`, txn: 'wake', replica: 1 };
      await sendWrite(s, w);
      for (let attempt = 0; s.unknown.length > 0 && attempt < 5; attempt++) await sendWrite(s, w);
      expect(s.payload, 'the wake-up write').to.equal(w.payload);
      const res = await holds[i]!;
      expect(res.status, `held ${s.family.name}`).to.equal(200);
      expect(await s.family.payloadOf(res)).to.equal(w.payload);
    }

    // The caps count exactly the sessions that exist.
    const live = (await Scrape.of(`${bases[0]}/metrics`)).value('rendezvous_sessions_live');
    expect(live).to.equal(sessions.filter((s) => s.role !== 'deleter').length);
  });
});
