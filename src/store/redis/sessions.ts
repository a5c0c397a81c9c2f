import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import {
  CAPS_BY_ADDRESS_KEY,
  CAPS_JOURNAL_DETAILS_KEY,
  CAPS_JOURNAL_KEY,
  CAPS_KEY,
  NO_OWNER,
  parseSession,
  parseTombstone,
  sessionKey,
  txnKey,
  wakeChannel,
} from '../format';
import {
  uncounted,
  type CapLimits,
  type CreateInput,
  type CreateResult,
  type FailureCounter,
  type Family,
  type Session,
  type SessionCounts,
  type SessionMeta,
  type SessionStore,
  type UpdateInput,
  type UpdateOutcome,
  type UpdateResult,
} from '../types';
import { countedFailure, storeFailure, unavailable } from './errors';
import { defineScripts, type Reply, type ScriptedClient } from './scripts';
import { LogThrottle } from '../../log-throttle';

/**
 * The largest payload a wake-up notice carries. Above it the notice is the bare revision and waiters
 * read the session: a burst of large notices to a slow subscriber would otherwise run into Redis's
 * pub/sub output buffer limit (8 MB soft, 32 MB hard), which drops the subscriber connection.
 */
export const NOTICE_MAX_PAYLOAD_BYTES = 16384;

export interface RedisSessionOptions {
  caps: CapLimits;
  maxTxnsPerSession: number;
  /** Slower than this, a command fails (the client's own timeout); Cluster creates allow for it. */
  commandTimeoutMs: number;
  /**
   * Told of the calls that fail in the background (cap reconciliation on Cluster); the session
   * operations' own failures reach their caller, which counts them.
   */
  failed?: FailureCounter;
}

const OUTCOMES: Record<number, UpdateOutcome> = { 1: 'updated', 2: 'conflict', 3: 'unchanged' };

function capped(reply: Reply): CreateResult {
  return reply[1] === 'taken'
    ? { status: 'taken' }
    : { status: 'capped', cap: reply[1] as 'global' | 'address', retryAfterMs: Math.max(0, reply[2] as number) };
}

function created(input: CreateInput, createdAt: number, expiresAt: number): CreateResult {
  return {
    status: 'created',
    session: {
      id: input.id,
      family: input.family,
      contentType: input.contentType,
      rev: 1,
      tag: input.tag,
      createdAt,
      modifiedAt: createdAt,
      expiresAt,
    },
  };
}

/**
 * Sessions on one Redis node (or the master a set of Sentinels names). Every operation is one script
 * or one read, so one round trip; the caps are counted by the same scripts that create and delete.
 */
export class RedisSessions implements SessionStore {
  protected readonly cmd: ScriptedClient;

  /**
   * @param client an ioredis client (single node, Sentinel or Cluster) made by createRedisClient:
   *   without an offline queue, so an outage fails requests fast instead of queueing them.
   */
  constructor(
    readonly client: Redis | Cluster,
    protected readonly opts: RedisSessionOptions,
  ) {
    this.cmd = defineScripts(client);
  }

  create(input: CreateInput): Promise<CreateResult> {
    const { caps } = this.opts;
    return this.cmd
      .rzCreateSession(
        sessionKey(input.id),
        CAPS_KEY,
        CAPS_BY_ADDRESS_KEY,
        input.family,
        input.contentType,
        input.data,
        input.ttlMs,
        input.tag,
        input.owner || NO_OWNER,
        caps.global,
        caps.perAddress,
      )
      .then((r): CreateResult => {
        if (r[0] === 1) return created(input, r[1] as number, r[2] as number);
        return r[0] === 0 ? capped(r) : { status: 'taken' };
      }, storeFailure);
  }

  get(id: string, family: Family): Promise<Session | null> {
    return this.client
      .getBuffer(sessionKey(id))
      .then((v) => (v === null ? null : parseSession(id, family, v)), storeFailure);
  }

  update(id: string, input: UpdateInput): Promise<UpdateResult> {
    const c = input.condition;
    const expected = c.kind === 'etag' ? c.etags.join(' ') : c.kind === 'token' ? c.rev : '';
    const txnId = c.kind === 'token' ? (c.txnId ?? '') : '';
    return this.cmd
      .rzUpdateSessionBuffer(
        sessionKey(id),
        txnKey(id),
        input.family,
        c.kind,
        expected,
        input.data,
        input.contentType,
        txnId,
        this.opts.maxTxnsPerSession,
        wakeChannel(id),
        NOTICE_MAX_PAYLOAD_BYTES,
      )
      .then((r): UpdateResult => {
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
      }, storeFailure);
  }

  delete(id: string, family: Family): Promise<boolean> {
    return this.cmd
      .rzDeleteSession(sessionKey(id), txnKey(id), CAPS_KEY, CAPS_BY_ADDRESS_KEY, family, wakeChannel(id))
      .then((r) => r === 1, storeFailure);
  }

