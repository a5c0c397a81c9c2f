import { MSC3886_PREFIXES } from '../protocols/msc3886';
import { MSC4108_PREFIX } from '../protocols/msc4108';
import { MSC4388_PREFIXES } from '../protocols/msc4388';

/** A request path that names a session: its id, and whether it is an MSC4388 path (JSON bodies). */
export interface SessionPath {
  id: string;
  msc4388: boolean;
}

interface Prefix {
  /** The family's base path followed by `/`. */
  base: string;
  msc4388: boolean;
}

/** Every path below which `/<id>` names a session, longest first; MSC3886 at the root is separate. */
function prefixes(msc4388Enabled: boolean): Prefix[] {
  const out: Prefix[] = [
    ...MSC3886_PREFIXES.filter((p) => p !== '').map((p) => ({ base: `${p}/`, msc4388: false })),
    { base: `${MSC4108_PREFIX}/`, msc4388: false },
  ];
  // Disabled MSC4388 paths are 404 M_UNRECOGNIZED here, as on a single-region server: never forwarded.
  if (msc4388Enabled) out.push(...MSC4388_PREFIXES.map(({ prefix }) => ({ base: `${prefix}/`, msc4388: true })));
  return out;
}

/** Every family's own paths start with this; anything else with a second `/` names no session. */
const MATRIX = '/_matrix/';

/**
 * Finds the session a request path names, as the routers would: `/<id>` (MSC3886 at the root),
 * `<prefix>/<id>` for every family, and `<prefix>/<id>/<txnId>` for MSC4388 (PUT only: on any
 * other method that path is 405, answered locally). The path is the raw one (still percent-
 * encoded); the id is decoded as the routers decode it. Creates (`POST` on a base path), `/health`,
 * `/ready`, `/metrics` and unknown paths give undefined.
 */
export function sessionPathParser(msc4388Enabled: boolean): (path: string, method: string) => SessionPath | undefined {
  const known = prefixes(msc4388Enabled);
  return (path, method) => {
    if (!path.startsWith(MATRIX)) {
      // MSC3886 at the root: exactly one segment.
      if (path.length < 2 || path.indexOf('/', 1) >= 0) return undefined;
      return session(path.slice(1), false);
    }
    for (const p of known) {
      if (!path.startsWith(p.base)) continue;
      const rest = path.slice(p.base.length);
      const slash = rest.indexOf('/');
      if (slash < 0) return session(rest, p.msc4388);
      // `<id>/<txnId>`: one more segment, MSC4388 writes only.
      if (!p.msc4388 || method !== 'PUT' || rest.indexOf('/', slash + 1) >= 0) return undefined;
      return session(rest.slice(0, slash), true);
    }
    return undefined;
  };
}

function session(raw: string, msc4388: boolean): SessionPath | undefined {
  if (raw === '') return undefined;
  let id = raw;
  if (raw.includes('%')) {
    try {
      id = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
  }
  return { id, msc4388 };
}
