// Stage: what goes to the host instead of through the dataplane (the punt area, assembly/punt.ts).
// Only what the dataplane cannot answer itself and an interface asked for (iface_set_punt, default
// nothing, so the dataplane behaves as if this stage did not exist):
//   - DHCPv4 to a server (UDP to port 67): broadcast in a domain whose router interface punts DHCP
//     (a DISCOVER from 0.0.0.0 to 255.255.255.255, dst MAC broadcast), taken instead of flooded, since
//     the gateway is the network's DHCP server; or unicast to a gateway address (a renewal);
//   - DNS (UDP or TCP port 53) to a gateway address of an interface that punts DNS;
//   - DHCPv6 to a server (UDP to port 547): to All_DHCP_Relay_Agents_and_Servers ff02::1:2 in a domain
//     whose interface punts dhcp6, taken at the flood like the DHCPv4 broadcast (RFC 8415 §7.1: only
//     servers and relays listen there, and the gateway is the network's server); or to a gateway
//     address (link-local or global: a client that was given the server's unicast option);
//   - ICMPv6 router solicitations (RFC 4861 §6.1.1-valid, checked in nodes/ip6.ts) to all-routers
//     ff02::2 or a gateway address, from ip6's ND stage: the host's router advertiser answers them.
//     An interface that does not punt rs keeps dropping them as nd_router_message.
//   - other TCP and UDP to a gateway address of an interface that punts host (the socket uplink
//     carries it to the host's loopback, as passt maps its gateway); ICMP echo stays the router's;
//   - everything routed out of an interface that punts uplink (the socket uplink, src/uplink/): at
//     the very end of routing (nodes/egress.ts sendVia), after conntrack, NAT and the ingress ACLs,
//     the frame as it would have left, instead of a neighbour lookup and L2 forwarding. Such an
//     interface has no neighbours: its next hop resolves to nothing without ARP / ND.
// The checks sit where a frame has already left the fast path: the flood of a group frame, traffic to
// a router address that no connection or mapping took (nodes/hostreply.ts), ND, and the end of
// routing for the uplink. An established connection never comes here except by the uplink.
// A punted frame is accounted as punted (stat `punted`), not dropped; a full area is a drop
// (punt_queue_full).
import { Reason } from "../reasons";
import { Meta, FLAG_FRAGMENT } from "../packet";
import { Iface, iface, ifaceOfDomain, ifBase, IFACE_SIZE, PUNT_DHCP4, PUNT_DNS, PUNT_DHCP6, PUNT_HOST } from "../router";
import { drop, bump, Stat } from "../counters";
import * as area from "../punt";
import * as gso from "./gso";
import { PuntReason } from "../punt";
import * as udp from "../wire/udp";
import * as tcp from "../wire/tcp";
import * as trace from "../trace";
import * as eth from "../wire/ethernet";
import * as ipv6 from "../wire/ipv6";
import { get32 } from "../wire/bytes";

const PROTO_TCP: u32 = 6;
const PROTO_UDP: u32 = 17;
const DHCP_SERVER_PORT: u32 = 67;
const DNS_PORT: u32 = 53;
const DHCP6_SERVER_PORT: u32 = 547;

// A broadcast or multicast IPv4 frame about to be flooded: true when it was punted (or its punt
// counted as a drop) and must not be flooded. Called only while some interface punts (router.puntAny).
// A fragment is flooded as before: the host would get a piece of a datagram (no DHCP client sends one).
export function puntGroup4(m: Meta): bool {
  if (m.protocol != PROTO_UDP || m.l4 == 0 || (m.flags & FLAG_FRAGMENT) != 0) return false;
  if (udp.dstPort(m.frame + m.l4) != DHCP_SERVER_PORT) return false;
  let i = ifaceOfDomain(m.network, m.vlan);
  if (i < 0) return false;
  let f = iface(<u32>i);
  if ((f.punt & PUNT_DHCP4) == 0) return false;
  punt(m, f, <u32>i, PuntReason.Dhcp4);
  return true;
}

// An IPv6 multicast frame about to be flooded: true when it is DHCPv6 to ff02::1:2 (port 547) in a
// domain whose interface punts dhcp6, and was punted (or its punt counted as a drop).
export function puntGroup6(m: Meta): bool {
  if (m.protocol != PROTO_UDP || m.l4 == 0 || (m.flags & FLAG_FRAGMENT) != 0) return false;
  if (udp.dstPort(m.frame + m.l4) != DHCP6_SERVER_PORT) return false;
  let d = m.frame + m.l3 + ipv6.DST; // ff02::1:2
  if (get32(d) != 0xff02_0000 || get32(d + 4) != 0 || get32(d + 8) != 0 || get32(d + 12) != 0x0001_0002) return false;
  let i = ifaceOfDomain(m.network, m.vlan);
  if (i < 0) return false;
  let f = iface(<u32>i);
  if ((f.punt & PUNT_DHCP6) == 0) return false;
  punt(m, f, <u32>i, PuntReason.Dhcp6);
  return true;
}

// A router solicitation for interface ifIndex (validated and addressed to it by nodes/ip6.ts, which
// checked that it punts rs).
export function puntRs(m: Meta, f: Iface, ifIndex: u32): void {
  punt(m, f, ifIndex, PuntReason.Rs);
}

// A whole packet to a gateway address of f that nothing else took: true when it was punted.
export function puntLocal(m: Meta, f: Iface): bool {
  if (f.punt == 0 || m.l4 == 0) return false;
  let proto = m.protocol;
  let dport: u32 = proto == PROTO_UDP ? udp.dstPort(m.frame + m.l4) : proto == PROTO_TCP ? tcp.dstPort(m.frame + m.l4) : 0;
  let reason = PuntReason.None;
  if (dport == DNS_PORT && (f.punt & PUNT_DNS) != 0) reason = PuntReason.Dns;
  else if (dport == DHCP_SERVER_PORT && proto == PROTO_UDP && m.ethertype == eth.TYPE_IPV4 && (f.punt & PUNT_DHCP4) != 0) reason = PuntReason.Dhcp4;
  else if (dport == DHCP6_SERVER_PORT && proto == PROTO_UDP && m.ethertype == eth.TYPE_IPV6 && (f.punt & PUNT_DHCP6) != 0) reason = PuntReason.Dhcp6;
  else if ((proto == PROTO_TCP || proto == PROTO_UDP) && (f.punt & PUNT_HOST) != 0) reason = PuntReason.Host;
  if (reason == PuntReason.None) return false;
  punt(m, f, indexOf(f), reason);
  return true;
}

// A routed frame leaving by `out`, an interface that punts uplink: its MACs already rewritten (from
// the interface, to nothing: the uplink has no neighbours).
export function puntUplink(m: Meta, out: Iface): void {
  punt(m, out, indexOf(out), PuntReason.Uplink);
}

@inline function indexOf(f: Iface): u32 { return <u32>((changetype<usize>(f) - ifBase) / IFACE_SIZE); }

function punt(m: Meta, f: Iface, ifIndex: u32, reason: PuntReason): void {
  // A super-frame or a partial checksum goes to the host finished (nodes/gso.ts).
  let ok = m.vnet != 0 ? gso.punt(m, <u32>reason, ifIndex, <u32>f.zone)
                       : area.put(m.frame, m.len, m.inPort, <u32>reason, ifIndex, <u32>f.zone, m.vlan);
  trace.note(trace.Step.Punt, <u32>reason, ifIndex, ok ? 0 : 1, 0);
  if (ok) bump(Stat.Punted);
  else drop(m.inPort, Reason.PuntQueueFull);
}
