import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { NOTICE_MAX_PAYLOAD_BYTES, scriptSource } from '../src/store/redis';
import { CAPS_BY_ADDRESS_KEY, CAPS_KEY } from '../src/store/format';

export interface CeilingRow {
  name: string;
  command: string;
  rps: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * Redis's own ceiling for the commands one request sends, measured with redis-benchmark at the same
 * concurrency: what the service could reach if Node cost nothing. Keys are shaped like the store's.
 */
export async function redisCeiling(opts: {
  port: number;
  connections: number;
  requests: number;
  /** Payload of the polled and written session. */
  payload: string;
  /** Payload of each create. */
  createPayload: string;
  /** Session caps the create script counts against, as the measured replica's. */
  caps: { global: number; perAddress: number };
}): Promise<CeilingRow[]> {
  const client = new Redis({ port: opts.port, host: '127.0.0.1', lazyConnect: false });
  try {
    const sha = async (file: string) => (await client.script('LOAD', scriptSource(file))) as string;
    const create = await sha('createSession-3.lua');
    const update = await sha('updateSession-2.lua');
    const key = 'rz:{bench-ceiling}';
    await client.del(key);
    const caps = [CAPS_KEY, CAPS_BY_ADDRESS_KEY];
    await client.evalsha(
      create,
      3,
      key,
      ...caps,
      'msc3886',
      'application/octet-stream',
      opts.payload,
      600_000,
      'tag',
      '-',
      0,
      0,
    );
    const table: [string, string, string[]][] = [
      ['poll / GET (read)', 'GET', ['GET', key]],
      [
        'write / PUT (update script)',
        'EVALSHA updateSession',
        [
          'EVALSHA',
          update,
          '2',
          key,
          `${key}:txn`,
          'msc3886',
          'any',
          '',
          opts.payload,
          'application/octet-stream',
          '',
          '256',
          `${key}:wake`,
          String(NOTICE_MAX_PAYLOAD_BYTES),
        ],
      ],
      [
        'create / POST (create script)',
        'EVALSHA createSession',
        [
          'EVALSHA',
          create,
          '3',
          'rz:{bench-__rand_int__}',
          ...caps,
          'msc3886',
          'application/octet-stream',
          opts.createPayload,
          '20000',
          'tag',
          '127.0.0.1',
          String(opts.caps.global),
          String(opts.caps.perAddress),
        ],
      ],
    ];
    const rows: CeilingRow[] = [];
    for (const [name, command, args] of table) {
      rows.push({ name, command, ...(await redisBenchmark(opts, args)) });
    }
    // The create runs left up to `requests` keys behind: expiring them would cost Redis CPU in the
    // middle of the scenarios that follow.
    await client.flushdb();
    return rows;
  } finally {
    client.disconnect();
  }
}

function redisBenchmark(
  opts: { port: number; connections: number; requests: number },
  args: string[],
): Promise<{ rps: number; p50: number; p99: number; max: number }> {
  const argv = [
    '-h',
    '127.0.0.1',
    '-p',
    String(opts.port),
    '-c',
    String(opts.connections),
    '-n',
    String(opts.requests),
  ];
  argv.push('-r', '1000000000', '--csv', ...args);
  return new Promise((resolve, reject) => {
    const proc = spawn('redis-benchmark', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
    proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      const cells = line.split('","').map((c) => c.replace(/"/g, ''));
      // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
      const rps = Number(cells[1]);
      if (code !== 0 || !Number.isFinite(rps))
        return reject(new Error(`redis-benchmark failed (${code}): ${err || out}`));
      resolve({ rps, p50: Number(cells[4]), p99: Number(cells[6]), max: Number(cells[7]) });
    });
  });
}
