// A DHCPv4 server (RFC 2131, options RFC 2132 / 3442 / 3397) for one router interface, on the punt
// queue: the interface punts DHCP to the host (InterfaceSpec.punt ['dhcp']), the switch hands the
// frame to Switch.onPunt, this server answers, and its reply goes back into the switch through the rx
// path from a port of its own with learning off (docs/ABI.md "The punt area"), so the dataplane
// switches it to the client like any frame from the gateway's MAC.
//
// Why the control plane and not the dataplane: DHCP is rare, stateful and option-heavy; nothing of it
// is on a hot path. Leases are keyed by the client's hardware address (chaddr, which must equal the
// frame's source MAC on-link): a static lease is an HCN endpoint's MacAddress + IpConfigurations, a
// dynamic pool (a range) serves unknown MACs, and with no pool an unknown MAC gets no OFFER at all.
//
// Time is passed in (ms); expiry is checked lazily when a lease is looked at, so nothing needs a
// timer. Lease times are absolute in the clock's ms, so persisted state (toJSON / restore) survives a
// restart only with a wall clock (Date.now, the default of attach()).
//
// Every message from the wire is untrusted: a malformed one is counted under a named reason in
// `counters.dropped` and ignored, never thrown. State is bounded: at most `maxLeases` leases and
// offers, and the declined addresses are a subset of the pool.
import type { Switch } from './switch.js';
import { NetplaneError } from './abi.js';
import { ethernet, ipv4, udp, parseMac, formatMac, parseIPv4, onesComplementSum, pseudoHeaderSum } from './frames.js';
import { Pump } from './transports/pump.js';

export interface DhcpStaticLease { mac: string; address: string }
export interface DhcpRoute { destination: string; nextHop: string }   // destination 'a.b.c.d/len'

export interface DhcpServerOptions {
  interface: number;               // the router interface served (needs an IPv4 address)
  leaseTime?: number;              // seconds (option 51), default 3600
  renewalTime?: number;            // T1 seconds (58), default leaseTime / 2
  rebindingTime?: number;          // T2 seconds (59), default leaseTime * 7 / 8
  router?: string | null;          // option 3; default the interface's address, null: none
  dns?: string[];                  // option 6
  domain?: string;                 // option 15
  search?: string[];               // option 119
  mtu?: number;                    // option 26; default the interface's MTU
  routes?: DhcpRoute[];            // option 121 (with the default route added when `router` is set)
  static?: DhcpStaticLease[];      // MAC -> address
  pool?: { start: string; end: string };  // dynamic leases for unknown MACs; none: refused
  maxLeases?: number;              // leases + outstanding offers, default static + pool size, at most 65536
  offerTime?: number;              // seconds an OFFER reserves its address, default 60
  declineTime?: number;            // seconds a DECLINEd address is not given out, default 600
}

export const DHCP_DROP_REASONS = [
  'not_ipv4_udp', 'bad_checksum', 'truncated', 'bad_op', 'bad_htype_hlen', 'bad_cookie', 'bad_options',
  'no_message_type', 'bad_message_type', 'chaddr_mismatch', 'relayed', 'unknown_client', 'no_address',
  'lease_table_full', 'other_server', 'not_our_lease',
] as const;
export type DhcpDropReason = typeof DHCP_DROP_REASONS[number];

export interface DhcpCounters {
  received: number;
  offers: number; acks: number; naks: number; informs: number; releases: number; declines: number;
  dropped: Record<DhcpDropReason, number>;
}

export interface DhcpLease { mac: string; address: string; expires: number; bound: boolean }
export interface DhcpState { version: 1; leases: Array<{ mac: string; address: string; expires: number }>; declined: Array<{ address: string; until: number }> }


const DISCOVER = 1, OFFER = 2, REQUEST = 3, DECLINE = 4, ACK = 5, NAK = 6, RELEASE = 7, INFORM = 8;
const COOKIE = 0x63825363;
const BOOTP = 236;               // fixed BOOTP header before the magic cookie
const OPTION_BUDGET = 308;       // 576-byte IP datagram (RFC 2131 §2) - 20 - 8 - 240

