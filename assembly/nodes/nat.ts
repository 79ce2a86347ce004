// Stage: a new connection's slow path (VFP's layers on the first packet): destination NAT (port
// mappings), the route, source NAT (masquerade, or hairpin), the choice of a free reply tuple, and
// the connection record with everything the fast path will need, including the checksum deltas of
// its translations. Later packets of the connection never come here.
//
// Load balancing (HCN LoadBalancer) is a port mapping with a list of backends: the first packet picks
// one by the balancer's distribution, conntrack keeps it for the connection, and a backend removed from
// the list drains (its connections live on, new ones go elsewhere). With direct server return the
// destination address is left as the VIP and the packet is only routed to the backend, which answers
// from the VIP itself: its replies need no translation.
//
// Hairpin: a client reaching a published port through a router address, whose mapped server sits
// behind the same interface the client came in by, would get the server's reply straight over L2
// from an address it never talked to. Like Docker's hairpin NAT, the client's source is then
// translated to the interface's gateway address, so the reply comes back through the router.
//
// Port choice (as OVS's conntrack NAT): the original source port if it is in the range and its reply
// tuple is free, else the first free one probing the range from a hash of the tuple; a tuple is free
// when the connection table has no key for it, so a port is reused towards different destinations
// (endpoint-dependent mapping, RFC 4787 §4.1), and exhaustion is only per destination. A rule with
// endpoint-independent mapping instead keeps one external port per internal endpoint (tables/eim.ts).
// A rule without a configured range keeps the source port's class, as Linux's masquerade does: a port
// below 512 maps into 1-511, one of 512-1023 into 600-1023, the rest into 1024-65535 (RFC 4787 §4.2.2
// asks for the same for 0-1023), so UDP 500 (IKE) leaves as 500 when that is free.
// When the whole range is taken, a new TCP connection (a SYN) may take over the tuple of a translated
// connection that is already closing (TIME_WAIT, or CLOSE after a RST), as Linux does since 6.5
// (nf_nat_used_tuple_harder) rather than refusing while it times out.
import { Reason } from "../reasons";
import { iface, IF_EXTERNAL, IF_TCP_LIBERAL, IF_TCP_NO_PICKUP, isRouterAddressV4 } from "../router";
import * as flow from "../tables/flow";
import * as lpm from "../tables/lpm";
import * as natrules from "../tables/natrules";
import * as eim from "../tables/eim";
import * as checksum from "../wire/checksum";
import { swap16 } from "../wire/bytes";
import * as ct from "./ct";
import * as win from "./tcpwindow";
import * as trace from "../trace";
import { bump, Stat } from "../counters";
import * as overlay from "../overlay";
import { remoteHop } from "./vxlan";

const DEFAULT_PORT_LO: u32 = 1024;
const DEFAULT_PORT_HI: u32 = 65535;
// The IPv4 header checksum change of the TTL decrement every forwarded packet gets: the word (TTL,
// protocol) drops by 0x0100, i.e. ~old + new = 0xfeff in one's complement.
const TTL_DELTA: u32 = 0xfeff;

// Results besides a record index (>= 0): -1 the packet is for the router itself; other negative
// values are -Reason.
export const LOCAL: i32 = -1;

// In byte 29 of a connection: it goes to a direct-server-return backend, whose address is at 92.
export const CT_DSR: u8 = 0x40;

// The hash a new connection picks its backend by (tables/natrules.ts: Maglev), by the balancer's
// distribution: per connection (5-tuple), per source address and protocol, or per source address.
// Unseeded: every host of a cluster must pick the same backend for the same connection.
@inline function backendHash(dist: u32, proto: u32, src: u32, sport: u32, dst: u32, dport: u32): u32 {
  if (dist == natrules.LB_SOURCE_IP) return flow.hashUnseeded(0, 0, src, 0, 0, 0);
  if (dist == natrules.LB_SOURCE_IP_PROTOCOL) return flow.hashUnseeded(0, proto, src, 0, 0, 0);
  return flow.hashUnseeded(0, proto, src, dst, sport, dport);
}

// The egress the new connection's route chose, for the caller to prime the connection's cache with.
export let routedIface: u32 = 0;
export let routedNextHop: u32 = 0;

