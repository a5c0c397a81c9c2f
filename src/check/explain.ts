import { FIX } from './advice';
import { type Answer, summarise, header, jsonOf } from './http';

/**
 * What an unexpected answer most likely means, and the fix for that: a rate limit, a store outage,
 * a proxy answering on its own, or a path that does not reach the server.
 */
export function explain(a: Answer): { detail: string; fix: string } {
  const json = jsonOf(a);
  const errcode = typeof json?.errcode === 'string' ? json.errcode : undefined;
  if (a.status === 429) {
    const retry = header(a, 'retry-after');
    return {
      detail: `the server refused the check with 429 ${errcode ?? ''} (Retry-After: ${retry ?? 'none'})`.trim(),
      fix: FIX.rateLimited,
    };
  }
  if (a.status === 503 && errcode !== undefined) {
    return {
      detail: `the server answered ${summarise(a)}: its session store is unavailable`,
      fix: FIX.storeUnavailable,
    };
  }
  if (a.status >= 500 && errcode === undefined) {
    return { detail: `${summarise(a)}, from a proxy rather than the server`, fix: FIX.proxyError };
  }
  if (a.status === 404 && errcode === 'M_NOT_FOUND') {
    return {
      detail:
        'a session the check created moments ago was not found (404 M_NOT_FOUND): the request reached a replica that does not share the store of the one that created it',
      fix: FIX.sharedStore,
    };
  }
  if ((a.status === 404 || a.status === 405) && errcode === 'M_UNRECOGNIZED') {
    return {
      detail: `the server does not serve this path (${summarise(a)}): an older release, or the request was rewritten on the way`,
      fix: FIX.routing,
    };
  }
  if (errcode === undefined) {
    return {
      detail: `${summarise(a)}: that is not the rendezvous server answering (it answers Matrix JSON errors)`,
      fix: FIX.routing,
    };
  }
  return { detail: `unexpected answer ${summarise(a)}`, fix: FIX.routing };
}

/** The message of whatever a request threw (refused connection, TLS, timeout). */
export function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
}
