import { expect } from 'chai';
import { installed } from './helpers/binaries';
import { REGIONS_SMOKE, runRegionsBench, type RegionsResults } from '../bench/regions';

/**
 * The multi-region bench still works end to end: two regions, the delaying link, wrk and the
 * wake-up rounds, in seconds-long settings. The figures themselves are not checked.
 */
describe('bench, multi-region section (smoke)', function () {
  this.timeout(120_000);
  let results: RegionsResults;
  let md: string;

  before(async function () {
    if (!installed('wrk')) {
      console.log(
        '    NOTICE: wrk is not installed: the multi-region bench smoke run is skipped (.ci/run installs it)',
      );
      this.skip();
    }
    ({ results, markdown: md } = await runRegionsBench(REGIONS_SMOKE));
  });

  it('measures every path and kind without an error, and the wake-ups', () => {
    expect(results.linkRttMs).to.be.greaterThan(2 * REGIONS_SMOKE.delayMs - 1);
    for (const kind of ['poll', 'write'] as const) {
      for (const path of ['local', 'direct over the link', 'forwarded'] as const) {
        expect(results.latency[kind][path].samples).to.equal(
          REGIONS_SMOKE.latencyClients * REGIONS_SMOKE.latencyRequests,
        );
      }
    }
    // Polls by every path and by the bare forwarder (the floor), writes by every path.
    expect(results.throughput.map((t) => `${t.kind} ${t.path}`)).to.have.members([
      'poll local',
      'poll direct over the link',
      'poll forwarded',
      'poll bare forwarder (floor)',
      'write local',
      'write direct over the link',
      'write forwarded',
    ]);
    for (const t of results.throughput) {
      expect(t.rps, `${t.kind} ${t.path}`).to.be.greaterThan(0);
      expect(t.errors, `${t.kind} ${t.path}`).to.equal(0);
    }
    expect(results.wakeup['held across, written at home'].samples).to.equal(REGIONS_SMOKE.wakeRounds);
    expect(results.wakeup['held at home, written across'].samples).to.equal(REGIONS_SMOKE.wakeRounds);
  });

  it('renders its section with the targets', () => {
    expect(md).to.include('## Multi-region');
    expect(md).to.match(/\| forwarded poll p50 ≤ local p50 \+ link round trip \+ 2 ms \|/);
    expect(md).to.match(/\| floor of the row above: .* \| \d+% \| floor \|/);
  });
});