export function newConnection(ifIn: u32, zone: u32, proto: u32, src: u32, dst: u32, sport: u32, dport: u32,
                              tcpFlags: u32, seq: u32, origHash: u32, now: u32): i32 {
  let state = ct.initialState(proto, tcpFlags, zone);
  // A TCP segment other than a lone SYN, or an echo reply, may start a one-sided connection to a
  // remote endpoint (ct.ts CT_ONE_SIDED): decided once the route is known.
  let needRemote = (state == ct.State.None && proto == 6 && win.validFlags(tcpFlags)) || (proto == 1 && sport == 0);
  if (needRemote && overlay.remoteCount == 0) return -<i32>Reason.CtInvalidNew;
  if (state == ct.State.None && !needRemote) return -<i32>Reason.CtInvalidNew;

  let dstIsRouter = isRouterAddressV4(zone, dst);
  let ndst = dst, ndport = dport;
  let dnat = false;
  let dsrBackend: u32 = 0;
  let lbChosen = false;
  if (proto == 6 || proto == 17) {
    let mp = natrules.findMapping(zone, proto, dst, dport, dstIsRouter);
    if (mp != 0) {
      if (natrules.isBalancer(mp)) {
        let n = natrules.backendCount(mp);
        if (n == 0) return -<i32>Reason.LbNoBackend;
        let b = natrules.pickBackend(mp, backendHash(natrules.distribution(mp), proto, src, sport, dst, dport));
        if (natrules.isDsr(mp)) {
          dsrBackend = b; // the packet keeps its destination (the VIP) and is only sent to the backend
        } else {
          ndst = b;
          let ip = <u32>load<u16>(mp, 6);
          ndport = ip != 0 ? ip : dport;
          dnat = true;
        }
        bump(Stat.LbChoices);
        lbChosen = true;
      } else {
        ndst = load<u32>(mp, 12);
        ndport = <u32>load<u16>(mp, 6);
        dnat = true;
      }
    }
  }
  // To the router itself, or to a frontend VIP on a port or protocol that no mapping of it takes.
  if (!dnat && dsrBackend == 0 && (dstIsRouter || natrules.isVip(zone, dst))) return LOCAL;

  if (dnat || dsrBackend != 0) trace.note(trace.Step.Dnat, 0, dsrBackend != 0 ? dsrBackend : ndst, ndport, lbChosen ? 1 : 0);
  let rt = lpm.lookup4(zone, dsrBackend != 0 ? dsrBackend : ndst);
  trace.note(trace.Step.Route, rt != 0 ? 1 : 0, rt != 0 ? lpm.routeIface(rt) : 0, rt != 0 ? <u32>lpm.routeNextHopLo(rt) : 0, rt != 0 ? lpm.routeFlags(rt) : 0);
  if (rt == 0) return -<i32>Reason.NoRoute;
  if (lpm.routeFlags(rt) & lpm.ROUTE_BLACKHOLE) return -<i32>Reason.RouteBlackhole;
  let outIf = lpm.routeIface(rt);
  let ifFlags = <u32>(iface(ifIn).flags | iface(outIf).flags);
  if (state == ct.State.TcpEstablished && (ifFlags & IF_TCP_NO_PICKUP)) return -<i32>Reason.CtInvalidNew;
  routedIface = outIf;
  routedNextHop = <u32>lpm.routeNextHopLo(rt);
  if (routedNextHop == 0) routedNextHop = dsrBackend != 0 ? dsrBackend : ndst;
  let oneSided = overlay.remoteCount != 0 && (proto == 6 || proto == 1) && remoteHop(outIf, false, 0, <u64>routedNextHop);
  if (needRemote && !oneSided) return -<i32>Reason.CtInvalidNew;
  if (oneSided && proto == 6) state = ct.State.TcpEstablished;

  let nsrc = src, nsport = sport;
  let snat = false;
  let lo = DEFAULT_PORT_LO, hi = DEFAULT_PORT_HI;
  let rule = natrules.findSnat(zone, outIf, src, ndst);
  let eimRule: i32 = -1;
  if (rule != 0) {
    let ext = load<u32>(rule, 16);
    nsrc = ext != 0 ? ext : iface(outIf).ipv4;
    let rf = load<u16>(rule, 14);
    if (rf & natrules.SNAT_PORT_CLASS) {
      if (proto == 1) { lo = 1; hi = 65535; }
      else if (sport < 512) { lo = 1; hi = 511; }
      else if (sport < 1024) { lo = 600; hi = 1023; }
    } else {
      lo = <u32>load<u16>(rule, 10);
      hi = <u32>load<u16>(rule, 12);
    }
    snat = true;
    if (rf & natrules.SNAT_EIM) eimRule = <i32>((rule - natrules.snatBase) / natrules.SNAT_SIZE);
  } else if (dnat && outIf == ifIn && (iface(ifIn).flags & IF_EXTERNAL) == 0) {
    nsrc = iface(outIf).ipv4;
    snat = true;
  }

  // The reply tuple: (ndst -> nsrc, ndport -> nsport); for echo the id travels as the reply's
  // destination "port" (see nodes/ip4.ts).
  let rSport = proto == 1 && sport != 0 ? 0 : ndport; // (an echo reply starting a one-sided connection: ct.ts)
  let mapping: usize = 0;
  if (eimRule >= 0) {
    // Endpoint-independent: the endpoint's existing mapping, or a port no other mapping owns.
    mapping = eim.find(zone, proto, src, sport, nsrc);
    let port: i32 = -1;
    if (mapping != 0) {
      let p = eim.externalPort(mapping);
      if (free(zone, proto, ndst, nsrc, rSport, p, now)) port = <i32>p;
    } else {
      port = pickPort(eimRule, zone, proto, ndst, nsrc, rSport, sport, lo, hi, src, dst, dport, now);
      if (port < 0 && reclaim(now)) port = pickPort(eimRule, zone, proto, ndst, nsrc, rSport, sport, lo, hi, src, dst, dport, now);
    }
    if (port < 0) return -<i32>Reason.NatPortExhausted;
    nsport = <u32>port;
  } else if (snat) {
    let port = pickPort(-1, zone, proto, ndst, nsrc, rSport, sport, lo, hi, src, dst, dport, now);
    if (port < 0 && state == ct.State.TcpSynSent) port = takeOverClosing(zone, ndst, nsrc, rSport, lo, hi, src, dst, sport, dport, seq);
    if (port < 0) return -<i32>Reason.NatPortExhausted;
    nsport = <u32>port;
  } else {
    pickedHash = flow.hashKey(zone, proto, ndst, nsrc, rSport, nsport);
  }
  let replyHash = pickedHash;
  if (snat) trace.note(trace.Step.Snat, 0, nsrc, nsport, 0);

  let ri = ct.take(now);
  if (ri < 0) return -<i32>Reason.CtTableFull;
  if (eimRule >= 0) {
    // free() above may have released an expired connection, and ct.take an early-dropped one, each
    // possibly the mapping's last: the mapping is then gone and the table's records moved. Find it
    // again (0: a new mapping, with the port chosen above, which is no longer owned).
    if (mapping != 0) mapping = eim.find(zone, proto, src, sport, nsrc);
    if (mapping != 0) eim.ref(mapping);
    else if (!eim.add(zone, proto, src, sport, nsrc, nsport, <u32>eimRule)) {
      flow.giveBack(<u32>ri);
      return -<i32>Reason.NatPortExhausted;
    }
  }
  let r = flow.rec(<u32>ri);
  flow.setTuples(r, zone, proto, state, (snat ? flow.CT_SNAT : 0) | (dnat ? flow.CT_DNAT : 0) | (eimRule >= 0 ? flow.CT_EIM : 0),
                 src, dst, sport, dport, ndst, nsrc, rSport, nsport, now);
  store<u32>(r, now + ct.timeout(state), 36);
  if (ifFlags & IF_TCP_LIBERAL) ct.markLiberal(r);
  if (dsrBackend != 0) {
    store<u32>(r, dsrBackend, 92);
    store<u8>(r, CT_DSR, 29);
  }
  if (oneSided) ct.markOneSided(r);
  // Checksum deltas. Original direction: (src, dst, sport, dport) -> (nsrc, ndst, nsport, ndport);
  // reply direction: the inverse on the reply tuple.
  let a = checksum.delta32(src, nsrc) + checksum.delta32(dst, ndst);
  let b = checksum.delta32(ndst, dst) + checksum.delta32(nsrc, src);
  let pa: u32 = 0, pb: u32 = 0;
  if (proto == 6 || proto == 17) {
    pa = checksum.delta16(sport, nsport) + checksum.delta16(dport, ndport);
    pb = checksum.delta16(ndport, dport) + checksum.delta16(nsport, sport);
  } else if (proto == 1) {
    pa = checksum.delta16(sport, nsport);
    pb = checksum.delta16(nsport, sport);
  }
  // Stored in network byte order, as the checksum fields they are added to (tables/flow.ts).
  store<u16>(r, <u16>swap16(checksum.foldSum(a + TTL_DELTA)), 56);
  store<u16>(r, <u16>swap16(checksum.foldSum(proto == 1 ? pa : a + pa)), 58);
  store<u16>(r, <u16>swap16(checksum.foldSum(b + TTL_DELTA)), 60);
  store<u16>(r, <u16>swap16(checksum.foldSum(proto == 1 ? pb : b + pb)), 62);
  flow.commit(<u32>ri, origHash, replyHash);
  bump(Stat.CtCreated);
  return ri;
}

