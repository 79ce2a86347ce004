// Stage: VXLAN (RFC 7348) between this switch and the other hosts of an overlay. The tables are in
// overlay.ts; this is the per-packet side: decapsulation of what the underlay port brings, and
// encapsulation of what L2 forwarding sends to a remote endpoint or floods in a VXLAN domain.
//
// The underlay is a socket underlay (docs/ABI.md "VXLAN overlay"): the host's kernel owns the PA and
// routes the outer packets; the underlay port carries outer IPv4 packets behind a 14-byte Ethernet
// header with zero MACs. So the outer Ethernet header is written with zero MACs and ignored on input.
//
// Decapsulation, as Linux's vxlan_rcv: IPv4 to the PA, UDP to the VXLAN port, a header whose flags
// are exactly I with every reserved bit zero, a VNI some domain carries, an outer source that is a
// member of that VNI (explicitly, or because it holds remote endpoints there), an inner frame of at
// least an Ethernet header whose source is not one of this host's stations (a local port's MAC) nor a
// remote endpoint programmed at another PA. Then the inner frame is the packet: it enters its domain
// as if from a port of it (the tunnel) and runs the whole pipeline (L2, port ACLs, routing,
// conntrack, trace), with the underlay port as its ingress port for counters and no learning (the
// remote endpoints are programmed, not learned). A decapsulated frame is never sent back into the
// overlay (split horizon: every host floods to every member itself, head-end replication).
//
// Encapsulation: outer IPv4 from the PA to the remote's PA, TTL 64, DF set (the underlay must not
// fragment: the socket underlay's UDP sockets send with DF and never fragment), a fresh
// identification, the header checksum; UDP from a source port in 49152-65535 taken from a hash of the
// inner flow (RFC 7348 §5: ECMP entropy, stable per flow) to the VXLAN port, checksum 0 (Linux's
// default for IPv4, RFC 7348 §5); VXLAN with the I flag and the domain's VNI; the inner frame,
// untagged. Linux's vxlan sends with DF clear by default (df unset) and lets the underlay fragment;
// netplane cannot, so it always sets DF.
//
// Inner frames that do not fit (inner IP packet larger than the underlay MTU - 50) get what Linux's
// skb_tunnel_check_pmtu gives a bridged vxlan (reply = true): an IPv4 packet with DF set exactly and
// a tunnel MTU of at least 576 is answered with ICMP fragmentation needed, an IPv6 one (tunnel MTU at
// least 1280) with Packet Too Big, both built as Linux's iptunnel_pmtud_build_icmp(v6) builds them:
// from the inner destination address to its source, MACs swapped, the inner TTL / hop limit, as if
// the destination had answered. The frame itself is a counted drop (vxlan_too_big), with or without
// an answer. A routed packet meets the router's own MTU check first (the overlay network's interface
// MTU, which its compiler sets to the underlay MTU - 50), which answers from the gateway address.
//
// Offload state (nodes/vnet.ts) is resolved before encapsulation: a super-frame is segmented (gso.ts)
// and each segment encapsulated, a partial checksum is completed; the underlay port takes plain
// frames only.
//
// Broadcast, multicast and unknown unicast from local ports are flooded locally and replicated to
// every member of the domain's VNI (Linux's all-zero fdb entries), one encapsulated copy each, bounded
// by the member table and the tx area, counted (vxlan_bum_copies). ARP requests and neighbour
// solicitations for a remote endpoint's address are answered here with its MAC (HNS answers them
// for remote endpoints; Linux's neigh_suppress) and neither flooded nor replicated.
import { Reason } from "../reasons";
import { Meta, FLAG_TAGGED, FLAG_LATER_FRAGMENT, FLAG_TUNNEL, scratchMeta, scratchBase, resetMeta } from "../packet";
import * as overlay from "../overlay";
import * as mac from "../tables/mac";
import * as tx from "../tx";
import { drop, bump, Stat } from "../counters";
import { ROUTER_PORT, iface } from "../router";
import { maxPorts } from "../ports";
import * as trace from "../trace";
import * as checksum from "../wire/checksum";
import * as vxlan from "../wire/vxlan";
import * as eth from "../wire/ethernet";
import * as ipv4 from "../wire/ipv4";
import * as ipv6 from "../wire/ipv6";
import * as arp from "../wire/arp";
import * as icmpv6 from "../wire/icmpv6";
import { mix64 } from "../tables/hash";
import { get8, get16, get32, set16, set32, loadMac, storeMac, isGroupMac } from "../wire/bytes";
import { parse } from "./parse";
import { ipv4Header, freshIpId } from "./icmp4";
import { ipv6Header, icmp6Checksum, addrHi, addrLo, storeAddr } from "./ip6";
import { GENERATED_PORT } from "./output";
import { l2forward, dstHash, NO_PORT } from "./l2forward";
import * as vnet from "./vnet";
import * as gso from "./gso";


