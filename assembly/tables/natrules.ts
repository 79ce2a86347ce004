// NAT configuration as the first packet of a connection consults it (never later packets: the
// connection record caches the result).
//
// Source NAT (HNS OutBoundNAT): rules per compartment, "traffic from this prefix leaving through this
// external interface takes this address and a port from this range", each with destination
// exceptions that are not translated. Few rules per compartment, so a fixed array scanned in order.
//
// Destination NAT (HNS PortMapping): (compartment, protocol, external port, optional VIP) ->
// (internal address, internal port), in a hash table keyed by (compartment, protocol, port); a VIP of
// 0 matches any address the compartment's router owns.
//
// Frontend VIPs: every address a mapping or load balancer names as its VIP is counted per
// compartment, so the router can answer ARP for it (nodes/arp.ts: when it lies in the asking
// interface's subnet, as a VIP on the uplink's segment does) and treat traffic to it that no mapping
// takes as traffic to itself (nodes/nat.ts), never routing it back out where it came from.
import { hash3, nextPow2, eraseAt } from "./hash";
import * as arena from "../arena";

export const MAX_SNAT_RULES: u32 = 256;
export const MAX_EXCEPTIONS: u32 = 1024;

// SNAT rule (24 bytes): 0 u16 zone, 2 u8 prefix length, 3 u8 in use, 4 u32 source prefix,
// 8 u16 external interface, 10 u16 port low, 12 u16 port high, 14 u16 flags (SNAT_*), 16 u32
// external address (0 = the external interface's address), 20 u32 reserved.
export const SNAT_SIZE: usize = 24;
export const SNAT_EIM: u16 = 1;   // endpoint-independent mapping (tables/eim.ts)
// No port range was given: as Linux masquerade without --to-ports, a source port keeps its class
// (1-511, 600-1023 or 1024-65535; see nodes/nat.ts) instead of taking one from the rule's range.
export const SNAT_PORT_CLASS: u16 = 2;
// Exception (8 bytes): 0 u16 zone, 2 u8 prefix length, 3 u8 in use, 4 u32 destination prefix.
export const EXCEPTION_SIZE: usize = 8;
// Port mapping (24 bytes): 0 u16 zone, 2 u8 protocol, 3 u8 in use, 4 u16 external port,
// 6 u16 internal port, 8 u32 VIP (0 = any router address), 12 u32 internal address; a load balancer
// (HCN LoadBalancer) is a mapping with a backend list: 16 u32 backends (address of an array of u32
// addresses, 0 = a plain mapping), 20 u16 backend count, 22 u8 distribution (LB_*), 23 u8 flags
// (LB_DSR; LB_ACTIVE marks a load balancer even with no backend), 24 u32 its Maglev lookup table
// (LOOKUP_SIZE u16 backend indices), 28 u32 reserved.
export const MAPPING_SIZE: usize = 32;

// Load balancer distributions (HCN DistributionType) and flags.
export const LB_FIVE_TUPLE: u8 = 0;      // "None": per connection
export const LB_SOURCE_IP_PROTOCOL: u8 = 1;
export const LB_SOURCE_IP: u8 = 2;
export const LB_DSR: u8 = 1;             // direct server return: the destination stays the VIP
export const LB_ACTIVE: u8 = 2;
export const MAX_BACKENDS: u32 = 1024;

// Maglev (Eisenbud et al., NSDI 2016), as IPVS's `mh` scheduler and Katran use it: a balancer keeps a
// lookup table of LOOKUP_SIZE (a prime) entries, each a backend index; a new connection takes the
// backend at table[hash % LOOKUP_SIZE], the hash of its source address (SourceIP), source address
// and protocol (SourceIPProtocol) or 5-tuple (per connection). Each backend fills the table in the
// order of its own permutation of the slots (an offset and a skip from two hashes of its address),
// the backends taking turns, so each ends with LOOKUP_SIZE / N slots (off by at most one) and
// removing a backend mostly frees only its own slots: about 1/N of the clients move, where a modulo
// over the backend list moves about half of them. 4093 is IPVS mh's default size: 8 KiB a balancer,
// allocated with it and rebuilt in the dataplane whenever its backends change (configuration time).
// With 1024 backends (the most) each has 3 or 4 slots: the spread is then within a third.
export const LOOKUP_SIZE: u32 = 4093;

