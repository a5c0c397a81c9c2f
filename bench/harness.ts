import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { Redis } from 'ioredis';
import { FAMILIES, type Family, familyNamed } from './families';
import { send } from './http';
import { measure, type Measurement } from './measure';
import { LONGPOLL_FULL, type LongPollBenchOptions, type LongPollResults, runLongPollBench } from './longpoll';
import { type MemoryFigures, memoryStoreRss, redisMemory } from './memory';
import { BareNode, RedisServer, type Replica, startReplica } from './processes';
import { type CeilingRow, redisCeiling } from './redis-ceiling';
import { Checker, SCENARIOS, type ScenarioName, prepare } from './scenarios';

export type StoreKind = 'redis' | 'memory';

export interface BenchOptions {
  connections: number;
  durationS: number;
  warmupS: number;
  families: string[];
  stores: StoreKind[];
  /** Seconds of mixed load each replica gets once, before its first measurement. */
  replicaWarmupS: number;
  /** Payload of creates and writes. */
  payloadBytes: number;
  /** Sessions created for the memory figures, and their payload. */
  memorySessions: number;
  memoryPayloadBytes: number;
  /** Commands per redis-benchmark run. */
  redisRequests: number;
  /** The long-poll measurements (their own replicas and Redis), or undefined to skip them. */
  longpoll?: LongPollBenchOptions;
  /** Receives a one-line status while the run goes on. */
  progress: (line: string) => void;
}

export const FULL: Omit<BenchOptions, 'progress'> = {
  connections: 50,
  durationS: 4,
  warmupS: 1,
  replicaWarmupS: 3,
  families: FAMILIES.map((f) => f.name),
  stores: ['redis', 'memory'],
  payloadBytes: 256,
  memorySessions: 10_000,
  memoryPayloadBytes: 1024,
  redisRequests: 200_000,
  // V8 gives the burst's memory back 25-40 s after it; 45 s of settling keeps the run under 5 minutes.
  longpoll: { ...LONGPOLL_FULL, settleSeconds: 45 },
};

/**
 * Seconds-long settings that only prove the harness works end to end (used by npm test). The
 * long-poll part is left out: it has its own tests, and its smoke run alone takes ten seconds.
 */
export const SMOKE: Omit<BenchOptions, 'progress'> = {
  connections: 5,
  // autocannon runs whole seconds: 1 s is its shortest run.
  durationS: 1,
  warmupS: 0,
  replicaWarmupS: 0,
  families: ['MSC3886'],
  stores: ['redis', 'memory'],
  payloadBytes: 256,
  memorySessions: 200,
  memoryPayloadBytes: 1024,
  redisRequests: 2_000,
};

export type Figures = Pick<Measurement, 'rps' | 'p50' | 'p99' | 'max'> & { cpuUs?: number };

export interface Row {
  family: string;
  store: StoreKind;
  scenario: ScenarioName;
  /** False when the family's create route answers 404 on this build. */
  available: boolean;
  m?: Measurement;
  /** Operations per second when one operation is several requests (the exchange). */
  opsPerSec?: number;
  /** The bare Node figures this row is compared with: the mean of the runs just before and after it. */
  base?: Figures;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryBytes: number;
  os: string;
  node: string;
  redis: string;
  loadGenerator: string;
  loadAverageAtStart: number[];
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  seconds: number;
  options: Omit<BenchOptions, 'progress'>;
  machine: Machine;
  /** Every bare Node run, in order: one before each family and store, one at the end. */
  baselines: { label: string; m: Measurement }[];
  /** Their mean, for the summary. */
  baseline: Figures;
  redis: CeilingRow[];
  rows: Row[];
  memory: MemoryFigures;
  longpoll?: { results: LongPollResults; markdown: string };
}

function machine(): Machine {
  const cpus = os.cpus();
  const redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis,
    loadGenerator: `autocannon ${(require('autocannon/package.json') as { version: string }).version} (in the bench process)`,
    loadAverageAtStart: os.loadavg(),
  };
}

function meanOf(ms: Measurement[]): Figures {
  const avg = (k: 'rps' | 'p50' | 'p99' | 'max') => ms.reduce((sum, m) => sum + m[k], 0) / ms.length;
  const cpu = ms.map((m) => m.cpuUsPerRequest?.server);
  const cpuUs = cpu.every((c) => c !== undefined) ? cpu.reduce((a, c) => a + c!, 0) / cpu.length : undefined;
  return {
    rps: avg('rps'),
    p50: avg('p50'),
    p99: avg('p99'),
    max: avg('max'),
    ...(cpuUs === undefined ? {} : { cpuUs }),
  };
}

async function pidOfRedis(port: number): Promise<number> {
  const client = new Redis({ port, host: '127.0.0.1' });
  try {
    return Number(/process_id:(\d+)/.exec(await client.info('server'))![1]);
  } finally {
    client.disconnect();
  }
}

/** Whether this build serves the family: its create route must not be 404. */
async function available(base: string, family: Family): Promise<boolean> {
  return (await send(base, family.create(''))).status !== 404;
}

