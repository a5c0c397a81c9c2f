import { expect } from 'chai';
import { startServer, type TestServer } from '../helpers/server';

/**
 * A replica behind a trusted proxy counts every forwarded client by the address the proxy names:
 * what it keeps per address must go once those clients stop.
 */
describe('per-address state behind a trusted proxy, once the clients stop', function () {
  this.timeout(60_000);
  let server: TestServer;
  before(async () => {
    server = await startServer({
      RZ_TRUSTED_PROXIES: '127.0.0.1/32',
      RZ_REQUEST_RATE: '100',
      RZ_LONGPOLL_MAX_WAIT_SECONDS: '1',
      RZ_LONGPOLL_MAX_WAITERS: '5000',
    });
  });
  after(async () => server?.stop());

  const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

  it('holds long-polls from thousands of addresses, and keeps nothing of them in the long-poll tables once answered', async () => {
    const created = await fetch(`${server.url}/`, { method: 'POST', body: 'one' });
    const path = new URL(created.headers.get('Location')!).pathname;
    const etag = created.headers.get('ETag')!;
    const polls = Array.from({ length: 2000 }, (_, i) =>
      fetch(`${server.url}${path}`, {
        headers: { 'X-Forwarded-For': address(i), 'If-None-Match': etag, Prefer: 'wait=1' },
      }).then((res) => res.status),
    );
    // Tens of thousands of other addresses meanwhile, one request each.
    for (let i = 2000; i < 22_000; i += 500) {
      const batch = Array.from({ length: 500 }, (_, j) =>
        fetch(`${server.url}/no-such-session`, { headers: { 'X-Forwarded-For': address(i + j) } }).then(
          (res) => res.status,
        ),
      );
      expect(new Set(await Promise.all(batch))).to.deep.equal(new Set([404]));
    }
    expect(new Set(await Promise.all(polls))).to.deep.equal(new Set([304]));
    // Every one was held until its wait ended (not refused, which answers 304 at once too).
    const ended = (await server.metrics.longPollWakeups.get()).values;
    expect(ended.find((v) => v.labels.cause === 'timeout')?.value).to.equal(2000);
    expect(server.longPoll.stats()).to.deep.equal({ waiters: 0, addresses: 0, sessions: 0, listeners: 0 });
  });
});
