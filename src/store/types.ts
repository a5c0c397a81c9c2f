/**
 * Everything stateful the server keeps, as typed interfaces: sessions (with their caps), wake-up
 * notices for long-polls, token verdicts and rate counters. A Backend bundles one implementation of
 * each, chosen once from the configuration (src/store/index.ts); the rest of the server only ever
 * sees these types, so MSC3886, MSC4108 and MSC4388 run on the same records and the same atomic
 * operations whichever backend holds them.
 */

/** The API family that created a session; a session is reachable only through its own family. */
export type Family = 'msc3886' | 'msc4108' | 'msc4388';

/** Everything about a session except its payload. */
export interface SessionMeta {
  id: string;
  family: Family;
  contentType: string;
  /** Revision counter: 1 at creation, +1 on every successful write (identical bytes included). */
  rev: number;
  /** Random per-session salt, so ETags of different sessions never coincide. */
  tag: string;
  createdAt: number;
  modifiedAt: number;
  expiresAt: number;
}

export interface Session extends SessionMeta {
  data: Buffer;
}

export interface CreateInput {
  id: string;
  tag: string;
  family: Family;
  contentType: string;
  data: Buffer;
  ttlMs: number;
  /** The client address the session counts against for the per-address cap ('' when unknown). */
  owner: string;
}

/** The session caps a store enforces inside its create (0: no cap). */
export interface CapLimits {
  /** Most live sessions in all. */
  global: number;
  /** Most live sessions created by one address. */
  perAddress: number;
}

export type CreateResult =
  | { status: 'created'; session: SessionMeta }
  /** The id is in use already (the caller draws another). */
  | { status: 'taken' }
  /** A cap is full: nothing was created, and a slot frees in `retryAfterMs`. */
  | { status: 'capped'; cap: 'global' | 'address'; retryAfterMs: number };

/**
 * What a write must find to proceed:
 * - `any`: unconditional (MSC3886 without If-Match, or `If-Match: *`);
 * - `etag`: the current ETag opaque value must be one of `etags`; naming the version before the
 *   current one with the current body and type is the re-send of a write that landed (`unchanged`);
 * - `token`: the current revision must equal `rev`; a stale token whose data equals the current
 *   payload is an idempotent retry. With `txnId`, the outcome is recorded and replayed.
 */
export type WriteCondition =
  { kind: 'any' } | { kind: 'etag'; etags: readonly string[] } | { kind: 'token'; rev: string; txnId?: string };

export interface UpdateInput {
  family: Family;
  condition: WriteCondition;
  contentType: string;
  data: Buffer;
}

export type UpdateOutcome = 'updated' | 'conflict' | 'unchanged';

export type UpdateResult =
  | { status: 'not_found' }
  | { status: UpdateOutcome; session: SessionMeta }
  /** A repeated txnId: the recorded outcome and the revision it answered with, nothing re-evaluated. */
  | { status: 'replayed'; outcome: UpdateOutcome; rev: number; session: SessionMeta }
  /** The session already remembers as many transaction ids as it may. */
  | { status: 'txn_limit'; session: SessionMeta };

/** Store-wide session counts, on the store's own clock. */
export interface SessionCounts {
  live: number;
  /** Sessions that reached their expiry without being deleted, since the store's counts began. */
  expired: number;
}

/** Sessions and their caps: every operation is one atomic step on the backend. */
export interface SessionStore {
  /** Creates a session, taking its cap slots in the same step (refusing, never evicting). */
  create(input: CreateInput): Promise<CreateResult>;
  /** The session, or null when absent, expired, or created by another family. */
  get(id: string, family: Family): Promise<Session | null>;
  update(id: string, input: UpdateInput): Promise<UpdateResult>;
  /** True when a session of that family existed and is now gone (its cap slots freed with it). */
  delete(id: string, family: Family): Promise<boolean>;
  counts(): Promise<SessionCounts>;
}

/**
 * `changed`: a write produced revision `rev`, and `session` is its new state when the notice carried
 * it (then nobody needs to read it again); `deleted`: the session is gone; `resync`: notices may have
 * been missed (the subscriber connection dropped and is back), so every waiter re-reads.
 */
export type WakeEvent = { kind: 'changed'; rev: number; session?: Session } | { kind: 'deleted' } | { kind: 'resync' };

export type WakeListener = (event: WakeEvent) => void;

export interface Subscription {
  /**
   * Settles once notices published from now on are certain to reach the listener; rejects when the
   * subscription could not be made (the waiter then relies on its timeout and on `resync`).
   */
  readonly ready: Promise<void>;
  /** Removes the listener; the last one of a session ends the subscription. Idempotent. */
  release(): void;
}

