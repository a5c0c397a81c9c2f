import { expect } from 'chai';
import { runBench, SMOKE, type BenchResults } from '../bench/harness';
import { markdown } from '../bench/report';

/**
 * The benchmark harness still works end to end: it starts its own Redis and replicas, runs every
 * scenario, and renders its report. Seconds-long settings; the figures themselves are not checked.
 */
describe('bench (smoke)', function () {
  this.timeout(60_000);
  let results: BenchResults;
  const progress: string[] = [];

  before(async () => {
    results = await runBench({ ...SMOKE, progress: (line) => progress.push(line) });
  });

  it('measures every scenario for every store without a single error', () => {
    const measured = results.rows.filter((r) => r.available);
    expect(measured.map((r) => `${r.store} ${r.scenario}`)).to.have.members([
      'redis create',
      'redis poll-unchanged',
      'redis write',
      'redis exchange',
      'memory create',
      'memory poll-unchanged',
      'memory write',
      'memory exchange',
    ]);
    for (const r of measured) {
      expect(r.m!.requests, `${r.store} ${r.scenario}`).to.be.greaterThan(0);
      expect(r.m!.errors, `${r.store} ${r.scenario}: ${r.m!.firstError}`).to.equal(0);
    }
  });

  it('measures the bare Node and Redis baselines and the memory figures', () => {
    // One before each family and store, one at the end.
    expect(results.baselines).to.have.length(3);
    for (const b of results.baselines) expect(b.m.requests).to.be.greaterThan(0);
    for (const r of results.rows) expect(r.base!.rps).to.be.greaterThan(0);
    expect(results.redis.map((r) => r.command)).to.include('GET');
    for (const r of results.redis) expect(r.rps).to.be.greaterThan(0);
    expect(results.memory.redis!.usagePerSession).to.be.greaterThan(SMOKE.memoryPayloadBytes);
    expect(results.memory.sessions).to.equal(SMOKE.memorySessions);
  });

  it('renders the table with ratios to the bare Node baseline, and reports progress', () => {
    const md = markdown(results);
    expect(md).to.match(/\| MSC3886 \| redis \| poll-unchanged \| [\d,]+ \| \d+\.\d\d× \|/);
    expect(md).to.include('## Targets');
    expect(md).to.include(results.machine.cpu);
    expect(progress.some((l) => l.includes('poll-unchanged'))).to.equal(true);
  });
});
