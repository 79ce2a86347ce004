// Stage: a routed packet's way out, from its connection's cached egress (both families). The record
// caches, per direction, the egress interface and the next hop's MAC, resolved under the router epoch
// (tables change rarely; when they do, the next packet re-resolves). A new connection's cache is
// primed without a second lookup, VFP's transposition: replies leave by the interface the first
// packet came in by, to the MAC it came from; the original direction where the route just chosen
// says, to its next hop's neighbour entry.
// An interface that punts uplink (the socket uplink) has no neighbours: its next hop resolves at once
// to MAC 0 without ARP / ND, and a frame sent out of it goes to the punt area (nodes/punt.ts) instead
// of L2 forwarding.
import { Meta, FLAG_TUNNEL } from "../packet";
import * as overlay from "../overlay";
import { remoteNeighborMac } from "./vxlan";
import { iface, Iface, epoch, PUNT_UPLINK } from "../router";
import * as flow from "../tables/flow";
import * as lpm from "../tables/lpm";
import * as neighbor from "../tables/neighbor";
import * as addr6 from "../tables/addr6";
import * as eth from "../wire/ethernet";
import { storeMac } from "../wire/bytes";
import * as counters from "../counters";
import * as mac from "../tables/mac";
import { arpRequest } from "./arp";
import { solicit } from "./ip6";
import { CT_DSR } from "./nat";
import { l2forward, NO_PORT } from "./l2forward";
import { puntUplink } from "./punt";

@inline export function resolved(r: usize): bool {
  return <u32>load<u16>(r, 30) == (epoch & 0xffff);
}

// Set in the record's byte 29 (beside conntrack's FIN bits) while the reply direction is primed but the
// original one is not yet resolved: resolve() then leaves the reply direction as primed.
const REPLY_PRIMED: u8 = 0x80;

export function prime(r: usize, zone: u32, ifIn: u32, srcMac: u64, outIf: u32, nhHi: u64, nhLo: u64, now: u32): void {
  store<u16>(r, <u16>ifIn, 42);
  store<u32>(r, <u32>srcMac, 50);
  store<u16>(r, <u16>(srcMac >> 32), 54);
  let v6 = (load<u8>(r, 28) & flow.CT_V6) != 0;
  let uplink = (iface(outIf).punt & PUNT_UPLINK) != 0;
  let n: usize = uplink ? 0 : neighbor.resolve(zone, v6 ? 6 : 4, nhHi, nhLo, now);
  if (n == 0 && !uplink) {
    // resolve() runs (and asks ARP / ND) on the packet's way out, for the original direction only.
    store<u8>(r, load<u8>(r, 29) | REPLY_PRIMED, 29);
    return;
  }
  setHop(r, 0, outIf, n ? neighbor.entryMac(n) : 0);
  store<u16>(r, <u16>(epoch & 0xffff), 30);
}

// Resolves both directions' egress under the current epoch. Returns false (after asking for the
// missing next hop) if a neighbour is unknown.
export function resolve(r: usize, now: u32): bool {
  let zone = <u32>load<u16>(r, 24) & ~flow.ZONE_V6;
  let v6 = (load<u8>(r, 28) & flow.CT_V6) != 0;
  let seen = load<u8>(r, 29);
  // A reply direction primed from the connection's first packet is kept (it is what that packet
  // showed); once both are resolved, later epochs look both up again.
  let keepReply = (seen & REPLY_PRIMED) != 0;
  // Original direction packets go to the reply tuple's source; reply packets to the original source.
  // A direct-server-return connection's original direction goes to its backend (nodes/nat.ts).
  let to = (seen & CT_DSR) ? load<u32>(r, 92) : flow.srcOf(r, 1);
  let ok = resolveOne(r, zone, v6, to, 0, now);
  if (!keepReply) ok = resolveOne(r, zone, v6, flow.srcOf(r, 0), 1, now) && ok;
  if (ok) {
    store<u8>(r, seen & ~REPLY_PRIMED, 29);
    store<u16>(r, <u16>(epoch & 0xffff), 30);
  }
  return ok;
}

