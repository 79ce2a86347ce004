// IP fragments by virtual reassembly (as VPP does it): the dataplane never rebuilds a datagram, it
// remembers, per datagram, what the first fragment's transport header said, so every fragment of that
// datagram finds the same connection and gets the same translation as the first did. Only the first
// fragment carries the ports (or ICMP echo id) and the L4 checksum: it goes through the ordinary
// connection path (lookup, new connection, NAT, ACLs); later fragments are looked up here by
// (zone, protocol, source, destination, IP identification) and follow it, with only their IP header
// addresses rewritten. Reassembly and refragmentation (Linux's way) would cost a copy of every
// fragmented datagram, up to 64 KiB of buffer per datagram, and a second fragmentation on the way out.
//
// What a fragment that arrives before its first fragment does: it is held (copied into a bounded set
// of hold slots) and run again, from the stage that held it, once the first fragment has been
// through; if the first never comes, the held fragments are dropped when the datagram times out.
//
// Attacks (the checks of Open vSwitch's lib/ipf.c and of Linux's inet_frag_queue_insert): each
// datagram keeps the byte ranges it has seen, so a fragment that overlaps another (not an exact
// duplicate: a retransmission is harmless) condemns the datagram (RFC 1858's overlap attack, which
// would rewrite the ports an ACL classified, and RFC 5722 for IPv6); a datagram over 65535 bytes
// (the ping of death), more than MAX_FRAGMENTS fragments, or a non-last fragment whose length is not
// a multiple of 8 is refused. Tiny first fragments are refused by parse. Memory is fixed when the L3
// tables are created (datagramsFor below): a full table or hold area is a counted drop, and datagrams
// expire after `timeoutMs` (Linux's ipfrag_time, 30 s).
//
// Datagram record (RECORD_SIZE bytes):
//   0 u64 src hi   8 u64 src lo   16 u64 dst hi   24 u64 dst lo   (IPv4 addresses in the lo words)
//   32 u32 identification (IPv4: 16 bits)    36 u16 zone (| ZONE_V6)    38 u8 protocol    39 u8 flags
//   40 u16 first fragment's sport            42 u16 dport (the connection key's, echo id included)
//   44 u32 expires (ms)   48 u32 bytes seen   52 u32 datagram length (when LAST)
//   56 u8 ranges          57 u8 reason a condemned datagram's fragments are dropped with
//   58 u16 held fragments 60 u32 first held slot + 1 (free records: next free record + 1)
//   64 u32 the identification of the router's answer (a fragmented echo to a gateway address) + 1
//   72 MAX_FRAGMENTS x (u16 start, u16 end) byte ranges of the fragmentable part
// Hold slot (HOLD_SIZE bytes): 0 u32 next slot + 1, 4 u16 frame length, 6 u16 ingress port,
//   8 u16 router interface, 10 u16 stage, 12 u32 the first fragment's ports once released,
//   16 u32 the datagram's answer identification once released, 20 u16 network, 22 u16 VLAN (the
//   broadcast domain it was in: a frame decapsulated from the underlay has no port of its own), 24 frame.
import { Reason } from "../reasons";
import { mix64, nextPow2, eraseAt, indexSlotUsed, indexSlotHome, seed } from "./hash";
import { drop, bump, Stat } from "../counters";
import * as arena from "../arena";

export const RECORD_SIZE: usize = 328;
const RANGES: usize = 72;
export const MAX_FRAGMENTS: u32 = 64;
export const HOLD_FRAME_MAX: u32 = 2048;
export const HOLD_FRAME: usize = 24;
export const HOLD_SIZE: usize = HOLD_FRAME + <usize>HOLD_FRAME_MAX;
const DEFAULT_TIMEOUT_MS: u32 = 30_000;
const MAX_DATAGRAM: u32 = 65535;
const RECLAIM_SCAN: u32 = 64;    // records a full table looks at for an expired one

