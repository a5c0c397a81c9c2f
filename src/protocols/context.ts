import type { Config } from '../config';
import type { SessionStore } from '../store/types';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics';
import type { LongPoll } from '../longpoll';

/** What every protocol module is given: nothing else, so each stays a thin layer over the store. */
export interface ProtocolDeps {
  config: Config;
  sessions: SessionStore;
  log: Logger;
  metrics: Metrics;
  /** Holds GETs that asked to wait for a change (long-poll extension). */
  longPoll: LongPoll;
}
