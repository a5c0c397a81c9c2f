import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import type http from 'node:http';
import net from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, SETTINGS, helpText, loadConfig, unknownSettings } from '../src/config';
import { req } from './helpers/exchange';
import { KEY_FILE, OTHER_KEY_FILE, PEM_FILE } from './helpers/pem';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { request } from './helpers/http';
import { freePort } from './helpers/ports';
import { startServer } from './helpers/server';
import { until } from './helpers/topologies';
import { MAX_HELD_AT_START } from '../src/http/server';

const MAIN = join(__dirname, '..', 'dist', 'main.js');

/** The server started with only these settings (and PATH), as an operator's shell would. */
const startWith = (env: Record<string, string>) =>
  spawnSync(process.execPath, [MAIN], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env }, timeout: 10_000 });

/** As `startWith`, without blocking this process (a server of the test's own must go on answering). */
const startAsync = (env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH, ...env }, timeout: 10_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });

/** A connection to `port` once something listens there: nothing tells when a starting replica does. */
async function connectWhenListening(port: number): Promise<net.Socket | undefined> {
  for (let tries = 0; tries < 100; tries++) {
    const socket = net.connect(port, '127.0.0.1');
    const connected = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    if (connected) return socket;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}

describe('configuration', () => {
  it('has working defaults for a bare machine', () => {
    const c = loadConfig({});
    expect(c).to.include({
      port: 8080,
      host: undefined,
      redisUrl: undefined,
      publicBaseUrl: 'http://localhost:8080',
      ttlSeconds: 300,
      maxBytes: 4096,
      maxConnections: 10000,
      maxConnectionsPerAddress: 256,
    });
  });

  it('bounds what one session can be made to hold: transaction records at most twice the payload', () => {
    // A txnId is up to 255 bytes and each one a session records is kept for its whole life: with
    // the default number of them, the global cap's worst case is a few times its payloads, no more.
    const c = loadConfig({});
    expect(c.maxTxnsPerSession * 255).to.be.at.most(2 * c.maxBytes);
  });

  it('derives the public base URL from PORT and strips a trailing slash from a given one', () => {
    expect(loadConfig({ PORT: '9000' }).publicBaseUrl).to.equal('http://localhost:9000');
    expect(loadConfig({ RZ_PUBLIC_BASE_URL: 'https://rz.example.org/' }).publicBaseUrl).to.equal(
      'https://rz.example.org',
    );
  });

  it('reports every bad value, one line each, naming the variable and what it expects', () => {
    try {
      loadConfig({
        PORT: 'eighty',
        RZ_TTL_SECONDS: '0',
        REDIS_URL: 'http://nope',
        RZ_PUBLIC_BASE_URL: 'ftp://x',
        LOG_LEVEL: 'loud',
      });
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems).to.have.length(5);
      expect(problems[0]).to.equal(
        'PORT must be a port number from 0 to 65535 (got "eighty": only digits are accepted, no sign, decimal point, exponent or hex)',
      );
      for (const p of problems) expect(p).to.not.include('\n');
      expect(problems.join('\n')).to.include('RZ_TTL_SECONDS').and.include('REDIS_URL').and.include('LOG_LEVEL');
    }
  });

  it('lists every setting in --help', () => {
    const text = helpText();
    for (const s of SETTINGS) expect(text).to.include(s.name);
    const cli = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8' });
    expect(cli.status).to.equal(0);
    expect(cli.stdout).to.equal(text);
  });

  it('refuses to start on a bad value with a one-line error per problem and exit code 2', () => {
    const cli = startWith({ RZ_MAX_BYTES: '-1', PORT: '99999' });
    expect(cli.status).to.equal(2);
    const lines = cli.stderr.trim().split('\n');
    expect(lines[0]).to.match(/^rendezvous-server: config error: PORT must be/);
    expect(lines[1]).to.match(/^rendezvous-server: config error: RZ_MAX_BYTES must be/);
    expect(lines[2]).to.include('--help');
  });

  it('names a misspelt setting beside the errors, since the typo is often their cause', () => {
    const cli = startWith({ RZ_MAX_BYTES: '1e3', RZ_TTL_SECOND: '5' });
    expect(cli.status).to.equal(2);
    expect(cli.stderr).to.include(
      'warning: RZ_TTL_SECOND is not a setting and is ignored (did you mean RZ_TTL_SECONDS?)',
    );
    expect(cli.stderr).to.match(/config error: RZ_MAX_BYTES must be/);
  });

  it('points RZ_REDIS_URL at REDIS_URL, which has no prefix, instead of starting on memory unexplained', () => {
    const cli = startWith({ RZ_REDIS_URL: 'redis://127.0.0.1:1', RZ_MAX_BYTES: '1e3', RZ_NOT_ANYTHING_CLOSE: '1' });
    expect(cli.stderr).to.include('warning: RZ_REDIS_URL is not a setting and is ignored (did you mean REDIS_URL?)');
    expect(cli.stderr).to.include('warning: RZ_NOT_ANYTHING_CLOSE is not a setting and is ignored (see --help)');
  });
});

