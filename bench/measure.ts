import autocannon from 'autocannon';
import type { Req } from './families';
import { cpuMsOf } from './processes';
import { Checker } from './scenarios';
import { answered, served, type Served } from './served';
import { mergedPercentile, wrk, type WrkResult } from './wrk';

// The parser autocannon uses; a dependency of autocannon, not of this project.
const { HTTPParser } = require('http-parser-js') as { HTTPParser: { kOnHeadersComplete: number } };

export interface Measurement {
  /** The load generator: wrk for fixed requests, autocannon for sequences built from answers. */
  tool: 'wrk' | 'autocannon';
  /** Responses per second over the measured window. */
  rps: number;
  p50: number;
  p99: number;
  max: number;
  requests: number;
  /** Unexpected statuses, socket errors and timeouts, warm-up included. */
  errors: number;
  firstError?: string;
  /** CPU time the measured processes spent per request, in µs (by process label). */
  cpuUsPerRequest?: Record<string, number>;
  /**
   * wrk only: its connections stopped getting answers (no answer at all, or a timeout on each): the
   * figures are not a throughput. See WrkResult.stalled.
   */
  stalled?: boolean;
  /** Answers by status over warm-up and measured window, as the replica counted them (wrk only). */
  statuses?: Record<string, number>;
}

