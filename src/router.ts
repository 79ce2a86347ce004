// The router side of a switch, in the SDK's words: interfaces (a gateway in a broadcast domain,
// belonging to a compartment), routes, neighbours, source NAT (HNS OutBoundNAT), port mappings (HNS
// PortMapping) and the connection table. Every call validates all of its arguments before it changes
// anything, and names the field it refuses.
import { NetplaneError, check as intIn, checkFlag, abi, PUNT_CLASSES, type PuntClass, type DataplaneView } from './abi.js';
import { parseIPv4, parseIPv6, parseMac, formatIPv4, formatIPv6, formatMac } from './frames.js';

export interface InterfaceSpec {
  id?: number;              // 0-4095; the lowest free one when absent
  compartment?: number;     // routing table and conntrack zone, 0-1023 (default 0)
  network: number;          // the broadcast domain's network
  vlan?: number;            // ... and VLAN (default 0)
  mac?: string;             // gateway MAC (default 02:6e:70:00:hi:lo from the id)
  address?: string;         // gateway address with on-link prefix, "10.0.0.1/24"
  address6?: string;        // gateway IPv6 address with on-link prefix, "fd00::1/64"
  external?: boolean;       // the compartment's uplink: source NAT translates to its address
  tcp?: ConntrackTcp;       // for connections routed in or out through it (either end's interface decides)
  mtu?: number;             // the largest IP packet it sends, 68-65535 (default 1500)
  mssClamp?: MssClamp;      // TCP MSS clamp of the SYNs routed in or out through it (default none)
  silent?: boolean;         // no host replies (TCP RST, ICMP unreachable) to what comes in by it for a router address and nothing handles
  punt?: PuntClass[];       // what it hands to the host (Switch.onPunt) instead of handling: 'dhcp', 'dns', 'uplink', 'host', 'rs', 'dhcp6' (default none)
}

// TCP MSS clamping (nft's `tcp option maxseg size set`): a SYN or SYN-ACK routed in or out through the
// interface has its MSS option lowered to this, 536-65495, or with 'mtu' to the smaller of the ingress
// and egress interfaces' MTUs less 40 (IPv4) / 60 (IPv6) bytes of headers (nft's `rt mtu`, iptables'
// --clamp-mss-to-pmtu). The smaller limit wins when both interfaces have one.
export type MssClamp = number | 'mtu';

// TCP tracking options (Linux's nf_conntrack_tcp_be_liberal and nf_conntrack_tcp_loose).
export interface ConntrackTcp {
  liberal?: boolean;        // segments outside the window pass (the RST check stays); default false
  pickup?: boolean;         // a connection may start mid-stream from a plain ACK segment; default true
}

export interface RouteSpec {
  compartment?: number;
  destination: string;      // "0.0.0.0/0" or "::/0"
  interface?: number;       // egress interface (not for a blackhole)
  nextHop?: string;         // gateway on that interface; absent = on-link
  blackhole?: boolean;      // drop what matches, counted as route_blackhole
}

export interface SourceNatSpec {
  id?: number;              // rule slot 0-255
  compartment?: number;
  source: string;           // internal prefix, "10.0.0.0/24"
  interface: number;        // the external interface traffic leaves through
  address?: string;         // external address (default: the interface's address)
  ports?: [number, number]; // port range; without one a port keeps its class, as Linux masquerade (1-511, 600-1023, 1024-65535)
  endpointIndependent?: boolean; // RFC 4787 endpoint-independent mapping: one external port per internal endpoint
}

export interface PortMappingSpec {
  compartment?: number;
  protocol: 'tcp' | 'udp';
  externalPort: number;
  internalAddress: string;
  internalPort: number;
  vip?: string;             // the external address it applies to (default: any router address)
}

// HCN LoadBalancer: FrontendVIPs (empty: every gateway address, NodePort style), PortMappings with
// their DistributionType, the backends (HostComputeEndpoints' addresses), and the DSR flag.
export type Distribution = 'None' | 'SourceIPProtocol' | 'SourceIP';
export interface LoadBalancerSpec {
  compartment?: number;
  frontendVips?: string[];
  portMappings: Array<{ protocol: 'tcp' | 'udp'; externalPort: number; internalPort?: number; distribution?: Distribution }>;
  backends: string[];
  dsr?: boolean;
}

