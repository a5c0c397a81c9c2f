import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis, Cluster } from 'ioredis';
import {
  type CreateInput,
  type Family,
  type Session,
  type SessionMeta,
  type SessionStore,
  type UpdateInput,
  type UpdateOutcome,
  type UpdateResult,
  StoreUnavailableError,
} from './types';
import { sessionKey, txnKey, wakeChannel } from './keys';

type Client = Redis | Cluster;
type Arg = string | number | Buffer;

/**
 * The scripts, each its own file named for what it does and how many keys it takes, loaded once
 * with defineCommand: ioredis sends EVALSHA and falls back to EVAL when Redis lost its script cache
 * (a restart or a failover).
 */
export const SCRIPTS = {
  rzCreateSession: 'createSession-1.lua',
  rzUpdateSession: 'updateSession-2.lua',
  rzDeleteSession: 'deleteSession-2.lua',
} as const;

interface ScriptCommands {
  rzCreateSession(key: string, ...args: Arg[]): Promise<[number, number] | 0>;
  rzUpdateSessionBuffer(session: string, txns: string, ...args: Arg[]): Promise<(number | Buffer)[]>;
  rzDeleteSession(session: string, txns: string, ...args: Arg[]): Promise<number>;
}

/**
 * The largest payload a wake-up notice carries. Above it the notice is the bare revision and waiters
 * read the session: a burst of large notices to a slow subscriber would otherwise run into Redis's
 * pub/sub output buffer limit (8 MB soft, 32 MB hard), which drops the subscriber connection.
 */
export const NOTICE_MAX_PAYLOAD_BYTES = 16384;

export function scriptSource(file: string): string {
  return readFileSync(join(__dirname, 'lua', file), 'utf8');
}

/** Defines the scripts on the client (defining them again, for a second store, is harmless). */
function defineScripts(client: Client): Client & ScriptCommands {
  for (const [name, file] of Object.entries(SCRIPTS)) {
    client.defineCommand(name, { numberOfKeys: Number(/-(\d+)\.lua$/.exec(file)![1]), lua: scriptSource(file) });
  }
  return client as Client & ScriptCommands;
}

const OUTCOMES: Record<number, UpdateOutcome> = { 1: 'updated', 2: 'conflict', 3: 'unchanged' };

const NEWLINE = 0x0a;

/**
 * Reads the one-string layout "<family> <rev> <salt> <created> <modified> <expires> <type>\n<payload>"
 * (createSession-1.lua). The payload is a view into the reply, not a copy; latin1 is a byte-for-byte
 * decoding, so the content type is echoed exactly as it was stored.
 */
function parseSession(id: string, family: Family, v: Buffer): Session | null {
  const nl = v.indexOf(NEWLINE);
  if (nl < 0) return null;
  const head = v.toString('latin1', 0, nl);
  if (!head.startsWith(family) || head.charCodeAt(family.length) !== 0x20) return null;
  return parseFields(id, family, head, v, nl);
}

/**
 * A stored value as the update script publishes it on the session's wake channel, whatever its
 * family (the waiter compares that with its own); null for anything else.
 */
export function parseStoredSession(id: string, v: Buffer): Session | null {
  const nl = v.indexOf(NEWLINE);
  if (nl < 0) return null;
  const head = v.toString('latin1', 0, nl);
  const family = head.slice(0, head.indexOf(' '));
  if (family !== 'msc3886' && family !== 'msc4108' && family !== 'msc4388') return null;
  return parseFields(id, family, head, v, nl);
}

function parseFields(id: string, family: Family, head: string, v: Buffer, nl: number): Session {
  let at = family.length + 1;
  const next = () => {
    const end = head.indexOf(' ', at);
    const field = head.slice(at, end);
    at = end + 1;
    return field;
  };
  const rev = Number(next());
  const tag = next();
  const createdAt = Number(next());
  const modifiedAt = Number(next());
  const expiresAt = Number(next());
  return {
    id,
    family,
    contentType: head.slice(at),
    data: v.subarray(nl + 1),
    rev,
    tag,
    createdAt,
    modifiedAt,
    expiresAt,
  };
}

/** Redis errors that mean "not now" rather than "this server has a bug". */
const TRANSIENT_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|NOREPLICAS|MOVED|ASK)\b/;

function translate(err: unknown): Error {
  if (err instanceof Error && err.name === 'ReplyError' && !TRANSIENT_REPLY.test(err.message)) return err;
  return new StoreUnavailableError('session store unavailable', { cause: err });
}

export class RedisStore implements SessionStore {
  readonly kind = 'redis' as const;
  private readonly cmd: Client & ScriptCommands;

  /**
   * @param client an ioredis client (single node, Sentinel or Cluster) created with auto-pipelining
   *   and without an offline queue, so an outage fails requests fast instead of queueing them.
   */
  constructor(
    readonly client: Client,
    private readonly maxTxnsPerSession = 256,
  ) {
    this.cmd = defineScripts(client);
  }

  async create(input: CreateInput): Promise<SessionMeta | null> {
    let res: [number, number] | 0;
    try {
      res = await this.cmd.rzCreateSession(
        sessionKey(input.id),
        input.family,
        input.contentType,
        input.data,
        input.ttlMs,
        input.tag,
      );
    } catch (err) {
      throw translate(err);
    }
    if (res === 0) return null;
    return {
      id: input.id,
      family: input.family,
      contentType: input.contentType,
      rev: 1,
      tag: input.tag,
      createdAt: res[0],
      modifiedAt: res[0],
      expiresAt: res[1],
    };
  }

  async get(id: string, family: Family): Promise<Session | null> {
    let v: Buffer | null;
    try {
      v = await this.client.getBuffer(sessionKey(id));
    } catch (err) {
      throw translate(err);
    }
    return v === null ? null : parseSession(id, family, v);
  }

  async update(id: string, input: UpdateInput): Promise<UpdateResult> {
    const c = input.condition;
    const expected = c.kind === 'etag' ? c.etags.join(' ') : c.kind === 'token' ? c.rev : '';
    const txnId = c.kind === 'token' ? (c.txnId ?? '') : '';
    let r: (number | Buffer)[];
    try {
      r = await this.cmd.rzUpdateSessionBuffer(
        sessionKey(id),
        txnKey(id),
        input.family,
        c.kind,
        expected,
        input.data,
        input.contentType,
        txnId,
        this.maxTxnsPerSession,
        wakeChannel(id),
        NOTICE_MAX_PAYLOAD_BYTES,
      );
    } catch (err) {
      throw translate(err);
    }
    const code = r[0] as number;
    if (code === 0) return { status: 'not_found' };
    const session: SessionMeta = {
      id,
      family: input.family,
      contentType: (r[3] as Buffer).toString('latin1'),
      rev: r[4] as number,
      tag: (r[5] as Buffer).toString('latin1'),
      createdAt: r[6] as number,
      modifiedAt: r[7] as number,
      expiresAt: r[8] as number,
    };
    if (code === 4) return { status: 'replayed', outcome: OUTCOMES[r[1] as number]!, rev: r[2] as number, session };
    if (code === 5) return { status: 'txn_limit', session };
    return { status: OUTCOMES[code]!, session };
  }

  async delete(id: string, family: Family): Promise<boolean> {
    try {
      return (await this.cmd.rzDeleteSession(sessionKey(id), txnKey(id), family, wakeChannel(id))) === 1;
    } catch (err) {
      throw translate(err);
    }
  }

  async ping(): Promise<void> {
    try {
      await this.client.ping();
    } catch (err) {
      throw translate(err);
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
