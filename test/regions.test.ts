import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { converse } from './helpers/exchange';
import { CSP, request, type Reply } from './helpers/http';
import { heldGet } from './helpers/longpoll';
import { Scrape } from './helpers/metrics';
import { Replica } from './helpers/replica';
import {
  GLOBAL_BASE_URL,
  REGION_SECRET,
  type Region,
  at,
  linkRttMs,
  startRegions,
  stopRegions,
} from './helpers/regions';
import { inParallel, send } from './helpers/send';
import { until } from './helpers/topologies';

const MSC3886_UNSTABLE = '/_matrix/client/unstable/org.matrix.msc3886/rendezvous';
const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = [
  { prefix: '/_matrix/client/unstable/io.element.msc4388/rendezvous', conflict: 'IO_ELEMENT_MSC4388_CONCURRENT_WRITE' },
  { prefix: '/_matrix/client/v1/rendezvous', conflict: 'M_CONCURRENT_WRITE' },
];
const JSON_TYPE = { 'Content-Type': 'application/json' };
const TEXT = { 'Content-Type': 'text/plain' };

/** A figure the issue asks to see, printed with the test output (never asserted: the bench measures). */
function report(line: string): void {
  console.log(`      ${line}`);
}

const metric = async (replicas: Replica[], name: string, labels: Record<string, string> = {}) => {
  const scrapes = await Promise.all(replicas.map((r) => Scrape.of(`${r.url}/metrics`)));
  return scrapes.reduce((sum, s) => sum + s.value(name, labels), 0);
};
/** Until the home region holds `n` long-poll waiters (both its replicas together). */
const homeHolds = (home: Region, n: number) =>
  until(
    `${n} waiters held in ${home.name}`,
    async () => (await metric(home.replicas, 'rendezvous_longpoll_waiters')) === n,
  );

async function createMsc3886(replica: Replica, body = 'hello', type = 'text/plain'): Promise<Reply> {
  const created = await request('POST', `${replica.url}/`, { headers: { 'Content-Type': type }, body });
  expect(created.status).to.equal(200);
  return created;
}

async function createMsc4388(replica: Replica, prefix: string, data = ''): Promise<{ id: string; token: string }> {
  const res = await request('POST', `${replica.url}${prefix}`, { headers: JSON_TYPE, body: JSON.stringify({ data }) });
  expect(res.status).to.equal(200);
  return { id: res.json.id as string, token: res.json.sequence_token as string };
}

const put4388 = (url: string, token: string, data: string) =>
  request('PUT', url, { headers: JSON_TYPE, body: JSON.stringify({ sequence_token: token, data }) });

/** The headers a forwarded answer must carry exactly as the home region sent them. */
const RELAYED = [
  'etag',
  'expires',
  'last-modified',
  'content-type',
  'content-length',
  'cache-control',
  'pragma',
  'x-content-type-options',
  'content-security-policy',
  'access-control-allow-origin',
  'access-control-expose-headers',
];

