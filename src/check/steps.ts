import { FIX } from './advice';
import type { CheckContext, FamilyId } from './context';
import { explain, reason } from './explain';
import type { Answer, Ask } from './http';

/**
 * A 429 (M_LIMIT_EXCEEDED from the server, or a proxy's own limit): the check stops there, since
 * every request after it would be refused too and say nothing about the deployment.
 */
export class RateLimited extends Error {
  constructor(
    readonly answer: Answer,
    readonly asked: string,
  ) {
    super(`rate limited: ${asked}`);
  }
}

/** Throws RateLimited for a 429, else gives the answer back. */
export function notLimited(answer: Answer, asked: string): Answer {
  if (answer.status === 429) throw new RateLimited(answer, asked);
  return answer;
}

/** A request of the check's own (not kept for the header checks); a 429 stops the check. */
export async function request(ctx: CheckContext, req: Ask): Promise<Answer> {
  return notLimited(await ctx.http.request(req), `${req.method ?? 'GET'} ${req.url}`);
}

/** Asks, and keeps the answer for the cross-cutting header checks. */
export async function ask(
  ctx: CheckContext,
  family: FamilyId,
  label: string,
  request: Ask,
  validators: boolean,
): Promise<Answer> {
  const answer = await ctx.http.request(request);
  ctx.seen.push({ family, label: `${label} (${answer.status})`, answer, validators });
  return notLimited(answer, `${request.method ?? 'GET'} ${request.url}`);
}

/**
 * Runs one step; a request that gets no answer at all (refused, reset, timed out) becomes a failed
 * finding instead of an exception, and the step's result is then undefined.
 */
export async function attempt<T>(
  ctx: CheckContext,
  id: string,
  title: string,
  step: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof RateLimited) throw err;
    ctx.report.fail(id, title, `no answer: ${reason(err)}`, FIX.proxyError);
    return undefined;
  }
}

/**
 * A failed finding for an answer that was not the expected one, with its likely cause. `endpoint`:
 * the URL asked, when it was an endpoint (a create, discovery) rather than a session the check made.
 */
export function unexpected(
  ctx: CheckContext,
  id: string,
  title: string,
  a: Answer,
  expected: string,
  endpoint?: string,
): void {
  const { detail, fix } = explain(a, ctx.base, endpoint);
  ctx.report.fail(id, title, `expected ${expected}; ${detail}`, fix);
}
