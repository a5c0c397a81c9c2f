import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';

/**
 * What a misbehaving (or an outer) proxy does to the traffic it passes on. Each option is one
 * thing real proxies are known to do; without options the proxy passes everything through as is.
 */
export interface ProxyBehaviour {
  /** Edits the upstream answer's headers on the way out (e.g. strips a CORS header); `status` is the answer's. */
  headers?: (headers: http.IncomingHttpHeaders, status: number) => void;
  /** Edits the client's request headers on the way in (e.g. drops If-Match, as a misconfigured `proxy_set_header` does). */
  request?: (headers: http.IncomingHttpHeaders) => void;
  /** Compresses bodies for clients that accept gzip and weakens ETags, as CDNs and gzip-on nginx do. */
  gzip?: boolean;
  /**
   * Store-and-forward over one upstream connection: each answer is held until complete, and the
   * next request only goes up once the previous answer came back.
   */
  serialise?: boolean;
  /** Appends the client's address to X-Forwarded-For, as an outer TLS proxy does. */
  forwardedFor?: boolean;
  /** Source address of the connections to the upstream (any 127.x.y.z on Linux loopback). */
  localAddress?: string;
  /**
   * For the requests it matches: pass the request on, wait for the upstream's whole answer (the
   * request has done its work), then cut the client's connection without answering, as a replica
   * killed at that instant would.
   */
  dropAnswer?: (req: http.IncomingMessage) => boolean;
  /**
   * Which request targets go to the upstream at all; the others get the proxy's own HTML 404, as
   * from a homeserver that routes only some paths to the rendezvous server.
   */
  routes?: (target: string) => boolean;
  /** What the others get: an HTML page (default), or a homeserver's own Matrix 404. */
  unrouted?: 'html' | 'matrix';
  /**
   * Caches 200 answers to GET for this many seconds whatever Cache-Control says, as nginx
   * `proxy_cache` with `proxy_ignore_headers Cache-Control Expires` does: conditional headers are
   * dropped on the way up, and a cached answer's ETag matching If-None-Match is answered 304 here.
   */
  cacheSeconds?: number;
  /** Answers 504 when the upstream has not answered within this long, as nginx `proxy_read_timeout` does. */
  readTimeoutMs?: number;
}

interface Cached {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  until: number;
}

/** A small HTTP proxy on a loopback port in front of one upstream port. */
export class TestProxy {
  private constructor(
    private readonly server: http.Server,
    private readonly agent: http.Agent,
    private readonly counts: { dropped: number },
  ) {}

  /** Answers cut off by `dropAnswer` so far. */
  get dropped(): number {
    return this.counts.dropped;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(upstreamPort: number, behaviour: ProxyBehaviour = {}): Promise<TestProxy> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: behaviour.serialise ? 1 : Infinity });
    const counts = { dropped: 0 };
    const cache = new Map<string, Cached>();
    const server = http.createServer((req, res) => {
      if (behaviour.cacheSeconds !== undefined && req.method === 'GET') {
        const hit = cache.get(req.url ?? '');
        if (hit !== undefined && hit.until > Date.now()) {
          req.resume();
          if (hit.headers.etag !== undefined && req.headers['if-none-match'] === hit.headers.etag) {
            const { 'content-length': _length, 'content-type': _type, ...rest } = hit.headers;
            res.writeHead(304, rest).end();
          } else {
            res.writeHead(hit.status, hit.headers).end(hit.body);
          }
          return;
        }
      }
      if (behaviour.routes !== undefined && !behaviour.routes(req.url ?? '')) {
        req.resume();
        if (behaviour.unrouted === 'matrix') {
          res
            .writeHead(404, { 'Content-Type': 'application/json' })
            .end('{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}');
        } else {
          res.writeHead(404, { 'Content-Type': 'text/html' }).end('<html><body>404 Not Found</body></html>');
        }
        return;
      }
      const headers = { ...req.headers };
      behaviour.request?.(headers);
      const caching = behaviour.cacheSeconds !== undefined && req.method === 'GET';
      if (caching) {
        delete headers['if-none-match'];
        delete headers['if-modified-since'];
      }
      if (behaviour.forwardedFor) {
        const prior = headers['x-forwarded-for'];
        headers['x-forwarded-for'] = `${prior ? `${String(prior)}, ` : ''}${req.socket.remoteAddress}`;
      }
      const up = http.request(
        {
          host: '127.0.0.1',
          port: upstreamPort,
          method: req.method,
          path: req.url,
          headers,
          agent,
          localAddress: behaviour.localAddress,
        },
        (upRes) => {
          if (behaviour.dropAnswer?.(req)) {
            upRes.resume();
            upRes.on('end', () => {
              counts.dropped++;
              res.socket?.destroy();
            });
            return;
          }
          if (caching && upRes.statusCode === 200) {
            const chunks: Buffer[] = [];
            upRes.on('data', (c: Buffer) => chunks.push(c));
            upRes.on('end', () => {
              const entry = {
                status: 200,
                headers: { ...upRes.headers },
                body: Buffer.concat(chunks),
                until: Date.now() + behaviour.cacheSeconds! * 1000,
              };
              cache.set(req.url ?? '', entry);
              const { 'content-length': _length, 'content-type': _type, ...rest } = entry.headers;
              if (entry.headers.etag !== undefined && req.headers['if-none-match'] === entry.headers.etag) {
                res.writeHead(304, rest).end();
              } else res.writeHead(200, entry.headers).end(entry.body);
            });
            return;
          }
          forward(req, res, upRes, behaviour);
        },
      );
      if (behaviour.readTimeoutMs !== undefined) {
        const timer = setTimeout(() => {
          up.destroy();
          if (!res.headersSent) res.writeHead(504, { 'Content-Type': 'text/html' });
          res.end('<html>504 Gateway Time-out</html>');
        }, behaviour.readTimeoutMs);
        up.on('response', () => clearTimeout(timer));
        up.on('close', () => clearTimeout(timer));
      }
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/html' });
        res.end('<html>502 Bad Gateway</html>');
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new TestProxy(server, agent, counts);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
    this.agent.destroy();
  }
}

function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  upRes: http.IncomingMessage,
  behaviour: ProxyBehaviour,
): void {
  const headers = { ...upRes.headers };
  const status = upRes.statusCode ?? 502;
  behaviour.headers?.(headers, status);
  const gzip = behaviour.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  if (gzip && typeof headers.etag === 'string' && !headers.etag.startsWith('W/')) headers.etag = `W/${headers.etag}`;
  if (!gzip && !behaviour.serialise) {
    res.writeHead(status, headers);
    upRes.pipe(res);
    return;
  }
  const chunks: Buffer[] = [];
  upRes.on('data', (c: Buffer) => chunks.push(c));
  upRes.on('end', () => {
    let body = Buffer.concat(chunks);
    if (gzip && body.length > 0) {
      body = zlib.gzipSync(body);
      headers['content-encoding'] = 'gzip';
      headers['content-length'] = String(body.length);
    }
    res.writeHead(status, headers);
    res.end(body);
  });
}
