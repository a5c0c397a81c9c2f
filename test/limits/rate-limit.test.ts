import { expect } from 'chai';
import http from 'node:http';
import type { RunningServer } from '../../src/main';
import { RedisServer } from '../helpers/redis';
import { inParallel, json, send, type Answer } from '../helpers/send';
import { startServer } from '../helpers/server';
import { parseAnswers, rawExchange } from '../helpers/raw';
import { SETTLE_INTERVAL_MS } from '../../src/limits';

const MSC3886 = '/_matrix/client/unstable/org.matrix.msc3886/rendezvous';

function expectLimited(a: Answer): void {
  expect(a.status).to.equal(429);
  expect(a.headers['content-type']).to.equal('application/json');
  expect(a.headers['access-control-allow-origin']).to.equal('*');
  expect(a.headers['cache-control']).to.equal('no-store, no-transform');
  const body = json(a);
  expect(body.errcode).to.equal('M_LIMIT_EXCEEDED');
  expect(body.retry_after_ms).to.be.a('number').greaterThan(0);
  expect(Number(a.headers['retry-after'])).to.be.at.least(1);
}

/**
 * Budgets are fixed windows aligned on the clock, so a flood that happens to span the start of a new
 * window is admitted a fresh budget there: such a run says nothing, and is run again (from another
 * address) within one window.
 */
async function inOneWindow<T>(windowMs: number, flood: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const window = Math.floor(Date.now() / windowMs);
    const result = await flood(attempt);
    if (Math.floor(Date.now() / windowMs) === window || attempt > 0) return result;
  }
}

