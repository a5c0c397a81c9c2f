// The headers a rendezvous poll answer carries, for the servers the service is measured against
// (bare-node.mjs, floor.mjs): a baseline that sent fewer would flatter it.
export const POLL_HEADERS = {
  'Cache-Control': 'no-store, no-transform',
  Pragma: 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; sandbox",
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'ETag, Location, Expires, Last-Modified',
  ETag: '"AAAAAAAA.1"',
  Expires: 'Thu, 01 Jan 2026 00:05:00 GMT',
  'Last-Modified': 'Thu, 01 Jan 2026 00:00:00 GMT',
};

/** What every answer carries, whatever it is about. */
export const COMMON_HEADERS = {
  'Cache-Control': POLL_HEADERS['Cache-Control'],
  Pragma: POLL_HEADERS.Pragma,
  'X-Content-Type-Options': POLL_HEADERS['X-Content-Type-Options'],
  'Content-Security-Policy': POLL_HEADERS['Content-Security-Policy'],
  'Access-Control-Allow-Origin': POLL_HEADERS['Access-Control-Allow-Origin'],
};
