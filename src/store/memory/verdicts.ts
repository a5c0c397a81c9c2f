import type { Verdict, VerdictCache } from '../types';

/**
 * One process only; bounded so a flood of distinct bad tokens cannot grow it without limit, and
 * swept, so the verdicts of a burst do not stay in memory once expired with nothing asking for them.
 */
export class MemoryVerdictCache implements VerdictCache {
  private readonly entries = new Map<string, { verdict: Verdict; until: number }>();
  /** One timer for the whole cache, running only while it holds entries. */
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
    private readonly sweepIntervalMs = 10_000,
  ) {}

  /** Verdicts held, expired ones not yet swept included (tests). */
  get size(): number {
    return this.entries.size;
  }

  async get(tokenHash: string): Promise<Verdict | undefined> {
    const e = this.entries.get(tokenHash);
    if (e === undefined) return undefined;
    if (e.until <= this.now()) {
      this.entries.delete(tokenHash);
      return undefined;
    }
    return e.verdict;
  }

  async set(tokenHash: string, verdict: Verdict, ttlMs: number): Promise<void> {
    // A verdict set again replaces its own entry (and becomes the newest), taking no other's place.
    this.entries.delete(tokenHash);
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest entry.
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(tokenHash, { verdict, until: this.now() + ttlMs });
    if (this.sweeper === undefined && !this.closed) {
      this.sweeper = setInterval(() => this.sweep(), this.sweepIntervalMs);
      this.sweeper.unref();
    }
  }

  /** Drops every expired verdict (expired ones are never answered anyway: this frees their memory). */
  sweep(): void {
    const now = this.now();
    for (const [tokenHash, e] of this.entries) if (e.until <= now) this.entries.delete(tokenHash);
    if (this.entries.size === 0) this.stopSweeping();
  }

  close(): void {
    this.closed = true;
    this.stopSweeping();
    this.entries.clear();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
