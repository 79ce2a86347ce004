// The VXLAN overlay's tables (RFC 7348): which broadcast domain is which VXLAN segment (VNI), which
// hosts (provider addresses, PAs) may send each VNI, and the remote endpoints: stations of a domain
// that live on another host, reached by encapsulating to that host's PA. nodes/vxlan.ts is the
// per-packet side.
//
// Why remote endpoints live in the MAC table: a frame to a remote MAC must be recognised by the one
// lookup L2 forwarding already makes. A remote's MAC is a static entry on the pseudo-port
// TUNNEL_PORT (as gateway MACs are on ROUTER_PORT + i, router.ts), and the entry's last-seen word,
// which a static entry never uses, holds the remote record's index + 1: the encapsulation reads the
// PA and VNI from there without a second hash lookup. So forwarding to a remote costs what forwarding
// to a local port costs, and a local port that claims a remote's MAC as its source is refused by
// learning like any static conflict.
//
// Fixed tables sized at overlay_create (docs/ABI.md "VXLAN overlay"): remote records and their
// addresses (for the local ARP / ND answers), each a record array with a free list and an open-
// addressing index of 8-byte slots (hash, record + 1) deleted by backward shift (tables/hash.ts); the
// members (VNI, PA) likewise, with their records also walked for head-end replication. The domain <->
// VNI maps are small (MAX_VNIS) and rebuilt on removal, as router.ts does with its domain map.
import * as arena from "./arena";
import * as mac from "./tables/mac";
import * as neighbor from "./tables/neighbor";
import * as router from "./router";
import { mix64, nextPow2, eraseAt, indexSlotUsed, indexSlotHome } from "./tables/hash";

export const TUNNEL_PORT: u32 = 0xefff;   // the pseudo-port of remote endpoints in the MAC table
export const NO_PORT: u32 = 0xffffffff;
export const MAX_VNIS: u32 = 4096;
export const DEFAULT_UDP_PORT: u32 = 4789;
export const OVERHEAD: u32 = 50;          // outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8

// The underlay: the port its frames come and go by (NO_PORT: none), this host's PA, the VXLAN UDP
// port, the underlay's IP MTU.
export let underlayPort: u32 = NO_PORT;
export let providerAddress: u32 = 0;
export let udpPort: u32 = DEFAULT_UDP_PORT;
export let underlayMtu: u32 = 1500;
export let created = false;
// How many domains carry a VNI: the one check the flood path makes while there are none.
export let vniCount: u32 = 0;

export function setUnderlay(p: u32, pa: u32, port: u32, mtu: u32): void {
  underlayPort = p;
  providerAddress = pa;
  udpPort = port;
  underlayMtu = mtu;
}

// ---- domains <-> VNIs ----------------------------------------------------------------------------

const VNI_SLOTS: u32 = MAX_VNIS * 2;
let vniList: usize = 0;      // MAX_VNIS x (u32 domain key, u32 vni), dense
let byDomain: usize = 0;     // VNI_SLOTS x (u32 domain key, u32 vni)
let byVni: usize = 0;        // VNI_SLOTS x (u32 vni, u32 domain key)

@inline export function domainKey(network: u32, vlan: u32): u32 { return ((network << 12) | vlan) + 1; }
@inline export function keyNetwork(k: u32): u32 { return (k - 1) >> 12; }
@inline export function keyVlan(k: u32): u32 { return (k - 1) & 0xfff; }
@inline function slotOf(k: u32): u32 { return (k * 0x9e3779b1) >> 19; } // 13 bits: VNI_SLOTS

function mapGet(base: usize, k: u32): u32 {
  let i = slotOf(k);
  while (true) {
    let s = base + (<usize>i << 3);
    let sk = load<u32>(s);
    if (sk == 0) return 0;
    if (sk == k) return load<u32>(s, 4);
    i = (i + 1) & (VNI_SLOTS - 1);
  }
}
function mapPut(base: usize, k: u32, v: u32): void {
  let i = slotOf(k);
  while (true) {
    let s = base + (<usize>i << 3);
    let sk = load<u32>(s);
    if (sk == 0 || sk == k) {
      store<u32>(s, k);
      store<u32>(s, v, 4);
      return;
    }
    i = (i + 1) & (VNI_SLOTS - 1);
  }
}

