// A DHCPv6 server (RFC 8415) for one router interface, on the punt queue: the interface punts DHCPv6
// to the host (InterfaceSpec.punt ['dhcp6']: UDP 547 to ff02::1:2 or its addresses), the switch hands
// the frame to Switch.onPunt('dhcp6'), this server answers from the interface's link-local address to
// the client's port 546, and the reply goes back into the switch from a port of its own with learning
// off, as src/dhcp.ts does for DHCPv4.
//
// Two services, usually together with a RouterAdvertiser (src/ra.ts) whose O and M flags point hosts
// here: stateless configuration (INFORMATION-REQUEST: DNS servers, option 23, and the domain search
// list, option 24, RFC 3646) and stateful addresses (IA_NA) for static bindings: an HCN endpoint's MAC
// and IPv6 address, or a client DUID and an address. A client is known by its DUID first; else by its
// link-layer address, from a DUID-LL or DUID-LLT of hardware type 1 or, failing that, the frame's
// source MAC (on-link, the frame came from the client itself; RFC 6939's relay option is not needed).
// One address per client: its first IA_NA gets it, any other IA_NA NoAddrsAvail. There is no dynamic
// pool: SLAAC (the RA's A flag) is IPv6's pool. SOLICIT with Rapid Commit (option 14) is answered with
// the committed REPLY when `rapidCommit` is on (the default). The server's DUID is a DUID-LL of the
// gateway's MAC; its preference (option 7) is 255 by default, so a client takes the first ADVERTISE
// without waiting for others (it is the only server on the link).
//
// Time is passed in (ms): a lease is the record that a binding was handed out, with its expiry; it is
// what toJSON / restore keep, like src/dhcp.ts, and what leasesAt shows. Every message from the wire is
// untrusted: a malformed one is counted under a named reason in `counters.dropped`, never thrown.
import type { Switch } from './switch.js';
import { NetplaneError, checkFlag } from './abi.js';
import { ethernet, ipv6, udp, parseIPv6, formatIPv6, parseMac, formatMac, onesComplementSum, pseudoHeaderSum } from './frames.js';
import { Pump } from './transports/pump.js';
import { linkLocal, encodeName } from './ra.js';

export interface Dhcp6Binding { duid?: string; mac?: string; address: string }   // duid as hex, '00:03:00:01:...' or '000300...'

export interface Dhcp6ServerOptions {
  interface: number;               // the router interface served
  dns?: string[];                  // option 23; default the interface's IPv6 address (none without one); []: none
  search?: string[];               // option 24
  bindings?: Dhcp6Binding[];       // stateful IA_NA addresses; none: stateless only
  preferredLifetime?: number;      // seconds, default 3600
  validLifetime?: number;          // seconds, default 7200
  renewalTime?: number;            // T1, default preferredLifetime / 2
  rebindingTime?: number;          // T2, default preferredLifetime * 4 / 5
  informationRefreshTime?: number; // option 32 in answers to INFORMATION-REQUEST, default 86400
  rapidCommit?: boolean;           // answer a SOLICIT with Rapid Commit by a REPLY, default true
  preference?: number;             // option 7, 0-255, default 255
}

export const DHCP6_DROP_REASONS = [
  'not_ipv6_udp', 'bad_checksum', 'truncated', 'bad_options', 'bad_message_type', 'relayed',
  'no_client_id', 'unexpected_server_id', 'other_server', 'unknown_client', 'nothing_to_confirm',
] as const;
export type Dhcp6DropReason = typeof DHCP6_DROP_REASONS[number];

export interface Dhcp6Counters {
  received: number;
  advertises: number; replies: number; releases: number; declines: number; informations: number;
  dropped: Record<Dhcp6DropReason, number>;
}

export interface Dhcp6Lease { duid: string; iaid: number; address: string; expires: number }
export interface Dhcp6State { version: 1; leases: Dhcp6Lease[]; declined: Array<{ address: string; at: number }> }

export const SOLICIT = 1, ADVERTISE = 2, REQUEST = 3, CONFIRM = 4, RENEW = 5, REBIND = 6, REPLY = 7, RELEASE = 8, DECLINE = 9, INFORMATION_REQUEST = 11, RELAY_FORW = 12;
const CLIENTID = 1, SERVERID = 2, IA_NA = 3, IAADDR = 5, PREFERENCE = 7, STATUS_CODE = 13, RAPID_COMMIT = 14, DNS_SERVERS = 23, DOMAIN_LIST = 24, INFORMATION_REFRESH_TIME = 32;
const SUCCESS = 0, NO_ADDRS_AVAIL = 2, NO_BINDING = 3, NOT_ON_LINK = 4;

