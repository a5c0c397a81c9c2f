import { isIPv6 } from 'node:net';
import type { Middleware } from 'koa';
import { MatrixError, sendMatrixError } from './errors';

/** `:port` as RFC 3986 writes it (`*DIGIT`, so possibly empty), and never above 65535. */
const PORT = '(?::(?:\\d{0,4}|[0-5]\\d{4}|6[0-4]\\d{3}|65[0-4]\\d{2}|655[0-2]\\d|6553[0-5]))?';
/** A reg-name (unreserved, pct-encoded, sub-delims); dotted IPv4 is a subset of it. */
const REG_NAME = new RegExp(`^(?:[A-Za-z0-9\\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*${PORT}$`);
/** A bracketed IPv6 literal; what is inside the brackets is checked by `isIPv6`. */
const IP_LITERAL = new RegExp(`^\\[[0-9A-Fa-f:.]+\\]${PORT}$`);
/** The authority of an absolute-form request target (RFC 9112 section 3.2.2). */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)/i;

/**
 * Whether a Host header value is `host[:port]` as RFC 9110 section 7.2 defines it. One regular
 * expression for names and IPv4 (no captures, nothing allocated); only an IPv6 literal pays for more.
 * An empty value is allowed, as the RFC allows it.
 */
export function isValidHost(value: string): boolean {
  if (REG_NAME.test(value)) return true;
  if (value.charCodeAt(0) !== 0x5b /* [ */ || !IP_LITERAL.test(value)) return false;
  return isIPv6(value.slice(1, value.indexOf(']')));
}

/**
 * Whether the request target is one this server can serve: the origin-form every client sends
 * (`/path?query`), `*`, or an absolute http(s) URL whose authority is valid. The authority of an
 * absolute-form target stands in for Host, and a bad one makes Koa's `ctx.path` throw. No form has
 * a fragment (RFC 9112 section 3.2), and with one Koa's path can come out null (`//#@x`).
 */
export function isValidTarget(url: string): boolean {
  if (url.indexOf('#') >= 0) return false;
  if (url.charCodeAt(0) === 0x2f /* / */ || url === '*') return true;
  const absolute = ABSOLUTE_FORM.exec(url);
  return absolute !== null && isValidHost(absolute[1]!);
}

function refusal(message: string, expose: string): MatrixError {
  return new MatrixError(400, 'M_BAD_REQUEST', message, undefined, {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Expose-Headers': expose,
  });
}

/**
 * Refuses a request whose Host (or absolute-form target) is not a valid authority with 400, before
 * anything reads it: Koa builds `ctx.URL` from the Host and leaves it empty when it cannot. It
 * answers by itself, ahead of the CORS middleware, so it sets the CORS headers a browser needs to
 * read the error. The connection stays open: closing it with a body still unread can reset it
 * before the client has read the answer, while on keep-alive Node discards the body.
 */
export function hostCheck(exposeHeaders: readonly string[]): Middleware {
  const expose = exposeHeaders.join(',');
  const badHost = refusal('The Host header is not a valid host[:port]', expose);
  const notOneHost = refusal('A request carries one Host header at most (HTTP/1.1: exactly one)', expose);
  const badTarget = refusal('The request target is not a path or an absolute http(s) URL without a fragment', expose);
  return (ctx, next) => {
    const req = ctx.req;
    const host = req.headers.host;
    if (!isValidTarget(req.url ?? '')) sendMatrixError(ctx, badTarget);
    else if (host === undefined ? req.httpVersionMinor >= 1 : hostLines(req.rawHeaders) > 1) {
      // RFC 9112 section 3.2 (Node keeps the first of several and drops the rest, and the server
      // leaves the missing one to this check, so that it is answered as a Matrix error).
      sendMatrixError(ctx, notOneHost);
    } else if (host !== undefined && !isValidHost(host)) sendMatrixError(ctx, badHost);
    else return next();
    return Promise.resolve();
  };
}

/** How many Host header lines a request has. */
function hostLines(raw: string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && (name === 'Host' || name.toLowerCase() === 'host')) n++;
  }
  return n;
}
