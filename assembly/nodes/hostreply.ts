// Stage: traffic addressed to a router address (a gateway or external address) that nothing handles:
// no connection, no port mapping or load balancer for its protocol and port, not an echo request.
// The router answers as the Linux stack of a host with nothing listening does, so a client fails at
// once instead of timing out:
//   - a TCP segment gets a RST (RFC 9293 §3.10.7.1, the CLOSED state): with ACK set, RST with
//     seq = SEG.ACK; without, RST+ACK with seq 0 and ack = SEG.SEQ + SEG.LEN (SYN and FIN count one);
//     a RST gets nothing;
//   - a UDP datagram gets ICMP port unreachable (type 3 code 3) / ICMPv6 port unreachable (1, 4);
//   - another protocol gets ICMP protocol unreachable (3, 2); in IPv6 Linux answers an unknown upper
//     layer with Parameter Problem code 1 (unrecognized Next Header) pointing at the Next Header field
//     that named it (RFC 8200 §4), and so do we. IGMP and "no next header" (59) get nothing: Linux's
//     stack takes them without answer.
// Before any of that, the transport checksum (and the IPv4 header's) must be right: a host's stack
// discards a corrupt segment without answer, counted here as local_bad_checksum.
//
// Replies come from the address the request was sent to, with TTL / hop limit 64, a fresh IPv4 ID (DF
// set on RSTs, as Linux sets it on all its TCP), and within the ICMP error rate limit (ratelimit.ts icmpErrors; RSTs share it, where Linux does not limit
// them). An interface with IF_SILENT (iface_set_silent) sends none of them for what came in by it, a
// stealth gateway. Either way the request itself is counted as a drop under its reason
// (local_port_unmapped for TCP and UDP, local_unsupported for the rest), so that rx packets still add
// up to forwarded plus dropped; the reply is a frame the router originates, like an echo reply.
import { Reason } from "../reasons";
import { Meta } from "../packet";
import { Iface, IF_SILENT } from "../router";
import * as ipv4 from "../wire/ipv4";
import * as ipv6 from "../wire/ipv6";
import * as tcp from "../wire/tcp";
import * as icmpw from "../wire/icmp";
import * as icmpv6 from "../wire/icmpv6";
import * as eth from "../wire/ethernet";
import * as checksum from "../wire/checksum";
import { loadMac, get8, get16, set16, set32 } from "../wire/bytes";
import { drop, bump, Stat } from "../counters";
import { icmpErrors } from "../ratelimit";
import * as trace from "../trace";
import { puntLocal } from "./punt";
import { F_NEEDS_CSUM } from "./vnet";
import { newFrame, ethHeader, sendFromRouter } from "./output";
import { echoReply, sendError, ipv4Header } from "./icmp4";
import { echoReply6, sendError6From, ipv6Header, addrHi, addrLo, storeAddr } from "./ip6";

const TTL: u32 = 64;
const PROTO_IGMP: u32 = 2;
const NO_NEXT_HEADER: u32 = 59;

// ---- IPv4 ----

export function localInput4(m: Meta, f: Iface, now: u32): void {
  let ip = m.frame + m.l3;
  let proto = m.protocol;
  let l4 = m.frame + m.l4;
  if (!checksumOk4(m, ip, l4)) {
    drop(m.inPort, Reason.LocalBadChecksum);
    return;
  }
  if (puntLocal(m, f)) return;
  if (proto == 1) {
    if (icmpw.type(l4) == icmpw.ECHO_REQUEST) {
      trace.note(trace.Step.Local, 2, 0, 0, 0);
      echoReply(m, f, now);
    } else {
      drop(m.inPort, Reason.LocalUnsupported);
    }
    return;
  }
  let answer = (f.flags & IF_SILENT) == 0;
  let dst = ipv4.dst(ip);
  if (proto == 6) {
    if (answer && (tcp.flags(l4) & tcp.RST) == 0) rst4(m, f, ip, l4, now);
    drop(m.inPort, Reason.LocalPortUnmapped);
  } else if (proto == 17) {
    if (answer) unreachable4(m, f, icmpw.DEST_UNREACHABLE, 3, dst, now);
    drop(m.inPort, Reason.LocalPortUnmapped);
  } else {
    if (answer && proto != PROTO_IGMP) unreachable4(m, f, icmpw.DEST_UNREACHABLE, 2, dst, now);
    drop(m.inPort, Reason.LocalUnsupported);
  }
}

