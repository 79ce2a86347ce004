// The connection table (conntrack), IPv4: one record per connection and two keys in the index, the
// original direction and the reply direction (as Open vSwitch keeps them), so a packet of either
// direction finds its connection with one lookup. The reply key is the tuple replies really carry
// after NAT, so the NAT allocator can test whether a reply tuple is free by looking it up.
//
// The record caches everything the fast path needs per direction: the translated addresses and
// ports, the checksum deltas they cause (with the TTL decrement folded in), the egress interface and
// the next-hop MAC. An established packet is one index probe, one record, a few stores.
//
// Memory per connection: a 128-byte record plus four 8-byte index slots (two keys, index at most half
// full) = 160 bytes. The index slot holds the key's 32-bit hash and (record << 1 | direction) + 1, so
// a probe only touches the record when the hash matches. 128 bytes is two cache lines, which the fast
// path reads and writes: the tuples, state and next hops in the first, the counters and TCP windows in
// the second.
//
// Record (128 bytes, little-endian, except the tuples: their addresses and ports are in network byte
// order, as the packet carries them and as Linux's nf_conntrack_tuple holds them, so the fast path
// compares a packet's 12 bytes of addresses and ports with two loads and writes its translation back
// with two stores, and swaps no byte; an IPv6 connection's addresses are tables/addr6.ts ids, stored
// the same way):
//   0  orig src            4  orig dst            8  orig sport         10 orig dport
//   12 reply src           16 reply dst           20 reply sport        22 reply dport
//   24 u16 zone            26 u8 protocol         27 u8 state           28 u8 flags
//   29 u8 tcp flags seen   30 u16 route generation (low 16 bits; 0 = egress not resolved)
//   32 u8 orig TCP window scale and flags, 33 u8 reply (nodes/tcpwindow.ts)    34 u16 unused
//   36 u32 expires (ms)
//   40 u16 orig egress interface     42 u16 reply egress interface
//   44 6 bytes orig next-hop MAC     50 6 bytes reply next-hop MAC
//   56 u16 orig IP checksum delta    58 u16 orig L4 checksum delta
//   60 u16 reply IP checksum delta   62 u16 reply L4 checksum delta
//      (the deltas in network byte order, as the checksum fields they are added to)
//   64 u32 orig packets    68 u32 reply packets  72 u64 orig bytes      80 u64 reply bytes
//   88 u32 created (ms)    92 u32 policy generation (records given back: the next one given back + 1)
//   96 TCP window of the original direction: u32 end, u32 maxend, u32 maxwin, u32 maxack
//   112 the same for the reply direction
import { mix64, nextPow2, eraseAt, indexSlotUsed, indexSlotHome, seed } from "./hash";
import * as arena from "../arena";
import * as addr6 from "./addr6";
import * as eim from "./eim";
import { swap16 } from "../wire/bytes";

export const RECORD_SIZE: usize = 128;

// flags
export const CT_IN_USE: u8 = 1;
export const CT_SNAT: u8 = 2;
export const CT_DNAT: u8 = 4;
export const CT_SEEN_REPLY: u8 = 8;
export const CT_ASSURED: u8 = 16;   // established both ways: never early-dropped
export const CT_EIM: u8 = 32;       // its source NAT holds an endpoint-independent mapping
export const CT_V6: u8 = 64;        // IPv6: the addresses are tables/addr6.ts ids
export const CT_ACL_IN: u8 = 128;   // an ACL connection classified in the In direction (to the port)
// An IPv6 connection's zone field carries this bit, so IPv4 and IPv6 keys never meet.
export const ZONE_V6: u32 = 0x8000;

export let recBase: usize = 0;
export let capacity: u32 = 0;
export let count: u32 = 0;
let freeHead: u32 = 0;              // the last record given back + 1 (0 = none)
let fresh: u32 = 0;                 // records from here on were never taken (and are zero)
export let idxBase: usize = 0;
export let idxSlots: u32 = 0;
let idxMask: u32 = 0;
let sweepCursor: u32 = 0;
let evictCursor: u32 = 0;

export function bytes(conns: u32): u64 { return arena.span(conns, RECORD_SIZE) + arena.span(nextPow2(conns * 4), 8); }

