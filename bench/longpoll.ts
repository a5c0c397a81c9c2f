/**
 * Long-poll measurements: cross-replica wake-up latency, the cost of a simulated QR login with
 * long-poll versus 1-second polling, and the memory of one replica holding many concurrent waits.
 * Every server is its own process (`node dist/main.js`) on one redis-server of its own.
 *
 * Standalone: `node --import tsx bench/longpoll.ts [--smoke]` (after `npm run build`).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RendezvousClient, type RendezvousSession } from '../src/client';
import { freePort } from '../test/helpers/ports';
import { RedisServer } from '../test/helpers/redis';
import { Replica } from '../test/helpers/replica';

export interface LongPollBenchOptions {
  /** Wake-up round trips measured (after `warmupRounds`). */
  rounds: number;
  warmupRounds: number;
  /** Simulated QR logins run at once, per mode. */
  logins: number;
  /** Real seconds per simulated second: the think times and the 1 s poll interval shrink alike. */
  timeScale: number;
  /** Concurrent waits held on one replica for the memory figure. */
  waits: number;
  progress?: (line: string) => void;
}

export const LONGPOLL_FULL: LongPollBenchOptions = {
  rounds: 1000,
  warmupRounds: 100,
  logins: 20,
  timeScale: 0.05,
  waits: 10_000,
};
export const LONGPOLL_SMOKE: LongPollBenchOptions = {
  rounds: 50,
  warmupRounds: 5,
  logins: 2,
  timeScale: 0.02,
  waits: 200,
};

export interface LoginFigures {
  mode: 'long-poll' | 'polling';
  /** Per login, both devices together. */
  requests: number;
  gets: number;
  /** Server CPU seconds per login, both replicas together. */
  cpuSeconds: number;
}

export interface LongPollResults {
  wakeup: { rounds: number; p50Ms: number; p99Ms: number; maxMs: number; meanMs: number };
  login: { script: string; thinkSeconds: number; longPoll: LoginFigures; polling: LoginFigures };
  memory: {
    waits: number;
    idleRssMb: number;
    /** Half a second after the last wait subscribed, and 5 s later (V8 gives back part of the burst's heap). */
    heldRssMb: number;
    settledRssMb: number;
    perWaitKb: number;
    subscribedChannels: number;
  };
  targets: { wakeupP99Under10ms: boolean; waitsUnder300Mb: boolean; requestsTenfold: boolean; getsTenfold: boolean };
}

/** Settings of every replica here: no rate limits or session caps, long-lived sessions, quiet logs. */
const REPLICA_ENV: Record<string, string> = {
  LOG_LEVEL: 'warn',
  RZ_ACCESS_LOG: 'false',
  RZ_CREATE_RATE: '0',
  RZ_REQUEST_RATE: '0',
  RZ_MAX_SESSIONS: '0',
  RZ_MAX_SESSIONS_PER_ADDRESS: '0',
  RZ_TTL_SECONDS: '600',
};

async function replica(redisUrl: string, env: Record<string, string> = {}): Promise<Replica> {
  const port = await freePort();
  return Replica.start({
    ...REPLICA_ENV,
    LOG_LEVEL: 'info',
    REDIS_URL: redisUrl,
    PORT: String(port),
    RZ_PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    ...env,
  });
}

/** User plus system CPU seconds a process has used (Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The same session URL on another replica (what a load balancer does). */
const on = (r: Replica, url: string) => r.url + new URL(url).pathname;

/**
 * PUT on B until the waiter on A has its 200. The waiter's GET goes out first; a 5 ms pause lets A
 * subscribe before the PUT, so the notice (not the re-check) is what is measured.
 */