describe('integer settings', () => {
  const problem = (env: Record<string, string>): string => {
    try {
      loadConfig(env);
    } catch (err) {
      expect((err as ConfigError).problems).to.have.length(1);
      return (err as ConfigError).problems[0]!;
    }
    throw new Error(`${JSON.stringify(env)} was accepted`);
  };

  it('refuse whitespace, which a number parser read as 0 and so turned a limit off', () => {
    for (const value of [' ', '\t', ' 30', '30 ', '30\n']) {
      expect(problem({ RZ_CREATE_RATE: value })).to.equal(
        `RZ_CREATE_RATE must be an integer from 0 to 1000000 (got ${JSON.stringify(value)}: whitespace around the value is not accepted)`,
      );
    }
    expect(problem({ RZ_METRICS_PORT: ' 9100' })).to.include('whitespace around the value is not accepted');
  });

  it('take digits only: no hex, sign, decimal point or exponent', () => {
    for (const value of ['0x1f90', '+8080', '-0', '8080.0', '8e3', 'Infinity', '0b1', '８０８０']) {
      expect(problem({ PORT: value })).to.equal(
        `PORT must be a port number from 0 to 65535 (got ${JSON.stringify(value)}: only digits are accepted, no sign, decimal point, exponent or hex)`,
      );
    }
  });

  it('say when digits are out of range, and accept what is in range', () => {
    expect(problem({ PORT: '65536' })).to.equal(
      'PORT must be a port number from 0 to 65535 (got "65536": out of range)',
    );
    expect(problem({ RZ_TTL_SECONDS: '0' })).to.include('(got "0": out of range)');
    const c = loadConfig({ PORT: '8081', RZ_CREATE_RATE: '0', RZ_METRICS_PORT: '9100', RZ_TTL_SECONDS: '0060' });
    expect(c).to.include({ port: 8081, createRate: 0, metricsPort: 9100, ttlSeconds: 60 });
    // Empty is unset, as for every setting: the default applies.
    expect(loadConfig({ RZ_CREATE_RATE: '' }).createRate).to.equal(30);
  });
});

