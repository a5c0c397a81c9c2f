import { randomBytes } from 'node:crypto';
import type { RateCounters } from '../store/types';

/** An address over its budget, for the rest of the window (or, when it floods, an interval). */
export class BudgetRefusal {
  constructor(readonly retryAfterMs: number) {}
}

/**
 * What `admit` answers: undefined when admitted now, a refusal, or a promise that resolves once the
 * request is admitted (or rejects with a refusal) after the next settlement.
 */
export type Admission = undefined | BudgetRefusal | Promise<void>;

/** A request counted near the limit, admitted only once the backend's total says it fits. */
interface Confirm {
  /** Its place among the counts sent in its batch for this address (1-based). */
  seq: number;
  resolve: () => void;
  reject: (refusal: BudgetRefusal) => void;
}

interface Tally {
  address: string;
  /** Start of the window these counts belong to. */
  window: number;
  /** The total over every replica, as the backend last answered it (this replica's counts included). */
  known: number;
  /** Counted here and not sent to the backend yet. */
  pending: number;
  /** Sent to the backend, answer not back yet. */
  sending: number;
  /** Admitted here since the last answer without asking: bounded per interval (the allowance). */
  fresh: number;
  /** Requests among `pending` waiting to be confirmed. */
  confirms: Confirm[] | undefined;
}

/** One address's counts in a batch on its way to the backend. */
interface Sent {
  t: Tally;
  count: number;
  window: number;
  confirms: Confirm[] | undefined;
}

/** One backend call's counts, under an id the backend adds once however often it is sent. */
interface Batch {
  id: string;
  window: number;
  entries: Sent[];
}

export interface BudgetOptions {
  /** Name of the budget (rate counters and metrics). */
  name: string;
  /** Requests per window per address. */
  points: number;
  windowMs: number;
  /** How often a replica settles its counts with the backend. */
  intervalMs: number;
  /**
   * Addresses tracked at once per replica; beyond it, the one whose window started first is
   * forgotten here (its counts still go to the backend, and whoever waits on them is decided there).
   */
  maxAddresses?: number;
  now?: () => number;
}

/** Most addresses in one backend call. */
const MAX_BATCH = 1000;

/**
 * Requests one address may have waiting on one replica for the next settlement; beyond, refused.
 * Far above what a client sends in one interval (the default request budget is 300 per 10 s): the
 * bound is on memory, for budgets raised far beyond that.
 */
const MAX_WAITING = 1024;

/**
 * A fixed-window budget per client address, shared by every replica without a backend call per
 * request. Each replica counts locally and settles with the backend in batches, one call per
 * interval for every address it saw, and refuses locally once the total says an address is over.
 *
 * - Far from the limit, a request is admitted at once. Between two settlements a replica admits at
 *   most `allowance` such requests per address (the budget's own rate over one interval). A replica
 *   learns what the others admitted one settlement late, plus the round trip of the next, so N
 *   replicas admit at most points + 2 x N x allowance per window while a settlement's round trip is
 *   under the interval, whatever the flood.
 * - Past the allowance, or near the limit (within two allowances of it), a request is counted first
 *   and admitted only when the backend's total, its own count included, is within the budget: exact,
 *   at the cost of waiting one settlement. So a burst within the budget waits a fraction of a second
 *   and is admitted whole, however far beyond the allowance it goes.
 * - With a backend that is not shared (one process) the local count is exact and nothing waits.
 * - When the backend fails, each replica counts locally (the same budget, per replica) and sends its
 *   counts once the backend answers again.
 */
export class SharedBudget {
  private readonly tallies = new Map<string, Tally>();
  /** Addresses with counts to send. */
  private dirty = new Set<Tally>();
  private timer: NodeJS.Timeout | undefined;
  /** Forgets the addresses of windows that have ended, whether or not requests still come. */
  private sweeper: NodeJS.Timeout | undefined;
  private degraded = false;
  /** Set by `stop`: nothing is scheduled or sent from then on. */
  private stopped = false;
  /**
   * Batches that got no answer: they may have landed (a command that timed out, a connection cut
   * after it ran), so they are sent again as they were, under their own ids, never merged into new
   * counts that the backend would then add a second time.
   */
  private lost: Batch[] = [];
  /** Batch ids: unique to this budget in this process, numbered. */
  private readonly batchPrefix = randomBytes(9).toString('base64url');
  private batches = 0;
  private readonly allowance: number;
  private readonly now: () => number;
  private readonly maxAddresses: number;

