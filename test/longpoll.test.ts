import { expect } from 'chai';
import { Redis } from 'ioredis';
import net from 'node:net';
import { RendezvousClient, type RendezvousSession } from '../src/client';
import type { Subscription, WakeListener } from '../src/store/types';
import { RedisServer, sharedRedisUrl } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';
import { heldGet, released, waiting } from './helpers/longpoll';
import { expectMatrixError, expectValidators } from './helpers/http';
import { parseAnswers, rawExchange } from './helpers/raw';

/** The same session URL on another replica (what a load balancer does). */
const on = (server: TestServer, url: string) => server.url + new URL(url).pathname;

/** Waits longer than mocha's 30 s timeout: a wake-up that never comes fails the test, not a clock. */
const FOREVER = 300;

const LONGPOLL_ENV = {
  RZ_LONGPOLL_MAX_WAIT_SECONDS: String(FOREVER),
  RZ_LONGPOLL_MAX_WAITERS_PER_ADDRESS: '5000',
};

async function created(server: TestServer, data = 'first'): Promise<RendezvousSession> {
  return new RendezvousClient({ baseUrl: server.url, family: 'msc3886' }).create(data);
}

describe('long-poll across two replicas on one Redis', function () {
  let redisUrl: string;
  let a: TestServer;
  let b: TestServer;

  before(async () => {
    redisUrl = await sharedRedisUrl();
    [a, b] = await Promise.all([
      startServer({ REDIS_URL: redisUrl, ...LONGPOLL_ENV }),
      startServer({ REDIS_URL: redisUrl, ...LONGPOLL_ENV }),
    ]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('wakes a waiter on replica A with a PUT on replica B: 200 with the new payload, before the wait ends', async () => {
    const s = await created(b);
    const isWaiting = waiting(a.longPoll);
    const held = heldGet(on(a, s.url), s.version!, FOREVER);
    await isWaiting;
    await s.write('second');
    const res = await held.response;
    expect(res.status).to.equal(200);
    expect(res.body).to.equal('second');
    expect(res.headers.etag).to.equal(s.version);
    expect(res.headers['preference-applied']).to.equal(`wait=${FOREVER}`);
  });

  it('never loses a write that lands between the waiter’s read and its subscription (200 forced races)', async () => {
    // Every subscription on A is delayed until a PUT on B has been answered: that write's notice is
    // published before A listens, so only the re-check after subscribing can see it.
    const notifier = a.longPoll.notifier;
    const listen = notifier.listen.bind(notifier);
    const pending = new Map<string, () => Promise<void>>();
    notifier.listen = (id: string, listener: WakeListener): Subscription => {
      let inner: Subscription | undefined;
      let gone = false;
      const ready = pending.get(id)!().then(() => {
        if (gone) return;
        inner = listen(id, listener);
        return inner.ready;
      });
      return {
        ready,
        release: () => {
          gone = true;
          inner?.release();
        },
      };
    };
    try {
      for (let round = 0; round < 20; round++) {
        await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const s = await created(b, `r${round}.${i}`);
            const id = new URL(s.url).pathname.slice(1);
            pending.set(id, () => s.write(`w${round}.${i}`));
            // A lost wake-up would end this wait at its timeout with a 304.
            const res = await heldGet(on(a, s.url), s.version!, 2).response;
            expect(res.status, `round ${round}.${i}`).to.equal(200);
            expect(res.body).to.equal(`w${round}.${i}`);
            pending.delete(id);
          }),
        );
      }
    } finally {
      notifier.listen = listen;
    }
  });

  it('wakes every waiter when reads and writes race freely (300 rounds over both replicas)', async () => {
    const turns = (n: number) => new Promise<void>((r) => (n === 0 ? r() : setImmediate(() => turns(n - 1).then(r))));
    for (let round = 0; round < 30; round++) {
      await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const [waiter, writer] = (round + i) % 2 === 0 ? [a, b] : [b, a];
          const s = await created(writer, 'before');
          const held = heldGet(on(waiter, s.url), s.version!, 5).response;
          await turns((round * 7 + i * 3) % 5);
          await s.write(`after ${round}.${i}`);
          const res = await held;
          expect(res.status).to.equal(200);
          expect(res.body).to.equal(`after ${round}.${i}`);
        }),
      );
    }
  });

  it('holds MSC4108 GETs too, answering a change with Content-Type text/plain exactly', async () => {
    const s = await new RendezvousClient({ baseUrl: b.url, family: 'msc4108' }).create('first');
    const isWaiting = waiting(a.longPoll);
    const held = heldGet(on(a, s.url), s.version!, FOREVER);
    await isWaiting;
    await s.write('second');
    const res = await held.response;
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.equal('text/plain');
    expect(res.body).to.equal('second');
    const timedOut = await heldGet(on(a, s.url), s.version!, 1).response;
    expect(timedOut.status).to.equal(304);
    // A 304 carries no representation metadata (RFC 9110 section 15.4.5), only the validators.
    expect(timedOut.headers['content-type']).to.equal(undefined);
    expect(timedOut.headers['content-length']).to.equal(undefined);
    expect(timedOut.headers.etag).to.equal(s.version);
  });

  it('answers 304 with the validators and Preference-Applied when the wait ends without a change', async () => {
    const s = await created(b);
    const res = await fetch(on(a, s.url), { headers: { 'If-None-Match': s.version!, Prefer: 'wait=1' } });
    expect(res.status).to.equal(304);
    expect(res.headers.get('preference-applied')).to.equal('wait=1');
    expect(expectValidators(res).etag).to.equal(s.version);
  });

  it('answers a weak If-None-Match and other preferences alongside wait', async () => {
    const s = await created(b);
    const res = await fetch(on(a, s.url), {
      headers: { 'If-None-Match': `W/${s.version}`, Prefer: 'respond-async, wait=1; x=y' },
    });
    expect(res.status).to.equal(304);
    expect(res.headers.get('preference-applied')).to.equal('wait=1');
  });

  it('does not hold a GET without Prefer: wait, nor one whose ETag is already stale', async () => {
    const s = await created(b);
    const plain = await fetch(on(a, s.url), { headers: { 'If-None-Match': s.version! } });
    expect(plain.status).to.equal(304);
    expect(plain.headers.get('preference-applied')).to.equal(null);
    const stale = await fetch(on(a, s.url), { headers: { 'If-None-Match': '"old.1"', Prefer: `wait=${FOREVER}` } });
    expect(stale.status).to.equal(200);
    expect(await stale.text()).to.equal('first');
    expect(stale.headers.get('preference-applied')).to.equal(null);
  });

  it('ends a wait with 404 when the session is deleted on the other replica', async () => {
    const s = await created(b);
    const isWaiting = waiting(a.longPoll);
    const held = heldGet(on(a, s.url), s.version!, FOREVER);
    await isWaiting;
    await s.delete();
    const res = await held.response;
    expect(res.status).to.equal(404);
    expect(JSON.parse(res.body).errcode).to.equal('M_NOT_FOUND');
  });

  it('ends a wait with 404 when the session expires', async () => {
    const shortLived = await startServer({ REDIS_URL: redisUrl, RZ_TTL_SECONDS: '1', ...LONGPOLL_ENV });
    try {
      const s = await created(shortLived);
      const res = await heldGet(on(a, s.url), s.version!, FOREVER).response;
      expect(res.status).to.equal(404);
      expect(JSON.parse(res.body).errcode).to.equal('M_NOT_FOUND');
    } finally {
      await shortLived.stop();
    }
  });

  it('leaves no waiter, listener or subscription behind after 1,000 clients disconnect mid-wait', async function () {
    this.timeout(60_000);
    const sessions = await Promise.all(Array.from({ length: 100 }, () => created(b)));
    const allWaiting = waiting(a.longPoll, 1000);
    const held = Array.from({ length: 1000 }, (_, i) => {
      const s = sessions[i % sessions.length]!;
      const h = heldGet(on(a, s.url), s.version!, FOREVER);
      h.response.catch(() => {});
      return h;
    });
    await allWaiting;
    expect(a.longPoll.stats()).to.deep.include({ waiters: 1000, sessions: 100, listeners: 1000 });
    const redis = new Redis(redisUrl);
    try {
      expect(await redis.call('PUBSUB', 'SHARDCHANNELS', 'rz:*')).to.have.length.of.at.least(100);
      const allReleased = released(a.longPoll, 1000);
      for (const h of held) h.abort();
      await allReleased;
      expect(a.longPoll.stats()).to.deep.equal({ waiters: 0, addresses: 0, sessions: 0, listeners: 0 });
      await a.longPoll.notifier.settled();
      const left = (await redis.call('PUBSUB', 'SHARDCHANNELS', 'rz:*')) as string[];
      const ours = new Set(sessions.map((s) => `rz:{${new URL(s.url).pathname.slice(1)}}:wake`));
      expect(left.filter((c) => ours.has(c))).to.deep.equal([]);
    } finally {
      redis.disconnect();
    }
  });
});

