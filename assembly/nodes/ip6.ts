// Stage: IPv6 at a router interface: neighbour discovery for the gateway addresses (RFC 4861), echo
// replies from them, and forwarding with the hop limit decremented and the MACs rewritten; an expired
// hop limit or a missing route gets an ICMPv6 error back (RFC 4443), rate-limited like ICMPv4's.
//
// Routed IPv6 is tracked like IPv4, in the same connection table: the addresses are interned as
// 32-bit ids (tables/addr6.ts) so an IPv6 connection fits the same record, state machine, timeouts
// and fast path (one lookup, the cached next hop). There is no NAT for IPv6, so the reply tuple is
// the original reversed. An ICMPv6 error is routed along the connection of the packet it quotes
// (nodes/icmp6.ts), as ICMPv4 errors are; one quoting no connection is dropped.
//
// Order, as Linux's ip6_forward: the hop limit is checked before conntrack, so a packet that cannot
// be forwarded gets Time Exceeded whether or not it could start a connection. Packets to a router
// address go to nodes/hostreply.ts (echo, host replies, RFC 5095's refusal of routing headers).
//
// Every neighbour discovery message (RFC 4861) the router gets is answered or has a verdict: wrong hop
// limit (nd_bad_hop_limit), invalid (nd_malformed), a solicitation for another address
// (nd_not_target), an advertisement (nd_advertisement, learned from first), a router
// solicitation, advertisement or redirect (nd_router_message: the router takes no advertisements and
// no redirects, and the dataplane sends no router advertisements). A valid solicitation to all-routers
// or a gateway address of an interface that punts rs goes to the host instead (nodes/punt.ts), whose
// router advertiser answers it (src/ra.ts). A multicast one the switch also flooded is not a drop
// (nodes/output.ts unanswered).
//
// Every interface has a link-local address, fe80::/64 with the modified EUI-64 of its MAC (RFC 4291
// §2.5.1), whether or not it has a configured one: it is the source of router advertisements (RFC 4861
// §6.1.2 requires one), the next hop hosts learn from them, and answers ND and echo like the global one.
//
// Fragments follow their first fragment's connection as in IPv4 (nodes/ip4.ts, tables/frag.ts),
// keyed by the Fragment header's identification; an atomic fragment (offset 0, M clear) is a whole
// packet (parse). A packet larger than the egress MTU gets Packet Too Big and is dropped: routers
// never fragment IPv6 (RFC 8200 §5). A SYN or SYN-ACK has its MSS option clamped on its way out, where
// an interface it crosses asks for it (nodes/mss.ts).
import * as overlay from "../overlay";
import { remoteHop } from "./vxlan";
import { validFlags as validTcpFlags } from "./tcpwindow";
import { Reason } from "../reasons";
import { Meta, FLAG_GROUP_DST, FLAG_LATER_FRAGMENT, FLAG_FRAGMENT, FLAG_RELEASED } from "../packet";
import { iface, Iface, IF_UP, IF_TCP_LIBERAL, IF_TCP_NO_PICKUP, ifCount, PUNT_RS, PUNT_UPLINK } from "../router";
import * as lpm from "../tables/lpm";
import * as neighbor from "../tables/neighbor";
import * as flow from "../tables/flow";
import * as addr6 from "../tables/addr6";
import * as frag from "../tables/frag";
import * as ct from "./ct";
import * as egress from "./egress";
import * as trace from "../trace";
import * as ipv6 from "../wire/ipv6";
import * as icmpv6 from "../wire/icmpv6";
import * as eth from "../wire/ethernet";
import * as checksum from "../wire/checksum";
import { loadMac, storeMac, get8, get16, get32, set16, set32 } from "../wire/bytes";
import { drop, bump, Stat } from "../counters";
import { icmpErrors, arpRequests } from "../ratelimit";
import { newFrame, ethHeader, sendFromRouter, unanswered, GENERATED_PORT } from "./output";
import { localInput6 } from "./hostreply";
import * as q6 from "./icmp6";
import { puntRs } from "./punt";
import * as vnet from "./vnet";
import { wanted, clampMss } from "./mss";