export let snatBase: usize = 0;
// One past the highest slot ever set: the scans stop there instead of walking every slot.
let snatHigh: u32 = 0;
let exceptionHigh: u32 = 0;
export let exceptionBase: usize = 0;
export let mappingBase: usize = 0;
export let mappingSlots: u32 = 0;
export let mappingCount: u32 = 0;
let mappingCapacity: u32 = 0;
let mappingMask: u32 = 0;

export function bytes(mappings: u32): u64 {
  return arena.span(MAX_SNAT_RULES, SNAT_SIZE) + arena.span(MAX_EXCEPTIONS, EXCEPTION_SIZE) +
         arena.span(nextPow2(mappings * 2), MAPPING_SIZE) + arena.span(nextPow2(mappings * 2), VIP_SIZE) +
         arena.span(MAX_BACKENDS, 8);
}

export function alloc(mappings: u32): void {
  snatBase = arena.take(MAX_SNAT_RULES, SNAT_SIZE);
  exceptionBase = arena.take(MAX_EXCEPTIONS, EXCEPTION_SIZE);
  mappingCapacity = mappings;
  mappingSlots = nextPow2(mappings * 2);
  mappingMask = mappingSlots - 1;
  mappingBase = arena.take(mappingSlots, MAPPING_SIZE);
  vipBase = arena.take(mappingSlots, VIP_SIZE);
  permBase = arena.take(MAX_BACKENDS, 8);
}

@inline export function prefixMask(len: u32): u32 { return len == 0 ? 0 : <u32>0xffffffff << (32 - len); }
@inline export function inPrefix(addr: u32, prefix: u32, len: u32): bool { return ((addr ^ prefix) & prefixMask(len)) == 0; }

@inline export function snatRule(i: u32): usize { return snatBase + <usize>i * SNAT_SIZE; }
@inline export function exception(i: u32): usize { return exceptionBase + <usize>i * EXCEPTION_SIZE; }

// The first SNAT rule of `zone` for traffic from `src` leaving through interface `outIf` to `dst`,
// or 0 (no rule, or dst is an exception of the zone).
export function findSnat(zone: u32, outIf: u32, src: u32, dst: u32): usize {
  let hit: usize = 0;
  for (let i: u32 = 0; i < snatHigh; i++) {
    let r = snatRule(i);
    if (load<u8>(r, 3) == 0 || <u32>load<u16>(r) != zone || <u32>load<u16>(r, 8) != outIf) continue;
    if (inPrefix(src, load<u32>(r, 4), <u32>load<u8>(r, 2))) { hit = r; break; }
  }
  if (hit == 0) return 0;
  for (let i: u32 = 0; i < exceptionHigh; i++) {
    let e = exception(i);
    if (load<u8>(e, 3) == 0 || <u32>load<u16>(e) != zone) continue;
    if (inPrefix(dst, load<u32>(e, 4), <u32>load<u8>(e, 2))) return 0;
  }
  return hit;
}

export function setSnat(i: u32, zone: u32, prefix: u32, len: u32, outIf: u32, portLo: u32, portHi: u32, ext: u32, flags: u32): void {
  let r = snatRule(i);
  store<u16>(r, <u16>flags, 14);
  if (i >= snatHigh) snatHigh = i + 1;
  store<u16>(r, <u16>zone);
  store<u8>(r, <u8>len, 2);
  store<u8>(r, 1, 3);
  store<u32>(r, prefix & prefixMask(len), 4);
  store<u16>(r, <u16>outIf, 8);
  store<u16>(r, <u16>portLo, 10);
  store<u16>(r, <u16>portHi, 12);
  store<u32>(r, ext, 16);
}

