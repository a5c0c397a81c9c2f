import { expect } from 'chai';
import { parseAnswers, rawExchange, type RawAnswer } from './helpers/raw';
import { startServer, type TestServer } from './helpers/server';

/** What every answer carries, whoever writes it (Koa, or the server before Koa sees the request). */
function expectCommonHeaders(a: RawAnswer): void {
  expect(a.headers).to.include({
    'cache-control': 'no-store, no-transform',
    pragma: 'no-cache',
    'x-content-type-options': 'nosniff',
    'access-control-allow-origin': '*',
  });
  expect(a.headers['access-control-expose-headers']).to.include('ETag');
}

describe('requests at the edges of HTTP', function () {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server?.stop());

  const exchange = async (bytes: string): Promise<RawAnswer> =>
    parseAnswers((await rawExchange(server.port, bytes)).text)[0]!;
  const create = async (type: string) => {
    const res = await fetch(`${server.url}/`, { method: 'POST', headers: { 'Content-Type': type }, body: 'x' });
    expect(res.status).to.equal(200);
    return { url: res.headers.get('Location')!, etag: res.headers.get('ETag')! };
  };

  it('answers an OPTIONS that is no preflight (no Access-Control-Request-Method) with the CORS headers', async () => {
    const { url } = await create('text/plain');
    const res = await fetch(url, { method: 'OPTIONS', headers: { Origin: 'https://app.example' } });
    expect(res.status).to.equal(204);
    expect(res.headers.get('Access-Control-Allow-Origin')).to.equal('*');
    expect(res.headers.get('Access-Control-Expose-Headers')).to.include('ETag');
    expect(res.headers.get('Allow')).to.include('PUT');
  });

  it('serves a request whose Expect it does not know, as RFC 9110 allows, rather than a bare 417', async () => {
    const { url, etag } = await create('text/plain');
    const a = await exchange(
      `PUT ${new URL(url).pathname} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
        `If-Match: ${etag}\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\ny`,
    );
    expect(a.status).to.equal(202);
    expect(await (await fetch(url)).text()).to.equal('y');
  });

  it('answers CONNECT 400 M_BAD_REQUEST with the usual headers, instead of closing unanswered', async () => {
    for (const target of ['example.org:443', '/abc']) {
      const a = await exchange(`CONNECT ${target} HTTP/1.1\r\nHost: example.org:443\r\n\r\n`);
      expect(a.status).to.equal(400);
      expect(JSON.parse(a.body)).to.include({ errcode: 'M_BAD_REQUEST' });
      expect(a.headers['content-type']).to.equal('application/json');
      expectCommonHeaders(a);
    }
  });

  it("carries the usual headers on the parser's own refusals (headers too large, not HTTP)", async () => {
    const large = await exchange(`GET /x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(large.status).to.equal(431);
    expectCommonHeaders(large);
    const broken = await exchange('GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
    expect(broken.status).to.equal(400);
    expectCommonHeaders(broken);
  });

  it('stores and echoes an MSC3886 Content-Type with a tab before its parameter (RFC 9110 whitespace)', async () => {
    const type = 'text/plain;\tcharset=utf-8';
    const { url } = await create(type);
    expect((await fetch(url)).headers.get('Content-Type')).to.equal(type);
    const tooLong = await fetch(`${server.url}/`, {
      method: 'POST',
      headers: { 'Content-Type': `application/${'x'.repeat(300)}` },
      body: 'x',
    });
    expect(tooLong.status).to.equal(400);
    expect(((await tooLong.json()) as { error: string }).error).to.include('at most 255');
  });
});
