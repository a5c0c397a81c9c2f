import { expect } from 'chai';
import { runBench, SMOKE, type BenchResults } from '../bench/harness';
import { markdown, targets } from '../bench/report';

/**
 * The benchmark harness still works end to end: it starts its own Redis and replicas, runs every
 * scenario with its load generator (wrk for fixed requests, autocannon for sequences), counts Redis
 * commands per request and memory per session, and renders its report. Seconds-long settings; the
 * figures themselves are not checked.
 */
describe('bench (smoke)', function () {
  this.timeout(90_000);
  let results: BenchResults;
  const progress: string[] = [];

  before(async () => {
    results = await runBench({ ...SMOKE, progress: (line) => progress.push(line) });
  });

  it('measures every scenario for every store, each with its load generator', () => {
    const measured = results.rows.filter((r) => r.available);
    expect(measured.map((r) => `${r.store} ${r.scenario} ${r.m!.tool}`)).to.have.members([
      'redis create wrk',
      'redis poll-200 wrk',
      'redis poll-304 wrk',
      'redis write autocannon',
      'redis exchange autocannon',
      'memory create wrk',
      'memory poll-200 wrk',
      'memory poll-304 wrk',
      'memory write autocannon',
      'memory exchange autocannon',
    ]);
    for (const r of measured) {
      if (r.m!.stalled) {
        // wrk waits for the body a 304's Content-Length announces: reported, not hung on.
        expect(r.scenario, `${r.store} ${r.scenario}`).to.equal('poll-304');
        expect(r.m!.firstError).to.match(/stalled/);
        expect(r.fallback!.requests, `${r.store} ${r.scenario} fallback`).to.be.greaterThan(0);
        expect(r.fallback!.errors, `${r.store} ${r.scenario}: ${r.fallback!.firstError}`).to.equal(0);
        continue;
      }
      expect(r.m!.requests, `${r.store} ${r.scenario}`).to.be.greaterThan(0);
      expect(r.m!.errors, `${r.store} ${r.scenario}: ${r.m!.firstError}`).to.equal(0);
    }
  });

  it('measures the baselines, the commands per request and the memory figures', () => {
    // Interleaved with each wrk scenario, around each autocannon one.
    const interleaved = results.baselines.filter((b) => b.label.startsWith('interleaved with'));
    expect(interleaved.length).to.be.greaterThan(0);
    expect(results.baselines.length).to.be.greaterThan(interleaved.length);
    for (const b of results.baselines) expect(b.m.requests, b.label).to.be.greaterThan(0);
    for (const r of results.rows) expect(r.base!.rps, `${r.store} ${r.scenario}`).to.be.greaterThan(0);
    expect(results.redis.map((r) => r.command)).to.include('GET');
    for (const r of results.redis) expect(r.rps).to.be.greaterThan(0);
    expect(results.commands.map((c) => c.scenario)).to.have.members(['create', 'poll-200', 'poll-304', 'write']);
    for (const c of results.commands) {
      expect(c.requests, c.scenario).to.be.greaterThan(0);
      // Every request sends a command (a few at the window's edges may fall outside it).
      expect(c.perRequest, c.scenario).to.be.greaterThan(0.9);
    }
    const create = results.commands.find((c) => c.scenario === 'create')!;
    // The create script's inner commands are seen, and not counted as the client's.
    expect(create.insideScriptsPerRequest).to.be.greaterThan(0);
    expect(create.byName).to.have.property('EVALSHA');
    const mem = results.memory.redis!;
    for (const fill of [mem.bare, mem.oneAddress, mem.distinctAddresses]) {
      expect(fill.usagePerSession).to.be.greaterThan(SMOKE.memoryPayloadBytes);
      expect(fill.usedMemoryPerSession).to.be.greaterThan(SMOKE.memoryPayloadBytes);
    }
    expect(mem.distinctAddresses.keys['rz:{<id>}']).to.equal(SMOKE.memorySessions);
    expect(results.memory.sessions).to.equal(SMOKE.memorySessions);
  });

  it('measures the floors on the same Redis, each beside bare Node, and names the Koa floor beside the targets', () => {
    expect(results.floors.map((f) => `${f.mode} ${f.scenario} ${f.m.tool}`)).to.deep.equal([
      'http-poll poll-200 wrk',
      'koa-poll poll-200 wrk',
      'koa-create create wrk',
    ]);
    for (const f of results.floors) {
      expect(f.m.requests, f.mode).to.be.greaterThan(0);
      expect(f.m.errors, `${f.mode}: ${f.m.firstError}`).to.equal(0);
      expect(f.base!.rps, f.mode).to.be.greaterThan(0);
      if (process.platform === 'linux') expect(f.m.cpuUsPerRequest?.redis, f.mode).to.be.a('number');
    }
    const md = markdown(results);
    expect(md).to.include('## Floors');
    expect(md).to.match(
      /\| bare Koa \+ ioredis: reads the 1,024-byte body.* \| create \| wrk \| [\d,]+ \| [\d,]+ \| \d+\.\d\d× \|/,
    );
    const poll = targets(results).find((t) => t.what.startsWith('poll, `GET` answered 200'))!;
    expect(poll.measured).to.match(/; bare Koa floor \d+\.\d\d×$/);
  });

  it('renders the tables with ratios to the bare Node baseline, the targets, and reports progress', () => {
    const md = markdown(results);
    // req/s, the bare Node req/s it is compared with, and the ratio.
    expect(md).to.match(/\| MSC3886 \| redis \| active \| poll-200 \| wrk \| [\d,]+ \| [\d,]+ \| \d+\.\d\d× \|/);
    expect(md).to.include('## Targets');
    expect(md).to.include('## Redis commands per request');
    expect(md).to.include(results.machine.cpu);
    expect(targets(results).length).to.be.greaterThan(5);
    expect(progress.some((l) => l.includes('poll-200'))).to.equal(true);
  });
});
