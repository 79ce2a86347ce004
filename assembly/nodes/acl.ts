// Stage: a port's ACLs (HNS endpoint ACL semantics), stateful. Every IP packet a port with ACLs
// receives (direction Out: from the endpoint) or sends (In: to the endpoint) belongs to a connection
// in the port's own conntrack zone. A packet of a known connection passes without any rule: that is
// how replies of an allowed connection pass. The first packet of a connection is classified against
// the rule set bound to the port and direction (the compiled union of its network's and its own
// rules), or the direction's default action when no rule matches; allowed, it creates the
// connection, blocked, it is dropped as acl_blocked. A connection classified under an older policy
// generation is classified again on its next packet, so a Block added now cuts it.
//
// Not subject to ACLs: non-IP frames (ARP), IPv6 neighbour discovery and MLD (hosts cannot work
// without them), and ICMP and ICMPv6 errors that relate to a connection of the zone (the quoted
// packet's); one that relates to none is dropped as icmp_error_unmatched, whatever the rules say.
//
// Fragments (tables/frag.ts, in the port's zone): the first is classified like any packet, after its
// ports are noted; later ones carry no ports, so they follow the first fragment's decision: they pass
// if it made (or found) a connection and are dropped as ip_fragment if it did not. A later fragment
// sent by the endpoint before its first fragment is held and checked again after it; one for the
// endpoint (direction In) before its first is dropped as ip_fragment, since it may be flooded.
import { Reason } from "../reasons";
import { Meta, FLAG_FRAGMENT, FLAG_LATER_FRAGMENT, FLAG_RELEASED } from "../packet";
import * as acl from "../tables/acl";
import * as flow from "../tables/flow";
import * as addr6 from "../tables/addr6";
import * as frag from "../tables/frag";
import * as ipv6 from "../wire/ipv6";
import * as eth from "../wire/ethernet";
import * as ipv4 from "../wire/ipv4";
import * as icmpw from "../wire/icmp";
import { get8, get16, get32 } from "../wire/bytes";
import { bump, Stat } from "../counters";
import { quoted, qProto, qSrc, qDst, qSport, qDport } from "./icmp4";
import * as q6 from "./icmp6";
import { quoted6 } from "./icmp6";
import * as ct from "./ct";
import * as trace from "../trace";

// Port zones follow the compartments' (0-1023) in the 15-bit zone space.
export const ZONE_BASE: u32 = 1024;
export const MAX_ACL_PORT: u32 = 0x7fff - ZONE_BASE;

// The packet's tuple, as one direction of a connection sees it.
let fam: u32 = 0;
let proto: u32 = 0;
let shi: u64 = 0, slo: u64 = 0, dhi: u64 = 0, dlo: u64 = 0;
let sport: u32 = 0, dport: u32 = 0, tcpFlags: u32 = 0;

const EXEMPT: i32 = 1;
const ICMP_ERROR: i32 = 2;

// The packet's protocol and addresses, with no ports yet.
function readAddresses(m: Meta): void {
  let ip = m.frame + m.l3;
  proto = m.protocol;
  sport = 0;
  dport = 0;
  tcpFlags = 0;
  if (m.ethertype == eth.TYPE_IPV4) {
    fam = 4;
    shi = 0;
    dhi = 0;
    slo = <u64>ipv4.src(ip);
    dlo = <u64>ipv4.dst(ip);
  } else {
    fam = 6;
    shi = bswap<u64>(load<u64>(ip, 8));
    slo = bswap<u64>(load<u64>(ip, 16));
    dhi = bswap<u64>(load<u64>(ip, 24));
    dlo = bswap<u64>(load<u64>(ip, 32));
  }
}

// Reads the tuple. Returns 0, EXEMPT (not subject to ACLs) or ICMP_ERROR.
function readTuple(m: Meta): i32 {
  readAddresses(m);
  let l4 = m.frame + m.l4;
  if (proto == 6 || proto == 17) {
    sport = get16(l4);
    dport = get16(l4 + 2);
    if (proto == 6) tcpFlags = get8(l4 + 13);
  } else if (proto == 1 && fam == 4) {
    let t = icmpw.type(l4);
    if (t == icmpw.ECHO_REQUEST) sport = icmpw.ident(l4);
    else if (t == icmpw.ECHO_REPLY) dport = icmpw.ident(l4);
    else if (icmpw.isError(t)) return ICMP_ERROR;
  } else if (proto == 58 && fam == 6) {
    let t = get8(l4);
    if (t == 128) sport = get16(l4 + 4);
    else if (t == 129) dport = get16(l4 + 4);
    else if (t < 128) return ICMP_ERROR;
    else if ((t >= 130 && t <= 137) || t == 143) return EXEMPT; // MLD, router and neighbour discovery
  }
  return 0;
}