export function setException(i: u32, zone: u32, prefix: u32, len: u32): void {
  let e = exception(i);
  if (i >= exceptionHigh) exceptionHigh = i + 1;
  store<u16>(e, <u16>zone);
  store<u8>(e, <u8>len, 2);
  store<u8>(e, 1, 3);
  store<u32>(e, prefix & prefixMask(len), 4);
}

@inline function mappingHash(zone: u32, proto: u32, port: u32): u32 {
  return hash3(<u64>zone, <u64>proto, <u64>port ^ 0x706f72746d6170);
}
@inline function mappingSlot(i: u32): usize { return mappingBase + <usize>i * MAPPING_SIZE; }

// The port mapping for a packet to (dst, port), preferring one whose VIP is dst over one for any
// router address (`dstIsRouter` says whether dst is one). Returns the record or 0.
export function findMapping(zone: u32, proto: u32, dst: u32, port: u32, dstIsRouter: bool): usize {
  let i = mappingHash(zone, proto, port) & mappingMask;
  let any: usize = 0;
  while (true) {
    let s = mappingSlot(i);
    if (load<u8>(s, 3) == 0) break;
    if (<u32>load<u16>(s) == zone && <u32>load<u8>(s, 2) == proto && <u32>load<u16>(s, 4) == port) {
      let vip = load<u32>(s, 8);
      if (vip == dst) return s;
      if (vip == 0 && dstIsRouter) any = s;
    }
    i = (i + 1) & mappingMask;
  }
  return any;
}

function findExact(zone: u32, proto: u32, port: u32, vip: u32): usize {
  let i = mappingHash(zone, proto, port) & mappingMask;
  while (true) {
    let s = mappingSlot(i);
    if (load<u8>(s, 3) == 0) return 0;
    if (<u32>load<u16>(s) == zone && <u32>load<u8>(s, 2) == proto && <u32>load<u16>(s, 4) == port && load<u32>(s, 8) == vip) return s;
    i = (i + 1) & mappingMask;
  }
}

// Adds or replaces a mapping. Returns false when the table is full.
export function addMapping(zone: u32, proto: u32, port: u32, vip: u32, intAddr: u32, intPort: u32): bool {
  let s = findExact(zone, proto, port, vip);
  if (s == 0) {
    if (mappingCount >= mappingCapacity) return false;
    let i = mappingHash(zone, proto, port) & mappingMask;
    while (load<u8>(mappingSlot(i), 3) != 0) i = (i + 1) & mappingMask;
    s = mappingSlot(i);
    store<u16>(s, <u16>zone);
    store<u8>(s, <u8>proto, 2);
    store<u8>(s, 1, 3);
    store<u16>(s, <u16>port, 4);
    store<u32>(s, vip, 8);
    mappingCount++;
    if (vip != 0) vipRef(zone, vip, 1);
  }
  store<u16>(s, <u16>intPort, 6);
  store<u32>(s, intAddr, 12);
  return true;
}

function mappingUsed(s: usize): bool { return load<u8>(s, 3) != 0; }
function mappingHome(s: usize): u32 { return mappingHash(<u32>load<u16>(s), <u32>load<u8>(s, 2), <u32>load<u16>(s, 4)); }

export function removeMapping(zone: u32, proto: u32, port: u32, vip: u32): bool {
  let s = findExact(zone, proto, port, vip);
  if (s == 0) return false;
  if (isBalancer(s)) clearBalancer(s);
  if (vip != 0) vipRef(zone, vip, -1);
  eraseAt(mappingBase, MAPPING_SIZE, mappingMask, <u32>((s - mappingBase) / MAPPING_SIZE), mappingUsed, mappingHome);
  mappingCount--;
  return true;
}

// ---- frontend VIPs ------------------------------------------------------------------------------------