// flags
const IN_USE: u8 = 1;
const FIRST: u8 = 2;   // the first fragment has been seen: its ports are in the record
const LAST: u8 = 4;    // the last fragment (MF = 0) has been seen: the length is known
const DEAD: u8 = 8;    // condemned: every further fragment is dropped with the record's reason

// Where a held fragment runs again from.
export const STAGE_ROUTER: u32 = 1;    // the router interface's input (nodes/l3.ts)
export const STAGE_ACL_OUT: u32 = 2;   // the ingress port's ACL, then forwarding (pipeline.ts)

// The results of later(): follow the first fragment (its ports in `sport`, `dport`), or hold this one.
export const FOLLOW: i32 = 0;
export const HOLD: i32 = -1;

export let recBase: usize = 0;
export let capacity: u32 = 0;
export let count: u32 = 0;
let freeHead: u32 = 0;           // the last record given back + 1 (0 = none)
let fresh: u32 = 0;              // records from here on were never taken (and are zero)
let idxBase: usize = 0;
let idxMask: u32 = 0;
export let holdBase: usize = 0;
export let holdSlots: u32 = 0;
let holdFree: u32 = 0;           // the last slot given back + 1 (0 = none)
let holdFresh: u32 = 0;          // slots from here on were never taken
let pendingHead: u32 = 0;        // released slots waiting to run again, + 1
let sweepCursor: u32 = 0;
export let timeoutMs: u32 = DEFAULT_TIMEOUT_MS;

// The first fragment's ports, after first() or later() returned FOLLOW.
export let sport: u32 = 0;
export let dport: u32 = 0;
// After first() or later(): the identification the router's answer to this datagram uses (the
// `answerIdent` they were given when the datagram had none yet), so every fragment of an echo reply
// the router makes of a fragmented echo request carries the same one.
export let answer: u32 = 0;
@inline function noteAnswer(r: usize, answerIdent: u32): void {
  let a = load<u32>(r, 64);
  if (a == 0) {
    a = answerIdent + 1;
    store<u32>(r, a, 64);
  }
  answer = a - 1;
}

// How many datagrams and hold slots create_l3's connection count buys: one datagram in reassembly per
// 64 connections (at least 256, at most 16384) and a hold slot per four datagrams. Kept apart from
// create_l3 so its memory formula can name it.
export function datagramsFor(conns: u32): u32 {
  let n = conns >> 6;
  return n < 256 ? 256 : n > 16384 ? 16384 : n;
}
export function holdSlotsFor(datagrams: u32): u32 { return datagrams >> 2; }
// The table's term of create_l3's sum: the records, the index, the hold slots.
export function bytes(datagrams: u32): u64 {
  return arena.span(datagrams, RECORD_SIZE) + arena.span(nextPow2(datagrams * 2), 8) + arena.span(holdSlotsFor(datagrams), HOLD_SIZE);
}

export function alloc(datagrams: u32): void {
  capacity = datagrams;
  recBase = arena.take(datagrams, RECORD_SIZE);
  // Nothing is written here, as in tables/flow.ts: records and hold slots are taken in order (one given
  // back first), so the table's pages are first touched when fragments use them.
  freeHead = 0;
  fresh = 0;
  let slots = nextPow2(datagrams * 2);
  idxMask = slots - 1;
  idxBase = arena.take(slots, 8);
  holdSlots = holdSlotsFor(datagrams);
  holdBase = arena.take(holdSlots, HOLD_SIZE);
  holdFree = 0;
  holdFresh = 0;
}

@inline export function rec(i: u32): usize { return recBase + <usize>i * RECORD_SIZE; }
@inline export function hold(i: u32): usize { return holdBase + <usize>i * HOLD_SIZE; }

@inline function keyHash(zone: u32, proto: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, id: u32): u32 {
  let h = <u32>mix64(shi ^ mix64(slo ^ mix64(dhi ^ mix64(dlo ^ seed ^ ((<u64>id << 32) | (<u64>zone << 8) | <u64>proto)))));
  return h == 0 ? 1 : h;
}

