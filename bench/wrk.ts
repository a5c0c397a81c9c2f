import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Req } from './families';

/**
 * wrk, the load generator of the figures of record: a C program whose own cost per request is a
 * fraction of a Node generator's, so it takes less of the machine the server runs on. Each scenario
 * is a Lua script written for the run: one fixed request (method, path, headers, body), sent as is
 * on every connection, and a `done` hook that prints the summary as one JSON line.
 */

/** The percentiles of its latency histogram each run reports, so that runs can be merged. */
export const QUANTILES: readonly number[] = [...Array.from({ length: 99 }, (_, i) => i + 1), 99.5, 99.9, 99.99];

/** What one wrk run reports. Latencies in ms. */
export interface WrkResult {
  /** Responses completed in the measured window. */
  requests: number;
  seconds: number;
  bytes: number;
  /** Latency at each of QUANTILES. */
  quantiles: number[];
  max: number;
  /** Socket errors: connect, read, write; `status` counts answers of 400 and above; timeouts. */
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  /**
   * True when the connections stopped getting answers: no response at all, or at least one timeout
   * per connection (wrk counts a timeout each time it finds a connection waiting too long). wrk waits for a response's body as its headers announce it, so an answer whose
   * Content-Length announces a body that never comes (a 304 carrying the 200's length) stalls it.
   */
  stalled: boolean;
  /** CPU time wrk itself used per response, µs (user + system). */
  cpuUsPerRequest?: number;
}

const MARK = 'WRK_JSON ';

let checked: string | undefined;

/** wrk's version line; throws a clear error when wrk is not installed. */
export function wrkVersion(): string {
  if (checked !== undefined) return checked;
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined) {
    throw new Error('wrk is not installed (Debian package "wrk"; .ci/run installs it): the bench measures with it');
  }
  checked = /wrk \S+/.exec(`${r.stdout}${r.stderr}`)?.[0] ?? 'wrk';
  return checked;
}

const luaString = (s: string): string =>
  `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, (c) => `\\${c.charCodeAt(0)}`)}"`;

/** The Lua script of one fixed request and the JSON summary. */
export function wrkScript(req: Req): string {
  const lines = [`wrk.method = ${luaString(req.method)}`, `wrk.path = ${luaString(req.path)}`];
  for (const [name, value] of Object.entries(req.headers)) {
    // wrk adds Content-Length itself from the body.
    if (name.toLowerCase() !== 'content-length') lines.push(`wrk.headers[${luaString(name)}] = ${luaString(value)}`);
  }
  if (req.body !== undefined && req.body !== '') lines.push(`wrk.body = ${luaString(req.body)}`);
  lines.push(
    'function done(summary, latency, requests)',
    '  local e = summary.errors',
    '  local q = {}',
    `  for i, p in ipairs({ ${QUANTILES.join(', ')} }) do q[i] = string.format('%d', latency:percentile(p)) end`,
    '  io.write(string.format(',
    `    '${MARK}{"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..`,
    `    '"max":%d,"quantiles":[%s]}\\n',`,
    '    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,',
    "    latency.max, table.concat(q, ',')))",
    'end',
    '',
  );
  return lines.join('\n');
}

/** CPU time (user + system) of this process's waited-for children, in ms (Linux), or undefined. */
function childrenCpuMs(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 after the command name.
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

export interface WrkOptions {
  url: string;
  req: Req;
  connections: number;
  durationS: number;
  /** wrk threads; 1 keeps the generator to one core of a small machine. */
  threads?: number;
  /** Seconds after which a request counts as timed out. */
  timeoutS?: number;
}

/** One wrk run of a fixed request; never waits much longer than its duration. */
export async function wrk(opts: WrkOptions): Promise<WrkResult> {
  wrkVersion();
  const dir = mkdtempSync(join(tmpdir(), 'rz-bench-wrk-'));
  const script = join(dir, 'scenario.lua');
  writeFileSync(script, wrkScript(opts.req));
  const timeoutS = opts.timeoutS ?? 2;
  const args = [
    `-t${opts.threads ?? 1}`,
    `-c${opts.connections}`,
    `-d${opts.durationS}s`,
    `--timeout`,
    `${timeoutS}s`,
    '--latency',
    '-s',
    script,
    opts.url,
  ];
  const cpuBefore = childrenCpuMs();
  try {
    const { code, out, err } = await new Promise<{ code: number | null; out: string; err: string }>(
      (resolve, reject) => {
        const proc = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
        proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
        // wrk stops by itself at its duration; this only guards against it hanging on exit.
        const guard = setTimeout(() => proc.kill('SIGKILL'), (opts.durationS + timeoutS + 10) * 1000);
        proc.once('error', (e) => {
          clearTimeout(guard);
          reject(e);
        });
        proc.once('close', (c) => {
          clearTimeout(guard);
          resolve({ code: c, out, err });
        });
      },
    );
    const line = out.split('\n').find((l) => l.startsWith(MARK));
    if (code !== 0 || line === undefined) throw new Error(`wrk failed (${code}): ${err || out}`);
    const j = JSON.parse(line.slice(MARK.length)) as Record<string, number> & { quantiles: number[] };
    const cpuAfter = childrenCpuMs();
    const requests = j.requests!;
    const errors = {
      connect: j.connect!,
      read: j.read!,
      write: j.write!,
      status: j.status!,
      timeout: j.timeout!,
    };
    return {
      requests,
      seconds: j.duration_us! / 1e6,
      bytes: j.bytes!,
      quantiles: j.quantiles.map((us) => us / 1000),
      max: j.max! / 1000,
      errors,
      stalled: requests === 0 || errors.timeout >= opts.connections,
      ...(cpuBefore !== undefined && cpuAfter !== undefined && requests > 0
        ? { cpuUsPerRequest: ((cpuAfter - cpuBefore) * 1000) / requests }
        : {}),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A percentile of several runs together: each run's latency distribution, known at QUANTILES,
 * weighted by its number of responses. Exact at those quantiles for one run.
 */
export function mergedPercentile(runs: readonly WrkResult[], p: number): number {
  const points: [number, number][] = [];
  for (const r of runs) {
    if (r.requests === 0) continue;
    QUANTILES.forEach((q, i) => points.push([r.quantiles[i]!, (r.requests * (q - (QUANTILES[i - 1] ?? 0))) / 100]));
    points.push([r.max, (r.requests * (100 - QUANTILES[QUANTILES.length - 1]!)) / 100]);
  }
  if (points.length === 0) return NaN;
  points.sort((a, b) => a[0] - b[0]);
  const total = points.reduce((n, [, w]) => n + w, 0);
  let cumulative = 0;
  for (const [value, weight] of points) {
    cumulative += weight;
    if (cumulative >= (p / 100) * total - 1e-9) return value;
  }
  return points[points.length - 1]![0];
}
