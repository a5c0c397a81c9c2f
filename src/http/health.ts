import Router from '@koa/router';
import type { Middleware } from 'koa';
import type { SessionStore } from '../store/types';

/** Whether this replica should still receive traffic; flipped first thing on SIGTERM. */
export class Lifecycle {
  draining = false;

  /** While draining, every answer closes its connection so clients move to another replica. */
  // A reaction rather than `await`: a held long-poll then keeps no suspended async frame here.
  readonly middleware: Middleware = (ctx, next) =>
    next().then(() => {
      // Checked after the handler, so requests in flight when SIGTERM landed close their connection too.
      if (this.draining) ctx.set('Connection', 'close');
    });
}

const json = (body: unknown) => JSON.stringify(body);

export function healthRoutes(store: SessionStore, lifecycle: Lifecycle): Router {
  const router = new Router();
  // Liveness: the event loop answers. Never depends on Redis, or an outage would restart every pod.
  router.get('/health', (ctx) => {
    ctx.res.setHeader('Content-Type', 'application/json');
    ctx.body = json({ status: 'ok' });
  });
  // Readiness: this replica can serve sessions right now.
  router.get('/ready', async (ctx) => {
    ctx.res.setHeader('Content-Type', 'application/json');
    if (lifecycle.draining) {
      ctx.status = 503;
      ctx.body = json({ ready: false, reason: 'shutting down' });
      return;
    }
    try {
      await store.ping();
      ctx.body = json({ ready: true, store: store.kind });
    } catch {
      ctx.status = 503;
      ctx.body = json({ ready: false, reason: 'session store unavailable' });
    }
  });
  return router;
}
