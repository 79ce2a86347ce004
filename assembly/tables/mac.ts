// The MAC table: (network, VLAN, MAC) -> port, with a last-seen time for aging.
//
// Fixed 16-byte records in one power-of-two array of slots, at most half full (slots >= 2 x capacity).
// Open addressing by cache line: a key's home slot names its line of four records; it goes to the first
// free slot of that line, starting at the home slot and wrapping within the line, and only when the line
// is full to the next line with a free slot (linear probing over lines). So a lookup is the one line the
// batch's touch pass loaded for all but about 4 % of keys at half load (linear probing over slots
// crossed into an untouched line for 11 %: a dependent miss each, l2-1M ×1.2; docs/performance.md),
// and three in four keys sit in their home slot itself, which is checked first. A line without a free
// slot ends the search. Deletion shifts records back over lines (Knuth's algorithm R, by line: no
// tombstones), so lookups never slow down as entries come and go. Entries older
// than the aging time are treated as absent at once and removed by an incremental sweep that every
// batch advances by a few slots, so no call ever walks the whole table.
//
// Record layout (docs/ABI.md), little-endian:
//   0  6 bytes  MAC, wire order
//   6  u16      VLAN (bits 0-11) | STATIC (bit 14) | OCCUPIED (bit 15)
//   8  u16      network
//   10 u16      port
//   12 u32      last seen, milliseconds modulo 2^32 (the `now` of the last frame from this MAC)
import * as arena from "../arena";
import { nextPow2, mix64, seed } from "./hash";
import { port, maxPorts } from "../ports";
import { bump, Stat } from "../counters";

export const RECORD_SIZE: usize = 16;
const OCCUPIED: u64 = 1 << 63;
const STATIC: u64 = 1 << 62;
const KEY_MASK: u64 = 0x0fff_ffff_ffff_ffff; // MAC and VLAN, without the flag bits

export let base: usize = 0;
export let slots: u32 = 0;
export let mask: u32 = 0;
// The records of a cache line, and the mask that gives a slot's line (its first slot).
const LINE_SLOTS: u32 = 4;
let lineMask: u32 = 0;
export let capacity: u32 = 0;
export let count: u32 = 0;
export let agingMs: u32 = 300_000;
// Last-seen times are refreshed at this granularity: aging is accurate to it.
const REFRESH_MS: u32 = 1000;
let sweepCursor: u32 = 0;

// Slots for `entries` (at most half full), and the bytes they take (create() checks the sum first).
@inline function slotsFor(entries: u32): u32 { return nextPow2(entries * 2); }
export function bytes(entries: u32): u64 { return arena.span(slotsFor(entries), RECORD_SIZE); }

export function alloc(entries: u32): void {
  capacity = entries;
  slots = slotsFor(entries);
  mask = slots - 1;
  lineMask = mask & ~(LINE_SLOTS - 1);
  base = arena.take(slots, RECORD_SIZE);
}

@inline export function key(mac: u64, vid: u32): u64 {
  return mac | (<u64>vid << 48);
}

// The MurmurHash3 finalizer over the key and the network, keyed with the secret seed (tables/hash.ts):
// a guest picks its source MACs. The whole finalizer: with half of it (one multiply) a seed left
// MACs that collide under seed 0 in a tenth as many lines for one seed in ten (test/hashseed.test.ts).
@inline export function hash(k: u64, network: u32): u32 {
  return <u32>mix64(k ^ (<u64>network * 0x9e3779b97f4a7c15) ^ seed);
}

@inline function slot(i: u32): usize { return base + (<usize>i << 4); }
@inline function recKey(s: usize): u64 { return load<u64>(s); }
@inline function recNetwork(s: usize): u32 { return <u32>load<u16>(s, 8); }
@inline export function recPort(s: usize): u32 { return <u32>load<u16>(s, 10); }
@inline function recSeen(s: usize): u32 { return load<u32>(s, 12); }
@inline export function isStatic(s: usize): bool { return (recKey(s) & STATIC) != 0; }
// Not seen within the aging time (whether or not the record is static).
@inline function aged(s: usize, now: u32): bool { return now - recSeen(s) > agingMs; }
@inline function expired(s: usize, now: u32): bool { return !isStatic(s) && aged(s, now); }

// Is the record at s in force at `now` (static, or seen within the aging time)?
@inline export function live(s: usize, now: u32): bool { return !expired(s, now); }

