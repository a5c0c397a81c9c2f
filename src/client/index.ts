/**
 * A small rendezvous client for all three protocol families, with long-poll when the server offers
 * it and plain polling otherwise. No dependencies: only `fetch`, `URL`, `AbortSignal` and timers, so
 * it runs unchanged in browsers and in Node 18+.
 *
 * Long-poll detection needs no handshake: every wait for news asks the server to hold the GET
 * (`Prefer: wait=N` on the ETag family, `timeout_ms` on MSC4388). A server without the extension
 * answers at once with "nothing new"; the client then pauses for what is left of its poll interval,
 * which is exactly plain polling. A server with it answers when there is news or after N seconds,
 * and the next GET goes out at once.
 */

export type Family = 'msc3886' | 'msc4108' | 'msc4388';

export interface ClientOptions {
  /** The server's base URL, e.g. `https://rendezvous.example.org` (no trailing slash needed). */
  baseUrl: string;
  family: Family;
  /** Ask the server to hold GETs until there is news (default true); false: plain polling. */
  longPoll?: boolean;
  /** How long to ask the server to hold a GET, in seconds (default 25, below common proxy timeouts). */
  waitSeconds?: number;
  /** Shortest time between two GETs that brought nothing new, in ms (default 1000, like today's clients). */
  pollIntervalMs?: number;
  /** MSC3886 only: the Content-Type stored with the payload (default `text/plain`). */
  contentType?: string;
  /** MSC4388 only: the API prefix (default the unstable one clients use today). */
  msc4388Prefix?: string;
  /**
   * How many times a request is sent again after a `429` or a `503`, or after it got no answer at all
   * (default 3); a create only after a `429`. Re-sending is safe: a write that landed but whose
   * answer was lost is recognised by the server when re-sent verbatim.
   */
  retries?: number;
  /** Longest pause before a re-send, in ms (default 30000): an answer asking for more is returned as it is. */
  maxRetryDelayMs?: number;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

const MSC4108_PREFIX = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388_PREFIX = '/_matrix/client/unstable/io.element.msc4388/rendezvous';

/** A non-success answer: `status`, and the Matrix `errcode` when the body had one. */
export class RendezvousError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'RendezvousError';
  }
}

/** Somebody else wrote since this client last read (412 or 409): read, then decide again. */
export class ConcurrentWriteError extends RendezvousError {
  constructor(status: number, errcode: string | undefined) {
    super(status, errcode, 'the session was changed by someone else');
    this.name = 'ConcurrentWriteError';
  }
}

/**
 * The ETag of an ETag-family answer that must carry one. Without it the next write could not be a
 * compare-and-set (MSC3886 would take it as an unconditional overwrite): an error, not a guess.
 */
function etagOf(res: Response): string {
  const etag = res.headers.get('ETag');
  if (etag === null) {
    throw new RendezvousError(res.status, undefined, 'The answer carries no ETag (does something in front drop it?)');
  }
  return etag;
}

async function failure(res: Response): Promise<RendezvousError> {
  let errcode: string | undefined;
  let message = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { errcode?: unknown; error?: unknown };
    if (typeof body.errcode === 'string') errcode = body.errcode;
    if (typeof body.error === 'string') message = body.error;
  } catch {
    // Not JSON: the status says enough.
  }
  return new RendezvousError(res.status, errcode, message);
}

/**
 * What a request came back with, and whether an earlier send of it may have done its work all the
 * same: it went unanswered, or got a 503 (a store that timed out may still have written).
 */
interface Exchange {
  res: Response;
  mayHaveLanded: boolean;
}

/**
 * `url` when it is an http(s) URL. `localhost:8080` parses as a URL of the scheme `localhost:`,
 * which fetch then fails to send, as if no answer came: refused here instead.
 */
