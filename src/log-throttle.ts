/**
 * One log line per kind of trouble per interval, however many requests meet it: during an outage or
 * a flood every request fails alike, and a line each would drown the logs (and cost CPU) exactly
 * when an operator reads them. Each line says how many were left unlogged since the last one.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; unlogged: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Undefined when this one goes unlogged; else how many of its kind went unlogged before it. */
  take(kind: string): number | undefined {
    const now = this.now();
    const seen = this.last.get(kind);
    if (seen !== undefined && now - seen.at < this.intervalMs) {
      seen.unlogged++;
      return undefined;
    }
    this.last.set(kind, { at: now, unlogged: 0 });
    return seen?.unlogged ?? 0;
  }
}