const SPORT_MIN: u64 = 49152;
const SPORT_RANGE: u64 = 65536 - 49152;
const OUTER_IP: usize = 14;
const OUTER_UDP: usize = 34;
const OUTER_VXLAN: usize = 42;

// The batch's time, for the decapsulation's check of learned entries (set by pipeline.process).
export let nowMs: u32 = 0;
export function setNow(t: u32): void { nowMs = t; }

// ---- decapsulation -------------------------------------------------------------------------------

// Takes apart a frame from the underlay port; on success m describes the inner frame in its domain.
export function decap(m: Meta): Reason {
  let f = m.frame;
  let len = m.len;
  m.parseReason = 0;
  if (len < 14) return Reason.UnderlayMalformed;
  if (get16(f + eth.ETHERTYPE) != eth.TYPE_IPV4) return Reason.UnderlayNotVxlan;
  if (len < 34) return Reason.UnderlayMalformed;
  let ip = f + OUTER_IP;
  let vihl = get8(ip);
  if ((vihl >> 4) != 4 || (vihl & 0xf) < 5) return Reason.UnderlayMalformed;
  let ihl = (vihl & 0xf) << 2;
  let total = ipv4.totalLength(ip);
  if (total < ihl || total > len - 14) return Reason.UnderlayMalformed;
  if (checksum.compute(ip, ihl) != 0) return Reason.UnderlayMalformed;
  if (get8(ip + ipv4.PROTOCOL) != 17 || ipv4.isFragment(ip) || ipv4.dst(ip) != overlay.providerAddress) return Reason.UnderlayNotVxlan;
  let u = ip + ihl;
  let ulen = total - ihl;
  if (ulen < 8) return Reason.UnderlayMalformed;
  let ul = get16(u + 4);
  if (ul < 8 || ul > ulen) return Reason.UnderlayMalformed;
  if (get16(u + 2) != overlay.udpPort) return Reason.UnderlayNotVxlan;
  if (ul < 16) return Reason.VxlanBadHeader;
  let vx = u + 8;
  if (!vxlan.valid(vx)) return Reason.VxlanBadHeader;
  let vni = vxlan.vni(vx);
  let dk = overlay.domainOf(vni);
  if (dk == 0) return Reason.VxlanUnknownVni;
  let src = ipv4.src(ip);
  if (overlay.findMember(vni, src) == 0) return Reason.VxlanNotMember;
  let ilen = ul - 16;
  if (ilen < eth.HEADER_LEN) return Reason.VxlanInnerMalformed;
  m.frame = vx + vxlan.HEADER_LEN;
  m.len = ilen;
  m.network = overlay.keyNetwork(dk);
  m.vlan = overlay.keyVlan(dk);
  let r = parse(m);
  m.parseReason = <u8>r;
  if (r) return r;
  if (m.flags & FLAG_TAGGED) return Reason.VxlanInnerMalformed;
  let sm = loadMac(m.frame + eth.SRC);
  if (isGroupMac(sm)) return Reason.SrcMacMulticast;
  if (sm == 0) return Reason.L2ZeroSource;
  // The inner source's check needs its MAC table slot: it runs where learning would (checkSource),
  // after the batch's touch pass has brought that slot in. The outer source waits in tci (free: the
  // inner frame is untagged).
  m.tci = src;
  m.flags |= FLAG_TUNNEL;
  bump(Stat.VxlanDecap);
  return Reason.None;
}