const ND_HOP_LIMIT: u32 = 255;
const OPT_SOURCE_LLA: u32 = 1;
const OPT_TARGET_LLA: u32 = 2;
const NA_ROUTER: u32 = 0x80;
const NA_SOLICITED: u32 = 0x40;
const NA_OVERRIDE: u32 = 0x20;
const MIN_MTU: u32 = 1280;

// An IPv6 address as (hi, lo): bytes 0-7 and 8-15, big-endian numbers (tables/lpm.ts).
@inline export function addrHi(p: usize): u64 { return bswap<u64>(load<u64>(p)); }
@inline export function addrLo(p: usize): u64 { return bswap<u64>(load<u64>(p, 8)); }
@inline export function storeAddr(p: usize, hi: u64, lo: u64): void {
  store<u64>(p, bswap<u64>(hi));
  store<u64>(p, bswap<u64>(lo), 8);
}

// The link-local address of an interface (fe80::/64 with the modified EUI-64 of its MAC): the router
// answers neighbour solicitations for it as well as for its configured address.
@inline function linkLocalLo(mac: u64): u64 {
  let b0 = (mac & 0xff) ^ 0x02, b1 = (mac >> 8) & 0xff, b2 = (mac >> 16) & 0xff;
  let b3 = (mac >> 24) & 0xff, b4 = (mac >> 32) & 0xff, b5 = (mac >> 40) & 0xff;
  return (b0 << 56) | (b1 << 48) | (b2 << 40) | (<u64>0xfffe << 24) | (b3 << 16) | (b4 << 8) | b5;
}
const LINK_LOCAL_HI: u64 = 0xfe80_0000_0000_0000;

@inline function isOurs(f: Iface, hi: u64, lo: u64): bool {
  if (hi == LINK_LOCAL_HI && lo == linkLocalLo(f.mac)) return true;
  return (f.ipv6a | f.ipv6b) != 0 && hi == f.ipv6a && lo == f.ipv6b;
}

