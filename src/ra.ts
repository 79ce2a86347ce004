// A router advertiser (RFC 4861 §6.2, the part of radvd a virtual router needs) for one router
// interface, on the punt queue: the interface punts router solicitations to the host
// (InterfaceSpec.punt ['rs']), the switch hands them to Switch.onPunt('rs'), and this advertiser answers
// with a Router Advertisement injected through a port of its own with learning off (docs/ABI.md "The
// punt area"), as src/dhcp.ts does. It also advertises unsolicited, periodically, and says goodbye
// (router lifetime 0) on detach.
//
// What an advertisement carries: the current hop limit (64), the M and O flags (stateful DHCPv6 /
// other configuration by DHCPv6, src/dhcp6.ts), the router lifetime (default 1800 s, so hosts install
// a default route via the router's link-local address), and the options source link-layer address,
// MTU, a Prefix Information for the interface's subnet (A, for SLAAC, when it is a /64; L always), RDNSS
// (RFC 8106: the gateway's address by default, where the DNS server runs) and DNSSL. It is sent from
// the interface's link-local address (fe80:: + the modified EUI-64 of its MAC, which the dataplane
// answers ND and echo for: assembly/nodes/ip6.ts) with hop limit 255, as §6.1.2 requires.
//
// Timing (§6.2.4, §6.2.6): the first MAX_INITIAL_RTR_ADVERTISEMENTS (3) unsolicited advertisements
// at most MAX_INITIAL_RTR_ADVERT_INTERVAL (16 s) apart, then one every uniformly random interval in
// [MinRtrAdvInterval, MaxRtrAdvInterval]. A solicitation from an address gets its answer unicast at
// once (§6.2.6 allows it; radvd's AdvRASolicitedUnicast); one from the unspecified address gets the
// next multicast advertisement, no sooner than MIN_DELAY_BETWEEN_RAS (3 s) after the last. The random
// 0-500 ms delay of §6.2.6 is left out: it spreads the answers of several routers on a link, and here
// the router is alone. Solicited answers are bounded (10 a second, the rest counted) so a flood of
// solicitations cannot become a flood of advertisements.
//
// Time is passed in (ms): tick(now) sends what is due; attach() drives it with setInterval and a clock,
// both of which tests replace. Every solicitation is untrusted: a malformed one is counted under a named reason.
import type { Switch } from './switch.js';
import { NetplaneError, checkFlag } from './abi.js';
import { ethernet, ipv6, icmpv6, parseIPv6, formatIPv6, parseMac, formatMac, onesComplementSum, pseudoHeaderSum } from './frames.js';
import { Pump } from './transports/pump.js';

export interface RaPrefix {
  prefix: string;               // 'fd00:1::/64'
  onLink?: boolean;             // L flag, default true
  autonomous?: boolean;         // A flag (SLAAC), default true for a /64
  validLifetime?: number;       // seconds, default 2592000 (30 days, RFC 4861 AdvValidLifetime)
  preferredLifetime?: number;   // seconds, default 604800 (7 days)
}

export interface RouterAdvertiserOptions {
  interface: number;            // the router interface (any: the link-local address is always there)
  maxInterval?: number;         // MaxRtrAdvInterval, 4-1800 s, default 600
  minInterval?: number;         // MinRtrAdvInterval, 3 s to 0.75 x max, default max / 3
  lifetime?: number;            // router lifetime, 0 (not a default router) or max-9000 s, default 1800
  hopLimit?: number;            // cur hop limit for hosts, 0-255, default 64
  mtu?: number | null;          // MTU option, default the interface's MTU; null: none
  prefixes?: RaPrefix[];        // default: the interface's IPv6 subnet
  dns?: string[];               // RDNSS, default the interface's IPv6 address (none without one); []: no option
  dnsLifetime?: number;         // RDNSS / DNSSL lifetime, default 3 x maxInterval (RFC 8106 §5.1)
  search?: string[];            // DNSSL
  managed?: boolean;            // M: addresses from DHCPv6 (a Dhcp6Server with bindings)
  otherConfig?: boolean;        // O: other configuration (DNS) from DHCPv6 (a Dhcp6Server)
}

export const RA_DROP_REASONS = ['not_ipv6_icmp', 'truncated', 'bad_checksum', 'bad_hop_limit', 'not_solicitation', 'bad_options', 'rate_limited'] as const;
export type RaDropReason = typeof RA_DROP_REASONS[number];

export interface RaCounters {
  solicitations: number;        // valid solicitations received
  solicited: number;            // advertisements sent unicast in answer
  unsolicited: number;          // multicast advertisements (periodic, and answers to solicitations from ::)
  dropped: Record<RaDropReason, number>;
}

