import http from 'node:http';
import type { Metrics } from '../metrics';
import type { SessionStore } from '../store/types';
import { COMMON_HEADERS } from './headers';
import { scrape } from './metrics';

/**
 * `/metrics` on a port of its own (RZ_METRICS_PORT), for operators who keep it off the port the
 * load balancer exposes. Plain Node http: nothing on this port needs the Koa stack. Every answer
 * carries the common headers, as on the main port, and a HEAD is answered as the GET without its body.
 */
export function createMetricsServer(metrics: Metrics, store: SessionStore): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const head = req.method === 'HEAD';
    const answer = (status: number, type: string, text: string, extra?: Record<string, string>) =>
      res
        .writeHead(status, {
          ...COMMON_HEADERS,
          ...extra,
          'Content-Type': type,
          'Content-Length': Buffer.byteLength(text),
        })
        .end(head ? undefined : text);
    if (path !== '/metrics') {
      answer(404, 'text/plain', 'not found\n');
      return;
    }
    if (req.method !== 'GET' && !head) {
      answer(405, 'text/plain', 'method not allowed\n', { Allow: 'GET, HEAD' });
      return;
    }
    scrape(metrics, store).then(
      (text) => answer(200, metrics.registry.contentType, text),
      () => answer(500, 'text/plain', 'metrics unavailable\n'),
    );
  });
}
