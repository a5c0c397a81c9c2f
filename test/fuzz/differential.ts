/**
 * Differential run: the same seeded sequence of protocol operations against a server on the memory
 * store and against two replicas on one Redis (each operation on one of them, at random), compared
 * answer by answer after naming each session by its place in the run instead of its random id. Both
 * stores promise the same semantics, so any difference is a defect of one of them. Beside the
 * comparison, every answer is checked against the contract on its own: validators present and
 * consistent, ETags and sequence tokens that only ever move forward, Expires fixed at creation.
 */
import http from 'node:http';
import { RedisServer } from '../helpers/redis';
import { startServer, type TestServer } from '../helpers/server';
import { send, type Answer } from '../helpers/send';
import { PREFIXES, pick, rng, type FamilyName, type Rng } from './generate';

export interface DiffReport {
  ops: number;
  byOp: Record<string, number>;
  failures: string[];
  seconds: number;
}

/** ETag-family lifetime: short, so that expiry happens during a run. */
const TTL_SECONDS = 4;
/** Operations on a session this close to its expiry are not compared (the two clocks differ). */
const EXPIRY_MARGIN_MS = 400;
const BASE = 'https://rz.example';
/** Few, so that sessions run out of transaction ids during a run. */
const MAX_TXNS = 4;

interface Seen {
  id: string;
  etag?: string;
  prevEtag?: string;
  token?: string;
  expires?: string;
  lastModified?: string;
  /** Local time the create was answered; expiry follows from it. */
  createdAt: number;
  /** Highest revision seen in any answer about this session. */
  rev: number;
}

interface Slot {
  n: number;
  family: FamilyName;
  prefix: string;
  ttlMs: number;
  /** Per target: what that store said about this session. */
  seen: [Seen, Seen];
  /** Transaction ids used on this session, with the body they were first sent with. */
  txns: { id: string; body: string; status: number }[];
  deleted: boolean;
  /** What the session holds, as the contract says it must after the answers seen so far. */
  data: Buffer;
  type: string;
}

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

const IGNORED_HEADERS = new Set(['date', 'connection', 'keep-alive', 'x-request-id', 'transfer-encoding']);

const ascii = (r: Rng, n: number) =>
  Array.from({ length: n }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[Math.floor(r() * 36)]).join('');

function etagParts(etag: string | undefined): { tag: string; rev: number } | undefined {
  const m = etag === undefined ? null : /^"([^".]+)\.(\d+)"$/.exec(etag);
  return m === null ? undefined : { tag: m[1]!, rev: Number(m[2]) };
}

