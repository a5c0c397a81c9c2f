import { AsyncLocalStorage } from 'node:async_hooks';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { Balancer } from '../helpers/balancer';
import { freePort } from '../helpers/ports';
import { RedisServer } from '../helpers/redis';
import { Replica } from '../helpers/replica';

/**
 * The chaos soak: one Redis with an fsync'd append-only file, three replicas behind the repository's
 * round-robin balancer, a steady load of complete two-device exchanges in every protocol family and
 * a trickle of hostile requests, while replicas are killed or drained and Redis is restarted or
 * paused on a seeded schedule. Every answer is checked as it comes; see `npm run soak -- --help`.
 */

export interface SoakOptions {
  durationS: number;
  seed: number;
  /** Exchanges kept running at once, per family. */
  perFamily: number;
  /** Hostile requests per second. */
  hostileRate: number;
  /** The kinds of fault the schedule picks from. */
  faultKinds: FaultKind[];
  /** Seconds between faults: a uniform pick in [min, max]. */
  faultMinS: number;
  faultMaxS: number;
  /** How long Redis is paused, in ms: a seeded pick in [min, max]. */
  pauseMinMs: number;
  pauseMaxMs: number;
  /** A replica above this resident size is a violation. */
  rssLimitMb: number;
  /** Redis persistence: `always` (the default; nothing acknowledged is lost), `everysec`, or `none`. */
  persistence: 'always' | 'everysec' | 'none';
  /** The production rate budgets and caps (default); off, every client may do anything. */
  limits: boolean;
  /** Print every fault as it is injected. */
  verbose: boolean;
}

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388_PATHS = ['/_matrix/client/v1/rendezvous', '/_matrix/client/unstable/io.element.msc4388/rendezvous'];
const TTL_S = 120;
const PUBLIC_BASE = 'https://rendezvous.soak.test';
const POLL_WAIT_S = 8;
/** How long a client keeps retrying one request before it gives its exchange up. */
const RETRY_BUDGET_MS = 90_000;

