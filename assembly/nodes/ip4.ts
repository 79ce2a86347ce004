// Stage: IPv4 at a router interface. The packet's connection is looked up by (zone, protocol,
// addresses, ports / echo id) - the compartment of the interface it came in by is the conntrack zone.
// A hit is the fast path: the connection's state moves, its cached translation and next hop are
// applied with precomputed checksum deltas, and the frame is forwarded in the egress domain. A miss
// goes through nodes/nat.ts once. ICMP errors are matched to their connection through the header
// they quote and translated with it.
//
// Fragments (tables/frag.ts, virtual reassembly): a first fragment carries the transport header, so
// it takes the ordinary path above, after its ports are noted under the datagram's identification;
// a later fragment finds its connection by the ports its first fragment noted and gets the same
// translation, applied to the IP header only (its L4 checksum lives in the first fragment, which the
// connection's cached delta has already fixed). A later fragment that comes before its first is held
// and runs again after it; one whose first fragment made no connection is dropped as ip_fragment.
// Fragments addressed to the router itself are dropped (netplane does not reassemble for itself),
// except those of an echo request, which are answered fragment by fragment (icmp4.ts).
//
// The egress MTU (nodes/mtu.ts): a packet larger than the egress interface's MTU gets ICMP
// fragmentation needed (with the MTU) when it has DF set, and is fragmented by the router otherwise.
// The check is one compare on the fast path, before the packet is rewritten, so the ICMP error quotes
// it as its sender sent it. A SYN or SYN-ACK has its MSS option clamped after the translation, where
// an interface it crosses asks for it (nodes/mss.ts).
import * as overlay from "../overlay";
import { Reason } from "../reasons";
import { Meta, FLAG_FRAGMENT, FLAG_LATER_FRAGMENT, FLAG_RELEASED } from "../packet";
import { iface, Iface, ifaceOfDomain, IF_UP, isLocalAddressV4, isRouterAddressV4, PUNT_UPLINK } from "../router";
import * as flow from "../tables/flow";
import * as frag from "../tables/frag";
import * as ipv4 from "../wire/ipv4";
import * as icmpw from "../wire/icmp";
import * as checksum from "../wire/checksum";
import * as eth from "../wire/ethernet";
import { get32, swap16, loadMac } from "../wire/bytes";
import { drop, bump, Stat } from "../counters";
import * as ct from "./ct";
import { newConnection, LOCAL, routedIface, routedNextHop } from "./nat";
import { echoReplyFragment, freshIpId, sendError, quoted, rewriteQuoted, refreshIpChecksum, qProto, qSrc, qDst, qSport, qDport } from "./icmp4";
import { localInput4 } from "./hostreply";
import * as natrules from "../tables/natrules";
import * as egress from "./egress";
import { fragment4 } from "./mtu";
import * as vnet from "./vnet";
import { wanted, clampMss } from "./mss";
import * as trace from "../trace";

