import { expect } from 'chai';
import { RedisServer } from './helpers/redis';
import type { Replica } from './helpers/replica';
import { startReplicas, via } from './helpers/replicas';

// The published MSC3886 client (Element Web's transport before MSC4108), exactly as shipped.
const { MSC3886SimpleHttpRendezvousTransport } = require('matrix-js-sdk-30/lib/rendezvous/transports');
require('matrix-js-sdk-30/lib/logger').logger.setLevel('silent');

interface Transport {
  send(data: unknown): Promise<void>;
  receive(): Promise<unknown>;
  details(): Promise<{ type: string; uri: string }>;
  cancel(reason: string): Promise<void>;
  uri?: string;
}

describe('matrix-js-sdk@30.3.0 MSC3886 transport', () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  before(async () => {
    redis = await RedisServer.start();
    [a, b] = (await startReplicas(2, { REDIS_URL: redis.url })) as [Replica, Replica];
  });
  after(async () => {
    await Promise.all([a?.stop('SIGKILL'), b?.stop('SIGKILL')]);
    await redis?.destroy();
  });

  for (const viaPrefix of [false, true]) {
    it(`completes a two-party exchange with each party on its own replica${viaPrefix ? ' (Matrix prefix)' : ''}`, async () => {
      const failures: string[] = [];
      const client = {
        baseUrl: a.url,
        doesServerSupportUnstableFeature: async (f: string) => viaPrefix && f === 'org.matrix.msc3886',
      };
      const alice: Transport = new MSC3886SimpleHttpRendezvousTransport({
        client,
        fallbackRzServer: `${a.url}/`,
        onFailure: (r: string) => failures.push(`alice: ${r}`),
      });
      await alice.send({ type: 'hello', from: 'alice' });
      const { uri } = await alice.details();
      expect(uri.startsWith(a.url)).to.equal(true);

      const bob: Transport = new MSC3886SimpleHttpRendezvousTransport({
        client: { baseUrl: b.url, doesServerSupportUnstableFeature: async () => false },
        onFailure: (r: string) => failures.push(`bob: ${r}`),
      });
      bob.uri = via(b, uri); // joining party, as if it had scanned the QR code through another replica
      expect(await bob.receive()).to.deep.equal({ type: 'hello', from: 'alice' });

      for (let i = 1; i <= 2; i++) {
        const aliceGets = alice.receive();
        await bob.send({ n: i, from: 'bob' });
        expect(await aliceGets).to.deep.equal({ n: i, from: 'bob' });
        const bobGets = bob.receive();
        await alice.send({ n: i, from: 'alice' });
        expect(await bobGets).to.deep.equal({ n: i, from: 'alice' });
      }
      await alice.cancel('user_declined'); // the only reason on which it sends DELETE
      expect((await fetch(via(b, uri))).status).to.equal(404);
      expect(failures).to.deep.equal(['alice: user_declined']);
    });
  }
});