const u32 = (s: string): number => { const b = parseIPv4(s); return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0; };
const ip = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
const maskOf = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

interface Lease { mac: string; address: number; expires: number; bound: boolean }
interface Message { op: number; xid: number; flags: number; ciaddr: number; giaddr: number; chaddr: Uint8Array; type: number; opts: Map<number, Uint8Array> }

export class DhcpServer {
  readonly counters: DhcpCounters;
  private readonly gw: number;
  private readonly gwMac: string;
  private readonly prefix: number;
  private readonly vlan: number;
  private readonly network: number;
  private readonly statics = new Map<string, number>();
  private readonly staticAddrs = new Set<number>();
  private readonly leases = new Map<string, Lease>();      // by MAC, at most maxLeases
  private readonly owner = new Map<number, string>();      // address -> MAC of its lease
  private readonly declined = new Map<number, number>();   // pool address -> until
  private readonly pool?: { start: number; end: number };
  private readonly maxLeases: number;
  private readonly opts: Required<Pick<DhcpServerOptions, 'leaseTime' | 'renewalTime' | 'rebindingTime' | 'offerTime' | 'declineTime'>>;
  private readonly options: Uint8Array;  // the configuration options every ACK/OFFER carries (1, 3, 6, 15, 26, 119, 121)
  private servicePort?: number;
  private readonly ifaceId: number;

  constructor(private readonly sw: Switch, o: DhcpServerOptions) {
    const f = sw.router.interfaces.get(o.interface);
    if (!f) throw new NetplaneError('interface', `no interface ${o.interface}`);
    if (!f.address) throw new NetplaneError('interface', `interface ${o.interface} has no IPv4 address`);
    const [a, l] = f.address.split('/');
    this.ifaceId = o.interface;
    this.gw = u32(a);
    this.prefix = Number(l);
    this.gwMac = f.mac;
    this.vlan = f.vlan;
    this.network = f.network;
    const mask = maskOf(this.prefix);
    const onLink = (field: string, s: string): number => {
      let v: number;
      try { v = u32(s); } catch { throw new NetplaneError(field, `${JSON.stringify(s)} is not an IPv4 address`); }
      if (((v ^ this.gw) & mask) !== 0) throw new NetplaneError(field, `${s} is not in the interface's subnet ${f.address}`);
      if (v === this.gw || (v & ~mask) === 0 || (v | mask) >>> 0 === 0xffffffff) throw new NetplaneError(field, `${s} is the gateway, network or broadcast address`);
      return v;
    };
    const seconds = (field: string, v: number | undefined, d: number): number => {
      const x = v ?? d;
      if (!Number.isInteger(x) || x < 1 || x > 0xfffffffe) throw new NetplaneError(field, `expected whole seconds 1-4294967294, got ${v}`);
      return x;
    };
    const leaseTime = seconds('leaseTime', o.leaseTime, 3600);
    this.opts = {
      leaseTime,
      renewalTime: seconds('renewalTime', o.renewalTime, Math.max(1, Math.floor(leaseTime / 2))),
      rebindingTime: seconds('rebindingTime', o.rebindingTime, Math.max(1, Math.floor((leaseTime * 7) / 8))),
      offerTime: seconds('offerTime', o.offerTime, 60),
      declineTime: seconds('declineTime', o.declineTime, 600),
    };
    for (const [i, s] of (o.static ?? []).entries()) {
      let mac: string;
      try { mac = formatMac(parseMac(s.mac)); } catch { throw new NetplaneError(`static[${i}].mac`, `${JSON.stringify(s.mac)} is not a MAC address`); }
      const v = onLink(`static[${i}].address`, s.address);
      if (this.statics.has(mac)) throw new NetplaneError(`static[${i}].mac`, `${mac} has two static leases`);
      if (this.staticAddrs.has(v)) throw new NetplaneError(`static[${i}].address`, `${s.address} is given to two MACs`);
      this.statics.set(mac, v);
      this.staticAddrs.add(v);
    }
    if (o.pool) {
      const start = onLink('pool.start', o.pool.start), end = onLink('pool.end', o.pool.end);
      if (end < start) throw new NetplaneError('pool.end', `${o.pool.end} is before ${o.pool.start}`);
      this.pool = { start, end };
    }
    const poolSize = this.pool ? this.pool.end - this.pool.start + 1 : 0;
    this.maxLeases = o.maxLeases ?? Math.min(65536, this.statics.size + poolSize);
    if (!Number.isInteger(this.maxLeases) || this.maxLeases < 0 || this.maxLeases > 65536) throw new NetplaneError('maxLeases', `expected 0-65536, got ${o.maxLeases}`);
    this.options = this.encodeOptions(o, f.mtu);
    this.counters = { received: 0, offers: 0, acks: 0, naks: 0, informs: 0, releases: 0, declines: 0, dropped: Object.fromEntries(DHCP_DROP_REASONS.map((r) => [r, 0])) as Record<DhcpDropReason, number> };
  }

