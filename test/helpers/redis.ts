import { spawn, type ChildProcess } from 'node:child_process';
import { killOnExit } from './children';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports';

/**
 * A redis-server of the test's own on a free loopback port: tests never touch a shared instance,
 * and a test may stop, restart or kill its server without disturbing any other.
 */
export class RedisServer {
  private proc: ChildProcess | undefined;
  private readonly clients = new Set<Redis>();
  readonly dir: string;

  private constructor(
    readonly port: number,
    private readonly extraArgs: string[],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'rz-redis-'));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(extraArgs: string[] = []): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extraArgs);
    await server.resume();
    return server;
  }

  /** Starts (again) on the same port, resolving once it answers PING. */
  async resume(): Promise<void> {
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = killOnExit(proc);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const onData = (b: Buffer) => {
        out += b.toString();
        if (out.includes('Ready to accept connections')) {
          proc.stdout!.off('data', onData);
          proc.stdout!.resume();
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)));
      proc.once('error', reject);
    });
  }

  /** Stops the server and waits for the process to be gone (its port is then refused). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    this.proc = undefined;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await exited;
  }

  /** The running server's process id, if it runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Sends `signal` without waiting (SIGSTOP/SIGCONT pause and resume it, as a stalled host would). */
  signal(signal: NodeJS.Signals): void {
    this.proc?.kill(signal);
  }

  async destroy(): Promise<void> {
    // A client a test left open would otherwise try to reconnect, and log, for the rest of the run.
    for (const client of this.clients) client.disconnect();
    this.clients.clear();
    await this.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A client of this server; `destroy()` disconnects any still open. */
  client(): Redis {
    const client = new Redis(this.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    this.clients.add(client);
    client.once('end', () => this.clients.delete(client));
    return client;
  }
}

let shared: { url: string; server?: RedisServer } | undefined;

/**
 * The Redis most suites run against: the user's own when REDIS_URL is set, else one started for this
 * test run (stopped by the root hook). Tests that stop or kill Redis start their own RedisServer.
 */
export async function sharedRedisUrl(): Promise<string> {
  if (shared === undefined) {
    if (process.env.REDIS_URL) {
      shared = { url: process.env.REDIS_URL };
    } else {
      const server = await RedisServer.start();
      shared = { url: server.url, server };
    }
  }
  return shared.url;
}

export async function stopSharedRedis(): Promise<void> {
  await shared?.server?.destroy();
  shared = undefined;
}
