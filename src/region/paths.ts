import { escapeRegExp } from '../http/routes';
import { MSC3886_PREFIXES } from '../protocols/msc3886';
import { MSC4108_PREFIX } from '../protocols/msc4108';
import { MSC4388_PREFIXES } from '../protocols/msc4388';
import type { Family } from '../store/types';

/**
 * A request path that names a session: its id and family, and on an MSC4388 write path the
 * transaction id (present only there). Both are decoded as the routers decode them.
 */
export interface SessionPath {
  id: string;
  family: Family;
  txnId?: string;
}

interface Prefix {
  /** The family's base path followed by `/`, in any case: the routers match paths without regard to case. */
  base: RegExp;
  /** Its length (a case-insensitive match of ASCII text is as long as the text). */
  length: number;
  family: Family;
}

const prefix = (base: string, family: Family): Prefix => ({
  base: new RegExp(`^${escapeRegExp(base)}/`, 'i'),
  length: base.length + 1,
  family,
});

/** Every path below which `/<id>` names a session, longest first; MSC3886 at the root is separate. */
function prefixes(msc4388Enabled: boolean): Prefix[] {
  const out: Prefix[] = [
    ...MSC3886_PREFIXES.filter((p) => p !== '').map((p) => prefix(p, 'msc3886')),
    prefix(MSC4108_PREFIX, 'msc4108'),
  ];
  // Disabled MSC4388 paths are 404 M_UNRECOGNIZED here, as on a single-region server: never forwarded.
  if (msc4388Enabled) out.push(...MSC4388_PREFIXES.map((p) => prefix(p.prefix, 'msc4388')));
  return out;
}

/** Every family's own paths start with this (in any case); anything else with a second `/` names no session. */
const MATRIX = /^\/_matrix\//i;

/**
 * Finds the session a request path names, exactly as the routers would (a session the routers would
 * find here but this missed would be looked up locally, and be 404 outside its home region):
 * `/<id>` (MSC3886 at the root), `<prefix>/<id>` for every family, and `<prefix>/<id>/<txnId>` for
 * MSC4388 (PUT only: on any other method that path is 405, answered locally). Like the routers, it
 * matches the prefix in any case and takes one trailing slash. The path is the raw one (still
 * percent-encoded); the id is decoded as the routers decode it. Creates (`POST` on a base path),
 * `/health`, `/ready`, `/metrics` and unknown paths give undefined.
 */
export function sessionPathParser(msc4388Enabled: boolean): (path: string, method: string) => SessionPath | undefined {
  const known = prefixes(msc4388Enabled);
  return (path, method) => {
    // One trailing slash is no segment of its own.
    const end = path.length > 1 && path.charCodeAt(path.length - 1) === 0x2f /* / */ ? path.length - 1 : path.length;
    if (!MATRIX.test(path)) {
      // MSC3886 at the root: exactly one segment.
      const slash = path.indexOf('/', 1);
      if (end < 2 || (slash >= 0 && slash < end)) return undefined;
      return session(path.slice(1, end), 'msc3886');
    }
    for (const p of known) {
      if (!p.base.test(path)) continue;
      const rest = path.slice(p.length, end);
      const slash = rest.indexOf('/');
      if (slash < 0) return session(rest, p.family);
      // `<id>/<txnId>`: one more segment, MSC4388 writes only.
      if (
        p.family !== 'msc4388' ||
        method !== 'PUT' ||
        slash === rest.length - 1 ||
        rest.indexOf('/', slash + 1) >= 0
      ) {
        return undefined;
      }
      const found = session(rest.slice(0, slash), 'msc4388');
      return found && { ...found, txnId: decoded(rest.slice(slash + 1)) };
    }
    return undefined;
  };
}

function session(raw: string, family: Family): SessionPath | undefined {
  if (raw === '') return undefined;
  let id = raw;
  if (raw.includes('%')) {
    try {
      id = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
  }
  return { id, family };
}

/** A path parameter as the routers hand it over: decoded, or as it came when it cannot be. */
function decoded(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
