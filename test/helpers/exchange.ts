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