describe('rate limits shared by replicas through Redis', function () {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  const agents: http.Agent[] = [];
  const agent = (localAddress: string) => {
    const ag = new http.Agent({ keepAlive: true, maxSockets: 8, localAddress } as http.AgentOptions);
    agents.push(ag);
    return ag;
  };

  before(async () => {
    redis = await RedisServer.start();
    // 2 requests a second over a 100 s window: a budget of 200 the flood cannot outlast.
    const env = {
      REDIS_URL: redis.url,
      RZ_REQUEST_RATE: '2',
      RZ_REQUEST_RATE_WINDOW_SECONDS: '100',
      RZ_CREATE_RATE: '40',
    };
    [a, b] = await Promise.all([startServer(env), startServer(env)]);
  });
  after(async () => {
    for (const ag of agents) ag.destroy();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  /** The flooding address of the first test (another one if its flood had to be run again). */
  let flooder = '127.0.0.2';

  it('holds a request flood from one address through two replicas to one budget (±10%)', async () => {
    const answers = await inOneWindow(100_000, (attempt) => {
      flooder = `127.0.0.${2 + attempt * 10}`;
      const ag = agent(flooder);
      return inParallel(600, 16, (i) =>
        send(i % 2 === 0 ? a.port : b.port, { path: `${MSC3886}/no-such-session-${i}`, agent: ag }),
      );
    });
    const served = answers.filter((x) => x.status === 404).length;
    const limited = answers.filter((x) => x.status === 429);
    expect(served + limited.length).to.equal(600);
    expect(served).to.be.within(180, 220);
    expectLimited(limited[0]!);
  });

  it('leaves a second address untouched by the first one’s flood', async () => {
    const other = await send(b.port, { path: `${MSC3886}/no-such-session`, localAddress: '127.0.0.3' });
    expect(other.status).to.equal(404);
    // The flooding address is still refused on both replicas.
    expect((await send(a.port, { path: '/x', localAddress: flooder })).status).to.equal(429);
    expect((await send(b.port, { path: '/x', localAddress: flooder })).status).to.equal(429);
  });

  it('holds session creates from one address to the per-minute create budget across replicas', async () => {
    let creator = '';
    const answers = await inOneWindow(60_000, (attempt) => {
      creator = `127.0.0.${4 + attempt * 10}`;
      const ag = agent(creator);
      return inParallel(120, 16, (i) =>
        send(i % 2 === 0 ? a.port : b.port, { method: 'POST', path: '/', body: 'x', agent: ag }),
      );
    });
    const created = answers.filter((x) => x.status === 200).length;
    expect(created).to.be.within(36, 44);
    expect(answers.filter((x) => x.status === 429).length).to.equal(120 - created);
    expectLimited(answers.find((x) => x.status === 429)!);
    // Creating does not spend the request budget: this address may still read.
    expect((await send(a.port, { path: '/nothing', localAddress: creator })).status).to.equal(404);
  });

  it('admits a burst within the budget whole (100 requests at once from one address to one replica, budget 200)', async () => {
    const ag = new http.Agent({ keepAlive: true, maxSockets: 100, localAddress: '127.0.0.5' } as http.AgentOptions);
    agents.push(ag);
    const answers = await inParallel(100, 100, (i) =>
      send(a.port, { path: `${MSC3886}/no-such-session-${i}`, agent: ag }),
    );
    expect(answers.filter((x) => x.status !== 404).map((x) => x.status)).to.deep.equal([]);
  });

  it('never limits the health probes', async () => {
    for (const path of ['/health', '/ready']) {
      expect((await send(a.port, { path, localAddress: '127.0.0.2' })).status).to.equal(200);
    }
  });
});

describe('rate limits and forwarding headers', function () {
  let server: RunningServer;

  before(async () => {
    server = await startServer({ RZ_CREATE_RATE: '3', RZ_TRUSTED_PROXIES: '127.0.0.1/32' });
  });
  after(() => server?.stop());

  const create = (localAddress: string, xff?: string) =>
    send(server.port, {
      method: 'POST',
      path: '/',
      localAddress,
      headers: xff === undefined ? {} : { 'X-Forwarded-For': xff },
    });

  it('counts clients behind a trusted proxy by X-Forwarded-For', async () => {
    for (let i = 0; i < 3; i++) expect((await create('127.0.0.1', '198.51.100.1')).status).to.equal(200);
    expectLimited(await create('127.0.0.1', '198.51.100.1'));
    // Another client behind the same proxy has its own budget.
    expect((await create('127.0.0.1', '198.51.100.2')).status).to.equal(200);
  });

  it('ignores X-Forwarded-For from an untrusted address, so rotating it gains nothing', async () => {
    for (let i = 0; i < 3; i++) expect((await create('127.0.0.5', `198.51.100.${10 + i}`)).status).to.equal(200);
    expectLimited(await create('127.0.0.5', '198.51.100.99'));
  });
});

describe('rate limits and a request with more header lines than are read', function () {
  let server: RunningServer;
  before(async () => {
    server = await startServer({ RZ_TRUSTED_PROXIES: '127.0.0.1', RZ_CREATE_RATE: '1', RZ_MAX_HEADERS_COUNT: '20' });
  });
  after(async () => server?.stop());

  /**
   * A client's own X-Forwarded-For and padding, then the line a trusted proxy appends (HAProxy's
   * `option forwardfor` adds its own line last): `padding` lines between them.
   */
  const proxied = (spoof: string, padding: number) =>
    'POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n' +
    `X-Forwarded-For: ${spoof}\r\n${Array.from({ length: padding }, (_, i) => `X-Pad-${i}: x\r\n`).join('')}` +
    'X-Forwarded-For: 203.0.113.10\r\n\r\n';
  const statusOf = async (request: string) => parseAnswers((await rawExchange(server.port, request)).text)[0]!.status;

  it('counts the client the proxy named when every line is read (20 lines: the limit)', async () => {
    // Host, Content-Length, Connection, the client's X-Forwarded-For, 15 of padding, the proxy's: 20.
    expect(await statusOf(proxied('198.51.100.1', 15))).to.equal(200);
    expect(await statusOf(proxied('198.51.100.2', 15))).to.equal(429);
  });

  it('refuses a request past the limit with 431, rather than count it as whoever it claims to be', async () => {
    for (let i = 0; i < 3; i++) {
      const answer = parseAnswers((await rawExchange(server.port, proxied(`198.51.100.${10 + i}`, 16 + i))).text)[0]!;
      expect(answer.status).to.equal(431);
      expect(JSON.parse(answer.body)).to.include({ errcode: 'M_TOO_LARGE' });
    }
  });
});

describe('rate limits and a normal client', function () {
  it('never refuse two devices behind one address polling once a second for a whole session', async () => {
    // Defaults, in memory. A 300 s session at one poll a second per device, plus the writes of a
    // login, is 600+ requests spread over five minutes; what matters to the budget is how many fall
    // in one window, so replay one full window's worth of that traffic at once (a harsher burst).
    const server = await startServer({ RZ_CREATE_RATE: '30', RZ_REQUEST_RATE: '30' });
    try {
      const created = await send(server.port, { method: 'POST', path: '/', body: 'hi', localAddress: '127.0.0.6' });
      expect(created.status).to.equal(200);
      const id = json(created).id as string;
      const windowSeconds = 10;
      const perWindow = 2 * windowSeconds + 4; // two devices polling, plus a few writes
      for (let i = 0; i < perWindow; i++) {
        const method = i % 6 === 5 ? 'PUT' : 'GET';
        const body = method === 'PUT' ? 'x' : undefined;
        const answer = await send(server.port, { method, path: `/${id}`, body, localAddress: '127.0.0.6' });
        expect(answer.status, `request ${i}`).to.be.oneOf([200, 202]);
      }
    } finally {
      await server.stop();
    }
  });
});

describe('limits set to 0', function () {
  it('are off: one address creates and requests far past every default budget and cap', async () => {
    const server = await startServer({
      RZ_CREATE_RATE: '0',
      RZ_REQUEST_RATE: '0',
      RZ_MAX_SESSIONS: '0',
      RZ_MAX_SESSIONS_PER_ADDRESS: '0',
    });
    try {
      const creates = await inParallel(120, 8, () => send(server.port, { method: 'POST', path: '/', body: 'x' }));
      expect(creates.every((a) => a.status === 200)).to.equal(true);
      const reads = await inParallel(400, 8, () => send(server.port, { path: '/nothing' }));
      expect(reads.every((a) => a.status === 404)).to.equal(true);
    } finally {
      await server.stop();
    }
  });
});

describe('rate limits under a flood from many addresses', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let replicas: RunningServer[];

  before(async () => {
    redis = await RedisServer.start();
    const env = { REDIS_URL: redis.url, RZ_REQUEST_RATE: '1000', RZ_TRUSTED_PROXIES: '127.0.0.1/32' };
    replicas = await Promise.all([startServer(env), startServer(env)]);
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.destroy();
  });

  /** Calls of every script (the rate counts are added by one) since Redis started. */
  async function scriptCalls(): Promise<number> {
    const client = redis.client();
    try {
      const stats = await client.info('commandstats');
      return [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    } finally {
      client.disconnect();
    }
  }

  it('costs Redis one call per replica per settling interval, not one per request or per address', async () => {
    const agents = replicas.map(() => new http.Agent({ keepAlive: true, maxSockets: 32 }));
    const before = await scriptCalls();
    const started = Date.now();
    // 1,000 addresses (behind a trusted proxy), 4 requests each, spread over both replicas.
    const answers = await inParallel(4000, 64, (i) =>
      send(replicas[i % 2]!.port, {
        path: `${MSC3886}/nothing-${i}`,
        agent: agents[i % 2],
        headers: { 'X-Forwarded-For': `198.18.${(i % 1000) >> 8}.${i % 256}` },
      }),
    );
    const calls = (await scriptCalls()) - before;
    const elapsedMs = Date.now() - started;
    for (const agent of agents) agent.destroy();
    expect(answers.every((a) => a.status === 404)).to.equal(true);
    // Each replica settles at most once per interval while it has counts, plus its last settlement.
    const bound = replicas.length * (Math.ceil(elapsedMs / SETTLE_INTERVAL_MS) + 1);
    expect(calls, `${calls} calls in ${elapsedMs} ms`).to.be.at.most(bound);
    expect(calls).to.be.greaterThan(0);
  });
});

describe('rate limits and the probe paths', function () {
  let server: RunningServer;
  before(async () => {
    // A budget of 5 requests per window; the metrics on their own port, so `/metrics` here is no probe.
    server = await startServer({ RZ_REQUEST_RATE: '1', RZ_REQUEST_RATE_WINDOW_SECONDS: '5', RZ_METRICS_PORT: '0' });
  });
  after(async () => server?.stop());

  it('spends the budget on writes and deletes at the probe paths (they reach the session store)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const method = i % 2 === 0 ? 'PUT' : 'DELETE';
      const path = i % 3 === 0 ? '/health' : '/ready';
      const body = method === 'PUT' ? 'x' : undefined;
      statuses.push((await send(server.port, { method, path, body, localAddress: '127.0.0.7' })).status);
    }
    expect(statuses).to.include(429);
    // The probes themselves are still never limited.
    expect((await send(server.port, { path: '/health', localAddress: '127.0.0.7' })).status).to.equal(200);
    expect((await send(server.port, { path: '/ready', localAddress: '127.0.0.7' })).status).to.equal(200);
  });

  it('spends the budget on GET /metrics when the metrics are served on their own port', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      statuses.push((await send(server.port, { path: '/metrics', localAddress: '127.0.0.8' })).status);
    }
    expect(statuses).to.include(429);
  });
});
