import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { BACKEND_KINDS, type BackendPair } from '../helpers/backends';

/** The token-verdict cache contract, on every backend: what one replica learned, the other knows. */
for (const kind of BACKEND_KINDS) {
  describe(`token verdict cache contract: ${kind.name}`, () => {
    let pair: BackendPair;
    before(async () => {
      pair = await kind.make();
    });
    after(async () => {
      await pair?.close();
    });
    const hash = () => randomBytes(16).toString('base64url');

    it('remembers each verdict, across connections', async () => {
      const [good, bad, soft] = [hash(), hash(), hash()];
      await pair.a.verdicts.set(good, 'valid', 60_000);
      await pair.a.verdicts.set(bad, 'invalid', 60_000);
      await pair.a.verdicts.set(soft, 'soft_logout', 60_000);
      expect(await pair.b.verdicts.get(good)).to.equal('valid');
      expect(await pair.b.verdicts.get(bad)).to.equal('invalid');
      expect(await pair.b.verdicts.get(soft)).to.equal('soft_logout');
      expect(await pair.b.verdicts.get(hash())).to.equal(undefined);
    });

    it('forgets a verdict when its time is up', async () => {
      const h = hash();
      await pair.a.verdicts.set(h, 'valid', 50);
      // The verdict's own lifetime is what is under test.
      await new Promise((resolve) => setTimeout(resolve, 80));
      expect(await pair.b.verdicts.get(h)).to.equal(undefined);
    });
  });
}
