import type { Logger } from 'pino';
import { LogThrottle } from '../log-throttle';
import type { StoreUnavailableError } from '../store/types';

/** How often, at most, one line is logged per reason while the store keeps failing. */
const LOG_EVERY_MS = 10_000;

/**
 * Logs store failures without a line per request: the first failure of each reason at once, then
 * one line per interval saying how many followed.
 */
export class StoreFailureLog {
  private readonly throttle: LogThrottle;

  constructor(
    private readonly log: Logger,
    now: () => number = Date.now,
  ) {
    this.throttle = new LogThrottle(LOG_EVERY_MS, now);
  }

  record(err: StoreUnavailableError, requestId: unknown): void {
    const unlogged = this.throttle.take(err.reason);
    if (unlogged === undefined) return;
    const cause = (err.cause as Error | undefined)?.message ?? err.message;
    this.log.warn(
      { reqId: requestId, reason: err.reason, err: cause, failuresSinceLastLine: unlogged },
      'session store unavailable',
    );
  }
}
