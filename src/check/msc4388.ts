import { FIX } from './advice';
import { type CheckContext, disown } from './context';
import { summarise, jsonOf, type Answer } from './http';
import { HOLD_SECONDS, checkWake } from './long-poll';
import { MSC4388_CONFLICT, PATHS } from './paths';
import { ask, attempt, unexpected } from './steps';

const JSON_TYPE = { 'Content-Type': 'application/json' };
const OPAQUE_ID = /^[A-Za-z0-9._~-]{1,255}$/;
/** The protocol clamps lifetimes to 120-300 s; a little slack for the time the answer took. */
const MIN_EXPIRES_MS = 110_000;
const MAX_EXPIRES_MS = 300_000;

/** The steps of an MSC4388 session, in order, for those a failure leaves undone. */
const SESSION_STEPS: { id: string; title: string }[] = [
  { id: 'msc4388.create', title: 'MSC4388 create' },
  { id: 'msc4388.read', title: 'MSC4388 read' },
  {
    id: 'msc4388.conditional-write',
    title: 'MSC4388 write: the current sequence_token writes, a stale one is refused',
  },
  { id: 'msc4388.long-poll', title: 'MSC4388 long-poll: a write wakes a held read' },
  { id: 'msc4388.delete', title: 'MSC4388 delete: the session is gone at once' },
];

/** Every MSC4388 step of a full run. */
export const MSC4388_STEPS: { id: string; title: string }[] = [
  { id: 'msc4388.discovery', title: 'MSC4388 discovery (unstable path)' },
  { id: 'msc4388.discovery-v1', title: 'MSC4388 discovery (/v1 path)' },
  ...SESSION_STEPS,
];

export type Discovery = 'open' | 'closed' | 'off' | 'unknown';

async function discover(ctx: CheckContext, path: string, stepId: string, title: string): Promise<Discovery> {
  const a = await attempt(ctx, stepId, title, () =>
    ask(ctx, 'msc4388', 'MSC4388 discovery', { url: ctx.base + path }, false),
  );
  if (a === undefined) return 'unknown';
  const json = jsonOf(a);
  if (a.status === 200 && typeof json?.create_available === 'boolean') {
    ctx.report.pass(stepId, title, `200 {"create_available": ${json.create_available}}`);
    return json.create_available ? 'open' : 'closed';
  }
  // Turned off here, or a homeserver that does not route this path to the server: either way no
  // evidence about the server's own headers.
  if (a.status === 404 && json?.errcode === 'M_UNRECOGNIZED') {
    disown(ctx, a);
    return 'off';
  }
  if (a.status === 404 && json === undefined) {
    disown(ctx, a);
    ctx.report.warn(
      stepId,
      title,
      `${summarise(a)}: this path does not reach the rendezvous server, so clients that speak MSC4388 fall back to MSC4108 here`,
      FIX.routing,
    );
    return 'unknown';
  }
  unexpected(ctx, stepId, title, a, '200 {"create_available": true|false}', ctx.base + path);
  return 'unknown';
}

/**
 * MSC4388: discovery on both paths, then a whole session on the unstable path clients call today.
 * Says what the unstable path's discovery found.
 */
