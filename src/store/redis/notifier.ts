import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { idOfWakeChannel, parseStoredSession, wakeChannel } from '../format';
import { ListenerTable, parseWake, wakeOf } from '../listeners';
import {
  uncounted,
  type FailureCounter,
  type Notifier,
  type NotifierStats,
  type Subscription,
  type WakeListener,
} from '../types';
import { unavailable } from './errors';

const SUBSCRIBE_TIMEOUT_MS = 2000;
/** Subscribes failed in a row after which the subscriber client is replaced, and how often at most. */
const REBUILD_AFTER_FAILURES = 5;
const REBUILD_EVERY_MS = 10_000;

/** Creates the subscriber connection; single node, Sentinel or Cluster (with sharded subscribers). */
export type SubscriberFactory = () => Redis | Cluster;

/**
 * Wake-ups through Redis sharded pub/sub (SSUBSCRIBE/SPUBLISH): the write scripts publish on the
 * session's channel, which shares the session's hash slot, so on Redis Cluster the notice stays on
 * the shard that owns the session instead of being broadcast to every node.
 *
 * ONE subscriber connection per replica, whatever the number of waiters. The factory's client
 * should be created with `autoResubscribe: false` and without auto-pipelining: this class restores
 * its own subscriptions on every `ready`, exactly the sessions still waited on, and only then tells
 * the waiters to re-read (anything published while the connection was down is lost, so a re-read is
 * the only way to learn about it).
 */
export class RedisNotifier implements Notifier {
  private sub: Redis | Cluster;
  private readonly table: ListenerTable;
  private closed = false;
  /**
   * On Cluster, SSUBSCRIBE goes through one subscriber per shard, which start only after the cluster
   * itself is ready; a subscribe before that fails. Single node and Sentinel have no such step.
   */
  private shardsReady = false;
  /** Subscribes failed in a row, and when the client was last replaced because of them. */
  private failedInARow = 0;
  private rebuiltAt = 0;

  /**
   * @param clustered whether the factory makes Cluster clients (whose sharded subscribers start late)
   * @param failed told of every (un)subscribe that fails
   */
  constructor(
    private readonly factory: SubscriberFactory,
    private readonly log: Logger,
    private readonly clustered = false,
    private readonly failed: FailureCounter = uncounted,
  ) {
    this.table = new ListenerTable({
      subscribe: (id) => this.subscribe(id),
      unsubscribe: (id) => this.unsubscribe(id),
      isUp: () => this.isUp(),
    });
    this.sub = this.connect();
  }

  private isUp(): boolean {
    return this.sub.status === 'ready' && this.shardsReady;
  }

  private connect(): Redis | Cluster {
    const sub = this.factory();
    this.shardsReady = !this.clustered;
    // Cluster replaces a shard's subscriber when its connection drops, without a cluster-wide
    // `ready`: notices published meanwhile are lost, so waiters re-read exactly as after `ready`.
    sub.on('subscribersReady', () => {
      // The group announces itself once before the slot map is known, with no shard subscriber
      // started yet; a subscribe then fails. Only a group built from a slot map counts.
      if (sub !== this.sub || (this.clustered && (sub as Cluster).slots.length === 0)) return;
      this.shardsReady = true;
      // Nothing to do at start; after a shard subscriber was replaced, or the client rebuilt, every
      // session still waited on is subscribed again and its waiters re-read.
      this.table.resubscribeAll();
    });
    let down = false;
    sub.on('error', (err: Error) => {
      if (!down) this.log.warn({ err: err.message }, 'long-poll subscriber connection error');
      down = true;
    });
    sub.on('ready', () => {
      if (sub !== this.sub) return;
      if (down) this.log.info('long-poll subscriber connection restored');
      down = false;
      this.table.resubscribeAll();
    });
    // Buffers: the notice of a write is the stored value, binary payload included.
    sub.on('smessageBuffer', (channel: Buffer, message: Buffer) => {
      if (sub === this.sub) this.onMessage(channel, message);
    });
    return sub;
  }

  /**
   * A subscribe that is neither confirmed nor refused in time (a Cluster shard subscriber still
   * connecting) counts as failed, so the listener table tries again and has its waiters re-read.
   * Many failures in a row while the connection claims to be up mean the client itself is stuck:
   * ioredis's Cluster can be left with a slot map and no shard subscriber at all ("No sharded
   * subscriber for slot"), and never rebuild them; a new client then recovers every wait.
   */
  private async subscribe(id: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('subscribe timed out')), SUBSCRIBE_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.sub.ssubscribe(wakeChannel(id)), timeout]);
      this.failedInARow = 0;
    } catch (err) {
      this.failed('subscribe', unavailable(err).reason);
      // Only while the client claims to be up: failures during a reconnect are expected.
      if (this.isUp() && ++this.failedInARow >= REBUILD_AFTER_FAILURES) this.rebuild();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Replaces a subscriber client that keeps refusing subscribes (at most every REBUILD_EVERY_MS). */
  private rebuild(): void {
    const now = Date.now();
    if (this.closed || now - this.rebuiltAt < REBUILD_EVERY_MS) return;
    this.rebuiltAt = now;
    this.failedInARow = 0;
    this.log.warn('long-poll subscriber keeps refusing subscribes: replacing its connection');
    const old = this.sub;
    this.sub = this.connect();
    old.disconnect();
  }

  private unsubscribe(id: string): void {
    // Ignored failure: a dropped connection has no subscriptions left, and the next `ready` only
    // restores the sessions still in the table.
    if (!this.closed) {
      this.sub.sunsubscribe(wakeChannel(id)).catch((err: unknown) => this.failed('subscribe', unavailable(err).reason));
    }
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    const id = idOfWakeChannel(channel.toString('latin1'));
    if (id === null) return;
    if (!this.table.has(id)) {
      // A subscription nobody needs any more (its unsubscribe was lost in a reconnect): drop it.
      this.unsubscribe(id);
      return;
    }
    const session = parseStoredSession(id, message);
    const event = session !== null ? wakeOf(session) : parseWake(message.toString('latin1'));
    if (event !== null) this.table.dispatch(id, event);
  }

  /** Resolves when the subscriber connection is up, or false after `timeoutMs` (it keeps trying). */
  connected(timeoutMs: number): Promise<boolean> {
    const sub = this.sub;
    const up = () => sub.status === 'ready' && this.shardsReady;
    if (up()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        sub.off('ready', onEvent);
        sub.off('subscribersReady', onEvent);
        resolve(ok);
      };
      const onEvent = () => {
        if (up()) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      sub.on('ready', onEvent);
      sub.on('subscribersReady', onEvent);
    });
  }

  listen(id: string, listener: WakeListener): Subscription {
    return this.table.listen(id, listener);
  }

  stats(): NotifierStats {
    return this.table.stats();
  }

  /** Commands on one connection run in order: once a PING is answered, all before it are done. */
  async settled(): Promise<void> {
    await this.sub.ping();
  }

  async close(): Promise<void> {
    this.closed = true;
    try {
      await this.sub.quit();
    } catch {
      this.sub.disconnect();
    }
  }
}