describe('long-poll bounds', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      REDIS_URL: await sharedRedisUrl(),
      RZ_LONGPOLL_MAX_WAIT_SECONDS: String(FOREVER),
      RZ_LONGPOLL_MAX_WAITERS: '3',
      RZ_LONGPOLL_MAX_WAITERS_PER_ADDRESS: '2',
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('answers at once like a plain GET beyond the per-address and per-replica bounds', async () => {
    const s = await created(server);
    const url = s.url;
    const twoWaiting = waiting(server.longPoll, 2);
    const first = [heldGet(url, s.version!, FOREVER), heldGet(url, s.version!, FOREVER)];
    await twoWaiting;
    // Third from the same address: over its bound, answered now without Preference-Applied.
    const third = await heldGet(url, s.version!, FOREVER).response;
    expect(third.status).to.equal(304);
    expect(third.headers['preference-applied']).to.equal(undefined);
    // Another address still gets held, until the replica's bound (3) is reached.
    const oneMore = waiting(server.longPoll);
    const other = heldGet(url, s.version!, FOREVER, { localAddress: '127.0.0.2' });
    await oneMore;
    const fourth = await heldGet(url, s.version!, FOREVER, { localAddress: '127.0.0.3' }).response;
    expect(fourth.status).to.equal(304);
    expect(fourth.headers['preference-applied']).to.equal(undefined);
    await s.write('news');
    for (const res of await Promise.all([...first, other].map((h) => h.response))) {
      expect(res.status).to.equal(200);
      expect(res.body).to.equal('news');
    }
  });

  it('clamps the wait to the configured maximum and says so', async () => {
    const s = await created(server);
    const isWaiting = waiting(server.longPoll);
    const held = heldGet(s.url, s.version!, 100_000);
    await isWaiting;
    await s.write('news');
    expect((await held.response).headers['preference-applied']).to.equal(`wait=${FOREVER}`);
  });
});

