import { StoreUnavailableError, type FailureCounter, type StoreOperation, type UnavailableReason } from '../types';

/** Redis error replies by their first word, as the reason a request could not be served. */
const REPLY_REASONS: Record<string, UnavailableReason> = {
  OOM: 'oom',
  READONLY: 'readonly',
  LOADING: 'loading',
  BUSY: 'busy',
  MASTERDOWN: 'readonly',
  NOREPLICAS: 'readonly',
  CLUSTERDOWN: 'cluster',
  TRYAGAIN: 'cluster',
  MOVED: 'cluster',
  ASK: 'cluster',
  CROSSSLOT: 'cluster',
  NOPERM: 'noperm',
  NOAUTH: 'noperm',
  WRONGPASS: 'noperm',
  NOSCRIPT: 'script',
};

function reasonOf(err: unknown): UnavailableReason {
  if (!(err instanceof Error)) return 'other';
  // The Cluster client followed MOVED, ASK, TRYAGAIN or CLUSTERDOWN as often as it may (a slot
  // migrating, a shard without a master) and gave up: the cluster's state, not the connection.
  if (err.message.startsWith('Too many Cluster redirections')) return 'cluster';
  // The Cluster client has no node to send the command to (no slot map yet, or none left after a
  // failed refresh) and queues nothing: the cluster is not usable, as with CLUSTERDOWN.
  if (err.message.startsWith("Cluster isn't ready")) return 'cluster';
  // No node answered the slot map: why the last one did not is the reason.
  if (err.name === 'ClusterAllFailedError' && 'lastNodeError' in err && err.lastNodeError instanceof Error) {
    return reasonOf(err.lastNodeError);
  }
  if (err.name === 'ReplyError') {
    const word = /^[A-Z]+/.exec(err.message)?.[0] ?? '';
    if (word === 'ERR' && err.message.includes('script')) return 'script';
    return REPLY_REASONS[word] ?? 'other';
  }
  if (/timed? ?out/i.test(err.message)) return 'timeout';
  return 'connection';
}

/**
 * Whatever Redis answers instead of a result (unreachable, slow, full, read-only, loading, refusing
 * a command) is a condition of the store, never a bug in the request: the client gets a 503 with
 * Retry-After, and the reason goes to the metrics and the (rate-limited) log line.
 */
export function unavailable(err: unknown): StoreUnavailableError {
  if (err instanceof StoreUnavailableError) return err;
  const reason = reasonOf(err);
  return new StoreUnavailableError(`session store unavailable (${reason})`, reason, { cause: err });
}

/** For `.catch(storeFailure)`: any failure of a backend call becomes StoreUnavailableError. */
export function storeFailure(err: unknown): never {
  throw unavailable(err);
}

/**
 * For `.catch` of a call made for `operation`: the failure is counted by its reason, and becomes
 * StoreUnavailableError.
 */
export function countedFailure(operation: StoreOperation, failed: FailureCounter): (err: unknown) => never {
  return (err) => {
    const e = unavailable(err);
    failed(operation, e.reason);
    throw e;
  };
}