// Inlined (with forwardInline below, for an established connection) into the batch loop's l3input:
// the established path makes no call it need not make (pipeline.ts).
@inline export function ip4input(m: Meta, ifIndex: u32, now: u32): void {
  let f = iface(ifIndex);
  if (m.flags & FLAG_LATER_FRAGMENT) {
    laterFragment(m, f, ifIndex, now);
    return;
  }
  let ip = m.frame + m.l3;
  let zone = <u32>f.zone;
  let proto = m.protocol;
  // The key as the packet carries it (tables/flow.ts): what the connection's record is compared with.
  let addrs = load<u64>(ip, ipv4.SRC);
  let ports: u32 = 0, tcpFlags: u32 = 0;
  let l4 = m.frame + m.l4;
  if (proto == 6) {
    ports = load<u32>(l4);
    tcpFlags = <u32>load<u8>(l4, 13);
  } else if (proto == 17) {
    ports = load<u32>(l4);
  } else if (proto == 1) {
    // An echo request's identifier stands for its source port, a reply's for its destination port.
    let t = icmpw.type(l4);
    if (t == icmpw.ECHO_REQUEST) ports = <u32>load<u16>(l4, 4);
    else if (t == icmpw.ECHO_REPLY) ports = <u32>load<u16>(l4, 4) << 16;
    else if (icmpw.isError(t)) {
      // A fragmented ICMP error cannot be translated: its checksum covers what is not here.
      if (m.flags & FLAG_FRAGMENT) drop(m.inPort, Reason.IpFragment);
      else icmpErrorInput(m, f, zone, now);
      return;
    }
  }
  let answer: u32 = 0;
  if (m.flags & FLAG_FRAGMENT) {
    // An echo request to the router gets the identification of its fragmented reply here.
    let localEcho = proto == 1 && (ports & 0xffff) != 0 && isLocalAddressV4(zone, ipv4.dst(ip));
    let why = frag.first(zone, proto, 0, <u64>ipv4.src(ip), 0, <u64>ipv4.dst(ip), ipv4.ident(ip), swap16(ports & 0xffff), swap16(ports >>> 16),
                         m.l4len, ipv4.headerLen(ip), now, localEcho ? freshIpId() : 0);
    if (why) {
      drop(m.inPort, why);
      return;
    }
    answer = frag.answer;
  }

  let h = m.flowHash != 0 ? m.flowHash : flow.hashWire(zone, proto, addrs, ports);
  // The batch's touch pass may already have found the connection (pipeline.ts): checked, not probed.
  let known: u32 = 0;
  if (m.flowRef != 0) known = flow.holds(m.flowRef, zone, proto, addrs, ports);
  if (known == 0) known = flow.lookupWire(h, zone, proto, addrs, ports);
  let v = ct.live(known, proto, tcpFlags, now);
  if (v != 0) {
    let ri = (v - 1) >> 1;
    let dir = (v - 1) & 1;
    let r = flow.rec(ri);
    let why = ct.hit(r, ri, proto, dir, l4, m.l4len, now);
    if (why) {
      drop(m.inPort, why);
      return;
    }
    forwardInline(m, f, r, dir, now);
    return;
  }

  trace.note(trace.Step.Conntrack, 0, 0, 0, 0);
  // No connection: the key as numbers, for what follows.
  let src = ipv4.src(ip), dst = ipv4.dst(ip);
  let sport = swap16(ports & 0xffff), dport = swap16(ports >>> 16);
  // For a router address or a load balancer's VIP, with no port mapping or load balancer for its port:
  // the router's own (echo, or the replies of a host with nothing listening, nodes/hostreply.ts).
  let toRouter = isRouterAddressV4(zone, dst);
  if ((toRouter || natrules.isVip(zone, dst)) && ((proto != 6 && proto != 17) || natrules.findMapping(zone, proto, dst, dport, toRouter) == 0)) {
    local4(m, f, proto, sport, answer, now);
    return;
  }
  // A packet that could not leave anyway must not leave a connection behind (as Linux confirms a
  // connection only once its first packet is sent), and gets Time Exceeded before conntrack judges it,
  // as Linux's ip_forward checks the TTL before the forward hook.
  if (ipv4.ttl(ip) <= 1) {
    sendError(m, f, icmpw.TIME_EXCEEDED, 0, now);
    drop(m.inPort, Reason.TtlExceeded);
    return;
  }
  // Only echo requests start an ICMP connection; a stray reply or other message has nothing to match.
  if (proto == 1 && sport == 0 && (dport == 0 || overlay.remoteCount == 0)) {
    drop(m.inPort, Reason.CtInvalidNew);
    return;
  }
  let res = newConnection(ifIndex, zone, proto, src, dst, sport, dport, tcpFlags, proto == 6 ? get32(l4 + 4) : 0, h, now);
  if (res >= 0) {
    let r = flow.rec(<u32>res);
    ct.start(r, proto, l4, m.l4len, now);
    egress.prime(r, zone, ifIndex, loadMac(m.frame + eth.SRC), routedIface, 0, <u64>routedNextHop, now);
    forward(m, f, r, 0, now);
    return;
  }
  if (res == LOCAL) { // not reached: local traffic was taken above
    local4(m, f, proto, sport, answer, now);
    return;
  }
  let reason = <Reason>(-res);
  if (reason == Reason.NoRoute) sendError(m, f, icmpw.DEST_UNREACHABLE, 0, now);
  drop(m.inPort, reason);
}

