import { expect } from 'chai';
import { RendezvousClient, RendezvousError } from '../src/client';

/** A client whose every request is answered by `answer` (nothing leaves the process). */
const clientAnswering = (answer: (url: string, init: RequestInit) => Response) =>
  new RendezvousClient({
    baseUrl: 'https://rz.example.org',
    family: 'msc3886',
    fetch: async (input, init) => answer(String(input), init ?? {}),
  });

describe('the rendezvous client keeps every ETag-family write a compare-and-set', () => {
  it('refuses to write a session it has not read (it would be an unconditional overwrite)', async () => {
    const client = clientAnswering(() => new Response(null, { status: 202, headers: { ETag: '"2"' } }));
    const session = client.open('https://rz.example.org/abc');
    const error = await session.write('x').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).to.be.instanceOf(Error);
    expect(client.requests).to.equal(0);
  });

  it('takes an answer without an ETag for an error, not for an unknown version', async () => {
    const withoutEtag = clientAnswering((_url, init) =>
      init.method === 'POST'
        ? new Response('{"id":"abc"}', { status: 200, headers: { Location: 'https://rz.example.org/abc' } })
        : new Response(null, { status: 202 }),
    );
    const created = await withoutEtag.create('x').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(created).to.be.instanceOf(RendezvousError);
    const writer = clientAnswering((_url, init) =>
      init.method === 'GET' || init.method === undefined
        ? new Response('x', { status: 200, headers: { ETag: '"1"' } })
        : new Response(null, { status: 202 }),
    );
    const session = writer.open('https://rz.example.org/abc');
    await session.read();
    const written = await session.write('y').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(written).to.be.instanceOf(RendezvousError);
  });
});

/** A client whose requests get the next of `answers` in turn (a thrown error: no answer at all). */
function clientScripted(family: 'msc3886' | 'msc4388', answers: (() => Response)[], options = {}) {
  const sent: { method: string; body: unknown }[] = [];
  const client = new RendezvousClient({
    baseUrl: 'https://rz.example.org',
    family,
    ...options,
    fetch: async (_input, init) => {
      sent.push({ method: init?.method ?? 'GET', body: init?.body });
      const next = answers.shift();
      if (next === undefined) throw new Error('no answer scripted for this request');
      return next();
    },
  });
  return { client, sent };
}

const lost = (): Response => {
  throw new TypeError('fetch failed');
};
const refused = (status: 429 | 503, retryAfter: string) => () =>
  new Response('{"errcode":"M_UNKNOWN","error":"try again"}', { status, headers: { 'Retry-After': retryAfter } });
const read = (etag: string) => () => new Response('x', { status: 200, headers: { ETag: etag } });
const accepted = (etag: string) => () => new Response('{}', { status: 202, headers: { ETag: etag } });

const failureOf = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (err: unknown) => err,
  );