export interface ConnectionTuple { src: string; dst: string; sport: number; dport: number }

export interface Connection {
  compartment: number;
  family: 4 | 6;
  protocol: number;
  state: string;
  original: ConnectionTuple;
  reply: ConnectionTuple;
  snat: boolean;
  dnat: boolean;
  seenReply: boolean;
  assured: boolean;
  packets: [number, number];
  bytes: [number, number];
  expires: number;          // the `now` (ms, modulo 2^32) it expires at
}

const IF_EXTERNAL = 1;
const IF_TCP_LIBERAL = 2;
const IF_TCP_NO_PICKUP = 4;
const ROUTE_BLACKHOLE = 1;
const MAX_INTERFACES = 4096;
const MAX_SNAT = 256;
const MAX_EXCEPTIONS = 1024;
// snat_set flags (docs/ABI.md).
const SNAT_EIM = 1;
const SNAT_PORT_CLASS = 2;
const MAX_COMPARTMENTS = 1024;
const DEFAULT_MTU = 1500;
const MIN_MTU = 68;
const MIN_MSS_CLAMP = 536;
const MAX_MSS_CLAMP = 65495;
const MSS_CLAMP_MTU = 0xffff;

// An MSS clamp as iface_set_mss_clamp takes it (0 = none).
function mssClampValue(v: MssClamp | undefined): number {
  if (v === undefined) return 0;
  if (v === 'mtu') return MSS_CLAMP_MTU;
  if (typeof v !== 'number') throw new NetplaneError('mssClamp', `expected an MSS ${MIN_MSS_CLAMP}-${MAX_MSS_CLAMP} or 'mtu', got ${JSON.stringify(v)}`);
  intIn('mssClamp', v, MIN_MSS_CLAMP, MAX_MSS_CLAMP);
  return v;
}

export function ipv4Number(s: string, field: string): number {
  try {
    const b = parseIPv4(s);
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  } catch (e) {
    throw new NetplaneError(field, (e as Error).message);
  }
}

export function ipv4String(n: number): string {
  return formatIPv4(new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]));
}

// An IPv6 address as the ABI takes it: four u32 words, most significant first.
export function ipv6Words(s: string, field: string): [number, number, number, number] {
  let b: Uint8Array;
  try { b = parseIPv6(s); } catch (e) { throw new NetplaneError(field, (e as Error).message); }
  const w = (i: number) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
  return [w(0), w(4), w(8), w(12)];
}

export function parsePrefix6(s: string, field: string): [[number, number, number, number], number] {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) throw new NetplaneError(field, `expected an IPv6 prefix like fd00::/64, got ${JSON.stringify(s)}`);
  const len = Number(m[2]);
  if (len > 128) throw new NetplaneError(field, `prefix length ${len} is over 128`);
  return [ipv6Words(m[1], field), len];
}

const isV6 = (s: string) => s.includes(':');

function ipv6String(hi: bigint, lo: bigint): string {
  const b = new Uint8Array(16);
  const d = new DataView(b.buffer);
  d.setBigUint64(0, hi);
  d.setBigUint64(8, lo);
  return formatIPv6(b);
}

export function parsePrefix(s: string, field: string): [number, number] {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) throw new NetplaneError(field, `expected an IPv4 prefix like 10.0.0.0/24, got ${JSON.stringify(s)}`);
  const len = Number(m[2]);
  if (len > 32) throw new NetplaneError(field, `prefix length ${len} is over 32`);
  return [ipv4Number(m[1], field), len];
}

function macParts(s: string, field: string): [number, number] {
  let m: Uint8Array;
  try { m = parseMac(s); } catch (e) { throw new NetplaneError(field, (e as Error).message); }
  if (m[0] & 1) throw new NetplaneError(field, `${s} is a group address, not a station`);
  return [(m[0] << 8) | m[1], ((m[2] << 24) | (m[3] << 16) | (m[4] << 8) | m[5]) >>> 0];
}

