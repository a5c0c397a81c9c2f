import type { Routes } from '../http/routes';
import type { Context } from 'koa';
import { readBody } from '../http/body';
import { MatrixError } from '../http/errors';
import type { ProtocolDeps } from './context';
import { createSession } from './create';
import { deleteHandler, sendBody } from './common';
import {
  type EtagWriteRules,
  conditionHeader,
  etagReadHandler,
  etagWriteHandler,
  noContent,
  setValidators,
} from './etag-family';
import { idPrefixOf } from '../region/names';

/** MSC3886 lives at the server root and under the prefix a homeserver can reverse-proxy. */
export const MSC3886_PREFIXES = ['', '/_matrix/client/unstable/org.matrix.msc3886/rendezvous'] as const;

const FAMILY = 'msc3886';
const DEFAULT_TYPE = 'application/octet-stream';
/** Stored per session and echoed verbatim, so it is bounded like the payload is. */
const MAX_TYPE_LENGTH = 255;

function requestContentType(ctx: Context): string {
  const raw = ctx.get('Content-Type');
  if (raw === '') return DEFAULT_TYPE;
  // Tabs are allowed: RFC 9110's whitespace around parameters (`text/plain;<TAB>charset=utf-8`).
  if (raw.length > MAX_TYPE_LENGTH || !/^[\t\x20-\x7e]+$/.test(raw)) {
    throw new MatrixError(
      400,
      'M_INVALID_PARAM',
      `Content-Type must be printable ASCII (tabs allowed), at most ${MAX_TYPE_LENGTH} characters`,
    );
  }
  return raw;
}

/** Any type is stored and echoed; If-Match is optional (absent or `*`: unconditional) and may list tags. */
export const MSC3886_WRITE: EtagWriteRules = {
  family: FAMILY,
  prepare(ctx) {
    const cond = conditionHeader(ctx, 'If-Match');
    return {
      contentType: requestContentType(ctx),
      condition: cond === null || cond.any ? { kind: 'any' } : { kind: 'etag', etags: cond.etags },
    };
  },
  conflict: () => new MatrixError(412, 'M_CONCURRENT_WRITE', 'The session was changed by someone else (If-Match)'),
};

export function msc3886Routes({ config, sessions, metrics, longPoll }: ProtocolDeps, routes: Routes): void {
  const ttlMs = config.ttlSeconds * 1000;
  const createdBody = (id: string) => JSON.stringify({ id, max_bytes: config.maxBytes });
  const idPrefix = idPrefixOf(config.region);
  const write = etagWriteHandler(sessions, config.maxBytes, MSC3886_WRITE);
  const read = etagReadHandler(sessions, longPoll, FAMILY);
  const remove = deleteHandler(sessions, FAMILY, noContent);

  for (const prefix of MSC3886_PREFIXES) {
    const base = `${config.publicBaseUrl}${prefix}/`;
    const router = routes.under(prefix);

    router.post(prefix === '' ? '/' : prefix, async (ctx) => {
      const contentType = requestContentType(ctx);
      const data = await readBody(ctx, config.maxBytes);
      const meta = await createSession(ctx, sessions, metrics, { family: FAMILY, contentType, data, ttlMs, idPrefix });
      setValidators(ctx.res, meta);
      ctx.res.setHeader('Location', base + meta.id);
      sendBody(ctx, 200, 'application/json', createdBody(meta.id));
    });

    router.put(`${prefix}/:id`, write);
    router.get(`${prefix}/:id`, read);
    router.delete(`${prefix}/:id`, remove);
  }
}