export function ip6input(m: Meta, ifIndex: u32, now: u32): void {
  let f = iface(ifIndex);
  let ip = m.frame + m.l3;
  let icmp = m.l4 != 0 && m.protocol == 58 ? m.frame + m.l4 : 0;
  if (icmp != 0) {
    let t = icmpv6.type(icmp);
    if (t >= icmpv6.ROUTER_SOLICITATION && t <= icmpv6.REDIRECT) {
      ndInput(m, f, ifIndex, ip, icmp, t, now);
      return;
    }
  }
  if (m.flags & FLAG_GROUP_DST) { // other multicast (MLD, ...): its flooded copies account for it, else nothing did
    unanswered(m, Reason.NoDestination);
    return;
  }
  if (f.state != IF_UP) {
    drop(m.inPort, Reason.PortDown);
    return;
  }
  let dhi = addrHi(ip + ipv6.DST), dlo = addrLo(ip + ipv6.DST);
  let zone = <u32>f.zone;
  if (isRouterAddress6(zone, dhi, dlo)) {
    if (m.flags & FLAG_FRAGMENT) drop(m.inPort, Reason.IpFragment);
    else localInput6(m, f, dhi, dlo, now);
    return;
  }
  if (m.flags & FLAG_LATER_FRAGMENT) {
    laterFragment6(m, f, ifIndex, zone, dhi, dlo, now);
    return;
  }
  if (ipv6.hopLimit(ip) <= 1) {
    sendError6(m, f, icmpv6.TIME_EXCEEDED, 0, now);
    drop(m.inPort, Reason.TtlExceeded);
    return;
  }
  let proto = m.protocol;
  let sport: u32 = 0, dport: u32 = 0, tcpFlags: u32 = 0;
  let l4 = m.frame + m.l4;
  if (proto == 6 || proto == 17) {
    sport = get16(l4);
    dport = get16(l4 + 2);
    if (proto == 6) tcpFlags = get8(l4 + 13);
  } else if (proto == 58) {
    let t = icmpv6.type(l4);
    if (t == icmpv6.ECHO_REQUEST) sport = icmpv6.ident(l4);
    else if (t == icmpv6.ECHO_REPLY) dport = icmpv6.ident(l4);
    else if (icmpv6.isError(t)) {
      if (m.flags & FLAG_FRAGMENT) drop(m.inPort, Reason.IpFragment);
      else icmpError6(m, zone, dhi, dlo, now);
      return;
    }
  }
  let shi = addrHi(ip + ipv6.SRC), slo = addrLo(ip + ipv6.SRC);
  if (m.flags & FLAG_FRAGMENT) {
    ipv6.walk(ip); // parse's walk was of another packet of the batch: find this one's Fragment header
    let fh = ipv6.fragmentHeader;
    let why = frag.first(zone | flow.ZONE_V6, proto, shi, slo, dhi, dlo, get32(ip + fh + 4), sport, dport,
                         ipv6.HEADER_LEN + ipv6.payloadLength(ip) - fh - 8, fh - ipv6.HEADER_LEN, now);
    if (why) {
      drop(m.inPort, why);
      return;
    }
  }

  // The connection, if both addresses are known to conntrack at all.
  let zkey = zone | flow.ZONE_V6;
  let sid = addr6.find(shi, slo), did = addr6.find(dhi, dlo);
  let h: u32 = 0;
  if (sid != 0 && did != 0) {
    h = flow.hashKey(zkey, proto, sid, did, sport, dport);
    let v = ct.live(flow.lookup(h, zkey, proto, sid, did, sport, dport), proto, tcpFlags, now);
    if (v != 0) {
      let ri = (v - 1) >> 1;
      let dir = (v - 1) & 1;
      let r = flow.rec(ri);
      let why = ct.hit(r, ri, proto, dir, l4, m.l4len, now);
      if (why) {
        drop(m.inPort, why);
        return;
      }
      forward6(m, f, r, dir, now);
      return;
    }
  }

  trace.note(trace.Step.Conntrack, 0, 0, 0, 0);
  // A new connection: only echo requests start an ICMPv6 one, only a lone SYN a TCP one.
  let state = ct.initialState(proto, tcpFlags, zone);
  // Or a one-sided connection to a remote endpoint (nodes/ct.ts CT_ONE_SIDED), once the route says so.
  let needRemote = overlay.remoteCount != 0 &&
    ((state == ct.State.None && proto == 6 && validTcpFlags(tcpFlags)) || (proto == 58 && sport == 0 && dport != 0));
  if (!needRemote && (state == ct.State.None || (proto == 58 && sport == 0))) {
    drop(m.inPort, Reason.CtInvalidNew);
    return;
  }
  let rt = lpm.lookup6(zone, dhi, dlo);
  trace.note(trace.Step.Route, rt != 0 ? 1 : 0, rt != 0 ? lpm.routeIface(rt) : 0, 0, rt != 0 ? lpm.routeFlags(rt) : 0);
  if (rt == 0) {
    sendError6(m, f, icmpv6.DEST_UNREACHABLE, 0, now);
    drop(m.inPort, Reason.NoRoute);
    return;
  }
  if (lpm.routeFlags(rt) & lpm.ROUTE_BLACKHOLE) {
    drop(m.inPort, Reason.RouteBlackhole);
    return;
  }
  let ifFlags = <u32>(f.flags | iface(lpm.routeIface(rt)).flags);
  if (state == ct.State.TcpEstablished && (ifFlags & IF_TCP_NO_PICKUP)) {
    drop(m.inPort, Reason.CtInvalidNew);
    return;
  }
  let oneSided = false;
  if (overlay.remoteCount != 0 && (proto == 6 || proto == 58)) {
    let hhi = lpm.routeNextHopHi(rt), hlo = lpm.routeNextHopLo(rt);
    if ((hhi | hlo) == 0) { hhi = dhi; hlo = dlo; }
    oneSided = remoteHop(lpm.routeIface(rt), true, hhi, hlo);
  }
  if (needRemote && !oneSided) {
    drop(m.inPort, Reason.CtInvalidNew);
    return;
  }
  if (oneSided && proto == 6) state = ct.State.TcpEstablished;
  let ri = ct.take(now);
  if (ri < 0) {
    drop(m.inPort, Reason.CtTableFull);
    return;
  }
  let ids = addr6.acquirePair(shi, slo, dhi, dlo);
  if (ids == 0) {
    flow.giveBack(<u32>ri);
    drop(m.inPort, Reason.CtTableFull);
    return;
  }
  sid = <u32>ids;
  did = <u32>(ids >> 32);
  if (h == 0) h = flow.hashKey(zkey, proto, sid, did, sport, dport);
  // No NAT for IPv6: the reply tuple is the original reversed, and nothing's checksum changes.
  let r = flow.rec(<u32>ri);
  flow.setTuples(r, zkey, proto, state, flow.CT_V6, sid, did, sport, dport, did, sid, dport, sport, now);
  if (ifFlags & IF_TCP_LIBERAL) ct.markLiberal(r);
  if (oneSided) ct.markOneSided(r);
  flow.commit(<u32>ri, h, flow.hashKey(zkey, proto, did, sid, dport, sport));
  bump(Stat.CtCreated);
  ct.start(r, proto, l4, m.l4len, now);
  let nhHi = lpm.routeNextHopHi(rt), nhLo = lpm.routeNextHopLo(rt);
  if ((nhHi | nhLo) == 0) { nhHi = dhi; nhLo = dlo; }
  egress.prime(r, zone, ifIndex, loadMac(m.frame + eth.SRC), lpm.routeIface(rt), nhHi, nhLo, now);
  forward6(m, f, r, 0, now);
}

