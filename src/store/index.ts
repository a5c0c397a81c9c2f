import type { Logger } from 'pino';
import type { Config } from '../config';
import { createMemoryBackend } from './memory';
import { createRedisBackend, redisTopology } from './redis';
import type { Backend, FailureCounter } from './types';

export * from './types';

/**
 * The one place the backend is chosen: Redis (single node, Sentinel or Cluster) when one is
 * configured, else everything in this process. Everything stateful comes from what this returns.
 */
export async function createBackend(config: Config, log: Logger, failed?: FailureCounter): Promise<Backend> {
  const caps = { global: config.maxSessions, perAddress: config.maxSessionsPerAddress };
  if (redisTopology(config) === undefined) {
    log.warn('No Redis is configured: using the in-memory store, which only works with a single process');
    return createMemoryBackend({ caps, maxTxnsPerSession: config.maxTxnsPerSession });
  }
  return createRedisBackend(
    {
      redis: config,
      caps,
      maxTxnsPerSession: config.maxTxnsPerSession,
      allowEviction: config.redisAllowEviction,
      failed,
    },
    log,
  );
}
