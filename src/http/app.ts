import Koa from 'koa';
import Router from '@koa/router';
import cors from '@koa/cors';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { SessionStore } from '../store/types';
import type { Metrics } from '../metrics';
import type { LongPoll } from '../longpoll';
import { msc3886Routes } from '../protocols/msc3886';
import { msc4108Routes } from '../protocols/msc4108';
import { msc4388Routes } from '../protocols/msc4388';
import { MemoryVerdictCache, RedisVerdictCache, createPolicy, type VerdictCache } from '../auth';
import { RedisStore } from '../store/redis';
import { commonHeaders } from './headers';
import { corsFastPath } from './cors';
import { errorHandler } from './errors';
import { accessLog } from './access-log';
import { healthRoutes, type Lifecycle } from './health';
import { unrecognized } from './unrecognized';
import { requestId } from './request-id';
import { httpMetrics, metricsRoutes } from './metrics';
import { urlLimit } from './url-limit';
import { createLimits } from '../limits';
import { createRegion } from '../region';

export interface AppDeps {
  config: Config;
  store: SessionStore;
  log: Logger;
  lifecycle: Lifecycle;
  metrics: Metrics;
  longPoll: LongPoll;
}

/** Browsers may read the validators from JS (Element Web fails with "ETag missing" otherwise). */
const EXPOSED = ['ETag', 'Location', 'Expires', 'Last-Modified', 'Retry-After', 'Preference-Applied'];
const ALLOWED = ['Content-Type', 'If-Match', 'If-None-Match', 'Authorization', 'X-Requested-With', 'Prefer'];

/** The whole middleware stack, outermost first: read this to know what every request goes through. */
export function createApp(deps: AppDeps): Koa {
  const { config, log, lifecycle, metrics, longPoll } = deps;
  const app = new Koa();
  app.silent = true;
  app.on('error', (err: Error) => log.debug({ err: err.message }, 'connection error'));

  // Every family creates and deletes through the capped store, so the session caps cover them all.
  const limits = createLimits(config, deps.store, metrics, log);
  const store = limits.store;
  const protocol = { config, store, log, metrics, longPoll };
  // Token verdicts live next to the sessions, so every replica shares them.
  const verdicts: VerdictCache =
    deps.store instanceof RedisStore ? new RedisVerdictCache(deps.store.client) : new MemoryVerdictCache();
  // Fixed paths first: `/metrics` and `/health` must not be taken for MSC3886 session ids.
  const ownRoutes = [healthRoutes(deps.store, lifecycle)];
  if (config.metricsPort === undefined) ownRoutes.push(metricsRoutes(metrics, deps.store));
  const routers: Router[] = [...ownRoutes, msc3886Routes(protocol), msc4108Routes(protocol)];
  if (config.msc4388Enabled) routers.push(msc4388Routes(protocol, createPolicy(config, verdicts, log)));

  app.use(httpMetrics(metrics));
  app.use(requestId);
  app.use(commonHeaders);
  app.use(
    corsFastPath(
      cors({
        origin: '*',
        allowMethods: ['GET', 'PUT', 'POST', 'DELETE', 'OPTIONS'],
        allowHeaders: ALLOWED,
        exposeHeaders: EXPOSED,
        maxAge: 86400,
      }),
      EXPOSED,
    ),
  );
  if (config.accessLog) app.use(accessLog(log));
  app.use(lifecycle.middleware);
  app.use(errorHandler(log));
  app.use(urlLimit(config.maxUrlBytes));
  // Multi-region (src/region; nothing is installed without RZ_REGION): peer check, limits, forwarding.
  const region = createRegion({ config, log, metrics, lifecycle });
  if (region) app.use(region.authenticate);
  app.use(limits.middleware);
  if (region) app.use(region.route);
  for (const router of routers) app.use(router.routes());
  app.use(unrecognized(routers));
  return app;
}