const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
const MAX_INITIAL_RTR_ADVERT_INTERVAL = 16_000;
const MIN_DELAY_BETWEEN_RAS = 3_000;
const SOLICITED_PER_SECOND = 10;
const ALL_NODES = 'ff02::1', ALL_NODES_MAC = '33:33:00:00:00:01';

// fe80::/64 with the modified EUI-64 of `mac` (RFC 4291 §2.5.1, Appendix A), as the dataplane forms it.
export function linkLocal(mac: string): string {
  const m = parseMac(mac);
  const b = new Uint8Array(16);
  b[0] = 0xfe; b[1] = 0x80;
  b.set([m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]], 8);
  return formatIPv6(b);
}

// A domain name in DNS wire form, uncompressed (RFC 1035 §3.1), as DNSSL and DHCPv6 option 24 carry it.
export function encodeName(field: string, s: string): number[] {
  const labels = String(s).replace(/\.$/, '').split('.');
  if (!s || labels.some((l) => !/^[A-Za-z0-9_-]{1,63}$/.test(l))) throw new NetplaneError(field, `${JSON.stringify(s)} is not a domain name`);
  return [...labels.flatMap((l) => [l.length, ...[...l].map((c) => c.charCodeAt(0))]), 0];
}

const seconds = (field: string, v: unknown, lo: number, hi: number): number => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new NetplaneError(field, `expected whole seconds ${lo}-${hi}, got ${JSON.stringify(v)}`);
  return v;
};
const be32 = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255];

// The prefix of a.b::/len, its bytes with the host bits cleared.
function prefixBytes(field: string, s: string): [Uint8Array, number] {
  const [a, l] = String(s).split('/');
  const len = Number(l);
  let b: Uint8Array;
  try { b = parseIPv6(a); } catch { throw new NetplaneError(field, `${JSON.stringify(s)} is not an IPv6 prefix a::/len`); }
  if (l === undefined || !Number.isInteger(len) || len < 1 || len > 128) throw new NetplaneError(field, `${JSON.stringify(s)} needs a prefix length 1-128`);
  const p = b.slice();
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    p[i] &= (0xff00 >> keep) & 0xff;
  }
  return [p, len];
}

export class RouterAdvertiser {
  readonly counters: RaCounters;
  readonly source: string;            // the link-local address advertisements come from
  private readonly gwMac: string;
  private readonly network: number;
  private readonly vlan: number;
  private readonly ifaceId: number;
  private readonly maxInterval: number;
  private readonly minInterval: number;
  private readonly lifetime: number;
  private readonly head: number[];    // hop limit, flags (the ICMPv6 message's second word, minus lifetime)
  private readonly options: Uint8Array;
  private servicePort?: number;
  private initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
  private next = -1;                  // when the next multicast advertisement is due (ms), -1: on the first tick
  private lastMulticast = -Infinity;
  private window = { start: -Infinity, count: 0 };
  private send?: (frame: Uint8Array) => void;