// A source port (or echo id) in [lo, hi] whose reply tuple (rsrc -> rdst, rsport -> port) is free and,
// for an endpoint-independent rule (rule >= 0), that no other mapping owns; leaves that tuple's hash in
// pickedHash.
function pickPort(rule: i32, zone: u32, proto: u32, rsrc: u32, rdst: u32, rsport: u32, want: u32, lo: u32, hi: u32,
                  src: u32, dst: u32, dport: u32, now: u32): i32 {
  if (want >= lo && want <= hi && usable(rule, zone, proto, rsrc, rdst, rsport, want, now)) return <i32>want;
  let range = hi - lo + 1;
  let start = flow.hashKey(zone, proto, src, dst, want, dport) % range;
  for (let n: u32 = 0; n < range; n++) {
    let port = lo + (start + n) % range;
    if (usable(rule, zone, proto, rsrc, rdst, rsport, port, now)) return <i32>port;
  }
  return -1;
}

@inline function usable(rule: i32, zone: u32, proto: u32, rsrc: u32, rdst: u32, rsport: u32, port: u32, now: u32): bool {
  return (rule < 0 || !eim.owned(<u32>rule, proto, port)) && free(zone, proto, rsrc, rdst, rsport, port, now);
}

// With every port of the range in use: the first port (probing as pickPort does) whose tuple is held
// by a source-translated TCP connection in TIME_WAIT or CLOSE, which is released for the new one. Only
// a SYN (sequence number `seq`) gets here, only once the range is exhausted, and, as in Linux
// (nf_seq_has_advanced), only when the SYN is past the old connection's original direction
// (its end, tcpwindow.ts), so the old peer's late segments cannot be taken for the new connection's.
function takeOverClosing(zone: u32, rsrc: u32, rdst: u32, rsport: u32, lo: u32, hi: u32,
                         src: u32, dst: u32, sport: u32, dport: u32, seq: u32): i32 {
  let range = hi - lo + 1;
  let start = flow.hashKey(zone, 6, src, dst, sport, dport) % range;
  for (let n: u32 = 0; n < range; n++) {
    let port = lo + (start + n) % range;
    let h = flow.hashKey(zone, 6, rsrc, rdst, rsport, port);
    let v = flow.lookup(h, zone, 6, rsrc, rdst, rsport, port);
    if (v == 0) continue;
    let ri = (v - 1) >> 1;
    let r = flow.rec(ri);
    let s = <u32>load<u8>(r, 27);
    if ((load<u8>(r, 28) & flow.CT_SNAT) == 0 || (s != ct.State.TcpTimeWait && s != ct.State.TcpClose)) continue;
    if (<i32>(seq + 1 - load<u32>(r + win.TD)) <= 0) continue;
    flow.release(ri);
    pickedHash = h;
    return <i32>port;
  }
  return -1;
}

