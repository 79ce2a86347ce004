// Network byte order loads and stores. Every header view in this folder reads through these, after its
// own length check, so the byte-order handling lives in one place.

// A 16-bit byte swap in three instructions where V8 makes bswap<u16> five: x * 0x10001 holds x twice,
// and its bits 8..23 are x's two bytes swapped.
@inline export function swap16(x: u32): u32 { return (((x & 0xffff) * 0x10001) >>> 8) & 0xffff; }

@inline export function get8(p: usize): u32 { return <u32>load<u8>(p); }
@inline export function get16(p: usize): u32 { return swap16(<u32>load<u16>(p)); }
@inline export function get32(p: usize): u32 { return bswap<u32>(load<u32>(p)); }
@inline export function set8(p: usize, v: u32): void { store<u8>(p, <u8>v); }
@inline export function set16(p: usize, v: u32): void { store<u16>(p, <u16>swap16(v)); }
@inline export function set32(p: usize, v: u32): void { store<u32>(p, bswap<u32>(v)); }
// Whether any bit of `mask` is set in the 16-bit field at p: the mask swapped (a constant, folded),
// not the field.
@inline export function any16(p: usize, mask: u32): bool { return (<u32>load<u16>(p) & swap16(mask)) != 0; }

// A MAC address as the dataplane keys it: its six bytes in wire order, packed little-endian into the low
// 48 bits of a u64 (so byte 0 of the address is the lowest byte). Hosts see the same six bytes in memory.
@inline export function loadMac(p: usize): u64 {
  return <u64>load<u32>(p) | (<u64>load<u16>(p, 4) << 32);
}
@inline export function storeMac(p: usize, mac: u64): void {
  store<u32>(p, <u32>mac);
  store<u16>(p, <u16>(mac >> 32), 4);
}
// The group bit: the least significant bit of the first byte (broadcast and multicast).
@inline export function isGroupMac(mac: u64): bool { return (mac & 1) != 0; }