function unreachable4(m: Meta, f: Iface, type: u32, code: u32, from: u32, now: u32): void {
  trace.note(trace.Step.Local, 4, type, code, 0);
  sendError(m, f, type, code, now, 0, from);
}

function checksumOk4(m: Meta, ip: usize, l4: usize): bool {
  if (checksum.compute(ip, ipv4.headerLen(ip)) != 0) return false;
  let proto = m.protocol, len = m.l4len;
  if (proto == 1) return checksum.compute(l4, len) == 0;
  if (proto != 6 && proto != 17) return true;
  // CHECKSUM_PARTIAL from a port with offloads (nodes/vnet.ts): the sender's own stack vouches for it,
  // as Linux's skb_csum_unnecessary does; the field holds only the pseudo-header sum.
  if (m.vnet & F_NEEDS_CSUM) return true;
  if (proto == 17 && get16(l4 + 6) == 0) return true; // no UDP checksum (IPv4 only)
  let s = checksum.sum(ip + ipv4.SRC, 8);
  s += <u64>proto + <u64>len;
  return checksum.fold(checksum.sum(l4, len, s)) == 0;
}

function rst4(m: Meta, f: Iface, ip: usize, seg: usize, now: u32): void {
  if (!icmpErrors.take(now)) {
    bump(Stat.IcmpRateLimited);
    return;
  }
  let flen: u32 = 14 + 20 + tcp.MIN_LEN;
  let p = newFrame(flen, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV4);
  let o = p + 14;
  // DF as Linux's RSTs (path MTU discovery on, like all its TCP).
  ipv4Header(o, 20 + tcp.MIN_LEN, 6, TTL, 0, ipv4.FLAG_DF, ipv4.dst(ip), ipv4.src(ip));
  let t = o + 20;
  rstSegment(t, seg, m.l4len);
  let s = checksum.sum(o + ipv4.SRC, 8);
  s += <u64>6 + <u64>tcp.MIN_LEN;
  tcp.setChecksum(t, checksum.fold(checksum.sum(t, tcp.MIN_LEN, s)));
  bump(Stat.HostResets);
  trace.note(trace.Step.Local, 3, 0, 0, 0);
  sendFromRouter(p, flen, f, now);
}

// The RST answering segment `seg` (segLen bytes of header and data), at t, checksum left 0.
function rstSegment(t: usize, seg: usize, segLen: u32): void {
  let fl = tcp.flags(seg);
  set16(t + tcp.SRC_PORT, tcp.dstPort(seg));
  set16(t + tcp.DST_PORT, tcp.srcPort(seg));
  if (fl & tcp.ACKF) {
    set32(t + tcp.SEQ, tcp.ack(seg));
    set32(t + tcp.ACK, 0);
    store<u8>(t + tcp.FLAGS, <u8>tcp.RST);
  } else {
    let len = segLen - tcp.headerLen(seg);
    if (fl & tcp.SYN) len++;
    if (fl & tcp.FIN) len++;
    set32(t + tcp.SEQ, 0);
    set32(t + tcp.ACK, tcp.seq(seg) + len);
    store<u8>(t + tcp.FLAGS, <u8>(tcp.RST | tcp.ACKF));
  }
  store<u8>(t + tcp.DATA_OFFSET, <u8>(5 << 4));
  store<u32>(t + tcp.WINDOW, 0); // window and checksum
  store<u16>(t + tcp.URGENT, 0);
}

// ---- IPv6 ----

// The extension headers between the IPv6 header and the upper layer (parse.ts walked and checked
// them; this pass only reads what a destination must act on): the first routing header with segments
// left, and the Next Header field that names the upper layer.
let routingWithSegments: u32 = 0; // offset from the IPv6 header, 0 if none
let upperField: u32 = 0;          // offset of the Next Header field naming the upper layer

function scanExtensions(ip: usize, upper: u32): void {
  routingWithSegments = 0;
  upperField = <u32>ipv6.NEXT_HEADER;
  let nh = get8(ip + ipv6.NEXT_HEADER);
  let off: u32 = ipv6.HEADER_LEN;
  while (off < upper) {
    if (nh == ipv6.NH_ROUTING && routingWithSegments == 0 && get8(ip + off + 3) != 0) routingWithSegments = off;
    upperField = off;
    let hl: u32 = nh == ipv6.NH_FRAGMENT ? 8 : nh == ipv6.NH_AH ? (get8(ip + off + 1) + 2) << 2 : (get8(ip + off + 1) + 1) << 3;
    nh = get8(ip + off);
    off += hl;
  }
}

