import type { Config } from '../config';
import { RedisStore } from '../store/redis';
import type { SessionStore } from '../store/types';
import { GLOBAL_KEY } from './caps-redis';

/**
 * The number of live sessions, for the `rendezvous_sessions_live` gauge, where it is cheap: the
 * global session cap keeps every live session's slot in one sorted set scored by when it frees
 * (expiry plus a second), so a ZCOUNT is the count, O(log n), read at scrape time only. Without the
 * cap there is no such set, and nothing scans the keyspace: undefined, and the gauge is not fed.
 */
export function redisLiveSessions(config: Config, store: SessionStore): (() => Promise<number>) | undefined {
  if (!(store instanceof RedisStore) || config.maxSessions === 0) return undefined;
  const client = store.client;
  return () => client.zcount(GLOBAL_KEY, Date.now(), '+inf');
}
