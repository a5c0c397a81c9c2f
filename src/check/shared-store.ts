import { FIX } from './advice';
import type { CheckContext } from './context';
import { createEtagSession, type EtagFamily } from './etag-family';
import { explain, reason } from './explain';
import type { Answer } from './http';
import { RateLimited, request } from './steps';

/**
 * Sessions written and read back, one per request in flight. What proves a shared store is how
 * many requests after a create meet a replica (each on a fresh connection may meet any): a replica
 * on another store answers 404 for a session it never saw, whichever replica created it. So a few
 * sessions, each written and read many times, prove as much as many sessions written once, and
 * spend a few of the create budget (RZ_CREATE_RATE) instead of a run's worth.
 */
export const SHARED_STORE_SESSIONS = 4;
/** Writes of each session, each read back: with the first read, 2 * ROUNDS + 1 requests that must find it. */
export const SHARED_STORE_ROUNDS = 8;
/** Requests that must find a session written moments before, over all the sessions. */
export const SHARED_STORE_PROBES = SHARED_STORE_SESSIONS * (2 * SHARED_STORE_ROUNDS + 1);

type Outcome =
  | { kind: 'ok' }
  | { kind: 'miss'; what: string }
  | { kind: 'cached'; what: string }
  | { kind: 'error'; answer?: Answer; err?: unknown };

/**
 * A few sessions, each created, read, then written and read again round after round, every request
 * over a new connection: behind a load balancer those requests spread over the replicas, and a
 * replica on another store (or on the in-memory store) answers 404 or an old payload. One replica
 * always passes.
 */
export const SHARED_STORE_STEP = {
  id: 'store.shared',
  title: `Replicas share one session store (${SHARED_STORE_PROBES} requests over fresh connections find what the one before wrote)`,
};

export async function checkSharedStore(ctx: CheckContext, fam: EtagFamily): Promise<void> {
  const { id, title } = SHARED_STORE_STEP;
  const settled = await Promise.allSettled(Array.from({ length: SHARED_STORE_SESSIONS }, () => oneSession(ctx, fam)));
  const limited = settled.find((s) => s.status === 'rejected');
  if (limited !== undefined) throw (limited as PromiseRejectedResult).reason;
  const outcomes = settled.map((s) => (s as PromiseFulfilledResult<Outcome>).value);
  const misses = outcomes.filter((o) => o.kind === 'miss');
  const cached = outcomes.filter((o) => o.kind === 'cached');
  const errors = outcomes.filter((o) => o.kind === 'error');
  if (cached.length > 0) {
    ctx.report.fail(
      id,
      title,
      `${cached.length} of ${SHARED_STORE_SESSIONS} sessions were read back as they were before a write (${cached[0]!.what}): a cache in front answers reads, so a device never sees what the other one wrote`,
      FIX.cache,
    );
  } else if (misses.length > 0) {
    ctx.report.fail(
      id,
      title,
      `${misses.length} of ${SHARED_STORE_SESSIONS} sessions were not found as written by a later request (${misses[0]!.what}): the replicas behind this URL do not share one session store, so clients fail on every request that meets another replica`,
      FIX.sharedStore,
    );
  } else if (errors.length > 0) {
    const first = errors[0]!;
    const { detail, fix } = first.answer
      ? explain(first.answer, ctx.base)
      : { detail: `no answer: ${reason(first.err)}`, fix: FIX.proxyError };
    ctx.report.fail(id, title, `${errors.length} sessions could not be checked: ${detail}`, fix);
  } else {
    ctx.report.pass(
      id,
      title,
      `${SHARED_STORE_SESSIONS} sessions, each read back as written ${SHARED_STORE_ROUNDS + 1} times, over ${SHARED_STORE_PROBES + 2 * SHARED_STORE_SESSIONS} connections`,
    );
  }
}

/** One session through its rounds; rejects only with RateLimited (the check stops there). */
async function oneSession(ctx: CheckContext, fam: EtagFamily): Promise<Outcome> {
  try {
    const created = await createEtagSession(ctx, fam, 'shared-0', true);
    if ('answer' in created) return { kind: 'error', answer: created.answer };
    const { url } = created.session;
    let { etag } = created.session;
    const text = { 'Content-Type': 'text/plain' };
    const read = await request(ctx, { url, fresh: true });
    if (read.status === 404) return { kind: 'miss', what: 'a read right after the create answered 404' };
    if (read.status !== 200) return { kind: 'error', answer: read };
    for (let round = 1; round <= SHARED_STORE_ROUNDS; round++) {
      const body = `shared-${round}`;
      const put = await request(ctx, {
        method: 'PUT',
        url,
        headers: { ...text, 'If-Match': etag },
        body,
        fresh: true,
      });
      if (put.status === 404) return { kind: 'miss', what: 'a write right after a create or read answered 404' };
      if (put.status === 412) {
        return { kind: 'miss', what: 'a write naming the ETag just handed out was refused as stale (412)' };
      }
      const next = put.headers.get('etag')?.[0];
      if (put.status !== 202 || next === undefined) return { kind: 'error', answer: put };
      etag = next;
      const again = await request(ctx, { url, fresh: true });
      if (again.status === 404) return { kind: 'miss', what: 'a read right after a write answered 404' };
      if (again.status === 200 && again.body.toString() !== body) {
        if (again.replayed === true) {
          return {
            kind: 'cached',
            what: 'a read right after a write was answered with an earlier X-Request-Id and the payload from before it',
          };
        }
        return { kind: 'miss', what: 'a read right after a write answered the payload from before it' };
      }
      if (again.status !== 200) return { kind: 'error', answer: again };
    }
    const del = await request(ctx, { method: 'DELETE', url, fresh: true });
    if (del.status === 204) ctx.cleanup.done(url);
    return { kind: 'ok' };
  } catch (err) {
    if (err instanceof RateLimited) throw err;
    return { kind: 'error', err };
  }
}