type Family = 'msc3886' | 'msc4108' | 'msc4388';
const FAMILIES: Family[] = ['msc3886', 'msc4108', 'msc4388'];
export const FAULT_KINDS = ['replica-kill', 'replica-term', 'redis-restart', 'redis-kill', 'redis-pause'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** mulberry32: small, seedable, good enough to make a schedule repeatable. */
export class Rng {
  constructor(private state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  sentAt: number;
  at: number;
}

class ExchangeAbort extends Error {}

/**
 * The client address the requests of the current device come from (sent as X-Forwarded-For, which
 * the balancer and the replicas trust from loopback): each device has its own, so the per-address
 * rate budgets and caps apply to the soak's clients as they would to real ones.
 */
const clientAddress = new AsyncLocalStorage<{ address: string; normal: boolean }>();
const from = <T>(address: string, normal: boolean, fn: () => Promise<T>): Promise<T> =>
  clientAddress.run({ address, normal }, fn);

function deviceAddress(n: number): string {
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

function describe(sent: Sent, answer?: Answer | string): string {
  const headers = Object.entries(sent.headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ');
  const body = sent.body === undefined ? '' : ` body=${JSON.stringify(sent.body.slice(0, 120))}`;
  let out = `${sent.method} ${sent.path} [${headers}]${body}`;
  if (typeof answer === 'string') out += ` -> ${answer}`;
  else if (answer)
    out += ` -> ${answer.status} etag=${answer.headers.get('etag')} ${JSON.stringify(answer.text.slice(0, 200))}`;
  return out;
}

interface ReplicaSlot {
  index: number;
  port: number;
  replica: Replica | undefined;
  startedAt: number;
  /** RSS samples of the replica now in the slot, [seconds since start of run, MiB]. */
  rss: [number, number][];
}

export class Soak {
  private readonly rng: Rng;
  /** The load draws from its own generator so the fault schedule stays the same whatever the load does. */
  private readonly loadRng: Rng;
  private readonly t0 = Date.now();
  private stopping = false;
  private redis!: RedisServer;
  private balancer!: Balancer;
  private base = '';
  private readonly slots: ReplicaSlot[] = [];
  private readonly faultWindows: { start: number; end: number }[] = [];
  private readonly retired: { index: number; lived: number; rss: [number, number][] }[] = [];
  private nextXid = 1;

  readonly completed: Record<Family, number> = { msc3886: 0, msc4108: 0, msc4388: 0 };
  readonly abandoned: Record<Family, number> = { msc3886: 0, msc4108: 0, msc4388: 0 };
  readonly statuses = new Map<string, number>();
  readonly faults = new Map<FaultKind, number>();
  readonly counters = new Map<string, number>();
  readonly violations: string[] = [];
  readonly serverErrors = new Map<string, number>();
  private readonly pidsStarted = new Set<number>();

  constructor(private readonly opts: SoakOptions) {
    this.rng = new Rng(opts.seed);
    this.loadRng = new Rng(opts.seed ^ 0x5bd1e995);
  }

  private elapsed(): string {
    return ((Date.now() - this.t0) / 1000).toFixed(1);
  }

  private count(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  violation(kind: string, detail: string): void {
    const line = `VIOLATION seed=${this.opts.seed} t=${this.elapsed()}s ${kind}: ${detail}`;
    this.violations.push(line);
    process.stdout.write(`${line}\n`);
  }

  private note(msg: string): void {
    if (this.opts.verbose) process.stdout.write(`[${this.elapsed()}s] ${msg}\n`);
  }

  /** Whether a fault was under way (or just over) at any time in [from, to]. */
  private faultDuring(from: number, to: number): boolean {
    return this.faultWindows.some((w) => w.start <= to + 1000 && w.end >= from - 2000);
  }

  // ---------------------------------------------------------------------------------------------
  // Processes

  async start(): Promise<void> {
    // Without persistence (or with a second of writes unsynced) a restart loses sessions: the soak
    // then reports what any such deployment would lose, which is why `always` is the default.
    this.redis = await RedisServer.start(
      this.opts.persistence === 'none' ? [] : ['--appendonly', 'yes', '--appendfsync', this.opts.persistence],
    );
    this.trackPid(this.redis.pid);
    // The replicas first, each on a port it got (another program may take a port between the
    // moment it was found free and the listen), then the balancer in front of those ports.
    for (let index = 0; index < 3; index++) {
      const slot: ReplicaSlot = { index, port: 0, replica: undefined, startedAt: 0, rss: [] };
      for (let attempt = 1; slot.replica === undefined; attempt++) {
        slot.port = await freePort();
        try {
          await this.startReplica(slot, 1);
        } catch (err) {
          if (attempt >= 10) throw err;
        }
      }
      this.slots.push(slot);
    }
    this.balancer = await Balancer.start(
      this.slots.map((s) => s.port),
      { trustedProxies: '127.0.0.1' },
    );
    this.base = this.balancer.url;
  }

  private trackPid(pid: number | undefined): void {
    if (pid !== undefined) this.pidsStarted.add(pid);
  }

  private async startReplica(slot: ReplicaSlot, attempts = 20): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        slot.replica = await Replica.start({
          PORT: String(slot.port),
          REDIS_URL: this.redis.url,
          // Absolute URLs name the public host; the soak uses their paths only.
          RZ_PUBLIC_BASE_URL: PUBLIC_BASE,
          RZ_TTL_SECONDS: String(TTL_S),
          RZ_SHUTDOWN_GRACE_SECONDS: '5',
          RZ_TRUSTED_PROXIES: '127.0.0.1',
          // The defaults, which the replica helper turns off unless told.
          ...(this.opts.limits
            ? {
                RZ_CREATE_RATE: '30',
                RZ_REQUEST_RATE: '30',
                RZ_MAX_SESSIONS: '20000',
                RZ_MAX_SESSIONS_PER_ADDRESS: '50',
                RZ_MAX_CONNECTIONS_PER_ADDRESS: '256',
              }
            : {}),
        });
        break;
      } catch (err) {
        // The port of a killed replica can take a moment to be free again.
        if (attempt >= attempts) throw err;
        await sleep(250);
      }
    }
    this.trackPid(slot.replica.proc.pid);
    slot.startedAt = Date.now();
    slot.rss = [];
  }

  private retire(slot: ReplicaSlot): void {
    this.scanLogs(slot);
    this.retired.push({ index: slot.index, lived: Date.now() - slot.startedAt, rss: slot.rss });
  }

  /** Counts what replicas logged at error level or above (by message), and forgets the rest. */
  private scanLogs(slot: ReplicaSlot): void {
    const logs = slot.replica?.logs;
    if (!logs) return;
    for (const line of logs) if (line.level >= 50) this.count(this.serverErrors, line.msg);
    logs.length = 0;
  }

  private sampleRss(): void {
    const at = (Date.now() - this.t0) / 1000;
    for (const slot of this.slots) {
      const pid = slot.replica?.proc.pid;
      if (pid === undefined || slot.replica?.proc.exitCode !== null) continue;
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (!m) continue;
        const mib = Number(m[1]) / 1024;
        slot.rss.push([at, mib]);
        if (mib > this.opts.rssLimitMb) {
          this.violation(
            'rss',
            `replica ${slot.index} (pid ${pid}) at ${mib.toFixed(1)} MiB > ${this.opts.rssLimitMb}`,
          );
        }
      } catch {
        // Exited between the check and the read.
      }
      this.scanLogs(slot);
    }
  }

  private async fault(kind: FaultKind): Promise<void> {
    const window = { start: Date.now(), end: Infinity };
    this.faultWindows.push(window);
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + 1);
    this.note(`fault ${kind}`);
    try {
      switch (kind) {
        case 'replica-kill':
        case 'replica-term': {
          // Replica 0 is never touched: it is the witness whose memory is followed for the whole run.
          const slot = this.slots[this.rng.int(1, this.slots.length - 1)]!;
          const replica = slot.replica!;
          const code = await replica.stop(kind === 'replica-kill' ? 'SIGKILL' : 'SIGTERM');
          if (kind === 'replica-term' && code !== 0) {
            this.violation('drain', `replica ${slot.index} exited with ${code} on SIGTERM`);
          }
          this.retire(slot);
          await sleep(this.rng.int(0, 1500));
          await this.startReplica(slot);
          break;
        }
        case 'redis-restart':
        case 'redis-kill': {
          await this.redis.stop(kind === 'redis-kill' ? 'SIGKILL' : 'SIGTERM');
          await sleep(this.rng.int(100, 2000));
          await this.redis.resume();
          this.trackPid(this.redis.pid);
          break;
        }
        case 'redis-pause': {
          this.redis.signal('SIGSTOP');
          await sleep(this.rng.int(this.opts.pauseMinMs, this.opts.pauseMaxMs));
          this.redis.signal('SIGCONT');
          break;
        }
      }
    } finally {
      window.end = Date.now();
    }
  }

  private async faultLoop(until: number): Promise<void> {
    const kinds = this.opts.faultKinds;
    for (;;) {
      const wait = this.rng.int(this.opts.faultMinS * 1000, this.opts.faultMaxS * 1000);
      const kind = this.rng.pick(kinds);
      if (Date.now() + wait > until) return;
      await sleep(wait);
      await this.fault(kind);
    }
  }

  /** Stops everything this run started; safe to call twice. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.replica && slot.replica.proc.exitCode === null && slot.replica.proc.signalCode === null) {
        await slot.replica.stop('SIGTERM');
      }
    }
    await this.balancer?.stop();
    this.redis?.signal('SIGCONT');
    await this.redis?.destroy();
  }

  /** What is left of what this run started, synchronously (also the Ctrl-C path). */
  killAllNow(): void {
    for (const pid of this.pidsStarted) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const dir of [this.redis?.dir, this.balancer?.dir]) {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Child processes of this one still running (ps itself, and the TypeScript loader's esbuild, excluded). */
  leftovers(): string[] {
    try {
      return execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !/\b(ps|esbuild)$/.test(l));
    } catch {
      return [];
    }
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP with the checks every answer gets

  private async send(sent: Sent, timeoutMs = 15_000): Promise<Answer> {
    const sentAt = Date.now();
    let res: Response;
    let text: string;
    try {
      const client = clientAddress.getStore();
      res = await fetch(`${this.base}${sent.path}`, {
        method: sent.method,
        headers: client ? { ...sent.headers, 'X-Forwarded-For': client.address } : sent.headers,
        body: sent.body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      this.count(this.statuses, 'connection error');
      throw err;
    }
    const answer = { status: res.status, headers: res.headers, text, sentAt, at: Date.now() };
    this.count(this.statuses, String(res.status));
    this.checkAnswer(sent, answer);
    return answer;
  }

  private checkAnswer(sent: Sent, a: Answer): void {
    if (a.status === 500 || (a.status >= 500 && ![502, 503, 504].includes(a.status))) {
      this.violation('5xx', describe(sent, a));
    }
    if (a.status === 429) {
      const ra = a.headers.get('retry-after');
      let ms: unknown;
      try {
        ms = (JSON.parse(a.text) as { retry_after_ms?: unknown }).retry_after_ms;
      } catch {
        // Reported below.
      }
      if (ra === null || !/^\d+$/.test(ra) || typeof ms !== 'number') {
        this.violation('429 without Retry-After or retry_after_ms', describe(sent, a));
      }
    }
    if (a.status === 503) {
      const ra = a.headers.get('retry-after');
      if (ra === null || !/^\d+$/.test(ra)) this.violation('503 without Retry-After', describe(sent, a));
      let errcode: unknown;
      try {
        errcode = (JSON.parse(a.text) as { errcode?: unknown }).errcode;
      } catch {
        // Reported below.
      }
      if (typeof errcode !== 'string') this.violation('503 without a JSON errcode', describe(sent, a));
    }
  }

  /**
   * Sends `sent` until it gets an answer that is not "try again", re-sending it verbatim on a
   * connection error, a 503 (after its Retry-After, capped at 2 s) or a balancer's 502/504, as
   * PROTOCOLS.md allows. `retried` says whether an earlier copy may have landed.
   */
  private async retrying(sent: Sent, timeoutMs?: number): Promise<Answer & { retried: boolean }> {
    const deadline = Date.now() + RETRY_BUDGET_MS;
    let retried = false;
    let last: string;
    for (let attempt = 1; ; attempt++) {
      let delay: number;
      try {
        const a = await this.send(sent, timeoutMs);
        if (a.status === 429 && clientAddress.getStore()?.normal) {
          // Budgets must never touch a client that behaves as these do.
          this.violation('normal client rate-limited', `${clientAddress.getStore()?.address}: ${describe(sent, a)}`);
        }
        if (![429, 502, 503, 504].includes(a.status)) return { ...a, retried };
        last = `${a.status}`;
        delay = [429, 503].includes(a.status) ? Math.min(2000, 1000 * Number(a.headers.get('retry-after') ?? 1)) : 200;
      } catch (err) {
        last = String(err);
        delay = Math.min(2000, 100 * attempt);
      }
      retried = true;
      this.count(this.counters, 'retries');
      if (Date.now() + delay > deadline) {
        this.violation('exchange could not complete', `${describe(sent)} still failing after retries: ${last}`);
        throw new ExchangeAbort('gave up');
      }
      await sleep(delay);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Exchanges

  private payload(xid: number, side: 'A' | 'B', n: number): string {
    return `x${xid}|${side}|${n}|${'.'.repeat(this.loadRng.int(0, 64))}`;
  }

  /**
   * Two to four rounds of each device writing while the other waits to read it (a long-poll the
   * write must wake, or polls): `ack.at` is when the write was answered, for judging the wake-up.
   */
  private async alternate(
    xid: number,
    addr: Record<'A' | 'B', string>,
    write: (side: 'A' | 'B', data: string) => Promise<number>,
    waitFor: (side: 'A' | 'B', expect: string, ack: { at?: number }) => Promise<void>,
  ): Promise<void> {
    const rng = this.loadRng;
    const rounds = rng.int(2, 4);
    for (let n = 1; n <= rounds; n++) {
      for (const [writer, reader] of [
        ['B', 'A'],
        ['A', 'B'],
      ] as const) {
        const data = this.payload(xid, writer, n);
        const ack: { at?: number } = {};
        const reading = from(addr[reader], true, () => waitFor(reader, data, ack));
        reading.catch(() => undefined);
        await sleep(rng.int(20, 600));
        ack.at = await from(addr[writer], true, () => write(writer, data));
        await reading;
      }
    }
  }

  private static parse(payload: string): { xid: string; side: string; n: number } | undefined {
    const m = /^x(\d+)\|([AB])\|(\d+)\|/.exec(payload);
    return m ? { xid: m[1]!, side: m[2]!, n: Number(m[3]) } : undefined;
  }

  /**
   * What a device concludes from a payload it read while waiting for `expect` from the other side:
   * 'done' when it is that payload; a violation when it is older than one it already saw.
   */
  private judgeRead(
    family: Family,
    sent: Sent,
    a: Answer,
    data: string,
    expect: string,
    seen: { n: number },
    ackAt: number | undefined,
  ): 'done' | 'wait' {
    if (data === expect) return 'done';
    const p = Soak.parse(data);
    const want = Soak.parse(expect)!;
    if (p === undefined && data !== '' && !/^c\d+$/.test(data)) {
      this.violation('foreign payload', `${family}: ${describe(sent, a)}`);
      throw new ExchangeAbort('foreign');
    }
    if (p !== undefined && p.side === want.side && p.n < seen.n) {
      this.violation('reordered', `${family}: saw ${data.slice(0, 20)} after n=${seen.n}: ${describe(sent, a)}`);
    }
    if (p !== undefined && p.side === want.side) seen.n = Math.max(seen.n, p.n);
    if (ackAt !== undefined && a.sentAt > ackAt) {
      this.violation(
        'acknowledged write not seen',
        `${family}: read sent ${a.sentAt - ackAt} ms after the write of ${expect.slice(0, 20)} was acknowledged: ${describe(sent, a)}`,
      );
      throw new ExchangeAbort('lost');
    }
    return 'wait';
  }

  /** After a long-poll ran out without news: was it woken when it should have been? */
  private judgeTimeout(family: Family, sent: Sent, a: Answer, ackAt: number | undefined): void {
    if (ackAt === undefined) return;
    if (a.sentAt > ackAt) {
      this.violation('acknowledged write not seen', `${family}: ${describe(sent, a)} (write acked before the read)`);
      throw new ExchangeAbort('lost');
    }
    if (a.at - ackAt > 1500) {
      if (this.faultDuring(a.sentAt, a.at)) this.count(this.counters, 'long-poll not woken during a fault');
      else
        this.violation(
          'long-poll not woken',
          `${family}: answered ${a.at - ackAt} ms after the write: ${describe(sent, a)}`,
        );
    }
  }

  private async exchange(family: Family): Promise<void> {
    const xid = this.nextXid++;
    try {
      const addr = { A: deviceAddress(2 * xid), B: deviceAddress(2 * xid + 1) };
      if (family === 'msc4388') await from(addr.A, true, () => this.exchange4388(xid, addr));
      else await from(addr.A, true, () => this.exchangeEtag(family, xid, addr));
      this.completed[family]++;
    } catch (err) {
      this.abandoned[family]++;
      if (!(err instanceof ExchangeAbort)) this.violation('tool error', `${family} x${xid}: ${String(err)}`);
    }
  }

  private async exchangeEtag(
    family: 'msc3886' | 'msc4108',
    xid: number,
    addr: Record<'A' | 'B', string>,
  ): Promise<void> {
    const rng = this.loadRng;
    const ct = family === 'msc4108' ? 'text/plain' : rng.pick(['application/json', 'application/octet-stream']);
    const createSent: Sent =
      family === 'msc3886'
        ? {
            method: 'POST',
            path: rng.pick(['/', '/_matrix/client/unstable/org.matrix.msc3886/rendezvous']),
            headers: { 'Content-Type': ct },
            body: `c${xid}`,
          }
        : { method: 'POST', path: MSC4108, headers: { 'Content-Type': 'text/plain' } };
    const created = await this.retrying(createSent);
    if (created.status !== (family === 'msc3886' ? 200 : 201)) {
      this.violation('create failed', `${family}: ${describe(createSent, created)}`);
      throw new ExchangeAbort('create');
    }
    const body = JSON.parse(created.text) as { id?: string; url?: string };
    const path =
      family === 'msc3886' ? new URL(created.headers.get('location')!).pathname : new URL(body.url!).pathname;
    const expiresAt = created.sentAt + TTL_S * 1000;
    const dev = {
      A: { etag: created.headers.get('etag')!, seen: { n: 0 } },
      B: { etag: '', seen: { n: 0 } },
    };

    const vanished = (sent: Sent, a: Answer) => {
      if (Date.now() < expiresAt - 1000) this.violation('session vanished', `${family}: ${describe(sent, a)}`);
      throw new ExchangeAbort('vanished');
    };

    // B scans the code and reads what is there.
    const first: Sent = { method: 'GET', path, headers: {} };
    const got = await from(addr.B, true, () => this.retrying(first));
    if (got.status === 404) vanished(first, got);
    if (got.status !== 200) {
      this.violation('unexpected answer', `${family}: ${describe(first, got)}`);
      throw new ExchangeAbort('read');
    }
    dev.B.etag = got.headers.get('etag')!;

    const landed: Sent[] = [];
    const write = async (side: 'A' | 'B', data: string): Promise<number> => {
      const me = dev[side];
      const sent: Sent = { method: 'PUT', path, headers: { 'Content-Type': ct, 'If-Match': me.etag }, body: data };
      const a = await this.retrying(sent);
      if (a.status === 404) vanished(sent, a);
      if (a.status !== 202) {
        this.violation(a.retried ? 'verbatim re-send refused' : 'write refused', `${family}: ${describe(sent, a)}`);
        throw new ExchangeAbort('write');
      }
      const etag = a.headers.get('etag')!;
      if (etag === me.etag) this.violation('etag unchanged by a write', `${family}: ${describe(sent, a)}`);
      if (rng.chance(0.25)) {
        // The client pretends the answer was lost and sends the same write again.
        this.count(this.counters, 'pretend-lost re-sends');
        const again = await this.retrying(sent);
        if (again.status !== 202 || again.headers.get('etag') !== etag) {
          this.violation('re-send of a landed write', `${family}: expected 202 ${etag}: ${describe(sent, again)}`);
          throw new ExchangeAbort('resend');
        }
      }
      me.etag = etag;
      landed.push(sent);
      return a.at;
    };

    const waitFor = async (side: 'A' | 'B', expect: string, ack: { at?: number }): Promise<void> => {
      const me = dev[side];
      for (;;) {
        const longPoll = rng.chance(0.8);
        const sent: Sent = {
          method: 'GET',
          path,
          headers: longPoll
            ? { 'If-None-Match': me.etag, Prefer: `wait=${POLL_WAIT_S}` }
            : { 'If-None-Match': me.etag },
        };
        const a = await this.retrying(sent, 30_000);
        if (a.status === 404) vanished(sent, a);
        if (a.status === 304) {
          if (longPoll) this.judgeTimeout(family, sent, a, ack.at);
          else if (ack.at !== undefined && a.sentAt > ack.at) this.judgeTimeout(family, sent, a, ack.at);
          // A plain poll, or a long-poll the server did not hold: wait as a polling client would.
          if (!longPoll || a.at - a.sentAt < 1000) await sleep(300);
          continue;
        }
        if (a.status !== 200) {
          this.violation('unexpected answer', `${family}: ${describe(sent, a)}`);
          throw new ExchangeAbort('poll');
        }
        if (family === 'msc4108' && a.headers.get('content-type') !== 'text/plain') {
          this.violation('content type', `${family}: ${describe(sent, a)} ${a.headers.get('content-type')}`);
        }
        me.etag = a.headers.get('etag')!;
        if (this.judgeRead(family, sent, a, a.text, expect, me.seen, ack.at) === 'done') return;
      }
    };

    await this.alternate(xid, addr, write, waitFor);
    if (rng.chance(0.3)) {
      // A re-send of an early write that turns up after the other side wrote (a balancer that
      // retried it late): it must be refused as stale, and change nothing.
      this.count(this.counters, 'late re-sends');
      const late = landed[0]!;
      const a = await from(addr.B, true, () => this.retrying(late));
      if (a.status !== 412 || a.headers.get('etag') !== dev.B.etag) {
        this.violation('late re-send', `${family}: expected 412 ${dev.B.etag}: ${describe(late, a)}`);
      }
    }
    await this.finish(family, path, expiresAt, 204);
  }

  private async exchange4388(xid: number, addr: Record<'A' | 'B', string>): Promise<void> {
    const rng = this.loadRng;
    const prefix = rng.pick(MSC4388_PATHS);
    const json = (method: string, path: string, body: unknown): Sent => ({
      method,
      path,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const createSent = json('POST', prefix, { data: '' });
    const created = await this.retrying(createSent);
    if (created.status !== 200) {
      this.violation('create failed', `msc4388: ${describe(createSent, created)}`);
      throw new ExchangeAbort('create');
    }
    const c = JSON.parse(created.text) as { id: string; sequence_token: string; expires_in_ms: number };
    const path = `${prefix}/${c.id}`;
    const expiresAt = created.sentAt + c.expires_in_ms;
    const dev = { A: { token: c.sequence_token, seen: { n: 0 } }, B: { token: '', seen: { n: 0 } } };
    const vanished = (sent: Sent, a: Answer) => {
      if (Date.now() < expiresAt - 1000) this.violation('session vanished', `msc4388: ${describe(sent, a)}`);
      throw new ExchangeAbort('vanished');
    };

    const first: Sent = { method: 'GET', path, headers: {} };
    const got = await from(addr.B, true, () => this.retrying(first));
    if (got.status === 404) vanished(first, got);
    if (got.status !== 200) {
      this.violation('unexpected answer', `msc4388: ${describe(first, got)}`);
      throw new ExchangeAbort('read');
    }
    dev.B.token = (JSON.parse(got.text) as { sequence_token: string }).sequence_token;

    let txn = 0;
    const recorded: { sent: Sent; token: string }[] = [];
    const write = async (side: 'A' | 'B', data: string): Promise<number> => {
      const me = dev[side];
      const useTxn = rng.chance(0.5);
      const sent = json('PUT', useTxn ? `${path}/t${side}${++txn}-${xid}` : path, { sequence_token: me.token, data });
      const a = await this.retrying(sent);
      if (a.status === 404) vanished(sent, a);
      if (a.status !== 200) {
        this.violation(a.retried ? 'verbatim re-send refused' : 'write refused', `msc4388: ${describe(sent, a)}`);
        throw new ExchangeAbort('write');
      }
      const token = (JSON.parse(a.text) as { sequence_token: string }).sequence_token;
      if (token === me.token) this.violation('token unchanged by a write', `msc4388: ${describe(sent, a)}`);
      if (rng.chance(0.25)) {
        this.count(this.counters, useTxn ? 'pretend-lost re-sends (txnId)' : 'pretend-lost re-sends');
        const again = await this.retrying(sent);
        const t2 = again.status === 200 ? (JSON.parse(again.text) as { sequence_token: string }).sequence_token : '';
        if (t2 !== token) {
          this.violation('re-send of a landed write', `msc4388: expected 200 ${token}: ${describe(sent, again)}`);
          throw new ExchangeAbort('resend');
        }
      }
      me.token = token;
      if (useTxn) recorded.push({ sent, token });
      return a.at;
    };

    const waitFor = async (side: 'A' | 'B', expect: string, ack: { at?: number }): Promise<void> => {
      const me = dev[side];
      for (;;) {
        const longPoll = rng.chance(0.8);
        const q = longPoll ? `?sequence_token=${encodeURIComponent(me.token)}&timeout_ms=${POLL_WAIT_S * 1000}` : '';
        const sent: Sent = { method: 'GET', path: `${path}${q}`, headers: {} };
        const a = await this.retrying(sent, 30_000);
        if (a.status === 404) vanished(sent, a);
        if (a.status !== 200) {
          this.violation('unexpected answer', `msc4388: ${describe(sent, a)}`);
          throw new ExchangeAbort('poll');
        }
        const r = JSON.parse(a.text) as { data: string; sequence_token: string };
        if (r.sequence_token === me.token) {
          if (longPoll) this.judgeTimeout('msc4388', sent, a, ack.at);
          else if (ack.at !== undefined && a.sentAt > ack.at) this.judgeTimeout('msc4388', sent, a, ack.at);
          // A plain poll, or a long-poll the server did not hold: wait as a polling client would.
          if (!longPoll || a.at - a.sentAt < 1000) await sleep(300);
          continue;
        }
        me.token = r.sequence_token;
        if (this.judgeRead('msc4388', sent, a, r.data, expect, me.seen, ack.at) === 'done') return;
      }
    };

    await this.alternate(xid, addr, write, waitFor);
    if (recorded.length > 0 && rng.chance(0.5)) {
      // A transaction id re-sent long after, the other side having written since: its recorded
      // answer comes back, whatever the session holds now.
      this.count(this.counters, 'late re-sends (txnId)');
      const { sent, token } = recorded[0]!;
      const a = await this.retrying(sent);
      const t = a.status === 200 ? (JSON.parse(a.text) as { sequence_token: string }).sequence_token : '';
      if (t !== token) this.violation('late txnId re-send', `msc4388: expected 200 ${token}: ${describe(sent, a)}`);
    }
    await this.finish('msc4388', path, expiresAt, 200);
  }

  /** The creator deletes the session; afterwards neither device may read it. */
  private async finish(family: Family, path: string, expiresAt: number, ok: number): Promise<void> {
    const del: Sent = { method: 'DELETE', path, headers: {} };
    const a = await this.retrying(del);
    if (a.status === 404 && !a.retried) {
      if (Date.now() < expiresAt - 1000) this.violation('session vanished', `${family}: ${describe(del, a)}`);
    } else if (a.status !== ok && a.status !== 404) {
      this.violation('unexpected answer', `${family}: ${describe(del, a)}`);
    }
    const after: Sent = { method: 'GET', path, headers: {} };
    const gone = await this.retrying(after);
    if (gone.status !== 404) this.violation('readable after delete', `${family}: ${describe(after, gone)}`);
  }

  private async exchangeLoop(family: Family, until: number): Promise<void> {
    while (!this.stopping && Date.now() < until) await this.exchange(family);
  }

  // ---------------------------------------------------------------------------------------------
  // Resting sessions: created and left alone, read now and then until they expire.

  private restingLoop(until: number): Promise<void> {
    return from('172.16.0.1', true, () => this.resting(until));
  }

  private async resting(until: number): Promise<void> {
    const resting: { family: Family; path: string; data: string; expiresAt: number; createdAt: number }[] = [];
    let lastCreate = 0;
    while (!this.stopping && Date.now() < until) {
      if (Date.now() - lastCreate > 15_000) {
        lastCreate = Date.now();
        for (const family of FAMILIES) {
          try {
            const data = `rest-${this.nextXid++}`;
            if (family === 'msc4388') {
              const sent: Sent = {
                method: 'POST',
                path: MSC4388_PATHS[0]!,
                headers: { 'Content-Type': 'application/json' },
                body: JSON.stringify({ data }),
              };
              const a = await this.retrying(sent);
              const r = JSON.parse(a.text) as { id: string; expires_in_ms: number };
              resting.push({
                family,
                path: `${MSC4388_PATHS[0]}/${r.id}`,
                data,
                createdAt: a.sentAt,
                expiresAt: a.sentAt + r.expires_in_ms,
              });
            } else {
              const sent: Sent = {
                method: 'POST',
                path: family === 'msc3886' ? '/' : MSC4108,
                headers: { 'Content-Type': 'text/plain' },
                body: family === 'msc3886' ? data : undefined,
              };
              const a = await this.retrying(sent);
              const loc =
                family === 'msc3886' ? a.headers.get('location')! : (JSON.parse(a.text) as { url: string }).url;
              resting.push({
                family,
                path: new URL(loc).pathname,
                data: family === 'msc3886' ? data : '',
                createdAt: a.sentAt,
                expiresAt: a.sentAt + TTL_S * 1000,
              });
            }
          } catch (err) {
            if (!(err instanceof ExchangeAbort)) this.violation('tool error', `resting create: ${String(err)}`);
          }
        }
      }
      for (const s of [...resting]) {
        const sent: Sent = { method: 'GET', path: s.path, headers: {} };
        let a: Answer;
        try {
          a = await this.retrying(sent);
        } catch {
          continue;
        }
        const now = Date.now();
        if (a.status === 200) {
          const data = s.family === 'msc4388' ? (JSON.parse(a.text) as { data: string }).data : a.text;
          if (data !== s.data) this.violation('resting session changed', `${s.family}: ${describe(sent, a)}`);
          if (a.sentAt > s.expiresAt + 1500)
            this.violation('readable after expiry', `${s.family}: ${describe(sent, a)}`);
        } else if (a.status === 404) {
          if (a.at < s.expiresAt - 1500)
            this.violation('session vanished', `${s.family} resting: ${describe(sent, a)}`);
          resting.splice(resting.indexOf(s), 1);
          this.count(this.counters, 'resting sessions seen to expire');
        } else {
          this.violation('unexpected answer', `${s.family} resting: ${describe(sent, a)}`);
        }
        if (now > until) break;
      }
      await sleep(5000);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Hostile trickle

  private hostile(): { sent: Sent; ok: (s: number) => boolean } {
    const rng = this.loadRng;
    const rid = `nope${rng.int(0, 1e9)}abcdefghijklmnopqrstuvwxyz`;
    const bad = (s: number) => s >= 400 && s < 500;
    const p4388 = rng.pick(MSC4388_PATHS);
    const cases: { sent: Sent; ok?: (s: number) => boolean }[] = [
      { sent: { method: 'POST', path: p4388, headers: { 'Content-Type': 'application/json' }, body: '{not json' } },
      { sent: { method: 'POST', path: p4388, headers: { 'Content-Type': 'application/json' }, body: '{"data": 5}' } },
      {
        sent: {
          method: 'POST',
          path: p4388,
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ data: 'x'.repeat(5000) }),
        },
      },
      { sent: { method: 'POST', path: '/', headers: { 'Content-Type': 'text/plain' }, body: 'y'.repeat(5000) } },
      { sent: { method: 'PUT', path: `/${rid}`, headers: { 'If-Match': '"x"' }, body: 'z' } },
      { sent: { method: 'GET', path: `/${rid}%00%ff`, headers: {} } },
      { sent: { method: 'GET', path: '/%zz', headers: {} } },
      { sent: { method: 'PATCH', path: '/', headers: {} } },
      { sent: { method: 'GET', path: '/no/such/path/at/all', headers: {} } },
      { sent: { method: 'POST', path: MSC4108, headers: { 'Content-Type': 'application/xml' }, body: '<x/>' } },
      {
        sent: {
          method: 'PUT',
          path: `${MSC4108}/${rid}`,
          headers: { 'If-Match': '*', 'Content-Type': 'text/plain' },
          body: 'q',
        },
      },
      {
        sent: {
          method: 'PUT',
          path: `${MSC4108}/${rid}`,
          headers: { 'If-Match': '"a", "b"', 'Content-Type': 'text/plain' },
          body: 'q',
        },
      },
      {
        sent: {
          method: 'GET',
          path: `${p4388}/${rid}`,
          headers: { 'Sec-Fetch-Dest': 'document', 'Sec-Fetch-Mode': 'navigate' },
        },
      },
      {
        sent: {
          method: 'PUT',
          path: `${p4388}/${rid}/txn${rng.int(0, 99)}`,
          headers: { 'Content-Type': 'application/json' },
          body: '{"sequence_token": 1}',
        },
      },
      { sent: { method: 'PUT', path: `${p4388}/${rid}`, headers: { 'Content-Type': 'application/json' }, body: '[]' } },
      { sent: { method: 'GET', path: `${p4388}/${rid}?sequence_token=&timeout_ms=-5`, headers: {} } },
      { sent: { method: 'GET', path: `${p4388}/${rid}?timeout_ms=99999999999999999999`, headers: {} } },
      { sent: { method: 'GET', path: `/${rid}`, headers: { Prefer: 'wait=abc', 'If-None-Match': 'W/"x"' } } },
      { sent: { method: 'GET', path: `/${'a'.repeat(300)}`, headers: {} } },
      { sent: { method: 'DELETE', path: `${p4388}/${rid}`, headers: { Authorization: 'Bearer nonsense' } } },
      {
        sent: { method: 'GET', path: p4388, headers: { Authorization: 'Bearer nonsense' } },
        ok: (s) => s === 200 || bad(s),
      },
      {
        sent: {
          method: 'OPTIONS',
          path: `${p4388}/${rid}`,
          headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'PUT' },
        },
        ok: (s) => s < 300,
      },
    ];
    const c = rng.pick(cases);
    return { sent: c.sent, ok: c.ok ?? bad };
  }

  /** Bytes no HTTP client would send, straight to a replica: the server must survive them. */
  private rawGarbage(): Promise<void> {
    const rng = this.loadRng;
    const slot = rng.pick(this.slots);
    const lines = [
      'GARBAGE\r\n\r\n',
      'PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort',
      'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n',
      `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-Pad: ${'p'.repeat(20_000)}\r\n\r\n0123456789`,
    ];
    return new Promise((resolve) => {
      const sock = net.connect(slot.port, '127.0.0.1');
      sock.setTimeout(3000, () => sock.destroy());
      sock.on('error', () => undefined);
      sock.on('close', () => resolve());
      sock.on('data', (b) => {
        const status = /^HTTP\/1\.1 (\d{3})/.exec(b.toString('latin1'));
        if (status && status[1] === '500')
          this.violation('5xx', `raw request to replica ${slot.index}: ${b.toString('latin1').slice(0, 200)}`);
        if (status) this.count(this.statuses, `raw ${status[1]}`);
        sock.end();
      });
      sock.write(rng.pick(lines));
    });
  }

  private async hostileLoop(until: number): Promise<void> {
    const gap = 1000 / this.opts.hostileRate;
    while (!this.stopping && Date.now() < until) {
      await sleep(gap);
      this.count(this.counters, 'hostile requests');
      if (this.loadRng.chance(0.1)) {
        await this.rawGarbage();
        continue;
      }
      const { sent, ok } = this.hostile();
      try {
        // A few addresses, so that their budgets may run out (429 is a fine answer to them).
        const a = await from(`192.0.2.${this.loadRng.int(1, 4)}`, false, () => this.send(sent, 20_000));
        if (!ok(a.status) && ![502, 503, 504].includes(a.status)) {
          this.violation('hostile request answered wrongly', describe(sent, a));
        }
      } catch {
        // A connection error under a fault is fine for a hostile request.
      }
    }
  }

  // ---------------------------------------------------------------------------------------------

  async run(): Promise<void> {
    const until = Date.now() + this.opts.durationS * 1000;
    const rssTimer = setInterval(() => this.sampleRss(), 5000);
    this.sampleRss();
    const faults = this.faultLoop(until);
    const load: Promise<void>[] = [];
    for (const family of FAMILIES) {
      for (let i = 0; i < this.opts.perFamily; i++) load.push(this.exchangeLoop(family, until));
    }
    load.push(this.hostileLoop(until), this.restingLoop(until));
    await faults;
    await Promise.all(load);
    this.sampleRss();
    clearInterval(rssTimer);
  }

  summary(): string {
    const out: string[] = [];
    const secs = ((Date.now() - this.t0) / 1000).toFixed(0);
    out.push(`soak summary (seed ${this.opts.seed}, ${secs} s)`);
    out.push(
      `  exchanges completed: ${FAMILIES.map((f) => `${f} ${this.completed[f]}`).join(', ')}` +
        `; abandoned: ${FAMILIES.map((f) => `${f} ${this.abandoned[f]}`).join(', ')}`,
    );
    const statuses = [...this.statuses.entries()].sort(([a], [b]) => a.localeCompare(b));
    out.push(`  requests by status: ${statuses.map(([s, n]) => `${s}: ${n}`).join(', ')}`);
    out.push(`  faults injected: ${[...this.faults.entries()].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
    out.push(`  other counts: ${[...this.counters.entries()].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    if (this.serverErrors.size > 0) {
      out.push(`  replica error logs: ${[...this.serverErrors.entries()].map(([k, n]) => `${k} (${n})`).join(', ')}`);
    }
    const lives = [
      ...this.retired.map((r) => ({ label: `replica ${r.index} (retired)`, lived: r.lived, rss: r.rss })),
      ...this.slots.map((s) => ({ label: `replica ${s.index}`, lived: Date.now() - s.startedAt, rss: s.rss })),
    ].sort((a, b) => Math.round(b.lived / 1000) - Math.round(a.lived / 1000));
    const longest = lives[0];
    if (longest && longest.rss.length > 0) {
      const rss = longest.rss;
      const max = Math.max(...rss.map(([, m]) => m));
      out.push(
        `  RSS of the longest-lived (${longest.label}, ${(longest.lived / 1000).toFixed(0)} s): ` +
          `start ${rss[0]![1].toFixed(1)} MiB, end ${rss[rss.length - 1]![1].toFixed(1)} MiB, max ${max.toFixed(1)} MiB`,
      );
      const step = Math.max(1, Math.floor(rss.length / 12));
      out.push(
        `  RSS over time: ${rss
          .filter((_, i) => i % step === 0 || i === rss.length - 1)
          .map(([t, m]) => `${t.toFixed(0)}s=${m.toFixed(0)}`)
          .join(' ')}`,
      );
    }
    const allMax = Math.max(0, ...lives.flatMap((l) => l.rss.map(([, m]) => m)));
    out.push(`  RSS max over every replica: ${allMax.toFixed(1)} MiB (limit ${this.opts.rssLimitMb})`);
    out.push(`  violations: ${this.violations.length}`);
    for (const v of this.violations.slice(0, 20)) out.push(`    ${v}`);
    return out.join('\n');
  }
}
