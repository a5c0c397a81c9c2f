import { expect } from 'chai';

/** A fetch that can never hang a test: a request not answered within `ms` fails instead. */
export function req(url: string, init: RequestInit = {}, ms = 10_000): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(ms) });
}

/**
 * Two devices' worth of an MSC3886 exchange against `base` (a replica, or a balancer in front of
 * several): create, conditional write, read, 304, stale write refused, delete, gone. Each call may
 * land on a different replica; the answers must not tell.
 */
export async function msc3886Exchange(base: string): Promise<void> {
  const created = await req(`${base}/`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'hello' });
  expect(created.status).to.equal(200);
  const { id } = (await created.json()) as { id: string };
  const etag1 = created.headers.get('ETag')!;
  expect(etag1).to.match(/^"/);
  const url = `${base}/${id}`;

  const put = await req(url, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', 'If-Match': etag1 },
    body: '{"step":2}',
  });
  expect(put.status).to.equal(202);
  const etag2 = put.headers.get('ETag')!;
  expect(etag2).to.not.equal(etag1);

  const got = await req(url);
  expect(got.status).to.equal(200);
  expect(got.headers.get('Content-Type')).to.equal('application/json');
  expect(await got.text()).to.equal('{"step":2}');

  const same = await req(url, { headers: { 'If-None-Match': etag2 } });
  expect(same.status).to.equal(304);

  const stale = await req(url, { method: 'PUT', headers: { 'If-Match': etag1 }, body: 'late' });
  expect(stale.status).to.equal(412);
  expect(stale.headers.get('ETag')).to.equal(etag2);

  expect((await req(url, { method: 'DELETE' })).status).to.equal(204);
  const gone = await req(url);
  expect(gone.status).to.equal(404);
  expect(((await gone.json()) as { errcode: string }).errcode).to.equal('M_NOT_FOUND');
}

const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = '/_matrix/client/v1/rendezvous';

/** MSC4108 (2024): text/plain create, If-Match writes, 304, 412 with the unstable errcode, delete. */
export async function msc4108Exchange(base: string): Promise<void> {
  const created = await req(`${base}${MSC4108}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' } });
  expect(created.status).to.equal(201);
  const { url } = (await created.json()) as { url: string };
  const at = `${base}${new URL(url).pathname}`;
  const etag1 = created.headers.get('ETag')!;

  const put = await req(at, {
    method: 'PUT',
    headers: { 'Content-Type': 'text/plain', 'If-Match': etag1 },
    body: 'offer',
  });
  expect(put.status).to.equal(202);
  const etag2 = put.headers.get('ETag')!;
  const got = await req(at);
  expect(got.status).to.equal(200);
  expect(got.headers.get('Content-Type')).to.equal('text/plain');
  expect(await got.text()).to.equal('offer');
  expect((await req(at, { headers: { 'If-None-Match': etag2 } })).status).to.equal(304);
  const stale = await req(at, {
    method: 'PUT',
    headers: { 'Content-Type': 'text/plain', 'If-Match': etag1 },
    body: 'late',
  });
  expect(stale.status).to.equal(412);
  expect(((await stale.json()) as Record<string, string>)['org.matrix.msc4108.errcode']).to.equal('M_CONCURRENT_WRITE');
  expect((await req(at, { method: 'DELETE' })).status).to.equal(204);
  expect((await req(at)).status).to.equal(404);
}

/** MSC4388 (stable path): create, token CAS with 409, a replayed transaction id, read, delete. */
export async function msc4388Exchange(base: string): Promise<void> {
  const json = (body: unknown): RequestInit => ({
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const created = await req(`${base}${MSC4388}`, { ...json({ data: '' }), method: 'POST' });
  expect(created.status).to.equal(200);
  const { id, sequence_token: t1 } = (await created.json()) as { id: string; sequence_token: string };
  const at = `${base}${MSC4388}/${id}`;

  const put = await req(`${at}/txn-1`, json({ sequence_token: t1, data: 'hello' }));
  expect(put.status).to.equal(200);
  const { sequence_token: t2 } = (await put.json()) as { sequence_token: string };
  expect(t2).to.not.equal(t1);
  const replay = await req(`${at}/txn-1`, json({ sequence_token: t1, data: 'hello' }));
  expect(replay.status).to.equal(200);
  expect(((await replay.json()) as { sequence_token: string }).sequence_token).to.equal(t2);
  const conflict = await req(at, json({ sequence_token: t1, data: 'other' }));
  expect(conflict.status).to.equal(409);
  expect(((await conflict.json()) as { errcode: string }).errcode).to.equal('M_CONCURRENT_WRITE');

  const got = await req(at);
  expect(got.status).to.equal(200);
  expect(await got.json()).to.include({ data: 'hello', sequence_token: t2 });
  expect((await req(at, { method: 'DELETE' })).status).to.equal(200);
  expect((await req(at)).status).to.equal(404);
}

/** One exchange of every protocol family. */
export async function everyFamilyExchange(base: string): Promise<void> {
  await msc3886Exchange(base);
  await msc4108Exchange(base);
  await msc4388Exchange(base);
}

/** What the conversation needs of a transport, e.g. matrix-js-sdk's MSC4108RendezvousSession. */
interface MessageTransport {
  send(data: string): Promise<unknown>;
  receive(): Promise<string | undefined>;
}

/** `rounds` messages each way, the joiner first, each received before the next is sent. */
export async function converse(creator: MessageTransport, joiner: MessageTransport, rounds: number): Promise<void> {
  for (let i = 1; i <= rounds; i++) {
    await joiner.send(`joiner message ${i}`);
    expect(await creator.receive()).to.equal(`joiner message ${i}`);
    await creator.send(`creator message ${i}`);
    expect(await joiner.receive()).to.equal(`creator message ${i}`);
  }
}
