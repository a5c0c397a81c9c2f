import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { killOnExit } from './helpers/children';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const MAIN = join(__dirname, '..', 'dist', 'main.js');

describe('SIGTERM when the log reader has gone', () => {
  it('still drains and exits 0 (a broken stdout pipe does not hold the process)', async () => {
    const proc = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    killOnExit(proc);
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const lines = createInterface({ input: proc.stdout! });
    await new Promise<void>((resolve) => lines.on('line', (l) => l.includes('"listening"') && resolve()));
    // The reader goes away, as a log collector that crashed would: every later write is EPIPE.
    lines.close();
    proc.stdout!.destroy();
    proc.kill('SIGTERM');
    expect(await exited).to.equal(0);
  });
});
