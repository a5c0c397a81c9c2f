import pino, { type Logger } from 'pino';
import type { Config } from './config';

/**
 * JSON lines on stdout. Request payloads and tokens are never passed to it.
 *
 * Written synchronously: lines keep their order at shutdown, and there is no buffer to flush on
 * exit. An asynchronous stream's exit flush retries a broken pipe forever, so a replica whose log
 * reader had gone could never finish SIGTERM. A broken pipe just stops the logging.
 */
export function createLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service: 'rendezvous-server' },
      redact: { paths: ['req.headers.authorization', 'headers.authorization'], remove: true },
    },
    pino.destination({ dest: 1, sync: true }),
  );
}