// The address of a hash's home line, for the batch's touch pass (pipeline.ts touchAll): the batch
// computes every hash first and touches every line, letting the CPU overlap the cache misses (group
// prefetching), so that the later lookup hits the cache.
@inline export function slotOf(h: u32): u32 { return <u32>slot(h & lineMask); }

// The record holding (network, k), or 0: its home slot first, then the rest of its line in the order
// a new key takes the line's free slots, then the next lines while the ones before are full. (The line
// compared without branches, the match selected, cost l2-1k 11 %.)
@inline export function find(k: u64, network: u32, h: u32): usize {
  let want = k | OCCUPIED;
  let s = slot(h & mask);
  // Nested, not `&&`: a `&&` becomes an if that yields 0 or the second test, which V8 turns into a
  // 0/1 value it then tests (three instructions more) instead of two compares and branches.
  if ((recKey(s) & ~STATIC) == want) {
    if (recNetwork(s) == network) return s;
  }
  // Then the rest of its line in the order a new key takes its free slots, then the next lines (in
  // the same order) while the ones before are full.
  let i = h & lineMask;
  let free = recKey(s) == 0;
  let first: u32 = 1;
  while (true) {
    for (let j = first; j < LINE_SLOTS; j++) {
      let t = slot(i + ((h + j) & (LINE_SLOTS - 1)));
      let rk = recKey(t);
      if ((rk & ~STATIC) == want) {
        if (recNetwork(t) == network) return t;
      }
      free |= rk == 0;
    }
    if (free) return 0;
    i = (i + LINE_SLOTS) & mask;
    first = 0;
  }
}

// Forwarding lookup: the port for a destination, or -1 when unknown or aged out.
@inline export function lookup(k: u64, network: u32, h: u32, now: u32): i32 {
  let s = find(k, network, h);
  if (s == 0) return -1;
  // expired(), its two tests nested (see find).
  if (!isStatic(s)) {
    if (aged(s, now)) return -1;
  }
  return <i32>recPort(s);
}

export const enum Learn { Refreshed = 0, Learned, Moved, NotLearned, LimitReached, StaticConflict }

// The common case of learning is inline, in nodes/l2learn.ts: the source is already learned on this
// port (find, recPort) and was seen within REFRESH_MS (seenWithin), each tested in its own if (see
// find). Anything else takes learn(). The probe run is followed, not only the home slot: at half load
// about a third of the records sit past their home slot (linear probing), and each of those took the
// call to learn() (5 % of l2-1k's time).
@inline export function seenWithin(s: usize, now: u32): bool { return now - recSeen(s) < REFRESH_MS; }

// Learns or refreshes (network, k) on port `p`. Returns what happened; LimitReached and StaticConflict
// mean the frame must be dropped (port security), NotLearned only that the table was full.

export function learn(k: u64, network: u32, h: u32, p: u32, now: u32): Learn {
  let s = find(k, network, h);
  if (s != 0) {
    let old = recPort(s);
    if (isStatic(s)) return old == p ? Learn.Refreshed : Learn.StaticConflict;
    if (old == p) {
      // Refresh at most once per REFRESH_MS, so busy hosts do not dirty a cache line every frame.
      if (now - recSeen(s) >= REFRESH_MS) store<u32>(s, now, 12);
      return Learn.Refreshed;
    }
    let pt = port(p);
    if (pt.learned >= pt.learnLimit) return Learn.LimitReached;
    pt.learned++;
    if (!expired(s, now)) {
      bump(Stat.MacMoves);
    } else {
      bump(Stat.MacAged);
    }
    port(old).learned--;
    store<u16>(s, <u16>p, 10);
    store<u32>(s, now, 12);
    return Learn.Moved;
  }
  let pt = port(p);
  if (pt.learned >= pt.learnLimit) return Learn.LimitReached;
  if (count >= capacity) {
    bump(Stat.MacTableFull);
    return Learn.NotLearned;
  }
  insert(k, network, h, p, now, false);
  pt.learned++;
  bump(Stat.MacLearned);
  return Learn.Learned;
}

function insert(k: u64, network: u32, h: u32, p: u32, now: u32, isStatic: bool): void {
  let s = freeSlot(h);
  store<u64>(s, k | OCCUPIED | (isStatic ? STATIC : 0));
  store<u16>(s, <u16>network, 8);
  store<u16>(s, <u16>p, 10);
  store<u32>(s, now, 12);
  count++;
}

