import type { Config } from '../config';
import type { SessionStore } from '../store/types';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics';

/** What every protocol module is given: nothing else, so each stays a thin layer over the store. */
export interface ProtocolDeps {
  config: Config;
  store: SessionStore;
  log: Logger;
  metrics: Metrics;
}
