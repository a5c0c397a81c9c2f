import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { answeredStatus } from './metrics';

/** One line per request: method, matched route, status, duration. Never bodies, never headers. */
export function accessLog(log: Logger): Middleware {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      log.info(
        {
          reqId: ctx.state.requestId,
          method: ctx.method,
          // A forward matched no route here: its home region's line names the route.
          route: ctx._matchedRoute ?? (ctx.state.forwardedTo === undefined ? 'unmatched' : 'forwarded'),
          forwardedTo: ctx.state.forwardedTo,
          status: Number(answeredStatus(ctx)),
          ms: Number(process.hrtime.bigint() - start) / 1e6,
        },
        'request',
      );
    }
  };
}
