import { expect } from 'chai';
import { req } from './helpers/exchange';
import { parseAnswers, rawExchange } from './helpers/raw';
import { sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';
import { until } from './helpers/topologies';

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = '/_matrix/client/v1/rendezvous';

/**
 * While a replica drains (SIGTERM, within RZ_SHUTDOWN_DELAY_SECONDS) every answer must close its
 * connection, or 1-Hz pollers keep their keep-alive connection to the replica that is going away.
 */
describe('answers while draining', function () {
  this.timeout(30_000);
  let replica: Replica;
  const s: Record<string, string> = {};

  before(async () => {
    // A delay long enough that the replica is still serving when the test is over; killed in `after`.
    replica = await Replica.start({ REDIS_URL: await sharedRedisUrl(), RZ_SHUTDOWN_DELAY_SECONDS: '60' });
    const a = await req(`${replica.url}/`, { method: 'POST', body: 'hello' });
    s.msc3886 = `/${((await a.json()) as { id: string }).id}`;
    s.msc3886Etag = a.headers.get('ETag')!;
    const b = await req(`${replica.url}${MSC4108}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' } });
    s.msc4108 = new URL(((await b.json()) as { url: string }).url).pathname;
    s.msc4108Etag = b.headers.get('ETag')!;
    const c = await req(`${replica.url}${MSC4388}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"data":"hi"}',
    });
    const created = (await c.json()) as { id: string; sequence_token: string };
    s.msc4388 = `${MSC4388}/${created.id}?sequence_token=${created.sequence_token}&timeout_ms=20000`;

    replica.proc.kill('SIGTERM');
    await until('the replica to report it is draining', async () => (await req(`${replica.url}/ready`)).status === 503);
  });
  after(() => replica?.stop('SIGKILL'));

  /** One keep-alive request (HTTP/1.1 without Connection: close); its answer and whether the server closed. */
  async function ask(lines: string) {
    const { text, closedByServer } = await rawExchange(replica.port, `${lines}\r\n`, { giveUpMs: 5000 });
    const answers = parseAnswers(text);
    expect(answers, lines).to.have.length(1);
    return { ...answers[0]!, closedByServer };
  }

  function expectClosed(a: { headers: Record<string, string>; closedByServer: boolean }, what: string): void {
    expect(a.headers.connection, what).to.equal('close');
    expect(a.closedByServer, `${what}: connection closed by the replica`).to.equal(true);
  }

  it('closes the connection after a 304', async () => {
    const a = await ask(`GET ${s.msc3886} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${s.msc3886Etag}\r\n`);
    expect(a.status).to.equal(304);
    expectClosed(a, '304');
  });

  it('closes the connection after a long-poll it refused (ETag family: 304 at once)', async () => {
    const a = await ask(
      `GET ${s.msc4108} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${s.msc4108Etag}\r\nPrefer: wait=20\r\n`,
    );
    expect(a.status).to.equal(304);
    // Not held: a draining replica takes no new waits.
    expect(a.headers).to.not.have.property('preference-applied');
    expectClosed(a, 'refused ETag long-poll');
  });

  it('closes the connection after a long-poll it refused (MSC4388: 200 at once)', async () => {
    const a = await ask(`GET ${s.msc4388} HTTP/1.1\r\nHost: x\r\n`);
    expect(a.status).to.equal(200);
    expectClosed(a, 'refused MSC4388 long-poll');
  });

  it('closes the connection after a 200, errors and a CORS preflight', async () => {
    const ok = await ask(`GET ${s.msc3886} HTTP/1.1\r\nHost: x\r\n`);
    expect(ok.status).to.equal(200);
    expectClosed(ok, '200');
    const missing = await ask('GET /no-such-session HTTP/1.1\r\nHost: x\r\n');
    expect(missing.status).to.equal(404);
    expectClosed(missing, '404');
    const badHost = await ask(`GET ${s.msc3886} HTTP/1.1\r\nHost: a b\r\n`);
    expect(badHost.status).to.equal(400);
    expectClosed(badHost, 'bad Host');
    const preflight = await ask(
      `OPTIONS ${s.msc3886} HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\n`,
    );
    expect(preflight.status).to.equal(204);
    expectClosed(preflight, 'preflight');
  });
});
