import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { LongPoll, preferredWaitSeconds } from '../src/longpoll';
import { ListenerTable, wakeOf } from '../src/store/listeners';
import { MemoryNotifier, MemorySessions } from '../src/store/memory';
import {
  StoreUnavailableError,
  type Family,
  type Notifier,
  type Session,
  type SessionStore,
  type WakeEvent,
  type WakeListener,
} from '../src/store/types';
import { Metrics } from '../src/metrics';
import { createLogger } from '../src/logger';
import { newSessionIds } from '../src/ids';
import { NOTICE_MAX_PAYLOAD_BYTES, RedisNotifier, redisOptions } from '../src/store/redis';
import { sharedRedisUrl } from './helpers/redis';
import { wakeChannel } from '../src/store/format';
import { BACKEND_KINDS, type BackendPair } from './helpers/backends';

describe('Prefer: wait parsing (RFC 7240)', () => {
  const cases: [string | undefined, number | undefined][] = [
    [undefined, undefined],
    ['', undefined],
    ['wait=10', 10],
    ['WAIT = 7', 7],
    ['respond-async, wait=3', 3],
    ['wait="4"', 4],
    ['wait=5; foo=bar', 5],
    ['return=minimal', undefined],
    ['wait=-1', undefined],
    ['wait=abc', undefined],
    ['wait=', undefined],
    // Longer than any wait (which is capped at RZ_LONGPOLL_MAX_WAIT_SECONDS): read as such, not ignored.
    ['wait=1234567890', 1e9],
    ['wait=99999999999999999999', 1e9],
    // Leading zeros are no length (RFC 7240 delta-seconds may carry them).
    ['wait=0000000000', 0],
    ['wait=0000000000005', 5],
    ['wait=0', 0],
  ];
  for (const [header, expected] of cases) {
    it(`reads ${JSON.stringify(header)} as ${expected}`, () => {
      expect(preferredWaitSeconds(header)).to.equal(expected);
    });
  }
});

/** A session with payload `a` in `store`, by its id. */
async function newSession(store: SessionStore, family: Family): Promise<string> {
  const ids = newSessionIds();
  await store.create({ ...ids, family, contentType: 'text/plain', data: Buffer.from('a'), ttlMs: 60_000, owner: '' });
  return ids.id;
}

const memorySessions = () => new MemorySessions({ caps: { global: 0, perAddress: 0 }, maxTxnsPerSession: 4 });

/** The wake-ups contract, on every backend: a write through one replica wakes the other's waiters. */
for (const kind of BACKEND_KINDS) {
  describe(`wake-up notifier contract: ${kind.name}`, () => {
    let pair: BackendPair;
    let be: { store: SessionStore; notifier: Notifier };
    before(async () => {
      pair = await kind.make();
      be = { store: pair.a.sessions, notifier: pair.b.wakeups };
    });
    after(async () => {
      await pair?.close();
    });

    const session = () => newSession(be.store, 'msc3886');

    /** The next event for `id`, after the subscription is active. */
    /**
     * Listens once notices are certain to arrive. A Cluster's shard subscribers can refuse the first
     * subscribe while they start ("No sharded subscriber for slot"); the waiters then fall back on
     * a resync, so here the subscription is simply made again until it is confirmed.
     */
    async function listen(id: string) {
      for (let attempt = 1; ; attempt++) {
        let resolve!: (e: WakeEvent) => void;
        const next = new Promise<WakeEvent>((r) => (resolve = r));
        const sub = be.notifier.listen(id, (e) => resolve(e));
        try {
          await sub.ready;
          return { next, sub };
        } catch (err) {
          sub.release();
          if (attempt === 20) throw err;
          await be.notifier.connected(5000);
        }
      }
    }

    /** A write's notice carries the new state, so a waiter can answer without reading it again. */
    function expectChanged(event: WakeEvent, rev: number, data: string) {
      expect(event.kind).to.equal('changed');
      if (event.kind !== 'changed') return;
      expect(event.rev).to.equal(rev);
      expect(event.session?.rev).to.equal(rev);
      expect(event.session?.family).to.equal('msc3886');
      expect(event.session?.contentType).to.equal('text/plain');
      expect(event.session?.data.toString()).to.equal(data);
    }

    it('delivers the new revision after a successful write, and nothing for a refused one', async () => {
      const id = await session();
      const { next, sub } = await listen(id);
      const refused = await be.store.update(id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: ['nope'] },
        contentType: 'text/plain',
        data: Buffer.from('x'),
      });
      expect(refused.status).to.equal('conflict');
      await be.store.update(id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 'text/plain',
        data: Buffer.from('b'),
      });
      // Had the refused write published, its notice would have come first.
      expectChanged(await next, 2, 'b');
      sub.release();
    });

    it('delivers `deleted` after a delete', async () => {
      const id = await session();
      const { next, sub } = await listen(id);
      expect(await be.store.delete(id, 'msc3886')).to.equal(true);
      expect(await next).to.deep.equal({ kind: 'deleted' });
      sub.release();
    });

    it('reference-counts subscriptions: one per session, gone with the last listener', async () => {
      const id = await session();
      const first = await listen(id);
      const second = await listen(id);
      expect(be.notifier.stats()).to.deep.equal({ sessions: 1, listeners: 2 });
      first.sub.release();
      first.sub.release();
      expect(be.notifier.stats()).to.deep.equal({ sessions: 1, listeners: 1 });
      await be.store.update(id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 'text/plain',
        data: Buffer.from('c'),
      });
      expectChanged(await second.next, 2, 'c');
      second.sub.release();
      expect(be.notifier.stats()).to.deep.equal({ sessions: 0, listeners: 0 });
    });
  });
}

