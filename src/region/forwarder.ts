import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { Context } from 'koa';
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { readBody } from '../http/body';
import { clientLeft, stopWatching, watchClient } from '../http/client-connection';
import { parseEntityTags } from '../protocols/conditional';
import { MatrixError, fromHttpError } from '../http/errors';
import { LogThrottle } from '../log-throttle';
import type { Lifecycle } from '../http/health';
import { clientOf } from '../limits';
import { preferredWaitSeconds } from '../longpoll';
import { sequenceWait } from '../protocols/long-poll';
import { FORWARDED_BY, FORWARDED_FOR, PEER_REFUSED, REGION_SECRET } from './auth';
import { CircuitBreaker } from './breaker';
import { HOP_BY_HOP } from './hop-by-hop';
import type { RegionMetrics } from './metrics';

/** Request headers a session route reads: the only ones sent on (Authorization is ignored there). */
const PASSED = [
  'content-type',
  'if-match',
  'if-none-match',
  'prefer',
  'sec-fetch-dest',
  'sec-fetch-mode',
  'sec-fetch-user',
  'sec-fetch-site',
] as const;

/** Largest answer relayed; a session answer is a few KiB (an MSC4388 read of 4 KiB of escapes: 25). */
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export interface Peer {
  readonly name: string;
  readonly breaker: CircuitBreaker;
  /** For the probe and the tests: the base URL. */
  readonly url: string;
}

interface PeerState extends Peer {
  /** Path of the base URL without its trailing slash ('' at the root). */
  readonly basePath: string;
  /** Kept-alive connections to the peer, at most RZ_REGION_MAX_SOCKETS. */
  readonly pool: Pool;
}

/**
 * connect: no connection could be made; timeout: no answer in time; reset: the connection broke
 * before the answer; busy: every pooled connection was taken (by held long-polls) and none freed in
 * time, which says nothing about the peer; invalid: the answer was no answer (too large). (Besides
 * these, a forward fails as `gateway` when the peer's balancer answers for replicas it cannot reach.)
 */
type FailureReason = 'connect' | 'timeout' | 'reset' | 'busy' | 'invalid';

type Outcome =
  | { kind: 'answer'; status: number; raw: string[]; body: Buffer }
  | { kind: 'failed'; reason: FailureReason; code: string | undefined }
  | { kind: 'aborted' }
  /** A held long-poll let go because this replica is shutting down. */
  | { kind: 'shutdown' };

/**
 * Sends requests for other regions' sessions to their home region and relays the answers verbatim.
 * One pool of kept-alive connections per peer (undici: the forward is the hot path of a region that
 * is not home, and its client costs about half the CPU per request of node:http's; the major version
 * Node itself bundles, so its global dispatcher stays one Node's own fetch can use), bounded
 * by RZ_REGION_MAX_SOCKETS; a connect timeout that covers waiting for a pooled connection too, a
 * response timeout that a long-poll's wait extends, and a circuit breaker per peer.
 */
export class Forwarder {
  private readonly peers = new Map<string, PeerState>();
  /** How to end each forwarded long-poll held right now. */
  private readonly held = new Set<() => void>();
  /**
   * Forwarded long-polls held right now, in all (a re-sent one stays counted between its two
   * exchanges) and per client address, and the bounds on them.
   */
  private heldCount = 0;
  private readonly heldBy = new Map<string, number>();
  private readonly maxHeld: number;
  private readonly maxHeldPerAddress: number;
  /** One log line a second per peer and kind of trouble, however many requests meet it. */
  private readonly throttle = new LogThrottle(1000);
  private readonly secret: string;
  private readonly maxWaitMs: number;

