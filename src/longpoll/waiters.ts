import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { clientLeft, stopWatching, watchClient } from '../http/client-connection';
import type { Metrics } from '../metrics';
import {
  StoreUnavailableError,
  type Family,
  type Notifier,
  type Session,
  type SessionStore,
  type Subscription,
  type WakeEvent,
} from '../store/types';

export interface LongPollLimits {
  /** Longest a request is held, whatever it asks for; 0 turns long-poll off. */
  maxWaitMs: number;
  /** Concurrent waits on this replica. */
  maxWaiters: number;
  /** Concurrent waits per client address on this replica. */
  maxWaitersPerAddress: number;
}

export interface WaitRequest {
  id: string;
  family: Family;
  /** Client address the per-address bound counts against. */
  address: string;
  /** What the caller's own read returned: the wait is for anything that differs from it. */
  current: Session;
  /** How long to hold at most, already clamped with `clampWaitMs`. */
  waitMs: number;
  /** Whether a fresh read is news to the client (ETag or sequence token differs). */
  changed(session: Session): boolean;
  /** The response being held: its `close` before an answer means the client left. */
  res: ServerResponse;
}

/**
 * - `refused`: not held (a bound is reached, or the replica is shutting down): answer `session` as a
 *   plain GET would;
 * - `change`: a newer session to answer with; `timeout`/`shutdown`: nothing new, the last state read;
 * - `gone`: deleted or expired (404); `aborted`: the client left, nothing to answer;
 * - `error`: the store failed while re-reading (the usual 503).
 */
export type WaitResult =
  | { cause: 'refused'; session: Session }
  | { cause: 'change' | 'timeout' | 'shutdown'; session: Session }
  | { cause: 'gone' }
  | { cause: 'aborted' }
  | { cause: 'error'; error: unknown };

/**
 * How often a wait past the session's expiry by this replica's clock, whose session the store still
 * holds (its clock is behind this one's), asks the store again.
 */
const EXPIRY_RECHECK_MS = 1000;

/**
 * How long a wait already held pauses before reading again when a re-read (after a reconnect, say)
 * found the store away: a failover moves the subscriber and the command connection to the new master
 * one after the other, so for a moment wake-ups flow again while reads still fail.
 */
const REREAD_RETRY_MS = 200;

/** How each way a wait ends is labelled in the metrics (wake-ups, and the held request's outcome). */
export const CAUSE_LABEL = {
  change: 'change',
  timeout: 'timeout',
  shutdown: 'shutdown',
  gone: 'deleted',
  aborted: 'disconnect',
  error: 'error',
} as const;

/**
 * Holds GETs until their session changes. One instance per replica; protocol modules call `wait`
 * after their own read found nothing new.
 *
 * Events (for tests and diagnostics): `waiting` (id) once a waiter is subscribed and has re-checked,
 * i.e. from then on only a notice or its timer ends it; `released` (id) when a waiter is gone.
 */
export class LongPoll extends EventEmitter {
  private readonly waiters = new Set<Waiter>();
  private readonly perAddress = new Map<string, number>();
  private closing = false;

  constructor(
    readonly store: SessionStore,
    readonly notifier: Notifier,
    readonly limits: LongPollLimits,
    readonly metrics: Metrics,
  ) {
    super();
  }

  /** The wait actually granted for a request asking for `requestedMs` (0: no long-poll). */
  clampWaitMs(requestedMs: number): number {
    return Math.max(0, Math.min(requestedMs, this.limits.maxWaitMs));
  }

  /**
   * Holds until the session changes, is deleted or expires, the wait ends, or the client leaves.
   * Not `async`: the one promise returned is all a held request costs here, with no wrapper around it.
   */
  wait(req: WaitRequest): Promise<WaitResult> {
    const held = this.perAddress.get(req.address) ?? 0;
    if (
      this.closing ||
      req.waitMs <= 0 ||
      this.waiters.size >= this.limits.maxWaiters ||
      held >= this.limits.maxWaitersPerAddress
    ) {
      return Promise.resolve({ cause: 'refused', session: req.current });
    }
    this.perAddress.set(req.address, held + 1);
    this.metrics.longPollWaiters.inc();
    return new Promise<WaitResult>((resolve) => new Waiter(this, req, resolve).start());
  }

  /** Ends every wait now with the last state read (SIGTERM), and refuses new ones. */
  shutdown(): void {
    this.closing = true;
    for (const w of [...this.waiters]) w.endWithCurrent('shutdown');
  }

