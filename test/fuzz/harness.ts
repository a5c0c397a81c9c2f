import http from 'node:http';
import net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadConfig } from '../../src/config';
import { start } from '../../src/main';
import { RedisServer } from '../helpers/redis';
import { send, type Answer } from '../helpers/send';
import { PREFIXES, generate, rng, type FamilyName, type FuzzCase, type Pools, type Victim } from './generate';

export interface FuzzReport {
  sent: number;
  byStatus: Record<string, number>;
  failures: string[];
  heapBaselineMB: number;
  heapAfterMB: number;
  seconds: number;
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function settleHeap(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed / (1024 * 1024);
}

/** What a victim looks like from its own family: must be byte-identical after the run. */
async function snapshot(port: number, v: Victim): Promise<string> {
  const a = await send(port, { path: `${v.prefix}/${v.id}` });
  let body = a.body.toString('base64');
  if (v.family === 'msc4388' && a.status === 200) {
    // The remaining lifetime counts down by itself; data and sequence token must not move.
    const { data, sequence_token } = JSON.parse(a.body.toString()) as Record<string, unknown>;
    body = JSON.stringify({ data, sequence_token });
  }
  return JSON.stringify([a.status, a.headers['content-type'], a.headers.etag, body]);
}

/** Creates one session per family the server speaks; families not on this server are skipped. */
async function createVictims(port: number): Promise<Victim[]> {
  const out: Victim[] = [];
  const tries: [FamilyName, string, Record<string, string>, Buffer][] = [
    [
      'msc3886',
      PREFIXES.msc3886[0],
      { 'content-type': 'application/x-victim; q=1' },
      Buffer.from([0, 1, 2, 255, 10, 13]),
    ],
    ['msc3886', PREFIXES.msc3886[1], { 'content-type': 'application/json' }, Buffer.from('{"victim":true}')],
    ['msc4108', PREFIXES.msc4108[0], { 'content-type': 'text/plain' }, Buffer.alloc(0)],
    ['msc4388', PREFIXES.msc4388[0], { 'content-type': 'application/json' }, Buffer.from('{"data":"victim ✓"}')],
    ['msc4388', PREFIXES.msc4388[1], { 'content-type': 'application/json' }, Buffer.from('{"data":""}')],
  ];
  for (const [family, prefix, headers, body] of tries) {
    const a = await send(port, { method: 'POST', path: prefix === '' ? '/' : prefix, headers, body });
    if (a.status !== 200 && a.status !== 201) continue;
    const parsed = JSON.parse(a.body.toString()) as { id?: string; url?: string };
    const id = parsed.id ?? parsed.url?.split('/').pop();
    if (id !== undefined) out.push({ family, prefix, id });
  }
  return out;
}

function rawRequest(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on('data', (d: Buffer) => {
      if (out.length < 65536) out += d.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.end(bytes);
  });
}

/**
 * Sends the start of a request and then nothing, without closing: resolves with what the server
 * sent once it closes the connection, or with null if it never does within `giveUpMs`.
 */
function stalledRequest(port: number, bytes: Buffer, giveUpMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    let answered = true;
    const timer = setTimeout(() => {
      answered = false;
      socket.destroy();
    }, giveUpMs);
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answered ? out : null);
    });
    socket.write(bytes);
  });
}

type HttpCase = Extract<FuzzCase, { kind: 'http' }>;

/** Node's client refuses to send some bytes at all; those cases go out as raw bytes instead. */
const CLIENT_REFUSALS = new Set([
  'ERR_INVALID_CHAR',
  'ERR_UNESCAPED_CHARACTERS',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_HTTP_INVALID_HEADER_VALUE',
]);

function serialise(c: HttpCase): Buffer {
  let head = `${c.method} ${c.path} HTTP/1.1\r\nHost: ${c.headers.host ?? '127.0.0.1'}\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(c.headers)) if (k !== 'host') head += `${k}: ${v}\r\n`;
  if (c.body !== undefined) head += `Content-Length: ${c.body.length}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), c.body ?? Buffer.alloc(0)]);
}

function httpRequest(port: number, agent: http.Agent, c: HttpCase): Promise<Answer | Error> {
  // Framed explicitly: Node's client would send a GET or DELETE body with no length at all.
  const headers = c.body === undefined ? c.headers : { ...c.headers, 'content-length': String(c.body.length) };
  return send(port, { method: c.method, path: c.path, headers, body: c.body, agent }).catch((e: Error) => e);
}

/** The request timeout of the replica under test: a stalled body is answered 408 once it passes. */
const REQUEST_TIMEOUT_MS = 2000;

/**
 * Starts a replica on its own Redis, plants a session of every family, fires `count` generated hostile
 * requests at it, then checks: no 5xx but 503 (and 505 where a case owes it), a malformed Host refused with 400 and a stalled body
 * with 408, the process alive with no unhandled rejection, the heap back to its baseline, and every
 * planted session byte-for-byte as it was.
 */