  constructor(
    private readonly counters: RateCounters,
    private readonly opts: BudgetOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.maxAddresses = opts.maxAddresses ?? 100_000;
    this.allowance = Math.max(1, Math.ceil((opts.points * opts.intervalMs) / opts.windowMs));
  }

  admit(address: string): Admission {
    const now = this.now();
    const window = now - (now % this.opts.windowMs);
    const t = this.tally(address, window);
    const left = this.opts.points - t.known - t.pending - t.sending;
    if (left <= 0) return new BudgetRefusal(window + this.opts.windowMs - now);
    if (!this.counters.shared) {
      t.pending++;
      return undefined;
    }
    if (this.degraded || this.stopped) return this.count(t);
    if (left > 2 * this.allowance && t.fresh < this.allowance) {
      t.fresh++;
      return this.count(t);
    }
    if ((t.confirms?.length ?? 0) >= MAX_WAITING) return new BudgetRefusal(this.opts.intervalMs);
    this.count(t);
    const seq = t.pending;
    return new Promise<void>((resolve, reject) => (t.confirms ??= []).push({ seq, resolve, reject }));
  }

  /** Counts one request of `t`, to be sent with the next batch. */
  private count(t: Tally): undefined {
    t.pending++;
    this.dirty.add(t);
    this.schedule();
    return undefined;
  }

  private tally(address: string, window: number): Tally {
    let t = this.tallies.get(address);
    if (t !== undefined && t.window === window) return t;
    if (t !== undefined) {
      // A new window: counts start again. Whoever waited on the old one is admitted (new budget).
      this.forget(t);
    } else if (this.tallies.size >= this.maxAddresses) {
      this.sweep(this.now());
      // Still full, of addresses whose window is running: the oldest is forgotten here only. Its
      // counts not yet sent still go, and whoever waits on them is decided by the backend's total, so
      // with a shared backend it loses at most one allowance. With none (one process) its count
      // starts again: to make that happen to one address, a client must bring maxAddresses others
      // into the window after it, every one of them on its own budget, which at the defaults is far
      // more requests per window than any replica answers.
      if (this.tallies.size >= this.maxAddresses) this.evict(this.tallies.values().next().value!);
    }
    // Re-inserted at the end: the map stays in order of last window start, oldest first.
    t = { address, window, known: 0, pending: 0, sending: 0, fresh: 0, confirms: undefined };
    this.tallies.set(address, t);
    this.sweepLater();
    return t;
  }

  /** Drops `t` from the map alone: a batch on its way, or the next one, still carries its counts. */
  private evict(t: Tally): void {
    this.tallies.delete(t.address);
  }

  /**
   * Sweeps once the window of the oldest address has ended (then as often as settlements, while
   * counts of it are still on their way), so the map empties when requests stop coming: a
   * settlement sweeps too, but settlements stop with the requests, and a budget that is not shared
   * never settles.
   */
  private sweepLater(): void {
    if (this.sweeper !== undefined || this.stopped) return;
    const oldest = this.tallies.values().next().value;
    if (oldest === undefined) return;
    const ms = Math.max(oldest.window + this.opts.windowMs - this.now(), this.opts.intervalMs);
    this.sweeper = setTimeout(() => {
      this.sweeper = undefined;
      this.sweep(this.now());
      this.sweepLater();
    }, ms).unref();
  }

  private forget(t: Tally): void {
    this.tallies.delete(t.address);
    this.dirty.delete(t);
    for (const c of t.confirms ?? []) c.resolve();
    t.confirms = undefined;
  }

  /**
   * Stops settling, for good (the replica shuts down, before the backend closes): the pending timer
   * is cleared, no settlement or re-send is scheduled or sent from here on, and whoever still waits
   * for one (or asks later) is decided from what this replica knows, as while the backend fails.
   */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    clearTimeout(this.sweeper);
    this.sweeper = undefined;
    // Whoever waits was counted, so its address is among those with counts to send, even one pushed
    // out of the map (evict): the map alone would leave that one waiting for ever.
    for (const t of this.dirty) {
      this.decide(t.confirms, t.known + t.sending, t.window);
      t.confirms = undefined;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    // While the backend fails, trying every interval would only add failures: once a second.
    const ms = this.degraded ? Math.max(this.opts.intervalMs, 1000) : this.opts.intervalMs;
    this.timer ??= setTimeout(() => this.settle(), ms).unref();
  }