function httpUrl(url: string, what: string): string {
  if (!/^https?:\/\//i.test(url)) throw new TypeError(`${what} must start with http:// or https:// (got ${url})`);
  return url;
}

/** The pause before a re-send nothing asked for: 1 s, doubling per attempt. */
const backoffMs = (attempt: number): number => 1000 * 2 ** attempt;

/** The pause a `429` or `503` asks for (`Retry-After`, seconds or a date), else the backoff. */
function retryDelayMs(res: Response, attempt: number): number {
  const header = res.headers.get('Retry-After');
  if (header !== null) {
    if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
    const at = Date.parse(header);
    if (!Number.isNaN(at)) return Math.max(0, at - Date.now());
  }
  return backoffMs(attempt);
}

/** fetch rejects with a TypeError when no answer came (refused, reset, cut off); an abort is not one. */
const noAnswer = (err: unknown): boolean => err instanceof TypeError;

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class RendezvousClient {
  /** HTTP requests sent so far, over all sessions of this client. */
  requests = 0;
  readonly family: Family;
  readonly longPoll: boolean;
  readonly waitSeconds: number;
  readonly pollIntervalMs: number;
  /** MSC3886 only: the Content-Type sent with payloads. */
  readonly contentType: string;
  readonly retries: number;
  readonly maxRetryDelayMs: number;
  private readonly baseUrl: string;
  private readonly msc4388Prefix: string;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = httpUrl(options.baseUrl, 'baseUrl').replace(/\/+$/, '');
    this.family = options.family;
    this.longPoll = options.longPoll ?? true;
    this.waitSeconds = options.waitSeconds ?? 25;
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.contentType = options.contentType ?? 'text/plain';
    this.msc4388Prefix = options.msc4388Prefix ?? MSC4388_PREFIX;
    this.retries = options.retries ?? 3;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** @internal Every request goes through here, so `requests` counts them all, re-sends included. */
  async send(url: string, init: RequestInit): Promise<Response> {
    return (await this.exchange(url, init)).res;
  }

  /**
   * @internal Sends a request, and again (up to `retries` times) after a `429` or `503` whose pause
   * is at most `maxRetryDelayMs`, or after no answer at all. A create is re-sent only after a `429`:
   * after a `503` or no answer the first may have made a session, and a second would be another.
   */
  async exchange(url: string, init: RequestInit): Promise<Exchange> {
    // What fetch could never send (a malformed URL or header) is thrown here, at once: fetch throws
    // a TypeError for those too, which the loop below would take for a lost answer.
    new URL(url);
    new Headers(init.headers);
    let mayHaveLanded = false;
    for (let attempt = 0; ; attempt++) {
      this.requests++;
      let res: Response;
      try {
        res = await this.fetchImpl(url, init);
      } catch (err) {
        if (init.method === 'POST' || attempt >= this.retries || init.signal?.aborted || !noAnswer(err)) throw err;
        mayHaveLanded = true;
        // At once the first time: a keep-alive connection the server had just closed is the usual cause.
        if (attempt > 0) await sleep(backoffMs(attempt - 1), init.signal ?? undefined);
        continue;
      }
      if ((res.status === 429 || res.status === 503) && attempt < this.retries) {
        const delay = retryDelayMs(res, attempt);
        // A 503 may have come from a store that timed out with the work still done: a create is
        // not sent again after one, like a create that went unanswered.
        if (delay <= this.maxRetryDelayMs && !(res.status === 503 && init.method === 'POST')) {
          if (res.status === 503) mayHaveLanded = true;
          await res.arrayBuffer().catch(() => undefined);
          await sleep(delay, init.signal ?? undefined);
          continue;
        }
      }
      return { res, mayHaveLanded };
    }
  }

  /** Creates a session holding `data`; the returned session knows its version. */
  async create(data = '', signal?: AbortSignal): Promise<RendezvousSession> {
    if (this.family === 'msc4388') {
      const res = await this.send(this.baseUrl + this.msc4388Prefix, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ data }),
        signal,
      });
      if (res.status !== 200) throw await failure(res);
      const body = (await res.json()) as { id: string; sequence_token: string };
      const session = this.open(`${this.baseUrl}${this.msc4388Prefix}/${encodeURIComponent(body.id)}`);
      session.remember(data, body.sequence_token);
      return session;
    }
    const msc4108 = this.family === 'msc4108';
    const res = await this.send(msc4108 ? this.baseUrl + MSC4108_PREFIX : this.baseUrl + '/', {
      method: 'POST',
      headers: { 'Content-Type': msc4108 ? 'text/plain' : this.contentType },
      body: data,
      signal,
    });
    if (res.status !== (msc4108 ? 201 : 200)) throw await failure(res);
    const body = (await res.json()) as { url?: string; id?: string };
    const url = msc4108 ? body.url! : (res.headers.get('Location') ?? `${this.baseUrl}/${body.id}`);
    const session = this.open(url);
    session.remember(data, etagOf(res));
    return session;
  }

  /** A session somebody else created, by its URL (the QR code's). Its version is unknown until read. */
  open(url: string): RendezvousSession {
    return new RendezvousSession(this, httpUrl(url, 'the session URL'));
  }
}

