// The tx side of a batch: descriptors the host reads after process() returns, and a scratch area for
// frames the dataplane had to rewrite (a VLAN tag pushed or popped). Frames that leave unchanged are
// not copied: their descriptor points at the rx buffer. Both areas are bounded and reset every batch;
// running out is a counted drop, never an overwrite.
//
// Descriptor (8 bytes, little-endian): u32 address of the frame in linear memory, u16 length, u16 port.
import * as arena from "./arena";
import { Reason } from "./reasons";
import { drop } from "./counters";
import * as counters from "./counters";
import { port } from "./ports";

export const DESCRIPTOR_SIZE: usize = 8;

export let descBase: usize = 0;
export let descMax: u32 = 0;
export let count: u32 = 0;
export let bufBase: usize = 0;
export let bufSize: u32 = 0;
let bufUsed: u32 = 0;

// The tx vnet headers (12 bytes), one per descriptor, written for ports with offloads (nodes/gso.ts).
export const OFFLOAD_SIZE: usize = 12;
export let offBase: usize = 0;

export function bytes(descriptors: u32, buffer: u32): u64 {
  return arena.span(descriptors, DESCRIPTOR_SIZE) + arena.span(descriptors, OFFLOAD_SIZE) + arena.span(buffer, 1);
}
export function alloc(descriptors: u32, buffer: u32): void {
  descMax = descriptors;
  descBase = arena.take(descriptors, DESCRIPTOR_SIZE);
  offBase = arena.take(descriptors, OFFLOAD_SIZE);
  bufSize = buffer;
  bufBase = arena.take(buffer, 1);
}

// Keeps the first n descriptors (nodes/gro.ts, after merging some).
@inline export function truncate(n: u32): void { count = n; }

@inline export function reset(): void {
  count = 0;
  bufUsed = 0;
}

// Bytes left in the scratch area.
@inline export function room(): u32 { return bufSize - bufUsed; }

// Room for a rewritten frame of `len` bytes, or 0 (the caller counts TxBufferFull).
export function reserve(len: u32): usize {
  // Keep every frame 8-byte aligned so word-wise copies into it stay aligned.
  let need = (len + 7) & ~7;
  if (bufUsed + need > bufSize) return 0;
  let p = bufBase + bufUsed;
  bufUsed += need;
  return p;
}

// Queues a frame on an egress port. Returns false (and counts the drop against the ingress port) when
// the descriptor ring is full.
@inline export function emit(outPort: u32, frame: usize, len: u32, inPort: u32): bool {
  if (count >= descMax) {
    drop(inPort, Reason.TxDescriptorsFull);
    return false;
  }
  let d = descBase + <usize>count * DESCRIPTOR_SIZE;
  store<u32>(d, <u32>frame);
  store<u16>(d, <u16>len, 4);
  store<u16>(d, <u16>outPort, 6);
  count++;
  let pt = port(outPort);
  pt.txPackets += 1;
  pt.txBytes += len;
  counters.batchTxPackets += 1;
  counters.batchTxBytes += len;
  return true;
}