export async function checkMsc4388(ctx: CheckContext, etagFamilyServed: boolean): Promise<Discovery> {
  const unstable = await discover(ctx, PATHS.msc4388, 'msc4388.discovery', 'MSC4388 discovery (unstable path)');
  if (unstable === 'off') {
    // A server's own 404 for a family turned off looks like that of any unknown path: only where
    // another family was served here does it say MSC4388 is off.
    ctx.report.skip(
      'msc4388',
      'MSC4388',
      etagFamilyServed
        ? 'turned off on this server (discovery answers 404 M_UNRECOGNIZED, RZ_MSC4388_ENABLED=false): its checks are skipped, and clients use MSC4108'
        : 'discovery answers 404 M_UNRECOGNIZED, and no other family was served at this URL either: it may not be where the server answers (a path in it?); its checks are skipped',
    );
    return unstable;
  }
  await discover(ctx, PATHS.msc4388Stable, 'msc4388.discovery-v1', 'MSC4388 discovery (/v1 path)');
  if (unstable === 'closed') {
    ctx.report.skip(
      'msc4388.create',
      'MSC4388 session',
      'creates need an access token here (RZ_CREATE_POLICY=authenticated), which the check does not have: the session checks are skipped',
    );
    return unstable;
  }
  if (unstable === 'open') await session(ctx);
  else {
    ctx.report.skipMissing(
      SESSION_STEPS,
      'not checked: discovery on the unstable path did not find the server (msc4388.discovery), so no session was made',
    );
  }
  return unstable;
}

async function session(ctx: CheckContext): Promise<void> {
  const base = ctx.base + PATHS.msc4388;
  const send = (label: string, url: string, method: string, body?: unknown, fresh = false): Promise<Answer> =>
    ask(
      ctx,
      'msc4388',
      `MSC4388 ${label}`,
      body === undefined
        ? { method, url, fresh }
        : { method, url, headers: JSON_TYPE, body: JSON.stringify(body), fresh },
      false,
    );

  const title = 'MSC4388 create';
  const skipRest = (why: string) => ctx.report.skipMissing(SESSION_STEPS, `not checked: ${why}`);
  const noSession = () => skipRest('the create gave no session to check (msc4388.create)');
  const created = await attempt(ctx, 'msc4388.create', title, () => send('create', base, 'POST', { data: 'check-1' }));
  if (created === undefined) return noSession();
  const c = jsonOf(created);
  if (created.status !== 200 || typeof c?.id !== 'string' || !OPAQUE_ID.test(c.id)) {
    unexpected(ctx, 'msc4388.create', title, created, '200 {"id", "sequence_token", "expires_in_ms"}', base);
    return noSession();
  }
  const url = `${base}/${c.id}`;
  // Created, whatever else is wrong with the answer: it is deleted at the end.
  ctx.cleanup.track(url, [200]);
  const sequenceToken = typeof c.sequence_token === 'string' && c.sequence_token !== '' ? c.sequence_token : undefined;
  const expiresInMs =
    typeof c.expires_in_ms === 'number' && Number.isFinite(c.expires_in_ms) ? c.expires_in_ms : undefined;
  if (sequenceToken === undefined || expiresInMs === undefined) {
    const wrong = [
      ...(sequenceToken === undefined ? ['sequence_token'] : []),
      ...(expiresInMs === undefined ? ['expires_in_ms'] : []),
    ].map((f) => (f in c ? `a malformed ${f} (${JSON.stringify(c[f]).slice(0, 40)})` : `no ${f}`));
    ctx.report.fail(
      'msc4388.create',
      title,
      `200 with a session (id ${c.id}) but ${wrong.join(' and ')}: clients write with the sequence_token and time the login by expires_in_ms, and this server sends both with every create, so something else answered (another server, an older release) or a proxy rewrote the body; the session is deleted`,
      FIX.routing,
    );
    return noSession();
  }
  if (expiresInMs < MIN_EXPIRES_MS || expiresInMs > MAX_EXPIRES_MS) {
    ctx.report.warn(
      'msc4388.create',
      title,
      `expires_in_ms is ${expiresInMs}; the protocol keeps lifetimes within 120-300 s`,
      FIX.routing,
    );
  } else {
    ctx.report.pass('msc4388.create', title, `200, expires in ${Math.round(expiresInMs / 1000)} s`);
  }

  const unread = () => skipRest('the session could not be read back (msc4388.read); it is deleted at the end');
  const read = await attempt(ctx, 'msc4388.read', 'MSC4388 read', () => send('GET', url, 'GET'));
  if (read === undefined) return unread();
  const r = jsonOf(read);
  if (read.status !== 200 || r?.data !== 'check-1' || r.sequence_token !== sequenceToken) {
    unexpected(ctx, 'msc4388.read', 'MSC4388 read', read, '200 with the data and token just written');
    return unread();
  }
  ctx.report.pass('msc4388.read', 'MSC4388 read', '200 with the data and token just written');

  const token = await sequencedWrite(ctx, url, sequenceToken, send);
  if (token === undefined) {
    ctx.report.skipMissing(
      [SESSION_STEPS[3]!],
      'not checked: it writes with the token of the sequenced write, which failed (msc4388.conditional-write)',
    );
  } else {
    await checkWake(ctx, 'msc4388.long-poll', 'MSC4388', {
      hold: () =>
        ask(
          ctx,
          'msc4388',
          'MSC4388 held GET',
          {
            url: `${url}?sequence_token=${encodeURIComponent(token)}&timeout_ms=${HOLD_SECONDS * 1000}`,
            timeoutMs: (HOLD_SECONDS + 10) * 1000,
          },
          false,
        ),
      write: () => send('PUT', url, 'PUT', { sequence_token: token, data: 'check-3' }, true),
      woke: (a) => a.status === 200 && jsonOf(a)?.data === 'check-3',
    });
  }

  const deleteTitle = 'MSC4388 delete: the session is gone at once';
  const del = await attempt(ctx, 'msc4388.delete', deleteTitle, () => send('DELETE', url, 'DELETE'));
  if (del === undefined) return;
  if (del.status !== 200) {
    unexpected(ctx, 'msc4388.delete', deleteTitle, del, '200 {}');
    return;
  }
  ctx.cleanup.done(url);
  const gone = await attempt(ctx, 'msc4388.delete', deleteTitle, () => send('GET after DELETE', url, 'GET'));
  if (gone === undefined) return;
  if (gone.status !== 404 || jsonOf(gone)?.errcode !== 'M_NOT_FOUND') {
    ctx.report.fail(
      'msc4388.delete',
      deleteTitle,
      `a read after the delete answered ${summarise(gone)}${
        gone.replayed === true ? ', replayed by a cache in front (it carries the X-Request-Id of an earlier read)' : ''
      }; clients only report "expired" on 404 M_NOT_FOUND`,
      gone.replayed === true ? FIX.cache : gone.status === 200 ? FIX.sharedStore : FIX.routing,
    );
    return;
  }
  ctx.report.pass('msc4388.delete', deleteTitle, '200 {}, then 404 M_NOT_FOUND');
}

