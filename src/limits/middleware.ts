import type { Context, Middleware } from 'koa';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics';
import type { AdmitAhead } from './admit-ahead';
import type { ClientAddresses } from './client-address';
import { SessionCapError, limitExceeded } from './errors';

/** Probes and scrapes are never limited: a limited probe would take a healthy replica out. */
const EXEMPT = new Set(['/health', '/ready', '/metrics']);

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
  create: RateLimiterAbstract | undefined;
  /** Spent by every other request; admitted ahead of Redis' answer while well under budget. */
  request: AdmitAhead | undefined;
  metrics: Metrics;
  log: Logger;
}

/**
 * Works out who the client is, spends one point of the right budget, and turns session-cap refusals
 * from the store layer into 429s. Sits inside the error handler, so its refusals carry the common
 * headers and CORS like every other answer.
 */
export function limits({ addresses, create, request, metrics, log }: LimitsDeps): Middleware {
  return async (ctx, next) => {
    if (EXEMPT.has(ctx.path)) return next();
    const forwarded = (ctx.state as State).forwardedClient;
    if (forwarded !== undefined) {
      // Another region forwarded this: its budget was spent there; the caps count the client it names.
      (ctx.state as State).client = forwarded;
      return next().catch(capRefusal);
    }
    const client = addresses.keyOf(ctx.req);
    (ctx.state as State).client = client;
    const isCreate = ctx.method === 'POST';
    const verdict = isCreate ? create?.consume(client) : request?.admit(client);
    if (verdict !== undefined) {
      try {
        await verdict;
      } catch (res) {
        if (res instanceof RateLimiterRes) {
          metrics.rateLimited.inc({ budget: isCreate ? 'create' : 'request' });
          throw limitExceeded(
            isCreate ? 'Too many sessions created from your address' : 'Too many requests from your address',
            res.msBeforeNext,
          );
        }
        // Both the shared and the fallback budget failed: serve rather than refuse everyone.
        log.warn({ err: String(res) }, 'rate limiter unavailable');
      }
    }
    // Returned rather than awaited: a held long-poll keeps no suspended frame of this function.
    return next().catch(capRefusal);
  };
}

function capRefusal(err: unknown): never {
  if (err instanceof SessionCapError) throw limitExceeded(err.message, err.retryAfterMs);
  throw err;
}
