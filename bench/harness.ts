import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { Redis } from 'ioredis';
import { CommandCounter } from './commands';
import { FAMILIES, type Family, familyNamed, type Req } from './families';
import { send } from './http';
import { measure, measureWrk, type Measurement } from './measure';
import { LONGPOLL_FULL, type LongPollBenchOptions, type LongPollResults, runLongPollBench } from './longpoll';
import { type MemoryFigures, memoryStoreRss, redisMemory } from './memory';
import {
  LIMITS_OFF,
  REPLICA_ENV,
  RedisServer,
  type Replica,
  startBareNode,
  startFloor,
  startReplica,
  type FloorMode,
} from './processes';
import { type CeilingRow, redisCeiling } from './redis-ceiling';
import {
  Checker,
  FIXED_SCENARIOS,
  SCENARIOS,
  type ScenarioName,
  fixedRequest,
  prepare,
  scenariosOf,
} from './scenarios';
import { answered, served } from './served';
import { wrkVersion } from './wrk';

export type StoreKind = 'redis' | 'memory';

/** The key the poll floors read (a plain string holding the polled payload). */
const FLOOR_KEY = 'bench:floor';

export interface BenchOptions {
  connections: number;
  durationS: number;
  warmupS: number;
  families: string[];
  stores: StoreKind[];
  /** Seconds of mixed load each replica gets once, before its first measurement. */
  replicaWarmupS: number;
  /**
   * How bare Node is measured. 'scenario': a wrk scenario's measured window is cut into slices that
   * alternate with bare Node slices (a shared machine's load changes within seconds: both sides see
   * the same), and an autocannon scenario runs between two bare Node runs of its own. 'family': bare
   * Node before each family and at the end, each row compared with the runs around its family.
   */
  baselineEvery: 'scenario' | 'family';
  /** Measured seconds of each bare Node run of its own (around an autocannon scenario, or per family). */
  baselineS: number;
  /** With bare Node interleaved: slices of each side in a wrk scenario's measured window. */
  slices: number;
  /** Payload of the polled sessions and of writes. */
  payloadBytes: number;
  /** Payload of the create scenario. */
  createPayloadBytes: number;
  /** wrk threads. */
  wrkThreads: number;
  /** Seconds of each MONITOR pass that counts Redis commands per request. */
  commandsS: number;
  /** Also measure create and poll-200 of the first family with every limit off, for reference. */
  limitsOff: boolean;
  /** Also measure the floors (bench/floor.mjs): the same paths built from the same parts, nothing else. */
  floors: boolean;
  /** Sessions created for the memory figures, and their payload. */
  memorySessions: number;
  memoryPayloadBytes: number;
  /** Pause before each used_memory reading of the memory figures. */
  memorySettleMs: number;
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
  baselineEvery: 'scenario',
  baselineS: 2,
  slices: 4,
  families: FAMILIES.map((f) => f.name),
  stores: ['redis'],
  payloadBytes: 256,
  createPayloadBytes: 1024,
  wrkThreads: 1,
  commandsS: 1,
  limitsOff: true,
  floors: true,
  memorySessions: 10_000,
  memoryPayloadBytes: 1024,
  memorySettleMs: 600,
  redisRequests: 200_000,
  // V8 gives the burst's memory back 25-40 s after it; 45 s of settling keeps the run under 6 minutes.
  longpoll: { ...LONGPOLL_FULL, settleSeconds: 45 },
};

/**
 * Seconds-long settings that only prove the harness works end to end (used by npm test). The
 * long-poll part is left out: it has its own tests, and its smoke run alone takes ten seconds.
 */
export const SMOKE: Omit<BenchOptions, 'progress'> = {
  connections: 5,
  // autocannon runs whole seconds, and so does wrk: 1 s is the shortest run.
  durationS: 1,
  warmupS: 0,
  replicaWarmupS: 0,
  baselineEvery: 'scenario',
  baselineS: 1,
  slices: 1,
  families: ['MSC3886'],
  stores: ['redis', 'memory'],
  payloadBytes: 256,
  createPayloadBytes: 1024,
  wrkThreads: 1,
  commandsS: 1,
  limitsOff: false,
  floors: true,
  memorySessions: 200,
  memoryPayloadBytes: 1024,
  memorySettleMs: 100,
  redisRequests: 2_000,
};

