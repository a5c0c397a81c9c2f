import {
  etagOf,
  type CapLimits,
  type CreateInput,
  type CreateResult,
  type Family,
  type Session,
  type SessionCounts,
  type SessionMeta,
  type SessionStore,
  type UpdateInput,
  type UpdateOutcome,
  type UpdateResult,
} from '../types';

interface Entry extends Session {
  owner: string;
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

/** What the memory store announces after a successful write or a delete (long-poll wake-ups). */
export type SessionChange = { kind: 'changed'; session: Session } | { kind: 'deleted' };

export interface MemorySessionOptions {
  caps: CapLimits;
  maxTxnsPerSession: number;
  sweepIntervalMs?: number;
  now?: () => number;
}

/**
 * The embedded store used when no Redis is configured: the same semantics as the Redis scripts, one
 * process only. Every operation is synchronous inside, which is what makes each one atomic. The caps
 * count the sessions themselves: the map is the global count, and each owner's live sessions are
 * counted beside it.
 */
export class MemorySessions implements SessionStore {
  private readonly sessions = new Map<string, Entry>();
  private readonly perOwner = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;
  private expired = 0;
  /** What the Redis scripts publish on a session's wake channel, delivered in-process instead. */
  private wake: ((id: string, change: SessionChange) => void) | undefined;

  constructor(private readonly opts: MemorySessionOptions) {
    this.now = opts.now ?? Date.now;
    // Expired entries are invisible at once (every read checks); the sweep only frees their memory.
    this.sweeper = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? 10_000);
    this.sweeper.unref();
  }

  /** Sessions held, expired ones not yet swept included (tests). */
  get size(): number {
    return this.sessions.size;
  }

  /** Receives the new state after every successful write, and every delete. */
  setWakeListener(listener: ((id: string, change: SessionChange) => void) | undefined): void {
    this.wake = listener;
  }

  sweep(): void {
    const now = this.now();
    for (const e of this.sessions.values()) if (e.expiresAt <= now) this.forget(e, true);
  }

  private forget(e: Entry, expired: boolean): void {
    this.sessions.delete(e.id);
    if (expired) this.expired++;
    const n = this.perOwner.get(e.owner);
    if (n === undefined) return;
    if (n <= 1) this.perOwner.delete(e.owner);
    else this.perOwner.set(e.owner, n - 1);
  }

  private live(id: string, family: Family): Entry | undefined {
    const e = this.sessions.get(id);
    if (e === undefined) return undefined;
    if (e.expiresAt <= this.now()) {
      this.forget(e, true);
      return undefined;
    }
    return e.family === family ? e : undefined;
  }

  /** Ms until the first of the matching sessions expires (for Retry-After). */
  private firstExpiry(owner?: string): number {
    let first = Infinity;
    for (const e of this.sessions.values())
      if (owner === undefined || e.owner === owner) first = Math.min(first, e.expiresAt);
    return Math.max(0, first - this.now());
  }

  private refusal(owner: string): CreateResult | undefined {
    const { global, perAddress } = this.opts.caps;
    if (global > 0 && this.sessions.size >= global) {
      return { status: 'capped', cap: 'global', retryAfterMs: this.firstExpiry() };
    }
    if (perAddress > 0 && owner !== '' && (this.perOwner.get(owner) ?? 0) >= perAddress) {
      return { status: 'capped', cap: 'address', retryAfterMs: this.firstExpiry(owner) };
    }
    return undefined;
  }

  async create(input: CreateInput): Promise<CreateResult> {
    const now = this.now();
    const existing = this.sessions.get(input.id);
    if (existing !== undefined) {
      if (existing.expiresAt > now) return { status: 'taken' };
      this.forget(existing, true);
    }
    // Expired sessions still in the map would count: a cap that looks full is checked after a sweep.
    let refused = this.refusal(input.owner);
    if (refused !== undefined) {
      this.sweep();
      refused = this.refusal(input.owner);
      if (refused !== undefined) return refused;
    }
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
      owner: input.owner,
      txns: undefined,
    };
    this.sessions.set(input.id, e);
    if (this.opts.caps.perAddress > 0 && input.owner !== '') {
      this.perOwner.set(input.owner, (this.perOwner.get(input.owner) ?? 0) + 1);
    }
    return { status: 'created', session: meta(e) };
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
      if ((e.txns?.size ?? 0) >= this.opts.maxTxnsPerSession) return { status: 'txn_limit', session: meta(e) };
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
      // The verbatim re-send of a write that landed (see updateSession-2.lua).
      const resent =
        input.data.equals(e.data) &&
        (c.kind === 'token' ||
          (c.kind === 'etag' &&
            input.contentType === e.contentType &&
            e.rev > 1 &&
            c.etags.includes(etagOf({ tag: e.tag, rev: e.rev - 1 }))));
      outcome = resent ? 'unchanged' : 'conflict';
    }
    if (txnId !== undefined) (e.txns ??= new Map()).set(txnId, { outcome, rev: e.rev });
    // A copy: the entry itself changes with the next write, the state announced must not.
    if (outcome === 'updated') this.wake?.(id, { kind: 'changed', session: { ...meta(e), data: e.data } });
    return { status: outcome, session: meta(e) };
  }

  async delete(id: string, family: Family): Promise<boolean> {
    const e = this.live(id, family);
    if (e === undefined) return false;
    this.forget(e, false);
    this.wake?.(id, { kind: 'deleted' });
    return true;
  }

  async counts(): Promise<SessionCounts> {
    this.sweep();
    return { live: this.sessions.size, expired: this.expired };
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sessions.clear();
    this.perOwner.clear();
  }
}
