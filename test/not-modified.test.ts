import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { req } from './helpers/exchange';
import { parseAnswers, rawExchange } from './helpers/raw';
import { sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';

const run = promisify(execFile);
const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';

/** What wrk reports: requests completed, and the errors it saw (timeouts are requests never answered). */
interface WrkResult {
  requests: number;
  perSecond: number;
  timeouts: number;
  non2xx3xx: number;
}

/**
 * wrk against `url` with `If-None-Match: etag` on every request. Its HTTP parser, like OkHttp's
 * and autocannon's, reads a 304's Content-Length as a body to wait for: with one it never counts
 * a request.
 */
async function wrk(url: string, etag: string): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), 'rz-wrk-'));
  try {
    const script = join(dir, 'if-none-match.lua');
    writeFileSync(script, `wrk.headers["If-None-Match"] = ${JSON.stringify(etag)}\n`);
    const { stdout } = await run('wrk', ['-t1', '-c8', '-d2s', '--timeout', '2s', '-s', script, url]);
    const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? 0);
    return {
      requests: num(/(\d+) requests in/),
      perSecond: num(/Requests\/sec:\s+([\d.]+)/),
      timeouts: num(/timeout (\d+)/),
      non2xx3xx: num(/Non-2xx or 3xx responses: (\d+)/),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('304 Not Modified', function () {
  this.timeout(30_000);
  let replica: Replica;
  const polls: { family: string; url: string; etag: string }[] = [];

  before(async () => {
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl() });
    const a = await req(`${replica.url}/`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: 'hello',
    });
    polls.push({ family: 'MSC3886', url: `${replica.url}/${((await a.json()) as { id: string }).id}`, etag: '' });
    polls[0]!.etag = a.headers.get('ETag')!;
    const b = await req(`${replica.url}${MSC4108}`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: 'hello',
    });
    const url = new URL(((await b.json()) as { url: string }).url).pathname;
    polls.push({ family: 'MSC4108', url: `${replica.url}${url}`, etag: b.headers.get('ETag')! });
  });
  after(() => replica?.stop());

  it('carries the validators and caching headers but no Content-Type or Content-Length, plain or held', async () => {
    for (const { family, url, etag } of polls) {
      const path = new URL(url).pathname;
      for (const prefer of ['', 'Prefer: wait=1\r\n']) {
        const what = `${family} ${prefer === '' ? 'poll' : 'held poll'}`;
        const { text } = await rawExchange(
          replica.port,
          `GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\n${prefer}Connection: close\r\n\r\n`,
        );
        const [a, ...more] = parseAnswers(text);
        expect(more, what).to.deep.equal([]);
        expect(a!.status, what).to.equal(304);
        expect(a!.headers, what).to.not.have.any.keys('content-type', 'content-length', 'transfer-encoding');
        expect(a!.headers.etag, what).to.equal(etag);
        expect(a!.headers, what).to.include.keys('expires', 'last-modified');
        expect(a!.headers['cache-control'], what).to.equal('no-store, no-transform');
        expect(a!.headers['access-control-allow-origin'], what).to.equal('*');
        // Nothing follows the head: the connection's next bytes would be the next answer.
        expect(text.endsWith('\r\n\r\n'), what).to.equal(true);
      }
    }
  });

  for (const family of ['MSC3886', 'MSC4108']) {
    it(`is counted by wrk as answered, on an ${family} poll`, async () => {
      const { url, etag } = polls.find((p) => p.family === family)!;
      const result = await wrk(url, etag);
      expect(result.requests, 'requests wrk completed').to.be.greaterThan(0);
      expect(result.timeouts, 'requests wrk gave up on').to.equal(0);
      expect(result.non2xx3xx, 'answers other than 304').to.equal(0);
      // The figure, for whoever reads the run (never asserted: the machine is shared).
      process.stdout.write(`      wrk, ${family} 304 poll: ${result.perSecond} requests/s\n`);
    });
  }
});
