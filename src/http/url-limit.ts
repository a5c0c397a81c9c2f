import type { Middleware } from 'koa';
import { MatrixError } from './errors';

/** Refuses a request target longer than any route needs (the longest legitimate one is under 1 KiB). */
export function urlLimit(maxBytes: number): Middleware {
  // Plain `return next()`: nothing to do afterwards, so no suspended frame per held long-poll.
  return (ctx, next) => {
    const url = ctx.req.url ?? '';
    // Length in UTF-16 units is at most the byte length, so only a long candidate is measured exactly.
    if (url.length > maxBytes || (url.length * 3 > maxBytes && Buffer.byteLength(url) > maxBytes)) {
      throw new MatrixError(414, 'M_TOO_LARGE', 'Request URL is too long');
    }
    return next();
  };
}