  constructor(
    private readonly config: Config,
    private readonly metrics: RegionMetrics,
    private readonly log: Logger,
    private readonly lifecycle: Lifecycle,
  ) {
    this.secret = config.regionSecret ?? '';
    this.maxWaitMs = config.longPollMaxWaitSeconds * 1000;
    // Held waits take pooled connections: a quarter of each pool is kept for everything else.
    this.maxHeld = Math.min(config.longPollMaxWaiters, Math.floor((config.regionMaxSockets * 3) / 4));
    this.maxHeldPerAddress = config.longPollMaxWaitersPerAddress;
    const ca = config.regionTlsCaFile === undefined ? undefined : readFileSync(config.regionTlsCaFile);
    for (const { name, url } of config.regionPeers) {
      const u = new URL(url);
      const pool = new Pool(u.origin, {
        connections: config.regionMaxSockets,
        // Timeouts are this class's own (a connect one, then a response one that a wait extends).
        headersTimeout: 0,
        bodyTimeout: 0,
        ...(ca === undefined ? {} : { connect: { ca } }),
      });
      const peer: PeerState = {
        name,
        url,
        basePath: u.pathname.replace(/\/+$/, ''),
        pool,
        breaker: new CircuitBreaker(
          config.regionBreakerFailures,
          config.regionBreakerCooldownMs,
          () => this.probe(peer),
          (up) => {
            metrics.peerUp.labels(name).set(up ? 1 : 0);
            if (up) log.info({ peer: name }, 'peer region reachable again: forwarding resumed');
            else log.warn({ peer: name }, 'peer region unreachable: its sessions answer 503 until a probe reaches it');
          },
        ),
      };
      metrics.peerUp.labels(name).set(1);
      this.peers.set(name, peer);
    }
  }

  peer(name: string): Peer | undefined {
    return this.peers.get(name);
  }

  /**
   * Ends every forwarded long-poll now (SIGTERM): each client gets 503 with `Retry-After: 0` and
   * `Connection: close`, and polls again through another replica at once, as with a local wait
   * ended by the drain.
   */
  endHeldForwards(): void {
    for (const end of [...this.held]) end();
  }

  /** Closes idle connections and stops the probes (at shutdown). */
  close(): void {
    for (const peer of this.peers.values()) {
      peer.breaker.stop();
      void peer.pool.destroy();
    }
  }