  /**
   * Sends what was counted since the last settlement: one backend call for every address seen (in
   * slices of MAX_BATCH, so a flood from very many addresses makes a few calls, never a huge one).
   */
  private settle(): void {
    this.timer = undefined;
    const now = this.now();
    const window = now - (now % this.opts.windowMs);
    const retrying: Batch[] = [];
    for (const b of this.lost.splice(0)) {
      if (b.window === window) retrying.push(b);
      // Counts of a window that has ended are moot.
      else for (const e of b.entries) this.ended(e);
    }
    if (retrying.length > 0) {
      // Sent again first, and alone: what was counted since stays counted here (decided from what
      // this replica knows) until they are answered, so an outage costs one call per slice an
      // interval rather than one more call every interval.
      for (const t of this.dirty) {
        this.decide(t.confirms, t.known + t.sending, t.window);
        t.confirms = undefined;
      }
      for (const b of retrying) this.send(b);
      return;
    }
    const current: Sent[] = [];
    for (const t of this.dirty) {
      if (t.pending === 0) continue;
      const e: Sent = { t, count: t.pending, window: t.window, confirms: t.confirms };
      t.sending += t.pending;
      t.pending = 0;
      t.confirms = undefined;
      // Counts of a window that has ended are moot: the new window starts from nothing.
      if (t.window === window) current.push(e);
      else this.ended(e);
    }
    this.dirty = new Set();
    this.sweep(now);
    for (let i = 0; i < current.length; i += MAX_BATCH) {
      const id = `${this.batchPrefix}.${++this.batches}`;
      this.send({ id, window, entries: current.slice(i, i + MAX_BATCH) });
    }
  }

  private send(batch: Batch): void {
    const failed = () => {
      // Counted locally from here until the backend answers; the batch is sent again as it was.
      this.degraded = true;
      for (const e of batch.entries) this.unanswered(e);
      this.lost.push(batch);
      this.schedule();
    };
    let answer: Promise<number[]>;
    try {
      answer = this.counters.add(
        { budget: this.opts.name, start: batch.window, ms: this.opts.windowMs },
        batch.entries.map((e) => [e.t.address, e.count] as const),
        batch.id,
      );
    } catch {
      return failed();
    }
    answer.then((totals) => {
      this.degraded = false;
      batch.entries.forEach((e, i) => this.answered(e, totals[i]!));
      // What waited behind a batch sent again goes now.
      if (this.dirty.size > 0) this.schedule();
    }, failed);
  }

  /** Forgets addresses whose window has ended with nothing left to do (oldest first, in map order). */
  private sweep(now: number): void {
    for (const t of this.tallies.values()) {
      if (t.window + this.opts.windowMs > now) return;
      // Unshared, `pending` is the count itself, never sent: nothing is on its way.
      if (this.counters.shared && (t.pending > 0 || t.sending > 0 || t.confirms !== undefined)) return;
      this.tallies.delete(t.address);
    }
  }

  private answered(e: Sent, total: number): void {
    const { t } = e;
    t.sending -= e.count;
    t.known = Math.max(t.known, total);
    // This batch's counts are the last `count` of the total: the n-th of them is number total-count+n.
    this.decide(e.confirms, total - e.count, t.window);
    // What was counted since this batch left is not in the total yet: it takes from the next allowance.
    t.fresh = t.pending;
  }

  private ended(e: Sent): void {
    e.t.sending -= e.count;
    for (const c of e.confirms ?? []) c.resolve();
    e.t.fresh = 0;
  }

  private unanswered(e: Sent): void {
    const { t } = e;
    // Its counts stay in `sending` (they go again, as they were); what this replica knows is all
    // there is to go by for whoever waited on them.
    this.decide(e.confirms, t.known + t.sending - e.count, t.window);
    e.confirms = undefined;
    t.fresh = 0;
  }

  /** Admits or refuses waiting requests, `first` counted before them (by the backend, or here alone). */
  private decide(confirms: Confirm[] | undefined, first: number, window: number): void {
    if (confirms === undefined) return;
    const retry = new BudgetRefusal(window + this.opts.windowMs - this.now());
    for (const c of confirms) {
      if (first + c.seq <= this.opts.points) c.resolve();
      else c.reject(retry);
    }
  }

  /** Addresses tracked, for tests. */
  get size(): number {
    return this.tallies.size;
  }
}
