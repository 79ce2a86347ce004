// Validation of the HCN-shaped model: every refusal is a ModelError naming the field path (as
// `Policies[2].Settings.ExternalPort`) and the reason, and nothing is ever half-accepted: objects are
// validated whole before the store changes. Validation also normalises what HCN leaves loose
// (addresses in canonical form, MACs lower-case with colons).
import { parseIPv4, parseIPv6, parseMac, formatMac, formatIPv4, formatIPv6 } from '../frames.js';
import { normalize as normalizeAcl, AclError } from '../compile/acl.js';
import type {
  HostComputeNetwork, HostComputeEndpoint, HostComputeNamespace, HostComputeLoadBalancer,
  NetworkType, Route, Subnet, Transport, RemoteEndpointSpec, DhcpSettings, AclPolicySetting, OutboundNatPolicySetting, PortMappingPolicySetting,
} from './types.js';

export type ErrorCode = 'NotFound' | 'AlreadyExists' | 'InvalidArgument' | 'Conflict' | 'Unavailable';   // Unavailable: the cluster's etcd (src/cluster)

export class ModelError extends Error {
  constructor(readonly code: ErrorCode, readonly field: string, readonly reason: string) {
    super(`${code}: ${field}: ${reason}`);
    this.name = 'ModelError';
  }
}

const invalid = (field: string, reason: string) => new ModelError('InvalidArgument', field, reason);

const NETWORK_TYPES: NetworkType[] = ['NAT', 'Transparent', 'L2Bridge', 'Internal', 'Private', 'Overlay'];

// The network types with a gateway of their own (a router interface in the host compartment), which
// runs the gateway's services (DHCP, DNS, RAs, DHCPv6) and may clamp MSS or be silent.
export const GATEWAY_TYPES: NetworkType[] = ['NAT', 'Internal', 'Overlay'];
export const hasOwnGateway = (t: NetworkType): boolean => GATEWAY_TYPES.includes(t);

// The VXLAN network identifier: 24 bits, 0 reserved (HCN's VSID takes 4096 and up by convention;
// any 1-16777215 is accepted here, as Linux's vxlan id).
export const VSID_MAX = 0xffffff;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function id(v: unknown, field: string): string {
  if (typeof v !== 'string' || !ID.test(v)) throw invalid(field, `must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit; got ${JSON.stringify(v)}`);
  return v;
}

function optString(v: unknown, field: string, max = 256): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > max) throw invalid(field, `must be a string of at most ${max} characters`);
  return v;
}

function int(v: unknown, field: string, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw invalid(field, `must be an integer from ${lo} to ${hi}, got ${JSON.stringify(v)}`);
  return v;
}

function array<T>(v: unknown, field: string, each: (x: unknown, f: string) => T): T[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid(field, 'must be an array');
  return v.map((x, i) => each(x, `${field}[${i}]`));
}

function object(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(field, 'must be an object');
  return v as Record<string, unknown>;
}

function known(o: Record<string, unknown>, field: string, keys: string[]): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw invalid(field ? `${field}.${k}` : k, `unknown field (known: ${keys.join(', ')})`);
  }
}

export function address(v: unknown, field: string): { text: string; v6: boolean; bytes: Uint8Array } {
  if (typeof v !== 'string') throw invalid(field, 'must be an IP address string');
  try {
    if (v.includes(':')) { const b = parseIPv6(v); return { text: formatIPv6(b), v6: true, bytes: b }; }
    const b = parseIPv4(v);
    return { text: formatIPv4(b), v6: false, bytes: b };
  } catch (e) {
    throw invalid(field, (e as Error).message);
  }
}

