import { FIX } from './advice';
import type { CheckContext } from './context';
import { reason } from './explain';
import { RateLimited, request } from './steps';

/** Spellings a case-insensitive router or a lax proxy rule may still serve. */
const SPELLINGS = ['/metrics', '/metrics/', '/METRICS', '/Metrics'];

/**
 * /metrics at the public URL tells anyone the traffic, error rates and process internals: it
 * belongs on a port of its own, and no spelling of it may answer here.
 */
export const PUBLIC_METRICS_STEP = { id: 'metrics.public', title: '/metrics is not reachable at the public URL' };

export async function checkPublicMetrics(ctx: CheckContext): Promise<void> {
  const { id, title } = PUBLIC_METRICS_STEP;
  const exposed: string[] = [];
  const unanswered: string[] = [];
  for (const path of SPELLINGS) {
    try {
      const a = await request(ctx, { url: ctx.base + path });
      const text = a.body.toString('utf8');
      if (a.status === 200 && (text.includes('# HELP') || text.includes('rendezvous_'))) exposed.push(path);
    } catch (err) {
      if (err instanceof RateLimited) throw err;
      // A connection closed without an answer (nginx `return 444;`, a common way to block a path)
      // shows nothing to anyone: no metrics are exposed there.
      unanswered.push(`${path} (${reason(err)})`);
    }
  }
  if (exposed.length > 0 && ctx.metricsHere) {
    ctx.report.warn(
      id,
      title,
      `${exposed.join(', ')} answered with Prometheus metrics, as --metrics-here says this URL does: make sure the URL clients use does not`,
      FIX.metrics,
    );
  } else if (exposed.length > 0) {
    ctx.report.fail(
      id,
      title,
      `${exposed.join(', ')} answered with Prometheus metrics: anyone can read the traffic, error rates and process details`,
      FIX.metrics,
    );
  } else {
    const closed = unanswered.length > 0 ? `; no answer at all for ${unanswered.join(', ')}` : '';
    ctx.report.pass(id, title, `${SPELLINGS.join(', ')}: none answers with metrics${closed}`);
  }
}