export class RendezvousSession {
  /** The last payload this client read or wrote. */
  data: string | undefined;
  /** The version of `data`: its ETag, or its MSC4388 sequence token. */
  version: string | undefined;

  constructor(
    private readonly client: RendezvousClient,
    readonly url: string,
  ) {}

  /** @internal */
  remember(data: string, version: string | undefined): void {
    this.data = data;
    this.version = version;
  }

  /** One GET, answered at once: the current payload. */
  async read(signal?: AbortSignal): Promise<string> {
    await this.get(false, signal);
    return this.data!;
  }

  /**
   * The next payload different from the last one seen (the current one when nothing was seen yet):
   * held GETs where the server offers them, one GET per poll interval where it does not.
   */
  async receive(signal?: AbortSignal): Promise<string> {
    const { client } = this;
    for (;;) {
      const started = Date.now();
      if (await this.get(client.longPoll, signal)) return this.data!;
      const left = client.pollIntervalMs - (Date.now() - started);
      if (left > 0) await sleep(left, signal);
    }
  }

  /** Overwrites the payload if nobody wrote since this client's last read or write. */
  async write(data: string, signal?: AbortSignal): Promise<void> {
    const { client } = this;
    if (client.family === 'msc4388') {
      const res = await client.send(this.url, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sequence_token: this.version, data }),
        signal,
      });
      if (res.status === 409) throw new ConcurrentWriteError(409, (await failure(res)).errcode);
      if (res.status !== 200) throw await failure(res);
      this.remember(data, ((await res.json()) as { sequence_token: string }).sequence_token);
      return;
    }
    // Every write is a compare-and-set on the version last seen: none seen, nothing to compare.
    if (this.version === undefined) throw new Error('Read the session before writing it: no version of it is known');
    const headers: Record<string, string> = {
      'Content-Type': client.family === 'msc4108' ? 'text/plain' : client.contentType,
      'If-Match': this.version,
    };
    const res = await client.send(this.url, { method: 'PUT', headers, body: data, signal });
    if (res.status === 412) throw new ConcurrentWriteError(412, (await failure(res)).errcode);
    if (res.status !== 202) throw await failure(res);
    await res.arrayBuffer();
    this.remember(data, etagOf(res));
  }

  async delete(signal?: AbortSignal): Promise<void> {
    const { res, mayHaveLanded } = await this.client.exchange(this.url, { method: 'DELETE', signal });
    // After a DELETE that may have landed, "no such session" is most likely that DELETE's work.
    const gone = mayHaveLanded && res.status === 404;
    if (res.status !== 204 && res.status !== 200 && !gone) throw await failure(res);
    await res.arrayBuffer();
  }

  /** One GET; true when it brought a payload newer than the last one seen. */
  private async get(wait: boolean, signal: AbortSignal | undefined): Promise<boolean> {
    const { client } = this;
    const known = this.version;
    const holding = wait && known !== undefined;
    if (client.family === 'msc4388') {
      const url = holding
        ? `${this.url}?sequence_token=${encodeURIComponent(known)}&timeout_ms=${client.waitSeconds * 1000}`
        : this.url;
      const res = await client.send(url, { signal });
      if (res.status !== 200) throw await failure(res);
      const body = (await res.json()) as { data: string; sequence_token: string };
      this.remember(body.data, body.sequence_token);
      return body.sequence_token !== known;
    }
    const headers: Record<string, string> = {};
    if (known !== undefined) headers['If-None-Match'] = known;
    if (holding) headers['Prefer'] = `wait=${client.waitSeconds}`;
    const res = await client.send(this.url, { headers, signal });
    if (res.status === 304) {
      await res.arrayBuffer();
      return false;
    }
    if (res.status !== 200) throw await failure(res);
    this.remember(await res.text(), etagOf(res));
    return true;
  }
}
