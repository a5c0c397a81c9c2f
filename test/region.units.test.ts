import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config';
import { newSessionIds, OPAQUE_ID } from '../src/ids';
import pino from 'pino';
import { Lifecycle } from '../src/http/health';
import { Metrics } from '../src/metrics';
import { createRegion } from '../src/region';
import { idPrefixOf, regionOfId } from '../src/region/names';
import { sessionPathParser } from '../src/region/paths';
import { request } from './helpers/http';
import { startServer } from './helpers/server';

const SECRET = 'correct-horse-battery-staple';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  return [];
}

describe('multi-region settings', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'rz-region-config-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('changes nothing when RZ_REGION is unset', () => {
    const c = loadConfig({});
    expect(c.region).to.equal(undefined);
    expect(c.regionPeers).to.deep.equal([]);
    expect(c.regionSecret).to.equal(undefined);
  });

  it('parses the region, its peers (trailing slashes dropped, paths kept) and the secret', () => {
    const c = loadConfig({
      RZ_REGION: 'eu1',
      RZ_REGION_PEERS: ' us=http://rz-us.internal:8080/ , ap=https://rz.example.org/ap ',
      RZ_REGION_SECRET: SECRET,
    });
    expect(c.region).to.equal('eu1');
    expect(c.regionPeers).to.deep.equal([
      { name: 'us', url: 'http://rz-us.internal:8080' },
      { name: 'ap', url: 'https://rz.example.org/ap' },
    ]);
    expect(c.regionSecret).to.equal(SECRET);
    expect(c).to.include({ regionConnectTimeoutMs: 2000, regionResponseTimeoutMs: 5000, regionBreakerFailures: 5 });
  });

  it('refuses a malformed region name or peer entry, naming what it expects', () => {
    expect(problemsOf({ RZ_REGION: 'Europe-West' })).to.deep.equal([
      'RZ_REGION must be a region name: 1 to 16 of a-z and 0-9 (got "Europe-West")',
    ]);
    for (const peers of [
      'us',
      'US=http://x',
      'us=ftp://x',
      'us=http://x/?a=1',
      'us=http://u:p@x',
      'waytoolongregionname=http://x',
    ]) {
      const problems = problemsOf({ RZ_REGION: 'eu', RZ_REGION_PEERS: peers, RZ_REGION_SECRET: SECRET });
      expect(problems, peers).to.have.length(1);
      expect(problems[0]).to.match(/^RZ_REGION_PEERS must be a comma-separated list of name=URL/);
    }
  });

  it('refuses a duplicate peer, its own region among the peers, and peers without a secret, all at once', () => {
    const problems = problemsOf({
      PORT: 'x',
      RZ_REGION: 'eu',
      RZ_REGION_PEERS: 'us=http://a,eu=http://b,us=http://c',
    });
    expect(problems).to.have.length(4);
    expect(problems[0]).to.match(/^PORT must be/);
    expect(problems).to.include("RZ_REGION_PEERS names this replica's own region (eu); list only the other regions");
    expect(problems).to.include('RZ_REGION_PEERS names region us more than once');
    expect(problems).to.include(
      'RZ_REGION_PEERS needs the shared secret: set RZ_REGION_SECRET or RZ_REGION_SECRET_FILE',
    );
  });

  it('refuses peers or a secret without RZ_REGION', () => {
    expect(problemsOf({ RZ_REGION_PEERS: 'us=http://a', RZ_REGION_SECRET: SECRET })).to.deep.equal([
      "RZ_REGION_PEERS, RZ_REGION_SECRET need RZ_REGION (this replica's own region)",
    ]);
  });

  it('reads the secret from RZ_REGION_SECRET_FILE (without its trailing newline)', () => {
    const file = join(dir, 'secret');
    writeFileSync(file, `${SECRET}\n`);
    const c = loadConfig({ RZ_REGION: 'eu', RZ_REGION_PEERS: 'us=http://a', RZ_REGION_SECRET_FILE: file });
    expect(c.regionSecret).to.equal(SECRET);
    expect(problemsOf({ RZ_REGION: 'eu', RZ_REGION_SECRET_FILE: join(dir, 'missing') })).to.deep.equal([
      `RZ_REGION_SECRET_FILE cannot be read (${join(dir, 'missing')}: ENOENT)`,
    ]);
    expect(problemsOf({ RZ_REGION: 'eu', RZ_REGION_SECRET: SECRET, RZ_REGION_SECRET_FILE: file })).to.deep.equal([
      'Set only one of RZ_REGION_SECRET and RZ_REGION_SECRET_FILE',
    ]);
    // Every problem at once: the value given directly is checked too.
    expect(problemsOf({ RZ_REGION: 'eu', RZ_REGION_SECRET: 'short', RZ_REGION_SECRET_FILE: file })).to.deep.equal([
      'Set only one of RZ_REGION_SECRET and RZ_REGION_SECRET_FILE',
      'The region secret (RZ_REGION_SECRET) must be 16 to 1024 characters (its value is not shown)',
    ]);
  });

  it('never shows the secret in an error, from the environment or from a file', () => {
    const weak = 'hunter2-weak';
    const file = join(dir, 'weak');
    writeFileSync(file, weak);
    const envs: Record<string, string>[] = [
      { RZ_REGION: 'eu', RZ_REGION_SECRET: weak },
      { RZ_REGION: 'eu', RZ_REGION_SECRET_FILE: file },
      { RZ_REGION: 'EU', RZ_REGION_SECRET: weak },
    ];
    for (const env of envs) {
      const problems = problemsOf(env);
      expect(problems).to.not.deep.equal([]);
      expect(problems.join('\n')).to.not.include(weak);
    }
    expect(problemsOf({ RZ_REGION: 'eu', RZ_REGION_SECRET: weak })).to.deep.equal([
      'The region secret (RZ_REGION_SECRET) must be 16 to 1024 characters (its value is not shown)',
    ]);
    // One a header cannot carry as it is, or longer than a peer reads: refused at start, not 502 later.
    for (const bad of ['x'.repeat(1025), 'secret with spaces in it', 'sécret-with-an-accent-0123']) {
      const problems = problemsOf({ RZ_REGION: 'eu', RZ_REGION_SECRET: bad });
      expect(problems).to.have.length(1);
      expect(problems[0]).to.not.include(bad);
    }
  });

  it('takes a second, accepted secret (or its file), held to the same rules and only beside the shared one', () => {
    const next = 'the-next-shared-secret-0123456789';
    const file = join(dir, 'accepted');
    writeFileSync(file, `${next}\n`);
    const base = { RZ_REGION: 'eu', RZ_REGION_PEERS: 'us=http://a', RZ_REGION_SECRET: SECRET };
    expect(loadConfig({ ...base, RZ_REGION_ACCEPTED_SECRET: next }).regionAcceptedSecret).to.equal(next);
    expect(loadConfig({ ...base, RZ_REGION_ACCEPTED_SECRET_FILE: file }).regionAcceptedSecret).to.equal(next);
    expect(loadConfig(base).regionAcceptedSecret).to.equal(undefined);
    expect(problemsOf({ RZ_REGION: 'eu', RZ_REGION_ACCEPTED_SECRET: next })).to.deep.equal([
      'RZ_REGION_ACCEPTED_SECRET is accepted beside RZ_REGION_SECRET, which is not set',
    ]);
    expect(
      problemsOf({ ...base, RZ_REGION_ACCEPTED_SECRET: next, RZ_REGION_ACCEPTED_SECRET_FILE: file }),
    ).to.deep.equal(['Set only one of RZ_REGION_ACCEPTED_SECRET and RZ_REGION_ACCEPTED_SECRET_FILE']);
    expect(problemsOf({ ...base, RZ_REGION_ACCEPTED_SECRET: 'hunter2-weak' })).to.deep.equal([
      'The accepted region secret (RZ_REGION_ACCEPTED_SECRET) must be 16 to 1024 characters (its value is not shown)',
    ]);
    expect(problemsOf({ RZ_REGION_ACCEPTED_SECRET: next })).to.deep.equal([
      "RZ_REGION_ACCEPTED_SECRET needs RZ_REGION (this replica's own region)",
    ]);
  });

  it('refuses an unreadable CA file for https peers', () => {
    const missing = join(dir, 'no-ca.pem');
    expect(problemsOf({ RZ_REGION: 'eu', RZ_REGION_TLS_CA_FILE: missing })).to.deep.equal([
      `RZ_REGION_TLS_CA_FILE cannot be read (${missing}: ENOENT)`,
    ]);
  });
});

