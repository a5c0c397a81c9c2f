import type { RateCounters, RateWindow } from '../types';

/**
 * Rate counts for one process. Nothing is shared, so the budgets count locally and never call this
 * (`shared` is false); it keeps the interface whole for the contract suite and for tools.
 */
export class MemoryRateCounters implements RateCounters {
  readonly shared = false;
  private readonly windows = new Map<string, { end: number; counts: Map<string, number>; batches: Set<string> }>();

  constructor(private readonly now: () => number = Date.now) {}

  async add(window: RateWindow, counts: readonly (readonly [string, number])[], batch?: string): Promise<number[]> {
    const now = this.now();
    for (const [key, w] of this.windows) if (w.end <= now) this.windows.delete(key);
    const key = `${window.budget}:${window.start}`;
    let w = this.windows.get(key);
    if (w === undefined) {
      this.windows.set(key, (w = { end: window.start + window.ms, counts: new Map(), batches: new Set() }));
    }
    // A batch added before is answered, not added again.
    const again = batch !== undefined && w.batches.has(batch);
    if (batch !== undefined) w.batches.add(batch);
    const totals: number[] = [];
    for (const [address, count] of counts) {
      const total = (w.counts.get(address) ?? 0) + (again ? 0 : count);
      w.counts.set(address, total);
      totals.push(total);
    }
    return totals;
  }
}
