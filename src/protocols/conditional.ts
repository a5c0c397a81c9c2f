/**
 * `If-Match` / `If-None-Match` parsing (RFC 9110 section 13.1). Weak tags are compared by their
 * opaque value: compressing proxies turn strong ETags weak and clients echo what they received.
 */
export type EntityTagCondition = { any: true } | { any: false; etags: string[] };

/** Most entity tags looked at in one header; a longer list is refused as malformed. */
export const MAX_TAGS = 16;
const ENTITY_TAG = /[ \t]*(?:W\/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)/y;

/** Parsed condition, or null when the header is not valid entity-tag syntax. */
export function parseEntityTags(header: string): EntityTagCondition | null {
  const trimmed = header.trim();
  if (trimmed === '*') return { any: true };
  const etags: string[] = [];
  ENTITY_TAG.lastIndex = 0;
  while (ENTITY_TAG.lastIndex < header.length) {
    const at = ENTITY_TAG.lastIndex;
    const m = ENTITY_TAG.exec(header);
    if (m === null) {
      // RFC list syntax tolerates empty elements ("a, , b").
      const rest = header.slice(at);
      const empty = /^[ \t]*,/.exec(rest);
      if (empty === null) return rest.trim() === '' && etags.length > 0 ? { any: false, etags } : null;
      ENTITY_TAG.lastIndex = at + empty[0].length;
      continue;
    }
    etags.push(m[1]!);
    if (etags.length > MAX_TAGS) return null;
  }
  return etags.length > 0 ? { any: false, etags } : null;
}

export function conditionMatches(cond: EntityTagCondition, etag: string): boolean {
  return cond.any || cond.etags.includes(etag);
}
