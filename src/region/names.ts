/**
 * Region names and how a session id names its home region.
 *
 * A region deployment's ids are `<region>.<22 base64url characters>`: still inside the opaque-id
 * grammar `[A-Za-z0-9._~-]`, still the same 128 random bits, and the `.` never occurs in base64url,
 * so the first `.` always ends the region name. An id without a `.` names no region and is local
 * (the ids of a single-region deployment, or ones made before regions were configured).
 */

/** What RZ_REGION and the names in RZ_REGION_PEERS may look like. */
export const REGION_NAME = /^[a-z0-9]{1,16}$/;

/** Longest region name, so a lookup never scans far into an id. */
const MAX_NAME = 16;

/**
 * The region an id names; undefined when it names none (a local id). A part before the `.` that
 * cannot be a region name comes back as '', which no configuration has: such an id is unknown.
 */
export function regionOfId(id: string): string | undefined {
  const dot = id.indexOf('.');
  if (dot < 0) return undefined;
  return dot <= MAX_NAME ? id.slice(0, dot) : '';
}

/** What a region's replicas put in front of the random part of every id they create. */
export function idPrefixOf(region: string | undefined): string {
  return region === undefined ? '' : `${region}.`;
}
