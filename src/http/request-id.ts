import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';

/** What a proxy's id may look like to be reused: bounded, and safe to echo in a header and a log. */
const ACCEPTABLE = /^[A-Za-z0-9._~:@+=/-]{1,128}$/;

declare module 'koa' {
  interface DefaultState {
    requestId?: string;
  }
}

/**
 * Gives every request an id for the logs and echoes it as `X-Request-Id`. The id a load balancer
 * or proxy sent is kept (so one request can be followed across hops) when it looks sane; anything
 * else is replaced, never trusted into the logs.
 */
export const requestId: Middleware = (ctx, next) => {
  const given = ctx.req.headers['x-request-id'];
  const id = typeof given === 'string' && ACCEPTABLE.test(given) ? given : randomUUID();
  ctx.state.requestId = id;
  ctx.res.setHeader('X-Request-Id', id);
  // Not `await`: nothing to do afterwards, so no suspended frame per request (or per held long-poll).
  return next();
};
