import type { Middleware } from 'koa';
import { MatrixError } from './errors';

/**
 * Refuses a request target longer than any route needs (the longest legitimate one is under 1 KiB),
 * and a request with more header lines than `maxHeaders`. Node keeps the first lines of a request
 * up to its count and drops the rest unseen, so the server reads one more than the limit: a request
 * that reaches it had lines dropped, and whatever a proxy appended last (its `X-Forwarded-For`, which
 * decides who the client is counted as) may be among them.
 */
export function requestLimits(maxUrlBytes: number, maxHeaders: number): Middleware {
  // Plain `return next()`: nothing to do afterwards, so no suspended frame per held long-poll.
  return (ctx, next) => {
    const req = ctx.req;
    const url = req.url ?? '';
    // Length in UTF-16 units is at most the byte length, so only a long candidate is measured exactly.
    if (url.length > maxUrlBytes || (url.length * 3 > maxUrlBytes && Buffer.byteLength(url) > maxUrlBytes)) {
      throw new MatrixError(414, 'M_TOO_LARGE', 'Request URL is too long');
    }
    if (req.rawHeaders.length > 2 * maxHeaders) {
      throw new MatrixError(431, 'M_TOO_LARGE', `A request carries at most ${maxHeaders} header lines`);
    }
    return next();
  };
}

/** What Node's parser is told to keep: one line more than the limit, so that going over it shows. */
export const headersKept = (maxHeaders: number): number => maxHeaders + 1;
