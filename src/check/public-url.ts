import { FIX } from './advice';
import type { CheckContext } from './context';
import type { EtagFamily, EtagSession } from './etag-family';

/**
 * The absolute session URL the server hands out (MSC3886 Location, MSC4108 `url`) is built from
 * RZ_PUBLIC_BASE_URL, never from Host: say where it points, and whether that is the URL checked.
 */
export function checkPublicUrl(ctx: CheckContext, fam: EtagFamily, s: EtagSession): void {
  const title = `${fam.name} session URLs point at the URL clients use`;
  const id = `${fam.family}.public-url`;
  if (s.publicUrl === undefined) {
    ctx.report.fail(
      id,
      title,
      `the create answer has no ${fam.family === 'msc3886' ? 'Location' : 'url'}: clients cannot find the session`,
      FIX.validators,
    );
    return;
  }
  const suffix = s.url.slice(ctx.base.length);
  const handedOut = s.publicUrl.endsWith(suffix) ? s.publicUrl.slice(0, -suffix.length) : undefined;
  if (handedOut === ctx.base) {
    ctx.report.pass(id, title, `built from ${handedOut}`);
    return;
  }
  if (loopback(s.publicUrl) && !loopback(ctx.base)) {
    ctx.report.fail(
      id,
      title,
      `the server hands out ${s.publicUrl}, a loopback URL that no other device can reach (RZ_PUBLIC_BASE_URL unset, its default http://localhost:$PORT, or naming the server's own machine): the other device is sent to itself and never finds the session`,
      FIX.publicUrl,
    );
    return;
  }
  const wrong = mistaken(ctx.base, s.publicUrl);
  if (wrong !== undefined) {
    ctx.report.fail(
      id,
      title,
      `the server hands out ${s.publicUrl}: ${wrong}, so the other device is sent where it cannot follow (RZ_PUBLIC_BASE_URL names the inside of the deployment, not ${ctx.base})`,
      FIX.publicUrl,
    );
    return;
  }
  const differs = difference(ctx.base, s.publicUrl);
  ctx.report.warn(
    id,
    title,
    `the server hands out ${s.publicUrl}, not a URL under ${ctx.base}${differs === undefined ? '' : ` (${differs})`}: fine when that is how clients reach it (checking from inside a cluster, say); otherwise the other device is sent elsewhere`,
    FIX.publicUrl,
  );
}

const DEFAULT_PORT: Record<string, string> = { 'http:': '80', 'https:': '443' };
const port = (u: URL) => u.port || DEFAULT_PORT[u.protocol] || '';

/** What differs between the URL checked and the one handed out, for people ("http:// instead of https://"). */
function difference(base: string, handedOut: string): string | undefined {
  const b = new URL(base);
  const h = new URL(handedOut);
  const parts: string[] = [];
  if (h.protocol !== b.protocol) parts.push(`${h.protocol}// instead of ${b.protocol}//`);
  if (h.hostname !== b.hostname) parts.push(`host ${h.hostname} instead of ${b.hostname}`);
  if (port(h) !== port(b)) parts.push(`port ${port(h)} instead of ${port(b)}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

/**
 * A handed-out URL that is wrong whatever the URL checked is for: checked at a public https URL
 * (a dotted name, no IP literal, the default port), the server names the same host over plain
 * http or on another port, or an internal address (a private or link-local IP, a name without a
 * dot). Checked at anything else, the URL checked may be the inside one: only a warning then.
 */
function mistaken(base: string, handedOut: string): string | undefined {
  let b: URL;
  let h: URL;
  try {
    b = new URL(base);
    h = new URL(handedOut);
  } catch {
    return undefined;
  }
  const publicBase = b.protocol === 'https:' && b.port === '' && b.hostname.includes('.') && !ipLiteral(b.hostname);
  if (!publicBase) return undefined;
  if (h.hostname === b.hostname && h.protocol !== b.protocol) {
    return `${h.protocol}// instead of ${b.protocol}// on the same host (a browser on an https page refuses plain-http requests, and a redirect to https turns a PUT into a GET)`;
  }
  if (h.hostname === b.hostname && port(h) !== port(b)) {
    return `the same host on port ${port(h)} instead of ${port(b)} (usually the replicas' own port, behind the proxy)`;
  }
  if (internal(h.hostname)) {
    return `an internal address (${h.hostname}) that devices outside the deployment cannot reach`;
  }
  return undefined;
}

function ipLiteral(host: string): boolean {
  return /^\d+(\.\d+){3}$/.test(host) || host.startsWith('[');
}

/** A private, link-local or unique-local IP literal, or a name without a dot (a container's or Service's). */
function internal(host: string): boolean {
  const v4 = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(host);
  if (v4 !== null) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  if (host.startsWith('[')) return /^\[f[cd]/i.test(host) || /^\[fe[89ab]/i.test(host);
  return !host.includes('.');
}

/** Whether a URL names the machine it is used on (localhost, 127.0.0.0/8, ::1): no other device reaches it. */
function loopback(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  // The URL parser writes every IPv4 address as four decimal numbers: a name that merely starts with
  // "127." (127.rz.example.org) is a host name like any other.
  return host === 'localhost' || host.endsWith('.localhost') || /^127(\.\d+){3}$/.test(host) || host === '[::1]';
}
