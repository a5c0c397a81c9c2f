import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { ClusterRedisSessions, createRedisBackend, createRedisClient } from '../src/store/redis';
import { unavailable } from '../src/store/redis/errors';
import type { FailureCounter } from '../src/store/types';
import { request } from './helpers/http';
import { Scrape } from './helpers/metrics';
import { RedisServer } from './helpers/redis';
import { startServer } from './helpers/server';
import { until } from './helpers/topologies';

describe('why a Redis call failed, as the metrics and /ready say it', () => {
  it("counts a Cluster client that is not ready (no node known yet) as a cluster condition, not a connection's", async () => {
    // Nothing listens on port 1: the client never learns a slot map, and refuses every command.
    const client = createRedisClient(
      loadConfig({ RZ_REDIS_CLUSTER_NODES: '127.0.0.1:1', RZ_REDIS_COMMAND_TIMEOUT_MS: '500' }),
    );
    client.on('error', () => undefined);
    try {
      const err = await client.get('x').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.match(/^Cluster isn't ready/);
      expect(unavailable(err).reason).to.equal('cluster');
    } finally {
      client.disconnect();
    }
  });

  it('counts no readiness ping while the connection is down: none is sent', async () => {
    const failures: string[] = [];
    const failed: FailureCounter = (operation, reason) => void failures.push(`${operation}:${reason}`);
    // Nothing listens on port 1: the connection is refused, again and again.
    const backend = await createRedisBackend(
      {
        redis: loadConfig({ REDIS_URL: 'redis://127.0.0.1:1' }),
        caps: { global: 0, perAddress: 0 },
        maxTxnsPerSession: 4,
        allowEviction: false,
        connectWaitMs: 0,
        failed,
      },
      createLogger({ logLevel: 'silent' }),
    );
    try {
      const refusal = () =>
        backend.ping().then(
          () => undefined,
          (err: Error) => err,
        );
      // Before the refusal is known, and once it is: either way no PING goes out.
      expect((await refusal())?.message).to.equal('session store unavailable (connection)');
      await until('the refusal to be known', async () =>
        String(((await refusal())?.cause as Error | undefined)?.message).includes('ECONNREFUSED'),
      );
      expect(failures.filter((f) => f.startsWith('ping:'))).to.deep.equal([]);
    } finally {
      await backend.close();
    }
  });

  it('keeps the other reasons it reads from the message', () => {
    expect(unavailable(new Error('Too many Cluster redirections. Last error: TRYAGAIN')).reason).to.equal('cluster');
    expect(unavailable(new Error('Command timed out')).reason).to.equal('timeout');
    expect(unavailable(new Error('connect ECONNREFUSED 127.0.0.1:1')).reason).to.equal('connection');
    expect(unavailable(new Error('None of startup nodes is available')).reason).to.equal('connection');
  });
});

/** Whether the call failed. */
const fails = (call: Promise<unknown>): Promise<boolean> =>
  call.then(
    () => false,
    () => true,
  );

describe('every Redis call the backend makes counts its failures under what it was for', function () {
  this.timeout(30_000);
  let redis: RedisServer;
  let admin: Redis;
  before(async () => {
    redis = await RedisServer.start();
    admin = redis.client();
    // An administrator of its own: the default user (the replica's) is about to lose every command.
    await admin.call('ACL', 'SETUSER', 'admin', 'on', '>admin-password', '+@all', '~*', '&*');
    await admin.call('AUTH', 'admin', 'admin-password');
  });
  after(async () => {
    admin.disconnect();
    await redis.destroy();
  });
  const refuseEverything = () => admin.call('ACL', 'SETUSER', 'default', '-@all');
  const allowEverything = () => admin.call('ACL', 'SETUSER', 'default', '+@all');

  it('counts rates, verdicts, pings, inspections, subscriptions and cap reconciliation, by reason', async () => {
    const failures: string[] = [];
    const failed: FailureCounter = (operation, reason) => void failures.push(`${operation}:${reason}`);
    const log = createLogger({ logLevel: 'silent' });
    const config = loadConfig({ REDIS_URL: redis.url, RZ_REDIS_COMMAND_TIMEOUT_MS: '1000' });
    const backend = await createRedisBackend(
      { redis: config, caps: { global: 0, perAddress: 0 }, maxTxnsPerSession: 4, allowEviction: false, failed },
      log,
    );
    // Cap bookkeeping that a failure interrupts is settled in the background on Cluster; its steps
    // run on a single node as well.
    const client = createRedisClient(config);
    const cluster = new ClusterRedisSessions(
      client as never,
      { caps: { global: 0, perAddress: 0 }, maxTxnsPerSession: 4, commandTimeoutMs: 1000, failed },
      log,
    );
    try {
      await refuseEverything();
      const window = { budget: 'test', start: Date.now() - (Date.now() % 10_000), ms: 10_000 };
      expect(await fails(backend.rates.add(window, [['192.0.2.1', 1]]))).to.equal(true);
      expect(await fails(backend.verdicts.get('hash'))).to.equal(true);
      expect(await fails(backend.verdicts.set('hash', 'valid', 1000))).to.equal(true);
      expect(await fails(backend.ping())).to.equal(true);
      await backend.inspect();
      const subscription = backend.wakeups.listen('some-session', () => undefined);
      await subscription.ready.catch(() => undefined);
      subscription.release();
      const create = cluster.create({
        id: 'lost',
        family: 'msc3886',
        contentType: 'text/plain',
        data: Buffer.from('x'),
        ttlMs: 60_000,
        tag: 't',
        owner: '',
      });
      expect(await fails(create)).to.equal(true);
      // The settling step's first attempt runs at once; it fails as well.
      await until('a reconciliation attempt', async () => failures.includes('reconcile:noperm'));
      for (const operation of ['rates', 'verdict', 'ping', 'inspect', 'subscribe', 'reconcile']) {
        expect(failures, operation).to.include(`${operation}:noperm`);
      }
      // The session operation itself is its caller's to count (MeteredSessions), not counted twice.
      expect(failures.filter((f) => f.startsWith('create:'))).to.deep.equal([]);
    } finally {
      await allowEverything();
      cluster.stop();
      client.disconnect();
      await backend.close();
    }
  });

  it('names the operation and the reason in rendezvous_redis_errors_total, the scrape-time counts included', async () => {
    const server = await startServer({ REDIS_URL: redis.url });
    try {
      await refuseEverything();
      expect((await request('GET', `${server.url}/ready`)).status).to.equal(200);
      expect((await request('GET', `${server.url}/_matrix/client/v1/rendezvous/abc`)).status).to.equal(503);
      await request('GET', `${server.url}/metrics`);
      await allowEverything();
      const scrape = await Scrape.of(`${server.url}/metrics`);
      const errors = (operation: string) =>
        scrape.value('rendezvous_redis_errors_total', { operation, reason: 'noperm' });
      expect({ ping: errors('ping') > 0, get: errors('get'), counts: errors('counts') > 0 }).to.deep.equal({
        ping: true,
        get: 1,
        counts: true,
      });
    } finally {
      await allowEverything();
      await server.stop();
    }
  });
});