describe('ListenerTable', () => {
  it('keeps subscribing after a failure and has the listeners re-read once it succeeds', async () => {
    let attempts = 0;
    const table = new ListenerTable({
      subscribe: async () => {
        if (++attempts === 1) throw new Error('subscriber not ready');
      },
      unsubscribe: () => undefined,
      isUp: () => true,
    });
    const resynced = new Promise<WakeEvent>((resolve) => table.listen('s1', resolve));
    expect(await resynced).to.deep.equal({ kind: 'resync' });
    expect(attempts).to.equal(2);
  });

  it('backs off between retries, and leaves them to the reconnect while the connection is down', async () => {
    let up = true;
    let attempts = 0;
    const retries: { run: () => void; ms: number }[] = [];
    const table = new ListenerTable({
      subscribe: async () => {
        attempts++;
        throw new Error('no subscriber');
      },
      unsubscribe: () => undefined,
      isUp: () => up,
      schedule: (run, ms) => retries.push({ run, ms }),
    });
    const subs = Array.from({ length: 100 }, (_, i) => table.listen(`s${i}`, () => undefined));
    await Promise.allSettled(subs.map((s) => s.ready));
    expect(attempts).to.equal(100);
    // Up: each session retries, later each time.
    const first = retries.splice(0)[0]!;
    first.run();
    await new Promise((resolve) => setImmediate(resolve));
    expect(attempts).to.equal(101);
    const second = retries.splice(0)[0]!;
    expect(second.ms).to.be.greaterThan(first.ms);
    // Down: the scheduled retries do nothing, however many sessions wait.
    up = false;
    for (const r of retries.splice(0)) r.run();
    second.run();
    await new Promise((resolve) => setImmediate(resolve));
    expect(attempts).to.equal(101);
    // Back: one subscribe per session, from the reconnect.
    up = true;
    table.resubscribeAll();
    await new Promise((resolve) => setImmediate(resolve));
    expect(attempts).to.equal(201);
    for (const s of subs) s.release();
  });

  it('tells of a resync only the entry whose re-subscription was confirmed', async () => {
    const pending: (() => void)[] = [];
    const table = new ListenerTable({
      subscribe: () => new Promise<void>((resolve) => pending.push(resolve)),
      unsubscribe: () => undefined,
      isUp: () => true,
    });
    const first = table.listen('s1', () => undefined);
    pending.shift()!();
    await first.ready;
    table.resubscribeAll();
    // The session's listener leaves and a new one comes before the re-subscription is confirmed.
    first.release();
    const events: WakeEvent[] = [];
    const second = table.listen('s1', (e) => events.push(e));
    pending.shift()!(); // the re-subscription made for the old entry
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).to.deep.equal([]);
    pending.shift()!(); // the new entry's own subscription
    await second.ready;
    second.release();
  });
});

