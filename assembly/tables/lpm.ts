// Routing tables: longest-prefix match for IPv4 and IPv6, one table per compartment, all kept in one
// hash table keyed by (compartment, family, prefix length, masked prefix).
//
// Why a hash per prefix length and not a trie: a lookup probes only the lengths that the compartment
// actually uses (a bitmap per compartment and family), longest first, so the typical table (/0, a few
// /16 and /24, the /32s of endpoints) is matched in two to four probes whatever its size; memory is
// one fixed record per route; and a route is added or removed in O(1). Routed connections cache their
// route in conntrack, so LPM runs once per connection, not per packet.
//
// Addresses are held as two u64 (hi, lo), IPv6 bytes 0-7 and 8-15 in network order (so comparisons
// and masks are numeric); an IPv4 address a.b.c.d is hi = 0, lo = a.b.c.d as a number.
//
// Record (48 bytes): 0 u64 prefix hi, 8 u64 prefix lo, 16 u16 zone, 18 u8 length, 19 u8 family
// (4 or 6; 0 = free), 20 u16 interface, 22 u16 flags, 24 u64 next hop hi, 32 u64 next hop lo
// (0 = on-link: the destination itself is the next hop), 40 u32 metric, 44 u32 reserved.
import { hash3, nextPow2, eraseAt } from "./hash";
import * as arena from "../arena";

export const RECORD_SIZE: usize = 48;
export const MAX_ZONES: u32 = 1024;
export const ROUTE_BLACKHOLE: u16 = 1;

export let base: usize = 0;
export let slots: u32 = 0;
export let capacity: u32 = 0;
export let count: u32 = 0;
let mask: u32 = 0;
// Per zone: 4 x u64 length bitmaps. Word 0 bits 0-32: IPv4 lengths; word 0 bit 63: IPv6 /128;
// words 1 and 2: IPv6 lengths 0-63 and 64-127; word 3 unused.
let lenBase: usize = 0;
// Per zone and family: routes per length (u16 x 33 for v4, u16 x 129 for v6), to clear bitmap bits.
let lenCountBase: usize = 0;
const LEN_COUNTS_PER_ZONE: u32 = 33 + 129;

export function bytes(routes: u32): u64 {
  return arena.span(nextPow2(routes * 2), RECORD_SIZE) + arena.span(MAX_ZONES, 32) + arena.span(MAX_ZONES * LEN_COUNTS_PER_ZONE, 2);
}

export function alloc(routes: u32): void {
  capacity = routes;
  slots = nextPow2(routes * 2);
  mask = slots - 1;
  base = arena.take(slots, RECORD_SIZE);
  lenBase = arena.take(MAX_ZONES, 32);
  lenCountBase = arena.take(MAX_ZONES * LEN_COUNTS_PER_ZONE, 2);
}

@inline function slot(i: u32): usize { return base + <usize>i * RECORD_SIZE; }

// The mask of the top `len` bits of a 128-bit (hi, lo) or 32-bit (lo only) address.
@inline export function maskHi(len: u32, v6: bool): u64 {
  if (!v6) return 0;
  return len >= 64 ? <u64>-1 : (len == 0 ? 0 : <u64>-1 << (64 - len));
}
@inline export function maskLo(len: u32, v6: bool): u64 {
  if (!v6) return len == 0 ? 0 : (<u64>0xffffffff << (32 - len)) & 0xffffffff;
  return len <= 64 ? 0 : (len >= 128 ? <u64>-1 : <u64>-1 << (128 - len));
}

@inline function keyHash(zone: u32, fam: u32, len: u32, hi: u64, lo: u64): u32 {
  return hash3(<u64>(zone | (fam << 16) | (len << 24)), hi, lo);
}

function findSlot(zone: u32, fam: u32, len: u32, hi: u64, lo: u64): usize {
  let i = keyHash(zone, fam, len, hi, lo) & mask;
  while (true) {
    let s = slot(i);
    let f = <u32>load<u8>(s, 19);
    if (f == 0) return 0;
    if (f == fam && <u32>load<u8>(s, 18) == len && <u32>load<u16>(s, 16) == zone &&
        load<u64>(s) == hi && load<u64>(s, 8) == lo) return s;
    i = (i + 1) & mask;
  }
}

