import Router from '@koa/router';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { StoreUnavailableError, type Backend, type StoreCondition, type UnavailableReason } from '../store/types';

/** Whether this replica should still receive traffic; flipped first thing on SIGTERM. */
export class Lifecycle {
  draining = false;
  private readonly onDrainListeners: (() => void)[] = [];
  private readonly onStopListeners: (() => void)[] = [];

  /** Runs `listener` when draining starts (SIGTERM): what is held should be let go. */
  onDrain(listener: () => void): void {
    this.onDrainListeners.push(listener);
  }

  /** Runs `listener` once no request is left, before the backend closes. */
  onStop(listener: () => void): void {
    this.onStopListeners.push(listener);
  }

  /** Turns readiness false and tells every listener. */
  drain(): void {
    this.draining = true;
    for (const listener of this.onDrainListeners) listener();
  }

  stop(): void {
    for (const listener of this.onStopListeners) listener();
  }

  /** While draining, every answer closes its connection so clients move to another replica. */
  // A reaction rather than `await`: a held long-poll then keeps no suspended async frame here.
  readonly middleware: Middleware = (ctx, next) =>
    next().then(() => {
      // Checked after the handler, so requests in flight when SIGTERM landed close their connection too.
      if (this.draining) ctx.set('Connection', 'close');
    });
}

/** One store ping of the readiness check, shared by the probes that come while it is out. */
interface Ping {
  at: number;
  result: Promise<boolean>;
  pending: boolean;
  yes: boolean;
  /** Why the store did not answer, when it did not. */
  problem?: UnavailableReason;
}

/** What /ready says of a store that does not answer, by the reason (categories only: no addresses). */
const STORE_PROBLEMS: Record<UnavailableReason, string> = {
  connection: 'no connection to it',
  timeout: 'it did not answer in time',
  noperm: "it refused the credentials (RZ_REDIS_USERNAME, RZ_REDIS_PASSWORD, or the URL's)",
  loading: 'it is loading its data',
  cluster: 'its cluster is not usable',
  readonly: 'it is read-only',
  oom: 'it is full',
  busy: 'it is busy with a script',
  script: 'a script failed',
  other: 'it answered with an error',
};

/** How long the store's last yes is reused for readiness. */
const PING_FOR_MS = 250;

/** How often the store's configuration is looked at again (an operator may change it live). */
const INSPECT_EVERY_MS = 30_000;

/**
 * What readiness means:
 * - `startup` (default): ready once the store has answered, and from then on through a store outage,
 *   so clients keep reaching a replica that answers a JSON 503 with Retry-After (an orchestrator with
 *   no ready replica answers with its own error page instead). A replica that never reached its
 *   store is not ready, so a broken rollout stops.
 * - `store`: ready only while the store answers (for balancers that can send traffic elsewhere).
 * Either way a store found misconfigured (an evicting Redis) makes the replica unready.
 */
export class Readiness {
  private reached = false;
  private condition: StoreCondition = { healthy: true };
  private timer: NodeJS.Timeout | undefined;
  private lastPing: Ping | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly mode: 'startup' | 'store',
    private readonly lifecycle: Lifecycle,
    private readonly log: Logger,
    private readonly inspectEveryMs = INSPECT_EVERY_MS,
  ) {}

  /**
   * Looks at the store now and periodically; resolves once the first look is done. The replica
   * does not wait for it to listen: an unreachable store takes a command timeout to say so, and
   * meanwhile /health answers and /ready says the store is not reached yet.
   */
  start(): Promise<void> {
    this.timer = setInterval(() => void this.inspect(), this.inspectEveryMs);
    this.timer.unref();
    return this.inspect();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async inspect(): Promise<void> {
    const found = await this.backend.inspect();
    // An outage is not a configuration: the last verdict on the configuration stands.
    if (!found.healthy && found.problem === 'unreachable') return;
    this.reached = true;
    const before = this.condition;
    this.condition = found;
    if (!found.healthy && (before.healthy || before.detail !== found.detail)) {
      this.log.error({ problem: found.detail }, 'session store misconfigured: not ready');
    } else if (found.healthy && !before.healthy) {
      this.log.info('session store configuration fixed: ready');
    } else if (found.healthy && found.note !== undefined && (!before.healthy || before.note !== found.note)) {
      this.log.warn({ note: found.note }, 'session store');
    }
  }

  /**
   * Whether the store answers. /ready is never rate limited (a limited probe would take a healthy
   * replica out), so however often it is called the store is asked once at a time, and a yes is
   * reused for a moment; a no is never reused, so an outage shows at once.
   */
  private reachable(): Promise<boolean> {
    const now = Date.now();
    const last = this.lastPing;
    if (last !== undefined && (last.pending || (last.yes && now - last.at < PING_FOR_MS))) return last.result;
    const ping: Ping = {
      at: now,
      result: this.backend.ping().then(
        () => ((ping.pending = false), (ping.yes = true)),
        (err: unknown) => {
          ping.pending = false;
          ping.problem = err instanceof StoreUnavailableError ? err.reason : 'other';
          return false;
        },
      ),
      pending: true,
      yes: false,
    };
    this.lastPing = ping;
    return ping.result;
  }

  /** The readiness answer: status and body. */
  async answer(): Promise<[number, Record<string, unknown>]> {
    if (this.lifecycle.draining) return [503, { ready: false, reason: 'shutting down' }];
    const reachable = await this.reachable();
    // First contact: its configuration is looked at before this replica says it is ready.
    if (reachable && !this.reached) await this.inspect();
    const c = this.condition;
    if (!c.healthy) return [503, { ready: false, reason: c.detail }];
    if (!reachable && (this.mode === 'store' || !this.reached)) {
      return [
        503,
        {
          ready: false,
          reason: this.reached ? 'session store unavailable' : 'session store not reached yet',
          ...this.whyUnreachable(),
        },
      ];
    }
    return [
      200,
      {
        ready: true,
        store: this.backend.description,
        storeReachable: reachable,
        ...(reachable ? {} : this.whyUnreachable()),
      },
    ];
  }

  /** `storeProblem` of an answer for a store that did not answer the last ping, when it said why. */
  private whyUnreachable(): { storeProblem?: string } {
    const problem = this.lastPing?.problem;
    return problem === undefined ? {} : { storeProblem: STORE_PROBLEMS[problem] };
  }
}

export function healthRoutes(readiness: Readiness, router = new Router()): Router {
  // Liveness: the event loop answers. Never depends on the store, or an outage would restart every pod.
  router.get('/health', (ctx) => {
    ctx.res.setHeader('Content-Type', 'application/json');
    ctx.body = JSON.stringify({ status: 'ok' });
  });
  // Readiness: whether traffic should come here (see Readiness).
  router.get('/ready', async (ctx) => {
    const [status, body] = await readiness.answer();
    ctx.status = status;
    ctx.res.setHeader('Content-Type', 'application/json');
    ctx.body = JSON.stringify(body);
  });
  return router;
}