const REDIS = BACKEND_KINDS.find((k) => k.name === 'redis')!;

describe('wake-up notices through Redis', () => {
  let pair: BackendPair;
  let be: { store: SessionStore; notifier: Notifier };
  before(async () => {
    pair = await REDIS.make();
    be = { store: pair.a.sessions, notifier: pair.a.wakeups };
  });
  after(async () => {
    await pair?.close();
  });

  async function nextEvent(id: string, act: () => Promise<unknown>): Promise<WakeEvent> {
    let resolve!: (e: WakeEvent) => void;
    const next = new Promise<WakeEvent>((r) => (resolve = r));
    const sub = be.notifier.listen(id, (e) => resolve(e));
    await sub.ready;
    await act();
    const event = await next;
    sub.release();
    return event;
  }

  const freshSession = () => newSession(be.store, 'msc4108');

  const write = (id: string, data: Buffer) =>
    be.store.update(id, { family: 'msc4108', condition: { kind: 'any' }, contentType: 'text/plain', data });

  it('carry binary payloads byte for byte', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const id = await freshSession();
    const event = await nextEvent(id, () => write(id, bytes));
    expect(event.kind === 'changed' && event.session?.data.equals(bytes)).to.equal(true);
  });

  it('carry only the revision for a payload above the notice limit', async () => {
    const big = Buffer.alloc(NOTICE_MAX_PAYLOAD_BYTES + 1, 0x61);
    const id = await freshSession();
    expect(await nextEvent(id, () => write(id, big))).to.deep.equal({ kind: 'changed', rev: 2 });
  });
});

describe('a subscriber client that keeps refusing subscribes', () => {
  it('is replaced by a new one, and the waits it held are subscribed again and told to re-read', async () => {
    const url = await sharedRedisUrl();
    const made: Redis[] = [];
    const notifier = new RedisNotifier(
      () => {
        const client = new Redis(url, {
          ...redisOptions({ redisCommandTimeoutMs: 2000 }),
          enableAutoPipelining: false,
          autoResubscribe: false,
        });
        // The first client is stuck as a Cluster client can be: up, yet refusing every subscribe.
        if (made.length === 0) client.ssubscribe = () => Promise.reject(new Error('No sharded subscriber for slot: 1'));
        made.push(client);
        return client;
      },
      createLogger({ logLevel: 'silent' }),
    );
    try {
      expect(await notifier.connected(5000)).to.equal(true);
      const id = newSessionIds().id;
      let resynced!: () => void;
      let changed!: (e: WakeEvent) => void;
      const resync = new Promise<void>((resolve) => (resynced = resolve));
      const change = new Promise<WakeEvent>((resolve) => (changed = resolve));
      notifier.listen(id, (e) => (e.kind === 'resync' ? resynced() : changed(e)));
      await resync;
      expect(made.length).to.equal(2);
      // The new client carries the notices.
      const publisher = new Redis(url);
      await publisher.spublish(wakeChannel(id), '5');
      publisher.disconnect();
      expect(await change).to.deep.equal({ kind: 'changed', rev: 5 });
    } finally {
      await notifier.close();
      for (const c of made) c.disconnect();
    }
  });
});

describe('wake-up notices from replicas of an earlier release', () => {
  it('take a bare revision (no state) as a change to read, during a rolling upgrade', async () => {
    const pair = await REDIS.make();
    const be = { notifier: pair.a.wakeups };
    const publisher = new Redis(await sharedRedisUrl());
    try {
      const id = newSessionIds().id;
      let resolve!: (e: WakeEvent) => void;
      const next = new Promise<WakeEvent>((r) => (resolve = r));
      const sub = be.notifier.listen(id, (e) => resolve(e));
      await sub.ready;
      await publisher.spublish(wakeChannel(id), '7');
      expect(await next).to.deep.equal({ kind: 'changed', rev: 7 });
      sub.release();
    } finally {
      publisher.disconnect();
      await pair.close();
    }
  });
});