// Sends a tracked packet on: hop limit, cached next hop, L2 out.
function forward6(m: Meta, fin: Iface, r: usize, dir: u32, now: u32): void {
  let ip = m.frame + m.l3;
  let hl = ipv6.hopLimit(ip);
  if (hl <= 1) { // a later fragment (whole packets were checked before conntrack)
    sendError6(m, fin, icmpv6.TIME_EXCEEDED, 0, now);
    drop(m.inPort, Reason.TtlExceeded);
    return;
  }
  if (!egress.resolved(r) && !egress.resolve(r, now)) {
    drop(m.inPort, Reason.NeighborUnresolved);
    return;
  }
  let out = egress.outIface(r, dir);
  // A super-frame is checked by the size of its segments (Linux's skb_gso_validate_network_len).
  let size = vnet.sizeOf(m.vnet) != 0 ? vnet.segmentNetworkLen(m) : ipv6.HEADER_LEN + ipv6.payloadLength(ip);
  if (size > out.mtu && (out.punt & PUNT_UPLINK) == 0) {
    sendError6(m, fin, icmpv6.PACKET_TOO_BIG, 0, now, out.mtu);
    drop(m.inPort, Reason.MtuExceeded);
    return;
  }
  ipv6.setHopLimit(ip, hl - 1);
  if (m.protocol == 6 && m.l4 != 0 && wanted(fin, out)) clampMss(m.frame + m.l4, fin, out, true, (m.vnet & vnet.F_NEEDS_CSUM) != 0);
  egress.account(r, dir, m.len - m.l3);
  egress.sendVia(m, out, egress.nextHop(r, dir), now);
}

// A fragment after the first: found by the ports its first fragment noted (tables/frag.ts), or held
// until the first comes.
function laterFragment6(m: Meta, f: Iface, ifIndex: u32, zone: u32, dhi: u64, dlo: u64, now: u32): void {
  let ip = m.frame + m.l3;
  let proto = m.protocol;
  let shi = addrHi(ip + ipv6.SRC), slo = addrLo(ip + ipv6.SRC);
  let zkey = zone | flow.ZONE_V6;
  let sport: u32, dport: u32;
  if (m.flags & FLAG_RELEASED) {
    sport = m.flowHash >>> 16;
    dport = m.flowHash & 0xffff;
    m.flags &= ~FLAG_RELEASED;
  } else {
    ipv6.walk(ip);
    let fh = ipv6.fragmentHeader;
    let fo = get16(ip + fh + 2);
    let start = fo & 0xfff8;
    let end = start + ipv6.HEADER_LEN + ipv6.payloadLength(ip) - fh - 8;
    let v = frag.later(zkey, proto, shi, slo, dhi, dlo, get32(ip + fh + 4), start, end, (fo & 1) != 0, fh - ipv6.HEADER_LEN, now);
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
  }
  trace.note(trace.Step.Fragment, 0, sport, dport, 0);
  let sid = addr6.find(shi, slo), did = addr6.find(dhi, dlo);
  let v: u32 = 0;
  if (sid != 0 && did != 0) {
    v = ct.alive(flow.lookup(flow.hashKey(zkey, proto, sid, did, sport, dport), zkey, proto, sid, did, sport, dport), now);
  }
  if (v == 0) {
    drop(m.inPort, Reason.IpFragment);
    return;
  }
  let ri = (v - 1) >> 1;
  trace.note(trace.Step.Conntrack, 1, ri, (v - 1) & 1, 0);
  forward6(m, f, flow.rec(ri), (v - 1) & 1, now);
}

