import type { Family, Session } from './types';

/**
 * How the Redis backend lays out what it stores, and every key and channel name it uses. The Lua
 * scripts (redis/lua) write this layout; this module is the one place on the Node side that reads it.
 *
 * A session is ONE string (a hash costs Redis ~800 bytes more once the payload outgrows listpack):
 *
 *   "@<owner> <family> <rev> <salt> <created> <modified> <expires> <type>\n<payload>"
 *
 * Times are ms since the epoch on the Redis clock; `owner` is the client address the session counts
 * against for the per-address cap ('-' for none), so a delete can free that slot in the same step.
 * Sessions written by the previous release lack the `@<owner> ` in front: they are read as owned by
 * nobody, and their deletes free no slot (these caps never counted them). It stands in front so that
 * the previous release, during a rolling upgrade, finds no session of its families there (404) rather
 * than reading the owner's address as part of the content type.
 *
 * On Redis Cluster a deleted session leaves a tombstone for a while, "~<owner> <expires>" (no newline,
 * so every read takes it for "not found"), from which its cap slots can still be freed.
 */

/**
 * Every key of one session shares the `{<id>}` hash tag, so they live in one Redis Cluster slot and
 * one script may touch them all. Ids never contain ':' (opaque grammar), so the fixed keys below,
 * whose tags start with ':', can never be mistaken for a session's.
 */
export const sessionKey = (id: string): string => `rz:{${id}}`;
export const txnKey = (id: string): string => `rz:{${id}}:txn`;
export const wakeChannel = (id: string): string => `rz:{${id}}:wake`;

/**
 * Session caps: live-session counts per expiry second (a hash), per-address counts (a hash), and on
 * Cluster, where the caps cannot share a slot with the sessions, a journal that makes the separate
 * claim and release steps idempotent. One hash tag, so one script reaches all three.
 */
export const CAPS_KEY = 'rz:{:caps}';
export const CAPS_BY_ADDRESS_KEY = 'rz:{:caps}:addr';
export const CAPS_JOURNAL_KEY = 'rz:{:caps}:journal';
export const CAPS_JOURNAL_DETAILS_KEY = 'rz:{:caps}:journal:details';

/**
 * Counts of one rate budget's window: one field per address, spread over RATE_BUCKETS hashes by
 * the address, all in one Cluster slot. A hash of up to 128 fields is stored as one compact list
 * (Redis's `hash-max-listpack-entries`), at about 15 bytes a field against about 70 in a hash
 * table, so a window that sees many addresses (a flood from many, or many devices signing in)
 * costs a fifth of the memory while it is kept: up to about 25,000 addresses per window.
 */
export const rateWindowKey = (budget: string, start: number, bucket: number): string =>
  `rz:{:rl}:${budget}:${start}:${bucket}`;

/**
 * The ids of the batches added to one rate budget's window (in the counts' slot), so that a batch
 * sent again after its answer was lost is not added twice.
 */
export const rateBatchesKey = (budget: string, start: number): string => `rz:{:rl}:${budget}:${start}:batches`;

export const RATE_BUCKETS = 256;

/** The bucket of an address (FNV-1a): the same on every replica, whatever process computes it. */
export function rateBucketOf(address: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < address.length; i++) h = Math.imul(h ^ address.charCodeAt(i), 0x01000193);
  return (h >>> 0) % RATE_BUCKETS;
}

/** A verdict on an access token, by the token's hash. */
export const verdictKey = (tokenHash: string): string => `rz:auth:${tokenHash}`;

/** The session id a wake channel belongs to, or null for any other channel. */
export function idOfWakeChannel(channel: string): string | null {
  return channel.startsWith('rz:{') && channel.endsWith('}:wake') ? channel.slice(4, -6) : null;
}

/** Owner recorded for a session whose creator's address is unknown. */
export const NO_OWNER = '-';

const NEWLINE = 0x0a;

/** The owner and expiry a tombstone keeps, or null when the value is no tombstone. */
export function parseTombstone(v: string | null): { owner: string; expiresAt: number } | null {
  const m = v === null ? null : /^~(\S*) (\d+)$/.exec(v);
  return m === null ? null : { owner: m[1]!, expiresAt: Number(m[2]) };
}
const FAMILIES: readonly Family[] = ['msc3886', 'msc4108', 'msc4388'];

/**
 * Reads a stored session of `family`, or null when it belongs to another family. The payload is a
 * view into the reply, not a copy; latin1 is a byte-for-byte decoding, so the content type is echoed
 * exactly as it was stored.
 */
export function parseSession(id: string, family: Family, v: Buffer): Session | null {
  const nl = v.indexOf(NEWLINE);
  if (nl < 0) return null;
  const head = v.toString('latin1', 0, nl);
  const at = afterOwner(head);
  if (!head.startsWith(family, at) || head.charCodeAt(at + family.length) !== 0x20) return null;
  return parseFields(id, family, head, at, v, nl);
}

/**
 * A stored value as the update script publishes it on the session's wake channel, whatever its
 * family (the waiter compares that with its own); null for anything else.
 */
export function parseStoredSession(id: string, v: Buffer): Session | null {
  const nl = v.indexOf(NEWLINE);
  if (nl < 0) return null;
  const head = v.toString('latin1', 0, nl);
  const at = afterOwner(head);
  const family = head.slice(at, head.indexOf(' ', at)) as Family;
  if (!FAMILIES.includes(family)) return null;
  return parseFields(id, family, head, at, v, nl);
}

/** Where the family starts: after the `@<owner> ` field, when the value has one. */
function afterOwner(head: string): number {
  return head.charCodeAt(0) === 0x40 ? head.indexOf(' ') + 1 : 0;
}

function parseFields(id: string, family: Family, head: string, from: number, v: Buffer, nl: number): Session {
  let at = from + family.length + 1;
  const next = () => {
    const end = head.indexOf(' ', at);
    const field = head.slice(at, end);
    at = end + 1;
    return field;
  };
  const rev = Number(next());
  const tag = next();
  const createdAt = Number(next());
  const modifiedAt = Number(next());
  const expiresAt = Number(next());
  return {
    id,
    family,
    contentType: head.slice(at),
    data: v.subarray(nl + 1),
    rev,
    tag,
    createdAt,
    modifiedAt,
    expiresAt,
  };
}