  /** Resolves once no interrupted step is left to settle (shutdown waits for it; tests too). */
  reconciled(): Promise<void> {
    return Promise.resolve();
  }

  /** Gives up what is left to settle, for good (at close, before the connection goes). */
  stop(): void {}

  counts(): Promise<SessionCounts> {
    return this.cmd
      .rzCountSessions(CAPS_KEY)
      .then(([live, expired]) => ({ live: live!, expired: expired! }), storeFailure);
  }
}

/** How long the Cluster journal remembers a claim or a release, and a tombstone lasts. */
const JOURNAL_MS = 120_000;

/** The tombstone of a create that never happened: it owes no slot (its claim is given back apart). */
const LOST_CREATE_TOMBSTONE = '~- 0';

/**
 * Sessions on a Redis Cluster. The caps' counts are one key, which cannot share a slot with every
 * session, so a create is two round trips (claim the slots, then create the session in its own slot)
 * and so is a delete (delete, then free the slots). The order keeps every session counted: a claim
 * comes before its session exists, and a session's slots are freed only after it is gone. When a
 * step fails, the replica settles it afterwards (see Reconciler); the journal and the tombstones make
 * every retry safe, whether or not the step it retries had landed.
 */
export class ClusterRedisSessions extends RedisSessions {
  private readonly reconciler: Reconciler;

  constructor(client: Cluster, opts: RedisSessionOptions, log: Logger) {
    super(client, opts);
    this.reconciler = new Reconciler(this.cmd, log, opts.failed);
  }

  /**
   * How long a delete whose answer was lost may still be on its way (a slow command, a re-send),
   * before its tombstone is looked for: never so long that the tombstone is gone by then (with the
   * longest command timeout allowed, 60 s, twice it would outlast the tombstone's two minutes).
   */
  private get graceMs(): number {
    return Math.min(this.opts.commandTimeoutMs * 2 + 1000, JOURNAL_MS / 2);
  }

  override async create(input: CreateInput): Promise<CreateResult> {
    const { caps } = this.opts;
    const owner = input.owner || NO_OWNER;
    let claim: Reply;
    try {
      claim = await this.cmd.rzClaimSlot(
        CAPS_KEY,
        CAPS_BY_ADDRESS_KEY,
        CAPS_JOURNAL_KEY,
        CAPS_JOURNAL_DETAILS_KEY,
        input.id,
        owner,
        input.ttlMs,
        caps.global,
        caps.perAddress,
        JOURNAL_MS,
      );
    } catch (err) {
      // The claim may have been counted with its answer lost, and no create will follow it: its
      // session is made impossible and the claim given back (if it was made).
      this.reconciler.settleCreate(input.id);
      throw unavailable(err);
    }
    if (claim[0] !== 1) return capped(claim);
    const [, createdAt, expiresAt] = claim as number[];
    let made: number;
    try {
      made = await this.cmd.rzCreateClaimedSession(
        sessionKey(input.id),
        input.family,
        input.contentType,
        input.data,
        createdAt!,
        expiresAt!,
        input.tag,
        owner,
      );
    } catch (err) {
      // It may have landed, its answer lost, or still be on its way: settled from the session's key.
      this.reconciler.settleCreate(input.id);
      throw unavailable(err);
    }
    if (made === 1) return created(input, createdAt!, expiresAt!);
    this.reconciler.settleCreate(input.id);
    return { status: 'taken' };
  }

  override async delete(id: string, family: Family): Promise<boolean> {
    let r: (number | Buffer)[];
    try {
      r = await this.cmd.rzDeleteClaimedSessionBuffer(sessionKey(id), txnKey(id), family, wakeChannel(id), JOURNAL_MS);
    } catch (err) {
      // It may have happened, its answer lost: its tombstone then says which slots to free.
      this.reconciler.settleDelete(id, this.graceMs);
      throw unavailable(err);
    }
    // A tombstone's slots are owed by a delete that happened (perhaps this one, sent again): they are
    // freed once, journalled, whoever asks. Freed before the answer, so a client that deletes and
    // creates again finds its slot; a failure there is the background's, not the client's.
    if (r.length === 3) await this.reconciler.releaseSlot(id, (r[1] as Buffer).toString('latin1'), r[2] as number);
    return r[0] === 1;
  }

  override reconciled(): Promise<void> {
    return this.reconciler.idle();
  }

  override stop(): void {
    this.reconciler.stop();
  }
}

/**
 * Steps one replica keeps to settle at most, in flight or waiting for their next attempt. Each holds
 * a closure (and a timer while it waits) for up to JOURNAL_MS: during a long Redis slowdown under
 * load, every create or delete whose outcome is unknown adds one. Beyond this many, a step is given
 * up at once, as one whose journal has forgotten it is: its slot frees when its session would have
 * expired, as the caps count it until then.
 */
export const MAX_SETTLING = 10_000;

/** Backoff between attempts of a settling step while Redis keeps failing it. */
const RETRY_MS = [250, 500, 1000, 2000, 5000];