export async function runDifferential(
  count: number,
  seed: number,
  opts: { replicas?: number } = {},
): Promise<DiffReport> {
  const began = Date.now();
  const failures: string[] = [];
  const byOp: Record<string, number> = {};
  const r = rng(seed);
  const redis = await RedisServer.start();
  const env = {
    RZ_PUBLIC_BASE_URL: BASE,
    RZ_TTL_SECONDS: String(TTL_SECONDS),
    RZ_LONGPOLL_MAX_WAIT_SECONDS: '5',
    RZ_MAX_TXNS_PER_SESSION: String(MAX_TXNS),
  };
  const memory = await startServer(env);
  const replicas: TestServer[] = [];
  for (let i = 0; i < (opts.replicas ?? 2); i++) replicas.push(await startServer({ ...env, REDIS_URL: redis.url }));
  const agents = [new http.Agent({ keepAlive: true }), new http.Agent({ keepAlive: true })];
  const slots: Slot[] = [];
  /** How long each create took, both stores (how far before its answer a session may have been made). */
  const createTook: number[] = [];
  let op = 0;
  let opName = '';

  const fail = (msg: string) => {
    if (failures.length < 200) failures.push(`op ${op} (${opName}, seed ${seed}): ${msg}`);
  };

  const ports = (): [number, number] => [memory.port, pick(r, replicas).port];

  const sendTo = (t: 0 | 1, port: number, req: Req): Promise<Answer> =>
    send(port, {
      ...req,
      agent: agents[t],
      headers: { ...req.headers, 'content-length': String(req.body?.length ?? 0) },
    });

  /** Replaces every id this target gave out by its slot number, in a string. */
  const anonymise = (t: 0 | 1, s: string): string => {
    for (const slot of slots) s = s.split(slot.seen[t].id).join(`<${slot.n}>`);
    return s;
  };

  /** What must be equal between the stores, as one string. */
  function normalise(t: 0 | 1, a: Answer, slot: Slot | undefined): string {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(a.headers)) {
      if (IGNORED_HEADERS.has(k) || v === undefined) continue;
      let value = Array.isArray(v) ? v.join('\n') : v;
      if (k === 'etag') {
        const parts = etagParts(value);
        value = parts === undefined ? `bad ${value}` : `rev ${parts.rev}`;
      } else if (k === 'expires' || k === 'last-modified') {
        value = 'present';
      } else {
        value = anonymise(t, value);
      }
      headers[k] = value;
    }
    let body = a.body.toString('latin1');
    if (slot?.family === 'msc4388' && a.status === 200 && a.headers['content-type'] === 'application/json') {
      try {
        const parsed = JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
        // A read's remaining lifetime counts down on its own; a create's must be equal.
        if ('data' in parsed && 'expires_in_ms' in parsed) parsed.expires_in_ms = 'counting';
        body = JSON.stringify(parsed);
      } catch {
        // compared as bytes
      }
    }
    return JSON.stringify([a.status, Object.entries(headers).sort(), anonymise(t, body)]);
  }

  /** The contract, on one answer about one session, and what the answer says about its state. */
  function check(t: 0 | 1, req: Req, a: Answer, slot: Slot | undefined, replay = false): void {
    const who = t === 0 ? 'memory' : 'redis';
    const h = a.headers;
    if (a.status === 304 && (h['content-type'] !== undefined || h['content-length'] !== undefined)) {
      fail(`${who}: 304 with Content-Type/Content-Length for ${req.method} ${req.path}`);
    }
    if (a.status >= 400 && h['content-type'] !== 'application/json') fail(`${who}: ${a.status} not JSON`);
    if (h['cache-control'] !== 'no-store, no-transform') fail(`${who}: Cache-Control ${h['cache-control']}`);
    if (req.method === 'HEAD' && a.body.length > 0) fail(`${who}: HEAD answered with a body`);
    if (h.pragma !== 'no-cache' || h['x-content-type-options'] !== 'nosniff') fail(`${who}: caching headers missing`);
    if (h['access-control-allow-origin'] !== '*') fail(`${who}: no Access-Control-Allow-Origin`);
    if (a.status !== 304 && a.status !== 204 && a.body.length > 0) {
      if (h['content-type'] === undefined) fail(`${who}: ${a.status} with content but no Content-Type`);
      if (h['content-length'] !== String(a.body.length))
        fail(`${who}: Content-Length ${h['content-length']} for ${a.body.length} bytes`);
    }
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      const listed = (name: string) =>
        (h[name] ?? '')
          .toString()
          .toLowerCase()
          .split(/\s*,\s*/);
      for (const m of ['get', 'put', 'post', 'delete', 'options'])
        if (!listed('access-control-allow-methods').includes(m)) fail(`${who}: preflight does not allow ${m}`);
      for (const x of ['content-type', 'if-match', 'if-none-match', 'authorization', 'x-requested-with'])
        if (!listed('access-control-allow-headers').includes(x)) fail(`${who}: preflight does not allow header ${x}`);
      if (h['access-control-max-age'] !== '86400') fail(`${who}: preflight Max-Age ${h['access-control-max-age']}`);
    }
    if (a.status === 429 || a.status === 503) {
      if (h['retry-after'] === undefined) fail(`${who}: ${a.status} without Retry-After`);
    }
    const expose = (h['access-control-expose-headers'] ?? '')
      .toString()
      .toLowerCase()
      .split(/\s*,\s*/);
    if (req.method !== 'OPTIONS')
      for (const x of ['etag', 'location', 'expires', 'last-modified'])
        if (!expose.includes(x)) fail(`${who}: ${x} not exposed to browsers`);
    if (slot === undefined) return;
    const s = slot.seen[t];
    if (slot.family !== 'msc4388' && req.path.startsWith(slot.prefix + '/') && h.etag !== undefined) {
      const parts = etagParts(h.etag);
      if (parts === undefined) return fail(`${who}: malformed ETag ${h.etag}`);
      const known = etagParts(s.etag);
      if (known !== undefined && known.tag !== parts.tag) fail(`${who}: ETag salt changed ${s.etag} -> ${h.etag}`);
      if (parts.rev < s.rev) fail(`${who}: ETag went back from rev ${s.rev} to ${parts.rev} (${req.method})`);
      if (h.expires === undefined || h['last-modified'] === undefined)
        fail(`${who}: ${a.status} without Expires/Last-Modified`);
      if (h.expires !== undefined) {
        // Rounded up to the second, from a creation between the create's request and its answer.
        const exp = Date.parse(h.expires);
        if (exp < s.createdAt - createTook[slot.n]! + slot.ttlMs - 5 || exp > s.createdAt + slot.ttlMs + 1005)
          fail(`${who}: Expires ${h.expires} is not creation + TTL rounded up`);
        if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(h.expires))
          fail(`${who}: Expires not IMF-fixdate`);
      }
      if (h['last-modified'] !== undefined && Date.parse(h['last-modified']) > Date.now())
        fail(`${who}: Last-Modified in the future`);
      if (s.expires !== undefined && h.expires !== s.expires)
        fail(`${who}: Expires moved ${s.expires} -> ${h.expires}`);
      if (h.expires !== undefined && h['last-modified'] !== undefined) {
        if (Date.parse(h['last-modified']) > Date.parse(h.expires)) fail(`${who}: Last-Modified after Expires`);
        if (s.lastModified !== undefined && Date.parse(h['last-modified']) < Date.parse(s.lastModified))
          fail(`${who}: Last-Modified went back`);
      }
      if (parts.rev > s.rev) {
        s.prevEtag = s.etag;
        s.rev = parts.rev;
      }
      s.etag = h.etag;
      s.expires = h.expires;
      s.lastModified = h['last-modified'];
    }
    if (
      slot.family === 'msc4388' &&
      a.status === 200 &&
      a.body.length > 0 &&
      h['content-type'] === 'application/json'
    ) {
      const parsed = JSON.parse(a.body.toString()) as { sequence_token?: string };
      if (parsed.sequence_token !== undefined) {
        const rev = Number(parsed.sequence_token);
        // A repeated transaction id answers what it answered then, an older token included.
        if (!(rev >= s.rev) && !replay)
          fail(`${who}: sequence_token went back from ${s.rev} to ${parsed.sequence_token}`);
        s.rev = Math.max(s.rev, rev);
        s.token = String(s.rev);
      }
    }
  }

  /** Sends one request (built per target) to both stores and compares. */
  async function both(build: (t: 0 | 1) => Req, slot?: Slot, replay = false): Promise<[Answer, Answer]> {
    const [pm, pr] = ports();
    const reqs = [build(0), build(1)] as const;
    const am = await sendTo(0, pm, reqs[0]);
    const ar = await sendTo(1, pr, reqs[1]);
    check(0, reqs[0], am, slot, replay);
    check(1, reqs[1], ar, slot, replay);
    const nm = normalise(0, am, slot);
    const nr = normalise(1, ar, slot);
    if (nm !== nr) fail(`${reqs[0].method} ${anonymise(0, reqs[0].path)} differs:\n  memory ${nm}\n  redis  ${nr}`);
    return [am, ar];
  }

  /** Whether the session expires, on either store, between now and the end of a long-poll. */
  const uncertain = (slot: Slot) =>
    slot.seen.some((s) => {
      const left = s.createdAt + slot.ttlMs - Date.now();
      return left > -EXPIRY_MARGIN_MS && left < 2500 + EXPIRY_MARGIN_MS;
    });
  const pathOf = (slot: Slot, t: 0 | 1, prefix = slot.prefix) => `${prefix}/${slot.seen[t].id}`;
  const otherPrefix = (slot: Slot) =>
    pick(
      r,
      Object.entries(PREFIXES)
        .filter(([f]) => f !== slot.family)
        .flatMap(([, ps]) => ps),
    );

  /** An If-Match / If-None-Match value for a target, built from what that target said. */
  const conditionFor = (kind: string) => (s: Seen) => {
    const cur = s.etag ?? '"none"';
    switch (kind) {
      case 'current':
        return cur;
      case 'weak':
        return `W/${cur}`;
      case 'previous':
        // At the first revision: the "version before", which was never handed out.
        return s.prevEtag ?? cur.replace(/\.\d+"$/, '.0"');
      case 'list':
        return `"other", ${cur}`;
      case 'weaklist':
        return `W/"other", W/${cur}`;
      case 'star':
        return '*';
      case 'stale':
        return '"stale.1"';
      default:
        return 'garbage';
    }
  };

  async function create(): Promise<void> {
    const family = pick(r, ['msc3886', 'msc4108', 'msc4388'] as const);
    const prefix = pick(r, PREFIXES[family]);
    const path = family === 'msc3886' && prefix === '' ? '/' : prefix;
    let headers: Record<string, string> = {};
    let body: Buffer;
    if (family === 'msc4388') {
      headers = { 'content-type': pick(r, ['application/json', 'application/json', 'text/plain']) };
      body = Buffer.from(pick(r, ['{"data":""}', `{"data":"${ascii(r, 8)}"}`, '{"data":"é✓"}', '{}', 'nope']));
    } else {
      const ct = pick(r, [
        'text/plain',
        'text/plain; charset=utf-8',
        'application/json',
        'application/octet-stream',
        'TEXT/PLAIN',
        'image/png',
        '',
      ]);
      if (ct !== '') headers['content-type'] = ct;
      body = pick(r, [Buffer.alloc(0), Buffer.from(ascii(r, 12)), Buffer.from([0, 255, 10, 13])]);
    }
    const req: Req = { method: 'POST', path, headers, body };
    const [pm, pr] = ports();
    const sentAt = Date.now();
    const am = await sendTo(0, pm, req);
    const ar = await sendTo(1, pr, req);
    const compare = () => {
      const nm = normalise(0, am, slots.at(-1));
      const nr = normalise(1, ar, slots.at(-1));
      if (nm !== nr) fail(`POST ${path} differs:\n  memory ${nm}\n  redis  ${nr}`);
    };
    if (am.status !== ar.status || (am.status !== 200 && am.status !== 201)) return compare();
    const idOf = (a: Answer) => {
      const p = JSON.parse(a.body.toString()) as { id?: string; url?: string };
      return p.id ?? p.url!.split('/').pop()!;
    };
    const now = Date.now();
    createTook[slots.length] = now - sentAt;
    const seen = [am, ar].map((a): Seen => ({
      id: idOf(a),
      etag: a.headers.etag,
      expires: a.headers.expires,
      lastModified: a.headers['last-modified'],
      token:
        family === 'msc4388' ? (JSON.parse(a.body.toString()) as { sequence_token: string }).sequence_token : undefined,
      createdAt: now,
      rev: 1,
    })) as [Seen, Seen];
    slots.push({
      n: slots.length,
      family,
      prefix,
      ttlMs: family === 'msc4388' ? 120_000 : TTL_SECONDS * 1000,
      seen,
      txns: [],
      deleted: false,
      data: family === 'msc4388' ? Buffer.from((JSON.parse(body.toString()) as { data: string }).data) : body,
      type: family === 'msc4108' ? 'text/plain' : (headers['content-type'] ?? 'application/octet-stream'),
    });
    compare();
  }

  async function etagRead(slot: Slot, method: 'GET' | 'HEAD'): Promise<[Answer, Answer]> {
    const cond = pick(r, ['none', 'current', 'weak', 'previous', 'list', 'weaklist', 'star', 'stale', 'bad']);
    const prefix = r() < 0.1 ? otherPrefix(slot) : slot.prefix;
    const answers = await both((t) => {
      const headers: Record<string, string> = {};
      if (cond !== 'none') headers['if-none-match'] = conditionFor(cond)(slot.seen[t]);
      return { method, path: pathOf(slot, t, prefix), headers };
    }, slot);
    if (method === 'HEAD') {
      // The same headers as a GET would have had (Content-Length included), and no body.
      const again = await both((t) => {
        const headers: Record<string, string> = {};
        if (cond !== 'none') headers['if-none-match'] = conditionFor(cond)(slot.seen[t]);
        return { method: 'GET', path: pathOf(slot, t, prefix), headers };
      }, slot);
      again.forEach((g, t) => {
        const strip = (a: Answer) => normalise(t as 0 | 1, { ...a, body: Buffer.alloc(0) }, slot);
        if (strip(g) !== strip(answers[t]!))
          fail(`HEAD and GET differ:\n  HEAD ${strip(answers[t]!)}\n  GET  ${strip(g)}`);
      });
    }
    if (prefix === slot.prefix && cond !== 'bad') {
      const matches = ['current', 'weak', 'list', 'weaklist', 'star'].includes(cond);
      expectStatus(answers, !alive(slot) ? 404 : matches ? 304 : 200, `${method} with If-None-Match ${cond}`);
      if (alive(slot) && !matches && method === 'GET') {
        for (const a of answers) {
          if (!a.body.equals(slot.data)) fail(`GET answered ${a.body.toString('latin1')}, not the stored payload`);
          if (a.headers['content-type'] !== slot.type)
            fail(`GET answered type ${a.headers['content-type']}, stored ${slot.type}`);
        }
      }
    }
    return answers;
  }

  const alive = (slot: Slot) => !slot.deleted && slot.seen.every((s) => Date.now() < s.createdAt + slot.ttlMs);

  function expectStatus(answers: readonly Answer[], status: number, what: string): void {
    answers.forEach((a, t) => {
      if (a.status !== status)
        fail(`${t === 0 ? 'memory' : 'redis'}: ${what} answered ${a.status}, expected ${status}`);
    });
  }

  async function etagWrite(slot: Slot): Promise<[Answer, Answer]> {
    // One write in six is the verbatim re-send of the last one: previous version, same body, same type.
    const resend = r() < 0.16;
    const cond = resend
      ? 'previous'
      : pick(r, ['none', 'current', 'current', 'weak', 'previous', 'list', 'weaklist', 'star', 'stale', 'bad']);
    const sameBody = resend || r() < 0.4;
    const ct =
      resend || (sameBody && r() < 0.6)
        ? slot.type
        : pick(r, ['text/plain', 'text/plain; charset=utf-8', 'application/json', 'none', 'image/png']);
    const fresh = Buffer.from(ascii(r, 1 + Math.floor(r() * 20)));
    const prefix = r() < 0.1 ? otherPrefix(slot) : slot.prefix;
    const before = slot.seen.map((x) => x.etag);
    const revBefore = slot.seen[0].rev;
    const answers = await both((t) => {
      const headers: Record<string, string> = {};
      if (cond !== 'none') headers['if-match'] = conditionFor(cond)(slot.seen[t]);
      if (ct !== 'none') headers['content-type'] = ct;
      // A verbatim re-send: the payload the session holds.
      const body = sameBody ? slot.data : fresh;
      return { method: 'PUT', path: pathOf(slot, t, prefix), headers, body };
    }, slot);
    const body = sameBody ? slot.data : fresh;
    if (prefix !== slot.prefix) {
      answers.forEach((a) => {
        if (a.status < 400) fail(`PUT on another family's path answered ${a.status}`);
      });
      return answers;
    }
    const type = slot.family === 'msc4108' ? 'text/plain' : ct === 'none' ? 'application/octet-stream' : ct;
    let expected: number;
    let writes = false;
    if (slot.family === 'msc4108') {
      const plain = ct.startsWith('text/plain');
      if (!plain || ['none', 'list', 'weaklist', 'star', 'bad'].includes(cond)) expected = 400;
      else if (!alive(slot)) expected = 404;
      else if (cond === 'current' || cond === 'weak') {
        expected = 202;
        writes = true;
      } else expected = cond === 'previous' && revBefore > 1 && body.equals(slot.data) ? 202 : 412;
    } else if (cond === 'bad') expected = 400;
    else if (!alive(slot)) expected = 404;
    else if (['none', 'star', 'current', 'weak', 'list', 'weaklist'].includes(cond)) {
      expected = 202;
      writes = true;
    } else expected = cond === 'previous' && revBefore > 1 && body.equals(slot.data) && type === slot.type ? 202 : 412;
    expectStatus(answers, expected, `PUT with If-Match ${cond}, type ${ct}, ${sameBody ? 'same' : 'new'} body`);
    if (writes && answers[0].status === 202) {
      slot.data = body;
      slot.type = type;
    }
    if (expected === 202 && !writes) {
      // The re-send of a write that landed: nothing written, the current validators.
      answers.forEach((a, t) => {
        if (a.headers.etag !== before[t]) fail(`re-send moved the ETag to ${a.headers.etag}`);
      });
    }
    return answers;
  }

  async function sequenceWrite(slot: Slot): Promise<void> {
    const tokenKind = pick(r, ['current', 'current', 'stale', 'previous', 'bad']);
    const data = r() < 0.4 ? slot.data.toString() : ascii(r, 1 + Math.floor(r() * 10));
    let txn: string | undefined;
    let used: Slot['txns'][number] | undefined;
    let bodyOverride: string | undefined;
    if (r() < 0.5) {
      if (slot.txns.length > 0 && r() < 0.5) {
        used = pick(r, slot.txns);
        txn = used.id;
        // The same request again, or the same txn id with another body.
        if (r() < 0.5) bodyOverride = used.body;
      } else {
        txn = ascii(r, 10);
      }
    }
    const prefix = r() < 0.1 ? otherPrefix(slot) : slot.prefix;
    const bodies: string[] = [];
    const revBefore = slot.seen[0].rev;
    const answers = await both(
      (t) => {
        const s = slot.seen[t];
        const token =
          tokenKind === 'current'
            ? String(s.rev)
            : tokenKind === 'previous'
              ? String(Math.max(1, s.rev - 1))
              : tokenKind === 'stale'
                ? '999'
                : 'bad token';
        const body = bodyOverride ?? JSON.stringify({ sequence_token: token, data });
        bodies[t] = body;
        const path = pathOf(slot, t, prefix) + (txn === undefined ? '' : `/${txn}`);
        return { method: 'PUT', path, headers: { 'content-type': 'application/json' }, body: Buffer.from(body) };
      },
      slot,
      used !== undefined,
    );
    if (prefix !== slot.prefix) {
      answers.forEach((a) => {
        if (a.status < 400) fail(`PUT on another family's path answered ${a.status}`);
      });
      return;
    }
    const sent = JSON.parse(bodies[0]!) as { sequence_token: string; data: string };
    let expected: number;
    let writes = false;
    if (sent.sequence_token === 'bad token') expected = 400;
    else if (!alive(slot)) expected = 404;
    else if (used !== undefined) expected = used.status;
    else if (txn !== undefined && slot.txns.length >= MAX_TXNS) expected = 403;
    else if (sent.sequence_token === String(revBefore)) {
      expected = 200;
      writes = true;
    } else expected = Buffer.from(sent.data).equals(slot.data) ? 200 : 409;
    expectStatus(answers, expected, `PUT with ${used ? 'a repeated txn id' : `a ${tokenKind} token`}`);
    if (writes && answers[0].status === 200) slot.data = Buffer.from(sent.data);
    // Only what the store recorded (not a 400, a 404, or a 403 for a session out of txn ids).
    if (txn !== undefined && used === undefined && [200, 409].includes(answers[0].status))
      slot.txns.push({ id: txn, body: bodies[0]!, status: answers[0].status });
  }

  async function sequenceRead(slot: Slot, method: 'GET' | 'HEAD'): Promise<void> {
    const prefix = r() < 0.1 ? otherPrefix(slot) : slot.prefix;
    const answers = await both((t) => ({ method, path: pathOf(slot, t, prefix), headers: {} }), slot);
    if (prefix !== slot.prefix) return expectStatus(answers, 404, `${method} on another family's path`);
    expectStatus(answers, alive(slot) ? 200 : 404, method);
    if (alive(slot) && method === 'GET') {
      for (const a of answers) {
        const { data } = JSON.parse(a.body.toString()) as { data: string };
        if (!Buffer.from(data).equals(slot.data)) fail(`GET answered data ${data}, not ${slot.data.toString()}`);
      }
    }
  }

  /**
   * A long-poll on each store, ended by a write, a delete, or its own timeout; on Redis the poll and
   * the write go to different replicas when there are two.
   */
  async function longPoll(slot: Slot): Promise<void> {
    const ending = pick(r, ['write', 'write', 'delete', 'timeout']);
    const wasAlive = alive(slot);
    const delay = pick(r, [0, 1, 3, 10, 150, 150]);
    const pollReq = (t: 0 | 1): Req => {
      const s = slot.seen[t];
      return slot.family === 'msc4388'
        ? { method: 'GET', path: `${pathOf(slot, t)}?sequence_token=${s.rev}&timeout_ms=700`, headers: {} }
        : { method: 'GET', path: pathOf(slot, t), headers: { 'if-none-match': s.etag ?? '"x"', prefer: 'wait=1' } };
    };
    const endReq = (t: 0 | 1): Req => {
      if (ending === 'delete') return { method: 'DELETE', path: pathOf(slot, t), headers: {} };
      if (slot.family === 'msc4388') {
        const body = JSON.stringify({ sequence_token: String(slot.seen[t].rev), data: `woken ${op}` });
        return {
          method: 'PUT',
          path: pathOf(slot, t),
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(body),
        };
      }
      return {
        method: 'PUT',
        path: pathOf(slot, t),
        headers: { 'content-type': 'text/plain', 'if-match': slot.seen[t].etag ?? '"x"' },
        body: Buffer.from(`woken ${op}`),
      };
    };
    // Both stores at once, so that both waits end alike on the clock.
    const results = await Promise.all(
      ([0, 1] as const).map(async (t) => {
        const pollPort = t === 0 ? memory.port : replicas[0]!.port;
        const writePort = t === 0 ? memory.port : replicas[replicas.length - 1]!.port;
        const pr = pollReq(t);
        const er = endReq(t);
        const poll = send(pollPort, pr);
        let ended: Answer | undefined;
        if (ending !== 'timeout') {
          // Late, or at once: a write racing the poll's own read and subscription must still wake it.
          await new Promise((res) => setTimeout(res, delay));
          ended = await sendTo(t, writePort, er);
        }
        const polled = await poll;
        check(t, pr, polled, slot);
        if (ended !== undefined) check(t, er, ended, slot);
        return ended === undefined ? [polled] : [polled, ended];
      }),
    );
    results[0]!.forEach((a, i) => {
      const nm = normalise(0, a, slot);
      const nr = normalise(1, results[1]![i]!, slot);
      if (nm !== nr) fail(`long-poll ended by ${ending}, answer ${i} differs:\n  memory ${nm}\n  redis  ${nr}`);
    });
    const woken = Buffer.from(`woken ${op}`);
    const [polled] = results.map((x) => x[0]!);
    const etag = slot.family !== 'msc4388';
    if (!wasAlive)
      expectStatus(
        results.map((x) => x[0]!),
        404,
        'long-poll on a session that is gone',
      );
    else if (ending === 'timeout')
      expectStatus(
        results.map((x) => x[0]!),
        etag ? 304 : 200,
        'long-poll ended by its timeout',
      );
    else if (ending === 'delete')
      expectStatus(
        results.map((x) => x[0]!),
        404,
        'long-poll ended by a delete',
      );
    else if (ending === 'write') {
      expectStatus(
        results.map((x) => x[0]!),
        200,
        'long-poll ended by a write',
      );
      expectStatus(
        results.map((x) => x[1]!),
        etag ? 202 : 200,
        'the write that ends a long-poll',
      );
      for (const x of results) {
        const got = etag
          ? x[0]!.body
          : Buffer.from((JSON.parse(x[0]!.body.toString() || '{}') as { data?: string }).data ?? '');
        if (x[0]!.status === 200 && !got.equals(woken)) fail(`long-poll woke with ${got.toString()}, not the write`);
      }
      if (polled!.status === 200) {
        slot.data = woken;
        slot.type = 'text/plain';
      }
    }
    if (ending === 'delete') slot.deleted = true;
  }

  /** Writers racing on one version: exactly one wins, on every store and across replicas. */
  async function race(slot: Slot): Promise<void> {
    const n = 2 + Math.floor(r() * 4);
    const datas = Array.from({ length: n }, (_, i) => `racer ${i} ${ascii(r, 4)}`);
    const wasAlive = alive(slot);
    for (const t of [0, 1] as const) {
      const s = slot.seen[t];
      const reqs = datas.map((d): Req =>
        slot.family === 'msc4388'
          ? {
              method: 'PUT',
              path: pathOf(slot, t),
              headers: { 'content-type': 'application/json' },
              body: Buffer.from(JSON.stringify({ sequence_token: String(s.rev), data: d })),
            }
          : {
              method: 'PUT',
              path: pathOf(slot, t),
              headers: { 'content-type': 'text/plain', 'if-match': s.etag ?? '"x"' },
              body: Buffer.from(d),
            },
      );
      const answers = await Promise.all(
        reqs.map((q, i) => sendTo(t, t === 0 ? memory.port : replicas[i % replicas.length]!.port, q)),
      );
      answers.forEach((a, i) => check(t, reqs[i]!, a, slot));
      const won = answers.flatMap((a, i) => (a.status === 200 || a.status === 202 ? [i] : []));
      const who = t === 0 ? 'memory' : 'redis';
      if (!wasAlive) {
        if (answers.some((a) => a.status !== 404)) fail(`${who}: racing writes on a session that is gone`);
      } else if (won.length !== 1) {
        fail(`${who}: ${won.length} of ${n} racing writers won (${answers.map((a) => a.status).join(' ')})`);
      } else if (t === 0) {
        slot.data = Buffer.from(datas[won[0]!]!);
        if (slot.family !== 'msc4388') slot.type = 'text/plain';
      } else {
        // Both stores must hold the same bytes for the rest of the run: the memory store's winner.
        const fix = reqs[0]!;
        const cur = slot.seen[1];
        const again =
          slot.family === 'msc4388'
            ? {
                ...fix,
                body: Buffer.from(JSON.stringify({ sequence_token: String(cur.rev), data: slot.data.toString() })),
              }
            : { ...fix, headers: { ...fix.headers, 'if-match': cur.etag! }, body: slot.data };
        const b = await sendTo(1, replicas[0]!.port, again);
        check(1, again, b, slot);
        // The memory store gets one more write too, so revisions stay in step.
        const m = slot.seen[0];
        const mirror =
          slot.family === 'msc4388'
            ? {
                ...reqs[0]!,
                path: pathOf(slot, 0),
                body: Buffer.from(JSON.stringify({ sequence_token: String(m.rev), data: slot.data.toString() })),
              }
            : { ...reqs[0]!, path: pathOf(slot, 0), headers: { ...fix.headers, 'if-match': m.etag! }, body: slot.data };
        const c = await sendTo(0, memory.port, mirror);
        check(0, mirror, c, slot);
      }
    }
  }

  async function expire(slot: Slot): Promise<void> {
    const latest = Math.max(...slot.seen.map((s) => s.createdAt + slot.ttlMs));
    await new Promise((res) => setTimeout(res, Math.max(0, latest - Date.now() + EXPIRY_MARGIN_MS)));
    const method = pick(r, ['GET', 'PUT', 'DELETE']);
    const [am, ar] = await both(
      (t) => ({
        method,
        path: pathOf(slot, t),
        headers: {
          'content-type': slot.family === 'msc4388' ? 'application/json' : 'text/plain',
          'if-match': slot.seen[t].etag ?? '"x"',
        },
        body: method === 'PUT' ? Buffer.from('{"sequence_token":"1","data":""}') : undefined,
      }),
      slot,
    );
    if (am.status !== 404 || ar.status !== 404) fail(`${method} after expiry: ${am.status} / ${ar.status}`);
  }

  try {
    for (op = 0; op < count; op++) {
      const live = slots.filter((s) => !uncertain(s));
      const roll = r();
      if (live.length === 0 || roll < 0.12) {
        opName = 'create';
        await create();
      } else {
        const living = live.filter(alive);
        const slot = living.length > 0 && r() < 0.85 ? pick(r, living) : pick(r, live);
        const etag = slot.family !== 'msc4388';
        if (roll < 0.4) {
          opName = etag ? 'etag-read' : 'sequence-read';
          const method = r() < 0.2 ? 'HEAD' : 'GET';
          if (etag) await etagRead(slot, method);
          else await sequenceRead(slot, method);
        } else if (roll < 0.75) {
          opName = etag ? 'etag-write' : 'sequence-write';
          if (etag) await etagWrite(slot);
          else await sequenceWrite(slot);
        } else if (roll < 0.8) {
          opName = 'delete';
          const prefix = r() < 0.3 ? otherPrefix(slot) : slot.prefix;
          const [am] = await both((t) => ({ method: 'DELETE', path: pathOf(slot, t, prefix), headers: {} }), slot);
          if (prefix !== slot.prefix) expectStatus([am], 404, "DELETE on another family's path");
          else if (am.status < 300) slot.deleted = true;
        } else if (roll < 0.86) {
          opName = 'long-poll';
          await longPoll(slot);
        } else if (roll < 0.9) {
          opName = 'race';
          await race(slot);
        } else if (roll < 0.91 && etag) {
          opName = 'expire';
          await expire(slot);
        } else {
          opName = 'options';
          const preflight = r() < 0.7;
          const headers: Record<string, string> = { origin: 'https://app.example' };
          if (preflight) {
            headers['access-control-request-method'] = pick(r, ['GET', 'PUT', 'DELETE', 'POST']);
            headers['access-control-request-headers'] = pick(r, [
              'if-match,content-type',
              'if-none-match',
              'authorization',
            ]);
          }
          await both((t) => ({ method: 'OPTIONS', path: pathOf(slot, t), headers }), slot);
        }
      }
      byOp[opName] = (byOp[opName] ?? 0) + 1;
    }
  } finally {
    for (const a of agents) a.destroy();
    await memory.stop();
    for (const s of replicas) await s.stop();
    await redis.destroy();
  }
  return { ops: count, byOp, failures, seconds: (Date.now() - began) / 1000 };
}
