import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killOnExit } from './children';
import { until } from './topologies';

/** `site.conf` and the main config around it in the prefix `dir`; `top` first (how nginx runs). */
function writeMainConf(dir: string, siteConf: string, top: string[]): void {
  writeFileSync(join(dir, 'site.conf'), siteConf);
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      ...top,
      `pid ${dir}/nginx.pid;`,
      'error_log stderr warn;',
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
      `  include ${dir}/site.conf;`,
      '}',
      '',
    ].join('\n'),
  );
}

/**
 * nginx in the foreground as a child process with a prefix directory of its own (never the system
 * service), serving one site config inside what the nginx image's main config provides around
 * conf.d, minus root-only paths. Resolves once it listens on `port`.
 */
export class NginxProcess {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly proc: ChildProcess,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A fresh prefix directory, for the files a site config needs before nginx starts. */
  static directory(): string {
    return mkdtempSync(join(tmpdir(), 'rz-nginx-'));
  }

  /** `siteConf` served from a fresh prefix directory. */
  static serve(siteConf: string, port: number): Promise<NginxProcess> {
    return NginxProcess.start(NginxProcess.directory(), siteConf, port);
  }

  /**
   * What `nginx -t` says of `siteConf` as it is (no name in it resolved by the test): '' when nginx
   * would start with it.
   */
  static async syntaxErrors(siteConf: string): Promise<string> {
    const dir = NginxProcess.directory();
    try {
      mkdirSync(join(dir, 'logs'));
      writeMainConf(dir, siteConf, []);
      return await new Promise((resolve) =>
        execFile('nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf')], (err, _out, stderr) =>
          resolve(err === null ? '' : stderr || String(err)),
        ),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  static async start(dir: string, siteConf: string, port: number): Promise<NginxProcess> {
    writeMainConf(dir, siteConf, ['daemon off;', 'master_process off;']);
    const proc = killOnExit(
      spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] }),
    );
    let stderr = '';
    proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const failed = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`nginx exited (${code}): ${stderr}`))),
    );
    failed.catch(() => undefined);
    await Promise.race([
      failed,
      until(
        'nginx to listen',
        () =>
          new Promise<boolean>((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
            s.on('error', () => resolve(false));
          }),
      ),
    ]);
    return new NginxProcess(port, dir, proc);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve));
      this.proc.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
