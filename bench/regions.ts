/**
 * Multi-region measurements: what a forward costs against a request served in its own region, at
 * the same injected inter-region delay, and how fast a write in one region wakes a long-poll held
 * through the other. Two regions on loopback, each its own redis-server and replica process; the
 * inter-region link is a TCP proxy process that holds every chunk `delayMs` each way.
 *
 * - **latency** (a few clients, one request at a time each): a poll (GET If-None-Match, 304) and a
 *   conditional write (MSC4108 PUT If-Match) served locally (client next to the home region),
 *   across the link to the home region directly (the regional-hostname setup), and forwarded (client
 *   next to the other region, whose replica forwards over the link: the global-hostname setup);
 * - **throughput** with wrk at fixed concurrency, the same three ways; and the CPU each replica
 *   spends per request (from /proc), which says what a forwarding replica can sustain on its own;
 * - **wake-up**: a long-poll held through region A (forwarded, held in B) woken by a PUT in B, and
 *   one held in B woken by a PUT forwarded from A; time from sending the PUT to the waiter's 200.
 *
 * Standalone: `node --import tsx bench/regions.ts [--smoke]` (after `npm run build`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { killOnExit } from '../test/helpers/children';
import { freePort } from '../test/helpers/ports';
import { RedisServer } from '../test/helpers/redis';
import { Replica } from '../test/helpers/replica';
import { cpuMsOf, REPLICA_ENV, startFloor } from './processes';

export interface RegionsBenchOptions {
  /** Added to each direction of the inter-region link. */
  delayMs: number;
  /** Latency: clients sending one request at a time, and requests each (after `warmup` each). */
  latencyClients: number;
  latencyRequests: number;
  latencyWarmup: number;
  /**
   * Throughput: wrk connections per poll run (the first also for writes), seconds per run (after
   * `throughputWarmupS`). At about 50 ms a request, 64 connections leave the link's round trip the
   * bound on this machine; 256 make the processes the bound (the link, both replicas, Redis and wrk
   * share the cores).
   */
  connections: number[];
  durationS: number;
  throughputWarmupS: number;
  /** Wake-up round trips per direction. */
  wakeRounds: number;
  progress?: (line: string) => void;
}

export const REGIONS_FULL: RegionsBenchOptions = {
  delayMs: 25,
  latencyClients: 4,
  latencyRequests: 100,
  latencyWarmup: 10,
  connections: [64, 256],
  durationS: 5,
  throughputWarmupS: 2,
  wakeRounds: 150,
};

export const REGIONS_SMOKE: RegionsBenchOptions = {
  delayMs: 25,
  latencyClients: 2,
  latencyRequests: 5,
  latencyWarmup: 1,
  connections: [8],
  durationS: 1,
  throughputWarmupS: 0,
  wakeRounds: 5,
};

export type Path = 'local' | 'direct over the link' | 'forwarded';
/**
 * The floor of a forward (bench/floor.mjs): node `http` and an undici pool sending each poll on over
 * the same link, as a forward the home region accepts, and relaying the answer; nothing else.
 */
export const FLOOR_PATH = 'bare forwarder (floor)';
export type ThroughputPath = Path | typeof FLOOR_PATH;

export interface LatencyFigures {
  p50: number;
  p99: number;
  samples: number;
}

export interface ThroughputFigures {
  kind: 'poll' | 'write';
  connections: number;
  path: ThroughputPath;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU µs per request of the replica the client talks to, and of the home replica when that differs. */
  cpuUsEntry?: number;
  cpuUsHome?: number;
}

