/** Most significant digits a wait is read with; more are longer than any wait, which is capped anyway. */
const MAX_DIGITS = 9;
const LONGER_THAN_ANY_WAIT = 10 ** MAX_DIGITS;

/**
 * A wait written as digits (already checked to be only digits), as a number: leading zeros are no
 * length, and a value of more than nine significant digits reads as 10^9 (Number would lose
 * precision on very long ones, and no wait is that long).
 */
export function waitOfDigits(digits: string): number {
  let start = 0;
  while (start < digits.length - 1 && digits.charCodeAt(start) === 0x30 /* 0 */) start++;
  return digits.length - start > MAX_DIGITS ? LONGER_THAN_ANY_WAIT : Number(digits);
}

/**
 * The `wait` preference of a `Prefer` header (RFC 7240 section 4.3) in seconds, or undefined when
 * there is none. Several preferences, several headers (joined with commas) and parameters are
 * allowed; a malformed `wait` is ignored, as RFC 7240 asks of preferences a server cannot honour.
 */
export function preferredWaitSeconds(header: string | undefined): number | undefined {
  if (header === undefined || header === '') return undefined;
  for (const pref of header.split(',')) {
    const head = pref.split(';', 1)[0]!;
    const eq = head.indexOf('=');
    if (eq < 0 || head.slice(0, eq).trim().toLowerCase() !== 'wait') continue;
    let value = head.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (value.length === 0 || !/^\d+$/.test(value)) return undefined;
    return waitOfDigits(value);
  }
  return undefined;
}
