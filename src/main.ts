#!/usr/bin/env node
import { ConfigError, helpText, loadConfig, type Config } from './config';
import { createLogger } from './logger';
import { Metrics } from './metrics';
import { createStore } from './store';
import { createLongPoll, type LongPoll } from './longpoll';
import { createApp } from './http/app';
import { Lifecycle } from './http/health';
import { createHttpServer, drain, listen } from './http/server';

export interface RunningServer {
  port: number;
  /** This replica's long-poll waiters (tests look inside). */
  longPoll: LongPoll;
  /** Drains and closes everything; what SIGTERM does. */
  stop(): Promise<void>;
}

/** Starts one replica; used by the CLI below and by tests that want a real server in-process. */
export async function start(config: Config): Promise<RunningServer> {
  const log = createLogger(config);
  const store = await createStore(config, log);
  const lifecycle = new Lifecycle();
  const metrics = new Metrics();
  const longPoll = await createLongPoll(config, store, log, metrics);
  const app = createApp({ config, store, log, lifecycle, metrics, longPoll });
  const server = createHttpServer(app, config);
  const address = await listen(server, config.port, config.host);
  log.info({ port: address.port, host: config.host, store: store.kind }, 'listening');

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      lifecycle.draining = true;
      log.info('draining');
      // Held long-polls answer now (304 / current state), or the drain would wait out every one.
      longPoll.shutdown();
      await drain(server, config.shutdownGraceSeconds * 1000);
      await longPoll.notifier.close();
      await store.close();
      log.info('stopped');
    })());
  return { port: address.port, longPoll, stop };
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(helpText());
    return;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const problem of err.problems) process.stderr.write(`rendezvous-server: config error: ${problem}\n`);
      process.stderr.write('Run rendezvous-server --help for every setting.\n');
      process.exit(2);
    }
    throw err;
  }
  const running = await start(config);
  const onSignal = () => {
    running.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`rendezvous-server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
