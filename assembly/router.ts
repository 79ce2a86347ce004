// Router interfaces: where a broadcast domain (network, VLAN) meets a compartment's router. Each has a
// gateway MAC and the gateway addresses the dataplane answers ARP and neighbour solicitations for; its
// compartment is the routing table and the conntrack zone for every packet routed in through it.
//
// An interface's gateway MAC is a static MAC table entry on the pseudo-port ROUTER_PORT + index, so
// the ordinary L2 lookup that forwards a frame also finds out that it is for the router, with no
// second table on the hot path. Broadcasts (ARP requests, neighbour solicitations) reach the router
// through the domain map below.

import * as arena from "./arena";
import * as natrules from "./tables/natrules";

export const ROUTER_PORT: u32 = 0xf000;   // pseudo-ports 0xf000 + interface index
export const MAX_INTERFACES: u32 = 4096;

export const DEFAULT_MTU: u32 = 1500;
export const MIN_MTU: u32 = 68;       // RFC 791: every IPv4 module must forward 68 bytes unfragmented

export const IF_FREE: u8 = 0;
export const IF_UP: u8 = 1;

// An interface with IF_EXTERNAL is a compartment's uplink: SNAT translates to its address there.
export const IF_EXTERNAL: u16 = 1;
// TCP tracking of the connections routed in or out through it (nodes/ct.ts): liberal windows, and no
// mid-stream pickup. Either end's interface decides.
export const IF_TCP_LIBERAL: u16 = 2;
export const IF_TCP_NO_PICKUP: u16 = 4;
// An interface with IF_SILENT sends no host replies (TCP RST, ICMP port / protocol unreachable,
// nodes/hostreply.ts) for traffic that came in by it to a router address and that nothing handles.
export const IF_SILENT: u16 = 8;

@unmanaged
export class Iface {
  state: u8;        // 0
  punt: u8;         // 1: PUNT_* classes handed to the host (nodes/punt.ts)
  flags: u16;       // 2: IF_*
  network: u16;     // 4
  vlan: u16;        // 6
  zone: u16;        // 8: the compartment
  prefixLen4: u16;  // 10: the on-link IPv4 prefix length
  ipv4: u32;        // 12: gateway IPv4 address (0 = none)
  mac: u64;         // 16: gateway MAC (wire bytes, packed like tables/mac keys)
  ipv6a: u64;       // 24: gateway IPv6 address, bytes 0-7 (all zero = none)
  ipv6b: u64;       // 32: bytes 8-15
  prefixLen6: u16;  // 40
  mssClamp: u16;    // 42: TCP MSS clamp of SYNs routed in or out through it (nodes/mss.ts): 0 off, MSS_CLAMP_MTU, or the MSS
  mtu: u32;         // 44: the largest IP packet it sends (nodes/mtu.ts)
}

// What an interface punts to the host (iface_set_punt; nodes/punt.ts). Default none.
export const PUNT_DHCP4: u8 = 1;   // DHCPv4 to a server: UDP to port 67, broadcast or to the gateway
export const PUNT_DNS: u8 = 2;     // DNS to a gateway address: UDP and TCP port 53
export const PUNT_UPLINK: u8 = 4;  // everything routed out of it (the socket uplink): no neighbour, no L2
export const PUNT_HOST: u8 = 8;    // TCP and UDP to a gateway address that nothing else takes
export const PUNT_RS: u8 = 16;     // ICMPv6 router solicitations to all-routers or a gateway address
export const PUNT_DHCP6: u8 = 32;  // DHCPv6 to a server: UDP to port 547, at ff02::1:2 or a gateway address
export const PUNT_ALL: u8 = PUNT_DHCP4 | PUNT_DNS | PUNT_UPLINK | PUNT_HOST | PUNT_RS | PUNT_DHCP6;
// Whether any interface punts anything: the one check the broadcast path makes while none does.
export let puntAny = false;

// An MSS clamp that follows the MTUs (iptables' --clamp-mss-to-pmtu, nft's `rt mtu`).
export const MSS_CLAMP_MTU: u16 = 0xffff;
export const MIN_MSS_CLAMP: u32 = 536;     // RFC 9293 §3.7.1: the MSS a host assumes without the option
export const MAX_MSS_CLAMP: u32 = 65495;   // 65535 less the IPv4 and TCP headers

