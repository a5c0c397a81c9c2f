import type { Middleware } from 'koa';

/** Browsers may read the validators from JS (Element Web fails with "ETag missing" otherwise). */
export const EXPOSED: readonly string[] = [
  'ETag',
  'Location',
  'Expires',
  'Last-Modified',
  'Retry-After',
  'Preference-Applied',
];

/**
 * Sent on every answer. `no-transform` stops compressing proxies from weakening or dropping ETags;
 * `no-store` keeps shared caches from ever holding a payload. MSC3886 echoes whatever type a
 * payload was stored with (`text/html` included), and its paths may be on the homeserver's own
 * origin: the policy keeps a browser that opens one as a page from running or loading anything in
 * it, as that origin or at all. `fetch()` by clients reads answers as before.
 */
export const COMMON_HEADERS = {
  'Cache-Control': 'no-store, no-transform',
  Pragma: 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; sandbox",
} as const;

export const commonHeaders: Middleware = (ctx, next) => {
  const res = ctx.res;
  res.setHeader('Cache-Control', COMMON_HEADERS['Cache-Control']);
  res.setHeader('Pragma', COMMON_HEADERS.Pragma);
  res.setHeader('X-Content-Type-Options', COMMON_HEADERS['X-Content-Type-Options']);
  res.setHeader('Content-Security-Policy', COMMON_HEADERS['Content-Security-Policy']);
  // Not `await`: a middleware with nothing to do afterwards keeps no suspended frame per held request.
  return next();
};

/** Formatted dates by second, in a small direct-mapped table: sessions made in the same second share theirs. */
const DATE_SLOTS = 1024;
const slotSecond = new Float64Array(DATE_SLOTS).fill(-1);
const slotText: string[] = new Array<string>(DATE_SLOTS).fill('');

/**
 * IMF-fixdate (RFC 9110 section 5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Whole seconds only,
 * so the milliseconds are dropped: right for an instant in the past (Last-Modified). Every answer
 * about a session carries two of these; most are formatted once and then looked up.
 */
export function httpDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  const slot = second & (DATE_SLOTS - 1);
  if (slotSecond[slot] === second) return slotText[slot]!;
  const text = new Date(second * 1000).toUTCString();
  slotSecond[slot] = second;
  slotText[slot] = text;
  return text;
}

/** The same for an instant to come (Expires): rounded up, so no client gives up before it. */
export function httpDateUp(ms: number): string {
  return httpDate(Math.ceil(ms / 1000) * 1000);
}
