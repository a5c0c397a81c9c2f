import http from 'node:http';
import { DelayLink } from './delay-link';
import { freePort } from './ports';
import { RedisServer } from './redis';
import { Replica } from './replica';

/** The secret every region of a test deployment shares. */
export const REGION_SECRET = 'test-region-secret-0123456789';
/** The one public hostname of the "global hostname" deployment: tests address replicas with `via`. */
export const GLOBAL_BASE_URL = 'http://rendezvous.test';

/**
 * One region on loopback: its own redis-server, its replicas (processes from dist/), and the link
 * other regions reach it through: a TCP proxy adding `delayMs` each way, spreading connections
 * over the replicas like the region's internal balancer.
 */
export class Region {
  constructor(
    readonly name: string,
    readonly redis: RedisServer,
    readonly replicas: Replica[],
    readonly link: DelayLink,
  ) {}

  get a(): Replica {
    return this.replicas[0]!;
  }

  get b(): Replica {
    return this.replicas[1]!;
  }
}

export interface RegionsOptions {
  /** Delay each way on every inter-region link (default 25 ms). */
  delayMs?: number;
  replicasPerRegion?: number;
  /** Settings for every replica; `envFor` adds per-region ones. */
  env?: Record<string, string>;
  envFor?: (region: string) => Record<string, string>;
}

/** Starts every region, each peered with all the others through their links. */
export async function startRegions(names: string[], opts: RegionsOptions = {}): Promise<Region[]> {
  const delayMs = opts.delayMs ?? 25;
  const perRegion = opts.replicasPerRegion ?? 2;
  // Ports first: the links need the replicas' ports, the replicas the links' URLs.
  const plans = await Promise.all(
    names.map(async (name) => ({
      name,
      ports: await Promise.all(Array.from({ length: perRegion }, () => freePort())),
      redis: await RedisServer.start(),
    })),
  );
  const links = await Promise.all(plans.map((p) => DelayLink.start(p.ports, delayMs)));
  const regions = await Promise.all(
    plans.map(async (plan, i) => {
      const peers = plans
        .map((other, j) => (j === i ? undefined : `${other.name}=${links[j]!.url}`))
        .filter((x) => x !== undefined)
        .join(',');
      const replicas = await Promise.all(
        plan.ports.map((port) =>
          Replica.start({
            PORT: String(port),
            REDIS_URL: plan.redis.url,
            RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
            RZ_REGION: plan.name,
            RZ_REGION_PEERS: peers,
            RZ_REGION_SECRET: REGION_SECRET,
            ...opts.env,
            ...opts.envFor?.(plan.name),
          }),
        ),
      );
      return new Region(plan.name, plan.redis, replicas, links[i]!);
    }),
  );
  return regions;
}

export async function stopRegions(regions: Region[] | undefined): Promise<void> {
  await Promise.all(
    (regions ?? []).map(async (r) => {
      await Promise.all(r.replicas.map((x) => x.stop('SIGKILL')));
      await r.link.stop();
      await r.redis.destroy();
    }),
  );
}

/** The same URL on another replica (a device that reached that replica's region). */
export function at(replica: Replica, url: string): string {
  const u = new URL(url);
  return `${replica.url}${u.pathname}${u.search}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timedGets(url: string, n: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        http
          .get(url, { agent }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      });
      out.push(performance.now() - t0);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

/**
 * The link's measured round trip: the median time of `GET /health` through it, minus the same
 * straight to a replica (what the replica itself takes), over one kept-alive connection each.
 */
export async function linkRttMs(region: Region, n = 20): Promise<number> {
  const through = median((await timedGets(`${region.link.url}/health`, n + 1)).slice(1));
  const direct = median((await timedGets(`${region.a.url}/health`, n + 1)).slice(1));
  return through - direct;
}

/**
 * An nginx config of the repository with service names mapped to loopback ports: every
 * `server <name>:<port>` names `hosts[name]`, and `listen 80;` becomes `listenPort`. Everything
 * else (headers, timeouts, hashing) is the file as shipped.
 */
export function renderConf(conf: string, hosts: Record<string, number>, listenPort: number): string {
  let out = conf.replace(/^(\s*server )([\w-]+):\d+(.*;)$/gm, (_line, head: string, name: string, rest: string) => {
    const port = hosts[name];
    if (port === undefined) throw new Error(`no port for upstream ${name}`);
    return `${head}127.0.0.1:${port}${rest}`;
  });
  if (!/^\s*listen 80;$/m.test(out)) throw new Error('no "listen 80;" in the nginx config');
  out = out.replace(/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${listenPort};`);
  return out;
}
