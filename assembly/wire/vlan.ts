// IEEE 802.1Q tag: it sits where the EtherType was (TPID 0x8100) and carries the tag control
// information (PCP, DEI, VID) followed by the encapsulated EtherType. Offsets are from the frame start.
import { Reason } from "../reasons";
import { get16, set16 } from "./bytes";

export const TAG_LEN: u32 = 4;
export const TAGGED_HEADER_LEN: u32 = 18;
export const TPID: usize = 12;
export const TCI: usize = 14;
export const INNER_ETHERTYPE: usize = 16;

@inline export function check(len: u32): Reason {
  return len < TAGGED_HEADER_LEN ? Reason.VlanTruncated : Reason.None;
}
@inline export function tci(p: usize): u32 { return get16(p + TCI); }
@inline export function setTci(p: usize, v: u32): void { set16(p + TCI, v); }
@inline export function vid(p: usize): u32 { return get16(p + TCI) & 0x0fff; }
@inline export function pcp(p: usize): u32 { return get16(p + TCI) >> 13; }
@inline export function innerEthertype(p: usize): u32 { return get16(p + INNER_ETHERTYPE); }