describe('region-homed ids', () => {
  it('keeps the bare 22 characters (128 bits) without a region', () => {
    const { id } = newSessionIds();
    expect(id).to.match(/^[A-Za-z0-9_-]{22}$/);
    expect(regionOfId(id)).to.equal(undefined);
    expect(idPrefixOf(undefined)).to.equal('');
  });

  it('names the region in front of the same 22 random characters, inside the opaque-id grammar', () => {
    const { id } = newSessionIds(idPrefixOf('eu'));
    expect(id).to.match(/^eu\.[A-Za-z0-9_-]{22}$/);
    expect(id).to.match(OPAQUE_ID);
    expect(regionOfId(id)).to.equal('eu');
    const longest = newSessionIds(idPrefixOf('a'.repeat(16))).id;
    expect(regionOfId(longest)).to.equal('a'.repeat(16));
  });

  it('reads no configurable region from a dotted id whose prefix cannot be one', () => {
    expect(regionOfId('.abc')).to.equal('');
    expect(regionOfId('x'.repeat(17) + '.abc')).to.equal('');
  });
});

describe('region routing: which paths name a session', () => {
  const parse = sessionPathParser(true);

  it('finds the id of every family, on every method a session route answers', () => {
    expect(parse('/eu.abc', 'GET')).to.deep.equal({ id: 'eu.abc', family: 'msc3886' });
    expect(parse('/_matrix/client/unstable/org.matrix.msc3886/rendezvous/eu.abc', 'DELETE')).to.deep.equal({
      id: 'eu.abc',
      family: 'msc3886',
    });
    expect(parse('/_matrix/client/unstable/org.matrix.msc4108/rendezvous/eu.abc', 'PUT')).to.deep.equal({
      id: 'eu.abc',
      family: 'msc4108',
    });
    for (const prefix of ['/_matrix/client/unstable/io.element.msc4388/rendezvous', '/_matrix/client/v1/rendezvous']) {
      expect(parse(`${prefix}/eu.abc`, 'GET')).to.deep.equal({ id: 'eu.abc', family: 'msc4388' });
      expect(parse(`${prefix}/eu.abc/txn-1`, 'PUT')).to.deep.equal({ id: 'eu.abc', family: 'msc4388', txnId: 'txn-1' });
      // The transaction id decoded as the routers decode it (left as it came when it cannot be).
      expect(parse(`${prefix}/eu.abc/t%24`, 'PUT')).to.deep.equal({ id: 'eu.abc', family: 'msc4388', txnId: 't$' });
      expect(parse(`${prefix}/eu.abc/t%E0%A4%A`, 'PUT')?.txnId).to.equal('t%E0%A4%A');
      // `/{id}/{txnId}` is a write path only; anything else there is answered locally (405).
      expect(parse(`${prefix}/eu.abc/txn-1`, 'GET')).to.equal(undefined);
    }
  });

  it('never takes creates, probes, unknown paths or empty ids for a session', () => {
    for (const path of [
      '/',
      '/_matrix/client/v1/rendezvous',
      '/_matrix/client/unstable/org.matrix.msc4108/rendezvous',
      '/_matrix/client/unstable/org.matrix.msc4108/rendezvous/',
      '/_matrix/client/unstable/org.matrix.msc4108/rendezvous/eu.abc/more',
      '/_matrix/client/v3/account/whoami',
      '/a/b',
    ]) {
      expect(parse(path, 'GET'), path).to.equal(undefined);
    }
    // Probes are single root segments, but name no region: they stay local.
    for (const path of ['/health', '/ready', '/metrics'])
      expect(regionOfId(parse(path, 'GET')!.id)).to.equal(undefined);
  });

  it('matches prefixes in any case and takes one trailing slash, as the routers do', () => {
    expect(parse('/eu.abc/', 'GET')).to.deep.equal({ id: 'eu.abc', family: 'msc3886' });
    expect(parse('/_MATRIX/CLIENT/UNSTABLE/ORG.MATRIX.MSC4108/RENDEZVOUS/eu.abc', 'GET')).to.deep.equal({
      id: 'eu.abc',
      family: 'msc4108',
    });
    expect(parse('/_matrix/client/V1/rendezvous/eu.abc/', 'DELETE')).to.deep.equal({
      id: 'eu.abc',
      family: 'msc4388',
    });
    expect(parse('/_matrix/client/v1/rendezvous/eu.abc/txn-1/', 'PUT')).to.deep.equal({
      id: 'eu.abc',
      family: 'msc4388',
      txnId: 'txn-1',
    });
    for (const path of [
      '//',
      '/eu.abc//',
      '/_matrix/client/v1/rendezvous/eu.abc//',
      '/_matrix/client/v1/rendezvous//',
    ]) {
      expect(parse(path, 'PUT'), path).to.equal(undefined);
    }
  });

  it('decodes the id as the routers do, and leaves disabled MSC4388 paths alone', () => {
    expect(parse('/eu%2Eabc', 'GET')).to.deep.equal({ id: 'eu.abc', family: 'msc3886' });
    expect(parse('/%E0%A4%A', 'GET')).to.equal(undefined);
    expect(sessionPathParser(false)('/_matrix/client/v1/rendezvous/eu.abc', 'GET')).to.equal(undefined);
  });
});

