// TCP header (RFC 9293). `check` validates the data offset and walks the options with the same rules as
// IPv4 options (End, NOP, then kind/length with 2 <= length <= what is left), so nothing after it can read
// outside the segment.
import { Reason } from "../reasons";
import { get8, get16, get32, set16, set32 } from "./bytes";

export const MIN_LEN: u32 = 20;
export const SRC_PORT: usize = 0;
export const DST_PORT: usize = 2;
export const SEQ: usize = 4;
export const ACK: usize = 8;
export const DATA_OFFSET: usize = 12;
export const FLAGS: usize = 13;
export const WINDOW: usize = 14;
export const CHECKSUM: usize = 16;
export const URGENT: usize = 18;

export const FIN: u32 = 0x01;
export const SYN: u32 = 0x02;
export const RST: u32 = 0x04;
export const PSH: u32 = 0x08;
export const ACKF: u32 = 0x10;
export const URG: u32 = 0x20;

@inline export function check(p: usize, len: u32): Reason {
  if (len < MIN_LEN) return Reason.TcpTruncated;
  let hl = (get8(p + DATA_OFFSET) >> 4) << 2;
  if (hl - MIN_LEN > len - MIN_LEN) return Reason.TcpBadDataOffset; // MIN_LEN <= hl <= len, unsigned
  if (hl > MIN_LEN) return checkOptions(p + MIN_LEN, hl - MIN_LEN);
  return Reason.None;
}

// The options of a segment check() accepted, one at a time: the address of the first option after
// any NOPs, then of the next; 0 at End of options, at the end of the header, or at an option whose
// length does not fit (check() refuses those, so only a header it did not see has one).
//   for (let o = tcp.firstOption(p), e = p + tcp.headerLen(p); o != 0; o = tcp.nextOption(o, e))
@inline export function firstOption(p: usize): usize { return optionAt(p + MIN_LEN, p + headerLen(p)); }
@inline export function nextOption(o: usize, end: usize): usize { return optionAt(o + get8(o + 1), end); }
function optionAt(o: usize, end: usize): usize {
  while (o < end) {
    let k = get8(o);
    if (k == 0) return 0;
    if (k != 1) {
      if (o + 1 >= end) return 0;
      let ol = get8(o + 1);
      return ol < 2 || o + ol > end ? 0 : o;
    }
    o++;
  }
  return 0;
}

function checkOptions(p: usize, len: u32): Reason {
  let i: u32 = 0;
  while (i < len) {
    let k = get8(p + i);
    if (k == 0) return Reason.None;
    if (k == 1) { i++; continue; }
    if (i + 1 >= len) return Reason.TcpBadOption;
    let ol = get8(p + i + 1);
    if (ol < 2 || i + ol > len) return Reason.TcpBadOption;
    i += ol;
  }
  return Reason.None;
}

@inline export function srcPort(p: usize): u32 { return get16(p + SRC_PORT); }
@inline export function setSrcPort(p: usize, v: u32): void { set16(p + SRC_PORT, v); }
@inline export function dstPort(p: usize): u32 { return get16(p + DST_PORT); }
@inline export function setDstPort(p: usize, v: u32): void { set16(p + DST_PORT, v); }
@inline export function seq(p: usize): u32 { return get32(p + SEQ); }
@inline export function setSeq(p: usize, v: u32): void { set32(p + SEQ, v); }
@inline export function ack(p: usize): u32 { return get32(p + ACK); }
@inline export function setAck(p: usize, v: u32): void { set32(p + ACK, v); }
@inline export function headerLen(p: usize): u32 { return (get8(p + DATA_OFFSET) >> 4) << 2; }
@inline export function flags(p: usize): u32 { return get8(p + FLAGS); }
@inline export function window(p: usize): u32 { return get16(p + WINDOW); }
@inline export function checksum(p: usize): u32 { return get16(p + CHECKSUM); }
@inline export function setChecksum(p: usize, v: u32): void { set16(p + CHECKSUM, v); }