export interface RegionsResults {
  delayMs: number;
  /** Measured round trip of the link (median), ms. */
  linkRttMs: number;
  latency: Record<'poll' | 'write', Record<Path, LatencyFigures>>;
  throughput: ThroughputFigures[];
  wakeup: Record<'held across, written at home' | 'held at home, written across', LatencyFigures>;
  targets: {
    /** Forwarded p50 minus local p50 minus the link round trip, per kind (ms); target ≤ 2. */
    forwardOverheadP50: Record<'poll' | 'write', number>;
    /** Forwarded p50 minus direct-over-the-link p50: the same link crossed, so what forwarding adds. */
    forwardVsDirectP50: Record<'poll' | 'write', number>;
    /** Forwarded over direct-over-the-link poll requests/s at the same delay, per connection count. */
    pollThroughputRatio: Record<number, number>;
    /** Local poll CPU per request (home replica) over forwarding CPU per request (forwarding replica). */
    pollCapacityRatio: number | undefined;
    /** The same with the bare forwarder's CPU per request: about what a forwarding replica could keep at best. */
    floorCapacityRatio: number | undefined;
  };
}

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const SECRET = 'bench-region-secret-0123456789';
const round2 = (x: number) => Math.round(x * 100) / 100;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function figures(samples: number[]): LatencyFigures {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: round2(percentile(s, 50)), p99: round2(percentile(s, 99)), samples: s.length };
}

/** The delaying link as its own process, so its CPU is neither the load generator's nor a replica's. */
class LinkProcess {
  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static start(delayMs: number, target: number): Promise<LinkProcess> {
    // Like every process the bench starts, it dies with the run, even an interrupted one.
    const proc = killOnExit(
      spawn(
        process.execPath,
        ['--import', 'tsx', join(__dirname, '..', 'test', 'helpers', 'delay-link.ts'), String(delayMs), String(target)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      ),
    );
    return new Promise((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once('line', (line) =>
        resolve(new LinkProcess(proc, (JSON.parse(line) as { port: number }).port)),
      );
      proc.once('exit', (code) => reject(new Error(`delay link exited with ${code}`)));
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.proc.exitCode !== null) return resolve();
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGTERM');
    });
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function call(
  agent: http.Agent,
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function expectStatus(a: Answer, status: number, what: string): Answer {
  if (a.status !== status) throw new Error(`${what}: expected ${status}, got ${a.status} ${a.body.slice(0, 200)}`);
  return a;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The home region's held waiters, from its metrics (a state to reach before the write). */
async function heldAt(home: Replica, n: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 2000; i++) {
      const text = (await call(agent, `${home.url}/metrics`, 'GET')).body;
      const m = /^rendezvous_longpoll_waiters (\d+)/m.exec(text);
      if (m !== null && Number(m[1]) === n) return;
      await sleep(1);
    }
    throw new Error(`the home region never held ${n} waiter(s)`);
  } finally {
    agent.destroy();
  }
}

/** A new MSC4108 session on `home` (empty: a poll then answers 304 with Content-Length 0). */
async function newSession(agent: http.Agent, home: Replica): Promise<{ path: string; etag: string }> {
  const created = expectStatus(
    await call(agent, `${home.url}${MSC4108}`, 'POST', { 'Content-Type': 'text/plain' }),
    201,
    'create',
  );
  return { path: new URL((JSON.parse(created.body) as { url: string }).url).pathname, etag: created.headers.etag! };
}

/** `clients` sequential clients, each `requests` requests after `warmup`; every latency kept. */
async function latency(
  opts: RegionsBenchOptions,
  home: Replica,
  entry: string,
  kind: 'poll' | 'write',
): Promise<LatencyFigures> {
  const samples: number[] = [];
  await Promise.all(
    Array.from({ length: opts.latencyClients }, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const session = await newSession(agent, home);
        const path = session.path;
        let etag = session.etag;
        for (let i = 0; i < opts.latencyWarmup + opts.latencyRequests; i++) {
          const t0 = performance.now();
          if (kind === 'poll') {
            expectStatus(await call(agent, entry + path, 'GET', { 'If-None-Match': etag }), 304, 'poll');
          } else {
            const put = await call(
              agent,
              entry + path,
              'PUT',
              { 'Content-Type': 'text/plain', 'If-Match': etag },
              `message ${i}`,
            );
            etag = expectStatus(put, 202, 'write').headers.etag!;
          }
          if (i >= opts.latencyWarmup) samples.push(performance.now() - t0);
        }
      } finally {
        agent.destroy();
      }
    }),
  );
  return figures(samples);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** wrk's own summary: requests/s, p50 and p99 (ms), non-2xx/3xx answers and socket errors. */
function parseWrk(out: string): { rps: number; p50: number; p99: number; errors: number } {
  const ms = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m === null ? NaN : Number(m[1]) * UNIT_MS[m[2]!]!;
  };
  const rps = Number(/^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((n, x) => n + Number(x), 0);
  return { rps, p50: ms('50'), p99: ms('99'), errors: non2xx + socketErrors };
}

function runWrk(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('wrk', args, { timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`wrk failed: ${err.message} ${stderr}`)) : resolve(stdout),
    ),
  );
}

