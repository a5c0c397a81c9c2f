import { expect } from 'chai';
import { BACKEND_KINDS, type BackendPair } from '../helpers/backends';

/** The rate-counter contract, on every backend: batches add up, per address and per window. */
for (const kind of BACKEND_KINDS) {
  describe(`rate counters contract: ${kind.name}`, () => {
    let pair: BackendPair;
    before(async () => {
      pair = await kind.make();
    });
    after(async () => {
      await pair?.close();
    });
    // A budget of its own per window: the counters are shared by everything on the same store.
    let budgets = 0;
    const window = () => ({
      budget: `test${++budgets}${Math.random()}`,
      start: Date.now() - (Date.now() % 60_000),
      ms: 60_000,
    });

    it('says whether replicas share the counts', () => {
      expect(pair.a.rates.shared).to.equal(kind.redis);
    });

    it('adds batches from every connection and answers each address its total', async () => {
      const w = window();
      expect(
        await pair.a.rates.add(w, [
          ['192.0.2.1', 3],
          ['192.0.2.2', 1],
        ]),
      ).to.deep.equal([3, 1]);
      expect(
        await pair.b.rates.add(w, [
          ['192.0.2.2', 5],
          ['192.0.2.1', 2],
        ]),
      ).to.deep.equal([6, 5]);
      expect(await pair.a.rates.add(w, [['2001:db8::/64', 7]])).to.deep.equal([7]);
    });

    it('keeps windows apart', async () => {
      const [w1, w2] = [window(), window()];
      await pair.a.rates.add(w1, [['198.51.100.1', 10]]);
      expect(await pair.b.rates.add(w2, [['198.51.100.1', 1]])).to.deep.equal([1]);
    });
  });
}