  // Answers the DHCP this server's interface punts, through a port of its own (learning off) in the
  // interface's broadcast domain, at the clock's time (wall time by default, so that persisted leases
  // mean the same after a restart). The servers attached to one switch share its punt handler
  // (Switch.onPunt('dhcp')), which dispatches by interface; other punts are left unanswered. Returns detach.
  attach(clock: () => number = Date.now): () => void {
    if (this.servicePort === undefined) this.servicePort = this.sw.addPort({ network: this.network, vlan: this.vlan, learning: false }).id;
    const port = this.sw.port(this.servicePort);
    const pump = Pump.of(this.sw);
    const detach = this.sw.onInterfacePunt('dhcp', this.ifaceId, (frame) => {
      const reply = this.handle(frame, clock());
      if (reply) pump.receive(port, reply);
    }, 'a DHCP server');
    return () => { detach(); };
  }

  // One punted frame at time `now` (ms): the reply frame to send into the switch, or undefined.
  handle(frame: Uint8Array, now: number): Uint8Array | undefined {
    this.counters.received++;
    const m = this.parse(frame);
    if (typeof m === 'string') return this.drop(m);
    const mac = formatMac(m.chaddr);
    if (mac !== formatMac(frame, 6)) return this.drop('chaddr_mismatch');
    if (m.giaddr !== 0) return this.drop('relayed');
    const serverId = this.addrOpt(m, 54), requested = this.addrOpt(m, 50);
    switch (m.type) {
      case DISCOVER: {
        const a = this.allocate(mac, requested, now);
        if (typeof a === 'string') return this.drop(a);
        const l = this.leases.get(mac);
        if (!l || !l.bound || l.expires <= now) this.setLease(mac, a, now + this.opts.offerTime * 1000, false);
        this.counters.offers++;
        return this.reply(m, OFFER, a, 0, true);
      }
      case REQUEST: {
        if (serverId !== undefined) {                     // SELECTING
          if (serverId !== this.gw) {                     // the client took another server's offer
            const l = this.leases.get(mac);
            if (l && !l.bound) this.removeLease(mac);
            return this.drop('other_server');
          }
          return this.ackOrNak(m, mac, requested ?? 0, now);
        }
        if (requested !== undefined && m.ciaddr === 0) {  // INIT-REBOOT
          if (((requested ^ this.gw) & maskOf(this.prefix)) !== 0) return this.nak(m);
          const mine = this.known(mac, now);
          if (mine === undefined) return this.drop('not_our_lease');   // §4.3.2: remain silent
          return this.ackOrNak(m, mac, requested, now);
        }
        if (m.ciaddr !== 0) return this.ackOrNak(m, mac, m.ciaddr, now);   // RENEWING / REBINDING
        return this.drop('bad_options');
      }
      case DECLINE: {
        if (serverId !== undefined && serverId !== this.gw) return this.drop('other_server');
        const l = this.leases.get(mac);
        if (!l || requested === undefined || l.address !== requested) return this.drop('not_our_lease');
        this.removeLease(mac);
        if (this.inPool(requested)) this.declined.set(requested, now + this.opts.declineTime * 1000);
        this.counters.declines++;
        return undefined;
      }
      case RELEASE: {
        if (serverId !== undefined && serverId !== this.gw) return this.drop('other_server');
        const l = this.leases.get(mac);
        if (!l || l.address !== m.ciaddr) return this.drop('not_our_lease');
        this.removeLease(mac);
        this.counters.releases++;
        return undefined;
      }
      case INFORM: {
        if (m.ciaddr === 0) return this.drop('bad_options');
        this.counters.informs++;
        return this.reply(m, ACK, 0, m.ciaddr, false);
      }
      default:
        return this.drop('bad_message_type');
    }
  }

