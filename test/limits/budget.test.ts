import { expect } from 'chai';
import { BudgetRefusal, SharedBudget, type Admission } from '../../src/limits/budget';
import { MemoryRateCounters } from '../../src/store/memory';
import type { RateCounters, RateWindow } from '../../src/store/types';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { createRedisBackend } from '../../src/store/redis';
import { sharedRedisUrl } from '../helpers/redis';
import { until } from '../helpers/topologies';
import { RedisRateCounters } from '../../src/store/redis';
import { startServer } from '../helpers/server';

/**
 * Rate counters shared by several budgets (as by replicas), counting every call; `failing` makes
 * them fail as an unreachable Redis would.
 */
class CountingCounters implements RateCounters {
  readonly shared = true;
  calls: number[] = [];
  failing = false;
  /** The counts land, and the answer is lost (a command that timed out, a connection cut after it ran). */
  losingAnswers = false;
  readonly inner = new MemoryRateCounters(() => 1_000_000);
  private answered: (() => void)[] = [];

  add(window: RateWindow, counts: readonly (readonly [string, number])[], batch?: string): Promise<number[]> {
    this.calls.push(counts.length);
    const done = () => this.answered.splice(0).forEach((f) => f());
    if (this.failing) return Promise.reject(new Error('unreachable')).finally(() => setImmediate(done));
    const landed = this.inner.add(window, counts, batch);
    if (this.losingAnswers) {
      return landed.then(() => Promise.reject(new Error('Command timed out'))).finally(() => setImmediate(done));
    }
    return landed.finally(() => setImmediate(done));
  }

  /** Resolves once the next call has been answered and its answer taken in. */
  nextAnswer(): Promise<void> {
    return new Promise((resolve) => this.answered.push(resolve));
  }
}

const admitted = (a: Admission) => a === undefined;

