// Stage: ICMPv4 the router originates or translates.
//
// - Echo requests to a gateway address are answered (users ping their gateway).
// - Time exceeded and destination unreachable are sent back to the source of a packet the router
//   cannot forward (RFC 1812 §4.3.2: never about an ICMP error, a non-first fragment, or a packet
//   from a broadcast, multicast or zero source), quoting as much of it as fits in 576 bytes, with
//   precedence Internetwork Control (TOS 0xc0, §4.3.2.5), and within the rate limit.
// - An ICMP error about a NATed connection is translated: the quoted header is mapped back to what
//   the original sender sent (addresses, ports, echo id), so its quoted IP checksum, quoted UDP
//   checksum, the ICMP checksum and the outer IP checksum are all rewritten to match.
import { Meta, FLAG_LATER_FRAGMENT } from "../packet";
import { Iface } from "../router";
import * as ipv4 from "../wire/ipv4";
import * as icmp from "../wire/icmp";
import * as eth from "../wire/ethernet";
import * as checksum from "../wire/checksum";
import { loadMac, get8, get16, set16, get32, set32 } from "../wire/bytes";
import { bump, Stat } from "../counters";
import { icmpErrors } from "../ratelimit";
import { newFrame, ethHeader, sendFromRouter } from "./output";

const MAX_ERROR_LEN: u32 = 576;

// The identification of every IPv4 packet the router originates comes from this counter, one per
// instance (a module global): a reply never reuses its request's ID, and two replies to requests that
// share an ID get different ones (RFC 6864, unique per source, destination and protocol while a
// packet may be in flight; Linux also counts per destination). No randomness: the dataplane has no
// host call for it, and tests stay deterministic.
let ipId: u32 = 0;
@inline export function freshIpId(): u32 {
  ipId = (ipId + 1) & 0xffff;
  return ipId;
}

// Turns an echo request to the router into its reply in place and sends it back.
export function echoReply(m: Meta, f: Iface, now: u32): void {
  let ip = m.frame + m.l3;
  let ic = m.frame + m.l4;
  let src = ipv4.src(ip);
  ipv4.setSrc(ip, ipv4.dst(ip));
  ipv4.setDst(ip, src);
  ipv4.setTtl(ip, 64);
  ipv4.setIdent(ip, freshIpId());
  refreshIpChecksum(ip);
  icmp.setType(ic, icmp.ECHO_REPLY);
  icmp.setChecksum(ic, 0);
  icmp.setChecksum(ic, checksum.compute(ic, m.l4len));
  // Back to the sender's MAC, untagged from the router: the egress VLAN is added by forwarding.
  let p = newFrame(m.len - m.l3 + 14, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV4);
  memory.copy(p + 14, ip, m.len - m.l3);
  bump(Stat.EchoReplies);
  sendFromRouter(p, m.len - m.l3 + 14, f, now);
}

// Sends an ICMP error of `type`/`code` about packet m (received on interface f) to its source; `mtu`
// is the next-hop MTU a fragmentation-needed error carries (RFC 1191), 0 otherwise; `from` the source
// (0: f's address; a packet addressed to the router gets its error from the address it was sent to,
// as Linux's icmp_send does).
export function sendError(m: Meta, f: Iface, type: u32, code: u32, now: u32, mtu: u32 = 0, from: u32 = 0): void {
  let ip = m.frame + m.l3;
  let src = ipv4.src(ip);
  if (f.ipv4 == 0 || src == 0 || (src >> 28) == 0xe || src == 0xffffffff) return;
  if (m.flags & FLAG_LATER_FRAGMENT) return;
  if (ipv4.protocol(ip) == 1 && m.l4 != 0 && icmp.isError(icmp.type(m.frame + m.l4))) return;
  if (!icmpErrors.take(now)) {
    bump(Stat.IcmpRateLimited);
    return;
  }
  let quoted = ipv4.totalLength(ip);
  if (quoted > MAX_ERROR_LEN - 28) quoted = MAX_ERROR_LEN - 28;
  let len = 14 + 20 + 8 + quoted;
  let p = newFrame(len, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV4);
  let o = p + 14;
  // Precedence "internetwork control", with the quoted packet's TOS bits, as Linux's icmp_send.
  ipv4Header(o, 28 + quoted, 1, 64, 0xc0 | (get8(ip + ipv4.TOS) & 0x1e), 0, from != 0 ? from : f.ipv4, src);
  let ic = o + 20;
  store<u64>(ic, 0);
  icmp.setType(ic, type);
  icmp.setCode(ic, code);
  set16(ic + 6, mtu);
  memory.copy(ic + 8, ip, quoted);
  icmp.setChecksum(ic, checksum.compute(ic, 8 + quoted));
  bump(Stat.IcmpErrors);
  sendFromRouter(p, len, f, now);
}