async function wakeupLatency(a: Replica, b: Replica, opts: LongPollBenchOptions): Promise<LongPollResults['wakeup']> {
  const writer = await new RendezvousClient({ baseUrl: b.url, family: 'msc3886' }).create('0');
  const waiter = new RendezvousClient({ baseUrl: a.url, family: 'msc3886', waitSeconds: 30 }).open(on(a, writer.url));
  await waiter.read();
  const samples: number[] = [];
  for (let i = 0; i < opts.warmupRounds + opts.rounds; i++) {
    const received = waiter.receive();
    await sleep(5);
    const t0 = process.hrtime.bigint();
    await writer.write(String(i + 1));
    const data = await received;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (data !== String(i + 1)) throw new Error(`waiter saw ${data}, expected ${i + 1}`);
    if (i >= opts.warmupRounds) samples.push(ms);
    if (i % 100 === 0) opts.progress?.(`long-poll wake-up ${i}/${opts.warmupRounds + opts.rounds}`);
  }
  samples.sort((x, y) => x - y);
  return {
    rounds: samples.length,
    p50Ms: round3(percentile(samples, 50)),
    p99Ms: round3(percentile(samples, 99)),
    maxMs: round3(samples[samples.length - 1]!),
    meanMs: round3(samples.reduce((s, x) => s + x, 0) / samples.length),
  };
}

/**
 * An MSC4108-style QR login: the new device N creates the session and shows the QR code, the
 * existing device E scans it; six messages alternate, each after the receiving side's think time
 * (human steps: scanning, comparing the check code, approving the login).
 */
const SCRIPT: { from: 'N' | 'E'; thinkS: number; what: string }[] = [
  { from: 'E', thinkS: 20, what: 'scan the QR code' },
  { from: 'N', thinkS: 0.2, what: 'protocol choice' },
  { from: 'E', thinkS: 8, what: 'enter the check code' },
  { from: 'N', thinkS: 0.2, what: 'device authorization' },
  { from: 'E', thinkS: 12, what: 'approve the login' },
  { from: 'N', thinkS: 0.5, what: 'secrets received' },
];

/** The family the simulated devices speak (MSC4108 is what shipping apps use). */
const LOGIN_FAMILY = 'msc4108' as const;

async function oneLogin(n: RendezvousClient, e: RendezvousClient, eReplica: Replica, scale: number): Promise<void> {
  const devices = {} as Record<'N' | 'E', RendezvousSession>;
  devices.N = await n.create('');
  // What each device is waiting for: N waits for the first message while the user scans.
  const waits: Partial<Record<'N' | 'E', Promise<string>>> = { N: devices.N.receive() };
  for (const [i, step] of SCRIPT.entries()) {
    const sender = step.from;
    if (devices[sender] === undefined) {
      await sleep(step.thinkS * 1000 * scale);
      devices[sender] = e.open(on(eReplica, devices.N.url));
      await devices[sender].read();
    } else {
      const got = await waits[sender]!;
      if (got !== `message ${i}`) throw new Error(`login out of step: ${sender} got "${got}" before message ${i + 1}`);
      await sleep(step.thinkS * 1000 * scale);
    }
    await devices[sender].write(`message ${i + 1}`);
    // Having written, the sender waits for the answer at once, as real clients do.
    if (i + 1 < SCRIPT.length) waits[sender] = devices[sender].receive();
  }
  const last = SCRIPT[SCRIPT.length - 1]!.from === 'N' ? 'E' : 'N';
  await waits[last];
  await devices.E.delete();
}

async function loginCost(
  a: Replica,
  b: Replica,
  mode: 'long-poll' | 'polling',
  opts: LongPollBenchOptions,
): Promise<LoginFigures> {
  let gets = 0;
  const counting: typeof fetch = (input, init) => {
    if ((init?.method ?? 'GET') === 'GET') gets++;
    return fetch(input, init);
  };
  const clientOpts = {
    family: LOGIN_FAMILY,
    longPoll: mode === 'long-poll',
    pollIntervalMs: 1000 * opts.timeScale,
    waitSeconds: 25,
    fetch: counting,
  };
  const clients = Array.from({ length: opts.logins }, () => ({
    n: new RendezvousClient({ baseUrl: a.url, ...clientOpts }),
    e: new RendezvousClient({ baseUrl: b.url, ...clientOpts }),
  }));
  const cpu0 = cpuSeconds(a.proc.pid!) + cpuSeconds(b.proc.pid!);
  await Promise.all(clients.map(({ n, e }) => oneLogin(n, e, b, opts.timeScale)));
  const cpu = cpuSeconds(a.proc.pid!) + cpuSeconds(b.proc.pid!) - cpu0;
  const requests = clients.reduce((s, c) => s + c.n.requests + c.e.requests, 0);
  return {
    mode,
    requests: round1(requests / opts.logins),
    gets: round1(gets / opts.logins),
    cpuSeconds: round3(cpu / opts.logins),
  };
}

