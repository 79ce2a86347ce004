// Stage: the way out of a frame that carries offload state (m.vnet, nodes/vnet.ts) or goes to a port
// with offloads. Software GSO and checksum completion, as Linux's validate_xmit_skb does for a device
// whose features do not cover the skb: a super-frame an egress port cannot take is cut into segments
// here, in tx memory, and a partial checksum the port cannot finish is finished here; the rest leave
// as they are, with a vnet header in the tx offload record for a port with offloads.
//
// Why at the very end (l2forward's deliver, and the punt): L2, conntrack, NAT, the ACLs and the load
// balancer all decide once per super-frame, as they do in Linux on a GRO/TSO skb; only the copy that
// goes to a port that cannot take it pays for segmentation, and only once per port.
//
// The segments (Linux's tcp_gso_segment / __udp_gso_segment over inet_gso_segment /
// ipv6_gso_segment): each gets the headers of the super-frame, gso_size bytes of its payload (the last
// one what is left); IPv4 total length and a fresh header checksum, the identification incremented per
// segment; IPv6 payload length; TCP sequence number advanced by the payload before it, FIN and PSH
// only on the last segment, CWR only on the first; UDP its own length; a full L4 checksum each.
//
// The punt area (punt.ts): a super-frame is punted as its segments, and a partial checksum completed,
// so the host's services see plain frames; except a TCP super-frame for the uplink or the host when
// the host takes them (punt_set_offload), which goes whole with its vnet header, as to a port with
// offloads: a socket uplink writes its payload to a socket in one piece.
//
// A frame delivered to one port is finished in place; one being flooded to several (FLAG_FLOODING) is
// finished in a copy, since the other ports may take it as it is.
import { Reason } from "../reasons";
import { Meta, FLAG_FLOODING } from "../packet";
import { capsOf, OFFLOAD_CSUM, OFFLOAD_TSO4, OFFLOAD_TSO6, OFFLOAD_TSO_ECN, OFFLOAD_USO } from "../ports";
import { drop, bump, Stat } from "../counters";
import * as tx from "../tx";
import * as area from "../punt";
import { PuntReason } from "../punt";
import * as vnet from "./vnet";
import * as checksum from "../wire/checksum";
import * as ipv4 from "../wire/ipv4";
import * as eth from "../wire/ethernet";
import * as tcp from "../wire/tcp";
import { get16, get32, set16, set32, get8, set8 } from "../wire/bytes";

const PROTO_TCP: u32 = 6;
const TCP_CWR: u32 = 0x80;

// Does a port with capabilities `caps` take frame state v as it is?
@inline function covers(caps: u32, v: u32): bool {
  if ((caps & OFFLOAD_CSUM) == 0) return false;
  let type = vnet.typeOf(v);
  let t = type & ~vnet.GSO_ECN;
  if (t == vnet.GSO_NONE) return true;
  if ((type & vnet.GSO_ECN) != 0 && (caps & OFFLOAD_TSO_ECN) == 0) return false;
  if (t == vnet.GSO_TCPV4) return (caps & OFFLOAD_TSO4) != 0;
  if (t == vnet.GSO_TCPV6) return (caps & OFFLOAD_TSO6) != 0;
  return (caps & OFFLOAD_USO) != 0;
}

// The offset of the L3 header in frame f: 18 behind an 802.1Q tag, else 14 (a delivered variant may
// have gained or lost the tag the frame came with).
@inline function l3Of(f: usize): u32 { return get16(f + 12) == eth.TYPE_VLAN ? 18 : 14; }

// Writes a vnet header at h (nodes/vnet.ts's layout): the tx offload record of the descriptor just
// emitted (record), or the header before a super-frame punted whole.
@inline export function writeHeader(h: usize, flags: u32, type: u32, hdrLen: u32, size: u32, start: u32, off: u32): void {
  store<u8>(h, <u8>flags);
  store<u8>(h, <u8>type, 1);
  store<u16>(h, <u16>hdrLen, 2);
  store<u16>(h, <u16>size, 4);
  store<u16>(h, <u16>start, 6);
  store<u16>(h, <u16>off, 8);
  store<u16>(h, 0, 10);
}

