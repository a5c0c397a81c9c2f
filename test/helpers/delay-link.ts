import net from 'node:net';

export type LinkMode = 'open' | 'blackhole' | 'refuse';

/**
 * An inter-region link on loopback: a TCP proxy that holds every chunk for `delayMs` in each
 * direction (order kept), so a request across it costs a real round trip of about 2 × delayMs.
 * Connections are spread round robin over `targets` (a region's replicas, as its internal balancer
 * would). `blackhole` accepts connections and never delivers a byte (a region that is slow to the
 * point of silence); `refuse` stops listening (a region that is down).
 */
export class DelayLink {
  private server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private next = 0;
  private mode: LinkMode = 'open';

  private constructor(
    readonly port: number,
    private readonly targets: number[],
    readonly delayMs: number,
  ) {
    this.server = this.makeServer();
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens on `port` (0: any free one). */
  static async start(targets: number[], delayMs: number, port = 0): Promise<DelayLink> {
    const link = new DelayLink(port, targets, delayMs);
    await link.listen(port);
    return link;
  }

  private makeServer(): net.Server {
    const server = net.createServer({ noDelay: true }, (client) => this.accept(client));
    server.on('error', () => undefined);
    return server;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        (this as { port: number }).port = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(client: net.Socket): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    if (this.mode === 'blackhole') {
      client.resume();
      return;
    }
    const target = this.targets[this.next++ % this.targets.length]!;
    const upstream = net.connect({ port: target, host: '127.0.0.1', noDelay: true });
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    upstream.on('error', () => undefined);
    // A side that closes closes the other once what it sent before has crossed (delayed below).
    delayed(client, upstream, this.delayMs);
    delayed(upstream, client, this.delayMs);
  }

  /** Changes what the link does from now on; existing connections are cut unless it stays open. */
  async setMode(mode: LinkMode): Promise<void> {
    if (mode === this.mode) return;
    const was = this.mode;
    this.mode = mode;
    if (mode !== 'open') for (const s of this.sockets) s.destroy();
    if (mode === 'refuse') {
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
    } else if (was === 'refuse') {
      this.server = this.makeServer();
      await this.listen(this.port);
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Copies `from` to `to`, each chunk (and the end) delivered `delayMs` after it arrived; `from`
 * closing without an end (a reset) destroys `to` as late, after what came before it.
 */
function delayed(from: net.Socket, to: net.Socket, delayMs: number): void {
  const queue: { at: number; chunk: Buffer | 'end' | 'destroy' }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.at <= now + 0.5) {
      const { chunk } = queue.shift()!;
      if (chunk === 'end') to.end();
      else if (chunk === 'destroy') to.destroy();
      else if (!to.destroyed) to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.at - now);
  };
  const push = (chunk: Buffer | 'end' | 'destroy') => {
    queue.push({ at: performance.now() + delayMs, chunk });
    timer ??= setTimeout(flush, delayMs);
  };
  from.on('data', (chunk: Buffer) => push(chunk));
  from.on('end', () => {
    ended = true;
    push('end');
  });
  from.on('close', () => {
    if (!ended) push('destroy');
  });
}

/**
 * Run alone (the bench does, so the link's CPU is not the load generator's):
 * `node --import tsx test/helpers/delay-link.ts <delayMs> <targetPort>...`; prints `{"port": N}`.
 */
if (require.main === module) {
  const [delay, ...targets] = process.argv.slice(2).map(Number);
  DelayLink.start(targets, delay!).then(
    (link) => process.stdout.write(`${JSON.stringify({ port: link.port })}\n`),
    (err: unknown) => {
      process.stderr.write(`delay link: ${String(err)}\n`);
      process.exit(1);
    },
  );
  process.on('SIGTERM', () => process.exit(0));
}
