import http, { type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type Koa from 'koa';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { LogThrottle } from '../log-throttle';
import type { Metrics } from '../metrics';
import { ConnectionCap } from './connection-cap';
import { COMMON_HEADERS, EXPOSED } from './headers';
import { appHandler } from './handle';
import { countClientClosed } from './metrics';
import { headersKept } from './request-limits';

/**
 * An HTTP server with every client-controlled resource bounded: header size and count, the time to
 * send headers and the whole request (slowloris), idle keep-alive, and concurrent connections, in
 * all and per client address. It serves nothing until `serve` hands it the app, which is built once
 * the port is known (the default public base URL names it).
 */
export function createHttpServer(config: Config, metrics: Metrics, log: Logger): http.Server {
  const server = http.createServer({
    maxHeaderSize: config.maxHeaderBytes,
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
    // Node's own answer to an HTTP/1.1 request without Host is a bare 400; hostCheck gives a Matrix one.
    requireHostHeader: false,
  });
  // Node reads a keep-alive timeout of 0 as no timeout at all, keeping an idle connection for ever;
  // here 0 means what the setting says, an idle connection is closed at once: no keep-alive.
  if (config.keepAliveTimeoutMs === 0) {
    server.on('request', closeAfterAnswer);
    server.on('checkExpectation', closeAfterAnswer);
    server.on('checkContinue', closeAfterAnswer);
  }
  const answered = countUnmatched(metrics);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, answered));
  // Node hands a CONNECT to this event and, with no listener, closes the connection unanswered. Its
  // target is an authority, never a path here: refused as hostCheck refuses any target but a path.
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => answerConnect(socket, answered));
  server.maxHeadersCount = headersKept(config.maxHeadersCount);
  if (config.maxConnections > 0) server.maxConnections = config.maxConnections;
  const refused = metrics.connectionsRefused;
  server.on('drop', () => refused.labels('max_connections').inc());
  new ConnectionCap(config, () => refused.labels('per_address').inc()).attach(server);
  keepAccepting(server, log);
  return server;
}

/**
 * A connection the system could not hand over (no file descriptor left, no kernel memory, or a
 * network error the kernel reports for a connection not yet accepted) is an `error` on the server,
 * which Node throws when nothing listens for it: the replica would die with every request it holds.
 * It is logged instead, once per kind per interval, and the server goes on accepting. A failure to
 * listen is left to `listen`, which reports it.
 */
export function keepAccepting(server: http.Server, log: Logger): void {
  const throttle = new LogThrottle(10_000);
  server.on('error', (err: NodeJS.ErrnoException) => {
    if (!server.listening) return;
    const unlogged = throttle.take(err.code ?? 'unknown');
    if (unlogged === undefined) return;
    log.warn({ err: err.message, code: err.code, unlogged }, 'could not accept a connection');
  });
}

/** Makes the answer say `Connection: close`, and Node close the connection once it is sent. */
function closeAfterAnswer(_req: http.IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false;
}

/**
 * Counts an answer no request of the app's reaches, as the app counts its own: the method and path
 * are unknown or unread, so it counts as unmatched, method OTHER.
 */
function countUnmatched(metrics: Metrics): (status: number) => void {
  return (status) => metrics.httpRequests.labels('unmatched', 'OTHER', String(status)).inc();
}

/**
 * Hands the server's requests to the app, those pipelined on a connection in their turn. One whose
 * client leaves before its turn comes is never handled, and is counted as a client-closed request.
 * Requests held since the server started listening (`holdRequests`) are handed over first, in order;
 * those whose client left while they were held go the same way.
 */
