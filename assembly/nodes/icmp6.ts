// The packet an ICMPv6 error quotes (RFC 4443 §2.4(c): as much of the offending packet as fits), read
// as the connection table keys it, so an error can be matched to the connection it is about: by the
// router, which routes it along that connection (nodes/ip6.ts), and by a port's stateful ACL, which lets
// it through only then (nodes/acl.ts). That is what ICMPv4 errors get (nodes/icmp4.ts quoted); a
// spoofed Destination Unreachable, Packet Too Big, Time Exceeded or Parameter Problem about a flow that
// never existed matches nothing and is dropped, as Linux's conntrack finds it invalid.
//
// IPv6 has no NAT here, so nothing in the quote is rewritten; the quoted extension headers are walked
// (bounded, inside the quote) to its transport header, whose ports or echo id make the key.
import * as ipv6 from "../wire/ipv6";
import * as icmpv6 from "../wire/icmpv6";
import { get8, get16 } from "../wire/bytes";

export let qProto: u32 = 0;
export let qSrcHi: u64 = 0, qSrcLo: u64 = 0, qDstHi: u64 = 0, qDstLo: u64 = 0;
export let qSport: u32 = 0, qDport: u32 = 0;

// Reads the quote of the error at `ic` (`len` bytes of ICMPv6 message). Returns false when it is not
// an IPv6 packet, or too short to hold the transport header's first 8 bytes, or a later fragment.
export function quoted6(ic: usize, len: u32): bool {
  if (len < 8 + ipv6.HEADER_LEN + 8) return false;
  let q = ic + 8;
  let avail = len - 8;
  if ((get8(q) >> 4) != 6) return false;
  qSrcHi = bswap<u64>(load<u64>(q + ipv6.SRC));
  qSrcLo = bswap<u64>(load<u64>(q + ipv6.SRC, 8));
  qDstHi = bswap<u64>(load<u64>(q + ipv6.DST));
  qDstLo = bswap<u64>(load<u64>(q + ipv6.DST, 8));
  let nh = get8(q + ipv6.NEXT_HEADER);
  let off: u32 = ipv6.HEADER_LEN;
  for (let n: u32 = 0; n < ipv6.MAX_EXTENSION_HEADERS; n++) {
    let hl: u32 = 0;
    if (nh == ipv6.NH_HOP_BY_HOP || nh == ipv6.NH_ROUTING || nh == ipv6.NH_DEST_OPTS || nh == ipv6.NH_MOBILITY) {
      if (off + 8 > avail) return false;
      hl = (get8(q + off + 1) + 1) << 3;
    } else if (nh == ipv6.NH_FRAGMENT) {
      if (off + 8 > avail || (get16(q + off + 2) & 0xfff8) != 0) return false;
      hl = 8;
    } else if (nh == ipv6.NH_AH) {
      if (off + 8 > avail) return false;
      hl = (get8(q + off + 1) + 2) << 2;
    } else {
      break;
    }
    nh = get8(q + off);
    off += hl;
  }
  if (off + 8 > avail) return false;
  qProto = nh;
  let l4 = q + off;
  qSport = 0;
  qDport = 0;
  if (nh == 6 || nh == 17) {
    qSport = get16(l4);
    qDport = get16(l4 + 2);
  } else if (nh == 58) {
    // As the connection table keys echo: a request's id is its source "port", a reply's the destination.
    let t = get8(l4);
    if (t == icmpv6.ECHO_REQUEST) qSport = get16(l4 + 4);
    else if (t == icmpv6.ECHO_REPLY) qDport = get16(l4 + 4);
    else return false;
  }
  return true;
}
