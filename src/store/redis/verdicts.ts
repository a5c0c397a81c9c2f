import type { Cluster, Redis } from 'ioredis';
import { verdictKey } from '../format';
import { uncounted, type FailureCounter, type Verdict, type VerdictCache } from '../types';
import { countedFailure } from './errors';

const CODES: Record<string, Verdict> = { v: 'valid', i: 'invalid', s: 'soft_logout' };
const CODE_OF: Record<Verdict, string> = { valid: 'v', invalid: 'i', soft_logout: 's' };

/** Shared by every replica, so one whoami call serves all of them. */
export class RedisVerdictCache implements VerdictCache {
  private readonly failure;

  constructor(
    private readonly client: Redis | Cluster,
    failed: FailureCounter = uncounted,
  ) {
    this.failure = countedFailure('verdict', failed);
  }

  async get(tokenHash: string): Promise<Verdict | undefined> {
    const v = await this.client.get(verdictKey(tokenHash)).catch(this.failure);
    return v === null ? undefined : CODES[v];
  }

  async set(tokenHash: string, verdict: Verdict, ttlMs: number): Promise<void> {
    await this.client.set(verdictKey(tokenHash), CODE_OF[verdict], 'PX', ttlMs).catch(this.failure);
  }
}
