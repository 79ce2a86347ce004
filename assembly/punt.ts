// The punt area: frames the dataplane hands to the host instead of handling them itself (DHCP to a
// server, DNS or other TCP/UDP to a gateway address, whatever leaves by a socket uplink: nodes/punt.ts
// decides which), as Open vSwitch's controller action
// and VPP's punt do. Like the tx side, it is filled during process() and read by the host after it
// returns; it is bounded and reset every batch, and running out is a counted drop (punt_queue_full),
// never an overwrite. The frame is copied (the rx buffer is the host's to reuse), as it arrived.
//
// Descriptor (16 bytes, little-endian): u32 address of the copy in linear memory, u16 length, u16
// ingress port, u16 punt reason (PuntReason), u16 router interface, u16 compartment (zone), u16 VLAN
// of the broadcast domain. docs/ABI.md "The punt area".
import * as arena from "./arena";

export const DESCRIPTOR_SIZE: usize = 16;
// Most punts per batch, and bytes of frame copies per punt slot (a longer frame may still fit when
// others are short: the buffer is shared). A whole batch can be punted: a socket uplink carries every
// segment of a guest's bulk transfer through here, and a batch cut short is a burst of losses that
// TCP pays for with retransmission timeouts.
export const MAX_DESCRIPTORS: u32 = 1024;
export const BYTES_PER_SLOT: u32 = 2048;

// Why a frame was punted: the host's dispatch key.
export const enum PuntReason {
  None = 0,
  Dhcp4 = 1,     // DHCPv4 client to server (UDP port 67)
  Dns = 2,       // DNS query to a gateway address (UDP or TCP port 53)
  Uplink = 3,    // routed out of a socket uplink interface, as it would have left (nodes/egress.ts)
  Host = 4,      // TCP or UDP to a gateway address that nothing else took, for the host's loopback
  Rs = 5,        // ICMPv6 router solicitation to ff02::2 or a gateway address
  Dhcp6 = 6,     // DHCPv6 client to server (UDP port 547) at ff02::1:2 or a gateway address
}

// Set in a descriptor's reason (bit 15) for a frame punted whole with its offload state: the 12 bytes
// before the frame are its virtio-net header (nodes/vnet.ts), as a port with offloads gets it.
export const REASON_VNET: u32 = 0x8000;
// The TCP super-frames the host takes whole in its uplink and host punts (punt_set_offload): the
// OFFLOAD_TSO4 and OFFLOAD_TSO6 bits of ports.ts. 0, the default: every punt is a plain frame.
export let takes: u32 = 0;

export let descBase: usize = 0;
export let descMax: u32 = 0;
export let count: u32 = 0;
export let bufBase: usize = 0;
export let bufSize: u32 = 0;
let bufUsed: u32 = 0;

export function capacityFor(batch: u32): u32 { return batch < MAX_DESCRIPTORS ? batch : MAX_DESCRIPTORS; }
// The frame copies' bytes: BYTES_PER_SLOT a descriptor, and at least what a batch can bring, so
// that a batch of super-frames punted whole (or cut into segments) always fits: the rx buffer with a
// vnet header and alignment a frame, at most a longest frame a descriptor.
const MOST_PER_FRAME: u64 = 65535 + 12 + 8;
function bufBytes(batch: u32, rxBytes: u32): u32 {
  let n = <u64>capacityFor(batch);
  let slots = n * <u64>BYTES_PER_SLOT;
  let whole = <u64>rxBytes + n * (12 + 8);
  if (whole > n * MOST_PER_FRAME) whole = n * MOST_PER_FRAME;
  return <u32>(slots > whole ? slots : whole);
}
export function bytes(batch: u32, rxBytes: u32): u64 {
  let n = capacityFor(batch);
  return arena.span(n, DESCRIPTOR_SIZE) + arena.span(<u64>bufBytes(batch, rxBytes), 1);
}
export function alloc(batch: u32, rxBytes: u32): void {
  descMax = capacityFor(batch);
  descBase = arena.take(descMax, DESCRIPTOR_SIZE);
  bufSize = bufBytes(batch, rxBytes);
  bufBase = arena.take(bufSize, 1);
}

@inline export function reset(): void {
  count = 0;
  bufUsed = 0;
}

// Copies the frame in with its descriptor. False when the area is full (the caller counts the drop).
export function put(frame: usize, len: u32, inPort: u32, reason: u32, ifIndex: u32, zone: u32, vlan: u32): bool {
  let p = reserve(len, inPort, reason, ifIndex, zone, vlan);
  if (p == 0) return false;
  memory.copy(p, frame, len);
  return true;
}

// A descriptor for a frame of `len` bytes preceded by a `hdr`-byte header (a vnet header: the caller
// sets REASON_VNET in `reason`), and room for both; the address of the header, 0 when the area is full.
// The descriptor names the frame, after its header.
export function reserveWithHeader(hdr: u32, len: u32, inPort: u32, reason: u32, ifIndex: u32, zone: u32, vlan: u32): usize {
  let h = reserve(hdr + len, inPort, reason, ifIndex, zone, vlan);
  if (h == 0) return 0;
  let d = descBase + <usize>(count - 1) * DESCRIPTOR_SIZE;
  store<u32>(d, <u32>(h + hdr));
  store<u16>(d, <u16>len, 4);
  return h;
}

// A descriptor and room for a frame of `len` bytes that the caller writes (nodes/gso.ts builds
// segments there); 0 when the area is full.
export function reserve(len: u32, inPort: u32, reason: u32, ifIndex: u32, zone: u32, vlan: u32): usize {
  let need = (len + 7) & ~7;
  if (count >= descMax || bufUsed + need > bufSize) return 0;
  let p = bufBase + bufUsed;
  bufUsed += need;
  let d = descBase + <usize>count * DESCRIPTOR_SIZE;
  store<u32>(d, <u32>p);
  store<u16>(d, <u16>len, 4);
  store<u16>(d, <u16>inPort, 6);
  store<u16>(d, <u16>reason, 8);
  store<u16>(d, <u16>ifIndex, 10);
  store<u16>(d, <u16>zone, 12);
  store<u16>(d, <u16>vlan, 14);
  count++;
  return p;
}
