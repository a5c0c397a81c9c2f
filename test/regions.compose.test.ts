import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { SETTINGS, loadConfig } from '../src/config';
import { installed } from './helpers/binaries';
import { Scrape } from './helpers/metrics';
import { freePort } from './helpers/ports';
import { RedisServer } from './helpers/redis';
import { NginxProcess } from './helpers/nginx';
import { REGION_SECRET, renderConf } from './helpers/regions';
import { Replica } from './helpers/replica';
import { type Answer, json, send } from './helpers/send';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const DIR = join(ROOT, 'deploy', 'multi-region');
const COMPOSE = join(DIR, 'docker-compose.yml');
const KNOWN = new Set(SETTINGS.map((s) => s.name));
const REGIONS = ['eu', 'us'] as const;
const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = '/_matrix/client/v1/rendezvous';

interface Service {
  image?: string;
  read_only?: boolean;
  user?: string;
  command?: string[];
  environment?: Record<string, string>;
  secrets?: string[];
  networks?: { default?: { ipv4_address?: string } };
}

/** The compose file as written (anchors and merges resolved, `${VAR:-default}` as its default). */
function composeAsShipped(): {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
  networks: { default: { ipam: { config: { subnet: string }[] } } };
} {
  const text = readFileSync(COMPOSE, 'utf8').replace(/\$\{\w+:-([^}]*)\}/g, '$1');
  const doc = parse(text, { merge: true }) as ReturnType<typeof composeAsShipped>;
  // Environment values are strings to a container, whatever YAML makes of `false` or `2`.
  for (const svc of Object.values(doc.services)) {
    if (svc.environment)
      svc.environment = Object.fromEntries(Object.entries(svc.environment).map(([k, v]) => [k, String(v)]));
  }
  return doc;
}

const upstreamsOf = (file: string) =>
  [...readFileSync(join(DIR, 'nginx', file), 'utf8').matchAll(/^\s*server (\S+):(\d+)/gm)].map(
    (m) => `${m[1]}:${m[2]}`,
  );
const NGINX_CONFS = ['front.conf', 'region-eu.conf', 'region-us.conf'];
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * A shipped nginx config with each upstream's fixed address replaced by the name of the compose
 * service that has it, the form renderConf maps to loopback ports. An address no service has throws.
 */
function byServiceName(conf: string, services: Record<string, Service>): string {
  const names = new Map<string, string>();
  for (const [name, svc] of Object.entries(services)) {
    const address = svc.networks?.default?.ipv4_address;
    if (address !== undefined) names.set(address, name);
  }
  return conf.replace(/^(\s*server )(\d{1,3}(?:\.\d{1,3}){3}):/gm, (_m, head: string, address: string) => {
    const name = names.get(address);
    if (name === undefined) throw new Error(`no compose service has the upstream address ${address}`);
    return `${head}${name}:`;
  });
}

