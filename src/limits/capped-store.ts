import type { Metrics } from '../metrics';
import type {
  CreateInput,
  Family,
  Session,
  SessionMeta,
  SessionStore,
  UpdateInput,
  UpdateResult,
} from '../store/types';
import { HOLD_MARGIN_MS, type SessionCaps } from './caps';
import { SessionCapError } from './errors';

/**
 * The session store as every protocol family sees it when session caps are on: a create first takes
 * its slots (refusing when full, never evicting), a delete gives them back. Reads and writes pass
 * straight through, so GET and PUT keep their single round trip.
 */
export class CappedStore implements SessionStore {
  readonly kind;

  constructor(
    private readonly inner: SessionStore,
    private readonly caps: SessionCaps,
    private readonly metrics: Metrics,
  ) {
    this.kind = inner.kind;
  }

  async create(input: CreateInput): Promise<SessionMeta | null> {
    const owner = input.owner ?? '';
    const holdMs = input.ttlMs + HOLD_MARGIN_MS;
    const refused = await this.caps.claim(input.id, owner, holdMs);
    if (refused !== null) {
      this.metrics.rateLimited.inc({ budget: refused.cap === 'global' ? 'sessions_global' : 'sessions_per_address' });
      throw new SessionCapError(refused.cap, refused.retryAfterMs);
    }
    let meta: SessionMeta | null = null;
    try {
      // Issued together: the owner record shares the session's slot, so this stays one round trip.
      [meta] = await Promise.all([this.inner.create(input), this.caps.bind(input.id, owner, holdMs)]);
      return meta;
    } finally {
      if (meta === null) await this.caps.release(input.id, owner);
    }
  }

  get(id: string, family: Family): Promise<Session | null> {
    return this.inner.get(id, family);
  }

  update(id: string, input: UpdateInput): Promise<UpdateResult> {
    return this.inner.update(id, input);
  }

  async delete(id: string, family: Family): Promise<boolean> {
    // Read together with the delete (same slot, issued first), so the owner is known in one round trip.
    const owner = this.caps.ownerOf(id).catch(() => null);
    const deleted = await this.inner.delete(id, family);
    if (deleted) await this.caps.release(id, await owner);
    return deleted;
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
