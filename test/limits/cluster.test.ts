import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { Metrics } from '../../src/metrics';
import { createSession } from '../../src/protocols/create';
import { RedisStore } from '../../src/store';
import { CappedStore } from '../../src/limits/capped-store';
import { RedisCaps } from '../../src/limits/caps-redis';
import { SessionCapError } from '../../src/limits/errors';
import { RedisServer } from '../helpers/redis';
import { freePort } from '../helpers/ports';

const run = promisify(execFile);

/** Three masters, no replicas: enough to spread slots so a cross-slot script would be refused. */
async function startCluster(): Promise<RedisServer[]> {
  const nodes = await Promise.all(
    [0, 1, 2].map(async () =>
      // The bus port defaults to port + 10000, which is out of range for ports above 55535.
      RedisServer.start([
        '--cluster-enabled',
        'yes',
        '--cluster-node-timeout',
        '2000',
        '--cluster-port',
        String(await freePort()),
      ]),
    ),
  );
  await run('redis-cli', [
    '--cluster',
    'create',
    ...nodes.map((n) => `127.0.0.1:${n.port}`),
    '--cluster-replicas',
    '0',
    '--cluster-yes',
  ]);
  return nodes;
}

async function clusterReady(nodes: RedisServer[]): Promise<Cluster> {
  const client = new Cluster(
    nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    { enableAutoPipelining: true, clusterRetryStrategy: () => 100 },
  );
  // `cluster create` returns before every node agrees; ask until the cluster says it is ok.
  for (;;) {
    const info = await client.cluster('INFO').catch(() => '');
    if (String(info).includes('cluster_state:ok')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return client;
}

describe('limits on a Redis Cluster (no cross-slot scripts)', function () {
  this.timeout(60_000);
  let nodes: RedisServer[] = [];
  let clients: Cluster[] = [];

  before(async () => {
    nodes = await startCluster();
    clients = [await clusterReady(nodes), await clusterReady(nodes)];
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(nodes.map((n) => n.destroy()));
  });

  it('holds both session caps exactly under 200 racing creates through two cluster clients', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const caps = { global: 30, perAddress: 10 };
    const stores = clients.map((c) => new CappedStore(new RedisStore(c), new RedisCaps(c, caps), metrics));
    const owners = ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'];
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        createSession(stores[i % 2]!, {
          family: 'msc3886',
          contentType: 'text/plain',
          data: Buffer.from(`s${i}`),
          ttlMs: 60_000,
          owner: owners[i % 4]!,
        }).then(
          (meta) => ({ i, id: meta.id }),
          (err: unknown) => {
            expect(err).to.be.instanceOf(SessionCapError);
            return { i, id: undefined };
          },
        ),
      ),
    );
    const created = results.filter((r) => r.id !== undefined);
    expect(created.length).to.equal(30);
    for (let k = 0; k < 4; k++) expect(created.filter((r) => r.i % 4 === k).length).to.be.at.most(10);
  });

  it('frees the address slot of a session deleted through the other cluster client', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const caps = { global: 0, perAddress: 2 };
    const [a, b] = clients.map((c) => new CappedStore(new RedisStore(c), new RedisCaps(c, caps), metrics));
    const create = () =>
      createSession(a!, {
        family: 'msc3886',
        contentType: 'text/plain',
        data: Buffer.alloc(0),
        ttlMs: 60_000,
        owner: '203.0.113.50',
      });
    const first = await create();
    await create();
    let refused: unknown;
    await create().catch((err: unknown) => (refused = err));
    expect(refused).to.be.instanceOf(SessionCapError);
    expect(await b!.delete(first.id, 'msc3886')).to.equal(true);
    expect((await create()).id).to.be.a('string');
  });

  it('spends one rate budget from two cluster clients', async () => {
    const limiters = clients.map(
      (c) => new RateLimiterRedis({ storeClient: c, points: 50, duration: 60, keyPrefix: 'rz:rl:request' }),
    );
    const outcomes = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        limiters[i % 2]!.consume('198.51.100.1').then(
          () => true,
          () => false,
        ),
      ),
    );
    expect(outcomes.filter(Boolean).length).to.equal(50);
  });
});