  // Leases as they stand at `now` (expired ones left out).
  leasesAt(now: number): DhcpLease[] {
    return [...this.leases.values()].filter((l) => l.expires > now).map((l) => ({ mac: l.mac, address: ip(l.address), expires: l.expires, bound: l.bound }));
  }

  // The bound leases and declined addresses, for the daemon to persist (offers are not kept).
  toJSON(): DhcpState {
    return {
      version: 1,
      leases: [...this.leases.values()].filter((l) => l.bound).map((l) => ({ mac: l.mac, address: ip(l.address), expires: l.expires })),
      declined: [...this.declined].map(([a, until]) => ({ address: ip(a), until })),
    };
  }

  // Loads what toJSON wrote (into a fresh server). A lease that no longer fits the configuration (its
  // address left the pool, or it conflicts with a static lease) is dropped; a malformed state throws,
  // naming the field, before anything changes.
  restore(state: DhcpState): void {
    if (!state || state.version !== 1 || !Array.isArray(state.leases) || !Array.isArray(state.declined)) throw new NetplaneError('state', 'expected { version: 1, leases: [], declined: [] }');
    const leases: Lease[] = [];
    for (const [i, l] of state.leases.entries()) {
      let mac: string, a: number;
      try { mac = formatMac(parseMac(l.mac)); } catch { throw new NetplaneError(`state.leases[${i}].mac`, `${JSON.stringify(l?.mac)} is not a MAC address`); }
      try { a = u32(l.address); } catch { throw new NetplaneError(`state.leases[${i}].address`, `${JSON.stringify(l?.address)} is not an IPv4 address`); }
      if (!Number.isFinite(l.expires)) throw new NetplaneError(`state.leases[${i}].expires`, 'expected a number (ms)');
      leases.push({ mac, address: a, expires: l.expires, bound: true });
    }
    const declined: Array<[number, number]> = [];
    for (const [i, d] of state.declined.entries()) {
      let a: number;
      try { a = u32(d.address); } catch { throw new NetplaneError(`state.declined[${i}].address`, `${JSON.stringify(d?.address)} is not an IPv4 address`); }
      if (!Number.isFinite(d.until)) throw new NetplaneError(`state.declined[${i}].until`, 'expected a number (ms)');
      declined.push([a, d.until]);
    }
    for (const l of leases) {
      if (this.leases.size >= this.maxLeases) break;
      const fits = this.statics.has(l.mac) ? this.statics.get(l.mac) === l.address : this.inPool(l.address) && !this.staticAddrs.has(l.address);
      if (fits && !this.owner.has(l.address)) this.setLease(l.mac, l.address, l.expires, true);
    }
    for (const [a, until] of declined) if (this.inPool(a)) this.declined.set(a, until);
  }

  // ---------------------------------------------------------------------------------------------

  private drop(r: DhcpDropReason): undefined { this.counters.dropped[r]++; return undefined; }

  private inPool(a: number): boolean { return !!this.pool && a >= this.pool.start && a <= this.pool.end; }

