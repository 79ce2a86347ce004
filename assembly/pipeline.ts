// Runs one batch through the stages. When the MAC table or the connection table holds more than the
// cache does, the stages run over the whole batch in turn (VPP's vector model): the first pass parses every
// frame, applies the ingress checks and computes the table hashes; a tight pass touches every slot
// those hashes name, so the cache misses overlap instead of stalling one after another; the last pass
// learns and forwards. When the tables fit in cache there is nothing to overlap, and each packet runs
// through all stages to completion instead, which saves writing and re-reading its metadata.
//
// The stages an established packet goes through are inlined into this loop as far as the forwarding
// of the connection (resetMeta, routedFlowHash, ifaceOfDomain, l3input, ip4input, and in ip4.ts the
// forwarding, conntrack's update and the egress): V8's WebAssembly code keeps no value in a register across a call, so each
// call spilled and reloaded the caller's live values (nat-established-10k ×1.03-1.09 A/B,
// docs/performance.md).
//
// rx descriptor (8 bytes, little-endian): u32 offset of the frame in the rx buffer, u16 length,
// u16 ingress port. A descriptor pointing outside the rx buffer is a counted drop, so a host bug can
// never make the dataplane read outside its own buffers.
import { Reason } from "./reasons";
import * as arena from "./arena";
import { Meta, meta, resetMeta, releasedMeta, FLAG_GROUP_DST, FLAG_RELEASED, FLAG_TUNNEL } from "./packet";
import { port, maxPorts, STATE_UP, STATE_FREE, STATE_UNDERLAY, PORT_ACL, PORT_CAPS } from "./ports";
import * as vxlan from "./nodes/vxlan";
import * as overlay from "./overlay";
import * as vnet from "./nodes/vnet";
import { drop, bump, Stat, flushBatch } from "./counters";
import * as counters from "./counters";
import * as mac from "./tables/mac";
import * as tx from "./tx";
import * as gro from "./nodes/gro";
import * as punt from "./punt";
import { parse } from "./nodes/parse";
import { ingress } from "./nodes/ingress";
import { l2learn } from "./nodes/l2learn";
import { l2forward } from "./nodes/l2forward";
import { l3input, l3inputCall } from "./nodes/l3";
import { aclCheck, HELD } from "./nodes/acl";
import { DIR_OUT } from "./tables/acl";
import * as flow from "./tables/flow";
import * as frag from "./tables/frag";
import * as router from "./router";
import * as trace from "./trace";
import { routedFlowHash } from "./nodes/ip4";
import { loadMac, isGroupMac } from "./wire/bytes";
import * as eth from "./wire/ethernet";

export const RX_DESCRIPTOR_SIZE: usize = 8;
// MAC table slots the aging sweep visits per batch: a 1M-entry table (2M slots) is swept every 32k
// batches, about a second at full rate; aged entries are ignored by lookups before the sweep gets there.
const SWEEP_SLOTS_PER_BATCH: u32 = 64;
// Fragment table records the timeout sweep visits per batch.
const FRAG_SWEEP_PER_BATCH: u32 = 16;
// Below this size a table stays in the core's own cache (L2) and touching it first only costs. Above
// it, even a table that fits in the shared L3 gains: an L3 hit still stalls a dependent lookup for
// tens of cycles, and the touches overlap those too (the established-NAT case with 10k connections,
// 1.8 MiB of conntrack, gained most; docs/performance.md).
// batch_set_touch_above() changes it (0: every batch in three passes, as the tests that compare the
// two modes run it).
export let touchAbove: u64 = 1 << 20;

export let rxDescBase: usize = 0;
export let rxBufBase: usize = 0;
export let rxBufSize: u32 = 0;
export let maxBatch: u32 = 0;

// The slot touches are xored together and stored here, so the optimizer keeps the loads.
export let sinkBase: usize = 0;
// The batch's touch list (touchAll): up to three addresses a packet, u32 each.
let touchBase: usize = 0;

// The rx vnet headers, one per descriptor (nodes/vnet.ts), read only for ports with offloads.
export let rxOffBase: usize = 0;