// An ICMPv6 error on its way (its hop limit checked above): routed along the connection of the packet
// it quotes, in the direction back to that packet's source, which must be the error's destination (no
// NAT: nothing to translate). One that quotes no live connection is dropped, as ICMPv4's are.
function icmpError6(m: Meta, zone: u32, dhi: u64, dlo: u64, now: u32): void {
  let ic = m.frame + m.l4;
  let v: u32 = 0;
  if (q6.quoted6(ic, m.l4len) && q6.qSrcHi == dhi && q6.qSrcLo == dlo) {
    let s = addr6.find(q6.qSrcHi, q6.qSrcLo), d = addr6.find(q6.qDstHi, q6.qDstLo);
    if (s != 0 && d != 0) {
      let z = zone | flow.ZONE_V6, p = q6.qProto, sp = q6.qSport, dp = q6.qDport;
      v = ct.alive(flow.lookup(flow.hashKey(z, p, d, s, dp, sp), z, p, d, s, dp, sp), now);
    }
  }
  if (v == 0) {
    drop(m.inPort, Reason.IcmpErrorUnmatched);
    return;
  }
  let r = flow.rec((v - 1) >> 1);
  if (!egress.resolved(r) && !egress.resolve(r, now)) {
    drop(m.inPort, Reason.NeighborUnresolved);
    return;
  }
  let ip = m.frame + m.l3;
  ipv6.setHopLimit(ip, ipv6.hopLimit(ip) - 1);
  egress.send(m, r, (v - 1) & 1, now);
}

export function isRouterAddress6(zone: u32, hi: u64, lo: u64): bool {
  for (let i: u32 = 0; i < ifCount; i++) {
    let f = iface(i);
    if (f.state == IF_UP && <u32>f.zone == zone && isOurs(f, hi, lo)) return true;
  }
  return false;
}

