import { execFileSync } from 'node:child_process';

/**
 * Whether `command` is on the PATH. Only a missing binary counts: wrk, for one, prints its usage and
 * exits 1 for `--version`.
 */
export function installed(command: string): boolean {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore' });
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
  return true;
}
