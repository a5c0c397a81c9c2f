/**
 * Hostile requests, generated from a seed so a failure can be replayed: every route, method, id
 * form, header (Host included), ETag form, JSON shape, encoding, size, truncation and stalled body
 * the server may meet.
 */

export type Rng = () => number;

/** mulberry32: tiny, fast, good enough to drive a fuzzer, and reproducible from a 32-bit seed. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rng, n: number) => Math.floor(r() * n);
const bytes = (r: Rng, n: number) => Buffer.from(Array.from({ length: n }, () => int(r, 256)));
const ascii = (r: Rng, n: number, alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-') =>
  Array.from({ length: n }, () => alphabet[int(r, alphabet.length)]).join('');

export const PREFIXES = {
  msc3886: ['', '/_matrix/client/unstable/org.matrix.msc3886/rendezvous'],
  msc4108: ['/_matrix/client/unstable/org.matrix.msc4108/rendezvous'],
  msc4388: ['/_matrix/client/unstable/io.element.msc4388/rendezvous', '/_matrix/client/v1/rendezvous'],
} as const;
export type FamilyName = keyof typeof PREFIXES;
const ALL_PREFIXES = Object.values(PREFIXES).flat();

/** A session the fuzzer must not change: only refused or read-only requests ever name it. */
export interface Victim {
  family: FamilyName;
  prefix: string;
  id: string;
}

export interface Pools {
  victims: Victim[];
  /** Sessions the fuzzer created itself; anything goes on them. */
  own: { prefix: string; id: string }[];
}

export interface HttpCase {
  kind: 'http';
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** The one status the server may answer (a malformed Host: 400 whatever the route). */
  expect?: number;
}
export interface RawCase {
  kind: 'raw';
  bytes: Buffer;
  /** The status every answer on the connection must have, when the case fixes it. */
  expect?: number;
}
/** A request whose body stops arriving: the connection is kept open, silent, until the server acts. */
export interface StallCase {
  kind: 'stall';
  bytes: Buffer;
}
export type FuzzCase = HttpCase | RawCase | StallCase;

