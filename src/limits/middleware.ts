import type { Context, Middleware } from 'koa';
import type { Metrics } from '../metrics';
import { BudgetRefusal, type SharedBudget } from './budget';
import type { ClientAddresses } from './client-address';
import { LIMIT_MESSAGES, limitExceeded } from './errors';

/**
 * Probes and scrapes are never limited: a limited probe would take a healthy replica out. Only the
 * probes themselves (a GET or HEAD of their paths): any other method there is an MSC3886 session
 * route, which reaches the store like any other request. `/metrics` is a probe only when it is
 * served on the main port.
 */
export const probePaths = (metricsOnMainPort: boolean): ReadonlySet<string> =>
  new Set(metricsOnMainPort ? ['/health', '/ready', '/metrics'] : ['/health', '/ready']);

interface State {
  client?: string;
  /** Set by src/region only for a forward whose region secret matched: the address counted there. */
  forwardedClient?: string;
}

/** The client address a request counts as (set by the limits middleware; '' outside it). */
export function clientOf(ctx: Context): string {
  return (ctx.state as State).client ?? '';
}

export interface LimitsDeps {
  addresses: ClientAddresses;
  /** Spent by session creates (every create is a POST, in every family); undefined: unlimited. */
  create: SharedBudget | undefined;
  /** Spent by every other request; undefined: unlimited. */
  request: SharedBudget | undefined;
  metrics: Metrics;
  /** Paths whose GET and HEAD are never limited (probePaths). */
  exempt: ReadonlySet<string>;
}

/**
 * Works out who the client is and spends one point of the right budget: counted in memory and
 * settled with the other replicas in batches, so a request under budget costs no backend call.
 * Sits inside the error handler, so its refusals carry the common headers and CORS like every
 * other answer.
 */
export function limits({ addresses, create, request, metrics, exempt }: LimitsDeps): Middleware {
  const refused = {
    create: metrics.rateLimited.labels('create'),
    request: metrics.rateLimited.labels('request'),
  };
  const refuse = (isCreate: boolean, retryAfterMs: number) => {
    (isCreate ? refused.create : refused.request).inc();
    return limitExceeded(isCreate ? LIMIT_MESSAGES.createRate : LIMIT_MESSAGES.requestRate, retryAfterMs);
  };
  return (ctx, next) => {
    if ((ctx.method === 'GET' || ctx.method === 'HEAD') && exempt.has(ctx.path)) return next();
    const forwarded = (ctx.state as State).forwardedClient;
    if (forwarded !== undefined) {
      // Another region forwarded this: its budget was spent there; the caps count the client it names.
      (ctx.state as State).client = forwarded;
      return next();
    }
    const client = addresses.keyOf(ctx.req);
    (ctx.state as State).client = client;
    const isCreate = ctx.method === 'POST';
    const verdict = (isCreate ? create : request)?.admit(client);
    // Returned rather than awaited: a held long-poll keeps no suspended frame of this function.
    if (verdict === undefined) return next();
    if (verdict instanceof BudgetRefusal) throw refuse(isCreate, verdict.retryAfterMs);
    return verdict.then(next, (err: unknown) => {
      throw err instanceof BudgetRefusal ? refuse(isCreate, err.retryAfterMs) : err;
    });
  };
}
