import type { Context } from 'koa';
import type { ServerResponse } from 'node:http';
import { readBody } from '../http/body';
import { MatrixError } from '../http/errors';
import { httpDate, httpDateUp } from '../http/headers';
import { clientOf } from '../limits';
import { preferredWaitSeconds, type LongPoll } from '../longpoll';
import {
  etagOf,
  type Family,
  type Session,
  type SessionMeta,
  type SessionStore,
  type WriteCondition,
} from '../store/types';
import { type EntityTagCondition, MAX_TAGS, conditionMatches, parseEntityTags } from './conditional';
import { EMPTY_JSON, notFound, opaque, sendBody, sessionId } from './common';
import { settle } from './long-poll';

/**
 * What MSC3886 and MSC4108-2024 share: HTTP validators carry the concurrency. Every answer about an
 * existing session carries ETag, Expires and Last-Modified, 304 and 412 included.
 */
export function setValidators(res: ServerResponse, meta: SessionMeta): void {
  res.setHeader('ETag', `"${etagOf(meta)}"`);
  res.setHeader('Expires', httpDateUp(meta.expiresAt));
  res.setHeader('Last-Modified', httpDate(meta.modifiedAt));
}

/** Parses a conditional header; null when absent, 400 when it is not entity-tag syntax. */
export function conditionHeader(ctx: Context, name: 'If-Match' | 'If-None-Match'): EntityTagCondition | null {
  const raw = ctx.get(name);
  if (raw === '') return null;
  const cond = parseEntityTags(raw);
  if (cond === null) {
    throw new MatrixError(
      400,
      'M_INVALID_PARAM',
      `${name} must be * or quoted entity tags ("..."), at most ${MAX_TAGS} of them`,
    );
  }
  return cond;
}

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

function sendSession(ctx: Context, session: Session, fixedType: string | undefined): void {
  setValidators(ctx.res, session);
  sendBody(ctx, 200, fixedType ?? session.contentType, session.data);
}

/**
 * GET of an ETag-family session: 404, the stored bytes, or 304 when `If-None-Match` names the
 * current ETag. With `Prefer: wait=N` (RFC 7240) a request that would be 304 is held instead until
 * the payload changes (200) or the wait ends (304), and says so with `Preference-Applied`. Without
 * that header nothing differs from a plain GET: one read, one answer.
 * The answer's Content-Type is `fixedType` when the family has one, else the stored one.
 */
export function etagReadHandler(sessions: SessionStore, longPoll: LongPoll, family: Family, fixedType?: string) {
  return async (ctx: Context): Promise<void> => {
    const id = sessionId(ctx);
    const cond = conditionHeader(ctx, 'If-None-Match');
    const session = await sessions.get(id, family);
    if (session === null) throw notFound();
    if (cond === null || !conditionMatches(cond, etagOf(session))) return sendSession(ctx, session, fixedType);
    const waitMs = longPoll.clampWaitMs((preferredWaitSeconds(ctx.get('Prefer')) ?? 0) * 1000);
    if (waitMs === 0) return sendNotModified(ctx, session);
    const result = await longPoll.wait({
      id,
      family,
      address: clientOf(ctx),
      current: session,
      waitMs,
      changed: (s) => !conditionMatches(cond, etagOf(s)),
      res: ctx.res,
    });
    const latest = settle(ctx, result, `wait=${waitMs / 1000}`);
    if (latest === undefined) return;
    if (result.cause === 'change') return sendSession(ctx, latest, fixedType);
    return sendNotModified(ctx, latest);
  };
}

/** How a family reads a PUT: the type to store and the condition, each checked in the family's order. */
export interface EtagWriteRules {
  family: Family;
  /** Validates the headers (throwing the family's 400s) and says what to store under which condition. */
  prepare(ctx: Context): { contentType: string; condition: WriteCondition };
  /** The family's 412. */
  conflict(): MatrixError;
}

/**
 * What a PUT checks before it reads its body, in this order: the id (404 outside the grammar), then
 * the family's headers. A replica forwarding the PUT to another region checks the same first, so an
 * invalid write with a body over the limit is refused alike there and at home (not 413 in one).
 */
export function etagWriteHead(
  ctx: Context,
  rawId: string | undefined,
  rules: EtagWriteRules,
): { id: string; contentType: string; condition: WriteCondition } {
  const id = opaque(rawId, notFound);
  return { id, ...rules.prepare(ctx) };
}

/**
 * PUT of an ETag-family session: a compare-and-set on If-Match, 202 with the new validators, or 412
 * with the current ones. The verbatim re-send of a write that already landed (its answer lost) also
 * answers 202 with the current validators, and writes nothing (the store decides: `unchanged`).
 */
export function etagWriteHandler(sessions: SessionStore, maxBytes: number, rules: EtagWriteRules) {
  return async (ctx: Context): Promise<void> => {
    const { id, contentType, condition } = etagWriteHead(ctx, ctx.params.id as string | undefined, rules);
    const data = await readBody(ctx, maxBytes);
    const result = await sessions.update(id, { family: rules.family, condition, contentType, data });
    if (result.status === 'not_found') throw notFound();
    setValidators(ctx.res, result.session);
    if (result.status !== 'updated' && result.status !== 'unchanged') throw rules.conflict();
    sendBody(ctx, 202, 'application/json', EMPTY_JSON);
  };
}

/** The ETag family's DELETE answer. */
export const noContent = (ctx: Context): void => {
  ctx.status = 204;
};
