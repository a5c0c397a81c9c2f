import { newSessionIds } from '../ids';
import { StoreUnavailableError, type CreateInput, type SessionMeta, type SessionStore } from '../store/types';

/**
 * What a protocol module gives to create a session. `owner` is required (use `clientOf(ctx)`): it
 * is what the per-address session cap counts, so no family can create around it.
 */
export type CreateRequest = Omit<CreateInput, 'id' | 'tag' | 'owner'> & {
  owner: string;
  /** Multi-region: what the id starts with to name its home region (src/region); '' or absent: none. */
  idPrefix?: string;
};

/**
 * Creates a session under a fresh random id. A collision of 128 random bits will not happen, but
 * the store refuses to overwrite rather than assume it, so a taken id just draws again.
 */
export async function createSession(store: SessionStore, input: CreateRequest): Promise<SessionMeta> {
  const { idPrefix, ...rest } = input;
  for (let attempt = 0; attempt < 3; attempt++) {
    const meta = await store.create({ ...newSessionIds(idPrefix), ...rest });
    if (meta !== null) return meta;
  }
  throw new StoreUnavailableError('could not allocate a session id');
}
