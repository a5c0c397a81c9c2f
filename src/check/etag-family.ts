import { FIX } from './advice';
import { type CheckContext, disown } from './context';
import { type Answer, summarise, header, jsonOf } from './http';
import { HOLD_SECONDS, checkWake } from './long-poll';
import { ask, attempt, unexpected } from './steps';

/** MSC3886 or MSC4108 at one place: where sessions are created and where they then live. */
export interface EtagFamily {
  family: 'msc3886' | 'msc4108';
  /** For people: "MSC4108", "MSC3886 (at /)". */
  name: string;
  createPath: string;
  sessionPrefix: string;
}

export interface EtagSession {
  /** Where the check reaches the session: the URL checked plus the session's path. */
  url: string;
  /** The absolute URL the server handed out (Location, or MSC4108's `url`). */
  publicUrl: string | undefined;
  etag: string;
  created: Answer;
}

const OPAQUE_ID = /^[A-Za-z0-9._~-]{1,255}$/;
const TEXT = { 'Content-Type': 'text/plain' };

/** `sessionWithoutEtag`: the answer created a session (tracked for deletion) but came without an ETag. */
export type Created = { session: EtagSession } | { answer: Answer; sessionWithoutEtag?: true };

/** POSTs a session; the answer is returned as is when it is not a create of this family. */
export async function createEtagSession(
  ctx: CheckContext,
  fam: EtagFamily,
  body: string,
  fresh = false,
): Promise<Created> {
  const a = await ask(
    ctx,
    fam.family,
    `${fam.name} create`,
    { method: 'POST', url: ctx.base + fam.createPath, headers: TEXT, body, fresh },
    true,
  );
  const json = jsonOf(a);
  let id: string | undefined;
  let publicUrl: string | undefined;
  if (fam.family === 'msc4108' && a.status === 201 && typeof json?.url === 'string') {
    publicUrl = json.url;
    id = json.url.slice(json.url.lastIndexOf('/') + 1);
  } else if (fam.family === 'msc3886' && a.status === 200 && typeof json?.id === 'string') {
    id = json.id;
    publicUrl = header(a, 'location');
  }
  if (id === undefined || !OPAQUE_ID.test(id)) return { answer: a };
  // The check talks to the URL it was given: the handed-out URL may name a host only clients reach.
  const url = `${ctx.base}${fam.sessionPrefix}/${id}`;
  // Created, whatever else is wrong with the answer: it is deleted at the end.
  ctx.cleanup.track(url, [204]);
  const etag = header(a, 'etag');
  if (etag === undefined) return { answer: a, sessionWithoutEtag: true };
  return { session: { url, publicUrl, etag, created: a } };
}

/** The steps of one family's check, in order, for those a failure leaves undone. */
export function etagSteps(fam: EtagFamily): { id: string; title: string }[] {
  const f = fam.family;
  return [
    { id: `${f}.create`, title: `${fam.name} create` },
    { id: `${f}.public-url`, title: `${fam.name} session URLs point at the URL clients use` },
    { id: `${f}.read`, title: `${fam.name} read` },
    { id: `${f}.content-type`, title: `${fam.name} GET answers Content-Type exactly "text/plain"` },
    { id: `${f}.not-modified`, title: `${fam.name} GET with If-None-Match answers 304` },
    {
      id: `${f}.conditional-write`,
      title: `${fam.name} conditional write (If-Match): the current ETag writes, a stale one is refused`,
    },
    { id: `${f}.long-poll`, title: `${fam.name} long-poll: a write wakes a held read` },
    { id: `${f}.delete`, title: `${fam.name} delete: the session is gone at once` },
  ];
}

/**
 * Create, read, 304, conditional write (and a stale one refused), long-poll, delete: what a login
 * does, with every answer kept for the header checks. Returns the session's create answer.
 */
