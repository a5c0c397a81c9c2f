import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config';
import { inRanges, ipv6Network, parseIp, parseRanges, type Range } from '../limits/cidr';

/** Where a counted socket keeps the key it was counted under, for its `close`. */
const COUNTED = Symbol('rendezvous.connectionKey');
type Counted = Socket & { [COUNTED]?: string };

const MAPPED_V4 = '::ffff:';

/**
 * A dotted-quad IPv4 address (or one mapped into IPv6, as a dual-stack socket reports it) as an
 * unsigned 32-bit number; -1 for anything else. Read in place: nothing is allocated per connection.
 */
export function ipv4Number(text: string): number {
  let i = text.startsWith(MAPPED_V4) ? MAPPED_V4.length : 0;
  let value = 0;
  for (let part = 0; part < 4; part++) {
    let octet = 0;
    const start = i;
    for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39 && i - start < 3; c = text.charCodeAt(++i)) {
      octet = octet * 10 + (c - 0x30);
    }
    if (i === start || octet > 255) return -1;
    value = value * 256 + octet;
    if (part < 3) {
      if (text.charCodeAt(i) !== 0x2e /* . */) return -1;
      i++;
    }
  }
  return i === text.length ? value : -1;
}

/**
 * Bounds the connections one client address holds open on this replica, so a single address cannot
 * take every slot of RZ_MAX_CONNECTIONS and starve everyone else. The address is the socket's peer
 * (there is no request to read a forwarding header from yet): IPv4 by address, IPv6 by network
 * (RZ_IPV6_PREFIX), as the rate limits count them. Trusted proxies are exempt: each multiplexes many
 * clients, who are bounded by the limits that read the forwarding header.
 *
 * A connection over the bound is destroyed as soon as it is accepted, like those over
 * RZ_MAX_CONNECTIONS: answering it would mean reading a request first (the socket would stay open
 * for the headers timeout, which is what the bound is for) or writing an answer before any request,
 * which clients read as a failure anyway; a reset costs nothing and a well-behaved client retries.
 */
export class ConnectionCap {
  private readonly open = new Map<string, number>();
  private readonly trusted: Range[];
  /** IPv4 trusted ranges as [network, mask], so the common IPv4 case needs no parsing. */
  private readonly trustedV4: [number, number][] = [];
  /**
   * One `close` listener for every socket (a closure per socket would cost an allocation each): the
   * socket is `this`, and carries the key it was counted under.
   */
  private readonly onClose: (this: Counted) => void;

  constructor(
    private readonly config: Pick<Config, 'maxConnectionsPerAddress' | 'trustedProxies' | 'ipv6Prefix'>,
    private readonly refused: () => void,
  ) {
    const open = this.open;
    this.onClose = function () {
      const key = this[COUNTED]!;
      const left = open.get(key)! - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    };
    this.trusted = parseRanges(config.trustedProxies);
    for (const [network, prefix] of this.trusted) {
      if (network.kind() !== 'ipv4') continue;
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      this.trustedV4.push([(ipv4Number(network.toString()) & mask) >>> 0, mask]);
    }
  }

  /** Counts the connections of `server` from now on. */
  attach(server: Server): void {
    if (this.config.maxConnectionsPerAddress > 0) server.on('connection', this.onConnection);
  }

  /** The key `address` is counted under; undefined for a trusted proxy, which is not counted. */
  keyOf(address: string): string | undefined {
    const v4 = ipv4Number(address);
    if (v4 >= 0) {
      for (const [network, mask] of this.trustedV4) if ((v4 & mask) >>> 0 === network) return undefined;
      // As ClientAddresses names it: a dual-stack socket's mapped IPv4 is the IPv4 address.
      return address.startsWith(MAPPED_V4) ? address.slice(MAPPED_V4.length) : address;
    }
    const ip = parseIp(address);
    if (ip === null) return address;
    if (inRanges(ip, this.trusted)) return undefined;
    return ip instanceof ipaddr.IPv6 ? ipv6Network(ip, this.config.ipv6Prefix) : ip.toString();
  }

  /** Open connections counted under each key (for tests and diagnostics). */
  counts(): ReadonlyMap<string, number> {
    return this.open;
  }

  private readonly onConnection = (socket: Counted): void => {
    const address = socket.remoteAddress;
    // Already gone: nothing to count, and its close may have fired.
    if (address === undefined) return;
    const key = this.keyOf(address);
    if (key === undefined) return;
    const held = this.open.get(key) ?? 0;
    if (held >= this.config.maxConnectionsPerAddress) {
      this.refused();
      socket.destroy();
      return;
    }
    this.open.set(key, held + 1);
    socket[COUNTED] = key;
    socket.on('close', this.onClose);
  };
}
