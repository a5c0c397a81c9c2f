import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from './helpers/http';
import { Scrape } from './helpers/metrics';
import { parseAnswers, rawExchange } from './helpers/raw';
import { startServer, type TestServer } from './helpers/server';

const SECRET = 'correct-horse-battery-staple';
const MSC3886 = '/_matrix/client/unstable/org.matrix.msc3886/rendezvous';
const MSC4108 = '/_matrix/client/unstable/org.matrix.msc4108/rendezvous';
const MSC4388 = '/_matrix/client/v1/rendezvous';
const JSON_TYPE = { 'Content-Type': 'application/json' };

/** A replica of region `us` whose only peer, `eu`, is at `euUrl`. */
const usReplica = (euUrl: string, env: Record<string, string> = {}) =>
  startServer({ RZ_REGION: 'us', RZ_REGION_PEERS: `eu=${euUrl}`, RZ_REGION_SECRET: SECRET, ...env });

/** An id of region `eu` (no such session needs to exist for a stand-in home). */
const euId = (n: number) => `eu.${String(n).padStart(22, 'A')}`;

/**
 * A stand-in for the home region: answers what `answer` says, or breaks the connection (without a
 * byte of answer) the first time it sees each method and path (whatever the query), when
 * `breakFirst` is set. Keeps what reached it.
 */
