import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Metrics } from '../metrics';
import { createRedisClient } from '../store/connect';
import { MemoryStore } from '../store/memory';
import type { SessionStore } from '../store/types';
import { MemoryNotifier } from './memory-notifier';
import type { Notifier } from './notifier';
import { RedisNotifier, type SubscriberFactory } from './redis-notifier';
import { LongPoll } from './waiters';

export { LongPoll, type WaitResult } from './waiters';
export { preferredWaitSeconds } from './prefer';
export type { Notifier } from './notifier';

/**
 * The subscriber connection: like the store's (same topology: single node, Sentinel or Cluster with
 * one subscriber per shard), but it restores its subscriptions itself (see RedisNotifier) and never
 * pipelines, since subscribe commands change the connection's mode.
 */
export function subscriberFactory(config: Config): SubscriberFactory {
  return () => createRedisClient(config, { subscriber: true });
}

/** In-process notices for the in-memory store, Redis sharded pub/sub for the Redis store. */
export function createNotifier(config: Config, store: SessionStore, log: Logger): Notifier {
  if (store instanceof MemoryStore) return new MemoryNotifier(store);
  return new RedisNotifier(subscriberFactory(config), log);
}

/**
 * Waits (boundedly) for the subscriber like the store waits for its connection; if it is not up yet,
 * waits are held on timers alone until it is, then re-checked.
 */
export async function createLongPoll(
  config: Config,
  store: SessionStore,
  log: Logger,
  metrics: Metrics,
): Promise<LongPoll> {
  const notifier = createNotifier(config, store, log);
  if (notifier instanceof RedisNotifier) {
    // With Redis already unreachable (the store waited for it), the replica starts at once, answering
    // 503 until it is back, rather than waiting for a subscriber that cannot connect either.
    const redisUp = await store.ping().then(
      () => true,
      () => false,
    );
    if (!(await notifier.connected(redisUp ? 5000 : 0))) {
      log.warn('long-poll subscriber is not connected yet: waits end at their timeout until it is');
    }
  }
  return new LongPoll(store, notifier, longPollLimits(config), metrics);
}

export function longPollLimits(config: Config) {
  return {
    maxWaitMs: config.longPollMaxWaitSeconds * 1000,
    maxWaiters: config.longPollMaxWaiters,
    maxWaitersPerAddress: config.longPollMaxWaitersPerAddress,
  };
}