/** Runs every measurement with its own redis-server and replicas; nothing shared outside the run. */
export async function runBench(opts: BenchOptions): Promise<BenchResults> {
  const started = Date.now();
  const mach = machine();
  const families = opts.families.map(familyNamed);
  const groups = opts.stores.length * families.length;
  const plan = 1 + groups * (1 + SCENARIOS.length) + 1 + 1 + (opts.longpoll === undefined ? 0 : 1);
  let step = 0;
  const status = (what: string, left?: number) =>
    opts.progress(`[${String(step).padStart(2)}/${plan}] ${what}${left === undefined ? '' : ` ${left}s`}`);

  const redis = await RedisServer.start();
  const redisPid = await pidOfRedis(redis.port);
  const bare = await BareNode.start();
  const replicas = new Map<StoreKind, Replica>();
  try {
    for (const store of opts.stores) replicas.set(store, await startReplica(store === 'redis' ? redis.url : undefined));

    // The machine may be shared: bare Node is measured again next to each group of scenarios, and
    // each row is compared with the runs that bracket it, so a change of load moves both alike.
    const baselines: { label: string; m: Measurement }[] = [];
    const baselineRun = async (label: string) => {
      step++;
      status(`bare Node 304 (${label})`);
      const m = await measure({
        url: bare.url,
        connections: opts.connections,
        durationS: opts.durationS,
        warmupS: baselines.length === 0 ? opts.warmupS : 0,
        requests: [{ method: 'GET', path: '/bench', headers: { 'If-None-Match': '"AAAAAAAA.1"' } }] as never,
        check: new Checker(),
        status: 304,
        pids: { server: bare.proc.pid! },
        tick: (left) => status(`bare Node 304 (${label})`, left),
      });
      baselines.push({ label, m });
      return m;
    };

    step++;
    status('Redis ceiling (redis-benchmark)');
    const ceiling = await redisCeiling({
      port: redis.port,
      connections: opts.connections,
      requests: opts.redisRequests,
      payload: 'x'.repeat(opts.payloadBytes),
    });

    const rows: Row[] = [];
    const pending: Row[] = [];
    let before: Measurement | undefined;
    const bracket = async (label: string) => {
      const after = await baselineRun(label);
      for (const row of pending.splice(0)) row.base = meanOf(before === undefined ? [after] : [before, after]);
      before = after;
    };
    const warmed = new Set<StoreKind>();
    const setup = (base: string, family: Family) => ({
      base,
      family,
      connections: opts.connections,
      payload: 'x'.repeat(opts.payloadBytes),
    });
    for (const store of opts.stores) {
      const replica = replicas.get(store)!;
      for (const family of families) {
        const ok = await available(replica.url, family);
        if (!ok) {
          step += 1 + SCENARIOS.length;
          for (const scenario of SCENARIOS) rows.push({ family: family.name, store, scenario, available: false });
          continue;
        }
        if (!warmed.has(store) && opts.replicaWarmupS > 0) {
          // A fresh process runs its first seconds slower (JIT, V8 growing its young generation):
          // without this, the first scenario of each store measured that instead of the server.
          warmed.add(store);
          status(`warming up the ${store} replica`);
          await measure({
            url: replica.url,
            connections: opts.connections,
            durationS: opts.replicaWarmupS,
            warmupS: 0,
            requests: (await prepare('exchange', { ...setup(replica.url, family), check: new Checker() })).requests,
            check: new Checker(),
          });
        }
        await bracket(`before ${family.name} ${store}`);
        for (const scenario of SCENARIOS) {
          step++;
          const label = `${family.name} ${store} ${scenario}`;
          status(label);
          const check = new Checker();
          const prepared = await prepare(scenario, {
            base: replica.url,
            family,
            connections: opts.connections,
            payload: 'x'.repeat(opts.payloadBytes),
            check,
          });
          const m = await measure({
            url: replica.url,
            connections: opts.connections,
            durationS: opts.durationS,
            warmupS: opts.warmupS,
            requests: prepared.requests,
            check,
            ...(prepared.status === undefined ? {} : { status: prepared.status }),
            pids: store === 'redis' ? { server: replica.proc.pid!, redis: redisPid } : { server: replica.proc.pid! },
            tick: (left) => status(label, left),
          });
          const row: Row = {
            family: family.name,
            store,
            scenario,
            available: true,
            m,
            ...(prepared.steps > 1 ? { opsPerSec: m.rps / prepared.steps } : {}),
          };
          rows.push(row);
          pending.push(row);
        }
      }
    }
    await bracket('end');

    step++;
    status(`memory: ${opts.memorySessions} sessions of ${opts.memoryPayloadBytes} bytes`);
    const memory: MemoryFigures = { sessions: opts.memorySessions, payloadBytes: opts.memoryPayloadBytes };
    if (opts.stores.includes('redis')) {
      memory.redis = await redisMemory({
        replicaUrl: replicas.get('redis')!.url,
        redisPort: redis.port,
        sessions: opts.memorySessions,
        payloadBytes: opts.memoryPayloadBytes,
        connections: opts.connections,
      });
    }
    if (opts.stores.includes('memory')) {
      const rss = await memoryStoreRss({
        sessions: opts.memorySessions,
        payloadBytes: opts.memoryPayloadBytes,
        connections: opts.connections,
      });
      if (rss !== undefined) memory.memory = rss;
    }

    let longpoll: BenchResults['longpoll'];
    if (opts.longpoll !== undefined) {
      step++;
      status('long-poll');
      longpoll = await runLongPollBench({ ...opts.longpoll, progress: (line) => status(line) });
    }

    const { progress: _progress, ...options } = opts;
    return {
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date().toISOString(),
      seconds: (Date.now() - started) / 1000,
      options,
      machine: mach,
      baselines,
      baseline: meanOf(baselines.map((x) => x.m)),
      redis: ceiling,
      rows,
      memory,
      ...(longpoll === undefined ? {} : { longpoll }),
    };
  } finally {
    await Promise.all([...replicas.values()].map((r) => r.stop()));
    await bare.stop();
    await redis.destroy();
  }
}
