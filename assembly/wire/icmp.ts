// ICMPv4 (RFC 792): type, code, checksum and four type-specific bytes (identifier and sequence for
// echo; unused or next-hop MTU for errors, which then carry the offending IP header and 8 bytes).
import { Reason } from "../reasons";
import { get8, get16, set8, set16 } from "./bytes";

export const HEADER_LEN: u32 = 8;
export const TYPE: usize = 0;
export const CODE: usize = 1;
export const CHECKSUM: usize = 2;
export const IDENT: usize = 4;
export const SEQUENCE: usize = 6;

export const ECHO_REPLY: u32 = 0;
export const DEST_UNREACHABLE: u32 = 3;
export const FRAGMENTATION_NEEDED: u32 = 4; // a code of DEST_UNREACHABLE (RFC 792, RFC 1191: with the next-hop MTU)
export const ECHO_REQUEST: u32 = 8;
export const TIME_EXCEEDED: u32 = 11;
export const PARAMETER_PROBLEM: u32 = 12;

@inline export function check(len: u32): Reason {
  return len < HEADER_LEN ? Reason.IcmpTruncated : Reason.None;
}
@inline export function type(p: usize): u32 { return get8(p + TYPE); }
@inline export function setType(p: usize, v: u32): void { set8(p + TYPE, v); }
@inline export function code(p: usize): u32 { return get8(p + CODE); }
@inline export function setCode(p: usize, v: u32): void { set8(p + CODE, v); }
@inline export function checksum(p: usize): u32 { return get16(p + CHECKSUM); }
@inline export function setChecksum(p: usize, v: u32): void { set16(p + CHECKSUM, v); }
@inline export function ident(p: usize): u32 { return get16(p + IDENT); }
@inline export function setIdent(p: usize, v: u32): void { set16(p + IDENT, v); }
@inline export function sequence(p: usize): u32 { return get16(p + SEQUENCE); }
@inline export function isError(t: u32): bool {
  return t == DEST_UNREACHABLE || t == TIME_EXCEEDED || t == PARAMETER_PROBLEM || t == 4 || t == 5;
}
