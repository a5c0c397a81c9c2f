import type { Middleware } from 'koa';

/**
 * Sent on every answer. `no-transform` stops compressing proxies from weakening or dropping ETags;
 * `no-store` keeps shared caches from ever holding a payload.
 */
export const commonHeaders: Middleware = (ctx, next) => {
  const res = ctx.res;
  res.setHeader('Cache-Control', 'no-store, no-transform');
  res.setHeader('Pragma', 'no-cache');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // Not `await`: a middleware with nothing to do afterwards keeps no suspended frame per held request.
  return next();
};

/**
 * IMF-fixdate (RFC 9110 section 5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Whole seconds only,
 * so the milliseconds are dropped: right for an instant in the past (Last-Modified).
 */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** The same for an instant to come (Expires): rounded up, so no client gives up before it. */
export function httpDateUp(ms: number): string {
  return httpDate(Math.ceil(ms / 1000) * 1000);
}
