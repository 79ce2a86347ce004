// Stage: receive coalescing (Linux's GRO, tcp_gro_receive) for ports that take TCP super-frames. A
// guest on an offloaded TAP sends 64 KiB super-frames, but what reaches it from a plain port (a UDP or
// stream transport, VXLAN decapsulation, another host's segments) comes in MTU-sized segments, and
// the guest's kernel then pays its whole receive path once per segment. Here, at the end of a batch,
// consecutive tx descriptors of one TCP flow to a port with TSO4 (IPv4) or TSO6 (IPv6) are merged
// into one super-frame with a vnet header (NEEDS_CSUM, GSO_TCPV4 or GSO_TCPV6, gso_size the first
// segment's payload): the segments the kernel would make of it again (nodes/gso.ts, Linux's
// tcp_gso_segment) are byte for byte the ones that were merged.
//
// A segment joins the run before it only when that holds, as Linux's GRO checks it:
//   - IPv4 without options or fragmentation, or IPv6 with TCP as its first next header (no extension
//     headers); TCP with payload, ACK alone (PSH only on the last);
//   - the same Ethernet header, addresses, ports, ACK, window, urgent pointer and option bytes
//     (timestamps included) as the run's first; in IPv4 the same TOS, TTL and DF, in IPv6 the same
//     traffic class, flow label and hop limit (Linux's inet_gro_receive and ipv6_gro_receive);
//   - its sequence number right after the previous segment's data; in IPv4 its IP identification the
//     previous one's plus one;
//   - every segment before it carried exactly gso_size bytes, and it carries at most that;
//   - its IP header and TCP checksums are valid. The merged frame's checksum is partial, which the
//     receiving kernel trusts, so a segment that fails its checksum is never merged: it goes on as it
//     is, and the receiver drops it as it would have.
// The run ends at 45 segments or 65535 bytes of IP packet. Only frames that leave from where they
// came in (the rx buffer: switched, routed, NATed or decapsulated in place) with no offload state of
// their own are considered, and only adjacent descriptors to the same port, so the order frames leave
// a port in never changes. Not coalesced (left for later): VLAN-tagged frames, and frames the
// dataplane copied (a tag pushed or popped).
//
// Where the merged frame does not fit the tx scratch area, its segments leave as they are. The
// per-port tx counters keep what was switched (the segments); gro_frames and gro_segments count the
// super-frames made and the segments they hold.
import * as tx from "../tx";
import * as ports from "../ports";
import { bump, Stat } from "../counters";
import * as vnet from "./vnet";
import { writeHeader } from "./gso";
import * as checksum from "../wire/checksum";
import * as eth from "../wire/ethernet";
import * as ipv4 from "../wire/ipv4";
import * as ipv6 from "../wire/ipv6";
import * as tcp from "../wire/tcp";
import { get8, get16, set8, set16 } from "../wire/bytes";

const ETH_LEN = eth.HEADER_LEN;
const IP_LEN = ipv4.MIN_LEN;       // the only IPv4 header length coalesced (no options)
const IP6_LEN = ipv6.HEADER_LEN;   // IPv6 without extension headers
const MAX_SEGMENTS: u32 = 45;
const MAX_IP_LEN: u32 = 65535;
const TCP_ACK: u32 = 0x10;
const PROTO_TCP: u32 = 6;

const TSO = ports.OFFLOAD_TSO4 | ports.OFFLOAD_TSO6;

// Ports with TSO4 or TSO6 (port_set_offload keeps it): when none, a batch costs one compare here.
export let tsoPorts: u32 = 0;

export function recount(): void {
  let k: u32 = 0;
  for (let p: u32 = 0; p < ports.maxPorts; p++) {
    if (ports.port(p).state != ports.STATE_FREE && (ports.capsOf(ports.port(p).flags) & TSO) != 0) k++;
  }
  tsoPorts = k;
}

// The IP header length of a frame payloadOf took: the family's (IPv4 without options, IPv6 without
// extension headers).
@inline function ipLenOf(f: usize): u32 { return get16(f + eth.ETHERTYPE) == eth.TYPE_IPV6 ? IP6_LEN : IP_LEN; }

@inline function desc(i: u32): usize { return tx.descBase + <usize>i * tx.DESCRIPTOR_SIZE; }
@inline function off(i: u32): usize { return tx.offBase + <usize>i * tx.OFFLOAD_SIZE; }
@inline function frameOf(i: u32): usize { return <usize>load<u32>(desc(i)); }
@inline function portOf(i: u32): u32 { return <u32>load<u16>(desc(i), 6); }

