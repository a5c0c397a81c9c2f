import type { Context, Middleware } from 'koa';
import type { Config } from '../config';
import { notFound } from '../protocols/common';
import { etagWriteHead } from '../protocols/etag-family';
import { MSC3886_WRITE } from '../protocols/msc3886';
import { MSC4108_WRITE } from '../protocols/msc4108';
import { msc4388BodyLimit, msc4388WriteHead } from '../protocols/msc4388';
import type { Family } from '../store/types';
import { misdirected } from './auth';
import type { Forwarder } from './forwarder';
import { regionOfId } from './names';
import { sessionPathParser, type SessionPath } from './paths';

/** Methods a session route answers; anything else is answered locally (405 with Allow, or CORS). */
const FORWARDED_METHODS = new Set(['GET', 'HEAD', 'PUT', 'DELETE']);

/**
 * What each family's PUT handler checks before it reads the body (the same functions, so the same
 * order): a forward checks them before it reads the body to send on, so a write that is invalid and
 * over the limit is refused as at home (400 or 404), not 413.
 */
const WRITE_HEADS: Record<Family, (ctx: Context, target: SessionPath) => void> = {
  msc3886: (ctx, target) => void etagWriteHead(ctx, target.id, MSC3886_WRITE),
  msc4108: (ctx, target) => void etagWriteHead(ctx, target.id, MSC4108_WRITE),
  msc4388: (_ctx, target) => void msc4388WriteHead(target.id, target.txnId),
};

/**
 * Runs after the limits, before the routers: a request for a session whose id names another region
 * is forwarded there (once: a request that was itself forwarded is never forwarded again), one that
 * names a region this deployment does not have is 404 like any unknown id, and everything else
 * (this region's sessions, ids naming no region, creates, probes) goes on to the routers.
 */
export function regionRouting(config: Config, forwarder: Forwarder): Middleware {
  const own = config.region!;
  const parse = sessionPathParser(config.msc4388Enabled);
  const etagLimit = config.maxBytes;
  const jsonLimit = msc4388BodyLimit(config.maxBytes);
  return (ctx, next) => {
    if (!FORWARDED_METHODS.has(ctx.method)) return next();
    const target = parse(ctx.path, ctx.method);
    if (target === undefined) return next();
    const region = regionOfId(target.id);
    if (region === undefined || region === own) return next();
    // Forwarded here for a region that is not this one: a loop or a wrong peer URL. Never again, and
    // refused as a forward, so the forwarding replica says so (a 404 would say the session expired).
    if (ctx.state.forwardedBy !== undefined) throw misdirected();
    const peer = forwarder.peer(region);
    if (peer === undefined) throw notFound();
    // No route matches here: the metrics and the access log know the request by this instead.
    ctx.state.forwardedTo = region;
    const msc4388 = target.family === 'msc4388';
    const writeHead = WRITE_HEADS[target.family];
    return forwarder.forward(ctx, peer, msc4388 ? jsonLimit : etagLimit, msc4388, () => writeHead(ctx, target));
  };
}
