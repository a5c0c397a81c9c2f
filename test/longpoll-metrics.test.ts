import { expect } from 'chai';
import { req } from './helpers/exchange';
import { heldGet } from './helpers/longpoll';
import { Scrape } from './helpers/metrics';
import { sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';
import { until } from './helpers/topologies';

const MSC4388 = '/_matrix/client/v1/rendezvous';
const REQUESTS = 'rendezvous_http_requests_total';
const LATENCY = 'rendezvous_http_request_duration_seconds_count';
const WAITS = 'rendezvous_longpoll_duration_seconds_count';

describe('long-poll metrics', function () {
  this.timeout(30_000);
  let replica: Replica;
  before(async () => {
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl(), RZ_ACCESS_LOG: 'true' });
  });
  after(() => replica?.stop());

  const scrape = () => Scrape.of(`${replica.url}/metrics`);
  const held = async () => (await scrape()).value('rendezvous_longpoll_waiters');

  async function session(): Promise<{ url: string; etag: string }> {
    const res = await req(`${replica.url}/`, { method: 'POST', body: 'first' });
    return {
      url: res.headers.get('Location')!.replace(/^http:\/\/[^/]+/, replica.url),
      etag: res.headers.get('ETag')!,
    };
  }

  it('count a client that left during a held wait as 499, not 404', async () => {
    const s = await session();
    const before = await scrape();
    const wait = heldGet(s.url, s.etag, 30);
    wait.response.catch(() => undefined);
    await until('the GET to be held', async () => (await held()) === 1);
    wait.abort();
    const get = { family: 'msc3886', method: 'GET' };
    // The request is counted once its middleware chain has finished, right after the wait ended.
    await until(
      'the request to be counted',
      async () => (await scrape()).value(REQUESTS, get) > before.value(REQUESTS, get),
    );
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) =>
      after.value(name, labels) - before.value(name, labels);
    expect(delta(REQUESTS, { ...get, status: '499' })).to.equal(1);
    expect(delta(REQUESTS, { ...get, status: '404' })).to.equal(0);
    expect(delta(WAITS, { family: 'msc3886', outcome: 'disconnect' })).to.equal(1);
    expect(delta(LATENCY, get)).to.equal(0);
    // The access log says the same (its line comes over the replica's stdout, on its own time).
    const accessLine = () =>
      replica.logs.filter((l) => l.msg === 'request' && l.method === 'GET' && l.route !== '/metrics').pop();
    await until('the access log line', async () => accessLine()?.status !== undefined);
    expect(accessLine()).to.include({ status: 499 });
  });

  it('time held waits in their own histogram, by outcome, and leave the request latency alone', async () => {
    const s = await session();
    const r4388 = await req(`${replica.url}${MSC4388}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"data":"x"}',
    });
    const { id, sequence_token: token } = (await r4388.json()) as { id: string; sequence_token: string };
    const before = await scrape();

    // Held, then woken by a write.
    const woken = heldGet(s.url, s.etag, 30);
    await until('the GET to be held', async () => (await held()) === 1);
    const put = await req(s.url, { method: 'PUT', body: 'second' });
    expect(put.status).to.equal(202);
    expect((await woken.response).status).to.equal(200);
    // Held until its wait ended.
    const timedOut = await heldGet(s.url, put.headers.get('ETag')!, 1).response;
    expect(timedOut.status).to.equal(304);
    const t = await req(`${replica.url}${MSC4388}/${id}?sequence_token=${token}&timeout_ms=500`);
    expect(t.status).to.equal(200);
    // Not held: a plain read and a plain 304.
    expect((await req(s.url)).status).to.equal(200);
    expect((await req(s.url, { headers: { 'If-None-Match': put.headers.get('ETag')! } })).status).to.equal(304);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) =>
      after.value(name, labels) - before.value(name, labels);
    expect(delta(WAITS, { family: 'msc3886', outcome: 'change' })).to.equal(1);
    expect(delta(WAITS, { family: 'msc3886', outcome: 'timeout' })).to.equal(1);
    expect(delta(WAITS, { family: 'msc4388', outcome: 'timeout' })).to.equal(1);
    // The request latency histogram saw the two plain reads only.
    expect(delta(LATENCY, { family: 'msc3886', method: 'GET' })).to.equal(2);
    expect(delta(LATENCY, { family: 'msc4388', method: 'GET' })).to.equal(0);
    // Every answer is still counted under its status.
    expect(delta(REQUESTS, { family: 'msc3886', method: 'GET', status: '200' })).to.equal(2);
    expect(delta(REQUESTS, { family: 'msc3886', method: 'GET', status: '304' })).to.equal(2);
    expect(delta(REQUESTS, { family: 'msc4388', method: 'GET', status: '200' })).to.equal(1);
  });
});
