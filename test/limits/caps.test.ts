import { expect } from 'chai';
import http from 'node:http';
import type { RunningServer } from '../../src/main';
import { RedisServer } from '../helpers/redis';
import { inParallel, json, send } from '../helpers/send';
import { startServer } from '../helpers/server';
import { sharedClusterSetup, until } from '../helpers/topologies';
import { CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_DETAILS_KEY, CAPS_JOURNAL_KEY, CAPS_KEY } from '../../src/store/format';

interface Backend {
  name: string;
  /** Replicas to spread the racing creates over (two sharing Redis, or the one in-memory server). */
  start(env: Record<string, string>): Promise<RunningServer[]>;
}

let redis: RedisServer | undefined;

const BACKENDS: Backend[] = [
  { name: 'memory', start: async (env) => [await startServer(env)] },
  {
    name: 'redis, two replicas',
    start: async (env) => {
      // Each suite gets an empty Redis: caps are global by design.
      await redis?.destroy();
      redis = await RedisServer.start();
      return Promise.all([
        startServer({ ...env, REDIS_URL: redis.url }),
        startServer({ ...env, REDIS_URL: redis.url }),
      ]);
    },
  },
  {
    name: 'redis cluster of 3 masters, two replicas',
    start: async (env) => {
      const setup = await sharedClusterSetup();
      // The caps count every session in the store: start each suite from none.
      const client = setup.client();
      try {
        await client.del(CAPS_KEY, CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_KEY, CAPS_JOURNAL_DETAILS_KEY);
      } finally {
        client.disconnect();
      }
      const replicas = await Promise.all([
        startServer({ ...env, ...setup.env }),
        startServer({ ...env, ...setup.env }),
      ]);
      // A Cluster client can take a while to learn the slot map on a busy machine: until then, 503s.
      for (const replica of replicas) {
        await until('the replica to reach the cluster', async () => {
          const ready = await send(replica.port, { path: '/ready' });
          return (json(ready) as { storeReachable?: boolean }).storeReachable === true;
        });
      }
      return replicas;
    },
  },
];

after(async () => {
  await redis?.destroy();
});

for (const backend of BACKENDS) {
  describe(`session caps: ${backend.name}`, function () {
    let servers: RunningServer[] = [];
    const agents: http.Agent[] = [];
    const agent = (localAddress: string) => {
      const ag = new http.Agent({ keepAlive: true, maxSockets: 50, localAddress } as http.AgentOptions);
      agents.push(ag);
      return ag;
    };
    afterEach(async () => {
      for (const ag of agents.splice(0)) ag.destroy();
      await Promise.all(servers.map((s) => s.stop()));
      servers = [];
    });

    const create = (i: number, ag?: http.Agent, localAddress?: string) =>
      send(servers[i % servers.length]!.port, { method: 'POST', path: '/', body: `s${i}`, agent: ag, localAddress });

    it('never overshoots the global cap under 200 racing creates, and refuses the rest with 429', async () => {
      servers = await backend.start({ RZ_MAX_SESSIONS: '50' });
      const answers = await inParallel(200, 50, (i) => create(i, agent(`127.0.1.${(i % 20) + 1}`)));
      const created = answers.filter((a) => a.status === 200);
      expect(created.length).to.equal(50);
      for (const refused of answers.filter((a) => a.status !== 200)) {
        expect(refused.status).to.equal(429);
        expect(json(refused).errcode).to.equal('M_LIMIT_EXCEEDED');
        expect(json(refused).retry_after_ms).to.be.a('number');
        expect(refused.headers['retry-after']).to.be.a('string');
      }
      // Every created session is still there: a full server refuses, it never evicts.
      for (const c of created) {
        const got = await send(servers[0]!.port, { path: `/${json(c).id as string}` });
        expect(got.status).to.equal(200);
      }
    });

    it('never overshoots the per-address cap under racing creates, and other addresses keep theirs', async () => {
      servers = await backend.start({ RZ_MAX_SESSIONS_PER_ADDRESS: '10' });
      const [x, y] = [agent('127.0.2.1'), agent('127.0.2.2')];
      const answers = await inParallel(200, 50, (i) => create(i, i % 2 === 0 ? x : y));
      const createdBy = (parity: number) => answers.filter((a, i) => i % 2 === parity && a.status === 200).length;
      expect(createdBy(0)).to.equal(10);
      expect(createdBy(1)).to.equal(10);
      expect((await create(0, undefined, '127.0.2.3')).status).to.equal(200);
    });

    it('holds both caps at once under racing creates from many addresses', async () => {
      servers = await backend.start({ RZ_MAX_SESSIONS: '25', RZ_MAX_SESSIONS_PER_ADDRESS: '10' });
      const addrs = ['127.0.3.1', '127.0.3.2', '127.0.3.3', '127.0.3.4'].map(agent);
      const answers = await inParallel(200, 50, (i) => create(i, addrs[i % 4]));
      const total = answers.filter((a) => a.status === 200).length;
      expect(total).to.equal(25);
      for (let k = 0; k < 4; k++) {
        expect(answers.filter((a, i) => i % 4 === k && a.status === 200).length).to.be.at.most(10);
      }
    });

    it('frees the slot of a deleted session, whoever deletes it', async () => {
      servers = await backend.start({ RZ_MAX_SESSIONS: '3', RZ_MAX_SESSIONS_PER_ADDRESS: '2' });
      const first = await create(0, undefined, '127.0.4.1');
      expect((await create(1, undefined, '127.0.4.1')).status).to.equal(200);
      expect((await create(2, undefined, '127.0.4.1')).status).to.equal(429);
      expect((await create(3, undefined, '127.0.4.2')).status).to.equal(200);
      expect((await create(4, undefined, '127.0.4.3')).status).to.equal(429);
      // The other device deletes it, from its own address, on the other replica.
      const id = json(first).id as string;
      const del = await send(servers[servers.length - 1]!.port, {
        method: 'DELETE',
        path: `/${id}`,
        localAddress: '127.0.4.9',
      });
      expect(del.status).to.equal(204);
      expect((await create(5, undefined, '127.0.4.1')).status).to.equal(200);
      expect((await create(6, undefined, '127.0.4.3')).status).to.equal(429);
    });

    it('frees the slot of an expired session without any sweeper, when retry_after_ms says', async () => {
      servers = await backend.start({ RZ_MAX_SESSIONS: '1', RZ_TTL_SECONDS: '1' });
      expect((await create(0)).status).to.equal(200);
      const refused = await create(1);
      expect(refused.status).to.equal(429);
      const wait = json(refused).retry_after_ms as number;
      expect(wait).to.be.within(1, 2100);
      // The one wait here is the session's own lifetime, which is what the test is about.
      await new Promise((r) => setTimeout(r, wait + 50));
      expect((await create(2)).status).to.equal(200);
    });
  });
}