/**
 * wrk at fixed concurrency. A poll: GET with If-None-Match of an empty session (304, and
 * Content-Length 0: wrk would wait for a 304's announced body otherwise). A write: MSC3886 PUT
 * without If-Match (an unconditional write, so every request is a real write with a fixed request).
 */
async function throughput(
  opts: RegionsBenchOptions,
  home: Replica,
  entry: { url: string; pid: number },
  kind: 'poll' | 'write',
  connections: number,
  path: ThroughputPath,
  scriptDir: string,
): Promise<ThroughputFigures> {
  const agent = new http.Agent({ keepAlive: false });
  let target: string;
  const args = ['-t', '2', '-c', String(connections), '--latency', '--timeout', '10s'];
  try {
    if (kind === 'poll') {
      const { path, etag } = await newSession(agent, home);
      target = entry.url + path;
      args.push('-H', `If-None-Match: ${etag}`);
    } else {
      const created = expectStatus(await call(agent, `${home.url}/`, 'POST', {}, 'x'), 200, 'create');
      target = `${entry.url}/${(JSON.parse(created.body) as { id: string }).id}`;
      const script = join(scriptDir, 'put.lua');
      writeFileSync(
        script,
        `wrk.method = "PUT"\nwrk.body = string.rep("x", 256)\nwrk.headers["Content-Type"] = "application/octet-stream"\n`,
      );
      args.push('-s', script);
    }
  } finally {
    agent.destroy();
  }
  if (opts.throughputWarmupS > 0) await runWrk([...args, '-d', `${opts.throughputWarmupS}s`, target]);
  const pids = [entry.pid, home.proc.pid!];
  const before = pids.map(cpuMsOf);
  const out = await runWrk([...args, '-d', `${opts.durationS}s`, target]);
  const after = pids.map(cpuMsOf);
  const w = parseWrk(out);
  const requests = w.rps * opts.durationS;
  const cpu = (i: number) =>
    before[i] === undefined || after[i] === undefined || requests <= 0
      ? undefined
      : round2(((after[i]! - before[i]!) * 1000) / requests);
  return {
    kind,
    connections,
    path,
    rps: Math.round(w.rps),
    p50: round2(w.p50),
    p99: round2(w.p99),
    errors: w.errors,
    ...(cpu(0) === undefined ? {} : { cpuUsEntry: cpu(0) }),
    ...(entry.pid !== home.proc.pid && cpu(1) !== undefined ? { cpuUsHome: cpu(1) } : {}),
  };
}

/** PUT at `writer` until the waiter held through `waiterEntry` has its 200, `rounds` times. */
async function wakeups(
  opts: RegionsBenchOptions,
  home: Replica,
  waiterEntry: string,
  writerEntry: string,
): Promise<LatencyFigures> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const samples: number[] = [];
  try {
    const session = await newSession(agent, home);
    const path = session.path;
    let etag = session.etag;
    for (let i = 0; i < opts.wakeRounds; i++) {
      const held = call(agent, waiterEntry + path, 'GET', { 'If-None-Match': etag, Prefer: 'wait=30' });
      await heldAt(home, 1);
      const t0 = performance.now();
      const put = call(agent, writerEntry + path, 'PUT', { 'Content-Type': 'text/plain', 'If-Match': etag }, `m${i}`);
      const woken = expectStatus(await held, 200, 'wake-up');
      samples.push(performance.now() - t0);
      if (woken.body !== `m${i}`) throw new Error(`waiter saw ${woken.body}, expected m${i}`);
      etag = expectStatus(await put, 202, 'wake-up write').headers.etag!;
    }
  } finally {
    agent.destroy();
  }
  return figures(samples);
}