describe('two regions, each with its own Redis and two replicas, 25 ms apart', function () {
  this.timeout(60_000);
  let eu: Region;
  let us: Region;
  let rtt: number;

  before(async () => {
    [eu, us] = (await startRegions(['eu', 'us'], {
      env: { RZ_ACCESS_LOG: 'true', RZ_LONGPOLL_MAX_WAIT_SECONDS: '60', RZ_REGION_RESPONSE_TIMEOUT_MS: '2000' },
    })) as [Region, Region];
    rtt = await linkRttMs(us);
    report(`inter-region link: measured round trip ${rtt.toFixed(1)} ms (25 ms added each way)`);
  });
  after(() => stopRegions([eu, us]));

  it('names the home region in every family: MSC3886 id and Location, MSC4108 url, MSC4388 id', async () => {
    const a = await createMsc3886(eu.a);
    expect(a.json.id).to.match(/^eu\.[A-Za-z0-9_-]{22}$/);
    expect(a.headers.location).to.equal(`${GLOBAL_BASE_URL}/${a.json.id}`);
    const b = await request('POST', `${us.b.url}${MSC4108}`, { headers: TEXT });
    expect(b.status).to.equal(201);
    expect(b.json.url).to.match(new RegExp(`^${GLOBAL_BASE_URL}${MSC4108}/us\\.[A-Za-z0-9_-]{22}$`));
    for (const { prefix } of MSC4388)
      expect((await createMsc4388(us.a, prefix)).id).to.match(/^us\.[A-Za-z0-9_-]{22}$/);
  });

  it('MSC3886: one device in each region reads, writes, conditionally polls and deletes, on both paths', async () => {
    const created = await createMsc3886(eu.a, '{"step":1}', 'application/json');
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    const etag1 = created.headers.etag as string;
    const read = await request('GET', at(us.a, url));
    expect(read.status).to.equal(200);
    expect(read.text).to.equal('{"step":1}');
    expect(read.headers['content-type']).to.equal('application/json');
    expect(read.headers.etag).to.equal(etag1);
    // The same answer through the prefix a homeserver reverse-proxies.
    const prefixed = await request('GET', `${us.b.url}${MSC3886_UNSTABLE}/${created.json.id}`);
    expect(prefixed.status).to.equal(200);
    expect(prefixed.text).to.equal('{"step":1}');
    expect((await request('GET', at(us.b, url), { headers: { 'If-None-Match': etag1 } })).status).to.equal(304);

    const put = await request('PUT', at(us.a, url), {
      headers: { 'Content-Type': 'application/json', 'If-Match': etag1 },
      body: '{"step":2}',
    });
    expect(put.status).to.equal(202);
    const etag2 = put.headers.etag as string;
    expect(etag2).to.not.equal(etag1);
    const back = await request('GET', at(eu.b, url), { headers: { 'If-None-Match': etag1 } });
    expect(back.status).to.equal(200);
    expect(back.text).to.equal('{"step":2}');

    const stale = await request('PUT', at(us.b, url), { headers: { 'If-Match': etag1 }, body: 'late' });
    expect(stale.status).to.equal(412);
    expect(stale.json.errcode).to.equal('M_CONCURRENT_WRITE');
    expect(stale.headers.etag).to.equal(etag2);

    expect((await request('DELETE', at(us.a, url))).status).to.equal(204);
    expect((await request('GET', at(eu.a, url))).json.errcode).to.equal('M_NOT_FOUND');
    expect((await request('GET', at(us.a, url))).json.errcode).to.equal('M_NOT_FOUND');
  });

  it('relays the home answer verbatim: same validators and headers, none of them doubled', async () => {
    const created = await createMsc3886(us.a, 'verbatim');
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    const conditions: Record<string, string>[] = [{}, { 'If-None-Match': created.headers.etag as string }];
    for (const headers of conditions) {
      const home = await request('GET', at(us.b, url), { headers });
      const forwarded = await request('GET', at(eu.a, url), { headers });
      expect(forwarded.status).to.equal(home.status);
      expect(forwarded.body.equals(home.body)).to.equal(true);
      // Joined values ("a, a") would show a header sent twice.
      for (const h of RELAYED) expect(forwarded.headers[h], h).to.equal(home.headers[h]);
      expect(forwarded.headers['cache-control']).to.equal('no-store, no-transform');
      expect(forwarded.headers['content-security-policy']).to.equal(CSP);
      expect(forwarded.headers['access-control-allow-origin']).to.equal('*');
      expect(forwarded.headers['x-rendezvous-peer-refused']).to.equal(undefined);
    }
  });

  it('MSC4108: creator in one region, the other device in the other: 304, 412 errcodes, 400s relayed, delete', async () => {
    const created = await request('POST', `${us.a.url}${MSC4108}`, { headers: TEXT });
    const url = created.json.url as string;
    const etag1 = created.headers.etag as string;
    const joined = await request('GET', at(eu.a, url));
    expect(joined.status).to.equal(200);
    expect(joined.headers['content-type']).to.equal('text/plain');
    expect(joined.headers.etag).to.equal(etag1);
    for (const h of ['etag', 'expires', 'last-modified']) expect(joined.headers[h], h).to.be.a('string');
    const notModified = await request('GET', at(eu.b, url), { headers: { 'If-None-Match': etag1 } });
    expect(notModified.status).to.equal(304);
    for (const h of ['etag', 'expires', 'last-modified']) expect(notModified.headers[h], h).to.be.a('string');

    const put = await request('PUT', at(eu.a, url), { headers: { ...TEXT, 'If-Match': etag1 }, body: 'offer' });
    expect(put.status).to.equal(202);
    const got = await request('GET', at(us.b, url), { headers: { 'If-None-Match': etag1 } });
    expect(got.text).to.equal('offer');

    const stale = await request('PUT', at(eu.b, url), { headers: { ...TEXT, 'If-Match': etag1 }, body: 'late' });
    expect(stale.status).to.equal(412);
    expect(stale.json).to.include({ errcode: 'M_UNKNOWN', 'org.matrix.msc4108.errcode': 'M_CONCURRENT_WRITE' });
    const missing = await request('PUT', at(eu.b, url), { headers: TEXT, body: 'x' });
    expect(missing.status).to.equal(400);
    expect(missing.json.errcode).to.equal('M_MISSING_PARAM');

    expect((await request('DELETE', at(eu.a, url))).status).to.equal(204);
    expect((await request('GET', at(us.a, url))).status).to.equal(404);
    expect((await request('GET', at(eu.a, url))).status).to.equal(404);
  });

  for (const { prefix, conflict } of MSC4388) {
    it(`MSC4388 (${prefix}): one device in each region, 409 with the path's errcode, unsafe fetch 403 relayed`, async () => {
      const { id, token: t1 } = await createMsc4388(eu.b, prefix);
      const remote = `${us.a.url}${prefix}/${id}`;
      const home = `${eu.a.url}${prefix}/${id}`;
      const put = await put4388(remote, t1, 'hello');
      expect(put.status).to.equal(200);
      const t2 = put.json.sequence_token as string;
      expect(t2).to.not.equal(t1);
      const conflicting = await put4388(remote, t1, 'other');
      expect(conflicting.status).to.equal(409);
      expect(conflicting.json.errcode).to.equal(conflict);
      const read = await request('GET', home);
      expect(read.json).to.include({ data: 'hello', sequence_token: t2 });
      // A protocol 403 is the home region's answer, relayed: not the 502 of a refused forward.
      const unsafe = await request('GET', remote, { headers: { 'Sec-Fetch-Dest': 'document' } });
      expect(unsafe.status).to.equal(403);
      expect(unsafe.json.errcode).to.equal('M_FORBIDDEN');
      const fetched = await request('GET', remote, {
        headers: { 'Sec-Fetch-Dest': 'empty', 'Sec-Fetch-Mode': 'cors' },
      });
      expect(fetched.json).to.include({ data: 'hello', sequence_token: t2 });
      expect((await request('DELETE', remote)).status).to.equal(200);
      expect((await request('GET', home)).json.errcode).to.equal('M_NOT_FOUND');
    });
  }

  it('matrix-js-sdk@43 MSC4108RendezvousSession: creator in eu, joiner in us, one global hostname, 3 messages each way', async function () {
    const sdk = await import('matrix-js-sdk-43/lib/rendezvous/transports/index.js');
    const { logger } = await import('matrix-js-sdk-43/lib/logger.js');
    (logger as unknown as { setLevel(level: string): void }).setLevel('silent');
    const failures: unknown[] = [];
    const onFailure = (reason: unknown) => failures.push(reason);
    // The one public hostname resolves to the nearest region (GeoDNS): eu for one device, us for the other.
    const resolvingTo =
      (replica: Replica): typeof fetch =>
      (input, init) =>
        fetch(String(input).replace(GLOBAL_BASE_URL, replica.url), init);
    const creator = new sdk.MSC4108RendezvousSession({
      fallbackRzServer: GLOBAL_BASE_URL + MSC4108,
      fetchFn: resolvingTo(eu.a),
      onFailure,
    });
    let joiner: InstanceType<typeof sdk.MSC4108RendezvousSession> | undefined;
    try {
      await creator.send('hello from the new device');
      expect(creator.url!.startsWith(`${GLOBAL_BASE_URL}${MSC4108}/eu.`)).to.equal(true);
      joiner = new sdk.MSC4108RendezvousSession({ url: creator.url!, fetchFn: resolvingTo(us.b), onFailure });
      expect(await joiner.receive()).to.equal('hello from the new device');
      await converse(creator, joiner, 3);
      expect(failures).to.deep.equal([]);
    } finally {
      // The creator's close() deletes the session in eu; the joiner's then finds it gone.
      await creator.close();
      await joiner?.close();
    }
    expect((await request('GET', at(us.a, creator.url!))).status).to.equal(404);
  });

  it('lets exactly one of 16 racing writers win, 8 in each region, every round (ETag family and MSC4388)', async () => {
    const writers = [eu.a, eu.b, us.a, us.b];
    const created = await createMsc3886(eu.a, 'round-0');
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    let etag = created.headers.etag as string;
    for (let round = 1; round <= 20; round++) {
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          request('PUT', at(writers[i % 4]!, url), { headers: { 'If-Match': etag }, body: `r${round}-w${i}` }),
        ),
      );
      const winners = answers.flatMap((a, i) => (a.status === 202 ? [i] : []));
      expect(winners, `round ${round}`).to.have.length(1);
      expect(
        answers.filter((a) => a.status === 412),
        `round ${round}`,
      ).to.have.length(15);
      const stored = await request('GET', at(writers[round % 4]!, url));
      expect(stored.text).to.equal(`r${round}-w${winners[0]}`);
      etag = stored.headers.etag as string;
    }

    const { prefix } = MSC4388[1]!;
    const session = await createMsc4388(us.a, prefix);
    const id = session.id;
    let token = session.token;
    for (let round = 1; round <= 20; round++) {
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          put4388(`${writers[i % 4]!.url}${prefix}/${id}`, token, `r${round}-w${i}`),
        ),
      );
      const winners = answers.filter((a) => a.status === 200);
      expect(winners, `round ${round}`).to.have.length(1);
      expect(
        answers.filter((a) => a.status === 409),
        `round ${round}`,
      ).to.have.length(15);
      token = winners[0]!.json.sequence_token as string;
    }
  });

  it('wakes a long-poll held through one region with a write in the other, and the other way round', async () => {
    const figures: { held: string; write: string; ms: number }[] = [];
    for (const [home, away] of [
      [eu, us],
      [us, eu],
    ] as const) {
      for (let round = 0; round < 5; round++) {
        const created = await createMsc3886(home.a, `v${round}`);
        const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
        // Held in the other region's replica, forwarded home and held there; the write lands at home.
        const held = heldGet(at(away.a, url), created.headers.etag as string, 30);
        await homeHolds(home, 1);
        const t0 = performance.now();
        const put = request('PUT', at(home.b, url), { headers: TEXT, body: `woken ${round}` });
        const res = await held.response;
        figures.push({ held: away.name, write: home.name, ms: performance.now() - t0 });
        expect(res.status).to.equal(200);
        expect(res.body).to.equal(`woken ${round}`);
        expect(res.headers['preference-applied']).to.equal('wait=30');
        expect((await put).status).to.equal(202);
        // And the other way round: held at home, woken by a write forwarded from the other region.
        const etag = (await put).headers.etag as string;
        const heldHome = heldGet(at(home.a, url), etag, 30);
        await homeHolds(home, 1);
        const t1 = performance.now();
        const put2 = request('PUT', at(away.b, url), { headers: TEXT, body: `woken again ${round}` });
        const res2 = await heldHome.response;
        figures.push({ held: home.name, write: away.name, ms: performance.now() - t1 });
        expect(res2.body).to.equal(`woken again ${round}`);
        expect((await put2).status).to.equal(202);
      }
    }
    const ms = figures.map((f) => f.ms).sort((a, b) => a - b);
    report(
      `cross-region wake-up over ${ms.length} rounds: median ${ms[ms.length >> 1]!.toFixed(1)} ms, ` +
        `max ${ms[ms.length - 1]!.toFixed(1)} ms (link round trip ${rtt.toFixed(1)} ms)`,
    );
  });

  it('holds an MSC4388 long-poll (timeout_ms) through the other region and relays the unchanged answer at its end', async () => {
    const { prefix } = MSC4388[0]!;
    const { id, token } = await createMsc4388(eu.a, prefix, 'unchanged');
    const timeouts = () => metric(eu.replicas, 'rendezvous_longpoll_wakeups_total', { cause: 'timeout' });
    const before = await timeouts();
    // Held longer than the forward's 2 s response timeout: the wait extends it, or this would be a 503.
    const res = await request('GET', `${us.a.url}${prefix}/${id}?sequence_token=${token}&timeout_ms=2500`);
    expect(res.status).to.equal(200);
    expect(res.json).to.include({ data: 'unchanged', sequence_token: token });
    expect(await timeouts()).to.equal(before + 1);
    const woken = request('GET', `${us.b.url}${prefix}/${id}?sequence_token=${token}&timeout_ms=20000`);
    await homeHolds(eu, 1);
    expect((await put4388(`${eu.b.url}${prefix}/${id}`, token, 'changed')).status).to.equal(200);
    expect((await woken).json).to.include({ data: 'changed' });
  });

  it('cancels the held request at home when the client goes away mid long-poll', async () => {
    const created = await createMsc3886(us.a);
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    const held = heldGet(at(eu.a, url), created.headers.etag as string, 30);
    held.response.catch(() => undefined);
    await homeHolds(us, 1);
    held.abort();
    await homeHolds(us, 0);
  });

  it('MSC4388: a verbatim re-send and a txnId replay give the same answers in either region', async () => {
    const { prefix, conflict } = MSC4388[1]!;
    const { id, token: t1 } = await createMsc4388(us.b, prefix);
    const inEu = `${eu.a.url}${prefix}/${id}`;
    const inUs = `${us.a.url}${prefix}/${id}`;
    const first = await put4388(inEu, t1, 'message one');
    expect(first.status).to.equal(200);
    const t2 = first.json.sequence_token as string;
    // Re-sent verbatim from the other region (the client's answer was lost): current token, nothing written.
    for (const url of [inUs, inEu]) {
      const again = await put4388(url, t1, 'message one');
      expect(again.status).to.equal(200);
      expect(again.json.sequence_token).to.equal(t2);
    }
    const txn = await put4388(`${inUs}/txn-a`, t2, 'message two');
    expect(txn.status).to.equal(200);
    const t3 = txn.json.sequence_token as string;
    const replayed = await put4388(`${inEu}/txn-a`, t2, 'message two');
    expect(replayed.status).to.equal(200);
    expect(replayed.json.sequence_token).to.equal(t3);
    // A recorded 409 is replayed as a 409, wherever it is asked again.
    const refused = await put4388(`${inEu}/txn-b`, t1, 'stale');
    expect(refused.status).to.equal(409);
    const refusedAgain = await put4388(`${inUs}/txn-b`, t3, 'stale');
    expect(refusedAgain.status).to.equal(409);
    expect(refusedAgain.json.errcode).to.equal(conflict);
    expect((await request('GET', inUs)).json).to.include({ data: 'message two', sequence_token: t3 });
  });

  it('refuses a request that claims to be forwarded without the secret (403), and never forwards it', async () => {
    const created = await createMsc3886(us.a, 'private');
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    const received = () => metric(us.replicas, 'rendezvous_region_forwards_received_total');
    const before = await received();
    const forged: Record<string, string>[] = [
      { 'X-Rendezvous-Forwarded-By': 'eu', 'X-Rendezvous-Forwarded-For': '203.0.113.7' },
      {
        'X-Rendezvous-Forwarded-By': 'eu',
        'X-Rendezvous-Forwarded-For': '203.0.113.7',
        'X-Rendezvous-Region-Secret': 'guess',
      },
      { 'X-Rendezvous-Region-Secret': REGION_SECRET.slice(0, -1) },
      { 'X-Rendezvous-Forwarded-For': '203.0.113.7' },
    ];
    for (const headers of forged) {
      for (const replica of [us.a, eu.a]) {
        const res = await request('GET', at(replica, url), { headers });
        expect(res.status, JSON.stringify(headers)).to.equal(403);
        expect(res.json.errcode).to.equal('M_FORBIDDEN');
      }
    }
    expect(await received()).to.equal(before);
    expect(await metric([us.a, eu.a], 'rendezvous_region_peer_auth_refused_total')).to.be.at.least(2 * forged.length);
    // The right secret with malformed forwarding headers is refused too.
    const malformed = await request('GET', at(us.a, url), {
      headers: {
        'X-Rendezvous-Region-Secret': REGION_SECRET,
        'X-Rendezvous-Forwarded-By': 'EU!',
        'X-Rendezvous-Forwarded-For': 'x',
      },
    });
    expect(malformed.status).to.equal(403);
  });

  it('never forwards a forwarded request again (refused), and answers 404 for a region that is not configured', async () => {
    const created = await createMsc3886(us.a, 'x');
    // A forward (right secret) for a us session that arrives in eu: a loop or a wrong peer URL. Never
    // forwarded, and refused as a forward (its sender answers 502), not taken for an expired session.
    const looped = await request('GET', `${eu.a.url}/${created.json.id}`, {
      headers: {
        'X-Rendezvous-Region-Secret': REGION_SECRET,
        'X-Rendezvous-Forwarded-By': 'us',
        'X-Rendezvous-Forwarded-For': '203.0.113.8',
      },
    });
    expect(looped.status).to.equal(403);
    expect(looped.json.errcode).to.equal('M_FORBIDDEN');
    expect(looped.headers['x-rendezvous-peer-refused']).to.equal('region');
    for (const path of [
      '/ap.AAAAAAAAAAAAAAAAAAAAAA',
      `${MSC4108}/ap.AAAAAAAAAAAAAAAAAAAAAA`,
      `${MSC4388[1]!.prefix}/xx.y`,
    ]) {
      const res = await request('GET', `${eu.a.url}${path}`);
      expect(res.status, path).to.equal(404);
      expect(res.json.errcode).to.equal('M_NOT_FOUND');
    }
    // Creates are always local, whichever region's session the path might seem to name.
    expect((await createMsc3886(eu.b)).json.id).to.match(/^eu\./);
  });

  it('bounds a forwarded body like a local one: 413 before anything crosses regions', async () => {
    const created = await createMsc3886(us.a);
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    const received = () => metric(us.replicas, 'rendezvous_region_forwards_received_total');
    const before = await received();
    const big = await request('PUT', at(eu.a, url), { headers: TEXT, body: 'x'.repeat(4097) });
    expect(big.status).to.equal(413);
    expect(big.json.errcode).to.equal('M_TOO_LARGE');
    expect(await received()).to.equal(before);
    // MSC4388 bodies are JSON: 4096 bytes of data, escaped, still fit.
    const { prefix } = MSC4388[1]!;
    const { id, token } = await createMsc4388(us.a, prefix);
    const data = '\u0001'.repeat(4096);
    const escaped = await put4388(`${eu.b.url}${prefix}/${id}`, token, data);
    expect(escaped.status).to.equal(200);
    expect((await request('GET', `${us.b.url}${prefix}/${id}`)).json.data).to.equal(data);
  });

  it('carries the request id across the hop: both regions log the same one', async () => {
    const created = await createMsc3886(us.a);
    const reqId = `login-${Date.now()}`;
    const res = await request('GET', `${eu.b.url}/${created.json.id}`, { headers: { 'X-Request-Id': reqId } });
    expect(res.status).to.equal(200);
    expect(res.headers['x-request-id']).to.equal(reqId);
    const logged = (replicas: Replica[]) =>
      replicas.some((r) => r.logs.some((l) => l.msg === 'request' && l.reqId === reqId && l.status === 200));
    await until('both regions to log the request', async () => logged([eu.b]) && logged(us.replicas));
  });

  it('exports per-peer metrics: forwards by status, their latency (long-polls apart), and the peer up', async () => {
    const created = await createMsc3886(us.a);
    await request('GET', `${eu.a.url}/${created.json.id}`);
    const held = await heldGet(`${eu.a.url}/${created.json.id}`, created.headers.etag as string, 1).response;
    expect(held.status).to.equal(304);
    const s = await Scrape.of(`${eu.a.url}/metrics`);
    expect(s.value('rendezvous_region_forwarded_requests_total', { peer: 'us', status: '200' })).to.be.greaterThan(0);
    expect(
      s.value('rendezvous_region_forward_duration_seconds_count', { peer: 'us', kind: 'request' }),
    ).to.be.greaterThan(0);
    expect(
      s.value('rendezvous_region_forward_duration_seconds_count', { peer: 'us', kind: 'longpoll' }),
    ).to.be.greaterThan(0);
    expect(s.value('rendezvous_region_peer_up', { peer: 'us' })).to.equal(1);
    const home = await Scrape.of(`${us.a.url}/metrics`);
    expect(home.has('rendezvous_region_forwards_received_total')).to.equal(true);
  });

  it('answers 502 when the home region refuses this replica as a peer (a wrong secret)', async () => {
    const rogue = await Replica.start({
      REDIS_URL: eu.redis.url,
      RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
      RZ_REGION: 'eu',
      RZ_REGION_PEERS: `us=${us.link.url}`,
      RZ_REGION_SECRET: 'not-the-shared-secret-at-all',
    });
    try {
      const created = await createMsc3886(us.a);
      const res = await request('GET', `${rogue.url}/${created.json.id}`);
      expect(res.status).to.equal(502);
      expect(res.json.errcode).to.equal('M_UNKNOWN');
      expect(res.headers['x-rendezvous-peer-refused']).to.equal(undefined);
      expect(rogue.logs.some((l) => l.level === 50 && /RZ_REGION_SECRET/.test(l.msg))).to.equal(true);
      expect(
        (await Scrape.of(`${rogue.url}/metrics`)).value('rendezvous_region_forward_failures_total', {
          peer: 'us',
          reason: 'refused',
        }),
      ).to.equal(1);
      // Its own region's sessions are unaffected.
      const local = await createMsc3886(rogue, 'local');
      expect((await request('GET', `${eu.a.url}/${local.json.id}`)).text).to.equal('local');
    } finally {
      await rogue.stop('SIGKILL');
    }
  });

  it('changes the shared secret region by region without refusing a forward (RZ_REGION_ACCEPTED_SECRET)', async () => {
    const next = 'the-next-region-secret-0123456789';
    // Midway through the change: this home replica sends the new secret and still accepts the old.
    const home = await Replica.start({
      REDIS_URL: us.redis.url,
      RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
      RZ_REGION: 'us',
      RZ_REGION_SECRET: next,
      RZ_REGION_ACCEPTED_SECRET: REGION_SECRET,
    });
    const forwarder = (secret: string) =>
      Replica.start({
        REDIS_URL: eu.redis.url,
        RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
        RZ_REGION: 'eu',
        RZ_REGION_PEERS: `us=${home.url}`,
        RZ_REGION_SECRET: secret,
      });
    const [changed, unchanged, rogue] = await Promise.all([
      forwarder(next),
      forwarder(REGION_SECRET),
      forwarder('not-the-shared-secret-at-all'),
    ]);
    try {
      const created = await createMsc3886(us.a, 'either secret');
      for (const [name, replica] of [
        ['the new secret', changed],
        ['the old secret', unchanged],
      ] as const) {
        const res = await request('GET', `${replica.url}/${created.json.id}`);
        expect(res.status, name).to.equal(200);
        expect(res.text, name).to.equal('either secret');
      }
      expect((await request('GET', `${rogue.url}/${created.json.id}`)).status).to.equal(502);
    } finally {
      await Promise.all([home, changed, unchanged, rogue].map((r) => r.stop('SIGKILL')));
    }
  });
});