// The reply key hash of the port pickPort chose (or of the untranslated reply tuple).
let pickedHash: u32 = 0;

// An endpoint-independent port is owned by its mapping for as long as the mapping has a connection,
// and an expired connection is released only when a lookup or the sweep reaches it: free() sees the
// tuples it probes, not the connections that keep another endpoint's mapping. So when a rule's range
// looks exhausted, the whole connection table is swept once and the choice tried again. That walk is
// the price of an exhausted range, so it runs at most once per RECLAIM_MS of `now`: a flood of new
// connections against a full range costs one table walk a second, not one per packet.
const RECLAIM_MS: u32 = 1000;
let reclaimedAt: u32 = 0;
let reclaimedOnce = false;
function reclaim(now: u32): bool {
  if (reclaimedOnce && now - reclaimedAt < RECLAIM_MS) return false;
  reclaimedAt = now;
  reclaimedOnce = true;
  let n = flow.sweep(now, flow.capacity);
  if (n) bump(Stat.CtExpired, n);
  return n != 0;
}

// A reply tuple is free when no live connection holds it: an expired one the sweep has not reached
// yet is released here, as a packet's own lookup would (ct.alive).
@inline function free(zone: u32, proto: u32, rsrc: u32, rdst: u32, rsport: u32, port: u32, now: u32): bool {
  pickedHash = flow.hashKey(zone, proto, rsrc, rdst, rsport, port);
  return ct.alive(flow.lookup(pickedHash, zone, proto, rsrc, rdst, rsport, port), now) == 0;
}
