import type { Context } from 'koa';
import type { ServerResponse } from 'node:http';
import { MatrixError } from '../http/errors';
import { httpDate, httpDateUp } from '../http/headers';
import { OPAQUE_ID } from '../ids';
import { type Family, type SessionMeta, type SessionStore, etagOf } from '../store/types';
import { type EntityTagCondition, parseEntityTags } from './conditional';

/**
 * What MSC3886 and MSC4108-2024 share: HTTP validators carry the concurrency. Every answer about an
 * existing session carries ETag, Expires and Last-Modified, 304 and 412 included.
 */
export function setValidators(res: ServerResponse, meta: SessionMeta): void {
  res.setHeader('ETag', `"${etagOf(meta)}"`);
  res.setHeader('Expires', httpDateUp(meta.expiresAt));
  res.setHeader('Last-Modified', httpDate(meta.modifiedAt));
}

/** The session id from the path, or a 404: an id outside the grammar can name no session. */
export function sessionId(ctx: Context): string {
  const id = ctx.params.id as string | undefined;
  if (id === undefined || !OPAQUE_ID.test(id)) throw notFound();
  return id;
}

export const notFound = (): MatrixError =>
  new MatrixError(404, 'M_NOT_FOUND', 'No rendezvous session with this id (it may have expired)');

/** Parses a conditional header; null when absent, 400 when it is not entity-tag syntax. */
export function conditionHeader(ctx: Context, name: 'If-Match' | 'If-None-Match'): EntityTagCondition | null {
  const raw = ctx.get(name);
  if (raw === '') return null;
  const cond = parseEntityTags(raw);
  if (cond === null) throw new MatrixError(400, 'M_INVALID_PARAM', `${name} is not a valid entity-tag list`);
  return cond;
}

/** Sends a body with exactly this Content-Type (Koa would otherwise append a charset). */
export function sendBody(ctx: Context, status: number, contentType: string, body: Buffer | string): void {
  ctx.status = status;
  ctx.res.setHeader('Content-Type', contentType);
  ctx.body = body;
}

export const EMPTY_JSON = '{}';

/**
 * 304 with the validators and nothing else about the representation (RFC 9110 section 15.4.5): a
 * non-zero Content-Length there makes wrk, autocannon and OkHttp wait for a body that never comes.
 * Answered through Koa, which sends no Content-Type or Content-Length on a 304, so every middleware
 * (Connection: close while draining) still sees it.
 */
export function sendNotModified(ctx: Context, session: SessionMeta): void {
  setValidators(ctx.res, session);
  ctx.status = 304;
}

/** DELETE of a session: 204, or 404 when there is none of this family. */
export function deleteHandler(store: SessionStore, family: Family) {
  return async (ctx: Context): Promise<void> => {
    if (!(await store.delete(sessionId(ctx), family))) throw notFound();
    ctx.status = 204;
  };
}