export function bytes(batch: u32, rxBytes: u32): u64 {
  return arena.span(batch, RX_DESCRIPTOR_SIZE) + arena.span(batch, vnet.HEADER_SIZE) + arena.span(rxBytes, 1) + arena.span(1, 8) + arena.span(batch * 3, 4);
}
export function alloc(batch: u32, rxBytes: u32): void {
  maxBatch = batch;
  rxDescBase = arena.take(batch, RX_DESCRIPTOR_SIZE);
  rxOffBase = arena.take(batch, vnet.HEADER_SIZE);
  rxBufBase = arena.take(rxBytes, 1);
  rxBufSize = rxBytes;
  sinkBase = arena.take(1, 8);
  touchBase = arena.take(batch * 3, 4);
}

export function process(n: u32, now: f64): u32 {
  tx.reset();
  punt.reset();
  bump(Stat.Batches);
  if (n > maxBatch) n = maxBatch;
  let t = <u32><u64>now;
  vxlan.setNow(t);

  // By what the tables hold, not what they could: a switch created with room for 64k connections
  // (the default) that holds none, or forwards only L2, runs each packet to completion.
  let touchMac = mac.bytes(mac.count) > touchAbove;
  let touchFlow = flow.bytes(flow.count) > touchAbove;
  let touchRemotes = <u64>overlay.remoteCount * overlay.REMOTE_SIZE > touchAbove;
  if (touchMac || touchFlow || touchRemotes) {
    // Tables larger than the cache: classify the whole batch, touch every slot it will need, then
    // learn and forward, so the cache misses overlap.
    for (let i: u32 = 0; i < n; i++) first(meta(i), i);
    touchAll(n, touchMac, touchFlow, touchRemotes);
    for (let i: u32 = 0; i < n; i++) second(meta(i), t);
  } else {
    // Tables in cache: each packet runs to completion while its metadata is still in registers.
    for (let i: u32 = 0; i < n; i++) {
      let m = meta(i);
      first(m, i);
      second(m, t);
    }
  }

  if (vxlan.pendingCount != 0) vxlan.flushPending(t);
  if (frag.pending()) releaseHeld(t);
  frag.sweep(t, FRAG_SWEEP_PER_BATCH);
  mac.sweep(t, SWEEP_SLOTS_PER_BATCH);
  let expired = flow.sweep(t, SWEEP_SLOTS_PER_BATCH);
  if (expired) bump(Stat.CtExpired, expired);
  gro.coalesce();
  flushBatch();
  return tx.count;
}

// The first stages of packet i: descriptor, port, parse, ingress; the MAC table and conntrack hashes.
@inline function first(m: Meta, i: u32): void {
  let d = rxDescBase + <usize>i * RX_DESCRIPTOR_SIZE;
  let off = load<u32>(d);
  let len = <u32>load<u16>(d, 4);
  let p = <u32>load<u16>(d, 6);
  resetMeta(m, rxBufBase + <usize>off, len, p);
  m.reason = classify(m, off, len, p, i);
  if (trace.traceOn) noteClassify(m);
  if (m.reason) return;
  let dst = loadMac(m.frame + eth.DST);
  if (isGroupMac(dst)) m.flags |= FLAG_GROUP_DST;
  else {
    if (router.ifCount != 0) m.flowHash = routedFlowHash(m, dst);
    // A frame for a gateway MAC skips the L2 lookup (second()), the only reader of its destination's
    // hash: every stage that forwards it again computes the hash of its new destination.
    if (m.toRouter == 0) m.dstHash = mac.hash(mac.key(dst, m.vlan), m.network);
  }
  m.srcHash = mac.hash(mac.key(loadMac(m.frame + eth.SRC), m.vlan), m.network);
}

