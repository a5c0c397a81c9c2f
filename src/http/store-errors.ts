import type { Logger } from 'pino';
import type { StoreUnavailableError } from '../store/types';

/** How often, at most, one line is logged per reason while the store keeps failing. */
const LOG_EVERY_MS = 10_000;

/**
 * Logs store failures without a line per request: during an outage every request fails alike, and
 * a line each would flood the logs (and cost CPU) exactly when the operator needs them. The first
 * failure of each reason is logged at once, then one line per interval says how many followed.
 */
export class StoreFailureLog {
  private readonly byReason = new Map<string, { loggedAt: number; since: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  record(err: StoreUnavailableError, requestId: unknown): void {
    const now = this.now();
    const seen = this.byReason.get(err.reason);
    if (seen !== undefined && now - seen.loggedAt < LOG_EVERY_MS) {
      seen.since++;
      return;
    }
    const cause = (err.cause as Error | undefined)?.message ?? err.message;
    this.log.warn(
      { reqId: requestId, reason: err.reason, err: cause, failuresSinceLastLine: seen?.since ?? 0 },
      'session store unavailable',
    );
    this.byReason.set(err.reason, { loggedAt: now, since: 0 });
  }
}
