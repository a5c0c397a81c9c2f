import type { Middleware } from 'koa';
import type { Config } from '../config';
import type { Lifecycle } from '../http/health';
import type { Metrics } from '../metrics';
import type { RateCounters } from '../store/types';
import { SharedBudget } from './budget';
import { ClientAddresses } from './client-address';
import { limits, probePaths } from './middleware';

export { clientOf } from './middleware';
export { limitExceeded, sessionCapExceeded } from './errors';

/** How often each replica settles its rate counts with the others (one backend call per budget). */
export const SETTLE_INTERVAL_MS = 50;

/**
 * The rate budgets from the configuration, counted through the backend's rate counters. They stop
 * settling when the replica stops (before the backend closes): no timer of theirs outlives it.
 */
export function createLimits(
  config: Config,
  counters: RateCounters,
  metrics: Metrics,
  lifecycle: Lifecycle,
): Middleware {
  const budget = (name: 'create' | 'request', points: number, windowSeconds: number) => {
    if (points <= 0) return undefined;
    const b = new SharedBudget(counters, {
      name,
      points,
      windowMs: windowSeconds * 1000,
      intervalMs: SETTLE_INTERVAL_MS,
    });
    lifecycle.onStop(() => b.stop());
    return b;
  };
  return limits({
    addresses: new ClientAddresses(config),
    create: budget('create', config.createRate, 60),
    request: budget('request', config.requestRate * config.requestRateWindowSeconds, config.requestRateWindowSeconds),
    metrics,
    exempt: probePaths(config.metricsPort === undefined),
  });
}
