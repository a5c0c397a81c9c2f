import ipaddr from 'ipaddr.js';

/**
 * Strict address parsing: dotted-quad IPv4 only (ipaddr.js would also take `0x7f.1` and other
 * legacy forms that no proxy writes), any IPv6 form. IPv4-mapped IPv6 becomes the IPv4 address, so
 * a dual-stack socket and an IPv4 proxy header name a client the same way.
 */
export function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (!ipaddr.IPv6.isValid(text)) return null;
  const v6 = ipaddr.IPv6.parse(text);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

/**
 * `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or an IPv6 CIDR, as `address/prefix`; null when invalid.
 * An IPv4-mapped range (`::ffff:10.0.0.0/104`) becomes the IPv4 range it covers (`10.0.0.0/8`), as
 * parseIp makes each address in it the IPv4 address; one wider than the mapped block is refused.
 */
export function normaliseCidr(text: string): string | null {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(address);
  if (ip === null) return null;
  // Written as IPv6, so its prefix counts the 96 bits in front of the IPv4 address.
  const mapped = ip.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(address);
  const max = ip.kind() === 'ipv4' && !mapped ? 32 : 128;
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!/^\d{1,3}$/.test(slash < 0 ? String(max) : text.slice(slash + 1)) || prefix > max) return null;
  if (mapped) return prefix < 96 ? null : `${ip.toString()}/${prefix - 96}`;
  return `${ip.toString()}/${prefix}`;
}

export type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

export function parseRanges(cidrs: readonly string[]): Range[] {
  return cidrs.map((c) => ipaddr.parseCIDR(c));
}

export function inRanges(ip: ipaddr.IPv4 | ipaddr.IPv6, ranges: readonly Range[]): boolean {
  for (const range of ranges) if (range[0].kind() === ip.kind() && ip.match(range)) return true;
  return false;
}

/** The network an IPv6 client is counted under: its address with the host bits cleared. */
export function ipv6Network(ip: ipaddr.IPv6, prefix: number): string {
  // Without a link-local address's zone (`%eth0`): it names the interface, not the client.
  if (prefix >= 128) return ip.zoneId === undefined ? ip.toString() : ipaddr.fromByteArray(ip.toByteArray()).toString();
  const bytes = ip.toByteArray();
  for (let bit = prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return `${ipaddr.fromByteArray(bytes).toString()}/${prefix}`;
}
