// IPv6 base header (RFC 8200) and the walk over extension headers to the upper-layer header. The walk
// is bounded (MAX_EXTENSION_HEADERS) and every extension header's length is checked against the payload
// before it is skipped, so a crafted chain can neither loop nor read past the frame.
import { Reason } from "../reasons";
import { get8, get16, set8, set16 } from "./bytes";

export const HEADER_LEN: u32 = 40;
export const VTC_FLOW: usize = 0;
export const PAYLOAD_LENGTH: usize = 4;
export const NEXT_HEADER: usize = 6;
export const HOP_LIMIT: usize = 7;
export const SRC: usize = 8;
export const DST: usize = 24;

export const NH_HOP_BY_HOP: u32 = 0;
export const NH_ROUTING: u32 = 43;
export const NH_FRAGMENT: u32 = 44;
export const NH_ESP: u32 = 50;
export const NH_AH: u32 = 51;
export const NH_NONE: u32 = 59;
export const NH_DEST_OPTS: u32 = 60;
export const NH_MOBILITY: u32 = 135;

export const MAX_EXTENSION_HEADERS: u32 = 8;

export function check(p: usize, len: u32): Reason {
  if (len < HEADER_LEN) return Reason.Ipv6Truncated;
  if ((get8(p + VTC_FLOW) >> 4) != 6) return Reason.Ipv6BadVersion;
  // A zero payload length with a Hop-by-Hop header would announce a jumbogram (RFC 2675), which cannot
  // occur on Ethernet; treated like any other length that disagrees with the frame.
  if (HEADER_LEN + get16(p + PAYLOAD_LENGTH) > len) return Reason.Ipv6BadPayloadLength;
  return Reason.None;
}

// The result of the extension-header walk: the upper-layer protocol, its offset from the IPv6 header,
// and whether a Fragment header with a non-zero offset means there is no upper-layer header here. With
// upperMoreFragments (M set) the upper-layer message continues past this packet: its own length field
// may be longer than what is here.
export let upperProtocol: u32 = 0;
export let upperOffset: u32 = 0;
export let upperIsLaterFragment: bool = false;
export let upperIsFragment: bool = false;
export let upperMoreFragments: bool = false;
// The Fragment header's offset from the IPv6 header (0: none).
export let fragmentHeader: u32 = 0;

export function walk(p: usize): Reason {
  let end = HEADER_LEN + get16(p + PAYLOAD_LENGTH);
  let nh = get8(p + NEXT_HEADER);
  let off = HEADER_LEN;
  let n: u32 = 0;
  upperIsLaterFragment = false;
  upperIsFragment = false;
  upperMoreFragments = false;
  fragmentHeader = 0;
  while (true) {
    if (nh == NH_HOP_BY_HOP || nh == NH_ROUTING || nh == NH_DEST_OPTS || nh == NH_MOBILITY) {
      if (n == MAX_EXTENSION_HEADERS) return Reason.Ipv6TooManyExtensionHeaders;
      // Hop-by-Hop must come first (RFC 8200 §4.1).
      if (nh == NH_HOP_BY_HOP && n != 0) return Reason.Ipv6BadExtensionHeader;
      if (off + 8 > end) return Reason.Ipv6BadExtensionHeader;
      let hl = (get8(p + off + 1) + 1) << 3;
      if (off + hl > end) return Reason.Ipv6BadExtensionHeader;
      nh = get8(p + off);
      off += hl;
      n++;
    } else if (nh == NH_FRAGMENT) {
      if (n == MAX_EXTENSION_HEADERS) return Reason.Ipv6TooManyExtensionHeaders;
      if (off + 8 > end) return Reason.Ipv6BadExtensionHeader;
      let fo = get16(p + off + 2);
      upperIsFragment = true;
      fragmentHeader = off;
      if ((fo & 0xfff8) != 0) upperIsLaterFragment = true;
      if ((fo & 1) != 0) upperMoreFragments = true;
      nh = get8(p + off);
      off += 8;
      n++;
    } else if (nh == NH_AH) {
      if (n == MAX_EXTENSION_HEADERS) return Reason.Ipv6TooManyExtensionHeaders;
      if (off + 8 > end) return Reason.Ipv6BadExtensionHeader;
      let hl = (get8(p + off + 1) + 2) << 2;
      if (off + hl > end) return Reason.Ipv6BadExtensionHeader;
      nh = get8(p + off);
      off += hl;
      n++;
    } else {
      break;
    }
    if (upperIsLaterFragment) break;
  }
  upperProtocol = nh;
  upperOffset = off;
  return Reason.None;
}

@inline export function payloadLength(p: usize): u32 { return get16(p + PAYLOAD_LENGTH); }
@inline export function setPayloadLength(p: usize, v: u32): void { set16(p + PAYLOAD_LENGTH, v); }
@inline export function nextHeader(p: usize): u32 { return get8(p + NEXT_HEADER); }
@inline export function hopLimit(p: usize): u32 { return get8(p + HOP_LIMIT); }
@inline export function setHopLimit(p: usize, v: u32): void { set8(p + HOP_LIMIT, v); }
