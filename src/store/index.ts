import type { Logger } from 'pino';
import type { Config } from '../config';
import { MemoryStore } from './memory';
import { RedisStore } from './redis';
import { createRedisClient, redisTopology, whenReady } from './connect';
import type { SessionStore } from './types';

export * from './types';
export { MemoryStore } from './memory';
export { RedisStore } from './redis';
export { createRedisClient, redisOptions, redisTopology, whenReady, type RedisClient } from './connect';

export async function createStore(config: Config, log: Logger): Promise<SessionStore> {
  const topology = redisTopology(config);
  if (topology === undefined) {
    log.warn('No Redis is configured: using the in-memory store, which only works with a single process');
    return new MemoryStore(config.maxTxnsPerSession);
  }
  const client = createRedisClient(config);
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log.error({ err: err.message, topology }, 'redis connection error');
    down = true;
  });
  client.on('ready', () => {
    if (down) log.info({ topology }, 'redis connection restored');
    down = false;
  });
  if (!(await whenReady(client, 5000))) log.warn({ topology }, 'redis is not reachable yet: answering 503 until it is');
  return new RedisStore(client, config.maxTxnsPerSession);
}
