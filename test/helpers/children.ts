import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

const live = new Set<ChildProcess>();
let installed = false;

/**
 * Kills `proc` when this process exits, however it exits: a failed hook, a timeout, mocha's `--exit`,
 * Ctrl-C or one file run alone without the root hooks. The helpers stop their processes themselves;
 * this only makes sure none outlives the run that started it.
 */
export function killOnExit<T extends ChildProcess>(proc: T): T {
  if (!installed) {
    installed = true;
    process.once('exit', () => {
      for (const p of live) p.kill('SIGKILL');
    });
    // Signals end a process without 'exit' unless somebody listens for them.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => process.exit(128 + constants.signals[signal]));
    }
  }
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}
