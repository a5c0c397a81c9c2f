/**
 * Multi-region: sessions live in the region that created them (their id names it); a request that
 * reaches another region is forwarded home by the replica that received it. See README, "Several
 * regions", and PROTOCOLS section 5.
 */
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Lifecycle } from '../http/health';
import type { Metrics } from '../metrics';
import { peerAuthentication } from './auth';
import { Forwarder } from './forwarder';
import { RegionMetrics } from './metrics';
import { regionRouting } from './routing';

export interface Region {
  /** Before the limits: checks requests that claim to be forwarded (403 unless the secret matches). */
  authenticate: Middleware;
  /** After the limits, before the routers: forwards other regions' sessions home. */
  route: Middleware;
  forwarder: Forwarder;
}

export interface RegionDeps {
  config: Config;
  log: Logger;
  metrics: Metrics;
  lifecycle: Lifecycle;
}

/** The region middleware, or undefined without RZ_REGION: a single-region replica installs nothing. */
export function createRegion({ config, log, metrics, lifecycle }: RegionDeps): Region | undefined {
  if (config.region === undefined) return undefined;
  const regionMetrics = new RegionMetrics(metrics);
  const forwarder = new Forwarder(config, regionMetrics, log, lifecycle);
  // Forwarded long-polls end with the drain, as local ones do, so their clients come back elsewhere.
  lifecycle.onDrain(() => forwarder.endHeldForwards());
  lifecycle.onStop(() => forwarder.close());
  return {
    authenticate: peerAuthentication(config.regionSecret, config.regionAcceptedSecret, regionMetrics, log),
    route: regionRouting(config, forwarder),
    forwarder,
  };
}
