import { FIX } from './advice';
import { type Answer, summarise, header, jsonOf } from './http';

/**
 * What an unexpected answer most likely means, and the fix for that: a rate limit, a store outage,
 * a proxy answering on its own, or a path that does not reach the server. `base` is the URL checked:
 * a path in it is named as a likely cause of a path the server does not serve. `endpoint` is the URL
 * asked when it was an endpoint (a create, discovery) rather than a session the check made: a 404
 * there says the endpoint is not at that URL, whoever answered it.
 */
export function explain(a: Answer, base: string, endpoint?: string): { detail: string; fix: string } {
  const json = jsonOf(a);
  const errcode = typeof json?.errcode === 'string' ? json.errcode : undefined;
  // The server's own words, when it sent any: which limit it was, which header it missed.
  const said = typeof json?.error === 'string' ? `: "${json.error.replace(/\s+/g, ' ').trim().slice(0, 200)}"` : '';
  if (a.status === 429) {
    const retry = header(a, 'retry-after');
    return {
      detail: `the server refused the check with ${`429 ${errcode ?? ''}`.trim()} (Retry-After: ${retry ?? 'none'})${said}`,
      fix: FIX.rateLimited,
    };
  }
  if (a.status === 404 && endpoint !== undefined) {
    const older = errcode === 'M_UNRECOGNIZED' ? ', or the server there is a release without it' : '';
    return {
      detail: `the rendezvous endpoint was not found at ${endpoint} (${summarise(a)}): check the base URL and its path prefix, as the URL checked may not be where the server answers${baseHint(base)}, or a proxy in front does not route this path to it${older}`,
      fix: FIX.notFound,
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
  if (a.status === 400 && errcode === 'M_MISSING_PARAM') {
    // The check sends every header and field each request needs: the server missing one means
    // something between them took it out.
    return {
      detail: `the server answered ${summarise(a)}${said}, although the check sent it: something on the way drops request headers`,
      fix: FIX.requestHeaders,
    };
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
      detail: `the server does not serve this path (${summarise(a)}): an older release, or the request was rewritten on the way${pathOf(base)}`,
      fix: FIX.routing,
    };
  }
  if (a.status >= 300 && a.status < 400 && a.status !== 304) {
    // The server redirects nothing of this (MSC4108's delegation is looked at before): something in
    // front does, most often from http:// to https://.
    const location = header(a, 'location');
    return {
      detail: `${a.status} redirect to ${location ?? '(no Location)'} instead of the server's answer: something in front redirects this URL`,
      fix: FIX.redirect,
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

/**
 * The path of the URL checked, when it has one: the server serves its paths from the root, so such a
 * URL reaches it only through a proxy that strips the path.
 */
function pathIn(base: string): string | undefined {
  const path = new URL(base).pathname;
  return path === '' || path === '/' ? undefined : path;
}

/** ", or ..." naming the path of the URL checked, when it has one. */
function pathOf(base: string): string {
  const path = pathIn(base);
  if (path === undefined) return '';
  return `, or the URL checked is not where the server answers: it serves its paths from the root, and the URL has the path ${path} (a proxy in front must strip it)`;
}

/** What a base URL with a path most likely gets wrong, when it has one. */
function baseHint(base: string): string {
  const path = pathIn(base);
  if (path === undefined) return '';
  return ` (the URL has the path ${path}, and the server serves its paths from the root: leave the path out, or have a proxy in front strip it)`;
}

/** The message of whatever a request threw (refused connection, TLS, timeout). */
export function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
}