describe('shared rate budgets (counted locally, settled in batches)', () => {
  // A clock that stands still: no test may straddle the start of a window.
  const opts = { name: 'request', points: 100, windowMs: 60_000, intervalMs: 10, now: () => 1_000_000 };

  it('costs the backend one call per interval for every address, not one per request', async () => {
    const counters = new CountingCounters();
    const budget = new SharedBudget(counters, { ...opts, points: 1_000_000 });
    for (let i = 0; i < 1000; i++) expect(admitted(budget.admit(`198.51.100.${i % 250}.${i}`))).to.equal(true);
    expect(counters.calls).to.deep.equal([]);
    await counters.nextAnswer();
    expect(counters.calls).to.deep.equal([1000]);
  });

  it('settles a flood from 40,000 addresses in slices, against a real Redis, without a huge call', async () => {
    const url = await sharedRedisUrl();
    const backend = await createRedisBackend(
      {
        redis: loadConfig({ REDIS_URL: url }),
        caps: { global: 0, perAddress: 0 },
        maxTxnsPerSession: 4,
        allowEviction: false,
      },
      createLogger({ logLevel: 'silent' }),
    );
    try {
      let calls = 0;
      const counting: RateCounters = {
        shared: true,
        add: (window, counts) => (calls++, backend.rates.add(window, counts)),
      };
      const budget = new SharedBudget(counting, { ...opts, name: `flood${Date.now()}`, points: 1_000_000 });
      for (let i = 0; i < 40_000; i++)
        expect(budget.admit(`2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::/64`)).to.equal(
          undefined,
        );
      // The next settlement, however it goes, leaves the process standing and every count sent.
      await until('the counts to be settled', async () => calls >= 40);
      expect(calls).to.equal(40);
    } finally {
      await backend.close();
    }
  });

  it('refuses an address once the total over every replica reaches the budget, for the rest of the window', async () => {
    const counters = new CountingCounters();
    const [r1, r2] = [new SharedBudget(counters, opts), new SharedBudget(counters, opts)];
    let served = 0;
    const refusals: BudgetRefusal[] = [];
    const pending: Promise<unknown>[] = [];
    // A flood through two replicas, each admitting what it may and holding the rest for the next answer.
    for (let round = 0; round < 300; round++) {
      let settling = false;
      for (const r of [r1, r2]) {
        for (let i = 0; i < 3; i++) {
          const a = r.admit('203.0.113.7');
          if (a instanceof BudgetRefusal) {
            refusals.push(a);
            continue;
          }
          settling = true;
          if (a === undefined) served++;
          else
            pending.push(
              a.then(
                () => served++,
                (err: unknown) => refusals.push(err as BudgetRefusal),
              ),
            );
        }
      }
      // Refused outright everywhere: nothing is left to settle.
      if (!settling) break;
      await counters.nextAnswer();
    }
    await Promise.all(pending);
    // Overshoot bound: points + 2 x replicas x allowance (100 x 10 / 60000 rounds up to 1).
    expect(served).to.be.within(100, 104);
    const overBudget = refusals.filter((r) => r.retryAfterMs > opts.intervalMs);
    expect(overBudget.length).to.be.greaterThan(0);
    for (const r of overBudget) expect(r.retryAfterMs).to.be.within(1, 60_000);
    expect(r1.admit('203.0.113.7')).to.be.instanceOf(BudgetRefusal);
    expect(admitted(r2.admit('203.0.113.8'))).to.equal(true);
  });

  it('is exact within two allowances of the limit, one request after another through two replicas', async () => {
    const counters = new CountingCounters();
    // 2 a minute, settled every 10 ms: an allowance of 1, so every request is within two of the limit.
    const small = { ...opts, points: 2 };
    const replicas = [new SharedBudget(counters, small), new SharedBudget(counters, small)];
    const outcomes: boolean[] = [];
    for (let i = 0; i < 12; i++) {
      const a = replicas[i % 2]!.admit('192.0.2.5');
      if (a === undefined || a instanceof BudgetRefusal) outcomes.push(a === undefined);
      else
        outcomes.push(
          await a.then(
            () => true,
            () => false,
          ),
        );
    }
    expect(outcomes).to.deep.equal([true, true, ...Array<boolean>(10).fill(false)]);
  });

  it('lets a burst wait for the next settlement instead of refusing it', async () => {
    const counters = new CountingCounters();
    const budget = new SharedBudget(counters, opts);
    const burst = Array.from({ length: 5 }, () => budget.admit('192.0.2.1'));
    expect(admitted(burst[0])).to.equal(true);
    const waiting = burst.slice(1);
    for (const w of waiting) expect(w).to.be.instanceOf(Promise);
    await Promise.all(waiting);
  });

  it('admits a burst far past the allowance but within the budget whole, after one settlement', async () => {
    const counters = new CountingCounters();
    // The default request budget: 300 per 10 s, settled every 50 ms (an allowance of 2).
    const budget = new SharedBudget(counters, { ...opts, points: 300, windowMs: 10_000, intervalMs: 50 });
    const burst = Array.from({ length: 150 }, () => budget.admit('192.0.2.9'));
    expect(burst.filter((a) => a instanceof BudgetRefusal)).to.deep.equal([]);
    await Promise.all(burst);
    expect(counters.calls).to.deep.equal([1]);
  });

  it('counts locally when the backend fails, the same budget per replica, and sends the counts later', async () => {
    const counters = new CountingCounters();
    counters.failing = true;
    const budget = new SharedBudget(counters, { ...opts, points: 5 });
    let served = 0;
    for (let i = 0; i < 5; i++) {
      const a = budget.admit('192.0.2.2');
      if (a === undefined) served++;
      else if (a instanceof Promise) await a.then(() => served++);
      if (counters.calls.length === 0) await counters.nextAnswer();
    }
    expect(served).to.equal(5);
    expect(budget.admit('192.0.2.2')).to.be.instanceOf(BudgetRefusal);
    counters.failing = false;
    await counters.nextAnswer();
    expect(counters.calls.at(-1)).to.equal(1);
  });

  it('counts a batch whose answer was lost once, however often it is sent again', async () => {
    const counters = new CountingCounters();
    counters.losingAnswers = true;
    const budget = new SharedBudget(counters, { ...opts, points: 50 });
    const window = { budget: opts.name, start: 960_000, ms: opts.windowMs };
    const admissions = [1, 2, 3].map(() => budget.admit('192.0.2.6'));
    await counters.nextAnswer();
    await Promise.all(admissions);
    // Sent again (the answer said nothing), and its answer lost once more.
    await counters.nextAnswer();
    counters.losingAnswers = false;
    await counters.nextAnswer();
    expect(counters.calls.length).to.equal(3);
    // What the shared total holds: the three requests, not once per time they were sent.
    expect(await counters.inner.add(window, [['192.0.2.6', 0]])).to.deep.equal([3]);
  });

  it('counts exactly in one process (memory backend), with no backend call at all', () => {
    const budget = new SharedBudget(new MemoryRateCounters(), { ...opts, points: 3 });
    expect([1, 2, 3].map(() => admitted(budget.admit('192.0.2.3')))).to.deep.equal([true, true, true]);
    expect(budget.admit('192.0.2.3')).to.be.instanceOf(BudgetRefusal);
  });

  it('starts every address afresh in a new window', () => {
    let now = 1_000_000;
    const budget = new SharedBudget(new MemoryRateCounters(), { ...opts, points: 1, now: () => now });
    expect(admitted(budget.admit('192.0.2.4'))).to.equal(true);
    expect(budget.admit('192.0.2.4')).to.be.instanceOf(BudgetRefusal);
    now += 60_000;
    expect(admitted(budget.admit('192.0.2.4'))).to.equal(true);
  });

  it('forgets the oldest address rather than growing without bound', () => {
    const budget = new SharedBudget(new MemoryRateCounters(), { ...opts, maxAddresses: 100 });
    for (let i = 0; i < 1000; i++) budget.admit(`10.0.${i >> 8}.${i & 255}`);
    expect(budget.size).to.equal(100);
  });

  it('does not admit a request waiting on a settlement when its address is pushed out by others', async () => {
    const counters = new CountingCounters();
    const budget = new SharedBudget(counters, { ...opts, points: 2, maxAddresses: 100 });
    // Another replica has spent the whole budget of this address already.
    const window = { budget: 'request', start: 1_000_000 - (1_000_000 % 60_000), ms: 60_000 };
    await counters.inner.add(window, [['192.0.2.77', 2]]);
    const waiting = budget.admit('192.0.2.77');
    expect(waiting).to.be.instanceOf(Promise);
    const outcome = (waiting as Promise<void>).then(
      () => 'admitted',
      (err: unknown) => (err instanceof BudgetRefusal ? 'refused' : 'failed'),
    );
    // A flood from as many other addresses as the budget tracks pushes it out of the map.
    for (let i = 0; i < 100; i++) void budget.admit(`10.1.0.${i}`);
    expect(budget.size).to.equal(100);
    // Its count still reaches the backend, whose total decides.
    expect(await outcome).to.equal('refused');
    expect(await counters.inner.add(window, [['192.0.2.77', 0]])).to.deep.equal([3]);
  });
});