// Writes the tx offload record of the descriptor just emitted.
@inline function record(flags: u32, type: u32, hdrLen: u32, size: u32, start: u32, off: u32): void {
  writeHeader(tx.offBase + <usize>(tx.count - 1) * tx.OFFLOAD_SIZE, flags, type, hdrLen, size, start, off);
}

// Sends frame f (m, or a VLAN variant of it) of `len` bytes out of port o whose flags are `pflags`:
// called only when the frame has offload state or the port has offloads.
export function emit(m: Meta, o: u32, pflags: u32, f: usize, len: u32): bool {
  let caps = capsOf(pflags);
  let v = m.vnet;
  if (v == 0) {
    if (!tx.emit(o, f, len, m.inPort)) return false;
    record(0, 0, 0, 0, 0, 0);
    return true;
  }
  let l3 = l3Of(f);
  let l4 = m.l4 - m.l3 + l3;
  let proto = m.protocol;
  if (covers(caps, v)) {
    if (!tx.emit(o, f, len, m.inPort)) return false;
    let t = vnet.typeOf(v);
    record(vnet.F_NEEDS_CSUM, t, t != 0 ? vnet.headersLen(f, l4, proto) : 0, vnet.sizeOf(v), l4, vnet.csumOffset(proto));
    return true;
  }
  if (vnet.typeOf(v) == vnet.GSO_NONE) {
    // A partial checksum for a port that cannot finish it.
    let p = f;
    if (m.flags & FLAG_FLOODING) {
      p = tx.reserve(len);
      if (p == 0) {
        drop(m.inPort, Reason.TxBufferFull);
        return false;
      }
      memory.copy(p, f, len);
    }
    vnet.complete(p, l4, m.l4len, proto);
    bump(Stat.CsumCompleted);
    if (!tx.emit(o, p, len, m.inPort)) return false;
    if (caps) record(0, 0, 0, 0, 0, 0);
    return true;
  }
  let n = begin(f, l3, l4, m.ethertype == eth.TYPE_IPV6, proto, m.l4len, vnet.sizeOf(v));
  bump(Stat.GsoFrames);
  for (let i: u32 = 0; i < n; i++) {
    let sl = segmentLen(i);
    let p = tx.reserve(sl);
    if (p == 0) {
      drop(m.inPort, Reason.TxBufferFull);
      return false;
    }
    build(i, p);
    if (!tx.emit(o, p, sl, m.inPort)) return false;
    if (caps) record(0, 0, 0, 0, 0, 0);
    bump(Stat.GsoSegments);
  }
  return true;
}

// Puts m into the punt area as plain frames: its segments, or the frame with its checksum completed.
// False when the area filled up (the caller counts punt_queue_full; segments already put stay).
export function punt(m: Meta, reason: u32, ifIndex: u32, zone: u32): bool {
  let v = m.vnet;
  let f = m.frame;
  if (vnet.typeOf(v) == vnet.GSO_NONE) {
    let p = area.reserve(m.len, m.inPort, reason, ifIndex, zone, m.vlan);
    if (p == 0) return false;
    memory.copy(p, f, m.len);
    vnet.complete(p, m.l4, m.l4len, m.protocol);
    bump(Stat.CsumCompleted);
    return true;
  }
  let type = vnet.typeOf(v) & ~vnet.GSO_ECN;
  let whole = type == vnet.GSO_TCPV4 ? area.takes & OFFLOAD_TSO4 : type == vnet.GSO_TCPV6 ? area.takes & OFFLOAD_TSO6 : 0;
  if (whole != 0 && (reason == PuntReason.Uplink || reason == PuntReason.Host)) {
    let h = area.reserveWithHeader(<u32>vnet.HEADER_SIZE, m.len, m.inPort, reason | area.REASON_VNET, ifIndex, zone, m.vlan);
    if (h == 0) return false;
    writeHeader(h, vnet.flagsOf(v), vnet.typeOf(v), vnet.headersLen(f, m.l4, m.protocol), vnet.sizeOf(v), m.l4, vnet.csumOffset(m.protocol));
    memory.copy(h + vnet.HEADER_SIZE, f, m.len);
    bump(Stat.GsoPuntedWhole);
    return true;
  }
  let n = begin(f, m.l3, m.l4, m.ethertype == eth.TYPE_IPV6, m.protocol, m.l4len, vnet.sizeOf(v));
  bump(Stat.GsoFrames);
  for (let i: u32 = 0; i < n; i++) {
    let sl = segmentLen(i);
    let p = area.reserve(sl, m.inPort, reason, ifIndex, zone, m.vlan);
    if (p == 0) return false;
    build(i, p);
    bump(Stat.GsoSegments);
  }
  return true;
}