/** Host values that are not `host[:port]` (RFC 9110 section 7.2), yet pass Node's parser. */
export const BAD_HOSTS = [
  'a b',
  '[',
  'x:99999999',
  'x:65536',
  'x:-1',
  'x:80:80',
  '::1',
  '[::1',
  '[::g]',
  '[fe80::1%25eth0]',
  '[v1.future]',
  'user@host',
  'host/path',
  'host?q',
  'host#f',
  '%zz',
  '\xe9.example',
  '"x"',
  'a\tb',
  'a\\b',
  'x'.repeat(40) + ':8080:',
];
const BAD_AUTHORITIES = BAD_HOSTS.filter((h) => !/[/?#]/.test(h));
/** Valid but unusual Host values: served like any other. */
const ODD_HOSTS = [
  'localhost:8080',
  '[::1]:80',
  '[2001:db8::1]',
  'rendezvous.example.org',
  'x:',
  'x:0',
  'ex%41mple',
  '',
];

const IDS = (r: Rng): string =>
  pick(r, [
    () => ascii(r, 22),
    () => '',
    () => ascii(r, 256),
    () => ascii(r, 1 + int(r, 40), 'abc%$#@!*()[]{}<>"\'\\ ^`|'),
    () => '%00',
    () => '%2F..%2F',
    () => '..',
    () => '.',
    () => '%ZZ',
    () => encodeURIComponent('ünïcødé✓'),
    () => '%C0%AF',
    () => ascii(r, 22) + '%20',
    () => String(int(r, 1000)),
  ])();

const ETAGS = (r: Rng): string =>
  pick(r, [
    '*',
    '"x"',
    'W/"x"',
    'w/"x"',
    '"x", W/"y"',
    '"unterminated',
    'noquotes',
    '',
    ' , ,',
    Array.from({ length: 20 }, (_, i) => `"t${i}"`).join(', '),
    '"' + ascii(r, 300) + '"',
    'W/',
    '"a"b"',
    '*, "x"',
    '"\x7f"',
  ]);

const CONTENT_TYPES = (r: Rng): string | undefined =>
  pick(r, [
    undefined,
    'text/plain',
    'text/plain; charset=utf-8',
    'TEXT/PLAIN',
    'application/json',
    'application/json; charset=latin1',
    'application/octet-stream',
    'multipart/form-data; boundary=x',
    'application/x-www-form-urlencoded',
    '',
    ';;;',
    ascii(r, 300),
    'text/plain\u00e9',
  ]);

const JSON_BODIES = (r: Rng): string =>
  pick(r, [
    () => '{}',
    () => '[]',
    () => 'null',
    () => '"str"',
    () => '1e999',
    () => '{"data":""}',
    () => '{"data":123}',
    () => '{"data":null}',
    () => `{"data":"${'x'.repeat(5000)}"}`,
    () => `{"data":"${'é'.repeat(2100)}"}`,
    () => '{"data":"\\ud800"}',
    () => '{"sequence_token":[],"data":"x"}',
    () => '{"sequence_token":"1","data":"x"}',
    () => `{"sequence_token":"${ascii(r, 300)}","data":"x"}`,
    () => '{"sequence_token":1,"data":{}}',
    () => '{"data":"a","data":"b"}',
    () => '{"__proto__":{"polluted":1},"data":"x"}',
    () => '{"constructor":{"prototype":{"x":1}},"data":"x"}',
    () => '['.repeat(5000) + ']'.repeat(5000),
    () => '{"data":"x"',
    () => '\ufeff{"data":"x"}',
    () => '{"data":"x"}garbage',
  ])();

function body(r: Rng): Buffer | undefined {
  return pick(r, [
    () => undefined,
    () => Buffer.alloc(0),
    () => bytes(r, int(r, 64)),
    () => bytes(r, 4096),
    () => bytes(r, 4097),
    () => bytes(r, int(r, 6000)),
    () => Buffer.from(JSON_BODIES(r)),
    () => Buffer.from(JSON_BODIES(r)),
    () => Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
  ])();
}

function query(r: Rng): string {
  return pick(r, [
    '',
    '',
    '?',
    '?sequence_token=' + ascii(r, 8),
    '?sequence_token=&timeout_ms=',
    `?sequence_token=${ascii(r, 10)}&timeout_ms=${pick(r, ['0', '-1', 'abc', '1e309', '50', 'NaN', '0x10'])}`,
    '?timeout_ms=' + pick(r, ['-5', 'x', '9'.repeat(40)]),
    '?a=%ZZ&&&=',
    '?' + ascii(r, 500),
  ]);
}

function path(r: Rng, pools: Pools): { path: string; victim?: Victim; ownFamily?: boolean } {
  const roll = r();
  if (roll < 0.1) return { path: pick(r, ['/health', '/ready', '/metrics', '/', '//', '/_matrix', '/favicon.ico']) };
  if (roll < 0.25 && pools.victims.length > 0) {
    const victim = pick(r, pools.victims);
    const prefix = r() < 0.5 ? victim.prefix : pick(r, ALL_PREFIXES);
    return {
      path: `${prefix}/${victim.id}${r() < 0.2 ? '/' + ascii(r, 8) : ''}`,
      victim,
      ownFamily: (PREFIXES[victim.family] as readonly string[]).includes(prefix),
    };
  }
  if (roll < 0.4 && pools.own.length > 0) {
    const s = pick(r, pools.own);
    return { path: `${pick(r, ALL_PREFIXES)}/${s.id}${r() < 0.2 ? '/' + ascii(r, 8) : ''}${query(r)}` };
  }
  const prefix = pick(r, ALL_PREFIXES);
  const tail = pick(r, [
    () => '',
    () => '/',
    () => `/${IDS(r)}`,
    () => `/${IDS(r)}/${IDS(r)}`,
    () => `/${IDS(r)}/${IDS(r)}/${IDS(r)}`,
    () => `//${IDS(r)}`,
  ])();
  return { path: `${prefix}${tail}${query(r)}` };
}

const METHODS = ['GET', 'GET', 'PUT', 'PUT', 'POST', 'POST', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'TRACE', 'PROPFIND'];

function headers(r: Rng): Record<string, string> {
  const h: Record<string, string> = {};
  const ct = CONTENT_TYPES(r);
  if (ct !== undefined) h['content-type'] = ct;
  if (r() < 0.3) h['if-match'] = ETAGS(r);
  if (r() < 0.3) h['if-none-match'] = ETAGS(r);
  if (r() < 0.1) h.prefer = pick(r, ['wait=0', 'wait=-1', 'wait=abc', 'wait=0.5', 'wait', 'respond-async, wait=1']);
  if (r() < 0.15) h.authorization = pick(r, ['Bearer ' + ascii(r, 30), 'Bearer', 'Basic Zm9vOmJhcg==', '']);
  if (r() < 0.1) h['content-encoding'] = pick(r, ['gzip', 'identity', 'br', 'x-unknown', '']);
  if (r() < 0.15) {
    h['sec-fetch-dest'] = pick(r, ['empty', 'document', 'iframe', '']);
    h['sec-fetch-mode'] = pick(r, ['cors', 'navigate', 'no-cors']);
    h['sec-fetch-site'] = pick(r, ['none', 'same-origin', 'cross-site']);
    h['sec-fetch-user'] = pick(r, ['?1', '?0']);
  }
  if (r() < 0.2) {
    h['x-forwarded-for'] = pick(r, [
      '198.51.100.' + int(r, 255),
      'garbage',
      '1.2.3.4, ::1, [2001:db8::1]:80, unknown',
      Array.from({ length: 100 }, () => `10.0.${int(r, 255)}.${int(r, 255)}`).join(','),
      '',
      '2001:db8:' + int(r, 65535).toString(16) + '::1',
    ]);
  }
  if (r() < 0.05) h.forwarded = pick(r, ['for=1.2.3.4', 'for="[::1]:80";by=x', 'for=', ';;,,']);
  if (r() < 0.1) h.origin = pick(r, ['https://evil.example', 'null', '']);
  if (r() < 0.1) h['access-control-request-method'] = pick(r, ['PUT', 'FOO']);
  if (r() < 0.1) h[`x-${ascii(r, 8).toLowerCase()}`] = ascii(r, int(r, 200));
  return h;
}

/** A well-formed HTTP request with hostile content. */
function httpCase(r: Rng, pools: Pools): HttpCase {
  const c = httpContent(r, pools);
  // Any route, any method: a malformed Host is refused before anything else looks at the request.
  const roll = r();
  if (roll < 0.1) return { ...c, headers: { ...c.headers, host: pick(r, BAD_HOSTS) }, expect: 400 };
  if (roll < 0.15) return { ...c, headers: { ...c.headers, host: pick(r, ODD_HOSTS) } };
  return c;
}

function httpContent(r: Rng, pools: Pools): HttpCase {
  let method = pick(r, METHODS);
  const p = path(r, pools);
  const h = headers(r);
  if (p.victim !== undefined && p.ownFamily) {
    // On its own family a victim only ever sees requests that must change nothing.
    method = pick(r, ['GET', 'HEAD', 'OPTIONS', 'PUT', 'POST', 'PATCH']);
    if (method === 'PUT') {
      h['if-match'] = pick(r, ['"not-the-etag"', 'W/"nope"', '"a", "b"']);
      // Always a stale token: any other body may be a valid write (`{"sequence_token":"1",...}` is one).
      if (p.victim.family === 'msc4388') {
        return {
          kind: 'http',
          method,
          path: p.path,
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(JSON.stringify({ sequence_token: 'stale-' + ascii(r, 6), data: 'fuzz ' + ascii(r, 12) })),
        };
      }
    }
  }
  const b = method === 'GET' || method === 'HEAD' || method === 'OPTIONS' ? (r() < 0.1 ? body(r) : undefined) : body(r);
  return { kind: 'http', method, path: p.path, headers: h, body: b };
}

/** Bytes that are not (quite) HTTP: truncations, smuggling shapes, bad chunking, bad syntax. */
function rawCase(r: Rng): RawCase {
  const target = `${pick(r, ALL_PREFIXES)}/${ascii(r, 22)}`;
  const line = (m: string) => `${m} ${target} HTTP/1.1\r\nHost: x\r\n`;
  // A version of HTTP other than 1.x: the one 5xx the server owes (505), as RFC 9110 section 15.6.6 has it.
  if (r() < 0.03)
    return { kind: 'raw', bytes: Buffer.from(`GET ${target} HTTP/9.9\r\nHost: x\r\n\r\n`, 'latin1'), expect: 505 };
  const s = pick(r, [
    () => `${line('PUT')}Content-Length: 100\r\n\r\n${'a'.repeat(int(r, 99))}`,
    () => `${line('POST')}Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    () => `${line('POST')}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
    () => `${line('POST')}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n`,
    () => `${line('POST')}Transfer-Encoding: chunked\r\n\r\n5\r\nhel`,
    () => `${line('POST')}Transfer-Encoding: chunked\r\n\r\n5;${'x'.repeat(20000)}\r\nhello\r\n0\r\n\r\n`,
    () => `${line('POST')}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    () => `${line('POST')}Content-Length: -1\r\n\r\n`,
    () => `${line('POST')}Content-Length: 1, 2\r\n\r\nab`,
    () => `${line('POST')}Content-Length: 99999999999999999999\r\n\r\n`,
    () => `${line('GET')}Bad Header\r\n\r\n`,
    () => `${line('GET')}X: a\r\n folded\r\n\r\n`,
    () => `${line('GET')}X: \x00\x01\r\n\r\n`,
    () => `GET ${target}\x00 HTTP/1.1\r\nHost: x\r\n\r\n`,
    () => `GET http://evil.example${target} HTTP/1.1\r\nHost: x\r\n\r\n`,
    () => `GET ${target} HTTP/1.0\r\n\r\n`,
    () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    () => `get ${target} HTTP/1.1\r\nHost: x\r\n\r\n`,
    () => `${'A'.repeat(5000)} / HTTP/1.1\r\n\r\n`,
    () => `GET ${target} HTTP/1.1\nHost: x\n\n`,
    () => `${line('GET')}\r\n${line('DELETE')}\r\n${line('PUT')}Content-Length: 3\r\n\r\nabc`,
    () => `${line('GET')}\r\nGARBAGE\r\n\r\n`,
    () => `GET ${target} HTTP/1.1\r\n\r\n`,
    () => `\r\n\r\n\r\n`,
    () => bytes(r, int(r, 2000)).toString('latin1'),
    () => `${line('PUT')}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`,
    () => `${line('POST')}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
    () => `CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n`,
  ])();
  return { kind: 'raw', bytes: Buffer.from(s, 'latin1') };
}

/** A malformed Host as raw bytes (the client never normalises them), on a long-poll read or a write. */
function badHostCase(r: Rng): RawCase {
  const target = `${pick(r, ALL_PREFIXES)}/${ascii(r, 22)}`;
  const host = pick(r, BAD_HOSTS);
  const s = pick(r, [
    () => `GET ${target}?sequence_token=1&timeout_ms=5000 HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
    () => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nIf-None-Match: "x"\r\nPrefer: wait=5\r\n\r\n`,
    () => `PUT ${target} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 2\r\n\r\n{}`,
    // In an absolute-form target the authority ends at the first / ? or #: those are no bad authority there.
    () => `GET http://${pick(r, BAD_AUTHORITIES)}${target} HTTP/1.1\r\nHost: x\r\n\r\n`,
  ])();
  return { kind: 'raw', bytes: Buffer.from(s, 'latin1'), expect: 400 };
}

/**
 * A request on a route that reads its body, whose body stops arriving: part of a declared length,
 * complete chunks with no last one, or half a chunk. It must be answered 408 once the request timeout
 * passes, never left hanging or cut without a word.
 */
function stallCase(r: Rng): StallCase {
  const id = ascii(r, 22);
  const [method, target, headers] = pick(r, [
    ['POST', pick(r, PREFIXES.msc3886) || '/', ''],
    ['PUT', `${pick(r, PREFIXES.msc3886)}/${id}`, ''],
    ['POST', PREFIXES.msc4108[0], 'Content-Type: text/plain\r\n'],
    ['PUT', `${PREFIXES.msc4108[0]}/${id}`, 'Content-Type: text/plain\r\nIf-Match: "x"\r\n'],
    ['POST', pick(r, PREFIXES.msc4388), 'Content-Type: application/json\r\n'],
    [
      'PUT',
      `${pick(r, PREFIXES.msc4388)}/${id}${r() < 0.5 ? '/' + ascii(r, 8) : ''}`,
      'Content-Type: application/json\r\n',
    ],
  ] as const);
  const sent = pick(r, ['', '{"data":"', 'a'.repeat(1 + int(r, 200))]);
  const body = pick(r, [
    // Within the payload cap: a declared length above it is answered 413 at once, rightly.
    () => `Content-Length: ${Math.min(4096, sent.length + 1 + int(r, 4000))}\r\n\r\n${sent}`,
    () => `Transfer-Encoding: chunked\r\n\r\n${sent === '' ? '' : `${sent.length.toString(16)}\r\n${sent}\r\n`}`,
    () => `Transfer-Encoding: chunked\r\n\r\n${(sent.length + 10).toString(16)}\r\n${sent}`,
  ])();
  return {
    kind: 'stall',
    bytes: Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: x\r\n${headers}${body}`, 'latin1'),
  };
}

export function generate(r: Rng, pools: Pools): FuzzCase {
  const roll = r();
  if (roll < 0.015) return stallCase(r);
  if (roll < 0.04) return badHostCase(r);
  return roll < 0.2 ? rawCase(r) : httpCase(r, pools);
}
