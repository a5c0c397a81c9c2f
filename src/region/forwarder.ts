import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Context } from 'koa';
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

/** Errors that mean no connection was made (anything else broke an established one). */
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EADDRNOTAVAIL',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

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
  readonly tls: boolean;
  readonly hostname: string;
  readonly port: number;
  /** The Host header: the URL's host (and port when it has one). */
  readonly host: string;
  /** Path of the base URL without its trailing slash ('' at the root). */
  readonly basePath: string;
  readonly agent: http.Agent;
  readonly request: typeof http.request;
}

type Outcome =
  | { kind: 'answer'; status: number; raw: string[]; body: Buffer }
  | { kind: 'failed'; reason: 'connect' | 'timeout' | 'reset'; reused: boolean; code: string | undefined }
  | { kind: 'aborted' };

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
 * One keep-alive agent per peer (a bounded pool: RZ_REGION_MAX_SOCKETS), a connect timeout that
 * covers waiting for a pooled connection too, a response timeout that a long-poll's wait extends,
 * and a circuit breaker per peer.
 */
export class Forwarder {
  private readonly peers = new Map<string, PeerState>();
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
      const tls = u.protocol === 'https:';
      const options = {
        keepAlive: true,
        maxSockets: config.regionMaxSockets,
        // Idle connections kept for reuse; beyond this many idle ones are closed.
        maxFreeSockets: Math.min(config.regionMaxSockets, 256),
        scheduling: 'lifo' as const,
      };
      const agent = tls
        ? new https.Agent({ ...options, ...(ca === undefined ? {} : { ca }) })
        : new http.Agent(options);
      const peer: PeerState = {
        name,
        url,
        tls,
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port === '' ? (tls ? 443 : 80) : Number(u.port),
        host: u.host,
        basePath: u.pathname.replace(/\/+$/, ''),
        agent,
        request: tls ? https.request : http.request,
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

  /** Closes idle connections and stops the probes (at shutdown). */
  close(): void {
    for (const peer of this.peers.values()) {
      peer.breaker.stop();
      peer.agent.destroy();
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
    const headers = this.headersFor(ctx, peer, body);
    const path = peer.basePath + ctx.path + ctx.search;
    let outcome = await this.exchange(peer, method, path, headers, body, waitMs, ctx.res);
    // A kept-alive connection the peer closed just as it was reused (the race every keep-alive
    // client has): a read is sent once more on a fresh one. Writes and deletes are not resent here;
    // their 503 tells the client to retry, as the protocols expect.
    if (
      outcome.kind === 'failed' &&
      outcome.reason === 'reset' &&
      outcome.reused &&
      (method === 'GET' || method === 'HEAD')
    ) {
      outcome = await this.exchange(peer, method, path, headers, body, waitMs, ctx.res);
    }
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
      const t = ctx.URL.searchParams.get('timeout_ms');
      if (t !== null && t.length <= MAX_TIMEOUT_DIGITS && /^\d+$/.test(t)) ms = Number(t);
    }
    return Math.min(ms, this.maxWaitMs);
  }

  /**
   * The request headers as a flat [name, value, ...] list: Node writes such a list as it is, without
   * a header map per request. The peer's Host is given here (Node only adds it for a map).
   */
  private headersFor(ctx: Context, peer: PeerState, body: Buffer | undefined): string[] {
    const given = ctx.req.headers;
    const out = [
      'Host',
      peer.host,
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
    return this.exchange(peer, 'GET', `${peer.basePath}/health`, ['Host', peer.host], undefined, 0, undefined).then(
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
    client: http.ServerResponse | undefined,
  ): Promise<Outcome> {
    const { regionConnectTimeoutMs, regionResponseTimeoutMs } = this.config;
    // The client left while its body was read: nothing to forward for.
    if (client !== undefined && (client.socket === null || client.socket.destroyed)) {
      return Promise.resolve({ kind: 'aborted' });
    }
    return new Promise<Outcome>((resolve) => {
      let done = false;
      const req = peer.request({
        agent: peer.agent,
        hostname: peer.hostname,
        port: peer.port,
        method,
        path,
        headers,
      });
      const finish = (outcome: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        client?.off('close', onClientClose);
        resolve(outcome);
      };
      const fail = (reason: 'connect' | 'timeout' | 'reset', code?: string) => {
        finish({ kind: 'failed', reason, reused: req.reusedSocket, code });
        req.destroy();
      };
      // Until a connection is ready (a pooled one, or a new one connected): the connect timeout.
      let timer = setTimeout(() => fail('connect', 'ETIMEDOUT'), regionConnectTimeoutMs);
      const connected = () => {
        if (done) return;
        clearTimeout(timer);
        timer = setTimeout(() => fail('timeout', 'ETIMEDOUT'), regionResponseTimeoutMs + waitMs);
      };
      const onClientClose = () => {
        if (done) return;
        finish({ kind: 'aborted' });
        req.destroy();
      };
      client?.on('close', onClientClose);
      req.on('socket', (socket: Socket) => {
        if (req.reusedSocket || !socket.connecting) return connected();
        socket.once(peer.tls ? 'secureConnect' : 'connect', connected);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (done) return;
        fail(err.code !== undefined && CONNECT_ERRORS.has(err.code) ? 'connect' : 'reset', err.code);
      });
      req.on('response', (res: http.IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) return fail('reset', 'ETOOBIG');
          chunks.push(chunk);
        });
        res.on('end', () =>
          finish({
            kind: 'answer',
            status: res.statusCode!,
            raw: res.rawHeaders,
            body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
          }),
        );
        res.on('error', (err: NodeJS.ErrnoException) => fail('reset', err.code));
        res.on('aborted', () => fail('reset', 'ECONNRESET'));
      });
      req.end(body);
    });
  }
}

function headerOf(raw: string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === lowerName) return raw[i + 1];
  return undefined;
}