// The inner source of a decapsulated frame, in place of learning (nodes/l2learn.ts: the underlay port
// learns nothing): not a station of this host (the distributed gateway's MAC is allowed), and if it
// is a remote endpoint, one programmed at the PA the frame came from.
export function checkSource(m: Meta, now: u32): Reason {
  let k = mac.key(loadMac(m.frame + eth.SRC), m.vlan);
  let s = mac.find(k, m.network, m.srcHash);
  if (s == 0) return Reason.None;
  let p = mac.recPort(s);
  if (p == overlay.TUNNEL_PORT) return overlay.remotePa(overlay.remoteOfSlot(s)) != m.tci ? Reason.VxlanInnerSpoof : Reason.None;
  return p < maxPorts && mac.live(s, now) ? Reason.VxlanInnerSpoof : Reason.None;
}

// ---- encapsulation -------------------------------------------------------------------------------

// L2 forwarding found the destination on TUNNEL_PORT (slot s of the MAC table).
export function toRemote(m: Meta, dst: u64): void {
  if (m.flags & FLAG_TUNNEL) {
    drop(m.inPort, Reason.VxlanSplitHorizon);
    return;
  }
  let k = mac.key(dst, m.vlan);
  let s = mac.find(k, m.network, m.dstHash);
  if (s == 0) {
    drop(m.inPort, Reason.VxlanNoUnderlay);
    return;
  }
  let r = overlay.remoteOfSlot(s);
  if (trace.traceOn) trace.note(trace.Step.L2, 3, overlay.remotePa(r), overlay.remoteVni(r), 0);
  if (encap(m, overlay.remotePa(r), overlay.remoteVni(r)) == SENT) bump(Stat.VxlanEncap);
}

// Floods' share of the overlay: one copy to every other member of the domain's VNI. Returns the copies sent.
export function replicate(m: Meta): u32 {
  if (m.flags & FLAG_TUNNEL) return 0;
  let vni = overlay.vniOf(m.network, m.vlan);
  if (vni == 0 || overlay.underlayPort == overlay.NO_PORT) return 0;
  let copies: u32 = 0;
  let n = overlay.memberHigh;
  let self = overlay.providerAddress;
  for (let i: u32 = 0; i < n; i++) {
    let r = overlay.member(i);
    if (load<u32>(r) != vni) continue;
    let pa = load<u32>(r, 4);
    if (pa == self) continue;
    if (encap(m, pa, vni) != SENT) break; // too big, or no room, for every member: counted once
    copies++;
  }
  if (copies) bump(Stat.VxlanBumCopies, copies);
  return copies;
}

const SENT: u32 = 0;
const FAILED: u32 = 1;
const TOO_BIG: u32 = 2;

// Encapsulates m (untagged) to `pa` in `vni` and queues it on the underlay port.
function encap(m: Meta, pa: u32, vni: u32): u32 {
  if (overlay.underlayPort == overlay.NO_PORT || vni == 0) {
    drop(m.inPort, Reason.VxlanNoUnderlay);
    return FAILED;
  }
  let tagged = (m.flags & FLAG_TAGGED) != 0;
  let len = tagged ? m.len - 4 : m.len;
  let sport = sourcePort(m);
  if (m.vnet != 0) return encapOffload(m, pa, vni, sport, len, tagged);
  if (len - eth.HEADER_LEN > overlay.underlayMtu - overlay.OVERHEAD) {
    tooBig(m);
    return TOO_BIG;
  }
  let p = tx.reserve(len + overlay.OVERHEAD);
  if (p == 0) {
    drop(m.inPort, Reason.TxBufferFull);
    return FAILED;
  }
  let inner = p + overlay.OVERHEAD;
  if (tagged) {
    memory.copy(inner, m.frame, 12);
    memory.copy(inner + 12, m.frame + 16, m.len - 16);
  } else memory.copy(inner, m.frame, len);
  outer(p, len, pa, vni, sport);
  return tx.emit(overlay.underlayPort, p, len + overlay.OVERHEAD, m.inPort) ? SENT : FAILED;
}