// A packet for the router itself: a fragmented echo request is answered in fragments (`answer` is the
// identification frag.first chose for the reply), another first fragment is dropped (nothing of the
// router's takes fragments); a whole packet goes to nodes/hostreply.ts.
function local4(m: Meta, f: Iface, proto: u32, sport: u32, answer: u32, now: u32): void {
  if (m.flags & FLAG_FRAGMENT) {
    if (proto == 1 && sport != 0) echoReplyFragment(m, f, answer, now);
    else drop(m.inPort, Reason.IpFragment);
    return;
  }
  localInput4(m, f, now);
}

// For the first pass of a batch: the conntrack hash of a TCP or UDP packet addressed to the gateway
// MAC of its domain's router interface (0 for anything else), so the batch can touch its connection
// before it is processed. ip4input uses it instead of hashing again.
// Also records in m.toRouter that the frame is for the router, so forwarding need not look the gateway
// MAC up again.
@inline export function routedFlowHash(m: Meta, dstMac: u64): u32 {
  // Each test in its own if: a `||` chain would become a value V8 makes and tests (tables/mac.ts find).
  if (m.ethertype != eth.TYPE_IPV4) return 0;
  if (m.l4 == 0) return 0;
  if (m.protocol != 6) {
    if (m.protocol != 17) return 0;
  }
  let i = ifaceOfDomain(m.network, m.vlan);
  if (i < 0) return 0;
  let f = iface(<u32>i);
  if (f.mac != dstMac) return 0;
  if (f.state != IF_UP) return 0;
  m.toRouter = <u32>i + 1;
  // The addresses (source, destination) and the ports as the headers carry them: two loads.
  return flow.hashWire(<u32>f.zone, m.protocol, load<u64>(m.frame + m.l3, ipv4.SRC), load<u32>(m.frame + m.l4));
}

