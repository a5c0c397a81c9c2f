import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { killOnExit } from './children';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { freePort } from './ports';
import { RedisServer } from './redis';

const run = promisify(execFile);

/** Checks `ok` until it holds (a state to reach, not a delay to sit out), failing after `timeoutMs`. */
export async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await ok()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface SentinelId {
  port: number;
  id: string;
}

/** A `redis-server <conf> --sentinel` on a loopback port, with its own directory. */
class SentinelProcess {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly proc: ChildProcess,
  ) {}

  /**
   * `peers` (every Sentinel of the set, this one included) and the replica are written into the
   * config as already known, so the set is complete at once instead of after rounds of discovery.
   */
  static async start(
    masterName: string,
    masterPort: number,
    replicaPort: number,
    self: SentinelId,
    peers: SentinelId[],
  ): Promise<SentinelProcess> {
    const port = self.port;
    const dir = mkdtempSync(join(tmpdir(), 'rz-sentinel-'));
    const conf = join(dir, 'sentinel.conf');
    // Sentinel rewrites its config file, so each one needs a writable copy of its own.
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 5000`,
        `sentinel parallel-syncs ${masterName} 1`,
        `sentinel myid ${self.id}`,
        `sentinel known-replica ${masterName} 127.0.0.1 ${replicaPort}`,
        ...peers
          .filter((p) => p.id !== self.id)
          .map((p) => `sentinel known-sentinel ${masterName} 127.0.0.1 ${p.port} ${p.id}`),
        '',
      ].join('\n'),
    );
    const proc = killOnExit(spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const onData = (b: Buffer) => {
        out += b.toString();
        if (out.includes('+monitor master')) {
          proc.stdout!.off('data', onData);
          proc.stdout!.resume();
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`sentinel exited (${code}): ${out}`)));
      proc.once('error', reject);
    });
    return new SentinelProcess(port, dir, proc);
  }

  client(): Redis {
    return new Redis({ port: this.port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 1 });
  }

  async destroy(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve));
      this.proc.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One master, one replica and three Sentinels (quorum 2), all on loopback ports: the smallest set
 * that really fails over. Resolves once every Sentinel knows the replica and the other Sentinels,
 * so a failover can be elected as soon as the master goes.
 */
export class SentinelSetup {
  static readonly MASTER_NAME = 'rzmaster';

  private constructor(
    readonly master: RedisServer,
    readonly replica: RedisServer,
    readonly sentinels: SentinelProcess[],
  ) {}

  static async start(): Promise<SentinelSetup> {
    // No diskless-sync delay: the replica would otherwise wait 5 s for company before its first sync.
    const noDelay = ['--repl-diskless-sync-delay', '0'];
    const master = await RedisServer.start(noDelay);
    const replica = await RedisServer.start([...noDelay, '--replicaof', '127.0.0.1', String(master.port)]);
    const probe = master.client();
    try {
      // WAIT returns once the replica acknowledged: it is attached and in sync.
      await until('the replica to attach', async () => (await probe.wait(1, 1000)) >= 1);
    } finally {
      probe.disconnect();
    }
    const ids: SentinelId[] = await Promise.all(
      [1, 2, 3].map(async () => ({ port: await freePort(), id: randomBytes(20).toString('hex') })),
    );
    const sentinels = await Promise.all(
      ids.map((self) => SentinelProcess.start(this.MASTER_NAME, master.port, replica.port, self, ids)),
    );
    const setup = new SentinelSetup(master, replica, sentinels);
    await Promise.all(
      sentinels.map(async (s) => {
        const c = s.client();
        try {
          await until('the Sentinels to discover each other and the replica', async () => {
            const replicas = (await c.call('SENTINEL', 'REPLICAS', this.MASTER_NAME)) as unknown[];
            const peers = (await c.call('SENTINEL', 'SENTINELS', this.MASTER_NAME)) as unknown[];
            return replicas.length >= 1 && peers.length >= 2;
          });
        } finally {
          c.disconnect();
        }
      }),
    );
    return setup;
  }

  /** `host:port,...` as RZ_REDIS_SENTINELS takes it. */
  get sentinelList(): string {
    return this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',');
  }

  get env(): Record<string, string> {
    return { RZ_REDIS_SENTINELS: this.sentinelList, RZ_REDIS_SENTINEL_MASTER: SentinelSetup.MASTER_NAME };
  }

  /** The port of the node the Sentinels currently name as master. */
  async masterPort(): Promise<number> {
    const c = this.sentinels[0]!.client();
    try {
      const [, port] = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SentinelSetup.MASTER_NAME)) as string[];
      return Number(port);
    } finally {
      c.disconnect();
    }
  }

  /** Resolves when a Sentinel announces that the master moved (its `+switch-master` event). */
  async switchMaster(): Promise<{ wait: Promise<string> }> {
    const sub = this.sentinels[0]!.client();
    await sub.subscribe('+switch-master');
    return {
      wait: new Promise((resolve) =>
        sub.on('message', (_channel: string, message: string) => {
          sub.disconnect();
          resolve(message);
        }),
      ),
    };
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.sentinels.map((s) => s.destroy()), this.master.destroy(), this.replica.destroy()]);
  }
}

/**
 * A `CLUSTER SLOTS` reply as one comparable string, or null while it is incomplete (slots not
 * covered, or a master whose address the node has not learned yet).
 */
function slotMap(reply: unknown): string | null {
  const ranges = reply as [number, number, [string, number, ...unknown[]], ...unknown[]][];
  let covered = 0;
  const parts: string[] = [];
  for (const [from, to, [host, port]] of ranges) {
    if (!host) return null;
    covered += to - from + 1;
    parts.push(`${from}-${to}@${host}:${port}`);
  }
  return covered === 16384 ? parts.sort().join(',') : null;
}

/**
 * A Redis Cluster of three masters made by `redis-cli --cluster create`, with `replicas` replicas
 * each (none by default). `nodes` holds every node, masters first.
 */
export class ClusterSetup {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(replicas = 0): Promise<ClusterSetup> {
    const nodes = await Promise.all(
      Array.from({ length: 3 * (1 + replicas) }, async () =>
        RedisServer.start([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          // Redis's default: a shorter one lets a busy CI host's pauses mark healthy nodes as failing.
          '--cluster-node-timeout',
          '15000',
          // The bus port defaults to port + 10000, which may be taken or out of range.
          '--cluster-port',
          String(await freePort()),
        ]),
      ),
    );
    const setup = new ClusterSetup(nodes);
    try {
      await run('redis-cli', [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ]);
      // `cluster_state:ok` comes before every node has learned the whole slot map; a client that
      // refreshes its map from a node still learning drops its connections and reconnects, which a
      // test sees as "Cluster isn't ready". So wait until every node tells the same, complete map.
      const clients = nodes.map((n) => n.client());
      try {
        await until('every node to be ok and tell the same complete slot map', async () => {
          const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
          if (!infos.every((info) => info.includes('cluster_state:ok'))) return false;
          const maps = await Promise.all(clients.map(async (c) => slotMap(await c.call('CLUSTER', 'SLOTS'))));
          if (!maps.every((m) => m !== null && m === maps[0])) return false;
          // Every replica attached to its master and in sync.
          const roles = (await Promise.all(clients.map((c) => c.call('ROLE')))) as string[][];
          return roles.every((r) => r[0] === 'master' || r[3] === 'connected');
        });
      } finally {
        for (const c of clients) c.disconnect();
      }
    } catch (err) {
      await setup.destroy();
      throw err;
    }
    return setup;
  }

  /** `host:port,...` as RZ_REDIS_CLUSTER_NODES takes it (one node is enough; all are given). */
  get nodeList(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  }

  get env(): Record<string, string> {
    return { RZ_REDIS_CLUSTER_NODES: this.nodeList };
  }

  client(): Cluster {
    return new Cluster(this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
  }

  /** The hash slot of a key, and the master that owns it (as `via` sees the slot map). */
  async slotOf(key: string, via = this.nodes[0]!): Promise<{ slot: number; owner: RedisServer }> {
    const c = via.client();
    try {
      const slot = (await c.call('CLUSTER', 'KEYSLOT', key)) as number;
      const ranges = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const port = ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
      return { slot, owner: this.nodes.find((n) => n.port === port)! };
    } finally {
      c.disconnect();
    }
  }

  /**
   * Fails `master` over to its replica with `CLUSTER FAILOVER` (the replica catches up first, so no
   * write is lost); resolves once every node tells the slot map with the replica as master.
   */
  async failOver(master: RedisServer): Promise<RedisServer> {
    let replica: RedisServer | undefined;
    for (const node of this.nodes) {
      const c = node.client();
      try {
        const role = (await c.call('ROLE')) as [string, string, number];
        if (role[0] === 'slave' && Number(role[2]) === master.port) replica = node;
      } finally {
        c.disconnect();
      }
    }
    if (replica === undefined) throw new Error(`no replica of the master on port ${master.port}`);
    const admin = replica.client();
    try {
      await admin.call('CLUSTER', 'FAILOVER');
    } finally {
      admin.disconnect();
    }
    const clients = this.nodes.map((n) => n.client());
    try {
      await until('the replica to be master on every node', async () => {
        const maps = await Promise.all(clients.map(async (c) => slotMap(await c.call('CLUSTER', 'SLOTS'))));
        return maps.every((m) => m !== null && m === maps[0] && m.includes(`:${replica.port}`));
      });
    } finally {
      for (const c of clients) c.disconnect();
    }
    return replica;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.destroy()));
  }
}

/**
 * The moves of a resharding, done step by step with the commands `redis-cli --cluster reshard` sends,
 * so a test can act between them: `open` marks the slots importing on the target and migrating on
 * the source, `move` migrates some keys, `close` gives the slots to the target on every master.
 */
export class SlotMigration {
  private readonly admin = new Map<RedisServer, Redis>();

  constructor(
    private readonly setup: ClusterSetup,
    readonly slots: number[],
    readonly from: RedisServer,
    readonly to: RedisServer,
  ) {
    for (const node of setup.nodes) this.admin.set(node, node.client());
  }

  private on(node: RedisServer, ...args: (string | number)[]): Promise<unknown> {
    return this.admin.get(node)!.call(String(args[0]), ...args.slice(1));
  }

  private async id(node: RedisServer): Promise<string> {
    return (await this.on(node, 'CLUSTER', 'MYID')) as string;
  }

  async open(): Promise<void> {
    const [fromId, toId] = [await this.id(this.from), await this.id(this.to)];
    for (const slot of this.slots) {
      await this.on(this.to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
      await this.on(this.from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    }
  }

  /** The keys of a slot still on the source. */
  async keysLeft(slot: number): Promise<string[]> {
    return (await this.on(this.from, 'CLUSTER', 'GETKEYSINSLOT', slot, 1000)) as string[];
  }

  /** Moves these keys (of one slot) from the source to the target. */
  async move(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.on(this.from, 'MIGRATE', '127.0.0.1', this.to.port, '', 0, 5000, 'KEYS', ...keys);
  }

  /** Gives the slots to the target: the target first, then the source, then every other master. */
  async close(): Promise<void> {
    const toId = await this.id(this.to);
    const order = [this.to, this.from, ...this.setup.nodes.filter((n) => n !== this.to && n !== this.from)];
    for (const node of order) {
      for (const slot of this.slots) await this.on(node, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    }
  }

  end(): void {
    for (const c of this.admin.values()) c.disconnect();
  }
}

let sharedSentinel: Promise<SentinelSetup> | undefined;
let sharedCluster: Promise<ClusterSetup> | undefined;

/** One Sentinel set and one Cluster for the whole run (stopped by the root hook); never failed over. */
export function sharedSentinelSetup(): Promise<SentinelSetup> {
  return (sharedSentinel ??= SentinelSetup.start());
}

export function sharedClusterSetup(): Promise<ClusterSetup> {
  return (sharedCluster ??= ClusterSetup.start());
}

export async function stopSharedTopologies(): Promise<void> {
  const s = sharedSentinel;
  const c = sharedCluster;
  sharedSentinel = sharedCluster = undefined;
  await Promise.all([s?.then((x) => x.destroy()), c?.then((x) => x.destroy())]);
}