describe('the rendezvous client sends a request again when the server asks it to, or did not answer', () => {
  it('re-sends a write refused with 503 or 429 after the Retry-After pause, verbatim', async () => {
    const { client, sent } = clientScripted('msc3886', [
      read('"1"'),
      refused(503, '0'),
      refused(429, '0'),
      accepted('"2"'),
    ]);
    const session = client.open('https://rz.example.org/abc');
    await session.read();
    await session.write('y');
    expect(session.version).to.equal('"2"');
    expect(sent.map((s) => s.method)).to.deep.equal(['GET', 'PUT', 'PUT', 'PUT']);
    expect(sent[1]!.body).to.equal('y');
    expect(sent[3]!.body).to.equal('y');
    expect(client.requests).to.equal(4);
  });

  it('re-sends a write whose answer was lost, and an MSC4388 one as well', async () => {
    const etag = clientScripted('msc3886', [read('"1"'), lost, accepted('"2"')]);
    const session = etag.client.open('https://rz.example.org/abc');
    await session.read();
    await session.write('y');
    expect(session.version).to.equal('"2"');
    const token = clientScripted('msc4388', [
      () => new Response('{"data":"x","sequence_token":"t1"}', { status: 200 }),
      lost,
      () => new Response('{"sequence_token":"t2"}', { status: 200 }),
    ]);
    const msc4388 = token.client.open('https://rz.example.org/abc');
    await msc4388.read();
    await msc4388.write('y');
    expect(msc4388.version).to.equal('t2');
    expect(token.sent[1]!.body).to.equal(token.sent[2]!.body);
  });

  it('does not re-send a create that went unanswered (a second would be another session)', async () => {
    const { client, sent } = clientScripted('msc3886', [lost, lost]);
    expect(await failureOf(client.create('x'))).to.be.instanceOf(TypeError);
    expect(sent).to.have.length(1);
  });

  it('re-sends a create refused with 429, but not one answered 503 (it may have made a session)', async () => {
    const created = () =>
      new Response('{"id":"abc"}', {
        status: 200,
        headers: { ETag: '"1"', Location: 'https://rz.example.org/abc' },
      });
    const limited = clientScripted('msc3886', [refused(429, '0'), created]);
    expect((await limited.client.create('x')).url).to.equal('https://rz.example.org/abc');
    const unavailable = clientScripted('msc3886', [refused(503, '0'), created]);
    const error = await failureOf(unavailable.client.create('x'));
    expect((error as RendezvousError).status).to.equal(503);
    expect(unavailable.sent).to.have.length(1);
  });

  it('throws a URL or header fetch could never send at once, not after re-sends', async () => {
    const { client, sent } = clientScripted('msc3886', []);
    expect(() => client.open('not a url')).to.throw(TypeError);
    expect(() => client.open('localhost:8080/abc')).to.throw(TypeError, 'must start with http:// or https://');
    expect(() => new RendezvousClient({ baseUrl: 'localhost:8080', family: 'msc4108' })).to.throw(TypeError);
    const badType = new RendezvousClient({ baseUrl: 'https://rz.example.org', family: 'msc3886', contentType: 'a\nb' });
    expect(await failureOf(badType.create('x'))).to.be.instanceOf(TypeError);
    expect(sent).to.have.length(0);
    expect(client.requests + badType.requests).to.equal(0);
  });

  it('gives up after `retries` re-sends, with the last answer as the error', async () => {
    const { client, sent } = clientScripted('msc3886', [read('"1"'), ...Array(3).fill(refused(503, '0'))], {
      retries: 2,
    });
    const session = client.open('https://rz.example.org/abc');
    await session.read();
    const error = await failureOf(session.write('y'));
    expect(error).to.be.instanceOf(RendezvousError);
    expect((error as RendezvousError).status).to.equal(503);
    expect(sent).to.have.length(4);
  });

  it('does not wait longer than maxRetryDelayMs: a longer Retry-After comes back as the error', async () => {
    const { client, sent } = clientScripted('msc3886', [refused(429, '120')]);
    const error = await failureOf(client.open('https://rz.example.org/abc').read());
    expect((error as RendezvousError).status).to.equal(429);
    expect(sent).to.have.length(1);
  });

  it('takes 404 for success after a DELETE that may have landed, and for an error otherwise', async () => {
    const notFound = () => new Response('{"errcode":"M_NOT_FOUND","error":"gone"}', { status: 404 });
    const afterLoss = clientScripted('msc3886', [lost, notFound]);
    await afterLoss.client.open('https://rz.example.org/abc').delete();
    const afterTimeout = clientScripted('msc3886', [refused(503, '0'), notFound]);
    await afterTimeout.client.open('https://rz.example.org/abc').delete();
    const plain = clientScripted('msc3886', [notFound]);
    expect(await failureOf(plain.client.open('https://rz.example.org/abc').delete())).to.be.instanceOf(RendezvousError);
  });

  it('stops waiting to re-send when its signal aborts', async () => {
    const { client, sent } = clientScripted('msc3886', [refused(503, '30')]);
    const controller = new AbortController();
    const reading = failureOf(client.open('https://rz.example.org/abc').read(controller.signal));
    controller.abort(new Error('stopped'));
    expect(((await reading) as Error).message).to.equal('stopped');
    expect(sent).to.have.length(1);
  });
});