export function alloc(conns: u32): void {
  capacity = conns;
  recBase = arena.take(conns, RECORD_SIZE);
  // Nothing is written here: records never taken are not on the free list but above `fresh`, so a
  // table's pages are first touched when a connection uses them (src/dataplane.ts asks for huge pages
  // after create_l3, which only applies to pages not yet touched), and creating 1M connections'
  // worth of table costs no pass over 128 MiB.
  freeHead = 0;
  fresh = 0;
  idxSlots = nextPow2(conns * 4);
  idxMask = idxSlots - 1;
  idxBase = arena.take(idxSlots, 8);
}

@inline export function rec(i: u32): usize { return recBase + <usize>i * RECORD_SIZE; }

// The index hash of a key. It is taken over the addresses and ports as the wire carries them, so the
// batch's first pass hashes a packet from two loads of its headers, without swapping a byte
// (ip4.ts routedFlowHash); a caller with the key as numbers swaps them here (hashKey). addrs: the 8
// bytes of source then destination address, ports: the 4 bytes of source then destination port (or
// identifier), each as loaded from the packet (little-endian).
// Keyed with the table's secret seed (tables/hash.ts).
@inline export function hashWire(zone: u32, proto: u32, addrs: u64, ports: u32): u32 {
  return hashKeyed(zone, proto, addrs ^ seed, ports);
}
@inline export function hashKey(zone: u32, proto: u32, src: u32, dst: u32, sport: u32, dport: u32): u32 {
  return hashWire(zone, proto, wireAddrs(src, dst), wirePorts(sport, dport));
}
// The same hash without the seed, for what must agree across hosts (the load balancer's backend
// choice, nodes/nat.ts).
@inline export function hashUnseeded(zone: u32, proto: u32, src: u32, dst: u32, sport: u32, dport: u32): u32 {
  return hashKeyed(zone, proto, wireAddrs(src, dst), wirePorts(sport, dport));
}
@inline function hashKeyed(zone: u32, proto: u32, addrs: u64, ports: u32): u32 {
  // One finalizer over the addresses and the multiplied rest (each output bit depends on every input bit).
  let b = (<u64>ports << 32) | (<u64>proto << 16) | <u64>zone;
  let r = <u32>mix64(addrs ^ (b * 0x9e3779b97f4a7c15));
  return r == 0 ? 1 : r; // 0 marks an empty index slot's hash
}

// The tuple of direction `dir` (0 original, 1 reply) as numbers.
@inline export function srcOf(r: usize, dir: u32): u32 { return bswap<u32>(load<u32>(r + (dir ? 12 : 0))); }
@inline export function dstOf(r: usize, dir: u32): u32 { return bswap<u32>(load<u32>(r + (dir ? 12 : 0), 4)); }
@inline export function sportOf(r: usize, dir: u32): u32 { return swap16(<u32>load<u16>(r + (dir ? 12 : 0), 8)); }
@inline export function dportOf(r: usize, dir: u32): u32 { return swap16(<u32>load<u16>(r + (dir ? 12 : 0), 10)); }

// A key as numbers, as the record and the packet hold it: the addresses (source in the low word) and
// the ports (source in the low half).
@inline export function wireAddrs(src: u32, dst: u32): u64 { return <u64>bswap<u32>(src) | (<u64>bswap<u32>(dst) << 32); }
@inline export function wirePorts(sport: u32, dport: u32): u32 { return swap16(sport) | (swap16(dport) << 16); }

// Whether direction `dir` of record r has the key (the addresses, ports, zone and protocol): v when
// it does, else 0, each field tested in its own if (a `&&` chain would become a value V8 makes and
// then tests; tables/mac.ts find).
@inline function matching(v: u32, r: usize, dir: u32, zone: u32, proto: u32, addrs: u64, ports: u32): u32 {
  let o: usize = dir ? 12 : 0;
  if (load<u64>(r + o) == addrs) {
    if (load<u32>(r + o, 8) == ports) {
      if ((load<u32>(r, 24) & 0xffffff) == (zone | (proto << 16))) return v;
    }
  }
  return 0;
}

