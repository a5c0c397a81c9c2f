import { expect } from 'chai';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { SETTINGS } from '../src/config';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const KNOWN = new Set(SETTINGS.map((s) => s.name));

function hasDockerCompose(): boolean {
  try {
    execFileSync('docker-compose', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface ComposeService {
  image?: string;
  read_only?: boolean;
  user?: string;
  environment?: Record<string, string>;
  volumes?: (string | { source: string; target: string })[];
  ports?: unknown[];
  profiles?: string[];
}

describe('docker-compose stack', function () {
  let services: Record<string, ComposeService>;

  before(async function () {
    if (!hasDockerCompose()) {
      // Visible in the run's output, so a skipped validation is never mistaken for a passed one.
      console.log('    NOTICE: docker-compose is not installed: compose validation skipped (.ci/run installs it)');
      this.skip();
    }
    // Without variables from the caller's shell, so the defaults written in the file are checked.
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', '--profile', 'monitoring', 'config'], {
      cwd: ROOT,
      env,
    });
    services = (parse(stdout) as { services: Record<string, ComposeService> }).services;
  });

  it('validates with docker-compose config', async () => {
    await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: ROOT });
    expect(Object.keys(services)).to.include.members(['redis', 'rendezvous-1', 'rendezvous-2', 'rendezvous-3', 'lb']);
    expect(services.prometheus?.profiles).to.deep.equal(['monitoring']);
  });

  const lbAddress = () =>
    (services.lb as { networks: { default: { ipv4_address: string } } }).networks.default.ipv4_address;

  it('runs three read-only, non-root replicas configured only with settings the server reads', () => {
    for (const name of ['rendezvous-1', 'rendezvous-2', 'rendezvous-3']) {
      const svc = services[name]!;
      expect(svc.read_only, name).to.equal(true);
      expect(svc.user).to.match(/^[1-9]\d*:/);
      const env = svc.environment ?? {};
      for (const key of Object.keys(env)) expect(KNOWN.has(key), `${name}: ${key}`).to.equal(true);
      expect(env.REDIS_URL).to.equal('redis://redis:6379');
      // Forwarding headers are believed from the balancer's fixed address only.
      expect(env.RZ_TRUSTED_PROXIES).to.equal(lbAddress());
    }
  });

  it('puts the repository nginx config in front, its upstreams naming the replicas', () => {
    const mount = (services.lb!.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(mount.some((m) => m.includes('deploy/nginx/rendezvous.conf:/etc/nginx/conf.d/default.conf'))).to.equal(true);
    const conf = readFileSync(join(ROOT, 'deploy/nginx/rendezvous.conf'), 'utf8');
    const upstreams = [...conf.matchAll(/^\s*server ([\w-]+):(\d+)/gm)].map((m) => `${m[1]}:${m[2]}`);
    expect(upstreams).to.deep.equal(['rendezvous-1:8080', 'rendezvous-2:8080', 'rendezvous-3:8080']);
    const prom = parse(readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    expect(prom.scrape_configs[0]!.static_configs[0]!.targets).to.deep.equal(upstreams);
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
