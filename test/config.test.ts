import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ConfigError, SETTINGS, helpText, loadConfig, unknownSettings } from '../src/config';

const MAIN = join(__dirname, '..', 'dist', 'main.js');

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
    });
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
      expect(problems[0]).to.equal('PORT must be a port number from 0 to 65535 (got "eighty")');
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
    const cli = spawnSync(process.execPath, [MAIN], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, RZ_MAX_BYTES: '-1', PORT: '99999' },
      timeout: 10_000,
    });
    expect(cli.status).to.equal(2);
    const lines = cli.stderr.trim().split('\n');
    expect(lines[0]).to.match(/^rendezvous-server: config error: PORT must be/);
    expect(lines[1]).to.match(/^rendezvous-server: config error: RZ_MAX_BYTES must be/);
    expect(lines[2]).to.include('--help');
  });
});

describe('configuration mistakes', () => {
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
