// Stage: the vnet header of a frame from a port with offloads (port_set_offload). The header is
// Linux's struct virtio_net_hdr_v1, 12 bytes little-endian, which a TAP opened with IFF_VNET_HDR
// reads and writes before each frame: u8 flags (1 NEEDS_CSUM, 2 DATA_VALID), u8 gso_type (0 none,
// 1 TCPV4, 4 TCPV6, 5 UDP_L4; | 0x80 ECN), u16 hdr_len, u16 gso_size, u16 csum_start, u16 csum_offset,
// u16 num_buffers (ignored). The host writes it into the rx offload record of the frame's descriptor.
//
// Why a stage of its own and not a field the host fills in Meta: what the sender claims must fit the
// packet the parse stage found, or every later stage (NAT's checksum update, GSO's segment lengths)
// would act on a lie. A header that does not fit is a counted drop (vnet_bad_header: unknown flags or
// type, a checksum start/offset that is not the packet's TCP or UDP checksum, hdr_len past the
// frame; vnet_gso_mismatch: a gso_type for another protocol or family, gso_size without gso_type or
// the reverse, segmentation of a fragment). Linux's virtio_net_hdr_to_skb is laxer in places (it
// accepts a csum_start anywhere in the frame, as the checksum engine of a NIC would); netplane
// rewrites the L4 checksum itself, so it must know the field is the L4 checksum.
//
// A super-frame without NEEDS_CSUM (allowed by Linux: tcp4_gso_segment then writes the pseudo-header
// sum itself) is brought to the one form the rest of the dataplane knows: NEEDS_CSUM, the L4 checksum
// field holding the folded, non-inverted pseudo-header sum (CHECKSUM_PARTIAL). DATA_VALID alone says
// the checksum was verified; the frame is a plain one for everything after this stage.
//
// The frame's state lives on in m.vnet (packet.ts): flags | gso_type << 8 | gso_size << 16; 0 for a
// plain frame, which costs the rest of the pipeline one compare.
import { Reason } from "../reasons";
import { Meta, FLAG_FRAGMENT } from "../packet";
import * as eth from "../wire/ethernet";
import * as checksum from "../wire/checksum";
import * as tcp from "../wire/tcp";
import { set16 } from "../wire/bytes";

export const HEADER_SIZE: usize = 12;
export const F_NEEDS_CSUM: u32 = 1;
export const F_DATA_VALID: u32 = 2;
export const GSO_NONE: u32 = 0;
export const GSO_TCPV4: u32 = 1;
export const GSO_TCPV6: u32 = 4;
export const GSO_UDP_L4: u32 = 5;
export const GSO_ECN: u32 = 0x80;

const PROTO_TCP: u32 = 6;
const PROTO_UDP: u32 = 17;

@inline export function flagsOf(v: u32): u32 { return v & 0xff; }
@inline export function typeOf(v: u32): u32 { return (v >> 8) & 0xff; }
@inline export function sizeOf(v: u32): u32 { return v >>> 16; }

// The checksum field's offset in the L4 header of protocol `proto` (TCP or UDP).
@inline export function csumOffset(proto: u32): u32 { return proto == PROTO_TCP ? 16 : 6; }

// The length of the L4 header: TCP's data offset, or UDP's 8.
@inline export function l4HeaderLen(l4: usize, proto: u32): u32 { return proto == PROTO_TCP ? tcp.headerLen(l4) : 8; }