/** A private CA and a certificate for 127.0.0.1 it signed, made by openssl. */
function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=rz-region-ca');
  ssl('req', ...ec, '-keyout', 'peer.key', '-out', 'peer.csr', '-subj', '/CN=rz-region-peer');
  writeFileSync(join(dir, 'peer.ext'), 'subjectAltName=IP:127.0.0.1\n');
  const sign = ['-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'peer.ext'];
  ssl('x509', '-req', '-in', 'peer.csr', ...sign, '-out', 'peer.crt');
}

describe('peers over https', function () {
  this.timeout(60_000);
  let us: Region;
  let dir: string;
  let terminator: tls.Server;
  let peerUrl: string;

  before(async () => {
    [us] = (await startRegions(['us'])) as [Region];
    dir = mkdtempSync(join(tmpdir(), 'rz-region-tls-'));
    makeCertificates(dir);
    // The us region's entrance over TLS (what an internal balancer terminating TLS would be).
    terminator = tls.createServer(
      { key: readFileSync(join(dir, 'peer.key')), cert: readFileSync(join(dir, 'peer.crt')) },
      (socket) => {
        const upstream = net.connect(us.a.port, '127.0.0.1');
        socket.pipe(upstream).pipe(socket);
        socket.on('error', () => upstream.destroy());
        upstream.on('error', () => socket.destroy());
      },
    );
    await new Promise<void>((resolve) => terminator.listen(0, '127.0.0.1', resolve));
    peerUrl = `https://127.0.0.1:${(terminator.address() as net.AddressInfo).port}`;
  });
  after(async () => {
    terminator?.close();
    await stopRegions([us]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const euReplica = (env: Record<string, string>) =>
    Replica.start({
      REDIS_URL: us.redis.url,
      RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
      RZ_REGION: 'eu',
      RZ_REGION_PEERS: `us=${peerUrl}`,
      RZ_REGION_SECRET: REGION_SECRET,
      ...env,
    });

  it('forwards to a peer whose certificate RZ_REGION_TLS_CA_FILE vouches for, and to no other', async () => {
    const created = await createMsc3886(us.a, 'over tls');
    const trusting = await euReplica({ RZ_REGION_TLS_CA_FILE: join(dir, 'ca.crt') });
    const untrusting = await euReplica({});
    try {
      expect((await request('GET', `${trusting.url}/${created.json.id}`)).text).to.equal('over tls');
      // The system CAs do not know this one: no connection, so the region counts as unreachable.
      const refused = await request('GET', `${untrusting.url}/${created.json.id}`);
      expect(refused.status).to.equal(503);
      expect(
        (await Scrape.of(`${untrusting.url}/metrics`)).value('rendezvous_region_forward_failures_total', {
          peer: 'us',
          reason: 'connect',
        }),
      ).to.equal(1);
    } finally {
      await Promise.all([trusting.stop('SIGKILL'), untrusting.stop('SIGKILL')]);
    }
  });
});

describe('limits across regions: budgets spent where the client arrived, caps counted by the forwarded client', function () {
  this.timeout(60_000);
  let eu: Region;
  let us: Region;

  before(async () => {
    // One replica per region: the long-poll cap is per replica, so every wait lands on the one counting it.
    [eu, us] = (await startRegions(['eu', 'us'], {
      replicasPerRegion: 1,
      env: {
        // Ten requests per ten seconds per address, on both sides; one held long-poll per address.
        RZ_REQUEST_RATE: '1',
        RZ_REQUEST_RATE_WINDOW_SECONDS: '10',
        RZ_LONGPOLL_MAX_WAITERS_PER_ADDRESS: '1',
      },
    })) as [Region, Region];
  });
  after(() => stopRegions([eu, us]));

  it('spends the request budget in the region the client reached, never the home region’s', async () => {
    const created = await createMsc3886(us.a);
    const path = `/${created.json.id}`;
    const client = '127.0.0.2';
    // Well over two windows' worth (10 each, a few admitted ahead), however the windows fall.
    const answers = await inParallel(40, 4, () => send(eu.a.port, { path, localAddress: client }));
    expect(answers.filter((a) => a.status === 429).length, 'refused in eu').to.be.greaterThan(0);
    for (const a of answers.filter((x) => x.status === 429)) expect(a.headers['retry-after']).to.be.a('string');
    // Home never counted those requests against the client: its budget there is whole.
    expect(await metric(us.replicas, 'rendezvous_rate_limited_total')).to.equal(0);
    expect((await send(us.a.port, { path, localAddress: client })).status).to.equal(200);
    // And a client's own forwarding headers buy nothing: refused before any budget or forward.
    const forged = await send(eu.a.port, {
      path,
      localAddress: '127.0.0.3',
      headers: { 'X-Rendezvous-Forwarded-By': 'eu', 'X-Rendezvous-Forwarded-For': '198.51.100.1' },
    });
    expect(forged.status).to.equal(403);
  });

  it('counts held long-polls at home per forwarded client, not per forwarding replica', async () => {
    const created = await createMsc3886(us.a);
    const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
    const etag = created.headers.etag as string;
    // Two clients, both through the same eu replica: each is one address at home, each may hold one.
    const first = heldGet(at(eu.a, url), etag, 30, { localAddress: '127.0.0.4' });
    const second = heldGet(at(eu.a, url), etag, 30, { localAddress: '127.0.0.5' });
    await homeHolds(us, 2);
    // The first client's second wait is over its cap at home: answered at once, not held.
    const third = await heldGet(at(eu.a, url), etag, 30, { localAddress: '127.0.0.4' }).response;
    expect(third.status).to.equal(304);
    expect(third.headers['preference-applied']).to.equal(undefined);
    await request('PUT', at(us.a, url), { headers: TEXT, body: 'both woken' });
    for (const held of [first, second]) {
      const res = await held.response;
      expect(res.status).to.equal(200);
      expect(res.headers['preference-applied']).to.equal('wait=30');
    }
  });
});

describe('failures stay regional', function () {
  this.timeout(60_000);
  let eu: Region;
  let us: Region;

  before(async () => {
    [eu, us] = (await startRegions(['eu', 'us'], {
      env: {
        RZ_REGION_CONNECT_TIMEOUT_MS: '500',
        RZ_REGION_RESPONSE_TIMEOUT_MS: '1000',
        RZ_REGION_BREAKER_FAILURES: '3',
        RZ_REGION_BREAKER_COOLDOWN_MS: '500',
      },
    })) as [Region, Region];
  });
  after(() => stopRegions([eu, us]));

  const timed = async (what: () => Promise<Reply>) => {
    const t0 = performance.now();
    const res = await what();
    return { res, ms: performance.now() - t0 };
  };

  it("one region's Redis killed: its sessions answer its own 503 through the other region; nothing else moves; it recovers", async () => {
    const usSession = await createMsc3886(us.a, 'in us');
    const euSession = await createMsc3886(eu.a, 'in eu');
    await us.redis.stop('SIGKILL');

    const { res, ms } = await timed(() => request('GET', `${eu.a.url}/${usSession.json.id}`));
    expect(res.status).to.equal(503);
    expect(res.json.errcode).to.equal('M_UNKNOWN');
    expect(res.headers['retry-after']).to.be.a('string');
    report(`us session read from eu with us's Redis down: 503 in ${ms.toFixed(0)} ms`);
    // eu's sessions, from eu and from us (us only forwards them), and eu's readiness are untouched.
    expect((await request('GET', `${eu.b.url}/${euSession.json.id}`)).text).to.equal('in eu');
    expect((await request('GET', `${us.a.url}/${euSession.json.id}`)).text).to.equal('in eu');
    const put = await request('PUT', `${us.b.url}/${euSession.json.id}`, { headers: TEXT, body: 'from us' });
    expect(put.status).to.equal(202);
    for (const r of eu.replicas) expect((await request('GET', `${r.url}/ready`)).status).to.equal(200);
    // us stays in service (readiness gated on the store once), answering 503s of its own.
    const usReady = await request('GET', `${us.a.url}/ready`);
    expect(usReady.status).to.equal(200);
    expect(usReady.json.storeReachable).to.equal(false);
    // The relayed 503s are answers, not a peer that is down: the breaker stays closed.
    expect((await Scrape.of(`${eu.a.url}/metrics`)).value('rendezvous_region_peer_up', { peer: 'us' })).to.equal(1);

    await us.redis.resume();
    await until('us to reach its store again', async () => {
      const ready = await request('GET', `${us.a.url}/ready`);
      return ready.json.storeReachable === true;
    });
    await until('us serving again', async () => (await request('GET', `${us.b.url}/ready`)).status === 200);
    // Its Redis came back empty (no persistence): new logins work across regions again.
    const fresh = await createMsc3886(us.b, 'after the outage');
    expect((await request('GET', `${eu.a.url}/${fresh.json.id}`)).text).to.equal('after the outage');
  });

  it('a region that is down: 503 with Retry-After for each connection refused, then from the open breaker without trying, and back by itself', async () => {
    const usSession = await createMsc3886(us.a, 'in us');
    const euSession = await createMsc3886(eu.a, 'in eu');
    const path = `/${usSession.json.id}`;
    const failures = async (reason: string) =>
      (await Scrape.of(`${eu.a.url}/metrics`)).value('rendezvous_region_forward_failures_total', {
        peer: 'us',
        reason,
      });
    const refusedBefore = await failures('connect');
    await us.link.setMode('refuse');
    const first = await timed(() => request('GET', `${eu.a.url}${path}`));
    expect(first.res.status).to.equal(503);
    expect(first.res.headers['retry-after']).to.equal('1');
    report(`us unreachable (connection refused): first 503 from eu in ${first.ms.toFixed(0)} ms`);
    for (let i = 0; i < 2; i++) expect((await request('GET', `${eu.a.url}${path}`)).status).to.equal(503);
    // Each of the three was a connection refused (not a response waited out), and opened the breaker.
    expect((await failures('connect')) - refusedBefore).to.equal(3);
    expect((await Scrape.of(`${eu.a.url}/metrics`)).value('rendezvous_region_peer_up', { peer: 'us' })).to.equal(0);
    const open = await timed(() => request('GET', `${eu.a.url}${path}`));
    expect(open.res.status).to.equal(503);
    expect(Number(open.res.headers['retry-after'])).to.be.at.least(1);
    report(`breaker open: 503 in ${open.ms.toFixed(1)} ms`);
    expect(await failures('breaker_open')).to.be.greaterThan(0);
    expect((await failures('connect')) - refusedBefore, 'connections tried with the breaker open').to.equal(3);
    // eu's own sessions and readiness never notice.
    expect((await request('GET', `${eu.a.url}/${euSession.json.id}`)).text).to.equal('in eu');
    expect((await request('GET', `${eu.a.url}/ready`)).status).to.equal(200);

    await us.link.setMode('open');
    await until(
      'the probe to close the breaker',
      async () => (await Scrape.of(`${eu.a.url}/metrics`)).value('rendezvous_region_peer_up', { peer: 'us' }) === 1,
    );
    expect((await request('GET', `${eu.a.url}${path}`)).text).to.equal('in us');
  });

  it('logs one line a second while forwards keep failing, each saying how many went unlogged since the last', async () => {
    const usSession = await createMsc3886(us.a, 'in us');
    // A replica whose breaker never opens here, so every forward tries and fails.
    const lone = await Replica.start({
      REDIS_URL: eu.redis.url,
      RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
      RZ_REGION: 'eu',
      RZ_REGION_PEERS: `us=${us.link.url}`,
      RZ_REGION_SECRET: REGION_SECRET,
      RZ_REGION_BREAKER_FAILURES: '1000',
    });
    await us.link.setMode('refuse');
    try {
      for (let i = 0; i < 5; i++)
        expect((await request('GET', `${lone.url}/${usSession.json.id}`)).status).to.equal(503);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect((await request('GET', `${lone.url}/${usSession.json.id}`)).status).to.equal(503);
      const lines = lone.logs.filter((l) => l.msg === 'forward to the home region got no answer');
      expect(lines.map((l) => l.unlogged)).to.deep.equal([0, 4]);
    } finally {
      await us.link.setMode('open');
      await lone.stop('SIGKILL');
    }
  });

  it('a region that accepts connections but never answers: 503 after the response timeout', async () => {
    const usSession = await createMsc3886(us.a, 'in us');
    await us.link.setMode('blackhole');
    try {
      const { res, ms } = await timed(() => request('GET', `${eu.b.url}/${usSession.json.id}`));
      expect(res.status).to.equal(503);
      expect(res.headers['retry-after']).to.equal('1');
      report(`us silent: 503 from eu after ${ms.toFixed(0)} ms (response timeout 1000 ms)`);
      expect(
        (await Scrape.of(`${eu.b.url}/metrics`)).value('rendezvous_region_forward_failures_total', {
          peer: 'us',
          reason: 'timeout',
        }),
      ).to.equal(1);
    } finally {
      await us.link.setMode('open');
    }
  });
});

describe('three regions', function () {
  this.timeout(60_000);
  let regions: Region[];

  before(async () => {
    regions = await startRegions(['eu', 'us', 'ap'], { replicasPerRegion: 2 });
  });
  after(() => stopRegions(regions));

  it('reaches every region from both others, in every family', async () => {
    for (const home of regions) {
      for (const away of regions.filter((r) => r !== home)) {
        const created = await createMsc3886(home.a, `${home.name} to ${away.name}`);
        const url = `${GLOBAL_BASE_URL}/${created.json.id}`;
        expect(created.json.id.startsWith(`${home.name}.`)).to.equal(true);
        expect((await request('GET', at(away.b, url))).text).to.equal(`${home.name} to ${away.name}`);
        const put = await request('PUT', at(away.a, url), {
          headers: { 'If-Match': created.headers.etag as string },
          body: 'reply',
        });
        expect(put.status).to.equal(202);

        const made = await request('POST', `${home.b.url}${MSC4108}`, { headers: TEXT });
        const put4108 = await request('PUT', at(away.a, made.json.url), {
          headers: { ...TEXT, 'If-Match': made.headers.etag as string },
          body: 'offer',
        });
        expect(put4108.status).to.equal(202);

        const { prefix } = MSC4388[1]!;
        const { id, token } = await createMsc4388(home.a, prefix);
        expect((await put4388(`${away.b.url}${prefix}/${id}`, token, 'hi')).status).to.equal(200);
        expect((await request('GET', `${home.b.url}${prefix}/${id}`)).json.data).to.equal('hi');
      }
    }
  });

  it('answers 502 and says so in the log when a peer URL reaches another region (never "expired": 404)', async () => {
    const [eu, us, ap] = regions as [Region, Region, Region];
    // eu's URL for ap is us's: a copy-paste slip in RZ_REGION_PEERS.
    const misconfigured = await Replica.start({
      REDIS_URL: eu.redis.url,
      RZ_PUBLIC_BASE_URL: GLOBAL_BASE_URL,
      RZ_REGION: 'eu',
      RZ_REGION_PEERS: `us=${us.link.url},ap=${us.link.url}`,
      RZ_REGION_SECRET: REGION_SECRET,
    });
    try {
      const created = await createMsc3886(ap.a, 'alive in ap');
      const res = await request('GET', `${misconfigured.url}/${created.json.id}`);
      expect(res.status).to.equal(502);
      expect(res.json.errcode).to.equal('M_UNKNOWN');
      expect(res.headers['x-rendezvous-peer-refused']).to.equal(undefined);
      expect(
        misconfigured.logs.some((l) => l.level === 50 && l.peer === 'ap' && /RZ_REGION_PEERS/.test(l.msg)),
      ).to.equal(true);
      // The session lives on, and its region's sessions still reach it from the others.
      expect((await request('GET', `${us.a.url}/${created.json.id}`)).text).to.equal('alive in ap');
    } finally {
      await misconfigured.stop('SIGKILL');
    }
  });
});

describe('a replica shutting down while forwarded long-polls are held', function () {
  let eu: Region;
  let us: Region;
  // Each case stops a replica: fresh regions for each.
  beforeEach(async () => {
    [eu, us] = (await startRegions(['eu', 'us'], {
      replicasPerRegion: 1,
      env: { RZ_SHUTDOWN_DELAY_SECONDS: '0', RZ_SHUTDOWN_GRACE_SECONDS: '20' },
    })) as [Region, Region];
  });
  afterEach(() => stopRegions([eu, us]));

  it('the forwarding one lets them go at once with 503, Retry-After: 0 and Connection: close, and exits 0', async () => {
    const created = await createMsc3886(us.a);
    const held = heldGet(at(eu.a, `${GLOBAL_BASE_URL}/${created.json.id}`), created.headers.etag as string, 30);
    await homeHolds(us, 1);
    const exited = eu.a.stop('SIGTERM');
    const answer = await held.response;
    expect(answer.status).to.equal(503);
    expect(answer.headers['retry-after']).to.equal('0');
    expect(answer.headers.connection).to.equal('close');
    expect(JSON.parse(answer.body)).to.include({ errcode: 'M_UNKNOWN' });
    // The home region lets go of the wait as the forward is cancelled.
    await homeHolds(us, 0);
    expect(await exited).to.equal(0);
  });

  it('the home one answers them at once as it answers its own (304), relayed through the other region', async () => {
    const created = await createMsc3886(us.a);
    const held = heldGet(at(eu.a, `${GLOBAL_BASE_URL}/${created.json.id}`), created.headers.etag as string, 30);
    await homeHolds(us, 1);
    const t0 = performance.now();
    const exited = us.a.stop('SIGTERM');
    const answer = await held.response;
    expect(answer.status).to.equal(304);
    expect(performance.now() - t0).to.be.below(5000);
    expect(await exited).to.equal(0);
  });
});

describe('forwarded long-polls and the connections to a peer', function () {
  let eu: Region;
  let us: Region;
  before(async () => {
    // Four connections to each peer: at most three may be held by waits, one stays for the rest.
    [eu, us] = (await startRegions(['eu', 'us'], { replicasPerRegion: 1, env: { RZ_REGION_MAX_SOCKETS: '4' } })) as [
      Region,
      Region,
    ];
  });
  after(() => stopRegions([eu, us]));

  it('never lets held waits take every connection: past their share a wait is asked as a plain read', async () => {
    const waited = await createMsc3886(us.a, 'waited on');
    const url = at(eu.a, `${GLOBAL_BASE_URL}/${waited.json.id}`);
    const etag = waited.headers.etag as string;
    const held = [1, 2, 3].map((i) => heldGet(url, etag, 30, { localAddress: `127.0.0.${20 + i}` }));
    await homeHolds(us, 3);
    // The fourth is answered at once, as a plain conditional read (no Preference-Applied).
    const fourth = await heldGet(url, etag, 30, { localAddress: '127.0.0.24' }).response;
    expect(fourth.status).to.equal(304);
    expect(fourth.headers['preference-applied']).to.equal(undefined);
    // Everything else still goes through, and the peer is not taken for down.
    for (let i = 0; i < 5; i++) {
      const other = await createMsc3886(us.a, `other ${i}`);
      expect((await request('GET', at(eu.a, `${GLOBAL_BASE_URL}/${other.json.id}`))).text).to.equal(`other ${i}`);
    }
    expect((await Scrape.of(`${eu.a.url}/metrics`)).value('rendezvous_region_peer_up', { peer: 'us' })).to.equal(1);
    const put = await request('PUT', at(eu.a, `${GLOBAL_BASE_URL}/${waited.json.id}`), {
      headers: { 'If-Match': etag },
      body: 'woken',
    });
    expect(put.status).to.equal(202);
    for (const h of held) expect((await h.response).body).to.equal('woken');
  });
});
