// ARP for IPv4 over Ethernet (RFC 826). Only that combination is meaningful to this switch, so the
// check rejects any other hardware/protocol type or address length as malformed.
import { Reason } from "../reasons";
import { get16, set16, get32, set32 } from "./bytes";

export const LEN: u32 = 28;
export const HTYPE: usize = 0;
export const PTYPE: usize = 2;
export const HLEN: usize = 4;
export const PLEN: usize = 5;
export const OPER: usize = 6;
export const SHA: usize = 8;
export const SPA: usize = 14;
export const THA: usize = 18;
export const TPA: usize = 24;

export const OP_REQUEST: u32 = 1;
export const OP_REPLY: u32 = 2;

export function check(p: usize, len: u32): Reason {
  if (len < LEN) return Reason.ArpTruncated;
  if (get16(p + HTYPE) != 1 || get16(p + PTYPE) != 0x0800) return Reason.ArpMalformed;
  if (load<u8>(p + HLEN) != 6 || load<u8>(p + PLEN) != 4) return Reason.ArpMalformed;
  return Reason.None;
}
@inline export function oper(p: usize): u32 { return get16(p + OPER); }
@inline export function setOper(p: usize, v: u32): void { set16(p + OPER, v); }
@inline export function spa(p: usize): u32 { return get32(p + SPA); }
@inline export function setSpa(p: usize, v: u32): void { set32(p + SPA, v); }
@inline export function tpa(p: usize): u32 { return get32(p + TPA); }
@inline export function setTpa(p: usize, v: u32): void { set32(p + TPA, v); }
