import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { StoreUnavailableError } from '../store/types';
import type { CapLimits, CapRefusal, SessionCaps } from './caps';

type Client = (Redis | Cluster) & {
  rzClaimSlot(key: string, id: string, cap: number, holdMs: number): Promise<[number, number]>;
};

/** The global cap is one sorted set; each address has its own, so no script spans two slots. */
export const GLOBAL_KEY = 'rz:cap:all';
const addressKey = (owner: string) => `rz:cap:addr:${owner}`;
/** Who created a session, beside it in its Cluster slot (same hash tag), expiring with it. */
const ownerKey = (id: string) => `rz:{${id}}:owner`;

function unavailable(err: unknown): StoreUnavailableError {
  return new StoreUnavailableError('session caps unavailable', { cause: err });
}

/**
 * Session caps in Redis, correct under any number of replicas racing: each cap is one sorted set
 * changed only by the claim script, so its size can never pass the cap. The address cap is claimed
 * first, then the global one; when the global one refuses, the address slot is given back.
 */
export class RedisCaps implements SessionCaps {
  private readonly cmd: Client;

  constructor(
    client: Redis | Cluster,
    private readonly limits: CapLimits,
  ) {
    client.defineCommand('rzClaimSlot', {
      numberOfKeys: 1,
      lua: readFileSync(join(__dirname, 'lua', 'claimSlot-1.lua'), 'utf8'),
    });
    this.cmd = client as Client;
  }

  async claim(id: string, owner: string, holdMs: number): Promise<CapRefusal | null> {
    const { global, perAddress } = this.limits;
    const byAddress = perAddress > 0 && owner !== '';
    // The address first: a slot it refuses never touches the global set, so racing creates from a
    // capped address cannot make others see a full server. Only a full server returns an address
    // slot, and then nobody could have used it.
    if (byAddress) {
      const [taken, wait] = await this.run(() => this.cmd.rzClaimSlot(addressKey(owner), id, perAddress, holdMs));
      if (taken === 0) return { cap: 'address', retryAfterMs: wait };
    }
    if (global > 0) {
      let answer: [number, number];
      try {
        answer = await this.run(() => this.cmd.rzClaimSlot(GLOBAL_KEY, id, global, holdMs));
      } catch (err) {
        if (byAddress) await this.cmd.zrem(addressKey(owner), id).catch(() => undefined);
        throw err;
      }
      if (answer[0] === 0) {
        // If this fails too, the slot frees itself when the session would have expired.
        if (byAddress) await this.cmd.zrem(addressKey(owner), id).catch(() => undefined);
        return { cap: 'global', retryAfterMs: answer[1] };
      }
    }
    return null;
  }

  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      throw unavailable(err);
    }
  }

  async bind(id: string, owner: string, holdMs: number): Promise<void> {
    if (this.limits.perAddress === 0 || owner === '') return;
    try {
      await this.cmd.set(ownerKey(id), owner, 'PX', holdMs);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async ownerOf(id: string): Promise<string | null> {
    if (this.limits.perAddress === 0) return null;
    try {
      return await this.cmd.get(ownerKey(id));
    } catch (err) {
      throw unavailable(err);
    }
  }

  async release(id: string, owner: string | null): Promise<void> {
    const undo: Promise<unknown>[] = [];
    if (this.limits.global > 0) undo.push(this.cmd.zrem(GLOBAL_KEY, id));
    if (owner !== null && owner !== '' && this.limits.perAddress > 0) {
      undo.push(this.cmd.zrem(addressKey(owner), id), this.cmd.del(ownerKey(id)));
    }
    // Best effort: a slot not given back here frees itself when the session would have expired.
    await Promise.allSettled(undo);
  }
}
