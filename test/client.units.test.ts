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
