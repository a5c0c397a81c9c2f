import { expect } from 'chai';
import { req } from './helpers/exchange';
import { Scrape } from './helpers/metrics';
import { parseAnswers, rawExchange, type RawAnswer } from './helpers/raw';
import { sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';
import { until } from './helpers/topologies';

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = '/_matrix/client/v1/rendezvous';

/**
 * A request whose body stops arriving is answered 408 once RZ_REQUEST_TIMEOUT_MS has passed (it was
 * cut without a word), and one whose body breaks off into bytes that are not HTTP gets 400; both as
 * Matrix errors, through the request's own response, and the connection is closed.
 */
describe('a request body that stops arriving', function () {
  this.timeout(30_000);
  let replica: Replica;
  let msc4388Session = '';
  let token = '';

  before(async () => {
    replica = await Replica.start({
      REDIS_URL: await sharedRedisUrl(),
      RZ_REQUEST_TIMEOUT_MS: '1000',
      RZ_HEADERS_TIMEOUT_MS: '500',
    });
    const c = await req(`${replica.url}${MSC4388}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"data":"kept"}',
    });
    const created = (await c.json()) as { id: string; sequence_token: string };
    msc4388Session = `${MSC4388}/${created.id}`;
    token = created.sequence_token;
  });
  after(() => replica?.stop());

  async function stall(bytes: string): Promise<RawAnswer> {
    const { text, closedByServer } = await rawExchange(replica.port, bytes);
    expect(closedByServer, 'connection closed by the replica').to.equal(true);
    const answers = parseAnswers(text);
    expect(answers, text).to.have.length(1);
    return answers[0]!;
  }

  function expectMatrixAnswer(a: RawAnswer, status: number, errcode: string): void {
    expect(a.status).to.equal(status);
    expect(a.headers['content-type']).to.equal('application/json');
    expect(JSON.parse(a.body)).to.include({ errcode });
    expect(a.headers.connection).to.equal('close');
    // Answered through the request's own response: what the middleware set on it is kept.
    expect(a.headers['x-request-id']).to.be.a('string');
    expect(a.headers['access-control-allow-origin']).to.equal('*');
    expect(a.headers['cache-control']).to.equal('no-store, no-transform');
  }

  it('answers 408 M_UNKNOWN to a chunked create whose chunks stop', async () => {
    const a = await stall('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    expectMatrixAnswer(a, 408, 'M_UNKNOWN');
  });

  it('answers 408 M_UNKNOWN to a create that declared a Content-Length and sent nothing', async () => {
    const a = await stall(
      `POST ${MSC4108} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n`,
    );
    expectMatrixAnswer(a, 408, 'M_UNKNOWN');
  });

  it('answers 408 M_UNKNOWN to a write whose body stops half-way, and writes nothing', async () => {
    const body = JSON.stringify({ sequence_token: token, data: 'overwritten' });
    const a = await stall(
      `PUT ${msc4388Session} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`,
    );
    expectMatrixAnswer(a, 408, 'M_UNKNOWN');
    const read = await req(`${replica.url}${msc4388Session}`);
    expect(await read.json()).to.include({ data: 'kept', sequence_token: token });
  });

  it('answers 400 M_BAD_REQUEST to a chunked body that breaks off into bytes that are not HTTP', async () => {
    const a = await stall('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n');
    expectMatrixAnswer(a, 400, 'M_BAD_REQUEST');
  });

  it('finishes the requests it answered so, counting each 408 under its status', async () => {
    await until('the stalled creates to be counted', async () => {
      const scrape = await Scrape.of(`${replica.url}/metrics`);
      return scrape.value('rendezvous_http_requests_total', { method: 'POST', status: '408' }) === 2;
    });
  });
});
