import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { killOnExit } from './children';

const MAIN = join(__dirname, '..', '..', 'dist', 'main.js');

export interface CheckFinding {
  id: string;
  status: 'pass' | 'warn' | 'fail' | 'skip';
  title: string;
  detail: string;
  fix?: string;
}

export interface CheckRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The parsed --json output, when the run printed it. */
  json?: { url: string; ok: boolean; durationMs: number; findings: CheckFinding[] };
}

/** `rendezvous-server check ...` from the built dist/, exactly as an operator runs it. */
export function runCheck(args: string[]): Promise<CheckRun> {
  const proc = killOnExit(
    spawn(process.execPath, [MAIN, 'check', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH },
    }),
  );
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code) => {
      const run: CheckRun = { code, stdout, stderr };
      if (args.includes('--json') && stdout.trim().startsWith('{')) run.json = JSON.parse(stdout) as CheckRun['json'];
      resolve(run);
    });
  });
}

/** Ids of the findings with this status, for assertions that name them. */
export const idsWith = (run: CheckRun, status: CheckFinding['status']): string[] =>
  (run.json?.findings ?? []).filter((f) => f.status === status).map((f) => f.id);

export const finding = (run: CheckRun, id: string): CheckFinding | undefined =>
  run.json?.findings.find((f) => f.id === id);
