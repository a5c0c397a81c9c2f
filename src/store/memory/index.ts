import type { Backend, CapLimits } from '../types';
import { MemoryNotifier } from './notifier';
import { MemoryRateCounters } from './rates';
import { MemorySessions } from './sessions';
import { MemoryVerdictCache } from './verdicts';

export { MemorySessions } from './sessions';
export { MemoryNotifier } from './notifier';
export { MemoryVerdictCache } from './verdicts';
export { MemoryRateCounters } from './rates';

export interface MemoryBackendOptions {
  caps: CapLimits;
  maxTxnsPerSession: number;
  now?: () => number;
}

/** Everything in this process: the server without Redis, for one replica only. */
export function createMemoryBackend(opts: MemoryBackendOptions): Backend {
  const sessions = new MemorySessions(opts);
  const wakeups = new MemoryNotifier(sessions);
  const verdicts = new MemoryVerdictCache();
  return {
    kind: 'memory',
    description: 'memory',
    sessions,
    wakeups,
    verdicts,
    rates: new MemoryRateCounters(opts.now),
    ping: async () => {},
    inspect: async () => ({ healthy: true }),
    close: async () => {
      await wakeups.close();
      sessions.close();
      verdicts.close();
    },
  };
}
