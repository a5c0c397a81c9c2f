import type http from 'node:http';
import type Koa from 'koa';
import compose from 'koa-compose';

/**
 * The app's request handler: Koa's own (`app.callback()`) but for one step. Koa hands every
 * response to on-finished, which attaches four listeners to the response and its connection and an
 * async resource, all removed again when the answer is sent, so that an error of a body streamed
 * into the response, or of the connection while a request is served, reaches `ctx.onerror`. No
 * answer here is streamed (`respond` refuses one), and the connection's errors only ever reached a
 * debug-level log line (Node's `clientError` sees them too); that bookkeeping was about a tenth of a
 * poll's CPU in a profile of a replica under load.
 */
export function appHandler(app: Koa): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const middleware = compose(app.middleware);
  // An app error with nothing listening would be thrown; Koa's callback gives it its default logger.
  if (app.listenerCount('error') === 0) app.on('error', (err: Error) => app.onerror(err));
  return (req, res) => {
    const ctx = app.createContext(req, res);
    res.statusCode = 404;
    return middleware(ctx)
      .then(() => respond(ctx))
      .catch((err: Error) => ctx.onerror(err));
  };
}

/** Statuses whose answer has no body (RFC 9110 sections 15.3.5, 15.3.6 and 15.4.5). */
const EMPTY = new Set([204, 205, 304]);

/** Writes the answer the middleware left in `ctx`, as Koa's own respond does for the bodies served here. */
export function respond(ctx: Koa.Context): void {
  if (ctx.respond === false) return;
  const res = ctx.res;
  if (!ctx.writable) return void res.end();
  const body: unknown = ctx.body;
  if (EMPTY.has(ctx.status)) {
    // Setting the body to null strips the headers that describe one.
    ctx.body = null;
    return void res.end();
  }
  if (ctx.method === 'HEAD') {
    if (!res.headersSent && !res.hasHeader('Content-Length')) {
      const length = ctx.response.length;
      if (Number.isInteger(length)) ctx.length = length;
    }
    return void res.end();
  }
  if (body === null || body === undefined) {
    const text = ctx.message || String(ctx.status);
    if (!res.headersSent) {
      ctx.type = 'text';
      ctx.length = Buffer.byteLength(text);
    }
    return void res.end(text);
  }
  if (typeof body === 'string' || Buffer.isBuffer(body)) return void res.end(body);
  if (
    typeof (body as { pipe?: unknown }).pipe === 'function' ||
    body instanceof Blob ||
    body instanceof ReadableStream
  ) {
    throw new TypeError('a streamed body is not answered here: its errors would go unreported');
  }
  const json = JSON.stringify(body);
  if (!res.headersSent) ctx.length = Buffer.byteLength(json);
  res.end(json);
}
