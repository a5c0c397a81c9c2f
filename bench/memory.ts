import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { sessionKey } from '../src/store/format';
import { familyNamed } from './families';
import { RedisServer, rssOf, startReplica } from './processes';

/** One way of filling Redis with `sessions` entries: what `used_memory` grew by. */
export interface MemoryFill {
  /** Growth of `used_memory` divided by the entries: every key, table and structure included. */
  usedMemoryPerSession: number;
  /** Mean `MEMORY USAGE` of the session keys themselves (the string only). */
  usagePerSession: number;
  /** Keys Redis held after the fill, by kind (the session strings, the caps, rate windows...). */
  keys: Record<string, number>;
  /** `MEMORY USAGE` of the keys other than the sessions, by kind, divided by the entries. */
  sharedPerSession: Record<string, number>;
}

export interface RedisMemory {
  /** `SET rz:{<22-char id>} <payload> PX <ttl>`, written straight into Redis. */
  bare: MemoryFill;
  /** Sessions created through a replica with every limit active, all from one client address. */
  oneAddress: MemoryFill;
  /** The same, each session from a different client address (X-Forwarded-For from a trusted proxy). */
  distinctAddresses: MemoryFill;
}

export interface MemoryFigures {
  sessions: number;
  payloadBytes: number;
  redis?: RedisMemory;
  memory?: {
    /** Growth of the replica's resident set size while the sessions were created. */
    rssGrowth: number;
    rssPerSession: number;
  };
}

/** The bytes a session costs above a bare key: used_memory growth per session minus the bare key's. */
export function aboveBare(m: RedisMemory): { oneAddress: number; distinctAddresses: number; worst: number } {
  const oneAddress = m.oneAddress.usedMemoryPerSession - m.bare.usedMemoryPerSession;
  const distinctAddresses = m.distinctAddresses.usedMemoryPerSession - m.bare.usedMemoryPerSession;
  return { oneAddress, distinctAddresses, worst: Math.max(oneAddress, distinctAddresses) };
}

/** Creates `n` MSC3886 sessions through the server (autocannon, from this process) and returns their ids. */
async function createMany(url: string, n: number, payload: string, connections: number): Promise<string[]> {
  const family = familyNamed('MSC3886');
  const ids: string[] = [];
  let failures = 0;
  await autocannon({
    url,
    connections,
    amount: n,
    requests: [
      {
        ...family.create(payload),
        onResponse: (status: number, body: string) => {
          if (status !== family.created) return void failures++;
          ids.push((JSON.parse(body) as { id: string }).id);
        },
      } as autocannon.Request,
    ],
  });
  if (failures > 0 || ids.length !== n) throw new Error(`memory: ${failures} of ${n} creates failed`);
  return ids;
}

