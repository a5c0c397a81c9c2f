/**
 * The long-poll extension as the protocol modules use it: a GET that would answer "nothing new"
 * may ask to be held until there is news (see LongPoll). Plain GETs never notice any of it.
 */
import type { Context } from 'koa';
import { MatrixError } from '../http/errors';
import { CAUSE_LABEL, type WaitResult, waitOfDigits } from '../longpoll';
import type { Session } from '../store/types';
import { badSequenceToken, notFound, opaque } from './common';

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
  opaque(token, badSequenceToken);
  if (!/^\d+$/.test(timeout)) {
    throw new MatrixError(400, 'M_INVALID_PARAM', "'timeout_ms' must be a non-negative integer of milliseconds");
  }
  return { token, timeoutMs: waitOfDigits(timeout) };
}

/** How a held wait ended, as the metrics label it (the names of `longpoll_wakeups_total{cause}`). */
export type LongPollOutcome = (typeof CAUSE_LABEL)[keyof typeof CAUSE_LABEL];

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
  if (result.cause !== 'refused') ctx.state.longPollOutcome = CAUSE_LABEL[result.cause];
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
