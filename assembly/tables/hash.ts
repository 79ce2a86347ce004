// Hash mixing shared by the tables: the MurmurHash3 64-bit finalizer, which spreads every input bit over
// the whole output so that masking the low bits for a power-of-two table is safe.

@inline export function mix64(h: u64): u64 {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccd;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53;
  h ^= h >> 33;
  return h;
}

@inline export function hash3(a: u64, b: u64, c: u64): u32 {
  return <u32>mix64(a ^ mix64(b ^ mix64(c)));
}

@inline export function nextPow2(n: u32): u32 {
  let s: u32 = 16;
  while (s < n) s <<= 1;
  return s;
}
