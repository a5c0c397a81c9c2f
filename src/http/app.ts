import Koa from 'koa';
import cors from '@koa/cors';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Backend, SessionStore } from '../store/types';
import type { Metrics } from '../metrics';
import type { LongPoll } from '../longpoll';
import { msc3886Routes } from '../protocols/msc3886';
import { msc4108Routes } from '../protocols/msc4108';
import { msc4388Routes } from '../protocols/msc4388';
import { createPolicy } from '../auth';
import { EXPOSED, commonHeaders } from './headers';
import { corsFastPath } from './cors';
import { errorHandler } from './errors';
import { accessLog } from './access-log';
import { healthRoutes, type Lifecycle, type Readiness } from './health';
import { unrecognized } from './unrecognized';
import { requestId } from './request-id';
import { hostCheck } from './host';
import { httpMetrics, metricsRoutes } from './metrics';
import { requestLimits } from './request-limits';
import { Routes } from './routes';
import { createLimits } from '../limits';
import { createRegion } from '../region';

export interface AppDeps {
  config: Config;
  backend: Backend;
  /** The backend's sessions as the protocols use them (metered). */
  sessions: SessionStore;
  log: Logger;
  lifecycle: Lifecycle;
  readiness: Readiness;
  metrics: Metrics;
  longPoll: LongPoll;
}

const ALLOWED = ['Content-Type', 'If-Match', 'If-None-Match', 'Authorization', 'X-Requested-With', 'Prefer'];

/** The whole middleware stack, outermost first: read this to know what every request goes through. */
export function createApp(deps: AppDeps): Koa {
  const { config, backend, sessions, log, lifecycle, metrics, longPoll } = deps;
  const app = new Koa();
  app.silent = true;
  app.on('error', (err: Error) => log.debug({ err: err.message }, 'connection error'));

  const protocol = { config, sessions, log, metrics, longPoll };
  // One match per request, against the routes under its path's prefix. Fixed paths first, so
  // `/metrics` and `/health` are never taken for MSC3886 session ids at the root.
  const routes = new Routes();
  healthRoutes(deps.readiness, routes.root);
  if (config.metricsPort === undefined) metricsRoutes(metrics, sessions, routes.root);
  msc3886Routes(protocol, routes);
  msc4108Routes(protocol, routes);
  // Token verdicts live in the backend, so with Redis every replica shares them.
  if (config.msc4388Enabled) msc4388Routes(protocol, createPolicy(config, backend.verdicts, log), routes);

  // For a request whose client left before its turn came (see `serve`): counted by the route it asked for.
  app.context.routeOf = (path, method) => routes.routeOf(path, method);

  app.use(httpMetrics(metrics));
  app.use(requestId);
  app.use(commonHeaders);
  // Ahead of CORS, so preflights are logged and closed while draining, and refused for a bad Host.
  if (config.accessLog) app.use(accessLog(log));
  app.use(lifecycle.middleware);
  app.use(hostCheck(EXPOSED));
  app.use(
    corsFastPath(
      cors({
        origin: '*',
        allowMethods: ['GET', 'PUT', 'POST', 'DELETE', 'OPTIONS'],
        allowHeaders: ALLOWED,
        exposeHeaders: [...EXPOSED],
        maxAge: 86400,
      }),
      EXPOSED,
    ),
  );
  app.use(errorHandler(log));
  app.use(requestLimits(config.maxUrlBytes, config.maxHeadersCount));
  // Multi-region (src/region; nothing is installed without RZ_REGION): peer check, limits, forwarding.
  const region = createRegion({ config, log, metrics, lifecycle });
  if (region) app.use(region.authenticate);
  app.use(createLimits(config, backend.rates, metrics, lifecycle));
  if (region) app.use(region.route);
  app.use(routes.middleware());
  app.use(unrecognized(routes.all()));
  return app;
}