  // The address this MAC holds now: its static lease, or an unexpired dynamic lease or offer.
  private known(mac: string, now: number): number | undefined {
    const s = this.statics.get(mac);
    if (s !== undefined) return s;
    const l = this.leases.get(mac);
    return l && l.expires > now ? l.address : undefined;
  }

  private free(a: number, mac: string, now: number): boolean {
    if (this.staticAddrs.has(a)) return false;
    const d = this.declined.get(a);
    if (d !== undefined) { if (d > now) return false; this.declined.delete(a); }
    const o = this.owner.get(a);
    if (o === undefined || o === mac) return true;
    const l = this.leases.get(o)!;
    if (l.expires > now) return false;
    this.removeLease(o);
    return true;
  }

  // RFC 2131 §4.3.1: the static address; else the client's current or last address; else the
  // requested one if free; else the first free pool address.
  private allocate(mac: string, requested: number | undefined, now: number): number | DhcpDropReason {
    const s = this.statics.get(mac);
    if (s !== undefined) return this.room(mac, now) ? s : 'lease_table_full';
    if (!this.pool) return 'unknown_client';
    if (!this.room(mac, now)) return 'lease_table_full';
    const l = this.leases.get(mac);
    if (l && this.free(l.address, mac, now)) return l.address;
    if (requested !== undefined && this.inPool(requested) && this.free(requested, mac, now)) return requested;
    for (let a = this.pool.start; a <= this.pool.end; a++) if (this.free(a, mac, now)) return a;
    return 'no_address';
  }

  // Whether a lease for `mac` fits: it has one, or the table has room (after dropping expired ones).
  private room(mac: string, now: number): boolean {
    if (this.leases.has(mac) || this.leases.size < this.maxLeases) return true;
    for (const [k, l] of this.leases) if (l.expires <= now) this.removeLease(k);
    return this.leases.size < this.maxLeases;
  }

  private setLease(mac: string, address: number, expires: number, bound: boolean): void {
    this.removeLease(mac);
    this.leases.set(mac, { mac, address, expires, bound });
    this.owner.set(address, mac);
  }

  private removeLease(mac: string): void {
    const l = this.leases.get(mac);
    if (!l) return;
    this.leases.delete(mac);
    if (this.owner.get(l.address) === mac) this.owner.delete(l.address);
  }

  private ackOrNak(m: Message, mac: string, requested: number, now: number): Uint8Array | undefined {
    const s = this.statics.get(mac);
    let ok: boolean;
    if (s !== undefined) ok = requested === s && this.room(mac, now);
    else {
      // The client's own lease or offer (even expired, if nobody took the address since), or any free
      // pool address (a client rebinding after a restart that lost its lease keeps its address).
      ok = this.inPool(requested) && this.free(requested, mac, now) && this.room(mac, now);
    }
    if (!ok) return this.nak(m);
    this.setLease(mac, requested, now + this.opts.leaseTime * 1000, true);
    this.counters.acks++;
    return this.reply(m, ACK, requested, m.ciaddr, true);
  }

  private nak(m: Message): Uint8Array {
    this.counters.naks++;
    return this.reply(m, NAK, 0, 0, false);
  }

  private addrOpt(m: Message, code: number): number | undefined {
    const v = m.opts.get(code);
    return v && v.length === 4 ? ((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]) >>> 0 : undefined;
  }