export const IFACE_SIZE: usize = offsetof<Iface>();

// Bumped by every change that can move a connection's egress (routes, neighbours, interfaces):
// connections compare it with the value they cached their next hop under and re-resolve lazily.
export let epoch: u32 = 1;
export function bumpEpoch(): void {
  epoch++;
  if ((epoch & 0xffff) == 0) epoch++; // 0 in a connection's 16-bit copy means "not resolved"
}

export let ifBase: usize = 0;
export let ifCount: u32 = 0;      // one past the highest interface in use
let domainBase: usize = 0;       // (network << 12 | vlan) + 1 -> interface, open addressing, 2 x MAX slots
const DOMAIN_SLOTS: u32 = MAX_INTERFACES * 2;

export function bytes(): u64 { return arena.span(MAX_INTERFACES, IFACE_SIZE) + arena.span(DOMAIN_SLOTS, 8); }

export function alloc(): void {
  ifBase = arena.take(MAX_INTERFACES, IFACE_SIZE);
  domainBase = arena.take(DOMAIN_SLOTS, 8);
}

@inline export function iface(i: u32): Iface {
  return changetype<Iface>(ifBase + <usize>i * IFACE_SIZE);
}

@inline function domainKey(network: u32, vid: u32): u32 { return ((network << 12) | vid) + 1; }
@inline function domainHash(k: u32): u32 { return (k * 0x9e3779b1) >> 19; } // 13 bits: DOMAIN_SLOTS

// The interface of a broadcast domain, or -1.
@inline export function ifaceOfDomain(network: u32, vid: u32): i32 {
  if (ifCount == 0) return -1;
  let k = domainKey(network, vid);
  let i = domainHash(k);
  while (true) {
    let s = domainBase + (<usize>i << 3);
    let sk = load<u32>(s);
    if (sk == 0) return -1;
    if (sk == k) return <i32>load<u32>(s, 4);
    i = (i + 1) & (DOMAIN_SLOTS - 1);
  }
}

export function setDomain(network: u32, vid: u32, index: u32): void {
  let k = domainKey(network, vid);
  let i = domainHash(k);
  while (true) {
    let s = domainBase + (<usize>i << 3);
    let sk = load<u32>(s);
    if (sk == 0 || sk == k) {
      store<u32>(s, k);
      store<u32>(s, index, 4);
      return;
    }
    i = (i + 1) & (DOMAIN_SLOTS - 1);
  }
}

// Rebuilds the domain map from the interfaces (after one is removed: removal from open addressing
// without tombstones is simplest as a rebuild, and interfaces change rarely).
export function rebuildDomains(): void {
  memory.fill(domainBase, 0, <usize>DOMAIN_SLOTS * 8);
  for (let i: u32 = 0; i < ifCount; i++) {
    let f = iface(i);
    if (f.state == IF_UP) setDomain(f.network, f.vlan, i);
  }
  refreshPunt();
}

export function refreshPunt(): void {
  puntAny = false;
  for (let i: u32 = 0; i < ifCount; i++) {
    let f = iface(i);
    if (f.state == IF_UP && f.punt != 0) puntAny = true;
  }
}

// Is `ip` one of the gateway addresses of interface `i`?
@inline export function isGatewayV4(f: Iface, ip: u32): bool {
  return f.ipv4 != 0 && f.ipv4 == ip;
}

// Is `ip` an address the router of `zone` takes as its own: a gateway address, or a frontend VIP of a
// port mapping or load balancer (traffic to a VIP that no mapping takes ends here, never routed on)?
export function isLocalAddressV4(zone: u32, ip: u32): bool {
  return isRouterAddressV4(zone, ip) || natrules.isVip(zone, ip);
}

// Is `ip` in interface f's IPv4 subnet?
@inline export function onLinkV4(f: Iface, ip: u32): bool {
  return f.ipv4 != 0 && natrules.inPrefix(ip, f.ipv4, <u32>f.prefixLen4);
}

// Is `ip` a gateway address of any interface of `zone`?
export function isRouterAddressV4(zone: u32, ip: u32): bool {
  for (let i: u32 = 0; i < ifCount; i++) {
    let f = iface(i);
    if (f.state == IF_UP && <u32>f.zone == zone && f.ipv4 == ip && ip != 0) return true;
  }
  return false;
}