// A frame with offload state: its checksum completed, or its segments each encapsulated.
function encapOffload(m: Meta, pa: u32, vni: u32, sport: u32, len: u32, tagged: bool): u32 {
  let v = m.vnet;
  if (tagged) {
    // (A tagged frame with offload state comes only from a trunk with offloads: not supported here.)
    drop(m.inPort, Reason.VxlanTooBig);
    return FAILED;
  }
  let l4 = m.l4;
  if (vnet.typeOf(v) == vnet.GSO_NONE) {
    if (len - eth.HEADER_LEN > overlay.underlayMtu - overlay.OVERHEAD) {
      tooBig(m);
      return TOO_BIG;
    }
    let p = tx.reserve(len + overlay.OVERHEAD);
    if (p == 0) {
      drop(m.inPort, Reason.TxBufferFull);
      return FAILED;
    }
    memory.copy(p + overlay.OVERHEAD, m.frame, len);
    vnet.complete(p + overlay.OVERHEAD, l4, m.l4len, m.protocol);
    bump(Stat.CsumCompleted);
    outer(p, len, pa, vni, sport);
    return tx.emit(overlay.underlayPort, p, len + overlay.OVERHEAD, m.inPort) ? SENT : FAILED;
  }
  let n = gso.begin(m.frame, m.l3, l4, m.ethertype == eth.TYPE_IPV6, m.protocol, m.l4len, vnet.sizeOf(v));
  if (gso.segmentLen(0) - eth.HEADER_LEN > overlay.underlayMtu - overlay.OVERHEAD) {
    tooBig(m);
    return TOO_BIG;
  }
  bump(Stat.GsoFrames);
  for (let i: u32 = 0; i < n; i++) {
    let sl = gso.segmentLen(i);
    let p = tx.reserve(sl + overlay.OVERHEAD);
    if (p == 0) {
      drop(m.inPort, Reason.TxBufferFull);
      return FAILED;
    }
    gso.build(i, p + overlay.OVERHEAD);
    outer(p, sl, pa, vni, sport);
    if (!tx.emit(overlay.underlayPort, p, sl + overlay.OVERHEAD, m.inPort)) return FAILED;
    bump(Stat.GsoSegments);
  }
  return SENT;
}

