import { FIX } from './advice';
import { Cleanup, type CheckContext } from './context';
import { checkEtagFamily, etagSteps, type EtagFamily } from './etag-family';
import { explain, reason } from './explain';
import { EXPIRY_STEP, checkExpiry } from './expiry';
import { FULL_WAIT_STEP, checkFullWait } from './full-wait';
import { HEADER_STEPS, checkHeaders } from './headers';
import { HttpClient, summarise } from './http';
import { MSC4388_STEPS, checkMsc4388 } from './msc4388';
import { PATHS } from './paths';
import { PREFLIGHT_STEP, checkPreflight } from './preflight';
import { PUBLIC_METRICS_STEP, checkPublicMetrics } from './public-metrics';
import { checkPublicUrl } from './public-url';
import { Report } from './report';
import { reportRateLimited } from './rate-limit';
import { SHARED_STORE_STEP, checkSharedStore } from './shared-store';
import { RateLimited, request } from './steps';

export { Report, type Finding, type Status } from './report';

const MSC4108: EtagFamily = {
  family: 'msc4108',
  name: 'MSC4108',
  createPath: PATHS.msc4108,
  sessionPrefix: PATHS.msc4108,
};
/** At the root first (standalone servers), then under the prefix a homeserver routes. */
const MSC3886: EtagFamily[] = [
  { family: 'msc3886', name: 'MSC3886 (at /)', createPath: PATHS.msc3886Root, sessionPrefix: '' },
  {
    family: 'msc3886',
    name: 'MSC3886',
    createPath: PATHS.msc3886Prefixed,
    sessionPrefix: PATHS.msc3886Prefixed,
  },
];

export interface CheckResult {
  url: string;
  report: Report;
  durationMs: number;
}

/**
 * Checks a live deployment at `base` (no trailing slash) through everything in front of it, the
 * way clients meet it. Creates only short-lived sessions, and deletes every one of them.
 */
export async function runCheck(
  base: string,
  options: { metricsHere?: boolean; fullWait?: boolean } = {},
): Promise<CheckResult> {
  const started = Date.now();
  const report = new Report();
  const http = new HttpClient();
  const ctx: CheckContext = {
    base,
    http,
    report,
    seen: [],
    cleanup: new Cleanup(),
    rttMs: 0,
    weakEtagAccepted: new Map(),
    metricsHere: options.metricsHere ?? false,
    fullWait: options.fullWait ?? false,
  };
  try {
    await checkAll(ctx);
  } catch (err) {
    if (!(err instanceof RateLimited)) throw err;
    reportRateLimited(ctx, err);
    // What was seen before the limit is evidence all the same.
    checkHeaders(ctx);
    skipUnreached(ctx, 'not checked: the check was rate limited before it got here (see rate-limit)');
  } finally {
    const { left, last } = await ctx.cleanup.run(http);
    if (left > 0) {
      // Why, from the last DELETE that failed: a replica on another store answers 404 M_NOT_FOUND
      // (explain says so), a proxy its error page, a dead route nothing.
      const why =
        last === undefined
          ? { detail: 'no answer', fix: FIX.proxyError }
          : 'answer' in last
            ? explain(last.answer, base)
            : { detail: `no answer: ${reason(last.err)}`, fix: FIX.proxyError };
      report.warn(
        'cleanup',
        'Sessions the check created are deleted',
        `${left} could not be deleted (the last DELETE: ${why.detail}); they expire by themselves (RZ_TTL_SECONDS)`,
        why.fix,
      );
    }
    http.close();
  }
  return { url: base, report, durationMs: Date.now() - started };
}

const REACH_STEP = { id: 'reach', title: 'The URL answers HTTP' };

/** Every step of a full run, for the steps a run could not get to: each is then reported as skipped. */
const STEPS: { id: string; title: string }[] = [
  REACH_STEP,
  ...[MSC4108, MSC3886[1]!].flatMap((fam) => etagSteps(fam)),
  EXPIRY_STEP,
  ...MSC4388_STEPS,
  PREFLIGHT_STEP,
  SHARED_STORE_STEP,
  PUBLIC_METRICS_STEP,
  FULL_WAIT_STEP,
  ...HEADER_STEPS,
];

/** Skips each step of a full run that has no finding, unless its whole family was skipped. */
function skipUnreached(ctx: CheckContext, why: string): void {
  const family = (id: string) => id.split('.')[0]!;
  ctx.report.skipMissing(
    STEPS.filter((s) => !ctx.report.findings.some((f) => f.status === 'skip' && f.id === family(s.id))),
    why,
  );
}

async function checkAll(ctx: CheckContext): Promise<void> {
  const { id, title } = REACH_STEP;
  try {
    const first = await request(ctx, { url: `${ctx.base}/` });
    ctx.rttMs = first.answeredAt - first.sentAt;
    ctx.report.pass(id, title, `GET / answered ${summarise(first)} in ${ctx.rttMs} ms`);
  } catch (err) {
    if (err instanceof RateLimited) throw err;
    ctx.report.fail(id, title, `no answer: ${reason(err)}`, FIX.unreachable);
    return;
  }

  const msc4108 = await checkEtagFamily(ctx, [MSC4108]);
  if (msc4108) {
    checkPublicUrl(ctx, msc4108.fam, msc4108.session);
    checkExpiry(ctx, msc4108.session.created);
  }
  const msc3886 = await checkEtagFamily(ctx, MSC3886);
  if (msc3886) {
    checkPublicUrl(ctx, msc3886.fam, msc3886.session);
    if (!msc4108) checkExpiry(ctx, msc3886.session.created);
  }
  if (!msc4108 && !msc3886) {
    ctx.report.skipMissing([EXPIRY_STEP], 'not checked: no family created a session here to read its Expires');
  }
  const msc4388 = await checkMsc4388(ctx, msc4108 !== undefined || msc3886 !== undefined);

  const preflightPaths: { name: string; path: string }[] = [{ name: 'MSC4108', path: PATHS.msc4108 }];
  // Only where discovery found the server: a path that does not reach it has no preflight to check.
  if (msc4388 === 'open' || msc4388 === 'closed') preflightPaths.push({ name: 'MSC4388', path: PATHS.msc4388 });
  if (msc3886) preflightPaths.push({ name: msc3886.fam.name, path: msc3886.fam.sessionPrefix });
  await checkPreflight(ctx, preflightPaths);

  const shared = msc4108 ?? msc3886;
  if (shared) {
    await checkSharedStore(ctx, shared.fam);
  } else {
    ctx.report.skip(SHARED_STORE_STEP.id, SHARED_STORE_STEP.title, 'no family could create sessions here');
  }
  await checkPublicMetrics(ctx);
  if (shared) await checkFullWait(ctx, shared.fam, ctx.fullWait);
  checkHeaders(ctx);
}
