import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { killOnExit } from '../test/helpers/children';
import { Replica } from '../test/helpers/replica';

export { RedisServer } from '../test/helpers/redis';
export { Replica };

/**
 * Settings every measured replica gets: no access log, a TTL long enough to outlive the run, and
 * every limit active (rate budgets and session caps are counted and settled with Redis as in
 * production) with budgets too large to refuse anything the run sends from its one address.
 */
export const REPLICA_ENV: Record<string, string> = {
  LOG_LEVEL: 'info',
  RZ_ACCESS_LOG: 'false',
  RZ_CREATE_RATE: '1000000',
  RZ_REQUEST_RATE: '1000000',
  RZ_MAX_SESSIONS: '100000000',
  RZ_MAX_SESSIONS_PER_ADDRESS: '1000000',
  RZ_TTL_SECONDS: '300',
};

/** Every limit off (0 disables each): for the reference figures of what the limits cost. */
export const LIMITS_OFF: Record<string, string> = {
  RZ_CREATE_RATE: '0',
  RZ_REQUEST_RATE: '0',
  RZ_MAX_SESSIONS: '0',
  RZ_MAX_SESSIONS_PER_ADDRESS: '0',
};

export function startReplica(redisUrl: string | undefined, extra: Record<string, string> = {}): Promise<Replica> {
  return Replica.start({ ...REPLICA_ENV, ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl }), ...extra });
}

/**
 * A Node script of this directory as its own process, like a replica: it prints
 * `{"msg":"listening","port":N}` as its first line once it listens.
 */
export class ScriptServer {
  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static start(script: string, args: string[] = []): Promise<ScriptServer> {
    const proc = killOnExit(
      spawn(process.execPath, [join(__dirname, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    return new Promise((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once('line', (line) => {
        resolve(new ScriptServer(proc, (JSON.parse(line) as { port: number }).port));
      });
      proc.once('exit', (code) => reject(new Error(`${script} ${args[0] ?? ''} exited with ${code}`)));
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.proc.exitCode !== null) return resolve();
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGTERM');
    });
  }
}

/** The bare Node baseline (bare-node.mjs). */
export const startBareNode = (): Promise<ScriptServer> => ScriptServer.start('bare-node.mjs');

/** What a floor of bench/floor.mjs does (see there). */
export type FloorMode = 'http-poll' | 'koa-poll' | 'koa-create' | 'forward';

export const startFloor = (mode: FloorMode, ...args: string[]): Promise<ScriptServer> =>
  ScriptServer.start('floor.mjs', [mode, ...args]);

/** Resident set size of a process in bytes (Linux), or undefined elsewhere. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used so far, in ms (Linux), or undefined elsewhere. */
export function cpuMsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** USER_HZ: 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;