/**
 * Finishes cap bookkeeping that a failure interrupted, in this replica, with retries until Redis
 * answers or the journal has forgotten (then the slot frees when the session would have expired):
 * - a create that may not have happened: a tombstone is put in its session's place unless the session
 *   is there (SET NX), so it can never land later; if the tombstone went in, the claim is given back
 *   (releaseClaim-4.lua: only if journalled, once). No clock is compared.
 * - a delete's slots are freed (releaseSlot-4.lua: once), from its tombstone if its answer was lost.
 * Each step is idempotent, so retrying one whose answer was lost is safe.
 */
class Reconciler {
  private pending = 0;
  private waiters: (() => void)[] = [];
  /** Attempts waiting for their turn, each counted in `pending`. */
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  /** Steps given up: one line per kind per interval, however many are. */
  private readonly givenUp = new LogThrottle(10_000);

  /** Counts a failed attempt, and passes it on as StoreUnavailableError. */
  private readonly failure;

  constructor(
    private readonly cmd: ScriptedClient,
    private readonly log: Logger,
    failed: FailureCounter = uncounted,
  ) {
    this.failure = countedFailure('reconcile', failed);
  }

  idle(): Promise<void> {
    return this.pending === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  private done(): void {
    if (--this.pending === 0) for (const resolve of this.waiters.splice(0)) resolve();
  }

  /**
   * Gives up every step still to settle (the backend closes): no attempt is scheduled or sent from
   * here on; a step in flight ends with its answer. What is given up frees when it would have expired.
   */
  stop(): void {
    this.stopped = true;
    if (this.pending > 0) {
      this.log.warn(
        { steps: this.pending },
        'closing with cap bookkeeping unsettled; its slots free when the sessions would have expired',
      );
    }
    for (const timer of this.timers) {
      clearTimeout(timer);
      this.done();
    }
    this.timers.clear();
  }

  /** Runs `attempt` after `ms`, unless stopped by then. */
  private after(ms: number, attempt: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      attempt();
    }, ms).unref();
    this.timers.add(timer);
  }

  settleCreate(id: string): void {
    this.retry(
      async () => {
        const placed = await this.cmd
          .rzPlaceTombstone(sessionKey(id), LOST_CREATE_TOMBSTONE, JOURNAL_MS)
          .catch(this.failure);
        if (placed === 1) {
          await this.cmd
            .rzReleaseClaim(CAPS_KEY, CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_KEY, CAPS_JOURNAL_DETAILS_KEY, id)
            .catch(this.failure);
        }
      },
      0,
      'settle a create',
    );
  }

  settleDelete(id: string, afterMs: number): void {
    this.retry(
      async () => {
        const tombstone = parseTombstone(await this.cmd.get(sessionKey(id)).catch(this.failure));
        if (tombstone !== null) await this.release(id, tombstone.owner, tombstone.expiresAt);
      },
      afterMs,
      'settle a delete',
    );
  }

  /** Frees a deleted session's slots now or, when that fails, in the background. */
  async releaseSlot(id: string, owner: string, expiresAt: number): Promise<void> {
    try {
      await this.release(id, owner, expiresAt);
    } catch {
      this.retry(() => this.release(id, owner, expiresAt), RETRY_MS[0]!, 'free the slots of a deleted session');
    }
  }

  private release(id: string, owner: string, expiresAt: number): Promise<unknown> {
    return this.cmd
      .rzReleaseSlot(
        CAPS_KEY,
        CAPS_BY_ADDRESS_KEY,
        CAPS_JOURNAL_KEY,
        CAPS_JOURNAL_DETAILS_KEY,
        id,
        owner,
        expiresAt,
        JOURNAL_MS,
      )
      .catch(this.failure);
  }

  private retry(step: () => Promise<unknown>, afterMs: number, what: string): void {
    // Closing: the connection is going, and nothing would retry what fails.
    if (this.stopped) return;
    if (this.pending >= MAX_SETTLING) {
      const unlogged = this.givenUp.take('too many');
      if (unlogged !== undefined) {
        this.log.warn(
          { step: what, limit: MAX_SETTLING, unlogged },
          'too many cap bookkeeping steps left to settle: one is given up; its slot frees when its session would have expired',
        );
      }
      return;
    }
    const giveUpAt = Date.now() + JOURNAL_MS;
    this.pending++;
    const run = (attempt: number) => {
      step().then(
        () => this.done(),
        (err: unknown) => {
          if (this.stopped) return this.done();
          if (Date.now() + RETRY_MS[attempt]! > giveUpAt) {
            const message = `could not ${what}; its slot frees when it would have expired`;
            const unlogged = this.givenUp.take(what);
            if (unlogged !== undefined) this.log.warn({ err: (err as Error).message, unlogged }, message);
            this.done();
            return;
          }
          this.after(RETRY_MS[attempt]!, () => run(Math.min(attempt + 1, RETRY_MS.length - 1)));
        },
      );
    };
    if (afterMs > 0) this.after(afterMs, () => run(0));
    else run(0);
  }
}
