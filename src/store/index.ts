import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { MemoryStore } from './memory';
import { RedisStore } from './redis';
import type { SessionStore } from './types';

export * from './types';
export { MemoryStore } from './memory';
export { RedisStore } from './redis';

/**
 * Options that make an outage visible at once: no offline queue (a command while disconnected
 * fails immediately), a per-command timeout (a hung socket cannot hold a request), and endless
 * reconnection with capped backoff (service resumes by itself when Redis returns).
 */
export function redisOptions(config: Pick<Config, 'redisCommandTimeoutMs'>): RedisOptions {
  return {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    commandTimeout: config.redisCommandTimeoutMs,
    connectTimeout: 5000,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    lazyConnect: false,
  };
}

/** Resolves when the client is ready, or after `timeoutMs` (false) so a replica can start during an outage. */
export function whenReady(client: Redis, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    client.on('ready', onReady);
  });
}

export async function createStore(config: Config, log: Logger): Promise<SessionStore> {
  if (config.redisUrl === undefined) {
    log.warn('REDIS_URL is not set: using the in-memory store, which only works with a single process');
    return new MemoryStore(config.maxTxnsPerSession);
  }
  const client = new Redis(config.redisUrl, redisOptions(config));
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log.error({ err: err.message }, 'redis connection error');
    down = true;
  });
  client.on('ready', () => {
    if (down) log.info('redis connection restored');
    down = false;
  });
  if (!(await whenReady(client, 5000))) log.warn('redis is not reachable yet: answering 503 until it is');
  return new RedisStore(client, config.maxTxnsPerSession);
}