// Checks the vnet header at h against the parsed frame m, and records it in m.vnet.
export function input(m: Meta, h: usize): Reason {
  let flags = <u32>load<u8>(h);
  let type = <u32>load<u8>(h, 1);
  let hdrLen = <u32>load<u16>(h, 2);
  let size = <u32>load<u16>(h, 4);
  let start = <u32>load<u16>(h, 6);
  let off = <u32>load<u16>(h, 8);
  if ((flags | type | size) == 0) return Reason.None;
  if (flags & ~(F_NEEDS_CSUM | F_DATA_VALID)) return Reason.VnetBadHeader;
  let t = type & ~GSO_ECN;
  if (t != GSO_NONE && t != GSO_TCPV4 && t != GSO_TCPV6 && t != GSO_UDP_L4) return Reason.VnetBadHeader;
  if (hdrLen > m.len) return Reason.VnetBadHeader;
  let proto = m.protocol;
  // The L4 header is whole (parse checked it): a field offset inside it is inside the frame.
  let l4ok = m.l4 != 0 && (m.flags & FLAG_FRAGMENT) == 0 && (proto == PROTO_TCP || proto == PROTO_UDP);
  if (flags & F_NEEDS_CSUM) {
    if (!l4ok || start != m.l4 || off != csumOffset(proto)) return Reason.VnetBadHeader;
  }
  if (t == GSO_NONE) {
    if (size != 0 || (type & GSO_ECN) != 0) return Reason.VnetGsoMismatch;
    m.vnet = flags & F_NEEDS_CSUM;
    return Reason.None;
  }
  if (size == 0 || !l4ok) return Reason.VnetGsoMismatch;
  let fits = t == GSO_TCPV4 ? m.ethertype == eth.TYPE_IPV4 && proto == PROTO_TCP
           : t == GSO_TCPV6 ? m.ethertype == eth.TYPE_IPV6 && proto == PROTO_TCP
           : proto == PROTO_UDP && (type & GSO_ECN) == 0;
  if (!fits) return Reason.VnetGsoMismatch;
  if ((flags & F_NEEDS_CSUM) == 0) {
    let c = m.frame + m.l4 + csumOffset(proto);
    set16(c, foldPlain(pseudoSum(m.frame + m.l3, m.ethertype == eth.TYPE_IPV6, proto, m.l4len)));
  }
  m.vnet = F_NEEDS_CSUM | (type << 8) | (size << 16);
  return Reason.None;
}

// The pseudo-header's running sum (RFC 793 / RFC 8200 §8.1) for an L4 length of l4len bytes, from
// the IP header at ip.
export function pseudoSum(ip: usize, v6: bool, proto: u32, l4len: u32): u64 {
  let s = v6 ? checksum.sum(ip + 8, 32) : checksum.sum(ip + 12, 8);
  return s + <u64>proto + <u64>l4len;
}

// A running sum folded to 16 bits, not inverted: what a CHECKSUM_PARTIAL field holds.
@inline export function foldPlain(s: u64): u32 { return ~checksum.fold(s) & 0xffff; }

// A NAT address change on a CHECKSUM_PARTIAL field: the pseudo-header sum takes the address delta
// and nothing else (Linux's inet_proto_csum_replace4 with pseudohdr on CHECKSUM_PARTIAL); port
// changes do not touch it. `ipDelta` is a connection's IPv4 header delta (nodes/nat.ts), which holds
// the TTL decrement too: its 0xfeff is taken out again (+0x0100 is -0xfeff in one's complement).
// Both as the packet and the record hold them, in network byte order (one's complement sums do not
// depend on the byte order, RFC 1071 2.B), where those constants read 0xfffe and 0x0001.
@inline export function partialAddrUpdate(check: u32, ipDelta: u32): u32 {
  return checksum.foldSum(check + checksum.foldSum(ipDelta + 0x0001));
}

// Completes a partial checksum in place as Linux's skb_checksum_help: the sum over the L4 header
// and payload (the field holds the pseudo-header sum), folded and inverted; UDP's 0 is sent as 0xffff.
export function complete(f: usize, l4off: u32, l4len: u32, proto: u32): void {
  let c = f + l4off + csumOffset(proto);
  let v = checksum.fold(checksum.sum(f + l4off, l4len));
  if (v == 0 && proto == PROTO_UDP) v = 0xffff;
  set16(c, v);
}

// The bytes from the frame start to the end of the L4 header.
@inline export function headersLen(f: usize, l4off: u32, proto: u32): u32 {
  return l4off + l4HeaderLen(f + l4off, proto);
}

// For an MTU check of a super-frame (Linux's skb_gso_validate_network_len): the length of the IP
// packets its segments will be.
@inline export function segmentNetworkLen(m: Meta): u32 {
  return m.l4 - m.l3 + l4HeaderLen(m.frame + m.l4, m.protocol) + sizeOf(m.vnet);
}