describe('secrets in configuration errors', () => {
  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
    } catch (err) {
      return (err as ConfigError).problems;
    }
    throw new Error(`${JSON.stringify(env)} was accepted`);
  };

  it('mask the password of a bad Redis URL, and of any other URL setting', () => {
    expect(problems({ REDIS_URL: 'redis://rz:s3cret@redis.internal:99999' })).to.deep.equal([
      'REDIS_URL must be a redis:// or rediss:// URL (got "redis://rz:***@redis.internal:99999")',
    ]);
    for (const [name, value] of [
      ['REDIS_URL', 'redis://:s3cret@[redis'],
      ['REDIS_URL', 'http://rz:s3cret@redis.internal'],
      ['REDIS_URL', 'redis//rz:s3c@ret@redis.internal'],
      ['RZ_HOMESERVER_URL', 'ftp://rz:s3cret@hs.example'],
      ['RZ_PUBLIC_BASE_URL', 'ws://rz:s3cret@rz.example'],
      ['RZ_MSC4108_DELEGATE_URL', 'mailto:rz:s3cret@rz.example'],
    ]) {
      const [line] = problems({ [name]: value });
      expect(line, value)
        .to.match(new RegExp(`^${name} must be `))
        .and.include(':***@');
      expect(line, value).to.not.include('s3c');
    }
  });

  it('mask a password in a Sentinel or Cluster node list, which takes no URLs but gets them pasted', () => {
    for (const name of ['RZ_REDIS_SENTINELS', 'RZ_REDIS_CLUSTER_NODES']) {
      const [line] = problems({ [name]: 'redis://:s3cret@n1:26379,n2:26379,admin:s3cret@n3:26379' });
      expect(line, name).to.equal(
        `${name} must be a comma-separated list of host:port (got "redis://:***@n1:26379,n2:26379,admin:***@n3:26379")`,
      );
    }
  });

  it('never show a password setting, even a malformed one', () => {
    for (const name of ['RZ_REDIS_PASSWORD', 'RZ_REDIS_SENTINEL_PASSWORD']) {
      expect(problems({ [name]: '  \t ' })).to.deep.equal([`${name} must be a password (got (value hidden))`]);
    }
  });

  it('are masked by the CLI too, which exits 2', () => {
    const cli = startWith({ REDIS_URL: 'redis://rz:s3cret@redis.internal:99999', RZ_CREATE_RATE: ' ' });
    expect(cli.status).to.equal(2);
    expect(cli.stderr).to.include('redis://rz:***@redis.internal:99999').and.include('RZ_CREATE_RATE must be');
    expect(cli.stderr + cli.stdout).to.not.include('s3cret');
  });

  it('stay out of the logs when Redis refuses the password', async function () {
    this.timeout(20_000);
    const redis = await RedisServer.start(['--requirepass', 'the-right-one']);
    try {
      // The URL's password is overridden by RZ_REDIS_PASSWORD; neither may show up anywhere.
      const replica = await Replica.start({
        REDIS_URL: `redis://default:url-s3cret@127.0.0.1:${redis.port}`,
        RZ_REDIS_PASSWORD: 'setting-s3cret',
        LOG_LEVEL: 'debug',
      });
      const res = await req(`${replica.url}/`, { method: 'POST', body: 'x' });
      expect(res.status).to.equal(503);
      // Readiness says why the store was never reached, by category.
      const ready = await req(`${replica.url}/ready`);
      expect(ready.status).to.equal(503);
      expect(((await ready.json()) as { storeProblem: string }).storeProblem).to.include('refused the credentials');
      await replica.stop();
      const logged = JSON.stringify(replica.logs);
      expect(logged).to.include('WRONGPASS');
      expect(logged).to.not.include('s3cret');
    } finally {
      await redis.destroy();
    }
  });
});