// Neighbour solicitations for a gateway address are answered; the sender's link-layer address from a
// solicitation, or the target's from an advertisement, is learned. Everything else has its verdict
// (see the top). Validation is RFC 4861's (§6.1.1, §6.1.2, §7.1.1, §7.1.2, §8.1), as Linux's ndisc
// does it; the hop limit first, as the check that says the message came from on-link.
function ndInput(m: Meta, f: Iface, ifIndex: u32, ip: usize, icmp: usize, t: u32, now: u32): void {
  if (f.state != IF_UP) {
    unanswered(m, Reason.PortDown);
    return;
  }
  if (ipv6.hopLimit(ip) != ND_HOP_LIMIT) {
    unanswered(m, Reason.NdBadHopLimit);
    return;
  }
  if (!ndValid(m, ip, icmp, t)) {
    unanswered(m, Reason.NdMalformed);
    return;
  }
  if (t != icmpv6.NEIGHBOR_SOLICITATION && t != icmpv6.NEIGHBOR_ADVERTISEMENT) {
    if (t == icmpv6.ROUTER_SOLICITATION && (f.punt & PUNT_RS) != 0 && toRouters(f, ip)) {
      puntRs(m, f, ifIndex);
      return;
    }
    unanswered(m, Reason.NdRouterMessage);
    return;
  }
  let len = m.l4len;
  let thi = addrHi(icmp + 8), tlo = addrLo(icmp + 8);
  let lla: u64 = 0;
  let hasLla = false;
  // Options (checked by ndValid): type, length in 8-byte units, data.
  let o: u32 = 24;
  while (o + 8 <= len) {
    let ot = get8(icmp + o);
    let ol = get8(icmp + o + 1) << 3;
    if ((t == icmpv6.NEIGHBOR_SOLICITATION && ot == OPT_SOURCE_LLA) || (t == icmpv6.NEIGHBOR_ADVERTISEMENT && ot == OPT_TARGET_LLA)) {
      lla = loadMac(icmp + o + 2);
      hasLla = true;
    }
    o += ol;
  }
  let zone = <u32>f.zone;
  let shi = addrHi(ip + ipv6.SRC), slo = addrLo(ip + ipv6.SRC);
  if (t == icmpv6.NEIGHBOR_ADVERTISEMENT) {
    if (hasLla) neighbor.update(zone, 6, thi, tlo, lla, ifIndex, neighbor.LEARNED, now);
    unanswered(m, Reason.NdAdvertisement);
    return;
  }
  if (!isOurs(f, thi, tlo)) {
    unanswered(m, Reason.NdNotTarget);
    return;
  }
  let unspecified = (shi | slo) == 0;
  if (hasLla && !unspecified) neighbor.update(zone, 6, shi, slo, lla, ifIndex, neighbor.LEARNED, now);
  // The advertisement: to the solicitor (or all nodes, for duplicate address detection). As Linux's
  // ndisc_recv_ns, a solicitation sent to a multicast group gets Override and the target link-layer
  // address option; a unicast one (a reachability probe from a host that has our MAC) neither.
  let multicast = get8(ip + ipv6.DST) == 0xff;
  let mlen: u32 = multicast ? 32 : 24;
  let flen: u32 = 14 + 40 + mlen;
  let p = newFrame(flen, m.inPort);
  if (p == 0) return;
  let dstMac = unspecified ? <u64>0x0100_0000_3333 : loadMac(m.frame + eth.SRC);
  ethHeader(p, dstMac, f, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, mlen, ND_HOP_LIMIT, thi, tlo, unspecified ? 0xff02_0000_0000_0000 : shi, unspecified ? 1 : slo);
  let flags = NA_ROUTER | (multicast ? NA_OVERRIDE : 0) | (unspecified ? 0 : NA_SOLICITED);
  ndMessage(o6, icmpv6.NEIGHBOR_ADVERTISEMENT, flags, thi, tlo, multicast ? OPT_TARGET_LLA : 0, f);
  bump(Stat.ArpReplies);
  trace.note(trace.Step.Local, 1, 0, 0, 0);
  sendFromRouter(p, flen, f, now);
}

// Is the packet for all-routers (ff02::2) or one of f's own addresses?
@inline function toRouters(f: Iface, ip: usize): bool {
  let hi = addrHi(ip + ipv6.DST), lo = addrLo(ip + ipv6.DST);
  return (hi == 0xff02_0000_0000_0000 && lo == 2) || isOurs(f, hi, lo);
}

