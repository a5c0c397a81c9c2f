import { FIX } from './advice';
import type { CheckContext, Seen } from './context';
import { ORIGIN, header, jsonOf } from './http';

/** The first few offenders, named for the finding ("MSC4108 GET (200), MSC3886 PUT (202), ..."). */
function name(list: Seen[]): string {
  const shown = list.slice(0, 3).map((s) => s.label);
  return shown.join(', ') + (list.length > 3 ? ` and ${list.length - 3} more` : '');
}

const tokens = (value: string | undefined) =>
  (value ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');

/** The checks across every answer, for a run that saw none to look at. */
export const HEADER_STEPS: { id: string; title: string }[] = [
  { id: 'cache-control', title: 'Cache-Control: no-store, no-transform reaches clients' },
  { id: 'cors.headers', title: 'CORS headers on every answer (Allow-Origin, Expose-Headers with ETag)' },
  { id: 'etag', title: 'ETags arrive intact (strong, or weak and accepted)' },
  { id: 'validators', title: 'Expires and Last-Modified on every answer about a session' },
];

/**
 * What every answer the check received must carry, looked at together once the families have run:
 * caching headers, CORS headers, and ETags (present, and strong or at least accepted when weak).
 */
export function checkHeaders(ctx: CheckContext): void {
  // Proxy error pages and redirects (the server sends none here) and refusals are reported where
  // they happened, and an error that is no Matrix error came from something else than the server
  // (a path a homeserver does not route to it): none of them is evidence here.
  const seen = ctx.seen.filter(
    (s) =>
      s.foreign !== true &&
      s.answer.status < 500 &&
      s.answer.status !== 429 &&
      (s.answer.status < 300 || s.answer.status >= 400 || s.answer.status === 304) &&
      (s.answer.status < 400 || typeof jsonOf(s.answer)?.errcode === 'string'),
  );
  if (seen.length === 0) {
    ctx.report.skipMissing(HEADER_STEPS, 'not checked: no answer from the rendezvous server to look at');
    return;
  }
  cacheControl(ctx, seen);
  cors(ctx, seen);
  const aboutSessions = seen.filter((s) => s.validators && [200, 201, 202, 304, 412].includes(s.answer.status));
  if (aboutSessions.length === 0) {
    ctx.report.skipMissing(HEADER_STEPS.slice(2), 'not checked: no answer about a session to look at');
    return;
  }
  etags(ctx, aboutSessions);
  dates(ctx, aboutSessions);
}

/** Expires and Last-Modified beside the ETag: matrix-rust-sdk refuses any 2xx or 304 without all three. */
function dates(ctx: CheckContext, seen: Seen[]): void {
  if (seen.length === 0) return;
  const title = 'Expires and Last-Modified on every answer about a session';
  const missing = seen.filter(
    (s) => header(s.answer, 'expires') === undefined || header(s.answer, 'last-modified') === undefined,
  );
  if (missing.length > 0) {
    const first = missing[0]!.answer;
    const lacks = ['Expires', 'Last-Modified'].filter((h) => header(first, h) === undefined).join(' and ');
    ctx.report.fail(
      'validators',
      title,
      `${name(missing)} arrived without ${lacks}: the protocol puts them on every answer about a session, and matrix-rust-sdk (Element X, MSC4108) refuses a 2xx or 304 without ETag, Expires and Last-Modified`,
      FIX.validators,
    );
  } else {
    ctx.report.pass('validators', title, `on all ${seen.length} answers`);
  }
}

function cacheControl(ctx: CheckContext, seen: Seen[]): void {
  const title = 'Cache-Control: no-store, no-transform reaches clients';
  const bad = seen.filter((s) => {
    const t = tokens(header(s.answer, 'cache-control'));
    return !t.includes('no-store') || !t.includes('no-transform');
  });
  if (bad.length > 0) {
    const example = header(bad[0]!.answer, 'cache-control');
    ctx.report.fail(
      'cache-control',
      title,
      `${name(bad)} arrived with ${example === undefined ? 'no Cache-Control' : `Cache-Control: ${example}`}: caches may keep and replay session payloads, and compressing proxies feel free to weaken ETags`,
      FIX.cacheControl,
    );
  } else {
    ctx.report.pass('cache-control', title, `on all ${seen.length} answers`);
  }
}

function cors(ctx: CheckContext, seen: Seen[]): void {
  const title = 'CORS headers on every answer (Allow-Origin, Expose-Headers with ETag)';
  const origin = seen.filter((s) => {
    const values = s.answer.headers.get('access-control-allow-origin') ?? [];
    return values.length !== 1 || (values[0] !== '*' && values[0] !== ORIGIN);
  });
  const expose = seen.filter((s) => {
    const t = tokens(header(s.answer, 'access-control-expose-headers'));
    return !t.includes('*') && !t.includes('etag');
  });
  if (origin.length > 0) {
    const values = origin[0]!.answer.headers.get('access-control-allow-origin');
    ctx.report.fail(
      'cors.headers',
      title,
      `${name(origin)} arrived with ${values === undefined ? 'no Access-Control-Allow-Origin' : `Access-Control-Allow-Origin ${JSON.stringify(values)}`}: browsers (Element Web) refuse the answer${values !== undefined && values.length > 1 ? ' when the header comes twice (a proxy adds its own)' : ''}`,
      FIX.cors,
    );
  } else if (expose.length > 0) {
    ctx.report.fail(
      'cors.headers',
      title,
      `${name(expose)} arrived without ETag in Access-Control-Expose-Headers (${header(expose[0]!.answer, 'access-control-expose-headers') ?? 'header missing'}): browser clients cannot read the ETag and Element Web fails with "ETag missing"`,
      FIX.cors,
    );
  } else {
    ctx.report.pass('cors.headers', title, `on all ${seen.length} answers`);
  }
}

function etags(ctx: CheckContext, seen: Seen[]): void {
  if (seen.length === 0) return;
  const title = 'ETags arrive intact (strong, or weak and accepted)';
  const missing = seen.filter((s) => header(s.answer, 'etag') === undefined);
  if (missing.length > 0) {
    ctx.report.fail(
      'etag',
      title,
      `${name(missing)} arrived without an ETag: clients cannot write (If-Match) or poll (If-None-Match); Element Web fails with "ETag missing"`,
      FIX.validators,
    );
    return;
  }
  const weak = seen.filter((s) => header(s.answer, 'etag')!.startsWith('W/'));
  if (weak.length === 0) {
    ctx.report.pass('etag', title, `strong on all ${seen.length} answers`);
    return;
  }
  const compressed = seen.filter((s) => s.answer.encoding !== undefined);
  const why =
    compressed.length > 0
      ? `answers arrived ${compressed[0]!.answer.encoding}-compressed although the server sends no-transform, and the proxy that compressed them weakened the ETags`
      : 'a proxy weakened them';
  const refused = [...ctx.weakEtagAccepted].filter(([, accepted]) => !accepted).map(([family]) => family);
  if (refused.length > 0) {
    ctx.report.fail(
      'etag',
      title,
      `${name(weak)} carried weak ETags (${why}) and a write naming one was refused (${refused.join(', ')}): logins stall on the first write`,
      FIX.weakEtag,
    );
    return;
  }
  ctx.report.warn(
    'etag',
    title,
    `${name(weak)} carried weak ETags (${why}); the server accepts them (weak forms match), so clients work, but every answer is compressed for nothing and stricter clients may refuse weak validators`,
    FIX.weakEtag,
  );
}
