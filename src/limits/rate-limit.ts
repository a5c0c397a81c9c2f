import type { Cluster, Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract } from 'rate-limiter-flexible';

export interface Budget {
  /** Name in metrics (`rendezvous_rate_limited_total{budget}`). */
  name: 'create' | 'request';
  points: number;
  windowSeconds: number;
}

/**
 * One budget per client address, in Redis when there is one so every replica spends the same
 * budget: rate-limiter-flexible keeps a fixed window per key, counted by an atomic single-key script
 * (Cluster friendly). Once an address is over budget, a replica refuses it from memory for the rest
 * of the window, so a flood stops costing Redis anything. If Redis fails, an in-memory budget of
 * the same size takes over on each replica rather than failing every request.
 */
export function budgetLimiter(budget: Budget, redis: Redis | Cluster | undefined): RateLimiterAbstract {
  const opts = { points: budget.points, duration: budget.windowSeconds, keyPrefix: `rz:rl:${budget.name}` };
  if (redis === undefined) return new RateLimiterMemory(opts);
  return new RateLimiterRedis({
    ...opts,
    storeClient: redis,
    rejectIfRedisNotReady: true,
    inMemoryBlockOnConsumed: budget.points + 1,
    insuranceLimiter: new RateLimiterMemory(opts),
  });
}