// The VNI of domain (network, vlan), or 0.
@inline export function vniOf(network: u32, vlan: u32): u32 { return vniCount == 0 ? 0 : mapGet(byDomain, domainKey(network, vlan)); }
// The domain key of a VNI, or 0.
@inline export function domainOf(vni: u32): u32 { return mapGet(byVni, vni); }

// Sets the domain's VNI. False if the VNI belongs to another domain or the table is full.
export function setVni(network: u32, vlan: u32, vni: u32): bool {
  let k = domainKey(network, vlan);
  let other = domainOf(vni);
  if (other != 0 && other != k) return false;
  let old = mapGet(byDomain, k);
  if (old == vni) return true;
  if (old == 0 && vniCount >= MAX_VNIS) return false;
  if (old != 0) removeVni(network, vlan);
  store<u32>(vniList + (<usize>vniCount << 3), k);
  store<u32>(vniList + (<usize>vniCount << 3), vni, 4);
  vniCount++;
  mapPut(byDomain, k, vni);
  mapPut(byVni, vni, k);
  renumberRemotes(k, vni);
  return true;
}

export function removeVni(network: u32, vlan: u32): bool {
  let k = domainKey(network, vlan);
  let found = false;
  for (let i: u32 = 0; i < vniCount; i++) {
    let e = vniList + (<usize>i << 3);
    if (load<u32>(e) == k) {
      let last = vniList + (<usize>(vniCount - 1) << 3);
      store<u64>(e, load<u64>(last));
      vniCount--;
      found = true;
      break;
    }
  }
  if (!found) return false;
  memory.fill(byDomain, 0, <usize>VNI_SLOTS << 3);
  memory.fill(byVni, 0, <usize>VNI_SLOTS << 3);
  for (let i: u32 = 0; i < vniCount; i++) {
    let e = vniList + (<usize>i << 3);
    mapPut(byDomain, load<u32>(e), load<u32>(e, 4));
    mapPut(byVni, load<u32>(e, 4), load<u32>(e));
  }
  renumberRemotes(k, 0);
  return true;
}

// ---- members (VNI, PA) ---------------------------------------------------------------------------
// Record (16 bytes): u32 vni (0 = free), u32 pa, u32 explicit (addMember), u32 remotes (remote
// endpoints at this PA in this VNI: a PA is implicitly a member while it has some).

export const MEMBER_SIZE: usize = 16;
export let memberBase: usize = 0;
export let memberCap: u32 = 0;
export let memberHigh: u32 = 0;        // one past the highest record in use: bounds the replication walk
export let memberCount: u32 = 0;
let memberFree: u32 = 0;               // free list head (record + 1), through the pa word
let memberIdx: usize = 0;
let memberMask: u32 = 0;

@inline function memberHash(vni: u32, pa: u32): u32 {
  let h = <u32>mix64((<u64>vni << 32) | <u64>pa);
  return h == 0 ? 1 : h;
}
@inline export function member(i: u32): usize { return memberBase + <usize>i * MEMBER_SIZE; }

// The member record of (vni, pa), or 0.
@inline export function findMember(vni: u32, pa: u32): usize {
  let h = memberHash(vni, pa);
  let i = h & memberMask;
  while (true) {
    let s = memberIdx + (<usize>i << 3);
    let v = load<u64>(s);
    if (v == 0) return 0;
    if (<u32>v == h) {
      let r = member(<u32>(v >> 32) - 1);
      if (load<u32>(r) == vni && load<u32>(r, 4) == pa) return r;
    }
    i = (i + 1) & memberMask;
  }
}

function memberGet(vni: u32, pa: u32): usize {
  let r = findMember(vni, pa);
  if (r != 0) return r;
  let n: u32;
  if (memberFree != 0) {
    n = memberFree - 1;
    memberFree = load<u32>(member(n), 4);
  } else {
    if (memberHigh >= memberCap) return 0;
    n = memberHigh++;
  }
  r = member(n);
  store<u32>(r, vni);
  store<u32>(r, pa, 4);
  store<u32>(r, 0, 8);
  store<u32>(r, 0, 12);
  let h = memberHash(vni, pa);
  let i = h & memberMask;
  while (load<u64>(memberIdx + (<usize>i << 3)) != 0) i = (i + 1) & memberMask;
  store<u64>(memberIdx + (<usize>i << 3), <u64>h | (<u64>(n + 1) << 32));
  memberCount++;
  return r;
}