/** An IPv4 address of its own for each i (10.0.0.1, 10.0.0.2, ...). */
const addressOf = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** Creates `n` sessions through the server, each from its own client address, and returns their ids. */
async function createFromDistinctAddresses(
  url: string,
  n: number,
  payload: string,
  connections: number,
  firstAddress: number,
): Promise<string[]> {
  const family = familyNamed('MSC3886');
  const req = family.create(payload);
  const ids: string[] = [];
  let next = 0;
  let failed: string | undefined;
  const worker = async () => {
    while (next < n && failed === undefined) {
      const i = next++;
      const res = await fetch(url + req.path, {
        method: req.method,
        headers: { ...req.headers, 'X-Forwarded-For': addressOf(firstAddress + i) },
        body: req.body!,
      });
      const body = await res.text();
      if (res.status !== family.created) failed ??= `create answered ${res.status}: ${body.slice(0, 200)}`;
      else ids.push((JSON.parse(body) as { id: string }).id);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  if (failed !== undefined) throw new Error(`memory: ${failed}`);
  return ids;
}

async function usedMemory(client: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What Redis holds, by kind of key (a session's id is replaced by `<id>`), and the `MEMORY USAGE` of
 * each key other than the sessions (the caps, the rate windows), by kind.
 */
async function keyKinds(client: Redis): Promise<{ keys: Record<string, number>; shared: Record<string, number> }> {
  const keys: Record<string, number> = {};
  const shared: Record<string, number> = {};
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      const kind = key
        .replace(/^rz:\{[A-Za-z0-9_-]{22}\}/, 'rz:{<id>}')
        .replace(/^(rz:\{:rl\}:\w+):\d+:\d+$/, '$1:<window>:<bucket>');
      keys[kind] = (keys[kind] ?? 0) + 1;
      if (kind !== 'rz:{<id>}') {
        shared[kind] = (shared[kind] ?? 0) + Number(await client.memory('USAGE', key, 'SAMPLES', '0'));
      }
    }
  } while (cursor !== '0');
  return { keys, shared };
}

/**
 * Fills an empty Redis one way and measures what `used_memory` grew by. Every fill starts from an
 * empty keyspace (FLUSHALL), so the key tables grow through the same sizes whatever fills them, and
 * ends after a pause (see `settleMs`).
 */
async function fill(client: Redis, settleMs: number, write: () => Promise<string[]>): Promise<MemoryFill> {
  await client.flushall('SYNC');
  await sleep(settleMs);
  const before = await usedMemory(client);
  const ids = await write();
  await sleep(settleMs);
  const after = await usedMemory(client);
  const pipeline = client.pipeline();
  for (const id of ids) pipeline.memory('USAGE', sessionKey(id), 'SAMPLES', '0');
  const usage = ((await pipeline.exec()) ?? []).reduce((sum, [, v]) => sum + Number(v), 0);
  const { keys, shared } = await keyKinds(client);
  return {
    usedMemoryPerSession: (after - before) / ids.length,
    usagePerSession: usage / ids.length,
    keys,
    sharedPerSession: Object.fromEntries(Object.entries(shared).map(([k, v]) => [k, v / ids.length])),
  };
}

/**
 * Bytes per live session in Redis with every structure the server writes, against bare keys of the
 * same payload and TTL in the same Redis: a redis-server and a replica of their own (every limit
 * active, trusting X-Forwarded-For from this process), so nothing else in the run adds or expires
 * keys meanwhile.
 */
export async function redisMemory(opts: {
  sessions: number;
  payloadBytes: number;
  connections: number;
  ttlSeconds: number;
  /**
   * Pause before each reading of used_memory: the replica's rate counts settle (every 50 ms) and
   * Redis finishes rehashing a grown table (both tables are allocated until then).
   */
  settleMs: number;
}): Promise<RedisMemory> {
  const redis = await RedisServer.start();
  const replica = await startReplica(redis.url, {
    RZ_TRUSTED_PROXIES: '127.0.0.1',
    RZ_TTL_SECONDS: String(opts.ttlSeconds),
  });
  const client = new Redis({ port: redis.port, host: '127.0.0.1' });
  try {
    const payload = 'x'.repeat(opts.payloadBytes);
    const n = opts.sessions;
    // Loads the scripts into Redis and warms the replica up; flushed before the first fill.
    await createMany(replica.url, Math.min(1000, n), payload, opts.connections);
    await createFromDistinctAddresses(replica.url, Math.min(1000, n), payload, opts.connections, 1 << 20);

    const bare = await fill(client, opts.settleMs, async () => {
      // A connection of its own, closed before used_memory is read: its buffers are not counted.
      const writer = new Redis({ port: redis.port, host: '127.0.0.1' });
      try {
        const ids: string[] = [];
        for (let i = 0; i < n; i += 100) {
          const pipeline = writer.pipeline();
          for (let j = i; j < Math.min(n, i + 100); j++) {
            // The shape of a session id: 22 base64url characters.
            const id = `bench${String(j).padStart(17, '0')}`;
            ids.push(id);
            pipeline.set(sessionKey(id), payload, 'PX', opts.ttlSeconds * 1000);
          }
          await pipeline.exec();
        }
        return ids;
      } finally {
        writer.disconnect();
      }
    });
    const oneAddress = await fill(client, opts.settleMs, () => createMany(replica.url, n, payload, opts.connections));
    const distinctAddresses = await fill(client, opts.settleMs, () =>
      createFromDistinctAddresses(replica.url, n, payload, opts.connections, 0),
    );
    return { bare, oneAddress, distinctAddresses };
  } finally {
    client.disconnect();
    await replica.stop();
    await redis.destroy();
  }
}

/** RSS growth of a fresh in-memory replica while it takes `sessions` sessions. */
export async function memoryStoreRss(opts: {
  sessions: number;
  payloadBytes: number;
  connections: number;
}): Promise<MemoryFigures['memory']> {
  const replica = await startReplica(undefined);
  try {
    const payload = 'x'.repeat(opts.payloadBytes);
    // Warm up first, so the figure is the sessions and not the JIT or the first heap growth.
    await createMany(replica.url, Math.min(1000, opts.sessions), payload, opts.connections);
    const before = rssOf(replica.proc.pid!);
    await createMany(replica.url, opts.sessions, payload, opts.connections);
    const after = rssOf(replica.proc.pid!);
    if (before === undefined || after === undefined) return undefined;
    return { rssGrowth: after - before, rssPerSession: (after - before) / opts.sessions };
  } finally {
    await replica.stop();
  }
}