  // Ethernet (one optional 802.1Q tag) / IPv4 / UDP to port 67 / BOOTP + options, every length checked.
  private parse(frame: Uint8Array): Message | DhcpDropReason {
    const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    if (frame.length < 14) return 'not_ipv4_udp';
    let l3 = 14, type = v.getUint16(12);
    if (type === 0x8100) { if (frame.length < 18) return 'not_ipv4_udp'; type = v.getUint16(16); l3 = 18; }
    if (type !== 0x0800 || frame.length < l3 + 20) return 'not_ipv4_udp';
    const ihl = (frame[l3] & 15) * 4, total = v.getUint16(l3 + 2);
    if (frame[l3] >> 4 !== 4 || ihl < 20 || frame[l3 + 9] !== 17 || total < ihl + 8 || l3 + total > frame.length) return 'not_ipv4_udp';
    if ((v.getUint16(l3 + 6) & 0x3fff) !== 0) return 'not_ipv4_udp';   // a fragment
    const l4 = l3 + ihl, ulen = v.getUint16(l4 + 4);
    if (ulen < 8 || ulen > total - ihl || v.getUint16(l4 + 2) !== 67) return 'not_ipv4_udp';
    if (v.getUint16(l4 + 6) !== 0) {
      const pseudo = pseudoHeaderSum(frame.subarray(l3 + 12, l3 + 16), frame.subarray(l3 + 16, l3 + 20), 17, ulen);
      if (onesComplementSum(frame.subarray(l4, l4 + ulen), pseudo) !== 0xffff) return 'bad_checksum';
    }
    const b = frame.subarray(l4 + 8, l4 + ulen);
    const bv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (b.length < BOOTP + 4) return 'truncated';
    if (b[0] !== 1) return 'bad_op';
    if (b[1] !== 1 || b[2] !== 6) return 'bad_htype_hlen';
    if (bv.getUint32(BOOTP) !== COOKIE) return 'bad_cookie';
    const opts = new Map<number, Uint8Array>();
    const walk = (from: number, to: number): boolean => {
      for (let i = from; i < to;) {
        const code = b[i];
        if (code === 255) return true;
        if (code === 0) { i++; continue; }
        if (i + 1 >= to || i + 2 + b[i + 1] > to) return false;
        const val = b.subarray(i + 2, i + 2 + b[i + 1]);
        const prev = opts.get(code);
        if (prev) { const c = new Uint8Array(prev.length + val.length); c.set(prev); c.set(val, prev.length); opts.set(code, c); }   // RFC 3396 concatenation
        else opts.set(code, val);
        i += 2 + b[i + 1];
      }
      return false;   // no end option
    };
    if (!walk(BOOTP + 4, b.length)) return 'bad_options';
    const overload = opts.get(52);   // RFC 2132 §9.3: options also in file (1) and/or sname (2)
    if (overload) {
      if (overload.length !== 1 || overload[0] < 1 || overload[0] > 3) return 'bad_options';
      if (overload[0] & 1 && !walk(108, 236)) return 'bad_options';
      if (overload[0] & 2 && !walk(44, 108)) return 'bad_options';
    }
    const t = opts.get(53);
    if (!t) return 'no_message_type';
    if (t.length !== 1) return 'bad_message_type';
    return { op: b[0], xid: bv.getUint32(4), flags: bv.getUint16(10), ciaddr: bv.getUint32(12), giaddr: bv.getUint32(24), chaddr: b.slice(28, 34), type: t[0], opts };
  }