/** Median time of GET /health through the link minus straight to the replica behind it. */
async function linkRtt(link: LinkProcess, replica: Replica): Promise<number> {
  const median = async (url: string) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const xs: number[] = [];
    try {
      for (let i = 0; i < 31; i++) {
        const t0 = performance.now();
        await call(agent, url, 'GET');
        if (i > 0) xs.push(performance.now() - t0);
      }
    } finally {
      agent.destroy();
    }
    return xs.sort((a, b) => a - b)[xs.length >> 1]!;
  };
  return round2((await median(`${link.url}/health`)) - (await median(`${replica.url}/health`)));
}

async function replica(name: string, redisUrl: string, peers: string): Promise<Replica> {
  const port = await freePort();
  return Replica.start({
    ...REPLICA_ENV,
    PORT: String(port),
    REDIS_URL: redisUrl,
    RZ_PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    RZ_REGION: name,
    RZ_REGION_PEERS: peers,
    RZ_REGION_SECRET: SECRET,
    RZ_MAX_CONNECTIONS: '0',
  });
}

export async function runRegionsBench(
  opts: RegionsBenchOptions,
): Promise<{ results: RegionsResults; markdown: string }> {
  const say = (line: string) => opts.progress?.(`multi-region: ${line}`);
  const [redisA, redisB] = await Promise.all([RedisServer.start(), RedisServer.start()]);
  const started: { stop(): Promise<unknown> }[] = [];
  const scriptDir = mkdtempSync(join(tmpdir(), 'rz-bench-regions-'));
  try {
    // B is the home region. A reaches it over the inter-region link; a client far from B reaches it
    // over a link of its own with the same delay (so the two paths never share a proxy process).
    const homePort = await freePort();
    const interLink = await LinkProcess.start(opts.delayMs, homePort);
    const clientLink = await LinkProcess.start(opts.delayMs, homePort);
    started.push(interLink, clientLink);
    const home = await Replica.start({
      ...REPLICA_ENV,
      PORT: String(homePort),
      REDIS_URL: redisB.url,
      RZ_PUBLIC_BASE_URL: `http://127.0.0.1:${homePort}`,
      RZ_REGION: 'b',
      RZ_REGION_SECRET: SECRET,
      RZ_MAX_CONNECTIONS: '0',
    });
    started.push({ stop: () => home.stop('SIGKILL') });
    const away = await replica('a', redisA.url, `b=${interLink.url}`);
    started.push({ stop: () => away.stop('SIGKILL') });
    const floor = await startFloor('forward', interLink.url, SECRET);
    started.push(floor);

    say('measuring the link');
    const rtt = await linkRtt(clientLink, home);
    const paths: Record<Path, { url: string; pid: number }> = {
      local: { url: home.url, pid: home.proc.pid! },
      'direct over the link': { url: clientLink.url, pid: home.proc.pid! },
      forwarded: { url: away.url, pid: away.proc.pid! },
    };
    const latencyOf = {} as RegionsResults['latency'];
    const throughputOf: ThroughputFigures[] = [];
    for (const kind of ['poll', 'write'] as const) {
      latencyOf[kind] = {} as Record<Path, LatencyFigures>;
      for (const path of Object.keys(paths) as Path[]) {
        say(`${kind} latency, ${path}`);
        latencyOf[kind][path] = await latency(opts, home, paths[path].url, kind);
      }
      for (const connections of kind === 'poll' ? opts.connections : opts.connections.slice(0, 1)) {
        for (const path of Object.keys(paths) as Path[]) {
          say(`${kind} throughput (wrk, ${connections} connections), ${path}`);
          throughputOf.push(await throughput(opts, home, paths[path], kind, connections, path, scriptDir));
        }
        if (kind === 'poll') {
          say(`poll throughput (wrk, ${connections} connections), ${FLOOR_PATH}`);
          const entry = { url: floor.url, pid: floor.proc.pid! };
          throughputOf.push(await throughput(opts, home, entry, kind, connections, FLOOR_PATH, scriptDir));
        }
      }
    }
    say('cross-region wake-up');
    const wakeup = {
      'held across, written at home': await wakeups(opts, home, away.url, home.url),
      'held at home, written across': await wakeups(opts, home, home.url, away.url),
    };
    const overhead = (kind: 'poll' | 'write') =>
      round2(latencyOf[kind].forwarded.p50 - latencyOf[kind].local.p50 - rtt);
    const vsDirect = (kind: 'poll' | 'write') =>
      round2(latencyOf[kind].forwarded.p50 - latencyOf[kind]['direct over the link'].p50);
    const row = (connections: number, path: ThroughputPath) =>
      throughputOf.find((t) => t.kind === 'poll' && t.connections === connections && t.path === path)!;
    const ratios: Record<number, number> = {};
    for (const c of opts.connections) ratios[c] = round2(row(c, 'forwarded').rps / row(c, 'direct over the link').rps);
    // CPU per request where each replica is busiest: the largest connection count.
    const busiest = opts.connections[opts.connections.length - 1]!;
    const localCpu = row(busiest, 'local').cpuUsEntry;
    const forwardCpu = row(busiest, 'forwarded').cpuUsEntry;
    const floorCpu = row(busiest, FLOOR_PATH).cpuUsEntry;
    const capacity = (cpu: number | undefined) =>
      localCpu === undefined || cpu === undefined ? undefined : round2(localCpu / cpu);
    const results: RegionsResults = {
      delayMs: opts.delayMs,
      linkRttMs: rtt,
      latency: latencyOf,
      throughput: throughputOf,
      wakeup,
      targets: {
        forwardOverheadP50: { poll: overhead('poll'), write: overhead('write') },
        forwardVsDirectP50: { poll: vsDirect('poll'), write: vsDirect('write') },
        pollThroughputRatio: ratios,
        pollCapacityRatio: capacity(forwardCpu),
        floorCapacityRatio: capacity(floorCpu),
      },
    };
    return { results, markdown: markdown(results, opts) };
  } finally {
    for (const s of started.reverse()) await s.stop();
    await Promise.all([redisA.destroy(), redisB.destroy()]);
    rmSync(scriptDir, { recursive: true, force: true });
  }
}

