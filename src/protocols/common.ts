import type { Context } from 'koa';
import { MatrixError } from '../http/errors';
import { OPAQUE_ID } from '../ids';
import type { Family, SessionStore } from '../store/types';

export const notFound = (): MatrixError =>
  new MatrixError(404, 'M_NOT_FOUND', 'No rendezvous session with this id (it may have expired)');

/**
 * A value that must be in the opaque identifier grammar (ids, sequence tokens, transaction ids):
 * the value, or the error `invalid` makes for it.
 */
export function opaque(value: string | undefined, invalid: () => MatrixError): string {
  if (value === undefined || !OPAQUE_ID.test(value)) throw invalid();
  return value;
}

/** The session id from the path, or a 404: an id outside the grammar can name no session. */
export function sessionId(ctx: Context): string {
  return opaque(ctx.params.id as string | undefined, notFound);
}

/** Sends a body with exactly this Content-Type (Koa would otherwise append a charset). */
export function sendBody(ctx: Context, status: number, contentType: string, body: Buffer | string): void {
  ctx.status = status;
  ctx.res.setHeader('Content-Type', contentType);
  ctx.body = body;
}

export const EMPTY_JSON = '{}';

/** DELETE of a session, in every family: 404 when there is none of this family, else `answer`. */
export function deleteHandler(sessions: SessionStore, family: Family, answer: (ctx: Context) => void) {
  return async (ctx: Context): Promise<void> => {
    if (!(await sessions.delete(sessionId(ctx), family))) throw notFound();
    answer(ctx);
  };
}

/** MSC4388's sequence tokens are opaque identifiers, in a write's body and a long-poll's query. */
export const badSequenceToken = (): MatrixError =>
  new MatrixError(400, 'M_INVALID_PARAM', "'sequence_token' is not an opaque identifier");
