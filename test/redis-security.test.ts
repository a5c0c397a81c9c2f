import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { createRedisClient } from '../src/store/redis';
import { freePort } from './helpers/ports';
import { RedisServer } from './helpers/redis';
import { everyFamilyExchange, req } from './helpers/exchange';
import { startServer } from './helpers/server';
import { Replica } from './helpers/replica';
import { until } from './helpers/topologies';

/** A private CA with a server certificate for 127.0.0.1 and a client certificate, made by openssl. */
function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=rz-test-ca');
  for (const [name, san] of [
    ['server', 'subjectAltName=IP:127.0.0.1'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=rz-${name}`);
    execFileSync('sh', ['-c', `printf '%s\\n' '${san}' > ${name}.ext`], { cwd: dir });
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
    );
  }
}

describe('Redis single node with an ACL user', () => {
  let redis: RedisServer;
  before(async () => {
    // The default user is off: only the named user with its password gets in.
    redis = await RedisServer.start([
      '--user',
      'default',
      'off',
      '--user',
      'rz',
      'on',
      '>s3cret-pass',
      '~*',
      '&*',
      '+@all',
    ]);
  });
  after(async () => {
    await redis?.destroy();
  });

  it('serves every family with RZ_REDIS_USERNAME and RZ_REDIS_PASSWORD', async () => {
    const server = await startServer({
      REDIS_URL: redis.url,
      RZ_REDIS_USERNAME: 'rz',
      RZ_REDIS_PASSWORD: 's3cret-pass',
    });
    try {
      expect((await req(`${server.url}/ready`)).status).to.equal(200);
      await everyFamilyExchange(server.url);
    } finally {
      await server.stop();
    }
  });

  it('takes the credentials from the URL too, and refuses a wrong password', async () => {
    const inUrl = await startServer({ REDIS_URL: `redis://rz:s3cret-pass@127.0.0.1:${redis.port}` });
    try {
      expect((await req(`${inUrl.url}/ready`)).status).to.equal(200);
    } finally {
      await inUrl.stop();
    }
    const wrong = createRedisClient(
      loadConfig({ REDIS_URL: redis.url, RZ_REDIS_USERNAME: 'rz', RZ_REDIS_PASSWORD: 'nope' }),
    );
    const err = await new Promise<Error>((resolve) => wrong.once('error', resolve));
    wrong.disconnect();
    expect(err.message).to.match(/WRONGPASS/);
  });
});

describe('Redis credentials in the URL and as settings together', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start(['--user', 'default', 'off', '--user', 'rz', 'on', '>right', '~*', '&*', '+@all']);
  });
  after(async () => {
    await redis?.destroy();
  });

  /** Whether a replica with these settings reaches its Redis. */
  async function reaches(env: Record<string, string>): Promise<boolean> {
    const server = await startServer({ RZ_REDIS_COMMAND_TIMEOUT_MS: '500', ...env });
    try {
      return (await req(`${server.url}/ready`)).status === 200;
    } finally {
      await server.stop();
    }
  }

  it('lets RZ_REDIS_PASSWORD and RZ_REDIS_USERNAME win over the URL, as documented', async () => {
    const at = `127.0.0.1:${redis.port}`;
    // A user in the URL, the password from a Secret: the usual split.
    expect(await reaches({ REDIS_URL: `redis://rz@${at}`, RZ_REDIS_PASSWORD: 'right' })).to.equal(true);
    expect(await reaches({ REDIS_URL: `redis://rz:wrong@${at}`, RZ_REDIS_PASSWORD: 'right' })).to.equal(true);
    expect(await reaches({ REDIS_URL: `redis://nobody:right@${at}`, RZ_REDIS_USERNAME: 'rz' })).to.equal(true);
    expect(await reaches({ REDIS_URL: `redis://rz:right@${at}`, RZ_REDIS_PASSWORD: 'wrong' })).to.equal(false);
    // Percent-encoded in the URL, as a password with reserved characters must be.
    expect(await reaches({ REDIS_URL: `redis://r%7A:right@${at}` })).to.equal(true);
  });
});

describe('Redis over TLS (rediss://, private CA, client certificate)', () => {
  let redis: RedisServer;
  let tlsPort: number;
  let dir: string;
  before(async () => {
    tlsPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'rz-tls-'));
    makeCertificates(dir);
    redis = await RedisServer.start([
      '--port',
      '0',
      '--tls-port',
      String(tlsPort),
      '--tls-cert-file',
      join(dir, 'server.crt'),
      '--tls-key-file',
      join(dir, 'server.key'),
      '--tls-ca-cert-file',
      join(dir, 'ca.crt'),
      '--tls-auth-clients',
      'yes',
    ]);
  });
  after(async () => {
    await redis?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves every family over mutual TLS', async () => {
    const server = await startServer({
      REDIS_URL: `rediss://127.0.0.1:${tlsPort}`,
      RZ_REDIS_TLS_CA_FILE: join(dir, 'ca.crt'),
      RZ_REDIS_TLS_CERT_FILE: join(dir, 'client.crt'),
      RZ_REDIS_TLS_KEY_FILE: join(dir, 'client.key'),
    });
    try {
      expect((await req(`${server.url}/ready`)).status).to.equal(200);
      await everyFamilyExchange(server.url);
    } finally {
      await server.stop();
    }
  });

  it('verifies the server certificate: without the private CA the connection is refused', async () => {
    const client = createRedisClient(
      loadConfig({
        REDIS_URL: `rediss://127.0.0.1:${tlsPort}`,
        RZ_REDIS_TLS_CERT_FILE: join(dir, 'client.crt'),
        RZ_REDIS_TLS_KEY_FILE: join(dir, 'client.key'),
      }),
    );
    const err = await new Promise<Error>((resolve) => client.once('error', resolve));
    client.disconnect();
    expect(err.message).to.match(/certificate/i);
  });

  it('says TLS is the likely mistake when the port does not speak it: silence or a plain-text answer', async () => {
    const sockets = new Set<Socket>();
    const listen = (onSocket: (socket: Socket) => void) =>
      new Promise<Server>((resolve) => {
        const server = createServer((socket) => {
          sockets.add(socket);
          socket.on('error', () => undefined);
          onSocket(socket);
        });
        server.listen(0, '127.0.0.1', () => resolve(server));
      });
    // A port that takes the connection and says nothing; one that answers the handshake in plain text.
    const silent = await listen(() => undefined);
    const plain = await listen((socket) => socket.once('data', () => socket.end('-ERR unknown command\r\n')));
    const portOf = (server: Server) => (server.address() as { port: number }).port;
    const replicas = await Promise.all(
      [silent, plain].map((server) => Replica.start({ REDIS_URL: `rediss://127.0.0.1:${portOf(server)}` })),
    );
    try {
      for (const replica of replicas) {
        const connectionError = () => replica.logs.find((line) => line.msg === 'redis connection error');
        // The silent port's error is the connect timeout, which can come after the replica listens.
        await until('the connection error to be logged', async () => connectionError() !== undefined);
        expect(connectionError()!.hint).to.match(/^TLS to Redis is on .*a port that does not speak TLS/);
      }
    } finally {
      await Promise.all(replicas.map((replica) => replica.stop()));
      for (const socket of sockets) socket.destroy();
      silent.close();
      plain.close();
    }
  });
});
