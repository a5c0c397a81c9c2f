import { Redis, type Cluster } from 'ioredis';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import type { Backend, CapLimits } from '../../src/store/types';
import { createMemoryBackend } from '../../src/store/memory';
import { createRedisBackend } from '../../src/store/redis';
import { CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_DETAILS_KEY, CAPS_JOURNAL_KEY, CAPS_KEY } from '../../src/store/format';
import { sharedRedisUrl } from './redis';
import { SentinelSetup, sharedClusterSetup, sharedSentinelSetup } from './topologies';

export interface BackendOptions {
  caps?: CapLimits;
  maxTxnsPerSession?: number;
}

/**
 * Two backends on one store, as two replicas have them (the same one twice in memory), and a client
 * to look at raw keys through (Redis only; it queues commands until ready, so only the backends' own
 * clients are under test).
 */
export interface BackendPair {
  a: Backend;
  b: Backend;
  inspect?: Redis | Cluster;
  /** Forgets every cap count, so a test starts from an empty store as far as caps go. */
  resetCaps(): Promise<void>;
  close(): Promise<void>;
}

export interface BackendKind {
  name: string;
  redis: boolean;
  make(opts?: BackendOptions): Promise<BackendPair>;
}

const NO_CAPS = { global: 0, perAddress: 0 };
const silent = createLogger({ logLevel: 'silent' });

async function redisPair(
  env: Record<string, string>,
  opts: BackendOptions,
  twoConnections: boolean,
  inspect: () => Redis | Cluster,
): Promise<BackendPair> {
  const config = loadConfig({ ...env, RZ_REDIS_COMMAND_TIMEOUT_MS: '2000' });
  const make = () =>
    createRedisBackend(
      {
        redis: config,
        caps: opts.caps ?? NO_CAPS,
        maxTxnsPerSession: opts.maxTxnsPerSession ?? 4,
        allowEviction: false,
        // A new Cluster client on a busy CI host has been seen to take more than 5 s to be ready.
        connectWaitMs: 20_000,
      },
      silent,
    );
  const a = await make();
  const b = twoConnections ? await make() : a;
  const raw = inspect();
  return {
    a,
    b,
    inspect: raw,
    async resetCaps() {
      await raw.del(CAPS_KEY, CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_KEY, CAPS_JOURNAL_DETAILS_KEY);
    },
    async close() {
      await a.close();
      if (b !== a) await b.close();
      raw.disconnect();
    },
  };
}

/** Every backend the server can be built on, for the contract suites. */
export const BACKEND_KINDS: BackendKind[] = [
  {
    name: 'memory',
    redis: false,
    async make(opts = {}) {
      const be = createMemoryBackend({ caps: opts.caps ?? NO_CAPS, maxTxnsPerSession: opts.maxTxnsPerSession ?? 4 });
      return { a: be, b: be, resetCaps: async () => {}, close: () => be.close() };
    },
  },
  {
    name: 'redis',
    redis: true,
    async make(opts = {}) {
      const url = await sharedRedisUrl();
      return redisPair({ REDIS_URL: url }, opts, false, () => new Redis(url));
    },
  },
  {
    name: 'redis, two connections (as two replicas)',
    redis: true,
    async make(opts = {}) {
      const url = await sharedRedisUrl();
      return redisPair({ REDIS_URL: url }, opts, true, () => new Redis(url));
    },
  },
  {
    name: 'redis sentinel, two connections',
    redis: true,
    async make(opts = {}) {
      const setup = await sharedSentinelSetup();
      return redisPair(
        setup.env,
        opts,
        true,
        () =>
          new Redis({
            sentinels: [{ host: '127.0.0.1', port: setup.sentinels[0]!.port }],
            name: SentinelSetup.MASTER_NAME,
          }),
      );
    },
  },
  {
    name: 'redis cluster of 3 masters, two connections',
    redis: true,
    async make(opts = {}) {
      const setup = await sharedClusterSetup();
      return redisPair(setup.env, opts, true, () => setup.client());
    },
  },
];
