/**
 * The long-poll extension as the protocol modules use it: a GET that would answer "nothing new"
 * may ask to be held until there is news (see LongPoll). Plain GETs never notice any of it.
 */
import type { Context } from 'koa';
import { clientOf } from '../limits';
import { MatrixError } from '../http/errors';
import { OPAQUE_ID } from '../ids';
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

function sendSession(ctx: Context, session: Session, fixedType: string | undefined): void {
  setValidators(ctx.res, session);
  sendBody(ctx, 200, fixedType ?? session.contentType, session.data);
}

/** Longest `timeout_ms` read (digits); anything longer is no sensible number of milliseconds. */
const MAX_TIMEOUT_DIGITS = 9;

/**
 * MSC4388 long-poll parameters: `?sequence_token=T&timeout_ms=M` asks to hold the GET while the
 * token is still T, for at most M ms. Both or neither: one alone is a plain GET. Malformed: 400.
 */
export function sequenceWait(ctx: Context): { token: string; timeoutMs: number } | undefined {
  // Plain GETs carry no query: they never pay for parsing one.
  if (ctx.querystring === '') return undefined;
  // From the request target alone: `ctx.URL` also needs the Host header, and is empty when that is bad.
  const query = new URLSearchParams(ctx.querystring);
  const token = query.get('sequence_token');
  const timeout = query.get('timeout_ms');
  if (token === null || timeout === null) return undefined;
  if (!OPAQUE_ID.test(token)) {
    throw new MatrixError(400, 'M_INVALID_PARAM', "'sequence_token' is not an opaque identifier");
  }
  if (timeout.length > MAX_TIMEOUT_DIGITS || !/^\d+$/.test(timeout)) {
    throw new MatrixError(400, 'M_INVALID_PARAM', "'timeout_ms' must be a non-negative integer of milliseconds");
  }
  return { token, timeoutMs: Number(timeout) };
}

/** How a held wait ended, as the metrics label it (the names of `longpoll_wakeups_total{cause}`). */
export type LongPollOutcome = 'change' | 'timeout' | 'shutdown' | 'deleted' | 'disconnect' | 'error';

const OUTCOME: Record<Exclude<WaitResult['cause'], 'refused'>, LongPollOutcome> = {
  change: 'change',
  timeout: 'timeout',
  shutdown: 'shutdown',
  gone: 'deleted',
  aborted: 'disconnect',
  error: 'error',
};

declare module 'koa' {
  interface DefaultState {
    /**
     * Set only on a request the long-poll waiter actually held: the request metrics time it as a
     * wait, not as a request, and tell a client that left from an answer.
     */
    longPollOutcome?: LongPollOutcome;
  }
}

/**
 * What every family does with a wait's outcome: the session to answer with (the caller formats it),
 * or undefined when the answer is already settled (client gone). Throws the 404 or the store error.
 * A held request says so with `preferenceApplied` (RFC 7240), when the client sent a preference.
 */
export function settle(ctx: Context, result: WaitResult, preferenceApplied?: string): Session | undefined {
  if (result.cause !== 'refused') ctx.state.longPollOutcome = OUTCOME[result.cause];
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
      if (preferenceApplied !== undefined) ctx.res.setHeader('Preference-Applied', preferenceApplied);
      return result.session;
  }
}
