import { FIX } from './advice';
import type { CheckContext } from './context';
import { type Answer, header } from './http';

/** Clocks this far apart are worth a warning; beyond the second figure, sessions look wrong to clients. */
const WARN_SKEW_MS = 5_000;
const FAIL_SKEW_MS = 60_000;

const secs = (ms: number) => `${Math.round(ms / 1000)} s`;

/**
 * Expires on a fresh session, read against this machine's clock: clients compare it with their
 * own, so a server clock that is off shortens or stretches every login by as much. The server's
 * time is its Date header (else Last-Modified), to the second.
 */
export const EXPIRY_STEP = { id: 'expiry', title: 'Expires against the local clock (clock skew)' };

export function checkExpiry(ctx: CheckContext, created: Answer): void {
  const { id, title } = EXPIRY_STEP;
  const expires = Date.parse(header(created, 'expires') ?? '');
  const serverNow = Date.parse(header(created, 'date') ?? header(created, 'last-modified') ?? '');
  if (Number.isNaN(expires) || Number.isNaN(serverNow)) {
    ctx.report.fail(
      id,
      title,
      'a new session arrived without a readable Expires and Date/Last-Modified (IMF-fixdate): clients cannot tell when it ends',
      FIX.validators,
    );
    return;
  }
  const localNow = (created.sentAt + created.answeredAt) / 2;
  const skew = serverNow - localNow;
  const left = expires - Date.now();
  const direction = skew >= 0 ? 'ahead of' : 'behind';
  const detail = `the server's clock is ${secs(Math.abs(skew))} ${direction} this machine's (to the second); a new session lasts ${secs(expires - serverNow)} and, by this machine's clock, ends in ${secs(left)}`;
  if (left <= 0 || Math.abs(skew) > FAIL_SKEW_MS) {
    ctx.report.fail(
      id,
      title,
      `${detail}: clients on a correct clock see sessions end ${skew < 0 ? 'early, or already expired' : 'late'}`,
      FIX.clock,
    );
  } else if (Math.abs(skew) > WARN_SKEW_MS) {
    ctx.report.warn(id, title, detail, FIX.clock);
  } else {
    ctx.report.pass(id, title, detail);
  }
}
