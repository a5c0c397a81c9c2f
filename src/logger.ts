import pino, { type Logger } from 'pino';
import type { Config } from './config';

/** JSON lines on stdout. Request payloads and tokens are never passed to it. */
export function createLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino({
    level: config.logLevel,
    base: { service: 'rendezvous-server' },
    redact: { paths: ['req.headers.authorization', 'headers.authorization'], remove: true },
  });
}
