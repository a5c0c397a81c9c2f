import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { FAMILIES, type Family, familyNamed } from './families';
import { send } from './http';
import { measure, type Measurement } from './measure';
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
  /** Payload of creates and writes. */
  payloadBytes: number;
  /** Sessions created for the memory figures, and their payload. */
  memorySessions: number;
  memoryPayloadBytes: number;
  /** Commands per redis-benchmark run. */
  redisRequests: number;
  /** Receives a one-line status while the run goes on. */
  progress: (line: string) => void;
}

export const FULL: Omit<BenchOptions, 'progress'> = {
  connections: 50,
  durationS: 5,
  warmupS: 1,
  families: FAMILIES.map((f) => f.name),
  stores: ['redis', 'memory'],
  payloadBytes: 256,
  memorySessions: 10_000,
  memoryPayloadBytes: 1024,
  redisRequests: 200_000,
};

/** Seconds-long settings that only prove the harness works end to end (used by npm test). */
export const SMOKE: Omit<BenchOptions, 'progress'> = {
  connections: 5,
  durationS: 0.5,
  warmupS: 0.2,
  families: ['MSC3886'],
  stores: ['redis', 'memory'],
  payloadBytes: 256,
  memorySessions: 200,
  memoryPayloadBytes: 1024,
  redisRequests: 2_000,
};

export interface Row {
  family: string;
  store: StoreKind;
  scenario: ScenarioName;
  /** False when the family's create route answers 404 on this build. */
  available: boolean;
  m?: Measurement;
  /** Operations per second when one operation is several requests (the exchange). */
  opsPerSec?: number;
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
  baseline: { start: Measurement; end: Measurement; rps: number; p50: number; p99: number; max: number };
  redis: CeilingRow[];
  rows: Row[];
  memory: MemoryFigures;
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

/** Whether this build serves the family: its create route must not be 404. */
async function available(base: string, family: Family): Promise<boolean> {
  return (await send(base, family.create(''))).status !== 404;
}

/** Runs every measurement with its own redis-server and replicas; nothing shared outside the run. */
export async function runBench(opts: BenchOptions): Promise<BenchResults> {
  const started = Date.now();
  const mach = machine();
  const families = opts.families.map(familyNamed);
  const plan = 2 + 1 + opts.stores.length * families.length * SCENARIOS.length + 1;
  let step = 0;
  const status = (what: string, left?: number) =>
    opts.progress(`[${String(step).padStart(2)}/${plan}] ${what}${left === undefined ? '' : ` ${left}s`}`);

  const redis = await RedisServer.start();
  const bare = await BareNode.start();
  const replicas = new Map<StoreKind, Replica>();
  try {
    for (const store of opts.stores) replicas.set(store, await startReplica(store === 'redis' ? redis.url : undefined));

    const baselineRun = async (label: string) => {
      step++;
      const check = new Checker();
      const requests = [{ method: 'GET', path: '/bench', headers: { 'If-None-Match': '"AAAAAAAA.1"' } }];
      status(`bare Node 304 (${label})`);
      return measure({
        url: bare.url,
        connections: opts.connections,
        durationS: opts.durationS,
        warmupS: opts.warmupS,
        requests: requests as never,
        check,
        status: 304,
        tick: (left) => status(`bare Node 304 (${label})`, left),
      });
    };
    const baseStart = await baselineRun('start');

    step++;
    status('Redis ceiling (redis-benchmark)');
    const ceiling = await redisCeiling({
      port: redis.port,
      connections: opts.connections,
      requests: opts.redisRequests,
      payload: 'x'.repeat(opts.payloadBytes),
    });

    const rows: Row[] = [];
    for (const store of opts.stores) {
      const replica = replicas.get(store)!;
      for (const family of families) {
        const ok = await available(replica.url, family);
        for (const scenario of SCENARIOS) {
          step++;
          const label = `${family.name} ${store} ${scenario}`;
          if (!ok) {
            rows.push({ family: family.name, store, scenario, available: false });
            continue;
          }
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
            tick: (left) => status(label, left),
          });
          rows.push({
            family: family.name,
            store,
            scenario,
            available: true,
            m,
            ...(prepared.steps > 1 ? { opsPerSec: m.rps / prepared.steps } : {}),
          });
        }
      }
    }

    const baseEnd = await baselineRun('end');

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

    const mean = (a: number, b: number) => (a + b) / 2;
    const { progress: _progress, ...options } = opts;
    return {
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date().toISOString(),
      seconds: (Date.now() - started) / 1000,
      options,
      machine: mach,
      baseline: {
        start: baseStart,
        end: baseEnd,
        rps: mean(baseStart.rps, baseEnd.rps),
        p50: mean(baseStart.p50, baseEnd.p50),
        p99: mean(baseStart.p99, baseEnd.p99),
        max: mean(baseStart.max, baseEnd.max),
      },
      redis: ceiling,
      rows,
      memory,
    };
  } finally {
    await Promise.all([...replicas.values()].map((r) => r.stop()));
    await bare.stop();
    await redis.destroy();
  }
}