// RFC 4861's validity checks of a received ND message of type t: not a fragment (RFC 6980), code 0, the
// checksum, the fixed part present, every option of non-zero length and inside the message, a target
// that is not multicast, a solicitation from the unspecified address only to a solicited-node group and
// without a source link-layer address, a solicited advertisement never to a multicast address.
function ndValid(m: Meta, ip: usize, icmp: usize, t: u32): bool {
  if (m.flags & FLAG_FRAGMENT) return false;
  let len = m.l4len;
  if (icmpv6.code(icmp) != 0) return false;
  let fixed: u32 = t == icmpv6.ROUTER_SOLICITATION ? 8 : t == icmpv6.ROUTER_ADVERTISEMENT ? 16 : t == icmpv6.REDIRECT ? 40 : 24;
  if (len < fixed) return false;
  let s = checksum.sum(ip + ipv6.SRC, 32);
  s += <u64>len + 58;
  if (checksum.fold(checksum.sum(icmp, len, s)) != 0) return false;
  let sourceLla = false;
  let o = fixed;
  while (o < len) {
    if (o + 2 > len) return false;
    let ol = get8(icmp + o + 1) << 3;
    if (ol == 0 || o + ol > len) return false;
    if (get8(icmp + o) == OPT_SOURCE_LLA) sourceLla = true;
    o += ol;
  }
  // §6.1.1: a solicitation from the unspecified address carries no source link-layer address.
  if (t == icmpv6.ROUTER_SOLICITATION && sourceLla && (addrHi(ip + ipv6.SRC) | addrLo(ip + ipv6.SRC)) == 0) return false;
  if (t == icmpv6.NEIGHBOR_SOLICITATION || t == icmpv6.NEIGHBOR_ADVERTISEMENT) {
    if (get8(icmp + 8) == 0xff) return false;
    let dstMulticast = get8(ip + ipv6.DST) == 0xff;
    if (t == icmpv6.NEIGHBOR_ADVERTISEMENT) return !(dstMulticast && (get8(icmp + 4) & NA_SOLICITED) != 0);
    if ((addrHi(ip + ipv6.SRC) | addrLo(ip + ipv6.SRC)) == 0) {
      // Duplicate address detection: to ff02::1:ffXX:XXXX, with no source link-layer address.
      if (sourceLla || addrHi(ip + ipv6.DST) != 0xff02_0000_0000_0000 || (addrLo(ip + ipv6.DST) >> 24) != 0x1ff) return false;
    }
  }
  return true;
}

// Writes after the IPv6 header at o6 a neighbour solicitation or advertisement (type, flags) for
// target (hi, lo), carrying f's MAC in link-layer address option `option` (32 bytes; 0: no option,
// 24 bytes), and its checksum.
function ndMessage(o6: usize, type: u32, flags: u32, hi: u64, lo: u64, option: u32, f: Iface): void {
  let nd = o6 + 40;
  store<u64>(nd, 0);
  icmpv6.setType(nd, type);
  store<u8>(nd + 4, <u8>flags);
  storeAddr(nd + 8, hi, lo);
  if (option != 0) {
    store<u8>(nd + 24, <u8>option);
    store<u8>(nd + 25, 1);
    storeMac(nd + 26, f.mac);
  }
  icmpv6.setChecksum(nd, icmp6Checksum(o6, nd, option != 0 ? 32 : 24));
}

// Sends a neighbour solicitation for (hi, lo) from interface ifIndex, to its solicited-node group.
export function solicit(ifIndex: u32, hi: u64, lo: u64, now: u32): void {
  let f = iface(ifIndex);
  if ((f.ipv6a | f.ipv6b) == 0) return;
  if (!arpRequests.take(now)) {
    bump(Stat.IcmpRateLimited);
    return;
  }
  let flen: u32 = 14 + 40 + 32;
  let p = newFrame(flen, GENERATED_PORT);
  if (p == 0) return;
  let low24 = lo & 0xff_ffff;
  // 33:33:ff:xx:xx:xx, the solicited-node group's MAC, packed as tables/mac keys are.
  let mac = <u64>0x3333 | (<u64>0xff << 16) | (((low24 >> 16) & 0xff) << 24) | (((low24 >> 8) & 0xff) << 32) | ((low24 & 0xff) << 40);
  ethHeader(p, mac, f, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, 32, ND_HOP_LIMIT, f.ipv6a, f.ipv6b, 0xff02_0000_0000_0000, 0x0000_0001_ff00_0000 | low24);
  ndMessage(o6, icmpv6.NEIGHBOR_SOLICITATION, 0, hi, lo, OPT_SOURCE_LLA, f);
  bump(Stat.ArpRequests);
  sendFromRouter(p, flen, f, now);
}