  constructor(private readonly sw: Switch, o: RouterAdvertiserOptions, private readonly random: () => number = Math.random) {
    const f = sw.router.interfaces.get(o.interface);
    if (!f) throw new NetplaneError('interface', `no interface ${o.interface}`);
    this.ifaceId = o.interface;
    this.gwMac = f.mac;
    this.network = f.network;
    this.vlan = f.vlan;
    this.source = linkLocal(f.mac);
    this.maxInterval = seconds('maxInterval', o.maxInterval ?? 600, 4, 1800);
    this.minInterval = seconds('minInterval', o.minInterval ?? Math.max(3, Math.floor(this.maxInterval / 3)), 3, Math.floor(this.maxInterval * 0.75));
    const lifetime = o.lifetime ?? 1800;
    this.lifetime = lifetime === 0 ? 0 : seconds('lifetime', lifetime, this.maxInterval, 9000);
    const hopLimit = o.hopLimit ?? 64;
    if (!Number.isInteger(hopLimit) || hopLimit < 0 || hopLimit > 255) throw new NetplaneError('hopLimit', `expected 0-255, got ${JSON.stringify(o.hopLimit)}`);
    for (const k of ['managed', 'otherConfig'] as const) checkFlag(k, o[k]);
    this.head = [hopLimit, (o.managed ? 0x80 : 0) | (o.otherConfig ? 0x40 : 0)];

    const out: number[] = [1, 1, ...parseMac(f.mac)];                          // source link-layer address
    const mtu = o.mtu === null ? undefined : o.mtu ?? f.mtu;
    if (mtu !== undefined) {
      if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) throw new NetplaneError('mtu', `expected 1280-65535 (the IPv6 minimum MTU and up), got ${JSON.stringify(mtu)}`);
      out.push(5, 1, 0, 0, ...be32(mtu));
    }
    const prefixes = o.prefixes ?? (f.address6 ? [{ prefix: f.address6 }] : []);
    if (!Array.isArray(prefixes)) throw new NetplaneError('prefixes', 'expected a list of { prefix }');
    for (const [i, p] of prefixes.entries()) {
      const [bytes, len] = prefixBytes(`prefixes[${i}].prefix`, p?.prefix);
      if (bytes[0] === 0xfe && (bytes[1] & 0xc0) === 0x80) throw new NetplaneError(`prefixes[${i}].prefix`, 'a link-local prefix is never advertised (RFC 4861 §4.6.2)');
      const valid = seconds(`prefixes[${i}].validLifetime`, p.validLifetime ?? 2592000, 0, 0xffffffff);
      const preferred = seconds(`prefixes[${i}].preferredLifetime`, p.preferredLifetime ?? Math.min(604800, valid), 0, valid);
      const autonomous = p.autonomous ?? len === 64;
      if (autonomous && len !== 64) throw new NetplaneError(`prefixes[${i}].autonomous`, `SLAAC needs a /64 (RFC 4862 §5.5.3 with 64-bit interface identifiers), ${p.prefix} is a /${len}`);
      out.push(3, 4, len, ((p.onLink ?? true) ? 0x80 : 0) | (autonomous ? 0x40 : 0), ...be32(valid), ...be32(preferred), 0, 0, 0, 0, ...bytes);
    }
    const dnsLifetime = seconds('dnsLifetime', o.dnsLifetime ?? 3 * this.maxInterval, 0, 0xffffffff);
    const dns = o.dns ?? (f.address6 ? [f.address6.split('/')[0]] : []);
    if (!Array.isArray(dns)) throw new NetplaneError('dns', 'expected a list of IPv6 addresses');
    if (dns.length) {
      const addrs = dns.flatMap((s, i) => { try { return [...parseIPv6(s)]; } catch { throw new NetplaneError(`dns[${i}]`, `${JSON.stringify(s)} is not an IPv6 address`); } });
      if (dns.length > 127) throw new NetplaneError('dns', 'at most 127 addresses fit one option');
      out.push(25, 1 + 2 * dns.length, 0, 0, ...be32(dnsLifetime), ...addrs);
    }
    if (o.search?.length) {
      const names = o.search.flatMap((s, i) => encodeName(`search[${i}]`, s));
      while ((8 + names.length) % 8) names.push(0);
      if ((8 + names.length) / 8 > 255) throw new NetplaneError('search', 'the domain list does not fit one option');
      out.push(31, (8 + names.length) / 8, 0, 0, ...be32(dnsLifetime), ...names);
    }
    if (out.length + 16 + 48 > 1280) throw new NetplaneError('options', `an advertisement must fit the IPv6 minimum MTU; the options take ${out.length} bytes`);
    this.options = Uint8Array.from(out);
    this.counters = { solicitations: 0, solicited: 0, unsolicited: 0, dropped: Object.fromEntries(RA_DROP_REASONS.map((r) => [r, 0])) as Record<RaDropReason, number> };
  }

  // Answers the solicitations the interface punts and advertises periodically, through a port of its own
  // (learning off) in the interface's broadcast domain. `clock` (ms) and `timer` are replaceable: the
  // default timer calls tick() every second (setInterval, unref'd); a test passes its own, which gets
  // the function to call and returns its stop. The advertisers attached to one switch share its 'rs'
  // punt handler, which dispatches by interface. Returns detach, which sends a final advertisement with
  // router lifetime 0 (§6.2.5) and stops the timer.
  attach(clock: () => number = () => performance.now(), timer: RaTimer = everySecond): () => void {
    const detach = this.sw.onInterfacePunt('rs', this.ifaceId, (frame) => this.solicited(frame, clock()), 'a router advertiser');
    if (this.servicePort === undefined) this.servicePort = this.sw.addPort({ network: this.network, vlan: this.vlan, learning: false }).id;
    const port = this.sw.port(this.servicePort);
    const pump = Pump.of(this.sw);
    this.send = (frame) => { pump.receive(port, frame); };
    this.tick(clock());
    const stop = timer(() => this.tick(clock()));
    return () => {
      stop();
      if (!detach()) return;
      this.send!(this.advertisement(0, ALL_NODES_MAC, ALL_NODES));
      this.counters.unsolicited++;
      this.send = undefined;
    };
  }

  // Sends the multicast advertisement if one is due at `now` (ms). Returns the frame sent, if any.
  tick(now: number): Uint8Array | undefined {
    if (this.next >= 0 && now < this.next) return undefined;
    return this.multicast(now);
  }

  private multicast(now: number): Uint8Array {
    this.lastMulticast = now;
    let gap = this.minInterval * 1000 + this.random() * (this.maxInterval - this.minInterval) * 1000;
    if (this.initialLeft > 0) { this.initialLeft--; gap = Math.min(gap, MAX_INITIAL_RTR_ADVERT_INTERVAL); }
    this.next = now + gap;
    this.counters.unsolicited++;
    const frame = this.advertisement(this.lifetime, ALL_NODES_MAC, ALL_NODES);
    this.send?.(frame);
    return frame;
  }

  // One punted solicitation at `now` (ms): the unicast advertisement sent in answer, if any (a
  // solicitation from :: brings the next multicast one forward instead).
  solicited(frame: Uint8Array, now: number): Uint8Array | undefined {
    const s = parseSolicitation(frame);
    if (typeof s === 'string') { this.counters.dropped[s]++; return undefined; }
    this.counters.solicitations++;
    if (s.src === '::') {
      const due = Math.max(now, this.lastMulticast + MIN_DELAY_BETWEEN_RAS);
      if (this.next < 0 || due < this.next) this.next = due;
      if (due === now) return this.multicast(now);
      return undefined;
    }
    if (now - this.window.start >= 1000) this.window = { start: now, count: 0 };
    if (++this.window.count > SOLICITED_PER_SECOND) { this.counters.dropped.rate_limited++; return undefined; }
    const ra = this.advertisement(this.lifetime, s.lla ?? s.srcMac, s.src);
    this.counters.solicited++;
    this.send?.(ra);
    return ra;
  }

  // When the next multicast advertisement is due (ms; -1 before the first tick).
  nextAt(): number { return this.next; }

  private advertisement(lifetime: number, dstMac: string, dst: string): Uint8Array {
    const payload = new Uint8Array(8 + this.options.length);
    payload.set(this.options, 8);   // reachable time and retrans timer 0: unspecified, the host's own
    return ethernet({ src: this.gwMac, dst: dstMac, payload: ipv6({ src: this.source, dst, hopLimit: 255, payload: icmpv6({ type: 134, rest: Uint8Array.from([...this.head, lifetime >> 8, lifetime & 255]), payload }) }) });
  }
}


