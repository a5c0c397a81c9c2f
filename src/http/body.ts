import getRawBody from 'raw-body';
import type { Context } from 'koa';
import { MatrixError } from './errors';

const EMPTY = Buffer.alloc(0);

const compressed = () =>
  new MatrixError(415, 'M_INVALID_PARAM', 'Compressed request bodies are not accepted', undefined, {
    Connection: 'close',
  });

/** RFC 9112 section 6.1: a transfer coding the server does not understand is answered 501. */
const unknownTransferCoding = () =>
  new MatrixError(501, 'M_UNRECOGNIZED', 'No transfer coding but chunked is implemented', undefined, {
    Connection: 'close',
  });

/**
 * Reads the request body up to `limit` bytes. A declared Content-Length over the limit is refused
 * before a byte is read; a chunked body is cut off as soon as it passes the limit.
 */
export async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const encoding = ctx.get('Content-Encoding');
  if (encoding !== '' && encoding.toLowerCase() !== 'identity') throw compressed();
  // Node's parser takes `gzip, chunked` and undoes only the chunking: the rest would be stored as sent.
  const transfer = ctx.get('Transfer-Encoding');
  if (transfer !== '' && transfer.trim().toLowerCase() !== 'chunked') throw unknownTransferCoding();
  const declared = ctx.get('Content-Length');
  if (declared === '0') return EMPTY;
  if (declared === '' && transfer === '') return EMPTY;
  // A declared length over the limit is refused by getRawBody before a byte is read: not invited.
  if (declared === '' || Number(declared) <= limit) inviteBody(ctx);
  return getRawBody(ctx.req, { limit, length: declared === '' ? undefined : declared });
}

/** As Node tells a request to expect a 100 Continue (RFC 9110 section 10.1.1: HTTP/1.1 only). */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

/**
 * A client that sent `Expect: 100-continue` holds its body back until told to send it. The server
 * leaves that to here (`checkContinue`), so that a request refused on its headers alone (a length
 * over the limit, a missing header) is answered without first inviting a body the client would then
 * send into a connection being closed; Node closes the connection after such an answer.
 */
function inviteBody(ctx: Context): void {
  const req = ctx.req;
  const expect = req.headers.expect;
  if (expect !== undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && CONTINUE.test(expect)) {
    ctx.res.writeContinue();
  }
}
