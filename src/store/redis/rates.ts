import { rateBatchesKey, rateBucketOf, rateWindowKey } from '../format';
import { uncounted, type FailureCounter, type RateCounters, type RateWindow } from '../types';
import { countedFailure } from './errors';
import type { ScriptedClient } from './scripts';

/** Counts kept this long past their window's end: replicas whose clocks lag still add to them. */
const KEEP_AFTER_MS = 5000;

/**
 * Rate counts shared by every replica: each budget window's counts in a few hashes by address
 * (format.ts says why), all in one Cluster slot, so one script call adds a whole batch of addresses
 * and answers their totals.
 */
export class RedisRateCounters implements RateCounters {
  readonly shared = true;

  private readonly failure;

  constructor(
    private readonly cmd: ScriptedClient,
    failed: FailureCounter = uncounted,
  ) {
    this.failure = countedFailure('rates', failed);
  }

  add(window: RateWindow, counts: readonly (readonly [string, number])[], batch?: string): Promise<number[]> {
    const keys: string[] = [rateBatchesKey(window.budget, window.start)];
    /** Key index (1-based, as the script reads it) by bucket. */
    const indexOf = new Map<number, number>();
    const args: (string | number)[] = [
      Math.max(KEEP_AFTER_MS, window.start + window.ms - Date.now() + KEEP_AFTER_MS),
      batch ?? '',
    ];
    for (const [address, count] of counts) {
      const bucket = rateBucketOf(address);
      let index = indexOf.get(bucket);
      if (index === undefined) {
        index = keys.push(rateWindowKey(window.budget, window.start, bucket));
        indexOf.set(bucket, index);
      }
      args.push(index, address, count);
    }
    return this.cmd.rzAddRateCounts(keys.length, ...keys, ...args).catch(this.failure);
  }
}
