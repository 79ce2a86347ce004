// The switch ports: a fixed array of records in linear memory, indexed by port number, sized at
// creation. A port belongs to one network; its VLAN mode decides which broadcast domains (network,
// VLAN) it is a member of. Hosts read the counters straight from these records (docs/ABI.md).
//
//   access port: untagged frames (or priority-tagged, VID 0) belong to the port's VLAN; any other
//                tagged frame is dropped; frames leave untagged.
//   trunk port:  tagged frames belong to their VID if it is the native VLAN or in the allowed list;
//                untagged frames belong to the native VLAN (unless the port drops untagged frames);
//                frames of the native VLAN leave untagged, all others tagged.
// VLAN 0 is the network's untagged domain: a network without VLANs uses only VLAN 0.
import { Reason } from "./reasons";
import * as arena from "./arena";

export const STATE_FREE: u8 = 0;
export const STATE_UP: u8 = 1;
export const STATE_DOWN: u8 = 2;
// The VXLAN underlay port (overlay.ts): up, but its frames are decapsulated instead of entering L2,
// and it is a member of no broadcast domain (isMember wants STATE_UP).
export const STATE_UNDERLAY: u8 = 3;

export const MODE_ACCESS: u8 = 0;
export const MODE_TRUNK: u8 = 1;

export const PORT_SPOOF_GUARD: u16 = 1;    // the source MAC must be guardMac
export const PORT_NO_LEARN: u16 = 2;       // never learn source MACs on this port
export const PORT_DROP_UNTAGGED: u16 = 4;  // trunk: untagged frames are dropped, not put in the native VLAN
export const PORT_FLAGS_ALL: u16 = 7;
// Set by the ACL calls, not by port_configure: the port's IP traffic goes through its ACL stage.
export const PORT_ACL: u16 = 8;
// Bits 8-12 of flags: the port's offload capabilities (port_set_offload; OFFLOAD_*), 0 = a plain port.
// The port's frames carry a vnet header (12 bytes, Linux's virtio_net_hdr_v1) in the rx and tx
// offload areas; the module hands it super-frames and partial checksums only as far as these allow.
export const PORT_CAPS_SHIFT: u32 = 8;
export const PORT_CAPS: u16 = 0x1f00;
export const OFFLOAD_CSUM: u32 = 1;
export const OFFLOAD_TSO4: u32 = 2;
export const OFFLOAD_TSO6: u32 = 4;
export const OFFLOAD_TSO_ECN: u32 = 8;
export const OFFLOAD_USO: u32 = 16;
export const OFFLOAD_ALL: u32 = 31;
// The offload capabilities in a port's flags.
@inline export function capsOf(flags: u32): u32 { return (flags & PORT_CAPS) >> PORT_CAPS_SHIFT; }

export const NO_LIMIT: u32 = 0xffffffff;

@unmanaged
export class Port {
  state: u8;        // 0: STATE_*
  mode: u8;         // 1: MODE_*
  flags: u16;       // 2: PORT_*; bits 8-12 the offload capabilities
  network: u16;     // 4
  vlan: u16;        // 6: access VLAN, or a trunk's native VLAN
  learnLimit: u32;  // 8: most MACs learned on this port (NO_LIMIT = none)
  learned: u32;     // 12: MACs currently learned on this port
  guardMac: u64;    // 16: the endpoint's MAC for the spoof guard (wire bytes, little-endian packed)
  rxPackets: u64;   // 24
  rxBytes: u64;     // 32
  txPackets: u64;   // 40
  txBytes: u64;     // 48
  dropped: u64;     // 56: frames received on this port and dropped, any reason
}

export const PORT_SIZE: usize = offsetof<Port>();
export const VLAN_BITMAP_BYTES: usize = 512;

export let maxPorts: u32 = 0;
export let portBase: usize = 0;
export let vlanBase: usize = 0;      // maxPorts bitmaps of 4096 bits: the trunk's allowed VLANs
export let portDropBase: usize = 0;  // maxPorts x Reason.Count u64 counters
export let highPort: u32 = 0;        // one past the highest port ever configured: bounds the flood loop

export function bytes(ports: u32): u64 {
  return arena.span(ports, PORT_SIZE) + arena.span(ports, VLAN_BITMAP_BYTES) + arena.span(ports, <u64>Reason.Count * 8);
}
export function alloc(ports: u32): void {
  maxPorts = ports;
  portBase = arena.take(ports, PORT_SIZE);
  vlanBase = arena.take(ports, VLAN_BITMAP_BYTES);
  portDropBase = arena.take(ports, <u64>Reason.Count * 8);
}

@inline export function port(i: u32): Port {
  return changetype<Port>(portBase + <usize>i * PORT_SIZE);
}

@inline export function vlanAllowed(i: u32, vid: u32): bool {
  let b = vlanBase + <usize>i * VLAN_BITMAP_BYTES + (vid >> 3);
  return (load<u8>(b) & (1 << (vid & 7))) != 0;
}

export function setVlanAllowed(i: u32, vid: u32, allowed: bool): void {
  let b = vlanBase + <usize>i * VLAN_BITMAP_BYTES + (vid >> 3);
  let bit = <u8>(<u32>1 << (vid & 7));
  store<u8>(b, allowed ? load<u8>(b) | bit : load<u8>(b) & ~bit);
}

export function hasVlans(i: u32): bool {
  let b = vlanBase + <usize>i * VLAN_BITMAP_BYTES;
  for (let o: usize = 0; o < VLAN_BITMAP_BYTES; o += 8) if (load<u64>(b + o) != 0) return true;
  return false;
}

export function clearVlans(i: u32): void {
  memory.fill(vlanBase + <usize>i * VLAN_BITMAP_BYTES, 0, VLAN_BITMAP_BYTES);
}

// Is port `i` a member of the broadcast domain (network, vlan)? The state and network as one test: a
// `||` would become a value V8 makes and then tests (tables/mac.ts find).
@inline export function isMember(pt: Port, i: u32, network: u32, vid: u32): bool {
  if (((<u32>pt.state ^ STATE_UP) | (<u32>pt.network ^ network)) != 0) return false;
  if (<u32>pt.vlan == vid) return true;
  return pt.mode == MODE_TRUNK && vlanAllowed(i, vid);
}
