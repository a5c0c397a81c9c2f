import { redactUrl } from '../config';
import { formatJson, formatText } from './format';
import { runCheck } from './index';

export const CHECK_USAGE = `Usage: rendezvous-server check <base-url> [--json] [--metrics-here] [--full-wait]

Checks a live deployment through everything in front of it (proxies, ingress, load balancer), the
way clients meet it: every protocol family's create, read, conditional write, 304, long-poll and
delete; ETags, caching and CORS headers as they arrive; expiry against this machine's clock; that
the replicas share one store; that /metrics is not public. It creates 7 short-lived sessions
and deletes them. Steps it could not get to are reported as skipped, saying why; a run the server
rate limits says so, which limit, and when to run again.

  <base-url>      the URL clients use, e.g. https://matrix.example.org or https://rendezvous.example.org
  --json          print the findings as JSON instead of text
  --metrics-here  this URL serves /metrics on purpose (RZ_METRICS_PORT unset, checked from inside,
                  e.g. the in-cluster Service): metrics answering here is a warning, not a failure
  --full-wait     also hold one read for the server's longest wait (RZ_LONGPOLL_MAX_WAIT_SECONDS, 30 s
                  by default), which finds a proxy read timeout shorter than it (one more session)

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for a usage error.
`;

/** Exit codes, as documented in the usage text. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

interface Output {
  write(text: string): unknown;
}

type Parsed =
  | { help: true }
  | { help: false; base: string; json: boolean; metricsHere: boolean; fullWait: boolean }
  | { error: string };

export function parseCheckArgs(args: string[]): Parsed {
  let json = false;
  let metricsHere = false;
  let fullWait = false;
  const positional: string[] = [];
  for (const arg of args) {
    if (arg === '--help' || arg === '-h') return { help: true };
    if (arg === '--json') json = true;
    else if (arg === '--metrics-here') metricsHere = true;
    else if (arg === '--full-wait') fullWait = true;
    else if (arg.startsWith('-')) return { error: `unknown option ${arg}` };
    else positional.push(arg);
  }
  if (positional.length === 0) return { error: 'missing <base-url>' };
  if (positional.length > 1) return { error: `one <base-url> only (got ${positional.length})` };
  const given = positional[0]!;
  // What the errors echo: a password in the URL stays off the terminal and the logs (helm test's).
  const shown = redactUrl(given);
  if (!given.includes('://')) {
    // The usual slip: a bare host. A local one is most likely plain HTTP, anything else HTTPS.
    const scheme = /^(localhost|127\.|\[::1\])/i.test(given) ? 'http' : 'https';
    return { error: `the URL must start with http:// or https:// (got ${shown}; try ${scheme}://${shown})` };
  }
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    return { error: `not a URL: ${shown}` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { error: `the URL must start with http:// or https:// (got ${shown})` };
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    return { error: 'the URL must have no query, fragment or credentials' };
  }
  return { help: false, base: url.href.replace(/\/+$/, ''), json, metricsHere, fullWait };
}

/** `rendezvous-server check ...`: resolves with the exit status. */
export async function checkCommand(args: string[], out: Output, err: Output): Promise<number> {
  const parsed = parseCheckArgs(args);
  if ('error' in parsed) {
    err.write(`rendezvous-server check: ${parsed.error}\n\n${CHECK_USAGE}`);
    return EXIT.usage;
  }
  if (parsed.help) {
    out.write(CHECK_USAGE);
    return EXIT.ok;
  }
  const result = await runCheck(parsed.base, { metricsHere: parsed.metricsHere, fullWait: parsed.fullWait });
  out.write(parsed.json ? formatJson(result) : formatText(result));
  return result.report.failed ? EXIT.failed : EXIT.ok;
}
