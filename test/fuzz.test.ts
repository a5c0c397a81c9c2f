import { expect } from 'chai';
import { runFuzz } from './fuzz/harness';

describe('hostile-input suite (short run; `npm run fuzz` for the long one)', function () {
  this.timeout(60_000);

  it('survives 2,000 generated malformed requests: no 5xx but 503, no crash, heap back, sessions intact', async () => {
    const report = await runFuzz(2000, 20260101);
    expect(report.failures).to.deep.equal([]);
    expect(report.sent).to.be.at.least(2000);
  });
});