// VIP record (16 bytes): 0 u32 address, 4 u16 zone, 6 u8 in use, 8 u32 mappings naming it. As many
// slots as the mapping table, so it is never more than half full either.
const VIP_SIZE: usize = 16;
let vipBase: usize = 0;
@inline function vipSlot(i: u32): usize { return vipBase + <usize>i * VIP_SIZE; }
@inline function vipHash(zone: u32, addr: u32): u32 { return hash3(<u64>zone, <u64>addr, 0x766970); }
function vipUsed(s: usize): bool { return load<u8>(s, 6) != 0; }
function vipHome(s: usize): u32 { return vipHash(<u32>load<u16>(s, 4), load<u32>(s)); }

// Is `addr` the VIP of a mapping or load balancer of `zone`?
export function isVip(zone: u32, addr: u32): bool {
  if (mappingCount == 0 || addr == 0) return false;
  let i = vipHash(zone, addr) & mappingMask;
  while (true) {
    let s = vipSlot(i);
    if (load<u8>(s, 6) == 0) return false;
    if (load<u32>(s) == addr && <u32>load<u16>(s, 4) == zone) return true;
    i = (i + 1) & mappingMask;
  }
}

function vipRef(zone: u32, addr: u32, delta: i32): void {
  let i = vipHash(zone, addr) & mappingMask;
  while (true) {
    let s = vipSlot(i);
    if (load<u8>(s, 6) == 0) {
      // Not there: a new VIP (a removal always finds its own).
      store<u32>(s, addr);
      store<u16>(s, <u16>zone, 4);
      store<u8>(s, 1, 6);
      store<u32>(s, 1, 8);
      return;
    }
    if (load<u32>(s) == addr && <u32>load<u16>(s, 4) == zone) {
      let n = load<u32>(s, 8) + <u32>delta;
      store<u32>(s, n, 8);
      if (n == 0) eraseAt(vipBase, VIP_SIZE, mappingMask, i, vipUsed, vipHome);
      return;
    }
    i = (i + 1) & mappingMask;
  }
}

// ---- load balancers --------------------------------------------------------------------------------

@inline export function isBalancer(s: usize): bool { return (load<u8>(s, 23) & LB_ACTIVE) != 0; }
@inline export function backendCount(s: usize): u32 { return <u32>load<u16>(s, 20); }
@inline export function backend(s: usize, i: u32): u32 { return load<u32>(<usize>load<u32>(s, 16) + (<usize>i << 2)); }
@inline export function distribution(s: usize): u32 { return <u32>load<u8>(s, 22); }
@inline export function isDsr(s: usize): bool { return (load<u8>(s, 23) & LB_DSR) != 0; }

// The backend a new connection whose hash is `h` goes to (the balancer has at least one).
@inline export function pickBackend(s: usize, h: u32): u32 {
  let i = <u32>load<u16>(<usize>load<u32>(s, 24) + (<usize>(h % LOOKUP_SIZE) << 1));
  return backend(s, i);
}

// Per backend while the table is filled: u32 the slot its permutation is at, u32 its skip.
let permBase: usize = 0;

// Fills the balancer's lookup table from its backends (Maglev's population: the backends take turns,
// each claiming the next slot of its permutation that is still empty, until every slot is taken).
function populate(s: usize): void {
  let table = <usize>load<u32>(s, 24);
  let n = backendCount(s);
  memory.fill(table, 0xff, <usize>LOOKUP_SIZE << 1);
  if (n == 0) return;
  for (let i: u32 = 0; i < n; i++) {
    let a = <u64>backend(s, i);
    let p = permBase + (<usize>i << 3);
    store<u32>(p, hash3(a, 0x6d61676c6576, 1) % LOOKUP_SIZE);           // offset
    store<u32>(p, hash3(a, 0x736b6970, 2) % (LOOKUP_SIZE - 1) + 1, 4);   // skip
  }
  let filled: u32 = 0;
  while (true) {
    for (let i: u32 = 0; i < n; i++) {
      let p = permBase + (<usize>i << 3);
      let c = load<u32>(p);
      let skip = load<u32>(p, 4);
      while (load<u16>(table + (<usize>c << 1)) != 0xffff) c = (c + skip) % LOOKUP_SIZE;
      store<u16>(table + (<usize>c << 1), <u16>i);
      store<u32>(p, (c + skip) % LOOKUP_SIZE);
      if (++filled == LOOKUP_SIZE) return;
    }
  }
}

