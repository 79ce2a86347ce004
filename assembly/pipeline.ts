// Runs one batch through the stages. Stages run over the whole batch in turn (VPP's vector model)
// rather than one packet at a time to completion: the first pass parses every frame and computes both
// MAC table hashes, touching their slots, so the cache misses of a large table overlap instead of
// stalling one after another; learning then runs for the batch, then forwarding.
//
// rx descriptor (8 bytes, little-endian): u32 offset of the frame in the rx buffer, u16 length,
// u16 ingress port. A descriptor pointing outside the rx buffer is a counted drop, so a host bug can
// never make the dataplane read outside its own buffers.
import { Reason } from "./reasons";
import { Meta, meta, resetMeta, FLAG_GROUP_DST } from "./packet";
import { port, maxPorts, STATE_UP, STATE_FREE } from "./ports";
import { drop, bump, Stat } from "./counters";
import * as mac from "./tables/mac";
import * as tx from "./tx";
import { parse } from "./nodes/parse";
import { ingress } from "./nodes/ingress";
import { l2learn } from "./nodes/l2learn";
import { l2forward } from "./nodes/l2forward";
import { loadMac, isGroupMac } from "./wire/bytes";
import * as eth from "./wire/ethernet";

export const RX_DESCRIPTOR_SIZE: usize = 8;
// MAC table slots the aging sweep visits per batch.
const SWEEP_SLOTS_PER_BATCH: u32 = 1024;

export let rxDescBase: usize = 0;
export let rxBufBase: usize = 0;
export let rxBufSize: u32 = 0;
export let maxBatch: u32 = 0;

// The slot touches are xored together and stored here, so the optimizer keeps the loads.
export let sinkBase: usize = 0;

export function process(n: u32, now: f64): u32 {
  tx.reset();
  bump(Stat.Batches);
  let touched: u64 = 0;
  if (n > maxBatch) n = maxBatch;
  let t = <u32><u64>now;

  for (let i: u32 = 0; i < n; i++) {
    let d = rxDescBase + <usize>i * RX_DESCRIPTOR_SIZE;
    let off = load<u32>(d);
    let len = <u32>load<u16>(d, 4);
    let p = <u32>load<u16>(d, 6);
    let m = meta(i);
    resetMeta(m, rxBufBase + <usize>off, len, p);
    m.reason = classify(m, off, len, p);
    if (m.reason) continue;
    let dst = loadMac(m.frame + eth.DST);
    if (isGroupMac(dst)) m.flags |= FLAG_GROUP_DST;
    else {
      m.dstHash = mac.hash(mac.key(dst, m.vlan), m.network);
      touched ^= mac.touch(m.dstHash);
    }
    m.srcHash = mac.hash(mac.key(loadMac(m.frame + eth.SRC), m.vlan), m.network);
    touched ^= mac.touch(m.srcHash);
  }

  store<u64>(sinkBase, touched);

  for (let i: u32 = 0; i < n; i++) {
    let m = meta(i);
    if (m.reason) continue;
    let r = l2learn(m, port(m.inPort), t);
    if (r) {
      m.reason = r;
      drop(m.inPort, r);
    }
  }

  for (let i: u32 = 0; i < n; i++) {
    let m = meta(i);
    if (m.reason) continue;
    l2forward(m, t);
  }

  mac.sweep(t, SWEEP_SLOTS_PER_BATCH);
  return tx.count;
}

// Descriptor and port checks, rx counters, parse and ingress. Counts the drop if there is one.
function classify(m: Meta, off: u32, len: u32, p: u32): Reason {
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
  bump(Stat.RxPackets);
  bump(Stat.RxBytes, len);
  if (pt.state != STATE_UP) {
    drop(p, Reason.PortDown);
    return Reason.PortDown;
  }
  let r = parse(m);
  if (r == Reason.None) r = ingress(m, pt);
  if (r) drop(p, r);
  return r;
}
