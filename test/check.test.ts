import type { Redis } from 'ioredis';
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { FIX } from '../src/check/advice';
import type { CheckContext } from '../src/check/context';
import type { EtagFamily, EtagSession } from '../src/check/etag-family';
import { checkPublicUrl } from '../src/check/public-url';
import { Report, type Finding } from '../src/check/report';
import { HttpClient } from '../src/check/http';
import { PATHS } from '../src/check/paths';
import { Balancer } from './helpers/balancer';
import { finding, idsWith, runCheck, type CheckRun } from './helpers/check';
import { freePort } from './helpers/ports';
import { TestProxy } from './helpers/proxy';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { roomInWindow } from './helpers/windows';

/** Replicas the way the compose stack runs them: metrics on a port of their own, the balancer trusted. */
const replicaEnv = (redis: RedisServer, extra: Record<string, string> = {}) => ({
  REDIS_URL: redis.url,
  RZ_METRICS_PORT: '0',
  RZ_TRUSTED_PROXIES: '127.0.0.1',
  ...extra,
});

/**
 * A replica (`replicaEnv` with `extra`) on a Redis of its own, for the describe block that calls
 * this: started before its tests, stopped after them.
 */
function replicaOnItsOwnRedis(extra: Record<string, string> = {}): { redis: RedisServer; replica: Replica } {
  const own = {} as { redis: RedisServer; replica: Replica };
  before(async () => {
    own.redis = await RedisServer.start();
    own.replica = await Replica.start(replicaEnv(own.redis, extra));
  });
  after(async () => {
    await own.replica?.stop();
    await own.redis?.destroy();
  });
  return own;
}

/** On failure, the whole report: what the check saw is the useful part of a failed assertion. */
const shown = (run: CheckRun) => run.stdout + run.stderr;

/** Session keys in a Redis (the caps' own keys, tagged `{:caps}`, stay: they count, they hold nothing). */
async function sessionKeys(client: Redis): Promise<string[]> {
  return (await client.keys('rz:{*}')).filter((key) => !key.startsWith('rz:{:'));
}

/** The check deleted every session it made in this Redis. */
async function expectNoSessionLeft(redis: RedisServer): Promise<void> {
  const client = redis.client();
  try {
    expect(await sessionKeys(client), 'session keys left in Redis').to.deep.equal([]);
  } finally {
    client.disconnect();
  }
}