export async function checkEtagFamily(
  ctx: CheckContext,
  places: EtagFamily[],
): Promise<{ fam: EtagFamily; session: EtagSession } | undefined> {
  let fam = places[0]!;
  const id = (step: string) => `${fam.family}.${step}`;
  let created: Created | undefined;
  for (const [i, place] of places.entries()) {
    fam = place;
    created = await attempt(ctx, id('create'), `${fam.name} create`, () => createEtagSession(ctx, fam, 'check-1'));
    if (created === undefined) {
      ctx.report.skipMissing(etagSteps(fam), `not checked: ${fam.name} create got no answer (${id('create')})`);
      return undefined;
    }
    // A limit or an outage is this server's answer, whatever the path: reported, not taken for a
    // homeserver that routes elsewhere.
    if (
      'session' in created ||
      created.sessionWithoutEtag === true ||
      i === places.length - 1 ||
      [429, 503].includes(created.answer.status)
    ) {
      break;
    }
    disown(ctx, created.answer);
    ctx.report.skip(
      `${fam.family}.root`,
      `${fam.name}`,
      `POST answered ${summarise(created.answer)}, not a session: fine when this URL is a homeserver's, which routes only the /_matrix paths here (standalone clients configured with this URL as their rendezvous server POST to / and would fail); checked at the next path instead`,
    );
  }
  const { family, name } = fam;
  if (created === undefined) return undefined;
  if ('answer' in created) {
    const noSession = () =>
      ctx.report.skipMissing(etagSteps(fam), `not checked: ${name} create gave no session to check (${id('create')})`);
    const location = header(created.answer, 'location');
    if (family === 'msc4108' && created.answer.status === 307 && location !== undefined) {
      ctx.report.skip(
        'msc4108',
        name,
        `creates are delegated (307) to ${location} (RZ_MSC4108_DELEGATE_URL): run the check against that server`,
      );
      return undefined;
    }
    if (created.sessionWithoutEtag === true) {
      ctx.report.fail(
        id('create'),
        `${name} create`,
        `${created.answer.status} with a session but no ETag (the server sends one with every session answer, so something in front strips it): clients cannot write (If-Match) or poll (If-None-Match), and Element Web fails with "ETag missing"`,
        FIX.validators,
      );
      noSession();
      return undefined;
    }
    unexpected(
      ctx,
      id('create'),
      `${name} create`,
      created.answer,
      `${family === 'msc4108' ? 201 : 200} with the session's id and an ETag`,
      ctx.base + fam.createPath,
    );
    noSession();
    return undefined;
  }
  const s = created.session;
  ctx.report.pass(id('create'), `${name} create`, `${s.created.status}, ETag ${s.etag}`);
  if (!(await readBack(ctx, fam, s))) {
    ctx.report.skipMissing(
      etagSteps(fam).filter((step) => step.id !== id('public-url')),
      `not checked: the session could not be read back (${id('read')}); it is deleted at the end`,
    );
    return { fam, session: s };
  }
  await notModified(ctx, fam, s);
  const etag = await conditionalWrite(ctx, fam, s);
  if (etag === undefined) {
    ctx.report.skipMissing(
      [{ id: id('long-poll'), title: `${name} long-poll: a write wakes a held read` }],
      `not checked: it writes with the ETag of the conditional write, which failed (${id('conditional-write')})`,
    );
  } else {
    await checkWake(ctx, id('long-poll'), name, {
      hold: () =>
        ask(
          ctx,
          family,
          `${name} held GET`,
          {
            url: s.url,
            headers: { 'If-None-Match': etag, Prefer: `wait=${HOLD_SECONDS}` },
            timeoutMs: (HOLD_SECONDS + 10) * 1000,
          },
          true,
        ),
      write: () =>
        ask(
          ctx,
          family,
          `${name} PUT`,
          { method: 'PUT', url: s.url, headers: { ...TEXT, 'If-Match': etag }, body: 'check-3', fresh: true },
          true,
        ),
      woke: (a) => a.status === 200 && a.body.toString() === 'check-3',
    });
  }
  await remove(ctx, fam, s);
  return { fam, session: s };
}