describe('long-poll and shutdown', function () {
  it('ends every wait at once on stop (SIGTERM) with 304, the current state and Connection: close', async () => {
    const server = await startServer({ REDIS_URL: await sharedRedisUrl(), ...LONGPOLL_ENV });
    const s = await created(server);
    const allWaiting = waiting(server.longPoll, 3);
    const held = Array.from({ length: 3 }, () => heldGet(s.url, s.version!, FOREVER));
    await allWaiting;
    const stopped = server.stop();
    for (const res of await Promise.all(held.map((h) => h.response))) {
      expect(res.status).to.equal(304);
      expect(res.headers.etag).to.equal(s.version);
      expect(res.headers.connection).to.equal('close');
    }
    await stopped;
  });
});

describe('long-poll when the subscriber connection is lost', function () {
  let redis: RedisServer;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    redis = await RedisServer.start();
    [a, b] = await Promise.all([
      startServer({ REDIS_URL: redis.url, ...LONGPOLL_ENV }),
      startServer({ REDIS_URL: redis.url, ...LONGPOLL_ENV }),
    ]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  it('re-subscribes and wakes waiters that were held across the drop', async () => {
    const s = await created(b);
    const isWaiting = waiting(a.longPoll);
    const held = heldGet(on(a, s.url), s.version!, FOREVER);
    await isWaiting;
    const admin = redis.client();
    try {
      expect(Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))).to.be.at.least(1);
    } finally {
      admin.disconnect();
    }
    // Whether this write lands before or after the re-subscription, the re-read after it sees it.
    await s.write('after the drop');
    const res = await held.response;
    expect(res.status).to.equal(200);
    expect(res.body).to.equal('after the drop');
  });

  it('answers at the timeout while Redis is down, and never hangs', async () => {
    const s = await created(b);
    const isWaiting = waiting(a.longPoll);
    const held = heldGet(on(a, s.url), s.version!, 2);
    await isWaiting;
    await redis.stop();
    try {
      const res = await held.response;
      expect(res.status).to.equal(304);
      expect(res.headers.etag).to.equal(s.version);
    } finally {
      await redis.resume();
    }
  });
});

