import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import type { Redis } from 'ioredis';
import { loadConfig } from '../src/config';
import { createRedisClient, whenReady } from '../src/store/redis';
import { defineScripts } from '../src/store/redis/scripts';

/** The complete commands at the front of `buffer` (RESP arrays of bulk strings), and what is left. */
function commandsIn(buffer: Buffer): { commands: string[][]; rest: Buffer } {
  const commands: string[][] = [];
  let at = 0;
  const line = (from: number) => {
    const end = buffer.indexOf('\r\n', from);
    return end < 0 ? undefined : { text: buffer.toString('latin1', from + 1, end), next: end + 2 };
  };
  for (;;) {
    const head = line(at);
    if (!head) break;
    const args: string[] = [];
    let next = head.next;
    for (let i = 0; i < Number(head.text); i++) {
      const size = line(next);
      if (!size || size.next + Number(size.text) + 2 > buffer.length) return { commands, rest: buffer.subarray(at) };
      args.push(buffer.toString('latin1', size.next, size.next + Number(size.text)));
      next = size.next + Number(size.text) + 2;
    }
    if (args.length < Number(head.text)) break;
    commands.push(args);
    at = next;
  }
  return { commands, rest: buffer.subarray(at) };
}

/**
 * A stand-in for Redis that answers the client's handshake (INFO for its ready check, OK to anything
 * else it sends before) and nothing after it, and says when each command arrives: a command it never
 * answers stays in flight for as long as the test likes.
 */
function silentRedis(): Promise<{
  server: Server;
  port: number;
  arrived: (name: string, count?: number) => Promise<void>;
}> {
  const seen = new Map<string, number>();
  const waiting: { name: string; count: number; resolve: () => void }[] = [];
  let handshaking = true;
  const server = createServer((socket) => {
    let pending: Buffer = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      const { commands, rest } = commandsIn(Buffer.concat([pending, chunk]));
      pending = rest;
      for (const [name] of commands) {
        // A script goes as EVAL the first time on a connection, as EVALSHA after.
        const upper = name!.toUpperCase().replace(/^EVALSHA$/, 'EVAL');
        if (handshaking) socket.write(upper === 'INFO' ? '$9\r\nloading:0\r\n' : '+OK\r\n');
        if (upper === 'INFO') handshaking = false;
        seen.set(upper, (seen.get(upper) ?? 0) + 1);
        for (const w of waiting) if (w.name === upper && seen.get(upper)! >= w.count) w.resolve();
      }
    });
  });
  const arrived = (name: string, count = 1) =>
    (seen.get(name) ?? 0) >= count
      ? Promise.resolve()
      : new Promise<void>((resolve) => waiting.push({ name, count, resolve }));
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port, arrived }),
    ),
  );
}

/** A client of the stand-in, ready, and how many times its socket has written so far. */
async function connectTo(port: number) {
  const client = defineScripts(
    createRedisClient(loadConfig({ REDIS_URL: `redis://127.0.0.1:${port}`, RZ_REDIS_COMMAND_TIMEOUT_MS: '60000' })),
  );
  client.on('error', () => undefined);
  expect(await whenReady(client, 10_000)).to.equal(true);
  // Every write of a net.Socket reaches one of these two, once per system call.
  const socket = (client as Redis).stream as unknown as Record<'_write' | '_writev', (...a: unknown[]) => void>;
  let writes = 0;
  for (const method of ['_write', '_writev'] as const) {
    const original = socket[method]!;
    socket[method] = function (this: unknown, ...a: unknown[]) {
      writes++;
      return original.apply(this, a);
    };
  }
  return { client, writes: () => writes };
}

const ignore = () => undefined;

/** Runs `body` against a stand-in Redis and a ready client of it, and closes both afterwards. */
type StandIn = Awaited<ReturnType<typeof connectTo>> & { arrived: (name: string, count?: number) => Promise<void> };

async function withStandIn(body: (t: StandIn) => Promise<void>): Promise<void> {
  const { server, port, arrived } = await silentRedis();
  const connected = await connectTo(port);
  try {
    await body({ ...connected, arrived });
  } finally {
    connected.client.disconnect();
    server.close();
  }
}

describe('commands to one Redis node', () => {
  it('sends a script at once, while reads sent before it still wait for their answer', () =>
    withStandIn(async ({ client, arrived }) => {
      let readSettled = false;
      client.get('rz:{held}').then(
        () => (readSettled = true),
        () => (readSettled = true),
      );
      await arrived('GET');
      void client.rzCountSessions('rz:{:caps}').catch(ignore);
      await arrived('EVAL');
      expect(readSettled, 'the read was answered').to.equal(false);
    }));

  it('writes the commands of one turn of the event loop in one write, and the next turn at once', () =>
    withStandIn(async ({ client, writes, arrived }) => {
      const before = writes();
      client.get('rz:{a}').catch(ignore);
      client.get('rz:{b}').catch(ignore);
      client.rzCountSessions('rz:{:caps}').catch(ignore);
      await arrived('GET', 2);
      await arrived('EVAL');
      expect(writes() - before, 'socket writes for three commands of one turn').to.equal(1);
      // None of them is answered: a read of a later turn is not held behind them.
      client.get('rz:{c}').catch(ignore);
      await arrived('GET', 3);
      expect(writes() - before).to.equal(2);
    }));

  it('writes the commands of two callbacks of one event-loop phase in one write', () =>
    withStandIn(async ({ client, writes, arrived }) => {
      const before = writes();
      // Two timers of one duration set together run in one timers phase, with the microtasks and
      // nextTicks of the first run before the second starts: like two requests read in one poll phase.
      setTimeout(() => client.get('rz:{a}').catch(ignore), 0);
      setTimeout(() => client.get('rz:{b}').catch(ignore), 0);
      await arrived('GET', 2);
      expect(writes() - before, 'socket writes for the commands of two callbacks of one phase').to.equal(1);
    }));
});
