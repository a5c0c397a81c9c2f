import { randomFillSync } from 'node:crypto';

/** Matrix "opaque identifier grammar": what ids, tokens and txnIds may look like. */
export const OPAQUE_ID = /^[A-Za-z0-9._~-]{1,255}$/;

const ID_BYTES = 16;
const TAG_BYTES = 6;
const PER_SESSION = ID_BYTES + TAG_BYTES;

/**
 * CSPRNG bytes drawn 4 KiB at a time: a call into the CSPRNG per create cost 6% of a create's CPU
 * in profiles. Every byte is still from randomFillSync and is used once (Node's randomUUID caches
 * its entropy the same way).
 */
const pool = Buffer.alloc(PER_SESSION * 186);
let used = pool.length;

/**
 * 128 bits from the CSPRNG for the id, 48 more for the per-session ETag salt; both URL-safe.
 * `idPrefix` names the home region in a multi-region deployment (`eu.`; see src/region); without
 * one the id is the bare 22 characters.
 */
export function newSessionIds(idPrefix = ''): { id: string; tag: string } {
  if (used + PER_SESSION > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const at = used;
  used += PER_SESSION;
  return {
    id: idPrefix + pool.toString('base64url', at, at + ID_BYTES),
    tag: pool.toString('base64url', at + ID_BYTES, at + PER_SESSION),
  };
}
