/**
 * Hop-by-hop headers (RFC 9110 section 7.6.1): about one connection, never relayed. Its own module
 * so that the bench's bare forwarder (bench/floor.mjs) relays exactly what the forwarder relays.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);