export interface NotifierStats {
  /** Sessions this replica is subscribed to. */
  sessions: number;
  /** Listeners over all sessions. */
  listeners: number;
}

/**
 * Wake-up notices for long-polls: every successful write announces the new state on its session's
 * channel and every delete announces `deleted`; a notifier delivers those to this replica's waiters.
 */
export interface Notifier {
  /** Registers the listener at once (synchronously) and subscribes if it is the session's first. */
  listen(id: string, listener: WakeListener): Subscription;
  stats(): NotifierStats;
  /** Resolves once every (un)subscribe issued so far has been carried out by the backend. */
  settled(): Promise<void>;
  /** Resolves true once notices can be received, or false after `timeoutMs`. */
  connected(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** What the homeserver said about an access token. */
/**
 * What the homeserver said of a token: valid, or not (`soft_logout`: not valid, and the homeserver
 * says the client may get a new one without losing its data, so a client must not wipe it).
 */
export type Verdict = 'valid' | 'invalid' | 'soft_logout';

/**
 * Verdicts on access tokens, remembered briefly by token hash (tokens are never stored). Errors are
 * the caller's to ignore: a cache that cannot answer is just a miss.
 */
export interface VerdictCache {
  get(tokenHash: string): Promise<Verdict | undefined>;
  set(tokenHash: string, verdict: Verdict, ttlMs: number): Promise<void>;
}

/** One fixed window of one rate budget. */
export interface RateWindow {
  budget: string;
  /** Start of the window, ms since the epoch (a multiple of `ms`). */
  start: number;
  ms: number;
}

/**
 * Request counts per client address and window, shared by every replica when `shared`. Replicas
 * count locally and add their counts here in batches; the answer is each address's total so far.
 */
export interface RateCounters {
  readonly shared: boolean;
  /**
   * Adds `count` to each address's total in `window`; resolves with the new totals, in order. A batch
   * named `batch` is added once in its window however often it is sent: a batch sent again because
   * its answer was lost (it may have landed) then answers the totals without adding anything.
   */
  add(
    window: RateWindow,
    counts: readonly (readonly [address: string, count: number])[],
    batch?: string,
  ): Promise<number[]>;
}

/** Whether the backend can hold sessions as promised, beyond merely answering. */
export type StoreCondition =
  { healthy: true; note?: string } | { healthy: false; problem: 'unreachable' | 'misconfigured'; detail: string };

export interface Backend {
  readonly kind: 'memory' | 'redis';
  /** For logs: `memory`, or the Redis topology. */
  readonly description: string;
  readonly sessions: SessionStore;
  readonly wakeups: Notifier;
  readonly verdicts: VerdictCache;
  readonly rates: RateCounters;
  /** Resolves when the backend answers; rejects with StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  /** Reachability and configuration (a Redis that evicts keys would lose sessions early). */
  inspect(): Promise<StoreCondition>;
  close(): Promise<void>;
}

/** Why the store could not serve a request; a label in metrics and logs. */
export type UnavailableReason =
  'connection' | 'timeout' | 'oom' | 'readonly' | 'loading' | 'busy' | 'cluster' | 'noperm' | 'script' | 'other';

/**
 * What a store call was for, as the metrics label it: a session operation, the session counts a
 * scrape reads, rate-budget settlement, cap reconciliation (Redis Cluster), a token verdict, the
 * readiness ping, the look at the store's configuration, or a long-poll wake-up (un)subscription.
 * A fixed set: every call the Redis backend makes is one of these.
 */
export type StoreOperation =
  | 'create'
  | 'get'
  | 'update'
  | 'delete'
  | 'counts'
  | 'rates'
  | 'reconcile'
  | 'verdict'
  | 'ping'
  | 'inspect'
  | 'subscribe';

/** Told of every store call that failed: what it was for, and why. */
export type FailureCounter = (operation: StoreOperation, reason: UnavailableReason) => void;

/** For a store whose failures nobody counts (tests, tools). */
export const uncounted: FailureCounter = () => undefined;

/** The backing store cannot serve the request right now: the client gets a 503 with Retry-After. */
export class StoreUnavailableError extends Error {
  constructor(
    message: string,
    readonly reason: UnavailableReason = 'other',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Opaque ETag value of a revision: salt and counter, unique per session and per write. */
export function etagOf(meta: Pick<SessionMeta, 'tag' | 'rev'>): string {
  return `${meta.tag}.${meta.rev}`;
}
