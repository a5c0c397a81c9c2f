import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { MatrixError } from '../http/errors';
import { LogThrottle } from '../log-throttle';
import type { Verdict, VerdictCache } from '../store/types';

export interface WhoamiOptions {
  homeserverUrl: string;
  timeoutMs: number;
  /** How long a verdict is remembered; 0 asks the homeserver every time. */
  cacheMs: number;
  cache: VerdictCache;
  log: Logger;
}

/**
 * Asks the homeserver whether an access token is valid (`GET /_matrix/client/v3/account/whoami`).
 * Verdicts are cached briefly by token hash; concurrent checks of one token share one call. Only
 * the homeserver's own word makes a token invalid: a 401 with a Matrix errcode (its `soft_logout`
 * kept). Anything else (a 403 or a 401 from something in front of it, a 401 M_MISSING_TOKEN, which
 * says the token never reached it, a 5xx, no answer) says nothing about the token: 503, or 504 for a
 * homeserver slower than `timeoutMs`, both with Retry-After, and nothing cached.
 */
export class WhoamiVerifier {
  private readonly inFlight = new Map<string, Promise<Verdict>>();
  private readonly url: string;
  /** One warning a second per kind of homeserver trouble, however many creates meet it. */
  private readonly throttle = new LogThrottle(1000);

  constructor(private readonly opts: WhoamiOptions) {
    this.url = `${opts.homeserverUrl}/_matrix/client/v3/account/whoami`;
  }

  /** `reqId`: the request asking, named in the log lines of a homeserver that could not say. */
  async verify(token: string, reqId?: string): Promise<Verdict> {
    const hash = createHash('sha256').update(token).digest('base64url');
    const cached = await this.cached(hash, reqId);
    if (cached !== undefined) return cached;
    let pending = this.inFlight.get(hash);
    if (pending === undefined) {
      // A check shared by several requests is logged with the id of the one that started it.
      pending = this.ask(token, hash, reqId).finally(() => this.inFlight.delete(hash));
      this.inFlight.set(hash, pending);
    }
    return pending;
  }

  private async cached(hash: string, reqId: string | undefined): Promise<Verdict | undefined> {
    if (this.opts.cacheMs === 0) return undefined;
    try {
      return await this.opts.cache.get(hash);
    } catch (err) {
      this.opts.log.debug({ reqId, err: (err as Error).message }, 'token cache unavailable');
      return undefined;
    }
  }

  private async ask(token: string, hash: string, reqId: string | undefined): Promise<Verdict> {
    let status: number;
    let body: unknown;
    let retryAfter: string | null;
    let contentType: string | null;
    try {
      const res = await fetch(this.url, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
        signal: AbortSignal.timeout(this.opts.timeoutMs),
        redirect: 'error',
      });
      status = res.status;
      retryAfter = res.headers.get('retry-after');
      contentType = res.headers.get('content-type');
      // Read or discard the body either way, so the connection can be reused. A body that breaks
      // off is no answer; one still arriving when the time is up is a homeserver too slow (below).
      if (status === 200 || status === 401) body = await boundedJson(res).catch(rethrowTimeout);
      else await res.body?.cancel();
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        this.warn(
          'timeout',
          { reqId, timeoutMs: this.opts.timeoutMs },
          'homeserver did not answer the token check in time',
        );
        throw new MatrixError(
          504,
          'M_UNKNOWN',
          'The homeserver did not answer the access token check in time',
          undefined,
          { 'Retry-After': '1' },
        );
      }
      // fetch says only "fetch failed"; why (refused, TLS, a redirect, which is not followed) is its cause.
      const cause = (err as Error & { cause?: unknown }).cause;
      this.warn(
        'unreachable',
        { reqId, err: (err as Error).message, cause: cause instanceof Error ? cause.message : undefined },
        'homeserver unreachable for the token check',
      );
      throw unavailable();
    }
    let verdict: Verdict;
    const answer = body as { user_id?: unknown; errcode?: unknown; soft_logout?: unknown } | undefined;
    if (status === 200 && typeof answer?.user_id === 'string') {
      verdict = 'valid';
    } else if (status === 401 && typeof answer?.errcode === 'string' && answer.errcode !== 'M_MISSING_TOKEN') {
      verdict = answer.soft_logout === true ? 'soft_logout' : 'invalid';
    } else {
      const errcode = (answer as { errcode?: unknown } | undefined)?.errcode;
      this.warn(
        'unexpected',
        {
          reqId,
          status,
          contentType,
          errcode: typeof errcode === 'string' ? errcode : undefined,
          tooLarge: body === TOO_LARGE ? `over ${MAX_ANSWER_BYTES} bytes` : undefined,
        },
        'unexpected answer from the homeserver to the token check',
      );
      // A homeserver that says when to come back (429, 503) is passed on, within reason.
      throw unavailable(retryAfterSeconds(retryAfter));
    }
    if (this.opts.cacheMs > 0) {
      await this.opts.cache.set(hash, verdict, this.opts.cacheMs).catch((err: Error) => {
        this.opts.log.debug({ reqId, err: err.message }, 'token cache unavailable');
      });
    }
    return verdict;
  }

  private warn(kind: string, fields: Record<string, unknown>, message: string): void {
    const unlogged = this.throttle.take(kind);
    if (unlogged !== undefined) this.opts.log.warn({ ...fields, unlogged }, message);
  }
}

/** A body that could not be read counts as none, unless the time ran out while it was read. */
function rethrowTimeout(err: unknown): undefined {
  if ((err as Error).name === 'TimeoutError') throw err;
  return undefined;
}

/** Longest Retry-After passed on from the homeserver. */
const MAX_RETRY_AFTER_SECONDS = 60;

/** A Retry-After in seconds (1 when absent, a date, or nonsense), at most MAX_RETRY_AFTER_SECONDS. */
function retryAfterSeconds(header: string | null): number {
  if (header === null || !/^\d+$/.test(header.trim())) return 1;
  // However many digits: a long wait is still a long wait (Number gives Infinity past its range).
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Number(header.trim())));
}

const unavailable = (retryAfter = 1) =>
  new MatrixError(503, 'M_UNKNOWN', 'The homeserver could not check the access token, try again shortly', undefined, {
    'Retry-After': String(retryAfter),
  });

/** A whoami answer is a user id and a device id, an error a line: a body past this is no answer. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** What boundedJson answers for a body past MAX_ANSWER_BYTES (no JSON value is this object). */
const TOO_LARGE = Symbol('too large');

/** The body as JSON, read up to MAX_ANSWER_BYTES (TOO_LARGE past it; undefined when it is not JSON). */
async function boundedJson(res: Response): Promise<unknown> {
  if (Number(res.headers.get('content-length')) > MAX_ANSWER_BYTES) {
    await res.body?.cancel();
    return TOO_LARGE;
  }
  if (res.body === null) return undefined;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    // Leaving the loop early cancels the stream: the rest is never read.
    if (size > MAX_ANSWER_BYTES) return TOO_LARGE;
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}