function puntMask(classes: PuntClass[] | undefined): number {
  if (classes === undefined) return 0;
  if (!Array.isArray(classes)) throw new NetplaneError('punt', `expected a list of ${Object.keys(PUNT_CLASSES).join(', ')}, got ${JSON.stringify(classes)}`);
  let mask = 0;
  for (const c of classes) {
    const bit = Object.hasOwn(PUNT_CLASSES, c) ? PUNT_CLASSES[c] : undefined;
    if (bit === undefined) throw new NetplaneError('punt', `unknown punt class ${JSON.stringify(c)} (expected one of ${Object.keys(PUNT_CLASSES).join(', ')})`);
    mask |= bit;
  }
  return mask;
}

export class Router {
  readonly interfaces = new Map<number, Required<Omit<InterfaceSpec, 'address' | 'address6' | 'tcp' | 'mtu' | 'mssClamp'>> & { address?: string; address6?: string; tcp?: ConntrackTcp; mtu: number; mssClamp?: MssClamp }>();
  private snatUsed = new Set<number>();
  private balancers = new Map<number, { spec: LoadBalancerSpec; keys: number[][] }>();
  private nextBalancer = 1;
  private exceptionsUsed = new Set<number>();

  constructor(private readonly dp: DataplaneView, private readonly clock: () => number) {}

  addInterface(spec: InterfaceSpec): number {
    const id = spec.id ?? this.free(this.interfaces, MAX_INTERFACES, 'id');
    intIn('id', id, 0, MAX_INTERFACES - 1);
    if (this.interfaces.has(id)) throw new NetplaneError('id', `interface ${id} already exists`);
    const compartment = spec.compartment ?? 0;
    intIn('compartment', compartment, 0, MAX_COMPARTMENTS - 1);
    intIn('network', spec.network, 0, 65535);
    const vlan = spec.vlan ?? 0;
    intIn('vlan', vlan, 0, 4094);
    for (const [other, f] of this.interfaces) {
      if (f.network === spec.network && f.vlan === vlan) throw new NetplaneError('network', `network ${spec.network} VLAN ${vlan} already has interface ${other}`);
    }
    const mac = spec.mac ?? `02:6e:70:00:${(id >> 8).toString(16).padStart(2, '0')}:${(id & 255).toString(16).padStart(2, '0')}`;
    const [hi, lo] = macParts(mac, 'mac');
    const addr = spec.address !== undefined ? parsePrefix(spec.address, 'address') : undefined;
    if (addr && addr[1] === 0) throw new NetplaneError('address', 'an interface address needs an on-link prefix length of 1 to 32');
    const addr6 = spec.address6 !== undefined ? parsePrefix6(spec.address6, 'address6') : undefined;
    if (addr6 && addr6[1] === 0) throw new NetplaneError('address6', 'an interface address needs an on-link prefix length of 1 to 128');
    const mtu = spec.mtu ?? DEFAULT_MTU;
    intIn('mtu', mtu, MIN_MTU, 65535);
    const mss = mssClampValue(spec.mssClamp);
    checkFlag('silent', spec.silent);
    const punt = puntMask(spec.punt);
    const x = this.dp.exports;
    const tcp = spec.tcp ? tcpFlags(spec.tcp) : 0;
    const flags = (spec.external ? IF_EXTERNAL : 0) | (tcp & 1 ? IF_TCP_LIBERAL : 0) | (tcp & 2 ? IF_TCP_NO_PICKUP : 0);
    abi('interface', x.iface_configure(id, compartment, spec.network, vlan, hi, lo, flags));
    const undo = (field: string, e: number) => {
      if (e >= 0) return;
      x.iface_remove(id);
      abi(field, e);
    };
    if (addr) undo('address', x.iface_set_ipv4(id, addr[0], addr[1]));
    if (addr6) undo('address6', x.iface_set_ipv6(id, ...addr6[0], addr6[1]));
    undo('mtu', x.iface_set_mtu(id, mtu));
    if (mss) undo('mssClamp', x.iface_set_mss_clamp(id, mss));
    if (spec.silent) undo('silent', x.iface_set_silent(id, 1));
    if (punt) undo('punt', x.iface_set_punt(id, punt));
    this.interfaces.set(id, { id, compartment, network: spec.network, vlan, mac: formatMac(parseMac(mac)), external: !!spec.external, silent: !!spec.silent, punt: [...(spec.punt ?? [])], address: spec.address, address6: spec.address6, mtu, ...(spec.mssClamp !== undefined ? { mssClamp: spec.mssClamp } : {}), ...(spec.tcp ? { tcp: { ...spec.tcp } } : {}) });
    return id;
  }

