import { expect } from 'chai';
import { RedisServer } from './helpers/redis';
import type { Replica } from './helpers/replica';
import { startReplicas, via } from './helpers/replicas';
import { converse } from './helpers/exchange';
import { request } from './helpers/http';

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';

describe('matrix-js-sdk@43 MSC4108 client through two replicas', function () {
  // The js-sdk clients poll once a second: a few messages each way take several seconds.
  this.timeout(30_000);
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;

  before(async () => {
    redis = await RedisServer.start();
    [a, b] = (await startReplicas(2, { REDIS_URL: redis.url })) as [Replica, Replica];
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  it('matrix-js-sdk@43 MSC4108RendezvousSession: creator on A (fallbackRzServer), joiner on B by URL, 3 messages each way', async () => {
    const sdk = await import('matrix-js-sdk-43/lib/rendezvous/transports/index.js');
    const { logger } = await import('matrix-js-sdk-43/lib/logger.js');
    (logger as unknown as { setLevel(level: string): void }).setLevel('silent');
    const failures: unknown[] = [];
    const onFailure = (reason: unknown) => failures.push(reason);
    const creator = new sdk.MSC4108RendezvousSession({ fallbackRzServer: a.url + MSC4108, onFailure });
    let joiner: InstanceType<typeof sdk.MSC4108RendezvousSession> | undefined;
    try {
      await creator.send('hello from the new device');
      expect(creator.ready).to.equal(true);
      expect(creator.url!.startsWith(`${a.url}${MSC4108}/`)).to.equal(true);
      joiner = new sdk.MSC4108RendezvousSession({ url: via(b, creator.url!), onFailure });
      expect(await joiner.receive()).to.equal('hello from the new device');
      await converse(creator, joiner, 3);
      expect(failures).to.deep.equal([]);
    } finally {
      await creator.close();
      await joiner?.close();
    }
    expect((await request('GET', via(b, creator.url!))).status).to.equal(404);
  });
});

/**
 * A client that behaves like matrix-rust-sdk's MSC4108 transport (Element X), which cannot be
 * built here: it creates with an empty body, polls with If-None-Match, refuses any 2xx or 304 that
 * lacks ETag, Expires or Last-Modified, follows a 307, and treats a GET that ignores If-None-Match
 * (200 with the ETag it already has) as a broken server.
 */
class RustLikeChannel {
  private etag: string | undefined;
  private constructor(readonly url: string) {}

  private static check(res: Response): void {
    if ((res.status >= 200 && res.status < 300) || res.status === 304) {
      for (const h of ['etag', 'expires', 'last-modified']) {
        if (!res.headers.get(h)) throw new Error(`${res.status} without ${h}`);
      }
    } else {
      throw new Error(`unexpected status ${res.status}`);
    }
  }

  static async create(endpoint: string): Promise<RustLikeChannel> {
    // fetch follows a 307 with the same method and body, as reqwest does.
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' }, // no body: Content-Length: 0
      redirect: 'follow',
    });
    if (res.status !== 201) throw new Error(`create answered ${res.status}`);
    RustLikeChannel.check(res);
    const { url } = (await res.json()) as { url: string };
    const channel = new RustLikeChannel(url);
    channel.etag = res.headers.get('etag')!;
    return channel;
  }

  /** The scanning side: reads the (empty) session first to learn its ETag. */
  static async join(url: string): Promise<RustLikeChannel> {
    const channel = new RustLikeChannel(url);
    const res = await fetch(url);
    RustLikeChannel.check(res);
    await res.arrayBuffer();
    channel.etag = res.headers.get('etag')!;
    return channel;
  }

  async send(message: string): Promise<void> {
    const res = await fetch(this.url, {
      method: 'PUT',
      headers: { 'content-type': 'text/plain', 'if-match': this.etag! },
      body: message,
    });
    RustLikeChannel.check(res);
    await res.arrayBuffer();
    this.etag = res.headers.get('etag')!;
  }

  /** Polls until the other side wrote; 304 means nothing new. */
  async receive(): Promise<string> {
    for (;;) {
      const res = await fetch(this.url, { headers: { 'if-none-match': this.etag! } });
      RustLikeChannel.check(res);
      const body = await res.text();
      if (res.status === 200) {
        const etag = res.headers.get('etag')!;
        if (etag === this.etag) throw new Error('server ignored If-None-Match');
        if (res.headers.get('content-type') !== 'text/plain') throw new Error('content type is not text/plain');
        this.etag = etag;
        return body;
      }
      await new Promise((resolve) => setTimeout(resolve, 20)); // the poll interval of a client
    }
  }
}

describe('a matrix-rust-sdk-like MSC4108 client', () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;

  before(async () => {
    redis = await RedisServer.start();
    [b] = (await startReplicas(1, { REDIS_URL: redis.url })) as [Replica];
    // A delegates creates to B (307), as a homeserver delegating to a rendezvous server would.
    [a] = (await startReplicas(1, { REDIS_URL: redis.url, RZ_MSC4108_DELEGATE_URL: b.url + MSC4108 })) as [Replica];
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  it('creates through a 307 with an empty body, then exchanges messages both ways with If-None-Match polling', async () => {
    const creator = await RustLikeChannel.create(a.url + MSC4108);
    expect(creator.url.startsWith(`${b.url}${MSC4108}/`)).to.equal(true);
    const joiner = await RustLikeChannel.join(via(a, creator.url));
    const creatorGot = creator.receive();
    await joiner.send('login request');
    expect(await creatorGot).to.equal('login request');
    for (let i = 1; i <= 3; i++) {
      const joinerGot = joiner.receive();
      await creator.send(`reply ${i}`);
      expect(await joinerGot).to.equal(`reply ${i}`);
      const nextForCreator = creator.receive();
      await joiner.send(`next ${i}`);
      expect(await nextForCreator).to.equal(`next ${i}`);
    }
  });
});
