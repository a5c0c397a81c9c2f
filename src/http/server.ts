import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Config } from '../config';

/**
 * An HTTP server with every client-controlled resource bounded: header size and count, the time to
 * send headers and the whole request (slowloris), idle keep-alive, and concurrent connections.
 */
export function createHttpServer(app: Koa, config: Config): http.Server {
  const server = http.createServer(
    {
      maxHeaderSize: config.maxHeaderBytes,
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
    },
    app.callback(),
  );
  server.maxHeadersCount = config.maxHeadersCount;
  if (config.maxConnections > 0) server.maxConnections = config.maxConnections;
  return server;
}

export function listen(server: http.Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Stops accepting, lets in-flight requests finish (their connections close after the answer), and
 * after `graceMs` cuts whatever is left. Resolves once no connection remains.
 */
export function drain(server: http.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