  // Whether interface `id` answers traffic to a router address that nothing handles as a Linux host
  // does (TCP RST, ICMP port / protocol unreachable; the default) or stays silent. Counted as a drop
  // either way.
  setSilent(id: number, silent: boolean): void {
    const f = this.interfaces.get(id);
    if (!f) throw new NetplaneError('interface', `no interface ${id}`);
    if (typeof silent !== 'boolean') throw new NetplaneError('silent', `expected true or false, got ${JSON.stringify(silent)}`);
    abi('silent', this.dp.exports.iface_set_silent(id, silent ? 1 : 0));
    f.silent = silent;
  }

  // What interface `id` hands to the host (Switch.onPunt) instead of handling itself: 'dhcp' (DHCPv4
  // to a server: broadcast in its domain, not flooded then, or to its gateway address) and 'dns' (UDP
  // and TCP 53 to its gateway addresses), 'uplink' (everything routed out of it: the socket uplink,
  // src/uplink/), 'host' (other TCP and UDP to its gateway addresses), 'rs' (ICMPv6 router
  // solicitations to ff02::2 or its addresses) and 'dhcp6' (DHCPv6 to ff02::1:2, not flooded then, or
  // to its addresses). [] punts nothing, the default.
  setPunt(id: number, classes: PuntClass[]): void {
    const f = this.interfaces.get(id);
    if (!f) throw new NetplaneError('interface', `no interface ${id}`);
    abi('punt', this.dp.exports.iface_set_punt(id, puntMask(classes)));
    f.punt = [...classes];
  }

  // The interface's MTU: a routed packet larger than it is fragmented (IPv4 without DF) or refused
  // with ICMP fragmentation needed / Packet Too Big (counted as mtu_exceeded).
  setMtu(id: number, mtu: number): void {
    const f = this.interfaces.get(id);
    if (!f) throw new NetplaneError('interface', `no interface ${id}`);
    intIn('mtu', mtu, MIN_MTU, 65535);
    abi('mtu', this.dp.exports.iface_set_mtu(id, mtu));
    f.mtu = mtu;
  }

  // The interface's TCP MSS clamp (MssClamp above); undefined removes it.
  setMssClamp(id: number, clamp: MssClamp | undefined): void {
    const f = this.interfaces.get(id);
    if (!f) throw new NetplaneError('interface', `no interface ${id}`);
    abi('mssClamp', this.dp.exports.iface_set_mss_clamp(id, mssClampValue(clamp)));
    if (clamp === undefined) delete f.mssClamp;
    else f.mssClamp = clamp;
  }

  // How long a datagram's fragments are awaited (ms, default 30 000): a fragment held for its first
  // fragment past it is dropped as ip_fragment_timeout.
  setFragmentTimeout(ms: number): void {
    intIn('ms', ms, 1, 0x7fffffff);
    abi('ms', this.dp.exports.frag_set_timeout(ms));
  }

  removeInterface(id: number): void {
    if (!this.interfaces.has(id)) throw new NetplaneError('interface', `no interface ${id}`);
    abi('interface', this.dp.exports.iface_remove(id));
    this.interfaces.delete(id);
  }

