import type { BenchResults, Figures, Row } from './harness';

export interface Target {
  what: string;
  measured: string;
  pass: boolean;
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–');
const ratio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '–');
const bytes = (n: number) => `${int(n)} B`;
const us = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(0));

/** The issue's targets, checked against this run (one replica, Redis store, the run's concurrency). */
export function targets(r: BenchResults): Target[] {
  const out: Target[] = [];
  const redisRows = r.rows.filter((x) => x.store === 'redis' && x.available && x.m !== undefined);
  for (const row of redisRows) {
    const m = row.m!;
    const base = (row.base ?? r.baseline).rps;
    if (row.scenario === 'poll-unchanged') {
      out.push({
        what: `${row.family} poll-unchanged ≥ 30% of bare Node req/s`,
        measured: `${((100 * m.rps) / base).toFixed(0)}%`,
        pass: m.rps >= 0.3 * base,
      });
      out.push({ what: `${row.family} poll-unchanged p99 < 10 ms`, measured: `${ms(m.p99)} ms`, pass: m.p99 < 10 });
    }
    if (row.scenario === 'create' || row.scenario === 'write') {
      out.push({
        what: `${row.family} ${row.scenario} ≥ 20% of bare Node req/s`,
        measured: `${((100 * m.rps) / base).toFixed(0)}%`,
        pass: m.rps >= 0.2 * base,
      });
    }
  }
  const measured = r.rows.filter((x) => x.m !== undefined);
  const errors = measured.reduce((n, x) => n + x.m!.errors, 0);
  out.push({ what: 'zero errors in every scenario', measured: `${errors} errors`, pass: errors === 0 });
  if (r.memory.redis) {
    out.push({
      what: 'Redis memory per session ≤ 350 B + payload',
      measured: `${bytes(r.memory.redis.overheadPerSession)} + payload`,
      pass: r.memory.redis.overheadPerSession <= 350,
    });
  }
  return out;
}

function scenarioRow(x: Row, fallback: Figures): string {
  const base = x.base ?? fallback;
  if (!x.available || x.m === undefined) {
    return `| ${x.family} | ${x.store} | ${x.scenario} | not available (create route answers 404) | | | | | | | | | | | |`;
  }
  const m = x.m;
  const rps = x.opsPerSec === undefined ? int(m.rps) : `${int(m.rps)} (${int(x.opsPerSec)} exchanges/s)`;
  return (
    `| ${x.family} | ${x.store} | ${x.scenario} | ${rps} | ${ratio(m.rps / base.rps)} | ` +
    `${ms(m.p50)} | ${ratio(m.p50 / base.p50)} | ${ms(m.p99)} | ${ratio(m.p99 / base.p99)} | ` +
    `${ms(m.max)} | ${ratio(m.max / base.max)} | ${us(m.cpuUsPerRequest?.server)} | ` +
    `${ratio((m.cpuUsPerRequest?.server ?? NaN) / (base.cpuUs ?? NaN))} | ${us(m.cpuUsPerRequest?.redis)} | ${us(m.cpuUsPerRequest?.generator)} | ` +
    `${m.errors}${m.firstError ? ` (${m.firstError})` : ''} |`
  );
}

export function markdown(r: BenchResults, extraSections: string[] = []): string {
  const o = r.options;
  const mach = r.machine;
  const b = r.baseline;
  const lines: string[] = [
    '# Benchmark results',
    '',
    `Run ${r.startedAt} (${r.seconds.toFixed(0)} s). ${mach.cpu}, ${mach.cores} cores, ` +
      `${(mach.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${mach.os}; Node ${mach.node}, Redis ${mach.redis}; ` +
      `load generator ${mach.loadGenerator}; load average at start ${mach.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}.`,
    '',
    `Concurrency ${o.connections}, ${o.durationS} s measured per scenario after ${o.warmupS} s of warm-up, ` +
      `one replica per store, ${o.payloadBytes}-byte payloads. Ratios (×) are to the bare Node baseline of this run, ` +
      `measured before each family and store and at the end: each row is compared with the mean of the two runs ` +
      `around it.`,
    '',
    '## Baselines',
    '',
    '| baseline | req/s | p50 ms | p99 ms | max ms | CPU µs/req | load generator CPU µs/req | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const { label, m } of r.baselines) {
    lines.push(
      `| bare Node 304, ${label} | ${int(m.rps)} | ${ms(m.p50)} | ${ms(m.p99)} | ${ms(m.max)} | ` +
        `${us(m.cpuUsPerRequest?.server)} | ${us(m.cpuUsPerRequest?.generator)} | ${m.errors} |`,
    );
  }
  for (const c of r.redis) {
    lines.push(
      `| Redis alone: ${c.name}, \`${c.command}\` (redis-benchmark) | ${int(c.rps)} | ${ms(c.p50)} | ${ms(c.p99)} | ${ms(c.max)} | | | 0 |`,
    );
  }
  lines.push(
    '',
    '## Scenarios',
    '',
    '| family | store | scenario | req/s | × | p50 ms | × | p99 ms | × | max ms | × | server CPU µs/req | × | Redis CPU µs/req | load generator CPU µs/req | errors |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...r.rows.map((x) => scenarioRow(x, b)),
    '',
    '## Memory',
    '',
    `${int(r.memory.sessions)} live sessions with a ${int(r.memory.payloadBytes)}-byte payload, created through a replica.`,
    '',
    '| store | measure | value |',
    '|---|---|---:|',
  );
  if (r.memory.redis) {
    const m = r.memory.redis;
    lines.push(
      `| redis | MEMORY USAGE per session | ${bytes(m.usagePerSession)} (payload + ${bytes(m.overheadPerSession)}) |`,
      `| redis | used_memory growth per session (keyspace tables included) | ${bytes(m.usedMemoryPerSession)} |`,
    );
  }
  if (r.memory.memory) {
    const m = r.memory.memory;
    lines.push(
      `| memory | RSS growth per ${int(r.memory.sessions)} sessions | ${(m.rssGrowth / 2 ** 20).toFixed(1)} MiB (${bytes(m.rssPerSession)} per session) |`,
    );
  }
  lines.push('', '## Targets', '', '| target | measured | |', '|---|---:|---|');
  for (const t of targets(r)) lines.push(`| ${t.what} | ${t.measured} | ${t.pass ? 'pass' : '**FAIL**'} |`);
  if (r.longpoll) lines.push('', r.longpoll.markdown.trim());
  for (const s of extraSections) lines.push('', s.trim());
  return `${lines.join('\n')}\n`;
}