// Frees the record when nothing holds it any more.
function memberRelease(r: usize): void {
  if (load<u32>(r, 8) != 0 || load<u32>(r, 12) != 0) return;
  let vni = load<u32>(r), pa = load<u32>(r, 4);
  let h = memberHash(vni, pa);
  let n = <u32>((r - memberBase) / MEMBER_SIZE);
  let i = h & memberMask;
  while (true) {
    let s = memberIdx + (<usize>i << 3);
    let v = load<u64>(s);
    if (v == 0) break;
    if (<u32>(v >> 32) == n + 1) {
      eraseAt(memberIdx, 8, memberMask, i, indexSlotUsed, indexSlotHome);
      break;
    }
    i = (i + 1) & memberMask;
  }
  store<u32>(r, 0);
  store<u32>(r, memberFree, 4);
  memberFree = n + 1;
  memberCount--;
}

export function addMember(vni: u32, pa: u32): bool {
  let r = memberGet(vni, pa);
  if (r == 0) return false;
  store<u32>(r, 1, 8);
  return true;
}
export function removeMember(vni: u32, pa: u32): bool {
  let r = findMember(vni, pa);
  if (r == 0 || load<u32>(r, 8) == 0) return false;
  store<u32>(r, 0, 8);
  memberRelease(r);
  return true;
}
function retain(vni: u32, pa: u32): bool {
  if (vni == 0) return true;
  let r = memberGet(vni, pa);
  if (r == 0) return false;
  store<u32>(r, load<u32>(r, 12) + 1, 12);
  return true;
}
function release(vni: u32, pa: u32): void {
  if (vni == 0) return;
  let r = findMember(vni, pa);
  if (r == 0) return;
  store<u32>(r, load<u32>(r, 12) - 1, 12);
  memberRelease(r);
}

// ---- remote endpoints ----------------------------------------------------------------------------
// Record (32 bytes): u64 MAC (wire bytes packed as tables/mac keys; 0 = free), u16 network, u16 vlan,
// u32 pa, u32 vni (its domain's, 0 while the domain has none), u32 first address (record + 1),
// u32 next free (record + 1), u32 pad.

export const REMOTE_SIZE: usize = 32;
export let remoteBase: usize = 0;
export let remoteCap: u32 = 0;
export let remoteCount: u32 = 0;
let remoteHigh: u32 = 0;
let remoteFree: u32 = 0;

@inline export function remote(i: u32): usize { return remoteBase + <usize>i * REMOTE_SIZE; }
@inline export function remotePa(r: usize): u32 { return load<u32>(r, 12); }
@inline export function remoteVni(r: usize): u32 { return load<u32>(r, 16); }

// The remote record of a MAC table slot on TUNNEL_PORT.
@inline export function remoteOfSlot(s: usize): usize { return remote(load<u32>(s, 12) - 1); }

// The remote record of (network, vlan, mac), or 0.
export function findRemote(network: u32, vlan: u32, m: u64): usize {
  let k = mac.key(m, vlan);
  let s = mac.find(k, network, mac.hash(k, network));
  if (s == 0 || mac.recPort(s) != TUNNEL_PORT) return 0;
  return remoteOfSlot(s);
}

