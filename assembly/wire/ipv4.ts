// IPv4 header (RFC 791). `check` validates everything a later stage relies on: version, IHL within the
// frame, total length within the frame and covering the header, and the option list well formed (each
// option's length at least 2 and inside the header), so no accessor or option walk can leave the frame.
// Ethernet padding after `total length` is allowed: the IP datagram ends where total length says.
import { Reason } from "../reasons";
import { get8, get16, get32, set8, set16, set32, any16 } from "./bytes";

export const MIN_LEN: u32 = 20;
export const VER_IHL: usize = 0;
export const TOS: usize = 1;
export const TOTAL_LENGTH: usize = 2;
export const IDENT: usize = 4;
export const FLAGS_FRAG: usize = 6;
export const TTL: usize = 8;
export const PROTOCOL: usize = 9;
export const CHECKSUM: usize = 10;
export const SRC: usize = 12;
export const DST: usize = 16;

export const FLAG_DF: u32 = 0x4000;
export const FLAG_MF: u32 = 0x2000;
export const FRAG_OFFSET_MASK: u32 = 0x1fff;

const OPT_END: u32 = 0;
const OPT_NOP: u32 = 1;

@inline export function check(p: usize, len: u32): Reason {
  if (len < MIN_LEN) return Reason.Ipv4Truncated;
  let vi = get8(p + VER_IHL);
  // Version 4 with a 20-byte header, almost every packet: only its total length is left to check.
  if (vi == 0x45) {
    let t = get16(p + TOTAL_LENGTH);
    // MIN_LEN <= t <= len as one unsigned compare (len >= MIN_LEN here): a `||` would become a
    // value V8 makes and then tests.
    return t - MIN_LEN > len - MIN_LEN ? Reason.Ipv4BadTotalLength : Reason.None;
  }
  if ((vi >> 4) != 4) return Reason.Ipv4BadVersion;
  let hl = (vi & 0xf) << 2;
  if (hl < MIN_LEN || hl > len) return Reason.Ipv4BadIhl;
  let tl = get16(p + TOTAL_LENGTH);
  if (tl < hl || tl > len) return Reason.Ipv4BadTotalLength;
  if (hl > MIN_LEN) return checkOptions(p + MIN_LEN, hl - MIN_LEN);
  return Reason.None;
}

// Walks the option list: End and No-Operation are single bytes, every other option is type, length,
// data with 2 <= length <= what is left of the header.
function checkOptions(p: usize, len: u32): Reason {
  let i: u32 = 0;
  while (i < len) {
    let t = get8(p + i);
    if (t == OPT_END) return Reason.None;
    if (t == OPT_NOP) { i++; continue; }
    if (i + 1 >= len) return Reason.Ipv4BadOption;
    let ol = get8(p + i + 1);
    if (ol < 2 || i + ol > len) return Reason.Ipv4BadOption;
    i += ol;
  }
  return Reason.None;
}

@inline export function headerLen(p: usize): u32 { return (get8(p + VER_IHL) & 0xf) << 2; }
@inline export function totalLength(p: usize): u32 { return get16(p + TOTAL_LENGTH); }
@inline export function setTotalLength(p: usize, v: u32): void { set16(p + TOTAL_LENGTH, v); }
@inline export function ident(p: usize): u32 { return get16(p + IDENT); }
@inline export function setIdent(p: usize, v: u32): void { set16(p + IDENT, v); }
@inline export function flagsFrag(p: usize): u32 { return get16(p + FLAGS_FRAG); }
@inline export function fragOffset(p: usize): u32 { return get16(p + FLAGS_FRAG) & FRAG_OFFSET_MASK; }
@inline export function moreFragments(p: usize): bool { return (get16(p + FLAGS_FRAG) & FLAG_MF) != 0; }
// A fragment is any datagram with MF set or a non-zero offset; only the first one carries the L4 header.
@inline export function isFragment(p: usize): bool { return any16(p + FLAGS_FRAG, FLAG_MF | FRAG_OFFSET_MASK); }
@inline export function ttl(p: usize): u32 { return get8(p + TTL); }
@inline export function setTtl(p: usize, v: u32): void { set8(p + TTL, v); }
@inline export function protocol(p: usize): u32 { return get8(p + PROTOCOL); }
@inline export function checksum(p: usize): u32 { return get16(p + CHECKSUM); }
@inline export function setChecksum(p: usize, v: u32): void { set16(p + CHECKSUM, v); }
@inline export function src(p: usize): u32 { return get32(p + SRC); }
@inline export function setSrc(p: usize, v: u32): void { set32(p + SRC, v); }
@inline export function dst(p: usize): u32 { return get32(p + DST); }
@inline export function setDst(p: usize, v: u32): void { set32(p + DST, v); }
