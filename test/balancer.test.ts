import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Balancer } from './helpers/balancer';
import { freePort } from './helpers/ports';
import { TestProxy } from './helpers/proxy';
import { until } from './helpers/topologies';
import { everyFamilyExchange, msc3886Exchange, req } from './helpers/exchange';
import { Scrape } from './helpers/metrics';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { json, send } from './helpers/send';
import { roomInWindow } from './helpers/windows';

/** An MSC3886 create from `localAddress`, claiming `claimed` in X-Forwarded-For if given. */
function create(port: number, localAddress: string, claimed?: string) {
  return send(port, {
    method: 'POST',
    path: '/',
    body: 'x',
    localAddress,
    headers: claimed === undefined ? {} : { 'X-Forwarded-For': claimed },
  });
}

describe('load-balanced topology (the compose stack, natively: nginx, 3 replicas, 1 Redis)', () => {
  let redis: RedisServer;
  let replicas: Replica[] = [];
  let lb: Balancer;

  before(async () => {
    redis = await RedisServer.start();
    // The balancer's port is only known once it runs; the replicas only need it for absolute URLs.
    replicas = await Promise.all(
      [1, 2, 3].map(() =>
        Replica.start({
          REDIS_URL: redis.url,
          RZ_PUBLIC_BASE_URL: 'http://rendezvous.test',
          RZ_TRUSTED_PROXIES: '127.0.0.1',
        }),
      ),
    );
    lb = await Balancer.start(replicas.map((r) => r.port));
  });
  after(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  it('runs full exchanges of every family through the balancer, spread over all three replicas', async () => {
    for (let i = 0; i < 3; i++) await everyFamilyExchange(lb.url);
    const served = await Promise.all(
      replicas.map(async (r) => (await Scrape.of(`${r.url}/metrics`)).value('rendezvous_sessions_created_total')),
    );
    const requests = await Promise.all(
      replicas.map(async (r) =>
        (await Scrape.of(`${r.url}/metrics`)).value('rendezvous_http_requests_total', { family: 'msc3886' }),
      ),
    );
    expect(served.reduce((a, b) => a + b)).to.equal(9);
    for (const n of requests) expect(n).to.be.greaterThan(0);
  });

  it('hides /metrics from the public side in every spelling, even from replicas that serve it on their main port', async () => {
    // These replicas serve /metrics on the balanced port (no RZ_METRICS_PORT), and their router
    // ignores case and a trailing slash: only the balancer stands in the way.
    expect((await req(`${replicas[1]!.url}/METRICS/`)).status).to.equal(200);
    for (const path of ['/metrics', '/metrics/', '/METRICS', '/Metrics', '/mEtRiCs/']) {
      const res = await req(`${lb.url}${path}`);
      expect(res.status, path).to.equal(404);
      expect(await res.text(), path).to.not.include('rendezvous_');
    }
  });

  it('keeps serving while one replica shuts down (rolling update)', async () => {
    expect(await replicas[0]!.stop('SIGTERM')).to.equal(0);
    for (let i = 0; i < 2; i++) await msc3886Exchange(lb.url);
  });
});

describe('load balancer headers (the same nginx config in front of a header echo)', () => {
  let echo: http.Server;
  let lb: Balancer;
  let seen: http.IncomingHttpHeaders[] = [];
  before(async () => {
    echo = http.createServer((request, response) => {
      seen.push(request.headers);
      response.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    lb = await Balancer.start([(echo.address() as AddressInfo).port]);
  });
  after(async () => {
    await lb?.stop();
    echo?.closeAllConnections();
    await new Promise((resolve) => echo?.close(resolve));
  });

  it('sets X-Forwarded-For to the client it saw, ignoring a spoofed one, and passes a request id', async () => {
    seen = [];
    await req(`${lb.url}/abc`, { headers: { 'X-Forwarded-For': '203.0.113.9', Host: 'rendezvous.example' } });
    await req(`${lb.url}/abc`, { headers: { 'X-Request-Id': 'from-the-edge-1' } });
    expect(seen).to.have.length(2);
    const [first, second] = seen as [http.IncomingHttpHeaders, http.IncomingHttpHeaders];
    expect(first['x-forwarded-for']).to.equal('127.0.0.1');
    expect(first['x-real-ip']).to.equal('127.0.0.1');
    expect(first['x-forwarded-proto']).to.equal('http');
    expect(first['x-request-id']).to.match(/^[0-9a-f]{32}$/);
    expect(second['x-request-id']).to.equal('from-the-edge-1');
  });
});

describe('client addresses behind the balancer (X-Forwarded-For trusted from it only)', () => {
  let redis: RedisServer;
  let replicas: Replica[] = [];
  let lb: Balancer;
  before(async () => {
    redis = await RedisServer.start();
    // Two creates a minute per client: small enough to see whose budget each create spends.
    replicas = await Promise.all(
      [1, 2].map(() => Replica.start({ REDIS_URL: redis.url, RZ_TRUSTED_PROXIES: '127.0.0.1', RZ_CREATE_RATE: '2' })),
    );
    lb = await Balancer.start(replicas.map((r) => r.port));
  });
  after(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  it('counts each client by the address the balancer saw, whatever the client claims', async () => {
    await roomInWindow(60_000, 10_000);
    // Client A spends its budget over both replicas, then is refused even when it claims another address.
    expect((await create(lb.port, '127.0.0.2')).status).to.equal(200);
    expect((await create(lb.port, '127.0.0.2')).status).to.equal(200);
    const refused = await create(lb.port, '127.0.0.2', '198.51.100.7');
    expect(refused.status).to.equal(429);
    expect(json(refused).errcode).to.equal('M_LIMIT_EXCEEDED');
    // Client B has its own budget: the replicas believed the balancer's header.
    expect((await create(lb.port, '127.0.0.3')).status).to.equal(200);
    // Straight to a replica, A's own header is not believed either.
    expect((await create(replicas[0]!.port, '127.0.0.2', '198.51.100.8')).status).to.equal(429);
  });
});

describe('balancer with a replica missing at start, then recreated', () => {
  let redis: RedisServer;
  const replicas: Replica[] = [];
  let lb: Balancer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  it('starts and serves without it, and sends it traffic once it is back', async () => {
    replicas.push(await Replica.start({ REDIS_URL: redis.url, RZ_TRUSTED_PROXIES: '127.0.0.1' }));
    const missing = await freePort();
    lb = await Balancer.start([missing, replicas[0]!.port]);
    for (let i = 0; i < 3; i++) await msc3886Exchange(lb.url);

    const back = await Replica.start({ REDIS_URL: redis.url, RZ_TRUSTED_PROXIES: '127.0.0.1', PORT: String(missing) });
    replicas.push(back);
    // nginx tries a peer that failed again once its fail_timeout has passed: wait for that.
    await until(
      'the recreated replica to get traffic through the balancer',
      async () => {
        await msc3886Exchange(lb.url);
        const scrape = await Scrape.of(`${back.url}/metrics`);
        return scrape.value('rendezvous_http_requests_total', { family: 'msc3886' }) > 0;
      },
      20_000,
    );
  });
});

describe('balancer behind an outer TLS proxy (RZ_LB_TRUSTED_PROXIES)', () => {
  const OUTER = '127.0.0.5';
  let redis: RedisServer;
  let replicas: Replica[] = [];
  let balancers: Balancer[] = [];
  let proxies: TestProxy[] = [];
  before(async () => {
    redis = await RedisServer.start();
    // Two creates a minute per client: small enough to see whose budget each create spends.
    replicas = await Promise.all(
      [1, 2].map(() => Replica.start({ REDIS_URL: redis.url, RZ_TRUSTED_PROXIES: '127.0.0.1', RZ_CREATE_RATE: '2' })),
    );
  });
  afterEach(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await Promise.all(balancers.map((b) => b.stop()));
    proxies = [];
    balancers = [];
    const admin = redis.client();
    await admin.flushall();
    await admin.quit();
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  /** A balancer, and an outer proxy in front of it that connects from OUTER and appends X-Forwarded-For. */
  async function stack(trustedProxies?: string): Promise<{ lb: Balancer; outer: TestProxy }> {
    const lb = await Balancer.start(
      replicas.map((r) => r.port),
      trustedProxies === undefined ? {} : { trustedProxies },
    );
    balancers.push(lb);
    const outer = await TestProxy.start(lb.port, { forwardedFor: true, localAddress: OUTER });
    proxies.push(outer);
    return { lb, outer };
  }

  it('counts each client behind the trusted outer proxy as itself', async () => {
    const { lb, outer } = await stack(`${OUTER},192.0.2.0/24`);
    await roomInWindow(60_000, 10_000);
    expect((await create(outer.port, '127.0.0.2')).status).to.equal(200);
    expect((await create(outer.port, '127.0.0.2')).status).to.equal(200);
    // Client A's budget is spent, whatever address it claims to the outer proxy.
    const refused = await create(outer.port, '127.0.0.2', '127.0.0.9');
    expect(refused.status).to.equal(429);
    expect(json(refused).errcode).to.equal('M_LIMIT_EXCEEDED');
    // Client B, through the same proxy, has a budget of its own.
    expect((await create(outer.port, '127.0.0.3')).status).to.equal(200);
    // A client reaching the balancer directly is not a trusted proxy: its header is not believed.
    expect((await create(lb.port, '127.0.0.2', '127.0.0.7')).status).to.equal(429);
  });

  it('trusts nobody by default: every client behind the outer proxy shares its budget', async () => {
    const { outer } = await stack();
    await roomInWindow(60_000, 10_000);
    expect((await create(outer.port, '127.0.0.2')).status).to.equal(200);
    expect((await create(outer.port, '127.0.0.2')).status).to.equal(200);
    expect((await create(outer.port, '127.0.0.3')).status).to.equal(429);
  });

  it('refuses a setting that is not a list of addresses, naming the entry', async () => {
    const failed = await Balancer.start(
      replicas.map((r) => r.port),
      { trustedProxies: '10.0.0.1,proxy.example.org' },
    ).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(failed?.message).to.include('not an IP address or CIDR range: proxy.example.org');
  });
});

describe('balancer re-sending a write whose replica wrote it and dropped the connection', () => {
  let redis: RedisServer;
  let replicas: Replica[];
  let dropper: TestProxy;
  let lb: Balancer;
  before(async () => {
    redis = await RedisServer.start();
    replicas = await Promise.all([1, 2].map(() => Replica.start({ REDIS_URL: redis.url })));
    // In front of the first replica: every PUT is written there, and its answer never comes back.
    dropper = await TestProxy.start(replicas[0]!.port, { dropAnswer: (r) => r.method === 'PUT' });
  });
  // A balancer of its own per test: after a failure nginx leaves that upstream alone for a while.
  beforeEach(async () => {
    lb = await Balancer.start([dropper.port, replicas[1]!.port]);
  });
  afterEach(async () => {
    await lb?.stop();
  });
  after(async () => {
    await dropper?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  for (const [family, create] of [
    [
      'MSC3886',
      (base: string) => req(`${base}/`, { method: 'POST', body: 'v1', headers: { 'Content-Type': 'text/plain' } }),
    ],
    [
      'MSC4108',
      (base: string) =>
        req(`${base}/_matrix/client/unstable/org.matrix.msc4108/rendezvous`, {
          method: 'POST',
          headers: { 'Content-Type': 'text/plain' },
        }),
    ],
  ] as const) {
    it(`answers the client 202 for its own ${family} write, which landed once`, async () => {
      // Round robin: the PUT may go to the healthy replica first; the next one goes to the dropper.
      for (let attempt = 0; attempt < 4; attempt++) {
        const created = await create(replicas[1]!.url);
        const body = (await created.json()) as { id?: string; url?: string };
        const path = body.id !== undefined ? `/${body.id}` : new URL(body.url!).pathname;
        const dropped = dropper.dropped;
        const put = await req(`${lb.url}${path}`, {
          method: 'PUT',
          body: 'v2',
          headers: { 'Content-Type': 'text/plain', 'If-Match': created.headers.get('ETag')! },
        });
        expect(put.status).to.equal(202);
        if (dropper.dropped === dropped) continue;
        // nginx sent it again to the other replica, after the first had written it: one write only.
        const now = await req(`${replicas[1]!.url}${path}`);
        expect(await now.text()).to.equal('v2');
        expect(now.headers.get('ETag')).to.equal(put.headers.get('ETag'));
        expect(now.headers.get('ETag')).to.match(/\.2"$/);
        return;
      }
      expect.fail('no PUT went to the replica that drops its answers');
    });
  }
});
