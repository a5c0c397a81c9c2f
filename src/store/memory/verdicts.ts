import type { Verdict, VerdictCache } from '../types';

/** One process only; bounded so a flood of distinct bad tokens cannot grow it without limit. */
export class MemoryVerdictCache implements VerdictCache {
  private readonly entries = new Map<string, { verdict: Verdict; until: number }>();

  constructor(
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

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
  }
}