export interface LoadOptions {
  url: string;
  connections: number;
  durationS: number;
  warmupS: number;
  requests: autocannon.Request[];
  check: Checker;
  /** When every answer must have this status (fixed requests): checked from the status table. */
  status?: number;
  /** Processes whose CPU time per request is reported (server, Redis), by label. */
  pids?: Record<string, number>;
  /** Called about once a second with the seconds left in the measured window. */
  tick?: (secondsLeft: number) => void;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * The load generator's parser lets a 304's Content-Length (which RFC 9110 allows it to carry, as the
 * length a 200 would have had) override the implied empty body, and then waits for bytes that never
 * come. Telling it to skip the body of a 304 is what every HTTP client does.
 */
function skipBodyOf304(client: { parser: Record<number, (info: { statusCode: number }) => unknown> }): void {
  queueMicrotask(() => {
    const key = HTTPParser.kOnHeadersComplete;
    const original = client.parser[key]!;
    client.parser[key] = (info) => {
      original(info);
      return info.statusCode === 304;
    };
  });
}

function run(opts: LoadOptions, durationS: number, latencies: number[] | undefined) {
  const instance = autocannon({
    url: opts.url,
    connections: opts.connections,
    pipelining: 1,
    duration: durationS,
    timeout: 10,
    requests: opts.requests,
    setupClient: skipBodyOf304 as never,
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  // autocannon's own histogram has 1 ms resolution; loopback latencies need finer, so keep every one.
  if (latencies !== undefined) {
    instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => latencies.push(ms));
  }
  let left = durationS;
  const timer = opts.tick ? setInterval(() => opts.tick!(--left), 1000) : undefined;
  return Promise.resolve(instance).finally(() => clearInterval(timer));
}

/** Warms the process up with the same load, then measures a fixed window at fixed concurrency. */
export async function measure(opts: LoadOptions): Promise<Measurement> {
  let transportErrors = 0;
  const account = (r: autocannon.Result) => {
    transportErrors += r.errors + r.timeouts;
    if (opts.status === undefined) return;
    const stats = (r.statusCodeStats ?? {}) as Record<string, { count?: number }>;
    for (const [code, { count = 0 }] of Object.entries(stats)) {
      if (count > 0) opts.check.expect('request', Number(code), opts.status, count);
    }
  };
  if (opts.warmupS > 0) account(await run(opts, opts.warmupS, undefined));
  const latencies: number[] = [];
  const cpu = () => Object.entries(opts.pids ?? {}).map(([label, pid]) => [label, cpuMsOf(pid)] as const);
  const cpuBefore = cpu();
  const ownBefore = process.cpuUsage();
  const r = await run(opts, opts.durationS, latencies);
  const own = process.cpuUsage(ownBefore);
  const cpuAfter = cpu();
  account(r);
  const cpuUsPerRequest: Record<string, number> = {};
  if (r.requests.total > 0) cpuUsPerRequest.generator = (own.user + own.system) / r.requests.total;
  cpuBefore.forEach(([label, before], i) => {
    const after = cpuAfter[i]![1];
    if (before !== undefined && after !== undefined && r.requests.total > 0) {
      cpuUsPerRequest[label] = ((after - before) * 1000) / r.requests.total;
    }
  });
  const sorted = Float64Array.from(latencies).sort();
  const errors = opts.check.unexpected + transportErrors;
  return {
    tool: 'autocannon',
    rps: r.requests.total / r.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
    requests: r.requests.total,
    errors,
    ...(Object.keys(cpuUsPerRequest).length > 0 ? { cpuUsPerRequest } : {}),
    ...(errors > 0 ? { firstError: opts.check.first ?? `${transportErrors} socket errors or timeouts` } : {}),
  };
}

export interface WrkLoadOptions {
  url: string;
  req: Req;
  /** The status every answer must have. */
  status: number;
  connections: number;
  durationS: number;
  warmupS: number;
  /** wrk threads (default 1). */
  threads?: number;
  /** Processes whose CPU time per request is reported (server, Redis), by label. */
  pids?: Record<string, number>;
  /**
   * The replica's family label: its /metrics counter tells every status it answered, so one the
   * protocol does not promise counts as an error (wrk itself only counts 4xx and 5xx). Undefined for
   * the bare Node server, which answers one fixed status.
   */
  family?: string;
  /** Called about once a second with the seconds left in the measured window. */
  tick?: (secondsLeft: number) => void;
}

/** A fixed request run against bare Node in slices alternating with the measured ones. */
export interface Interleave {
  url: string;
  req: Req;
  pids: Record<string, number>;
  /** Slices of each side; `durationS` is split evenly between them. */
  slices: number;
}

function socketErrors(r: WrkResult): number {
  return r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
}

/** The runs of one side, and the CPU time its processes spent during them. */
class Side {
  readonly runs: WrkResult[] = [];
  private readonly cpuMs = new Map<string, number>();

  constructor(private readonly pids: Record<string, number>) {}

  async run(
    opts: { url: string; req: Req; connections: number; threads: number },
    durationS: number,
  ): Promise<WrkResult> {
    const cpu = () => Object.entries(this.pids).map(([label, pid]) => [label, cpuMsOf(pid)] as const);
    const before = cpu();
    const r = await wrk({ ...opts, durationS });
    cpu().forEach(([label, after], i) => {
      const b = before[i]![1];
      if (b !== undefined && after !== undefined) this.cpuMs.set(label, (this.cpuMs.get(label) ?? 0) + after - b);
    });
    this.runs.push(r);
    return r;
  }

  get stalled(): boolean {
    return this.runs.some((r) => r.stalled);
  }

  figures(): Omit<Measurement, 'errors' | 'tool'> {
    const requests = this.runs.reduce((n, r) => n + r.requests, 0);
    const seconds = this.runs.reduce((n, r) => n + r.seconds, 0);
    const cpuUsPerRequest: Record<string, number> = {};
    const generator = this.runs.map((r) => r.cpuUsPerRequest);
    if (requests > 0 && generator.every((g) => g !== undefined)) {
      cpuUsPerRequest.generator = this.runs.reduce((n, r) => n + r.cpuUsPerRequest! * r.requests, 0) / requests;
    }
    if (requests > 0) for (const [label, ms] of this.cpuMs) cpuUsPerRequest[label] = (ms * 1000) / requests;
    return {
      rps: this.stalled || seconds === 0 ? 0 : requests / seconds,
      p50: mergedPercentile(this.runs, 50),
      p99: mergedPercentile(this.runs, 99),
      max: Math.max(...this.runs.map((r) => r.max)),
      requests,
      ...(Object.keys(cpuUsPerRequest).length > 0 ? { cpuUsPerRequest } : {}),
    };
  }
}

/**
 * Warms up with the same load, then measures a fixed request with wrk for `durationS`. With
 * `interleave`, the window is cut into slices alternating with slices of bare Node, in the order
 * B S S B B S S B ..., so that whatever else loads the machine meanwhile weighs on both sides alike;
 * the answer then also holds bare Node's figures over the same slices.
 */
export async function measureWrk(opts: WrkLoadOptions & { interleave?: Interleave }): Promise<{
  m: Measurement;
  base?: Measurement;
}> {
  const threads = opts.threads ?? 1;
  const target = { url: opts.url, req: opts.req, connections: opts.connections, threads };
  const before: Served | undefined = opts.family === undefined ? undefined : await served(opts.url);
  const warmup = new Side({});
  if (opts.warmupS > 0) await warmup.run(target, opts.warmupS);
  const measured = new Side(opts.pids ?? {});
  const il = opts.interleave;
  const bare = il === undefined ? undefined : new Side(il.pids);
  const sliceS = il === undefined ? opts.durationS : Math.max(1, Math.round(opts.durationS / il.slices));
  // Seconds left of both sides' slices together.
  let left = il === undefined ? opts.durationS : 2 * il.slices * sliceS;
  const timer = opts.tick ? setInterval(() => opts.tick!(Math.max(0, --left)), 1000) : undefined;
  try {
    if (!warmup.stalled) {
      if (il === undefined || bare === undefined) {
        await measured.run(target, opts.durationS);
      } else {
        const bareTarget = { url: il.url, req: il.req, connections: opts.connections, threads };
        for (let i = 0; i < il.slices && !measured.stalled; i++) {
          if (i % 2 === 0) await bare.run(bareTarget, sliceS);
          await measured.run(target, sliceS);
          if (i % 2 === 1) await bare.run(bareTarget, sliceS);
        }
      }
    }
  } finally {
    clearInterval(timer);
  }
  const runs = [...warmup.runs, ...measured.runs];
  let errors = runs.reduce((n, x) => n + socketErrors(x), 0);
  let firstError: string | undefined;
  let statuses: Record<string, number> | undefined;
  if (before !== undefined) {
    statuses = answered(before, await served(opts.url), opts.family!, opts.req.method).byStatus;
    for (const [code, n] of Object.entries(statuses)) {
      if (Number(code) === opts.status) continue;
      errors += n;
      firstError ??= `${n} answered ${code}, expected ${opts.status}`;
    }
  } else {
    errors += runs.reduce((n, x) => n + x.errors.status, 0);
  }
  const stalled = warmup.stalled || measured.stalled;
  if (stalled) {
    // Each connection holds a request that was never answered.
    errors += opts.connections;
    const r = runs.find((x) => x.stalled)!;
    firstError =
      `wrk stalled: ${r.requests} answers in ${r.seconds.toFixed(1)} s, ${r.errors.timeout} timeouts ` +
      '(an answer announced a body that never came?)';
  } else if (firstError === undefined && errors > 0) {
    const e = runs.reduce(
      (t, x) => ({
        connect: t.connect + x.errors.connect,
        read: t.read + x.errors.read,
        write: t.write + x.errors.write,
        timeout: t.timeout + x.errors.timeout,
        status: t.status + x.errors.status,
      }),
      { connect: 0, read: 0, write: 0, timeout: 0, status: 0 },
    );
    firstError = `connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}, status ≥ 400 ${e.status}`;
  }
  const m: Measurement = {
    tool: 'wrk',
    ...(warmup.stalled ? warmup : measured).figures(),
    errors,
    ...(stalled ? { stalled } : {}),
    ...(statuses === undefined ? {} : { statuses }),
    ...(firstError === undefined ? {} : { firstError }),
  };
  if (stalled) m.rps = 0;
  if (bare === undefined || bare.runs.length === 0) return { m };
  const bareErrors = bare.runs.reduce((n, x) => n + socketErrors(x) + x.errors.status, 0);
  return { m, base: { tool: 'wrk', ...bare.figures(), errors: bareErrors } };
}