// ---- the segmenter -------------------------------------------------------------------------------
// begin() takes a super-frame apart once; build(i, dst) writes segment i. Module state, not an
// object: no allocation per packet.
let sFrame: usize = 0;
let sL3: u32 = 0;
let sL4: u32 = 0;
let sHdr: u32 = 0;      // bytes of headers (Ethernet to the end of the L4 header)
let sPay: u32 = 0;      // payload bytes after them
let sSize: u32 = 0;
let sV6 = false;
let sProto: u32 = 0;

// Returns the number of segments (at least one: a super-frame without payload is one segment).
export function begin(f: usize, l3: u32, l4: u32, v6: bool, proto: u32, l4len: u32, size: u32): u32 {
  sFrame = f;
  sL3 = l3;
  sL4 = l4;
  let thl = vnet.l4HeaderLen(f + l4, proto);
  sHdr = l4 + thl;
  sPay = l4len - thl;
  sSize = size;
  sV6 = v6;
  sProto = proto;
  return sPay == 0 ? 1 : (sPay + size - 1) / size;
}

@inline function chunkOf(i: u32): u32 {
  let off = i * sSize;
  let left = sPay - off;
  return left < sSize ? left : sSize;
}

export function segmentLen(i: u32): u32 { return sHdr + chunkOf(i); }

export function build(i: u32, dst: usize): u32 {
  let chunk = chunkOf(i);
  let off = i * sSize;
  let last = off + chunk >= sPay;
  memory.copy(dst, sFrame, sHdr);
  memory.copy(dst + sHdr, sFrame + sHdr + off, chunk);
  let ip = dst + sL3;
  let l4 = dst + sL4;
  let l4len = sHdr - sL4 + chunk;
  if (sV6) {
    set16(ip + 4, sL4 - sL3 - 40 + l4len);
  } else {
    ipv4.setTotalLength(ip, sL4 - sL3 + l4len);
    ipv4.setIdent(ip, (ipv4.ident(ip) + i) & 0xffff);
    ipv4.setChecksum(ip, 0);
    ipv4.setChecksum(ip, checksum.compute(ip, ipv4.headerLen(ip)));
  }
  let c: usize;
  if (sProto == PROTO_TCP) {
    set32(l4 + tcp.SEQ, get32(l4 + tcp.SEQ) + off);
    let fl = get8(l4 + tcp.FLAGS);
    if (!last) fl &= ~(tcp.FIN | tcp.PSH);
    if (i != 0) fl &= ~TCP_CWR;
    set8(l4 + tcp.FLAGS, fl);
    c = l4 + tcp.CHECKSUM;
  } else {
    set16(l4 + 4, l4len);
    c = l4 + 6;
  }
  set16(c, 0);
  let s = checksum.sum(l4, l4len, vnet.pseudoSum(ip, sV6, sProto, l4len));
  let v = checksum.fold(s);
  if (v == 0 && sProto != PROTO_TCP) v = 0xffff;
  set16(c, v);
  return sHdr + chunk;
}