// The TCP payload length of descriptor i's frame when it is a segment that may be coalesced for a
// port with offload caps `caps` (see the top of the file), else 0.
function payloadOf(i: u32, caps: u32): u32 {
  let d = desc(i);
  let f = <usize>load<u32>(d);
  let len = <u32>load<u16>(d, 4);
  // Offload state of its own (a super-frame, a partial checksum): not a plain segment. A frame in tx
  // scratch memory was made here (a segment of nodes/gso.ts, a VLAN variant, a router's frame): left
  // as it is, so a super-frame cut for a port that could not take it whole is not merged again.
  if (load<u16>(off(i)) != 0) return 0;
  if (f >= tx.bufBase && f < tx.bufBase + <usize>tx.bufSize) return 0;
  if (len < ETH_LEN + IP_LEN + tcp.MIN_LEN) return 0;
  let ip = f + ETH_LEN;
  let et = get16(f + eth.ETHERTYPE);
  let v6 = et == eth.TYPE_IPV6;
  let l4len: u32;
  if (et == eth.TYPE_IPV4 && (caps & ports.OFFLOAD_TSO4) != 0) {
    if (get8(ip) != 0x45 || ipv4.protocol(ip) != PROTO_TCP || ipv4.isFragment(ip)) return 0;
    let total = ipv4.totalLength(ip);
    if (total < IP_LEN + tcp.MIN_LEN || total > len - ETH_LEN) return 0;
    if (checksum.compute(ip, IP_LEN) != 0) return 0;
    l4len = total - IP_LEN;
  } else if (v6 && (caps & ports.OFFLOAD_TSO6) != 0) {
    if (len < ETH_LEN + IP6_LEN + tcp.MIN_LEN || (get8(ip) >> 4) != 6 || get8(ip + ipv6.NEXT_HEADER) != PROTO_TCP) return 0;
    l4len = get16(ip + ipv6.PAYLOAD_LENGTH);
    if (l4len < tcp.MIN_LEN || l4len > len - ETH_LEN - IP6_LEN) return 0;
  } else return 0;
  let l4 = ip + (v6 ? IP6_LEN : IP_LEN);
  let thl = tcp.headerLen(l4);
  if (thl < tcp.MIN_LEN || thl > l4len) return 0;
  let pay = l4len - thl;
  if (pay == 0) return 0;
  if ((<u32>get8(l4 + tcp.FLAGS) & ~tcp.PSH) != TCP_ACK) return 0;
  if (checksum.fold(checksum.sum(l4, l4len, vnet.pseudoSum(ip, v6, PROTO_TCP, l4len))) != 0) return 0;
  return pay;
}

// Does segment b (payload bPay) continue the run that starts with a and whose last segment is p?
function continues(a: usize, p: usize, pPay: u32, b: usize): bool {
  // The Ethernet header: addresses and type.
  if (load<u64>(a) != load<u64>(b) || load<u32>(a, 8) != load<u32>(b, 8) || load<u16>(a, 12) != load<u16>(b, 12)) return false;
  let ia = a + ETH_LEN, ib = b + ETH_LEN, ip = p + ETH_LEN;
  let ipLen: u32;
  if (get16(a + eth.ETHERTYPE) == eth.TYPE_IPV6) {
    // Version, traffic class and flow label; next header and hop limit; the addresses.
    if (load<u32>(ia) != load<u32>(ib) || load<u16>(ia, 6) != load<u16>(ib, 6)) return false;
    if (load<u64>(ia, 8) != load<u64>(ib, 8) || load<u64>(ia, 16) != load<u64>(ib, 16) ||
        load<u64>(ia, 24) != load<u64>(ib, 24) || load<u64>(ia, 32) != load<u64>(ib, 32)) return false;
    ipLen = IP6_LEN;
  } else {
    // TOS, flags and fragment offset (DF), TTL and protocol, the addresses.
    if (get8(ia + 1) != get8(ib + 1) || load<u16>(ia, 6) != load<u16>(ib, 6) || load<u16>(ia, 8) != load<u16>(ib, 8)) return false;
    if (load<u64>(ia, 12) != load<u64>(ib, 12)) return false;
    if (((ipv4.ident(ip) + 1) & 0xffff) != ipv4.ident(ib)) return false;
    ipLen = IP_LEN;
  }
  let ta = ia + ipLen, tb = ib + ipLen, tp = ip + ipLen;
  // Ports; ACK; data offset; window; urgent pointer; then the options, word by word.
  if (load<u32>(ta) != load<u32>(tb) || load<u32>(ta, 8) != load<u32>(tb, 8)) return false;
  if (get8(ta + 12) != get8(tb + 12) || load<u16>(ta, 14) != load<u16>(tb, 14) || load<u16>(ta, 18) != load<u16>(tb, 18)) return false;
  let thl = tcp.headerLen(ta);
  for (let o: u32 = tcp.MIN_LEN; o < thl; o += 4) if (load<u32>(ta + o) != load<u32>(tb + o)) return false;
  // The previous segment ended where this one starts, and did not push.
  if (tcp.seq(tp) + pPay != tcp.seq(tb)) return false;
  return (<u32>get8(tp + tcp.FLAGS) & tcp.PSH) == 0;
}

