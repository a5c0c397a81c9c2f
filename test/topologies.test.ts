import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config';
import { start, type RunningServer } from '../src/main';
import { sessionKey, wakeChannel } from '../src/store/format';
import { Scrape } from './helpers/metrics';
import { everyFamilyExchange, msc3886Exchange, req } from './helpers/exchange';
import { heldGet, waiting } from './helpers/longpoll';
import { ClusterSetup, SentinelSetup, sharedClusterSetup, sharedSentinelSetup, until } from './helpers/topologies';

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