describe('a single-region server (no RZ_REGION)', () => {
  it('installs no region middleware at all', () => {
    expect(
      createRegion({
        config: loadConfig({}),
        log: pino({ level: 'silent' }),
        metrics: new Metrics(),
        lifecycle: new Lifecycle(),
      }),
    ).to.equal(undefined);
  });

  it('ignores the forwarding headers, as it did before regions existed', async () => {
    const server = await startServer();
    try {
      const created = await request('POST', `${server.url}/`, { body: 'x' });
      expect(created.json.id).to.match(/^[A-Za-z0-9_-]{22}$/);
      const res = await request('GET', `${server.url}/${created.json.id}`, {
        headers: { 'X-Rendezvous-Forwarded-By': 'eu', 'X-Rendezvous-Forwarded-For': '203.0.113.1' },
      });
      expect(res.status).to.equal(200);
      expect(res.text).to.equal('x');
    } finally {
      await server.stop();
    }
  });
});

describe('the forwarder and the process it runs in', () => {
  it("leaves Node's own fetch working (the HTTP client shares its global dispatcher)", async () => {
    await import('../src/region/forwarder');
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      // What the token check and the tools do: plain requests, an empty body among them.
      const inits: RequestInit[] = [
        {},
        { method: 'POST', body: '' },
        { method: 'PUT', body: 'x', headers: { 'Content-Length': '1', 'Content-Type': 'text/plain' } },
      ];
      for (const init of inits) {
        expect(await (await fetch(url, init)).text()).to.equal('ok');
      }
    } finally {
      server.close();
    }
  });
});