// Touches the MAC table slots and the connections (index slot, then record) the batch will need.
// The addresses are gathered first into a list, then one loop does nothing but load them: a loop of
// three instructions a load keeps many more misses in flight than one that also reads the metadata
// and computes each address (the out-of-order window holds more of them), which took l2-1M ×1.18
// (docs/performance.md). The connection each packet's index slots named is kept in its metadata
// (flowRef), so that its lookup checks that record instead of probing the index again.
function touchAll(n: u32, touchMac: bool, touchFlow: bool, touchRemotes: bool): void {
  let k: usize = 0;
  for (let i: u32 = 0; i < n; i++) {
    let m = meta(i);
    if (touchMac) {
      k = listed(k, mac.slotOf(m.srcHash));
      if (!m.toRouter) k = listed(k, mac.slotOf(m.dstHash));
    }
    if (touchFlow && m.flowHash != 0) k = listed(k, flow.slotOf(m.flowHash));
  }
  let touched = loadListed(k);
  if (touchFlow) {
    // Then each key's record, both of its lines.
    k = 0;
    for (let i: u32 = 0; i < n; i++) {
      let m = meta(i);
      let h = m.flowHash;
      if (h == 0) continue;
      let v = flow.probe(h);
      m.flowRef = v;
      if (v) k = listed(k, flow.recordOf(v));
    }
    // Two loads an address here, not two addresses: a shorter list to walk (nat-1M ×0.96 the other way).
    for (let j: usize = 0; j < k; j++) {
      let r = <usize>load<u32>(touchBase + (j << 2));
      touched ^= load<u64>(r) ^ load<u64>(r, 64);
    }
  }
  if (touchRemotes) {
    // Then the remote endpoint records that the MAC table's tunnel entries name: a frame's destination
    // to encapsulate (l2forward's toRemote), a decapsulated frame's source to check (checkSource).
    k = 0;
    for (let i: u32 = 0; i < n; i++) {
      let m = meta(i);
      if (m.reason) continue;
      let s: usize = 0;
      if (m.flags & FLAG_TUNNEL) s = mac.find(mac.key(loadMac(m.frame + eth.SRC), m.vlan), m.network, m.srcHash);
      else if (m.toRouter == 0 && (m.flags & FLAG_GROUP_DST) == 0) s = mac.find(mac.key(loadMac(m.frame + eth.DST), m.vlan), m.network, m.dstHash);
      if (s != 0 && mac.recPort(s) == overlay.TUNNEL_PORT) k = listed(k, <u32>overlay.remoteOfSlot(s));
    }
    touched ^= loadListed(k);
  }
  store<u64>(sinkBase, touched);
}

// Puts address a at position k of the touch list; the next position.
@inline function listed(k: usize, a: u32): usize {
  store<u32>(touchBase + (k << 2), a);
  return k + 1;
}

// Loads the first k addresses of the touch list, xored together.
@inline function loadListed(k: usize): u64 {
  let touched: u64 = 0;
  for (let j: usize = 0; j < k; j++) touched ^= load<u64>(<usize>load<u32>(touchBase + (j << 2)));
  return touched;
}

// The last stages: learn the source, then forward by L2 or hand the packet to the router.
@inline function second(m: Meta, t: u32): void {
  if (m.reason) return;
  let pt = port(m.inPort);
  let r = l2learn(m, pt, t);
  if (r == Reason.None && (pt.flags & PORT_ACL)) r = aclCheck(m, m.inPort, DIR_OUT, t);
  if (r == HELD) return;
  if (r) {
    m.reason = r;
    drop(m.inPort, r);
    return;
  }
  // A frame the first pass already found addressed to a gateway MAC skips the L2 lookup.
  if (trace.traceOn && m.toRouter != 0) trace.note(trace.Step.L2, 2, m.toRouter - 1, 0, 0);
  let r3 = m.toRouter != 0 ? m.toRouter : l2forward(m, t, m.inPort);
  if (r3 != 0) l3input(m, r3 - 1, t);
}

// The trace's record of the first stages (one check on the per-packet path, not one per stage).
// The drop classify() may have counted is already recorded: it moves after these records.
function noteClassify(m: Meta): void {
  let dropped = m.reason != Reason.None && trace.takeLast();
  trace.note(trace.Step.Rx, m.inPort, m.len, 0, 0);
  if (m.reason != Reason.RxBadDescriptor && m.reason != Reason.PortInvalid && m.reason != Reason.PortDown) {
    trace.note(trace.Step.Parse, <u32>m.parseReason, m.ethertype, m.protocol, 0);
    if (m.parseReason == 0) trace.note(trace.Step.Ingress, m.reason, m.network, m.vlan, 0);
  }
  if (dropped) trace.putBack();
}