function resolveOne(r: usize, zone: u32, v6: bool, to: u32, dir: u32, now: u32): bool {
  let hi: u64 = v6 ? addr6.hi(to) : 0;
  let lo: u64 = v6 ? addr6.lo(to) : <u64>to;
  let rt = v6 ? lpm.lookup6(zone, hi, lo) : lpm.lookup4(zone, to);
  if (rt == 0) return false;
  let outIf = lpm.routeIface(rt);
  let nhHi = lpm.routeNextHopHi(rt), nhLo = lpm.routeNextHopLo(rt);
  if ((nhHi | nhLo) == 0) { nhHi = hi; nhLo = lo; }
  if (iface(outIf).punt & PUNT_UPLINK) {
    setHop(r, dir, outIf, 0);
    return true;
  }
  let n = neighbor.resolve(zone, v6 ? 6 : 4, nhHi, nhLo, now);
  if (n == 0 && overlay.remoteCount != 0) n = remoteNeighbor(zone, v6, nhHi, nhLo, outIf, now);
  if (n == 0) {
    if (v6) solicit(outIf, nhHi, nhLo, now);
    else arpRequest(outIf, <u32>nhLo, now);
    return false;
  }
  setHop(r, dir, outIf, neighbor.entryMac(n));
  return true;
}

// A next hop that is a remote endpoint of the egress interface's overlay domain is not asked for
// by ARP / ND (its answer would come from this switch anyway): its neighbour entry is made from the
// remote table. Removing or moving the remote removes the entry (index.ts).
function remoteNeighbor(zone: u32, v6: bool, hi: u64, lo: u64, outIf: u32, now: u32): usize {
  let f = iface(outIf);
  let m = remoteNeighborMac(<u32>f.network, <u32>f.vlan, v6, hi, lo);
  if (m == 0 || !neighbor.update(zone, v6 ? 6 : 4, hi, lo, m, outIf, neighbor.LEARNED, now)) return 0;
  return neighbor.resolve(zone, v6 ? 6 : 4, hi, lo, now);
}

@inline function setHop(r: usize, dir: u32, outIf: u32, mac: u64): void {
  let c: usize = dir ? 2 : 0;
  store<u16>(r + c, <u16>outIf, 40);
  let nm: usize = dir ? 6 : 0;
  store<u32>(r + nm, <u32>mac, 44);
  store<u16>(r + nm, <u16>(mac >> 32), 48);
}

// Counts a packet of `bytes` (from the IP header on) on direction `dir` of the connection.
@inline export function account(r: usize, dir: u32, bytes: u32): void {
  let pk: usize = dir ? 4 : 0;
  store<u32>(r + pk, load<u32>(r + pk, 64) + 1, 64);
  let bk: usize = dir ? 8 : 0;
  store<u64>(r + bk, load<u64>(r + bk, 72) + <u64>bytes, 72);
}

// The egress interface and next-hop MAC of direction `dir`, once resolved.
@inline export function outIface(r: usize, dir: u32): Iface {
  let c: usize = dir ? 2 : 0;
  return iface(<u32>load<u16>(r + c, 40));
}
@inline export function nextHop(r: usize, dir: u32): u64 {
  let nm: usize = dir ? 6 : 0;
  return <u64>load<u32>(r + nm, 44) | (<u64>load<u16>(r + nm, 48) << 32);
}

// Rewrites the MACs for direction `dir` and forwards the frame by L2 in the egress interface's domain.
export function send(m: Meta, r: usize, dir: u32, now: u32): void {
  sendVia(m, outIface(r, dir), nextHop(r, dir), now);
}

// Sends a routed frame out of interface `out` to the next hop's MAC: the MACs rewritten, then L2
// forwarding in the interface's domain.
// Routed packets mostly leave to one next hop (the uplink's gateway), so the MAC table hash of the
// last one is kept: a hash is a pure function of its key, so the memo is never stale.
export function sendVia(m: Meta, out: Iface, nextHop: u64, now: u32): void {
  sendViaInline(m, out, nextHop, now);
}
// sendVia's body, inlined into the IPv4 forwarding of an established connection (the hot path; see
// ct.ts updateInline); the other callers share the one copy above.
@inline export function sendViaInline(m: Meta, out: Iface, nextHop: u64, now: u32): void {
  storeMac(m.frame + eth.DST, nextHop);
  storeMac(m.frame + eth.SRC, out.mac);
  counters.batchRouted += 1;
  // Routed: a packet that came out of the overlay may go back into it (only bridging is split horizon).
  m.flags &= ~FLAG_TUNNEL;
  if (out.punt & PUNT_UPLINK) {
    puntUplink(m, out);
    return;
  }
  let network = <u32>out.network;
  let vid = <u32>out.vlan;
  m.network = network;
  m.vlan = vid;
  let k = mac.key(nextHop, vid);
  if (((k ^ lastKey) | <u64>(network ^ lastNetwork)) != 0) {
    lastKey = k;
    lastNetwork = network;
    lastHash = mac.hash(k, network);
  }
  m.dstHash = lastHash;
  l2forward(m, now, NO_PORT);
}
// (mac.key never sets the top bits, so the first key always misses.)
let lastKey: u64 = 0xffff_ffff_ffff_ffff;
let lastNetwork: u32 = 0;
let lastHash: u32 = 0;