// Writes the outer headers before an inner frame of `len` bytes at p + 50. The IPv4 header is written
// word by word and its checksum summed from its 16-bit fields (no loop over the header).
@inline function outer(p: usize, len: u32, pa: u32, vni: u32, sport: u32): void {
  store<u64>(p, 0);
  store<u32>(p, 0, 8);
  set16(p + eth.ETHERTYPE, eth.TYPE_IPV4);
  let ip = p + OUTER_IP;
  let total = 36 + len;
  let id = freshIpId();
  let src = overlay.providerAddress;
  set32(ip, 0x4500_0000 | total);
  set32(ip + 4, (id << 16) | ipv4.FLAG_DF);
  set32(ip + 12, src);
  set32(ip + 16, pa);
  let s: u32 = 0x4500 + total + id + ipv4.FLAG_DF + 0x4011 + (src >>> 16) + (src & 0xffff) + (pa >>> 16) + (pa & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  set32(ip + 8, 0x4011_0000 | (~s & 0xffff));  // TTL 64, UDP, checksum
  let u = p + OUTER_UDP;
  set16(u, sport);
  set16(u + 2, overlay.udpPort);
  set16(u + 4, 16 + len);
  store<u16>(u + 6, 0);
  vxlan.write(p + OUTER_VXLAN, vni);
}

// The outer UDP source port: a hash of the inner flow (addresses, protocol and ports; the MACs and
// EtherType for non-IP frames) scaled into 49152-65535, as Linux's udp_flow_src_port scales its
// flow hash into its range.
function sourcePort(m: Meta): u32 {
  let f = m.frame;
  let h: u64;
  if (m.ethertype == eth.TYPE_IPV4 && m.l3 != 0) {
    let ip = f + m.l3;
    h = load<u64>(ip + ipv4.SRC) ^ (<u64>m.protocol << 56);
    if (m.l4 != 0 && (m.flags & FLAG_LATER_FRAGMENT) == 0 && (m.protocol == 6 || m.protocol == 17)) h ^= <u64>load<u32>(f + m.l4) << 13;
  } else if (m.ethertype == eth.TYPE_IPV6 && m.l3 != 0) {
    let ip = f + m.l3;
    h = load<u64>(ip + 8) ^ mix64(load<u64>(ip + 16) ^ mix64(load<u64>(ip + 24) ^ mix64(load<u64>(ip + 32)))) ^ (<u64>m.protocol << 56);
    if (m.l4 != 0 && (m.flags & FLAG_LATER_FRAGMENT) == 0 && (m.protocol == 6 || m.protocol == 17)) h ^= <u64>load<u32>(f + m.l4) << 13;
  } else {
    h = load<u64>(f) ^ (<u64>load<u32>(f + 8) << 16) ^ (<u64>m.ethertype << 48);
  }
  let x = <u32>mix64(h);
  x ^= x << 16;
  return <u32>(SPORT_MIN + ((<u64>x * SPORT_RANGE) >> 32));
}

// ---- too big -------------------------------------------------------------------------------------

// Linux's skb_tunnel_check_pmtu for a bridged vxlan: the ICMP error when the packet qualifies, and
// the frame a counted drop either way.
function tooBig(m: Meta): void {
  let mtu = overlay.underlayMtu - overlay.OVERHEAD;
  drop(m.inPort, Reason.VxlanTooBig);
  // A frame the router made itself is in the scratch record the answer would need.
  if (changetype<usize>(m) == scratchBase || m.l3 == 0) return;
  if (m.ethertype == eth.TYPE_IPV4) pmtud4(m, mtu);
  else if (m.ethertype == eth.TYPE_IPV6) pmtud6(m, mtu);
}

const ICMP_QUOTE4: u32 = 576 - 20 - 8;
const ICMP_QUOTE6: u32 = 1280 - 40 - 8;

function pmtud4(m: Meta, mtu: u32): void {
  let ip = m.frame + m.l3;
  if (mtu < 576 || get16(ip + ipv4.FLAGS_FRAG) != ipv4.FLAG_DF) return;
  let src = ipv4.src(ip), dst = ipv4.dst(ip);
  if (dst == 0xffffffff || (dst >> 28) == 0xe) return;
  if ((src >> 24) == 0 || (src >> 24) == 127 || src == 0xffffffff || (src >> 28) == 0xe) return;
  if (m.protocol == 1 && m.l4 != 0) {
    let t = get8(m.frame + m.l4);
    if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12) return; // icmp_is_err
  }
  let quoted = m.len - m.l3;
  if (quoted > ICMP_QUOTE4) quoted = ICMP_QUOTE4;
  let len = 14 + 28 + quoted;
  let p = tx.reserve(len);
  if (p == 0) return;
  storeMac(p, loadMac(m.frame + eth.SRC));
  storeMac(p + 6, loadMac(m.frame + eth.DST));
  set16(p + 12, eth.TYPE_IPV4);
  let o = p + 14;
  ipv4Header(o, 28 + quoted, 1, get8(ip + ipv4.TTL), 0, ipv4.FLAG_DF, dst, src);
  ipv4.setIdent(o, 0);
  ipv4.setChecksum(o, 0);
  ipv4.setChecksum(o, checksum.compute(o, 20));
  let ic = o + 20;
  store<u64>(ic, 0);
  store<u8>(ic, 3);
  store<u8>(ic + 1, 4);
  set16(ic + 6, mtu);
  memory.copy(ic + 8, ip, quoted);
  set16(ic + 2, checksum.compute(ic, 8 + quoted));
  bump(Stat.IcmpErrors);
  intoDomain(p, len, m.network, m.vlan);
}