/** One wait held on `lp` for a fresh session of `store`, as a protocol module would hold it. */
async function holdOne(
  lp: LongPoll,
  store: MemorySessions,
  options: { changed?: (s: Session) => boolean; beforeWait?: () => void; waitMs?: number } = {},
) {
  const id = await newSession(store, 'msc3886');
  const current = (await store.get(id, 'msc3886'))!;
  options.beforeWait?.();
  // A held response needs only what the waiter watches: its socket and its `close`.
  const res = Object.assign(new EventEmitter(), { destroyed: false, socket: { destroyed: false } });
  const waiting = new Promise<void>((resolve) => lp.once('waiting', () => resolve()));
  const result = lp.wait({
    id: id,
    family: 'msc3886',
    address: '127.0.0.1',
    current,
    waitMs: options.waitMs ?? 60_000,
    changed: options.changed ?? ((s) => s.rev !== current.rev),
    res: res as unknown as ServerResponse,
  });
  const write = (data: string) =>
    store.update(id, {
      family: 'msc3886',
      condition: { kind: 'any' },
      contentType: 'text/plain',
      data: Buffer.from(data),
    });
  return { waiting, result, write, current };
}

/** Runs `body` with the clock read as `at` (as after an event loop that fell behind), then restores it. */
/**
 * Resolves once the store has answered `n` reads (and what each answer set off has run): a held wait
 * reads the state it holds, re-checks it once subscribed, and asks the store at the expiry.
 */
function afterReads(store: MemorySessions, n: number): Promise<void> {
  let reads = 0;
  const get = store.get.bind(store);
  return new Promise<void>((resolve) => {
    store.get = async (...args) => {
      const session = await get(...args);
      if (++reads === n) setImmediate(resolve);
      return session;
    };
  });
}

/**
 * A resync (the subscriber back before the command connection, as in a failover) whose re-read finds
 * the store away: whether the wait has ended once that read failed and what it set off has run.
 */
async function endsOnFailedResync(
  store: MemorySessions,
  table: ListenerTable,
  held: { current: Session; result: Promise<unknown> },
): Promise<boolean> {
  const get = store.get.bind(store);
  let failed!: () => void;
  const refused = new Promise<void>((resolve) => (failed = resolve));
  store.get = async () => {
    store.get = get;
    failed();
    throw new StoreUnavailableError('session store unavailable (connection)', 'connection');
  };
  let ended = false;
  void held.result.then(() => (ended = true));
  table.dispatch(held.current.id, { kind: 'resync' });
  await refused;
  await new Promise((resolve) => setImmediate(resolve));
  return ended;
}

async function clockAt<T>(at: number, body: () => Promise<T>): Promise<T> {
  const now = Date.now;
  Date.now = () => at;
  try {
    return await body();
  } finally {
    Date.now = now;
  }
}

const LIMITS = { maxWaitMs: 60_000, maxWaiters: 10, maxWaitersPerAddress: 10 };

