import { MatrixError } from '../http/errors';

/**
 * What each limit's 429 says, word for word: `rendezvous-server check` reads them to name the limit
 * that refused it.
 */
export const LIMIT_MESSAGES = {
  createRate: 'Too many sessions created from your address',
  requestRate: 'Too many requests from your address',
  sessionCap: 'This server holds as many sessions as it may; try again when some have ended',
  addressCap: 'Too many live sessions were created from your address; end or finish some first',
} as const;

/** 429 M_LIMIT_EXCEEDED, always with `retry_after_ms` and `Retry-After` (clients back off with them). */
export function limitExceeded(message: string, retryAfterMs: number): MatrixError {
  const ms = Math.max(1, Math.ceil(retryAfterMs));
  return new MatrixError(
    429,
    'M_LIMIT_EXCEEDED',
    message,
    { retry_after_ms: ms },
    { 'Retry-After': String(Math.ceil(ms / 1000)) },
  );
}

/** A create refused because a session cap is full (the store refuses rather than evicting). */
export function sessionCapExceeded(cap: 'global' | 'address', retryAfterMs: number): MatrixError {
  return limitExceeded(cap === 'global' ? LIMIT_MESSAGES.sessionCap : LIMIT_MESSAGES.addressCap, retryAfterMs);
}