  /**
   * Forwards the request in `ctx` to `target`'s region and relays its answer, or throws the Matrix
   * error the client gets instead (503 unreachable, 502 refused). `bodyLimit` is what the local
   * handler would read, and `writeHead` throws what the handler refuses a PUT for before reading its
   * body: a PUT is refused here exactly as it would be at home, in the same order (an invalid one
   * with a body over the limit is the handler's 400, not 413).
   */
  async forward(ctx: Context, target: Peer, bodyLimit: number, msc4388: boolean, writeHead: () => void): Promise<void> {
    const peer = target as PeerState;
    const started = performance.now();
    const blocked = peer.breaker.blockedForMs();
    if (blocked > 0) return this.unavailable(peer, 'breaker_open', blocked);
    const method = ctx.method;
    let body: Buffer | undefined;
    try {
      if (method === 'PUT') {
        writeHead();
        body = await readBody(ctx, bodyLimit);
      }
    } catch (err) {
      // Refused here before it could go (invalid, too large, compressed, cut short): counted all the same, with
      // the status the client gets, as every other answer to a request for this peer's sessions.
      const status =
        err instanceof MatrixError ? err.status : fromHttpError(err as { status?: number; type?: string })?.status;
      this.metrics.forwardedTo(peer.name, String(status ?? 500)).inc();
      throw err;
    }
    // A HEAD is served by the GET handler at home, which holds it as it holds a GET.
    const asked = method === 'GET' || method === 'HEAD' ? this.waitOf(ctx, msc4388) : 0;
    const askedMs = asked ?? 0;
    let waitMs = Math.min(askedMs, this.maxWaitMs);
    // Draining: no new wait is held here (as with local waits); the client polls again elsewhere.
    if (waitMs > 0 && this.lifecycle.draining) return this.shuttingDown(peer);
    const client = clientOf(ctx);
    // Over the long-poll bounds (per address, and a share of the pool): asked as a plain read, as
    // a local wait over them is answered at once.
    const held = waitMs > 0 && this.hold(client);
    if (waitMs > 0 && !held) waitMs = 0;
    let headers = this.headersFor(ctx, body, waitMs > 0);
    // A malformed MSC4388 wait goes home as it came: refused there (400), after what the handler
    // checks first (an unsafe browser fetch is 403 whatever its query).
    let path = peer.basePath + ctx.path + (waitMs > 0 || !msc4388 || asked === undefined ? ctx.search : '');
    // A wait over this replica's longest is asked as that: the response timeout below allows no
    // more, whatever the home region's own longest wait.
    if (waitMs > 0 && waitMs < askedMs) ({ path, headers } = this.forWaitOf(waitMs, ctx, peer, headers, msc4388));
    let outcome: Outcome;
    try {
      outcome = await this.exchange(peer, method, path, headers, body, waitMs, ctx.res);
      // A connection that broke before the answer came (a kept-alive one the peer closed as it was
      // reused, or a home replica that went away): sent once more where that is safe. A read, and a
      // compare-and-set write (If-Match with entity tags, or an MSC4388 token): one that landed
      // before the break is answered as a verbatim re-send. Never a delete (a second one answers
      // 404), an unconditional write (no If-Match, or `If-Match: *`, which every session matches:
      // it would be written twice, over anything written between) nor a create (never forwarded).
      const resendable =
        method === 'GET' ||
        method === 'HEAD' ||
        (method === 'PUT' && (msc4388 || comparesAndSets(ctx.get('If-Match'))));
      if (outcome.kind === 'failed' && outcome.reason === 'reset' && resendable) {
        if (waitMs === 0) {
          outcome = await this.exchange(peer, method, path, headers, body, 0, ctx.res);
        } else {
          // A held wait goes on for what is left of it, not for the whole wait again.
          const leftMs = Math.max(0, Math.floor(waitMs - (performance.now() - started)));
          const again = this.forWaitOf(leftMs, ctx, peer, headers, msc4388);
          outcome = await this.exchange(peer, method, again.path, again.headers, body, leftMs, ctx.res);
        }
      }
    } finally {
      if (held) this.unhold(client);
    }
    if (outcome.kind === 'shutdown') return this.shuttingDown(peer);
    if (outcome.kind === 'aborted') {
      // The client left (mid long-poll, typically); the upstream request is cancelled already.
      ctx.respond = false;
      return;
    }
    if (outcome.kind === 'failed' && outcome.reason === 'invalid') {
      this.metrics.failures.labels(peer.name, 'invalid').inc();
      this.metrics.forwardedTo(peer.name, '502').inc();
      throw new MatrixError(502, 'M_UNKNOWN', "The session's home region answered with more than a session holds");
    }
    if (outcome.kind === 'failed') {
      // Every connection taken by held long-polls says nothing about the peer: no breaker failure.
      if (outcome.reason !== 'busy') peer.breaker.failure();
      this.metrics.failures.labels(peer.name, outcome.reason).inc();
      const unlogged = this.throttle.take(`${peer.name}:${outcome.reason}`);
      if (unlogged !== undefined) {
        this.log.warn(
          { reqId: ctx.state.requestId, peer: peer.name, reason: outcome.reason, code: outcome.code, unlogged },
          'forward to the home region got no answer',
        );
      }
      return this.unavailable(peer, outcome.reason, 1000);
    }
    const { status, raw } = outcome;
    if (status >= 502 && status <= 504 && !isReplicaAnswer(raw, outcome.body, method, ctx.state.requestId)) {
      // Not a replica's answer but a balancer's in front of them, which reached none: the region is
      // unreachable, as if the connection had failed (503 here, and a breaker failure). Except a 504
      // ending a held wait: that balancer's read timeout is shorter than the wait, which says nothing
      // about the region.
      if (!(status === 504 && waitMs > 0)) peer.breaker.failure();
      this.metrics.failures.labels(peer.name, 'gateway').inc();
      const unlogged = this.throttle.take(`${peer.name}:gateway`);
      if (unlogged !== undefined) {
        this.log.warn(
          { reqId: ctx.state.requestId, peer: peer.name, status, unlogged },
          "the home region's balancer reached none of its replicas",
        );
      }
      return this.unavailable(peer, 'gateway', 1000);
    }
    peer.breaker.success();
    const refusal = status === 403 ? headerOf(raw, PEER_REFUSED) : undefined;
    if (refusal !== undefined) {
      this.metrics.failures.labels(peer.name, 'refused').inc();
      this.metrics.forwardedTo(peer.name, '502').inc();
      const unlogged = this.throttle.take(`${peer.name}:refused`);
      if (unlogged !== undefined) {
        this.log.error(
          { reqId: ctx.state.requestId, peer: peer.name, unlogged },
          refusal === 'region'
            ? `RZ_REGION_PEERS gives region ${peer.name} a URL that reaches another region, which refused to forward again`
            : 'the home region refused this replica as a peer: is RZ_REGION_SECRET the same in every region?',
        );
      }
      throw new MatrixError(502, 'M_UNKNOWN', "The session's home region refused this server's forwarded request");
    }
    this.relay(ctx, outcome);
    this.metrics.forwardedTo(peer.name, String(status)).inc();
    this.metrics
      .durationOf(peer.name, waitMs > 0 ? 'longpoll' : 'request')
      .observe((performance.now() - started) / 1000);
  }