export function prefix(v: unknown, field: string): { text: string; v6: boolean; bytes: Uint8Array; len: number } {
  if (typeof v !== 'string' || v.split('/').length !== 2) throw invalid(field, `must be a prefix in CIDR form like 10.0.0.0/24, got ${JSON.stringify(v)}`);
  const [a, l] = v.split('/');
  const addr = address(a, field);
  const max = addr.v6 ? 128 : 32;
  if (!/^\d{1,3}$/.test(l) || Number(l) > max) throw invalid(field, `prefix length must be 0-${max}, got ${JSON.stringify(l)}`);
  const len = Number(l);
  // Canonical: host bits cleared.
  const bytes = addr.bytes.slice();
  for (let bit = len; bit < max; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  return { text: `${addr.v6 ? formatIPv6(bytes) : formatIPv4(bytes)}/${len}`, v6: addr.v6, bytes, len };
}

// The gateway of a subnet: the NextHop of its default route, else the subnet's first address.
export function gatewayOf(subnet: { IpAddressPrefix: string; Routes?: Array<{ NextHop: string; DestinationPrefix: string }> }): string {
  const d = subnet.Routes?.find((r) => r.DestinationPrefix === '0.0.0.0/0' || r.DestinationPrefix === '::/0');
  if (d) return d.NextHop;
  const p = prefix(subnet.IpAddressPrefix, 'IpAddressPrefix');
  const b = p.bytes.slice();
  b[b.length - 1] |= 1;
  return p.v6 ? formatIPv6(b) : formatIPv4(b);
}

function mac(v: unknown, field: string): string {
  if (typeof v !== 'string') throw invalid(field, 'must be a MAC address string');
  let b: Uint8Array;
  try { b = parseMac(v); } catch (e) { throw invalid(field, (e as Error).message); }
  if (b[0] & 1) throw invalid(field, `${v} is a group address, not a station`);
  return formatMac(b);
}

function route(v: unknown, field: string): Route {
  const o = object(v, field);
  known(o, field, ['NextHop', 'DestinationPrefix', 'Metric']);
  const r: Route = { NextHop: address(o.NextHop, `${field}.NextHop`).text, DestinationPrefix: prefix(o.DestinationPrefix, `${field}.DestinationPrefix`).text };
  if (o.Metric !== undefined) r.Metric = int(o.Metric, `${field}.Metric`, 0, 255);
  return r;
}

function acl(v: unknown, field: string): AclPolicySetting {
  const o = object(v, field);
  known(o, field, ['Id', 'Protocols', 'Action', 'Direction', 'LocalAddresses', 'RemoteAddresses', 'LocalPorts', 'RemotePorts', 'RuleType', 'Priority']);
  if (o.RuleType !== undefined && o.RuleType !== 'Switch' && o.RuleType !== 'Host') throw invalid(`${field}.RuleType`, 'must be "Switch" or "Host"');
  if (o.Id !== undefined && typeof o.Id !== 'string') throw invalid(`${field}.Id`, 'must be a string');
  // The compiler also takes numbers and arrays (the SDK's rules); what it would choke on, read
  // loosely through Number() ("0x11", "1e1", "-0"), or let pass after a 256 ("256, 1000"), is
  // refused here with the field named.
  const p = o.Protocols;
  if (p !== undefined) {
    const items = typeof p === 'string' ? p.split(',').map((x) => x.trim()).filter((x) => x !== '') : typeof p === 'number' ? [p] : Array.isArray(p) ? p : undefined;
    const protocol = (x: unknown) => (typeof p === 'string' ? /^\d+$/.test(x as string) : typeof x === 'number') && Number.isInteger(Number(x)) && Number(x) >= 0 && Number(x) <= 256;
    if (!items || !items.every(protocol)) throw invalid(`${field}.Protocols`, `must be protocol numbers 0-256 (256: any), as decimals ("6, 17"), a number or an array of numbers, got ${JSON.stringify(p)}`);
  }
  for (const k of ['LocalAddresses', 'RemoteAddresses', 'LocalPorts', 'RemotePorts']) {
    const x = o[k];
    if (x !== undefined && typeof x !== 'string' && !(Array.isArray(x) && x.every((y) => typeof y === 'string'))) throw invalid(`${field}.${k}`, 'must be a comma-separated string or an array of strings');
  }
  try {
    normalizeAcl(o as unknown as AclPolicySetting, 0);
  } catch (e) {
    if (e instanceof AclError) throw invalid(`${field}.${e.field.replace(/^rules\[0\]\./, '')}`, e.reason);
    throw e;
  }
  return o as unknown as AclPolicySetting;
}

function outboundNat(v: unknown, field: string): OutboundNatPolicySetting {
  const o = object(v, field);
  known(o, field, ['VirtualIP', 'Exceptions']);
  const s: OutboundNatPolicySetting = {};
  if (o.VirtualIP !== undefined) {
    const a = address(o.VirtualIP, `${field}.VirtualIP`);
    if (a.v6) throw invalid(`${field}.VirtualIP`, 'IPv6 is not translated (there is no NAT66)');
    s.VirtualIP = a.text;
  }
  if (o.Exceptions !== undefined) {
    s.Exceptions = array(o.Exceptions, `${field}.Exceptions`, (x, f) => {
      const p = typeof x === 'string' && !x.includes('/') ? prefix(`${x}/32`, f) : prefix(x, f);
      if (p.v6) throw invalid(f, 'IPv6 is not translated (there is no NAT66)');
      return p.text;
    });
  }
  return s;
}

function portMapping(v: unknown, field: string): PortMappingPolicySetting {
  const o = object(v, field);
  known(o, field, ['Protocol', 'InternalPort', 'ExternalPort', 'VIP']);
  if (o.Protocol !== 6 && o.Protocol !== 17) throw invalid(`${field}.Protocol`, `must be 6 (TCP) or 17 (UDP), got ${JSON.stringify(o.Protocol)}`);
  const s: PortMappingPolicySetting = {
    Protocol: o.Protocol,
    InternalPort: int(o.InternalPort, `${field}.InternalPort`, 1, 65535),
    ExternalPort: int(o.ExternalPort, `${field}.ExternalPort`, 1, 65535),
  };
  if (o.VIP !== undefined) {
    const a = address(o.VIP, `${field}.VIP`);
    if (a.v6) throw invalid(`${field}.VIP`, 'port mappings are IPv4 (there is no NAT66)');
    s.VIP = a.text;
  }
  return s;
}

export function validateNetwork(v: unknown): HostComputeNetwork {
  const o = object(v, '');
  known(o, '', ['ID', 'Name', 'Type', 'Ipams', 'Policies', 'MacPool', 'Dns', 'GroupFwdMask', 'TcpTracking', 'MTU', 'MssClamp', 'SilentGateway', 'Dhcp', 'DnsProxy', 'RouterAdvertisement', 'Dhcp6']);
  if (!NETWORK_TYPES.includes(o.Type as NetworkType)) throw invalid('Type', `must be one of ${NETWORK_TYPES.join(', ')}, got ${JSON.stringify(o.Type)}`);
  const n: HostComputeNetwork = { ID: id(o.ID, 'ID'), Type: o.Type as NetworkType };
  const name = optString(o.Name, 'Name');
  if (name !== undefined) n.Name = name;
  if (o.MTU !== undefined) n.MTU = int(o.MTU, 'MTU', 68, 65535);
  if (o.Ipams !== undefined) {
    n.Ipams = array(o.Ipams, 'Ipams', (x, f) => {
      const ipam = object(x, f);
      known(ipam, f, ['Type', 'Subnets']);
      if (ipam.Type !== undefined && ipam.Type !== 'Static') throw invalid(`${f}.Type`, 'only "Static" is supported (no DHCP server)');
      return {
        ...(ipam.Type ? { Type: 'Static' as const } : {}),
        Subnets: array(ipam.Subnets, `${f}.Subnets`, (y, g) => {
          const s = object(y, g);
          known(s, g, ['IpAddressPrefix', 'Routes', 'Policies']);
          const p = prefix(s.IpAddressPrefix, `${g}.IpAddressPrefix`);
          if (!p.v6 && p.len > 30) throw invalid(`${g}.IpAddressPrefix`, 'an IPv4 subnet needs room for a gateway and endpoints (/30 at most)');
          const subnet: Subnet = { IpAddressPrefix: p.text };
          if (s.Routes !== undefined) subnet.Routes = array(s.Routes, `${g}.Routes`, route);
          if (s.Policies !== undefined) {
            subnet.Policies = array(s.Policies, `${g}.Policies`, (z, h) => {
              const pol = object(z, h);
              known(pol, h, ['Type', 'Settings']);
              if (pol.Type !== 'VLAN' && pol.Type !== 'VSID') throw invalid(`${h}.Type`, `the subnet policies supported are "VLAN" and "VSID", got ${JSON.stringify(pol.Type)}`);
              // An Overlay network's segment is its VSID (the VNI); the other types have none.
              if (pol.Type === 'VSID' && n.Type !== 'Overlay') throw invalid(`${h}.Type`, `a VSID is an Overlay network's; a ${n.Type} network has none`);
              if (pol.Type === 'VLAN' && n.Type === 'Overlay') throw invalid(`${h}.Type`, 'an Overlay network is segmented by its VSID, not a VLAN');
              const st = object(pol.Settings, `${h}.Settings`);
              known(st, `${h}.Settings`, ['IsolationId']);
              const max = pol.Type === 'VLAN' ? 4094 : VSID_MAX;
              return { Type: pol.Type as 'VLAN', Settings: { IsolationId: int(st.IsolationId, `${h}.Settings.IsolationId`, 1, max) } };
            });
          }
          return subnet;
        }),
      };
    });
  }
  if (n.Type === 'Overlay') overlayVsid(n);
  if (o.Policies !== undefined) {
    n.Policies = array(o.Policies, 'Policies', (x, f) => {
      const p = object(x, f);
      known(p, f, ['Type', 'Settings']);
      if (p.Type === 'NetworkACL') return { Type: 'NetworkACL' as const, Settings: acl(p.Settings, `${f}.Settings`) };
      if (p.Type === 'OutBoundNAT') return { Type: 'OutBoundNAT' as const, Settings: outboundNat(p.Settings, `${f}.Settings`) };
      throw invalid(`${f}.Type`, `network policies supported are "NetworkACL" and "OutBoundNAT", got ${JSON.stringify(p.Type)}`);
    });
  }
  if (o.MacPool !== undefined) {
    const mp = object(o.MacPool, 'MacPool');
    known(mp, 'MacPool', ['Ranges']);
    n.MacPool = {
      Ranges: array(mp.Ranges, 'MacPool.Ranges', (x, f) => {
        const r = object(x, f);
        known(r, f, ['StartMacAddress', 'EndMacAddress']);
        const s = mac(r.StartMacAddress, `${f}.StartMacAddress`), e = mac(r.EndMacAddress, `${f}.EndMacAddress`);
        if (macNumber(s) > macNumber(e)) throw invalid(`${f}.EndMacAddress`, 'is before StartMacAddress');
        return { StartMacAddress: s, EndMacAddress: e };
      }),
    };
  }
  if (o.Dns !== undefined) n.Dns = dns(o.Dns, 'Dns');
  if (o.GroupFwdMask !== undefined) {
    const m = int(o.GroupFwdMask, 'GroupFwdMask', 0, 0xffff);
    // As Linux's bridge refuses them: STP is the bridge's own, PAUSE and LACP are link-local by definition.
    if (m & 0x7) throw invalid('GroupFwdMask', 'bits 0-2 (STP, PAUSE, LACP: 01:80:c2:00:00:00-02) can never be forwarded');
    n.GroupFwdMask = m;
  }
  if (o.TcpTracking !== undefined) {
    const t = object(o.TcpTracking, 'TcpTracking');
    known(t, 'TcpTracking', ['Liberal', 'Pickup']);
    n.TcpTracking = {};
    for (const k of ['Liberal', 'Pickup'] as const) {
      if (t[k] === undefined) continue;
      if (typeof t[k] !== 'boolean') throw invalid(`TcpTracking.${k}`, `must be true or false, got ${JSON.stringify(t[k])}`);
      n.TcpTracking[k] = t[k] as boolean;
    }
  }
  if (o.MssClamp !== undefined) {
    if (o.MssClamp !== 'Mtu' && typeof o.MssClamp !== 'number') throw invalid('MssClamp', `must be an MSS from 536 to 65495 or "Mtu", got ${JSON.stringify(o.MssClamp)}`);
    if (!hasOwnGateway(n.Type)) throw invalid('MssClamp', `a ${n.Type} network has no gateway of its own to clamp at`);
    n.MssClamp = o.MssClamp === 'Mtu' ? 'Mtu' : int(o.MssClamp, 'MssClamp', 536, 65495);
  }
  if (o.SilentGateway !== undefined) {
    if (typeof o.SilentGateway !== 'boolean') throw invalid('SilentGateway', `must be true or false, got ${JSON.stringify(o.SilentGateway)}`);
    if (!hasOwnGateway(n.Type)) throw invalid('SilentGateway', `a ${n.Type} network has no gateway of its own`);
    n.SilentGateway = o.SilentGateway;
  }
  if (n.Type === 'NAT' && !(n.Ipams?.some((i) => i.Subnets.some((s) => !s.IpAddressPrefix.includes(':'))))) {
    throw invalid('Ipams', 'a NAT network needs an IPv4 subnet');
  }
  if (o.Dhcp !== undefined) n.Dhcp = dhcp(o.Dhcp, n);
  // The gateway's other services, each { Enabled? } (src/model/dns.ts, src/model/ipv6.ts).
  for (const [k, what] of [['DnsProxy', 'answer DNS'], ['RouterAdvertisement', 'advertise'], ['Dhcp6', 'serve DHCPv6']] as const) {
    if (o[k] === undefined) continue;
    const d = object(o[k], k);
    known(d, k, ['Enabled']);
    if (!hasOwnGateway(n.Type)) throw invalid(k, `a ${n.Type} network has no gateway of its own to ${what}`);
    n[k] = {};
    if (d.Enabled !== undefined) {
      if (typeof d.Enabled !== 'boolean') throw invalid(`${k}.Enabled`, `must be true or false, got ${JSON.stringify(d.Enabled)}`);
      n[k]!.Enabled = d.Enabled;
    }
  }
  if (n.MTU !== undefined && n.MTU < 1280 && n.Ipams?.some((i) => i.Subnets.some((s) => s.IpAddressPrefix.includes(':')))) {
    throw invalid('MTU', `${n.MTU} is below 1280, the least an IPv6 link may have (RFC 8200 §5), and the network has an IPv6 subnet`);
  }
  return n;
}

// An Overlay network's VSID: every subnet carries one (HCN puts it on each subnet), the same one,
// since a netplane network is one broadcast domain and so one VXLAN segment.
function overlayVsid(n: HostComputeNetwork): void {
  const subnets = (n.Ipams ?? []).flatMap((ipam, i) => ipam.Subnets.map((s, j) => ({ s, at: `Ipams[${i}].Subnets[${j}]` })));
  if (subnets.length === 0) throw invalid('Ipams', 'an Overlay network needs a subnet with its VSID policy ({ Type: "VSID", Settings: { IsolationId } })');
  let first: number | undefined;
  for (const { s, at } of subnets) {
    const vsids = (s.Policies ?? []).map((p, k) => ({ p, k })).filter((x) => x.p.Type === 'VSID');
    if (vsids.length === 0) throw invalid(`${at}.Policies`, 'an Overlay network\'s subnets each carry its VSID policy ({ Type: "VSID", Settings: { IsolationId: 1-16777215 } })');
    for (const { p, k } of vsids) {
      first ??= p.Settings.IsolationId;
      if (p.Settings.IsolationId !== first) throw invalid(`${at}.Policies[${k}].Settings.IsolationId`, `${p.Settings.IsolationId} differs from the network's VSID ${first}: a network is one broadcast domain, one VXLAN segment`);
    }
  }
}

// The VSID (VNI) of an Overlay network and the path of its first policy, undefined for other types.
export function vsidAt(n: HostComputeNetwork): { vni: number; field: string } | undefined {
  if (n.Type !== 'Overlay') return undefined;
  for (const [i, ipam] of (n.Ipams ?? []).entries()) {
    for (const [j, s] of ipam.Subnets.entries()) {
      for (const [k, p] of (s.Policies ?? []).entries()) if (p.Type === 'VSID') return { vni: p.Settings.IsolationId, field: `Ipams[${i}].Subnets[${j}].Policies[${k}].Settings.IsolationId` };
    }
  }
  return undefined;
}
export const vsidOf = (n: HostComputeNetwork): number | undefined => vsidAt(n)?.vni;

// The network's DHCP server settings (the defaults are src/model/dhcp.ts's). A pool is part of the
// gateway's subnet (the network's first IPv4 one): no network or broadcast address, not the gateway.
function dhcp(v: unknown, n: HostComputeNetwork): DhcpSettings {
  const o = object(v, 'Dhcp');
  known(o, 'Dhcp', ['Enabled', 'UnknownClients', 'Pool', 'LeaseTime']);
  if (!hasOwnGateway(n.Type)) throw invalid('Dhcp', `a ${n.Type} network has no gateway of its own to serve DHCP`);
  const d: DhcpSettings = {};
  if (o.Enabled !== undefined) {
    if (typeof o.Enabled !== 'boolean') throw invalid('Dhcp.Enabled', `must be true or false, got ${JSON.stringify(o.Enabled)}`);
    d.Enabled = o.Enabled;
  }
  if (o.UnknownClients !== undefined) {
    if (o.UnknownClients !== 'Lease' && o.UnknownClients !== 'Refuse') throw invalid('Dhcp.UnknownClients', `must be "Lease" or "Refuse", got ${JSON.stringify(o.UnknownClients)}`);
    d.UnknownClients = o.UnknownClients;
  }
  if (o.LeaseTime !== undefined) d.LeaseTime = int(o.LeaseTime, 'Dhcp.LeaseTime', 60, 0xfffffffe);
  const v4 = (n.Ipams ?? []).flatMap((i) => i.Subnets).find((s) => !s.IpAddressPrefix.includes(':'));
  if (!v4 && d.Enabled !== false) throw invalid('Dhcp', 'DHCPv4 needs an IPv4 subnet (set Dhcp.Enabled to false, or add one)');
  if (o.Pool !== undefined) {
    const p = object(o.Pool, 'Dhcp.Pool');
    known(p, 'Dhcp.Pool', ['StartAddress', 'EndAddress']);
    if (d.UnknownClients === 'Refuse') throw invalid('Dhcp.Pool', 'a pool serves unknown clients, and UnknownClients is "Refuse"');
    const sub = prefix(v4!.IpAddressPrefix, 'IpAddressPrefix');
    const num = (b: Uint8Array) => ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
    const base = num(sub.bytes), last = base + 2 ** (32 - sub.len) - 1;
    const gw = num(address(gatewayOf(v4!), 'gateway').bytes);
    const at = (x: unknown, f: string) => {
      const a = address(x, f);
      if (a.v6) throw invalid(f, 'must be an IPv4 address');
      const k = num(a.bytes);
      if (k <= base || k >= last) throw invalid(f, `${a.text} is not a host address of the subnet ${v4!.IpAddressPrefix}`);
      if (k === gw) throw invalid(f, `${a.text} is the gateway`);
      return { text: a.text, k };
    };
    const s = at(p.StartAddress, 'Dhcp.Pool.StartAddress'), e = at(p.EndAddress, 'Dhcp.Pool.EndAddress');
    if (e.k < s.k) throw invalid('Dhcp.Pool.EndAddress', `${e.text} is before StartAddress ${s.text}`);
    if (gw > s.k && gw < e.k) throw invalid('Dhcp.Pool', `the pool ${s.text}-${e.text} contains the gateway ${formatIPv4(new Uint8Array([gw >>> 24, (gw >>> 16) & 255, (gw >>> 8) & 255, gw & 255]))}`);
    d.Pool = { StartAddress: s.text, EndAddress: e.text };
  }
  return d;
}

function dns(v: unknown, field: string) {
  const o = object(v, field);
  known(o, field, ['Domain', 'Search', 'ServerList', 'Options']);
  const d: HostComputeEndpoint['Dns'] = {};
  const dom = optString(o.Domain, `${field}.Domain`);
  if (dom !== undefined) d.Domain = dom;
  if (o.Search !== undefined) d.Search = array(o.Search, `${field}.Search`, (x, f) => optString(x, f) ?? '');
  if (o.ServerList !== undefined) d.ServerList = array(o.ServerList, `${field}.ServerList`, (x, f) => address(x, f).text);
  if (o.Options !== undefined) d.Options = array(o.Options, `${field}.Options`, (x, f) => optString(x, f) ?? '');
  return d;
}

export function macNumber(m: string): number {
  return parseInt(m.replace(/:/g, ''), 16);
}

export function validateEndpoint(v: unknown): HostComputeEndpoint {
  const o = object(v, '');
  // Status is what the daemon reports (read only): accepted back from a client that read the object
  // and ignored, so get-edit-put works.
  known(o, '', ['ID', 'Name', 'HostComputeNetwork', 'HostComputeNamespace', 'MacAddress', 'IpConfigurations', 'Routes', 'Dns', 'Policies', 'Transport', 'Capture', 'AclDefaults', 'IsRemoteEndpoint', 'Status']);
  const e: HostComputeEndpoint = { ID: id(o.ID, 'ID'), HostComputeNetwork: id(o.HostComputeNetwork, 'HostComputeNetwork') };
  const name = optString(o.Name, 'Name');
  if (name !== undefined) e.Name = name;
  if (o.HostComputeNamespace !== undefined) e.HostComputeNamespace = id(o.HostComputeNamespace, 'HostComputeNamespace');
  if (o.MacAddress !== undefined) e.MacAddress = mac(o.MacAddress, 'MacAddress');
  if (o.IpConfigurations !== undefined) {
    e.IpConfigurations = array(o.IpConfigurations, 'IpConfigurations', (x, f) => {
      const c = object(x, f);
      known(c, f, ['IpAddress', 'PrefixLength']);
      const a = address(c.IpAddress, `${f}.IpAddress`);
      const cfg: { IpAddress: string; PrefixLength?: number } = { IpAddress: a.text };
      if (c.PrefixLength !== undefined) cfg.PrefixLength = int(c.PrefixLength, `${f}.PrefixLength`, 0, a.v6 ? 128 : 32);
      return cfg;
    });
  }
  if (o.Routes !== undefined) e.Routes = array(o.Routes, 'Routes', route);
  if (o.Dns !== undefined) e.Dns = dns(o.Dns, 'Dns');
  if (o.Policies !== undefined) {
    e.Policies = array(o.Policies, 'Policies', (x, f) => {
      const p = object(x, f);
      known(p, f, ['Type', 'Settings']);
      if (p.Type === 'PortMapping') return { Type: 'PortMapping' as const, Settings: portMapping(p.Settings, `${f}.Settings`) };
      if (p.Type === 'ACL') return { Type: 'ACL' as const, Settings: acl(p.Settings, `${f}.Settings`) };
      if (p.Type === 'OutBoundNAT') return { Type: 'OutBoundNAT' as const, Settings: outboundNat(p.Settings, `${f}.Settings`) };
      if (p.Type === 'ProviderAddress') {
        const st = object(p.Settings, `${f}.Settings`);
        known(st, `${f}.Settings`, ['ProviderAddress']);
        const pa = address(st.ProviderAddress, `${f}.Settings.ProviderAddress`);
        if (pa.v6) throw invalid(`${f}.Settings.ProviderAddress`, 'the underlay is IPv4: a provider address is an IPv4 address');
        if (!unicast4(pa.bytes)) throw invalid(`${f}.Settings.ProviderAddress`, `${pa.text} is not a unicast host address`);
        return { Type: 'ProviderAddress' as const, Settings: { ProviderAddress: pa.text } };
      }
      throw invalid(`${f}.Type`, `endpoint policies supported are "PortMapping", "ACL", "OutBoundNAT" and "ProviderAddress", got ${JSON.stringify(p.Type)}`);
    });
  }
  if (o.Transport !== undefined) e.Transport = transport(o.Transport, 'Transport');
  if (o.AclDefaults !== undefined) {
    const d = object(o.AclDefaults, 'AclDefaults');
    known(d, 'AclDefaults', ['In', 'Out']);
    for (const k of ['In', 'Out'] as const) {
      if (d[k] !== undefined && d[k] !== 'Allow' && d[k] !== 'Block') throw invalid(`AclDefaults.${k}`, `must be "Allow" or "Block", got ${JSON.stringify(d[k])}`);
    }
    e.AclDefaults = { ...(d.In ? { In: d.In as 'Allow' } : {}), ...(d.Out ? { Out: d.Out as 'Allow' } : {}) };
  }
  if (o.Capture !== undefined) e.Capture = fileName(o.Capture, 'Capture', 'the capture directory');
  if (o.IsRemoteEndpoint !== undefined) {
    if (typeof o.IsRemoteEndpoint !== 'boolean') throw invalid('IsRemoteEndpoint', `must be true or false, got ${JSON.stringify(o.IsRemoteEndpoint)}`);
    if (o.IsRemoteEndpoint) e.IsRemoteEndpoint = true;
  }
  remoteEndpoint(e);
  return e;
}

// A remote endpoint is another host's: what it is (MAC, addresses, the host's provider address) is
// given, never assigned, and nothing here attaches to it (no port: no transport, capture or policy
// acting on a port). Only a remote endpoint has a provider address.
function remoteEndpoint(e: HostComputeEndpoint): void {
  const pas = (e.Policies ?? []).map((p, i) => ({ p, i })).filter((x) => x.p.Type === 'ProviderAddress');
  if (!e.IsRemoteEndpoint) {
    if (pas.length) throw invalid(`Policies[${pas[0].i}].Type`, 'a ProviderAddress policy is a remote endpoint\'s (IsRemoteEndpoint: true)');
    return;
  }
  if (!e.MacAddress) throw invalid('MacAddress', 'a remote endpoint has its MAC given (it is never assigned here)');
  if (!e.IpConfigurations?.length) throw invalid('IpConfigurations', 'a remote endpoint has its addresses given (they are never assigned here)');
  if (pas.length !== 1) throw invalid('Policies', `a remote endpoint has one ProviderAddress policy (its host's underlay address), got ${pas.length}`);
  (e.Policies ?? []).forEach((p, i) => {
    if (p.Type !== 'ProviderAddress') throw invalid(`Policies[${i}].Type`, `a remote endpoint has no ${p.Type} here: its policies apply on its own host`);
  });
  for (const k of ['Transport', 'Capture', 'AclDefaults', 'HostComputeNamespace'] as const) {
    if (e[k] !== undefined) throw invalid(k, 'a remote endpoint has no port on this host to attach');
  }
}

// The provider address of a remote endpoint (its ProviderAddress policy's).
export function providerAddressOf(e: HostComputeEndpoint): string | undefined {
  for (const p of e.Policies ?? []) if (p.Type === 'ProviderAddress') return p.Settings.ProviderAddress;
  return undefined;
}

// A remote endpoint the cluster hands the Host (Host.setRemoteEndpoints), checked and normalised;
// errors name the field under `field` (`[3].MacAddress`).
const MEMBER = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export function validateRemoteEndpointSpec(v: unknown, field: string): RemoteEndpointSpec {
  const o = object(v, field);
  known(o, field, ['ID', 'HostComputeNetwork', 'MacAddress', 'IpAddresses', 'ProviderAddress', 'Host']);
  const f = (k: string) => `${field}.${k}`;
  if (typeof o.Host !== 'string' || !MEMBER.test(o.Host)) throw invalid(f('Host'), `must be a member name, 1-63 of a-z, 0-9 and "-", got ${JSON.stringify(o.Host)}`);
  const ips = array(o.IpAddresses, f('IpAddresses'), (x, g) => address(x, g).text);
  if (ips.length === 0) throw invalid(f('IpAddresses'), 'a remote endpoint has at least one address');
  const pa = address(o.ProviderAddress, f('ProviderAddress'));
  if (pa.v6 || !unicast4(pa.bytes)) throw invalid(f('ProviderAddress'), `must be a unicast IPv4 address (the underlay is IPv4), got ${JSON.stringify(o.ProviderAddress)}`);
  return { ID: id(o.ID, f('ID')), HostComputeNetwork: id(o.HostComputeNetwork, f('HostComputeNetwork')), MacAddress: mac(o.MacAddress, f('MacAddress')), IpAddresses: ips, ProviderAddress: pa.text, Host: o.Host };
}

// A unicast IPv4 host address: not 0/8, loopback, multicast, class E or the limited broadcast.
function unicast4(b: Uint8Array): boolean {
  return b[0] !== 0 && b[0] !== 127 && b[0] < 224;
}

export function hostPort(v: unknown, field: string): { host: string; port: number } {
  const m = typeof v === 'string' ? /^(.+):(\d{1,5})$/.exec(v) : null;
  // Brackets come in a pair, around an IPv6 address ("[::1]:5000").
  const bracketed = m ? /^\[([^[\]]*:[^[\]]*)\]$/.exec(m[1]) : null;
  if (!m || Number(m[2]) > 65535 || Number(m[2]) === 0 || (!bracketed && /[[\]]/.test(m[1]))) throw invalid(field, `must be "host:port" with a port 1-65535, got ${JSON.stringify(v)}`);
  return { host: bracketed ? bracketed[1] : m[1], port: Number(m[2]) };
}

// A file that netplane creates lives in a directory of its own (captures, sockets), named by a plain
// name: no directory part, no "..", no hidden names, so no request can point it anywhere else.
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/;
export function fileName(v: unknown, field: string, where: string): string {
  if (typeof v !== 'string' || !FILE_NAME.test(v)) {
    throw invalid(field, `must be a file name in ${where} (letters, digits, ".", "_", "-"; no "/", no leading "."), got ${JSON.stringify(v)}`);
  }
  return v;
}

// An Origin as a browser sends it: scheme://host[:port], nothing else.
function origin(v: unknown, field: string): string {
  let u: URL | undefined;
  try { u = typeof v === 'string' ? new URL(v) : undefined; } catch { u = undefined; }
  if (!u || u.origin !== v || u.origin === 'null') throw invalid(field, `must be an origin like "https://example.com" or "http://localhost:8000", got ${JSON.stringify(v)}`);
  return v as string;
}

export function transport(v: unknown, field: string): Transport {
  const o = object(v, field);
  if (o.Type === 'udp') {
    known(o, field, ['Type', 'Bind', 'Peer']);
    hostPort(o.Bind, `${field}.Bind`);
    if (o.Peer !== undefined) hostPort(o.Peer, `${field}.Peer`);
    return { Type: 'udp', Bind: o.Bind as string, ...(o.Peer !== undefined ? { Peer: o.Peer as string } : {}) };
  }
  if (o.Type === 'stream') {
    known(o, field, ['Type', 'Listen']);
    const l = o.Listen;
    if (typeof l === 'string' && l.startsWith('unix:')) fileName(l.slice(5), `${field}.Listen`, 'the sockets directory ("unix:NAME")');
    else if (typeof l !== 'string' || !l.startsWith('tcp:')) throw invalid(`${field}.Listen`, `must be "tcp:host:port" or "unix:NAME", got ${JSON.stringify(l)}`);
    else hostPort(l.slice(4), `${field}.Listen`);
    return { Type: 'stream', Listen: l };
  }
  if (o.Type === 'websocket') {
    known(o, field, ['Type', 'Listen', 'AllowedOrigins']);
    hostPort(o.Listen, `${field}.Listen`);
    const t: Transport = { Type: 'websocket', Listen: o.Listen as string };
    if (o.AllowedOrigins !== undefined) t.AllowedOrigins = array(o.AllowedOrigins, `${field}.AllowedOrigins`, origin);
    return t;
  }
  throw invalid(`${field}.Type`, `must be "udp", "stream" or "websocket", got ${JSON.stringify(o.Type)}`);
}

export function validateNamespace(v: unknown): HostComputeNamespace {
  const o = object(v, '');
  known(o, '', ['ID', 'Type']);
  const ns: HostComputeNamespace = { ID: id(o.ID, 'ID') };
  if (o.Type !== undefined) {
    if (!['Host', 'HostDefault', 'Guest', 'GuestDefault'].includes(o.Type as string)) throw invalid('Type', 'must be one of Host, HostDefault, Guest, GuestDefault');
    ns.Type = o.Type as HostComputeNamespace['Type'];
  }
  return ns;
}

export function validateLoadBalancer(v: unknown): HostComputeLoadBalancer {
  const o = object(v, '');
  known(o, '', ['ID', 'HostComputeEndpoints', 'SourceVIP', 'FrontendVIPs', 'PortMappings', 'Flags']);
  const lb: HostComputeLoadBalancer = {
    ID: id(o.ID, 'ID'),
    HostComputeEndpoints: array(o.HostComputeEndpoints, 'HostComputeEndpoints', id),
    PortMappings: array(o.PortMappings, 'PortMappings', (x, f) => {
      const p = object(x, f);
      known(p, f, ['Protocol', 'InternalPort', 'ExternalPort', 'DistributionType']);
      if (p.Protocol !== 6 && p.Protocol !== 17) throw invalid(`${f}.Protocol`, `must be 6 (TCP) or 17 (UDP), got ${JSON.stringify(p.Protocol)}`);
      const d = p.DistributionType ?? 'None';
      if (!['None', 'SourceIPProtocol', 'SourceIP'].includes(d as string)) throw invalid(`${f}.DistributionType`, 'must be None, SourceIPProtocol or SourceIP');
      return { Protocol: p.Protocol, InternalPort: int(p.InternalPort, `${f}.InternalPort`, 1, 65535), ExternalPort: int(p.ExternalPort, `${f}.ExternalPort`, 1, 65535), DistributionType: d as 'None' };
    }),
  };
  if (lb.PortMappings.length === 0) throw invalid('PortMappings', 'a load balancer needs at least one port mapping');
  if (o.SourceVIP !== undefined) lb.SourceVIP = address(o.SourceVIP, 'SourceVIP').text;
  if (o.FrontendVIPs !== undefined) lb.FrontendVIPs = array(o.FrontendVIPs, 'FrontendVIPs', (x, f) => address(x, f).text);
  if (o.Flags !== undefined) {
    const fl = object(o.Flags, 'Flags');
    known(fl, 'Flags', ['DSR']);
    if (fl.DSR !== undefined && typeof fl.DSR !== 'boolean') throw invalid('Flags.DSR', 'must be true or false');
    lb.Flags = { DSR: !!fl.DSR };
    if (fl.DSR) lb.PortMappings.forEach((p, i) => { if (p.InternalPort !== p.ExternalPort) throw invalid(`PortMappings[${i}].InternalPort`, 'direct server return cannot change the port'); });
  }
  return lb;
}
