// ICMPv6 (RFC 4443) and the neighbour discovery messages the gateway answers (RFC 4861). Every message
// has at least type, code, checksum and four more bytes; the checksum covers an IPv6 pseudo-header.
import { Reason } from "../reasons";
import { get8, get16, set8, set16 } from "./bytes";

export const HEADER_LEN: u32 = 8;
export const TYPE: usize = 0;
export const CODE: usize = 1;
export const CHECKSUM: usize = 2;
export const IDENT: usize = 4;
export const SEQUENCE: usize = 6;

export const DEST_UNREACHABLE: u32 = 1;
export const PACKET_TOO_BIG: u32 = 2;
export const TIME_EXCEEDED: u32 = 3;
export const PARAMETER_PROBLEM: u32 = 4;
export const ECHO_REQUEST: u32 = 128;
export const ECHO_REPLY: u32 = 129;
export const ROUTER_SOLICITATION: u32 = 133;
export const ROUTER_ADVERTISEMENT: u32 = 134;
export const NEIGHBOR_SOLICITATION: u32 = 135;
export const NEIGHBOR_ADVERTISEMENT: u32 = 136;
export const REDIRECT: u32 = 137;

@inline export function check(len: u32): Reason {
  return len < HEADER_LEN ? Reason.Icmpv6Truncated : Reason.None;
}
@inline export function type(p: usize): u32 { return get8(p + TYPE); }
@inline export function setType(p: usize, v: u32): void { set8(p + TYPE, v); }
@inline export function code(p: usize): u32 { return get8(p + CODE); }
@inline export function checksum(p: usize): u32 { return get16(p + CHECKSUM); }
@inline export function setChecksum(p: usize, v: u32): void { set16(p + CHECKSUM, v); }
@inline export function ident(p: usize): u32 { return get16(p + IDENT); }
@inline export function isError(t: u32): bool { return t < 128; }