describe('shared rate budgets once the load stops', () => {
  // A real clock and a short window: the addresses go once it has ended, with no request to sweep them.
  const flood = (budget: SharedBudget, n: number) => {
    for (let i = 0; i < n; i++) budget.admit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  };

  it('forgets tens of thousands of addresses once their window ends (one process)', async () => {
    const budget = new SharedBudget(new MemoryRateCounters(), {
      name: 'request',
      points: 5,
      windowMs: 200,
      intervalMs: 10,
    });
    flood(budget, 30_000);
    expect(budget.size).to.be.greaterThan(0);
    await until('every address to be forgotten', async () => budget.size === 0, 5000);
    budget.stop();
  });

  it('forgets tens of thousands of addresses once their window ends (shared backend)', async () => {
    const counters = new CountingCounters();
    const budget = new SharedBudget(counters, { name: 'request', points: 1_000_000, windowMs: 200, intervalMs: 10 });
    flood(budget, 30_000);
    expect(budget.size).to.be.greaterThan(0);
    await counters.nextAnswer();
    await until('every address to be forgotten', async () => budget.size === 0, 5000);
    budget.stop();
  });
});

describe('shared rate budgets when the replica stops', () => {
  it('leave no settlement behind: nothing is sent once the replica has stopped', async () => {
    // Redis refusing the counts (an outage): the budget keeps them and sends them again every second.
    const add = RedisRateCounters.prototype.add;
    let calls = 0;
    RedisRateCounters.prototype.add = () => (calls++, Promise.reject(new Error('unreachable')));
    try {
      const server = await startServer({
        REDIS_URL: await sharedRedisUrl(),
        RZ_REQUEST_RATE: '100',
        RZ_REQUEST_RATE_WINDOW_SECONDS: '3600',
        RZ_SHUTDOWN_DELAY_SECONDS: '0',
      });
      expect((await fetch(`${server.url}/nothing-here`)).status).to.equal(404);
      await until('the counts to be sent (and refused)', async () => calls > 0);
      await server.stop();
      const sent = calls;
      // Past the next re-send while the backend fails (once a second).
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(calls, 'counts sent after the replica stopped').to.equal(sent);
    } finally {
      RedisRateCounters.prototype.add = add;
    }
  });

  it('decide whoever waits for a settlement when stopped, and schedule nothing more', async () => {
    const counters = new CountingCounters();
    const budget = new SharedBudget(counters, {
      name: 'request',
      points: 2,
      windowMs: 60_000,
      intervalMs: 10,
      now: () => 1_000_000,
    });
    // Near the limit: counted, and admitted only once a settlement says it fits.
    const waiting = budget.admit('192.0.2.9');
    expect(waiting).to.be.instanceOf(Promise);
    budget.stop();
    await waiting;
    // From here on decided from this replica's own counts, at once, up to the budget.
    expect(admitted(budget.admit('192.0.2.9'))).to.equal(true);
    expect(budget.admit('192.0.2.9')).to.be.instanceOf(BudgetRefusal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(counters.calls).to.deep.equal([]);
  });
});

describe('shared rate budgets stopped with an address pushed out of the map', () => {
  it('decide a request still waiting on the settlement of an address pushed out by others', async () => {
    const counters = new CountingCounters();
    const budget = new SharedBudget(counters, {
      name: 'request',
      points: 2,
      windowMs: 60_000,
      intervalMs: 10_000,
      maxAddresses: 10,
      now: () => 1_000_000,
    });
    const waiting = budget.admit('192.0.2.10');
    expect(waiting).to.be.instanceOf(Promise);
    // Pushed out of the map before any settlement: its count and its waiting request are still held.
    for (let i = 0; i < 10; i++) budget.admit(`10.2.0.${i}`);
    let outcome = 'still waiting';
    (waiting as Promise<void>).then(
      () => (outcome = 'admitted'),
      () => (outcome = 'refused'),
    );
    budget.stop();
    // stop() decides every waiting request itself: settled once the promise callbacks have run.
    await new Promise(setImmediate);
    expect(outcome).to.equal('admitted');
  });
});
