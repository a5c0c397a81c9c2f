import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NginxProcess } from './nginx';
import { freePort } from './ports';

const run = promisify(execFile);

export const NGINX_TEMPLATE = join(__dirname, '..', '..', 'deploy', 'nginx', 'rendezvous.conf.template');
export const TRUSTED_PROXIES_SCRIPT = join(__dirname, '..', '..', 'deploy', 'nginx', 'trusted-proxies.sh');
const TRUSTED_PROXIES_INCLUDE = '/etc/nginx/rendezvous/trusted-proxies.conf';

/**
 * The repository's nginx config template with only what differs from the compose stack changed:
 * the replicas' fixed addresses become loopback ports, `listen 80` a free loopback port, and the
 * trusted-proxies include a file of the test's own. Everything else (headers, timeouts, retries,
 * the real-IP rules) is the file as shipped. Nothing of the template may be left unfilled.
 */
export function renderNginxConf(upstreamPorts: number[], listenPort: number, trustedProxiesConf: string): string {
  const conf = readFileSync(NGINX_TEMPLATE, 'utf8');
  const servers = [...conf.matchAll(/^(\s*)server \$\{RZ_COMPOSE_NET\}\.\d+:8080(.*);$/gm)];
  if (servers.length === 0) throw new Error('no upstream servers found in the nginx config template');
  let out = conf;
  for (const m of servers) out = out.replace(m[0], '');
  const indent = servers[0]![1];
  const options = servers[0]![2];
  const lines = upstreamPorts.map((p) => `${indent}server 127.0.0.1:${p}${options};`).join('');
  out = out.replace(/(upstream rendezvous \{)/, `$1${lines}`);
  if (!/^\s*listen 80;$/m.test(out)) throw new Error('no "listen 80;" in the nginx config template');
  out = out.replace(/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${listenPort};`);
  if (!out.includes(`include ${TRUSTED_PROXIES_INCLUDE};`)) throw new Error('no trusted-proxies include');
  out = out.replace(`include ${TRUSTED_PROXIES_INCLUDE};`, `include ${trustedProxiesConf};`);
  // What the image's envsubst does with the variable anywhere else (in comments).
  out = out.replaceAll('${RZ_COMPOSE_NET}', '127.0.0');
  const unfilled = /\$\{\w+\}/.exec(out);
  if (unfilled) throw new Error(`the nginx config template uses ${unfilled[0]}, which the test does not fill`);
  return out;
}

export interface BalancerOptions {
  /** RZ_LB_TRUSTED_PROXIES: proxies in front of the balancer whose X-Forwarded-For is believed. */
  trustedProxies?: string;
}

/** The repository's balancer config in front of the given ports, as an nginx of the test's own. */
export class Balancer {
  private constructor(private readonly nginx: NginxProcess) {}

  get port(): number {
    return this.nginx.port;
  }

  get url(): string {
    return this.nginx.url;
  }

  /** nginx's prefix directory (config, temp files); `stop()` removes it. */
  get dir(): string {
    return this.nginx.dir;
  }

  static async start(upstreamPorts: number[], options: BalancerOptions = {}): Promise<Balancer> {
    const port = await freePort();
    const dir = NginxProcess.directory();
    const trusted = join(dir, 'trusted-proxies.conf');
    // The script the nginx image runs at start, run the same way: it writes the include.
    await run('sh', [TRUSTED_PROXIES_SCRIPT], {
      env: {
        PATH: process.env.PATH,
        RZ_LB_TRUSTED_PROXIES: options.trustedProxies ?? '',
        RZ_LB_TRUSTED_PROXIES_CONF: trusted,
      },
    });
    return new Balancer(await NginxProcess.start(dir, renderNginxConf(upstreamPorts, port, trusted), port));
  }

  stop(): Promise<void> {
    return this.nginx.stop();
  }
}
