import { randomBytes } from 'node:crypto';

/** Matrix "opaque identifier grammar": what ids, tokens and txnIds may look like. */
export const OPAQUE_ID = /^[A-Za-z0-9._~-]{1,255}$/;

/** 128 bits from the CSPRNG for the id, 48 more for the per-session ETag salt; both URL-safe. */
export function newSessionIds(): { id: string; tag: string } {
  const bytes = randomBytes(22);
  return { id: bytes.subarray(0, 16).toString('base64url'), tag: bytes.subarray(16).toString('base64url') };
}
