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
  ctx.report.warn(
    id,
    title,
    `the server hands out ${s.publicUrl}, not a URL under ${ctx.base}: fine when that is how clients reach it (checking from inside a cluster, say); otherwise the other device is sent elsewhere`,
    FIX.publicUrl,
  );
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
