import type { Redis, Cluster } from 'ioredis';

/** What the homeserver said about a token. */
export type Verdict = 'valid' | 'invalid';

/**
 * Remembers verdicts on access tokens for a short time, keyed by a hash of the token (tokens are
 * never stored). Errors are the caller's to ignore: a cache that cannot answer is just a miss.
 */
export interface VerdictCache {
  get(tokenHash: string): Promise<Verdict | undefined>;
  set(tokenHash: string, verdict: Verdict, ttlMs: number): Promise<void>;
}

const CODES: Record<string, Verdict> = { v: 'valid', i: 'invalid' };
const keyOf = (tokenHash: string) => `rz:auth:${tokenHash}`;

/** Shared by every replica, so one whoami call serves all of them. */
export class RedisVerdictCache implements VerdictCache {
  constructor(private readonly client: Redis | Cluster) {}

  async get(tokenHash: string): Promise<Verdict | undefined> {
    const v = await this.client.get(keyOf(tokenHash));
    return v === null ? undefined : CODES[v];
  }

  async set(tokenHash: string, verdict: Verdict, ttlMs: number): Promise<void> {
    await this.client.set(keyOf(tokenHash), verdict === 'valid' ? 'v' : 'i', 'PX', ttlMs);
  }
}

/** One process only; bounded so a flood of distinct bad tokens cannot grow it without limit. */
export class MemoryVerdictCache implements VerdictCache {
  private readonly entries = new Map<string, { verdict: Verdict; until: number }>();

  constructor(
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  async get(tokenHash: string): Promise<Verdict | undefined> {
    const e = this.entries.get(tokenHash);
    if (e === undefined) return undefined;
    if (e.until <= this.now()) {
      this.entries.delete(tokenHash);
      return undefined;
    }
    return e.verdict;
  }

  async set(tokenHash: string, verdict: Verdict, ttlMs: number): Promise<void> {
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest entry.
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(tokenHash, { verdict, until: this.now() + ttlMs });
  }
}
