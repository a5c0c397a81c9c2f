import type { BenchResults, CommandRow, Figures, FloorRow, Row } from './harness';
import type { Measurement } from './measure';
import { aboveBare, type MemoryFill } from './memory';

export interface Target {
  what: string;
  target: string;
  measured: string;
  /** undefined when it could not be measured in this run (say why in `measured`). */
  pass: boolean | undefined;
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–');
const ratio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '–');
const bytes = (n: number) => `${int(n)} B`;
const signed = (n: number) => `${n >= 0 ? '+' : '−'}${int(Math.abs(n))} B`;
const us = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(0));
const per = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : '–');

/** The issue's throughput targets: each path's req/s as a fraction of bare Node's in the same run. */
export const THROUGHPUT_TARGETS: { scenario: Row['scenario']; what: (family: string) => string; min: number }[] = [
  { scenario: 'poll-200', what: (f) => `poll, \`GET\` answered 200 (256-byte payload), ${f}`, min: 0.4 },
  { scenario: 'poll-304', what: (f) => `poll answered 304, ${f}`, min: 0.4 },
  { scenario: 'create', what: (f) => `create (1 KiB payload), ${f}`, min: 0.25 },
];
export const MAX_COMMANDS_PER_POLL = 1.2;
export const MAX_COMMANDS_PER_CREATE = 2.2;
export const MAX_BYTES_ABOVE_BARE = 150;

const POLLS: readonly Row['scenario'][] = ['poll-200', 'poll-304'];

function scenarioLabel(family: string, scenario: Row['scenario']): string {
  if (family === 'MSC4388' && scenario === 'poll-200') return 'poll, MSC4388 `GET` (200, 256-byte payload)';
  return THROUGHPUT_TARGETS.find((t) => t.scenario === scenario)?.what(family) ?? `${scenario}, ${family}`;
}

/**
 * The issue's targets, checked against this run: one replica on Redis with every limit active,
 * wrk at the run's concurrency, ratios to bare Node measured around the same rows.
 */
export function targets(r: BenchResults): Target[] {
  const out: Target[] = [];
  const record = r.rows.filter((x) => x.store === 'redis' && x.limits === 'active' && x.available && x.m);
  for (const t of THROUGHPUT_TARGETS) {
    for (const row of record.filter((x) => x.scenario === t.scenario)) {
      const m = row.m!;
      const base = (row.base ?? r.baseline).rps;
      const what = scenarioLabel(row.family, row.scenario);
      const target = `≥ ${t.min.toFixed(2)} of bare Node req/s`;
      if (m.stalled) {
        const f = row.fallback;
        const reference = f === undefined ? '' : `; autocannon, for reference only: ${ratio(f.rps / base)}`;
        out.push({ what, target, measured: `not measured: wrk stalled${reference}`, pass: undefined });
        continue;
      }
      out.push({
        what,
        target,
        measured: `${ratio(m.rps / base)} (${int(m.rps)} / ${int(base)} req/s)${floorNote(r, row.scenario)}`,
        pass: m.rps >= t.min * base,
      });
    }
  }
  for (const c of r.commands) {
    const poll = POLLS.includes(c.scenario);
    if (!poll && c.scenario !== 'create') continue;
    const max = poll ? MAX_COMMANDS_PER_POLL : MAX_COMMANDS_PER_CREATE;
    out.push({
      what: `Redis commands per ${poll ? 'poll' : 'create'}, ${scenarioLabel(c.family, c.scenario)}`,
      target: `≤ ${max}`,
      measured: `${per(c.perRequest)} (${int(c.commands)} commands / ${int(c.requests)} requests)`,
      pass: c.perRequest <= max,
    });
  }
  if (r.memory.redis) {
    const a = aboveBare(r.memory.redis);
    out.push({
      what: `Redis memory per session above a bare \`SET key payload PX ttl\` (${int(r.memory.payloadBytes)}-byte payload), worst of one address and distinct addresses`,
      target: `≤ ${MAX_BYTES_ABOVE_BARE} B`,
      measured: `${signed(a.worst)} (one address ${signed(a.oneAddress)}, distinct addresses ${signed(a.distinctAddresses)})`,
      pass: a.worst <= MAX_BYTES_ABOVE_BARE,
    });
  }
  const measured = r.rows.filter((x) => x.m !== undefined);
  const errors = measured.reduce((n, x) => n + x.m!.errors, 0);
  out.push({
    what: 'zero errors in every scenario (the bench’s own check)',
    target: '0',
    measured: `${errors} errors`,
    pass: errors === 0,
  });
  return out;
}

