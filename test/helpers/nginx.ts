import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killOnExit } from './children';
import { until } from './topologies';

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

  static async start(dir: string, siteConf: string, port: number): Promise<NginxProcess> {
    writeFileSync(join(dir, 'site.conf'), siteConf);
    writeFileSync(
      join(dir, 'nginx.conf'),
      [
        'daemon off;',
        'master_process off;',
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