  addRoute(r: RouteSpec): void {
    const c = r.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    const v6 = isV6(r.destination);
    const [prefix, len] = v6 ? [0, 0] : parsePrefix(r.destination, 'destination');
    const p6 = v6 ? parsePrefix6(r.destination, 'destination') : undefined;
    let ifIndex = 0;
    if (!r.blackhole) {
      if (r.interface === undefined) throw new NetplaneError('interface', 'a route needs an egress interface (or blackhole: true)');
      const f = this.interfaces.get(r.interface);
      if (!f) throw new NetplaneError('interface', `no interface ${r.interface}`);
      if (f.compartment !== c) throw new NetplaneError('interface', `interface ${r.interface} is in compartment ${f.compartment}, not ${c}`);
      ifIndex = r.interface;
    }
    const flags = r.blackhole ? ROUTE_BLACKHOLE : 0;
    if (p6) {
      const nh = r.nextHop !== undefined ? ipv6Words(r.nextHop, 'nextHop') : [0, 0, 0, 0];
      abi('route', this.dp.exports.route_add6(c, ...p6[0], p6[1], ifIndex, nh[0], nh[1], nh[2], nh[3], flags));
      return;
    }
    const nh = r.nextHop !== undefined ? ipv4Number(r.nextHop, 'nextHop') : 0;
    abi('route', this.dp.exports.route_add4(c, prefix, len, ifIndex, nh, flags));
  }

  removeRoute(r: { compartment?: number; destination: string }): boolean {
    const c = r.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    let e: number;
    if (isV6(r.destination)) {
      const [w, len] = parsePrefix6(r.destination, 'destination');
      e = this.dp.exports.route_remove6(c, ...w, len);
    } else {
      const [prefix, len] = parsePrefix(r.destination, 'destination');
      e = this.dp.exports.route_remove4(c, prefix, len);
    }
    if (e === -8) return false;
    abi('route', e);
    return true;
  }

  setNeighbor(n: { compartment?: number; address: string; mac: string; interface: number }): void {
    const c = n.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    const v6 = isV6(n.address);
    const a = v6 ? 0 : ipv4Number(n.address, 'address');
    const w = v6 ? ipv6Words(n.address, 'address') : undefined;
    const [hi, lo] = macParts(n.mac, 'mac');
    if (!this.interfaces.has(n.interface)) throw new NetplaneError('interface', `no interface ${n.interface}`);
    if (w) abi('neighbor', this.dp.exports.neighbor_set6(c, ...w, hi, lo, n.interface, this.clock()));
    else abi('neighbor', this.dp.exports.neighbor_set4(c, a, hi, lo, n.interface, this.clock()));
  }

  removeNeighbor(n: { compartment?: number; address: string }): boolean {
    const c = n.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    const e = isV6(n.address)
      ? this.dp.exports.neighbor_remove6(c, ...ipv6Words(n.address, 'address'))
      : this.dp.exports.neighbor_remove4(c, ipv4Number(n.address, 'address'));
    if (e === -8) return false;
    abi('neighbor', e);
    return true;
  }

  addSourceNat(r: SourceNatSpec): number {
    const id = r.id ?? this.free(this.snatUsed, MAX_SNAT, 'id');
    intIn('id', id, 0, MAX_SNAT - 1);
    const c = r.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    const [prefix, len] = parsePrefix(r.source, 'source');
    const f = this.interfaces.get(r.interface);
    if (!f) throw new NetplaneError('interface', `no interface ${r.interface}`);
    if (f.compartment !== c) throw new NetplaneError('interface', `interface ${r.interface} is in compartment ${f.compartment}, not ${c}`);
    const ext = r.address !== undefined ? ipv4Number(r.address, 'address') : 0;
    if (!ext && !f.address) throw new NetplaneError('address', `interface ${r.interface} has no address to translate to; give one`);
    const [plo, phi] = r.ports ?? [1, 65535];
    intIn('ports[0]', plo, 1, 65535);
    intIn('ports[1]', phi, plo, 65535);
    const flags = (r.endpointIndependent ? SNAT_EIM : 0) | (r.ports ? 0 : SNAT_PORT_CLASS);
    abi('sourceNat', this.dp.exports.snat_set(id, c, prefix, len, r.interface, ext, plo, phi, flags));
    this.snatUsed.add(id);
    return id;
  }

