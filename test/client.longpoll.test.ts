import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { ConcurrentWriteError, RendezvousClient, RendezvousError, type Family } from '../src/client';
import { startServer, type TestServer } from './helpers/server';
import { waiting } from './helpers/longpoll';

/** A fetch that counts GETs and can tell when the n-th one has been sent. */
function countingFetch() {
  let gets = 0;
  const watchers: { n: number; resolve: () => void }[] = [];
  const f: typeof fetch = (input, init) => {
    if ((init?.method ?? 'GET') === 'GET') {
      gets++;
      for (const w of watchers) if (w.n === gets) w.resolve();
    }
    return fetch(input, init);
  };
  return {
    fetch: f,
    get gets() {
      return gets;
    },
    nthGet: (n: number) => new Promise<void>((resolve) => watchers.push({ n, resolve })),
  };
}

const FAMILIES: Family[] = ['msc3886', 'msc4108', 'msc4388'];

describe('client helper', function () {
  let longPollServer: TestServer;
  let pollingServer: TestServer;
  before(async () => {
    [longPollServer, pollingServer] = await Promise.all([
      startServer({ RZ_LONGPOLL_MAX_WAIT_SECONDS: '300' }),
      startServer({ RZ_LONGPOLL_MAX_WAIT_SECONDS: '0' }),
    ]);
  });
  after(async () => {
    await Promise.all([longPollServer?.stop(), pollingServer?.stop()]);
  });

  it('has no imports, so it runs in browsers as well as in Node', () => {
    const source = readFileSync(join(__dirname, '..', 'src', 'client', 'index.ts'), 'utf8');
    expect(source).to.not.match(/^\s*import\s/m);
    expect(source).to.not.match(/\brequire\(/);
  });

  for (const family of FAMILIES) {
    it(`${family}: receives the other side's write with one held GET when the server long-polls`, async () => {
      const counter = countingFetch();
      const creator = new RendezvousClient({ baseUrl: longPollServer.url, family, waitSeconds: 300 });
      const joiner = new RendezvousClient({
        baseUrl: longPollServer.url,
        family,
        fetch: counter.fetch,
        waitSeconds: 300,
      });
      const mine = await creator.create('hello');
      const theirs = joiner.open(mine.url);
      expect(await theirs.receive()).to.equal('hello');
      const isWaiting = waiting(longPollServer.longPoll);
      const next = theirs.receive();
      await isWaiting;
      await mine.write('world');
      expect(await next).to.equal('world');
      expect(counter.gets).to.equal(2);
      await theirs.write('back');
      expect(await mine.receive()).to.equal('back');
      await mine.delete();
      const gone = await theirs.receive().catch((e: unknown) => e);
      expect(gone).to.be.instanceOf(RendezvousError);
      expect((gone as RendezvousError).errcode).to.equal('M_NOT_FOUND');
    });

    it(`${family}: falls back to polling once per interval when the server does not hold GETs`, async () => {
      const counter = countingFetch();
      const creator = new RendezvousClient({ baseUrl: pollingServer.url, family });
      const joiner = new RendezvousClient({
        baseUrl: pollingServer.url,
        family,
        fetch: counter.fetch,
        pollIntervalMs: 20,
      });
      const mine = await creator.create('hello');
      const theirs = joiner.open(mine.url);
      expect(await theirs.read()).to.equal('hello');
      const thirdPoll = counter.nthGet(4);
      const next = theirs.receive();
      await thirdPoll;
      await mine.write('world');
      expect(await next).to.equal('world');
      expect(counter.gets).to.be.at.least(4);
    });

    it(`${family}: refuses a write over a version it has not seen`, async () => {
      const a = await new RendezvousClient({ baseUrl: longPollServer.url, family }).create('v1');
      const b = new RendezvousClient({ baseUrl: longPollServer.url, family }).open(a.url);
      await b.read();
      await a.write('v2');
      const err = await b.write('v2 from b').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(ConcurrentWriteError);
    });
  }
});
