import { FIX } from './advice';
import type { CheckContext } from './context';
import { createEtagSession, type EtagFamily } from './etag-family';
import { explain, reason } from './explain';
import { header } from './http';
import { RateLimited, ask } from './steps';

export const FULL_WAIT_STEP = {
  id: 'long-poll.full-wait',
  title: "A read held for the server's longest wait is not cut off in front",
};

/** Asked for: the server holds no read longer than RZ_LONGPOLL_MAX_WAIT_SECONDS, whatever this says. */
const ASKED_SECONDS = 3600;

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * With `--full-wait`: one read held for as long as the server holds any (nothing writes meanwhile),
 * which must end with the server's 304. The long-poll steps are woken within a second, so a proxy
 * timeout shorter than the server's wait (nginx `proxy_read_timeout 10s;`) only shows here: clients
 * waiting longer than it get a 504 instead of "nothing new".
 */
export async function checkFullWait(ctx: CheckContext, fam: EtagFamily, enabled: boolean): Promise<void> {
  const { id, title } = FULL_WAIT_STEP;
  if (!enabled) {
    ctx.report.skip(
      id,
      title,
      "not checked: it takes the server's longest wait (RZ_LONGPOLL_MAX_WAIT_SECONDS, 30 s by default); run with --full-wait to find a proxy read timeout shorter than it",
    );
    return;
  }
  try {
    const created = await createEtagSession(ctx, fam, 'full-wait', true);
    if ('answer' in created) {
      const { detail, fix } = explain(created.answer, ctx.base);
      ctx.report.fail(id, title, `the session to hold could not be created: ${detail}`, fix);
      return;
    }
    const s = created.session;
    const held = await ask(
      ctx,
      fam.family,
      `${fam.name} GET held for the longest wait`,
      {
        url: s.url,
        headers: { 'If-None-Match': s.etag, Prefer: `wait=${ASKED_SECONDS}` },
        timeoutMs: (ASKED_SECONDS + 30) * 1000,
      },
      true,
    );
    const took = held.answeredAt - held.sentAt;
    const applied = /wait=(\d+(?:\.\d+)?)/.exec(header(held, 'preference-applied') ?? '')?.[1];
    if (held.status === 304 && applied !== undefined) {
      ctx.report.pass(id, title, `held ${seconds(took)}, the server's longest wait (${applied} s), then 304`);
    } else if (held.status === 304) {
      ctx.report.warn(
        id,
        title,
        `answered 304 after ${seconds(took)} without Preference-Applied: the read was not held (long-poll is off, or the wait did not reach the server), so nothing was learnt about timeouts in front`,
        FIX.longPollNotHeld,
      );
    } else if (held.status === 504 || held.status === 502 || held.status === 408) {
      ctx.report.fail(
        id,
        title,
        `a proxy ended the held read with ${held.status} after ${seconds(took)}, before the server's wait ended: clients waiting that long get an error instead of "nothing new"`,
        FIX.longPollTimeout,
      );
    } else {
      const { detail, fix } = explain(held, ctx.base);
      ctx.report.fail(id, title, `the held read ended after ${seconds(took)}: ${detail}`, fix);
    }
  } catch (err) {
    if (err instanceof RateLimited) throw err;
    ctx.report.fail(id, title, `the held read got no answer: ${reason(err)}`, FIX.longPollTimeout);
  }
}