/** The current token writes and gets a new one; the old token is refused with 409. */
async function sequencedWrite(
  ctx: CheckContext,
  url: string,
  token: string,
  send: (label: string, url: string, method: string, body?: unknown) => Promise<Answer>,
): Promise<string | undefined> {
  const stepId = 'msc4388.conditional-write';
  const title = 'MSC4388 write: the current sequence_token writes, a stale one is refused';
  const put = await attempt(ctx, stepId, title, () =>
    send('PUT', url, 'PUT', { sequence_token: token, data: 'check-2' }),
  );
  if (put === undefined) return undefined;
  const next = jsonOf(put)?.sequence_token;
  if (put.status !== 200 || typeof next !== 'string' || next === token) {
    unexpected(ctx, stepId, title, put, '200 with a new sequence_token');
    return undefined;
  }
  const stale = await attempt(ctx, stepId, title, () =>
    send('stale PUT', url, 'PUT', { sequence_token: token, data: 'check-stale' }),
  );
  if (stale === undefined) return undefined;
  if (stale.status !== 409 || jsonOf(stale)?.errcode !== MSC4388_CONFLICT) {
    unexpected(ctx, stepId, title, stale, `409 ${MSC4388_CONFLICT}`);
    return undefined;
  }
  ctx.report.pass(stepId, title, `200 with a new token, then 409 ${MSC4388_CONFLICT}`);
  return next;
}