@inline function matches(r: usize, zone: u32, proto: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, id: u32): bool {
  return load<u64>(r, 8) == slo && load<u64>(r, 24) == dlo && load<u32>(r, 32) == id &&
    load<u64>(r) == shi && load<u64>(r, 16) == dhi &&
    <u32>load<u16>(r, 36) == zone && <u32>load<u8>(r, 38) == proto;
}

// The datagram's record index + 1, or 0.
function find(h: u32, zone: u32, proto: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, id: u32): u32 {
  let i = h & idxMask;
  while (true) {
    let e = load<u64>(idxBase + (<usize>i << 3));
    if (e == 0) return 0;
    if (<u32>e == h) {
      let v = <u32>(e >> 32);
      if (matches(rec(v - 1), zone, proto, shi, slo, dhi, dlo, id)) return v;
    }
    i = (i + 1) & idxMask;
  }
}

// The live record of the datagram, created if it is new; 0 (the drop counted by the caller) if the
// table is full. An expired record found on the way is released first (its held fragments dropped).
function open(zone: u32, proto: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, id: u32, now: u32): usize {
  let h = keyHash(zone, proto, shi, slo, dhi, dlo, id);
  let v = find(h, zone, proto, shi, slo, dhi, dlo, id);
  if (v != 0) {
    let r = rec(v - 1);
    if (<i32>(now - load<u32>(r, 44)) <= 0) return r;
    expire(v - 1);
  }
  // Full: datagrams that expired since the sweep last passed them make room first.
  if (freeHead == 0 && fresh == capacity) sweep(now, RECLAIM_SCAN);
  let i: u32;
  if (freeHead != 0) {
    i = freeHead - 1;
    freeHead = load<u32>(rec(i), 60);
  } else if (fresh < capacity) {
    i = fresh++;
  } else {
    return 0;
  }
  let r = rec(i);
  memory.fill(r, 0, RANGES);
  store<u64>(r, shi);
  store<u64>(r, slo, 8);
  store<u64>(r, dhi, 16);
  store<u64>(r, dlo, 24);
  store<u32>(r, id, 32);
  store<u16>(r, <u16>zone, 36);
  store<u8>(r, <u8>proto, 38);
  store<u8>(r, IN_USE, 39);
  store<u32>(r, now + timeoutMs, 44);
  let s = h & idxMask;
  while (load<u64>(idxBase + (<usize>s << 3)) != 0) s = (s + 1) & idxMask;
  store<u64>(idxBase + (<usize>s << 3), <u64>h | (<u64>(i + 1) << 32));
  count++;
  return r;
}

@inline function indexOf(r: usize): u32 { return <u32>((r - recBase) / RECORD_SIZE); }

function release(i: u32): void {
  let r = rec(i);
  let h = keyHash(<u32>load<u16>(r, 36), <u32>load<u8>(r, 38), load<u64>(r), load<u64>(r, 8), load<u64>(r, 16), load<u64>(r, 24), load<u32>(r, 32));
  let s = h & idxMask;
  while (true) {
    let e = load<u64>(idxBase + (<usize>s << 3));
    if (e == 0) break;
    if (<u32>(e >> 32) == i + 1) {
      eraseAt(idxBase, 8, idxMask, s, indexSlotUsed, indexSlotHome);
      break;
    }
    s = (s + 1) & idxMask;
  }
  store<u8>(r, 0, 39);
  store<u32>(r, freeHead, 60);
  freeHead = i + 1;
  count--;
}

// Drops the fragments a record holds, under `reason`.
function dropHeld(r: usize, reason: Reason): void {
  let s = load<u32>(r, 60);
  while (s != 0) {
    let p = hold(s - 1);
    let next = load<u32>(p);
    drop(<u32>load<u16>(p, 6), reason);
    bump(Stat.FragHeldDropped);
    store<u32>(p, holdFree);
    holdFree = s;
    s = next;
  }
  store<u32>(r, 0, 60);
  store<u16>(r, 0, 58);
}