interface Option { code: number; data: Uint8Array }
interface Message { type: number; xid: Uint8Array; opts: Option[]; src: string; srcMac: string }
interface Ia { iaid: number; addrs: string[] }

const hex = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
const parseHex = (field: string, s: string): string => {
  const h = String(s).replace(/[:\-\s]/g, '').toLowerCase();
  if (!/^([0-9a-f]{2}){3,130}$/.test(h)) throw new NetplaneError(field, `${JSON.stringify(s)} is not a DUID (hex bytes, 3-130)`);
  return h;
};
const be16 = (x: number) => [(x >> 8) & 255, x & 255];
const be32 = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255];
const opt = (code: number, data: ArrayLike<number>): number[] => [...be16(code), ...be16(data.length), ...Array.from(data)];
const status = (code: number, text: string): number[] => opt(STATUS_CODE, [...be16(code), ...[...text].map((c) => c.charCodeAt(0))]);

// The link-layer address in a DUID-LLT (type 1) or DUID-LL (type 3) of hardware type 1 (Ethernet).
function duidMac(d: Uint8Array): string | undefined {
  if (d.length === 14 && d[0] === 0 && d[1] === 1 && d[2] === 0 && d[3] === 1) return formatMac(d, 8);
  if (d.length === 10 && d[0] === 0 && d[1] === 3 && d[2] === 0 && d[3] === 1) return formatMac(d, 4);
  return undefined;
}

export class Dhcp6Server {
  readonly counters: Dhcp6Counters;
  readonly duid: Uint8Array;                       // the server's DUID-LL
  readonly source: string;                         // the link-local address replies come from
  private readonly gwMac: string;
  private readonly network: number;
  private readonly vlan: number;
  private readonly ifaceId: number;
  private readonly prefix?: [Uint8Array, number];  // the interface's subnet, for CONFIRM
  private readonly byDuid = new Map<string, string>();
  private readonly byMac = new Map<string, string>();
  private readonly config: number[];               // options 23 and 24, in every REPLY / ADVERTISE
  private readonly t: { preferred: number; valid: number; t1: number; t2: number; refresh: number };
  private readonly rapidCommit: boolean;
  private readonly preference: number;
  private readonly leases = new Map<string, Dhcp6Lease>();   // by client DUID (hex)
  private readonly declined = new Map<string, number>();     // address -> when
  private servicePort?: number;