// A packet (not a fragment) to router address (dhi, dlo), received on f.
export function localInput6(m: Meta, f: Iface, dhi: u64, dlo: u64, now: u32): void {
  let ip = m.frame + m.l3;
  let l4 = m.frame + m.l4;
  scanExtensions(ip, m.l4 - m.l3);
  // RFC 5095 / RFC 8200 §4.4: netplane processes no routing header, so one with segments left is
  // refused with Parameter Problem code 0 pointing at its Routing Type (type 0 first of all).
  if (routingWithSegments != 0) {
    sendError6From(m, f, icmpv6.PARAMETER_PROBLEM, 0, routingWithSegments + 2, dhi, dlo, now);
    drop(m.inPort, Reason.Ipv6SourceRoute);
    return;
  }
  let proto = m.protocol;
  if ((proto == 6 || proto == 17 || proto == 58) && (m.vnet & F_NEEDS_CSUM) == 0 && !checksumOk6(ip, l4, m.l4len, proto)) {
    drop(m.inPort, Reason.LocalBadChecksum);
    return;
  }
  if (puntLocal(m, f)) return;
  if (proto == 58) {
    if (icmpv6.type(l4) == icmpv6.ECHO_REQUEST) {
      trace.note(trace.Step.Local, 2, 0, 0, 0);
      echoReply6(m, f, ip, l4, now);
    } else {
      drop(m.inPort, Reason.LocalUnsupported);
    }
    return;
  }
  let answer = (f.flags & IF_SILENT) == 0;
  if (proto == 6) {
    if (answer && (tcp.flags(l4) & tcp.RST) == 0) rst6(m, f, ip, l4, now);
    drop(m.inPort, Reason.LocalPortUnmapped);
  } else if (proto == 17) {
    if (answer) error6(m, f, icmpv6.DEST_UNREACHABLE, 4, 0, dhi, dlo, now);
    drop(m.inPort, Reason.LocalPortUnmapped);
  } else {
    if (answer && proto != NO_NEXT_HEADER) error6(m, f, icmpv6.PARAMETER_PROBLEM, 1, upperField, dhi, dlo, now);
    drop(m.inPort, Reason.LocalUnsupported);
  }
}

function error6(m: Meta, f: Iface, type: u32, code: u32, param: u32, hi: u64, lo: u64, now: u32): void {
  trace.note(trace.Step.Local, 4, type, code, 0);
  sendError6From(m, f, type, code, param, hi, lo, now);
}

// The upper-layer checksum with the IPv6 pseudo-header (RFC 8200 §8.1); a zero UDP checksum is invalid.
function checksumOk6(ip: usize, l4: usize, len: u32, proto: u32): bool {
  if (proto == 17 && get16(l4 + 6) == 0) return false;
  let s = checksum.sum(ip + ipv6.SRC, 32);
  s += <u64>proto + <u64>len;
  return checksum.fold(checksum.sum(l4, len, s)) == 0;
}

function rst6(m: Meta, f: Iface, ip: usize, seg: usize, now: u32): void {
  if (!icmpErrors.take(now)) {
    bump(Stat.IcmpRateLimited);
    return;
  }
  let flen: u32 = 14 + 40 + tcp.MIN_LEN;
  let p = newFrame(flen, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, tcp.MIN_LEN, TTL, addrHi(ip + ipv6.DST), addrLo(ip + ipv6.DST), addrHi(ip + ipv6.SRC), addrLo(ip + ipv6.SRC));
  store<u8>(o6 + ipv6.NEXT_HEADER, 6);
  let t = o6 + 40;
  rstSegment(t, seg, m.l4len);
  let s = checksum.sum(o6 + ipv6.SRC, 32);
  s += <u64>6 + <u64>tcp.MIN_LEN;
  tcp.setChecksum(t, checksum.fold(checksum.sum(t, tcp.MIN_LEN, s)));
  bump(Stat.HostResets);
  trace.note(trace.Step.Local, 3, 0, 0, 0);
  sendFromRouter(p, flen, f, now);
}
