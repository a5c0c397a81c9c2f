import { FIX } from './advice';
import type { CheckContext } from './context';
import { createEtagSession, type EtagFamily } from './etag-family';
import { explain, reason } from './explain';
import type { Answer } from './http';

/** Sessions written and read back; each over fresh connections, so each request may meet any replica. */
export const SHARED_STORE_SESSIONS = 16;
const IN_FLIGHT = 4;

type Outcome = { kind: 'ok' } | { kind: 'miss'; what: string } | { kind: 'error'; answer?: Answer; err?: unknown };

/**
 * Many sessions, each created, read, written and read again over a new connection per request:
 * behind a load balancer those requests spread over the replicas, and a replica on another store
 * (or on the in-memory store) answers 404 or an old payload. One replica always passes.
 */
export async function checkSharedStore(ctx: CheckContext, fam: EtagFamily): Promise<void> {
  const title = `Replicas share one session store (${SHARED_STORE_SESSIONS} sessions, each request over a fresh connection)`;
  const outcomes: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < SHARED_STORE_SESSIONS) {
      next++;
      outcomes.push(await oneSession(ctx, fam));
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const misses = outcomes.filter((o) => o.kind === 'miss');
  const errors = outcomes.filter((o) => o.kind === 'error');
  if (misses.length > 0) {
    ctx.report.fail(
      'store.shared',
      title,
      `${misses.length} of ${SHARED_STORE_SESSIONS} sessions were not found as written by a later request (${misses[0]!.what}): the replicas behind this URL do not share one session store, so clients fail on every request that meets another replica`,
      FIX.sharedStore,
    );
  } else if (errors.length > 0) {
    const first = errors[0]!;
    const { detail, fix } = first.answer
      ? explain(first.answer, ctx.base)
      : { detail: `no answer: ${reason(first.err)}`, fix: FIX.proxyError };
    ctx.report.fail('store.shared', title, `${errors.length} sessions could not be checked: ${detail}`, fix);
  } else {
    ctx.report.pass(
      'store.shared',
      title,
      `all ${SHARED_STORE_SESSIONS} read back as written, over ${SHARED_STORE_SESSIONS * 5} connections`,
    );
  }
}

async function oneSession(ctx: CheckContext, fam: EtagFamily): Promise<Outcome> {
  try {
    const created = await createEtagSession(ctx, fam, 'shared-1', true);
    if ('answer' in created) return { kind: 'error', answer: created.answer };
    const { url, etag } = created.session;
    const text = { 'Content-Type': 'text/plain' };
    const read = await ctx.http.request({ url, fresh: true });
    if (read.status === 404) return { kind: 'miss', what: 'a read right after the create answered 404' };
    if (read.status !== 200) return { kind: 'error', answer: read };
    const put = await ctx.http.request({
      method: 'PUT',
      url,
      headers: { ...text, 'If-Match': etag },
      body: 'shared-2',
      fresh: true,
    });
    if (put.status === 404) return { kind: 'miss', what: 'a write right after the create answered 404' };
    if (put.status !== 202) return { kind: 'error', answer: put };
    const again = await ctx.http.request({ url, fresh: true });
    if (again.status === 404) return { kind: 'miss', what: 'a read right after a write answered 404' };
    if (again.status === 200 && again.body.toString() !== 'shared-2') {
      return { kind: 'miss', what: 'a read right after a write answered the payload from before it' };
    }
    if (again.status !== 200) return { kind: 'error', answer: again };
    const del = await ctx.http.request({ method: 'DELETE', url, fresh: true });
    if (del.status === 204) ctx.cleanup.done(url);
    return { kind: 'ok' };
  } catch (err) {
    return { kind: 'error', err };
  }
}