  removeSourceNat(id: number): void {
    if (!this.snatUsed.has(id)) throw new NetplaneError('id', `no source NAT rule ${id}`);
    abi('sourceNat', this.dp.exports.snat_clear(id));
    this.snatUsed.delete(id);
  }

  addNatException(e: { id?: number; compartment?: number; destination: string }): number {
    const id = e.id ?? this.free(this.exceptionsUsed, MAX_EXCEPTIONS, 'id');
    intIn('id', id, 0, MAX_EXCEPTIONS - 1);
    const c = e.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    const [prefix, len] = parsePrefix(e.destination, 'destination');
    abi('exception', this.dp.exports.snat_exception_set(id, c, prefix, len));
    this.exceptionsUsed.add(id);
    return id;
  }

  removeNatException(id: number): void {
    if (!this.exceptionsUsed.has(id)) throw new NetplaneError('id', `no NAT exception ${id}`);
    abi('exception', this.dp.exports.snat_exception_clear(id));
    this.exceptionsUsed.delete(id);
  }

  addPortMapping(p: PortMappingSpec): void {
    const [c, proto, vip, ext, int, intPort] = this.mappingArgs(p);
    abi('portMapping', this.dp.exports.port_mapping_add(c, proto, vip, ext, int, intPort));
  }

  removePortMapping(p: Omit<PortMappingSpec, 'internalAddress' | 'internalPort'>): boolean {
    const [c, proto, vip, ext] = this.mappingArgs({ ...p, internalAddress: '0.0.0.1', internalPort: 1 });
    const e = this.dp.exports.port_mapping_remove(c, proto, vip, ext);
    if (e === -8) return false;
    abi('portMapping', e);
    return true;
  }

  private mappingArgs(p: PortMappingSpec): number[] {
    const c = p.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    if (p.protocol !== 'tcp' && p.protocol !== 'udp') throw new NetplaneError('protocol', `must be "tcp" or "udp", got ${JSON.stringify(p.protocol)}`);
    intIn('externalPort', p.externalPort, 1, 65535);
    intIn('internalPort', p.internalPort, 1, 65535);
    const int = ipv4Number(p.internalAddress, 'internalAddress');
    const vip = p.vip !== undefined ? ipv4Number(p.vip, 'vip') : 0;
    return [c, p.protocol === 'tcp' ? 6 : 17, vip, p.externalPort, int, p.internalPort];
  }

  // Creates a load balancer; returns its id. Every frontend x port mapping becomes one balancer in the
  // dataplane, all with the same backends.
  addLoadBalancer(spec: LoadBalancerSpec): number {
    const keys = this.balancerKeys(spec);
    const backends = spec.backends.map((b, i) => ipv4Number(b, `backends[${i}]`));
    if (new Set(backends).size !== backends.length) throw new NetplaneError('backends', 'lists an address twice');
    const x = this.dp.exports;
    const done: number[][] = [];
    try {
      for (const k of keys) {
        abi('loadBalancer', x.lb_set(k[0], k[1], k[2], k[3], k[4], k[5], k[6]));
        done.push(k);
        for (const b of backends) abi('backends', x.lb_backend_add(k[0], k[1], k[2], k[3], b));
      }
    } catch (e) {
      for (const k of done) x.port_mapping_remove(k[0], k[1], k[2], k[3]);
      throw e;
    }
    const id = this.nextBalancer++;
    this.balancers.set(id, { spec: { ...spec, backends: [...spec.backends] }, keys });
    return id;
  }

  // Replaces the backends of a load balancer: new ones take new connections at once; removed ones
  // drain (their connections go on, no new ones come).
  setBackends(id: number, backends: string[]): void {
    const lb = this.balancers.get(id);
    if (!lb) throw new NetplaneError('id', `no load balancer ${id}`);
    const want = backends.map((b, i) => ipv4Number(b, `backends[${i}]`));
    const had = lb.spec.backends.map((b) => ipv4Number(b, 'backends'));
    const x = this.dp.exports;
    for (const k of lb.keys) {
      for (const b of want) if (!had.includes(b)) abi('backends', x.lb_backend_add(k[0], k[1], k[2], k[3], b));
      for (const b of had) if (!want.includes(b)) abi('backends', x.lb_backend_remove(k[0], k[1], k[2], k[3], b));
    }
    lb.spec.backends = [...backends];
  }

