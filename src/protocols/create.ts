import type { Context } from 'koa';
import { newSessionIds } from '../ids';
import { clientOf, sessionCapExceeded } from '../limits';
import type { Metrics } from '../metrics';
import { StoreUnavailableError, type CreateInput, type SessionMeta, type SessionStore } from '../store/types';

/** What a protocol module gives to create a session; the id, salt and owner are filled in here. */
export type CreateRequest = Omit<CreateInput, 'id' | 'tag' | 'owner'> & {
  /** Multi-region: what the id starts with to name its home region (src/region); '' or absent: none. */
  idPrefix?: string;
};

/**
 * Creates a session under a fresh random id, counted against the caps of the address the request
 * comes from (so no family can create around them). A full cap is a 429. A collision of 128 random
 * bits will not happen, but the store refuses to overwrite rather than assume it, so a taken id just
 * draws again.
 */
export async function createSession(
  ctx: Context,
  sessions: SessionStore,
  metrics: Metrics,
  input: CreateRequest,
): Promise<SessionMeta> {
  const owner = clientOf(ctx);
  for (let attempt = 0; attempt < 3; attempt++) {
    const { id, tag } = newSessionIds(input.idPrefix);
    // Spelled out, not spread: this runs on every create, and spreading copies property by property.
    const result = await sessions.create({
      id,
      tag,
      family: input.family,
      contentType: input.contentType,
      data: input.data,
      ttlMs: input.ttlMs,
      owner,
    });
    if (result.status === 'created') return result.session;
    if (result.status === 'capped') {
      metrics.rateLimited.inc({ budget: result.cap === 'global' ? 'sessions_global' : 'sessions_per_address' });
      throw sessionCapExceeded(result.cap, result.retryAfterMs);
    }
  }
  throw new StoreUnavailableError('could not allocate a session id');
}
