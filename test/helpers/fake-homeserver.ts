import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * normal: as described below; slow: never answers; stalled: sends a 200's headers and the start of
 * its body, then nothing more; error: 500; soft: unknown tokens get 401 with `soft_logout: true`
 * (an expired token under refresh tokens); blocked: 403 and 401 HTML pages from something in front
 * of the homeserver (403 for tokens starting `forbid`, else 401); limited: 429 M_LIMIT_EXCEEDED with
 * the Retry-After in `retryAfter`; huge: a valid token's 200 padded to 4 MiB, sent without a
 * Content-Length (what no whoami answer is); stripped: 401 M_MISSING_TOKEN for every call, as when
 * something in front of the homeserver drops the Authorization header.
 */
export type HomeserverMode =
  'normal' | 'slow' | 'stalled' | 'error' | 'soft' | 'blocked' | 'limited' | 'huge' | 'stripped';

/**
 * A homeserver stand-in on loopback that answers `GET /_matrix/client/v3/account/whoami`: tokens in
 * `valid` are accepted, any other gets 401 M_UNKNOWN_TOKEN. The test sets `mode` to make it hang
 * ('slow', until closed) or fail ('error', 500), counts the calls, and can stop it ('down').
 */
export class FakeHomeserver {
  mode: HomeserverMode = 'normal';
  readonly valid = new Set<string>();
  calls = 0;
  /** The Retry-After of a 'limited' answer. */
  retryAfter = '7';
  private readonly server: http.Server;

  private constructor() {
    this.server = http.createServer((req, res) => {
      if (req.url !== '/_matrix/client/v3/account/whoami') {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"errcode":"M_UNRECOGNIZED"}');
        return;
      }
      this.calls++;
      if (this.mode === 'slow') return; // never answers; closeAllConnections ends it
      if (this.mode === 'stalled') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).write('{"user_id":');
        return; // the rest never comes
      }
      if (this.mode === 'error') {
        res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"errcode":"M_UNKNOWN"}');
        return;
      }
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (this.mode === 'limited') {
        res
          .writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': this.retryAfter })
          .end('{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":7000}');
        return;
      }
      if (this.mode === 'stripped') {
        res
          .writeHead(401, { 'Content-Type': 'application/json' })
          .end('{"errcode":"M_MISSING_TOKEN","error":"Missing access token"}');
        return;
      }
      if (this.mode === 'blocked') {
        res.writeHead(token?.startsWith('forbid') ? 403 : 401, { 'Content-Type': 'text/html' }).end('<html>no</html>');
        return;
      }
      if (this.mode === 'huge' && token !== undefined && this.valid.has(token)) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"user_id":"@alice:example.org","pad":"');
        for (let i = 0; i < 64; i++) res.write('x'.repeat(64 * 1024));
        res.end('"}');
        return;
      }
      if (token !== undefined && this.valid.has(token)) {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"user_id":"@alice:example.org"}');
      } else {
        res
          .writeHead(401, { 'Content-Type': 'application/json' })
          .end(`{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token","soft_logout":${this.mode === 'soft'}}`);
      }
    });
  }

  static async start(): Promise<FakeHomeserver> {
    const hs = new FakeHomeserver();
    await new Promise<void>((resolve) => hs.server.listen(0, '127.0.0.1', resolve));
    hs.url = `http://127.0.0.1:${(hs.server.address() as AddressInfo).port}`;
    return hs;
  }

  /** Stays the same after stop(), so a server pointed at it finds a closed port. */
  url = '';

  /** Stops listening: from now on the port refuses connections. */
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