// The ACL stage for packet m at port p in direction dir. Returns Reason.None to let it pass.
export function aclCheck(m: Meta, p: u32, dir: u32, now: u32): Reason {
  if (m.ethertype != eth.TYPE_IPV4 && m.ethertype != eth.TYPE_IPV6) return Reason.None;
  let zone = ZONE_BASE + p;
  let later = (m.flags & FLAG_LATER_FRAGMENT) != 0;
  if (later) {
    let r = laterFragment(m, p, dir, zone, now);
    if (r) return r;
  } else {
    let t = readTuple(m);
    if (t == EXEMPT) return Reason.None;
    if (t == ICMP_ERROR) return relatedError(m, zone, now) ? Reason.None : Reason.IcmpErrorUnmatched;
    if (m.flags & FLAG_FRAGMENT) {
      let r = firstFragment(m, zone, now);
      if (r) return r;
    }
  }

  let v6 = fam == 6;
  let zkey = v6 ? zone | flow.ZONE_V6 : zone;
  let s: u32, d: u32;
  if (v6) {
    s = addr6.find(shi, slo);
    d = addr6.find(dhi, dlo);
  } else {
    s = <u32>slo;
    d = <u32>dlo;
  }
  if (!v6 || (s != 0 && d != 0)) {
    let h = flow.hashKey(zkey, proto, s, d, sport, dport);
    let v = ct.live(flow.lookup(h, zkey, proto, s, d, sport, dport), proto, tcpFlags, now);
    if (v != 0) {
      let ri = (v - 1) >> 1;
      let r = flow.rec(ri);
      if (load<u32>(r, 92) != acl.generation) {
        if (!stillAllowed(r, p)) {
          flow.release(ri);
          return Reason.AclBlocked;
        }
        store<u32>(r, acl.generation, 92);
      }
      trace.note(trace.Step.Acl, dir, p, 0, 2);
      if (later) return Reason.None; // no transport header: the connection's state does not move
      return ct.hit(r, ri, proto, (v - 1) & 1, m.frame + m.l4, m.l4len, now);
    }
  }
  if (later) return Reason.IpFragment;

  // A first packet: classify, then track it if allowed.
  let local = dir == acl.DIR_OUT;
  if (!allowed(p, dir, v6, local ? shi : dhi, local ? slo : dlo, local ? dhi : shi, local ? dlo : slo,
               local ? sport : dport, local ? dport : sport)) return Reason.AclBlocked;
  let state = ct.initialState(proto, tcpFlags, zone);
  if (state == ct.State.None) return Reason.CtInvalidNew;
  return track(m, zkey, v6, dir, state, now);
}

// Classifies under the binding of (p, dir): true if the deciding rule, or the default, allows.
function allowed(p: u32, dir: u32, v6: bool, lhi: u64, llo: u64, rhi: u64, rlo: u64, lport: u32, rport: u32): bool {
  if (!acl.bound(p, dir)) return true;
  let b = acl.binding(p, dir);
  let blob = <usize>load<u32>(b);
  let noPorts = proto != 6 && proto != 17;
  if (blob != 0) {
    let rule = acl.classify(blob, v6, proto, lhi, llo, rhi, rlo, noPorts ? acl.NO_PORT_VALUE : lport, noPorts ? acl.NO_PORT_VALUE : rport);
    if (rule >= 0) {
      acl.hit(blob, <u32>rule);
      let a = acl.action(blob, <u32>rule);
      trace.note(trace.Step.Acl, dir, p, <u32>rule + 1, a);
      return a == acl.ACTION_ALLOW;
    }
  }
  let d = <u32>load<u8>(b, 4);
  trace.note(trace.Step.Acl, dir, p, 0, d);
  return d == acl.ACTION_ALLOW;
}

// A connection from before the last policy change: classify its first packet again, as it was then.
function stillAllowed(r: usize, p: u32): bool {
  let f = load<u8>(r, 28);
  let dir = (f & flow.CT_ACL_IN) ? acl.DIR_IN : acl.DIR_OUT;
  let v6 = (f & flow.CT_V6) != 0;
  let a = flow.srcOf(r, 0), b = flow.dstOf(r, 0);
  let ahi: u64 = v6 ? addr6.hi(a) : 0, alo: u64 = v6 ? addr6.lo(a) : <u64>a;
  let bhi: u64 = v6 ? addr6.hi(b) : 0, blo: u64 = v6 ? addr6.lo(b) : <u64>b;
  let sp = flow.sportOf(r, 0), dp = flow.dportOf(r, 0);
  proto = <u32>load<u8>(r, 26);
  let out = dir == acl.DIR_OUT;
  return allowed(p, dir, v6, out ? ahi : bhi, out ? alo : blo, out ? bhi : ahi, out ? blo : alo, out ? sp : dp, out ? dp : sp);
}

