import { boundChildren, type Metrics } from '../metrics';
import {
  StoreUnavailableError,
  type CreateInput,
  type CreateResult,
  type Family,
  type Session,
  type SessionCounts,
  type SessionStore,
  type StoreOperation,
  type UpdateInput,
  type UpdateResult,
} from './types';

/**
 * The session store with the session metrics: creates, writes by outcome, CAS conflicts, deletes,
 * and (when `timed`, for a store across the network) every operation's round trip and failures by
 * operation and reason (the counts a scrape reads included). Every family's sessions go through
 * here, so protocol modules stay unaware of metrics.
 */
export class MeteredSessions implements SessionStore {
  private readonly created;
  private readonly writes;
  private readonly conflicts;
  private readonly deleted;
  private readonly duration;
  private readonly failures;

  constructor(
    private readonly inner: SessionStore,
    metrics: Metrics,
    private readonly timed: boolean,
  ) {
    this.created = boundChildren((family) => metrics.sessionsCreated.labels(family));
    this.writes = boundChildren((family, outcome) => metrics.sessionWrites.labels(family, outcome));
    this.conflicts = boundChildren((family) => metrics.casConflicts.labels(family));
    this.deleted = boundChildren((family) => metrics.sessionsDeleted.labels(family));
    this.duration = boundChildren((operation) => metrics.redisDuration.labels(operation));
    this.failures = boundChildren((operation, reason) => metrics.redisErrors.labels(operation, reason));
  }

  /** Times the call when the store is remote; failures are counted by reason either way. */
  private observe<T>(operation: StoreOperation, call: Promise<T>): Promise<T> {
    if (!this.timed) return call;
    const start = performance.now();
    const histogram = this.duration(operation);
    return call.then(
      (value) => {
        histogram.observe((performance.now() - start) / 1000);
        return value;
      },
      (err: unknown) => {
        histogram.observe((performance.now() - start) / 1000);
        this.failures(operation, err instanceof StoreUnavailableError ? err.reason : 'other').inc();
        throw err;
      },
    );
  }

  async create(input: CreateInput): Promise<CreateResult> {
    const result = await this.observe('create', this.inner.create(input));
    if (result.status === 'created') this.created(input.family).inc();
    return result;
  }

  get(id: string, family: Family): Promise<Session | null> {
    return this.observe('get', this.inner.get(id, family));
  }

  async update(id: string, input: UpdateInput): Promise<UpdateResult> {
    const result = await this.observe('update', this.inner.update(id, input));
    this.writes(input.family, result.status).inc();
    if (result.status === 'conflict') this.conflicts(input.family).inc();
    return result;
  }

  async delete(id: string, family: Family): Promise<boolean> {
    const deleted = await this.observe('delete', this.inner.delete(id, family));
    if (deleted) this.deleted(family).inc();
    return deleted;
  }

  counts(): Promise<SessionCounts> {
    return this.observe('counts', this.inner.counts());
  }
}
