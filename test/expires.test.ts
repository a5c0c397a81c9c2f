import { expect } from 'chai';
import { httpDate, httpDateUp } from '../src/http/headers';
import { req } from './helpers/exchange';
import { sharedRedisUrl } from './helpers/redis';
import { Replica } from './helpers/replica';

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const TTL_SECONDS = 300;

describe('Expires', function () {
  this.timeout(20_000);

  it('is rounded up to the next whole second, Last-Modified down', () => {
    const at = Date.UTC(2026, 0, 1, 12, 0, 0);
    expect(httpDateUp(at)).to.equal('Thu, 01 Jan 2026 12:00:00 GMT');
    expect(httpDateUp(at + 1)).to.equal('Thu, 01 Jan 2026 12:00:01 GMT');
    expect(httpDateUp(at + 999)).to.equal('Thu, 01 Jan 2026 12:00:01 GMT');
    expect(httpDate(at + 999)).to.equal('Thu, 01 Jan 2026 12:00:00 GMT');
  });

  describe('on a replica', () => {
    let replica: Replica;
    before(async () => {
      replica = await Replica.start({ REDIS_URL: await sharedRedisUrl(), RZ_TTL_SECONDS: String(TTL_SECONDS) });
    });
    after(() => replica?.stop());

    /**
     * A fresh session was created at some instant within the second Last-Modified names, and expires
     * TTL later. An Expires never earlier than that instant is TTL after Last-Modified, or TTL + 1 s
     * when creation fell after the start of its second, which it does but one time in a thousand.
     */
    for (const [family, path, headers] of [
      ['MSC3886', '/', {}],
      ['MSC4108', MSC4108, { 'Content-Type': 'text/plain' }],
    ] as const) {
      it(`is never before the session's expiry on ${family} creates and reads`, async () => {
        const gaps: number[] = [];
        for (let i = 0; i < 5; i++) {
          const created = await req(`${replica.url}${path}`, { method: 'POST', headers, body: 'x' });
          const lastModified = Date.parse(created.headers.get('Last-Modified')!);
          const expires = Date.parse(created.headers.get('Expires')!);
          gaps.push((expires - lastModified) / 1000);
          const body = (await created.json()) as { id?: string; url?: string };
          const at = body.url !== undefined ? new URL(body.url).pathname : `/${body.id}`;
          // Every answer about the session names the same instant (304 included).
          const etag = created.headers.get('ETag')!;
          for (const h of [{}, { 'If-None-Match': etag }] as Record<string, string>[]) {
            expect((await req(`${replica.url}${at}`, { headers: h })).headers.get('Expires')).to.equal(
              created.headers.get('Expires'),
            );
          }
        }
        for (const gap of gaps) expect([TTL_SECONDS, TTL_SECONDS + 1]).to.include(gap);
        expect(gaps, 'some create fell after the start of its second').to.include(TTL_SECONDS + 1);
      });
    }
  });
});