function pmtud6(m: Meta, mtu: u32): void {
  let ip = m.frame + m.l3;
  if (mtu < 1280) return;
  if (get8(ip + ipv6.DST) == 0xff || get8(ip + ipv6.SRC) == 0xff) return;
  let shi = addrHi(ip + ipv6.SRC), slo = addrLo(ip + ipv6.SRC);
  if ((shi | slo) == 0 || (shi == 0 && slo == 1)) return;
  if (m.protocol == 58 && m.l4 != 0 && icmpv6.isError(icmpv6.type(m.frame + m.l4))) return;
  let quoted = m.len - m.l3;
  if (quoted > ICMP_QUOTE6) quoted = ICMP_QUOTE6;
  let len = 14 + 48 + quoted;
  let p = tx.reserve(len);
  if (p == 0) return;
  storeMac(p, loadMac(m.frame + eth.SRC));
  storeMac(p + 6, loadMac(m.frame + eth.DST));
  set16(p + 12, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, 8 + quoted, ipv6.hopLimit(ip), addrHi(ip + ipv6.DST), addrLo(ip + ipv6.DST), shi, slo);
  let ic = o6 + 40;
  store<u64>(ic, 0);
  store<u8>(ic, <u8>icmpv6.PACKET_TOO_BIG);
  set32(ic + 4, mtu);
  memory.copy(ic + 8, ip, quoted);
  icmpv6.setChecksum(ic, icmp6Checksum(o6, ic, 8 + quoted));
  bump(Stat.IcmpErrors);
  intoDomain(p, len, m.network, m.vlan);
}

// Frames this stage made (ICMP errors, ARP and ND answers) wait here, at most PENDING_MAX a batch,
// and go into their domain by L2 forwarding once the batch is through (flushPending): sending them
// from inside the forwarding that made them would re-enter it.
const PENDING_MAX: u32 = 256;
const pendingBase: usize = memory.data(<i32>(PENDING_MAX * 16), 16);
export let pendingCount: u32 = 0;

function intoDomain(p: usize, len: u32, network: u32, vlan: u32): void {
  if (pendingCount >= PENDING_MAX) {
    drop(GENERATED_PORT, Reason.TxDescriptorsFull);
    return;
  }
  let e = pendingBase + (<usize>pendingCount << 4);
  store<u32>(e, <u32>p);
  store<u32>(e, len, 4);
  store<u32>(e, network, 8);
  store<u32>(e, vlan, 12);
  pendingCount++;
}

export function flushPending(now: u32): void {
  for (let i: u32 = 0; i < pendingCount; i++) {
    let e = pendingBase + (<usize>i << 4);
    send(<usize>load<u32>(e), load<u32>(e, 4), load<u32>(e, 8), load<u32>(e, 12), now);
  }
  pendingCount = 0;
}

function send(p: usize, len: u32, network: u32, vlan: u32, now: u32): void {
  let s = scratchMeta();
  resetMeta(s, p, len, GENERATED_PORT);
  s.network = network;
  s.vlan = vlan;
  s.flags = FLAG_TUNNEL; // never into the overlay: the answer is for a local station
  s.dstHash = dstHash(s);
  l2forward(s, now, NO_PORT);
}

// ---- ARP and ND for remote endpoints -------------------------------------------------------------

const NA_SOLICITED: u32 = 0x40;
const NA_OVERRIDE: u32 = 0x20;

// A broadcast / multicast from a local station: is it an ARP request or a neighbour solicitation for
// a remote endpoint's address? Then it is answered with the remote's MAC, and goes nowhere else.
export function proxy(m: Meta): bool {
  if ((m.flags & FLAG_TUNNEL) != 0 || m.inPort == GENERATED_PORT || changetype<usize>(m) == scratchBase) return false;
  if (m.ethertype == eth.TYPE_ARP) return proxyArp(m);
  if (m.ethertype == eth.TYPE_IPV6 && m.protocol == 58 && m.l4 != 0) return proxyNs(m);
  return false;
}

