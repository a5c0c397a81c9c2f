#!/usr/bin/env node
import { ConfigError, helpText, loadConfig, unknownSettings, type Config } from './config';
import { createLogger } from './logger';
import { Metrics } from './metrics';
import { createStore } from './store';
import { createLongPoll, type LongPoll } from './longpoll';
import { createApp } from './http/app';
import { Lifecycle } from './http/health';
import { createHttpServer, drain, listen } from './http/server';
import { createMetricsServer } from './http/metrics-server';
import { instrumentStore } from './store/instrumented';
import { redisLiveSessions } from './limits/live-sessions';

export interface RunningServer {
  port: number;
  /** The RZ_METRICS_PORT listener's port, when /metrics has a port of its own. */
  metricsPort: number | undefined;
  /** This replica's long-poll waiters (tests look inside). */
  longPoll: LongPoll;
  /** Drains and closes everything; what SIGTERM does. */
  stop(): Promise<void>;
}

/** Starts one replica; used by the CLI below and by tests that want a real server in-process. */
export async function start(config: Config): Promise<RunningServer> {
  const log = createLogger(config);
  const metrics = new Metrics();
  const backend = await createStore(config, log);
  const store = instrumentStore(backend, metrics, redisLiveSessions(config, backend));
  const lifecycle = new Lifecycle();
  const longPoll = await createLongPoll(config, store, log, metrics);
  const app = createApp({ config, store, log, lifecycle, metrics, longPoll });
  const server = createHttpServer(app, config, metrics);
  const address = await listen(server, config.port, config.host);
  const metricsServer = config.metricsPort === undefined ? undefined : createMetricsServer(metrics, store);
  const metricsAddress = metricsServer && (await listen(metricsServer, config.metricsPort!, config.host));
  log.info(
    { port: address.port, host: config.host, store: store.kind, metricsPort: metricsAddress?.port },
    'listening',
  );

  let stopping: Promise<void> | undefined;
  // Readiness turns false first; only after the delay (load balancers notice) does the listener
  // close, then in-flight requests get the grace period, then Redis goes.
  const stop = () =>
    (stopping ??= (async () => {
      lifecycle.draining = true;
      log.info({ delaySeconds: config.shutdownDelaySeconds, graceSeconds: config.shutdownGraceSeconds }, 'draining');
      // Held long-polls answer now (304 / current state, with Connection: close, so their clients
      // come back through another replica) and new ones are answered at once from here on.
      longPoll.shutdown();
      if (config.shutdownDelaySeconds > 0) {
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDelaySeconds * 1000));
      }
      await drain(server, config.shutdownGraceSeconds * 1000);
      if (metricsServer) await drain(metricsServer, 0);
      await longPoll.notifier.close();
      await store.close();
      log.info('stopped');
    })());
  return { port: address.port, metricsPort: metricsAddress?.port, longPoll, stop };
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
  for (const name of unknownSettings()) {
    process.stderr.write(`rendezvous-server: warning: ${name} is not a setting and is ignored (see --help)\n`);
  }
  // Handlers first: a SIGTERM that lands while the replica is still starting must drain it too.
  const starting = start(config);
  const onSignal = () => {
    // A last resort if something hangs past the grace period: never outlive the orchestrator's patience.
    const deadline = (config.shutdownDelaySeconds + config.shutdownGraceSeconds + 5) * 1000;
    setTimeout(() => process.exit(1), deadline).unref();
    starting
      .then((running) => running.stop())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await starting;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`rendezvous-server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
