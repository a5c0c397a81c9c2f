#!/usr/bin/env node
import { ConfigError, helpText, loadConfig, settingSuggestion, unknownSettings, type Config } from './config';
import { createLogger } from './logger';
import { Metrics } from './metrics';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBackend, type Backend } from './store';
import { MeteredSessions } from './store/metered';
import { LongPoll, longPollLimits } from './longpoll';
import { createApp } from './http/app';
import { Lifecycle, Readiness } from './http/health';
import {
  SERVED_EVENTS,
  createHttpServer,
  drain,
  handOver,
  holdRequests,
  keepAccepting,
  listen,
  serve,
} from './http/server';
import { metricsRequests } from './http/metrics-server';
import { checkCommand } from './check/cli';

export interface RunningServer {
  port: number;
  /** The RZ_METRICS_PORT listener's port, when /metrics has a port of its own. */
  metricsPort: number | undefined;
  /** This replica's long-poll waiters (tests look inside). */
  longPoll: LongPoll;
  /** This replica's metrics (tests look inside). */
  metrics: Metrics;
  /** Drains and closes everything; what SIGTERM does. */
  stop(): Promise<void>;
}

/** Starts one replica; used by the CLI below and by tests that want a real server in-process. */
export async function start(config: Config): Promise<RunningServer> {
  const log = createLogger(config);
  const metrics = new Metrics();
  // The addresses first, then the store: an address that cannot be had (a port in use) ends the
  // start at once, not after the wait for Redis below. Until the store is connected (or given up on),
  // requests are held unanswered, then served in order: none meets a connection still being made.
  const server = createHttpServer(config, metrics, log);
  holdRequests(server, SERVED_EVENTS);
  const address = await listen(server, config.port, config.host);
  const metricsServer = config.metricsPort === undefined ? undefined : http.createServer();
  let backend: Backend;
  let metricsAddress: AddressInfo | undefined;
  try {
    if (metricsServer) {
      holdRequests(metricsServer);
      keepAccepting(metricsServer, log);
      metricsAddress = await listen(metricsServer, config.metricsPort!, config.host, 'HOST, RZ_METRICS_PORT');
    }
    // The calls the backend makes on its own (rates, verdicts, reconciliation, pings...) count their
    // failures here; the session operations' are counted by MeteredSessions, below.
    backend = await createBackend(config, log, (operation, reason) =>
      metrics.redisErrors.labels(operation, reason).inc(),
    );
  } catch (err) {
    // Nothing will serve what is held: it is let go with the listeners.
    for (const listening of [server, metricsServer]) {
      listening?.close();
      listening?.closeAllConnections();
    }
    throw err;
  }
  const sessions = new MeteredSessions(backend.sessions, metrics, backend.kind === 'redis');
  const lifecycle = new Lifecycle();
  const readiness = new Readiness(backend, config.readiness, lifecycle, log);
  void readiness.start();
  const longPoll = new LongPoll(sessions, backend.wakeups, longPollLimits(config), metrics);
  const served = { ...config, publicBaseUrl: boundBaseUrl(config.publicBaseUrl, address.port) };
  serve(
    server,
    createApp({ config: served, backend, sessions, log, lifecycle, readiness, metrics, longPoll }),
    metrics,
  );
  if (metricsServer) handOver(metricsServer, metricsRequests(metrics, sessions));
  log.info(
    {
      port: address.port,
      host: address.address,
      store: backend.description,
      metricsPort: metricsAddress?.port,
      region: config.region,
      peers: config.region === undefined ? undefined : config.regionPeers.map((p) => p.name),
    },
    'listening',
  );

  let stopping: Promise<void> | undefined;
  // Readiness turns false first; only after the delay (load balancers notice) does the listener
  // close, then in-flight requests get the grace period, then Redis goes.
  const stop = () =>
    (stopping ??= (async () => {
      lifecycle.drain();
      log.info({ delaySeconds: config.shutdownDelaySeconds, graceSeconds: config.shutdownGraceSeconds }, 'draining');
      // Held long-polls answer now (304 / current state, with Connection: close, so their clients
      // come back through another replica) and new ones are answered at once from here on.
      longPoll.shutdown();
      if (config.shutdownDelaySeconds > 0) {
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDelaySeconds * 1000));
      }
      await drain(server, config.shutdownGraceSeconds * 1000);
      if (metricsServer) await drain(metricsServer, 0);
      lifecycle.stop();
      readiness.stop();
      await backend.close();
      log.info('stopped');
    })());
  return { port: address.port, metricsPort: metricsAddress?.port, longPoll, metrics, stop };
}

/** PORT=0 leaves the port to the system; a base URL naming port 0 (the default does) names the one it chose. */
function boundBaseUrl(publicBaseUrl: string, port: number): string {
  const url = new URL(publicBaseUrl);
  if (url.port !== '0') return publicBaseUrl;
  url.port = String(port);
  return url.href.replace(/\/$/, '');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === 'check') {
    process.exitCode = await checkCommand(args.slice(1), process.stdout, process.stderr);
    return;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(helpText());
    return;
  }
  // The server takes no arguments: anything else is a mistyped command, not a server to start.
  if (args.length > 0) {
    process.stderr.write(`rendezvous-server: unknown argument ${args[0]} (commands: check; see --help)\n`);
    process.exit(2);
  }
  // Before the errors, not instead of them: a misspelt name is often why a setting reads as missing.
  for (const name of unknownSettings()) {
    const meant = settingSuggestion(name);
    const hint = meant === undefined ? 'see --help' : `did you mean ${meant}?`;
    process.stderr.write(`rendezvous-server: warning: ${name} is not a setting and is ignored (${hint})\n`);
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    configErrorExit(err);
  }
  // Handlers first: a SIGTERM that lands while the replica is still starting must drain it too.
  // A setting found wrong only once Redis answers (a database it does not have) ends it as any other.
  const starting = start(config).catch(configErrorExit);
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

/** Exits 2 with one line per problem for a ConfigError; rethrows anything else. */
function configErrorExit(err: unknown): never {
  if (err instanceof ConfigError) {
    for (const problem of err.problems) process.stderr.write(`rendezvous-server: config error: ${problem}\n`);
    process.stderr.write('Run rendezvous-server --help for every setting.\n');
    process.exit(2);
  }
  throw err;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`rendezvous-server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