export type Figures = Pick<Measurement, 'rps' | 'p50' | 'p99' | 'max'> & { cpuUs?: number };

export type Limits = 'active' | 'off';

export interface Row {
  family: string;
  store: StoreKind;
  /** Every limit active (budgets too large to refuse), or every limit off (reference rows). */
  limits: Limits;
  scenario: ScenarioName;
  /** False when the family's create route answers 404 on this build. */
  available: boolean;
  m?: Measurement;
  /**
   * When wrk stalled on a fixed request: the same request measured with autocannon (which reads a
   * 304 as bodiless whatever its headers say). Shown for information; not a figure of record.
   */
  fallback?: Measurement;
  /** Operations per second when one operation is several requests (the exchange). */
  opsPerSec?: number;
  /** The bare Node figures this row is compared with: the mean of the runs just before and after it. */
  base?: Figures;
}

/** A floor (bench/floor.mjs) measured like a scenario: with wrk, bare Node interleaved. */
export interface FloorRow {
  mode: FloorMode;
  /** The service's scenario it is the floor of. */
  scenario: 'poll-200' | 'create';
  m: Measurement;
  base?: Figures;
}

/** The floors of the single-region paths, in the order they are measured. */
export const FLOORS: readonly { mode: FloorMode; scenario: FloorRow['scenario'] }[] = [
  { mode: 'http-poll', scenario: 'poll-200' },
  { mode: 'koa-poll', scenario: 'poll-200' },
  { mode: 'koa-create', scenario: 'create' },
];

/** Redis commands per request of one scenario, from a MONITOR pass of its own. */
export interface CommandRow {
  family: string;
  scenario: ScenarioName;
  tool: 'wrk' | 'autocannon';
  /** Requests the replica answered in the window (its /metrics counter). */
  requests: number;
  /** Commands clients sent (a script call counts once). */
  commands: number;
  perRequest: number;
  /** Commands per request by name. */
  byName: Record<string, number>;
  /** Commands scripts ran inside, per request (not counted above). */
  insideScriptsPerRequest: number;
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
  loadAverageAtEnd?: number[];
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  seconds: number;
  options: Omit<BenchOptions, 'progress'>;
  /** What the measured replicas were started with (limits), besides the store. */
  replicaEnv: Record<string, string>;
  machine: Machine;
  /** Every bare Node run, in order, with the 1-minute load average just before it. */
  baselines: { label: string; m: Measurement; load1: number }[];
  /** Their mean, for the summary. */
  baseline: Figures;
  redis: CeilingRow[];
  rows: Row[];
  floors: FloorRow[];
  commands: CommandRow[];
  memory: MemoryFigures;
  longpoll?: { results: LongPollResults; markdown: string };
}

