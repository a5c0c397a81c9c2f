import type autocannon from 'autocannon';
import type { Family, Headers, Req, SessionRef } from './families';
import { send } from './http';

/**
 * - create: POST of a new session with its payload (1 KiB in the full run);
 * - poll-200: GET of a session without a validator, answered 200 with its payload (256 bytes); for
 *   MSC4388 this is its only poll (a GET always answers 200 with the sequence token and the data);
 * - poll-304: GET with If-None-Match of the current ETag, answered 304 (ETag families only);
 * - write: conditional PUT on the current ETag / sequence token;
 * - exchange: a whole QR login (create, join, three round trips, delete).
 * The first three are one fixed request each, measured with wrk; write and exchange build every
 * request from the previous answer, which wrk cannot script, and are measured with autocannon.
 */
export const SCENARIOS = ['create', 'poll-200', 'poll-304', 'write', 'exchange'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** The scenarios of one fixed request, measured with wrk. */
export const FIXED_SCENARIOS: readonly ScenarioName[] = ['create', 'poll-200', 'poll-304'];

/** The scenarios a family has: MSC4388 has no 304 (its GET answers 200 with the same token). */
export function scenariosOf(family: Family): ScenarioName[] {
  return SCENARIOS.filter((s) => s !== 'poll-304' || family.polled === 304);
}

/** The one request of a fixed scenario and the status every answer must have. */
export async function fixedRequest(
  scenario: ScenarioName,
  opts: { base: string; family: Family; payload: string; createPayload: string },
): Promise<{ req: Req; status: number }> {
  const f = opts.family;
  if (scenario === 'create') return { req: f.create(opts.createPayload), status: f.created };
  // One session polled by every connection: a poll is one read of one key, whichever key it is.
  const [s] = await createSessions(opts.base, f, 1, opts.payload);
  if (scenario === 'poll-200') return { req: f.read(s!, ''), status: 200 };
  if (scenario === 'poll-304' && f.polled === 304) return { req: f.poll(s!), status: 304 };
  throw new Error(`${scenario} is not a fixed request of ${f.name}`);
}

/** Requests one full exchange makes: create, join, three round trips (write + read), delete. */
export const EXCHANGE_STEPS = 9;

/** Answers that were not what the protocol promises; any of these is an error of the run. */
export class Checker {
  unexpected = 0;
  first: string | undefined;

  expect(what: string, status: number, expected: number, times = 1): boolean {
    if (status === expected) return true;
    this.unexpected += times;
    this.first ??= `${what} answered ${status}, expected ${expected}`;
    return false;
  }
}

export interface Prepared {
  requests: autocannon.Request[];
  /**
   * For scenarios of fixed requests: the one status every answer must have, counted from the load
   * generator's status table. Fixed requests are built once, as the bare Node baseline's are, so
   * the generator spends no more per request on a scenario than on the baseline.
   */
  status?: number;
  /** HTTP requests per iteration of `requests` (the exchange counts as one operation of 9). */
  steps: number;
}

type Ctx = { s?: SessionRef; seen?: string };
type AcRequest = autocannon.Request & Record<string, unknown>;

/** A session that never exists: a step that lost its session still sends something, and counts. */
const LOST: SessionRef = { path: '/bench-lost-session', version: '"lost"' };

function request(
  build: (ctx: Ctx) => Req,
  onResponse?: (status: number, body: string, ctx: Ctx, headers: Headers) => void,
): AcRequest {
  return {
    setupRequest: (req: AcRequest, ctx: Ctx) => {
      const r = build(ctx);
      return { ...req, method: r.method, path: r.path, headers: r.headers, body: r.body ?? '' };
    },
    ...(onResponse ? { onResponse } : {}),
  } as AcRequest;
}

export async function createSessions(base: string, family: Family, n: number, payload: string): Promise<SessionRef[]> {
  const out: SessionRef[] = [];
  for (let i = 0; i < n; i++) {
    const res = await send(base, family.create(payload));
    const s = res.status === family.created ? family.parseCreated(res.body, res.headers) : undefined;
    if (s === undefined) throw new Error(`${family.name} create answered ${res.status}: ${res.body.slice(0, 200)}`);
    // The ETag family creates empty sessions in MSC4108; one write gives every session the same shape.
    const w = await send(base, family.write(s, payload));
    const v = w.status === family.written ? family.versionAfterWrite(w.body, w.headers) : undefined;
    if (v === undefined) throw new Error(`${family.name} write answered ${w.status}: ${w.body.slice(0, 200)}`);
    out.push({ path: s.path, version: v });
  }
  return out;
}

/**
 * The autocannon request list of one scenario. Sessions a scenario needs up front (poll, write) are
 * created here, through the server itself, before the clock starts. The fixed scenarios are measured
 * with wrk; autocannon runs them only where wrk cannot (see the harness).
 */
export async function prepare(
  scenario: ScenarioName,
  opts: { base: string; family: Family; connections: number; payload: string; createPayload: string; check: Checker },
): Promise<Prepared> {
  const { base, family, connections, payload, createPayload, check } = opts;
  const f = family;
  switch (scenario) {
    case 'create':
    case 'poll-200':
    case 'poll-304': {
      const { req, status } = await fixedRequest(scenario, { base, family, payload, createPayload });
      return { steps: 1, status, requests: [req as AcRequest] };
    }
    case 'write': {
      // Each session is held by one connection at a time, so its If-Match is always current.
      const free = await createSessions(base, f, connections * 2, payload);
      return {
        steps: 1,
        requests: [
          request(
            (ctx) => f.write((ctx.s = free.pop() ?? LOST), payload),
            (status, body, ctx, headers) => {
              const s = ctx.s;
              if (s === undefined || s === LOST) return void check.expect('write (no free session)', 0, f.written);
              if (check.expect('write', status, f.written)) s.version = f.versionAfterWrite(body, headers) ?? s.version;
              free.unshift(s);
            },
          ),
        ],
      };
    }
    case 'exchange': {
      const steps: AcRequest[] = [
        request(
          () => f.create(''),
          (status, body, ctx, headers) => {
            if (check.expect('exchange create', status, f.created)) ctx.s = f.parseCreated(body, headers);
          },
        ),
        request(
          (ctx) => f.read(ctx.s ?? LOST, ''),
          (status, _b, ctx) => {
            check.expect('exchange join', status, 200);
            ctx.seen = ctx.s?.version;
          },
        ),
      ];
      for (let round = 1; round <= 3; round++) {
        steps.push(
          request(
            (ctx) => f.write(ctx.s ?? LOST, payload),
            (status, body, ctx, headers) => {
              if (check.expect(`exchange write ${round}`, status, f.written) && ctx.s !== undefined) {
                ctx.s.version = f.versionAfterWrite(body, headers) ?? ctx.s.version;
              }
            },
          ),
          request(
            (ctx) => f.read(ctx.s ?? LOST, ctx.seen ?? ''),
            (status, _b, ctx) => {
              check.expect(`exchange read ${round}`, status, 200);
              ctx.seen = ctx.s?.version;
            },
          ),
        );
      }
      steps.push(
        request(
          (ctx) => f.delete(ctx.s ?? LOST),
          (status) => check.expect('exchange delete', status, f.deleted),
        ),
      );
      return { steps: EXCHANGE_STEPS, requests: steps };
    }
  }
}
