// The neighbour table: (compartment, IP) -> MAC, for IPv4 (ARP) and IPv6 (neighbour discovery). Entries
// are learned from the ARP and ND messages that reach the router, or set statically by the control
// plane (an endpoint's configured address). Learned entries expire after `reachableMs` unless refreshed;
// static ones never do. Every change of a MAC bumps the router epoch, so connections that cached a next-hop
// MAC re-resolve it on their next packet.
//
// Record (32 bytes): 0 u64 address hi, 8 u64 address lo (as in tables/lpm.ts), 16 u16 zone, 18 u8
// family (4/6; 0 = free), 19 u8 state (1 learned, 2 static), 20 u16 interface, 22 6 bytes MAC, 28 u32
// last confirmed (ms).
import { hash3, nextPow2, eraseAt, seed } from "./hash";
import * as arena from "../arena";
import { bumpEpoch } from "../router";

export const RECORD_SIZE: usize = 32;
export const LEARNED: u8 = 1;
export const STATIC: u8 = 2;

export let base: usize = 0;
export let slots: u32 = 0;
export let capacity: u32 = 0;
export let count: u32 = 0;
export let reachableMs: u32 = 300_000;
let mask: u32 = 0;

export function bytes(entries: u32): u64 { return arena.span(nextPow2(entries * 2), RECORD_SIZE); }

export function alloc(entries: u32): void {
  capacity = entries;
  slots = nextPow2(entries * 2);
  mask = slots - 1;
  base = arena.take(slots, RECORD_SIZE);
}

@inline function slot(i: u32): usize { return base + (<usize>i << 5); }
@inline function keyHash(zone: u32, fam: u32, hi: u64, lo: u64): u32 {
  return hash3(<u64>(zone | (fam << 16)) ^ 0x6e65696768626f72, hi, lo ^ seed);
}

export function find(zone: u32, fam: u32, hi: u64, lo: u64): usize {
  let i = keyHash(zone, fam, hi, lo) & mask;
  while (true) {
    let s = slot(i);
    let f = <u32>load<u8>(s, 18);
    if (f == 0) return 0;
    if (f == fam && <u32>load<u16>(s, 16) == zone && load<u64>(s, 8) == lo && load<u64>(s) == hi) return s;
    i = (i + 1) & mask;
  }
}

// The usable entry for a next hop, or 0 (unknown, or learned and expired).
export function resolve(zone: u32, fam: u32, hi: u64, lo: u64, now: u32): usize {
  let s = find(zone, fam, hi, lo);
  if (s == 0) return 0;
  if (load<u8>(s, 19) == LEARNED && now - load<u32>(s, 28) > reachableMs) return 0;
  return s;
}

@inline export function entryMac(s: usize): u64 {
  return <u64>load<u32>(s, 22) | (<u64>load<u16>(s, 26) << 32);
}
@inline export function entryIface(s: usize): u32 { return <u32>load<u16>(s, 20); }

// Learns (state LEARNED) or sets (STATIC) an entry. A learned update never overrides a static entry.
// Returns false when the table is full.
export function update(zone: u32, fam: u32, hi: u64, lo: u64, mac: u64, ifIndex: u32, state: u8, now: u32): bool {
  let s = find(zone, fam, hi, lo);
  if (s == 0) {
    if (count >= capacity) return false;
    let i = keyHash(zone, fam, hi, lo) & mask;
    while (load<u8>(slot(i), 18) != 0) i = (i + 1) & mask;
    s = slot(i);
    store<u64>(s, hi);
    store<u64>(s, lo, 8);
    store<u16>(s, <u16>zone, 16);
    store<u8>(s, <u8>fam, 18);
    count++;
  } else if (load<u8>(s, 19) == STATIC && state == LEARNED) {
    return true;
  }
  if (entryMac(s) != mac || entryIface(s) != ifIndex) bumpEpoch();
  store<u8>(s, state, 19);
  store<u16>(s, <u16>ifIndex, 20);
  store<u32>(s, <u32>mac, 22);
  store<u16>(s, <u16>(mac >> 32), 26);
  store<u32>(s, now, 28);
  return true;
}

function used(s: usize): bool { return load<u8>(s, 18) != 0; }
function home(s: usize): u32 { return keyHash(<u32>load<u16>(s, 16), <u32>load<u8>(s, 18), load<u64>(s), load<u64>(s, 8)); }

export function remove(zone: u32, fam: u32, hi: u64, lo: u64): bool {
  let s = find(zone, fam, hi, lo);
  if (s == 0) return false;
  eraseAt(base, RECORD_SIZE, mask, <u32>((s - base) >> 5), used, home);
  count--;
  bumpEpoch();
  return true;
}