  private unavailable(peer: PeerState, reason: string, retryAfterMs: number): never {
    if (reason === 'breaker_open') this.metrics.failures.labels(peer.name, reason).inc();
    this.metrics.forwardedTo(peer.name, '503').inc();
    throw new MatrixError(
      503,
      'M_UNKNOWN',
      "The session's home region cannot be reached, try again shortly",
      undefined,
      {
        'Retry-After': String(Math.ceil(retryAfterMs / 1000)),
      },
    );
  }

  /** A wait this replica lets go of, or holds no more, because it is shutting down. */
  private shuttingDown(peer: PeerState): never {
    this.metrics.forwardedTo(peer.name, '503').inc();
    throw shuttingDown();
  }

  /**
   * The wait this GET asks for, as the handlers read it: MSC4388's from its query alone; undefined
   * when that query is malformed (the handler at home refuses it, in its own order).
   */
  private waitOf(ctx: Context, msc4388: boolean): number | undefined {
    if (!msc4388) return (preferredWaitSeconds(ctx.get('Prefer')) ?? 0) * 1000;
    try {
      return sequenceWait(ctx)?.timeoutMs ?? 0;
    } catch (err) {
      if (err instanceof MatrixError) return undefined;
      throw err;
    }
  }

  /**
   * The path and headers of a held GET asking to wait `leftMs` instead: MSC4388's wait is in its
   * query (`timeout_ms`), the ETag family's in `Prefer: wait` (whole seconds, rounded down).
   */
  private forWaitOf(
    leftMs: number,
    ctx: Context,
    peer: PeerState,
    headers: string[],
    msc4388: boolean,
  ): { path: string; headers: string[] } {
    const sequence = msc4388 ? sequenceWait(ctx) : undefined;
    if (sequence !== undefined) {
      const query = `?sequence_token=${encodeURIComponent(sequence.token)}&timeout_ms=${leftMs}`;
      return { path: peer.basePath + ctx.path + query, headers };
    }
    const out = headers.slice();
    for (let i = 0; i < out.length; i += 2) if (out[i] === 'prefer') out[i + 1] = `wait=${Math.floor(leftMs / 1000)}`;
    return { path: peer.basePath + ctx.path + ctx.search, headers: out };
  }

  /** Takes a held-wait place for `client`; false when a bound is reached. */
  private hold(client: string): boolean {
    const mine = this.heldBy.get(client) ?? 0;
    if (this.heldCount >= this.maxHeld || mine >= this.maxHeldPerAddress) return false;
    this.heldBy.set(client, mine + 1);
    this.heldCount++;
    return true;
  }

  private unhold(client: string): void {
    this.heldCount--;
    const left = this.heldBy.get(client)! - 1;
    if (left === 0) this.heldBy.delete(client);
    else this.heldBy.set(client, left);
  }

  /** The request headers as a flat [name, value, ...] list (no header map per request). */
  private headersFor(ctx: Context, body: Buffer | undefined, wait: boolean): string[] {
    const given = ctx.req.headers;
    const out = [
      'X-Request-Id',
      ctx.state.requestId ?? '',
      FORWARDED_BY,
      this.config.region!,
      FORWARDED_FOR,
      clientOf(ctx),
      REGION_SECRET,
      this.secret,
    ];
    for (const name of PASSED) {
      const v = given[name];
      // A wait over this replica's bounds is asked as a plain read.
      if (typeof v === 'string' && (wait || name !== 'prefer')) out.push(name, v);
    }
    if (body !== undefined) out.push('Content-Length', String(body.length));
    return out;
  }

