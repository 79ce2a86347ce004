// Frames the router sends on its own (ARP replies and requests, ICMP errors, echo replies) are built
// in tx memory and leave through the same L2 forwarding as everything else, from a scratch packet
// record that belongs to no ingress port.
import { Meta, scratchMeta, FLAG_FLOODED } from "../packet";
import * as trace from "../trace";
import { l2forward, dstHash, NO_PORT } from "./l2forward";
import * as tx from "../tx";
import { drop } from "../counters";
import { Reason } from "../reasons";
import { Iface } from "../router";
import { storeMac, set16 } from "../wire/bytes";

export const GENERATED_PORT: u32 = 0xffff;

// Room for a frame of `len` bytes that the router builds, or 0 (counted as tx_buffer_full against
// `inPort`).
export function newFrame(len: u32, inPort: u32): usize {
  let p = tx.reserve(len);
  if (p == 0) drop(inPort, Reason.TxBufferFull);
  return p;
}

// Writes an untagged Ethernet header from interface f to `dst`.
export function ethHeader(p: usize, dst: u64, f: Iface, ethertype: u32): void {
  storeMac(p, dst);
  storeMac(p + 6, f.mac);
  set16(p + 12, ethertype);
}

// Sends a router-built untagged frame into interface f's domain.
export function sendFromRouter(p: usize, len: u32, f: Iface, now: u32): void {
  let m = scratchMeta();
  m.frame = p;
  m.len = len;
  m.inPort = GENERATED_PORT;
  m.network = <u32>f.network;
  m.vlan = <u32>f.vlan;
  m.tci = 0;
  m.flags = 0;
  m.untagged = 0;
  m.retagged = 0;
  m.ethertype = 0;
  m.dstHash = dstHash(m);
  l2forward(m, now, NO_PORT);
}

// The router's verdict on a frame it takes without answering (a neighbour advertisement, a solicitation
// for another address, a malformed one...): a drop under `r`, unless the frame was a multicast or
// broadcast the switch also flooded to some port, which is then where it went: the verdict is only
// traced (step local, a 0), so that every frame is forwarded, answered or dropped exactly once.
export function unanswered(m: Meta, r: Reason): void {
  if (m.flags & FLAG_FLOODED) trace.note(trace.Step.Local, 0, <u32>r, 0, 0);
  else drop(m.inPort, r);
}