async function readBack(ctx: CheckContext, fam: EtagFamily, s: EtagSession): Promise<boolean> {
  const title = `${fam.name} read`;
  const a = await attempt(ctx, `${fam.family}.read`, title, () =>
    ask(ctx, fam.family, `${fam.name} GET`, { url: s.url }, true),
  );
  if (a === undefined) return false;
  if (a.status !== 200 || a.body.toString() !== 'check-1') {
    unexpected(ctx, `${fam.family}.read`, title, a, '200 with the bytes just written');
    return false;
  }
  const type = header(a, 'content-type');
  const typeId = fam.family === 'msc4108' ? 'msc4108.content-type' : 'msc3886.content-type';
  const typeTitle = `${fam.name} GET answers Content-Type exactly "text/plain"`;
  if (type !== 'text/plain') {
    ctx.report.fail(
      typeId,
      typeTitle,
      `it arrived as ${type === undefined ? 'no Content-Type' : `"${type}"`}${
        (a.headers.get('content-type')?.length ?? 0) > 1
          ? " (two Content-Type headers or more: something in front adds one beside the server's)"
          : ''
      }; ${
        fam.family === 'msc4108'
          ? 'Element X and Element Web compare the string exactly and stop the login'
          : 'matrix-js-sdk compares the stored type exactly'
      }`,
      FIX.contentType,
    );
  } else {
    ctx.report.pass(typeId, typeTitle, 'as sent');
  }
  ctx.report.pass(`${fam.family}.read`, title, '200 with the bytes just written');
  return true;
}

async function notModified(ctx: CheckContext, fam: EtagFamily, s: EtagSession): Promise<void> {
  const title = `${fam.name} GET with If-None-Match answers 304`;
  const stepId = `${fam.family}.not-modified`;
  const a = await attempt(ctx, stepId, title, () =>
    ask(ctx, fam.family, `${fam.name} GET If-None-Match`, { url: s.url, headers: { 'If-None-Match': s.etag } }, true),
  );
  if (a === undefined) return;
  if (a.status === 200) {
    ctx.report.fail(
      stepId,
      title,
      'a read naming the current ETag got the whole payload again: something on the way drops If-None-Match or answers from a cache, and Element X treats that as a broken server',
      FIX.conditional,
    );
  } else if (a.status !== 304) {
    unexpected(ctx, stepId, title, a, '304');
  } else {
    const missing = ['etag', 'expires', 'last-modified'].filter((h) => header(a, h) === undefined);
    // As sent on the wire (the answer's headers are its raw ones): Node's own parsed headers may
    // leave out a Content-Length on a 304, which has no body.
    const type = header(a, 'content-type');
    const length = header(a, 'content-length');
    const bodyHeaders = [
      ...(type !== undefined ? [`Content-Type: ${type}`] : []),
      ...(length !== undefined && !/^0(\s*,\s*0)*$/.test(length.trim()) ? [`Content-Length: ${length}`] : []),
    ];
    if (missing.length > 0) {
      ctx.report.fail(
        stepId,
        title,
        `the 304 lacks ${missing.join(', ')}; matrix-rust-sdk refuses a 304 without them`,
        FIX.validators,
      );
    } else if (bodyHeaders.length > 0) {
      ctx.report.fail(
        stepId,
        title,
        `the 304 carries ${bodyHeaders.join(' and ')}, which a 304 has no body to go with (RFC 9110)${
          bodyHeaders.some((h) => h.startsWith('Content-Length'))
            ? ': OkHttp, wrk and autocannon wait for that many bytes, which never come, until they time out'
            : ''
        }; the server sends neither on a 304, so a proxy in front adds them, or what answered is not this server`,
        FIX.notModified,
      );
    } else {
      ctx.report.pass(stepId, title, '304 with ETag, Expires and Last-Modified, and no Content-Type or Content-Length');
    }
  }
}