// Descriptor and port checks, rx counters, parse and ingress. Counts the drop if there is one.
@inline function classify(m: Meta, off: u32, len: u32, p: u32, i: u32): Reason {
  if (<u64>off + <u64>len > <u64>rxBufSize) {
    drop(p, Reason.RxBadDescriptor);
    return Reason.RxBadDescriptor;
  }
  if (p >= maxPorts || port(p).state == STATE_FREE) {
    drop(p, Reason.PortInvalid);
    return Reason.PortInvalid;
  }
  let pt = port(p);
  pt.rxPackets += 1;
  pt.rxBytes += len;
  counters.batchRxPackets += 1;
  counters.batchRxBytes += len;
  if (pt.state != STATE_UP) {
    // The underlay port's frames are VXLAN: on success m is the inner frame, in its domain.
    let u = pt.state == STATE_UNDERLAY ? vxlan.decap(m) : Reason.PortDown;
    if (u) drop(p, u);
    return u;
  }
  let r = parse(m);
  m.parseReason = <u8>r;
  if (r == Reason.None && (pt.flags & PORT_CAPS) != 0) r = vnet.input(m, rxOffBase + <usize>i * vnet.HEADER_SIZE);
  if (r == Reason.None) r = ingress(m, pt);
  if (r) drop(p, r);
  return r;
}

// Fragments held until their datagram's first fragment came (tables/frag.ts), run again now that it
// has been through, from the stage that held them: copied into tx memory (the hold slot is reused),
// parsed and placed in their domain again, with their first fragment's ports.
function releaseHeld(t: u32): void {
  let s = frag.nextPending();
  while (s != 0) {
    let h = frag.hold(s - 1);
    let len = <u32>load<u16>(h, 4);
    let p = <u32>load<u16>(h, 6);
    let stage = <u32>load<u16>(h, 10);
    let ifIndex = <u32>load<u16>(h, 8);
    let ports = load<u32>(h, 12);
    let answer = load<u32>(h, 16);
    let network = <u32>load<u16>(h, 20);
    let vlan = <u32>load<u16>(h, 22);
    let f = tx.reserve(len);
    if (f == 0) {
      drop(p, Reason.TxBufferFull);
    } else {
      memory.copy(f, h + frag.HOLD_FRAME, len);
      rerun(releasedMeta(), f, len, p, stage, ifIndex, ports, answer, network, vlan, t);
    }
    frag.freeSlot(s);
    s = frag.nextPending();
  }
}

function rerun(m: Meta, f: usize, len: u32, p: u32, stage: u32, ifIndex: u32, ports: u32, answer: u32, network: u32, vlan: u32, t: u32): void {
  resetMeta(m, f, len, p);
  let pt = port(p);
  let r: Reason;
  if (pt.state == STATE_UNDERLAY) {
    // An inner frame decapsulated from the underlay, whose outer headers and inner source were checked
    // when it came (nodes/vxlan.ts): back in the domain of its VNI, as it was held.
    r = parse(m);
    m.network = network;
    m.vlan = vlan;
    m.flags |= FLAG_TUNNEL;
  } else {
    r = pt.state != STATE_UP ? Reason.PortDown : parse(m);
    if (r == Reason.None) r = ingress(m, pt);
  }
  if (r) {
    drop(p, r);
    return;
  }
  m.flags |= FLAG_RELEASED;
  m.flowHash = ports;
  m.srcHash = answer;
  if (stage == frag.STAGE_ROUTER) {
    l3inputCall(m, ifIndex, t);
    return;
  }
  if (pt.flags & PORT_ACL) {
    r = aclCheck(m, p, DIR_OUT, t);
    if (r == HELD) return;
    if (r) {
      drop(p, r);
      return;
    }
  }
  m.flags &= ~FLAG_RELEASED;
  m.flowHash = 0;
  let dst = loadMac(m.frame + eth.DST);
  if (isGroupMac(dst)) m.flags |= FLAG_GROUP_DST;
  m.dstHash = mac.hash(mac.key(dst, m.vlan), m.network);
  let r3 = l2forward(m, t, p);
  if (r3 != 0) l3inputCall(m, r3 - 1, t);
}