describe('configuration mistakes', () => {
  const problemsOf = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
    } catch (err) {
      return (err as ConfigError).problems;
    }
    return [];
  };

  it('names every bad entry of RZ_TRUSTED_PROXIES at once', () => {
    const problems = problemsOf({ RZ_TRUSTED_PROXIES: '10.0.0.0/8, 10.0.0.0/33, proxy, ::1' });
    expect(problems).to.have.length(1);
    expect(problems[0]).to.include('not IP addresses or CIDR ranges: 10.0.0.0/33, proxy');
  });

  it('refuses a base URL with a query, a fragment or credentials, which every session URL would carry', () => {
    for (const url of ['https://rz.example.org/path?q=1', 'https://rz.example.org/?', 'https://rz.example.org#top']) {
      expect(problemsOf({ RZ_PUBLIC_BASE_URL: url }), url).to.deep.equal([
        `RZ_PUBLIC_BASE_URL must be an absolute http(s) URL (got ${JSON.stringify(url)}: no query or fragment: paths are appended to it)`,
      ]);
    }
    const withPassword = problemsOf({ RZ_PUBLIC_BASE_URL: 'https://user:hunter2@rz.example.org' });
    expect(withPassword).to.have.length(1);
    expect(withPassword[0]).to.include('no user name or password in it').and.not.include('hunter2');
    expect(problemsOf({ RZ_HOMESERVER_URL: 'https://hs.example.org/?x=1' })[0]).to.include('RZ_HOMESERVER_URL');
    // The delegate URL goes to every client in Location; a peer's error line must not show a password.
    const delegate = problemsOf({ RZ_MSC4108_DELEGATE_URL: 'https://u:hunter2@rz.example.org/x' });
    expect(delegate).to.have.length(1);
    expect(delegate[0]).to.include('no user name or password in it').and.not.include('hunter2');
    const peers = problemsOf({
      RZ_REGION: 'eu',
      RZ_REGION_PEERS: 'us=http://admin:hunter2@rz-us.internal',
      RZ_REGION_SECRET: '0123456789abcdef',
    });
    expect(peers.join('\n')).to.include('user name or password').and.include('admin:***@').and.not.include('hunter2');
    expect(problemsOf({ RZ_PUBLIC_BASE_URL: 'https://rz.example.org/rendezvous/' })).to.deep.equal([]);
  });

  it('refuses a base URL with white space, which would reach clients unencoded in every session URL', () => {
    for (const url of ['https://rz.example.org/r z', 'https://rz.example.org/a b/c']) {
      expect(problemsOf({ RZ_PUBLIC_BASE_URL: url }), url).to.deep.equal([
        `RZ_PUBLIC_BASE_URL must be an absolute http(s) URL (got ${JSON.stringify(url)}: no white space: it reaches clients as it is written)`,
      ]);
    }
    expect(problemsOf({ RZ_MSC4108_DELEGATE_URL: 'https://rz.example.org/a b' })[0]).to.include('no white space');
    expect(problemsOf({ RZ_PUBLIC_BASE_URL: 'https://rz.example.org/r%20z' })).to.deep.equal([]);
  });

  it('refuses Redis settings that would be ignored: no Redis, TLS files without TLS, Sentinel settings elsewhere', () => {
    expect(problemsOf({ RZ_REDIS_PASSWORD: 'x', RZ_REDIS_TLS: 'true' })).to.deep.equal([
      'RZ_REDIS_TLS, RZ_REDIS_PASSWORD are set, but no Redis is: set REDIS_URL, RZ_REDIS_SENTINELS or RZ_REDIS_CLUSTER_NODES (without one, sessions are kept in memory)',
    ]);
    expect(problemsOf({ REDIS_URL: 'redis://r:6379', RZ_REDIS_TLS_CA_FILE: PEM_FILE })).to.deep.equal([
      'RZ_REDIS_TLS_CA_FILE is set, but TLS to Redis is off: set RZ_REDIS_TLS=true or use a rediss:// URL',
    ]);
    expect(problemsOf({ REDIS_URL: 'rediss://r:6380', RZ_REDIS_TLS_CA_FILE: PEM_FILE })).to.deep.equal([]);
    expect(
      problemsOf({ RZ_REDIS_CLUSTER_NODES: 'n:7000', RZ_REDIS_TLS: 'true', RZ_REDIS_TLS_CA_FILE: PEM_FILE }),
    ).to.deep.equal([]);
    expect(problemsOf({ RZ_REDIS_CLUSTER_NODES: 'n:7000', RZ_REDIS_SENTINEL_PASSWORD: 'x' })).to.deep.equal([
      'RZ_REDIS_SENTINEL_PASSWORD is set, but Sentinel settings apply only with RZ_REDIS_SENTINELS',
    ]);
    // Turning TLS off where there is no Redis says nothing wrong.
    expect(problemsOf({ RZ_REDIS_TLS: 'false' })).to.deep.equal([]);
  });

  it('refuses a HOST that is neither a host name nor an IP address, and names HOST when it cannot listen', () => {
    for (const host of ['not_a_host!', '[::1]', 'a b']) {
      expect(problemsOf({ HOST: host }), host).to.deep.equal([
        `HOST must be a host name or IP address (got ${JSON.stringify(host)})`,
      ]);
    }
    for (const host of ['localhost', '127.0.0.1', '::1', 'rz-0.rz.svc.cluster.local', 'stack_rendezvous_1']) {
      expect(problemsOf({ HOST: host }), host).to.deep.equal([]);
    }
    // An address of no interface here (TEST-NET-1): refused at once, with no name lookup.
    const cli = startWith({ HOST: '192.0.2.1', PORT: '0' });
    expect(cli.status).to.equal(1);
    expect(cli.stderr).to.include('cannot listen on 192.0.2.1, port 0 (HOST, PORT): listen EADDRNOTAVAIL');
  });

  it('stops at once on a port in use, without first waiting for its Redis', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = String((taken.address() as net.AddressInfo).port);
    // Nothing listens on port 1: the client would wait its 5 s for a Redis that never comes.
    const unreachable = { HOST: '127.0.0.1', REDIS_URL: 'redis://127.0.0.1:1' };
    try {
      for (const [env, settings] of [
        [{ PORT: port }, 'HOST, PORT'],
        [{ PORT: '0', RZ_METRICS_PORT: port }, 'HOST, RZ_METRICS_PORT'],
      ] as const) {
        const cli = await startAsync({ ...unreachable, ...env });
        expect(cli.status, settings).to.equal(1);
        expect(cli.stderr).to.include(`cannot listen on 127.0.0.1, port ${port} (${settings}): listen EADDRINUSE`);
        // Stopped before any connection to Redis was tried (whose failure it logs at once, then waits).
        expect(cli.stdout, settings).to.not.include('redis');
      }
    } finally {
      taken.close();
    }
  });

  it('holds the requests that come while it waits for its Redis, and serves them once it stops waiting', async function () {
    this.timeout(20_000);
    const port = await freePort();
    let started = false;
    const starting = startServer({ PORT: String(port), REDIS_URL: 'redis://127.0.0.1:1' }).then((server) => {
      started = true;
      return server;
    });
    // Listening already (the port is taken first), though the store is still awaited: nothing tells
    // when the port is taken, so it is tried until it accepts.
    const probe = await connectWhenListening(port);
    const acceptedWhileStarting = !started;
    probe?.destroy();
    expect(probe, 'listening').to.not.equal(undefined);
    const health = request('GET', `http://127.0.0.1:${port}/health`);
    expect(acceptedWhileStarting, 'accepting while the store is awaited').to.equal(true);
    const server = await starting;
    try {
      // Held, not refused nor dropped: answered by the app once it exists.
      expect((await health).status).to.equal(200);
      const ready = await request('GET', `http://127.0.0.1:${port}/ready`);
      expect([ready.status, ready.json.reason]).to.deep.equal([503, 'session store not reached yet']);
    } finally {
      await server.stop();
    }
  });

  it('does not serve a request held at start whose client has left: it makes no session for nobody', async function () {
    this.timeout(30_000);
    // Its Redis, on a port of its own, is down until the held request's client has gone.
    const redis = await RedisServer.start();
    await redis.stop();
    const port = await freePort();
    // The request as the server receives it, to know when the server has seen its connection close.
    const received = new Promise<http.IncomingMessage>((resolve) => {
      const seen = (message: unknown) => {
        const { request, server } = message as { request: http.IncomingMessage; server: http.Server };
        if ((server.address() as net.AddressInfo | null)?.port !== port) return;
        diagnostics.unsubscribe('http.server.request.start', seen);
        resolve(request);
      };
      diagnostics.subscribe('http.server.request.start', seen);
    });
    // Room for one session: a session made for the held create would take this one's slot.
    const starting = startServer({ PORT: String(port), REDIS_URL: redis.url, RZ_MAX_SESSIONS: '1' });
    const socket = await connectWhenListening(port);
    expect(socket, 'listening').to.not.equal(undefined);
    socket!.on('error', () => undefined);
    socket!.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n');
    const held = await received;
    const closed = new Promise((resolve) => held.once('close', resolve));
    socket!.destroy();
    await closed;
    await redis.resume();
    const server = await starting;
    try {
      await until(
        'the store to be reached',
        async () => (await request('GET', `http://127.0.0.1:${port}/ready`)).status === 200,
      );
      const created = await request('POST', `http://127.0.0.1:${port}/`, {
        headers: { 'Content-Type': 'text/plain' },
        body: 'y',
      });
      expect(created.status, 'a create once started').to.equal(200);
      // Counted as a request whose client left before its turn is: 499.
      const counted = (await server.metrics.httpRequests.get()).values.filter(
        (v) => v.labels.method === 'POST' && v.labels.status === '499',
      );
      expect(counted.map((v) => [v.labels.family, v.value])).to.deep.equal([['msc3886', 1]]);
    } finally {
      await server.stop();
      await redis.destroy();
    }
  });

  it('holds no more than MAX_HELD_AT_START requests while it waits for its Redis: the connection past it is closed', async function () {
    this.timeout(20_000);
    const port = await freePort();
    let started = false;
    const starting = startServer({ PORT: String(port), REDIS_URL: 'redis://127.0.0.1:1' }).then((server) => {
      started = true;
      return server;
    });
    const socket = await connectWhenListening(port);
    expect(socket, 'listening').to.not.equal(undefined);
    const closed = new Promise<boolean>((resolve) => socket!.once('close', () => resolve(!started)));
    socket!.on('error', () => undefined);
    // Pipelined body-less requests, each held until the store is given up on.
    socket!.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(MAX_HELD_AT_START + 1));
    const server = await starting;
    try {
      expect(await closed, 'closed while the store was still awaited').to.equal(true);
      // Nothing else is held up by it: the replica serves once started.
      expect((await request('GET', `http://127.0.0.1:${port}/health`)).status).to.equal(200);
    } finally {
      await server.stop();
    }
  });

  it('refuses a certificate, CA or key file that holds no PEM block, naming the setting', () => {
    const notPem = join(__dirname, '..', 'package.json');
    expect(problemsOf({ REDIS_URL: 'rediss://r:6380', RZ_REDIS_TLS_CA_FILE: notPem })).to.deep.equal([
      `RZ_REDIS_TLS_CA_FILE holds no PEM certificate (${notPem}: no -----BEGIN CERTIFICATE----- block)`,
    ]);
    const region = { RZ_REGION: 'eu', RZ_REGION_SECRET: '0123456789abcdef' };
    expect(problemsOf({ ...region, RZ_REGION_TLS_CA_FILE: notPem })).to.deep.equal([
      `RZ_REGION_TLS_CA_FILE holds no PEM certificate (${notPem}: no -----BEGIN CERTIFICATE----- block)`,
    ]);
    expect(problemsOf({ ...region, RZ_REGION_TLS_CA_FILE: PEM_FILE })).to.deep.equal([]);
    // A key where a CA belongs.
    expect(problemsOf({ ...region, RZ_REGION_TLS_CA_FILE: KEY_FILE })).to.deep.equal([
      `RZ_REGION_TLS_CA_FILE holds no PEM certificate (${KEY_FILE}: no -----BEGIN CERTIFICATE----- block)`,
    ]);
  });

  it('reads every certificate and key it is given: a damaged one, an encrypted key or a mismatched pair is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rz-pem-bad-'));
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const certificate = readFileSync(PEM_FILE, 'utf8');
    // Node's TLS would skip the damaged second certificate without a word.
    const damaged = file(
      'bundle.pem',
      `${certificate}-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n`,
    );
    const tls = { REDIS_URL: 'rediss://r:6380' };
    expect(problemsOf({ ...tls, RZ_REDIS_TLS_CA_FILE: damaged })).to.deep.equal([
      `RZ_REDIS_TLS_CA_FILE holds a certificate that cannot be read (${damaged}, certificate 2: bad base64 decode)`,
    ]);
    const region = { RZ_REGION: 'eu', RZ_REGION_SECRET: '0123456789abcdef', RZ_REGION_TLS_CA_FILE: damaged };
    expect(problemsOf(region)).to.deep.equal([
      `RZ_REGION_TLS_CA_FILE holds a certificate that cannot be read (${damaged}, certificate 2: bad base64 decode)`,
    ]);
    const pair = (cert: string, key: string) =>
      problemsOf({ ...tls, RZ_REDIS_TLS_CERT_FILE: cert, RZ_REDIS_TLS_KEY_FILE: key });
    expect(pair(PEM_FILE, KEY_FILE)).to.deep.equal([]);
    expect(pair(PEM_FILE, OTHER_KEY_FILE)).to.deep.equal([
      'RZ_REDIS_TLS_CERT_FILE and RZ_REDIS_TLS_KEY_FILE do not belong together (key values mismatch)',
    ]);
    // The halves swapped: each is said wrong, and the pair is not compared on top.
    expect(pair(KEY_FILE, PEM_FILE)).to.deep.equal([
      `RZ_REDIS_TLS_CERT_FILE holds no PEM certificate (${KEY_FILE}: no -----BEGIN CERTIFICATE----- block)`,
      `RZ_REDIS_TLS_KEY_FILE holds no private key that can be read (${PEM_FILE}: unsupported)`,
    ]);
    const encrypted = file(
      'encrypted.pem',
      '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n',
    );
    expect(pair(PEM_FILE, encrypted)).to.deep.equal([
      `RZ_REDIS_TLS_KEY_FILE holds an encrypted key (${encrypted}): give it without a passphrase, kept in a Secret`,
    ]);
  });

  it('reports unreadable Redis TLS files and a metrics port equal to PORT with everything else', () => {
    expect(
      problemsOf({
        REDIS_URL: 'rediss://redis.internal:6380',
        RZ_REDIS_TLS_CA_FILE: '/nonexistent/ca.pem',
        RZ_REDIS_TLS_CERT_FILE: '/nonexistent/cert.pem',
        RZ_REDIS_TLS_KEY_FILE: '/nonexistent/key.pem',
        PORT: '9000',
        RZ_METRICS_PORT: '9000',
        RZ_TTL_SECONDS: '0',
      }),
    ).to.have.members([
      'RZ_TTL_SECONDS must be an integer from 1 to 86400 (got "0": out of range)',
      'RZ_REDIS_TLS_CA_FILE cannot be read (/nonexistent/ca.pem: ENOENT)',
      'RZ_REDIS_TLS_CERT_FILE cannot be read (/nonexistent/cert.pem: ENOENT)',
      'RZ_REDIS_TLS_KEY_FILE cannot be read (/nonexistent/key.pem: ENOENT)',
      'RZ_METRICS_PORT must differ from PORT (leave it unset to serve /metrics on the main port)',
    ]);
  });

  it('refuses a REDIS_URL whose path is not a database number (the client would SELECT it and fail)', () => {
    for (const url of ['redis://r:6379/abc', 'redis://u:hunter2@r:6379/sessions', 'redis://r/-1']) {
      const problems = problemsOf({ REDIS_URL: url });
      expect(problems, url).to.have.length(1);
      expect(problems[0], url)
        .to.match(/^REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL \(got ".*": its path is the database number/)
        .and.not.include('hunter2');
    }
    for (const url of ['redis://r:6379', 'redis://r:6379/', 'redis://r:6379/3', 'rediss://u:p@r:6380/15?family=6']) {
      expect(problemsOf({ REDIS_URL: url }), url).to.deep.equal([]);
    }
    // Before, the server started and died of the SELECT's unhandled error once Redis answered.
    const cli = startWith({ REDIS_URL: 'redis://127.0.0.1:1/abc', PORT: '0' });
    expect(cli.status).to.equal(2);
    expect(cli.stderr).to.include('its path is the database number');
  });

  it('refuses a header timeout longer than the request timeout, naming both, with everything else', () => {
    // Node refuses such a server at start with its own words ("headersTimeout" ... "requestTimeout").
    expect(problemsOf({ RZ_HEADERS_TIMEOUT_MS: '40000', RZ_TTL_SECONDS: '0' })).to.deep.equal([
      'RZ_TTL_SECONDS must be an integer from 1 to 86400 (got "0": out of range)',
      'RZ_HEADERS_TIMEOUT_MS (40000) must not exceed RZ_REQUEST_TIMEOUT_MS (30000): the headers are part of the request',
    ]);
    expect(problemsOf({ RZ_HEADERS_TIMEOUT_MS: '40000', RZ_REQUEST_TIMEOUT_MS: '40000' })).to.deep.equal([]);
    const cli = startWith({ RZ_HEADERS_TIMEOUT_MS: '200', RZ_REQUEST_TIMEOUT_MS: '100', PORT: '0' });
    expect(cli.status).to.equal(2);
    expect(cli.stderr).to.include('RZ_HEADERS_TIMEOUT_MS (200) must not exceed RZ_REQUEST_TIMEOUT_MS (100)');
  });

  it('reports a missing homeserver URL together with the other problems', () => {
    try {
      loadConfig({ PORT: 'abc', RZ_CREATE_POLICY: 'authenticated' });
      expect.fail('should throw');
    } catch (err) {
      const problems = (err as ConfigError).problems;
      expect(problems).to.have.length(2);
      expect(problems[1]).to.include('RZ_HOMESERVER_URL');
    }
  });

  it('names RZ_ variables no setting reads (typos), which the CLI warns about at start', () => {
    expect(unknownSettings({ RZ_TTL_SEONDS: '30', RZ_TTL_SECONDS: '30', PATH: '/bin' })).to.deep.equal([
      'RZ_TTL_SEONDS',
    ]);
  });
});
