import { boundChildren, type Metrics } from '../metrics';
import type { CreateInput, SessionStore, UpdateInput, UpdateResult } from './types';

/** A store that can tell, cheaply, how many sessions are live and how many expired so far. */
export interface SessionCounts {
  liveSessions(): Promise<number>;
  /** Sessions that reached their expiry, counted since the store started. */
  expiredSessions(): number;
}

function hasCounts(store: object): store is SessionCounts {
  return typeof (store as Partial<SessionCounts>).liveSessions === 'function';
}

type AnyFn = (...args: unknown[]) => unknown;

/** What each session operation means for the counters, from its arguments and its result. */
type Counting = (args: unknown[], result: unknown) => void;

function counters(m: Metrics): Record<string, Counting> {
  const created = boundChildren((family) => m.sessionsCreated.labels(family));
  const writes = boundChildren((family, outcome) => m.sessionWrites.labels(family, outcome));
  const conflicts = boundChildren((family) => m.casConflicts.labels(family));
  const deleted = boundChildren((family) => m.sessionsDeleted.labels(family));
  return {
    create(args, result) {
      if (result !== null) created((args[0] as CreateInput).family).inc();
    },
    update(args, result) {
      const family = (args[1] as UpdateInput).family;
      const status = (result as UpdateResult).status;
      writes(family, status).inc();
      if (status === 'conflict') conflicts(family).inc();
    },
    delete(args, result) {
      if (result === true) deleted(args[1] as string).inc();
    },
  };
}

/** Operations not worth a latency sample (they do not touch Redis per request). */
const UNTIMED = new Set(['close', 'refreshGauges', 'liveSessions', 'expiredSessions', 'constructor']);

export interface Instrumented {
  /** The wrapped store, for code that needs the backend itself. */
  readonly inner: SessionStore;
  /**
   * Brings the live-sessions gauge and the expiry counter up to date; called at scrape time so the
   * request path never pays for it. Backends without a cheap count leave both untouched.
   */
  refreshGauges(): Promise<void>;
}

/**
 * Wraps any store with the session metrics (creates, writes by outcome, CAS conflicts, deletes) and,
 * for Redis, the round-trip time and failures of every operation. Protocol modules stay unaware of
 * metrics: every session operation of every family goes through here. A Proxy rather than a class,
 * so store methods added later are forwarded (and timed) without touching this file.
 */
export function instrumentStore<S extends SessionStore>(
  inner: S,
  metrics: Metrics,
  /** Where the live-sessions count comes from when the store cannot tell it itself (Redis). */
  liveSessions?: () => Promise<number>,
): S & Instrumented {
  const timed = inner.kind === 'redis';
  const wrapped = new Map<PropertyKey, AnyFn>();
  let expiredSeen = 0;

  const refreshGauges = async (): Promise<void> => {
    if (liveSessions !== undefined) metrics.sessionsLive.set(await liveSessions());
    if (!hasCounts(inner)) return;
    metrics.sessionsLive.set(await inner.liveSessions());
    const expired = inner.expiredSessions();
    if (expired > expiredSeen) metrics.sessionsExpired.inc(expired - expiredSeen);
    expiredSeen = expired;
  };

  const COUNT = counters(metrics);
  const wrap = (name: string, fn: AnyFn): AnyFn => {
    const count = COUNT[name];
    const time = timed && !UNTIMED.has(name);
    const duration = time ? metrics.redisDuration.labels(name) : undefined;
    if (count === undefined && !time) return fn.bind(inner);
    // Only promises are timed: a synchronous method added later keeps its synchronous result.
    return (...args: unknown[]) => {
      const start = time ? process.hrtime.bigint() : 0n;
      const observe = () => duration!.observe(Number(process.hrtime.bigint() - start) / 1e9);
      const result = fn.apply(inner, args);
      if (!(result instanceof Promise)) {
        count?.(args, result);
        return result;
      }
      return result.then(
        (value: unknown) => {
          if (time) observe();
          count?.(args, value);
          return value;
        },
        (err: unknown) => {
          if (time) {
            observe();
            metrics.redisErrors.inc();
          }
          throw err;
        },
      );
    };
  };

  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'inner') return inner;
      if (prop === 'refreshGauges') return refreshGauges;
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      let fn = wrapped.get(prop);
      if (fn === undefined) wrapped.set(prop, (fn = wrap(prop, value as AnyFn)));
      return fn;
    },
  }) as S & Instrumented;
}