function expire(i: u32): void {
  let r = rec(i);
  bump(Stat.FragExpired);
  dropHeld(r, Reason.IpFragmentTimeout);
  release(i);
}

// Condemns the datagram: its held fragments and every later one are dropped under `reason`.
function condemn(r: usize, reason: Reason): Reason {
  store<u8>(r, load<u8>(r, 39) | DEAD, 39);
  store<u8>(r, <u8>reason, 57);
  dropHeld(r, reason);
  return reason;
}

// Records the byte range [start, end) of the fragmentable part (more: MF set). Returns the reason to
// drop the fragment, or None; an exact duplicate of a range already seen is accepted and not counted.
function note(r: usize, start: u32, end: u32, more: bool, hdrLen: u32): Reason {
  let f = load<u8>(r, 39);
  if (f & DEAD) return <Reason>load<u8>(r, 57);
  if (hdrLen + end > MAX_DATAGRAM) return condemn(r, Reason.IpFragmentOversized);
  if ((more && (end & 7) != 0) || end <= start) return condemn(r, Reason.IpFragmentBadLength);
  let total = load<u32>(r, 52);
  if (!more) {
    if ((f & LAST) && total != end) return condemn(r, Reason.IpFragmentOverlap);
  }
  if ((f & LAST) && end > total) return condemn(r, Reason.IpFragmentOverlap);
  let n = <u32>load<u8>(r, 56);
  for (let k: u32 = 0; k < n; k++) {
    let a = r + RANGES + (<usize>k << 2);
    let s = <u32>load<u16>(a), e = <u32>load<u16>(a, 2);
    if (s == start && e == end) return Reason.None;
    if (start < e && s < end) return condemn(r, Reason.IpFragmentOverlap);
  }
  if (!more && end < highest(r, n)) return condemn(r, Reason.IpFragmentOverlap);
  if (n == MAX_FRAGMENTS) return condemn(r, Reason.IpFragmentTooMany);
  let a = r + RANGES + (<usize>n << 2);
  store<u16>(a, <u16>start);
  store<u16>(a, <u16>end, 2);
  store<u8>(r, <u8>(n + 1), 56);
  store<u32>(r, load<u32>(r, 48) + end - start, 48);
  if (!more) {
    store<u32>(r, end, 52);
    store<u8>(r, f | LAST, 39);
  }
  return Reason.None;
}

function highest(r: usize, n: u32): u32 {
  let m: u32 = 0;
  for (let k: u32 = 0; k < n; k++) {
    let e = <u32>load<u16>(r + RANGES + (<usize>k << 2), 2);
    if (e > m) m = e;
  }
  return m;
}

// Every byte of the datagram seen and its first fragment's ports used: nothing more can come.
@inline function finishIfComplete(r: usize): void {
  let f = load<u8>(r, 39);
  if ((f & (FIRST | LAST)) == (FIRST | LAST) && load<u16>(r, 58) == 0 && load<u32>(r, 48) == load<u32>(r, 52)) {
    release(indexOf(r));
  }
}

// A first fragment (offset 0, MF set) with its connection key's ports: notes it and releases the
// fragments held for it. Returns the reason to drop it, or None (it goes on through the ordinary path).
// hdrLen: the bytes before the fragmentable part that count towards the 65535 limit.
export function first(zone: u32, proto: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, id: u32,
                      sp: u32, dp: u32, len: u32, hdrLen: u32, now: u32, answerIdent: u32 = 0): Reason {
  let r = open(zone, proto, shi, slo, dhi, dlo, id, now);
  if (r == 0) return Reason.IpFragmentTableFull;
  let f = load<u8>(r, 39);
  if ((f & FIRST) && (<u32>load<u16>(r, 40) != sp || <u32>load<u16>(r, 42) != dp) && (f & DEAD) == 0) {
    return condemn(r, Reason.IpFragmentOverlap); // a second first fragment with other ports
  }
  let why = note(r, 0, len, true, hdrLen);
  if (why) return why;
  store<u16>(r, <u16>sp, 40);
  store<u16>(r, <u16>dp, 42);
  store<u8>(r, load<u8>(r, 39) | FIRST, 39);
  sport = sp;
  dport = dp;
  noteAnswer(r, answerIdent);
  // The held fragments run again at the end of the batch, after this one, with its ports.
  let s = load<u32>(r, 60);
  let ports = (sp << 16) | dp;
  while (s != 0) {
    let p = hold(s - 1);
    let next = load<u32>(p);
    store<u32>(p, ports, 12);
    store<u32>(p, answer, 16);
    store<u32>(p, pendingHead);
    pendingHead = s;
    bump(Stat.FragReleased);
    s = next;
  }
  store<u32>(r, 0, 60);
  store<u16>(r, 0, 58);
  finishIfComplete(r);
  return Reason.None;
}

