import type { CapLimits, CapRefusal, SessionCaps } from './caps';

interface Slot {
  owner: string;
  until: number;
}

/**
 * Session caps for a single process (no Redis). Every call is synchronous inside, which makes each
 * one atomic. Slots sit in insertion order, which is nearly expiry order; the cheap prune stops at
 * the first live slot, and a full prune only runs when a cap looks full.
 */
export class MemoryCaps implements SessionCaps {
  private readonly slots = new Map<string, Slot>();
  private readonly perOwner = new Map<string, number>();

  constructor(
    private readonly limits: CapLimits,
    private readonly now: () => number = Date.now,
  ) {}

  private remove(id: string, slot: Slot): void {
    this.slots.delete(id);
    const n = (this.perOwner.get(slot.owner) ?? 1) - 1;
    if (n <= 0) this.perOwner.delete(slot.owner);
    else this.perOwner.set(slot.owner, n);
  }

  private prune(full: boolean): void {
    const now = this.now();
    for (const [id, slot] of this.slots) {
      if (slot.until <= now) this.remove(id, slot);
      else if (!full) return;
    }
  }

  private retryAfter(owner: string | undefined): number {
    let first = Infinity;
    for (const slot of this.slots.values()) {
      if (owner === undefined || slot.owner === owner) first = Math.min(first, slot.until);
    }
    return Math.max(0, first - this.now());
  }

  private refusal(owner: string): CapRefusal | null {
    const { global, perAddress } = this.limits;
    if (global > 0 && this.slots.size >= global) return { cap: 'global', retryAfterMs: this.retryAfter(undefined) };
    if (perAddress > 0 && owner !== '' && (this.perOwner.get(owner) ?? 0) >= perAddress) {
      return { cap: 'address', retryAfterMs: this.retryAfter(owner) };
    }
    return null;
  }

  async claim(id: string, owner: string, holdMs: number): Promise<CapRefusal | null> {
    this.prune(false);
    if (this.refusal(owner) !== null) this.prune(true);
    const refused = this.refusal(owner);
    if (refused !== null) return refused;
    this.slots.set(id, { owner, until: this.now() + holdMs });
    this.perOwner.set(owner, (this.perOwner.get(owner) ?? 0) + 1);
    return null;
  }

  async bind(): Promise<void> {}

  async ownerOf(id: string): Promise<string | null> {
    return this.slots.get(id)?.owner ?? null;
  }

  async release(id: string): Promise<void> {
    const slot = this.slots.get(id);
    if (slot !== undefined) this.remove(id, slot);
  }

  /** Slots held, for tests. */
  get size(): number {
    return this.slots.size;
  }
}
