import { FIX } from './advice';
import type { CheckContext, FamilyId } from './context';
import { explain, reason } from './explain';
import type { Answer, Ask } from './http';

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
  return answer;
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
