import { expect } from 'chai';
import { until } from './helpers/topologies';
import net from 'node:net';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { RedisSessions } from '../src/store/redis';
import { startReplicas, via } from './helpers/replicas';
import { expectMatrixError } from './helpers/http';

async function create(r: Replica, body = 'hello'): Promise<{ url: string; etag: string }> {
  const res = await fetch(r.url + '/', { method: 'POST', headers: { 'content-type': 'text/plain' }, body });
  expect(res.status).to.equal(200);
  return { url: res.headers.get('location')!, etag: res.headers.get('etag')! };
}

describe('two replicas on one Redis', function () {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;

  before(async () => {
    redis = await RedisServer.start();
    [a, b] = await startReplicas(2, { REDIS_URL: redis.url });
  });
  after(async () => {
    await Promise.all([a?.stop('SIGKILL'), b?.stop('SIGKILL')]);
    await redis?.destroy();
  });

  for (const [from, to] of [
    ['A', 'B'],
    ['B', 'A'],
  ] as const) {
    it(`serves a session created on ${from} for reads, writes and deletes on ${to}`, async () => {
      const [src, dst] = from === 'A' ? [a, b] : [b, a];
      const { url, etag } = await create(src, `made on ${from}`);
      const read = await fetch(via(dst, url));
      expect(read.status).to.equal(200);
      expect(await read.text()).to.equal(`made on ${from}`);
      expect(read.headers.get('etag')).to.equal(etag);
      const put = await fetch(via(dst, url), {
        method: 'PUT',
        headers: { 'if-match': etag },
        body: `written on ${to}`,
      });
      expect(put.status).to.equal(202);
      const back = await fetch(url, { headers: { 'if-none-match': etag } });
      expect(back.status).to.equal(200);
      expect(await back.text()).to.equal(`written on ${to}`);
      expect((await fetch(url, { headers: { 'if-none-match': put.headers.get('etag')! } })).status).to.equal(304);
      expect((await fetch(via(dst, url), { method: 'DELETE' })).status).to.equal(204);
      await expectMatrixError(await fetch(url), 404, 'M_NOT_FOUND');
    });
  }

  it('lets exactly one of 16 racing PUTs on one ETag win, 50 rounds over both replicas', async () => {
    const { url } = await create(a, 'round-0');
    let etag = (await fetch(url)).headers.get('etag')!;
    for (let round = 1; round <= 50; round++) {
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          fetch(via(i % 2 === 0 ? a : b, url), {
            method: 'PUT',
            headers: { 'if-match': etag },
            body: `r${round}-w${i}`,
          }).then(async (res) => ({ i, status: res.status, etag: res.headers.get('etag'), body: await res.text() })),
        ),
      );
      const winners = answers.filter((x) => x.status === 202);
      expect(winners, `round ${round}`).to.have.length(1);
      expect(
        answers.filter((x) => x.status === 412),
        `round ${round}`,
      ).to.have.length(15);
      const stored = await fetch(via(round % 2 === 0 ? a : b, url));
      expect(await stored.text()).to.equal(`r${round}-w${winners[0]!.i}`);
      etag = stored.headers.get('etag')!;
      expect(etag).to.equal(winners[0]!.etag);
    }
  });

  it('loses nothing when a replica is killed mid-flow: the session continues on the other', async () => {
    const [x, y] = await startReplicas(2, { REDIS_URL: redis.url });
    try {
      const { url, etag } = await create(x!, 'before the crash');
      const put = await fetch(url, { method: 'PUT', headers: { 'if-match': etag }, body: 'second message' });
      expect(put.status).to.equal(202);
      expect(await x!.stop('SIGKILL')).to.equal(null);
      const read = await fetch(via(y!, url));
      expect(await read.text()).to.equal('second message');
      expect(read.headers.get('etag')).to.equal(put.headers.get('etag'));
      const next = await fetch(via(y!, url), {
        method: 'PUT',
        headers: { 'if-match': read.headers.get('etag')! },
        body: 'after',
      });
      expect(next.status).to.equal(202);
    } finally {
      await Promise.all([x!.stop('SIGKILL'), y!.stop('SIGKILL')]);
    }
  });
});

