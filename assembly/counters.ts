// Switch-wide counters: one u64 per drop reason and one per named statistic, in linear memory so a
// host reads them without a call. Per-port counters live in the port records (ports.ts) and in the
// per-port drop array; count() keeps all three in step so the per-port figures always add up to the
// switch-wide ones.
import * as arena from "./arena";
import { Reason } from "./reasons";
import * as trace from "./trace";
import { maxPorts, portDropBase, port } from "./ports";

export const enum Stat {
  RxPackets = 0,
  RxBytes,
  TxPackets,
  TxBytes,
  Dropped,
  Flooded,       // frames flooded (unknown unicast, broadcast, multicast)
  MacLearned,    // new MAC table entries
  MacMoves,      // a learned MAC seen on another port of its domain
  MacAged,       // entries removed after the aging time
  MacTableFull,  // a MAC not learned because the table was full
  Batches,       // calls of process()
  Routed,        // packets forwarded by a router (fast or slow path)
  CtCreated,     // connections created
  CtEarlyDrop,   // connections evicted to make room (table full)
  CtExpired,     // connections removed after their timeout
  ArpReplies,    // ARP replies and neighbour advertisements sent for gateway addresses
  ArpRequests,   // ARP requests / neighbour solicitations sent to resolve next hops
  IcmpErrors,    // ICMP errors sent (time exceeded, unreachable)
  IcmpRateLimited, // ICMP errors and ARP requests not sent because of the rate limit
  IcmpTranslated,  // ICMP errors translated through NAT
  EchoReplies,   // echo replies sent by a gateway address
  LbChoices,     // backends chosen by load balancers (one per new connection)
  CtTcpIgnored,  // TCP segments passed without moving their connection (Linux's ignore: old retransmissions, ACKs from far back)
  CtTcpPickups,  // TCP connections picked up mid-stream (loose pickup)
  FragHeld,      // fragments held until their datagram's first fragment came
  FragReleased,  // held fragments run again after their first fragment
  FragExpired,   // datagrams whose fragments stopped coming before they were complete
  FragmentsMade, // fragments the router made of packets larger than the egress MTU
  HostResets,    // TCP RSTs sent for segments to a router address that nothing handles (nodes/hostreply.ts)
  FragHeldDropped, // held fragments dropped in a later call: their datagram timed out or was condemned
  Punted,        // frames handed to the host through the punt area (nodes/punt.ts)
  GsoFrames,     // super-frames segmented in software for an egress that cannot take them (nodes/gso.ts)
  GsoSegments,   // the segments they made
  CsumCompleted, // partial checksums completed in software for an egress without checksum offload
  MssClamped,    // TCP SYNs and SYN-ACKs whose MSS option the router lowered (nodes/mss.ts)
  VxlanEncap,    // frames encapsulated to a remote endpoint's host (nodes/vxlan.ts)
  VxlanDecap,    // frames decapsulated from the underlay into their domain
  VxlanBumCopies, // copies of broadcast / multicast / unknown unicast frames sent to a VNI's members
  VxlanProxyReplies, // ARP replies and neighbour advertisements sent for remote endpoints' addresses
  GsoPuntedWhole, // TCP super-frames punted whole to a host that takes them (punt_set_offload)
  GroFrames,     // TCP super-frames made of consecutive segments for a port with TSO4 (nodes/gro.ts)
  GroSegments,   // the segments they hold
  Count,
}

const STAT_NAMES: StaticArray<string> = [
  "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "dropped", "flooded",
  "mac_learned", "mac_moves", "mac_aged", "mac_table_full", "batches",
  "routed", "ct_created", "ct_early_drop", "ct_expired", "arp_replies", "arp_requests", "icmp_errors",
  "icmp_rate_limited", "icmp_translated", "echo_replies", "lb_choices",
  "ct_tcp_ignored", "ct_tcp_pickups",
  "frag_held", "frag_released", "frag_expired", "fragments_made",
  "host_resets", "frag_held_dropped", "punted",
  "gso_frames", "gso_segments", "csum_completed", "mss_clamped",
  "vxlan_encap", "vxlan_decap", "vxlan_bum_copies", "vxlan_proxy_replies", "gso_punted_whole",
  "gro_frames", "gro_segments",
];

export function statName(i: u32): string {
  return i < <u32>STAT_NAMES.length ? unchecked(STAT_NAMES[i]) : "unknown";
}

export let dropBase: usize = 0;
export let statBase: usize = 0;

export function bytes(): u64 { return arena.span(<u64>Reason.Count, 8) + arena.span(<u64>Stat.Count, 8); }
export function allocCounters(): void {
  dropBase = arena.take(<u64>Reason.Count, 8);
  statBase = arena.take(<u64>Stat.Count, 8);
}

@inline export function bump(s: Stat, n: u64 = 1): void {
  let a = statBase + (<usize>s << 3);
  store<u64>(a, load<u64>(a) + n);
}

// The per-packet switch-wide counts are kept in globals during a batch and added to memory once at its
// end (flushBatch), so the hot loop does not carry a chain of read-modify-writes through memory.
export let batchRxPackets: u64 = 0;
export let batchRxBytes: u64 = 0;
export let batchTxPackets: u64 = 0;
export let batchTxBytes: u64 = 0;
export let batchRouted: u64 = 0;

export function flushBatch(): void {
  bump(Stat.RxPackets, batchRxPackets);
  bump(Stat.RxBytes, batchRxBytes);
  bump(Stat.TxPackets, batchTxPackets);
  bump(Stat.TxBytes, batchTxBytes);
  bump(Stat.Routed, batchRouted);
  batchRxPackets = 0;
  batchRxBytes = 0;
  batchTxPackets = 0;
  batchTxBytes = 0;
  batchRouted = 0;
}

// Counts a dropped frame under its reason, switch-wide and on the ingress port.
export function drop(inPort: u32, r: Reason): void {
  trace.note(trace.Step.Drop, <u32>r, inPort, 0, 0);
  let a = dropBase + (<usize>r << 3);
  store<u64>(a, load<u64>(a) + 1);
  bump(Stat.Dropped);
  if (inPort < maxPorts) {
    let c = portDropBase + (<usize>inPort * <usize>Reason.Count + <usize>r) * 8;
    store<u64>(c, load<u64>(c) + 1);
    port(inPort).dropped += 1;
  }
}