/** What each floor of bench/floor.mjs is, for the report. */
function floorLabel(f: FloorRow, o: BenchResults['options']): string {
  switch (f.mode) {
    case 'http-poll':
      return `node \`http\` + ioredis: one \`GET\`, 200 with the ${o.payloadBytes}-byte payload and a poll's headers`;
    case 'koa-poll':
      return 'the same, as the one middleware of a bare Koa app';
    case 'koa-create':
      return `bare Koa + ioredis: reads the ${int(o.createPayloadBytes)}-byte body, one \`SET NX PX\` of a random id, 201 with JSON`;
    default:
      return f.mode;
  }
}

/** A floor's req/s over bare Node's around it. */
function floorRatio(f: FloorRow, r: BenchResults): number {
  return f.m.rps / (f.base ?? r.baseline).rps;
}

/** The Koa floor of a scenario in this run, as a note beside the scenario's target. */
function floorNote(r: BenchResults, scenario: Row['scenario']): string {
  const koa = r.floors.find((f) => f.scenario === scenario && f.mode.startsWith('koa-'));
  return koa === undefined ? '' : `; bare Koa floor ${ratio(floorRatio(koa, r))}`;
}

function verdict(pass: boolean | undefined): string {
  return pass === undefined ? '**not measured**' : pass ? 'met' : '**not met**';
}

function figures(m: Measurement, base: Figures): string {
  return (
    `${ms(m.p50)} | ${ratio(m.p50 / base.p50)} | ${ms(m.p99)} | ${ratio(m.p99 / base.p99)} | ` +
    `${ms(m.max)} | ${ratio(m.max / base.max)} | ${us(m.cpuUsPerRequest?.server)} | ` +
    `${ratio((m.cpuUsPerRequest?.server ?? NaN) / (base.cpuUs ?? NaN))} | ${us(m.cpuUsPerRequest?.redis)} | ` +
    `${us(m.cpuUsPerRequest?.generator)}`
  );
}

function errorsCell(m: Measurement): string {
  return `${m.errors}${m.firstError ? ` (${m.firstError})` : ''}`;
}

function scenarioRow(x: Row, fallback: Figures): string[] {
  const base = x.base ?? fallback;
  const head = `| ${x.family} | ${x.store} | ${x.limits} | ${x.scenario}`;
  if (!x.available || x.m === undefined) {
    return [`${head} | | not available (create route answers 404) | | | | | | | | | | | | | | |`];
  }
  const m = x.m;
  if (m.stalled) {
    const lines = [`${head} | ${m.tool} | **stalled** | | – | | | | | | | | | | | | ${errorsCell(m)} |`];
    if (x.fallback) {
      const f = x.fallback;
      lines.push(
        `${head} | ${f.tool}, for reference only | ${int(f.rps)} | ${int(base.rps)} | ${ratio(f.rps / base.rps)} | ` +
          `${figures(f, base)} | ${errorsCell(f)} |`,
      );
    }
    return lines;
  }
  const rps = x.opsPerSec === undefined ? int(m.rps) : `${int(m.rps)} (${int(x.opsPerSec)} exchanges/s)`;
  return [
    `${head} | ${m.tool} | ${rps} | ${int(base.rps)} | ${ratio(m.rps / base.rps)} | ${figures(m, base)} | ${errorsCell(m)} |`,
  ];
}

