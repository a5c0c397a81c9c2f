import type { Cluster, Redis } from 'ioredis';
import { ConfigError } from '../../config';
import type { Logger } from 'pino';
import { uncounted, type Backend, type CapLimits, type FailureCounter } from '../types';
import { createRedisClient, redisTopology, tlsHint, usesTls, whenReady, type RedisConfig } from './connect';
import { LogThrottle } from '../../log-throttle';
import { countedFailure, unavailable } from './errors';
import { inspectRedis, missingDatabase } from './inspect';
import { RedisNotifier } from './notifier';
import { RedisRateCounters } from './rates';
import { defineScripts } from './scripts';
import { ClusterRedisSessions, RedisSessions } from './sessions';
import { RedisVerdictCache } from './verdicts';

export { createRedisClient, redisOptions, redisTopology, whenReady, type RedisClient } from './connect';
export { RedisSessions, ClusterRedisSessions, NOTICE_MAX_PAYLOAD_BYTES } from './sessions';
export { RedisNotifier, type SubscriberFactory } from './notifier';
export { RedisVerdictCache } from './verdicts';
export { RedisRateCounters } from './rates';
export { scriptSource } from './scripts';

export interface RedisBackendOptions {
  redis: RedisConfig;
  caps: CapLimits;
  maxTxnsPerSession: number;
  allowEviction: boolean;
  /** How long start-up waits for Redis before serving 503s until it answers. */
  connectWaitMs?: number;
  /**
   * Told of every call this backend makes that fails, but the session operations', whose caller
   * counts them (MeteredSessions): rates, reconciliation, verdicts, pings, inspections, subscriptions.
   */
  failed?: FailureCounter;
}

/**
 * Everything in Redis, shared by every replica: one connection for commands (sessions, caps, rate
 * counts, verdicts) and one subscriber connection for wake-ups, both made by the same factory, so
 * they follow failovers and resharding the same way.
 */
export async function createRedisBackend(opts: RedisBackendOptions, log: Logger): Promise<Backend> {
  const topology = redisTopology(opts.redis)!;
  const failed = opts.failed ?? uncounted;
  const pingFailure = countedFailure('ping', failed);
  const clustered = topology === 'cluster';
  const client = createRedisClient(opts.redis);
  const tls = usesTls(opts.redis);
  /** The kind of the error last logged while the connection is down; undefined while it is up. */
  let downFor: string | undefined;
  /** Why the connection is not up, while it is not: what a ping then answers at once. */
  let connectionError: Error | undefined;
  // Errors of two kinds taking turns (a timeout, a refusal) would log at every reconnect attempt.
  const throttle = new LogThrottle(10_000);
  client.on('error', (err: Error) => {
    // Once per outage, and again when its kind changes (refused credentials after a restart, say).
    const reason = unavailable(err).reason;
    if (downFor !== reason && throttle.take(reason) !== undefined) {
      log.error({ err: err.message, reason, topology, hint: tlsHint(err, reason, tls) }, 'redis connection error');
    }
    downFor = reason;
    if (client.status !== 'ready') connectionError = err;
  });
  client.on('ready', () => {
    if (downFor !== undefined) log.info({ topology }, 'redis connection restored');
    downFor = undefined;
    connectionError = undefined;
  });
  const up = await whenReady(client, opts.connectWaitMs ?? 5000);
  if (!up) log.warn({ topology }, 'redis is not reachable yet: answering 503 until it is');
  // A database this Redis does not have: the client's SELECT fails, is only logged, and the
  // connection goes on in database 0, where sessions would mix with whatever else lives there. A
  // setting that is wrong, found at start like every other (later, `/ready` says so).
  const wrongDatabase = up && !clustered ? await missingDatabase(client as Redis, failed) : undefined;
  if (wrongDatabase !== undefined) {
    client.disconnect();
    throw new ConfigError([wrongDatabase.detail]);
  }

  const sessionOptions = {
    caps: opts.caps,
    maxTxnsPerSession: opts.maxTxnsPerSession,
    commandTimeoutMs: opts.redis.redisCommandTimeoutMs,
    failed,
  };
  const sessions = clustered
    ? new ClusterRedisSessions(client as Cluster, sessionOptions, log)
    : new RedisSessions(client, sessionOptions);
  const wakeups = new RedisNotifier(() => createRedisClient(opts.redis, { subscriber: true }), log, clustered, failed);
  // With Redis unreachable the replica starts at once rather than waiting for a subscriber that
  // cannot connect either; waits are then held on timers alone until it is up, and re-checked.
  if (!(await wakeups.connected(up ? 5000 : 0))) {
    log.warn('long-poll subscriber is not connected yet: waits end at their timeout until it is');
  }
  return {
    kind: 'redis',
    description: `redis ${topology}`,
    sessions,
    wakeups,
    verdicts: new RedisVerdictCache(client, failed),
    rates: new RedisRateCounters(defineScripts(client), failed),
    // While the connection is down for a known reason (refused credentials, no such host), that
    // reason is the answer, at once: readiness shows it instead of a bare "not reached". A ping is
    // counted as a failed Redis call only when one was sent: while the connection is not up none is
    // (a node's client sends nothing before it is ready, and queues nothing), and a count per /ready
    // probe would say how often balancers probe, not how Redis fares. The outage itself shows in the
    // log, in /ready, and in the failures of the calls that requests make.
    ping: () => {
      if (client.status !== 'ready' && (connectionError !== undefined || !clustered)) {
        return Promise.reject(unavailable(connectionError ?? new Error('not connected to Redis yet')));
      }
      return client.ping().then(() => undefined, pingFailure);
    },
    inspect: () => inspectRedis(client, clustered, opts.allowEviction, failed),
    close: async () => {
      await wakeups.close();
      // Cap bookkeeping a failure interrupted is finished first, for as long as shutdown allows.
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([
        sessions.reconciled(),
        new Promise((resolve) => (waited = setTimeout(resolve, 5000).unref())),
      ]);
      clearTimeout(waited);
      // What is still unsettled then is given up: no retry of it outlives the connection.
      sessions.stop();
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    },
  };
}
