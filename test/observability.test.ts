import { expect } from 'chai';
import net from 'node:net';
import { loadConfig } from '../src/config';
import { start, type RunningServer } from '../src/main';
import { Metrics } from '../src/metrics';
import { MemorySessions } from '../src/store/memory';
import { scrape } from '../src/http/metrics';
import { COMMON_HEADERS } from '../src/http/headers';
import { msc3886Exchange, req } from './helpers/exchange';
import { Scrape } from './helpers/metrics';
import { RedisServer, sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';
import { until } from './helpers/topologies';

/** Sends `bytes` on a connection of its own; resolves with the status of the answer, once it is closed. */
function raw(port: number, bytes: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(bytes));
    let got = '';
    socket.on('data', (chunk: Buffer) => (got += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1])));
  });
}

function serve(env: Record<string, string>): Promise<RunningServer> {
  return start(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...env }));
}

describe('metrics', () => {
  let server: RunningServer;
  let base: string;
  before(async () => {
    server = await serve({ REDIS_URL: await sharedRedisUrl() });
    base = `http://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server?.stop();
  });

  it('are served on the main port and move with a full exchange', async () => {
    const before = await Scrape.of(`${base}/metrics`);
    await msc3886Exchange(base);
    const after = await Scrape.of(`${base}/metrics`);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      after.value(name, labels) - before.value(name, labels);

    const family = { family: 'msc3886' };
    expect(delta('rendezvous_http_requests_total', { ...family, method: 'POST', status: '200' })).to.equal(1);
    expect(delta('rendezvous_http_requests_total', { ...family, method: 'PUT', status: '202' })).to.equal(1);
    expect(delta('rendezvous_http_requests_total', { ...family, method: 'PUT', status: '412' })).to.equal(1);
    expect(delta('rendezvous_http_requests_total', { ...family, method: 'GET', status: '304' })).to.equal(1);
    expect(delta('rendezvous_http_requests_total', { ...family, method: 'GET', status: '404' })).to.equal(1);
    expect(delta('rendezvous_http_requests_total', { ...family, method: 'DELETE', status: '204' })).to.equal(1);
    expect(delta('rendezvous_http_request_duration_seconds_count', { ...family, method: 'GET' })).to.equal(3);
    expect(delta('rendezvous_sessions_created_total', family)).to.equal(1);
    expect(delta('rendezvous_session_writes_total', { ...family, outcome: 'updated' })).to.equal(1);
    expect(delta('rendezvous_session_writes_total', { ...family, outcome: 'conflict' })).to.equal(1);
    expect(delta('rendezvous_cas_conflicts_total', family)).to.equal(1);
    expect(delta('rendezvous_sessions_deleted_total', family)).to.equal(1);
    expect(delta('rendezvous_redis_command_duration_seconds_count', { operation: 'update' })).to.equal(2);
    expect(delta('rendezvous_redis_command_duration_seconds_count', { operation: 'get' })).to.equal(3);
    expect(after.value('rendezvous_redis_errors_total')).to.equal(0);
    // The scrape itself is counted under its own family, never as a session id.
    expect(after.value('rendezvous_http_requests_total', { family: 'metrics', status: '200' })).to.be.greaterThan(0);
    for (const name of [
      'rendezvous_process_cpu_user_seconds_total',
      'rendezvous_process_resident_memory_bytes',
      'rendezvous_nodejs_eventloop_lag_seconds',
      'rendezvous_sessions_live',
      'rendezvous_longpoll_waiters',
    ]) {
      expect(after.has(name), name).to.equal(true);
    }
  });

  it("count the answers Node's parser refuses before the app sees a request (headers too large, not HTTP)", async () => {
    const before = await Scrape.of(`${base}/metrics`);
    const statuses = await Promise.all([
      raw(server.port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
      raw(server.port, 'this is not HTTP\r\n\r\n'),
    ]);
    expect(statuses).to.deep.equal([431, 400]);
    const after = await Scrape.of(`${base}/metrics`);
    const moved = (status: string) =>
      after.value('rendezvous_http_requests_total', { family: 'unmatched', method: 'OTHER', status }) -
      before.value('rendezvous_http_requests_total', { family: 'unmatched', method: 'OTHER', status });
    expect(moved('431')).to.equal(1);
    expect(moved('400')).to.equal(1);
  });

  it('label unknown paths with a fixed family, never the raw path', async () => {
    await req(`${base}/no/such/path/${'x'.repeat(40)}`);
    const scrape = await Scrape.of(`${base}/metrics`);
    expect(scrape.value('rendezvous_http_requests_total', { family: 'unmatched', status: '404' })).to.be.greaterThan(0);
    expect(scrape.text).to.not.include('no/such/path');
  });

  it('count live Redis sessions from the global session cap at scrape time', async () => {
    const redis = await RedisServer.start();
    const own = await serve({ REDIS_URL: redis.url });
    const ownBase = `http://127.0.0.1:${own.port}`;
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await req(`${ownBase}/`, { method: 'POST', body: 'x' });
        ids.push(((await res.json()) as { id: string }).id);
      }
      expect((await req(`${ownBase}/${ids[0]}`, { method: 'DELETE' })).status).to.equal(204);
      expect((await Scrape.of(`${ownBase}/metrics`)).value('rendezvous_sessions_live')).to.equal(2);
    } finally {
      await own.stop();
      await redis.destroy();
    }
  });

  it('count live and expired sessions of the memory store at scrape time', async () => {
    let now = 1_000_000;
    const metrics = new Metrics({ processMetrics: false });
    const store = new MemorySessions({ caps: { global: 0, perAddress: 0 }, maxTxnsPerSession: 4, now: () => now });
    for (const ttlMs of [1000, 1000, 5000]) {
      await store.create({
        id: `s${ttlMs}${now++}`,
        tag: 't',
        family: 'msc3886',
        contentType: 't',
        data: Buffer.alloc(0),
        ttlMs,
        owner: '',
      });
    }
    await scrape(metrics, store);
    expect((await metrics.sessionsLive.get()).values[0]!.value).to.equal(3);
    now += 2000;
    await scrape(metrics, store);
    expect((await metrics.sessionsLive.get()).values[0]!.value).to.equal(1);
    expect((await metrics.sessionsExpired.get()).values[0]!.value).to.equal(2);
    store.close();
  });

  it('move to their own port with RZ_METRICS_PORT, off the main one', async () => {
    const own = await serve({ RZ_METRICS_PORT: '0' });
    try {
      expect(own.metricsPort).to.be.a('number');
      const scrape = await Scrape.of(`http://127.0.0.1:${own.metricsPort}/metrics`);
      expect(scrape.has('rendezvous_sessions_live')).to.equal(true);
      const main = await req(`http://127.0.0.1:${own.port}/metrics`);
      expect(main.status).to.equal(404);
    } finally {
      await own.stop();
    }
  });

  it('answer HEAD as GET without a body on their own port, other methods 405, every answer with the common headers', async () => {
    const own = await serve({ RZ_METRICS_PORT: '0' });
    try {
      const url = `http://127.0.0.1:${own.metricsPort}`;
      const get = await req(`${url}/metrics`);
      const head = await req(`${url}/metrics`, { method: 'HEAD' });
      const other = await req(`${url}/elsewhere`);
      const post = await req(`${url}/metrics`, { method: 'POST', body: '' });
      expect([get.status, head.status, other.status, post.status]).to.deep.equal([200, 200, 404, 405]);
      expect(post.headers.get('allow')).to.equal('GET, HEAD');
      expect(((await other.json()) as { errcode: string }).errcode).to.equal('M_NOT_FOUND');
      expect(((await post.json()) as { errcode: string }).errcode).to.equal('M_UNRECOGNIZED');
      expect(head.headers.get('content-type')).to.equal(get.headers.get('content-type'));
      expect(Number(head.headers.get('content-length'))).to.be.greaterThan(0);
      expect(await head.text()).to.equal('');
      for (const res of [get, head, other, post]) {
        for (const [name, value] of Object.entries(COMMON_HEADERS)) {
          expect(res.headers.get(name), `${res.status} ${name}`).to.equal(value);
        }
      }
    } finally {
      await own.stop();
    }
  });
});