export function serve(server: http.Server, app: Koa, metrics: Metrics): void {
  const clientLeft: Handler = (req, res) => countClientClosed(metrics, app.createContext(req, res));
  const inOrder = inTurn(appHandler(app), clientLeft);
  const unmatched = countUnmatched(metrics);
  // Node's parser takes `HTTP/2.0` and `HTTP/0.9` request lines and hands them over as HTTP/1.x
  // requests: answered 505 and closed, as the versions it refuses itself (see parserAnswer), and
  // counted as they are.
  const handler: Handler = (req, res) => {
    if (req.httpVersionMajor === 1) return inOrder(req, res);
    const [status, errcode, error] = VERSION_NOT_SUPPORTED;
    const body = JSON.stringify({ errcode, error });
    res.shouldKeepAlive = false;
    res.writeHead(status, {
      ...COMMON_ANSWER,
      'Content-Type': 'application/json',
      'Content-Length': body.length,
      Connection: 'close',
    });
    res.end(body);
    unmatched(status);
  };
  // An Expect other than 100-continue would get Node's bare 417; RFC 9110 section 10.1.1 lets a
  // server ignore it instead, and the request is served as any other. Node would say 100 Continue
  // before the app has seen the headers; readBody says it when it reads.
  handOver(server, handler, SERVED_EVENTS, clientLeft);
}

type RequestEvent = 'request' | 'checkExpectation' | 'checkContinue';
/** Every event the app's server hands a request over with (`serve`). */
export const SERVED_EVENTS: readonly RequestEvent[] = ['request', 'checkExpectation', 'checkContinue'];
type Handler = (req: http.IncomingMessage, res: ServerResponse) => void;
const HELD = Symbol('rendezvous.held');
type Holding = http.Server & { [HELD]?: { keep: Handler; requests: [http.IncomingMessage, ServerResponse][] } };

/**
 * Keeps the requests a server receives, unanswered, until `handOver` gives it its handler: a replica
 * listens before it connects to its store (an address in use then ends the start at once, not after
 * the wait for the store), and serves nothing until the store is connected or given up on.
 */
export function holdRequests(server: http.Server, events: readonly RequestEvent[] = ['request']): void {
  const requests: [http.IncomingMessage, ServerResponse][] = [];
  const keep: Handler = (req, res) => {
    // Held requests have no answer, so nothing slows a client that pipelines them: bounded, as
    // requests waiting for their turn are once serving (MAX_WAITING_TURN).
    if (requests.length >= MAX_HELD_AT_START) return void req.socket.destroy();
    requests.push([req, res]);
  };
  for (const event of events) server.on(event, keep);
  (server as Holding)[HELD] = { keep, requests };
}

/** Requests held at most while a replica starts (`holdRequests`); the connection of any past it is closed. */
export const MAX_HELD_AT_START = 1024;

/**
 * Gives the server its handler for these events, and hands it the requests held until now, in order.
 * A held request whose client has left (Node destroyed it with its connection, which it also does
 * when the client half-closes) goes to `clientLeft` instead: nobody would receive its answer, and
 * what it asked for would be done for nobody (a create would make a session that takes a slot of
 * the caps until it expires).
 */
export function handOver(
  server: http.Server,
  handler: Handler,
  events: readonly RequestEvent[] = ['request'],
  clientLeft: Handler = () => undefined,
): void {
  const held = (server as Holding)[HELD];
  delete (server as Holding)[HELD];
  for (const event of events) {
    if (held) server.off(event, held.keep);
    server.on(event, handler);
  }
  for (const [req, res] of held?.requests ?? []) {
    if (req.destroyed || req.socket.destroyed) clientLeft(req, res);
    else handler(req, res);
  }
}

/** RFC 9110 section 9.2.1. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
/** On a connection: how many of its requests that are not safe have not been answered yet. */
const UNSAFE_UNANSWERED = Symbol('rendezvous.unsafeUnanswered');
/** On a connection: how many of its requests wait for their turn, not handed to the app yet. */
const WAITING_TURN = Symbol('rendezvous.waitingTurn');
type Pipelining = Socket & { [UNSAFE_UNANSWERED]?: number; [WAITING_TURN]?: number };

