import { connect, type Socket } from 'node:net';

/**
 * Counts the commands Redis runs while it is watched, from `MONITOR` on a connection of its own.
 * MONITOR shows every command a client sends, and also every command a script runs, marked with
 * `[<db> lua]` instead of the client's address: those are skipped, so a script call (EVALSHA, or EVAL
 * after a NOSCRIPT) counts once, however many commands it runs inside.
 *
 * MONITOR makes Redis format every command for the watcher, which slows it down: counts are taken in
 * a pass of their own, never while throughput is measured.
 */
export class CommandCounter {
  /** Commands sent by clients, by name (upper case). */
  readonly byName = new Map<string, number>();
  /** Commands scripts ran inside, not counted above. */
  insideScripts = 0;
  private buffer = '';
  private started = false;
  private onMarker: { marker: string; resolve: () => void } | undefined;
  /** The marker was seen: the window is closed. */
  private ended = false;

  private constructor(private readonly socket: Socket) {}

  /** Resolves once Redis has confirmed MONITOR: every command after that is counted. */
  static start(port: number): Promise<CommandCounter> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' });
      const counter = new CommandCounter(socket);
      socket.setEncoding('latin1');
      socket.once('error', reject);
      socket.on('data', (chunk: string) => {
        if (counter.take(chunk) && !counter.started) {
          counter.started = true;
          resolve(counter);
        }
      });
      socket.once('connect', () => socket.write('MONITOR\r\n'));
    });
  }

  /** Parses complete lines; true once MONITOR's +OK has been seen. */
  private take(chunk: string): boolean {
    this.buffer += chunk;
    let ok = this.started;
    let at = 0;
    for (let nl = this.buffer.indexOf('\r\n', at); nl >= 0; nl = this.buffer.indexOf('\r\n', at)) {
      const line = this.buffer.slice(at, nl);
      at = nl + 2;
      if (!ok) {
        if (line === '+OK') ok = true;
        else if (line.startsWith('-')) this.socket.destroy(new Error(`MONITOR refused: ${line}`));
        continue;
      }
      this.line(line);
    }
    this.buffer = this.buffer.slice(at);
    return ok;
  }

  /** `+1700000000.123456 [0 127.0.0.1:50000] "GET" "key"`, or `[0 lua]` for a script's own commands. */
  private line(line: string): void {
    if (this.ended) return;
    if (this.onMarker !== undefined && line.includes(this.onMarker.marker)) {
      this.ended = true;
      this.onMarker.resolve();
      return;
    }
    const open = line.indexOf('[');
    const close = line.indexOf(']', open);
    if (open < 0 || close < 0) return;
    if (line.slice(open, close).endsWith(' lua')) {
      this.insideScripts++;
      return;
    }
    const q = line.indexOf('"', close);
    const name = q < 0 ? '?' : line.slice(q + 1, line.indexOf('"', q + 1)).toUpperCase();
    this.byName.set(name, (this.byName.get(name) ?? 0) + 1);
  }

  get total(): number {
    let n = 0;
    for (const v of this.byName.values()) n += v;
    return n;
  }

  /**
   * Ends the window: after a pause, sends a marker command from another connection, and once
   * MONITOR has shown it (so every command before it has been read) stops watching. The marker is
   * not counted.
   */
  async stop(port: number): Promise<void> {
    // Requests still in flight when the load generator stopped are answered by the replica (and
    // counted by its /metrics) a moment later: their commands belong in the window too.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const marker = `rz-bench-monitor-end-${process.pid}-${Date.now()}`;
    const seen = new Promise<void>((resolve) => (this.onMarker = { marker, resolve }));
    await new Promise<void>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1' }, () => s.write(`ECHO ${marker}\r\n`));
      s.once('data', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
    await seen;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
  }
}
