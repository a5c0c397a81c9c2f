import { loadConfig } from '../../src/config';
import { start, type RunningServer } from '../../src/main';

/** Limits off unless a test turns them on: suites measuring other things must not trip them. */
export const NO_LIMITS = {
  RZ_CREATE_RATE: '0',
  RZ_REQUEST_RATE: '0',
  RZ_MAX_SESSIONS: '0',
  RZ_MAX_SESSIONS_PER_ADDRESS: '0',
};

/** A replica in this process on a free loopback port (its own store connection and memory). */
export function startServer(env: Record<string, string>): Promise<RunningServer> {
  return start(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...NO_LIMITS, ...env }));
}