describe('LongPoll waiters', () => {
  /** A notifier over the memory store whose first subscribe is refused, as a shard still starting. */
  class FlakyNotifier implements Notifier {
    attempts = 0;
    private readonly table = new ListenerTable({
      subscribe: async () => {
        if (++this.attempts === 1) throw new Error('shard subscriber not started');
      },
      unsubscribe: () => {},
      isUp: () => true,
    });
    constructor(store: MemorySessions) {
      store.setWakeListener((id, change) =>
        this.table.dispatch(id, change.kind === 'deleted' ? change : wakeOf(change.session)),
      );
    }
    listen(id: string, listener: WakeListener) {
      return this.table.listen(id, listener);
    }
    stats() {
      return this.table.stats();
    }
    async settled() {}
    async connected() {
      return true;
    }
    async close() {}
  }

  it('count as waiting once a retried subscribe succeeds, and are woken by the next write', async () => {
    const store = memorySessions();
    const notifier = new FlakyNotifier(store);
    const lp = new LongPoll(store, notifier, LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store);
    await held.waiting;
    expect(notifier.attempts).to.equal(2);
    await held.write('b');
    const woken = await held.result;
    expect(woken.cause).to.equal('change');
    expect(woken.cause === 'change' && woken.session.data.toString()).to.equal('b');
    store.close();
  });

  // Held on after a failed re-read only while their own timer is still set to end them.
  it('end, not hold on, when the store is away as they ask it about the expiry by their clock', async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store, { waitMs: 20 });
    await held.waiting;
    store.get = () => Promise.reject(new StoreUnavailableError('session store unavailable (connection)', 'connection'));
    const ended = await clockAt(held.current.expiresAt + 3000, () => held.result);
    expect(ended.cause).to.equal('error');
    store.close();
  });

  it('hold on when the subscriber was away as they began and its resync finds the store away', async () => {
    const store = memorySessions();
    // The subscriber is down when the wait begins: it is held on its timer, then on notices once
    // the subscriber is back, and the re-read that this resync asks for finds the store away.
    const table = new ListenerTable({
      subscribe: () => Promise.reject(new Error('subscriber down')),
      unsubscribe: () => {},
      isUp: () => false,
    });
    const notifier: Notifier = {
      listen: (id, listener) => table.listen(id, listener),
      stats: () => table.stats(),
      settled: async () => {},
      connected: async () => false,
      close: async () => {},
    };
    const lp = new LongPoll(store, notifier, LIMITS, new Metrics({ processMetrics: false }));
    let firstRead!: Promise<void>;
    const held = await holdOne(lp, store, { beforeWait: () => (firstRead = afterReads(store, 1)) });
    await firstRead;
    expect(await endsOnFailedResync(store, table, held), 'the wait ended with the failed re-read').to.equal(false);
    await held.write('b');
    const woken = await held.result;
    expect(woken.cause).to.equal('change');
    store.close();
  });

  it('hold on when their re-read after a reconnect fails (a failover), and find a write made meanwhile', async () => {
    const store = memorySessions();
    // A notifier whose notices the test controls: the write below is made while no notice can come.
    const table = new ListenerTable({ subscribe: async () => {}, unsubscribe: () => {}, isUp: () => true });
    const notifier: Notifier = {
      listen: (id, listener) => table.listen(id, listener),
      stats: () => table.stats(),
      settled: async () => {},
      connected: async () => true,
      close: async () => {},
    };
    const lp = new LongPoll(store, notifier, LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store);
    await held.waiting;
    // The subscriber is back on the new master before the command connection is: the re-read that a
    // resync asks for finds the store away.
    expect(await endsOnFailedResync(store, table, held), 'the wait ended with the failed re-read').to.equal(false);
    // A write the wait has no notice of (it was published while the subscriber was away).
    await held.write('b');
    const woken = await held.result;
    expect(woken.cause).to.equal('change');
    expect(woken.cause === 'change' && woken.session.data.toString()).to.equal('b');
    store.close();
  });

  it('never go back to an older state when a read in flight returns after a newer notice', async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    // The waiter's re-check read takes its snapshot at once but answers only when the gate opens.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const held = await holdOne(lp, store, {
      // As for `If-None-Match: *`: no state is news, so the waiter keeps holding whatever it learns.
      changed: () => false,
      beforeWait: () => {
        const get = store.get.bind(store);
        store.get = async (...args) => {
          const session = await get(...args);
          await gate;
          return session;
        };
      },
    });
    await new Promise((resolve) => setImmediate(resolve));
    await held.write('b');
    open();
    await held.waiting;
    lp.shutdown();
    const ended = await held.result;
    expect(ended.cause).to.equal('shutdown');
    expect(ended.cause === 'shutdown' && ended.session.rev).to.equal(2);
    store.close();
  });

  /** A store on the clock `clockAt` sets: time passes for it as for the replica (a busy event loop). */
  const storeOnSameClock = () =>
    new MemorySessions({ caps: { global: 0, perAddress: 0 }, maxTxnsPerSession: 4, now: () => Date.now() });

  it('answer 404, not the expired state, when their timer fires after the session expired', async () => {
    const store = storeOnSameClock();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    // The wait ends long before the expiry, but its timer runs only once the expiry has passed.
    const held = await holdOne(lp, store, { waitMs: 20 });
    await held.waiting;
    const ended = await clockAt(held.current.expiresAt + 1, () => held.result);
    expect(ended.cause).to.equal('gone');
    store.close();
  });

  it('answer 404 at shutdown when the session expired before its expiry timer ran', async () => {
    const store = storeOnSameClock();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store);
    await held.waiting;
    const ended = await clockAt(held.current.expiresAt, () => (lp.shutdown(), held.result));
    expect(ended.cause).to.equal('gone');
    store.close();
  });

  // The replica's clock runs ahead of the store's (Redis expires keys on its own clock): by the
  // replica's, the session has expired; the store still holds it, so it has not.
  it("answer the current state, not 404, at the expiry by the replica's clock while the store holds the session", async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store, { waitMs: 20 });
    await held.waiting;
    const ended = await clockAt(held.current.expiresAt + 3000, () => held.result);
    expect(ended.cause).to.equal('timeout');
    expect(ended.cause === 'timeout' && ended.session.rev).to.equal(held.current.rev);
    store.close();
  });

  it("answer the current state, not 404, when they start past the expiry by the replica's clock", async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const ahead = Date.now() + 120_000;
    const ended = await clockAt(ahead, async () => (await holdOne(lp, store, { waitMs: 20 })).result);
    expect(ended.cause).to.equal('timeout');
    store.close();
  });

  // Answered at once, the client would ask again at once, and so on until the store's clock caught up.
  it("hold on, past the expiry by the replica's clock, while the store holds the session", async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const ahead = Date.now() + 120_000;
    const readThrice = afterReads(store, 3);
    const woken = await clockAt(ahead, async () => {
      const held = await holdOne(lp, store);
      await held.waiting;
      await readThrice;
      await held.write('b');
      return held.result;
    });
    expect(woken.cause).to.equal('change');
    store.close();
  });

  it("answer 404 once the store's clock too reaches the expiry, when held past it by the replica's", async () => {
    let storeNow = Date.now();
    const store = new MemorySessions({
      caps: { global: 0, perAddress: 0 },
      maxTxnsPerSession: 4,
      now: () => storeNow,
    });
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const readThrice = afterReads(store, 3);
    const ended = await clockAt(Date.now() + 120_000, async () => {
      const held = await holdOne(lp, store);
      await held.waiting;
      await readThrice;
      storeNow = held.current.expiresAt + 1;
      return held.result;
    });
    expect(ended.cause).to.equal('gone');
    store.close();
  });

  it("answer a write's new state, not 404, when its notice comes past the expiry by the replica's clock", async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store);
    await held.waiting;
    const woken = await clockAt(held.current.expiresAt + 3000, async () => (await held.write('b'), held.result));
    expect(woken.cause).to.equal('change');
    expect(woken.cause === 'change' && woken.session.data.toString()).to.equal('b');
    store.close();
  });

  it("answer the current state at shutdown past the expiry by the replica's clock while the store holds the session", async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store);
    await held.waiting;
    const ended = await clockAt(held.current.expiresAt, () => (lp.shutdown(), held.result));
    expect(ended.cause).to.equal('shutdown');
    store.close();
  });

  it('answer from a notice that carries the new state, without reading the session again', async () => {
    const store = memorySessions();
    const lp = new LongPoll(store, new MemoryNotifier(store), LIMITS, new Metrics({ processMetrics: false }));
    const held = await holdOne(lp, store);
    await held.waiting;
    let reads = 0;
    const get = store.get.bind(store);
    store.get = (...args) => (reads++, get(...args));
    await held.write('b');
    const woken = await held.result;
    expect(woken.cause === 'change' && woken.session.data.toString()).to.equal('b');
    expect(reads).to.equal(0);
    store.close();
  });
});
