// VXLAN header (RFC 7348 §5), 8 bytes after the outer UDP header:
//   byte 0     flags: I (0x08) set when the VNI is valid; the other bits reserved
//   bytes 1-3  reserved (zero)
//   bytes 4-6  VNI, 24 bits
//   byte 7     reserved (zero)
// Linux's vxlan_rcv takes a packet only when the flags are exactly I and every reserved bit is zero
// (with no extensions configured, any other bit is "unparsed" and the packet a malformed header):
// valid() says the same.
import { Reason } from "../reasons";
import { get32, set32 } from "./bytes";

export const HEADER_LEN: u32 = 8;
export const FLAGS_VNI: usize = 0;    // flags (8 bits) and reserved (24 bits), as one big-endian word
export const VNI_RESERVED: usize = 4; // VNI (24 bits) and reserved (8 bits)
export const FLAG_I: u32 = 0x08000000; // the I bit in the first word
export const MAX_VNI: u32 = 0xffffff;

@inline export function check(len: u32): Reason {
  return len < HEADER_LEN ? Reason.VxlanBadHeader : Reason.None;
}
// Exactly the I flag, the VNI, and zero in every reserved bit.
@inline export function valid(p: usize): bool {
  return get32(p + FLAGS_VNI) == FLAG_I && (get32(p + VNI_RESERVED) & 0xff) == 0;
}
@inline export function vni(p: usize): u32 { return get32(p + VNI_RESERVED) >> 8; }
// Writes a header for `vni` (I flag set, reserved zero).
@inline export function write(p: usize, vni: u32): void {
  set32(p + FLAGS_VNI, FLAG_I);
  set32(p + VNI_RESERVED, vni << 8);
}
