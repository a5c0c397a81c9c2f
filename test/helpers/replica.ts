import { spawn, type ChildProcess } from 'node:child_process';
import { killOnExit } from './children';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { NO_LIMITS } from './server';

const MAIN = join(__dirname, '..', '..', 'dist', 'main.js');

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/**
 * One server replica as its own process, started from the built `dist/` exactly as `npm start`
 * runs it. Resolves once the replica logs that it listens; its port is read from that line.
 */
export class Replica {
  readonly logs: LogLine[] = [];
  private readonly exited: Promise<number | null>;

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
  ) {
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static start(env: Record<string, string>): Promise<Replica> {
    const proc = spawn(process.execPath, [MAIN], {
      // Rate limits and caps are off unless the test sets them: loopback is one address for all tests.
      env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...NO_LIMITS, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    killOnExit(proc);
    const logs: LogLine[] = [];
    let stderr = '';
    proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    return new Promise((resolve, reject) => {
      let replica: Replica | undefined;
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          return;
        }
        (replica?.logs ?? logs).push(parsed);
        if (replica === undefined && parsed.msg === 'listening') {
          replica = new Replica(proc, parsed.port as number);
          replica.logs.push(...logs);
          resolve(replica);
        }
      });
      proc.once('exit', (code) => {
        if (replica === undefined) reject(new Error(`replica exited with ${code} before listening: ${stderr}`));
      });
    });
  }

  /** Sends a signal and resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }

  get exit(): Promise<number | null> {
    return this.exited;
  }
}
