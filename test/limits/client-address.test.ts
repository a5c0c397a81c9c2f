import { expect } from 'chai';
import type { IncomingMessage } from 'node:http';
import { ClientAddresses } from '../../src/limits/client-address';
import { loadConfig } from '../../src/config';

function req(remoteAddress: string, headers: Record<string, string> = {}): IncomingMessage {
  return { socket: { remoteAddress }, headers } as unknown as IncomingMessage;
}

function addresses(env: Record<string, string> = {}): ClientAddresses {
  return new ClientAddresses(loadConfig(env));
}

describe('client address', () => {
  it('is the socket address when no proxy is trusted, whatever X-Forwarded-For says', () => {
    const a = addresses();
    expect(a.keyOf(req('203.0.113.9', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('203.0.113.9');
  });

  it('takes X-Forwarded-For only from a trusted proxy', () => {
    const a = addresses({ RZ_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.1' });
    expect(a.keyOf(req('10.1.2.3', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('198.51.100.1');
    expect(a.keyOf(req('192.0.2.1', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('198.51.100.1');
    expect(a.keyOf(req('192.0.2.2', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('192.0.2.2');
  });

  it('walks back through trusted hops and never believes what the client wrote left of them', () => {
    const a = addresses({ RZ_TRUSTED_PROXIES: '10.0.0.0/8' });
    // The client forged "1.1.1.1"; the edge proxy appended the real peer, then an inner proxy its own.
    const xff = '1.1.1.1, 198.51.100.7, 10.0.0.2';
    expect(a.keyOf(req('10.0.0.1', { 'x-forwarded-for': xff }))).to.equal('198.51.100.7');
    // A forged hop inside the trusted range does not let the client pick its own address either.
    expect(a.keyOf(req('10.0.0.1', { 'x-forwarded-for': '1.1.1.1, 10.9.9.9, 198.51.100.7' }))).to.equal('198.51.100.7');
  });

  it('stops at a malformed hop, counting the request as the last address it could trust', () => {
    const a = addresses({ RZ_TRUSTED_PROXIES: '10.0.0.0/8' });
    expect(a.keyOf(req('10.0.0.1', { 'x-forwarded-for': 'garbage' }))).to.equal('10.0.0.1');
    expect(a.keyOf(req('10.0.0.1', { 'x-forwarded-for': '0x7f.1' }))).to.equal('10.0.0.1');
    expect(a.keyOf(req('10.0.0.1', { 'x-forwarded-for': '198.51.100.7:4711' }))).to.equal('198.51.100.7');
  });

  it('reads Forwarded (RFC 7239) instead when configured, and then ignores X-Forwarded-For', () => {
    const a = addresses({ RZ_TRUSTED_PROXIES: '10.0.0.0/8', RZ_FORWARDED_HEADER: 'forwarded' });
    const headers = {
      forwarded: 'for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711";by=10.0.0.1',
      'x-forwarded-for': '198.51.100.1',
    };
    expect(a.keyOf(req('10.0.0.1', headers))).to.equal('2001:db8:cafe::/64');
    expect(a.keyOf(req('10.0.0.1', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('10.0.0.1');
  });

  it('counts IPv6 clients per /64 by default, per the configured prefix otherwise', () => {
    expect(addresses().keyOf(req('2001:db8:1:2:aaaa:bbbb:cccc:dddd'))).to.equal('2001:db8:1:2::/64');
    expect(addresses().keyOf(req('2001:db8:1:2::1'))).to.equal(addresses().keyOf(req('2001:db8:1:2:ffff::9')));
    expect(addresses({ RZ_IPV6_PREFIX: '48' }).keyOf(req('2001:db8:1:2::1'))).to.equal('2001:db8:1::/48');
  });

  it('counts a link-local client without its zone, even per address (a forwarded key must be an address)', () => {
    expect(addresses({ RZ_IPV6_PREFIX: '128' }).keyOf(req('fe80::1%eth0'))).to.equal('fe80::1');
    expect(addresses().keyOf(req('fe80::1:2:3:4%eth0'))).to.equal('fe80::/64');
  });

  it('treats an IPv4-mapped IPv6 socket address as the IPv4 client', () => {
    expect(addresses().keyOf(req('::ffff:203.0.113.5'))).to.equal('203.0.113.5');
  });

  it('takes an IPv4-mapped range in RZ_TRUSTED_PROXIES for the IPv4 range it covers', () => {
    expect(loadConfig({ RZ_TRUSTED_PROXIES: '::ffff:10.0.0.0/104, ::ffff:0:0/96' }).trustedProxies).to.deep.equal([
      '10.0.0.0/8',
      '0.0.0.0/0',
    ]);
    const a = addresses({ RZ_TRUSTED_PROXIES: '::ffff:10.0.0.0/104' });
    // A dual-stack socket names the proxy as ::ffff:10.1.2.3, an IPv4 one as 10.1.2.3: both are trusted.
    expect(a.keyOf(req('::ffff:10.1.2.3', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('198.51.100.1');
    expect(a.keyOf(req('10.1.2.3', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('198.51.100.1');
    expect(a.keyOf(req('::ffff:11.1.2.3', { 'x-forwarded-for': '198.51.100.1' }))).to.equal('11.1.2.3');
    // Wider than the mapped block: it would name IPv6 addresses no IPv4 range can hold.
    expect(() => loadConfig({ RZ_TRUSTED_PROXIES: '::ffff:0:0/80' })).to.throw(/RZ_TRUSTED_PROXIES/);
  });

  it('refuses a malformed RZ_TRUSTED_PROXIES at start', () => {
    expect(() => loadConfig({ RZ_TRUSTED_PROXIES: '10.0.0.0/33' })).to.throw(/RZ_TRUSTED_PROXIES/);
    expect(() => loadConfig({ RZ_TRUSTED_PROXIES: 'proxy.local' })).to.throw(/RZ_TRUSTED_PROXIES/);
  });
});