// Applies direction `dir` of connection r to the packet and sends it on.
function forward(m: Meta, fin: Iface, r: usize, dir: u32, now: u32): void {
  forwardInline(m, fin, r, dir, now);
}
@inline function forwardInline(m: Meta, fin: Iface, r: usize, dir: u32, now: u32): void {
  let ip = m.frame + m.l3;
  let ttl = ipv4.ttl(ip);
  if (ttl <= 1) {
    sendError(m, fin, icmpw.TIME_EXCEEDED, 0, now);
    drop(m.inPort, Reason.TtlExceeded);
    return;
  }
  if (!egress.resolved(r) && !egress.resolve(r, now)) {
    drop(m.inPort, Reason.NeighborUnresolved);
    return;
  }
  let out = egress.outIface(r, dir);
  // A socket uplink (punt uplink) fragments nothing: the host's sockets carry the payload. A
  // super-frame is checked by the size of its segments (Linux's skb_gso_validate_network_len).
  // One compare and one branch for a packet that fits; the rest is out of the way.
  let v = m.vnet;
  let tooBig = false;
  if ((vnet.sizeOf(v) != 0 ? vnet.segmentNetworkLen(m) : ipv4.totalLength(ip)) > out.mtu) {
    tooBig = (out.punt & PUNT_UPLINK) == 0;
    if (tooBig && (ipv4.flagsFrag(ip) & ipv4.FLAG_DF)) {
      sendError(m, fin, icmpw.DEST_UNREACHABLE, icmpw.FRAGMENTATION_NEEDED, now, out.mtu);
      drop(m.inPort, Reason.MtuExceeded);
      return;
    }
    if (tooBig && v != 0) {
      // Linux would segment and then fragment each segment; a sender that offers TSO sets DF, so
      // netplane drops the rare super-frame without it.
      if (vnet.sizeOf(v) != 0) {
        drop(m.inPort, Reason.MtuExceeded);
        return;
      }
      // A partial checksum is finished before fragmenting: it lives in the first fragment only.
      vnet.complete(m.frame, m.l4, m.l4len, m.protocol);
      m.vnet = 0;
      v = 0;
    }
  }
  // The other direction's tuple, reversed, is this one's translation: its addresses and ports as the
  // packet carries them (tables/flow.ts), each pair swapped by a rotation.
  let o: usize = dir ? 0 : 12;
  let addrs = rotr<u64>(load<u64>(r + o), 32);
  let ports = rotr<u32>(load<u32>(r + o, 8), 16);
  // The checksum deltas are in network byte order too, and so is every checksum below taken and put
  // back: a one's complement sum does not depend on the byte order (RFC 1071 2.B).
  let d: usize = dir ? 4 : 0;
  let ipDelta = <u32>load<u16>(r + d, 56);
  let l4Delta = <u32>load<u16>(r + d, 58);

  store<u64>(ip, addrs, ipv4.SRC);
  ipv4.setTtl(ip, ttl - 1);
  store<u16>(ip, <u16>checksum.applyDelta(<u32>load<u16>(ip, ipv4.CHECKSUM), ipDelta), ipv4.CHECKSUM);
  let proto = m.protocol;
  let l4 = m.frame + m.l4;
  if (m.l4 == 0) {
    // a later fragment: no transport header here
  } else if (proto == 6) {
    store<u32>(l4, ports);
    let c = <u32>load<u16>(l4, 16);
    // CHECKSUM_PARTIAL (nodes/vnet.ts): the field is the pseudo-header sum, which only the addresses change.
    store<u16>(l4, <u16>(v & vnet.F_NEEDS_CSUM ? vnet.partialAddrUpdate(c, ipDelta) : checksum.applyDelta(c, l4Delta)), 16);
    if (wanted(fin, out)) clampMss(l4, fin, out, false, (v & vnet.F_NEEDS_CSUM) != 0);
  } else if (proto == 17) {
    store<u32>(l4, ports);
    let c = <u32>load<u16>(l4, 6);
    if (v & vnet.F_NEEDS_CSUM) {
      let n = vnet.partialAddrUpdate(c, ipDelta);
      store<u16>(l4, <u16>(n == 0 ? 0xffff : n), 6);
    } else if (c != 0) {
      let n = checksum.applyDelta(c, l4Delta);
      store<u16>(l4, <u16>(n == 0 ? 0xffff : n), 6);
    }
  } else if (proto == 1) {
    store<u16>(l4 + 4, <u16>(icmpw.type(l4) == icmpw.ECHO_REQUEST ? ports : ports >>> 16));
    store<u16>(l4, <u16>checksum.applyDelta(<u32>load<u16>(l4, 2), l4Delta), 2);
  }
  egress.account(r, dir, m.len - m.l3);
  if (tooBig) fragment4(m, out, egress.nextHop(r, dir), now);
  else egress.sendViaInline(m, out, egress.nextHop(r, dir), now);
}