  // RFC 2131 §4.1 / §4.3: a NAK, and anything to a client without an address that asked for a
  // broadcast, goes to 255.255.255.255 and ff:ff:ff:ff:ff:ff; a client with an address (ciaddr) gets
  // it unicast there; otherwise unicast to the offered address at the client's MAC.
  private reply(m: Message, type: number, yiaddr: number, ciaddr: number, lease: boolean): Uint8Array {
    const body = new Uint8Array(BOOTP + 4 + 3 + 6 + (lease ? 18 : 0) + (type === NAK ? 0 : this.options.length) + 1);
    const v = new DataView(body.buffer);
    body[0] = 2; body[1] = 1; body[2] = 6;
    v.setUint32(4, m.xid);
    v.setUint16(10, m.flags & 0x8000);
    v.setUint32(12, ciaddr);
    v.setUint32(16, yiaddr);
    body.set(m.chaddr, 28);
    v.setUint32(BOOTP, COOKIE);
    let i = BOOTP + 4;
    const opt = (code: number, bytes: number[]) => { body[i++] = code; body[i++] = bytes.length; for (const x of bytes) body[i++] = x; };
    const be32 = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255];
    opt(53, [type]);
    opt(54, be32(this.gw));
    if (lease) { opt(51, be32(this.opts.leaseTime)); opt(58, be32(this.opts.renewalTime)); opt(59, be32(this.opts.rebindingTime)); }
    if (type !== NAK) { body.set(this.options, i); i += this.options.length; }
    body[i++] = 255;
    let dstIp: number, dstMac: string;
    if (type === NAK || (m.ciaddr === 0 && (m.flags & 0x8000 || yiaddr === 0))) { dstIp = 0xffffffff; dstMac = 'ff:ff:ff:ff:ff:ff'; }
    else { dstIp = m.ciaddr !== 0 ? m.ciaddr : yiaddr; dstMac = formatMac(m.chaddr); }
    return ethernet({ src: this.gwMac, dst: dstMac, payload: ipv4({ src: ip(this.gw), dst: ip(dstIp), ttl: 64, payload: udp({ srcPort: 67, dstPort: 68, payload: body.subarray(0, i) }) }) });
  }

  private encodeOptions(o: DhcpServerOptions, ifaceMtu: number): Uint8Array {
    const out: number[] = [];
    const be32 = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255];
    const put = (field: string, code: number, bytes: number[]) => {
      if (bytes.length > 255) throw new NetplaneError(field, `option ${code} is ${bytes.length} bytes, more than 255`);
      out.push(code, bytes.length, ...bytes);
    };
    const addr = (field: string, s: string) => { try { return u32(s); } catch { throw new NetplaneError(field, `${JSON.stringify(s)} is not an IPv4 address`); } };
    put('interface', 1, be32(maskOf(this.prefix)));
    const router = o.router === null ? undefined : o.router === undefined ? this.gw : addr('router', o.router);
    if (router !== undefined) put('router', 3, be32(router));
    if (o.dns?.length) put('dns', 6, o.dns.flatMap((s, i) => be32(addr(`dns[${i}]`, s))));
    const name = (field: string, s: string): number[] => {
      const labels = s.replace(/\.$/, '').split('.');
      if (!s || labels.some((l) => !/^[A-Za-z0-9_-]{1,63}$/.test(l))) throw new NetplaneError(field, `${JSON.stringify(s)} is not a domain name`);
      return [...labels.flatMap((l) => [l.length, ...[...l].map((c) => c.charCodeAt(0))]), 0];
    };
    if (o.domain !== undefined) { name('domain', o.domain); put('domain', 15, [...o.domain.replace(/\.$/, '')].map((c) => c.charCodeAt(0))); }
    const mtu = o.mtu ?? ifaceMtu;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new NetplaneError('mtu', `expected 68-65535, got ${mtu}`);
    put('mtu', 26, [mtu >> 8, mtu & 255]);
    if (o.search?.length) put('search', 119, o.search.flatMap((s, i) => name(`search[${i}]`, s)));   // RFC 3397, uncompressed
    if (o.routes?.length) {
      const r: number[] = [];
      const routes = [...o.routes];
      if (router !== undefined && !routes.some((x) => x.destination.endsWith('/0'))) routes.push({ destination: '0.0.0.0/0', nextHop: ip(router) });   // RFC 3442: 121 replaces option 3
      for (const [i, x] of routes.entries()) {
        const [d, ls] = String(x.destination).split('/');
        const len = Number(ls);
        if (!Number.isInteger(len) || len < 0 || len > 32) throw new NetplaneError(`routes[${i}].destination`, `${JSON.stringify(x.destination)} is not a prefix a.b.c.d/len`);
        const dst = addr(`routes[${i}].destination`, d) & maskOf(len);
        r.push(len, ...be32(dst).slice(0, Math.ceil(len / 8)), ...be32(addr(`routes[${i}].nextHop`, x.nextHop)));
      }
      put('routes', 121, r);
    }
    if (out.length + 3 + 6 + 18 + 1 > OPTION_BUDGET) throw new NetplaneError('options', `the options take ${out.length} bytes; a reply must fit a 576-byte datagram (${OPTION_BUDGET - 28} bytes of configuration options)`);
    return Uint8Array.from(out);
  }
}