  /** Writes the home region's answer as it came: status, end-to-end headers, body. */
  private relay(ctx: Context, answer: { status: number; raw: string[]; body: Buffer }): void {
    const res = ctx.res;
    const raw = answer.raw;
    const headers: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (HOP_BY_HOP.has(name.toLowerCase())) continue;
      headers.push(name, raw[i + 1]!);
    }
    if (this.lifecycle.draining) headers.push('Connection', 'close');
    ctx.status = answer.status;
    ctx.respond = false;
    // Given as a list, these replace what this replica set already (CORS, caching, request id).
    res.writeHead(answer.status, headers);
    res.end(answer.body.length > 0 ? answer.body : undefined);
  }

  private probe(peer: PeerState): Promise<boolean> {
    return this.exchange(peer, 'GET', `${peer.basePath}/health`, [], undefined, 0, undefined).then(
      (o) => o.kind === 'answer' && o.status === 200,
    );
  }

  /** One request to the peer; never rejects. */
  private exchange(
    peer: PeerState,
    method: string,
    path: string,
    headers: string[],
    body: Buffer | undefined,
    waitMs: number,
    client: ServerResponse | undefined,
  ): Promise<Outcome> {
    const { regionConnectTimeoutMs, regionResponseTimeoutMs } = this.config;
    // The client left while its body was read: nothing to forward for.
    if (client !== undefined && clientLeft(client)) return Promise.resolve({ kind: 'aborted' });
    return new Promise<Outcome>((resolve) => {
      let done = false;
      /** Whether the request went out on a connection: failing after that is no connect failure. */
      let sent = false;
      let controller: ((err?: Error) => void) | undefined;
      let status = 0;
      let raw: string[] = [];
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (outcome: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (client !== undefined) stopWatching(client, onClientClose, pipelined);
        if (waitMs > 0) this.held.delete(endNow);
        resolve(outcome);
      };
      // Before it is on a connection there is nothing to abort yet: it is dropped when it gets one.
      const stop = () => controller?.(new Error('forward ended'));
      const fail = (reason: FailureReason, code?: string) => {
        finish({ kind: 'failed', reason, code });
        stop();
      };
      // Until the request is on a connection (a pooled one, or a new one connected): the connect timeout.
      let timer = setTimeout(
        () => fail(saturated(peer.pool, this.config.regionMaxSockets) ? 'busy' : 'connect', 'ETIMEDOUT'),
        regionConnectTimeoutMs,
      );
      const onClientClose = () => {
        if (done) return;
        finish({ kind: 'aborted' });
        stop();
      };
      const pipelined = client === undefined ? undefined : watchClient(client, onClientClose);
      const endNow = () => {
        finish({ kind: 'shutdown' });
        stop();
      };
      if (waitMs > 0) this.held.add(endNow);
      peer.pool.dispatch(
        { path, method: method as Dispatcher.HttpMethod, headers, body },
        {
          // On a connection now (the request is about to be written): the response timeout from here.
          onConnect: (abort) => {
            controller = abort;
            if (done) return abort(new Error('forward ended'));
            if (sent) return;
            sent = true;
            clearTimeout(timer);
            timer = setTimeout(() => fail('timeout', 'ETIMEDOUT'), regionResponseTimeoutMs + waitMs);
          },
          onHeaders: (statusCode, rawHeaders) => {
            status = statusCode;
            raw = rawHeaders.map((v) => v.toString('latin1'));
            return true;
          },
          onData: (chunk) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) fail('invalid', 'ETOOBIG');
            else chunks.push(chunk);
            return true;
          },
          onComplete: () =>
            finish({
              kind: 'answer',
              status,
              raw,
              body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
            }),
          onError: (err: Error & { code?: string }) => {
            if (!done) fail(sent ? 'reset' : 'connect', err.code);
          },
        },
      );
    });
  }
}

/** Whether every connection the pool may open is open and busy (the held waits took them). */
function saturated(pool: Pool, most: number): boolean {
  const { connected, free } = pool.stats;
  return free === 0 && connected >= most;
}

/** The answer to a forwarded long-poll this replica lets go of because it is shutting down. */
const shuttingDown = () =>
  new MatrixError(503, 'M_UNKNOWN', 'This server is shutting down: poll again', undefined, { 'Retry-After': '0' });

/** Whether an If-Match makes a write a compare-and-set: entity tags, not `*` (nor nothing, nor garbage). */
function comparesAndSets(ifMatch: string): boolean {
  const condition = parseEntityTags(ifMatch);
  return condition !== null && !condition.any;
}

/**
 * Every error a replica answers is a Matrix error (JSON with an errcode); a balancer's own error page
 * is not, even a JSON one. Read only for the rare 502-504. The answer to a HEAD has no body to read:
 * a replica's is JSON and echoes the request id it was sent (every answer does), which a balancer's
 * own page does not; without this a HEAD of a session whose home Redis is down (503 there) counted
 * against the region and opened its breaker.
 */
function isReplicaAnswer(raw: string[], body: Buffer, method: string, requestId: string | undefined): boolean {
  if (headerOf(raw, 'content-type')?.startsWith('application/json') !== true) return false;
  if (method === 'HEAD') return requestId !== undefined && headerOf(raw, 'x-request-id') === requestId;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return typeof (parsed as { errcode?: unknown } | null)?.errcode === 'string';
  } catch {
    return false;
  }
}

function headerOf(raw: string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === lowerName) return raw[i + 1];
  return undefined;
}
