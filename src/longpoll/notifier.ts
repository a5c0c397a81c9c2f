/**
 * Wake-up notices for long-polls. Every successful write publishes the new revision on its session's
 * channel and every delete publishes `deleted`; a notifier delivers those to the waiters of this
 * replica. Subscriptions are per session and reference-counted: the first waiter of a session
 * subscribes, the last one to leave unsubscribes, so the subscriber holds exactly the channels
 * somebody waits on.
 */

/**
 * `changed`: a write produced revision `rev`; `deleted`: the session is gone; `resync`: notices may
 * have been missed (the subscriber connection dropped and is back), so every waiter re-reads.
 */
export type WakeEvent = { kind: 'changed'; rev: number } | { kind: 'deleted' } | { kind: 'resync' };

export type WakeListener = (event: WakeEvent) => void;

export interface Subscription {
  /**
   * Settles once notices published from now on are certain to reach the listener; rejects when the
   * subscription could not be made (the waiter then relies on its timeout and on `resync`).
   */
  readonly ready: Promise<void>;
  /** Removes the listener; the last one of a session ends the subscription. Idempotent. */
  release(): void;
}

export interface NotifierStats {
  /** Sessions this replica is subscribed to. */
  sessions: number;
  /** Listeners over all sessions. */
  listeners: number;
}

export interface Notifier {
  readonly kind: 'redis' | 'memory';
  /** Registers the listener at once (synchronously) and subscribes if it is the session's first. */
  listen(id: string, listener: WakeListener): Subscription;
  stats(): NotifierStats;
  /** Resolves once every (un)subscribe issued so far has been carried out by the backend. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** Parses a published message: a decimal revision or `deleted`; anything else is ignored. */
export function parseWake(message: string): WakeEvent | null {
  if (message === 'deleted') return { kind: 'deleted' };
  const rev = Number(message);
  return Number.isSafeInteger(rev) && rev > 0 ? { kind: 'changed', rev } : null;
}

/**
 * The listeners of every session somebody waits on, shared by both backends. `onFirst`/`onLast`
 * are where a backend subscribes and unsubscribes.
 */
export class ListenerTable {
  private readonly bySession = new Map<string, { listeners: Set<WakeListener>; ready: Promise<void> }>();
  private listenerCount = 0;

  constructor(
    private readonly onFirst: (id: string) => Promise<void>,
    private readonly onLast: (id: string) => void,
  ) {}

  listen(id: string, listener: WakeListener): Subscription {
    let entry = this.bySession.get(id);
    if (entry === undefined) {
      const ready = this.onFirst(id);
      // Waiters observe the rejection through `ready`; this only keeps it from being unhandled.
      ready.catch(() => {});
      entry = { listeners: new Set(), ready };
      this.bySession.set(id, entry);
    }
    entry.listeners.add(listener);
    this.listenerCount++;
    const owned = entry;
    let released = false;
    return {
      ready: owned.ready,
      release: () => {
        if (released) return;
        released = true;
        owned.listeners.delete(listener);
        this.listenerCount--;
        if (owned.listeners.size === 0 && this.bySession.get(id) === owned) {
          this.bySession.delete(id);
          this.onLast(id);
        }
      },
    };
  }

  has(id: string): boolean {
    return this.bySession.has(id);
  }

  /** Delivers to a copy of the set: listeners release themselves while being called. */
  dispatch(id: string, event: WakeEvent): void {
    const entry = this.bySession.get(id);
    if (entry === undefined) return;
    for (const listener of [...entry.listeners]) listener(event);
  }

  /** Re-subscribes every session (after a reconnect) and tells every listener to re-read. */
  async resubscribeAll(subscribe: (id: string) => Promise<void>): Promise<void> {
    const ids = [...this.bySession.keys()];
    const results = await Promise.allSettled(ids.map(subscribe));
    for (let i = 0; i < ids.length; i++) {
      if (results[i]!.status === 'fulfilled') this.dispatch(ids[i]!, { kind: 'resync' });
    }
  }

  ids(): IterableIterator<string> {
    return this.bySession.keys();
  }

  stats(): NotifierStats {
    return { sessions: this.bySession.size, listeners: this.listenerCount };
  }
}