function machine(): Machine {
  const cpus = os.cpus();
  const redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  const ac = (require('autocannon/package.json') as { version: string }).version;
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis,
    loadGenerator: `${wrkVersion()} (fixed requests); autocannon ${ac} in the bench process (write, exchange)`,
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

async function flushRedis(port: number): Promise<void> {
  const client = new Redis({ port, host: '127.0.0.1' });
  try {
    await client.flushall('SYNC');
  } finally {
    client.disconnect();
  }
}

/** Whether this build serves the family: its create route must not be 404. */
async function available(base: string, family: Family): Promise<boolean> {
  return (await send(base, family.create(''))).status !== 404;
}

const isFixed = (s: ScenarioName) => FIXED_SCENARIOS.includes(s);

/** Runs every measurement with its own redis-server and replicas; nothing shared outside the run. */
export async function runBench(opts: BenchOptions): Promise<BenchResults> {
  const started = Date.now();
  const mach = machine();
  const families = opts.families.map(familyNamed);
  const interleaved = opts.baselineEvery === 'scenario';
  const scenarioCount = families.reduce((n, f) => n + scenariosOf(f).length, 0);
  const sequenceCount = families.reduce((n, f) => n + scenariosOf(f).filter((x) => !isFixed(x)).length, 0);
  const commandPasses = opts.stores.includes('redis')
    ? families.reduce((n, f) => n + commandScenarios(f).length, 0)
    : 0;
  const limitsOffSteps = opts.limitsOff && opts.stores.includes('redis') ? 2 : 0;
  const floorSteps = opts.floors && opts.stores.includes('redis') ? FLOORS.length : 0;
  // Steps: the ceiling, every scenario, the limits-off and floor rows (with a bare Node run before
  // each group when not interleaved), the bare Node runs (around each autocannon scenario, or one per
  // family, and one at the end), the commands passes, memory, long-poll. A stall adds two.
  let plan =
    1 +
    opts.stores.length * (scenarioCount + (interleaved ? sequenceCount + families.length : families.length)) +
    limitsOffSteps +
    floorSteps +
    (interleaved ? 0 : limitsOffSteps > 0 ? 1 : 0) +
    (interleaved ? 0 : floorSteps > 0 ? 1 : 0) +
    (interleaved ? 0 : 1) +
    commandPasses +
    1 +
    (opts.longpoll === undefined ? 0 : 1);
  let step = 0;
  const status = (what: string, left?: number) => {
    plan = Math.max(plan, step);
    opts.progress(`[${String(step).padStart(2)}/${plan}] ${what}${left === undefined ? '' : ` ${left}s`}`);
  };

  const redis = await RedisServer.start();
  const redisPid = await pidOfRedis(redis.port);
  const bare = await startBareNode();
  const bareReq: Req = { method: 'GET', path: '/bench', headers: { 'If-None-Match': '"AAAAAAAA.1"' } };
  const replicas = new Map<StoreKind, Replica>();
  let limitsOffReplica: Replica | undefined;
  try {
    for (const store of opts.stores) replicas.set(store, await startReplica(store === 'redis' ? redis.url : undefined));

    // The machine may be shared: bare Node is measured next to every scenario, so a change of load
    // moves both sides alike (see BenchOptions.baselineEvery).
    const baselines: BenchResults['baselines'] = [];
    let lastWasBare = false;
    const baselineRun = async (label: string) => {
      step++;
      status(`bare Node 304 (${label})`);
      const load1 = os.loadavg()[0]!;
      const { m } = await measureWrk({
        url: bare.url,
        req: bareReq,
        status: 304,
        connections: opts.connections,
        durationS: opts.baselineS,
        warmupS: baselines.length === 0 ? opts.warmupS : 0,
        threads: opts.wrkThreads,
        pids: { server: bare.proc.pid! },
        tick: (left) => status(`bare Node 304 (${label})`, left),
      });
      baselines.push({ label, m, load1 });
      lastWasBare = true;
      return m;
    };

    step++;
    status('Redis ceiling (redis-benchmark)');
    const ceiling = await redisCeiling({
      port: redis.port,
      connections: opts.connections,
      requests: opts.redisRequests,
      payload: 'x'.repeat(opts.payloadBytes),
      createPayload: 'x'.repeat(opts.createPayloadBytes),
      caps: {
        global: Number(REPLICA_ENV.RZ_MAX_SESSIONS),
        perAddress: Number(REPLICA_ENV.RZ_MAX_SESSIONS_PER_ADDRESS),
      },
    });

    const rows: Row[] = [];
    /** Rows measured since the last bare Node run: compared with the mean of it and the next one. */
    const pending: { base?: Figures }[] = [];
    let before: Measurement | undefined;
    const bracket = async (label: string) => {
      const after = await baselineRun(label);
      for (const row of pending.splice(0)) row.base = meanOf(before === undefined ? [after] : [before, after]);
      before = after;
    };
    /** A measurement with bare Node right before it and right after it (interleaved mode). */
    const bracketed = async <T>(label: string, run: () => Promise<T>): Promise<T> => {
      if (!lastWasBare) await bracket(`before ${label}`);
      lastWasBare = false;
      const result = await run();
      return result;
    };
    const payload = 'x'.repeat(opts.payloadBytes);
    const createPayload = 'x'.repeat(opts.createPayloadBytes);
    /** The sessions `scenario` needs on `replica`, made, and the requests that use them. */
    const prepareOn = (replica: Replica, family: Family, scenario: ScenarioName, check: Checker) =>
      prepare(scenario, { base: replica.url, family, connections: opts.connections, payload, createPayload, check });

    /** One scenario on one replica: wrk for a fixed request, autocannon for a sequence. */
    const scenarioRow = async (
      replica: Replica,
      store: StoreKind,
      limits: Limits,
      family: Family,
      scenario: ScenarioName,
    ): Promise<Row> => {
      step++;
      const label = `${family.name} ${store}${limits === 'off' ? ' limits-off' : ''} ${scenario}`;
      status(label);
      const pids: Record<string, number> =
        store === 'redis' ? { server: replica.proc.pid!, redis: redisPid } : { server: replica.proc.pid! };
      const autocannonRun = async (durationS: number, warmupS: number) => {
        const check = new Checker();
        const prepared = await prepareOn(replica, family, scenario, check);
        const m = await measure({
          url: replica.url,
          connections: opts.connections,
          durationS,
          warmupS,
          requests: prepared.requests,
          check,
          ...(prepared.status === undefined ? {} : { status: prepared.status }),
          pids,
          tick: (left) => status(label, left),
        });
        return { m, steps: prepared.steps };
      };
      let row: Row;
      if (isFixed(scenario)) {
        const { req, status: expected } = await fixedRequest(scenario, {
          base: replica.url,
          family,
          payload,
          createPayload,
        });
        lastWasBare = false;
        const load1 = os.loadavg()[0]!;
        const { m, base } = await measureWrk({
          url: replica.url,
          req,
          status: expected,
          family: family.name,
          connections: opts.connections,
          durationS: opts.durationS,
          warmupS: opts.warmupS,
          threads: opts.wrkThreads,
          pids,
          tick: (left) => status(label, left),
          ...(interleaved
            ? { interleave: { url: bare.url, req: bareReq, pids: { server: bare.proc.pid! }, slices: opts.slices } }
            : {}),
        });
        row = { family: family.name, store, limits, scenario, available: true, m };
        if (base !== undefined) {
          row.base = meanOf([base]);
          baselines.push({ label: `interleaved with ${label}`, m: base, load1 });
        }
        if (m.stalled) {
          status(`${label}: wrk stalled, autocannon for reference`);
          row.fallback = (
            interleaved
              ? await bracketed(label, () => autocannonRun(opts.durationS, 0))
              : await autocannonRun(opts.durationS, 0)
          ).m;
          pending.push(row);
          if (interleaved) await bracket(`after ${label} (autocannon)`);
        } else if (!interleaved) {
          pending.push(row);
        }
      } else {
        const { m, steps } = interleaved
          ? await bracketed(label, () => autocannonRun(opts.durationS, opts.warmupS))
          : await autocannonRun(opts.durationS, opts.warmupS);
        row = {
          family: family.name,
          store,
          limits,
          scenario,
          available: true,
          m,
          ...(steps > 1 ? { opsPerSec: m.rps / steps } : {}),
        };
        pending.push(row);
        if (interleaved) await bracket(`after ${label}`);
      }
      // A create run leaves tens of thousands of sessions behind, which would expire (costing Redis
      // CPU) in the middle of later scenarios. Sessions, caps and rate counts go together, so what
      // is left is consistent; each later scenario creates the sessions it needs.
      if (scenario === 'create' && store === 'redis') await flushRedis(redis.port);
      return row;
    };

    const warmUp = async (replica: Replica, family: Family, what: string) => {
      if (opts.replicaWarmupS <= 0) return;
      // A fresh process runs its first seconds slower (JIT, V8 growing its young generation):
      // without this, the first scenario of each replica measured that instead of the server.
      status(`warming up the ${what} replica`);
      lastWasBare = false;
      const check = new Checker();
      await measure({
        url: replica.url,
        connections: opts.connections,
        durationS: opts.replicaWarmupS,
        warmupS: 0,
        requests: (await prepareOn(replica, family, 'exchange', check)).requests,
        check,
      });
    };

    for (const store of opts.stores) {
      const replica = replicas.get(store)!;
      let warmed = false;
      for (const family of families) {
        const ok = await available(replica.url, family);
        if (!ok) {
          for (const scenario of scenariosOf(family)) {
            rows.push({ family: family.name, store, limits: 'active', scenario, available: false });
          }
          continue;
        }
        if (!warmed) {
          warmed = true;
          await warmUp(replica, family, store);
        }
        if (!interleaved) await bracket(`before ${family.name} ${store}`);
        for (const scenario of scenariosOf(family))
          rows.push(await scenarioRow(replica, store, 'active', family, scenario));
      }
    }

    if (opts.limitsOff && opts.stores.includes('redis') && families.length > 0) {
      // For reference: what the limits cost, on the same Redis, with every limit off.
      const family = families[0]!;
      limitsOffReplica = await startReplica(redis.url, LIMITS_OFF);
      if (await available(limitsOffReplica.url, family)) {
        await warmUp(limitsOffReplica, family, 'limits-off');
        if (!interleaved) await bracket(`before ${family.name} redis limits-off`);
        for (const scenario of ['create', 'poll-200'] as const) {
          rows.push(await scenarioRow(limitsOffReplica, 'redis', 'off', family, scenario));
        }
      }
      await limitsOffReplica.stop();
      limitsOffReplica = undefined;
    }
    const floors: FloorRow[] = [];
    if (floorSteps > 0) {
      const seed = new Redis(redis.url);
      try {
        await seed.set(FLOOR_KEY, payload);
      } finally {
        seed.disconnect();
      }
      // Compared with bare Node runs of their own when bare Node is not interleaved.
      if (!interleaved) await bracket('before the floors');
      for (const floor of FLOORS) {
        step++;
        const label = `floor: ${floor.mode}`;
        status(label);
        const server = await startFloor(floor.mode, redis.url, FLOOR_KEY);
        try {
          const req: Req =
            floor.scenario === 'create'
              ? { method: 'POST', path: '/', headers: {}, body: createPayload }
              : { method: 'GET', path: '/', headers: {} };
          lastWasBare = false;
          const load1 = os.loadavg()[0]!;
          const { m, base } = await measureWrk({
            url: server.url,
            req,
            // A floor has no /metrics to read its statuses from: it answers anything but this with a
            // 5xx, which wrk counts.
            status: floor.scenario === 'create' ? 201 : 200,
            connections: opts.connections,
            durationS: opts.durationS,
            warmupS: opts.warmupS,
            threads: opts.wrkThreads,
            pids: { server: server.proc.pid!, redis: redisPid },
            tick: (left) => status(label, left),
            ...(interleaved
              ? { interleave: { url: bare.url, req: bareReq, pids: { server: bare.proc.pid! }, slices: opts.slices } }
              : {}),
          });
          const row: FloorRow = { ...floor, m };
          floors.push(row);
          if (base === undefined) {
            pending.push(row);
          } else {
            row.base = meanOf([base]);
            baselines.push({ label: `interleaved with ${label}`, m: base, load1 });
          }
        } finally {
          await server.stop();
        }
        if (floor.scenario === 'create') await flushRedis(redis.port);
      }
    }
    if (pending.length > 0 || baselines.length === 0) await bracket('end');

    const commands: CommandRow[] = [];
    const redisReplica = replicas.get('redis');
    if (redisReplica !== undefined) {
      for (const family of families) {
        if (!(await available(redisReplica.url, family))) {
          step += commandScenarios(family).length;
          continue;
        }
        for (const scenario of commandScenarios(family)) {
          step++;
          status(`Redis commands per request: ${family.name} ${scenario} (MONITOR)`);
          const stalled = rows.find(
            (r) => r.store === 'redis' && r.limits === 'active' && r.family === family.name && r.scenario === scenario,
          )?.m?.stalled;
          commands.push(
            await countCommands({
              replica: redisReplica,
              redisPort: redis.port,
              family,
              scenario,
              tool: isFixed(scenario) && !stalled ? 'wrk' : 'autocannon',
              connections: opts.connections,
              durationS: opts.commandsS,
              threads: opts.wrkThreads,
              payload,
              createPayload,
            }),
          );
          if (scenario === 'create') await flushRedis(redis.port);
        }
      }
    }

    step++;
    status(`memory: ${opts.memorySessions} sessions of ${opts.memoryPayloadBytes} bytes`);
    const memory: MemoryFigures = { sessions: opts.memorySessions, payloadBytes: opts.memoryPayloadBytes };
    if (opts.stores.includes('redis')) {
      memory.redis = await redisMemory({
        sessions: opts.memorySessions,
        payloadBytes: opts.memoryPayloadBytes,
        connections: opts.connections,
        ttlSeconds: Number(REPLICA_ENV.RZ_TTL_SECONDS),
        settleMs: opts.memorySettleMs,
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
      replicaEnv: REPLICA_ENV,
      machine: { ...mach, loadAverageAtEnd: os.loadavg() },
      baselines,
      baseline: meanOf(baselines.map((x) => x.m)),
      redis: ceiling,
      rows,
      floors,
      commands,
      memory,
      ...(longpoll === undefined ? {} : { longpoll }),
    };
  } finally {
    await limitsOffReplica?.stop();
    await Promise.all([...replicas.values()].map((r) => r.stop()));
    await bare.stop();
    await redis.destroy();
  }
}

/** The scenarios whose Redis commands per request are counted: the fixed ones and the write. */
function commandScenarios(family: Family): ScenarioName[] {
  return scenariosOf(family).filter((s) => s !== 'exchange');
}

/**
 * Redis commands per request of one scenario: a short run of its own with MONITOR watching Redis,
 * its commands (a script counting once) divided by the requests the replica answered meanwhile.
 */
async function countCommands(opts: {
  replica: Replica;
  redisPort: number;
  family: Family;
  scenario: ScenarioName;
  tool: 'wrk' | 'autocannon';
  connections: number;
  durationS: number;
  threads: number;
  payload: string;
  createPayload: string;
}): Promise<CommandRow> {
  const { replica, family, scenario } = opts;
  const base = replica.url;
  const check = new Checker();
  // Sessions the scenario needs are made before the window opens.
  const fixed =
    opts.tool === 'wrk'
      ? await fixedRequest(scenario, { base, family, payload: opts.payload, createPayload: opts.createPayload })
      : undefined;
  const prepared =
    fixed === undefined
      ? await prepare(scenario, {
          base,
          family,
          connections: opts.connections,
          payload: opts.payload,
          createPayload: opts.createPayload,
          check,
        })
      : undefined;
  const method = scenario === 'create' ? 'POST' : scenario === 'write' ? 'PUT' : 'GET';
  const before = await served(base);
  const counter = await CommandCounter.start(opts.redisPort);
  try {
    if (fixed !== undefined) {
      await measureWrk({
        url: base,
        req: fixed.req,
        status: fixed.status,
        connections: opts.connections,
        durationS: opts.durationS,
        warmupS: 0,
        threads: opts.threads,
      });
    } else {
      await measure({
        url: base,
        connections: opts.connections,
        durationS: opts.durationS,
        warmupS: 0,
        requests: prepared!.requests,
        check,
        ...(prepared!.status === undefined ? {} : { status: prepared!.status }),
      });
    }
  } finally {
    await counter.stop(opts.redisPort);
  }
  const requests = answered(before, await served(base), family.name, method).total;
  const commands = counter.total;
  const per = (n: number) => (requests > 0 ? n / requests : NaN);
  return {
    family: family.name,
    scenario,
    tool: opts.tool,
    requests,
    commands,
    perRequest: per(commands),
    byName: Object.fromEntries([...counter.byName].map(([name, n]) => [name, per(n)])),
    insideScriptsPerRequest: per(counter.insideScripts),
  };
}

export { SCENARIOS };