// Adds or replaces the remote (network, vlan, mac) at `pa`. Returns its record index, -1 when a
// table is full, -2 when the MAC is another port's static entry (a gateway, a pinned local MAC).
export function addRemote(network: u32, vlan: u32, m: u64, pa: u32, now: u32): i32 {
  let k = mac.key(m, vlan);
  let h = mac.hash(k, network);
  let s = mac.find(k, network, h);
  let vni = vniOf(network, vlan);
  if (s != 0 && mac.recPort(s) == TUNNEL_PORT) {
    let r = remoteOfSlot(s);
    let old = remotePa(r);
    if (old != pa) {
      if (!retain(vni, pa)) return -1;
      release(remoteVni(r), old);
      store<u32>(r, pa, 12);
      store<u32>(r, vni, 16);
    }
    clearAddresses(r);
    return <i32>((r - remoteBase) / REMOTE_SIZE);
  }
  if (s != 0 && mac.isStatic(s)) return -2;
  if (remoteFree == 0 && remoteHigh >= remoteCap) return -1;
  if (!retain(vni, pa)) return -1;
  if (!mac.addStatic(k, network, TUNNEL_PORT, now)) {
    release(vni, pa);
    return -1;
  }
  let n: u32;
  if (remoteFree != 0) {
    n = remoteFree - 1;
    remoteFree = load<u32>(remote(n), 24);
  } else n = remoteHigh++;
  let r = remote(n);
  store<u64>(r, m);
  store<u16>(r, <u16>network, 8);
  store<u16>(r, <u16>vlan, 10);
  store<u32>(r, pa, 12);
  store<u32>(r, vni, 16);
  store<u32>(r, 0, 20);
  store<u32>(r, 0, 24);
  remoteCount++;
  // The static entry's last-seen word names the record (see the top).
  store<u32>(mac.find(k, network, h), n + 1, 12);
  return <i32>n;
}

export function removeRemote(network: u32, vlan: u32, m: u64): bool {
  let r = findRemote(network, vlan, m);
  if (r == 0) return false;
  clearAddresses(r);
  release(remoteVni(r), remotePa(r));
  mac.remove(mac.key(m, vlan), network);
  let n = <u32>((r - remoteBase) / REMOTE_SIZE);
  store<u64>(r, 0);
  store<u32>(r, remoteFree, 24);
  remoteFree = n + 1;
  remoteCount--;
  return true;
}

// A domain's VNI changed: its remotes move their implicit membership to the new VNI.
function renumberRemotes(k: u32, vni: u32): void {
  for (let i: u32 = 0; i < remoteHigh; i++) {
    let r = remote(i);
    if (load<u64>(r) == 0) continue;
    if (domainKey(<u32>load<u16>(r, 8), <u32>load<u16>(r, 10)) != k) continue;
    release(remoteVni(r), remotePa(r));
    retain(vni, remotePa(r));
    store<u32>(r, vni, 16);
  }
}

// ---- remote addresses ----------------------------------------------------------------------------
// Record (32 bytes): u64 hi, u64 lo (IPv4: hi 0, lo the address), u32 domain key | family bit 31
// (0 = free), u32 remote + 1, u32 next address of the same remote (record + 1), u32 pad.

export const ADDR_SIZE: usize = 32;
const FAMILY6: u32 = 0x8000_0000;
let addrBase: usize = 0;
let addrCap: u32 = 0;
let addrHigh: u32 = 0;
let addrFree: u32 = 0;
let addrIdx: usize = 0;
let addrMask: u32 = 0;

@inline function addr(i: u32): usize { return addrBase + <usize>i * ADDR_SIZE; }
@inline function addrHash(dk: u32, hi: u64, lo: u64): u32 {
  let h = <u32>mix64(hi ^ mix64(lo ^ (<u64>dk * 0x9e3779b97f4a7c15)));
  return h == 0 ? 1 : h;
}

// The remote record holding address (hi, lo) of family v6 in domain (network, vlan), or 0.
export function findAddress(network: u32, vlan: u32, v6: bool, hi: u64, lo: u64): usize {
  if (remoteCount == 0) return 0;
  let dk = domainKey(network, vlan) | (v6 ? FAMILY6 : 0);
  let h = addrHash(dk, hi, lo);
  let i = h & addrMask;
  while (true) {
    let s = addrIdx + (<usize>i << 3);
    let v = load<u64>(s);
    if (v == 0) return 0;
    if (<u32>v == h) {
      let a = addr(<u32>(v >> 32) - 1);
      if (load<u32>(a, 16) == dk && load<u64>(a) == hi && load<u64>(a, 8) == lo) return remote(load<u32>(a, 20) - 1);
    }
    i = (i + 1) & addrMask;
  }
}

