import http from 'node:http';
import type { Metrics } from '../metrics';
import type { SessionStore } from '../store/types';
import { COMMON_HEADERS } from './headers';
import { scrape } from './metrics';

/**
 * What answers on `/metrics`'s port of its own (RZ_METRICS_PORT), for operators who keep it off the
 * port the load balancer exposes: a handler for a plain Node http server, since nothing on this port
 * needs the Koa stack. Every answer carries the common headers, as on the main port, and a HEAD is
 * answered as the GET without its body.
 */
export function metricsRequests(
  metrics: Metrics,
  store: SessionStore,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
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
    // Errors as Matrix JSON errors, as on the main port.
    const refuse = (status: number, errcode: string, error: string, extra?: Record<string, string>) =>
      answer(status, 'application/json', JSON.stringify({ errcode, error }), extra);
    if (path !== '/metrics') {
      refuse(404, 'M_NOT_FOUND', 'Only /metrics is served on this port');
      return;
    }
    if (req.method !== 'GET' && !head) {
      refuse(405, 'M_UNRECOGNIZED', 'Method not allowed here', { Allow: 'GET, HEAD' });
      return;
    }
    scrape(metrics, store).then(
      (text) => answer(200, metrics.registry.contentType, text),
      () => refuse(500, 'M_UNKNOWN', 'Metrics unavailable'),
    );
  };
}