class StandInHome {
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    /** Every request that reached it, in order. */
    readonly arrivals: { method: string; url: string; headers: http.IncomingHttpHeaders }[],
  ) {}

  static async start(
    answer: (req: http.IncomingMessage, res: http.ServerResponse) => void,
    breakFirst = false,
  ): Promise<StandInHome> {
    const arrivals: { method: string; url: string; headers: http.IncomingHttpHeaders }[] = [];
    const server = http.createServer((req, res) => {
      const path = req.url!.split('?')[0];
      const before = arrivals.filter((a) => a.method === req.method && a.url.split('?')[0] === path).length;
      arrivals.push({ method: req.method!, url: req.url!, headers: req.headers });
      if (breakFirst && before === 0) {
        req.socket.destroy();
        return;
      }
      req.resume();
      req.on('end', () => answer(req, res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new StandInHome(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals);
  }

  /** Requests that reached it with this method and path (the query aside). */
  times(method: string, path: string): number {
    return this.arrivals.filter((a) => a.method === method && a.url.split('?')[0] === path).length;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Sends a request and tells how many waits the home region ended by their timeout meanwhile: one
 * when the request was held there, none when it was answered at once.
 */
async function heldUntilTimeout<T>(
  home: string,
  family: string,
  send: () => Promise<T>,
): Promise<{ answer: T; count: number }> {
  const waits = { family, outcome: 'timeout' };
  const before = (await Scrape.of(`${home}/metrics`)).value(WAITS, waits);
  const answer = await send();
  return { answer, count: (await Scrape.of(`${home}/metrics`)).value(WAITS, waits) - before };
}

const WAITS = 'rendezvous_longpoll_duration_seconds_count';

/** A home region (eu) and a replica of another region (us) forwarding to it, for one describe block. */
function euAndUs(): { eu: TestServer; us: TestServer } {
  const regions = {} as { eu: TestServer; us: TestServer };
  before(async () => {
    regions.eu = await startServer({ RZ_REGION: 'eu', RZ_REGION_SECRET: SECRET });
    regions.us = await usReplica(regions.eu.url);
  });
  after(async () => {
    await regions.us.stop();
    await regions.eu.stop();
  });
  return regions;
}

describe('forwarding: every path spelling the routers take is forwarded', () => {
  const regions = euAndUs();

  it('upper-cased prefixes and a trailing slash reach the home region, as they reach the routers there', async () => {
    const msc3886 = await request('POST', `${regions.eu.url}/`, {
      headers: { 'Content-Type': 'text/plain' },
      body: 'a',
    });
    const msc4108 = await request('POST', `${regions.eu.url}${MSC4108}`, {
      headers: { 'Content-Type': 'text/plain' },
      body: 'b',
    });
    const msc4388 = await request('POST', `${regions.eu.url}${MSC4388}`, {
      headers: JSON_TYPE,
      body: JSON.stringify({ data: 'c' }),
    });
    const ids = {
      msc3886: msc3886.json.id as string,
      msc4108: new URL(msc4108.json.url as string).pathname.split('/').pop()!,
      msc4388: msc4388.json.id as string,
    };
    const spellings = [
      `/${ids.msc3886}/`,
      `${MSC3886.toUpperCase()}/${ids.msc3886}`,
      `${MSC3886}/${ids.msc3886}/`,
      `${MSC4108.replace('msc4108', 'MSC4108')}/${ids.msc4108}`,
      `${MSC4108}/${ids.msc4108}/`,
      `/_MATRIX/client/V1/rendezvous/${ids.msc4388}`,
      `${MSC4388}/${ids.msc4388}/`,
    ];
    for (const path of spellings) {
      const home = await request('GET', `${regions.eu.url}${path}`);
      const away = await request('GET', `${regions.us.url}${path}`);
      expect(home.status, `${path} at home`).to.equal(200);
      expect(away.status, `${path} through us`).to.equal(200);
      // The same answer (an MSC4388 one counts down its expires_in_ms meanwhile).
      const withoutCountdown = (r: typeof home) =>
        r.json === undefined ? r.text : { ...(r.json as object), expires_in_ms: undefined };
      expect(withoutCountdown(away), path).to.deep.equal(withoutCountdown(home));
    }
    // A txnId write with a trailing slash is the same write through either region.
    const first = await request('PUT', `${regions.us.url}${MSC4388}/${ids.msc4388}/txn-1/`, {
      headers: JSON_TYPE,
      body: JSON.stringify({ sequence_token: msc4388.json.sequence_token, data: 'd' }),
    });
    expect(first.status).to.equal(200);
    const read = await request('GET', `${regions.eu.url}${MSC4388}/${ids.msc4388}`);
    expect(read.json.data).to.equal('d');
  });

  it('counts a forwarded MSC3886 request at the root in its family, as the home region does', async () => {
    const created = await request('POST', `${regions.eu.url}/`, {
      headers: { 'Content-Type': 'text/plain' },
      body: 'a',
    });
    const count = async (family: string) => {
      const metrics = await request('GET', `${regions.us.url}/metrics`);
      const line = new RegExp(
        `^rendezvous_http_requests_total\\{family="${family}",method="GET",status="200"\\} (\\d+)$`,
        'm',
      );
      return Number(line.exec(metrics.text)?.[1] ?? 0);
    };
    const before = { msc3886: await count('msc3886'), unmatched: await count('unmatched') };
    expect((await request('GET', `${regions.us.url}/${created.json.id}`)).status).to.equal(200);
    expect(await count('msc3886')).to.equal(before.msc3886 + 1);
    expect(await count('unmatched')).to.equal(before.unmatched);
  });
});

describe('forwarding: a request whose connection broke is sent again only when that is safe', () => {
  let home: StandInHome;
  let us: TestServer;
  before(async () => {
    home = await StandInHome.start((_req, res) => res.writeHead(202, { 'Content-Type': 'text/plain' }).end('ok'), true);
    // No breaker in the way: every case here breaks one connection.
    us = await usReplica(home.url, { RZ_REGION_BREAKER_FAILURES: '1000' });
  });
  after(async () => {
    await us.stop();
    await home.stop();
  });

  const cases: { what: string; method: string; path: string; headers?: Record<string, string>; again: boolean }[] = [
    { what: 'a read', method: 'GET', path: `${MSC4108}/${euId(1)}`, again: true },
    {
      what: 'a write on If-Match with an entity tag',
      method: 'PUT',
      path: `${MSC4108}/${euId(2)}`,
      headers: { 'If-Match': '"abc"' },
      again: true,
    },
    {
      what: 'an MSC4388 write (on its sequence token)',
      method: 'PUT',
      path: `${MSC4388}/${euId(3)}`,
      headers: JSON_TYPE,
      again: true,
    },
    {
      what: 'a write on If-Match: * (unconditional)',
      method: 'PUT',
      path: `${MSC3886}/${euId(4)}`,
      headers: { 'If-Match': '*' },
      again: false,
    },
    { what: 'a write without If-Match', method: 'PUT', path: `${MSC3886}/${euId(5)}`, again: false },
    { what: 'a delete', method: 'DELETE', path: `${MSC4108}/${euId(6)}`, again: false },
  ];
  it('sends a held wait again for what is left of it, not for the whole wait', async () => {
    const etagPath = `${MSC4108}/${euId(7)}`;
    const res = await request('GET', `${us.url}${etagPath}`, { headers: { 'If-None-Match': '"x"', Prefer: 'wait=5' } });
    expect(res.status).to.equal(202);
    const [first, second] = home.arrivals.filter((a) => a.url === etagPath);
    expect(first!.headers.prefer).to.equal('wait=5');
    expect(Number(/^wait=(\d+)$/.exec(second!.headers.prefer as string)![1])).to.be.below(5);
    const jsonPath = `${MSC4388}/${euId(8)}`;
    expect((await request('GET', `${us.url}${jsonPath}?sequence_token=1&timeout_ms=5000`)).status).to.equal(202);
    const sent = home.arrivals.filter((a) => a.url.startsWith(`${jsonPath}?`)).map((a) => a.url);
    expect(sent).to.have.length(2);
    expect(sent[0]).to.equal(`${jsonPath}?sequence_token=1&timeout_ms=5000`);
    const left = Number(/^.*\?sequence_token=1&timeout_ms=(\d+)$/.exec(sent[1]!)![1]);
    expect(left).to.be.below(5000).and.above(0);
  });

  for (const c of cases) {
    it(`${c.again ? 'sends again' : 'never sends again'} ${c.what}`, async () => {
      const body =
        c.method === 'PUT' ? (c.headers === JSON_TYPE ? '{"sequence_token":"1","data":"x"}' : 'x') : undefined;
      const res = await request(c.method, `${us.url}${c.path}`, {
        headers: { 'Content-Type': 'text/plain', ...c.headers },
        ...(body === undefined ? {} : { body }),
      });
      expect(home.times(c.method, c.path), 'requests that reached home').to.equal(c.again ? 2 : 1);
      if (c.again) {
        expect(res.status).to.equal(202);
        expect(res.text).to.equal('ok');
      } else {
        expect(res.status).to.equal(503);
        expect(res.json.errcode).to.equal('M_UNKNOWN');
        expect(res.headers['retry-after']).to.equal('1');
      }
    });
  }
});

describe("forwarding: a wait longer than this replica's longest", () => {
  let home: StandInHome;
  let us: TestServer;
  before(async () => {
    home = await StandInHome.start((_req, res) => res.writeHead(304).end());
    us = await usReplica(home.url, { RZ_LONGPOLL_MAX_WAIT_SECONDS: '2' });
  });
  after(async () => {
    await us.stop();
    await home.stop();
  });

  // The home region may allow longer waits; held that long, the forward would time out here.
  it("is asked of the home region as this replica's longest", async () => {
    const etagPath = `${MSC4108}/${euId(20)}`;
    const etag = await request('GET', `${us.url}${etagPath}`, {
      headers: { 'If-None-Match': '"x"', Prefer: 'wait=30' },
    });
    expect(etag.status).to.equal(304);
    expect(home.arrivals.find((a) => a.url === etagPath)!.headers.prefer).to.equal('wait=2');
    const jsonPath = `${MSC4388}/${euId(21)}`;
    const json = await request('GET', `${us.url}${jsonPath}?sequence_token=1&timeout_ms=30000`);
    expect(json.status).to.equal(304);
    expect(home.arrivals.find((a) => a.url.startsWith(`${jsonPath}?`))!.url).to.equal(
      `${jsonPath}?sequence_token=1&timeout_ms=2000`,
    );
  });

  it('is passed on as it was given when it is within the longest', async () => {
    const etagPath = `${MSC4108}/${euId(22)}`;
    await request('GET', `${us.url}${etagPath}`, { headers: { 'If-None-Match': '"x"', Prefer: 'wait=1' } });
    expect(home.arrivals.find((a) => a.url === etagPath)!.headers.prefer).to.equal('wait=1');
    // MSC4388 waits on its query alone, as the handler there reads it: a Prefer beside it changes nothing.
    const jsonPath = `${MSC4388}/${euId(23)}`;
    const query = '?sequence_token=1&timeout_ms=500';
    await request('GET', `${us.url}${jsonPath}${query}`, { headers: { Prefer: 'wait=30' } });
    expect(home.arrivals.find((a) => a.url.startsWith(`${jsonPath}?`))!.url).to.equal(jsonPath + query);
  });
});

describe('forwarding: a wait is held or refused as the home region holds or refuses it', () => {
  const regions = euAndUs();

  // The GET handler serves HEAD at home, long-poll included: through a forward it must not be a plain read.
  it('holds an ETag-family HEAD that asks to wait, and says so', async () => {
    const created = await request('POST', `${regions.eu.url}${MSC4108}`, { headers: { 'Content-Type': 'text/plain' } });
    const path = new URL(created.json.url as string).pathname;
    const headers = { 'If-None-Match': created.headers.etag as string, Prefer: 'wait=1' };
    for (const base of [regions.eu.url, regions.us.url]) {
      const timedOut = await heldUntilTimeout(regions.eu.url, 'msc4108', () =>
        request('HEAD', `${base}${path}`, { headers }),
      );
      expect(timedOut.answer.status, base).to.equal(304);
      // Said only by an answer that was held.
      expect(timedOut.answer.headers['preference-applied'], base).to.equal('wait=1');
      expect(timedOut.count, base).to.equal(1);
    }
  });

  it('holds an MSC4388 HEAD that asks to wait, and refuses a malformed wait with 400 as at home', async () => {
    const created = await request('POST', `${regions.eu.url}${MSC4388}`, { headers: JSON_TYPE, body: '{"data":""}' });
    const path = `${MSC4388}/${created.json.id as string}`;
    for (const base of [regions.eu.url, regions.us.url]) {
      const timedOut = await heldUntilTimeout(regions.eu.url, 'msc4388', () =>
        request('HEAD', `${base}${path}?sequence_token=1&timeout_ms=1000`),
      );
      expect(timedOut.answer.status, base).to.equal(200);
      expect(timedOut.count, base).to.equal(1);
      const malformed = await request('HEAD', `${base}${path}?sequence_token=1&timeout_ms=soon`);
      expect(malformed.status, base).to.equal(400);
    }
  });

  it('answers an unsafe browser fetch with a malformed wait 403, as the home region does', async () => {
    const created = await request('POST', `${regions.eu.url}${MSC4388}`, { headers: JSON_TYPE, body: '{"data":""}' });
    const path = `${MSC4388}/${created.json.id as string}?sequence_token=1&timeout_ms=soon`;
    for (const base of [regions.eu.url, regions.us.url]) {
      const read = await request('GET', `${base}${path}`, { headers: { 'Sec-Fetch-Dest': 'document' } });
      expect(read.status, base).to.equal(403);
      expect(read.json.errcode, base).to.equal('M_FORBIDDEN');
      const safe = await request('GET', `${base}${path}`);
      expect(safe.status, base).to.equal(400);
    }
  });
});

/**
 * A stand-in home region answering what the test says (`answerWith`), behind a us replica whose
 * breaker opens after two failures and stays open for a minute; hooks of the calling describe.
 */
function homeBehindBalancer(): {
  home: () => StandInHome;
  us: () => TestServer;
  answerWith: (answer: (res: http.ServerResponse, req: http.IncomingMessage) => void) => void;
} {
  let answer: (res: http.ServerResponse, req: http.IncomingMessage) => void = (res) => res.writeHead(500).end();
  let home: StandInHome | undefined;
  let us: TestServer | undefined;
  before(async () => {
    home = await StandInHome.start((req, res) => answer(res, req));
    us = await usReplica(home.url, { RZ_REGION_BREAKER_FAILURES: '2', RZ_REGION_BREAKER_COOLDOWN_MS: '60000' });
  });
  after(async () => {
    await us?.stop();
    await home?.stop();
  });
  return { home: () => home!, us: () => us!, answerWith: (a) => (answer = a) };
}

describe("forwarding: a balancer's own error in front of the home region", () => {
  const stand = homeBehindBalancer();

  it("relays a replica's own 503 (a Matrix error) as it is, without counting it against the region", async () => {
    stand.answerWith((res) =>
      res
        .writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '7' })
        .end('{"errcode":"M_UNKNOWN","error":"store down"}'),
    );
    for (let i = 0; i < 3; i++) {
      const res = await request('GET', `${stand.us().url}${MSC4108}/${euId(10)}`);
      expect(res.status).to.equal(503);
      expect(res.headers['retry-after']).to.equal('7');
      expect(res.json.error).to.equal('store down');
    }
    expect(stand.home().times('GET', `${MSC4108}/${euId(10)}`), 'the breaker stayed closed').to.equal(3);
  });

  // A HEAD is answered without a body, so no errcode can be read from it.
  it("relays a replica's own 503 to a HEAD as it is, without counting it against the region", async () => {
    const error = '{"errcode":"M_UNKNOWN","error":"store down"}';
    stand.answerWith((res, req) =>
      res
        .writeHead(503, {
          'Content-Type': 'application/json',
          'Content-Length': String(error.length),
          'Retry-After': '7',
          'X-Request-Id': req.headers['x-request-id'],
        })
        .end(),
    );
    const path = `${MSC4108}/${euId(12)}`;
    for (let i = 0; i < 3; i++) {
      const res = await request('HEAD', `${stand.us().url}${path}`);
      expect(res.status).to.equal(503);
      expect(res.headers['retry-after']).to.equal('7');
      expect(res.headers['content-length']).to.equal(String(error.length));
    }
    expect(stand.home().times('HEAD', path), 'the breaker stayed closed').to.equal(3);
    const metrics = await request('GET', `${stand.us().url}/metrics`);
    expect(metrics.text).not.to.match(/^rendezvous_region_forward_failures_total\{peer="eu",reason="gateway"\}/m);
  });

  it('answers 503 M_UNKNOWN with Retry-After for a 502 page that reached no replica, and opens the breaker', async () => {
    stand.answerWith((res) => res.writeHead(502, { 'Content-Type': 'text/html' }).end('<html>502 Bad Gateway</html>'));
    const path = `${MSC4108}/${euId(11)}`;
    for (let i = 0; i < 3; i++) {
      const res = await request('GET', `${stand.us().url}${path}`);
      expect(res.status).to.equal(503);
      expect(res.json.errcode).to.equal('M_UNKNOWN');
      expect(Number(res.headers['retry-after'])).to.be.greaterThan(0);
    }
    // Two failures open it (RZ_REGION_BREAKER_FAILURES=2): the third was answered without asking.
    expect(stand.home().times('GET', path)).to.equal(2);
    const metrics = await request('GET', `${stand.us().url}/metrics`);
    expect(metrics.text).to.match(/^rendezvous_region_forward_failures_total\{peer="eu",reason="gateway"\} 2$/m);
    expect(metrics.text).to.match(/^rendezvous_region_peer_up\{peer="eu"\} 0$/m);
  });
});

describe("forwarding: a balancer's error pages that say nothing about the region", () => {
  const stand = homeBehindBalancer();

  it('takes a JSON error page without an errcode for a balancer answering for no replica', async () => {
    stand.answerWith((res) =>
      res.writeHead(502, { 'Content-Type': 'application/json' }).end('{"message":"no healthy upstream"}'),
    );
    const res = await request('GET', `${stand.us().url}${MSC4108}/${euId(30)}`);
    expect(res.status).to.equal(503);
    expect(res.json.errcode).to.equal('M_UNKNOWN');
  });

  it('answers 503 to a held wait the balancer timed out (504), without holding it against the region', async () => {
    stand.answerWith((res) =>
      res.writeHead(504, { 'Content-Type': 'text/html' }).end('<html>504 Gateway Time-out</html>'),
    );
    const path = `${MSC4108}/${euId(31)}`;
    // One failure came from the test before; three more held waits ending in 504 open nothing.
    for (let i = 0; i < 3; i++) {
      const res = await request('GET', `${stand.us().url}${path}`, {
        headers: { 'If-None-Match': '"x"', Prefer: 'wait=5' },
      });
      expect(res.status).to.equal(503);
      expect(res.json.errcode).to.equal('M_UNKNOWN');
    }
    expect(stand.home().times('GET', path), 'every wait reached home: the breaker stayed closed').to.equal(3);
    const metrics = await request('GET', `${stand.us().url}/metrics`);
    expect(metrics.text).to.match(/^rendezvous_region_peer_up\{peer="eu"\} 1$/m);
  });
});

describe('forwarding: the bound on held forwards', () => {
  let home: StandInHome;
  let us: TestServer;
  /** Held requests at the stand-in home, answered when the test says so. */
  const holding: http.ServerResponse[] = [];
  let arrived: (() => void) | undefined;
  before(async () => {
    home = await StandInHome.start((req, res) => {
      if (req.headers.prefer === undefined) return res.writeHead(200, { 'Content-Length': '5' }).end('plain');
      holding.push(res);
      arrived?.();
    });
    us = await usReplica(home.url, { RZ_LONGPOLL_MAX_WAITERS: '1' });
  });
  after(async () => {
    await us.stop();
    await home.stop();
  });

  const heldGet = (n: number) =>
    request('GET', `${us.url}${MSC4108}/${euId(40 + n)}`, { headers: { 'If-None-Match': '"x"', Prefer: 'wait=30' } });
  const nextHeld = () => new Promise<void>((resolve) => (arrived = resolve));

  it('asks a wait over the bound as a plain read, and holds again once a wait is released', async () => {
    let isHeld = nextHeld();
    const first = heldGet(1);
    await isHeld;
    // The bound (RZ_LONGPOLL_MAX_WAITERS=1) is taken: this one goes home without Prefer.
    const second = await heldGet(2);
    expect(second.text).to.equal('plain');
    holding.shift()!.writeHead(200, { 'Content-Length': '4' }).end('held');
    expect((await first).text).to.equal('held');
    // Released: the next wait is held again.
    isHeld = nextHeld();
    const third = heldGet(3);
    await isHeld;
    holding.shift()!.writeHead(200, { 'Content-Length': '4' }).end('held');
    expect((await third).text).to.equal('held');
  });
});

describe('forwarding: requests pipelined on one connection', () => {
  let home: StandInHome;
  let us: TestServer;
  const waiting: http.ServerResponse[] = [];
  before(async () => {
    // Answers nothing until both requests are in: the second is forwarded while the first is open.
    home = await StandInHome.start((_req, res) => {
      waiting.push(res);
      if (waiting.length < 2) return;
      for (const [i, r] of waiting.entries()) {
        r.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '8' }).end(`answer ${i}`);
      }
    });
    us = await usReplica(home.url);
  });
  after(async () => {
    await us.stop();
    await home.stop();
  });

  it('forwards the second one while the first is unanswered, and relays both in turn', async () => {
    const get = (n: number, last: boolean) =>
      `GET ${MSC4108}/${euId(20 + n)} HTTP/1.1\r\nHost: x\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;
    const { text, closedByServer } = await rawExchange(us.port, get(0, false) + get(1, true));
    expect(closedByServer).to.equal(true);
    expect(parseAnswers(text).map((a) => [a.status, a.body])).to.deep.equal([
      [200, 'answer 0'],
      [200, 'answer 1'],
    ]);
  });
});

describe('forwarding: held forwards let go by a shutdown', () => {
  let home: StandInHome;
  let us: TestServer;
  let arrived: (() => void) | undefined;
  before(async () => {
    // Holds every wait until the forward is cancelled.
    home = await StandInHome.start(() => arrived?.());
    us = await usReplica(home.url, { RZ_SHUTDOWN_DELAY_SECONDS: '0' });
  });
  after(() => home.stop());

  it('counts their 503 among the forwards by status answered', async () => {
    const isHeld = new Promise<void>((resolve) => (arrived = resolve));
    const held = request('GET', `${us.url}${MSC4108}/${euId(50)}`, {
      headers: { 'If-None-Match': '"x"', Prefer: 'wait=30' },
    });
    await isHeld;
    const stopped = us.stop();
    expect((await held).status).to.equal(503);
    await stopped;
    const forwarded = await us.metrics.registry.getSingleMetricAsString('rendezvous_region_forwarded_requests_total');
    expect(forwarded).to.match(/^rendezvous_region_forwarded_requests_total\{peer="eu",status="503"\} 1$/m);
  });
});

describe('forwarding: requests refused before they are forwarded', () => {
  let home: StandInHome;
  let us: TestServer;
  before(async () => {
    home = await StandInHome.start((_req, res) => res.writeHead(202).end());
    us = await usReplica(home.url);
  });
  after(async () => {
    await us.stop();
    await home.stop();
  });

  it('count in the forwards by peer with the status answered (a body over the limit: 413)', async () => {
    const path = `${MSC4108}/${euId(60)}`;
    const res = await request('PUT', `${us.url}${path}`, {
      headers: { 'Content-Type': 'text/plain', 'If-Match': '"x"' },
      body: 'x'.repeat(5000),
    });
    expect(res.status).to.equal(413);
    expect(home.times('PUT', path)).to.equal(0);
    const scrape = await Scrape.of(`${us.url}/metrics`);
    expect(scrape.value('rendezvous_region_forwarded_requests_total', { peer: 'eu', status: '413' })).to.equal(1);
  });
});

describe('forwarding: a write both invalid and too large is answered as at home', () => {
  const regions = euAndUs();
  const MSC4388_LIMIT = 6 * 4096 + 1024;

  // The handlers check the path and headers before they read a body: the forwarding replica, which
  // reads the body to send it on, must refuse on the same grounds first, not with its 413.
  const cases: { name: string; path: string; headers: Record<string, string>; bytes: number }[] = [
    { name: 'MSC3886, a malformed If-Match', path: `/${euId(70)}`, headers: { 'If-Match': 'nope' }, bytes: 5000 },
    {
      name: 'MSC3886, a Content-Type that cannot be stored',
      path: `${MSC3886}/${euId(71)}`,
      headers: { 'Content-Type': 'x'.repeat(300) },
      bytes: 5000,
    },
    {
      name: 'MSC4108, no If-Match',
      path: `${MSC4108}/${euId(72)}`,
      headers: { 'Content-Type': 'text/plain' },
      bytes: 5000,
    },
    {
      name: 'MSC4108, not text/plain',
      path: `${MSC4108}/${euId(73)}`,
      headers: { 'Content-Type': 'application/json', 'If-Match': '"x"' },
      bytes: 5000,
    },
    {
      name: 'MSC4388, a transaction id outside the grammar',
      path: `${MSC4388}/${euId(74)}/bad%24txn`,
      headers: JSON_TYPE,
      bytes: MSC4388_LIMIT + 100,
    },
    {
      name: 'an id outside the grammar',
      path: `${MSC4108}/eu.bad%24id`,
      headers: { 'Content-Type': 'text/plain', 'If-Match': '"x"' },
      bytes: 5000,
    },
  ];
  for (const { name, path, headers, bytes } of cases) {
    it(name, async () => {
      const send = (base: string) => request('PUT', `${base}${path}`, { headers, body: 'x'.repeat(bytes) });
      const home = await send(regions.eu.url);
      const forwarded = await send(regions.us.url);
      expect(home.status).to.not.equal(413);
      expect([forwarded.status, forwarded.json?.errcode]).to.deep.equal([home.status, home.json?.errcode]);
    });
  }

  it('a valid write over the limit is 413 in both', async () => {
    const path = `${MSC4108}/${euId(75)}`;
    const headers = { 'Content-Type': 'text/plain', 'If-Match': '"x"' };
    const home = await request('PUT', `${regions.eu.url}${path}`, { headers, body: 'x'.repeat(5000) });
    const forwarded = await request('PUT', `${regions.us.url}${path}`, { headers, body: 'x'.repeat(5000) });
    expect([home.status, forwarded.status]).to.deep.equal([413, 413]);
  });
});
