import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';
import { StoreUnavailableError } from '../store/types';
import { StoreFailureLog } from './store-errors';

/** An error the client should see, as a Matrix JSON error `{errcode, error, ...extra}`. */
export class MatrixError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    readonly extra?: Record<string, unknown>,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'MatrixError';
  }
}

export function sendMatrixError(ctx: Context, err: MatrixError): void {
  ctx.status = err.status;
  if (err.headers) ctx.set(err.headers);
  ctx.res.setHeader('Content-Type', 'application/json');
  ctx.body = JSON.stringify({ errcode: err.errcode, error: err.message, ...err.extra });
}

/** Errors thrown by raw-body and Node's parser carry `status` and `type`; map them to Matrix errors. */
export function fromHttpError(err: { status?: number; type?: string; message?: string }): MatrixError | undefined {
  if (err.type === 'entity.too.large') {
    return new MatrixError(413, 'M_TOO_LARGE', 'Request body is larger than the server accepts', undefined, {
      Connection: 'close',
    });
  }
  if (err.type === 'request.aborted') return new MatrixError(400, 'M_BAD_REQUEST', 'Request body was cut short');
  if (err.type === 'request.size.invalid') {
    return new MatrixError(400, 'M_BAD_REQUEST', 'Request body length does not match Content-Length');
  }
  if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
    return new MatrixError(err.status, 'M_BAD_REQUEST', err.message ?? 'Bad request');
  }
  return undefined;
}

/**
 * The one place errors become responses: every failure is a Matrix JSON error and nothing a client
 * sends can escape as an unhandled rejection.
 */
export function errorHandler(log: Logger): Middleware {
  const storeFailures = new StoreFailureLog(log);
  // A rejection handler rather than try/await: a held long-poll keeps no suspended frame here.
  return (ctx, next) =>
    next().catch((caught: unknown) => {
      let err: MatrixError;
      if (caught instanceof MatrixError) {
        err = caught;
      } else if (caught instanceof StoreUnavailableError) {
        storeFailures.record(caught, ctx.state.requestId);
        err = new MatrixError(503, 'M_UNKNOWN', 'The session store is unavailable, try again shortly', undefined, {
          'Retry-After': '1',
        });
      } else {
        const mapped = fromHttpError(caught as { status?: number; type?: string });
        if (mapped) {
          err = mapped;
        } else {
          log.error({ reqId: ctx.state.requestId, err: caught }, 'unhandled error');
          err = new MatrixError(500, 'M_UNKNOWN', 'Internal server error');
        }
      }
      if (ctx.headerSent || !ctx.writable) return;
      ctx.respond = true;
      sendMatrixError(ctx, err);
    });
}
