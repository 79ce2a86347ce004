// IPv6 addresses interned as 32-bit ids, so IPv6 connections fit the same conntrack record
// (and the same lookup, state machine, timeouts and expiry) as IPv4 ones: a connection stores the ids
// of its two addresses where an IPv4 connection stores the addresses themselves. Each connection holds
// a reference to both; an address is forgotten with its last connection. Ids are stable (record
// indexes from a free list), the hash index over them is the only thing that moves.
//
// Record (24 bytes): 0 u64 address hi, 8 u64 lo (big-endian halves, as tables/lpm.ts), 16 u32
// references (0 = free; for free records: 20 u32 next free + 1).
import { mix64, nextPow2, eraseAt, indexSlotUsed, indexSlotHome, seed } from "./hash";
import * as arena from "../arena";

const RECORD_SIZE: usize = 24;

export let recBase: usize = 0;
let capacity: u32 = 0;
let freeHead: u32 = 0;           // the last id given back (0 = none)
let fresh: u32 = 0;              // records from here on were never taken (and are zero)
let idxBase: usize = 0;
let idxMask: u32 = 0;
export let count: u32 = 0;

export function bytes(entries: u32): u64 { return arena.span(entries, RECORD_SIZE) + arena.span(nextPow2(entries * 2), 8); }

export function alloc(entries: u32): void {
  capacity = entries;
  recBase = arena.take(entries, RECORD_SIZE);
  // Nothing is written here, as in tables/flow.ts: records are taken in order (one given back first).
  freeHead = 0;
  fresh = 0;
  let slots = nextPow2(entries * 2);
  idxMask = slots - 1;
  idxBase = arena.take(slots, 8);
}

@inline function rec(i: u32): usize { return recBase + <usize>i * RECORD_SIZE; }
@inline export function hi(id: u32): u64 { return load<u64>(rec(id - 1)); }
@inline export function lo(id: u32): u64 { return load<u64>(rec(id - 1), 8); }

@inline function hashOf(h: u64, l: u64): u32 {
  let x = <u32>mix64(h ^ mix64(l ^ seed ^ 0x6164647236));
  return x == 0 ? 1 : x;
}

// The id of an address, or 0 if no connection uses it.
export function find(h: u64, l: u64): u32 {
  let k = hashOf(h, l);
  let i = k & idxMask;
  while (true) {
    let e = load<u64>(idxBase + (<usize>i << 3));
    if (e == 0) return 0;
    if (<u32>e == k) {
      let id = <u32>(e >> 32);
      let r = rec(id - 1);
      if (load<u64>(r) == h && load<u64>(r, 8) == l) return id;
    }
    i = (i + 1) & idxMask;
  }
}

// The id of an address with one more reference, or 0 when the table is full.
export function acquire(h: u64, l: u64): u32 {
  let id = find(h, l);
  if (id != 0) {
    let r = rec(id - 1);
    store<u32>(r, load<u32>(r, 16) + 1, 16);
    return id;
  }
  if (freeHead != 0) {
    id = freeHead;
    freeHead = load<u32>(rec(id - 1), 20);
  } else if (fresh < capacity) {
    id = ++fresh;
  } else {
    return 0;
  }
  let r = rec(id - 1);
  store<u64>(r, h);
  store<u64>(r, l, 8);
  store<u32>(r, 1, 16);
  store<u32>(r, 0, 20);
  let k = hashOf(h, l);
  let i = k & idxMask;
  while (load<u64>(idxBase + (<usize>i << 3)) != 0) i = (i + 1) & idxMask;
  store<u64>(idxBase + (<usize>i << 3), <u64>k | (<u64>id << 32));
  count++;
  return id;
}

// A connection's two ids, source in the low half and destination in the high half, each with one more
// reference; both or neither: 0 when the table cannot hold them.
export function acquirePair(shi: u64, slo: u64, dhi: u64, dlo: u64): u64 {
  let s = acquire(shi, slo), d = acquire(dhi, dlo);
  if (s != 0 && d != 0) return <u64>s | (<u64>d << 32);
  release(s);
  release(d);
  return 0;
}

// Drops one reference; the last one frees the id.
export function release(id: u32): void {
  if (id == 0 || id > capacity) return;
  let r = rec(id - 1);
  let n = load<u32>(r, 16);
  if (n == 0) return;
  if (n > 1) {
    store<u32>(r, n - 1, 16);
    return;
  }
  let k = hashOf(load<u64>(r), load<u64>(r, 8));
  let i = k & idxMask;
  while (<u32>(load<u64>(idxBase + (<usize>i << 3)) >> 32) != id) i = (i + 1) & idxMask;
  eraseAt(idxBase, 8, idxMask, i, indexSlotUsed, indexSlotHome);
  memory.fill(r, 0, RECORD_SIZE);
  store<u32>(r, freeHead, 20);
  freeHead = id;
  count--;
}
