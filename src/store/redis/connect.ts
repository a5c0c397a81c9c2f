import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../../config';
import type { UnavailableReason } from '../types';
import { TurnBatchingRedis } from './turn-batching';

export type RedisClient = Redis | Cluster;

/** The settings that say which Redis to reach and how. */
export type RedisConfig = Pick<
  Config,
  | 'redisUrl'
  | 'redisSentinels'
  | 'redisSentinelMaster'
  | 'redisSentinelPassword'
  | 'redisClusterNodes'
  | 'redisUsername'
  | 'redisPassword'
  | 'redisTls'
  | 'redisTlsCaFile'
  | 'redisTlsCertFile'
  | 'redisTlsKeyFile'
  | 'redisTlsServername'
  | 'redisTlsRejectUnauthorized'
  | 'redisCommandTimeoutMs'
>;

export type Topology = 'single' | 'sentinel' | 'cluster';

/** Which topology the configuration names, or undefined for the in-memory store. */
export function redisTopology(config: Partial<RedisConfig>): Topology | undefined {
  if (config.redisSentinels !== undefined) return 'sentinel';
  if (config.redisClusterNodes !== undefined) return 'cluster';
  if (config.redisUrl !== undefined) return 'single';
  return undefined;
}

/**
 * Options that make an outage visible at once: no offline queue (a command while disconnected
 * fails immediately), no re-sending after a reconnect, a per-command timeout (a hung socket cannot
 * hold a request), and endless
 * reconnection with capped backoff (service resumes by itself when Redis returns). A READONLY
 * reply means the node we hold was demoted by a failover: reconnect to find the new master. No
 * auto-pipelining: a single node's or Sentinel's connection batches each turn's commands itself
 * (TurnBatchingRedis), and a Cluster's cannot (below).
 */
export function redisOptions(config: Pick<Config, 'redisCommandTimeoutMs'>): RedisOptions {
  return {
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    commandTimeout: config.redisCommandTimeoutMs,
    connectTimeout: 5000,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    // A command whose connection dropped has failed (503) already: sending it again after the
    // reconnect would make a write land long after its client was told it did not.
    autoResendUnfulfilledCommands: false,
    lazyConnect: false,
  };
}

/** Whether connections to Redis use TLS (a `rediss://` URL or RZ_REDIS_TLS). */
export function usesTls(config: Pick<RedisConfig, 'redisTls' | 'redisUrl'>): boolean {
  return config.redisTls || /^rediss:/i.test(config.redisUrl ?? '');
}

/**
 * What an operator needs beside a connection error that TLS to a port without it causes: the client's
 * handshake either meets silence (a timeout) or a plain-text answer (an OpenSSL record error), and
 * neither names the likely mistake.
 */
export function tlsHint(err: Error, reason: UnavailableReason, tls: boolean): string | undefined {
  if (!tls) return undefined;
  const handshake = reason === 'timeout' || /wrong version number|packet length too long/i.test(err.message);
  return handshake
    ? 'TLS to Redis is on (rediss:// or RZ_REDIS_TLS=true): a port that does not speak TLS fails the handshake like this'
    : undefined;
}

function tlsOptions(config: RedisConfig): ConnectionOptions | undefined {
  if (!usesTls(config)) return undefined;
  const tls: ConnectionOptions = { rejectUnauthorized: config.redisTlsRejectUnauthorized };
  if (config.redisTlsCaFile) tls.ca = readFileSync(config.redisTlsCaFile);
  if (config.redisTlsCertFile) tls.cert = readFileSync(config.redisTlsCertFile);
  if (config.redisTlsKeyFile) tls.key = readFileSync(config.redisTlsKeyFile);
  if (config.redisTlsServername) tls.servername = config.redisTlsServername;
  return tls;
}

/** The credentials given, as options (an undefined one is left out, not set to undefined). */
function auth(username: string | undefined, password: string | undefined): Pick<RedisOptions, 'username' | 'password'> {
  const out: Pick<RedisOptions, 'username' | 'password'> = {};
  if (username !== undefined) out.username = username;
  if (password !== undefined) out.password = password;
  return out;
}

/** REDIS_URL with its user name and password taken out, and what they were (percent-decoded). */
function withoutCredentials(text: string): { url: string; username?: string; password?: string } {
  const u = new URL(text);
  const username = u.username === '' ? undefined : decodeURIComponent(u.username);
  const password = u.password === '' ? undefined : decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  return { url: u.href, username, password };
}

/** How often the Cluster client follows a redirection of one command before it fails (ioredis's default). */
const MAX_REDIRECTIONS = 16;

/**
 * The pause before a command refused with TRYAGAIN or CLUSTERDOWN is sent again: every try fits in
 * half the command timeout (up to 100 ms each, ioredis's default, once the timeout allows it).
 */