// Adds an address to remote record n. -1 when the table is full, -2 when another remote of the domain
// has it.
export function addAddress(n: u32, v6: bool, hi: u64, lo: u64): i32 {
  let r = remote(n);
  let network = <u32>load<u16>(r, 8), vlan = <u32>load<u16>(r, 10);
  let other = findAddress(network, vlan, v6, hi, lo);
  if (other == r) return 0;
  if (other != 0) return -2;
  let i: u32;
  if (addrFree != 0) {
    i = addrFree - 1;
    addrFree = load<u32>(addr(i), 24);
  } else {
    if (addrHigh >= addrCap) return -1;
    i = addrHigh++;
  }
  let a = addr(i);
  let dk = domainKey(network, vlan) | (v6 ? FAMILY6 : 0);
  store<u64>(a, hi);
  store<u64>(a, lo, 8);
  store<u32>(a, dk, 16);
  store<u32>(a, n + 1, 20);
  store<u32>(a, load<u32>(r, 20), 24);
  store<u32>(r, i + 1, 20);
  let h = addrHash(dk, hi, lo);
  let j = h & addrMask;
  while (load<u64>(addrIdx + (<usize>j << 3)) != 0) j = (j + 1) & addrMask;
  store<u64>(addrIdx + (<usize>j << 3), <u64>h | (<u64>(i + 1) << 32));
  return 0;
}

// Removes the remote's addresses, and the router's neighbour entries made from them (nodes/egress.ts).
function clearAddresses(r: usize): void {
  let next = load<u32>(r, 20);
  let f = router.ifaceOfDomain(<u32>load<u16>(r, 8), <u32>load<u16>(r, 10));
  while (next != 0) {
    let i = next - 1;
    let a = addr(i);
    next = load<u32>(a, 24);
    if (f >= 0) {
      let zone = <u32>router.iface(<u32>f).zone;
      let fam: u32 = (load<u32>(a, 16) & FAMILY6) != 0 ? 6 : 4;
      let n = neighbor.find(zone, fam, load<u64>(a), load<u64>(a, 8));
      if (n != 0 && neighbor.entryMac(n) == load<u64>(r)) {
        neighbor.remove(zone, fam, load<u64>(a), load<u64>(a, 8));
        router.bumpEpoch();
      }
    }
    let h = addrHash(load<u32>(a, 16), load<u64>(a), load<u64>(a, 8));
    let j = h & addrMask;
    while (true) {
      let s = addrIdx + (<usize>j << 3);
      let v = load<u64>(s);
      if (v == 0) break;
      if (<u32>(v >> 32) == i + 1) {
        eraseAt(addrIdx, 8, addrMask, j, indexSlotUsed, indexSlotHome);
        break;
      }
      j = (j + 1) & addrMask;
    }
    store<u32>(a, 0, 16);
    store<u32>(a, addrFree, 24);
    addrFree = i + 1;
  }
  store<u32>(r, 0, 20);
}

// ---- sizing --------------------------------------------------------------------------------------

@inline function addrsFor(remotes: u32): u32 { return remotes * 2; }
export function bytes(remotes: u32, members: u32): u64 {
  return arena.span(<u64>MAX_VNIS, 8) + 2 * arena.span(<u64>VNI_SLOTS, 8) +
         arena.span(members, MEMBER_SIZE) + arena.span(nextPow2(members * 2), 8) +
         arena.span(remotes, REMOTE_SIZE) + arena.span(addrsFor(remotes), ADDR_SIZE) +
         arena.span(nextPow2(addrsFor(remotes) * 2), 8);
}
export function alloc(remotes: u32, members: u32): void {
  vniList = arena.take(MAX_VNIS, 8);
  byDomain = arena.take(VNI_SLOTS, 8);
  byVni = arena.take(VNI_SLOTS, 8);
  memberCap = members;
  memberBase = arena.take(members, MEMBER_SIZE);
  memberMask = nextPow2(members * 2) - 1;
  memberIdx = arena.take(<u64>memberMask + 1, 8);
  remoteCap = remotes;
  remoteBase = arena.take(remotes, REMOTE_SIZE);
  addrCap = addrsFor(remotes);
  addrBase = arena.take(addrCap, ADDR_SIZE);
  addrMask = nextPow2(addrCap * 2) - 1;
  addrIdx = arena.take(<u64>addrMask + 1, 8);
  created = true;
}
