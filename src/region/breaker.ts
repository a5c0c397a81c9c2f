/**
 * A circuit breaker for one peer region. Closed: forwards go through. After `threshold` forwards in
 * a row that got no answer (no connection, a timeout, a reset), it opens: that region's sessions
 * answer 503 at once instead of each waiting out the timeouts against a region that is down. After
 * `cooldownMs` one probe (the peer's liveness, GET /health) is sent; if it answers the breaker
 * closes, otherwise it stays open for another cooldown. Clients are never the probe, and a region
 * that comes back is noticed even when no client asks for it.
 *
 * Hand-rolled rather than a library: the whole state is a counter and a deadline, and the failure
 * signal is the forwarder's own connect and response timeouts, which a generic breaker wrapping a
 * promise would duplicate with timers of its own.
 */
export class CircuitBreaker {
  private failures = 0;
  /** 0 while closed; else when the next probe is due (a probe may be in flight past it). */
  private openUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    /** Resolves true when the peer answers its liveness probe. */
    private readonly probe: () => Promise<boolean>,
    /** Told of every change: true once forwards go through again, false when they stop. */
    private readonly onChange: (up: boolean) => void,
  ) {}

  get isOpen(): boolean {
    return this.openUntil !== 0;
  }

  /** 0 when a forward may go now; else how long (ms) until the region is tried again. */
  blockedForMs(): number {
    if (this.openUntil === 0) return 0;
    // Past the deadline the probe is in flight: its answer comes within the forward timeouts.
    return Math.max(1000, this.openUntil - Date.now());
  }

  /** The peer answered (whatever the status: it is up). */
  success(): void {
    this.failures = 0;
    if (this.openUntil !== 0) this.close();
  }

  /** The peer gave no answer. */
  failure(): void {
    this.failures++;
    if (this.openUntil === 0 && this.failures >= this.threshold) {
      this.open();
      this.onChange(false);
    }
  }

  /** Stops probing (the replica shuts down). */
  stop(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private open(): void {
    this.openUntil = Date.now() + this.cooldownMs;
    clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = setTimeout(() => void this.runProbe(), this.cooldownMs);
    this.timer.unref();
  }

  private close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.openUntil = 0;
    this.failures = 0;
    this.onChange(true);
  }

  private async runProbe(): Promise<void> {
    const up = await this.probe().catch(() => false);
    if (this.openUntil === 0 || this.closed) return;
    if (up) this.close();
    else this.open();
  }
}