// A fragment after the first: its datagram's first fragment noted the ports (tables/frag.ts), by
// which it finds the connection and follows it; before the first, it is held.
function laterFragment(m: Meta, f: Iface, ifIndex: u32, now: u32): void {
  let ip = m.frame + m.l3;
  let zone = <u32>f.zone;
  let proto = m.protocol;
  let src = ipv4.src(ip), dst = ipv4.dst(ip);
  let sport: u32, dport: u32, answer: u32;
  let local = proto == 1 && isLocalAddressV4(zone, dst); // ICMP to the router: no mapping applies
  if (m.flags & FLAG_RELEASED) {
    sport = m.flowHash >>> 16;
    dport = m.flowHash & 0xffff;
    answer = m.srcHash;
    m.flags &= ~FLAG_RELEASED;
  } else {
    let hl = ipv4.headerLen(ip);
    let start = ipv4.fragOffset(ip) << 3;
    let end = start + ipv4.totalLength(ip) - hl;
    let v = frag.later(zone, proto, 0, <u64>src, 0, <u64>dst, ipv4.ident(ip), start, end, ipv4.moreFragments(ip), hl, now,
                       local ? freshIpId() : 0);
    if (v == frag.HOLD) {
      let why = frag.holdFrame(m.frame, m.len, m.inPort, ifIndex, frag.STAGE_ROUTER, m.network, m.vlan);
      if (why) drop(m.inPort, why);
      else trace.note(trace.Step.Fragment, 1, 0, 0, 0);
      return;
    }
    if (v < 0) {
      drop(m.inPort, <Reason>(-v));
      return;
    }
    sport = frag.sport;
    dport = frag.dport;
    answer = frag.answer;
  }
  trace.note(trace.Step.Fragment, 0, sport, dport, 0);
  let v = ct.alive(flow.lookup(flow.hashKey(zone, proto, src, dst, sport, dport), zone, proto, src, dst, sport, dport), now);
  if (v == 0) {
    // For the router itself: the rest of an echo request is answered, nothing else is delivered.
    if (local && sport != 0) echoReplyFragment(m, f, answer, now);
    else drop(m.inPort, Reason.IpFragment);
    return;
  }
  let ri = (v - 1) >> 1;
  trace.note(trace.Step.Conntrack, 1, ri, (v - 1) & 1, 0);
  forward(m, f, flow.rec(ri), (v - 1) & 1, now);
}

// An ICMP error: find the connection of the packet it quotes (its reverse is a key of ours), map the
// quote back to what the original sender sent, and forward the error in that sender's direction.
function icmpErrorInput(m: Meta, f: Iface, zone: u32, now: u32): void {
  let ip = m.frame + m.l3;
  let ic = m.frame + m.l4;
  if (!quoted(ic, m.l4len)) {
    drop(m.inPort, Reason.IcmpErrorUnmatched);
    return;
  }
  let h = flow.hashKey(zone, qProto, qDst, qSrc, qDport, qSport);
  let v = ct.alive(flow.lookup(h, zone, qProto, qDst, qSrc, qDport, qSport), now);
  if (v == 0) {
    drop(m.inPort, Reason.IcmpErrorUnmatched);
    return;
  }
  let r = flow.rec((v - 1) >> 1);
  let dir = (v - 1) & 1;           // the direction the error travels
  // The quoted packet went the other way: its pre-translation tuple.
  let osrc = flow.srcOf(r, dir ^ 1), odst = flow.dstOf(r, dir ^ 1);
  let osport = flow.sportOf(r, dir ^ 1), odport = flow.dportOf(r, dir ^ 1);
  let ttl = ipv4.ttl(ip);
  if (ttl <= 1) {
    drop(m.inPort, Reason.TtlExceeded);
    return;
  }
  if (!egress.resolved(r) && !egress.resolve(r, now)) {
    drop(m.inPort, Reason.NeighborUnresolved);
    return;
  }
  let quotedDst = qDst;
  rewriteQuoted(ic, m.l4len, osrc, odst, osport, odport);
  // The error goes to the original sender; if it came from the quoted destination itself, its source
  // is that destination as the original sender knew it.
  if (ipv4.src(ip) == quotedDst) ipv4.setSrc(ip, odst);
  ipv4.setDst(ip, osrc);
  ipv4.setTtl(ip, ttl - 1);
  refreshIpChecksum(ip);
  bump(Stat.IcmpTranslated);
  egress.send(m, r, dir, now);
}
