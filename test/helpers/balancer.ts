import { spawn, type ChildProcess } from 'node:child_process';
import { killOnExit } from './children';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';
import { until } from './topologies';

export const NGINX_CONF = join(__dirname, '..', '..', 'deploy', 'nginx', 'rendezvous.conf');

/**
 * The repository's nginx config with only what differs from the compose stack changed: upstream
 * servers become loopback ports and `listen 80` a free loopback port. Everything else (headers,
 * timeouts, retries) is the file as shipped.
 */
export function renderNginxConf(upstreamPorts: number[], listenPort: number): string {
  const conf = readFileSync(NGINX_CONF, 'utf8');
  const servers = [...conf.matchAll(/^(\s*)server rendezvous-\d+:8080(.*);$/gm)];
  if (servers.length === 0) throw new Error('no upstream servers found in the nginx config');
  let out = conf;
  for (const m of servers) out = out.replace(m[0], '');
  const indent = servers[0]![1];
  const options = servers[0]![2];
  const lines = upstreamPorts.map((p) => `${indent}server 127.0.0.1:${p}${options};`).join('');
  out = out.replace(/(upstream rendezvous \{)/, `$1${lines}`);
  if (!/^\s*listen 80;$/m.test(out)) throw new Error('no "listen 80;" in the nginx config');
  return out.replace(/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${listenPort};`);
}

/** nginx as a child process (never the system service), in the foreground, with its own prefix. */
export class Balancer {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly proc: ChildProcess,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(upstreamPorts: number[]): Promise<Balancer> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'rz-nginx-'));
    writeFileSync(join(dir, 'rendezvous.conf'), renderNginxConf(upstreamPorts, port));
    // What the nginx image's main config provides around conf.d, minus root-only paths.
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
        `  include ${dir}/rendezvous.conf;`,
        '}',
        '',
      ].join('\n'),
    );
    const proc = killOnExit(
      spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] }),
    );
    let stderr = '';
    proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const balancer = new Balancer(port, dir, proc);
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
    return balancer;
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
