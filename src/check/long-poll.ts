import { FIX } from './advice';
import type { CheckContext } from './context';
import { explain, reason } from './explain';
import type { Answer } from './http';
import { RateLimited } from './steps';

/** How long the check asks the server to hold a read, in seconds. */
export const HOLD_SECONDS = 5;
/** A write must wake the held read within this long, or a client notices the delay. */
export const WAKE_BUDGET_MS = 1000;

export interface WakeProbe {
  /** Starts the held read (the waiting device). */
  hold(): Promise<Answer>;
  /** Writes from a second connection (the other device). */
  write(): Promise<Answer>;
  /** Whether the held read's answer carries what the write stored. */
  woke(a: Answer): boolean;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Holds a read, writes from another connection once the read has had time to arrive, and reports
 * whether the read's answer came with the new state, and how long after the write was answered.
 * A proxy that buffers answers, or queues requests behind the held one, shows up as a late wake or
 * a read that ends with no news.
 */
export async function checkWake(ctx: CheckContext, id: string, family: string, probe: WakeProbe): Promise<void> {
  const title = `${family} long-poll: a write wakes a held read`;
  // Long enough for the read to reach the server before the write does, on any sane network.
  const leadMs = Math.min(2000, Math.max(300, 2 * ctx.rttMs));
  let earlyAnswer: Answer | undefined;
  let earlyError: unknown;
  const holding = probe.hold();
  const settled = holding.then(
    (a) => (earlyAnswer = a),
    (err: unknown) => (earlyError = err ?? new Error('failed')),
  );
  await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, leadMs))]);
  if (earlyError instanceof RateLimited) throw earlyError;
  if (earlyError !== undefined) {
    ctx.report.fail(id, title, `the held read failed: ${reason(earlyError)}`, FIX.longPoll);
    return;
  }
  if (earlyAnswer !== undefined) {
    const a = earlyAnswer;
    // An error is no "not held": a 404 here says the read reached a replica that does not know the
    // session, a 5xx or 429 that something failed or refused.
    if (a.status >= 400) {
      const { detail, fix } = explain(a, ctx.base);
      ctx.report.fail(id, title, `the held read was answered at once: ${detail}`, fix);
      return;
    }
    if (a.replayed === true) {
      ctx.report.fail(
        id,
        title,
        `the held read was answered at once (${a.status}) by a cache in front, with an earlier read's answer (it carries that read's X-Request-Id): devices read stale payloads and never wait for each other`,
        FIX.cache,
      );
      return;
    }
    ctx.report.warn(
      id,
      title,
      `the read was answered at once (${a.status}) instead of being held: this server does not offer long-poll (RZ_LONGPOLL_MAX_WAIT_SECONDS=0, or a waiter bound was reached), or the request's wait did not reach it (a proxy dropping the Prefer header or the query string, or a proxy cache, which sends reads on without If-None-Match and answers the 304 itself). Clients then poll once a second.`,
      FIX.longPollNotHeld,
    );
    return;
  }

  const [held, written] = await Promise.allSettled([holding, probe.write()]);
  for (const r of [written, held]) if (r.status === 'rejected' && r.reason instanceof RateLimited) throw r.reason;
  if (written.status === 'rejected') {
    ctx.report.fail(id, title, `the write from a second connection failed: ${reason(written.reason)}`, FIX.longPoll);
    return;
  }
  if (held.status === 'rejected') {
    ctx.report.fail(id, title, `the held read failed: ${reason(held.reason)}`, FIX.longPollTimeout);
    return;
  }
  const read = held.value;
  const write = written.value;
  if (write.status >= 300) {
    const { detail, fix } = explain(write, ctx.base);
    ctx.report.fail(id, title, `the write was refused: ${detail}`, fix);
    return;
  }
  if (read.status === 504 || read.status === 502) {
    ctx.report.fail(
      id,
      title,
      `a proxy ended the held read with ${read.status} after ${seconds(read.answeredAt - read.sentAt)}`,
      FIX.longPollTimeout,
    );
    return;
  }
  if (!probe.woke(read)) {
    const writeTook = write.answeredAt - write.sentAt;
    const queued = write.answeredAt >= read.answeredAt;
    ctx.report.fail(
      id,
      title,
      `the held read ended after ${seconds(read.answeredAt - read.sentAt)} without the write (${read.status}, no news)` +
        (queued
          ? `, and the write was only answered ${seconds(writeTook)} after it was sent, once the read had ended: something in front holds requests back while a long-poll is open (a buffering or serialising proxy, or a single upstream connection).`
          : `; the write was answered in ${seconds(writeTook)}, so the replicas did not pass on the wake-up (are they on one Redis?).`),
      queued ? FIX.longPoll : FIX.sharedStore,
    );
    return;
  }
  const wakeMs = Math.max(0, read.answeredAt - write.answeredAt);
  if (wakeMs > WAKE_BUDGET_MS) {
    ctx.report.fail(
      id,
      title,
      `the held read brought the write ${seconds(wakeMs)} after the write was answered (budget ${seconds(WAKE_BUDGET_MS)}): something in front buffers answers or holds requests, so long-polls reach clients late`,
      FIX.longPoll,
    );
    return;
  }
  ctx.report.pass(id, title, `the held read answered ${wakeMs} ms after the write from a second connection`);
}
