import type {
  SessionChange,
  CreateInput,
  Family,
  Session,
  SessionMeta,
  SessionStore,
  UpdateInput,
  UpdateOutcome,
  UpdateResult,
} from './types';
import { etagOf } from './types';

interface Entry extends Session {
  txns: Map<string, { outcome: UpdateOutcome; rev: number }> | undefined;
}

function meta(e: Entry): SessionMeta {
  return {
    id: e.id,
    family: e.family,
    contentType: e.contentType,
    rev: e.rev,
    tag: e.tag,
    createdAt: e.createdAt,
    modifiedAt: e.modifiedAt,
    expiresAt: e.expiresAt,
  };
}

/**
 * The embedded store used when no Redis is configured: same semantics as the Redis scripts, one
 * process only. Every operation is synchronous inside, which is what makes each one atomic.
 */
export class MemoryStore implements SessionStore {
  readonly kind = 'memory' as const;
  private readonly sessions = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;
  private expired = 0;
  /** What the Redis scripts publish on a session's wake channel, delivered in-process instead. */
  private wake: ((id: string, change: SessionChange) => void) | undefined;

  constructor(
    private readonly maxTxnsPerSession = 256,
    sweepIntervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    // Expired entries are invisible at once (every read checks); the sweep only frees their memory.
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  /** Live sessions held, for tests and metrics. */
  get size(): number {
    return this.sessions.size;
  }

  /** Receives the new state after every successful write, and every delete (long-poll wake-ups). */
  setWakeListener(listener: ((id: string, change: SessionChange) => void) | undefined): void {
    this.wake = listener;
  }

  sweep(): void {
    const now = this.now();
    for (const [id, e] of this.sessions) {
      if (e.expiresAt <= now) {
        this.sessions.delete(id);
        this.expired++;
      }
    }
  }

  /** For the live-sessions gauge: sweeps first, so expired entries are not counted. */
  async liveSessions(): Promise<number> {
    this.sweep();
    return this.sessions.size;
  }

  /** Sessions that reached their expiry without being deleted, since the store started. */
  expiredSessions(): number {
    return this.expired;
  }

  private live(id: string, family: Family): Entry | undefined {
    const e = this.sessions.get(id);
    if (e === undefined) return undefined;
    if (e.expiresAt <= this.now()) {
      this.sessions.delete(id);
      this.expired++;
      return undefined;
    }
    return e.family === family ? e : undefined;
  }

  async create(input: CreateInput): Promise<SessionMeta | null> {
    const existing = this.sessions.get(input.id);
    if (existing !== undefined) {
      if (existing.expiresAt > this.now()) return null;
      this.expired++;
    }
    const now = this.now();
    const e: Entry = {
      id: input.id,
      family: input.family,
      contentType: input.contentType,
      data: input.data,
      rev: 1,
      tag: input.tag,
      createdAt: now,
      modifiedAt: now,
      expiresAt: now + input.ttlMs,
      txns: undefined,
    };
    this.sessions.set(input.id, e);
    return meta(e);
  }

  async get(id: string, family: Family): Promise<Session | null> {
    const e = this.live(id, family);
    return e === undefined ? null : { ...meta(e), data: e.data };
  }

  async update(id: string, input: UpdateInput): Promise<UpdateResult> {
    const e = this.live(id, input.family);
    if (e === undefined) return { status: 'not_found' };
    const c = input.condition;
    const txnId = c.kind === 'token' ? c.txnId : undefined;
    if (txnId !== undefined) {
      const rec = e.txns?.get(txnId);
      if (rec !== undefined) return { status: 'replayed', outcome: rec.outcome, rev: rec.rev, session: meta(e) };
      if ((e.txns?.size ?? 0) >= this.maxTxnsPerSession) return { status: 'txn_limit', session: meta(e) };
    }
    let outcome: UpdateOutcome;
    const matched =
      c.kind === 'any' ||
      (c.kind === 'token' && c.rev === String(e.rev)) ||
      (c.kind === 'etag' && c.etags.includes(etagOf(e)));
    if (matched) {
      e.data = input.data;
      e.contentType = input.contentType;
      e.rev += 1;
      e.modifiedAt = this.now();
      outcome = 'updated';
    } else {
      outcome = c.kind === 'token' && input.data.equals(e.data) ? 'unchanged' : 'conflict';
    }
    if (txnId !== undefined) (e.txns ??= new Map()).set(txnId, { outcome, rev: e.rev });
    // A copy: the entry itself changes with the next write, the state announced must not.
    if (outcome === 'updated') this.wake?.(id, { kind: 'changed', session: { ...meta(e), data: e.data } });
    return { status: outcome, session: meta(e) };
  }

  async delete(id: string, family: Family): Promise<boolean> {
    if (this.live(id, family) === undefined) return false;
    this.sessions.delete(id);
    this.wake?.(id, { kind: 'deleted' });
    return true;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.sessions.clear();
  }
}
