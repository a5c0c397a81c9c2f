import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
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
function silentRedis(): Promise<{ server: Server; port: number; arrived: (name: string) => Promise<void> }> {
  const seen = new Set<string>();
  const waiting = new Map<string, () => void>();
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
        seen.add(upper);
        waiting.get(upper)?.();
      }
    });
  });
  const arrived = (name: string) =>
    seen.has(name) ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(name, resolve));
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port, arrived }),
    ),
  );
}

describe('commands to one Redis node', () => {
  it('sends a script at once, while a batch of reads sent before it still waits for its answer', async () => {
    const { server, port, arrived } = await silentRedis();
    const client = defineScripts(
      createRedisClient(loadConfig({ REDIS_URL: `redis://127.0.0.1:${port}`, RZ_REDIS_COMMAND_TIMEOUT_MS: '60000' })),
    );
    client.on('error', () => undefined);
    try {
      expect(await whenReady(client, 10_000)).to.equal(true);
      let readSettled = false;
      client.get('rz:{held}').then(
        () => (readSettled = true),
        () => (readSettled = true),
      );
      await arrived('GET');
      void client.rzCountSessions('rz:{:caps}').catch(() => undefined);
      await arrived('EVAL');
      expect(readSettled, 'the read was answered').to.equal(false);
    } finally {
      client.disconnect();
      server.close();
    }
  });
});