describe('rendezvous-server check: usage', () => {
  it('answers --help with its usage and exit status 0', async () => {
    const run = await runCheck(['--help']);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.include('Usage: rendezvous-server check <base-url> [--json]');
  });

  for (const [args, message] of [
    [[], 'missing <base-url>'],
    [['ftp://example.org'], 'must start with http:// or https://'],
    [['localhost:8080'], '(got localhost:8080; try http://localhost:8080)'],
    [['rendezvous.example.org'], '(got rendezvous.example.org; try https://rendezvous.example.org)'],
    [['http://exa mple.org'], 'not a URL'],
    [['http://a.example', 'http://b.example'], 'one <base-url> only'],
    [['http://a.example', '--verbose'], 'unknown option --verbose'],
    [['http://a.example/?x=1'], 'no query'],
  ] as const) {
    it(`refuses ${JSON.stringify(args)} with exit status 2 and says why`, async () => {
      const run = await runCheck([...args]);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.include(message);
      expect(run.stdout).to.equal('');
    });
  }

  for (const given of ['http://user:s3cret@exa mple.org', 'ftp://user:s3cret@example.org', 'user:s3cret@example.org']) {
    it(`refuses ${given} without echoing its password`, async () => {
      const run = await runCheck([given]);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.include('user:***@');
      expect(run.stderr).to.not.include('s3cret');
    });
  }

  it('fails (exit 1) with a finding, not a crash, when nothing answers at the URL', async () => {
    const run = await runCheck([`http://127.0.0.1:${await freePort()}`, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    expect(finding(run, 'reach')?.status).to.equal('fail');
    expect(finding(run, 'reach')?.detail).to.include('ECONNREFUSED');
  });
});

describe('rendezvous-server check against a healthy balanced pair (the repository nginx, two replicas, one Redis)', () => {
  let redis: RedisServer;
  let replicas: Replica[] = [];
  let lb: Balancer;
  before(async () => {
    redis = await RedisServer.start();
    replicas = await Promise.all([1, 2].map(() => Replica.start(replicaEnv(redis))));
    lb = await Balancer.start(replicas.map((r) => r.port));
  });
  after(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  it('passes every check (exit 0) and leaves no session behind', async () => {
    const run = await runCheck([lb.url, '--json']);
    expect(run.code, shown(run)).to.equal(0);
    expect(run.json!.ok).to.equal(true);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal([]);
    for (const id of [
      'msc3886.long-poll',
      'msc4108.long-poll',
      'msc4388.long-poll',
      'store.shared',
      'metrics.public',
      'cors.preflight',
      'cors.headers',
      'etag',
      'cache-control',
      'expiry',
      'msc4108.content-type',
      'msc4388.discovery',
      'validators',
    ]) {
      expect(finding(run, id)?.status, id).to.equal('pass');
    }
    await expectNoSessionLeft(redis);
  });

  it('prints a text report by default, one line per finding', async () => {
    const run = await runCheck([lb.url]);
    expect(run.code, shown(run)).to.equal(0);
    expect(run.stdout).to.match(/^PASS {2}store\.shared +Replicas share one session store/m);
    expect(run.stdout).to.match(/\d+ passed, \d+ warnings, 0 failed, \d+ skipped in [\d.]+ s\n$/);
  });
});

describe('rendezvous-server check against replicas on two different Redis servers behind one balancer', () => {
  let redises: RedisServer[] = [];
  let replicas: Replica[] = [];
  let lb: Balancer;
  before(async () => {
    redises = await Promise.all([RedisServer.start(), RedisServer.start()]);
    replicas = await Promise.all(redises.map((r) => Replica.start(replicaEnv(r))));
    lb = await Balancer.start(replicas.map((r) => r.port));
  });
  after(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await Promise.all(redises.map((r) => r.destroy()));
  });

  it('fails (exit 1), naming the shared store, and still deletes what it created', async () => {
    const run = await runCheck([lb.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    const shared = finding(run, 'store.shared');
    expect(shared?.status, shown(run)).to.equal('fail');
    expect(shared!.detail).to.include('do not share one session store');
    expect(shared!.fix).to.include('REDIS_URL');
    for (const redis of redises) {
      await expectNoSessionLeft(redis);
    }
  });
});

describe('rendezvous-server check through misbehaving proxies (one healthy replica behind each)', () => {
  let redis: RedisServer;
  let replica: Replica;
  let proxy: TestProxy | undefined;
  before(async () => {
    redis = await RedisServer.start();
    replica = await Replica.start(replicaEnv(redis));
  });
  afterEach(async () => {
    await proxy?.stop();
    proxy = undefined;
  });
  after(async () => {
    await replica?.stop();
    await redis?.destroy();
  });

  it('fails naming CORS when a proxy strips Access-Control-Expose-Headers', async () => {
    proxy = await TestProxy.start(replica.port, {
      headers: (h) => delete h['access-control-expose-headers'],
    });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal(['cors.headers']);
    expect(finding(run, 'cors.headers')!.detail).to.include('Access-Control-Expose-Headers');
    expect(finding(run, 'cors.headers')!.fix).to.include('enable-cors');
  });

  it('fails naming the dropped request header, not the routing, when a proxy drops If-Match', async () => {
    proxy = await TestProxy.start(replica.port, { request: (h) => delete h['if-match'] });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    const write = finding(run, 'msc4108.conditional-write');
    expect(write?.status, shown(run)).to.equal('fail');
    expect(write!.detail).to.include('If-Match header is missing').and.include('drops request headers');
    expect(write!.fix).to.equal(FIX.requestHeaders);
    expect(finding(run, 'store.shared')?.fix, shown(run)).to.equal(FIX.requestHeaders);
  });

  it('fails naming a cache, not the store, when a proxy caches session reads (nginx proxy_cache)', async () => {
    proxy = await TestProxy.start(replica.port, { cacheSeconds: 10 });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    // One replica on one Redis: nothing here is about the store.
    const blamed = run.json!.findings.filter((f) => f.fix === FIX.sharedStore).map((f) => f.id);
    expect(blamed, shown(run)).to.deep.equal([]);
    for (const id of ['msc4108.delete', 'msc3886.delete', 'msc4388.delete', 'store.shared']) {
      const f = finding(run, id);
      expect(f?.status, `${id}: ${shown(run)}`).to.equal('fail');
      expect(f!.detail, id).to.include('cache');
      expect(f!.fix, id).to.equal(FIX.cache);
    }
    expect(FIX.cache).to.include('proxy_cache');
  });

  it('warns that the wait did not reach the server when a proxy drops Prefer, and says to pass it', async () => {
    proxy = await TestProxy.start(replica.port, { request: (h) => delete h.prefer });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(0);
    for (const id of ['msc4108.long-poll', 'msc3886.long-poll']) {
      const poll = finding(run, id);
      expect(poll?.status, `${id}: ${shown(run)}`).to.equal('warn');
      expect(poll!.detail, id).to.include('answered at once (304)').and.include('Prefer');
      expect(poll!.fix, id).to.equal(FIX.longPollNotHeld);
    }
    expect(finding(run, 'msc4388.long-poll')?.status, shown(run)).to.equal('pass');
  });

  it('fails naming the ETag when a proxy strips it from every answer, and deletes the sessions it created', async () => {
    proxy = await TestProxy.start(replica.port, { headers: (h) => delete h.etag });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    for (const id of ['msc4108.create', 'msc3886.create']) {
      const create = finding(run, id);
      expect(create?.status, `${id}: ${shown(run)}`).to.equal('fail');
      expect(create!.detail, id).to.include('with a session but no ETag').and.not.include('not the rendezvous server');
      expect(create!.fix, id).to.include('proxy_hide_header ETag');
    }
    // A session at / is the server's own answer, not a homeserver's route elsewhere.
    expect(finding(run, 'msc3886.root'), shown(run)).to.equal(undefined);
    expect(finding(run, 'cleanup'), shown(run)).to.equal(undefined);
    await expectNoSessionLeft(redis);
  });

  it('fails naming the validators when a proxy strips Last-Modified from 200 answers, the 304s keeping it', async () => {
    proxy = await TestProxy.start(replica.port, {
      headers: (h) => {
        if (h['content-length'] !== undefined) delete h['last-modified'];
      },
    });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal(['validators']);
    expect(finding(run, 'validators')!.detail).to.include('without Last-Modified');
    expect(finding(run, 'validators')!.fix).to.include('Keep ETag, Expires and Last-Modified');
  });

  it('fails naming a second Content-Type added in front (nginx add_header), and says to remove it', async () => {
    proxy = await TestProxy.start(replica.port, {
      headers: (h) => {
        if (typeof h['content-type'] === 'string') {
          (h as Record<string, string | string[]>)['content-type'] = [h['content-type'], 'text/plain'];
        }
      },
    });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    const f = finding(run, 'msc4108.content-type')!;
    expect(f.status, shown(run)).to.equal('fail');
    expect(f.detail).to.include('"text/plain, text/plain"').and.include('two Content-Type headers');
    expect(f.fix).to.include('add_header Content-Type');
  });

  it('fails naming the 304 when a proxy adds Content-Type and a Content-Length to it', async () => {
    proxy = await TestProxy.start(replica.port, {
      headers: (h, status) => {
        if (status !== 304) return;
        h['content-type'] = 'application/octet-stream';
        h['content-length'] = '7';
      },
    });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal(['msc4108.not-modified', 'msc3886.not-modified']);
    for (const id of ['msc4108.not-modified', 'msc3886.not-modified']) {
      const f = finding(run, id)!;
      expect(f.detail, id).to.include('the 304 carries Content-Type: application/octet-stream and Content-Length: 7');
      expect(f.detail, id).to.include('wait for that many bytes').and.include('a proxy in front adds them');
      expect(f.fix, id).to.include('add_header Content-Length');
    }
  });

  it('takes a 304 with Content-Length: 0 and no Content-Type, which no client waits on', async () => {
    proxy = await TestProxy.start(replica.port, {
      headers: (h, status) => {
        if (status === 304) h['content-length'] = '0';
      },
    });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(0);
    expect(finding(run, 'msc4108.not-modified')?.status, shown(run)).to.equal('pass');
  });

  it('passes with a warning about ETags when a proxy gzips answers and weakens their ETags', async () => {
    proxy = await TestProxy.start(replica.port, { gzip: true });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(0);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal([]);
    const etag = finding(run, 'etag');
    expect(etag?.status, shown(run)).to.equal('warn');
    expect(etag!.detail).to.include('gzip-compressed');
    expect(etag!.fix).to.include('gzip off;');
  });

  it('counts a session as deleted when a DELETE landed but its answer was lost, and leaves none behind', async () => {
    const deletes = new Set<string>();
    // Each session's first DELETE reaches the server, and its answer is cut off on the way back.
    proxy = await TestProxy.start(replica.port, {
      dropAnswer: (req) => req.method === 'DELETE' && !deletes.has(req.url!) && deletes.add(req.url!) !== undefined,
    });
    const run = await runCheck([proxy.url, '--json']);
    expect(proxy.dropped, shown(run)).to.be.greaterThan(0);
    // The retries find each session gone (404 M_NOT_FOUND): nothing is reported left behind.
    expect(finding(run, 'cleanup'), shown(run)).to.equal(undefined);
    await expectNoSessionLeft(redis);
  });

  it('passes when a proxy blocks /metrics by closing the connection without an answer (nginx `return 444;`)', async () => {
    proxy = await TestProxy.start(replica.port, { dropAnswer: (req) => /^\/metrics/i.test(req.url ?? '') });
    const run = await runCheck([proxy.url, '--json']);
    expect(proxy.dropped, shown(run)).to.be.greaterThan(0);
    expect(finding(run, 'metrics.public')?.status, shown(run)).to.equal('pass');
    expect(finding(run, 'metrics.public')!.detail).to.include('no answer at all for /metrics');
    expect(run.code, shown(run)).to.equal(0);
  });

  it('says why sessions could not be deleted when every DELETE goes unanswered, without blaming the store', async () => {
    proxy = await TestProxy.start(replica.port, { dropAnswer: (req) => req.method === 'DELETE' });
    const run = await runCheck([proxy.url, '--json']);
    const cleanup = finding(run, 'cleanup');
    expect(cleanup?.status, shown(run)).to.equal('warn');
    expect(cleanup!.detail).to.include('(the last DELETE: no answer: ECONNRESET');
    expect(cleanup!.fix).to.equal(FIX.proxyError);
  });

  it('passes behind a homeserver that routes only the rendezvous paths to it and answers the rest itself', async () => {
    proxy = await TestProxy.start(replica.port, {
      routes: (target) => /^\/_matrix\/client\/[^/]+\/([^/]+\/)?rendezvous(\/|$|\?)/.test(target),
      unrouted: 'matrix',
    });
    const run = await runCheck([proxy.url, '--json']);
    // Its own Matrix 404 for `POST /` is put down to it, not judged as the server's answer.
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal([]);
    expect(run.code, shown(run)).to.equal(0);
    expect(finding(run, 'msc3886.root')?.status, shown(run)).to.equal('skip');
    expect(finding(run, 'cache-control')?.status, shown(run)).to.equal('pass');
  });

  it('passes (with a warning) behind a homeserver that routes only the ETag families to it', async () => {
    proxy = await TestProxy.start(replica.port, {
      routes: (target) =>
        ['/_matrix/client/unstable/org.matrix.msc4108/', '/_matrix/client/unstable/org.matrix.msc3886/'].some(
          (prefix) => target.startsWith(prefix) || `${target}/` === prefix,
        ),
    });
    const run = await runCheck([proxy.url, '--json']);
    // Its own 404 pages are no evidence against the server's headers, and MSC4388 has no preflight.
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal([]);
    expect(run.code, shown(run)).to.equal(0);
    expect(finding(run, 'msc4388.discovery')?.status, shown(run)).to.equal('warn');
    expect(finding(run, 'msc4108.long-poll')?.status, shown(run)).to.equal('pass');
  });

  it('reports the long-poll when a proxy holds each answer and forwards one request at a time', async function () {
    // Every held read waits out its hold (5 s) before the write behind it goes up: three families.
    this.timeout(90_000);
    proxy = await TestProxy.start(replica.port, { serialise: true });
    const run = await runCheck([proxy.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    for (const id of ['msc3886.long-poll', 'msc4108.long-poll', 'msc4388.long-poll']) {
      const f = finding(run, id);
      expect(f?.status, `${id}: ${shown(run)}`).to.equal('fail');
      expect(f!.detail).to.include('holds requests back while a long-poll is open');
      expect(f!.fix).to.include('proxy_buffering off;');
    }
    expect(finding(run, 'store.shared')?.status).to.equal('pass');
  });
});

describe('rendezvous-server check --full-wait against a proxy read timeout shorter than the longest wait', () => {
  const own = replicaOnItsOwnRedis({ RZ_LONGPOLL_MAX_WAIT_SECONDS: '3' });
  let proxy: TestProxy;
  before(async () => {
    // Long enough for every step a write wakes, shorter than the server's 3 s wait.
    proxy = await TestProxy.start(own.replica.port, { readTimeoutMs: 1500 });
  });
  after(async () => {
    await proxy?.stop();
  });

  it("passes without the proxy, having held the read for the server's whole wait", async function () {
    this.timeout(30_000);
    const run = await runCheck([own.replica.url, '--json', '--full-wait']);
    const f = finding(run, 'long-poll.full-wait');
    expect(f?.status, shown(run)).to.equal('pass');
    expect(f!.detail).to.include('(3 s)');
  });

  it('fails naming the proxy timeout behind it (exit 1); without --full-wait says it was not checked', async function () {
    this.timeout(30_000);
    const run = await runCheck([proxy.url, '--json', '--full-wait']);
    expect(run.code, shown(run)).to.equal(1);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal(['long-poll.full-wait']);
    const f = finding(run, 'long-poll.full-wait')!;
    expect(f.detail).to.include('a proxy ended the held read with 504');
    expect(f.fix).to.equal(FIX.longPollTimeout);
    await expectNoSessionLeft(own.redis);
    const quick = await runCheck([proxy.url, '--json']);
    expect(quick.code, shown(quick)).to.equal(0);
    expect(finding(quick, 'long-poll.full-wait')?.status).to.equal('skip');
    expect(finding(quick, 'long-poll.full-wait')?.detail).to.include('--full-wait');
  });
});

describe('rendezvous-server check against a server with MSC4388 turned off', () => {
  const own = replicaOnItsOwnRedis({ RZ_MSC4388_ENABLED: 'false' });

  it('skips that family with a note and passes the rest', async () => {
    const run = await runCheck([own.replica.url, '--json']);
    expect(run.code, shown(run)).to.equal(0);
    expect(finding(run, 'msc4388')?.status).to.equal('skip');
    expect(finding(run, 'msc4388')!.detail).to.include('RZ_MSC4388_ENABLED=false');
    expect(run.json!.findings.filter((f) => f.id.startsWith('msc4388.'))).to.deep.equal([]);
    expect(finding(run, 'msc4108.long-poll')?.status).to.equal('pass');
  });
});

describe('rendezvous-server check against a server with a small create budget (RZ_CREATE_RATE)', () => {
  // Two runs' worth: a run creates 7 sessions (one per family, 4 for the shared store).
  const own = replicaOnItsOwnRedis({ RZ_CREATE_RATE: '14' });

  it('fits two runs in a minute, and says plainly that a third was rate limited, which limit, and when to run again', async function () {
    this.timeout(60_000);
    // The create budget is a clock-aligned minute: all three runs must fall in one.
    await roomInWindow(60_000, 25_000);
    for (const n of [1, 2]) {
      const run = await runCheck([own.replica.url, '--json']);
      expect(run.code, `run ${n}: ${shown(run)}`).to.equal(0);
      expect(finding(run, 'store.shared')?.status, `run ${n}`).to.equal('pass');
    }
    const run = await runCheck([own.replica.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    // One failure, the limit; nothing taken for a protocol or proxy failure.
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal(['rate-limit']);
    const limited = finding(run, 'rate-limit')!;
    expect(limited.detail).to.include('RATE LIMITED').and.include('429 M_LIMIT_EXCEEDED');
    expect(limited.detail)
      .to.include('RZ_CREATE_RATE')
      .and.match(/run the check again in \d+ s \(at \d\d:\d\d:\d\d UTC/);
    // The steps it did not get to are there, skipped, saying why.
    const skipped = run.json!.findings.filter((f) => f.status === 'skip');
    for (const id of ['msc4108.read', 'msc4108.long-poll', 'msc3886.create', 'store.shared', 'metrics.public']) {
      const f = skipped.find((s) => s.id === id);
      expect(f?.detail, `${id}: ${shown(run)}`).to.include('rate limited');
    }
    await expectNoSessionLeft(own.redis);
    // The text report counts them.
    const text = await runCheck([own.replica.url]);
    expect(text.code).to.equal(1);
    expect(text.stdout).to.match(/^FAIL {2}rate-limit /m);
    expect(text.stdout).to.match(/\d+ passed, \d+ warnings, 1 failed, [1-9]\d* skipped in [\d.]+ s\n$/);
  });
});

describe('rendezvous-server check against a server with a small request budget (RZ_REQUEST_RATE)', () => {
  // 50 requests per 10 s: less than one run sends.
  const own = replicaOnItsOwnRedis({ RZ_REQUEST_RATE: '5' });

  it('names the request budget in the finding and in its fix, not the create budget', async () => {
    const run = await runCheck([own.replica.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    const limited = finding(run, 'rate-limit')!;
    expect(limited.detail, shown(run)).to.include('RZ_REQUEST_RATE');
    expect(limited.fix).to.include('RZ_REQUEST_RATE').and.include('about 115 requests');
  });
});

describe('rendezvous-server check against a server whose per-address session cap is full', () => {
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({ RZ_MAX_SESSIONS_PER_ADDRESS: '1' });
  });
  after(async () => {
    await replica?.stop();
  });

  it('says what the server refused (a cap, not the create rate), rather than take the root for a homeserver', async () => {
    const res = await fetch(`${replica.url}/`, { method: 'POST', body: 'x' });
    expect(res.status).to.equal(200);
    const run = await runCheck([replica.url, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    expect(idsWith(run, 'fail'), shown(run)).to.deep.equal(['rate-limit']);
    expect(finding(run, 'msc3886.root'), shown(run)).to.equal(undefined);
    const limited = finding(run, 'rate-limit')!;
    expect(limited.detail).to.include('RZ_MAX_SESSIONS_PER_ADDRESS').and.not.include('RZ_CREATE_RATE');
    expect(finding(run, 'msc4108.create')?.status).to.equal('skip');
  });
});

describe('rendezvous-server check: steps it could not get to', () => {
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({ RZ_METRICS_PORT: '0' });
  });
  after(async () => {
    await replica?.stop();
  });

  it('reports each as skipped, with why, and counts them in the summary', async () => {
    // A path under the URL: no family creates, so their later steps cannot run.
    const run = await runCheck([`${replica.url}/rendezvous`, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    for (const id of ['msc4108.read', 'msc4108.not-modified', 'msc4108.long-poll', 'msc3886.delete', 'expiry']) {
      expect(finding(run, id)?.status, `${id}: ${shown(run)}`).to.equal('skip');
      expect(finding(run, id)?.detail, id).to.match(/^not checked: /);
    }
    const counts = (run.json as unknown as { counts: Record<string, number> }).counts;
    expect(counts.skip).to.equal(idsWith(run, 'skip').length).and.to.be.greaterThan(5);
  });
});

describe('rendezvous-server check against a replica serving /metrics on its main port', () => {
  let redis: RedisServer;
  let replica: Replica;
  before(async () => {
    redis = await RedisServer.start();
    replica = await Replica.start({ REDIS_URL: redis.url, RZ_CREATE_RATE: '0' });
  });
  after(async () => {
    await replica?.stop();
    await redis?.destroy();
  });

  it('fails on the public metrics, or warns of them with --metrics-here (an in-cluster Service)', async () => {
    const plain = await runCheck([replica.url, '--json']);
    expect(plain.code, shown(plain)).to.equal(1);
    expect(finding(plain, 'metrics.public')?.status).to.equal('fail');
    const here = await runCheck([replica.url, '--json', '--metrics-here']);
    expect(here.code, shown(here)).to.equal(0);
    expect(finding(here, 'metrics.public')?.status).to.equal('warn');
  });

  it('does not blame RZ_MSC4388_ENABLED when the URL is wrong (nothing is served under it)', async () => {
    const run = await runCheck([`${replica.url}/rendezvous`, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    expect(finding(run, 'msc4388')?.detail).to.include('no other family was served at this URL');
    expect(finding(run, 'msc4388')?.detail).to.not.include('RZ_MSC4388_ENABLED');
    // The families that answered 404 there name the URL's path as a likely cause.
    for (const id of ['msc4108.create', 'msc3886.create']) {
      expect(finding(run, id)?.status, id).to.equal('fail');
      expect(finding(run, id)?.detail, id).to.include('the URL has the path /rendezvous');
    }
  });
});

describe('rendezvous-server check against a URL that redirects (http:// to https://)', () => {
  let server: http.Server;
  let base: string;
  before(async () => {
    // What a TLS-only site answers on its plain-HTTP port, for every path and method.
    server = http.createServer((req, res) => {
      req.resume();
      res
        .writeHead(301, { Location: `https://rendezvous.example.org${req.url}`, 'Content-Type': 'text/html' })
        .end('<html><head><title>301 Moved Permanently</title></head></html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('names the redirect and where it goes, and takes its headers for no evidence about the server', async () => {
    const run = await runCheck([base, '--json']);
    expect(run.code, shown(run)).to.equal(1);
    const create = finding(run, 'msc4108.create');
    expect(create?.status, shown(run)).to.equal('fail');
    expect(create!.detail).to.include(
      '301 redirect to https://rendezvous.example.org/_matrix/client/unstable/org.matrix.msc4108/rendezvous',
    );
    expect(create!.fix).to.include('the redirect points at');
    // The preflight met the same redirect: the URL is to fix, not the proxy's OPTIONS handling.
    const preflight = finding(run, 'cors.preflight');
    expect(preflight?.detail, shown(run)).to.include('301 redirect to https://rendezvous.example.org/');
    expect(preflight!.fix).to.equal(FIX.redirect);
    // The redirect's own missing Cache-Control and CORS headers say nothing about the server's:
    // those checks are skipped, not failed.
    expect(finding(run, 'cache-control')?.status, shown(run)).to.equal('skip');
    expect(finding(run, 'cors.headers')?.status, shown(run)).to.equal('skip');
  });
});

describe('rendezvous-server check against a URL without the rendezvous endpoint', () => {
  // What a Matrix server without the endpoint answers, or any web server's own not-found page.
  const answers = {
    'a Matrix 404 M_NOT_FOUND': ['application/json', '{"errcode":"M_NOT_FOUND","error":"Not found"}'],
    "a web server's 404 page": ['text/html', '<html><body>404 Not Found</body></html>'],
  } as const;
  for (const [what, [type, body]] of Object.entries(answers)) {
    let server: http.Server;
    let base: string;
    before(async () => {
      server = http.createServer((req, res) => {
        req.resume();
        res.writeHead(404, { 'Content-Type': type }).end(body);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    it(`says the endpoint was not found at the URL asked, and to check the base URL (${what})`, async () => {
      const run = await runCheck([base, '--json']);
      expect(run.code, shown(run)).to.equal(1);
      const create = finding(run, 'msc4108.create');
      expect(create?.status, shown(run)).to.equal('fail');
      expect(create!.detail).to.include(`the rendezvous endpoint was not found at ${base}${PATHS.msc4108}`);
      expect(create!.detail).to.include('check the base URL and its path prefix');
      expect(create!.fix).to.equal(FIX.notFound);
      // Nothing the check created was looked for: no store, and no replica, is to blame.
      expect(create!.detail).to.not.include('store');
    });
  }
});

describe('rendezvous-server check against an MSC4388 create answered with an id but a field missing', () => {
  let server: http.Server;
  let base: string;
  let created: Record<string, unknown>;
  const deleted: string[] = [];
  before(async () => {
    // Speaks only MSC4388, and only so far: discovery, and a create whose answer lacks a field.
    server = http.createServer((req, res) => {
      req.resume();
      const json = (status: number, body: unknown) =>
        res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
      const path = (req.url ?? '').split('?')[0]!;
      if (path === PATHS.msc4388 && req.method === 'GET') json(200, { create_available: true });
      else if (path === PATHS.msc4388 && req.method === 'POST') json(200, created);
      else if (path.startsWith(`${PATHS.msc4388}/`) && req.method === 'DELETE') {
        deleted.push(path.slice(PATHS.msc4388.length + 1));
        json(200, {});
      } else json(404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  for (const [lacking, body, said] of [
    ['no expires_in_ms', { id: 'leaky-1', sequence_token: 't1' }, 'no expires_in_ms'],
    ['no sequence_token', { id: 'leaky-2', expires_in_ms: 180_000 }, 'no sequence_token'],
    [
      'a sequence_token that is no string',
      { id: 'leaky-3', sequence_token: 7, expires_in_ms: 180_000 },
      'a malformed sequence_token (7)',
    ],
  ] as const) {
    it(`reports a create answered with ${lacking}, and deletes the session it made`, async () => {
      created = body;
      deleted.length = 0;
      const run = await runCheck([base, '--json']);
      const create = finding(run, 'msc4388.create');
      expect(create?.status, shown(run)).to.equal('fail');
      expect(create!.detail).to.include(`200 with a session (id ${body.id}) but ${said}`);
      expect(create!.detail).to.not.include('not the rendezvous server');
      expect(deleted, shown(run)).to.deep.equal([body.id]);
      expect(finding(run, 'cleanup'), shown(run)).to.equal(undefined);
    });
  }
});

describe("rendezvous-server check's HTTP client", () => {
  let server: http.Server;
  let base: string;
  let client: HttpClient;
  const zeros = Buffer.alloc(16 * 1024 * 1024);
  before(async () => {
    const gzipped = zlib.gzipSync(zeros);
    server = http.createServer((req, res) => {
      if (req.url === '/trickle') {
        // Headers at once, then a byte now and then, for ever: never idle, never done.
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const drip = setInterval(() => res.write(' '), 20);
        res.on('close', () => clearInterval(drip));
      } else if (req.url === '/plain') {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.end(zeros);
      } else {
        // 16 KiB on the wire that inflate to 16 MiB.
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' });
        res.end(gzipped);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new HttpClient();
  });
  after(async () => {
    client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('gives up on an answer whose body trickles in for longer than its timeout', async () => {
    // Each byte comes well within the timeout: only a deadline for the whole answer ends it.
    const impatient = new HttpClient(200);
    const trickled = await impatient
      .request({ url: `${base}/trickle` })
      .then(
        () => 'answered',
        (err: Error) => err.message,
      )
      .finally(() => impatient.close());
    expect(trickled).to.equal('no answer within 0.2 s');
  });

  it('takes no answer body larger than a rendezvous server could send, compressed or not', async () => {
    const plain = await client.request({ url: `${base}/plain` }).then(
      () => 'answered',
      (err: Error) => err.message,
    );
    expect(plain).to.match(/larger than 8 MiB/);
    const inflated = await client.request({ url: `${base}/gzip` }).then(
      () => 'answered',
      (err: Error) => err.message,
    );
    expect(inflated).to.match(/larger than 8 MiB once decoded \(gzip\)/);
  });
});

describe("rendezvous-server check's finding on the session URLs handed out", () => {
  const publicUrlFinding = (base: string, handedOut: string): Finding => {
    const report = new Report();
    const path = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous/abc';
    const fam = { family: 'msc4108', name: 'MSC4108' } as EtagFamily;
    const session = { url: base + path, publicUrl: handedOut + path } as EtagSession;
    checkPublicUrl({ base, report } as CheckContext, fam, session);
    return report.findings[0]!;
  };

  it('passes URLs under the URL checked', () => {
    expect(publicUrlFinding('https://rz.example.org', 'https://rz.example.org').status).to.equal('pass');
  });

  it('only warns of another host, which may be how clients reach it (checked from inside a cluster)', () => {
    expect(publicUrlFinding('http://rz.rendezvous.svc', 'https://rz.example.org').status).to.equal('warn');
    expect(publicUrlFinding('http://127.0.0.1:8080', 'http://localhost:8080').status).to.equal('warn');
  });

  it('fails the public host over plain http, the public host with another port, or an internal address', () => {
    for (const [base, handedOut, says] of [
      ['https://matrix.example.org', 'http://matrix.example.org', 'http:// instead of https://'],
      ['https://matrix.example.org', 'https://matrix.example.org:8080', 'port 8080'],
      ['https://matrix.example.org', 'http://matrix.example.org:8080', 'http:// instead of https://'],
      ['https://matrix.example.org', 'http://10.0.0.11:8080', 'internal address'],
      ['https://matrix.example.org', 'https://rendezvous-1', 'internal address'],
      ['https://matrix.example.org', 'http://[fd00::11]:8080', 'internal address'],
    ] as const) {
      const f = publicUrlFinding(base, handedOut);
      expect(f.status, handedOut).to.equal('fail');
      expect(f.detail, handedOut).to.include(says);
      expect(f.fix, handedOut).to.equal(FIX.publicUrl);
    }
  });

  it('only warns where the URL checked may itself be the inside one, naming what differs', () => {
    // The plain-http side of a site whose clients use https; a replica's own port; an internal name.
    expect(publicUrlFinding('http://matrix.example.org', 'https://matrix.example.org').detail).to.include(
      'https:// instead of http://',
    );
    for (const [base, handedOut] of [
      ['http://matrix.example.org', 'https://matrix.example.org'],
      ['http://10.0.0.5:8080', 'http://10.0.0.5'],
      ['http://rendezvous:8080', 'http://10.0.0.11:8080'],
      ['http://10.0.0.5:8080', 'https://matrix.example.org'],
    ] as const) {
      expect(publicUrlFinding(base, handedOut).status, `${base} ${handedOut}`).to.equal('warn');
    }
  });

  it('takes a host name that only starts like a loopback address for another host', () => {
    expect(publicUrlFinding('https://rz.example.org', 'https://127.rz.example.org').status).to.equal('warn');
  });

  it('fails a loopback URL handed out at a URL other devices use (RZ_PUBLIC_BASE_URL left at its default)', () => {
    for (const handedOut of ['http://localhost:8080', 'http://127.0.0.1:8080', 'http://[::1]:8080']) {
      const f = publicUrlFinding('https://rz.example.org', handedOut);
      expect(f.status, handedOut).to.equal('fail');
      expect(f.detail, handedOut).to.include('no other device can reach').and.include('RZ_PUBLIC_BASE_URL');
      expect(f.fix, handedOut).to.equal(FIX.publicUrl);
    }
  });
});
