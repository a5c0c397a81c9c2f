/**
 * Wake-up notices for long-polls. Every successful write publishes the new revision on its session's
 * channel and every delete publishes `deleted`; a notifier delivers those to the waiters of this
 * replica. Subscriptions are per session and reference-counted: the first waiter of a session
 * subscribes, the last one to leave unsubscribes, so the subscriber holds exactly the channels
 * somebody waits on.
 */

import type { Session } from '../store/types';

/**
 * `changed`: a write produced revision `rev`, and `session` is its new state when the notice carried
 * it (then nobody needs to read it again); `deleted`: the session is gone; `resync`: notices may have
 * been missed (the subscriber connection dropped and is back), so every waiter re-reads.
 */
export type WakeEvent = { kind: 'changed'; rev: number; session?: Session } | { kind: 'deleted' } | { kind: 'resync' };

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

/**
 * Parses a notice that carries no state: `deleted`, or a bare decimal revision (what replicas of
 * earlier releases publish, during a rolling upgrade); anything else is ignored.
 */
export function parseWake(message: string): WakeEvent | null {
  if (message === 'deleted') return { kind: 'deleted' };
  const rev = Number(message);
  return Number.isSafeInteger(rev) && rev > 0 ? { kind: 'changed', rev } : null;
}

/** The notice of a write whose new state is known. */
export function wakeOf(session: Session): WakeEvent {
  return { kind: 'changed', rev: session.rev, session };
}

interface Entry {
  listeners: Set<WakeListener>;
  /** The latest subscribe attempt; listeners joining later wait for it too. */
  ready: Promise<void>;
  failed: boolean;
  /** Subscribed again after a failure: listeners must re-read once it succeeds. */
  retried: boolean;
}

/** Pause before subscribing again after a failed attempt. */
const SUBSCRIBE_RETRY_MS = 200;

/**
 * The listeners of every session somebody waits on, shared by both backends. `onFirst`/`onLast`
 * are where a backend subscribes and unsubscribes.
 */
export class ListenerTable {
  private readonly bySession = new Map<string, Entry>();
  private listenerCount = 0;

  constructor(
    private readonly onFirst: (id: string) => Promise<void>,
    private readonly onLast: (id: string) => void,
  ) {}

  /**
   * Subscribes the entry. A failed attempt is tried again after a short pause for as long as anyone
   * still waits on the session (or sooner, by the next listener or a reconnect). Notices published
   * while it was not subscribed went to nobody, so a late success tells the listeners to re-read.
   */
  private subscribe(id: string, entry: Entry): Promise<void> {
    const ready = this.onFirst(id);
    entry.failed = false;
    entry.ready = ready;
    ready.then(
      () => {
        if (entry.retried && entry.ready === ready) {
          entry.retried = false;
          this.dispatch(id, { kind: 'resync' });
        }
      },
      () => {
        if (entry.ready !== ready) return;
        entry.failed = true;
        setTimeout(() => {
          if (this.bySession.get(id) === entry && entry.failed) {
            entry.retried = true;
            this.subscribe(id, entry);
          }
        }, SUBSCRIBE_RETRY_MS).unref();
      },
    );
    return ready;
  }

  listen(id: string, listener: WakeListener): Subscription {
    let entry = this.bySession.get(id);
    if (entry === undefined) {
      entry = { listeners: new Set(), ready: Promise.resolve(), failed: false, retried: false };
      this.bySession.set(id, entry);
      this.subscribe(id, entry);
    } else if (entry.failed) {
      entry.retried = true;
      this.subscribe(id, entry);
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

  /**
   * Re-subscribes every session (after a reconnect) and tells its listeners to re-read once that
   * subscription is confirmed: only if the entry and the attempt are still current then, since
   * listeners take a resync as proof that notices reach them.
   */
  resubscribeAll(): void {
    for (const [id, entry] of this.bySession) {
      const ready = this.subscribe(id, entry);
      ready.then(
        () => {
          if (this.bySession.get(id) === entry && entry.ready === ready) this.dispatch(id, { kind: 'resync' });
        },
        () => {},
      );
    }
  }

  stats(): NotifierStats {
    return { sessions: this.bySession.size, listeners: this.listenerCount };
  }
}