describe('request ids and logs', () => {
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl(), RZ_ACCESS_LOG: 'true' });
  });
  after(async () => {
    await replica?.stop();
  });

  it('honour a sane X-Request-Id, replace an unsafe one, and log no payload or token', async () => {
    const secret = 'syt_c2VjcmV0_0123456789abcdef';
    const payload = 'payload-that-must-never-be-logged';
    const kept = await req(`${replica.url}/`, {
      method: 'POST',
      headers: { 'X-Request-Id': 'lb-1234.abcd', Authorization: `Bearer ${secret}` },
      body: payload,
    });
    expect(kept.headers.get('X-Request-Id')).to.equal('lb-1234.abcd');
    const replaced = await req(`${replica.url}/`, { method: 'POST', headers: { 'X-Request-Id': 'a b"<c>' } });
    const fresh = replaced.headers.get('X-Request-Id')!;
    expect(fresh).to.match(/^[0-9a-f-]{36}$/);
    const none = await req(`${replica.url}/nothing/here`);
    expect(none.headers.get('X-Request-Id')).to.match(/^[0-9a-f-]{36}$/);
    expect(none.headers.get('X-Request-Id')).to.not.equal(fresh);

    await until('the access log lines', async () => replica.logs.filter((l) => l.msg === 'request').length >= 3);
    const ids = replica.logs.filter((l) => l.msg === 'request').map((l) => l.reqId);
    expect(ids).to.include.members(['lb-1234.abcd', fresh]);
    const all = JSON.stringify(replica.logs);
    expect(all).to.not.include(secret);
    expect(all).to.not.include(payload);
  });
});

