import type { Config } from '../config';

export { CAUSE_LABEL, LongPoll, type WaitResult, type LongPollLimits } from './waiters';
export { preferredWaitSeconds, waitOfDigits } from './prefer';

export function longPollLimits(config: Config) {
  return {
    maxWaitMs: config.longPollMaxWaitSeconds * 1000,
    maxWaiters: config.longPollMaxWaiters,
    maxWaitersPerAddress: config.longPollMaxWaitersPerAddress,
  };
}
