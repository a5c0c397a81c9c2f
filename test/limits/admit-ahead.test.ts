import { expect } from 'chai';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { AdmitAhead } from '../../src/limits/admit-ahead';

/** Settles every admission; counts the admitted and the refused. */
async function tally(verdicts: (Promise<void> | undefined)[]): Promise<{ admitted: number; refused: number }> {
  let admitted = 0;
  let refused = 0;
  for (const v of verdicts) {
    if (v === undefined) admitted++;
    else
      await v.then(
        () => admitted++,
        (err: unknown) => {
          expect(err).to.be.instanceOf(RateLimiterRes);
          refused++;
        },
      );
  }
  return { admitted, refused };
}

describe('admitting ahead of the shared budget', () => {
  it('lets a client well under budget through without waiting for the budget’s answer', async () => {
    const ahead = new AdmitAhead(new RateLimiterMemory({ points: 100, duration: 60 }), 4);
    // The first request of a window waits: nothing is known about the address yet.
    const first = ahead.admit('a');
    expect(first).to.be.instanceOf(Promise);
    await first;
    for (let i = 0; i < 50; i++) {
      expect(ahead.admit('a'), `request ${i}`).to.equal(undefined);
      // One poll at a time, as a client does: its point is spent before the next one.
      await new Promise((r) => setImmediate(r));
    }
  });

  it('waits for the verdict again near the limit, so a sequential flood gets at most the budget', async () => {
    const ahead = new AdmitAhead(new RateLimiterMemory({ points: 20, duration: 60 }), 4);
    const verdicts: (Promise<void> | undefined)[] = [];
    for (let i = 0; i < 60; i++) {
      const v = ahead.admit('b');
      verdicts.push(v);
      await (v ?? Promise.resolve()).catch(() => {});
      await new Promise((r) => setImmediate(r));
    }
    const { admitted } = await tally(verdicts);
    expect(admitted).to.equal(20);
  });

  it('admits at most maxAhead unanswered requests per address in a burst', async () => {
    const ahead = new AdmitAhead(new RateLimiterMemory({ points: 10, duration: 60 }), 3);
    await ahead.admit('c');
    const burst = Array.from({ length: 100 }, () => ahead.admit('c'));
    expect(burst.filter((v) => v === undefined).length).to.equal(3);
    const { admitted } = await tally(burst);
    // 1 spent before the burst: the budget has 9 left, and the burst never takes more.
    expect(admitted).to.equal(9);
  });

  it('keeps addresses apart and forgets them when their window ends', async () => {
    let now = 1_000_000;
    const ahead = new AdmitAhead(new RateLimiterMemory({ points: 10, duration: 1 }), 2, 2, () => now);
    await ahead.admit('d');
    await ahead.admit('e');
    expect(ahead.size).to.equal(2);
    expect(ahead.admit('d')).to.equal(undefined);
    now += 5000;
    // Window over: the view is stale, so the request waits for a fresh verdict.
    expect(ahead.admit('d')).to.be.instanceOf(Promise);
  });
});
