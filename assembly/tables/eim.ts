// Endpoint-independent mappings (RFC 4787 §4.1, REQ-1): with an EIM source NAT rule, every connection
// from one internal endpoint (address, port) leaves with the same external port, whatever its
// destination, for as long as any of its connections lives; peer-to-peer applications (STUN, games,
// VoIP) depend on this. A mapping is shared by its connections (a reference count) and freed with the
// last one. An external port owned by a mapping is marked in a bitmap per rule and protocol, so no
// other endpoint of that rule is given it towards another destination.
//
// Mapping record (24 bytes): 0 u32 internal address, 4 u32 external address, 8 u16 internal port,
// 10 u16 external port, 12 u16 zone, 14 u8 protocol, 15 u8 in use, 16 u32 connections, 20 u32 rule.
import { hash3, nextPow2, eraseAt, seed } from "./hash";
import * as arena from "../arena";

const RECORD_SIZE: usize = 24;
const BITMAP_BYTES: usize = 8192; // 65536 ports

export let base: usize = 0;
export let count: u32 = 0;
let slots: u32 = 0;
let mask: u32 = 0;
let capacity: u32 = 0;
let bitmapBase: usize = 0;        // per rule: 3 bitmaps (TCP, UDP, other), allocated on first use
let bitmapOf: usize = 0;          // per rule: address of its bitmaps, 0 = none yet

export function bytes(entries: u32, rules: u32): u64 {
  return arena.span(nextPow2(entries * 2), RECORD_SIZE) + arena.span(rules, sizeof<usize>());
}

export function alloc(entries: u32, rules: u32): void {
  capacity = entries;
  slots = nextPow2(entries * 2);
  mask = slots - 1;
  base = arena.take(slots, RECORD_SIZE);
  bitmapOf = arena.take(rules, sizeof<usize>());
}

// Makes sure rule `r` has its port bitmaps (configuration time, never per packet).
export function prepareRule(r: u32): void {
  let a = bitmapOf + <usize>r * sizeof<usize>();
  if (load<usize>(a) != 0) return;
  let b = heap.alloc(BITMAP_BYTES * 3);
  memory.fill(b, 0, BITMAP_BYTES * 3);
  store<usize>(a, b);
}

@inline function protoIndex(proto: u32): usize { return proto == 6 ? 0 : proto == 17 ? 1 : 2; }
@inline function bitAddr(rule: u32, proto: u32, port: u32): usize {
  return load<usize>(bitmapOf + <usize>rule * sizeof<usize>()) + protoIndex(proto) * BITMAP_BYTES + (<usize>port >> 3);
}
@inline export function owned(rule: u32, proto: u32, port: u32): bool {
  return (load<u8>(bitAddr(rule, proto, port)) & (<u8>1 << <u8>(port & 7))) != 0;
}
@inline function setOwned(rule: u32, proto: u32, port: u32, on: bool): void {
  let a = bitAddr(rule, proto, port);
  let bit = <u8>1 << <u8>(port & 7);
  store<u8>(a, on ? load<u8>(a) | bit : load<u8>(a) & ~bit);
}

@inline function slot(i: u32): usize { return base + <usize>i * RECORD_SIZE; }
@inline function keyHash(zone: u32, proto: u32, intAddr: u32, intPort: u32, extAddr: u32): u32 {
  return hash3((<u64>zone << 32) | (<u64>proto << 16) | <u64>intPort, <u64>intAddr, <u64>extAddr ^ seed ^ 0x65696d);
}

function used(s: usize): bool { return load<u8>(s, 15) != 0; }
function home(s: usize): u32 {
  return keyHash(<u32>load<u16>(s, 12), <u32>load<u8>(s, 14), load<u32>(s), <u32>load<u16>(s, 8), load<u32>(s, 4));
}

// The mapping of an internal endpoint towards an external address, or 0.
export function find(zone: u32, proto: u32, intAddr: u32, intPort: u32, extAddr: u32): usize {
  let i = keyHash(zone, proto, intAddr, intPort, extAddr) & mask;
  while (true) {
    let s = slot(i);
    if (load<u8>(s, 15) == 0) return 0;
    if (load<u32>(s) == intAddr && <u32>load<u16>(s, 8) == intPort && load<u32>(s, 4) == extAddr &&
        <u32>load<u16>(s, 12) == zone && <u32>load<u8>(s, 14) == proto) return s;
    i = (i + 1) & mask;
  }
}

@inline export function externalPort(s: usize): u32 { return <u32>load<u16>(s, 10); }
@inline export function ref(s: usize): void { store<u32>(s, load<u32>(s, 16) + 1, 16); }

// A new mapping with one connection. Returns false when the table is full.
export function add(zone: u32, proto: u32, intAddr: u32, intPort: u32, extAddr: u32, extPort: u32, rule: u32): bool {
  if (count >= capacity) return false;
  let i = keyHash(zone, proto, intAddr, intPort, extAddr) & mask;
  while (load<u8>(slot(i), 15) != 0) i = (i + 1) & mask;
  let s = slot(i);
  store<u32>(s, intAddr);
  store<u32>(s, extAddr, 4);
  store<u16>(s, <u16>intPort, 8);
  store<u16>(s, <u16>extPort, 10);
  store<u16>(s, <u16>zone, 12);
  store<u8>(s, <u8>proto, 14);
  store<u8>(s, 1, 15);
  store<u32>(s, 1, 16);
  store<u32>(s, rule, 20);
  setOwned(rule, proto, extPort, true);
  count++;
  return true;
}

// One connection of the mapping ended; the last one frees the mapping and its port.
export function unref(zone: u32, proto: u32, intAddr: u32, intPort: u32, extAddr: u32): void {
  let s = find(zone, proto, intAddr, intPort, extAddr);
  if (s == 0) return;
  let n = load<u32>(s, 16) - 1;
  if (n != 0) {
    store<u32>(s, n, 16);
    return;
  }
  setOwned(load<u32>(s, 20), proto, <u32>load<u16>(s, 10), false);
  eraseAt(base, RECORD_SIZE, mask, <u32>((s - base) / RECORD_SIZE), used, home);
  count--;
}