// Finds a key: returns (record << 1 | direction) + 1, or 0.
export function lookup(h: u32, zone: u32, proto: u32, src: u32, dst: u32, sport: u32, dport: u32): u32 {
  return lookupWire(h, zone, proto, wireAddrs(src, dst), wirePorts(sport, dport));
}
// The same, with the addresses and ports as the packet carries them (wireAddrs, wirePorts).
export function lookupWire(h: u32, zone: u32, proto: u32, addrs: u64, ports: u32): u32 {
  let i = h & idxMask;
  while (true) {
    let s = idxBase + (<usize>i << 3);
    let e = load<u64>(s);
    if (e == 0) return 0;
    if (<u32>e == h) {
      let v = <u32>(e >> 32);
      let ri = (v - 1) >> 1;
      if (matching(v, rec(ri), (v - 1) & 1, zone, proto, addrs, ports) != 0) return v;
    }
    i = (i + 1) & idxMask;
  }
}

// The address of a key's home index slot, for the batch's touch pass (see the MAC table's slotOf).
@inline export function slotOf(h: u32): u32 { return <u32>(idxBase + (<usize>(h & idxMask) << 3)); }

// For the batch's touch pass, once the index touch has brought the key's slots in: the key's
// reference, (record << 1 | direction) + 1, if a slot of its probe run holds its hash, else 0. The
// run is followed, not only the home slot: at half load a quarter of the keys sit past their home
// slot (linear probing; 3 % more than four past it), and the miss on their record would otherwise
// stall the lookup itself (it took a third of the lookup's time at 1M connections). A hash match is
// only a hint: holds() checks the key before the reference is used.
const PROBE_SLOTS: u32 = 8;
@inline export function probe(h: u32): u32 {
  let i = h & idxMask;
  for (let k: u32 = 0; k < PROBE_SLOTS; k++) {
    let e = load<u64>(idxBase + (<usize>i << 3));
    if (e == 0) return 0;
    if (<u32>e == h) return <u32>(e >> 32);
    i = (i + 1) & idxMask;
  }
  return 0;
}

// The address of a reference's record, for the batch's touch pass, which loads both of its cache
// lines: the fast path needs both (the second holds the counters and the TCP windows, checked before
// anything is sent).
@inline export function recordOf(v: u32): u32 { return <u32>rec((v - 1) >> 1); }

// v when reference v (from probe(), maybe stale: the batch's earlier packets may have removed or
// replaced connections since) is a connection in use with this key in its direction (then lookup()
// would return v, and the index need not be probed again), else 0. The key as the packet carries it.
@inline export function holds(v: u32, zone: u32, proto: u32, addrs: u64, ports: u32): u32 {
  let r = rec((v - 1) >> 1);
  if ((load<u8>(r, 28) & CT_IN_USE) == 0) return 0;
  return matching(v, r, (v - 1) & 1, zone, proto, addrs, ports);
}

function insertKey(h: u32, v: u32): void {
  let i = h & idxMask;
  while (load<u64>(idxBase + (<usize>i << 3)) != 0) i = (i + 1) & idxMask;
  store<u64>(idxBase + (<usize>i << 3), <u64>h | (<u64>v << 32));
}

function removeKey(h: u32, v: u32): void {
  let i = h & idxMask;
  while (true) {
    let e = load<u64>(idxBase + (<usize>i << 3));
    if (e == 0) return;
    if (<u32>(e >> 32) == v) break;
    i = (i + 1) & idxMask;
  }
  eraseAt(idxBase, 8, idxMask, i, indexSlotUsed, indexSlotHome);
}

@inline function keyHashOf(r: usize, dir: u32): u32 {
  let o: usize = dir ? 12 : 0;
  return hashWire(<u32>load<u16>(r, 24), <u32>load<u8>(r, 26), load<u64>(r + o), load<u32>(r + o, 8));
}

// Takes a free record, or -1 when the table is full. The caller fills it, then calls commit().
// The records given back first, the last first; then the lowest never taken.
export function take(): i32 {
  if (freeHead == 0) {
    if (fresh >= capacity) return -1;
    fresh++;
    return <i32>(fresh - 1);
  }
  let i = freeHead - 1;
  freeHead = load<u32>(rec(i), 92);
  memory.fill(rec(i), 0, RECORD_SIZE);
  return <i32>i;
}