// A fragment of an echo request to the router (its datagram's `ident` for the answer from
// tables/frag.ts): answered by the matching fragment of the echo reply, as the receiving end of a
// reassembly would answer the whole datagram. Only the first fragment holds the ICMP header: its type
// changes and the checksum (which covers the whole message) changes by that word alone, so nothing
// is reassembled; the reply's fragments have the request's boundaries, which fit the link they came by.
export function echoReplyFragment(m: Meta, f: Iface, ident: u32, now: u32): void {
  let ip = m.frame + m.l3;
  let len = ipv4.totalLength(ip);
  let p = newFrame(14 + len, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV4);
  let o = p + 14;
  memory.copy(o, ip, len);
  ipv4.setSrc(o, ipv4.dst(ip));
  ipv4.setDst(o, ipv4.src(ip));
  ipv4.setTtl(o, 64);
  ipv4.setIdent(o, ident);
  refreshIpChecksum(o);
  if (m.l4 != 0) {
    let ic = o + (m.l4 - m.l3);
    let old = get16(ic);
    icmp.setType(ic, icmp.ECHO_REPLY);
    icmp.setChecksum(ic, checksum.adjust16(icmp.checksum(ic), old, get16(ic)));
    bump(Stat.EchoReplies);
  }
  sendFromRouter(p, 14 + len, f, now);
}

// The 20-byte IPv4 header of a packet the router makes: no options, a fresh ID, its checksum.
// fragFlags is the flags/offset word (ipv4.FLAG_DF or 0).
export function ipv4Header(o: usize, totalLen: u32, proto: u32, ttl: u32, tos: u32, fragFlags: u32, src: u32, dst: u32): void {
  store<u64>(o, 0);
  store<u64>(o, 0, 8);
  store<u32>(o, 0, 16);
  store<u8>(o, 0x45);
  store<u8>(o + ipv4.TOS, <u8>tos);
  ipv4.setTotalLength(o, totalLen);
  ipv4.setIdent(o, freshIpId());
  set16(o + ipv4.FLAGS_FRAG, fragFlags);
  ipv4.setTtl(o, ttl);
  store<u8>(o + ipv4.PROTOCOL, <u8>proto);
  ipv4.setSrc(o, src);
  ipv4.setDst(o, dst);
  refreshIpChecksum(o);
}

export function refreshIpChecksum(ip: usize): void {
  ipv4.setChecksum(ip, 0);
  ipv4.setChecksum(ip, checksum.compute(ip, ipv4.headerLen(ip)));
}

// The quoted packet inside an ICMP error at `ic` with `len` bytes of ICMP message: its IP header
// offset from ic, and the tuple, filled by quoted() when the quote is complete enough to match.
export let qProto: u32 = 0;
export let qSrc: u32 = 0;
export let qDst: u32 = 0;
export let qSport: u32 = 0;
export let qDport: u32 = 0;
export let qL4: u32 = 0;      // offset of the quoted L4 header from ic
export let qL4Len: u32 = 0;   // quoted L4 bytes present

// Reads the quoted header. Returns false if it is too short or not IPv4 (the error cannot be matched).
export function quoted(ic: usize, len: u32): bool {
  if (len < 8 + 20 + 8) return false;
  let q = ic + 8;
  let vi = get8(q);
  if ((vi >> 4) != 4) return false;
  let hl = (vi & 0xf) << 2;
  if (hl < 20 || hl + 16 > len) return false;
  qProto = get8(q + ipv4.PROTOCOL);
  qSrc = get32(q + ipv4.SRC);
  qDst = get32(q + ipv4.DST);
  qL4 = 8 + hl;
  qL4Len = len - qL4;
  let l4 = ic + qL4;
  if (qProto == 6 || qProto == 17) {
    qSport = get16(l4);
    qDport = get16(l4 + 2);
  } else if (qProto == 1) {
    let t = get8(l4);
    // The quoted packet's direction key, as the connection table stores echo: a request carries
    // its id as the source "port", a reply as the destination "port".
    if (t == icmp.ECHO_REQUEST) { qSport = get16(l4 + 4); qDport = 0; }
    else if (t == icmp.ECHO_REPLY) { qSport = 0; qDport = get16(l4 + 4); }
    else return false;
  } else {
    qSport = 0;
    qDport = 0;
  }
  return true;
}

// Rewrites the quoted packet to (src, dst, sport, dport), fixing the quoted checksums, then the ICMP
// checksum over the whole message.
export function rewriteQuoted(ic: usize, len: u32, src: u32, dst: u32, sport: u32, dport: u32): void {
  let q = ic + 8;
  let l4 = ic + qL4;
  let l4delta = checksum.delta32(qSrc, src) + checksum.delta32(qDst, dst);
  set32(q + ipv4.SRC, src);
  set32(q + ipv4.DST, dst);
  refreshIpChecksum(q);
  if (qProto == 6 || qProto == 17) {
    l4delta += checksum.delta16(qSport, sport) + checksum.delta16(qDport, dport);
    set16(l4, sport);
    set16(l4 + 2, dport);
    let ck: usize = qProto == 6 ? 16 : 6;
    if (qL4Len >= <u32>ck + 2) {
      let c = get16(l4 + ck);
      if (qProto == 6 || c != 0) {
        let n = checksum.applyDelta(c, checksum.foldSum(l4delta));
        set16(l4 + ck, qProto == 17 && n == 0 ? 0xffff : n);
      }
    }
  } else if (qProto == 1) {
    let t = get8(l4);
    set16(l4 + 4, t == icmp.ECHO_REQUEST ? sport : dport);
    // The quoted ICMP checksum covers only the quoted ICMP message: fix it for the id change.
    let old = t == icmp.ECHO_REQUEST ? qSport : qDport;
    let nid = t == icmp.ECHO_REQUEST ? sport : dport;
    set16(l4 + 2, checksum.applyDelta(get16(l4 + 2), checksum.foldSum(checksum.delta16(old, nid))));
  }
  icmp.setChecksum(ic, 0);
  icmp.setChecksum(ic, checksum.compute(ic, len));
}