export async function runFuzz(count: number, seed: number): Promise<FuzzReport> {
  const began = Date.now();
  const failures: string[] = [];
  const byStatus: Record<string, number> = {};
  const onRejection = (err: unknown) => failures.push(`unhandled rejection: ${String(err)}`);
  const onException = (err: unknown) => failures.push(`uncaught exception: ${String(err)}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);

  const redis = await RedisServer.start();
  // Limits on with budgets no run reaches, so their code (and the forwarding-header parser) runs on
  // every request; the fuzzer's own X-Forwarded-For values are believed from loopback.
  const server = await start(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      REDIS_URL: redis.url,
      RZ_CREATE_RATE: '1000000',
      RZ_REQUEST_RATE: '1000000',
      RZ_MAX_SESSIONS: '1000000',
      RZ_MAX_SESSIONS_PER_ADDRESS: '1000000',
      RZ_TRUSTED_PROXIES: '127.0.0.1',
      RZ_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      RZ_HEADERS_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      RZ_KEEPALIVE_TIMEOUT_MS: '2000',
    }),
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
  try {
    const victims = await createVictims(server.port);
    const before = await Promise.all(victims.map((v) => snapshot(server.port, v)));
    const pools: Pools = { victims, own: [] };
    const r = rng(seed);

    const describe = (c: FuzzCase) =>
      c.kind === 'http'
        ? `${c.method} ${c.path}${c.headers.host === undefined ? '' : ` Host: ${JSON.stringify(c.headers.host)}`}`
        : JSON.stringify(c.bytes.toString('latin1').slice(0, 200));
    const record = (c: FuzzCase, status: number | string) => {
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      // 503 is a store condition; any other 5xx is a failure unless the case owes it (505 for HTTP/9.9).
      if (
        typeof status === 'number' &&
        status >= 500 &&
        status !== 503 &&
        (c.kind === 'stall' || status !== c.expect)
      ) {
        failures.push(`${status} for ${describe(c)}`);
      }
      const expected = c.kind === 'stall' ? 408 : c.expect;
      if (expected !== undefined && status !== expected) {
        failures.push(`${status} instead of ${expected} for ${describe(c)}`);
      }
    };
    const statusesOf = (out: string) => [...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

    const runOne = async (c: FuzzCase): Promise<void> => {
      if (c.kind === 'stall') {
        const out = await stalledRequest(server.port, c.bytes, REQUEST_TIMEOUT_MS + 10_000);
        if (out === null) return record(c, 'unanswered');
        const statuses = statusesOf(out);
        if (statuses.length === 0) record(c, 'closed');
        for (const s of statuses) record(c, s);
        return;
      }
      if (c.kind === 'raw') {
        const statuses = statusesOf(await rawRequest(server.port, c.bytes));
        if (statuses.length === 0) record(c, 'closed');
        for (const s of statuses) record(c, s);
        return;
      }
      const a = await httpRequest(server.port, agent, c);
      // A case whose answer is fixed is asked again as raw bytes when Node's client fails on its own
      // account (e.g. a HEAD answered with a body by Node's parser-level refusal), to see what came back.
      const clientFailed =
        a instanceof Error && (c.expect !== undefined || CLIENT_REFUSALS.has((a as NodeJS.ErrnoException).code ?? ''));
      if (clientFailed) return runOne({ kind: 'raw', bytes: serialise(c), expect: c.expect });
      if (a instanceof Error) return record(c, 'reset');
      record(c, a.status);
      if (a.status >= 400 && a.headers['content-type'] === 'application/json' && a.body.length > 0) {
        const parsed = JSON.parse(a.body.toString()) as { errcode?: unknown };
        if (typeof parsed.errcode !== 'string') failures.push(`${a.status} without errcode for ${c.method} ${c.path}`);
      }
      if (c.method === 'POST' && (a.status === 200 || a.status === 201) && pools.own.length < 200) {
        const parsed = JSON.parse(a.body.toString()) as { id?: string; url?: string };
        const id = parsed.id ?? parsed.url?.split('/').pop();
        if (id !== undefined) pools.own.push({ prefix: c.path.split('?')[0]!, id });
      }
    };

    const run = async (n: number) => {
      let next = 0;
      const worker = async () => {
        while (next < n) {
          next++;
          await runOne(generate(r, pools));
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker));
    };

    await run(Math.min(300, count));
    const baseline = await settleHeap();
    await run(count);
    agent.destroy();
    const afterHeap = await settleHeap();

    const after = await Promise.all(victims.map((v) => snapshot(server.port, v)));
    victims.forEach((v, i) => {
      if (after[i] !== before[i])
        failures.push(`${v.family} session at ${v.prefix}/ changed: ${before[i]} -> ${after[i]}`);
    });
    if ((await send(server.port, { path: '/health' })).status !== 200) failures.push('server no longer healthy');
    // Generous: what matters is that nothing grows with the number of requests.
    if (afterHeap > baseline + 8)
      failures.push(`heap grew from ${baseline.toFixed(1)} MB to ${afterHeap.toFixed(1)} MB`);
    return {
      sent: count + Math.min(300, count) + victims.length,
      byStatus,
      failures,
      heapBaselineMB: Number(baseline.toFixed(1)),
      heapAfterMB: Number(afterHeap.toFixed(1)),
      seconds: (Date.now() - began) / 1000,
    };
  } finally {
    agent.destroy();
    await server.stop();
    await redis.destroy();
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  }
}