describe('health and readiness', () => {
  it('/ready stays true through a store outage once the store was reached (the replica answers 503s itself)', async () => {
    const redis = await RedisServer.start();
    const server = await serve({ REDIS_URL: redis.url, RZ_REDIS_COMMAND_TIMEOUT_MS: '300' });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      expect((await req(`${base}/ready`)).status).to.equal(200);
      await redis.stop();
      // The last yes is reused for a moment; the next answer says the store is away, and stays ready.
      let down = await req(`${base}/ready`);
      await until('readiness to see the store away', async () => {
        down = await req(`${base}/ready`);
        return ((await down.clone().json()) as { storeReachable?: boolean }).storeReachable === false;
      });
      expect(down.status).to.equal(200);
      expect(await down.json()).to.deep.include({ ready: true, storeReachable: false });
      expect((await req(`${base}/health`)).status).to.equal(200);
      const write = await req(`${base}/`, { method: 'POST', body: 'x' });
      expect(write.status).to.equal(503);
      expect(write.headers.get('Retry-After')).to.equal('1');
      await redis.resume();
      await until(
        'the store after Redis returns',
        async () => (await req(`${base}/`, { method: 'POST' })).status === 200,
      );
      await msc3886Exchange(base);
    } finally {
      await server.stop();
      await redis.destroy();
    }
  });

  it('/ready is false while the store is down with RZ_READINESS=store, and /health stays true', async () => {
    const redis = await RedisServer.start();
    const server = await serve({ REDIS_URL: redis.url, RZ_REDIS_COMMAND_TIMEOUT_MS: '300', RZ_READINESS: 'store' });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      expect((await req(`${base}/ready`)).status).to.equal(200);
      await redis.stop();
      // The last yes is reused for a moment: then the store is away, and so is readiness.
      let down = await req(`${base}/ready`);
      await until('readiness to see the store away', async () => (down = await req(`${base}/ready`)).status === 503);
      expect(await down.json()).to.include({ ready: false, reason: 'session store unavailable' });
      expect((await req(`${base}/health`)).status).to.equal(200);
      await redis.resume();
      await until('readiness after Redis returns', async () => (await req(`${base}/ready`)).status === 200);
    } finally {
      await server.stop();
      await redis.destroy();
    }
  });

  it('/ready is false until the store was reached once, so a rollout that cannot reach it stops', async () => {
    const redis = await RedisServer.start();
    await redis.stop();
    const server = await serve({ REDIS_URL: redis.url, RZ_REDIS_COMMAND_TIMEOUT_MS: '300' });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      const never = await req(`${base}/ready`);
      expect(never.status).to.equal(503);
      expect(await never.json()).to.deep.equal({
        ready: false,
        reason: 'session store not reached yet',
        storeProblem: 'no connection to it',
      });
      await redis.resume();
      await until('readiness once Redis is reached', async () => (await req(`${base}/ready`)).status === 200);
    } finally {
      await server.stop();
      await redis.destroy();
    }
  });

  it('says when Redis starts refusing the credentials mid-outage: a log line of its own, and why on /ready', async () => {
    const redis = await RedisServer.start();
    const admin = redis.client();
    const replica = await Replica.start({ REDIS_URL: redis.url, RZ_REDIS_COMMAND_TIMEOUT_MS: '300' });
    try {
      expect((await req(`${replica.url}/ready`)).status).to.equal(200);
      // As a Redis restarted with a password it did not have: every connection now refused.
      await admin.config('SET', 'requirepass', 'now-required');
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal');
      await until('a log line naming the refused credentials', async () =>
        replica.logs.some((l) => l.msg === 'redis connection error' && l.reason === 'noperm'),
      );
      // A yes is reused for a moment after it was heard: then readiness hears the refusal too.
      await until('readiness to say why', async () => {
        const ready = (await (await req(`${replica.url}/ready`)).json()) as { storeProblem?: string };
        return ready.storeProblem?.includes('refused the credentials') === true;
      });
      expect(JSON.stringify(replica.logs)).to.not.include('now-required');
    } finally {
      await replica.stop();
      admin.disconnect();
      await redis.destroy();
    }
  });

  it('/ready turns false first on shutdown while the replica still serves, then it stops', async () => {
    const server = await serve({ REDIS_URL: await sharedRedisUrl(), RZ_SHUTDOWN_DELAY_SECONDS: '2' });
    const base = `http://127.0.0.1:${server.port}`;
    expect((await req(`${base}/ready`)).status).to.equal(200);
    const stopped = server.stop();
    const ready = await req(`${base}/ready`);
    expect(ready.status).to.equal(503);
    expect(await ready.json()).to.deep.equal({ ready: false, reason: 'shutting down' });
    expect(ready.headers.get('Connection')).to.equal('close');
    expect((await req(`${base}/health`)).status).to.equal(200);
    // Still serving during the delay: a client mid-exchange is not cut off.
    await msc3886Exchange(base);
    await stopped;
    const refused = await req(`${base}/health`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(refused).to.equal('refused');
  });
});