  constructor(private readonly sw: Switch, o: Dhcp6ServerOptions) {
    const f = sw.router.interfaces.get(o.interface);
    if (!f) throw new NetplaneError('interface', `no interface ${o.interface}`);
    this.ifaceId = o.interface;
    this.gwMac = f.mac;
    this.network = f.network;
    this.vlan = f.vlan;
    this.source = linkLocal(f.mac);
    this.duid = Uint8Array.from([0, 3, 0, 1, ...parseMac(f.mac)]);
    if (f.address6) {
      const [a, l] = f.address6.split('/');
      this.prefix = [parseIPv6(a), Number(l)];
    }
    const seconds = (field: string, v: number | undefined, d: number): number => {
      const x = v ?? d;
      if (!Number.isInteger(x) || x < 1 || x > 0xffffffff) throw new NetplaneError(field, `expected whole seconds 1-4294967295, got ${JSON.stringify(v)}`);
      return x;
    };
    const preferred = seconds('preferredLifetime', o.preferredLifetime, 3600);
    const valid = seconds('validLifetime', o.validLifetime, Math.max(7200, preferred));
    if (valid < preferred) throw new NetplaneError('validLifetime', `${valid} is shorter than preferredLifetime ${preferred}`);
    const t1 = seconds('renewalTime', o.renewalTime, Math.max(1, Math.floor(preferred / 2)));
    const t2 = seconds('rebindingTime', o.rebindingTime, Math.max(t1, Math.floor((preferred * 4) / 5)));
    if (t2 < t1) throw new NetplaneError('rebindingTime', `${t2} is shorter than renewalTime ${t1}`);
    this.t = { preferred, valid, t1, t2, refresh: seconds('informationRefreshTime', o.informationRefreshTime, 86400) };
    checkFlag('rapidCommit', o.rapidCommit);
    this.rapidCommit = o.rapidCommit ?? true;
    this.preference = o.preference ?? 255;
    if (!Number.isInteger(this.preference) || this.preference < 0 || this.preference > 255) throw new NetplaneError('preference', `expected 0-255, got ${JSON.stringify(o.preference)}`);
    const addrs = new Set<string>();
    for (const [i, b] of (o.bindings ?? []).entries()) {
      let a: string;
      try { a = formatIPv6(parseIPv6(b.address)); } catch { throw new NetplaneError(`bindings[${i}].address`, `${JSON.stringify(b?.address)} is not an IPv6 address`); }
      if (this.prefix && !this.onLink(a)) throw new NetplaneError(`bindings[${i}].address`, `${a} is not in the interface's subnet ${f.address6}`);
      if (addrs.has(a)) throw new NetplaneError(`bindings[${i}].address`, `${a} is bound twice`);
      addrs.add(a);
      if ((b.duid === undefined) === (b.mac === undefined)) throw new NetplaneError(`bindings[${i}]`, 'expected a duid or a mac (one of them)');
      if (b.duid !== undefined) {
        const d = parseHex(`bindings[${i}].duid`, b.duid);
        if (this.byDuid.has(d)) throw new NetplaneError(`bindings[${i}].duid`, `${b.duid} has two bindings`);
        this.byDuid.set(d, a);
      } else {
        let mac: string;
        try { mac = formatMac(parseMac(b.mac!)); } catch { throw new NetplaneError(`bindings[${i}].mac`, `${JSON.stringify(b.mac)} is not a MAC address`); }
        if (this.byMac.has(mac)) throw new NetplaneError(`bindings[${i}].mac`, `${mac} has two bindings`);
        this.byMac.set(mac, a);
      }
    }
    const config: number[] = [];
    const dns = o.dns ?? (f.address6 ? [f.address6.split('/')[0]] : []);
    if (!Array.isArray(dns)) throw new NetplaneError('dns', 'expected a list of IPv6 addresses');
    if (dns.length) config.push(...opt(DNS_SERVERS, dns.flatMap((s, i) => { try { return [...parseIPv6(s)]; } catch { throw new NetplaneError(`dns[${i}]`, `${JSON.stringify(s)} is not an IPv6 address`); } })));
    if (o.search?.length) config.push(...opt(DOMAIN_LIST, o.search.flatMap((s, i) => encodeName(`search[${i}]`, s))));
    if (config.length > 1000) throw new NetplaneError('dns', 'the DNS and search options do not fit a reply');
    this.config = config;
    this.counters = { received: 0, advertises: 0, replies: 0, releases: 0, declines: 0, informations: 0, dropped: Object.fromEntries(DHCP6_DROP_REASONS.map((r) => [r, 0])) as Record<Dhcp6DropReason, number> };
  }

  // Whether this server hands out addresses (the RA's M flag should then be set; O always).
  get stateful(): boolean { return this.byDuid.size + this.byMac.size > 0; }

  // Answers the DHCPv6 the interface punts, through a port of its own (learning off) in its broadcast
  // domain, at the clock's time (wall time by default, so persisted leases mean the same after a
  // restart). The servers on one switch share its 'dhcp6' punt handler, which dispatches by interface.
  // Returns detach.
  attach(clock: () => number = Date.now): () => void {
    const detach = this.sw.onInterfacePunt('dhcp6', this.ifaceId, (frame) => {
      const reply = this.handle(frame, clock());
      if (reply) pump.receive(port, reply);
    }, 'a DHCPv6 server');
    if (this.servicePort === undefined) this.servicePort = this.sw.addPort({ network: this.network, vlan: this.vlan, learning: false }).id;
    const port = this.sw.port(this.servicePort);
    const pump = Pump.of(this.sw);
    return () => { detach(); };
  }