// Puts an unused taken record back.
export function giveBack(i: u32): void {
  memory.fill(rec(i), 0, RECORD_SIZE);
  store<u32>(rec(i), freeHead, 92);
  freeHead = i + 1;
}

// Writes a taken record's two tuples, zone, protocol, state, flags and creation time: what every new
// connection has. The caller adds what is particular to it, then calls commit().
export function setTuples(r: usize, zone: u32, proto: u32, state: u32, flags: u32,
                          src: u32, dst: u32, sport: u32, dport: u32,
                          rsrc: u32, rdst: u32, rsport: u32, rdport: u32, now: u32): void {
  store<u64>(r, wireAddrs(src, dst));
  store<u32>(r, wirePorts(sport, dport), 8);
  store<u64>(r, wireAddrs(rsrc, rdst), 12);
  store<u32>(r, wirePorts(rsport, rdport), 20);
  store<u16>(r, <u16>zone, 24);
  store<u8>(r, <u8>proto, 26);
  store<u8>(r, <u8>state, 27);
  store<u8>(r, <u8>flags, 28);
  store<u32>(r, now, 88);
}

// Indexes a filled record under both its keys, whose hashes the caller has already computed.
export function commit(i: u32, origHash: u32, replyHash: u32): void {
  let r = rec(i);
  store<u8>(r, load<u8>(r, 28) | CT_IN_USE, 28);
  insertKey(origHash, (i << 1) + 1);
  insertKey(replyHash, (i << 1) + 2);
  count++;
}

// Removes a connection: both keys and the record.
export function release(i: u32): void {
  let r = rec(i);
  if ((load<u8>(r, 28) & CT_IN_USE) == 0) return;
  removeKey(keyHashOf(r, 0), (i << 1) + 1);
  removeKey(keyHashOf(r, 1), (i << 1) + 2);
  let f = load<u8>(r, 28);
  if (f & CT_EIM) {
    eim.unref(<u32>load<u16>(r, 24), <u32>load<u8>(r, 26), srcOf(r, 0), sportOf(r, 0), dstOf(r, 1));
  }
  if (f & CT_V6) {
    addr6.release(srcOf(r, 0));
    addr6.release(dstOf(r, 0));
  }
  giveBack(i);
  count--;
}

@inline export function expired(r: usize, now: u32): bool {
  return <i32>(now - load<u32>(r, 36)) > 0;
}

// Removes expired connections among the next `budget` records. Returns how many.
export function sweep(now: u32, budget: u32): u32 {
  if (count == 0) return 0;
  let removed: u32 = 0;
  let i = sweepCursor;
  for (let n: u32 = 0; n < budget; n++) {
    let r = rec(i);
    if ((load<u8>(r, 28) & CT_IN_USE) != 0 && expired(r, now)) {
      release(i);
      removed++;
    }
    i = i + 1 >= fresh ? 0 : i + 1;       // records above `fresh` were never used
  }
  sweepCursor = i;
  return removed;
}

// Early drop (as Linux does when its table is full): frees one connection that is expired or not
// yet assured, looking at up to `budget` records from a rotating cursor. Returns false if none.
export function evictOne(now: u32, budget: u32): bool {
  if (fresh == 0) return false;
  let i = evictCursor;
  for (let n: u32 = 0; n < budget; n++) {
    let r = rec(i);
    let f = load<u8>(r, 28);
    let next = i + 1 >= fresh ? 0 : i + 1;
    if ((f & CT_IN_USE) != 0 && ((f & CT_ASSURED) == 0 || expired(r, now))) {
      release(i);
      evictCursor = next;
      return true;
    }
    i = next;
  }
  evictCursor = i;
  return false;
}

// Removes every connection (optionally only of one zone, either family: zone < 0x10000). Returns how many.
export function flush(zone: u32): u32 {
  let removed: u32 = 0;
  for (let i: u32 = 0; i < fresh; i++) {
    let r = rec(i);
    if ((load<u8>(r, 28) & CT_IN_USE) == 0) continue;
    if (zone <= 0xffff && (<u32>load<u16>(r, 24) & ~ZONE_V6) != zone) continue;
    release(i);
    removed++;
  }
  return removed;
}
