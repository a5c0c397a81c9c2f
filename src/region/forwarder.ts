import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { Context } from 'koa';
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { readBody } from '../http/body';
import { MatrixError } from '../http/errors';
import type { Lifecycle } from '../http/health';
import { clientOf } from '../limits';
import { preferredWaitSeconds } from '../longpoll';
import { FORWARDED_BY, FORWARDED_FOR, PEER_REFUSED, REGION_SECRET } from './auth';
import { CircuitBreaker } from './breaker';
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

/** Hop-by-hop headers (RFC 9110 section 7.6.1): about one connection, never relayed. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/** What may be sent again after a connection broke before its answer (see `forward`). */
const RESENDABLE = new Set(['GET', 'HEAD', 'PUT']);

/** Largest answer relayed; a session answer is a few KiB (an MSC4388 read of 4 KiB of escapes: 25). */
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

/** Longest `timeout_ms` read (as the MSC4388 handler reads it). */
const MAX_TIMEOUT_DIGITS = 9;

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

type Outcome =
  | { kind: 'answer'; status: number; raw: string[]; body: Buffer }
  | { kind: 'failed'; reason: 'connect' | 'timeout' | 'reset'; code: string | undefined }
  | { kind: 'aborted' }
  /** A held long-poll let go because this replica is shutting down. */
  | { kind: 'shutdown' };

/** One log line a second per peer and kind of trouble, however many requests meet it. */
class Throttle {
  private readonly last = new Map<string, number>();
  ok(key: string): boolean {
    const now = Date.now();
    if (now - (this.last.get(key) ?? 0) < 1000) return false;
    this.last.set(key, now);
    return true;
  }
}

/**
 * Sends requests for other regions' sessions to their home region and relays the answers verbatim.
 * One pool of kept-alive connections per peer (undici: the forward is the hot path of a region that
 * is not home, and its client costs about a third less CPU per request than node:http's), bounded
 * by RZ_REGION_MAX_SOCKETS; a connect timeout that covers waiting for a pooled connection too, a
 * response timeout that a long-poll's wait extends, and a circuit breaker per peer.
 */
