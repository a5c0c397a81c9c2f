import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SessionCounts } from './store/types';

/**
 * Every metric the service exports, in one registry per server instance (so several in-process
 * servers in tests never share counters). Names are prefixed `rendezvous_`.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'rendezvous_http_requests_total',
    help: 'HTTP requests answered, by API family, method and status',
    labelNames: ['family', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: 'rendezvous_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by API family and method (held long-polls are in rendezvous_longpoll_duration_seconds)',
    labelNames: ['family', 'method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    registers: [this.registry],
  });

  /** Held long-polls last as long as nothing happens: in the request histogram they would be its p99. */
  readonly longPollDuration = new Histogram({
    name: 'rendezvous_longpoll_duration_seconds',
    help: 'Time a held long-poll request took, from arrival to answer, by API family and outcome (change, timeout, deleted, shutdown, disconnect, error)',
    labelNames: ['family', 'outcome'] as const,
    // Up to the longest wait RZ_LONGPOLL_MAX_WAIT_SECONDS allows.
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300],
    registers: [this.registry],
  });

  readonly sessionsCreated = new Counter({
    name: 'rendezvous_sessions_created_total',
    help: 'Sessions created, by API family',
    labelNames: ['family'] as const,
    registers: [this.registry],
  });

  readonly sessionWrites = new Counter({
    name: 'rendezvous_session_writes_total',
    help: 'Session writes, by API family and outcome (updated, conflict, unchanged, replayed, not_found, txn_limit)',
    labelNames: ['family', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly casConflicts = new Counter({
    name: 'rendezvous_cas_conflicts_total',
    help: 'Writes refused because the session changed underneath them (412/409), by API family',
    labelNames: ['family'] as const,
    registers: [this.registry],
  });

  readonly sessionsDeleted = new Counter({
    name: 'rendezvous_sessions_deleted_total',
    help: 'Sessions deleted by a client, by API family',
    labelNames: ['family'] as const,
    registers: [this.registry],
  });

  readonly sessionsExpired = new Counter({
    name: 'rendezvous_sessions_expired_total',
    help: 'Sessions that reached their expiry without being deleted (store-wide: every replica reports the same count)',
    registers: [this.registry],
  });

  readonly sessionsLive = new Gauge({
    name: 'rendezvous_sessions_live',
    help: 'Live sessions (store-wide: every replica reports the same count)',
    registers: [this.registry],
  });

  readonly rateLimited = new Counter({
    name: 'rendezvous_rate_limited_total',
    help: 'Requests refused by a rate limit or session cap, by budget',
    labelNames: ['budget'] as const,
    registers: [this.registry],
  });

  readonly longPollWaiters = new Gauge({
    name: 'rendezvous_longpoll_waiters',
    help: 'Long-poll requests currently waiting on this replica',
    registers: [this.registry],
  });

  readonly longPollWakeups = new Counter({
    name: 'rendezvous_longpoll_wakeups_total',
    help: 'Long-poll waits ended, by cause (change, timeout, deleted (or expired), shutdown, disconnect, error)',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });

  readonly connectionsRefused = new Counter({
    name: 'rendezvous_connections_refused_total',
    help: 'Connections closed as soon as they were accepted, by reason (per_address: RZ_MAX_CONNECTIONS_PER_ADDRESS, max_connections: RZ_MAX_CONNECTIONS)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly redisErrors = new Counter({
    name: 'rendezvous_redis_errors_total',
    help: 'Redis calls that failed, by what they were for (create, get, update, delete, counts, rates, reconcile, verdict, ping, inspect, subscribe) and reason (connection, timeout, oom, readonly, loading, busy, cluster, noperm, script, other)',
    labelNames: ['operation', 'reason'] as const,
    registers: [this.registry],
  });

  readonly redisDuration = new Histogram({
    name: 'rendezvous_redis_command_duration_seconds',
    help: 'Redis round-trip time by store operation',
    labelNames: ['operation'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });

  /** The store's expired count as last seen, so the counter moves by what expired since. */
  private expiredSeen = 0;

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'rendezvous_' });
  }

  /** Brings the session gauges up to date with the store's own counts (at scrape time). */
  recordSessionCounts(counts: SessionCounts): void {
    this.sessionsLive.set(counts.live);
    // A store that started over (a Redis restart) counts from zero again.
    if (counts.expired < this.expiredSeen) this.expiredSeen = 0;
    if (counts.expired > this.expiredSeen) this.sessionsExpired.inc(counts.expired - this.expiredSeen);
    this.expiredSeen = counts.expired;
  }
}

/**
 * prom-client hashes a label object on every `inc`/`observe`; a child bound once per label set costs
 * one Map lookup instead. Label sets here are small and fixed, so the cache stays small.
 */
export function boundChildren<C>(bind: (...values: string[]) => C): (...values: string[]) => C {
  // One level of maps per label, so looking a child up builds no key string.
  type Level = Map<string, Level | C>;
  const root: Level = new Map();
  return (...values) => {
    let level = root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]!) as Level | undefined;
      if (next === undefined) level.set(values[i]!, (next = new Map()));
      level = next;
    }
    let child = level.get(values[last]!) as C | undefined;
    if (child === undefined) level.set(values[last]!, (child = bind(...values)));
    return child;
  };
}
