import { expect } from 'chai';
import { heldGet, type HeldResponse } from './helpers/longpoll';
import { req } from './helpers/exchange';
import { Scrape } from './helpers/metrics';
import { RedisServer } from './helpers/redis';
import { Replica } from './helpers/replica';
import { until } from './helpers/topologies';

const HELD = 500;
const SESSIONS = 10;

describe('SIGTERM with 500 open long-polls', function () {
  let redis: RedisServer;
  let replica: Replica;
  before(async () => {
    redis = await RedisServer.start();
    replica = await Replica.start({
      REDIS_URL: redis.url,
      // Waits far longer than the grace period: only the shutdown itself can answer them in time.
      RZ_LONGPOLL_MAX_WAIT_SECONDS: '300',
      RZ_LONGPOLL_MAX_WAITERS_PER_ADDRESS: String(HELD * 2),
      RZ_SHUTDOWN_GRACE_SECONDS: '20',
      // One test client is many devices here: no per-address budget may answer in their place.
      RZ_REQUEST_RATE: '0',
      RZ_CREATE_RATE: '0',
    });
  });
  after(async () => {
    await replica?.stop('SIGKILL');
    await redis?.destroy();
  });

  it('answers every one (304, Connection: close) and exits 0 within the grace period', async () => {
    const sessions: { url: string; etag: string }[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const res = await req(`${replica.url}/`, { method: 'POST', body: `session ${i}` });
      expect(res.status).to.equal(200);
      sessions.push({ url: res.headers.get('Location')!, etag: res.headers.get('ETag')! });
    }
    const held = Array.from({ length: HELD }, (_, i) => {
      const s = sessions[i % SESSIONS]!;
      return heldGet(`${replica.url}${new URL(s.url).pathname}`, s.etag, 300);
    });
    const settled = Promise.allSettled(held.map((h) => h.response));
    await until(
      'all long-polls to be held',
      async () => (await Scrape.of(`${replica.url}/metrics`)).value('rendezvous_longpoll_waiters') === HELD,
      30_000,
    );

    replica.proc.kill('SIGTERM');
    const results = await settled;
    const cut = results.filter((r) => r.status === 'rejected');
    expect(cut, 'long-polls cut off without an answer').to.have.length(0);
    const answers = results.map((r) => (r as PromiseFulfilledResult<HeldResponse>).value);
    expect(answers.filter((a) => a.status !== 304)).to.deep.equal([]);
    for (const a of answers) expect(a.headers.connection).to.equal('close');
    // Exit 0 is also the proof of "within the grace period": past it, connections are cut (caught
    // above), and a drain that hangs beyond it ends in the last-resort exit 1.
    expect(await replica.exit).to.equal(0);
    const msgs = replica.logs.map((l) => l.msg);
    expect(msgs).to.include.members(['draining', 'stopped']);
    expect(msgs.indexOf('draining')).to.be.lessThan(msgs.indexOf('stopped'));
  });
});
