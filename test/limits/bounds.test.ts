import { expect } from 'chai';
import net from 'node:net';
import type { RunningServer } from '../../src/main';
import { json, send } from '../helpers/send';
import { startServer } from '../helpers/server';

interface RawResult {
  /** Bytes the client managed to hand to the socket before it was closed. */
  written: number;
  /** Whether the client still had bytes to send when the server closed the connection. */
  cutOff: boolean;
  response: string;
}

/**
 * Opens a raw connection, writes `head`, then keeps feeding `next()` chunks (at most `total` bytes,
 * every `everyMs` when given, else as fast as the socket takes them) until the server closes it.
 */
function rawClient(
  port: number,
  head: string,
  next: () => Buffer,
  total: number,
  everyMs?: number,
): Promise<RawResult> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let written = 0;
    let response = '';
    let timer: NodeJS.Timeout | undefined;
    socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ written, cutOff: written < total, response });
    });
    socket.write(head);
    const pump = () => {
      while (written < total && !socket.destroyed) {
        const chunk = next();
        written += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    if (everyMs === undefined) pump();
    else {
      timer = setInterval(() => {
        if (written >= total || socket.destroyed) return;
        const chunk = next();
        written += chunk.length;
        socket.write(chunk);
      }, everyMs);
    }
  });
}

const MB = 1024 * 1024;
const BLOCK = Buffer.alloc(64 * 1024, 0x61);
const CHUNK = Buffer.concat([Buffer.from(`${BLOCK.length.toString(16)}\r\n`), BLOCK, Buffer.from('\r\n')]);

describe('hard bounds on what a client controls', function () {
  this.timeout(20_000);
  let server: RunningServer;

  before(async () => {
    server = await startServer({
      RZ_HEADERS_TIMEOUT_MS: '1000',
      RZ_REQUEST_TIMEOUT_MS: '2000',
      RZ_KEEPALIVE_TIMEOUT_MS: '500',
      RZ_MAX_HEADER_BYTES: '8192',
      RZ_MAX_CONNECTIONS: '50',
    });
  });
  after(() => server?.stop());

  /** A normal client on its own connection: create, then read back. */
  async function normalClientServed(): Promise<void> {
    const created = await send(server.port, { method: 'POST', path: '/', body: 'hello' });
    expect(created.status).to.equal(200);
    const got = await send(server.port, { path: `/${json(created).id as string}` });
    expect(got.body.toString()).to.equal('hello');
  }

  it('cuts off a 1 GB chunked upload at the size limit without reading it all, and keeps serving', async () => {
    const upload = rawClient(
      server.port,
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      () => CHUNK,
      1024 * MB,
    );
    await normalClientServed();
    const r = await upload;
    expect(r.response).to.match(/^HTTP\/1.1 413 /);
    expect(r.response).to.include('"errcode":"M_TOO_LARGE"');
    expect(r.cutOff).to.equal(true);
    // What the client got through is what the socket buffers hold, nowhere near the gigabyte.
    expect(r.written).to.be.below(64 * MB);
  });

  it('refuses a declared 1 GB Content-Length before reading the body', async () => {
    const r = await rawClient(
      server.port,
      'PUT /abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n',
      () => BLOCK,
      1024 * MB,
    );
    expect(r.response).to.match(/^HTTP\/1.1 413 /);
    expect(r.cutOff).to.equal(true);
    expect(r.written).to.be.below(64 * MB);
  });

  it('closes a slowloris connection trickling its headers, while others are served', async () => {
    let n = 0;
    const slow = rawClient(
      server.port,
      'GET /health HTTP/1.1\r\nHost: x\r\n',
      () => Buffer.from(`X-Slow-${n++}: 1\r\n`),
      1000 * 12, // 1000 header lines: about 100 s at this pace
      100,
    );
    await normalClientServed();
    const r = await slow;
    expect(r.cutOff).to.equal(true);
    expect(r.response).to.match(/^HTTP\/1.1 408 /);
  });

  it('closes a connection trickling its body past the request timeout, while others are served', async () => {
    const slow = rawClient(
      server.port,
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n',
      () => Buffer.from('a'),
      1000, // about 100 s at this pace
      100,
    );
    await normalClientServed();
    const r = await slow;
    expect(r.cutOff).to.equal(true);
    expect(r.response).to.match(/^HTTP\/1.1 408 /);
    expect(r.response).to.include('"errcode":"M_UNKNOWN"');
  });

  it('closes an idle keep-alive connection', async () => {
    const socket = net.connect(server.port, '127.0.0.1');
    let answered = '';
    socket.on('data', (d: Buffer) => (answered += d.toString()));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    expect(answered).to.match(/^HTTP\/1.1 200 /);
    expect(answered).to.match(/keep-alive/i);
  });

  it('answers 431 with a Matrix error to oversized headers', async () => {
    const r = await rawClient(
      server.port,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`,
      () => BLOCK,
      0,
    );
    expect(r.response).to.match(/^HTTP\/1.1 431 /);
    expect(r.response).to.include('"errcode":"M_TOO_LARGE"');
  });

  it('answers 414 with a Matrix error to an overlong URL', async () => {
    const a = await send(server.port, { path: `/${'a'.repeat(3000)}` });
    expect(a.status).to.equal(414);
    expect(json(a).errcode).to.equal('M_TOO_LARGE');
    expect(a.headers['access-control-allow-origin']).to.equal('*');
  });

  it('serves a request with as many header lines as configured, and refuses one with more (431)', async () => {
    // RZ_MAX_HEADERS_COUNT is 100 by default: Host, Connection and 98 more, then one more than that.
    const withLines = (n: number) => {
      let head = 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n';
      for (let i = 0; i < n - 2; i++) head += `X-H${i}: 1\r\n`;
      return `${head}\r\n`;
    };
    expect((await rawClient(server.port, withLines(100), () => BLOCK, 0)).response).to.match(/^HTTP\/1.1 200 /);
    for (const n of [101, 300]) {
      const r = await rawClient(server.port, withLines(n), () => BLOCK, 0);
      expect(r.response, `${n} lines`).to.match(/^HTTP\/1.1 431 /);
      expect(r.response).to.include('"errcode":"M_TOO_LARGE"');
    }
  });

  it('answers 400 with a Matrix error to bytes that are not HTTP', async () => {
    const r = await rawClient(server.port, 'HELLO\r\n\r\n', () => BLOCK, 0);
    expect(r.response).to.match(/^HTTP\/1.1 400 /);
    expect(r.response).to.include('"errcode":"M_BAD_REQUEST"');
  });
});

describe('concurrent connection bound', function () {
  it('drops connections beyond RZ_MAX_CONNECTIONS and serves again once one closes', async () => {
    const server = await startServer({ RZ_MAX_CONNECTIONS: '3' });
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(server.port, '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        sockets.push(s);
      }
      // The server only learns of a connection when it accepts it; a request proves all three are in.
      const extra = net.connect(server.port, '127.0.0.1');
      let got = '';
      extra.on('data', (d: Buffer) => (got += d.toString()));
      extra.on('error', () => {});
      extra.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((r) => extra.once('close', r));
      expect(got).to.equal('');
      sockets.shift()!.destroy();
      // Freed: a new connection is served (retried until the server has seen the close).
      let status = 0;
      for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
        status = await send(server.port, { path: '/health', agent: false as never }).then(
          (a) => a.status,
          () => 0,
        );
      }
      expect(status).to.equal(200);
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  });
});