@inline function lenBit(zone: u32, fam: u32, len: u32): usize {
  // Returns the address of the u64 word; the bit is len & 63 (v6 128 uses word 0 bit 63).
  let z = lenBase + <usize>zone * 32;
  if (fam == 4) return z;
  if (len == 128) return z;
  return z + 8 + ((<usize>len >> 6) << 3);
}
@inline function lenBitIndex(fam: u32, len: u32): u64 {
  if (fam == 6 && len == 128) return 63;
  return <u64>(len & 63);
}
@inline function lenCount(zone: u32, fam: u32, len: u32): usize {
  return lenCountBase + (<usize>zone * LEN_COUNTS_PER_ZONE + (fam == 4 ? 0 : 33) + len) * 2;
}

// Adds or replaces a route. Returns false if the table is full.
export function add(zone: u32, fam: u32, len: u32, hi: u64, lo: u64, ifIndex: u32, nhHi: u64, nhLo: u64, flags: u32, metric: u32): bool {
  let v6 = fam == 6;
  hi &= maskHi(len, v6);
  lo &= maskLo(len, v6);
  let s = findSlot(zone, fam, len, hi, lo);
  if (s == 0) {
    if (count >= capacity) return false;
    let i = keyHash(zone, fam, len, hi, lo) & mask;
    while (load<u8>(slot(i), 19) != 0) i = (i + 1) & mask;
    s = slot(i);
    store<u64>(s, hi);
    store<u64>(s, lo, 8);
    store<u16>(s, <u16>zone, 16);
    store<u8>(s, <u8>len, 18);
    store<u8>(s, <u8>fam, 19);
    count++;
    let c = lenCount(zone, fam, len);
    store<u16>(c, load<u16>(c) + 1);
    let w = lenBit(zone, fam, len);
    store<u64>(w, load<u64>(w) | (<u64>1 << lenBitIndex(fam, len)));
  }
  store<u16>(s, <u16>ifIndex, 20);
  store<u16>(s, <u16>flags, 22);
  store<u64>(s, nhHi, 24);
  store<u64>(s, nhLo, 32);
  store<u32>(s, metric, 40);
  return true;
}

export function remove(zone: u32, fam: u32, len: u32, hi: u64, lo: u64): bool {
  let v6 = fam == 6;
  hi &= maskHi(len, v6);
  lo &= maskLo(len, v6);
  let s = findSlot(zone, fam, len, hi, lo);
  if (s == 0) return false;
  let c = lenCount(zone, fam, len);
  let n = load<u16>(c) - 1;
  store<u16>(c, n);
  if (n == 0) {
    let w = lenBit(zone, fam, len);
    store<u64>(w, load<u64>(w) & ~(<u64>1 << lenBitIndex(fam, len)));
  }
  eraseAt(base, RECORD_SIZE, mask, <u32>((s - base) / RECORD_SIZE), used, home);
  count--;
  return true;
}

function used(s: usize): bool { return load<u8>(s, 19) != 0; }
function home(s: usize): u32 { return keyHash(<u32>load<u16>(s, 16), <u32>load<u8>(s, 19), <u32>load<u8>(s, 18), load<u64>(s), load<u64>(s, 8)); }

// Longest-prefix match of an IPv4 address in a zone: the route record, or 0.
export function lookup4(zone: u32, addr: u32): usize {
  let bits = load<u64>(lenBase + <usize>zone * 32) & 0x1_ffff_ffff;
  while (bits != 0) {
    let len = <u32>(63 - clz<u64>(bits));
    let s = findSlot(zone, 4, len, 0, <u64>addr & maskLo(len, false));
    if (s != 0) return s;
    bits &= ~(<u64>1 << len);
  }
  return 0;
}

// Longest-prefix match of an IPv6 address (hi, lo) in a zone: the route record, or 0.
export function lookup6(zone: u32, hi: u64, lo: u64): usize {
  let z = lenBase + <usize>zone * 32;
  if ((load<u64>(z) >> 63) != 0) {
    let s = findSlot(zone, 6, 128, hi, lo);
    if (s != 0) return s;
  }
  for (let w: i32 = 1; w >= 0; w--) {
    let bits = load<u64>(z + 8 + (<usize>w << 3));
    while (bits != 0) {
      let b = <u32>(63 - clz<u64>(bits));
      let len = (<u32>w << 6) + b;
      let s = findSlot(zone, 6, len, hi & maskHi(len, true), lo & maskLo(len, true));
      if (s != 0) return s;
      bits &= ~(<u64>1 << b);
    }
  }
  return 0;
}

@inline export function routeIface(s: usize): u32 { return <u32>load<u16>(s, 20); }
@inline export function routeFlags(s: usize): u32 { return <u32>load<u16>(s, 22); }
@inline export function routeNextHopHi(s: usize): u64 { return load<u64>(s, 24); }
@inline export function routeNextHopLo(s: usize): u64 { return load<u64>(s, 32); }