// A later fragment (offset > 0) with its byte range: FOLLOW (the first fragment's ports are in
// sport/dport), HOLD (the first has not been seen: the caller holds it with hold()), or -reason.
export function later(zone: u32, proto: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, id: u32,
                      start: u32, end: u32, more: bool, hdrLen: u32, now: u32, answerIdent: u32 = 0): i32 {
  let r = open(zone, proto, shi, slo, dhi, dlo, id, now);
  if (r == 0) return -<i32>Reason.IpFragmentTableFull;
  let why = note(r, start, end, more, hdrLen);
  if (why) return -<i32>why;
  if ((load<u8>(r, 39) & FIRST) == 0) {
    heldFor = r;
    return HOLD;
  }
  sport = <u32>load<u16>(r, 40);
  dport = <u32>load<u16>(r, 42);
  noteAnswer(r, answerIdent);
  finishIfComplete(r);
  return FOLLOW;
}

// The record later() last answered HOLD for.
let heldFor: usize = 0;

// Holds the frame of the fragment later() answered HOLD for. Returns the reason it cannot be held
// (the caller drops it), or None.
export function holdFrame(frame: usize, len: u32, inPort: u32, ifIndex: u32, stage: u32, network: u32, vlan: u32): Reason {
  if (len > HOLD_FRAME_MAX) return Reason.IpFragmentBufferFull;
  let s: u32;
  if (holdFree != 0) {
    s = holdFree;
    holdFree = load<u32>(hold(s - 1));
  } else if (holdFresh < holdSlots) {
    s = ++holdFresh;
  } else {
    return Reason.IpFragmentBufferFull;
  }
  let p = hold(s - 1);
  let r = heldFor;
  store<u32>(p, load<u32>(r, 60));
  store<u16>(p, <u16>len, 4);
  store<u16>(p, <u16>inPort, 6);
  store<u16>(p, <u16>ifIndex, 8);
  store<u16>(p, <u16>stage, 10);
  store<u16>(p, <u16>network, 20);
  store<u16>(p, <u16>vlan, 22);
  memory.copy(p + HOLD_FRAME, frame, len);
  store<u32>(r, s, 60);
  store<u16>(r, load<u16>(r, 58) + 1, 58);
  bump(Stat.FragHeld);
  return Reason.None;
}

// The released slots, one at a time, for the pipeline to run again (0 when none). The caller copies
// the frame out, then gives the slot back with freeSlot().
@inline export function pending(): bool { return pendingHead != 0; }
export function nextPending(): u32 {
  let s = pendingHead;
  if (s != 0) pendingHead = load<u32>(hold(s - 1));
  return s;
}
export function freeSlot(s: u32): void {
  store<u32>(hold(s - 1), holdFree);
  holdFree = s;
}

// Expires datagrams among the next `budget` records ever taken.
export function sweep(now: u32, budget: u32): void {
  if (count == 0) return;
  let i = sweepCursor;
  for (let n: u32 = 0; n < budget; n++) {
    let r = rec(i);
    if ((load<u8>(r, 39) & IN_USE) != 0 && <i32>(now - load<u32>(r, 44)) > 0) expire(i);
    i = i + 1 >= fresh ? 0 : i + 1;
  }
  sweepCursor = i;
}
