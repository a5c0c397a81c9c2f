import { LIMIT_MESSAGES } from '../limits/errors';
import { FIX } from './advice';
import type { CheckContext } from './context';
import { header, jsonOf } from './http';
import type { RateLimited } from './steps';

/** Which limit a 429's message names, and the setting behind it. */
const LIMITS: { message: string; limit: string; fix?: string }[] = [
  {
    message: LIMIT_MESSAGES.createRate,
    limit:
      'the create rate (RZ_CREATE_RATE, session creates per minute per client address): runs of the check from one address within a minute add up, and so do other clients behind the same address',
  },
  {
    message: LIMIT_MESSAGES.requestRate,
    limit: 'the request rate (RZ_REQUEST_RATE per second per client address, over RZ_REQUEST_RATE_WINDOW_SECONDS)',
    fix: FIX.requestRateLimited,
  },
  {
    message: LIMIT_MESSAGES.addressCap,
    limit:
      "the cap on live sessions per client address (RZ_MAX_SESSIONS_PER_ADDRESS): sessions from this address, the check's own from an interrupted run among them, must end or expire first",
  },
  {
    message: LIMIT_MESSAGES.sessionCap,
    limit: 'the cap on live sessions of the whole server (RZ_MAX_SESSIONS), which frees as sessions end or expire',
  },
];

/** Seconds to wait, from Retry-After (seconds or a date), else the body's retry_after_ms. */
function waitSeconds(a: RateLimited['answer']): number | undefined {
  const retry = header(a, 'retry-after')?.trim();
  if (retry !== undefined && /^\d+$/.test(retry)) return Number(retry);
  if (retry !== undefined && !Number.isNaN(Date.parse(retry))) {
    return Math.max(0, Math.ceil((Date.parse(retry) - a.answeredAt) / 1000));
  }
  const ms = jsonOf(a)?.retry_after_ms;
  return typeof ms === 'number' && Number.isFinite(ms) ? Math.ceil(ms / 1000) : undefined;
}

/**
 * One finding for a check the server (or something in front) rate limited: which limit, when to
 * run again. The steps it did not get to are reported as skipped, not as failures.
 */
export function reportRateLimited(ctx: CheckContext, limited: RateLimited): void {
  const a = limited.answer;
  const json = jsonOf(a);
  const message = typeof json?.error === 'string' ? json.error : undefined;
  const known = LIMITS.find((l) => message === l.message);
  const by =
    json?.errcode !== 'M_LIMIT_EXCEEDED'
      ? 'a limit of something in front of the server (the 429 is no Matrix error: a proxy, CDN or WAF)'
      : known !== undefined
        ? known.limit
        : `a limit of the server${message !== undefined ? ` ("${message.slice(0, 200)}")` : ''}`;
  const wait = waitSeconds(a);
  const when =
    wait === undefined
      ? 'it said not when to come back (no Retry-After): run the check again in a minute'
      : `run the check again in ${wait} s (at ${new Date(a.answeredAt + wait * 1000).toISOString().slice(11, 19)} UTC, Retry-After: ${header(a, 'retry-after') ?? 'none'})`;
  ctx.report.fail(
    'rate-limit',
    'The check was not rate limited',
    `RATE LIMITED: ${limited.asked} was refused with 429${json?.errcode === 'M_LIMIT_EXCEEDED' ? ' M_LIMIT_EXCEEDED' : ''} by ${by}. The check stopped there: the steps after it are skipped, not failed, and say nothing about the deployment; ${when}`,
    (json?.errcode === 'M_LIMIT_EXCEEDED' ? known?.fix : undefined) ?? FIX.rateLimited,
  );
}