  removeLoadBalancer(id: number): void {
    const lb = this.balancers.get(id);
    if (!lb) throw new NetplaneError('id', `no load balancer ${id}`);
    for (const k of lb.keys) this.dp.exports.port_mapping_remove(k[0], k[1], k[2], k[3]);
    this.balancers.delete(id);
  }

  private balancerKeys(spec: LoadBalancerSpec): number[][] {
    const c = spec.compartment ?? 0;
    intIn('compartment', c, 0, MAX_COMPARTMENTS - 1);
    if (!Array.isArray(spec.portMappings) || spec.portMappings.length === 0) throw new NetplaneError('portMappings', 'a load balancer needs at least one port mapping');
    const vips = (spec.frontendVips ?? []).map((v, i) => ipv4Number(v, `frontendVips[${i}]`));
    const dists: Record<string, number> = { None: 0, SourceIPProtocol: 1, SourceIP: 2 };
    const keys: number[][] = [];
    spec.portMappings.forEach((pm, i) => {
      if (pm.protocol !== 'tcp' && pm.protocol !== 'udp') throw new NetplaneError(`portMappings[${i}].protocol`, `must be "tcp" or "udp", got ${JSON.stringify(pm.protocol)}`);
      intIn(`portMappings[${i}].externalPort`, pm.externalPort, 1, 65535);
      const ip = pm.internalPort ?? pm.externalPort;
      intIn(`portMappings[${i}].internalPort`, ip, 1, 65535);
      if (spec.dsr && ip !== pm.externalPort) throw new NetplaneError(`portMappings[${i}].internalPort`, 'direct server return cannot change the port');
      const d = dists[pm.distribution ?? 'None'];
      if (d === undefined) throw new NetplaneError(`portMappings[${i}].distribution`, `must be one of None, SourceIPProtocol, SourceIP, got ${JSON.stringify(pm.distribution)}`);
      for (const vip of vips.length ? vips : [0]) keys.push([c, pm.protocol === 'tcp' ? 6 : 17, vip, pm.externalPort, ip, d, spec.dsr ? 1 : 0]);
    });
    return keys;
  }

  // The connection table, like `conntrack -L`.
  connections(): Connection[] {
    const dp = this.dp;
    dp.views();
    const x = dp.exports;
    const base = x.ct_table(), size = x.ct_record_size(), n = x.ct_capacity();
    const v = dp.dv;
    const out: Connection[] = [];
    const a6 = x.addr6_table();
    const addr = (n: number, v6: boolean) => v6
      ? ipv6String(v.getBigUint64(a6 + (n - 1) * 24, true), v.getBigUint64(a6 + (n - 1) * 24 + 8, true))
      : ipv4String(n);
    // The tuples are in network byte order (docs/ABI.md).
    const tuple = (r: number, o: number, v6: boolean): ConnectionTuple => ({
      src: addr(v.getUint32(r + o), v6),
      dst: addr(v.getUint32(r + o + 4), v6),
      sport: v.getUint16(r + o + 8),
      dport: v.getUint16(r + o + 10),
    });
    for (let i = 0; i < n; i++) {
      const r = base + i * size;
      const flags = v.getUint8(r + 28);
      if (!(flags & 1)) continue;
      const v6 = (flags & 64) !== 0;
      out.push({
        compartment: v.getUint16(r + 24, true) & 0x7fff,
        family: v6 ? 6 : 4,
        protocol: v.getUint8(r + 26),
        state: dp.ctStates[v.getUint8(r + 27)] ?? 'unknown',
        original: tuple(r, 0, v6),
        reply: tuple(r, 12, v6),
        snat: (flags & 2) !== 0,
        dnat: (flags & 4) !== 0,
        seenReply: (flags & 8) !== 0,
        assured: (flags & 16) !== 0,
        packets: [v.getUint32(r + 64, true), v.getUint32(r + 68, true)],
        bytes: [Number(v.getBigUint64(r + 72, true)), Number(v.getBigUint64(r + 80, true))],
        expires: v.getUint32(r + 36, true),
      });
    }
    return out;
  }

