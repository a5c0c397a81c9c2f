import type { Routes } from '../http/routes';
import type { Context } from 'koa';
import { readBody } from '../http/body';
import { MatrixError } from '../http/errors';
import type { ProtocolDeps } from './context';
import { createSession } from './create';
import { EMPTY_JSON, deleteHandler, sendBody } from './common';
import {
  type EtagWriteRules,
  conditionHeader,
  etagReadHandler,
  etagWriteHandler,
  noContent,
  setValidators,
} from './etag-family';
import { idPrefixOf } from '../region/names';

/** MSC4108, 2024 revision: the ETag family under the Matrix client-server API. */
export const MSC4108_PREFIX = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';

const FAMILY = 'msc4108';
/** Both reference clients compare the GET Content-Type to this string exactly: never add a charset. */
const TEXT_PLAIN = 'text/plain';

/**
 * Requests must say `text/plain`; parameters (`; charset=utf-8`) are tolerated, as the reference
 * homeserver does. Whatever was sent, the session answers with the bare `text/plain`.
 */
function requireTextPlain(ctx: Context): void {
  const raw = ctx.get('Content-Type');
  if (raw === '') throw new MatrixError(400, 'M_MISSING_PARAM', 'Content-Type header is missing (text/plain)');
  const essence = raw.split(';', 1)[0]!.trim().toLowerCase();
  if (essence !== TEXT_PLAIN) throw new MatrixError(400, 'M_INVALID_PARAM', 'Content-Type must be text/plain');
}

/** The one ETag a PUT must name: a list or `*` cannot say which version the writer has seen. */
function requireSingleIfMatch(ctx: Context): string {
  const cond = conditionHeader(ctx, 'If-Match');
  if (cond === null) throw new MatrixError(400, 'M_MISSING_PARAM', 'If-Match header is missing');
  if (cond.any || cond.etags.length !== 1) {
    throw new MatrixError(400, 'M_INVALID_PARAM', 'If-Match must name exactly one entity tag');
  }
  return cond.etags[0]!;
}

/** The reference homeserver's 412 body: a stable errcode clients know, the precise one prefixed. */
const concurrentWrite = () =>
  new MatrixError(412, 'M_UNKNOWN', 'The session was changed by someone else (If-Match does not match)', {
    'org.matrix.msc4108.errcode': 'M_CONCURRENT_WRITE',
  });

/** A PUT says `text/plain` and names the one version it replaces. */
export const MSC4108_WRITE: EtagWriteRules = {
  family: FAMILY,
  prepare(ctx) {
    requireTextPlain(ctx);
    return { contentType: TEXT_PLAIN, condition: { kind: 'etag', etags: [requireSingleIfMatch(ctx)] } };
  },
  conflict: concurrentWrite,
};

export function msc4108Routes({ config, sessions, metrics, longPoll }: ProtocolDeps, routes: Routes): void {
  const router = routes.under(MSC4108_PREFIX);
  const ttlMs = config.ttlSeconds * 1000;
  const base = `${config.publicBaseUrl}${MSC4108_PREFIX}/`;
  const delegate = config.msc4108DelegateUrl;
  const idPrefix = idPrefixOf(config.region);

  router.post(MSC4108_PREFIX, async (ctx) => {
    if (delegate !== undefined) {
      // 307 (not 302/303) keeps the method and body; the only redirect the clients follow.
      ctx.res.setHeader('Location', delegate);
      sendBody(ctx, 307, 'application/json', EMPTY_JSON);
      return;
    }
    requireTextPlain(ctx);
    const data = await readBody(ctx, config.maxBytes);
    const meta = await createSession(ctx, sessions, metrics, {
      family: FAMILY,
      contentType: TEXT_PLAIN,
      data,
      ttlMs,
      idPrefix,
    });
    const url = base + meta.id;
    setValidators(ctx.res, meta);
    ctx.res.setHeader('Location', url);
    sendBody(ctx, 201, 'application/json', JSON.stringify({ url }));
  });

  router.put(`${MSC4108_PREFIX}/:id`, etagWriteHandler(sessions, config.maxBytes, MSC4108_WRITE));
  router.get(`${MSC4108_PREFIX}/:id`, etagReadHandler(sessions, longPoll, FAMILY, TEXT_PLAIN));
  router.delete(`${MSC4108_PREFIX}/:id`, deleteHandler(sessions, FAMILY, noContent));
}
