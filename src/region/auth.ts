import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { MatrixError } from '../http/errors';
import { LogThrottle } from '../log-throttle';
import { REGION_NAME } from './names';
import type { RegionMetrics } from './metrics';
import { MAX_SECRET_LENGTH } from './settings';

/**
 * What a forwarding replica adds to the request it sends to the home region. Lower case, as Node
 * gives request headers. A client may send these too: without the secret that is a 403, and a
 * forwarding replica never copies a client's (it sends only the headers it chose).
 */
export const FORWARDED_BY = 'x-rendezvous-forwarded-by';
export const FORWARDED_FOR = 'x-rendezvous-forwarded-for';
export const REGION_SECRET = 'x-rendezvous-region-secret';
/**
 * On a region's 403 for a forward it does not take: the forwarding replica answers 502. Its value
 * says why: `forwarding` (no trust: the secret) or `region` (not this region's session: the
 * forwarding replica's URL for the session's region reaches another one).
 */
export const PEER_REFUSED = 'x-rendezvous-peer-refused';

declare module 'koa' {
  interface DefaultState {
    /**
     * Set only here, only once the secret matched: the address the client was counted as in the
     * region it reached. The limits then count it (caps) and skip the rate budgets (spent there).
     */
    forwardedClient?: string;
    /** The region that forwarded this request (same conditions). */
    forwardedBy?: string;
    /** Set by the region routing on a request it forwards: the session's home region. */
    forwardedTo?: string;
  }
}

/** A client address as ClientAddresses gives it: an IPv4 or IPv6 address, or an IPv6 network. */
const CLIENT_KEY = /^[0-9A-Fa-f.:]{2,45}(\/\d{1,3})?$/;

/**
 * Compares a presented secret with the configured ones (the shared secret, and the one also
 * accepted while it changes) in time independent of where they differ or which one matched.
 */
export class SecretCheck {
  private readonly digests: Buffer[];

  constructor(secrets: readonly string[]) {
    this.digests = secrets.map(SecretCheck.hash);
  }

  private static hash(value: string): Buffer {
    return createHash('sha256').update(value, 'utf8').digest();
  }

  matches(presented: string | string[] | undefined): boolean {
    if (typeof presented !== 'string' || presented.length > MAX_SECRET_LENGTH) return false;
    // Digests have equal length whatever was presented, as timingSafeEqual requires; every one is
    // compared, so the time says nothing about which matched.
    const digest = SecretCheck.hash(presented);
    let matched = false;
    for (const d of this.digests) matched = timingSafeEqual(digest, d) || matched;
    return matched;
  }
}

const refused = (why: string) =>
  new MatrixError(403, 'M_FORBIDDEN', why, undefined, { 'X-Rendezvous-Peer-Refused': 'forwarding' });

/**
 * An authenticated forward for a session of another region: it is never forwarded again, and
 * answering 404 would tell the client a live session expired.
 */
export const misdirected = () =>
  new MatrixError(
    403,
    'M_FORBIDDEN',
    "This request was forwarded to a region that is not its session's home",
    undefined,
    {
      'X-Rendezvous-Peer-Refused': 'region',
    },
  );

/**
 * Runs before the limits: a request that carries any forwarding header must carry the region secret
 * and well-formed forwarding headers, or it is refused with 403 (it would otherwise choose the
 * address it is counted as, and skip the rate budgets). Requests without them pass untouched.
 * Without a configured secret no request can be a forward. The accepted secret, when set, is taken
 * as well as the shared one (a peer that already sends the new one, or still sends the old one).
 */
export function peerAuthentication(
  secret: string | undefined,
  acceptedSecret: string | undefined,
  metrics: RegionMetrics,
  log: Logger,
): Middleware {
  const check =
    secret === undefined
      ? undefined
      : new SecretCheck(acceptedSecret === undefined ? [secret] : [secret, acceptedSecret]);
  // A client sending forged headers in a loop must not flood the log: one line a second at most.
  const throttle = new LogThrottle(1000);
  const refuse = (reqId: string | undefined, remote: string | undefined, why: string): never => {
    metrics.peerRefused.inc();
    const unlogged = throttle.take('refused');
    if (unlogged !== undefined) {
      log.warn({ reqId, remote, refused: unlogged + 1 }, `refused a request claiming to be forwarded: ${why}`);
    }
    throw refused('This request claims to be forwarded by another region, but is not');
  };
  return (ctx, next) => {
    const headers = ctx.req.headers;
    const by = headers[FORWARDED_BY];
    const client = headers[FORWARDED_FOR];
    const presented = headers[REGION_SECRET];
    if (by === undefined && client === undefined && presented === undefined) return next();
    const reqId = ctx.state.requestId;
    const remote = ctx.req.socket.remoteAddress;
    if (check === undefined || !check.matches(presented)) return refuse(reqId, remote, 'missing or wrong secret');
    if (typeof by !== 'string' || !REGION_NAME.test(by) || typeof client !== 'string' || !CLIENT_KEY.test(client)) {
      return refuse(reqId, remote, 'malformed forwarding headers');
    }
    ctx.state.forwardedBy = by;
    ctx.state.forwardedClient = client;
    metrics.receivedFrom(by).inc();
    // With the request id, this ties the home region's answer to the forwarding region's log line.
    log.debug({ reqId, from: by, client }, 'forwarded request');
    return next();
  };
}