  flushConnections(compartment?: number): number {
    if (compartment !== undefined) intIn('compartment', compartment, 0, MAX_COMPARTMENTS - 1);
    return this.dp.exports.ct_flush(compartment ?? 0x10000);
  }

  // Timeout of a conntrack state by name (e.g. "ESTABLISHED", "UDP_UNREPLIED"), in ms.
  setConntrackTimeout(state: string, ms: number): void {
    const i = this.dp.ctStates.indexOf(state);
    if (i <= 0) throw new NetplaneError('state', `unknown conntrack state ${JSON.stringify(state)}; one of ${this.dp.ctStates.slice(1).join(', ')}`);
    intIn('ms', ms, 1, 0x7fffffff);
    abi('timeout', this.dp.exports.ct_set_timeout(i, ms));
  }

  // TCP tracking of a compartment's conntrack zone (both families), from each connection's next packet.
  setConntrackTcp(compartment: number, tcp: ConntrackTcp): void {
    intIn('compartment', compartment, 0, MAX_COMPARTMENTS - 1);
    abi('tcp', this.dp.exports.ct_zone_set_tcp(compartment, tcpFlags(tcp)));
  }

  conntrackTcp(compartment = 0): Required<ConntrackTcp> {
    intIn('compartment', compartment, 0, MAX_COMPARTMENTS - 1);
    return tcpTracking(this.dp.exports.ct_zone_tcp(compartment));
  }

  conntrackTimeouts(): Record<string, number> {
    const out: Record<string, number> = {};
    this.dp.ctStates.forEach((name, i) => { if (i > 0) out[name] = this.dp.exports.ct_timeout(i); });
    return out;
  }

  neighbors(): Array<{ compartment: number; address: string; mac: string; interface: number; static: boolean }> {
    const dp = this.dp;
    dp.views();
    const x = dp.exports;
    const base = x.neighbor_table(), n = x.neighbor_slots();
    const v = dp.dv;
    const out = [];
    for (let i = 0; i < n; i++) {
      const s = base + i * 32;
      const fam = v.getUint8(s + 18);
      if (fam !== 4 && fam !== 6) continue;
      out.push({
        compartment: v.getUint16(s + 16, true),
        address: fam === 4 ? ipv4String(Number(v.getBigUint64(s + 8, true))) : ipv6String(v.getBigUint64(s, true), v.getBigUint64(s + 8, true)),
        mac: formatMac(dp.u8, s + 22),
        interface: v.getUint16(s + 20, true),
        static: v.getUint8(s + 19) === 2,
      });
    }
    return out;
  }

  setRateLimit(which: 'icmpErrors' | 'arpRequests', perSecond: number, burst: number): void {
    intIn('perSecond', perSecond, 1, 0xffffffff);
    intIn('burst', burst, 1, 1_000_000);
    abi(which, this.dp.exports.ratelimit_set(which === 'icmpErrors' ? 0 : 1, perSecond, burst));
  }

  private free(used: { has(i: number): boolean }, max: number, field: string): number {
    for (let i = 0; i < max; i++) if (!used.has(i)) return i;
    throw new NetplaneError(field, `all ${max} are in use`);
  }
}

// ct_zone_set_tcp's flags: 1 liberal, 2 no pickup.
export function tcpFlags(tcp: ConntrackTcp): number {
  for (const k of ['liberal', 'pickup'] as const) {
    if (tcp[k] !== undefined && typeof tcp[k] !== 'boolean') throw new NetplaneError(`tcp.${k}`, `must be true or false, got ${JSON.stringify(tcp[k])}`);
  }
  return (tcp.liberal ? 1 : 0) | (tcp.pickup === false ? 2 : 0);
}
export function tcpTracking(flags: number): Required<ConntrackTcp> {
  return { liberal: (flags & 1) !== 0, pickup: (flags & 2) === 0 };
}
