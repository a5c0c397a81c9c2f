import getRawBody from 'raw-body';
import type { Context } from 'koa';
import { MatrixError } from './errors';

const EMPTY = Buffer.alloc(0);

/**
 * Reads the request body up to `limit` bytes. A declared Content-Length over the limit is refused
 * before a byte is read; a chunked body is cut off as soon as it passes the limit.
 */
export async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const encoding = ctx.get('Content-Encoding');
  if (encoding !== '' && encoding.toLowerCase() !== 'identity') {
    throw new MatrixError(415, 'M_INVALID_PARAM', 'Compressed request bodies are not accepted', undefined, {
      Connection: 'close',
    });
  }
  const declared = ctx.get('Content-Length');
  if (declared === '0') return EMPTY;
  if (declared === '' && ctx.get('Transfer-Encoding') === '') return EMPTY;
  return getRawBody(ctx.req, { limit, length: declared === '' ? undefined : declared });
}
