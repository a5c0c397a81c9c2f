import { expect } from 'chai';
import net from 'node:net';
import { constants } from 'node:os';
import { Writable } from 'node:stream';
import pino from 'pino';
import { ConnectionCap, ipv4Number } from '../src/http/connection-cap';
import { createHttpServer, listen } from '../src/http/server';
import { loadConfig } from '../src/config';
import { Metrics } from '../src/metrics';
import { Scrape } from './helpers/metrics';
import { Replica } from './helpers/replica';
import { send } from './helpers/send';
import { until } from './helpers/topologies';

/** A keep-alive connection that asked for /health: served (it got its 200) or closed unanswered. */
interface Held {
  socket: net.Socket;
  served: boolean;
}

function connect(port: number, localAddress: string): Promise<Held> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let got = '';
    const settle = (served: boolean) => {
      socket.removeAllListeners('data');
      resolve({ socket, served });
    };
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (/^HTTP\/1\.1 200 [^]*\r\n\r\n/.test(got)) settle(true);
    });
    socket.on('error', () => {});
    socket.on('close', () => settle(false));
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

/** Opens `n` connections from `localAddress`, `batch` at a time (the accept backlog stays short). */
async function openMany(port: number, n: number, localAddress: string, batch = 50): Promise<Held[]> {
  const out: Held[] = [];
  while (out.length < n) {
    const size = Math.min(batch, n - out.length);
    out.push(...(await Promise.all(Array.from({ length: size }, () => connect(port, localAddress)))));
  }
  return out;
}

/** Started with /metrics on a port of its own, which a full main port cannot refuse. */
function startReplica(env: Record<string, string>): Promise<Replica> {
  return Replica.start({ RZ_METRICS_PORT: '0', ...env });
}

async function refused(replica: Replica, reason: string): Promise<number> {
  const port = replica.logs.find((l) => l.msg === 'listening')!.metricsPort as number;
  return (await Scrape.of(`http://127.0.0.1:${port}/metrics`)).value('rendezvous_connections_refused_total', {
    reason,
  });
}

describe('connections per client address', function () {
  this.timeout(60_000);
  const held: net.Socket[] = [];
  let replica: Replica | undefined;
  afterEach(async () => {
    for (const s of held.splice(0)) s.destroy();
    await replica?.stop();
    replica = undefined;
  });

  it('caps 600 sockets from one address at the bound, while another address is served', async () => {
    replica = await startReplica({ RZ_MAX_CONNECTIONS_PER_ADDRESS: '256' });
    const flood = await openMany(replica.port, 600, '127.0.0.1');
    held.push(...flood.map((h) => h.socket));
    expect(flood.filter((h) => h.served).length, 'served from 127.0.0.1').to.equal(256);
    expect(flood.filter((h) => !h.served).length, 'closed on accept').to.equal(344);

    // Another address is untouched by the flood.
    const other = await send(replica.port, { path: '/health', localAddress: '127.0.0.2' });
    expect(other.status).to.equal(200);
    expect(await refused(replica, 'per_address')).to.equal(344);

    // A slot given back is a slot the address may use again (once the replica has seen the close).
    const kept = flood.filter((h) => h.served);
    kept[0]!.socket.destroy();
    await until('a freed slot to serve 127.0.0.1 again', async () => {
      const h = await connect(replica!.port, '127.0.0.1');
      held.push(h.socket);
      return h.served;
    });
  });

  it('never caps a trusted proxy, which carries many clients', async () => {
    replica = await startReplica({ RZ_MAX_CONNECTIONS_PER_ADDRESS: '5', RZ_TRUSTED_PROXIES: '127.0.0.3' });
    const proxy = await openMany(replica.port, 20, '127.0.0.3');
    const client = await openMany(replica.port, 20, '127.0.0.4');
    held.push(...proxy.map((h) => h.socket), ...client.map((h) => h.socket));
    expect(proxy.filter((h) => h.served).length, 'served from the trusted proxy').to.equal(20);
    expect(client.filter((h) => h.served).length, 'served from a client').to.equal(5);
  });

  it('counts the connections RZ_MAX_CONNECTIONS drops under their own reason', async () => {
    replica = await startReplica({ RZ_MAX_CONNECTIONS: '4' });
    const full = await openMany(replica.port, 5, '127.0.0.1', 1);
    held.push(...full.map((h) => h.socket));
    expect(full.map((h) => h.served)).to.deep.equal([true, true, true, true, false]);
    expect(await refused(replica, 'max_connections')).to.equal(1);
    expect(await refused(replica, 'per_address')).to.equal(0);
  });
});

describe('a connection the system fails to accept', () => {
  it('is logged, and the server goes on serving (Node would throw it and end the process)', async () => {
    const lines: { msg: string; code?: string }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string; code?: string });
        done();
      },
    });
    const config = loadConfig({ HOST: '127.0.0.1', PORT: '0' });
    const server = createHttpServer(config, new Metrics({ processMetrics: false }), pino(sink));
    server.on('request', (_req, res) => res.end('ok'));
    const { port } = await listen(server, 0, '127.0.0.1');
    try {
      // What libuv reports when accept(2) fails: the listening handle's callback with an errno.
      const handle = (server as unknown as { _handle: { onconnection(err: number): void } })._handle;
      handle.onconnection(-constants.errno.EMFILE);
      handle.onconnection(-constants.errno.ENOBUFS);
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).to.equal('ok');
      expect(lines.map((l) => [l.msg, l.code])).to.deep.equal([
        ['could not accept a connection', 'EMFILE'],
        ['could not accept a connection', 'ENOBUFS'],
      ]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('the key a connection is counted under', () => {
  const cap = (env: Record<string, string> = {}) => new ConnectionCap(loadConfig(env), () => undefined);

  it('reads dotted-quad IPv4, mapped or not, without parsing anything else as one', () => {
    expect(ipv4Number('1.2.3.4')).to.equal(0x01020304);
    expect(ipv4Number('::ffff:255.255.255.255')).to.equal(0xffffffff);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.4 ', '1..2.3', '::1', '1234.1.1.1', 'a.b.c.d']) {
      expect(ipv4Number(bad), bad).to.equal(-1);
    }
  });

  it('is the IPv4 address, and the RZ_IPV6_PREFIX network of an IPv6 one', () => {
    const c = cap();
    expect(c.keyOf('203.0.113.9')).to.equal('203.0.113.9');
    expect(c.keyOf('2001:db8:1:2::1')).to.equal(c.keyOf('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(c.keyOf('2001:db8:1:2::1')).to.not.equal(c.keyOf('2001:db8:1:3::1'));
    expect(cap({ RZ_IPV6_PREFIX: '128' }).keyOf('2001:db8::1')).to.not.equal(
      cap({ RZ_IPV6_PREFIX: '128' }).keyOf('2001:db8::2'),
    );
  });

  it('is none for a trusted proxy, IPv4 (mapped or not) and IPv6', () => {
    const c = cap({ RZ_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.1, 2001:db8::/32' });
    for (const proxy of ['10.1.2.3', '::ffff:10.1.2.3', '192.0.2.1', '2001:db8:ff::1']) {
      expect(c.keyOf(proxy), proxy).to.equal(undefined);
    }
    for (const client of ['11.0.0.1', '192.0.2.2', '2001:db9::1']) expect(c.keyOf(client), client).to.be.a('string');
  });
});