/**
 * Requests one connection may have waiting for their turn. Node parses and hands over every request
 * pipelined on a connection, and stops reading only once answers pile up unsent: requests waiting
 * behind one still being answered (a held long-poll) have no answer yet, so a client could queue
 * them without end. Beyond this many the connection is closed, as one over the connection bounds is:
 * no client that pipelines at all (browsers do not) sends this many ahead of the answers.
 */
export const MAX_WAITING_TURN = 128;

/**
 * Node hands over every request pipelined on a connection as soon as it is parsed, while the ones
 * ahead of it are still being handled: a PUT still reading its body would be overtaken by the
 * DELETE sent after it, and a GET sent after a write would read what was there before it. RFC 9112
 * section 9.3.2 lets only a run of safe requests be handled in parallel (pipelined long-polls stay
 * held together). A request that is not safe, or that follows one not answered yet, waits until
 * every answer ahead of it is sent: then its response gets the connection.
 */
function inTurn(
  handler: (req: http.IncomingMessage, res: ServerResponse) => unknown,
  givenUp: (req: http.IncomingMessage, res: ServerResponse) => void,
) {
  return (req: http.IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket as Pipelining;
    const unsafeAhead = socket[UNSAFE_UNANSWERED] ?? 0;
    const safe = SAFE_METHODS.has(req.method ?? '');
    if (!safe) {
      socket[UNSAFE_UNANSWERED] = unsafeAhead + 1;
      let counted = true;
      const answered = () => {
        if (counted) socket[UNSAFE_UNANSWERED]!--;
        counted = false;
      };
      res.once('finish', answered);
      res.once('close', answered);
    }
    if (res.socket !== null || (safe && unsafeAhead === 0)) {
      handler(req, res);
      return;
    }
    // Node destroys every request still queued when its connection closes: the turn never comes. With
    // an answer ahead still unsent, the client left (counted as the app counts a held long-poll it
    // left, 499); with every one sent, the last closed the connection (Connection: close), which told
    // the client this request was not taken.
    const waiting = (socket[WAITING_TURN] ?? 0) + 1;
    if (waiting > MAX_WAITING_TURN) {
      // The requests still parsed from what was read come here too, and go the same way.
      socket.destroy();
      return;
    }
    socket[WAITING_TURN] = waiting;
    let queued = true;
    const dequeued = () => {
      if (queued) socket[WAITING_TURN]!--;
      queued = false;
    };
    const left = () => {
      dequeued();
      if (answerInProgress(req.socket)) givenUp(req, res);
    };
    req.once('close', left);
    res.once('socket', () => {
      dequeued();
      req.off('close', left);
      handler(req, res);
    });
  };
}

/** The response that has the connection now (Node's own record of it), if one is still unfinished. */
function answerInProgress(socket: Duplex): ServerResponse | undefined {
  return (socket as { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
}

/** The headers every answer carries (commonHeaders, CORS), for answers written before Koa sees a request. */
const COMMON_ANSWER: Readonly<Record<string, string>> = {
  ...COMMON_HEADERS,
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': EXPOSED.join(','),
};
const COMMON_RAW = Object.entries(COMMON_ANSWER)
  .map(([name, value]) => `${name}: ${value}\r\n`)
  .join('');

/** RFC 9110 section 15.6.6: the answer to a request in a major version of HTTP other than 1. */
const VERSION_NOT_SUPPORTED: [number, string, string] = [505, 'M_UNRECOGNIZED', 'Only HTTP/1.x is served here'];

/** The major version a request line the parser refused ends with, if it ends with one. */
function refusedMajorVersion(
  err: NodeJS.ErrnoException & { rawPacket?: Buffer; bytesParsed?: number },
): string | undefined {
  const { rawPacket, bytesParsed } = err;
  if (rawPacket === undefined || bytesParsed === undefined) return undefined;
  const line = rawPacket.subarray(Math.max(0, bytesParsed - 16), bytesParsed).toString('latin1');
  return /HTTP\/(\d+)\.\d+$/.exec(line)?.[1];
}

/** What Node's parser refuses, as Matrix errors rather than its bare default answers. */
function parserAnswer(err: NodeJS.ErrnoException): [number, string, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'M_TOO_LARGE', 'Request headers are too large'];
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [413, 'M_TOO_LARGE', 'Chunk extensions are too large'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'M_UNKNOWN', 'Request took too long to arrive'];
    // Node's parser knows HTTP/0.9, 1.0, 1.1 and 2.0 only: HTTP/3.0 is refused as a malformed line.
    case 'HPE_INVALID_VERSION': {
      const major = refusedMajorVersion(err);
      return major !== undefined && major !== '1'
        ? VERSION_NOT_SUPPORTED
        : [400, 'M_BAD_REQUEST', 'Malformed HTTP request'];
    }
    default:
      return [400, 'M_BAD_REQUEST', 'Malformed HTTP request'];
  }
}

