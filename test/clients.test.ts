import { expect } from 'chai';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { freePort } from './helpers/ports';
import { request } from './helpers/http';

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';

/** What a load balancer does: the same path, sent to another replica. */
const onReplica = (url: string, replica: Replica) => {
  const u = new URL(url);
  return `${replica.url}${u.pathname}${u.search}`;
};

/**
 * Two replicas on one Redis, each announcing itself as the public base URL, so a party that created
 * a session on A keeps talking to A while the other party is sent to B.
 */
async function startReplicas(extra: (ports: number[]) => Record<string, string>[] = () => [{}, {}]) {
  const redis = await RedisServer.start();
  const ports = [await freePort(), await freePort()];
  const extras = extra(ports);
  const replicas = await Promise.all(
    ports.map((port, i) =>
      Replica.start({
        REDIS_URL: redis.url,
        PORT: String(port),
        RZ_PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
        ...extras[i],
      }),
    ),
  );
  return { redis, a: replicas[0]!, b: replicas[1]! };
}

describe('real clients through two replicas', function () {
  // The js-sdk clients poll once a second: a few messages each way take several seconds.
  this.timeout(30_000);
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;

  before(async () => {
    ({ redis, a, b } = await startReplicas());
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
      joiner = new sdk.MSC4108RendezvousSession({ url: onReplica(creator.url!, b), onFailure });
      expect(await joiner.receive()).to.equal('hello from the new device');
      for (let i = 1; i <= 3; i++) {
        await joiner.send(`joiner message ${i}`);
        expect(await creator.receive()).to.equal(`joiner message ${i}`);
        await creator.send(`creator message ${i}`);
        expect(await joiner.receive()).to.equal(`creator message ${i}`);
      }
      expect(failures).to.deep.equal([]);
    } finally {
      await creator.close();
      await joiner?.close();
    }
    expect((await request('GET', onReplica(creator.url!, b))).status).to.equal(404);
  });

  it('matrix-js-sdk@30.3.0 MSC3886SimpleHttpRendezvousTransport: creator on A, joiner on B, 3 messages each way', async () => {
    const { MSC3886SimpleHttpRendezvousTransport } = require('matrix-js-sdk-30/lib/rendezvous/transports');
    require('matrix-js-sdk-30/lib/logger').logger.setLevel('silent');
    const failures: unknown[] = [];
    const onFailure = (reason: unknown) => failures.push(reason);
    const client = { baseUrl: a.url, doesServerSupportUnstableFeature: async () => false };
    const creator = new MSC3886SimpleHttpRendezvousTransport({ onFailure, client, fallbackRzServer: `${a.url}/` });
    await creator.send({ type: 'm.login.progress', step: 1 });
    const { uri } = await creator.details();
    expect(uri.startsWith(`${a.url}/`)).to.equal(true);
    const joiner = new MSC3886SimpleHttpRendezvousTransport({ onFailure, client, fallbackRzServer: `${b.url}/` });
    joiner.uri = onReplica(uri, b);
    expect(await joiner.receive()).to.deep.equal({ type: 'm.login.progress', step: 1 });
    for (let i = 1; i <= 3; i++) {
      await joiner.send({ from: 'joiner', i });
      expect(await creator.receive()).to.deep.equal({ from: 'joiner', i });
      await creator.send({ from: 'creator', i });
      expect(await joiner.receive()).to.deep.equal({ from: 'creator', i });
    }
    await joiner.cancel('user_declined');
    expect(failures).to.deep.equal(['user_declined']);
    expect((await request('GET', uri)).status).to.equal(404);
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
    // A delegates creates to B (307), as a homeserver delegating to a rendezvous server would.
    ({ redis, a, b } = await startReplicas((ports): Record<string, string>[] => [
      { RZ_MSC4108_DELEGATE_URL: `http://127.0.0.1:${ports[1]}${MSC4108}` },
      {},
    ]));
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  it('creates through a 307 with an empty body, then exchanges messages both ways with If-None-Match polling', async () => {
    const creator = await RustLikeChannel.create(a.url + MSC4108);
    expect(creator.url.startsWith(`${b.url}${MSC4108}/`)).to.equal(true);
    const joiner = await RustLikeChannel.join(onReplica(creator.url, a));
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