export function markdown(r: RegionsResults, opts: RegionsBenchOptions): string {
  const met = (ok: boolean) => (ok ? 'met' : '**NOT met**');
  const t = r.targets;
  const pct = (x: number | undefined) => (x === undefined ? '–' : `${Math.round(x * 100)}%`);
  const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x)} ms`;
  const lines = [
    '## Multi-region',
    '',
    `Two regions on loopback, each its own redis-server and replica process; the inter-region link is a TCP proxy process`,
    `adding ${r.delayMs} ms each way (measured round trip **${r.linkRttMs} ms**, the proxy's own timer slack included).`,
    'Three ways to reach a session in region B: **local** (a client next to B), **direct over the link** (a client in A',
    "talking to B itself: regional hostnames) and **forwarded** (a client in A talking to A's replica, which forwards",
    'to B: one global hostname).',
    '',
    `### Latency, ${opts.latencyClients} clients sending one request at a time (${r.latency.poll.local.samples} samples each)`,
    '',
    '| request | local p50 / p99 | direct over the link p50 / p99 | forwarded p50 / p99 | forwarded − local − round trip (p50) | forwarded − direct (p50) |',
    '|---|---|---|---|---|---|',
  ];
  for (const kind of ['poll', 'write'] as const) {
    const l = r.latency[kind];
    lines.push(
      `| ${kind === 'poll' ? 'poll (GET If-None-Match, 304)' : 'write (MSC4108 PUT If-Match, 202)'} | ${l.local.p50} / ${l.local.p99} ms | ` +
        `${l['direct over the link'].p50} / ${l['direct over the link'].p99} ms | ${l.forwarded.p50} / ${l.forwarded.p99} ms | ` +
        `${signed(t.forwardOverheadP50[kind])} | ${signed(t.forwardVsDirectP50[kind])} |`,
    );
  }
  lines.push(
    '',
    `### Throughput, wrk, ${opts.durationS} s per run`,
    '',
    '| request | connections | path | req/s | p50 | p99 | errors | CPU µs/req, replica the client talks to | CPU µs/req, home replica |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const f of r.throughput) {
    lines.push(
      `| ${f.kind === 'poll' ? 'poll (MSC4108 GET, 304)' : 'write (MSC3886 PUT, 202)'} | ${f.connections} | ${f.path} | ` +
        `${f.rps.toLocaleString('en-US')} | ${f.p50} ms | ${f.p99} ms | ${f.errors} | ${f.cpuUsEntry ?? '–'} | ${f.cpuUsHome ?? ''} |`,
    );
  }
  const w = r.wakeup;
  const first = opts.connections[0]!;
  const busiest = opts.connections[opts.connections.length - 1]!;
  lines.push(
    '',
    `### Cross-region wake-up (${w['held across, written at home'].samples} rounds each)`,
    '',
    '| long-poll | p50 | p99 |',
    '|---|---:|---:|',
    `| held through A (forwarded, held in B), PUT in B | ${w['held across, written at home'].p50} ms | ${w['held across, written at home'].p99} ms |`,
    `| held in B, PUT through A (forwarded) | ${w['held at home, written across'].p50} ms | ${w['held at home, written across'].p99} ms |`,
    '',
    '### Targets',
    '',
    '| target | measured | |',
    '|---|---:|---|',
    `| forwarded poll p50 ≤ local p50 + link round trip + 2 ms | ${signed(t.forwardOverheadP50.poll)} | ${met(t.forwardOverheadP50.poll <= 2)} |`,
    `| forwarded write p50 ≤ local p50 + link round trip + 2 ms | ${signed(t.forwardOverheadP50.write)} | ${met(t.forwardOverheadP50.write <= 2)} |`,
    `| forwarded poll req/s ≥ 70% of direct over the link, same delay, ${first} connections | ${pct(t.pollThroughputRatio[first])} | ${met((t.pollThroughputRatio[first] ?? 0) >= 0.7)} |`,
    ...opts.connections
      .slice(1)
      .map(
        (c) =>
          `| the same at ${c} connections (the processes, not the link, are the bound here) | ${pct(t.pollThroughputRatio[c])} | ${met((t.pollThroughputRatio[c] ?? 0) >= 0.7)} |`,
      ),
    `| CPU per request: a local poll on the home replica over a forwarded poll on the forwarding replica, ${busiest} connections | ${pct(t.pollCapacityRatio)} | ${t.pollCapacityRatio === undefined ? '–' : met(t.pollCapacityRatio >= 0.7)} |`,
    `| floor of the row above: the same over the bare forwarder's CPU per poll (\`bench/floor.mjs\`: node \`http\` + an undici pool, nothing else) | ${pct(t.floorCapacityRatio)} | floor |`,
    '',
    'The CPU row is what one forwarding replica can sustain, forwarding only, against what it sustains serving its own',
    "sessions: a forward is a second HTTP exchange (a socket write and read per request), where a local poll's Redis",
    'command shares its socket writes with the other requests of its event-loop turn. The floor is the same exchange made by a',
    'process that does nothing else: about the best a forwarding replica could do in this run. Wake-up: a',
    'forwarded waiter hears of the write one link traversal after the home region does; a forwarded write reaches home',
    'one traversal after it is sent.',
    '',
  );
  return lines.join('\n');
}

if (require.main === module) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false } } });
  runRegionsBench({ ...(values.smoke ? REGIONS_SMOKE : REGIONS_FULL), progress: (l) => process.stderr.write(`${l}\n`) })
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