/** Holds `opts.waits` GETs on one replica, one per session, and reads its RSS while they wait. */
async function waitMemory(redisUrl: string, opts: LongPollBenchOptions): Promise<LongPollResults['memory']> {
  const r = await replica(redisUrl, {
    RZ_MAX_CONNECTIONS: String(opts.waits * 2),
    RZ_LONGPOLL_MAX_WAITERS: String(opts.waits * 2),
    RZ_LONGPOLL_MAX_WAITERS_PER_ADDRESS: String(opts.waits * 2),
    RZ_LONGPOLL_MAX_WAIT_SECONDS: '300',
  });
  const admin = new Redis(redisUrl);
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const requests: http.ClientRequest[] = [];
  try {
    const client = new RendezvousClient({ baseUrl: r.url, family: 'msc3886' });
    const sessions: RendezvousSession[] = [];
    for (let i = 0; i < opts.waits; i += 200) {
      const batch = Math.min(200, opts.waits - i);
      sessions.push(...(await Promise.all(Array.from({ length: batch }, () => client.create('x')))));
    }
    if (global.gc) global.gc();
    await sleep(500);
    const idle = rssMb(r.proc.pid!);
    for (const s of sessions) {
      const req = http.get(s.url, { agent, headers: { 'If-None-Match': s.version!, Prefer: 'wait=300' } });
      req.on('error', () => {});
      requests.push(req);
    }
    // Every waiter subscribes its session's channel once it is registered: count them in Redis.
    let channels = 0;
    for (let tries = 0; tries < 600; tries++) {
      channels = ((await admin.call('PUBSUB', 'SHARDCHANNELS', 'rz:*')) as string[]).length;
      opts.progress?.(`long-poll waits subscribed ${channels}/${opts.waits}`);
      if (channels >= opts.waits) break;
      await sleep(250);
    }
    await sleep(500);
    const held = rssMb(r.proc.pid!);
    await sleep(5000);
    const settled = rssMb(r.proc.pid!);
    return {
      waits: opts.waits,
      idleRssMb: round1(idle),
      heldRssMb: round1(held),
      settledRssMb: round1(settled),
      perWaitKb: round1(((held - idle) * 1024) / opts.waits),
      subscribedChannels: channels,
    };
  } finally {
    for (const req of requests) req.destroy();
    agent.destroy();
    admin.disconnect();
    await r.stop('SIGKILL');
  }
}

export async function runLongPollBench(
  opts: LongPollBenchOptions = LONGPOLL_FULL,
): Promise<{ results: LongPollResults; markdown: string }> {
  const redis = await RedisServer.start();
  try {
    const [a, b] = await Promise.all([replica(redis.url), replica(redis.url)]);
    let wakeup: LongPollResults['wakeup'];
    let longPoll: LoginFigures;
    let polling: LoginFigures;
    try {
      wakeup = await wakeupLatency(a, b, opts);
      opts.progress?.('long-poll simulated QR logins (long-poll)');
      longPoll = await loginCost(a, b, 'long-poll', opts);
      opts.progress?.('long-poll simulated QR logins (1 s polling)');
      polling = await loginCost(a, b, 'polling', opts);
    } finally {
      await Promise.all([a.stop('SIGKILL'), b.stop('SIGKILL')]);
    }
    const memory = await waitMemory(redis.url, opts);
    const results: LongPollResults = {
      wakeup,
      login: {
        script: SCRIPT.map((s) => `${s.what} ${s.thinkS} s`).join(', '),
        thinkSeconds: SCRIPT.reduce((s, x) => s + x.thinkS, 0),
        longPoll,
        polling,
      },
      memory,
      targets: {
        wakeupP99Under10ms: wakeup.p99Ms < 10,
        waitsUnder300Mb: memory.heldRssMb < 300,
        requestsTenfold: polling.requests >= 10 * longPoll.requests,
        getsTenfold: polling.gets >= 10 * longPoll.gets,
      },
    };
    return { results, markdown: markdown(results, opts) };
  } finally {
    await redis.destroy();
  }
}