// The slot a new key of hash h goes to: the first free one of its home line from its home slot on,
// wrapping within the line, else of the next line with one (the table is never full: at most half).
function freeSlot(h: u32): usize {
  let i = h & lineMask;
  while (true) {
    for (let j: u32 = 0; j < LINE_SLOTS; j++) {
      let s = slot(i + ((h + j) & (LINE_SLOTS - 1)));
      if (recKey(s) == 0) return s;
    }
    i = (i + LINE_SLOTS) & mask;
  }
}

// Adds or replaces a static entry. Returns false when the table is full.
export function addStatic(k: u64, network: u32, p: u32, now: u32): bool {
  let h = hash(k, network);
  let s = find(k, network, h);
  if (s != 0) {
    if (!isStatic(s)) port(recPort(s)).learned--;
    store<u64>(s, k | OCCUPIED | STATIC);
    store<u16>(s, <u16>p, 10);
    store<u32>(s, now, 12);
    return true;
  }
  if (count >= capacity) return false;
  insert(k, network, h, p, now, true);
  return true;
}

export function remove(k: u64, network: u32): bool {
  let s = find(k, network, hash(k, network));
  if (s == 0) return false;
  erase(<u32>((s - base) >> 4));
  return true;
}

// The first slot of the home line of the record at s.
function homeLine(s: usize): u32 { return hash(recKey(s) & KEY_MASK, recNetwork(s)) & lineMask; }

function lineFull(line: u32): bool {
  for (let j: u32 = 0; j < LINE_SLOTS; j++) if (recKey(slot(line + j)) == 0) return false;
  return true;
}

// Removes the record in slot i, keeping its port's count. Then, as linear probing's backward shift
// but by line: the lines after the hole's are walked while they are full, and a record there whose
// home line is not between the hole's line and its own (so its search passed the hole's line, which
// now ends searches) moves into the hole, whose line becomes that record's. A line with a free slot
// ends the walk: no search went past it. A moved record only ever lands in the hole, so a loop over
// the slots that looks at slot i again after an erase sees it (sweep, flushPort, flushLearned).
function erase(i: u32): void {
  let s = slot(i);
  if (!isStatic(s)) {
    let p = recPort(s);
    if (p < maxPorts) port(p).learned--;
  }
  count--;
  // A line with a free slot was never passed by a search: nothing after it needs to move.
  let passed = lineFull(i & lineMask);
  clear(s);
  if (!passed) return;
  let hole = i;
  let holeLine = i & lineMask;
  let y = holeLine;
  while (true) {
    y = (y + LINE_SLOTS) & mask;
    let wasFull = lineFull(y);
    for (let j: u32 = 0; j < LINE_SLOTS; j++) {
      let sj = slot(y + j);
      if (recKey(sj) == 0) continue;
      let h = homeLine(sj);
      // It stays when its home line lies cyclically in (holeLine, y].
      if (holeLine < y ? (h > holeLine && h <= y) : (h > holeLine || h <= y)) continue;
      memory.copy(slot(hole), sj, RECORD_SIZE);
      clear(sj);
      hole = y + j;
      holeLine = y;
      break;
    }
    if (!wasFull) return;
  }
}

@inline function clear(s: usize): void {
  store<u64>(s, 0);
  store<u64>(s, 0, 8);
}

// Removes aged entries among the next `budget` slots. Returns how many it removed.
export function sweep(now: u32, budget: u32): u32 {
  if (count == 0) return 0;
  let removed: u32 = 0;
  let i = sweepCursor;
  for (let n: u32 = 0; n < budget; n++) {
    let s = slot(i);
    if (recKey(s) != 0 && expired(s, now)) {
      erase(i);
      removed++;
      // erase() may have shifted a later record into slot i: look at it again.
      continue;
    }
    i = (i + 1) & mask;
  }
  sweepCursor = i;
  if (removed) bump(Stat.MacAged, removed);
  return removed;
}

// Removes every entry on port p (static ones too). Returns how many.
export function flushPort(p: u32): u32 {
  let removed: u32 = 0;
  let i: u32 = 0;
  while (i < slots) {
    let s = slot(i);
    if (recKey(s) != 0 && recPort(s) == p) {
      erase(i);
      removed++;
      continue;
    }
    i++;
  }
  return removed;
}

// Removes every learned (not static) entry, as `ovs-appctl fdb/flush` does.
export function flushLearned(): u32 {
  let removed: u32 = 0;
  let i: u32 = 0;
  while (i < slots) {
    let s = slot(i);
    if (recKey(s) != 0 && !isStatic(s)) {
      erase(i);
      removed++;
      continue;
    }
    i++;
  }
  return removed;
}
