import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { MatrixError, sendMatrixError } from './errors';

/**
 * Runs when no route answered: a known path with the wrong method is 405 with `Allow`, anything else
 * is 404; both `M_UNRECOGNIZED`, as the Matrix spec asks of unknown endpoints.
 */
export function unrecognized(routers: Router[]): Middleware {
  // Every method some route answers, for `OPTIONS *`: what the server as a whole supports.
  let everyMethod: string | undefined;
  const serverWide = () =>
    (everyMethod ??= [
      ...new Set([...routers.flatMap((router) => router.stack.flatMap((layer) => layer.methods)), 'OPTIONS']),
    ].join(', '));
  return async (ctx) => {
    if (ctx.body != null || ctx.status !== 404) return;
    // The asterisk-form target names the server, not a resource (RFC 9110 section 9.3.7): its
    // answer says what the server supports. A preflight for it is answered by CORS before this.
    if (ctx.method === 'OPTIONS' && ctx.url === '*') {
      ctx.set('Allow', serverWide());
      ctx.status = 204;
      return;
    }
    const allowed = new Set<string>();
    for (const router of routers) {
      for (const layer of router.match(ctx.path, ctx.method).path) for (const m of layer.methods) allowed.add(m);
    }
    if (allowed.size === 0) {
      sendMatrixError(ctx, new MatrixError(404, 'M_UNRECOGNIZED', 'Unrecognized request'));
      return;
    }
    allowed.add('OPTIONS');
    const allow = [...allowed].join(', ');
    if (ctx.method === 'OPTIONS') {
      ctx.set('Allow', allow);
      ctx.status = 204;
      return;
    }
    sendMatrixError(
      ctx,
      new MatrixError(405, 'M_UNRECOGNIZED', 'Method not allowed here', undefined, { Allow: allow }),
    );
  };
}
