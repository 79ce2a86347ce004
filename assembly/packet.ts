// Per-packet metadata for one batch, as VPP keeps its buffer metadata: the stages of the pipeline read
// and write these fixed records instead of re-parsing the frame. One record per rx descriptor, in a
// fixed array allocated at creation (no allocation per packet). The layout is part of the ABI because
// frame_parse() exposes one record to the host as a dissector result.
import { Reason } from "./reasons";
import * as arena from "./arena";


export const FLAG_TAGGED: u32 = 1;        // the frame carries an 802.1Q tag on the wire
export const FLAG_FRAGMENT: u32 = 2;      // an IP fragment (IPv4 MF/offset, IPv6 Fragment header)
export const FLAG_LATER_FRAGMENT: u32 = 4; // a fragment other than the first: no L4 header
export const FLAG_GROUP_DST: u32 = 8;     // broadcast or multicast destination MAC
export const FLAG_FLOODED: u32 = 0x100;   // a copy was flooded to at least one port (the router need not account for it)
// A held fragment run again after its first fragment (tables/frag.ts): flowHash holds that first
// fragment's ports (sport << 16 | dport), srcHash its datagram's answer identification (frag.answer),
// and its byte range has already been noted.
export const FLAG_RELEASED: u32 = 0x200;
// Being flooded to several ports: an egress stage must not change the frame in place (nodes/gso.ts).
export const FLAG_FLOODING: u32 = 0x400;
// Decapsulated from the VXLAN underlay (nodes/vxlan.ts): never sent back into the overlay.
export const FLAG_TUNNEL: u32 = 0x800;

@unmanaged
export class Meta {
  frame: usize;     // 0: absolute address of the first byte of the frame
  len: u32;         // 4: frame length in bytes
  inPort: u32;      // 8: ingress port
  network: u32;     // 12: the ingress port's network
  vlan: u32;        // 16: the broadcast domain's VLAN (0 = the untagged domain)
  tci: u32;         // 20: the 802.1Q TCI on the wire, if FLAG_TAGGED
  ethertype: u32;   // 24: EtherType after any tag
  l3: u32;          // 28: offset of the L3 header from the frame start
  l4: u32;          // 32: offset of the L4 header (0 if none)
  l4len: u32;       // 36: bytes of L4 header and payload the IP header announces
  protocol: u32;    // 40: IP protocol / IPv6 upper-layer next header
  flags: u32;       // 44: FLAG_*
  reason: u32;      // 48: Reason, 0 while the packet is alive
  srcHash: u32;     // 52: MAC table hash of (network, vlan, source MAC)
  dstHash: u32;     // 56: MAC table hash of (network, vlan, destination MAC)
  untagged: usize;  // 60: the untagged variant of the frame in tx memory, once built (0 = not yet)
  retagged: usize;  // 64: the variant tagged with `vlan`, once built (0 = not yet)
  flowHash: u32;    // 68: conntrack key hash, when the first pass saw a routed TCP/UDP packet (0 = not)
  toRouter: u32;    // 72: router interface + 1 when the first pass saw it addressed to its gateway MAC
  parseReason: u8;  // 76: what the parse stage alone said (for the trace)
  // 80: the frame's offload state (nodes/vnet.ts), 0 for a plain frame: bits 0-7 the vnet header's
  // flags (NEEDS_CSUM), 8-15 its gso_type, 16-31 its gso_size. Set only for a port with offloads.
  vnet: u32;
  // 84: the connection the batch's touch pass found for flowHash, (record << 1 | direction) + 1, or 0:
  // a hint that ip4input checks against the record instead of probing the index again.
  flowRef: u32;
}

export const META_SIZE: usize = offsetof<Meta>();

export let metaBase: usize = 0;
// One more record after the batch's: the scratch record for frames the router builds itself.
export let scratchBase: usize = 0;
// The batch's records, the scratch record and the released fragment's.
export function bytes(batch: u32): u64 { return arena.span(<u64>batch + 2, META_SIZE); }
export function alloc(batch: u32): void {
  metaBase = arena.take(<u64>batch + 2, META_SIZE);
  scratchBase = metaBase + <usize>batch * META_SIZE;
}
@inline export function scratchMeta(): Meta { return changetype<Meta>(scratchBase); }
// And one for a held fragment run again (tables/frag.ts), which may itself make the router send.
@inline export function releasedMeta(): Meta { return changetype<Meta>(scratchBase + META_SIZE); }

@inline export function meta(i: u32): Meta {
  return changetype<Meta>(metaBase + <usize>i * META_SIZE);
}

@inline export function resetMeta(m: Meta, frame: usize, len: u32, port: u32): void {
  // Only what a stage may read before another writes it; the rest is written by parse and ingress.
  m.frame = frame;
  m.len = len;
  m.inPort = port;
  m.tci = 0;
  m.ethertype = 0;
  m.l3 = 0;
  m.l4 = 0;
  m.l4len = 0;
  m.protocol = 0;
  m.flags = 0;
  m.reason = Reason.None;
  m.dstHash = 0;
  m.untagged = 0;
  m.retagged = 0;
  m.flowHash = 0;
  m.toRouter = 0;
  m.vnet = 0;
  m.flowRef = 0;
}
