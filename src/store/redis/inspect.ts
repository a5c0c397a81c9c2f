import type { Cluster, Redis } from 'ioredis';
import { uncounted, type FailureCounter, type StoreCondition } from '../types';
import { unavailable } from './errors';

const POLICY = /^maxmemory_policy:(\S+)/m;

/** The nodes that hold sessions: every master of a Cluster, or the one node. */
function dataNodes(client: Redis | Cluster, clustered: boolean): Redis[] {
  return clustered ? (client as Cluster).nodes('master') : [client as Redis];
}

/**
 * Whether Redis keeps sessions until they expire. Every session key has a TTL, so an evicting
 * policy (allkeys-*, and every volatile-* one) drops sessions in active use as soon as memory is
 * tight, and their owners see 404 minutes early. Read from `INFO memory`, which managed services
 * allow where `CONFIG GET` is disabled.
 */
export async function inspectRedis(
  client: Redis | Cluster,
  clustered: boolean,
  allowEviction: boolean,
  failed: FailureCounter = uncounted,
): Promise<StoreCondition> {
  const nodes = dataNodes(client, clustered);
  if (nodes.length === 0) return { healthy: false, problem: 'unreachable', detail: 'no Redis node is known yet' };
  const database = clustered ? undefined : await missingDatabase(client as Redis, failed);
  if (database !== undefined) return database;
  let infos: string[];
  try {
    infos = await Promise.all(nodes.map((node) => node.info('memory')));
  } catch (err) {
    failed('inspect', unavailable(err).reason);
    const message = (err as Error).message;
    // A user whose ACL forbids INFO cannot tell the policy; that is no reason to stop serving.
    if (/^NOPERM/.test(message)) return { healthy: true, note: 'cannot read maxmemory-policy (INFO is not allowed)' };
    return { healthy: false, problem: 'unreachable', detail: message };
  }
  const policies = [...new Set(infos.map((info) => POLICY.exec(info)?.[1] ?? 'unknown'))];
  const evicting = policies.filter((p) => p !== 'noeviction' && p !== 'unknown');
  if (evicting.length === 0) return { healthy: true };
  const detail =
    `Redis maxmemory-policy is ${evicting.join(', ')}: it evicts live sessions before they expire. ` +
    'Set maxmemory-policy noeviction (with a maxmemory bound: a full Redis then refuses creates with 503)' +
    ', or RZ_REDIS_ALLOW_EVICTION=true to accept losing sessions';
  return allowEviction ? { healthy: true, note: detail } : { healthy: false, problem: 'misconfigured', detail };
}

/**
 * A database the URL names (`redis://host:6379/7`) that this Redis does not have: the client's
 * SELECT fails on every connection, is only logged, and the connection goes on in database 0, where
 * sessions would mix with whatever else lives there. SELECT is sent again here to learn its answer.
 */
export async function missingDatabase(
  client: Redis,
  failed: FailureCounter = uncounted,
): Promise<Extract<StoreCondition, { healthy: false }> | undefined> {
  const db = client.options.db ?? 0;
  if (db === 0) return undefined;
  try {
    await client.select(db);
    return undefined;
  } catch (err) {
    failed('inspect', unavailable(err).reason);
    const message = (err as Error).message;
    // Anything else (no connection, an ACL without SELECT) says nothing about the database: INFO tells.
    if (!/DB index is out of range/i.test(message)) return undefined;
    return {
      healthy: false,
      problem: 'misconfigured',
      detail: `REDIS_URL names database ${db}, which this Redis does not have (its 'databases' setting is lower): name one it has, or none (database 0)`,
    };
  }
}