describe('long-poll on the in-memory store', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer(LONGPOLL_ENV);
  });
  after(async () => {
    await server?.stop();
  });

  it('wakes a waiter with a PUT, and ends one with 404 on DELETE', async () => {
    const s = await created(server);
    let isWaiting = waiting(server.longPoll);
    let held = heldGet(s.url, s.version!, FOREVER);
    await isWaiting;
    await s.write('second');
    const res = await held.response;
    expect(res.status).to.equal(200);
    expect(res.body).to.equal('second');
    isWaiting = waiting(server.longPoll);
    held = heldGet(s.url, s.version!, FOREVER);
    await isWaiting;
    await s.delete();
    expect((await held.response).status).to.equal(404);
    expect(server.longPoll.stats()).to.deep.equal({ waiters: 0, addresses: 0, sessions: 0, listeners: 0 });
  });

  it('holds long-polls pipelined on one connection, each answered in turn when a PUT wakes them', async () => {
    const s = await created(server);
    const path = new URL(s.url).pathname;
    const held = `GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${s.version}\r\nPrefer: wait=${FOREVER}\r\n`;
    // The second one's answer has no socket until the first is written: it is no client that left.
    const isWaiting = waiting(server.longPoll, 2);
    const exchange = rawExchange(server.port, `${held}\r\n${held}Connection: close\r\n\r\n`);
    await isWaiting;
    await s.write('second');
    const answers = parseAnswers((await exchange).text);
    expect(answers.map((a) => [a.status, a.body])).to.deep.equal([
      [200, 'second'],
      [200, 'second'],
    ]);
    expect(server.longPoll.stats().waiters).to.equal(0);
  });

  it('lets go of every pipelined long-poll whose client hangs up before its turn, with one listener', async () => {
    const s = await created(server);
    const path = new URL(s.url).pathname;
    const held = `GET ${path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${s.version}\r\nPrefer: wait=${FOREVER}\r\n\r\n`;
    // More than Node's listener bound per emitter (10): the connection is watched once for all of them.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const isWaiting = waiting(server.longPoll, 15);
      const socket = net.connect(server.port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(held.repeat(15));
      await isWaiting;
      const allReleased = released(server.longPoll, 15);
      socket.destroy();
      await allReleased;
      expect(server.longPoll.stats()).to.deep.equal({ waiters: 0, addresses: 0, sessions: 0, listeners: 0 });
      // A warning is emitted on the next tick: one more turn before looking.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).to.not.include('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('keeps plain GETs untouched: 404 for unknown ids, 200 without If-None-Match', async () => {
    await expectMatrixError(
      await fetch(server.url + '/nope', { headers: { Prefer: 'wait=5', 'If-None-Match': '"x"' } }),
      404,
      'M_NOT_FOUND',
    );
    const s = await created(server);
    const res = await fetch(s.url, { headers: { Prefer: 'wait=5' } });
    expect(res.status).to.equal(200);
    expect(await res.text()).to.equal('first');
  });
});

