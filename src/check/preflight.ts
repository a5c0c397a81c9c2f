import { FIX } from './advice';
import type { CheckContext } from './context';
import { ORIGIN, summarise, header } from './http';
import { attempt, request } from './steps';

/** A day, what the server sends; under ten minutes browsers preflight nearly every poll. */
const MIN_MAX_AGE = 600;
const NEEDED_HEADERS = ['content-type', 'if-match', 'if-none-match'];
const METHODS = ['GET', 'PUT', 'POST', 'DELETE'];

const list = (value: string | undefined) =>
  (value ?? '')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');

/**
 * The preflight a browser sends before its first conditional PUT, on each family's session path:
 * answered by the server (not swallowed by a proxy), allowing the methods and headers clients use,
 * cached for long enough that polls do not each need one.
 */
export const PREFLIGHT_STEP = {
  id: 'cors.preflight',
  title: 'CORS preflight (OPTIONS) answers what browsers need, with Max-Age',
};

export async function checkPreflight(ctx: CheckContext, paths: { name: string; path: string }[]): Promise<void> {
  const { id, title } = PREFLIGHT_STEP;
  const problems: string[] = [];
  const warnings: string[] = [];
  // A redirect is no CORS answer of the proxy's own: the URL is the thing to fix.
  let redirected = false;
  for (const { name, path } of paths) {
    const a = await attempt(ctx, id, title, () =>
      request(ctx, {
        method: 'OPTIONS',
        url: `${ctx.base}${path}/rendezvous-check`,
        headers: {
          Origin: ORIGIN,
          'Access-Control-Request-Method': 'PUT',
          'Access-Control-Request-Headers': 'content-type,if-match,if-none-match,prefer',
        },
      }),
    );
    if (a === undefined) return;
    if (a.status < 200 || a.status >= 300) {
      const location = header(a, 'location');
      if (a.status >= 300 && a.status < 400 && location !== undefined) {
        redirected = true;
        problems.push(`${name}: ${a.status} redirect to ${location}`);
      } else {
        problems.push(`${name}: ${summarise(a)}`);
      }
      continue;
    }
    const origin = a.headers.get('access-control-allow-origin') ?? [];
    if (origin.length !== 1 || (origin[0] !== '*' && origin[0] !== ORIGIN)) {
      problems.push(`${name}: Access-Control-Allow-Origin ${JSON.stringify(origin)}`);
    }
    const methods = list(header(a, 'access-control-allow-methods')).map((m) => m.toUpperCase());
    const noMethods = METHODS.filter((m) => !methods.includes(m) && !methods.includes('*'));
    if (noMethods.length > 0) problems.push(`${name}: methods ${noMethods.join(', ')} not allowed`);
    const headers = list(header(a, 'access-control-allow-headers'));
    const noHeaders = NEEDED_HEADERS.filter((h) => !headers.includes(h) && !headers.includes('*'));
    if (noHeaders.length > 0) problems.push(`${name}: request headers ${noHeaders.join(', ')} not allowed`);
    if (!headers.includes('prefer') && !headers.includes('*')) {
      warnings.push(`${name}: Prefer not allowed (browsers cannot ask for long-poll)`);
    }
    const maxAge = Number(header(a, 'access-control-max-age') ?? '0');
    if (!(maxAge >= MIN_MAX_AGE)) {
      warnings.push(`${name}: Access-Control-Max-Age ${header(a, 'access-control-max-age') ?? 'missing'}`);
    }
  }
  if (problems.length > 0) {
    ctx.report.fail(
      id,
      title,
      `${problems.join('; ')}: browsers refuse the request that follows${redirected ? ' (they follow no redirect of a preflight)' : ''}, so logins from Element Web fail`,
      redirected ? FIX.redirect : FIX.preflight,
    );
  } else if (warnings.length > 0) {
    ctx.report.warn(
      id,
      title,
      `${warnings.join('; ')}: without a long Max-Age browsers send a preflight before nearly every poll`,
      FIX.preflight,
    );
  } else {
    ctx.report.pass(id, title, `on ${paths.map((p) => p.name).join(', ')}`);
  }
}
