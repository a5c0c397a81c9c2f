import type { Routes } from '../http/routes';
import type { Context } from 'koa';
import type { CreatePolicy } from '../auth/policy';
import { MatrixError } from '../http/errors';
import { readJsonObject, stringField } from '../http/json-body';
import type { Session, SessionMeta, UpdateResult } from '../store/types';
import type { ProtocolDeps } from './context';
import { clientOf } from '../limits';
import { createSession } from './create';
import { EMPTY_JSON, badSequenceToken, deleteHandler, notFound, opaque, sendBody, sessionId } from './common';
import { sequenceWait, settle } from './long-poll';
import { idPrefixOf } from '../region/names';

/** MSC4388 (2025): JSON bodies, concurrency through `sequence_token`. Each path has its own errcode. */
export const MSC4388_PREFIXES = [
  { prefix: '/_matrix/client/unstable/io.element.msc4388/rendezvous', conflict: 'IO_ELEMENT_MSC4388_CONCURRENT_WRITE' },
  { prefix: '/_matrix/client/v1/rendezvous', conflict: 'M_CONCURRENT_WRITE' },
] as const;

const FAMILY = 'msc4388';
/** The store keeps the UTF-8 bytes of `data`; the type is never shown to MSC4388 clients. */
const STORED_TYPE = 'text/plain';
/** The protocol fixes the lifetime to this range whatever the configuration says. */
const MIN_TTL_MS = 120_000;
const MAX_TTL_MS = 300_000;
/** Room for the JSON around `data`, and for `data` escaped as `\uXXXX` (6 bytes per byte). */
const JSON_OVERHEAD = 1024;
const JSON_ESCAPE_FACTOR = 6;
const LONE_SURROGATE = /\p{Cs}/u;

/** Largest MSC4388 request body read: `data` of maxBytes, every byte escaped, plus the JSON around it. */
export const msc4388BodyLimit = (maxBytes: number): number => maxBytes * JSON_ESCAPE_FACTOR + JSON_OVERHEAD;

export const clampTtlMs = (ttlSeconds: number): number => Math.min(MAX_TTL_MS, Math.max(MIN_TTL_MS, ttlSeconds * 1000));

/**
 * Browsers label what a fetch is for. A payload must never load as a page, frame or subresource,
 * nor be opened from the address bar; only `fetch()` from script (or non-browser clients) may read it.
 */
function refuseUnsafeFetch(ctx: Context): void {
  const dest = ctx.get('Sec-Fetch-Dest');
  if (
    (dest !== '' && dest !== 'empty') ||
    ctx.get('Sec-Fetch-Mode') === 'navigate' ||
    ctx.get('Sec-Fetch-User') === '?1' ||
    ctx.get('Sec-Fetch-Site') === 'none'
  ) {
    throw new MatrixError(403, 'M_FORBIDDEN', 'Rendezvous sessions may only be read with fetch() from a script');
  }
}

function expiresInMs(meta: SessionMeta): number {
  return Math.max(0, meta.expiresAt - Date.now());
}

const badTxnId = () =>
  new MatrixError(
    400,
    'M_INVALID_PARAM',
    'The transaction id is not an opaque identifier (1-255 of A-Z a-z 0-9 . _ ~ -)',
  );

/**
 * What a PUT checks before it reads its body, in this order: the transaction id (when its path has
 * one), then the id. A replica forwarding the PUT to another region checks the same first, so an
 * invalid write with a body over the limit is refused alike there and at home (not 413 in one).
 */
export function msc4388WriteHead(
  rawId: string | undefined,
  rawTxnId: string | undefined,
): { id: string; txnId: string | undefined } {
  const txnId = rawTxnId === undefined ? undefined : opaque(rawTxnId, badTxnId);
  return { id: opaque(rawId, notFound), txnId };
}

const emptyObject = (ctx: Context): void => sendBody(ctx, 200, 'application/json', EMPTY_JSON);

