import http from 'node:http';
import type { Metrics } from '../metrics';
import type { SessionStore } from '../store/types';
import { scrape } from './metrics';

/**
 * `/metrics` on a port of its own (RZ_METRICS_PORT), for operators who keep it off the port the
 * load balancer exposes. Plain Node http: nothing on this port needs the Koa stack.
 */
export function createMetricsServer(metrics: Metrics, store: SessionStore): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    scrape(metrics, store).then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
}
