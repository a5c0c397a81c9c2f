import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { boundChildren, type Metrics } from '../metrics';
import type { SessionStore } from '../store/types';
import { isValidTarget } from './host';

declare module 'koa' {
  interface DefaultContext {
    /** The route a request would be matched to, for one that never reached the routers. */
    routeOf?: (path: string, method: string) => string | RegExp | undefined;
  }
}

/** Path prefixes of each API family; the label set stays fixed whatever clients send. */
const PREFIXES: readonly [string, string][] = [
  ['/_matrix/client/unstable/org.matrix.msc3886/rendezvous', 'msc3886'],
  ['/_matrix/client/unstable/org.matrix.msc4108/rendezvous', 'msc4108'],
  ['/_matrix/client/unstable/io.element.msc4388/rendezvous', 'msc4388'],
  ['/_matrix/client/v1/rendezvous', 'msc4388'],
];
const OWN: Record<string, string> = { '/health': 'health', '/ready': 'health', '/metrics': 'metrics' };
const METHODS = new Set(['GET', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'HEAD']);
/** MSC3886 at the root: `/` and `/<id>`. */
const ROOT = /^\/[^/]*$/;

/**
 * Koa's `ctx.path` parses the target, which throws, warns or gives null for some that the host
 * check refuses with 400 (an absolute URL with a malformed authority, a fragment), and counting such
 * a request must not turn that answer into a 500. A target the check accepts is parsed; should one
 * still fail, it counts as unmatched too.
 */
function pathOf(ctx: Context): string | undefined {
  if (!isValidTarget(ctx.req.url ?? '')) return undefined;
  try {
    const path: unknown = ctx.path;
    return typeof path === 'string' ? path : undefined;
  } catch {
    return undefined;
  }
}

/** The API family a request belongs to, from its path (never a raw path: label cardinality). */
export function familyOf(ctx: Context): string {
  const path = pathOf(ctx);
  if (path === undefined) return 'unmatched';
  const own = OWN[path];
  if (own !== undefined) return own;
  for (const [prefix, family] of PREFIXES) {
    if (path.startsWith(prefix) && (path.length === prefix.length || path[prefix.length] === '/')) return family;
  }
  // A root path is a session only if a route took it (or it is a CORS preflight for one, or it was
  // forwarded to the session's home region).
  const session = ctx._matchedRoute !== undefined || ctx.method === 'OPTIONS' || ctx.state.forwardedTo !== undefined;
  if (ROOT.test(path) && session) return 'msc3886';
  return ctx._matchedRoute !== undefined ? 'other' : 'unmatched';
}

/**
 * The status label of a request whose client left before an answer was written (mid long-poll, or
 * while it was forwarded to another region): nginx's "client closed request". Koa's status would
 * still read its default, 404.
 */
export const CLIENT_CLOSED = '499';

/**
 * Counts a request the app never saw, whose client left while it waited its turn behind the requests
 * pipelined ahead of it: as a held long-poll it left, 499.
 */
export function countClientClosed(metrics: Metrics, ctx: Context): void {
  // Never routed: the route it would have taken says its family (a session at the root, say).
  const path = pathOf(ctx);
  if (path !== undefined) ctx._matchedRoute ??= ctx.routeOf?.(path, ctx.method);
  metrics.httpRequests.labels(familyOf(ctx), METHODS.has(ctx.method) ? ctx.method : 'OTHER', CLIENT_CLOSED).inc();
}

/** The status a request was answered with, as the metrics and the access log report it. */
export function answeredStatus(ctx: Context): string {
  const left = !ctx.res.headersSent && (ctx.respond === false || ctx.state.longPollOutcome === 'disconnect');
  return left ? CLIENT_CLOSED : String(ctx.status);
}

/**
 * Counts and times every answer by family, method and status; outermost, so it sees the final status.
 * A held long-poll is timed in its own histogram: its duration is the wait, not the server's speed.
 */
export function httpMetrics(metrics: Metrics): Middleware {
  const requests = boundChildren((family, method, status) => metrics.httpRequests.labels(family, method, status));
  const durations = boundChildren((family, method) => metrics.httpDuration.labels(family, method));
  const waits = boundChildren((family, outcome) => metrics.longPollDuration.labels(family, outcome));
  const record = (ctx: Context, start: number, failed: boolean) => {
    const family = familyOf(ctx);
    const method = METHODS.has(ctx.method) ? ctx.method : 'OTHER';
    const outcome = ctx.state.longPollOutcome;
    requests(family, method, failed ? '500' : answeredStatus(ctx)).inc();
    const seconds = (performance.now() - start) / 1000;
    if (outcome === undefined) durations(family, method).observe(seconds);
    else waits(family, outcome).observe(seconds);
  };
  // Reactions rather than `await`: a held long-poll keeps no suspended async frame here.
  return (ctx, next) => {
    const start = performance.now();
    return next().then(
      () => record(ctx, start, false),
      (err: unknown) => {
        record(ctx, start, true);
        throw err;
      },
    );
  };
}

/**
 * Renders the registry, first reading the store-wide session counts (live, expired) from the store,
 * on its clock, so the request path never pays for them. A store that cannot answer leaves them be.
 */
export async function scrape(metrics: Metrics, sessions: SessionStore): Promise<string> {
  await countsOf(metrics, sessions);
  return metrics.registry.metrics();
}

/** Counts being read: scrapes that come together share one store call. */
const reading = new WeakMap<Metrics, Promise<void>>();

function countsOf(metrics: Metrics, sessions: SessionStore): Promise<void> {
  let read = reading.get(metrics);
  if (read === undefined) {
    read = sessions.counts().then(
      (counts) => metrics.recordSessionCounts(counts),
      () => undefined,
    );
    reading.set(metrics, read);
    void read.then(() => reading.delete(metrics));
  }
  return read;
}

/** `GET /metrics` in the Prometheus text format, on the main port unless RZ_METRICS_PORT is set. */
export function metricsRoutes(metrics: Metrics, store: SessionStore, router = new Router()): Router {
  router.get('/metrics', async (ctx) => {
    const text = await scrape(metrics, store);
    ctx.res.setHeader('Content-Type', metrics.registry.contentType);
    ctx.body = text;
  });
  return router;
}