/** A write naming the current ETag lands; one naming the old ETag is refused. Returns the new ETag. */
async function conditionalWrite(ctx: CheckContext, fam: EtagFamily, s: EtagSession): Promise<string | undefined> {
  const title = `${fam.name} conditional write (If-Match): the current ETag writes, a stale one is refused`;
  const stepId = `${fam.family}.conditional-write`;
  const put = (etag: string, body: string, label: string) =>
    ask(
      ctx,
      fam.family,
      `${fam.name} ${label}`,
      { method: 'PUT', url: s.url, headers: { ...TEXT, 'If-Match': etag }, body },
      true,
    );
  const first = await attempt(ctx, stepId, title, () => put(s.etag, 'check-2', 'PUT'));
  if (first === undefined) return undefined;
  if (s.etag.startsWith('W/')) ctx.weakEtagAccepted.set(fam.family, first.status === 202);
  const next = header(first, 'etag');
  if (first.status !== 202 || next === undefined || next === s.etag) {
    unexpected(ctx, stepId, title, first, '202 with a new ETag');
    return undefined;
  }
  const stale = await attempt(ctx, stepId, title, () => put(s.etag, 'check-stale', 'stale PUT'));
  if (stale === undefined) return undefined;
  const json = jsonOf(stale);
  const errcode = fam.family === 'msc4108' ? json?.['org.matrix.msc4108.errcode'] : json?.errcode;
  if (stale.status === 202) {
    ctx.report.fail(
      stepId,
      title,
      'a write naming an ETag that is no longer current was accepted: something on the way drops If-Match, so two devices can overwrite each other',
      FIX.conditional,
    );
    return undefined;
  }
  if (stale.status !== 412 || errcode !== 'M_CONCURRENT_WRITE') {
    unexpected(ctx, stepId, title, stale, '412 M_CONCURRENT_WRITE');
    return undefined;
  }
  if (header(stale, 'etag') !== next) {
    ctx.report.fail(
      stepId,
      title,
      `the 412 carries ETag ${header(stale, 'etag') ?? '(none)'} instead of the current ${next}, so a client cannot resync`,
      FIX.validators,
    );
    return next;
  }
  ctx.report.pass(stepId, title, '202 with a new ETag, then 412 M_CONCURRENT_WRITE with the current one');
  return next;
}

async function remove(ctx: CheckContext, fam: EtagFamily, s: EtagSession): Promise<void> {
  const title = `${fam.name} delete: the session is gone at once`;
  const stepId = `${fam.family}.delete`;
  const del = await attempt(ctx, stepId, title, () =>
    ask(ctx, fam.family, `${fam.name} DELETE`, { method: 'DELETE', url: s.url }, false),
  );
  if (del === undefined) return;
  if (del.status !== 204) {
    unexpected(ctx, stepId, title, del, '204');
    return;
  }
  ctx.cleanup.done(s.url);
  const gone = await attempt(ctx, stepId, title, () =>
    ask(ctx, fam.family, `${fam.name} GET after DELETE`, { url: s.url }, false),
  );
  if (gone === undefined) return;
  if (gone.status !== 404 || jsonOf(gone)?.errcode !== 'M_NOT_FOUND') {
    ctx.report.fail(
      stepId,
      title,
      `a read after the delete answered ${gone.status}${
        gone.replayed === true
          ? ' with the payload, replayed by a cache in front (it carries the X-Request-Id of an earlier read)'
          : gone.status === 200
            ? ' with the payload: a replica on another store, or a cache, still has it'
            : ''
      }; clients only report "expired" on 404 M_NOT_FOUND`,
      gone.replayed === true ? FIX.cache : gone.status === 200 ? FIX.sharedStore : FIX.routing,
    );
    return;
  }
  ctx.report.pass(stepId, title, '204, then 404 M_NOT_FOUND');
}