function proxyArp(m: Meta): bool {
  let a = m.frame + m.l3;
  if (arp.oper(a) != arp.OP_REQUEST) return false;
  let spa = arp.spa(a), tpa = arp.tpa(a);
  // Probes and announcements (RFC 5227) are not answered, as Linux's neigh_suppress leaves them.
  if (spa == 0 || spa == tpa) return false;
  let r = overlay.findAddress(m.network, m.vlan, false, 0, <u64>tpa);
  if (r == 0) return false;
  let rm = load<u64>(r);
  let sha = loadMac(a + arp.SHA);
  let p = tx.reserve(42);
  if (p == 0) {
    drop(m.inPort, Reason.TxBufferFull);
    return true;
  }
  storeMac(p, loadMac(m.frame + eth.SRC));
  storeMac(p + 6, rm);
  set16(p + 12, eth.TYPE_ARP);
  let o = p + 14;
  set16(o + arp.HTYPE, 1);
  set16(o + arp.PTYPE, eth.TYPE_IPV4);
  store<u8>(o + arp.HLEN, 6);
  store<u8>(o + arp.PLEN, 4);
  set16(o + arp.OPER, arp.OP_REPLY);
  storeMac(o + arp.SHA, rm);
  set32(o + arp.SPA, tpa);
  storeMac(o + arp.THA, sha);
  set32(o + arp.TPA, spa);
  bump(Stat.VxlanProxyReplies);
  trace.note(trace.Step.Local, 1, 0, 0, 0);
  intoDomain(p, 42, m.network, m.vlan);
  return true;
}

function proxyNs(m: Meta): bool {
  let ic = m.frame + m.l4;
  let ip = m.frame + m.l3;
  let len = m.l4len;
  if (len < 24 || icmpv6.type(ic) != icmpv6.NEIGHBOR_SOLICITATION || icmpv6.code(ic) != 0) return false;
  if (ipv6.hopLimit(ip) != 255 || get8(ic + 8) == 0xff) return false;
  let s = checksum.sum(ip + ipv6.SRC, 32);
  s += <u64>len + 58;
  if (checksum.fold(checksum.sum(ic, len, s)) != 0) return false;
  let thi = addrHi(ic + 8), tlo = addrLo(ic + 8);
  let r = overlay.findAddress(m.network, m.vlan, true, thi, tlo);
  if (r == 0) return false;
  let rm = load<u64>(r);
  let shi = addrHi(ip + ipv6.SRC), slo = addrLo(ip + ipv6.SRC);
  let unspecified = (shi | slo) == 0;
  let flen: u32 = 14 + 40 + 32;
  let p = tx.reserve(flen);
  if (p == 0) {
    drop(m.inPort, Reason.TxBufferFull);
    return true;
  }
  storeMac(p, unspecified ? <u64>0x0100_0000_3333 : loadMac(m.frame + eth.SRC));
  storeMac(p + 6, rm);
  set16(p + 12, eth.TYPE_IPV6);
  let o6 = p + 14;
  ipv6Header(o6, 32, 255, thi, tlo, unspecified ? 0xff02_0000_0000_0000 : shi, unspecified ? 1 : slo);
  let nd = o6 + 40;
  store<u64>(nd, 0);
  icmpv6.setType(nd, icmpv6.NEIGHBOR_ADVERTISEMENT);
  // Router flag clear (an endpoint, not a router), Override, Solicited unless for DAD (RFC 4861 §7.2.4).
  store<u8>(nd + 4, <u8>(NA_OVERRIDE | (unspecified ? 0 : NA_SOLICITED)));
  storeAddr(nd + 8, thi, tlo);
  store<u8>(nd + 24, 2); // target link-layer address
  store<u8>(nd + 25, 1);
  storeMac(nd + 26, rm);
  icmpv6.setChecksum(nd, icmp6Checksum(o6, nd, 32));
  bump(Stat.VxlanProxyReplies);
  trace.note(trace.Step.Local, 1, 0, 0, 0);
  intoDomain(p, flen, m.network, m.vlan);
  return true;
}

// The router's next hop in an overlay domain is a remote endpoint's address: its neighbour entry,
// made from the remote table instead of asking by ARP / ND (nodes/egress.ts). 0 if it is none.
export function remoteNeighborMac(network: u32, vlan: u32, v6: bool, hi: u64, lo: u64): u64 {
  let r = overlay.findAddress(network, vlan, v6, hi, lo);
  return r == 0 ? 0 : load<u64>(r);
}

// Is the next hop (hi, lo) of a route out of interface outIf a remote endpoint of its domain? Then a
// connection routed there is one-sided (nodes/ct.ts CT_ONE_SIDED).
export function remoteHop(outIf: u32, v6: bool, hi: u64, lo: u64): bool {
  let f = iface(outIf);
  return overlay.findAddress(<u32>f.network, <u32>f.vlan, v6, hi, lo) != 0;
}
