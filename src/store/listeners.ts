import type { NotifierStats, Session, Subscription, WakeEvent, WakeListener } from './types';

/**
 * Parses a notice that carries no state: `deleted`, or a bare decimal revision (what a write of a
 * large payload publishes, and what replicas of earlier releases publish during a rolling upgrade);
 * anything else is ignored.
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
  /** Failed attempts in a row, for the backoff. */
  failures: number;
  /** Subscribed again after a failure: listeners must re-read once it succeeds. */
  retried: boolean;
}

/** Pause before subscribing again after a failed attempt, doubling per failure up to the last. */
const RETRY_MS = [200, 400, 800, 1600, 3200, 5000];

export interface ListenerBackend {
  /** Subscribes to a session's notices; settles once they are certain to arrive. */
  subscribe(id: string): Promise<void>;
  unsubscribe(id: string): void;
  /**
   * Whether the connection is up. While it is down no entry retries on its own (thousands of waits
   * would each retry at once): the backend calls `resubscribeAll` when it is back.
   */
  isUp(): boolean;
  /** Runs `retry` after `ms` (a timer; tests pass their own). */
  schedule?(retry: () => void, ms: number): void;
}

const schedule = (retry: () => void, ms: number) => void setTimeout(retry, ms).unref();

/**
 * The listeners of every session somebody waits on, shared by both backends. Subscriptions are per
 * session and reference-counted: the first listener of a session subscribes, the last one to leave
 * unsubscribes, so the subscriber holds exactly the channels somebody waits on.
 */
export class ListenerTable {
  private readonly bySession = new Map<string, Entry>();
  private listenerCount = 0;

  constructor(private readonly backend: ListenerBackend) {}

  /**
   * Subscribes the entry. A failed attempt is tried again, with backoff, for as long as anyone still
   * waits on the session and the connection is up (or sooner, by the next listener or a reconnect).
   * Notices published while it was not subscribed went to nobody, so a late success tells the
   * listeners to re-read.
   */
  private subscribe(id: string, entry: Entry): Promise<void> {
    const ready = this.backend.subscribe(id);
    entry.failed = false;
    entry.ready = ready;
    ready.then(
      () => {
        entry.failures = 0;
        if (entry.retried && entry.ready === ready) {
          entry.retried = false;
          this.dispatch(id, { kind: 'resync' });
        }
      },
      () => {
        if (entry.ready !== ready) return;
        entry.failed = true;
        const delay = RETRY_MS[Math.min(entry.failures++, RETRY_MS.length - 1)]!;
        // Spread out, so the retries of many sessions that failed together do not come together.
        (this.backend.schedule ?? schedule)(
          () => {
            if (this.bySession.get(id) === entry && entry.failed && this.backend.isUp()) {
              entry.retried = true;
              this.subscribe(id, entry);
            }
          },
          delay * (0.75 + Math.random() / 2),
        );
      },
    );
    return ready;
  }

  listen(id: string, listener: WakeListener): Subscription {
    let entry = this.bySession.get(id);
    if (entry === undefined) {
      entry = { listeners: new Set(), ready: Promise.resolve(), failed: false, failures: 0, retried: false };
      this.bySession.set(id, entry);
      this.subscribe(id, entry);
    } else if (entry.failed && this.backend.isUp()) {
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
          this.backend.unsubscribe(id);
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
      entry.failures = 0;
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