function markdown(r: LongPollResults, opts: LongPollBenchOptions): string {
  const ok = (b: boolean) => (b ? 'met' : 'NOT met');
  const ratio = (x: number, y: number) => (y === 0 ? '∞' : `${round1(x / y)}x`);
  const { longPoll: lp, polling: po } = r.login;
  return [
    '## Long-poll',
    '',
    `Two replicas (separate processes) on one redis-server, loopback.`,
    '',
    `### Wake-up latency across replicas (PUT on B until the waiter on A has its 200), ${r.wakeup.rounds} round trips`,
    '',
    '| p50 | p99 | max | mean | target p99 < 10 ms |',
    '|---|---|---|---|---|',
    `| ${r.wakeup.p50Ms} ms | ${r.wakeup.p99Ms} ms | ${r.wakeup.maxMs} ms | ${r.wakeup.meanMs} ms | ${ok(r.targets.wakeupP99Under10ms)} |`,
    '',
    `### Simulated QR login (MSC4108, 6 messages, devices on different replicas), ${opts.logins} logins per mode`,
    '',
    `Human think time ${r.login.thinkSeconds} s per login (${r.login.script}), run ${1 / opts.timeScale}x faster with the`,
    'poll interval shortened alike, so request counts equal those of the real-time flow.',
    '',
    '| mode | HTTP requests / login | of which GETs | server CPU s / login |',
    '|---|---|---|---|',
    `| long-poll | ${lp.requests} | ${lp.gets} | ${lp.cpuSeconds} |`,
    `| 1 s polling | ${po.requests} | ${po.gets} | ${po.cpuSeconds} |`,
    `| ratio | ${ratio(po.requests, lp.requests)} | ${ratio(po.gets, lp.gets)} | ${ratio(po.cpuSeconds, lp.cpuSeconds)} |`,
    '',
    `Target "10x fewer requests": all requests ${ok(r.targets.requestsTenfold)}, GETs ${ok(r.targets.getsTenfold)}. The 6 PUTs,`,
    'the create, the first read and the delete are needed by both modes, so they bound the all-requests ratio.',
    '',
    `### Memory: one replica holding ${r.memory.waits} concurrent waits (one per session, ${r.memory.subscribedChannels} channels subscribed)`,
    '',
    '| RSS idle (sessions created) | RSS holding (+0.5 s) | RSS holding (+5.5 s) | per wait | target < 300 MB |',
    '|---|---|---|---|---|',
    `| ${r.memory.idleRssMb} MB | ${r.memory.heldRssMb} MB | ${r.memory.settledRssMb} MB | ${r.memory.perWaitKb} kB | ${ok(r.targets.waitsUnder300Mb)} |`,
    '',
    'The target is judged on the first figure.',
    '',
  ].join('\n');
}

if (require.main === module) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false } } });
  runLongPollBench({
    ...(values.smoke ? LONGPOLL_SMOKE : LONGPOLL_FULL),
    progress: (l) => process.stderr.write(`${l}\n`),
  })
    .then(({ results, markdown: md }) => {
      process.stdout.write(md);
      process.stdout.write(`\n<!-- ${JSON.stringify(results)} -->\n`);
      process.exit(0);
    })
    .catch((err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    });
}
