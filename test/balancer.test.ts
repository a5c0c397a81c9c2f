import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Balancer } from './helpers/balancer';
import { everyFamilyExchange, msc3886Exchange, req } from './helpers/exchange';
import { Scrape } from './helpers/metrics';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { json, send } from './helpers/send';

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

  it('hides /metrics from the public side', async () => {
    expect((await req(`${lb.url}/metrics`)).status).to.equal(404);
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
    const create = (port: number, localAddress: string, claimed?: string) =>
      send(port, {
        method: 'POST',
        path: '/',
        body: 'x',
        localAddress,
        headers: claimed === undefined ? {} : { 'X-Forwarded-For': claimed },
      });
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
