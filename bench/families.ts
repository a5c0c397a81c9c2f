/**
 * The three API families as data: how to create a session, poll it, write it, read it and delete it,
 * and what each answer must be. Scenarios are built from this table, so a family is one entry.
 */

export interface Req {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** What a client holds about one session: its path and current validator (ETag or sequence token). */
export interface SessionRef {
  path: string;
  /** Current ETag (ETag family) or sequence token (MSC4388). */
  version: string;
}

export type Headers = Record<string, string | string[] | undefined>;

export interface Family {
  name: 'MSC3886' | 'MSC4108' | 'MSC4388';
  create(payload: string): Req;
  created: number;
  /** The session a create answered with, or undefined when the answer is unusable. */
  parseCreated(body: string, headers: Headers): SessionRef | undefined;
  /** A poll that finds nothing new: 304 for the ETag family, 200 with the same token for MSC4388. */
  poll(s: SessionRef): Req;
  polled: number;
  /** A conditional write on the current version. */
  write(s: SessionRef, payload: string): Req;
  written: number;
  /** The new version after a successful write. */
  versionAfterWrite(body: string, headers: Headers): string | undefined;
  /** A read of the current payload (what the peer does after a write). */
  read(s: SessionRef, lastSeen: string): Req;
  delete(s: SessionRef): Req;
  deleted: number;
}

/** A response header by its lower-case name (the load generator keeps the case the server sent). */
function header(headers: Headers, name: string): string | undefined {
  let v = headers[name];
  if (v === undefined) {
    for (const k in headers) if (k.toLowerCase() === name) v = headers[k];
  }
  return Array.isArray(v) ? v[0] : v;
}

const pathOf = (url: string): string => new URL(url).pathname;

function jsonField(body: string, field: string): string | undefined {
  try {
    const v = (JSON.parse(body) as Record<string, unknown>)[field];
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** MSC3886 and MSC4108 share HTTP validators; they differ in paths, create answer and content type. */
function etagFamily(opts: {
  name: 'MSC3886' | 'MSC4108';
  createPath: string;
  contentType: string;
  created: number;
  createPayload: (payload: string) => string;
  parsePath: (body: string, headers: Headers) => string | undefined;
}): Family {
  return {
    name: opts.name,
    create: (payload) => {
      const body = opts.createPayload(payload);
      return {
        method: 'POST',
        path: opts.createPath,
        headers: { 'Content-Type': opts.contentType, 'Content-Length': String(Buffer.byteLength(body)) },
        body,
      };
    },
    created: opts.created,
    parseCreated: (body, headers) => {
      const path = opts.parsePath(body, headers);
      const etag = header(headers, 'etag');
      return path === undefined || etag === undefined ? undefined : { path, version: etag };
    },
    poll: (s) => ({ method: 'GET', path: s.path, headers: { 'If-None-Match': s.version } }),
    polled: 304,
    write: (s, payload) => ({
      method: 'PUT',
      path: s.path,
      headers: { 'Content-Type': opts.contentType, 'If-Match': s.version },
      body: payload,
    }),
    written: 202,
    versionAfterWrite: (_body, headers) => header(headers, 'etag'),
    read: (s, lastSeen) => ({
      method: 'GET',
      path: s.path,
      headers: lastSeen === '' ? {} : ({ 'If-None-Match': lastSeen } as Record<string, string>),
    }),
    delete: (s) => ({ method: 'DELETE', path: s.path, headers: {} }),
    deleted: 204,
  };
}

const MSC4388_BASE = '/_matrix/client/v1/rendezvous';

export const FAMILIES: readonly Family[] = [
  etagFamily({
    name: 'MSC3886',
    createPath: '/',
    contentType: 'application/octet-stream',
    created: 200,
    createPayload: (payload) => payload,
    parsePath: (body, headers) => {
      const location = header(headers, 'location');
      if (location !== undefined) return pathOf(location);
      const id = jsonField(body, 'id');
      return id === undefined ? undefined : `/${id}`;
    },
  }),
  etagFamily({
    name: 'MSC4108',
    createPath: '/_matrix/client/unstable/org.matrix.msc4108/rendezvous',
    contentType: 'text/plain',
    created: 201,
    // Shipping clients create with an empty body and write the first payload afterwards (the
    // exchange does so); the create scenario sends its payload with the create, as the API allows.
    createPayload: (payload) => payload,
    parsePath: (body) => {
      const url = jsonField(body, 'url');
      return url === undefined ? undefined : pathOf(url);
    },
  }),
  {
    name: 'MSC4388',
    create: (payload) => {
      const body = JSON.stringify({ data: payload });
      return { method: 'POST', path: MSC4388_BASE, headers: { 'Content-Type': 'application/json' }, body };
    },
    created: 200,
    parseCreated: (body) => {
      const id = jsonField(body, 'id');
      const token = jsonField(body, 'sequence_token');
      return id === undefined || token === undefined ? undefined : { path: `${MSC4388_BASE}/${id}`, version: token };
    },
    poll: (s) => ({ method: 'GET', path: s.path, headers: {} }),
    polled: 200,
    write: (s, payload) => ({
      method: 'PUT',
      path: s.path,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sequence_token: s.version, data: payload }),
    }),
    written: 200,
    versionAfterWrite: (body) => jsonField(body, 'sequence_token'),
    read: (s) => ({ method: 'GET', path: s.path, headers: {} }),
    delete: (s) => ({ method: 'DELETE', path: s.path, headers: {} }),
    deleted: 200,
  },
];

export function familyNamed(name: string): Family {
  const f = FAMILIES.find((x) => x.name.toLowerCase() === name.toLowerCase());
  if (f === undefined) throw new Error(`unknown family ${name} (known: ${FAMILIES.map((x) => x.name).join(', ')})`);
  return f;
}
