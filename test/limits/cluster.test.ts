import { expect } from 'chai';
import { Cluster } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { Metrics } from '../../src/metrics';
import { createSession } from '../../src/protocols/create';
import { RedisStore } from '../../src/store';
import { CappedStore } from '../../src/limits/capped-store';
import { RedisCaps } from '../../src/limits/caps-redis';
import { SessionCapError } from '../../src/limits/errors';
import { ClusterSetup } from '../helpers/topologies';

describe('limits on a Redis Cluster (no cross-slot scripts)', function () {
  this.timeout(60_000);
  // Its own cluster (not the shared one): these tests count every member of the caps' sorted sets.
  let cluster: ClusterSetup | undefined;
  let clients: Cluster[] = [];

  before(async () => {
    cluster = await ClusterSetup.start();
    clients = [cluster.client(), cluster.client()];
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.destroy();
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
