import { expect } from 'chai';
import { etagOf, type Backend, type CreateInput, type Family, type SessionMeta } from '../../src/store/types';
import { MemorySessions } from '../../src/store/memory';
import { newSessionIds } from '../../src/ids';
import { CAPS_BY_ADDRESS_KEY, parseTombstone, sessionKey, txnKey } from '../../src/store/format';
import { BACKEND_KINDS, type BackendPair } from '../helpers/backends';
import { until } from '../helpers/topologies';

const TTL = 60_000;
const buf = (s: string) => Buffer.from(s);

/** The session store contract, on every backend: every answer of every family rests on it. */
for (const kind of BACKEND_KINDS) {
  describe(`session store contract: ${kind.name}`, () => {
    let pair: BackendPair;
    let a: Backend['sessions'];
    let b: Backend['sessions'];
    before(async () => {
      pair = await kind.make();
      a = pair.a.sessions;
      b = pair.b.sessions;
    });
    after(async () => {
      await pair?.close();
    });

    async function created(data = 'hello', family: Family = 'msc3886', ttlMs = TTL): Promise<SessionMeta> {
      const result = await a.create({
        ...newSessionIds(),
        family,
        contentType: 'application/json',
        data: buf(data),
        ttlMs,
        owner: '',
      });
      expect(result.status).to.equal('created');
      return (result as { session: SessionMeta }).session;
    }

    it('creates a session readable byte-exact with its metadata', async () => {
      const bytes = Buffer.from([0, 1, 2, 255, 254, 0x80, 10, 13]);
      const ids = newSessionIds();
      const result = await a.create({
        ...ids,
        family: 'msc3886',
        contentType: 'application/x-test; q=1',
        data: bytes,
        ttlMs: TTL,
        owner: '192.0.2.1',
      });
      expect(result.status).to.equal('created');
      const meta = (result as { session: SessionMeta }).session;
      expect(meta).to.include({
        id: ids.id,
        tag: ids.tag,
        rev: 1,
        family: 'msc3886',
        contentType: 'application/x-test; q=1',
      });
      expect(meta.expiresAt - meta.createdAt).to.equal(TTL);
      const got = await b.get(ids.id, 'msc3886');
      expect(got!.data.equals(bytes)).to.equal(true);
      expect(got).to.include({
        rev: 1,
        tag: ids.tag,
        contentType: 'application/x-test; q=1',
        expiresAt: meta.expiresAt,
      });
    });

    it('refuses to create over an existing id', async () => {
      const meta = await created();
      const again = await a.create({
        id: meta.id,
        tag: 'x',
        family: 'msc3886',
        contentType: 't',
        data: buf('other'),
        ttlMs: TTL,
        owner: '',
      });
      expect(again).to.deep.equal({ status: 'taken' });
      expect((await b.get(meta.id, 'msc3886'))!.data.toString()).to.equal('hello');
    });

    it('hides a session from every other family', async () => {
      const meta = await created('x', 'msc4388');
      expect(await b.get(meta.id, 'msc3886')).to.equal(null);
      expect(await b.get(meta.id, 'msc4108')).to.equal(null);
      const upd = await a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 't',
        data: buf('y'),
      });
      expect(upd.status).to.equal('not_found');
      expect(await a.delete(meta.id, 'msc4108')).to.equal(false);
      expect((await b.get(meta.id, 'msc4388'))!.data.toString()).to.equal('x');
    });

    it('answers not found for unknown ids', async () => {
      const { id } = newSessionIds();
      expect(await b.get(id, 'msc3886')).to.equal(null);
      expect(
        (await a.update(id, { family: 'msc3886', condition: { kind: 'any' }, contentType: 't', data: buf('') })).status,
      ).to.equal('not_found');
      expect(await a.delete(id, 'msc3886')).to.equal(false);
    });

    it('writes unconditionally, bumping the revision even for identical bytes', async () => {
      const meta = await created('same');
      const r1 = await a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 'text/x',
        data: buf('same'),
      });
      expect(r1.status).to.equal('updated');
      if (r1.status !== 'updated') return;
      expect(r1.session.rev).to.equal(2);
      expect(etagOf(r1.session)).to.not.equal(etagOf(meta));
      expect(r1.session.expiresAt).to.equal(meta.expiresAt);
      const got = await b.get(meta.id, 'msc3886');
      expect(got).to.include({ rev: 2, contentType: 'text/x' });
    });

    it('compares ETags and leaves the payload untouched on a mismatch', async () => {
      const meta = await created('v1');
      const miss = await a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: ['nope.1', `${meta.tag}.7`] },
        contentType: 't',
        data: buf('v2'),
      });
      expect(miss.status).to.equal('conflict');
      if (miss.status === 'conflict') expect(miss.session.rev).to.equal(1);
      expect((await b.get(meta.id, 'msc3886'))!.data.toString()).to.equal('v1');
      const hit = await a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: ['nope.1', etagOf(meta)] },
        contentType: 't',
        data: buf('v2'),
      });
      expect(hit.status).to.equal('updated');
      expect((await b.get(meta.id, 'msc3886'))!.data.toString()).to.equal('v2');
    });

    it('lets exactly one of many racing writers on one ETag win', async () => {
      const meta = await created('start');
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          (i % 2 === 0 ? a : b).update(meta.id, {
            family: 'msc3886',
            condition: { kind: 'etag', etags: [etagOf(meta)] },
            contentType: 't',
            data: buf(`writer-${i}`),
          }),
        ),
      );
      const winners = results.map((r, i) => [r.status, i] as const).filter(([s]) => s === 'updated');
      expect(winners).to.have.length(1);
      expect(results.filter((r) => r.status === 'conflict')).to.have.length(15);
      expect((await b.get(meta.id, 'msc3886'))!.data.toString()).to.equal(`writer-${winners[0]![1]}`);
    });

    it('compares sequence tokens and treats a stale token with identical data as a retry', async () => {
      const meta = await created('', 'msc4388');
      const w = await a.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1' },
        contentType: 't',
        data: buf('m1'),
      });
      expect(w.status).to.equal('updated');
      const retry = await b.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1' },
        contentType: 't',
        data: buf('m1'),
      });
      expect(retry.status).to.equal('unchanged');
      if (retry.status === 'unchanged') expect(retry.session.rev).to.equal(2);
      const stale = await b.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1' },
        contentType: 't',
        data: buf('m2'),
      });
      expect(stale.status).to.equal('conflict');
      const got = await b.get(meta.id, 'msc4388');
      expect(got).to.include({ rev: 2 });
      expect(got!.data.toString()).to.equal('m1');
    });

    it('replays the recorded outcome of a repeated transaction id, a conflict included', async () => {
      const meta = await created('', 'msc4388');
      const put = (rev: string, txnId: string, data: string, store = a) =>
        store.update(meta.id, {
          family: 'msc4388',
          condition: { kind: 'token', rev, txnId },
          contentType: 't',
          data: buf(data),
        });
      expect((await put('1', 't1', 'a')).status).to.equal('updated');
      expect((await put('1', 't2', 'b')).status).to.equal('conflict');
      expect((await put('2', 't3', 'c')).status).to.equal('updated');
      const r1 = await put('1', 't1', 'a', b);
      expect(r1).to.deep.include({ status: 'replayed', outcome: 'updated', rev: 2 });
      const r2 = await put('3', 't2', 'zzz', b);
      expect(r2).to.deep.include({ status: 'replayed', outcome: 'conflict', rev: 2 });
      expect((await b.get(meta.id, 'msc4388'))!.data.toString()).to.equal('c');
    });

    it('bounds the transaction ids remembered per session', async () => {
      const meta = await created('', 'msc4388');
      for (let i = 0; i < 4; i++) {
        await a.update(meta.id, {
          family: 'msc4388',
          condition: { kind: 'token', rev: '99', txnId: `t${i}` },
          contentType: 't',
          data: buf('x'),
        });
      }
      const over = await a.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1', txnId: 'new' },
        contentType: 't',
        data: buf('x'),
      });
      expect(over.status).to.equal('txn_limit');
      expect((await b.get(meta.id, 'msc4388'))!.rev).to.equal(1);
    });

    it('deletes a session, its records included', async () => {
      const meta = await created('', 'msc4388');
      await a.update(meta.id, {
        family: 'msc4388',
        condition: { kind: 'token', rev: '1', txnId: 't' },
        contentType: 't',
        data: buf('x'),
      });
      expect(await a.delete(meta.id, 'msc4388')).to.equal(true);
      expect(await b.get(meta.id, 'msc4388')).to.equal(null);
      expect(await b.delete(meta.id, 'msc4388')).to.equal(false);
      if (pair.inspect) {
        expect(await pair.inspect.exists(txnKey(meta.id))).to.equal(0);
        // Nothing of the session is left but, on Cluster, a tombstone naming its owner and expiry.
        const left = await pair.inspect.get(sessionKey(meta.id));
        if (left !== null) expect(parseTombstone(left)).to.deep.equal({ owner: '-', expiresAt: meta.expiresAt });
      }
    });

    it('expires a session at its expiry, never extended by writes', async () => {
      const liveBefore = (await b.counts()).live;
      // Long enough that the write surely lands before the expiry, on a busy machine too.
      const meta = await created('short', 'msc3886', 1000);
      const w = await a.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'any' },
        contentType: 't',
        data: buf('x'),
      });
      expect(w.status).to.equal('updated');
      if (w.status === 'updated') expect(w.session.expiresAt).to.equal(meta.expiresAt);
      if (pair.inspect) expect(await pair.inspect.pexpiretime(sessionKey(meta.id))).to.equal(meta.expiresAt);
      // Wait for the deadline itself (the event under test), then look from every side.
      await new Promise((r) => setTimeout(r, meta.expiresAt - Date.now() + 20));
      expect(await b.get(meta.id, 'msc3886')).to.equal(null);
      expect(
        (
          await a.update(meta.id, {
            family: 'msc3886',
            condition: { kind: 'any' },
            contentType: 't',
            data: buf('y'),
          })
        ).status,
      ).to.equal('not_found');
      if (pair.inspect) expect(await pair.inspect.exists(sessionKey(meta.id))).to.equal(0);
      // The store-wide count lets it go on the store's own clock, to the second: wait for that here,
      // or a later test that counts sessions sees the count drop under it.
      await until(
        'the store-wide count to let the expired session go',
        async () => (await b.counts()).live === liveBefore,
      );
    });

    it('answers the verbatim re-send of an ETag write that landed as unchanged, writing nothing', async () => {
      const meta = await created('v1');
      const write = (etag: string, data: string, contentType = 'text/x') =>
        a.update(meta.id, {
          family: 'msc3886',
          condition: { kind: 'etag', etags: [etag] },
          contentType,
          data: buf(data),
        });
      const first = await write(etagOf(meta), 'v2');
      expect(first.status).to.equal('updated');
      // Its answer was lost; the client sends the very same request again, through another replica.
      const again = await b.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: [etagOf(meta)] },
        contentType: 'text/x',
        data: buf('v2'),
      });
      expect(again.status).to.equal('unchanged');
      if (again.status === 'unchanged') expect(again.session.rev).to.equal(2);
      // Anything but the very same write on the version just before is still a conflict.
      expect((await write(etagOf(meta), 'other')).status).to.equal('conflict');
      expect((await write(etagOf(meta), 'v2', 'text/other')).status).to.equal('conflict');
      expect((await write(etagOf({ tag: meta.tag, rev: 3 }), 'v2')).status).to.equal('conflict');
      expect((await write(etagOf({ tag: 'elsewhere', rev: 1 }), 'v2')).status).to.equal('conflict');
      expect((await write(etagOf({ tag: meta.tag, rev: 2 }), 'v3')).status).to.equal('updated');
      // Two writes later, the first one's re-send names a version two back: a conflict.
      expect((await write(etagOf(meta), 'v2')).status).to.equal('conflict');
      const got = await b.get(meta.id, 'msc3886');
      expect(got).to.include({ rev: 3 });
      expect(got!.data.toString()).to.equal('v3');
    });

    it('takes no re-send on a session never written: no version came before its first', async () => {
      const meta = await created('v1');
      // The ETag of "revision 0" was never handed out, yet its form is plain from the first one.
      const result = await b.update(meta.id, {
        family: 'msc3886',
        condition: { kind: 'etag', etags: [etagOf({ tag: meta.tag, rev: 0 })] },
        contentType: 'application/json',
        data: buf('v1'),
      });
      expect(result.status).to.equal('conflict');
    });

    it('counts live sessions store-wide, on its own clock', async () => {
      const before = await b.counts();
      const one = await created('one');
      await created('two');
      expect((await b.counts()).live).to.equal(before.live + 2);
      expect(await a.delete(one.id, 'msc3886')).to.equal(true);
      expect((await b.counts()).live).to.equal(before.live + 1);
    });
  });
}

