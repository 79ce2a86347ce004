// Stage: parse. Walks the headers of one frame with the views in wire/, records the offsets the later
// stages need in the packet's Meta, and returns the reason the frame is malformed, if it is. Every
// header is length-checked before any field of it is read; a frame is never read past m.len.
//
// This runs for every frame, including frames the switch only bridges: a VFP port classifies every
// packet, and a malformed IP header that a bridge would pass on is exactly what a later L3 stage,
// ACL or capture must never see.
//
// A first fragment (IPv4 MF with offset 0, or an IPv6 Fragment header with offset 0 and M set) holds
// the transport header but not the whole datagram, so a UDP length covering the later fragments is
// normal there; checkL4 is told so and only requires the header itself. A first fragment too short
// for its transport header is the tiny-fragment attack (RFC 1858; RFC 7112 for IPv6, whose first
// fragment must hold the whole header chain).
//
// An IPv6 atomic fragment (a Fragment header with offset 0 and M clear, RFC 6946) is a whole packet:
// it is not flagged as a fragment, and goes through every stage as any packet does.
import { Reason } from "../reasons";
import { Meta, FLAG_TAGGED, FLAG_FRAGMENT, FLAG_LATER_FRAGMENT } from "../packet";
import * as eth from "../wire/ethernet";
import * as vlan from "../wire/vlan";
import * as arp from "../wire/arp";
import * as ipv4 from "../wire/ipv4";
import * as ipv6 from "../wire/ipv6";
import * as tcp from "../wire/tcp";
import * as udp from "../wire/udp";
import * as icmp from "../wire/icmp";
import * as icmpv6 from "../wire/icmpv6";

export const PROTO_ICMP: u32 = 1;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;
export const PROTO_ICMPV6: u32 = 58;

@inline export function parse(m: Meta): Reason {
  let p = m.frame;
  let len = m.len;
  let r = eth.check(len);
  if (r) return r;
  let et = eth.ethertype(p);
  let l3: u32 = eth.HEADER_LEN;
  if (et == eth.TYPE_VLAN) {
    r = vlan.check(len);
    if (r) return r;
    m.tci = vlan.tci(p);
    m.flags |= FLAG_TAGGED;
    et = vlan.innerEthertype(p);
    l3 = vlan.TAGGED_HEADER_LEN;
  }
  m.ethertype = et;
  m.l3 = l3;
  let h = p + l3;
  let avail = len - l3;
  if (et == eth.TYPE_IPV4) return parseIpv4(m, h, avail);
  if (et == eth.TYPE_IPV6) return parseIpv6(m, h, avail);
  if (et == eth.TYPE_ARP) return arp.check(h, avail);
  return Reason.None;
}

@inline function parseIpv4(m: Meta, h: usize, avail: u32): Reason {
  let r = ipv4.check(h, avail);
  if (r) return r;
  let hl = ipv4.headerLen(h);
  let proto = ipv4.protocol(h);
  m.protocol = proto;
  m.l4 = m.l3 + hl;
  m.l4len = ipv4.totalLength(h) - hl;
  if (ipv4.isFragment(h)) {
    m.flags |= FLAG_FRAGMENT;
    if (ipv4.fragOffset(h) != 0) {
      m.flags |= FLAG_LATER_FRAGMENT;
      m.l4 = 0;
      return Reason.None;
    }
    // A first fragment too short to hold its transport header is the tiny-fragment attack (RFC 1858).
    return checkL4(proto, h + hl, m.l4len, false, true) ? Reason.Ipv4TinyFragment : Reason.None;
  }
  return checkL4(proto, h + hl, m.l4len, false, false);
}

function parseIpv6(m: Meta, h: usize, avail: u32): Reason {
  let r = ipv6.check(h, avail);
  if (r) return r;
  r = ipv6.walk(h);
  if (r) return r;
  m.protocol = ipv6.upperProtocol;
  if (ipv6.upperIsLaterFragment) {
    m.flags |= FLAG_FRAGMENT | FLAG_LATER_FRAGMENT;
    return Reason.None;
  }
  m.l4 = m.l3 + ipv6.upperOffset;
  m.l4len = ipv6.HEADER_LEN + ipv6.payloadLength(h) - ipv6.upperOffset;
  if (ipv6.upperMoreFragments) {
    m.flags |= FLAG_FRAGMENT;
    return checkL4(ipv6.upperProtocol, h + ipv6.upperOffset, m.l4len, true, true) ? Reason.Ipv6TinyFragment : Reason.None;
  }
  return checkL4(ipv6.upperProtocol, h + ipv6.upperOffset, m.l4len, true, false);
}

@inline function checkL4(proto: u32, p: usize, len: u32, v6: bool, firstFragment: bool): Reason {
  if (proto == PROTO_TCP) return tcp.check(p, len);
  if (proto == PROTO_UDP) return firstFragment ? udp.checkFirstFragment(p, len) : udp.check(p, len);
  if (proto == PROTO_ICMP && !v6) return icmp.check(len);
  if (proto == PROTO_ICMPV6 && v6) return icmpv6.check(len);
  return Reason.None;
}
