import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { sessionKey } from '../src/store/format';
import { familyNamed } from './families';
import { rssOf, startReplica } from './processes';

export interface MemoryFigures {
  sessions: number;
  payloadBytes: number;
  redis?: {
    /** Mean of MEMORY USAGE over the sessions' keys. */
    usagePerSession: number;
    /** usagePerSession minus the payload: what the store adds to each session. */
    overheadPerSession: number;
    /** Growth of used_memory divided by the sessions (includes the keyspace's own tables). */
    usedMemoryPerSession: number;
  };
  memory?: {
    /** Growth of the replica's resident set size while the sessions were created. */
    rssGrowth: number;
    rssPerSession: number;
  };
}

/** Creates `n` MSC3886 sessions through the server and returns their ids. */
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

async function usedMemory(client: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
}

/** Bytes per live session in Redis (MEMORY USAGE) for sessions created through a replica. */
export async function redisMemory(opts: {
  replicaUrl: string;
  redisPort: number;
  sessions: number;
  payloadBytes: number;
  connections: number;
}): Promise<NonNullable<MemoryFigures['redis']>> {
  const client = new Redis({ port: opts.redisPort, host: '127.0.0.1' });
  try {
    const payload = 'x'.repeat(opts.payloadBytes);
    const before = await usedMemory(client);
    const ids = await createMany(opts.replicaUrl, opts.sessions, payload, opts.connections);
    const after = await usedMemory(client);
    const pipeline = client.pipeline();
    for (const id of ids) pipeline.memory('USAGE', sessionKey(id), 'SAMPLES', '0');
    const usage = ((await pipeline.exec()) ?? []).reduce((sum, [, v]) => sum + Number(v), 0);
    // The sessions would expire by themselves; deleting them keeps later scenarios unaffected.
    for (let i = 0; i < ids.length; i += 1000) await client.del(...ids.slice(i, i + 1000).map(sessionKey));
    const usagePerSession = usage / ids.length;
    return {
      usagePerSession,
      overheadPerSession: usagePerSession - opts.payloadBytes,
      usedMemoryPerSession: (after - before) / ids.length,
    };
  } finally {
    client.disconnect();
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
