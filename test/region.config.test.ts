import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config';
import { newSessionIds, OPAQUE_ID } from '../src/ids';
import { idPrefixOf, regionOfId } from '../src/region/names';

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
      'The region secret must be at least 16 characters (its value is not shown)',
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