describe('expiry across replicas', () => {
  let redis: RedisServer;
  let replicas: Replica[];
  before(async () => {
    redis = await RedisServer.start();
    replicas = await startReplicas(2, { REDIS_URL: redis.url, RZ_TTL_SECONDS: '1' });
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop('SIGKILL')));
    await redis?.destroy();
  });

  it('answers 404 on every replica after Expires and leaves no Redis key behind', async () => {
    const res = await fetch(replicas[0]!.url + '/', { method: 'POST', body: 'soon gone' });
    const url = res.headers.get('location')!;
    const id = new URL(url).pathname.slice(1);
    const client = redis.client();
    try {
      expect(await client.exists(`rz:{${id}}`)).to.equal(1);
      const expires = Date.parse(res.headers.get('expires')!);
      await new Promise((r) => setTimeout(r, Math.max(0, expires + 1000 - Date.now())));
      for (const r of replicas) await expectMatrixError(await fetch(via(r, url)), 404, 'M_NOT_FOUND');
      expect(await client.exists(`rz:{${id}}`, `rz:{${id}}:txn`)).to.equal(0);
    } finally {
      client.disconnect();
    }
  });
});

describe('Redis outage', () => {
  let redis: RedisServer;
  let replica: Replica;
  before(async () => {
    redis = await RedisServer.start();
    [replica] = (await startReplicas(1, { REDIS_URL: redis.url })) as [Replica];
  });
  after(async () => {
    await replica?.stop('SIGKILL');
    await redis?.destroy();
  });

  it('fails requests fast with 503 while Redis is down and resumes by itself when it returns', async () => {
    const { url } = await create(replica, 'before the outage');
    await redis.stop();
    // The bound is the per-request guard below: a hanging request fails the test instead of passing.
    for (const init of [{}, { method: 'PUT', body: 'x' }, { method: 'POST', body: 'x' }] as RequestInit[]) {
      const target = init.method === 'POST' ? replica.url + '/' : url;
      const res = await fetch(target, { ...init, signal: AbortSignal.timeout(10_000) });
      await expectMatrixError(res, 503, 'M_UNKNOWN');
      expect(res.headers.get('retry-after')).to.equal('1');
    }
    // The replica stays in service through the outage: its own JSON 503s beat a balancer's error page.
    const ready = await fetch(replica.url + '/ready', { signal: AbortSignal.timeout(10_000) });
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.include({ storeReachable: false });
    expect((await fetch(replica.url + '/health')).status).to.equal(200);

    await redis.resume();
    // Redis started empty (no persistence): the replica reconnects without a restart.
    await until('the store to answer again', async () => {
      const res = await fetch(replica.url + '/ready');
      return ((await res.json()) as { storeReachable?: boolean }).storeReachable === true;
    });
    const after = await create(replica, 'after the outage');
    expect(await (await fetch(after.url)).text()).to.equal('after the outage');
    expect(replica.proc.exitCode).to.equal(null);
  });
});

describe('SIGTERM', () => {
  it('stops accepting, lets an in-flight request finish, and exits 0', async () => {
    const redis = await RedisServer.start();
    const [replica] = (await startReplicas(1, { REDIS_URL: redis.url })) as [Replica];
    try {
      const { url } = await create(replica, 'v1');
      const path = new URL(url).pathname;
      // A PUT whose body is still arriving when the signal lands.
      const sock = net.connect(replica.port, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      let response = '';
      sock.on('data', (d) => (response += d.toString()));
      const closed = new Promise((r) => sock.once('close', r));
      sock.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n12345`);
      // A full round trip on another connection: the server has taken in the first one by now.
      await fetch(replica.url + '/health');
      replica.proc.kill('SIGTERM');
      await until('the replica to log that it drains', async () => replica.logs.some((l) => l.msg === 'draining'));
      sock.write('67890');
      await closed;
      expect(response).to.match(/^HTTP\/1.1 202 Accepted/);
      expect(response).to.match(/connection: close/i);
      expect(await replica.exit).to.equal(0);
      const client = redis.client();
      const id = path.slice(1);
      expect(
        (await new RedisSessions(client, {
          caps: { global: 0, perAddress: 0 },
          maxTxnsPerSession: 4,
          commandTimeoutMs: 2000,
        }).get(id, 'msc3886'))!.data.toString(),
      ).to.equal('1234567890');
      client.disconnect();
    } finally {
      await replica.stop('SIGKILL');
      await redis.destroy();
    }
  });
});
