/**
 * The session store contract shared by every backend. Protocol modules only ever see these types,
 * so MSC3886, MSC4108 and MSC4388 all run on the same records and the same atomic operations.
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

/** What a store announces after a successful write or a delete (long-poll wake-ups). */
export type SessionChange = { kind: 'changed'; session: Session } | { kind: 'deleted' };

export interface CreateInput {
  id: string;
  tag: string;
  family: Family;
  contentType: string;
  data: Buffer;
  ttlMs: number;
  /**
   * The client address the session counts against for the per-address session cap. The stores
   * ignore it; the cap layer wrapped around them needs it.
   */
  owner?: string;
}

/**
 * What a write must find to proceed:
 * - `any`: unconditional (MSC3886 without If-Match, or `If-Match: *`);
 * - `etag`: the current ETag opaque value must be one of `etags`;
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

export interface SessionStore {
  readonly kind: 'redis' | 'memory';
  /** Creates a session; false when the id is taken (the caller retries with a new id). */
  create(input: CreateInput): Promise<SessionMeta | null>;
  /** The session, or null when absent, expired, or created by another family. */
  get(id: string, family: Family): Promise<Session | null>;
  update(id: string, input: UpdateInput): Promise<UpdateResult>;
  /** True when a session of that family existed and is now gone. */
  delete(id: string, family: Family): Promise<boolean>;
  /** Resolves when the backing store answers; rejects with StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The backing store cannot be reached or did not answer in time: the request gets a 503. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Opaque ETag value of a revision: salt and counter, unique per session and per write. */
export function etagOf(meta: Pick<SessionMeta, 'tag' | 'rev'>): string {
  return `${meta.tag}.${meta.rev}`;
}
