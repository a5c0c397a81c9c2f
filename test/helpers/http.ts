import http from 'node:http';
import { expect } from 'chai';

/** What keeps a stored payload opened in a browser from running or loading anything. */
export const CSP = "default-src 'none'; frame-ancestors 'none'; sandbox";

/** The headers every rendezvous answer carries, whatever its status. */
export function expectCommonHeaders(res: Response): void {
  expect(res.headers.get('cache-control')).to.equal('no-store, no-transform');
  expect(res.headers.get('pragma')).to.equal('no-cache');
  expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
  expect(res.headers.get('content-security-policy')).to.equal(CSP);
  expect(res.headers.get('access-control-allow-origin')).to.equal('*');
  const exposed = (res.headers.get('access-control-expose-headers') ?? '').toLowerCase().split(/\s*,\s*/);
  expect(exposed).to.include.members(['etag', 'location', 'expires', 'last-modified']);
}

const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** ETag (strong, quoted), Expires and Last-Modified (IMF-fixdate): the validators of a session. */
export function expectValidators(res: Response): { etag: string; expires: number; lastModified: number } {
  const etag = res.headers.get('etag');
  expect(etag, 'ETag').to.match(/^"[\x21\x23-\x7e]+"$/);
  const expires = res.headers.get('expires');
  const lastModified = res.headers.get('last-modified');
  expect(expires, 'Expires').to.match(IMF_FIXDATE);
  expect(lastModified, 'Last-Modified').to.match(IMF_FIXDATE);
  return { etag: etag!, expires: Date.parse(expires!), lastModified: Date.parse(lastModified!) };
}

/** A Matrix JSON error with this status and errcode. */
export async function expectMatrixError(
  res: Response,
  status: number,
  errcode: string,
): Promise<Record<string, unknown>> {
  expect(res.status, `status (${errcode})`).to.equal(status);
  expect(res.headers.get('content-type')).to.equal('application/json');
  const body = (await res.json()) as Record<string, unknown>;
  expect(body.errcode).to.equal(errcode);
  expect(body.error).to.be.a('string').and.not.equal('');
  return body;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request fetch() would refuse to send (bad framing, odd methods); resolves with what came back. */
export function rawRequest(
  url: string,
  options: { method: string; headers?: Record<string, string | number>; body?: Buffer | string },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

/**
 * One HTTP request with exactly the headers given (fetch would add a Content-Type of its own to a
 * string body, and hides some headers), on a fresh connection.
 */
export function request(
  method: string,
  url: string,
  opts: { headers?: Record<string, string | string[]>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[] | number> = { ...opts.headers };
    if (opts.body !== undefined) headers['Content-Length'] = Buffer.byteLength(opts.body);
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