  // One punted frame at time `now` (ms): the reply frame to send into the switch, or undefined.
  handle(frame: Uint8Array, now: number): Uint8Array | undefined {
    this.counters.received++;
    const m = parse(frame);
    if (typeof m === 'string') return this.drop(m);
    if (m.type === RELAY_FORW) return this.drop('relayed');
    if (![SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE, INFORMATION_REQUEST].includes(m.type)) return this.drop('bad_message_type');
    const clientId = one(m, CLIENTID), serverId = one(m, SERVERID);
    if (clientId === null || serverId === null) return this.drop('bad_options');   // given twice
    // RFC 8415 §16: which messages carry which identifiers.
    const mustServer = m.type === REQUEST || m.type === RENEW || m.type === RELEASE || m.type === DECLINE;
    const noServer = m.type === SOLICIT || m.type === CONFIRM || m.type === REBIND;
    if (!clientId && m.type !== INFORMATION_REQUEST) return this.drop('no_client_id');
    if (noServer && serverId) return this.drop('unexpected_server_id');
    if (mustServer && !serverId) return this.drop('other_server');
    if (serverId && hex(serverId.data) !== hex(this.duid)) return this.drop('other_server');
    const ias = this.iaNas(m);
    if (typeof ias === 'string') return this.drop(ias);
    const duid = clientId ? hex(clientId.data) : '';
    const address = clientId ? this.bindingOf(duid, clientId.data, m.srcMac) : undefined;
    switch (m.type) {
      case SOLICIT: {
        const rapid = this.rapidCommit && m.opts.some((o) => o.code === RAPID_COMMIT);
        if (ias.length && address === undefined) {
          // NoAddrsAvail in each IA (RFC 8415 §18.3.9) and for the message (RFC 3315 §17.2.2, which
          // older clients follow), with the configuration options.
          this.counters.advertises++;
          const none = ias.flatMap((ia) => this.iaOption(ia.iaid, [], status(NO_ADDRS_AVAIL, 'no address for this client')));
          return this.reply(m, ADVERTISE, [...status(NO_ADDRS_AVAIL, 'no address for this client'), ...opt(PREFERENCE, [this.preference]), ...none, ...this.config]);
        }
        const body = this.assign(m, ias, duid, address, now, rapid);
        if (rapid) { this.counters.replies++; return this.reply(m, REPLY, [...opt(RAPID_COMMIT, []), ...body]); }
        this.counters.advertises++;
        return this.reply(m, ADVERTISE, [...opt(PREFERENCE, [this.preference]), ...body]);
      }
      case REQUEST:
      case RENEW:
      case REBIND: {
        if (address === undefined && m.type === REBIND) return this.drop('unknown_client');   // §18.3.5: not ours to answer
        const body = address === undefined
          ? ias.flatMap((ia) => this.iaOption(ia.iaid, [], [...status(m.type === REQUEST ? NO_ADDRS_AVAIL : NO_BINDING, 'no address for this client')]))
          : this.assign(m, ias, duid, address, now, true);
        this.counters.replies++;
        return this.reply(m, REPLY, body);
      }
      case RELEASE:
      case DECLINE: {
        const l = this.leases.get(duid);
        const body: number[] = [];
        for (const ia of ias) {
          const mine = l && l.iaid === ia.iaid && ia.addrs.includes(l.address);
          if (!mine) { body.push(...this.iaOption(ia.iaid, [], status(NO_BINDING, 'not bound'))); continue; }
          this.leases.delete(duid);
          if (m.type === DECLINE) this.declined.set(l!.address, now);
        }
        if (m.type === RELEASE) this.counters.releases++; else this.counters.declines++;
        this.counters.replies++;
        return this.reply(m, REPLY, [...status(SUCCESS, m.type === RELEASE ? 'released' : 'declined'), ...body]);
      }
      case CONFIRM: {   // §18.3.3: are the client's addresses on this link?
        const addrs = ias.flatMap((ia) => ia.addrs);
        if (!addrs.length) return this.drop('nothing_to_confirm');
        const ok = addrs.every((a) => this.onLink(a));
        this.counters.replies++;
        return this.reply(m, REPLY, status(ok ? SUCCESS : NOT_ON_LINK, ok ? 'on link' : 'not on link'));
      }
      default: {   // INFORMATION-REQUEST: stateless configuration only (§18.3.6)
        if (ias.length) return this.drop('bad_options');
        this.counters.informations++;
        this.counters.replies++;
        return this.reply(m, REPLY, [...this.config, ...opt(INFORMATION_REFRESH_TIME, be32(this.t.refresh))]);
      }
    }
  }

  // Leases as they stand at `now` (expired ones left out).
  leasesAt(now: number): Dhcp6Lease[] { return [...this.leases.values()].filter((l) => l.expires > now).map((l) => ({ ...l })); }

  toJSON(): Dhcp6State {
    return { version: 1, leases: [...this.leases.values()].map((l) => ({ ...l })), declined: [...this.declined].map(([address, at]) => ({ address, at })) };
  }

