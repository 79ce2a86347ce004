// The Internet checksum (RFC 1071) and its incremental update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
// `sum` returns the 32-bit running one's-complement sum of a byte range so pseudo-headers and payloads
// can be added up separately; `fold` turns a running sum into the 16-bit field value.

// Adds len bytes at p, as big-endian 16-bit words, to a running sum. An odd last byte is padded with zero.
// The words are added in host (little-endian) order: byte-swapping the final fold is equivalent to
// swapping every word first (the one's-complement sum is byte-order independent, RFC 1071 §2(B)).
// 32 bytes a step with WebAssembly SIMD: each 16-byte load's eight 16-bit words are added in pairs into
// four 32-bit lanes (i32x4.extadd_pairwise_i16x8_u), two accumulators so the adds do not wait on each
// other. A lane takes at most 2 x 0xffff a step, so a block of BLOCK steps cannot carry out of it; the
// lanes go into a 64-bit sum after each block. About 3x the 8-bytes-a-step scalar loop on 64 KiB
// (docs/performance.md), which super-frames pay once per segment to a port without offloads.
const BLOCK: usize = 16384 * 32;   // bytes: 16384 steps of 32, 16384 x 2 x 0xffff < 2^32
export function sum(p: usize, len: u32, acc: u64 = 0): u64 {
  let end = p + len;
  let s: u64 = 0;
  while (p + 32 <= end) {
    let stop = end - p > BLOCK ? p + BLOCK : end;
    let a = i32x4.splat(0), b = i32x4.splat(0);
    while (p + 32 <= stop) {
      a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p)));
      b = i32x4.add(b, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 16)));
      p += 32;
    }
    // Each lane of a and of b is below 2^32; widened to 64 bits, they add without overflow.
    let w = i64x2.add(i64x2.add(i64x2.extend_low_i32x4_u(a), i64x2.extend_high_i32x4_u(a)),
      i64x2.add(i64x2.extend_low_i32x4_u(b), i64x2.extend_high_i32x4_u(b)));
    s += <u64>i64x2.extract_lane(w, 0) + <u64>i64x2.extract_lane(w, 1);
  }
  while (p + 8 <= end) {
    let w = load<u64>(p);
    s += (w & 0xffffffff) + (w >> 32);
    p += 8;
  }
  while (p + 2 <= end) {
    s += <u64>load<u16>(p);
    p += 2;
  }
  if (p < end) s += <u64>load<u8>(p);
  // Fold the host-order sum to 16 bits, then swap to network order.
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return acc + <u64>bswap<u16>(<u16>s);
}

// Folds a running sum into the checksum field value (the complement of the folded sum).
@inline export function fold(s: u64): u32 {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (~<u32>s) & 0xffff;
}

// The checksum of a byte range.
export function compute(p: usize, len: u32): u32 {
  return fold(sum(p, len));
}

// RFC 1624: the new checksum after one 16-bit word of the covered data changed from `old` to `now`.
@inline export function adjust16(check: u32, old: u32, now: u32): u32 {
  let s: u32 = (~check & 0xffff) + (~old & 0xffff) + (now & 0xffff);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

// The same for a 32-bit value (an IPv4 address): two 16-bit words.
@inline export function adjust32(check: u32, old: u32, now: u32): u32 {
  return adjust16(adjust16(check, old >> 16, now >> 16), old & 0xffff, now & 0xffff);
}

// Precomputed updates: a NAT connection changes the same words of every packet the same way, so the
// one's-complement sum of (~old + new) over all of them is computed once per connection and each
// packet's checksum is then adjusted with one addition (RFC 1624 eqn. 3 with the terms pre-summed).
@inline export function delta16(old: u32, now: u32): u32 { return (~old & 0xffff) + (now & 0xffff); }
@inline export function delta32(old: u32, now: u32): u32 { return delta16(old >> 16, now >> 16) + delta16(old & 0xffff, now & 0xffff); }
@inline export function foldSum(s: u32): u32 {
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return s;
}
@inline export function applyDelta(check: u32, delta: u32): u32 {
  return ~foldSum((~check & 0xffff) + delta) & 0xffff;
}
