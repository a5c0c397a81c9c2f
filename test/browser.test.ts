import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RedisServer } from './helpers/redis';
import { startServer } from './helpers/server';

/** The system Chromium; nothing is ever downloaded. */
const CHROMIUM = '/usr/bin/chromium';
const PAGE = readFileSync(join(__dirname, 'browser', 'page.html'));

type ProxyMode = 'as-is' | 'no-cors' | 'no-expose';

/**
 * Sits in front of the server and forwards everything, optionally removing CORS headers from the
 * answers: the same exchange with them removed must fail, which proves the server's CORS is what
 * makes it work. Counts the preflights the browser sent.
 */
class CorsProxy {
  mode: ProxyMode = 'as-is';
  preflights = 0;
  target = '';
  readonly server = http.createServer((req, res) => {
    if (req.method === 'OPTIONS') this.preflights++;
    const upstream = http.request(
      this.target + req.url,
      { method: req.method, headers: req.headers, agent: false },
      (up) => {
        const headers = { ...up.headers };
        for (const name of Object.keys(headers)) {
          if (this.mode === 'no-cors' && name.startsWith('access-control-')) delete headers[name];
          if (this.mode === 'no-expose' && name === 'access-control-expose-headers') delete headers[name];
        }
        res.writeHead(up.statusCode!, headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

interface Outcome {
  ok: boolean;
  error?: string;
  log: unknown[][];
}

describe('a real browser on another origin (headless Chromium)', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let server: Awaited<ReturnType<typeof startServer>>;
  let pageServer: http.Server;
  let proxy: CorsProxy;
  let apiOrigin: string;
  let pageOrigin: string;
  let browser: Browser;
  let page: Page;

  before(async () => {
    redis = await RedisServer.start();
    proxy = new CorsProxy();
    apiOrigin = await proxy.listen();
    server = await startServer({ REDIS_URL: redis.url, RZ_PUBLIC_BASE_URL: apiOrigin });
    proxy.target = server.url;
    pageServer = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end(PAGE));
    await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await browser.newPage();
    await page.goto(`${pageOrigin}/`);
  });
  after(async () => {
    await browser?.close();
    pageServer?.close();
    proxy?.server.close();
    await server?.stop();
    await redis?.destroy();
  });
  beforeEach(() => {
    proxy.mode = 'as-is';
    proxy.preflights = 0;
  });

  /** Calls the page's own script; the function body below runs inside the browser. */
  const run = (which: 'msc4108' | 'msc4388'): Promise<Outcome> =>
    page.evaluate(
      ([base, w]) =>
        (globalThis as unknown as { runExchange(b: string, w: string): Promise<Outcome> }).runExchange(base!, w!),
      [apiOrigin, which],
    );

  it('the page and the server are different origins', () => {
    expect(new URL(pageOrigin).origin).to.not.equal(new URL(apiOrigin).origin);
  });

  it('runs a full MSC4108 exchange with fetch: preflights pass, ETag is readable from JS, 304/412 seen', async () => {
    const out = await run('msc4108');
    expect(out.ok, JSON.stringify(out)).to.equal(true);
    const byName = Object.fromEntries(out.log.map((e) => [e[0], e.slice(1)]));
    expect(byName['poll unchanged']![0]).to.equal(304);
    expect(byName['poll unchanged']![1]).to.be.a('string');
    expect(byName['put']).to.deep.equal([202, true]);
    expect(byName['poll changed']).to.deep.equal([200, 'text/plain', 'hello from the browser', true]);
    expect(byName['stale put']).to.deep.equal([412, 'M_CONCURRENT_WRITE', true]);
    expect(byName['delete']).to.deep.equal([204]);
    expect(proxy.preflights).to.be.greaterThan(0);
  });

  it('runs a full MSC4388 exchange with fetch (JSON bodies, so preflighted), Sec-Fetch headers accepted', async () => {
    const out = await run('msc4388');
    expect(out.ok, JSON.stringify(out)).to.equal(true);
    const byName = Object.fromEntries(out.log.map((e) => [e[0], e.slice(1)]));
    expect(byName['discovery body']).to.deep.equal([{ create_available: true }]);
    expect(byName['create']).to.deep.equal([200, 'string', '1']);
    expect(byName['put']).to.deep.equal([200, true]);
    expect(byName['get']).to.deep.equal([200, 'ping', true]);
    expect(byName['stale put']).to.deep.equal([409, 'M_CONCURRENT_WRITE']);
    expect(byName['txn replay']).to.deep.equal([true]);
    expect(byName['delete']).to.deep.equal([200, {}]);
    expect(proxy.preflights).to.be.greaterThan(0);
  });

  it("fails both exchanges when the CORS headers are removed (so the server's CORS is what makes them work)", async () => {
    proxy.mode = 'no-cors';
    for (const which of ['msc4108', 'msc4388'] as const) {
      const out = await run(which);
      expect(out.ok, `${which}: ${JSON.stringify(out)}`).to.equal(false);
      expect(out.log[0]![1]).to.equal('error');
    }
  });

  it('fails the MSC4108 exchange with "ETag missing" when only Access-Control-Expose-Headers is removed', async () => {
    proxy.mode = 'no-expose';
    const out = await run('msc4108');
    expect(out.ok).to.equal(false);
    expect(out.error).to.equal('ETag missing on create');
  });
});
