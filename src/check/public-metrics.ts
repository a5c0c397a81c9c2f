import { FIX } from './advice';
import type { CheckContext } from './context';
import { reason } from './explain';

/** Spellings a case-insensitive router or a lax proxy rule may still serve. */
const SPELLINGS = ['/metrics', '/metrics/', '/METRICS', '/Metrics'];

/**
 * /metrics at the public URL tells anyone the traffic, error rates and process internals: it
 * belongs on a port of its own, and no spelling of it may answer here.
 */
export async function checkPublicMetrics(ctx: CheckContext): Promise<void> {
  const title = '/metrics is not reachable at the public URL';
  const exposed: string[] = [];
  for (const path of SPELLINGS) {
    try {
      const a = await ctx.http.request({ url: ctx.base + path });
      const text = a.body.toString('utf8');
      if (a.status === 200 && (text.includes('# HELP') || text.includes('rendezvous_'))) exposed.push(path);
    } catch (err) {
      ctx.report.fail('metrics.public', title, `no answer for ${path}: ${reason(err)}`, FIX.proxyError);
      return;
    }
  }
  if (exposed.length > 0 && ctx.metricsHere) {
    ctx.report.warn(
      'metrics.public',
      title,
      `${exposed.join(', ')} answered with Prometheus metrics, as --metrics-here says this URL does: make sure the URL clients use does not`,
      FIX.metrics,
    );
  } else if (exposed.length > 0) {
    ctx.report.fail(
      'metrics.public',
      title,
      `${exposed.join(', ')} answered with Prometheus metrics: anyone can read the traffic, error rates and process details`,
      FIX.metrics,
    );
  } else {
    ctx.report.pass('metrics.public', title, `${SPELLINGS.join(', ')}: none answers with metrics`);
  }
}