// Creates the connection of the packet whose tuple was read. Returns the reason it cannot.
function track(m: Meta, zkey: u32, v6: bool, dir: u32, state: ct.State, now: u32): Reason {
  let ri = ct.take(now);
  if (ri < 0) return Reason.CtTableFull;
  let s: u32, d: u32;
  if (v6) {
    let ids = addr6.acquirePair(shi, slo, dhi, dlo);
    if (ids == 0) {
      flow.giveBack(<u32>ri);
      return Reason.CtTableFull;
    }
    s = <u32>ids;
    d = <u32>(ids >> 32);
  } else {
    s = <u32>slo;
    d = <u32>dlo;
  }
  let r = flow.rec(<u32>ri);
  flow.setTuples(r, zkey, proto, state, (v6 ? flow.CT_V6 : 0) | (dir == acl.DIR_IN ? flow.CT_ACL_IN : 0),
                 s, d, sport, dport, d, s, dport, sport, now);
  store<u32>(r, acl.generation, 92);
  flow.commit(<u32>ri, flow.hashKey(zkey, proto, s, d, sport, dport), flow.hashKey(zkey, proto, d, s, dport, sport));
  bump(Stat.CtCreated);
  ct.start(r, proto, m.frame + m.l4, m.l4len, now);
  return Reason.None;
}

// An ICMP or ICMPv6 error passes when the packet it quotes belongs to a live connection of the zone
// (either way).
function relatedError(m: Meta, zone: u32, now: u32): bool {
  let ic = m.frame + m.l4;
  if (fam == 6) {
    if (!quoted6(ic, m.l4len)) return false;
    let s = addr6.find(q6.qSrcHi, q6.qSrcLo), d = addr6.find(q6.qDstHi, q6.qDstLo);
    if (s == 0 || d == 0) return false;
    let z = zone | flow.ZONE_V6, p = q6.qProto, sp = q6.qSport, dp = q6.qDport;
    if (ct.alive(flow.lookup(flow.hashKey(z, p, s, d, sp, dp), z, p, s, d, sp, dp), now) != 0) return true;
    return ct.alive(flow.lookup(flow.hashKey(z, p, d, s, dp, sp), z, p, d, s, dp, sp), now) != 0;
  }
  if (!quoted(ic, m.l4len)) return false;
  if (ct.alive(flow.lookup(flow.hashKey(zone, qProto, qSrc, qDst, qSport, qDport), zone, qProto, qSrc, qDst, qSport, qDport), now) != 0) return true;
  return ct.alive(flow.lookup(flow.hashKey(zone, qProto, qDst, qSrc, qDport, qSport), zone, qProto, qDst, qSrc, qDport, qSport), now) != 0;
}

// What aclCheck returns for a fragment it held (not a drop: the pipeline runs it again later).
export const HELD: Reason = Reason.Count;

// Notes a first fragment's ports under its datagram (the tuple was read). Returns the reason to drop it.
function firstFragment(m: Meta, zone: u32, now: u32): Reason {
  let ip = m.frame + m.l3;
  if (fam == 4) {
    return frag.first(zone, proto, 0, slo, 0, dlo, ipv4.ident(ip), sport, dport, m.l4len, ipv4.headerLen(ip), now);
  }
  ipv6.walk(ip);
  let fh = ipv6.fragmentHeader;
  return frag.first(zone | flow.ZONE_V6, proto, shi, slo, dhi, dlo, get32(ip + fh + 4), sport, dport,
                    ipv6.HEADER_LEN + ipv6.payloadLength(ip) - fh - 8, fh - ipv6.HEADER_LEN, now);
}

// A later fragment's tuple: its addresses and its first fragment's ports. Returns None when the tuple
// is read, HELD when the fragment was held for its first fragment, or the reason to drop it.
function laterFragment(m: Meta, p: u32, dir: u32, zone: u32, now: u32): Reason {
  readAddresses(m);
  if (m.flags & FLAG_RELEASED) {
    sport = m.flowHash >>> 16;
    dport = m.flowHash & 0xffff;
    m.flags &= ~FLAG_RELEASED;
    return Reason.None;
  }
  let ip = m.frame + m.l3;
  let v: i32;
  if (fam == 4) {
    let hl = ipv4.headerLen(ip);
    let start = ipv4.fragOffset(ip) << 3;
    v = frag.later(zone, proto, 0, slo, 0, dlo, ipv4.ident(ip), start, start + ipv4.totalLength(ip) - hl,
                   ipv4.moreFragments(ip), hl, now);
  } else {
    ipv6.walk(ip);
    let fh = ipv6.fragmentHeader;
    let fo = get16(ip + fh + 2);
    let start = fo & 0xfff8;
    v = frag.later(zone | flow.ZONE_V6, proto, shi, slo, dhi, dlo, get32(ip + fh + 4), start,
                   start + ipv6.HEADER_LEN + ipv6.payloadLength(ip) - fh - 8, (fo & 1) != 0, fh - ipv6.HEADER_LEN, now);
  }
  if (v == frag.HOLD) {
    if (dir == acl.DIR_IN) return Reason.IpFragment;
    let why = frag.holdFrame(m.frame, m.len, m.inPort, p, frag.STAGE_ACL_OUT, m.network, m.vlan);
    if (why) return why;
    trace.note(trace.Step.Fragment, 1, 0, 0, 0);
    return HELD;
  }
  if (v < 0) return <Reason>(-v);
  sport = frag.sport;
  dport = frag.dport;
  trace.note(trace.Step.Fragment, 0, sport, dport, 0);
  return Reason.None;
}
