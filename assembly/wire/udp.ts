// UDP header (RFC 768). The length field must cover the header and fit in what the IP layer delivered.
// A zero checksum means "not computed" for IPv4 and must stay zero when a translator rewrites the header.
// A first fragment carries only the start of the datagram, so there the length may run past what this
// fragment holds (checkFirstFragment): only the header itself has to be present.
import { Reason } from "../reasons";
import { get16, set16 } from "./bytes";

export const HEADER_LEN: u32 = 8;
export const SRC_PORT: usize = 0;
export const DST_PORT: usize = 2;
export const LENGTH: usize = 4;
export const CHECKSUM: usize = 6;

@inline export function check(p: usize, len: u32): Reason {
  if (len < HEADER_LEN) return Reason.UdpTruncated;
  let ul = get16(p + LENGTH);
  if (ul - HEADER_LEN > len - HEADER_LEN) return Reason.UdpBadLength; // HEADER_LEN <= ul <= len, unsigned
  return Reason.None;
}

export function checkFirstFragment(p: usize, len: u32): Reason {
  if (len < HEADER_LEN) return Reason.UdpTruncated;
  if (get16(p + LENGTH) < HEADER_LEN) return Reason.UdpBadLength;
  return Reason.None;
}

@inline export function srcPort(p: usize): u32 { return get16(p + SRC_PORT); }
@inline export function setSrcPort(p: usize, v: u32): void { set16(p + SRC_PORT, v); }
@inline export function dstPort(p: usize): u32 { return get16(p + DST_PORT); }
@inline export function setDstPort(p: usize, v: u32): void { set16(p + DST_PORT, v); }
@inline export function length(p: usize): u32 { return get16(p + LENGTH); }
@inline export function checksum(p: usize): u32 { return get16(p + CHECKSUM); }
@inline export function setChecksum(p: usize, v: u32): void { set16(p + CHECKSUM, v); }
