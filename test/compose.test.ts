import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { SETTINGS } from '../src/config';
import { installed } from './helpers/binaries';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const KNOWN = new Set(SETTINGS.map((s) => s.name));

interface ComposeService {
  image?: string;
  read_only?: boolean;
  user?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: (string | { source: string; target: string })[];
  ports?: (string | { host_ip?: string; published: number | string; target: number })[];
  profiles?: string[];
  networks?: { default?: { ipv4_address?: string } };
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}

const REPLICAS = ['rendezvous-1', 'rendezvous-2', 'rendezvous-3'];
const TEMPLATE = 'deploy/nginx/rendezvous.conf.template';

describe('docker-compose stack', function () {
  let services: Record<string, ComposeService>;
  let env: NodeJS.ProcessEnv;

  /** `docker-compose config` of the file, with these variables set (and none from the caller's shell). */
  async function config(vars: Record<string, string> = {}): Promise<Record<string, ComposeService>> {
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', '--profile', 'monitoring', 'config'], {
      cwd: ROOT,
      env: { ...env, ...vars },
    });
    return (parse(stdout) as { services: Record<string, ComposeService> }).services;
  }

  before(async function () {
    if (!installed('docker-compose')) {
      // Visible in the run's output, so a skipped validation is never mistaken for a passed one.
      console.log('    NOTICE: docker-compose is not installed: compose validation skipped (.ci/run installs it)');
      this.skip();
    }
    // Without variables from the caller's shell, so the defaults written in the file are checked.
    env = { PATH: process.env.PATH, HOME: process.env.HOME };
    services = await config();
  });

  it('validates with docker-compose config', async () => {
    await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: ROOT, env });
    expect(Object.keys(services)).to.include.members(['redis', ...REPLICAS, 'lb']);
    expect(services.prometheus?.profiles).to.deep.equal(['monitoring']);
  });

  const address = (svc: ComposeService) => svc.networks!.default!.ipv4_address!;

  it('runs three read-only, non-root replicas configured only with settings the server reads', () => {
    for (const name of REPLICAS) {
      const svc = services[name]!;
      expect(svc.read_only, name).to.equal(true);
      expect(svc.user).to.match(/^[1-9]\d*:/);
      const vars = svc.environment ?? {};
      for (const key of Object.keys(vars)) expect(KNOWN.has(key), `${name}: ${key}`).to.equal(true);
      expect(vars.REDIS_URL).to.equal('redis://redis:6379');
      // Forwarding headers are believed from the balancer's fixed address only.
      expect(vars.RZ_TRUSTED_PROXIES).to.equal(address(services.lb!));
    }
  });

  it('serves metrics off the balanced port, where only Prometheus (on loopback) scrapes them', () => {
    const ports = new Set<string>();
    for (const name of REPLICAS) {
      const port = services[name]!.environment!.RZ_METRICS_PORT;
      expect(port, name).to.match(/^\d+$/);
      expect(port).to.not.equal('8080');
      ports.add(port!);
    }
    expect(ports.size).to.equal(1);
    const prom = parse(readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    expect(prom.scrape_configs[0]!.static_configs[0]!.targets).to.deep.equal(
      REPLICAS.map((r) => `${r}:${[...ports][0]}`),
    );
    const published = services.prometheus!.ports!;
    expect(published).to.have.length(1);
    const binding = published[0]!;
    expect(typeof binding === 'string' ? binding : `${binding.host_ip}:${binding.published}`).to.match(
      /^127\.0\.0\.1:/,
    );
    // The balancer proxies the replicas' main port only.
    const template = readFileSync(join(ROOT, TEMPLATE), 'utf8');
    expect([...template.matchAll(/^\s*server [^:]+:(\d+)/gm)].map((m) => m[1])).to.deep.equal(['8080', '8080', '8080']);
  });

  it('bounds Redis memory and refuses writes rather than evicting sessions when it is full', () => {
    const command = services.redis!.command!;
    const arg = (flag: string) => command[command.indexOf(flag) + 1];
    expect(arg('--maxmemory')).to.match(/^[1-9]\d*(kb|mb|gb)$/i);
    expect(arg('--maxmemory-policy')).to.equal('noeviction');
  });

  it('hands out the addresses of services without a fixed one from a range that holds none of the fixed ones', () => {
    for (const file of ['docker-compose.yml', 'deploy/multi-region/docker-compose.yml']) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      const fixed = [...text.matchAll(/ipv4_address: \S*\.(\d+)$/gm)].map((m) => Number(m[1]));
      expect(fixed.length, file).to.be.greaterThan(3);
      expect(text, file).to.match(/^\s+ip_range: \S*\.128\/25$/m);
      for (const octet of fixed) expect(octet, file).to.be.below(128);
    }
  });

  it('has the balancer name each replica by the fixed address compose gives it, so a missing or new replica never stops it', async () => {
    const template = readFileSync(join(ROOT, TEMPLATE), 'utf8');
    const upstream = (net: string) =>
      [...template.matchAll(/^\s*server (\S+):8080/gm)].map((m) => m[1]!.replace('${RZ_COMPOSE_NET}', net));
    const mounts = (services.lb!.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(mounts.some((m) => m.includes(`${TEMPLATE}:/etc/nginx/templates/default.conf.template`))).to.equal(true);
    for (const vars of [{}, { RZ_COMPOSE_NET: '10.99.7' }] as Record<string, string>[]) {
      const s = Object.keys(vars).length === 0 ? services : await config(vars);
      const net = s.lb!.environment!.RZ_COMPOSE_NET!;
      expect(upstream(net)).to.deep.equal(REPLICAS.map((r) => address(s[r]!)));
      expect(address(s.lb!)).to.equal(`${net}.10`);
      for (const r of REPLICAS) expect(s[r]!.environment!.RZ_TRUSTED_PROXIES).to.equal(`${net}.10`);
    }
    // Names are resolved once, at start: the upstream must hold none.
    expect(upstream('10.0.0')).to.satisfy((list: string[]) => list.every((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a)));
    expect(services.lb!.depends_on!['rendezvous-1']!.condition).to.equal('service_started');
  });

  it('lets the balancer trust an outer proxy only when RZ_LB_TRUSTED_PROXIES names it', async () => {
    expect(services.lb!.environment!.RZ_LB_TRUSTED_PROXIES).to.equal('');
    const named = await config({ RZ_LB_TRUSTED_PROXIES: '10.1.2.3,fd00::/8' });
    expect(named.lb!.environment!.RZ_LB_TRUSTED_PROXIES).to.equal('10.1.2.3,fd00::/8');
    const mounts = (services.lb!.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(mounts.some((m) => m.includes('deploy/nginx/trusted-proxies.sh:/docker-entrypoint.d/'))).to.equal(true);
    // The image only runs entrypoint scripts that are executable.
    expect(statSync(join(ROOT, 'deploy/nginx/trusted-proxies.sh')).mode & 0o111).to.not.equal(0);
  });

  it('judges replica and balancer health by /ready (can serve), not /health (process alive)', () => {
    for (const name of [...REPLICAS, 'lb']) {
      const test = services[name]!.healthcheck!.test.join(' ');
      expect(test, name).to.include('/ready');
    }
  });
});

describe('container image', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

  it('builds in one stage and runs slim, non-root, under tini, with a health check on /health', () => {
    expect(dockerfile.match(/^FROM .* AS (\w+)$/gm)).to.have.length(2);
    expect(dockerfile).to.match(/^FROM node:\$\{NODE_VERSION\}-bookworm-slim AS runtime$/m);
    expect(dockerfile).to.match(/^USER [1-9]\d*:[1-9]\d*$/m);
    expect(dockerfile).to.match(/^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
    expect(dockerfile).to.match(/^HEALTHCHECK [\s\S]*\/health/m);
    expect(dockerfile).to.match(/^CMD \["node", "dist\/main\.js"\]$/m);
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    expect(ignored).to.include.members(['node_modules', 'dist', '.git']);
  });
});
