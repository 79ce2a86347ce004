// Ethernet II header: destination, source, EtherType. Frames arrive without preamble or FCS.
import { Reason } from "../reasons";
import { get16, set16 } from "./bytes";

export const HEADER_LEN: u32 = 14;
export const DST: usize = 0;
export const SRC: usize = 6;
export const ETHERTYPE: usize = 12;

export const TYPE_IPV4: u32 = 0x0800;
export const TYPE_ARP: u32 = 0x0806;
export const TYPE_VLAN: u32 = 0x8100;
export const TYPE_IPV6: u32 = 0x86dd;

@inline export function check(len: u32): Reason {
  return len < HEADER_LEN ? Reason.EthTruncated : Reason.None;
}
@inline export function ethertype(p: usize): u32 { return get16(p + ETHERTYPE); }
@inline export function setEthertype(p: usize, v: u32): void { set16(p + ETHERTYPE, v); }