export function msc4388Routes(
  { config, sessions, metrics, longPoll }: ProtocolDeps,
  policy: CreatePolicy,
  routes: Routes,
): void {
  const ttlMs = clampTtlMs(config.ttlSeconds);
  const bodyLimit = msc4388BodyLimit(config.maxBytes);
  const idPrefix = idPrefixOf(config.region);

  /** `data` as the protocol bounds it: a well-formed string of at most maxBytes UTF-8 bytes. */
  function dataField(body: Record<string, unknown>): Buffer {
    const data = stringField(body, 'data');
    if (LONE_SURROGATE.test(data)) throw new MatrixError(400, 'M_BAD_JSON', "'data' is not valid Unicode");
    const bytes = Buffer.from(data, 'utf8');
    if (bytes.length > config.maxBytes) {
      throw new MatrixError(413, 'M_TOO_LARGE', `'data' is larger than ${config.maxBytes} bytes (as UTF-8)`);
    }
    return bytes;
  }

  for (const { prefix, conflict } of MSC4388_PREFIXES) {
    const router = routes.under(prefix);
    const tokenBody = (rev: number) => JSON.stringify({ sequence_token: String(rev) });
    const concurrentWrite = () =>
      new MatrixError(409, conflict, 'The session was changed by someone else (stale sequence_token)');

    /** Maps a store outcome to the answer; a replayed txnId gets exactly what it got the first time. */
    function answerWrite(ctx: Context, result: UpdateResult): void {
      switch (result.status) {
        case 'not_found':
          throw notFound();
        case 'txn_limit':
          throw new MatrixError(
            403,
            'M_FORBIDDEN',
            `This session has used all of its ${config.maxTxnsPerSession} transaction ids`,
          );
        case 'replayed':
          if (result.outcome === 'conflict') throw concurrentWrite();
          return sendBody(ctx, 200, 'application/json', tokenBody(result.rev));
        case 'conflict':
          throw concurrentWrite();
        default:
          // 'updated', or 'unchanged': a verbatim retry of a write that landed gets the current token.
          return sendBody(ctx, 200, 'application/json', tokenBody(result.session.rev));
      }
    }

    async function write(ctx: Context): Promise<void> {
      const { id, txnId } = msc4388WriteHead(
        ctx.params.id as string | undefined,
        ctx.params.txnId as string | undefined,
      );
      const body = await readJsonObject(ctx, bodyLimit);
      const token = opaque(stringField(body, 'sequence_token'), badSequenceToken);
      const data = dataField(body);
      const result = await sessions.update(id, {
        family: FAMILY,
        condition: txnId === undefined ? { kind: 'token', rev: token } : { kind: 'token', rev: token, txnId },
        contentType: STORED_TYPE,
        data,
      });
      answerWrite(ctx, result);
    }

    router.get(prefix, async (ctx) => {
      const available = await policy.createAvailable(ctx.req.rawHeaders, ctx.state.requestId);
      sendBody(ctx, 200, 'application/json', JSON.stringify({ create_available: available }));
    });

    router.post(prefix, async (ctx) => {
      await policy.authorizeCreate(ctx.req.rawHeaders, ctx.state.requestId);
      const data = dataField(await readJsonObject(ctx, bodyLimit));
      const meta = await createSession(ctx, sessions, metrics, {
        family: FAMILY,
        contentType: STORED_TYPE,
        data,
        ttlMs,
        idPrefix,
      });
      sendBody(
        ctx,
        200,
        'application/json',
        JSON.stringify({
          id: meta.id,
          sequence_token: String(meta.rev),
          expires_in_ms: meta.expiresAt - meta.createdAt,
        }),
      );
    });

    router.put(`${prefix}/:id`, write);

    router.put(`${prefix}/:id/:txnId`, write);

    router.get(`${prefix}/:id`, async (ctx) => {
      refuseUnsafeFetch(ctx);
      const id = sessionId(ctx);
      const wait = sequenceWait(ctx);
      let session: Session | null | undefined = await sessions.get(id, FAMILY);
      if (session === null) throw notFound();
      if (wait !== undefined && String(session.rev) === wait.token) {
        // Long-poll extension: held until the token differs, or 200 with the unchanged payload.
        const waitMs = longPoll.clampWaitMs(wait.timeoutMs);
        const token = wait.token;
        const result = await longPoll.wait({
          id,
          family: FAMILY,
          address: clientOf(ctx),
          current: session,
          waitMs,
          changed: (s) => String(s.rev) !== token,
          res: ctx.res,
        });
        session = settle(ctx, result);
        if (session === undefined) return;
      }
      sendBody(
        ctx,
        200,
        'application/json',
        JSON.stringify({
          data: session.data.toString('utf8'),
          sequence_token: String(session.rev),
          expires_in_ms: expiresInMs(session),
        }),
      );
    });

    router.delete(`${prefix}/:id`, deleteHandler(sessions, FAMILY, emptyObject));
  }
}