  /** Live counts, for tests and diagnostics. */
  stats(): { waiters: number; addresses: number; sessions: number; listeners: number } {
    return { waiters: this.waiters.size, addresses: this.perAddress.size, ...this.notifier.stats() };
  }

  /** @internal */ add(w: Waiter): void {
    this.waiters.add(w);
  }

  /** @internal Undoes everything `wait` and `add` counted, synchronously, before the answer. */
  remove(w: Waiter, req: WaitRequest, cause: Exclude<WaitResult['cause'], 'refused'>): void {
    this.waiters.delete(w);
    const left = this.perAddress.get(req.address)! - 1;
    if (left === 0) this.perAddress.delete(req.address);
    else this.perAddress.set(req.address, left);
    this.metrics.longPollWaiters.dec();
    this.metrics.longPollWakeups.inc({ cause: CAUSE_LABEL[cause] });
    this.emit('released', req.id);
  }
}

/** One held request. Everything it holds (timer, listener, close handler) is released in `finish`. */
class Waiter {
  private done = false;
  private held: Session;
  private timer: NodeJS.Timeout | undefined;
  private sub: Subscription | undefined;
  private reading = false;
  private readAgain = false;
  private subscribed = false;
  private announced = false;
  /**
   * A read made once the wait began has answered: the wait is held (on notices, or on its timer alone
   * while the subscriber is away), and a store condition on a later read does not end it.
   */
  private readOnce = false;
  /**
   * The held state has expired by this replica's clock, and the store is asked whether it has (see
   * `expiredHere`): how the wait ends if the store still holds the session unchanged.
   */
  private expiry: 'timeout' | 'shutdown' | undefined;
  /** The timer ends at the session's expiry rather than at the end of the wait asked for. */
  private endsAtExpiry = false;
  /** When the wait asked for ends (monotonic clock). */
  private deadline = 0;
  /** The connection watched for a client that leaves, while the response waits for it (pipelined). */
  private pipelined: Socket | undefined;
  /** A re-read that found the store away, asked again (see REREAD_RETRY_MS). */
  private rereadTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly lp: LongPoll,
    private readonly req: WaitRequest,
    private readonly resolve: (r: WaitResult) => void,
  ) {
    this.held = req.current;
  }

  start(): void {
    const res = this.req.res;
    this.lp.add(this);
    if (clientLeft(res)) return this.finish({ cause: 'aborted' });
    // `on` + `off` in finish rather than `once`, which wraps the listener in two more objects per wait.
    this.pipelined = watchClient(res, this.onClose);
    // Never beyond the session's expiry: at that moment the answer is 404, not 304, if the store
    // agrees (see `expiredHere`). (Timers may fire a millisecond early, so the timer remembers which
    // deadline it stands for.)
    this.deadline = performance.now() + this.req.waitMs;
    const untilExpiry = this.held.expiresAt - Date.now();
    this.endsAtExpiry = untilExpiry <= this.req.waitMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, Math.min(this.req.waitMs, untilExpiry)));
    this.sub = this.lp.notifier.listen(this.req.id, this.onWake);
    // No lost wake-up: the caller's read happened BEFORE this subscription existed, so a write that
    // landed in between published its notice to nobody. Once the subscription is active every later
    // write reaches `onWake`; one more read after that point catches everything before it. A notice
    // arriving while that read is in flight sets `readAgain`, so no write falls between the two.
    this.sub.ready.then(
      () => {
        this.subscribed = true;
        this.check();
      },
      // Subscriber down: no notices until it is back (then `resync`); the timer still ends the wait.
      () => this.check(),
    );
  }

  private readonly onWake = (event: WakeEvent): void => {
    if (this.done) return;
    if (event.kind === 'deleted') return this.finish({ cause: 'gone' });
    // A resync comes only from a subscription just confirmed (a retry after a failed first attempt,
    // or a reconnect): from here on notices reach this waiter, exactly as after `ready`.
    if (event.kind === 'resync') this.subscribed = true;
    if (event.kind === 'changed') {
      // A notice of a revision already read is old news (it crossed the re-check read).
      if (event.rev <= this.held.rev) return;
      // A notice carrying the new state is answered from, with no read: notices come in write order,
      // so it is at least as new as anything a read in flight could return.
      const session = event.session;
      if (session !== undefined && session.family === this.req.family) {
        // Expired by now by this replica's clock (the timer for it has not run yet in this turn): the
        // store says whether it is.
        if (session.expiresAt <= Date.now()) return this.expiredHere('timeout');
        if (this.req.changed(session)) return this.finish({ cause: 'change', session });
        this.held = session;
        return;
      }
    }
    this.check();
  };

  private readonly onClose = (): void => {
    if (!this.done) this.finish({ cause: 'aborted' });
  };

  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (this.done) return;
    if (this.endsAtExpiry) return this.expiredHere('timeout');
    this.endWithCurrent('timeout');
  };

  /** Reads the session; at most one read in flight, and one more if a notice came meanwhile. */
  private check(): void {
    if (this.done) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    this.lp.store.get(this.req.id, this.req.family).then(
      (session) => {
        this.reading = false;
        if (this.done) return;
        this.readOnce = true;
        if (session === null) return this.finish({ cause: 'gone' });
        if (this.req.changed(session)) return this.finish({ cause: 'change', session });
        // A notice may have brought a newer state while this read was in flight: keep the newest.
        if (session.rev >= this.held.rev) this.held = session;
        if (this.readAgain) {
          this.readAgain = false;
          return this.check();
        }
        if (this.subscribed && !this.announced) {
          this.announced = true;
          this.lp.emit('waiting', this.req.id);
        }
        if (this.expiry !== undefined) this.stillHeld();
      },
      (error: unknown) => {
        this.reading = false;
        if (this.done) return;
        // Once the wait is held, a store condition during a re-read does not end it with a 503: it
        // reads again until the store answers (a write may have landed while wake-ups were lost), and
        // meanwhile a notice or its timer ends it as ever. Not once that timer has run (the read
        // was to confirm the expiry by this replica's clock, or a shutdown's): nothing else would
        // end the wait.
        if (
          this.readOnce &&
          error instanceof StoreUnavailableError &&
          this.expiry === undefined &&
          this.timer !== undefined
        ) {
          this.readAgain = false;
          this.rereadTimer ??= setTimeout(() => {
            this.rereadTimer = undefined;
            this.check();
          }, REREAD_RETRY_MS);
          return;
        }
        this.finish({ cause: 'error', error });
      },
    );
  }

  /** Ends the wait with the last state read, unless that state has expired (then the store says). */
  endWithCurrent(cause: 'timeout' | 'shutdown'): void {
    if (this.done) return;
    // A timer that fires late (a busy event loop) or a shutdown that comes before the expiry timer
    // has run may find the session past its expiry by this replica's clock: the store decides.
    if (this.held.expiresAt <= Date.now()) return this.expiredHere(cause);
    this.finish({ cause, session: this.held });
  }

  /**
   * The held state has expired by this replica's clock. The store is the authority (Redis expires a
   * session on its own clock, which this one may be ahead of, and a session never vanishes before its
   * expiry): it is read (after any read in flight), and the wait answers 404 only if the store no
   * longer has the session. Still subscribed meanwhile: a notice that comes while the read is out is
   * answered as ever (a deletion 404, a new state a change), or has the store read once more.
   */
  private expiredHere(cause: 'timeout' | 'shutdown'): void {
    if (this.done) return;
    if (this.expiry !== 'shutdown') this.expiry = cause;
    this.check();
  }

  /** The store still holds, unchanged, the session expired by this replica's clock. */
  private stillHeld(): void {
    const cause = this.expiry!;
    this.expiry = undefined;
    // Held on rather than answered now: the client would ask again at once and be answered at once
    // again, in a loop, until the store's clock reaches the expiry. The store is asked once a second
    // until then, and the wait ends as asked.
    const left = this.deadline - performance.now();
    if (cause === 'timeout' && left > 0) {
      clearTimeout(this.timer);
      this.endsAtExpiry = left > EXPIRY_RECHECK_MS;
      this.timer = setTimeout(this.onTimer, Math.min(left, EXPIRY_RECHECK_MS));
      return;
    }
    this.finish({ cause, session: this.held });
  }

  private finish(result: Exclude<WaitResult, { cause: 'refused' }>): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    clearTimeout(this.rereadTimer);
    this.rereadTimer = undefined;
    this.sub?.release();
    stopWatching(this.req.res, this.onClose, this.pipelined);
    this.lp.remove(this, this.req, result.cause);
    this.resolve(result);
  }
}