  // Loads what toJSON wrote (into a fresh server). A lease whose address is no longer its client's
  // binding is dropped; a malformed state throws, naming the field, before anything changes.
  restore(state: Dhcp6State): void {
    if (!state || state.version !== 1 || !Array.isArray(state.leases) || !Array.isArray(state.declined)) throw new NetplaneError('state', 'expected { version: 1, leases: [], declined: [] }');
    const leases: Dhcp6Lease[] = [];
    for (const [i, l] of state.leases.entries()) {
      const duid = parseHex(`state.leases[${i}].duid`, l?.duid);
      let address: string;
      try { address = formatIPv6(parseIPv6(l.address)); } catch { throw new NetplaneError(`state.leases[${i}].address`, `${JSON.stringify(l?.address)} is not an IPv6 address`); }
      if (!Number.isInteger(l.iaid) || l.iaid < 0 || l.iaid > 0xffffffff) throw new NetplaneError(`state.leases[${i}].iaid`, 'expected 0-4294967295');
      if (!Number.isFinite(l.expires)) throw new NetplaneError(`state.leases[${i}].expires`, 'expected a number (ms)');
      leases.push({ duid, iaid: l.iaid, address, expires: l.expires });
    }
    const declined: Array<[string, number]> = [];
    for (const [i, d] of state.declined.entries()) {
      let a: string;
      try { a = formatIPv6(parseIPv6(d.address)); } catch { throw new NetplaneError(`state.declined[${i}].address`, `${JSON.stringify(d?.address)} is not an IPv6 address`); }
      if (!Number.isFinite(d.at)) throw new NetplaneError(`state.declined[${i}].at`, 'expected a number (ms)');
      declined.push([a, d.at]);
    }
    for (const l of leases) {
      const bound = this.byDuid.get(l.duid) ?? (() => { const mac = duidMac(Uint8Array.from(l.duid.match(/../g)!.map((x) => parseInt(x, 16)))); return mac && this.byMac.get(mac); })();
      if (bound === l.address) this.leases.set(l.duid, l);
    }
    for (const [a, at] of declined) this.declined.set(a, at);
  }

  // Addresses clients declined (RFC 8415 §18.3.8: in use by someone else on the link), and when: a
  // static binding stays as configured, so these are for the operator to look at.
  declinedAddresses(): Array<{ address: string; at: number }> { return [...this.declined].map(([address, at]) => ({ address, at })); }

  // ---------------------------------------------------------------------------------------------

  private drop(r: Dhcp6DropReason): undefined { this.counters.dropped[r]++; return undefined; }

  private onLink(a: string): boolean {
    if (!this.prefix) return false;
    const b = parseIPv6(a), [p, len] = this.prefix;
    for (let i = 0; i < 16; i++) {
      const keep = Math.max(0, Math.min(8, len - i * 8));
      const mask = (0xff00 >> keep) & 0xff;
      if ((b[i] & mask) !== (p[i] & mask)) return false;
    }
    return true;
  }

  private bindingOf(duid: string, d: Uint8Array, srcMac: string): string | undefined {
    return this.byDuid.get(duid) ?? this.byMac.get(duidMac(d) ?? srcMac);
  }

  // The IA_NA options, each with its IAID and the addresses it lists (IAADDRs), checked.
  private iaNas(m: Message): Ia[] | Dhcp6DropReason {
    const out: Ia[] = [];
    for (const o of m.opts) {
      if (o.code !== IA_NA) continue;
      if (o.data.length < 12) return 'bad_options';
      const ia: Ia = { iaid: new DataView(o.data.buffer, o.data.byteOffset).getUint32(0), addrs: [] };
      const sub = walk(o.data.subarray(12));
      if (!sub) return 'bad_options';
      for (const s of sub) {
        if (s.code !== IAADDR) continue;
        if (s.data.length < 24) return 'bad_options';
        ia.addrs.push(formatIPv6(s.data, 0));
      }
      out.push(ia);
    }
    return out;
  }

  private iaOption(iaid: number, addrOpts: number[], tail: number[] = []): number[] {
    return opt(IA_NA, [...be32(iaid), ...be32(addrOpts.length ? this.t.t1 : 0), ...be32(addrOpts.length ? this.t.t2 : 0), ...addrOpts, ...tail]);
  }

