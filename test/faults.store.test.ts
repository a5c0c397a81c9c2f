import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { Lifecycle, Readiness } from '../src/http/health';
import { createLogger } from '../src/logger';
import { CAPS_KEY } from '../src/store/format';
import type { Backend, StoreCondition } from '../src/store/types';
import { RendezvousClient } from '../src/client';
import { req } from './helpers/exchange';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { startReplicas, via } from './helpers/replicas';
import { until } from './helpers/topologies';

const MAIN = path.join(__dirname, '..', 'dist', 'main.js');

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = '/_matrix/client/unstable/io.element.msc4388/rendezvous';

async function expect503(res: Response): Promise<void> {
  expect(res.status).to.equal(503);
  expect(res.headers.get('Retry-After')).to.equal('1');
  expect(res.headers.get('Content-Type')).to.equal('application/json');
  expect(((await res.json()) as { errcode: string }).errcode).to.equal('M_UNKNOWN');
}

describe('a Redis at its maxmemory (noeviction)', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let client: Redis;
  let replicas: Replica[];
  let base: string;
  const live: { msc3886: string; etag: string; msc4388: string; token: string } = {
    msc3886: '',
    etag: '',
    msc4388: '',
    token: '',
  };

  before(async () => {
    redis = await RedisServer.start(['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction']);
    client = redis.client();
    replicas = await startReplicas(2, { REDIS_URL: redis.url, RZ_MAX_SESSIONS: '1000' });
    base = replicas[0]!.url;
    // Sessions made while there is room, to write to once there is none.
    const a = await req(`${base}/`, { method: 'POST', body: 'first' });
    live.msc3886 = ((await a.json()) as { id: string }).id;
    live.etag = a.headers.get('ETag')!;
    const b = await req(`${base}${MSC4388}`, { method: 'POST', body: '{"data":""}' });
    const created = (await b.json()) as { id: string; sequence_token: string };
    live.msc4388 = created.id;
    live.token = created.sequence_token;
    // Fill Redis, then set its limit below what it holds: from now on it refuses every write that
    // needs memory, as a Redis that filled up does (only deterministically so).
    for (let i = 0; i < 16; i++) await client.set(`filler:${i}`, 'f'.repeat(64 * 1024));
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
    await client.config('SET', 'maxmemory', String(Math.floor(used / 2)));
    await client.set('probe', 'x').then(
      () => expect.fail('Redis still takes writes'),
      (err: Error) => expect(err.message).to.match(/^OOM/),
    );
  });
  after(async () => {
    await Promise.all(replicas?.map((r) => r.stop()) ?? []);
    client?.disconnect();
    await redis?.destroy();
  });

  it('answers creates and writes of every family 503 with Retry-After, never 500, and still serves reads', async () => {
    const capsBefore = await client.hgetall(CAPS_KEY);
    for (const replica of replicas) {
      const b = replica.url;
      await expect503(await req(`${b}/`, { method: 'POST', body: 'x' }));
      await expect503(await req(`${b}${MSC4108}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' } }));
      await expect503(await req(`${b}${MSC4388}`, { method: 'POST', body: '{"data":"x"}' }));
      await expect503(
        await req(`${b}/${live.msc3886}`, { method: 'PUT', body: 'x', headers: { 'If-Match': live.etag } }),
      );
      const write = JSON.stringify({ sequence_token: live.token, data: 'x' });
      await expect503(await req(`${b}${MSC4388}/${live.msc4388}`, { method: 'PUT', body: write }));
      await expect503(await req(`${b}${MSC4388}/${live.msc4388}/txn1`, { method: 'PUT', body: write }));
      // Reads need no memory.
      expect((await req(`${b}/${live.msc3886}`)).status).to.equal(200);
      expect((await req(`${b}${MSC4388}/${live.msc4388}`)).status).to.equal(200);
    }
    // Nothing was counted for the creates that were refused, nothing written by the writes.
    expect(await client.hgetall(CAPS_KEY)).to.deep.equal(capsBefore);
    expect(await (await req(`${base}/${live.msc3886}`)).text()).to.equal('first');
  });

  it('keeps the replicas healthy, with a metric and one log line per interval rather than one per request', async () => {
    for (let i = 0; i < 20; i++) await req(`${base}/`, { method: 'POST', body: 'x' });
    for (const replica of replicas) {
      expect((await req(`${replica.url}/health`)).status).to.equal(200);
      expect(replica.proc.exitCode).to.equal(null);
      const lines = replica.logs.filter((l) => l.msg === 'session store unavailable');
      expect(lines.length).to.be.within(1, 2);
      expect(lines[0]).to.include({ reason: 'oom' });
      expect(replica.logs.filter((l) => l.level >= 50)).to.deep.equal([]);
      const metrics = await (await req(`${replica.url}/metrics`)).text();
      expect(metrics).to.match(/rendezvous_redis_errors_total\{operation="[a-z]+",reason="oom"\} [1-9]/);
      expect(metrics).to.not.match(/rendezvous_http_requests_total\{[^}]*status="500"/);
    }
  });

  it('serves again as soon as there is room', async () => {
    await client.config('SET', 'maxmemory', '0');
    expect((await req(`${base}/`, { method: 'POST', body: 'x' })).status).to.equal(200);
  });
});

describe('a write that lands after its 503', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let control: Redis;
  let replicas: Replica[];

  before(async () => {
    redis = await RedisServer.start();
    control = redis.client();
    // A short command timeout: a paused Redis makes the write time out (503) while it is still queued.
    replicas = await startReplicas(2, { REDIS_URL: redis.url, RZ_REDIS_COMMAND_TIMEOUT_MS: '200' });
  });
  after(async () => {
    await Promise.all(replicas?.map((r) => r.stop()) ?? []);
    control?.disconnect();
    await redis?.destroy();
  });

  /**
   * PUT through replica A while Redis holds writes: A answers 503, then the write lands once Redis
   * resumes. The client retries the very same request through replica B, as it was told to.
   */
  async function landedAfter503(path: string, headers: Record<string, string>, etag: string, body: string) {
    const [a, b] = replicas as [Replica, Replica];
    await control.call('CLIENT', 'PAUSE', '1000', 'WRITE');
    const first = await req(`${a.url}${path}`, { method: 'PUT', body, headers: { ...headers, 'If-Match': etag } });
    await expect503(first);
    // Reads go on during a write pause: watch the write land.
    await until('the timed-out write to land', async () => (await req(`${b.url}${path}`)).headers.get('ETag') !== etag);
    const landed = await req(`${b.url}${path}`);
    expect(await landed.text()).to.equal(body);
    const retry = await req(`${b.url}${path}`, { method: 'PUT', body, headers: { ...headers, 'If-Match': etag } });
    expect(retry.status).to.equal(202);
    // The current validators, and nothing written a second time.
    expect(retry.headers.get('ETag')).to.equal(landed.headers.get('ETag'));
    expect((await req(`${b.url}${path}`)).headers.get('ETag')).to.equal(landed.headers.get('ETag'));
    // Someone else's write on the old version is still refused.
    const stale = await req(`${b.url}${path}`, {
      method: 'PUT',
      body: `${body} but different`,
      headers: { ...headers, 'If-Match': etag },
    });
    expect(stale.status).to.equal(412);
  }

  it('is answered 202 when retried verbatim (MSC3886)', async () => {
    const created = await req(`${replicas[0]!.url}/`, {
      method: 'POST',
      body: 'v1',
      headers: { 'Content-Type': 'text/plain' },
    });
    const id = ((await created.json()) as { id: string }).id;
    await landedAfter503(`/${id}`, { 'Content-Type': 'text/plain' }, created.headers.get('ETag')!, 'v2');
  });

  it('is answered 202 when retried verbatim (MSC4108)', async () => {
    const created = await req(`${replicas[0]!.url}${MSC4108}`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
    });
    const url = new URL(((await created.json()) as { url: string }).url);
    await landedAfter503(url.pathname, { 'Content-Type': 'text/plain' }, created.headers.get('ETag')!, 'hello');
  });
  for (const family of ['msc3886', 'msc4108', 'msc4388'] as const) {
    it(`is what the project's client does: told 503, it re-sends and ends with its write in place (${family})`, async () => {
      const [a, b] = replicas as [Replica, Replica];
      const writer = new RendezvousClient({ baseUrl: a.url, family });
      const session = await writer.create('v1');
      const before = writer.requests;
      await control.call('CLIENT', 'PAUSE', '1000', 'WRITE');
      await session.write('v2');
      // At least the 503 and the re-send; the re-send was answered with the current version.
      expect(writer.requests - before).to.be.at.least(2);
      const reader = new RendezvousClient({ baseUrl: b.url, family }).open(via(b, session.url));
      expect(await reader.read()).to.equal('v2');
      expect(reader.version).to.equal(session.version);
    });
  }
});

describe('readiness and the Redis eviction policy', function () {
  this.timeout(30_000);
  for (const policy of ['allkeys-lru', 'volatile-lru']) {
    it(`refuses a Redis with maxmemory-policy ${policy}, naming it and the fix`, async () => {
      const redis = await RedisServer.start(['--maxmemory', '64mb', '--maxmemory-policy', policy]);
      const [replica] = await startReplicas(1, { REDIS_URL: redis.url });
      try {
        const ready = await req(`${replica!.url}/ready`);
        expect(ready.status).to.equal(503);
        const body = (await ready.json()) as { ready: boolean; reason: string };
        expect(body.ready).to.equal(false);
        expect(body.reason).to.include(policy).and.include('noeviction').and.include('RZ_REDIS_ALLOW_EVICTION');
        expect(replica!.logs.some((l) => l.msg === 'session store misconfigured: not ready')).to.equal(true);
      } finally {
        await replica!.stop();
        await redis.destroy();
      }
    });
  }

  it('accepts an evicting Redis when the operator opts in, and says so in the log', async () => {
    const redis = await RedisServer.start(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
    const [replica] = await startReplicas(1, { REDIS_URL: redis.url, RZ_REDIS_ALLOW_EVICTION: 'true' });
    try {
      expect((await req(`${replica!.url}/ready`)).status).to.equal(200);
      expect(replica!.logs.some((l) => l.msg === 'session store' && String(l.note).includes('allkeys-lru'))).to.equal(
        true,
      );
    } finally {
      await replica!.stop();
      await redis.destroy();
    }
  });

  it('refuses to start on a REDIS_URL naming a database this Redis does not have, rather than serve from database 0', async () => {
    const redis = await RedisServer.start(['--databases', '4']);
    const [good] = await startReplicas(1, { REDIS_URL: `${redis.url}/3` });
    try {
      const cli = spawnSync(process.execPath, [MAIN], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, REDIS_URL: `${redis.url}/7`, PORT: '0' },
        timeout: 20_000,
      });
      expect(cli.status).to.equal(2);
      expect(cli.stderr).to.match(/^rendezvous-server: config error: REDIS_URL names database 7/m);
      expect(await redis.client().dbsize()).to.equal(0);
      expect((await req(`${good!.url}/ready`)).status).to.equal(200);
    } finally {
      await good!.stop();
      await redis.destroy();
    }
  });

  it('accepts noeviction', async () => {
    const redis = await RedisServer.start(['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction']);
    const [replica] = await startReplicas(1, { REDIS_URL: redis.url });
    try {
      expect((await req(`${replica!.url}/ready`)).status).to.equal(200);
    } finally {
      await replica!.stop();
      await redis.destroy();
    }
  });
});

describe('readiness over time', () => {
  it('turns false when the store is found misconfigured later, and true again once it is fixed', async () => {
    let condition: StoreCondition = { healthy: true };
    let inspections = 0;
    const inspect = async () => (inspections++, condition);
    const backend = { description: 'fake', ping: async () => {}, inspect } as unknown as Backend;
    const readiness = new Readiness(backend, 'startup', new Lifecycle(), createLogger({ logLevel: 'silent' }), 10);
    await readiness.start();
    try {
      expect((await readiness.answer())[0]).to.equal(200);
      condition = { healthy: false, problem: 'misconfigured', detail: 'evicts' };
      await until('not ready', async () => (await readiness.answer())[0] === 503);
      expect((await readiness.answer())[1]).to.deep.equal({ ready: false, reason: 'evicts' });
      // An outage says nothing about the configuration: the last verdict stands.
      condition = { healthy: false, problem: 'unreachable', detail: 'down' };
      const seen = inspections;
      await until('two more looks at the store', async () => inspections >= seen + 2);
      expect((await readiness.answer())[0]).to.equal(503);
      condition = { healthy: true };
      await until('ready again', async () => (await readiness.answer())[0] === 200);
    } finally {
      readiness.stop();
    }
  });
});