function commandRow(c: CommandRow): string {
  const names = Object.entries(c.byName)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${per(n)}`)
    .join(', ');
  return (
    `| ${c.family} | ${c.scenario} | ${c.tool} | ${int(c.requests)} | ${int(c.commands)} | ` +
    `**${per(c.perRequest)}** | ${names} | ${per(c.insideScriptsPerRequest)} |`
  );
}

function memoryRow(label: string, f: MemoryFill, bare: MemoryFill | undefined): string {
  const shared = Object.entries(f.sharedPerSession)
    .map(([kind, n]) => `\`${kind}\` ${n.toFixed(n < 10 ? 2 : 1)} B`)
    .join(', ');
  return (
    `| ${label} | ${bytes(f.usedMemoryPerSession)} | ${bare === undefined ? '–' : signed(f.usedMemoryPerSession - bare.usedMemoryPerSession)} | ` +
    `${bytes(f.usagePerSession)} | ${shared || '–'} |`
  );
}

export function markdown(r: BenchResults, extraSections: string[] = []): string {
  const o = r.options;
  const mach = r.machine;
  const b = r.baseline;
  const load = (l: number[] | undefined) => (l === undefined ? '–' : l.map((x) => x.toFixed(2)).join(' '));
  const limits = Object.entries(r.replicaEnv)
    .filter(([k]) => /RATE|MAX_SESSIONS/.test(k))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  const lines: string[] = [
    '# Benchmark results',
    '',
    `Run ${r.startedAt} (${r.seconds.toFixed(0)} s). ${mach.cpu}, ${mach.cores} cores, ` +
      `${(mach.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${mach.os}; Node ${mach.node}, Redis ${mach.redis}; ` +
      `load generator ${mach.loadGenerator}. Load average at start ${load(mach.loadAverageAtStart)}, ` +
      `at the end ${load(mach.loadAverageAtEnd)}.`,
    '',
    `One replica per store, concurrency ${o.connections}, ${o.durationS} s measured per scenario after ${o.warmupS} s ` +
      `of warm-up. Every limit active in the measured replica, with budgets too large to refuse (${limits}); ` +
      `"limits off" rows are a reference. Polled sessions carry ${o.payloadBytes}-byte payloads, creates ` +
      `${o.createPayloadBytes}-byte payloads. Ratios (×) are to bare Node measured with wrk in the same run, ` +
      (o.baselineEvery === 'scenario'
        ? `in ${o.slices} slices alternating with ${o.slices} slices of each wrk scenario's ${o.durationS} s ` +
          `(B S S B ...), and for ${o.baselineS} s right before and right after each autocannon scenario (the ` +
          `mean of the two).`
        : `for ${o.baselineS} s before each family and store and at the end: each row is compared with the mean ` +
          `of the two runs around it.`),
    '',
    '## Targets',
    '',
    '| path | target | measured | |',
    '|---|---|---|---|',
    ...targets(r).map((t) => `| ${t.what} | ${t.target} | ${t.measured} | ${verdict(t.pass)} |`),
    '',
    '## Baselines',
    '',
    '| baseline | generator | req/s | p50 ms | p99 ms | max ms | CPU µs/req | generator CPU µs/req | load average (1 min) | errors |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const { label, m, load1 } of r.baselines) {
    lines.push(
      `| bare Node 304, ${label} | ${m.tool} | ${m.stalled ? '**stalled**' : int(m.rps)} | ${ms(m.p50)} | ${ms(m.p99)} | ${ms(m.max)} | ` +
        `${us(m.cpuUsPerRequest?.server)} | ${us(m.cpuUsPerRequest?.generator)} | ${load1.toFixed(2)} | ${errorsCell(m)} |`,
    );
  }
  for (const c of r.redis) {
    lines.push(
      `| Redis alone: ${c.name}, \`${c.command}\` | redis-benchmark | ${int(c.rps)} | ${ms(c.p50)} | ${ms(c.p99)} | ${ms(c.max)} | | | | 0 |`,
    );
  }
  lines.push(
    '',
    '## Scenarios',
    '',
    '| family | store | limits | scenario | generator | req/s | bare Node req/s | × | p50 ms | × | p99 ms | × | max ms | × | server CPU µs/req | × | Redis CPU µs/req | generator CPU µs/req | errors |',
    '|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...r.rows.flatMap((x) => scenarioRow(x, b)),
  );
  if (r.floors.length > 0) {
    lines.push(
      '',
      '## Floors',
      '',
      'What the same paths cost when built from the same parts and nothing else (`bench/floor.mjs`): Node, Koa and ' +
        'ioredis on the same Redis, with none of the service (no routing, limits, metrics, CORS checks, errors or ' +
        'request ids), measured the same way (wrk, bare Node interleaved). A throughput target above a floor is out ' +
        "of reach of those parts on this machine, whatever the service's own code does.",
      '',
      '| floor | of | generator | req/s | bare Node req/s | × | target | server CPU µs/req | Redis CPU µs/req | errors |',
      '|---|---|---|---:|---:|---:|---:|---:|---:|---|',
      ...r.floors.map((f) => {
        const min = THROUGHPUT_TARGETS.find((t) => t.scenario === f.scenario)?.min;
        return (
          `| ${floorLabel(f, o)} | ${f.scenario} | ${f.m.tool} | ${int(f.m.rps)} | ${int((f.base ?? b).rps)} | ` +
          `${ratio(floorRatio(f, r))} | ${min === undefined ? '–' : `≥ ${min.toFixed(2)}`} | ` +
          `${us(f.m.cpuUsPerRequest?.server)} | ${us(f.m.cpuUsPerRequest?.redis)} | ${errorsCell(f.m)} |`
        );
      }),
    );
  }
  if (r.commands.length > 0) {
    lines.push(
      '',
      '## Redis commands per request',
      '',
      `Counted in a pass of its own (${o.commandsS} s per scenario, same concurrency) with \`MONITOR\` watching Redis: ` +
        'every command a client sent, a script call (EVALSHA) counting once and the commands it runs inside ' +
        '(marked `lua` by MONITOR) counted apart; divided by the requests the replica answered in the same window ' +
        '(its `rendezvous_http_requests_total`). MONITOR slows Redis down, so these runs are not throughput figures.',
      '',
      '| family | scenario | generator | requests | commands | per request | by command, per request | inside scripts, per request |',
      '|---|---|---|---:|---:|---:|---|---:|',
      ...r.commands.map(commandRow),
    );
  }
  lines.push(
    '',
    '## Memory',
    '',
    `${int(r.memory.sessions)} entries with a ${int(r.memory.payloadBytes)}-byte payload. Redis: each fill starts ` +
      'from an empty keyspace in a redis-server of its own, with a replica of its own (every limit active), and is ' +
      'measured as the growth of `used_memory`, every key and table included.',
    '',
  );
  if (r.memory.redis) {
    const m = r.memory.redis;
    lines.push(
      '| Redis fill | used_memory growth per entry | above bare | MEMORY USAGE of the key | other keys (MEMORY USAGE) per session |',
      '|---|---:|---:|---:|---|',
      memoryRow('bare `SET rz:{<22-char id>} <payload> PX <ttl>`', m.bare, undefined),
      memoryRow('sessions through the replica, one client address', m.oneAddress, m.bare),
      memoryRow('sessions through the replica, a distinct client address each', m.distinctAddresses, m.bare),
    );
  }
  if (r.memory.memory) {
    const m = r.memory.memory;
    lines.push(
      '',
      `In-memory store: RSS growth of a replica per ${int(r.memory.sessions)} sessions: ` +
        `${(m.rssGrowth / 2 ** 20).toFixed(1)} MiB (${bytes(m.rssPerSession)} per session).`,
    );
  }
  if (r.longpoll) lines.push('', r.longpoll.markdown.trim());
  for (const s of extraSections) lines.push('', s.trim());
  return `${lines.join('\n')}\n`;
}
