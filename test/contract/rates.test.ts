import { expect } from 'chai';
import { RATE_BUCKETS, rateBatchesKey, rateWindowKey } from '../../src/store/format';
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

    it('answers every address of a large batch its own total, in order, whatever the batch order', async () => {
      const w = window();
      const addresses = Array.from({ length: 2000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
      const first = await pair.a.rates.add(
        w,
        addresses.map((a, i) => [a, (i % 7) + 1]),
      );
      expect(first).to.deep.equal(addresses.map((_, i) => (i % 7) + 1));
      const reversed = [...addresses].reverse();
      const second = await pair.b.rates.add(
        w,
        reversed.map((a) => [a, 100]),
      );
      expect(second).to.deep.equal(reversed.map((a) => (addresses.indexOf(a) % 7) + 101));
    });

    if (kind.redis) {
      it("keeps a window's counts of many addresses in compact hashes, with the window's expiry", async () => {
        const w = window();
        const addresses = Array.from({ length: 5000 }, (_, i) => `10.2.${i >> 8}.${i & 255}`);
        const sent = Date.now();
        await pair.a.rates.add(
          w,
          addresses.map((a) => [a, 1]),
        );
        const raw = pair.inspect!;
        let fields = 0;
        for (let bucket = 0; bucket < RATE_BUCKETS; bucket++) {
          const key = rateWindowKey(w.budget, w.start, bucket);
          fields += await raw.hlen(key);
          expect(await raw.object('ENCODING', key), key).to.equal('listpack');
          expect(await raw.pttl(key), key).to.be.within(1, w.start + w.ms - sent + 5000);
        }
        expect(fields).to.equal(5000);
      });
    }

    it('adds a batch sent again (its answer lost: it may have landed) once, answering the totals', async () => {
      const w = window();
      const batch = `batch${Math.random()}`;
      const counts: [string, number][] = [
        ['192.0.2.31', 3],
        ['192.0.2.32', 1],
      ];
      expect(await pair.a.rates.add(w, counts, batch)).to.deep.equal([3, 1]);
      expect(await pair.b.rates.add(w, [['192.0.2.32', 2]], `${batch}.2`)).to.deep.equal([3]);
      // Sent again, from either connection (a replica's next command may take another one).
      expect(await pair.b.rates.add(w, counts, batch)).to.deep.equal([3, 3]);
      expect(await pair.a.rates.add(w, counts, batch)).to.deep.equal([3, 3]);
      // Without an id, every call adds.
      const sent = Date.now();
      expect(await pair.a.rates.add(w, [['192.0.2.31', 1]])).to.deep.equal([4]);
      expect(await pair.a.rates.add(w, [['192.0.2.31', 1]])).to.deep.equal([5]);
      if (kind.redis) {
        // Kept as long as the window's counts, no longer.
        const ttl = await pair.inspect!.pttl(rateBatchesKey(w.budget, w.start));
        expect(ttl).to.be.within(1, w.start + w.ms - sent + 5000);
      }
    });

    it('keeps windows apart, and budgets', async () => {
      const w1 = window();
      await pair.a.rates.add(w1, [['198.51.100.1', 10]]);
      // The same budget's next window counts from nothing.
      const next = { ...w1, start: w1.start + w1.ms };
      expect(await pair.b.rates.add(next, [['198.51.100.1', 1]])).to.deep.equal([1]);
      // So does another budget in the same window.
      expect(await pair.b.rates.add({ ...window(), start: w1.start }, [['198.51.100.1', 1]])).to.deep.equal([1]);
    });
  });
}
