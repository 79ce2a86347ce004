// Stage: what goes to the host instead of through the dataplane (the punt area, assembly/punt.ts).
// Only what the dataplane cannot answer itself and an interface asked for (iface_set_punt, default
// nothing, so the dataplane behaves as if this stage did not exist):
//   - DHCPv4 to a server (UDP to port 67): broadcast in a domain whose router interface punts DHCP
//     (a DISCOVER from 0.0.0.0 to 255.255.255.255, dst MAC broadcast), taken instead of flooded, since
//     the gateway is the network's DHCP server; or unicast to a gateway address (a renewal);
//   - DNS (UDP or TCP port 53) to a gateway address of an interface that punts DNS.
// Both checks sit where a frame has already left the fast path: the flood of a broadcast, and
// traffic to a router address that no connection or mapping took (nodes/hostreply.ts). An established
// connection never comes here. DHCPv6 and router solicitations are not punted yet (ND stays in ip6).
// A punted frame is accounted as punted (stat `punted`), not dropped; a full area is a drop
// (punt_queue_full).
import { Reason } from "../reasons";
import { Meta, FLAG_FRAGMENT } from "../packet";
import { Iface, iface, ifaceOfDomain, ifBase, IFACE_SIZE, PUNT_DHCP4, PUNT_DNS } from "../router";
import { drop, bump, Stat } from "../counters";
import * as area from "../punt";
import { PuntReason } from "../punt";
import * as udp from "../wire/udp";
import * as tcp from "../wire/tcp";
import * as trace from "../trace";
import * as eth from "../wire/ethernet";

const PROTO_TCP: u32 = 6;
const PROTO_UDP: u32 = 17;
const DHCP_SERVER_PORT: u32 = 67;
const DNS_PORT: u32 = 53;

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

// A whole packet to a gateway address of f that nothing else took: true when it was punted.
export function puntLocal(m: Meta, f: Iface): bool {
  if (f.punt == 0 || m.l4 == 0) return false;
  let proto = m.protocol;
  let dport: u32 = proto == PROTO_UDP ? udp.dstPort(m.frame + m.l4) : proto == PROTO_TCP ? tcp.dstPort(m.frame + m.l4) : 0;
  let reason = PuntReason.None;
  if (dport == DNS_PORT && (f.punt & PUNT_DNS) != 0) reason = PuntReason.Dns;
  else if (dport == DHCP_SERVER_PORT && proto == PROTO_UDP && m.ethertype == eth.TYPE_IPV4 && (f.punt & PUNT_DHCP4) != 0) reason = PuntReason.Dhcp4;
  if (reason == PuntReason.None) return false;
  punt(m, f, <u32>((changetype<usize>(f) - ifBase) / IFACE_SIZE), reason);
  return true;
}

function punt(m: Meta, f: Iface, ifIndex: u32, reason: PuntReason): void {
  let ok = area.put(m.frame, m.len, m.inPort, <u32>reason, ifIndex, <u32>f.zone, m.vlan);
  trace.note(trace.Step.Punt, <u32>reason, ifIndex, ok ? 0 : 1, 0);
  if (ok) bump(Stat.Punted);
  else drop(m.inPort, Reason.PuntQueueFull);
}