export function redirectionDelayMs(commandTimeoutMs: number): number {
  return Math.max(1, Math.min(100, Math.floor(commandTimeoutMs / (2 * MAX_REDIRECTIONS))));
}

export interface ClientPurpose {
  /**
   * A pub/sub connection: no batching (subscribe commands change the connection's mode), no
   * automatic resubscription (the owner restores exactly what it still needs), and on Cluster one
   * subscriber per shard so SSUBSCRIBE reaches the node owning each channel's slot.
   */
  subscriber?: boolean;
}

/**
 * A new connection to the configured topology: a single node, the master a set of Sentinels points
 * at, or a Cluster. Everything that talks to Redis (the store, long-poll subscribers, limits) gets
 * its connection here, so all of them follow failovers and resharding the same way.
 */
export function createRedisClient(config: RedisConfig, purpose: ClientPurpose = {}): RedisClient {
  const tls = tlsOptions(config);
  const base: RedisOptions = {
    ...redisOptions(config),
    ...auth(config.redisUsername, config.redisPassword),
    ...(tls ? { tls } : {}),
    ...(purpose.subscriber ? { autoResubscribe: false } : {}),
  };
  // A subscriber's commands change the connection's mode: each goes on its own.
  const Node = purpose.subscriber ? Redis : TurnBatchingRedis;
  switch (redisTopology(config)) {
    case 'sentinel':
      return new Node({
        ...base,
        sentinels: config.redisSentinels,
        name: config.redisSentinelMaster,
        role: 'master',
        ...(config.redisSentinelPassword !== undefined ? { sentinelPassword: config.redisSentinelPassword } : {}),
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
        sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
        // Sentinel tells us at once when it promotes a replica, instead of waiting for a timeout.
        failoverDetector: true,
      });
    case 'cluster': {
      const { retryStrategy: _r, enableOfflineQueue, enableAutoPipelining: _a, ...redisOptions } = base;
      return new Cluster(config.redisClusterNodes!, {
        redisOptions,
        enableOfflineQueue,
        // Off: ioredis follows a redirection (MOVED, ASK, TRYAGAIN) for a pipeline only when every
        // command of it got the same one and the others were read-only. Requests batched together
        // would each get their redirection as an error (a 503), and a MOVED would never refresh the
        // slot map: after a resharding, the moved slots' sessions answered 503 for good.
        enableAutoPipelining: false,
        // Every write goes to a master; reads too, since a replica may lag behind a CAS write.
        scaleReads: 'master',
        clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
        // 0: a command whose node connection closed fails (503, the client retries) instead of being
        // sent again by the client, which could land a write twice behind its answer. Redirections
        // (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) are still followed: they say it did not run.
        retryDelayOnFailover: 0,
        // TRYAGAIN (a slot migrating) and CLUSTERDOWN are asked again after a pause, MAX_REDIRECTIONS
        // times at most: paced so that all of them end within half the command timeout. A request the
        // cluster keeps refusing then fails as what it is (the redirections ran out, reason `cluster`)
        // instead of as a command that timed out while waiting for its next try.
        maxRedirections: MAX_REDIRECTIONS,
        retryDelayOnTryAgain: redirectionDelayMs(config.redisCommandTimeoutMs),
        retryDelayOnClusterDown: redirectionDelayMs(config.redisCommandTimeoutMs),
        slotsRefreshTimeout: 2000,
        // A subscriber learns of a resharding only by reading the slot map again: the node that gives
        // a slot away drops its subscriptions without a word ioredis acts on, and a subscriber sends
        // nothing that a MOVED could answer. A changed map moves the subscriptions to the new owner
        // and makes every waiter read again (see RedisNotifier), so no wake-up is lost for good.
        ...(purpose.subscriber ? { shardedSubscribers: true, slotsRefreshInterval: 1000 } : {}),
        // Certificates name the host, not the address it resolves to.
        ...(tls ? { dnsLookup: (address: string, cb: (e: null, a: string) => void) => cb(null, address) } : {}),
      });
    }
    case 'single': {
      // Credentials given as their own settings win over the URL's (they come from a Secret). Passed
      // as options only: ioredis lets a URL's credentials win over its options (and makes the
      // password '' when the URL names only a user).
      const fromUrl = withoutCredentials(config.redisUrl!);
      const username = config.redisUsername ?? fromUrl.username;
      const password = config.redisPassword ?? fromUrl.password;
      return new Node(fromUrl.url, { ...base, ...auth(username, password) });
    }
    default:
      throw new Error('no Redis topology is configured');
  }
}

/** Resolves when the client is ready, or after `timeoutMs` (false) so a replica can start during an outage. */
export function whenReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
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