// Makes the mapping (zone, proto, port, vip) a load balancer to intPort with no backends yet (keeping
// the backends it has if it is one already). Returns the mapping or 0 when the table is full or
// there is no memory for the balancer's lookup table.
export function setBalancer(zone: u32, proto: u32, port: u32, vip: u32, intPort: u32, dist: u32, flags: u32): usize {
  let s = findExact(zone, proto, port, vip);
  let had = s != 0 && isBalancer(s);
  if (!had && !arena.heapCanGrow(<u64>LOOKUP_SIZE << 1)) return 0;
  if (!had && !addMapping(zone, proto, port, vip, 0, intPort)) return 0;
  s = findExact(zone, proto, port, vip);
  if (!had) {
    store<u32>(s, <u32>heap.alloc(<usize>LOOKUP_SIZE << 1), 24);
    populate(s);
  }
  store<u16>(s, <u16>intPort, 6);
  store<u8>(s, <u8>dist, 22);
  store<u8>(s, <u8>(flags | LB_ACTIVE), 23);
  return s;
}

export function findBalancer(zone: u32, proto: u32, port: u32, vip: u32): usize {
  let s = findExact(zone, proto, port, vip);
  return s != 0 && isBalancer(s) ? s : 0;
}

// Adds a backend (a copy of the list is made: configuration time). Returns 0, or 1 if it is a backend
// already, 2 if the list is full (or memory is).
export function addBackend(s: usize, addr: u32): u32 {
  let n = backendCount(s);
  for (let i: u32 = 0; i < n; i++) if (backend(s, i) == addr) return 1;
  if (n >= MAX_BACKENDS || !arena.heapCanGrow(<u64>(n + 1) << 2)) return 2;
  let old = <usize>load<u32>(s, 16);
  // Kept in address order, so the lookup table depends only on the set of backends: two routers
  // with the same backends, configured in any order, send a client to the same one.
  let at: u32 = 0;
  while (at < n && backend(s, at) < addr) at++;
  let list = heap.alloc(<usize>(n + 1) << 2);
  if (at) memory.copy(list, old, <usize>at << 2);
  store<u32>(list + (<usize>at << 2), addr);
  if (n > at) memory.copy(list + (<usize>(at + 1) << 2), old + (<usize>at << 2), <usize>(n - at) << 2);
  store<u32>(s, <u32>list, 16);
  store<u16>(s, <u16>(n + 1), 20);
  if (old) heap.free(old);
  populate(s);
  return 0;
}

// Removes a backend: new connections go to the others; connections to it live on in conntrack
// (draining). Returns false if it was not there.
export function removeBackend(s: usize, addr: u32): bool {
  let n = backendCount(s);
  let list = <usize>load<u32>(s, 16);
  for (let i: u32 = 0; i < n; i++) {
    if (load<u32>(list + (<usize>i << 2)) != addr) continue;
    memory.copy(list + (<usize>i << 2), list + (<usize>(i + 1) << 2), <usize>(n - 1 - i) << 2);
    store<u16>(s, <u16>(n - 1), 20);
    populate(s);
    return true;
  }
  return false;
}

// Frees a balancer's backend list before its mapping is removed.
export function clearBalancer(s: usize): void {
  let list = <usize>load<u32>(s, 16);
  if (list) heap.free(list);
  let table = <usize>load<u32>(s, 24);
  if (table) heap.free(table);
  store<u32>(s, 0, 16);
  store<u16>(s, 0, 20);
  store<u32>(s, 0, 24);
}
