import type { Context } from 'koa';
import { preferredWaitSeconds, type LongPoll, type WaitResult } from '../longpoll';
import { etagOf, type Family, type Session } from '../store/types';
import { conditionMatches } from './conditional';
import { conditionHeader, notFound, sendBody, sendNotModified, sessionId, setValidators } from './etag-family';

/**
 * GET of an ETag-family session: 404, the stored bytes, or 304 when `If-None-Match` names the
 * current ETag. With `Prefer: wait=N` (RFC 7240) a request that would be 304 is held instead until
 * the payload changes (200) or the wait ends (304), and says so with `Preference-Applied`. Without
 * that header nothing differs from a plain GET: one read, one answer.
 * The answer's Content-Type is `fixedType` when the family has one, else the stored one.
 */
export function etagReadHandler(store: LongPoll['store'], longPoll: LongPoll, family: Family, fixedType?: string) {
  return async (ctx: Context): Promise<void> => {
    const id = sessionId(ctx);
    const cond = conditionHeader(ctx, 'If-None-Match');
    const session = await store.get(id, family);
    if (session === null) throw notFound();
    if (cond === null || !conditionMatches(cond, etagOf(session))) return sendSession(ctx, session, fixedType);
    const waitMs = longPoll.clampWaitMs((preferredWaitSeconds(ctx.get('Prefer')) ?? 0) * 1000);
    if (waitMs === 0) return sendNotModified(ctx, session, fixedType ?? session.contentType);
    const result = await longPoll.wait({
      id,
      family,
      address: ctx.ip,
      current: session,
      waitMs,
      changed: (s) => !conditionMatches(cond, etagOf(s)),
      res: ctx.res,
    });
    const latest = settle(ctx, result, waitMs);
    if (latest === undefined) return;
    if (result.cause === 'change') return sendSession(ctx, latest, fixedType);
    return sendNotModified(ctx, latest, fixedType ?? latest.contentType);
  };
}

function sendSession(ctx: Context, session: Session, fixedType: string | undefined): void {
  setValidators(ctx.res, session);
  sendBody(ctx, 200, fixedType ?? session.contentType, session.data);
}

/**
 * What every family does with a wait's outcome: the session to answer with (the caller formats it),
 * or undefined when the answer is already settled (client gone). Throws the 404 or the store error.
 */
export function settle(ctx: Context, result: WaitResult, waitMs: number): Session | undefined {
  switch (result.cause) {
    case 'refused':
      // Not held: answered as a plain GET, without Preference-Applied.
      return result.session;
    case 'aborted':
      ctx.respond = false;
      return undefined;
    case 'gone':
      throw notFound();
    case 'error':
      throw result.error;
    default:
      // Rolling deploys: a client ended by shutdown reconnects, and must land on another replica.
      if (result.cause === 'shutdown') ctx.res.setHeader('Connection', 'close');
      ctx.res.setHeader('Preference-Applied', `wait=${Math.ceil(waitMs / 1000)}`);
      return result.session;
  }
}