describe('multi-region compose stack (deploy/multi-region)', () => {
  const { services, secrets, networks } = composeAsShipped();
  const address = (name: string) => services[name]?.networks?.default?.ipv4_address;

  it('validates with docker-compose config', async function () {
    if (!installed('docker-compose')) {
      console.log('    NOTICE: docker-compose is not installed: compose validation skipped (.ci/run installs it)');
      this.skip();
    }
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const { stdout } = await run('docker-compose', ['-f', COMPOSE, 'config'], { cwd: ROOT, env });
    const resolved = (parse(stdout) as { services: Record<string, Service> }).services;
    expect(Object.keys(resolved)).to.have.members([
      'redis-eu',
      'redis-us',
      'rendezvous-eu-1',
      'rendezvous-eu-2',
      'rendezvous-us-1',
      'rendezvous-us-2',
      'lb-eu',
      'lb-us',
      'front',
    ]);
    // What docker-compose resolves is what this suite reads from the file and runs natively.
    for (const name of Object.keys(resolved)) {
      expect(resolved[name]!.environment ?? {}, name).to.deep.equal(services[name]!.environment ?? {});
      expect(resolved[name]!.networks?.default?.ipv4_address, name).to.equal(address(name));
      expect(resolved[name]!.command, name).to.deep.equal(services[name]!.command);
    }
  });

  it('runs per region: two read-only, non-root replicas on its own Redis, peered with the other region', () => {
    const lbAddresses = ['front', 'lb-eu', 'lb-us'].map((n) => services[n]!.networks!.default!.ipv4_address!);
    for (const region of REGIONS) {
      const other = region === 'eu' ? 'us' : 'eu';
      for (const i of [1, 2]) {
        const name = `rendezvous-${region}-${i}`;
        const svc = services[name]!;
        expect(svc.read_only, name).to.equal(true);
        expect(svc.user).to.match(/^[1-9]\d*:/);
        const env = svc.environment!;
        for (const key of Object.keys(env)) expect(KNOWN.has(key), `${name}: ${key}`).to.equal(true);
        expect(env).to.include({
          RZ_REGION: region,
          REDIS_URL: `redis://redis-${region}:6379`,
          RZ_REGION_PEERS: `${other}=http://lb-${other}:80`,
          RZ_REGION_SECRET_FILE: '/run/secrets/region_secret',
        });
        expect(svc.secrets).to.deep.equal(['region_secret']);
        expect(env.RZ_TRUSTED_PROXIES!.split(',')).to.have.members(lbAddresses);
      }
      // The balancer names its replicas by the fixed addresses compose gives them, never by name.
      expect(upstreamsOf(`region-${region}.conf`)).to.deep.equal([
        `${address(`rendezvous-${region}-1`)}:8080`,
        `${address(`rendezvous-${region}-2`)}:8080`,
      ]);
    }
    expect(upstreamsOf('front.conf')).to.deep.equal([`${address('lb-eu')}:80`, `${address('lb-us')}:80`]);
    // The secret comes from a file the operator makes; none is committed.
    expect(secrets.region_secret!.file).to.equal('./region-secret.txt');
    expect(readFileSync(join(DIR, '.gitignore'), 'utf8')).to.match(/^region-secret\.txt$/m);
  });

  it('has every balancer name its upstreams by fixed addresses, so a missing or recreated one never stops it', async () => {
    // Every replica and balancer has a fixed address of its own on the stack's network.
    const subnet = networks.default.ipam.config[0]!.subnet;
    expect(subnet).to.match(/^\d+\.\d+\.\d+\.0\/24$/);
    const prefix = subnet.replace(/0\/24$/, '');
    const fixed = Object.keys(services).filter(
      (n) => n.startsWith('rendezvous-') || n.startsWith('lb-') || n === 'front',
    );
    const addresses = fixed.map((n) => address(n));
    for (const [i, a] of addresses.entries())
      expect(a, fixed[i])
        .to.match(IPV4)
        .and.satisfy((x: string) => x.startsWith(prefix));
    expect(new Set(addresses).size).to.equal(fixed.length);
    for (const file of NGINX_CONFS) {
      const upstreams = upstreamsOf(file);
      expect(upstreams.length, file).to.be.greaterThan(1);
      for (const u of upstreams) expect(u.split(':')[0], `${file}: ${u}`).to.match(IPV4);
    }
    // nginx resolves upstream names once, at start: the configs as shipped load with no name of
    // the stack resolvable (as when a replica or balancer is missing), which names would not.
    for (const file of NGINX_CONFS) {
      expect(await NginxProcess.syntaxErrors(readFileSync(join(DIR, 'nginx', file), 'utf8')), file).to.equal('');
    }
  });

  it('bounds each Redis with a maxmemory, so noeviction refuses writes rather than growing unbounded', () => {
    for (const region of REGIONS) {
      const command = services[`redis-${region}`]!.command!;
      const arg = (flag: string) => command[command.indexOf(flag) + 1];
      expect(command, region).to.include('--maxmemory');
      expect(arg('--maxmemory'), region).to.match(/^[1-9]\d*(kb|mb|gb)$/i);
      expect(arg('--maxmemory-policy'), region).to.equal('noeviction');
    }
  });

  describe('its topology run natively: a front nginx, per region an nginx, two replicas and a Redis', function () {
    this.timeout(60_000);
    const redis: Partial<Record<(typeof REGIONS)[number], RedisServer>> = {};
    const replicas: Replica[] = [];
    const balancers: NginxProcess[] = [];
    let front: NginxProcess;
    let secretDir: string;
    /** A client address the front balancer sends to each region. */
    const device: Partial<Record<(typeof REGIONS)[number], string>> = {};
    const lbPort: Partial<Record<(typeof REGIONS)[number], number>> = {};

    before(async () => {
      secretDir = mkdtempSync(join(tmpdir(), 'rz-compose-secret-'));
      const secretFile = join(secretDir, 'region-secret.txt');
      writeFileSync(secretFile, `${REGION_SECRET}\n`);
      const ports: Record<string, number> = {};
      for (const name of Object.keys(services)) ports[name] = await freePort();
      for (const region of REGIONS) redis[region] = await RedisServer.start();
      const frontUrl = `http://127.0.0.1:${ports.front}`;
      // Every replica with the environment the compose file gives it; only addresses change.
      for (const name of Object.keys(services).filter((n) => n.startsWith('rendezvous-'))) {
        const region = name.split('-')[1] as (typeof REGIONS)[number];
        const env = { ...services[name]!.environment! };
        env.PORT = String(ports[name]);
        env.HOST = '127.0.0.1';
        env.REDIS_URL = redis[region]!.url;
        env.RZ_REGION_PEERS = env.RZ_REGION_PEERS!.replace(/http:\/\/(lb-\w+):80/g, (_m, lb: string) => {
          return `http://127.0.0.1:${ports[lb]}`;
        });
        env.RZ_REGION_SECRET_FILE = secretFile;
        env.RZ_TRUSTED_PROXIES = '127.0.0.1';
        env.RZ_PUBLIC_BASE_URL = frontUrl;
        env.RZ_SHUTDOWN_DELAY_SECONDS = '0';
        expect(() => loadConfig(env), name).to.not.throw();
        replicas.push(await Replica.start(env));
      }
      for (const region of REGIONS) {
        const conf = byServiceName(readFileSync(join(DIR, 'nginx', `region-${region}.conf`), 'utf8'), services);
        lbPort[region] = ports[`lb-${region}`]!;
        balancers.push(await NginxProcess.serve(renderConf(conf, ports, lbPort[region]!), lbPort[region]!));
      }
      front = await NginxProcess.serve(
        renderConf(
          byServiceName(readFileSync(join(DIR, 'nginx', 'front.conf'), 'utf8'), services),
          ports,
          ports.front!,
        ),
        ports.front!,
      );
      // Which region the front balancer sends each client address to, read from the ids it gets.
      for (let i = 2; i < 40 && (device.eu === undefined || device.us === undefined); i++) {
        const address = `127.0.0.${i}`;
        const created = await send(front.port, { method: 'POST', path: '/', body: 'probe', localAddress: address });
        expect(created.status).to.equal(200);
        const region = (json(created).id as string).split('.')[0] as (typeof REGIONS)[number];
        device[region] ??= address;
      }
    });
    after(async () => {
      await front?.stop();
      await Promise.all(balancers.map((b) => b.stop()));
      await Promise.all(replicas.map((r) => r.stop()));
      await Promise.all(Object.values(redis).map((r) => r.destroy()));
      if (secretDir) rmSync(secretDir, { recursive: true, force: true });
    });

    const call = (
      region: 'eu' | 'us',
      method: string,
      path: string,
      headers: Record<string, string> = {},
      body?: string,
    ) =>
      send(front.port, {
        method,
        path,
        headers,
        ...(body === undefined ? {} : { body }),
        localAddress: device[region]!,
      });

    it('keeps each client in one region and sends clients to both', () => {
      expect(device.eu, 'a client address sent to eu').to.be.a('string');
      expect(device.us, 'a client address sent to us').to.be.a('string');
    });

    for (const [home, away] of [
      ['eu', 'us'],
      ['us', 'eu'],
    ] as const) {
      it(`runs every family with the creating device in ${home} and the other in ${away}, through the one hostname`, async () => {
        // MSC3886
        const created = await call(home, 'POST', '/', { 'Content-Type': 'text/plain' }, 'hello');
        const id = json(created).id as string;
        expect(id.startsWith(`${home}.`)).to.equal(true);
        expect(created.headers.location).to.equal(`http://127.0.0.1:${front.port}/${id}`);
        const read = await call(away, 'GET', `/${id}`);
        expect(read.status).to.equal(200);
        expect(read.body.toString()).to.equal('hello');
        const put = await call(away, 'PUT', `/${id}`, { 'If-Match': created.headers.etag as string }, 'reply');
        expect(put.status).to.equal(202);
        expect(
          (await call(home, 'GET', `/${id}`, { 'If-None-Match': created.headers.etag as string })).body.toString(),
        ).to.equal('reply');
        expect((await call(away, 'DELETE', `/${id}`)).status).to.equal(204);
        expect((await call(home, 'GET', `/${id}`)).status).to.equal(404);

        // MSC4108
        const made = await call(home, 'POST', MSC4108, { 'Content-Type': 'text/plain' });
        expect(made.status).to.equal(201);
        const path = new URL(json(made).url as string).pathname;
        const joined = await call(away, 'GET', path);
        expect(joined.status).to.equal(200);
        const offer = await call(
          away,
          'PUT',
          path,
          { 'Content-Type': 'text/plain', 'If-Match': joined.headers.etag as string },
          'offer',
        );
        expect(offer.status).to.equal(202);
        const stale = await call(
          home,
          'PUT',
          path,
          { 'Content-Type': 'text/plain', 'If-Match': joined.headers.etag as string },
          'late',
        );
        expect(stale.status).to.equal(412);

        // MSC4388
        const opened = await call(home, 'POST', MSC4388, { 'Content-Type': 'application/json' }, '{"data":""}');
        const { id: sid, sequence_token: token } = json(opened) as { id: string; sequence_token: string };
        const write = (who: 'eu' | 'us', t: string, data: string, suffix = '') =>
          call(
            who,
            'PUT',
            `${MSC4388}/${sid}${suffix}`,
            { 'Content-Type': 'application/json' },
            JSON.stringify({ sequence_token: t, data }),
          );
        const first: Answer = await write(away, token, 'hi', '/txn-1');
        expect(first.status).to.equal(200);
        const replay = await write(home, token, 'hi', '/txn-1');
        expect(json(replay).sequence_token).to.equal(json(first).sequence_token);
        expect((await write(home, token, 'conflict')).status).to.equal(409);
        expect(json(await call(home, 'GET', `${MSC4388}/${sid}`)).data).to.equal('hi');
      });
    }

    it('never lets /metrics through a balancer, in any spelling the replicas would take', async () => {
      for (const port of [front.port, lbPort.eu!, lbPort.us!]) {
        for (const path of ['/metrics', '/METRICS', '/Metrics', '/metrics/']) {
          const res = await send(port, { path, localAddress: device.eu! });
          expect(res.status, `${path} on :${port}`).to.equal(404);
          expect(json(res), path).to.include({ errcode: 'M_UNRECOGNIZED' });
        }
      }
    });

    it('with regional hostnames the other device talks to the home region directly: nothing is forwarded', async () => {
      const received = () =>
        Promise.all(replicas.map((r) => Scrape.of(`${r.url}/metrics`))).then((s) =>
          s.reduce((n, x) => n + x.value('rendezvous_region_forwards_received_total'), 0),
        );
      const before = await received();
      const created = await call('us', 'POST', '/', { 'Content-Type': 'text/plain' }, 'direct');
      const id = json(created).id as string;
      // The us device's own session URL would name the us hostname: it goes to the us balancer.
      const read = await send(lbPort.us!, { path: `/${id}`, localAddress: device.eu! });
      expect(read.body.toString()).to.equal('direct');
      expect(await received()).to.equal(before);
      // Through the global hostname the same read is forwarded once.
      expect((await call('eu', 'GET', `/${id}`)).body.toString()).to.equal('direct');
      expect(await received()).to.equal(before + 1);
    });
  });
});