export class Forwarder {
  private readonly peers = new Map<string, PeerState>();
  /** How to end each forwarded long-poll held right now. */
  private readonly held = new Set<() => void>();
  private readonly throttle = new Throttle();
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
   * handler would read, so an oversized body is 413 here exactly as it would be at home.
   */
  async forward(ctx: Context, target: Peer, bodyLimit: number): Promise<void> {
    const peer = target as PeerState;
    const started = process.hrtime.bigint();
    const blocked = peer.breaker.blockedForMs();
    if (blocked > 0) return this.unavailable(peer, 'breaker_open', blocked);
    const method = ctx.method;
    const body = method === 'PUT' ? await readBody(ctx, bodyLimit) : undefined;
    const waitMs = method === 'GET' ? this.waitOf(ctx) : 0;
    // Draining: no new wait is held here (as with local waits); the client polls again elsewhere.
    if (waitMs > 0 && this.lifecycle.draining) throw shuttingDown();
    const headers = this.headersFor(ctx, body);
    const path = peer.basePath + ctx.path + ctx.search;
    let outcome = await this.exchange(peer, method, path, headers, body, waitMs, ctx.res);
    // A connection that broke before the answer came (a kept-alive one the peer closed as it was
    // reused, or a home replica that went away): sent once more. Safe for reads, and for writes too,
    // since a write that landed before the break is answered as a verbatim re-send. Never a delete
    // (a second one would answer 404) nor a create (it would make a second session).
    if (outcome.kind === 'failed' && outcome.reason === 'reset' && RESENDABLE.has(method)) {
      outcome = await this.exchange(peer, method, path, headers, body, waitMs, ctx.res);
    }
    if (outcome.kind === 'shutdown') throw shuttingDown();
    if (outcome.kind === 'aborted') {
      // The client left (mid long-poll, typically); the upstream request is cancelled already.
      ctx.respond = false;
      return;
    }
    if (outcome.kind === 'failed') {
      peer.breaker.failure();
      this.metrics.failures.labels(peer.name, outcome.reason).inc();
      if (this.throttle.ok(`${peer.name}:${outcome.reason}`)) {
        this.log.warn(
          { reqId: ctx.state.requestId, peer: peer.name, reason: outcome.reason, code: outcome.code },
          'forward to the home region got no answer',
        );
      }
      return this.unavailable(peer, outcome.reason, 1000);
    }
    peer.breaker.success();
    const { status, raw } = outcome;
    if (status === 403 && headerOf(raw, PEER_REFUSED) !== undefined) {
      this.metrics.failures.labels(peer.name, 'refused').inc();
      this.metrics.forwardedTo(peer.name, '502').inc();
      if (this.throttle.ok(`${peer.name}:refused`)) {
        this.log.error(
          { reqId: ctx.state.requestId, peer: peer.name },
          'the home region refused this replica as a peer: is RZ_REGION_SECRET the same in every region?',
        );
      }
      throw new MatrixError(502, 'M_UNKNOWN', "The session's home region refused this server's forwarded request");
    }
    this.relay(ctx, outcome);
    this.metrics.forwardedTo(peer.name, String(status)).inc();
    this.metrics
      .durationOf(peer.name, waitMs > 0 ? 'longpoll' : 'request')
      .observe(Number(process.hrtime.bigint() - started) / 1e9);
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

  /** What the home region may hold this GET for: its long-poll wait as the handler will grant it. */
  private waitOf(ctx: Context): number {
    let ms = 0;
    const prefer = ctx.get('Prefer');
    if (prefer !== '') ms = (preferredWaitSeconds(prefer) ?? 0) * 1000;
    else if (ctx.querystring.includes('timeout_ms=')) {
      const t = new URLSearchParams(ctx.querystring).get('timeout_ms');
      if (t !== null && t.length <= MAX_TIMEOUT_DIGITS && /^\d+$/.test(t)) ms = Number(t);
    }
    return Math.min(ms, this.maxWaitMs);
  }

  /** The request headers as a flat [name, value, ...] list (no header map per request). */
  private headersFor(ctx: Context, body: Buffer | undefined): string[] {
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
      if (typeof v === 'string') out.push(name, v);
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
    if (client !== undefined && (client.socket === null || client.socket.destroyed)) {
      return Promise.resolve({ kind: 'aborted' });
    }
    return new Promise<Outcome>((resolve) => {
      let done = false;
      /** Whether the request went out on a connection: failing after that is no connect failure. */
      let sent = false;
      let controller: Dispatcher.DispatchController | undefined;
      let status = 0;
      let raw: string[] = [];
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (outcome: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        client?.off('close', onClientClose);
        if (waitMs > 0) this.held.delete(endNow);
        resolve(outcome);
      };
      // Before it is on a connection there is nothing to abort yet: it is dropped when it gets one.
      const stop = () => controller?.abort(new Error('forward ended'));
      const fail = (reason: 'connect' | 'timeout' | 'reset', code?: string) => {
        finish({ kind: 'failed', reason, code });
        stop();
      };
      // Until the request is on a connection (a pooled one, or a new one connected): the connect timeout.
      let timer = setTimeout(() => fail('connect', 'ETIMEDOUT'), regionConnectTimeoutMs);
      const onClientClose = () => {
        if (done) return;
        finish({ kind: 'aborted' });
        stop();
      };
      client?.on('close', onClientClose);
      const endNow = () => {
        finish({ kind: 'shutdown' });
        stop();
      };
      if (waitMs > 0) this.held.add(endNow);
      peer.pool.dispatch(
        { path, method, headers, body },
        {
          onRequestStart: (c) => {
            controller = c;
            if (done) return c.abort(new Error('forward ended'));
            if (sent) return;
            sent = true;
            clearTimeout(timer);
            timer = setTimeout(() => fail('timeout', 'ETIMEDOUT'), regionResponseTimeoutMs + waitMs);
          },
          onResponseStart: (c, statusCode) => {
            status = statusCode;
            raw = rawStrings(c.rawHeaders);
          },
          onResponseData: (_c, chunk) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) fail('reset', 'ETOOBIG');
            else chunks.push(chunk);
          },
          onResponseEnd: () =>
            finish({
              kind: 'answer',
              status,
              raw,
              body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
            }),
          onResponseError: (_c, err: Error & { code?: string }) => {
            if (!done) fail(sent ? 'reset' : 'connect', err.code);
          },
        },
      );
    });
  }
}

/** The answer to a forwarded long-poll this replica lets go of because it is shutting down. */
const shuttingDown = () =>
  new MatrixError(503, 'M_UNKNOWN', 'This server is shutting down: poll again', undefined, { 'Retry-After': '0' });

/** A response's raw headers as [name, value, ...] strings, whatever form the client gave them in. */
function rawStrings(raw: Dispatcher.DispatchController['rawHeaders']): string[] {
  if (!Array.isArray(raw)) return [];
  return raw.map((v: Buffer | string) => (typeof v === 'string' ? v : v.toString('latin1')));
}

function headerOf(raw: string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === lowerName) return raw[i + 1];
  return undefined;
}
