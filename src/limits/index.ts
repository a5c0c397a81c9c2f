import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Metrics } from '../metrics';
import { RedisStore } from '../store/redis';
import type { SessionStore } from '../store/types';
import { CappedStore } from './capped-store';
import { MemoryCaps } from './caps-memory';
import { RedisCaps } from './caps-redis';
import { ClientAddresses } from './client-address';
import { limits } from './middleware';
import { budgetLimiter } from './rate-limit';
import { AdmitAhead } from './admit-ahead';

export { clientOf } from './middleware';

export interface Limits {
  middleware: Middleware;
  /** The store the protocol families use: the given one, wrapped in the session caps when on. */
  store: SessionStore;
}

/** Rate limits and session caps from the configuration, sharing the store's Redis when it has one. */
export function createLimits(config: Config, store: SessionStore, metrics: Metrics, log: Logger): Limits {
  const redis = store instanceof RedisStore ? store.client : undefined;
  const caps = { global: config.maxSessions, perAddress: config.maxSessionsPerAddress };
  const capped =
    caps.global > 0 || caps.perAddress > 0
      ? new CappedStore(store, redis ? new RedisCaps(redis, caps) : new MemoryCaps(caps), metrics)
      : store;
  const middleware = limits({
    addresses: new ClientAddresses(config),
    create:
      config.createRate > 0
        ? budgetLimiter({ name: 'create', points: config.createRate, windowSeconds: 60 }, redis)
        : undefined,
    request:
      config.requestRate > 0
        ? new AdmitAhead(
            budgetLimiter(
              {
                name: 'request',
                points: config.requestRate * config.requestRateWindowSeconds,
                windowSeconds: config.requestRateWindowSeconds,
              },
              redis,
            ),
            // In memory the verdict is immediate anyway; admitting ahead only pays off against Redis.
            redis === undefined ? 0 : 4,
          )
        : undefined,
    metrics,
    log,
  });
  return { middleware, store: capped };
}
