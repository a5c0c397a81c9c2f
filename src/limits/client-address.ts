import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config';
import { inRanges, ipv6Network, parseIp, parseRanges } from './cidr';

/** Most forwarding hops looked at; a longer chain is cut (the header size bounds it anyway). */
const MAX_HOPS = 32;

/** `1.2.3.4`, `1.2.3.4:80`, `[v6]`, `[v6]:80`, `v6`, optionally quoted (RFC 7239 quotes v6). */
function hostPart(raw: string): string {
  let s = raw.trim();
  if (s.length > 1 && s.startsWith('"') && s.endsWith('"')) s = s.slice(1, -1);
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    return end < 0 ? '' : s.slice(1, end);
  }
  const colon = s.indexOf(':');
  // One colon is an IPv4 address with a port; more is a bare IPv6 address.
  return colon >= 0 && s.indexOf(':', colon + 1) < 0 ? s.slice(0, colon) : s;
}

/** Hops named by X-Forwarded-For, nearest last. */
function xForwardedFor(header: string): string[] {
  return header.split(',').map(hostPart);
}

/** Hops named by the `for=` parameters of Forwarded (RFC 7239), nearest last; '' when absent. */
function forwarded(header: string): string[] {
  return header.split(',').map((element) => {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      if (eq > 0 && pair.slice(0, eq).trim().toLowerCase() === 'for') return hostPart(pair.slice(eq + 1));
    }
    return '';
  });
}

/**
 * Who a request is counted as, for rate limits and session caps. The socket address, unless it is a
 * trusted proxy: then the forwarding header is walked from the nearest hop back, skipping trusted
 * proxies, and the first hop that is not one is the client. Anything a client could have written
 * itself (hops left of an untrusted one, malformed entries) is never believed. IPv6 clients are
 * counted per network (a /64 by default), since one subscriber holds a whole prefix.
 */
export class ClientAddresses {
  private readonly trusted;
  private readonly header: string;
  private readonly parseHeader: (value: string) => string[];
  /** Keep-alive connections send many requests; a direct client's key is worked out once. */
  private readonly direct = new WeakMap<Socket, string>();

  constructor(private readonly config: Pick<Config, 'trustedProxies' | 'forwardedHeader' | 'ipv6Prefix'>) {
    this.trusted = parseRanges(config.trustedProxies);
    this.header = config.forwardedHeader;
    this.parseHeader = config.forwardedHeader === 'forwarded' ? forwarded : xForwardedFor;
  }

  keyOf(req: IncomingMessage): string {
    const socket = req.socket;
    const cached = this.direct.get(socket);
    if (cached !== undefined) return cached;
    const peer = socket.remoteAddress ?? '';
    let ip = parseIp(peer);
    if (ip === null) return peer;
    if (this.trusted.length === 0 || !inRanges(ip, this.trusted)) {
      const key = this.networkOf(ip);
      this.direct.set(socket, key);
      return key;
    }
    {
      const raw = req.headers[this.header];
      const value = Array.isArray(raw) ? raw.join(',') : raw;
      if (value !== undefined) {
        const hops = this.parseHeader(value);
        for (let i = hops.length - 1, seen = 0; i >= 0 && seen < MAX_HOPS; i--, seen++) {
          const hop = parseIp(hops[i]!);
          if (hop === null) break;
          ip = hop;
          if (!inRanges(hop, this.trusted)) break;
        }
      }
    }
    return this.networkOf(ip);
  }

  private networkOf(ip: ipaddr.IPv4 | ipaddr.IPv6): string {
    return ip instanceof ipaddr.IPv6 ? ipv6Network(ip, this.config.ipv6Prefix) : ip.toString();
  }
}