// The echo reply to an echo request to a router address: a new packet of the IPv6 header and the
// ICMPv6 message alone, as Linux's icmpv6_echo_reply builds it (the request's extension headers, a
// routing header above all, are never reflected; RFC 5095 §3). The traffic class is kept, as Linux
// keeps it; the flow label is 0.
export function echoReply6(m: Meta, f: Iface, ip: usize, icmp: usize, now: u32): void {
  let len = m.l4len;
  let flen = 14 + 40 + len;
  let p = newFrame(flen, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, len, 64, addrHi(ip + ipv6.DST), addrLo(ip + ipv6.DST), addrHi(ip + ipv6.SRC), addrLo(ip + ipv6.SRC));
  set16(o6, 0x6000 | (get16(ip) & 0x0ff0));
  let ic = o6 + 40;
  memory.copy(ic, icmp, len);
  icmpv6.setType(ic, icmpv6.ECHO_REPLY);
  icmpv6.setChecksum(ic, icmp6Checksum(o6, ic, len));
  bump(Stat.EchoReplies);
  sendFromRouter(p, flen, f, now);
}

// An ICMPv6 error about packet m back to its source, from the interface's address, quoting as much of
// the packet as fits in the minimum MTU (RFC 4443 §2.4), never about an ICMPv6 error or a multicast.
function sendError6(m: Meta, f: Iface, type: u32, code: u32, now: u32, mtu: u32 = 0): void {
  if ((f.ipv6a | f.ipv6b) == 0) return;
  sendError6From(m, f, type, code, mtu, f.ipv6a, f.ipv6b, now);
}

// The same from address (fromHi, fromLo), with `param` in the message's second word (the pointer of a
// Parameter Problem, the MTU of a Packet Too Big, RFC 4443 §3.2).
export function sendError6From(m: Meta, f: Iface, type: u32, code: u32, param: u32, fromHi: u64, fromLo: u64, now: u32): void {
  let ip = m.frame + m.l3;
  if ((m.flags & FLAG_LATER_FRAGMENT) && type != icmpv6.PACKET_TOO_BIG) return;
  if (get8(ip + ipv6.DST) == 0xff && type != icmpv6.PACKET_TOO_BIG) return; // RFC 4443 §2.4(e)
  let shi = addrHi(ip + ipv6.SRC), slo = addrLo(ip + ipv6.SRC);
  if ((shi | slo) == 0 || (shi >> 56) == 0xff) return;
  if (m.l4 != 0 && m.protocol == 58 && icmpv6.isError(icmpv6.type(m.frame + m.l4))) return;
  if (!icmpErrors.take(now)) {
    bump(Stat.IcmpRateLimited);
    return;
  }
  let quoted = m.len - m.l3;
  if (quoted > MIN_MTU - 48) quoted = MIN_MTU - 48;
  let flen = 14 + 40 + 8 + quoted;
  let p = newFrame(flen, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, 8 + quoted, 64, fromHi, fromLo, shi, slo);
  let ic = o6 + 40;
  store<u64>(ic, 0);
  icmpv6.setType(ic, type);
  store<u8>(ic + 1, <u8>code);
  set32(ic + 4, param); // a Parameter Problem's pointer, a Packet Too Big's MTU; 0 otherwise
  memory.copy(ic + 8, ip, quoted);
  icmpv6.setChecksum(ic, icmp6Checksum(o6, ic, 8 + quoted));
  bump(Stat.IcmpErrors);
  sendFromRouter(p, flen, f, now);
}

export function ipv6Header(o: usize, payloadLen: u32, hopLimit: u32, shi: u64, slo: u64, dhi: u64, dlo: u64): void {
  store<u32>(o, 0x60); // version 6, traffic class 0, flow label 0 (first byte 0x60 in memory)
  ipv6.setPayloadLength(o, payloadLen);
  store<u8>(o + ipv6.NEXT_HEADER, 58);
  ipv6.setHopLimit(o, hopLimit);
  storeAddr(o + ipv6.SRC, shi, slo);
  storeAddr(o + ipv6.DST, dhi, dlo);
}

// The ICMPv6 checksum: the message plus the pseudo-header (addresses, upper-layer length, next header).
export function icmp6Checksum(ip: usize, icmp: usize, len: u32): u32 {
  set16(icmp + icmpv6.CHECKSUM, 0);
  let s = checksum.sum(ip + ipv6.SRC, 32);
  s += <u64>len + 58;
  s = checksum.sum(icmp, len, s);
  return checksum.fold(s);
}
