import { newSessionIds } from '../ids';
import { StoreUnavailableError, type CreateInput, type SessionMeta, type SessionStore } from '../store/types';

/**
 * Creates a session under a fresh random id. A collision of 128 random bits will not happen, but
 * the store refuses to overwrite rather than assume it, so a taken id just draws again.
 */
export async function createSession(store: SessionStore, input: Omit<CreateInput, 'id' | 'tag'>): Promise<SessionMeta> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const meta = await store.create({ ...newSessionIds(), ...input });
    if (meta !== null) return meta;
  }
  throw new StoreUnavailableError('could not allocate a session id');
}