// Calls `run` periodically until the returned function is called.
export type RaTimer = (run: () => void) => () => void;
const everySecond: RaTimer = (run) => {
  const t = setInterval(run, 1000);
  (t as { unref?: () => void }).unref?.();
  return () => clearInterval(t);
};

interface Solicitation { src: string; srcMac: string; lla?: string }

// Ethernet (one optional 802.1Q tag) / IPv6 (no extension headers: an RS carries none) / ICMPv6 type
// 133, checked as RFC 4861 §6.1.1 says (the dataplane checked it too; the host trusts nothing).
function parseSolicitation(frame: Uint8Array): Solicitation | RaDropReason {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame.length < 14) return 'not_ipv6_icmp';
  let l3 = 14, type = v.getUint16(12);
  if (type === 0x8100) { if (frame.length < 18) return 'not_ipv6_icmp'; type = v.getUint16(16); l3 = 18; }
  if (type !== 0x86dd || frame.length < l3 + 40 || frame[l3] >> 4 !== 6 || frame[l3 + 6] !== 58) return 'not_ipv6_icmp';
  const len = v.getUint16(l3 + 4), l4 = l3 + 40;
  if (len < 8 || l4 + len > frame.length) return 'truncated';
  const msg = frame.subarray(l4, l4 + len);
  if (msg[0] !== 133) return 'not_solicitation';
  if (onesComplementSum(msg, pseudoHeaderSum(frame.subarray(l3 + 8, l3 + 24), frame.subarray(l3 + 24, l3 + 40), 58, len)) !== 0xffff) return 'bad_checksum';
  if (frame[l3 + 7] !== 255) return 'bad_hop_limit';
  if (msg[1] !== 0) return 'bad_options';
  const src = formatIPv6(frame, l3 + 8);
  let lla: string | undefined;
  for (let i = 8; i < len;) {
    if (i + 2 > len || msg[i + 1] === 0 || i + msg[i + 1] * 8 > len) return 'bad_options';
    if (msg[i] === 1 && msg[i + 1] === 1) lla = formatMac(msg, i + 2);
    i += msg[i + 1] * 8;
  }
  if (src === '::' && lla) return 'bad_options';
  return { src, srcMac: formatMac(frame, 6), ...(lla ? { lla } : {}) };
}