// Merges descriptors [i, j) (gso_size `size`, `sum` payload bytes in all) into one frame in tx scratch
// memory, written as descriptor w with its vnet header. False when the scratch area has no room
// (nothing is changed).
function merge(i: u32, j: u32, w: u32, size: u32, sum: u32): bool {
  let a = frameOf(i);
  let ipLen = ipLenOf(a);
  let v6 = ipLen == IP6_LEN;
  let thl = tcp.headerLen(a + ETH_LEN + ipLen);
  let hdr = ETH_LEN + ipLen + thl;
  let total = hdr + sum;
  let p = tx.reserve(total);
  if (p == 0) return false;
  memory.copy(p, a, hdr);
  let at = p + hdr;
  let last = a;
  for (let k = i; k < j; k++) {
    let f = frameOf(k);
    let pay = (v6 ? get16(f + ETH_LEN + ipv6.PAYLOAD_LENGTH) : ipv4.totalLength(f + ETH_LEN) - IP_LEN) - thl;
    memory.copy(at, f + hdr, pay);
    at += pay;
    last = f;
  }
  let ip = p + ETH_LEN, l4 = ip + ipLen;
  let l4len = total - ETH_LEN - ipLen;
  if (v6) set16(ip + ipv6.PAYLOAD_LENGTH, <u16>l4len);
  else {
    ipv4.setTotalLength(ip, total - ETH_LEN);
    ipv4.setChecksum(ip, 0);
    ipv4.setChecksum(ip, checksum.compute(ip, IP_LEN));
  }
  set8(l4 + tcp.FLAGS, <u8>(get8(l4 + tcp.FLAGS) | (get8(last + ETH_LEN + ipLen + tcp.FLAGS) & tcp.PSH)));
  set16(l4 + tcp.CHECKSUM, vnet.foldPlain(vnet.pseudoSum(ip, v6, PROTO_TCP, l4len)));
  let d = desc(w);
  store<u32>(d, <u32>p);
  store<u16>(d, <u16>total, 4);
  store<u16>(d, <u16>portOf(i), 6);
  writeHeader(off(w), vnet.F_NEEDS_CSUM, v6 ? vnet.GSO_TCPV6 : vnet.GSO_TCPV4, hdr, size, ETH_LEN + ipLen, vnet.csumOffset(PROTO_TCP));
  bump(Stat.GroFrames);
  bump(Stat.GroSegments, j - i);
  return true;
}

// Moves descriptor i (and its offload record) to position w.
@inline function keep(i: u32, w: u32): void {
  if (i == w) return;
  store<u64>(desc(w), load<u64>(desc(i)));
  memory.copy(off(w), off(i), tx.OFFLOAD_SIZE);
}

// Coalesces the batch's tx descriptors (the stage's one entry, at the end of process()).
export function coalesce(): void {
  let n = tx.count;
  if (tsoPorts == 0 || n < 2) return;
  let w: u32 = 0;
  let i: u32 = 0;
  // The segment that ended a run is the next run's first: its payloadOf (a checksum over all of it)
  // is kept rather than computed again.
  let known: u32 = n, knownPay: u32 = 0;
  while (i < n) {
    let o = portOf(i);
    let caps = ports.capsOf(ports.port(o).flags);
    let size: u32 = (caps & TSO) == 0 ? 0 : i == known ? knownPay : payloadOf(i, caps);
    let j = i + 1;
    if (size != 0) {
      let a = frameOf(i);
      let ipLen = ipLenOf(a);
      let ipHeaders = ipLen + tcp.headerLen(a + ETH_LEN + ipLen);
      let sum = size, pPay = size, p = a;
      while (j < n && j - i < MAX_SEGMENTS && pPay == size && portOf(j) == o) {
        let b = frameOf(j);
        let bPay = payloadOf(j, caps);
        if (bPay == 0 || bPay > size || ipHeaders + sum + bPay > MAX_IP_LEN || !continues(a, p, pPay, b)) {
          known = j; knownPay = bPay;
          break;
        }
        sum += bPay; pPay = bPay; p = b;
        j++;
      }
      if (j - i >= 2 && merge(i, j, w, size, sum)) { w++; i = j; continue; }
    }
    for (let k = i; k < j; k++) keep(k, w++);
    i = j;
  }
  tx.truncate(w);
}
