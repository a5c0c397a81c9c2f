/**
 * Session caps: a global cap on live sessions and a cap per client address, shared by every replica.
 * A slot is taken before the session is created (so a refused create costs the store nothing) and
 * frees itself when the session's lifetime ends, or earlier when the session is deleted.
 */
export interface CapLimits {
  /** Most live sessions in all (0: no cap). */
  global: number;
  /** Most live sessions created by one address (0: no cap). */
  perAddress: number;
}

export type CapRefusal = { cap: 'global' | 'address'; retryAfterMs: number };

export interface SessionCaps {
  /** Takes the slots of session `id` for `holdMs`; the cap that refused, or null when taken. */
  claim(id: string, owner: string, holdMs: number): Promise<CapRefusal | null>;
  /** Remembers who owns `id`, so its delete can free the address slot; same store slot as the session. */
  bind(id: string, owner: string, holdMs: number): Promise<void>;
  /** The owner bound to `id`, or null. */
  ownerOf(id: string): Promise<string | null>;
  /** Frees the slots of `id` (the session was deleted, or its creation failed). */
  release(id: string, owner: string | null): Promise<void>;
}

/**
 * Slots are held a little longer than the session lives: the session's expiry is stamped a moment
 * after the slot's, and a slot must never free while its session can still be read.
 */
export const HOLD_MARGIN_MS = 1000;