describe('long-poll on MSC4388 (sequence_token + timeout_ms)', function () {
  let a: TestServer;
  let b: TestServer;
  const PREFIX = '/_matrix/client/unstable/io.element.msc4388/rendezvous';

  before(async () => {
    const redisUrl = await sharedRedisUrl();
    [a, b] = await Promise.all([
      startServer({ REDIS_URL: redisUrl, ...LONGPOLL_ENV }),
      startServer({ REDIS_URL: redisUrl, ...LONGPOLL_ENV }),
    ]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  async function create(server: TestServer) {
    const s = await new RendezvousClient({ baseUrl: server.url, family: 'msc4388' }).create('first');
    return { s, id: new URL(s.url).pathname.split('/').pop()! };
  }
  const held = (server: TestServer, id: string, token: string, ms: number) =>
    fetch(`${server.url}${PREFIX}/${id}?sequence_token=${token}&timeout_ms=${ms}`);

  it('wakes a waiter on replica A with a PUT on replica B: 200 with the new data and token', async () => {
    const { s, id } = await create(b);
    const isWaiting = waiting(a.longPoll);
    const res = held(a, id, s.version!, FOREVER * 1000);
    await isWaiting;
    await s.write('second');
    const body = (await (await res).json()) as Record<string, unknown>;
    expect(body).to.include({ data: 'second', sequence_token: s.version });
  });

  it('answers 200 with the unchanged payload when the timeout ends', async () => {
    const { s, id } = await create(b);
    const res = await held(a, id, s.version!, 200);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.include({ data: 'first', sequence_token: s.version });
  });

  it('answers at once when the token is already stale, and ends a wait with 404 on DELETE', async () => {
    const { s, id } = await create(b);
    const stale = await held(a, id, 'old', FOREVER * 1000);
    expect(await stale.json()).to.include({ data: 'first', sequence_token: s.version });
    const isWaiting = waiting(a.longPoll);
    const res = held(a, id, s.version!, FOREVER * 1000);
    await isWaiting;
    await s.delete();
    await expectMatrixError(await res, 404, 'M_NOT_FOUND');
  });

  it('refuses malformed parameters with 400 and treats one alone as a plain GET', async () => {
    const { s, id } = await create(b);
    for (const q of ['timeout_ms=-1', 'timeout_ms=abc', 'timeout_ms=1e3', 'timeout_ms=']) {
      await expectMatrixError(
        await fetch(`${a.url}${PREFIX}/${id}?sequence_token=${s.version}&${q}`),
        400,
        'M_INVALID_PARAM',
      );
    }
    await expectMatrixError(
      await fetch(`${a.url}${PREFIX}/${id}?sequence_token=a%20b&timeout_ms=10`),
      400,
      'M_INVALID_PARAM',
    );
    for (const q of [`sequence_token=${s.version}`, `timeout_ms=${FOREVER * 1000}`]) {
      const res = await fetch(`${a.url}${PREFIX}/${id}?${q}`);
      expect(res.status).to.equal(200);
      expect(await res.json()).to.include({ data: 'first' });
    }
  });

  it('takes a timeout longer than any wait (capped like every other), not as a malformed one', async () => {
    const { id } = await create(b);
    // A stale token is answered at once, so this shows only that the parameters were accepted.
    const res = await fetch(`${a.url}${PREFIX}/${id}?sequence_token=old&timeout_ms=${'9'.repeat(30)}`);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.include({ data: 'first' });
  });

  it('reads a timeout padded with zeros by its value: zero is answered at once', async () => {
    const { s, id } = await create(b);
    // The current token: a long timeout would hold this past the test's own timeout.
    const res = await fetch(`${a.url}${PREFIX}/${id}?sequence_token=${s.version}&timeout_ms=${'0'.repeat(12)}`);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.include({ data: 'first', sequence_token: s.version });
  });
});
