import { rateWindowKey } from '../format';
import type { RateCounters, RateWindow } from '../types';
import { storeFailure } from './errors';
import type { ScriptedClient } from './scripts';

/** Counts kept this long past their window's end: replicas whose clocks lag still add to them. */
const KEEP_AFTER_MS = 5000;

/**
 * Rate counts shared by every replica: one hash per budget window, one field per address, all in
 * one Cluster slot, so one script call adds a whole batch of addresses and answers their totals.
 */
export class RedisRateCounters implements RateCounters {
  readonly shared = true;

  constructor(private readonly cmd: ScriptedClient) {}

  add(window: RateWindow, counts: readonly (readonly [string, number])[]): Promise<number[]> {
    const args: (string | number)[] = [Math.max(KEEP_AFTER_MS, window.start + window.ms - Date.now() + KEEP_AFTER_MS)];
    for (const [address, count] of counts) args.push(address, count);
    return this.cmd.rzAddRateCounts(rateWindowKey(window.budget, window.start), ...args).catch(storeFailure);
  }
}
