import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

interface View {
  /** Points left in the shared budget, as Redis last said. */
  remaining: number;
  /** When that window ends (this replica's clock). */
  resetAt: number;
  /** Points spent here whose answer has not come back yet. */
  inflight: number;
}

/**
 * Keeps the shared budget off the request's critical path while an address is clearly under it.
 * Every request still spends its point in Redis, so all replicas count the same budget; but when
 * this replica last heard that plenty is left, the request is admitted at once and the point is
 * spent alongside it (one round trip, pipelined with the request's own). Near the limit, for a new
 * address, or at the start of a window, the request waits for Redis' verdict like any other.
 *
 * What this can let through beyond the budget is bounded: a replica admits ahead at most
 * `maxAhead` unanswered requests per address, and only while more than that many points are left,
 * so a flood over N replicas overshoots by at most about N × maxAhead per window.
 */
export class AdmitAhead {
  private readonly views = new Map<string, View>();

  constructor(
    private readonly limiter: RateLimiterAbstract,
    private readonly maxAhead = 4,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * undefined when the request is admitted now; otherwise a promise that resolves when it may go
   * on, or rejects with a RateLimiterRes when the address is over budget.
   */
  admit(key: string): Promise<void> | undefined {
    const now = this.now();
    const view = this.views.get(key);
    if (view !== undefined && view.resetAt > now) {
      if (view.inflight < this.maxAhead && view.remaining - view.inflight > this.maxAhead) {
        view.inflight++;
        this.limiter.consume(key).then(
          (res) => this.settle(view, res),
          (err: unknown) => this.settle(view, err instanceof RateLimiterRes ? err : undefined),
        );
        return undefined;
      }
    }
    return this.limiter.consume(key).then(
      (res) => this.learn(key, res),
      (err: unknown) => {
        if (err instanceof RateLimiterRes) this.learn(key, err);
        throw err;
      },
    );
  }

  private settle(view: View, res: RateLimiterRes | undefined): void {
    view.inflight--;
    if (res !== undefined) view.remaining = Math.min(view.remaining, res.remainingPoints);
  }

  private learn(key: string, res: RateLimiterRes): void {
    const now = this.now();
    const resetAt = now + res.msBeforeNext;
    const view = this.views.get(key);
    // Same window: the budget only shrinks, whichever answer arrives last.
    if (view !== undefined && view.resetAt > now && resetAt <= view.resetAt + 1000) {
      view.remaining = Math.min(view.remaining, res.remainingPoints);
      return;
    }
    if (view !== undefined) this.views.delete(key);
    else if (this.views.size >= this.maxKeys && !this.prune(now)) return;
    // Re-inserted at the end, so the map stays in window order and pruning stops at the first live one.
    this.views.set(key, { remaining: res.remainingPoints, resetAt, inflight: 0 });
  }

  /** Drops ended windows from the front; false when the map is still full of live ones. */
  private prune(now: number): boolean {
    for (const [key, view] of this.views) {
      if (view.resetAt > now) break;
      this.views.delete(key);
    }
    return this.views.size < this.maxKeys;
  }

  /** Addresses remembered, for tests. */
  get size(): number {
    return this.views.size;
  }
}