for (const kind of BACKEND_KINDS) {
  describe(`session caps contract: ${kind.name}`, function () {
    this.timeout(30_000);
    let pair: BackendPair | undefined;
    afterEach(async () => {
      await pair?.close();
      pair = undefined;
    });

    /** A fresh pair whose caps count nothing yet. */
    async function withCaps(global: number, perAddress: number) {
      pair = await kind.make({ caps: { global, perAddress } });
      await pair.resetCaps();
      return pair;
    }

    const input = (owner: string, ttlMs = TTL): CreateInput => ({
      ...newSessionIds(),
      family: 'msc3886',
      contentType: 't',
      data: buf('x'),
      ttlMs,
      owner,
    });

    it('refuses past the global cap, never evicting, and frees a slot when a session is deleted', async () => {
      const { a, b } = await withCaps(3, 0);
      const made: SessionMeta[] = [];
      for (const owner of ['192.0.2.1', '192.0.2.2', '']) {
        const r = await a.sessions.create(input(owner));
        expect(r.status).to.equal('created');
        made.push((r as { session: SessionMeta }).session);
      }
      const refused = await b.sessions.create(input('192.0.2.3'));
      expect(refused).to.include({ status: 'capped', cap: 'global' });
      expect((refused as { retryAfterMs: number }).retryAfterMs).to.be.within(1, TTL + 1000);
      for (const m of made) expect(await b.sessions.get(m.id, 'msc3886')).to.not.equal(null);
      expect(await b.sessions.delete(made[2]!.id, 'msc3886')).to.equal(true);
      expect((await b.sessions.create(input('192.0.2.3'))).status).to.equal('created');
    });

    it('refuses past the per-address cap for that address only, and frees it on delete from anywhere', async () => {
      const { a, b } = await withCaps(0, 2);
      const first = await a.sessions.create(input('198.51.100.1'));
      expect((await b.sessions.create(input('198.51.100.1'))).status).to.equal('created');
      const refused = await a.sessions.create(input('198.51.100.1'));
      expect(refused).to.include({ status: 'capped', cap: 'address' });
      expect((await a.sessions.create(input('198.51.100.2'))).status).to.equal('created');
      // Unknown addresses are not counted per address.
      for (let i = 0; i < 3; i++) expect((await a.sessions.create(input(''))).status).to.equal('created');
      const id = (first as { session: SessionMeta }).session.id;
      expect(await b.sessions.delete(id, 'msc3886')).to.equal(true);
      expect((await a.sessions.create(input('198.51.100.1'))).status).to.equal('created');
      // A failed delete frees nothing.
      expect(await b.sessions.delete(id, 'msc3886')).to.equal(false);
      expect((await a.sessions.create(input('198.51.100.1'))).status).to.equal('capped');
    });

    it('holds both caps exactly under 200 racing creates through two connections', async () => {
      const { a, b } = await withCaps(30, 10);
      const owners = ['203.0.113.1', '203.0.113.2', '203.0.113.3', '203.0.113.4'];
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).sessions.create(input(owners[i % 4]!))),
      );
      const createdBy = owners.map((_, k) => results.filter((r, i) => i % 4 === k && r.status === 'created').length);
      expect(createdBy.reduce((x, y) => x + y)).to.equal(30);
      for (const n of createdBy) expect(n).to.be.at.most(10);
      expect(results.filter((r) => r.status === 'capped')).to.have.length(170);
      expect((await a.sessions.counts()).live).to.equal(30);
    });

    it("counts an address's sessions exactly over many expiry seconds, made in any order, deleted from anywhere", async () => {
      const { a, b } = await withCaps(0, 12);
      const owner = '192.0.2.77';
      // Twelve distinct seconds of expiry: newest first, then older ones (a shorter time to live),
      // then one more in a second already counted.
      const ttls = [60, 50, 40, 30, 59, 58, 45, 20, 35, 25, 55].map((s) => s * 1000 + 500);
      const made: SessionMeta[] = [];
      for (const [i, ttl] of ttls.entries()) {
        const r = await (i % 2 === 0 ? a : b).sessions.create(input(owner, ttl));
        expect(r.status, `create ${i}`).to.equal('created');
        made.push((r as { session: SessionMeta }).session);
      }
      const twin = await a.sessions.create(input(owner, 40_500));
      expect(twin.status).to.equal('created');
      made.push((twin as { session: SessionMeta }).session);
      const refused = await b.sessions.create(input(owner, 60_500));
      expect(refused).to.include({ status: 'capped', cap: 'address' });
      // The soonest slot to free is the shortest-lived session's (20.5 s).
      expect((refused as { retryAfterMs: number }).retryAfterMs).to.be.within(19_000, 22_000);
      // Deleting the newest, the oldest, one in the middle and one of the two sharing a second frees
      // exactly that many slots, whichever connection deletes.
      for (const [i, k] of [0, 7, 3, 11].entries()) {
        expect(await (i % 2 === 0 ? a : b).sessions.delete(made[k]!.id, 'msc3886'), `delete ${k}`).to.equal(true);
      }
      for (let i = 0; i < 4; i++) {
        expect((await b.sessions.create(input(owner, (10 + i) * 1000))).status, `again ${i}`).to.equal('created');
      }
      expect((await a.sessions.create(input(owner))).status).to.equal('capped');
      // The shortest-lived now is one of the four just made (10.0 s).
      const again = await a.sessions.create(input(owner));
      expect((again as { retryAfterMs: number }).retryAfterMs).to.be.within(8_000, 11_000);
    });

    if (kind.redis) {
      it("reads an address's count written by the previous release, and keeps counting it exactly", async () => {
        const { a, inspect } = await withCaps(0, 8);
        const owner = '192.0.2.88';
        // The previous release's form: ascending, no header, six seconds of expiry.
        const now = Math.ceil(Date.now() / 1000);
        const seconds = [30, 31, 32, 40, 41, 50].map((s) => now + s);
        await inspect!.hset(CAPS_BY_ADDRESS_KEY, owner, seconds.map((sec) => `${sec}:1`).join(' '));
        expect((await a.sessions.create(input(owner, 20_000))).status).to.equal('created');
        expect((await a.sessions.create(input(owner, 60_000))).status).to.equal('created');
        expect(await a.sessions.create(input(owner))).to.include({ status: 'capped', cap: 'address' });
        const stored = (await inspect!.hget(CAPS_BY_ADDRESS_KEY, owner))!;
        const counts = [...stored.matchAll(/(\d+):(\d+)/g)].map((m) => Number(m[2]));
        expect(counts.reduce((x, y) => x + y)).to.equal(8);
        expect(stored).to.match(/^8 \d+\|/);
      });

      it("keeps a busy address's list exact whether a create lands in its newest second, a new one or an older one", async () => {
        const { a, b, inspect } = await withCaps(0, 1000);
        const owner = '192.0.2.89';
        const now = Math.ceil(Date.now() / 1000);
        // Headed, newest first: six seconds of two sessions each, the oldest 50 s away.
        const listed = [100, 90, 80, 70, 60, 50].map((s) => `${now + s}:2`).join(' ');
        await inspect!.hset(CAPS_BY_ADDRESS_KEY, owner, `12 ${now + 50}|${listed}`);
        const read = async () => {
          const stored = (await inspect!.hget(CAPS_BY_ADDRESS_KEY, owner))!;
          const [, total, oldest] = /^(\d+) (\d+)\|/.exec(stored)!;
          const entries = [...stored.matchAll(/(\d+):(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
          const seconds = entries.map(([sec]) => sec);
          expect(seconds, stored).to.deep.equal([...seconds].sort((x, y) => y - x));
          expect(new Set(seconds).size, stored).to.equal(seconds.length);
          expect(Number(oldest), stored).to.be.at.most(Math.min(...seconds));
          expect(
            entries.reduce((sum, [, n]) => sum + n, 0),
            stored,
          ).to.equal(Number(total));
          return { stored, total: Number(total) };
        };
        const made: SessionMeta[] = [];
        const create = async (ttlMs: number) => {
          const result = await a.sessions.create(input(owner, ttlMs));
          expect(result.status).to.equal('created');
          made.push((result as { session: SessionMeta }).session);
        };
        await create(300_000); // a second newer than any listed: in front
        expect((await read()).stored).to.match(new RegExp(`^13 ${now + 50}\\|\\d+:1 ${listed}$`));
        await create(300_000); // the same second, or the next one
        expect((await read()).total).to.equal(14);
        await create(75_000); // between two listed seconds: sorted in
        const { stored, total } = await read();
        expect(total).to.equal(15);
        expect(stored)
          .to.include(` ${now + 80}:2 `)
          .and.to.include(` ${now + 70}:2 `);
        for (const session of made) expect(await b.sessions.delete(session.id, 'msc3886')).to.equal(true);
        expect(await inspect!.hget(CAPS_BY_ADDRESS_KEY, owner)).to.equal(`12 ${now + 50}|${listed}`);
      });
    }

    it('frees the slots of expired sessions by themselves, once retry_after says', async () => {
      const { a } = await withCaps(1, 1);
      expect((await a.sessions.create(input('192.0.2.9', 1000))).status).to.equal('created');
      const refused = await a.sessions.create(input('192.0.2.10', 1000));
      expect(refused.status).to.equal('capped');
      const wait = (refused as { retryAfterMs: number }).retryAfterMs;
      expect(wait).to.be.within(1, 2100);
      // The one wait here is the session's own lifetime, which is what the test is about.
      await new Promise((r) => setTimeout(r, wait + 20));
      expect((await a.sessions.create(input('192.0.2.10', 1000))).status).to.equal('created');
      expect((await a.sessions.counts()).expired).to.be.at.least(1);
    });
  });
}

describe('memory store housekeeping', () => {
  it('sweeps expired sessions so memory stays bounded', async () => {
    let now = 1_000_000;
    const m = new MemorySessions({ caps: { global: 0, perAddress: 0 }, maxTxnsPerSession: 4, now: () => now });
    for (let i = 0; i < 100; i++) {
      await m.create({
        ...newSessionIds(),
        family: 'msc3886',
        contentType: 't',
        data: buf('x'),
        ttlMs: 1000,
        owner: '',
      });
    }
    expect(m.size).to.equal(100);
    now += 1001;
    m.sweep();
    expect(m.size).to.equal(0);
    expect(await m.counts()).to.deep.equal({ live: 0, expired: 100 });
    m.close();
  });
});
