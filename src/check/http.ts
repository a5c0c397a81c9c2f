import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import zlib from 'node:zlib';

/** One answer as the check saw it on the wire, with when it was asked and answered. */
export interface Answer {
  status: number;
  /** Every header by lower-case name, each value as sent (repeated headers stay separate). */
  headers: Map<string, string[]>;
  /** The body after undoing any Content-Encoding a proxy added. */
  body: Buffer;
  /** Content-Encoding the answer arrived with, when a proxy compressed it. */
  encoding: string | undefined;
  sentAt: number;
  answeredAt: number;
  /**
   * The answer carries the X-Request-Id of an earlier request of this run, not its own: something in
   * front answered it from a cache (the server echoes each request's own id).
   */
  replayed?: boolean;
}

export interface Ask {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** A new TCP connection just for this request, closed after it (what another device would do). */
  fresh?: boolean;
  timeoutMs?: number;
}

/**
 * Largest answer body taken, before and after decompression: a session answer is a few KiB, an
 * error page tens. A larger one is no rendezvous answer, and is not held in memory whole.
 */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** Browsers and the native clients all accept compression, so proxies that compress show it. */
const ACCEPT_ENCODING = 'gzip, deflate, br';
export const ORIGIN = 'https://rendezvous-check.invalid';

/**
 * Real HTTP over Node's own client, so every proxy in front sees ordinary requests. Keep-alive
 * connections are reused like a client's; `fresh` requests get a connection of their own.
 */
export class HttpClient {
  private readonly agents = {
    http: new http.Agent({ keepAlive: true }),
    https: new https.Agent({ keepAlive: true }),
  };

  /** URLs a DELETE was sent to whose answer never came: it may well have deleted the session. */
  readonly unansweredDeletes = new Set<string>();

  /**
   * Every request carries an X-Request-Id of its own, which the server echoes: an answer carrying
   * another request's id was kept and replayed by a cache in front.
   */
  private readonly idPrefix = `rz-check-${randomBytes(6).toString('hex')}-`;
  private sent = 0;

  constructor(private readonly defaultTimeoutMs = 10_000) {}

  request(ask: Ask): Promise<Answer> {
    const answer = this.send(ask);
    if (ask.method !== 'DELETE') return answer;
    return answer.catch((err: unknown) => {
      this.unansweredDeletes.add(ask.url);
      throw err;
    });
  }

  private send(ask: Ask): Promise<Answer> {
    const url = new URL(ask.url);
    const secure = url.protocol === 'https:';
    const lib = secure ? https : http;
    const agent = ask.fresh ? false : secure ? this.agents.https : this.agents.http;
    const requestId = `${this.idPrefix}${++this.sent}`;
    const headers: Record<string, string> = {
      'Accept-Encoding': ACCEPT_ENCODING,
      Origin: ORIGIN,
      'X-Request-Id': requestId,
      ...ask.headers,
    };
    if (ask.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(ask.body));
    const timeoutMs = ask.timeoutMs ?? this.defaultTimeoutMs;
    let deadline: NodeJS.Timeout | undefined;
    return new Promise<Answer>((resolve, reject) => {
      const sentAt = Date.now();
      const req = lib.request(url, { method: ask.method ?? 'GET', headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) req.destroy(new Error(`answer body larger than ${MAX_BODY_BYTES / 1048576} MiB`));
          else chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const answeredAt = Date.now();
          const encoding = res.headers['content-encoding']?.toLowerCase();
          let body: Buffer;
          try {
            body = decode(Buffer.concat(chunks), encoding);
          } catch (err) {
            const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
            reject(
              new Error(
                tooLarge
                  ? `answer body larger than ${MAX_BODY_BYTES / 1048576} MiB once decoded (${encoding})`
                  : `answer body declared ${encoding} but did not decode: ${(err as Error).message}`,
              ),
            );
            return;
          }
          const echoed = res.headers['x-request-id'];
          resolve({
            status: res.statusCode ?? 0,
            headers: headerMap(res.rawHeaders),
            body,
            encoding,
            sentAt,
            answeredAt,
            replayed: typeof echoed === 'string' && echoed.startsWith(this.idPrefix) && echoed !== requestId,
          });
        });
      });
      // One deadline for the whole exchange (connecting, the answer's head, its whole body): an
      // idle timeout alone never ends a connect to a host that drops packets, nor a body that
      // trickles in a byte at a time.
      deadline = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      req.on('error', reject);
      req.end(ask.body);
    }).finally(() => clearTimeout(deadline));
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

function headerMap(raw: string[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const list = map.get(name) ?? [];
    list.push(raw[i + 1]!);
    map.set(name, list);
  }
  return map;
}

function decode(body: Buffer, encoding: string | undefined): Buffer {
  if (body.length === 0 || encoding === undefined || encoding === 'identity') return body;
  const bounded = { maxOutputLength: MAX_BODY_BYTES };
  if (encoding === 'gzip' || encoding === 'x-gzip') return zlib.gunzipSync(body, bounded);
  if (encoding === 'deflate') return zlib.inflateSync(body, bounded);
  if (encoding === 'br') return zlib.brotliDecompressSync(body, bounded);
  throw new Error(`unknown encoding ${encoding}`);
}

/** The header's value; repeated headers joined as HTTP allows for list-valued fields. */
export function header(a: Answer, name: string): string | undefined {
  return a.headers.get(name.toLowerCase())?.join(', ');
}

/** The body as JSON, or undefined when it is not a JSON object. */
export function jsonOf(a: Answer): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(a.body.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A short, printable account of an unexpected answer for a finding's detail. */
export function summarise(a: Answer): string {
  const json = jsonOf(a);
  if (json !== undefined && typeof json.errcode === 'string') return `${a.status} ${json.errcode}`;
  const type = header(a, 'content-type') ?? 'no Content-Type';
  const text = a.body.toString('utf8').replace(/\s+/g, ' ').trim().slice(0, 80);
  return `${a.status} (${type})${text ? `: ${text}` : ''}`;
}