  // The IA_NAs of an answer: the client's address in its first IA_NA (with lifetimes 0 for other
  // addresses it listed there, §18.3.4), NoAddrsAvail in the others; committed as a lease when
  // `commit` (REQUEST, RENEW, REBIND, a rapid-commit SOLICIT).
  private assign(m: Message, ias: Ia[], duid: string, address: string | undefined, now: number, commit: boolean): number[] {
    const body: number[] = [];
    ias.forEach((ia, i) => {
      if (i > 0 || address === undefined) { body.push(...this.iaOption(ia.iaid, [], status(NO_ADDRS_AVAIL, 'one address per client'))); return; }
      const addrOpts = opt(IAADDR, [...parseIPv6(address), ...be32(this.t.preferred), ...be32(this.t.valid)]);
      for (const old of ia.addrs) if (old !== address) addrOpts.push(...opt(IAADDR, [...parseIPv6(old), 0, 0, 0, 0, 0, 0, 0, 0]));
      body.push(...this.iaOption(ia.iaid, addrOpts));
      if (commit) this.leases.set(duid, { duid, iaid: ia.iaid, address, expires: now + this.t.valid * 1000 });
    });
    return [...body, ...this.config];
  }

  // To the client's address and port 546, from the link-local address, with the server and client IDs.
  private reply(m: Message, type: number, body: number[]): Uint8Array {
    const clientId = m.opts.find((o) => o.code === CLIENTID);
    const payload = Uint8Array.from([type, ...m.xid, ...opt(SERVERID, this.duid), ...(clientId ? opt(CLIENTID, clientId.data) : []), ...body]);
    return ethernet({ src: this.gwMac, dst: m.srcMac, payload: ipv6({ src: this.source, dst: m.src, hopLimit: 64, payload: udp({ srcPort: 547, dstPort: 546, payload }) }) });
  }
}


// The only option of `code`: undefined when absent, null when given twice.
function one(m: Message, code: number): Option | undefined | null {
  const all = m.opts.filter((o) => o.code === code);
  return all.length > 1 ? null : all[0];
}

// Options: code u16, length u16, data; undefined when one runs past the end.
function walk(b: Uint8Array): Option[] | undefined {
  const out: Option[] = [];
  for (let i = 0; i < b.length;) {
    if (i + 4 > b.length) return undefined;
    const code = (b[i] << 8) | b[i + 1], len = (b[i + 2] << 8) | b[i + 3];
    if (i + 4 + len > b.length) return undefined;
    out.push({ code, data: b.subarray(i + 4, i + 4 + len) });
    i += 4 + len;
  }
  return out;
}

// Ethernet (one optional 802.1Q tag) / IPv6 (no extension headers) / UDP to 547 with a valid checksum
// (mandatory in IPv6) / a client message: type, transaction id, options.
function parse(frame: Uint8Array): Message | Dhcp6DropReason {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame.length < 14) return 'not_ipv6_udp';
  let l3 = 14, type = v.getUint16(12);
  if (type === 0x8100) { if (frame.length < 18) return 'not_ipv6_udp'; type = v.getUint16(16); l3 = 18; }
  if (type !== 0x86dd || frame.length < l3 + 40 || frame[l3] >> 4 !== 6 || frame[l3 + 6] !== 17) return 'not_ipv6_udp';
  const plen = v.getUint16(l3 + 4), l4 = l3 + 40;
  if (plen < 8 || l4 + plen > frame.length) return 'truncated';
  const ulen = v.getUint16(l4 + 4);
  if (ulen < 8 || ulen > plen || v.getUint16(l4 + 2) !== 547) return 'not_ipv6_udp';
  const pseudo = pseudoHeaderSum(frame.subarray(l3 + 8, l3 + 24), frame.subarray(l3 + 24, l3 + 40), 17, ulen);
  if (v.getUint16(l4 + 6) === 0 || onesComplementSum(frame.subarray(l4, l4 + ulen), pseudo) !== 0xffff) return 'bad_checksum';
  const b = frame.subarray(l4 + 8, l4 + ulen);
  if (b.length < 4) return 'truncated';
  const opts = walk(b.subarray(4));
  if (!opts) return 'bad_options';
  const src = formatIPv6(frame, l3 + 8);
  if (src === '::' || frame[l3 + 8] === 0xff) return 'not_ipv6_udp';   // a reply needs somewhere to go
  return { type: b[0], xid: b.slice(1, 4), opts, src, srcMac: formatMac(frame, 6) };
}