/**
 * A connection whose bytes are not HTTP (or too slow, or too large) gets one JSON error and is
 * closed. When the request the application is handling is the one that went wrong (its body
 * stopped arriving: the request timeout; or broke off into bytes that are not HTTP), the answer
 * goes through that request's own response, so it keeps the headers already set on it (request id,
 * CORS, caching) and the application's late answer, if any, is dropped by Koa. Once any of a
 * response is sent, or when the failing request is a later one pipelined behind it, the socket is
 * just closed: nothing can be said to the client without corrupting what it reads.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, answered: (status: number) => void): void {
  const pending = answerInProgress(socket);
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  // Bytes after a request that asked to close the connection: RFC 9112 section 9.6 says no further
  // request on it is processed, but that one is still answered (Node closes the connection after it).
  if (err.code === 'HPE_CLOSED_CONNECTION') {
    if (!pending) socket.destroy();
    return;
  }
  const [status, errcode, error] = parserAnswer(err);
  const body = JSON.stringify({ errcode, error });
  if (pending) {
    if (pending.headersSent || pending.req.complete) {
      socket.destroy();
      return;
    }
    // Connection: close makes Node close the socket once the answer is flushed. The request is no
    // longer tracked by then, so nothing would tell a body still being read that it will never end.
    pending.once('finish', () => pending.req.destroy());
    pending.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': body.length,
      Connection: 'close',
    });
    // The app's metrics count this one: its request is still being handled.
    pending.end(body);
    return;
  }
  answerRaw(socket, status, body);
  answered(status);
}

/**
 * A CONNECT, which Node hands over with the socket and no error listener left on it. Behind a
 * request still being answered on the same connection, anything written now would arrive as that
 * request's answer: the connection is closed instead.
 */
function answerConnect(socket: Duplex, answered: (status: number) => void): void {
  socket.on('error', () => socket.destroy());
  if (answerInProgress(socket)) {
    socket.destroy();
  } else {
    answerRaw(socket, 400, CONNECT_REFUSED);
    answered(400);
  }
}

/** Writes one JSON answer on a socket no response owns, and closes it. */
function answerRaw(socket: Duplex, status: number, body: string): void {
  // The answer is a few hundred bytes, so it is flushed at once and the socket closed right after.
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
      'Connection: close\r\nContent-Type: application/json\r\n' +
      COMMON_RAW +
      `Content-Length: ${body.length}\r\n\r\n${body}`,
  );
}

const CONNECT_REFUSED = JSON.stringify({ errcode: 'M_BAD_REQUEST', error: 'CONNECT is not served: this is no proxy' });

/**
 * Listens; an address that cannot be had is an error naming it and the settings that chose it (an
 * unknown HOST, a port in use).
 */
export function listen(
  server: http.Server,
  port: number,
  host: string | undefined,
  settings = 'HOST, PORT',
): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const at = `${host ?? 'every address'}, port ${port} (${settings})`;
    const failed = (err: Error) => reject(new Error(`cannot listen on ${at}: ${err.message}`, { cause: err }));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Stops accepting, lets in-flight requests finish (their connections close after the answer), and
 * after `graceMs` cuts whatever is left. Resolves once no connection remains.
 */
export function drain(server: http.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
