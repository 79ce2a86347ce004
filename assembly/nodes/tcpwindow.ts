// TCP sequence and window tracking for conntrack, after Linux's tcp_in_window
// (net/netfilter/nf_conntrack_proto_tcp.c, itself after Guido van Rooij's "Real Stateful TCP Packet
// Filtering in IP Filter") and Open vSwitch's lib/conntrack-tcp.c. A middlebox that checks only flags
// lets anyone who knows a connection's addresses and ports inject data or a RST into it; one that
// knows how far each side may send refuses what the receiver would never accept, and that is what
// stops blind injection across a NAT. Per direction (the sender of a segment; its receiver is the
// other direction) the connection record keeps:
//   end     the highest sequence number sent, plus its length (td_end)
//   maxend  the highest end the receiver's advertised window allows (td_maxend)
//   maxwin  the largest window the direction advertised, scaled (td_maxwin)
//   maxack  the highest ACK it sent (td_maxack, for the RST check in nodes/ct.ts)
//   a byte: its window scale (low 4 bits) and the flags below.
// A segment is checked with Linux's four bounds:
//   I.   seq <= sender.maxend                                   (else ct_tcp_out_of_window)
//   III. sack <= receiver.end        (it acknowledges only data sent; else ct_tcp_ack_out_of_window)
//   II.  seq + len >= sender.end - receiver.maxwin              (else ignored: an old retransmission)
//   IV.  sack >= receiver.end - max(sender.maxwin, 66000)        (else ignored: an overly delayed ACK)
// where sack is the highest SACK block edge when the receiver allowed SACK, else the ACK. As in
// Linux, a segment failing I or III is invalid (a counted drop), one failing II or IV passes but moves
// nothing ("ignore": it may be a real segment conntrack lost sync with, and the receiver will answer it
// with a RST or an ACK that brings conntrack back); a segment that overshoots I by at most the
// receiver's window, with everything else in order, is ignored as well (stacks that send a little past
// the window). The first SYN-ACK's ACK is checked by III: it must not acknowledge more than the SYN.
// Window scaling (RFC 7323) counts only when both SYN and SYN-ACK carried the option.
//
// Liberal (Linux's nf_conntrack_tcp_be_liberal; per conntrack zone here, and per connection for one
// picked up mid-stream): every segment that fails a bound passes, and only the RST check remains.
//
// What is not kept, and why: Linux's retransmission counter and "unacknowledged data" flag only shorten
// timeouts (5 min instead of the state's); its last-packet memory (last_seq, last_end…) resynchronises
// after SYNs it let through in states where netplane's state machine refuses them. The record has room
// for neither, and neither changes whether a segment in window passes.
import { Reason } from "../reasons";
import { get8, get16, get32 } from "../wire/bytes";
import * as tcp from "../wire/tcp";

// In the connection record (tables/flow.ts): direction d's fields at TD + 16 d, its byte at TDF + d.
export const TD: usize = 96;
export const TDF: usize = 32;
const END: usize = 0;
const MAXEND: usize = 4;
const MAXWIN: usize = 8;
const MAXACK: usize = 12;

export const SCALE_MASK: u8 = 0x0f;
export const TD_WSCALE: u8 = 0x10;   // its SYN carried the window scale option
export const TD_SACK: u8 = 0x20;     // its SYN carried SACK-permitted: its peer's SACK blocks count
export const TD_MAXACK: u8 = 0x40;   // maxack holds an ACK it sent
export const TD_LIBERAL: u8 = 0x80;  // picked up mid-stream: bounds are not enforced (Linux does the same)

// Results besides a Reason (an invalid segment): the segment passes and moves its connection, or it
// passes and moves nothing.
export const ACCEPT: u32 = 0;
export const IGNORE: u32 = 0xffff;

const MAXACKWINCONST: u32 = 66000;
const MAX_WSCALE: u32 = 14;
const OPT_WINDOW: u32 = 3;
const OPT_SACK_PERM: u32 = 4;
const OPT_SACK: u32 = 5;
// NOP, NOP, timestamp (kind 8, length 10): the options of almost every segment of a Linux peer.
const TIMESTAMP_ONLY: u32 = 0x0101080a;

@inline function before(a: u32, b: u32): bool { return <i32>(a - b) < 0; }
@inline function after(a: u32, b: u32): bool { return <i32>(b - a) < 0; }

// The sequence number after the segment: its data, plus one for a SYN and one for a FIN.
@inline export function segmentEnd(l4: usize, l4len: u32, f: u32): u32 {
  return tcp.seq(l4) + (l4len - tcp.headerLen(l4)) + (f & tcp.SYN ? 1 : 0) + (f & tcp.FIN ? 1 : 0);
}

// A new connection's first segment (Linux's tcp_new): a SYN starts the original direction's window
// from its sequence number and options; any other segment (loose pickup) starts it from what the
// segment shows, with SACK assumed and both directions liberal, since the window scale was in SYNs
// conntrack never saw.
export function start(r: usize, l4: usize, l4len: u32, f: u32): void {
  let end = segmentEnd(l4, l4len, f);
  let win = tcp.window(l4);
  let maxwin = win == 0 ? 1 : win;
  store<u32>(r + TD, end, END);
  store<u32>(r + TD, maxwin, MAXWIN);
  if (f & tcp.SYN) {
    store<u32>(r + TD, end, MAXEND);
    options(r, 0, l4);
  } else {
    store<u32>(r + TD, end + maxwin, MAXEND);
    store<u8>(r + TDF, TD_SACK | TD_LIBERAL);
    store<u8>(r + TDF, TD_SACK | TD_LIBERAL, 1);
  }
}

// The window scale and SACK-permitted options of a SYN or SYN-ACK into direction d's byte (the
// liberal flag is kept). Options were validated by wire/tcp.ts check(): every length is in bounds.
function options(r: usize, d: u32, l4: usize): void {
  let hl = tcp.headerLen(l4);
  if (hl <= tcp.MIN_LEN) return;
  let fl = <u32>load<u8>(r + TDF + d) & TD_LIBERAL;
  for (let o = tcp.firstOption(l4), e = l4 + hl; o != 0; o = tcp.nextOption(o, e)) {
    let k = get8(o), ol = get8(o + 1);
    if (k == OPT_SACK_PERM && ol == 2) fl |= TD_SACK;
    else if (k == OPT_WINDOW && ol == 3) {
      let s = get8(o + 2);
      fl = (fl & ~<u32>SCALE_MASK) | (s > MAX_WSCALE ? MAX_WSCALE : s) | TD_WSCALE;
    }
  }
  store<u8>(r + TDF + d, <u8>fl);
}

// The highest right edge of the segment's SACK blocks that is after `ack`, else `ack`.
function highestSack(l4: usize, ack: u32): u32 {
  let hl = tcp.headerLen(l4);
  if (hl - tcp.MIN_LEN == 12 && get32(l4 + tcp.MIN_LEN) == TIMESTAMP_ONLY) return ack;
  for (let o = tcp.firstOption(l4), e = l4 + hl; o != 0; o = tcp.nextOption(o, e)) {
    let ol = get8(o + 1);
    if (get8(o) == OPT_SACK && ol >= 10 && ((ol - 2) & 7) == 0) {
      for (let b = o + 2; b < o + ol; b += 8) {
        let edge = get32(b + 4);
        if (after(edge, ack)) ack = edge;
      }
      return ack;
    }
  }
  return ack;
}

// A SYN-ACK (or a SYN from the reply side, a simultaneous open) starts its direction's window; on
// the reply direction, scaling is dropped for both unless both SYNs asked for it (RFC 7323 §2.2).
function initSender(r: usize, d: u32, l4: usize, end: u32, win: u32): void {
  let s = r + TD + (<usize>d << 4);
  store<u32>(s, end, END);
  store<u32>(s, end, MAXEND);
  store<u32>(s, win == 0 ? 1 : win, MAXWIN);
  options(r, d, l4);
  if (d == 1) {
    let a = load<u8>(r + TDF), b = load<u8>(r + TDF, 1);
    if ((a & b & TD_WSCALE) == 0) {
      store<u8>(r + TDF, a & ~SCALE_MASK);
      store<u8>(r + TDF, b & ~SCALE_MASK, 1);
    }
  }
}

// Checks segment (l4, l4len, flags f) of direction d against the connection's windows and, if it is in
// window, records what it shows. `state` is the connection's TCP state before the segment (ct.State
// numbering: 1 SYN_SENT, 2 SYN_RECV). Returns ACCEPT, IGNORE or the Reason of an invalid segment; a
// liberal caller passes what is not ACCEPT as it is (and, as Linux, moves no window for it).
// Every established segment comes here: the rare cases (SYNs, a direction's first segment, no ACK, RST)
// are out of line.
@inline export function check(r: usize, d: u32, state: u32, l4: usize, l4len: u32, f: u32): u32 {
  let s = r + TD + (<usize>d << 4);
  let o = r + TD + (<usize>(d ^ 1) << 4);
  let seq = tcp.seq(l4);
  let ack = tcp.ack(l4);
  let win = tcp.window(l4);
  let hl = tcp.headerLen(l4);
  // A SYN and a FIN each take a sequence number (FIN is bit 0 of the flags, SYN bit 1).
  let end = seq + (l4len - hl) + (f & tcp.FIN) + ((f & tcp.SYN) >> 1);
  let sack = ack;
  // Here and below, each condition in its own if: a `&&` or `||` would become a value V8 makes and
  // then tests (tables/mac.ts find).
  if (hl > tcp.MIN_LEN) {
    if (load<u8>(r + TDF + (d ^ 1)) & TD_SACK) sack = highestSack(l4, ack);
  }
  if (f & tcp.SYN) {
    if (setup(r, d, state, l4, f, end, win, sack)) return ACCEPT;
  } else if (load<u32>(s, MAXWIN) == 0) {
    if (setup(r, d, state, l4, f, end, win, sack)) return ACCEPT;
  }

  let sEnd = load<u32>(s, END), sMaxend = load<u32>(s, MAXEND), sMaxwin = load<u32>(s, MAXWIN);
  let oEnd = load<u32>(o, END), oMaxend = load<u32>(o, MAXEND), oMaxwin = load<u32>(o, MAXWIN);
  if ((f & (tcp.ACKF | tcp.RST)) != tcp.ACKF) {
    // No ACK (or a RST with an empty one, as some stacks send): as if it acknowledged all it could.
    if ((f & tcp.ACKF) == 0 || ack == 0) {
      ack = oEnd;
      sack = oEnd;
    }
    if ((f & tcp.RST) != 0 && seq == 0 && state == 1) {
      seq = sEnd;                                // the RST a closed port answers a SYN with
      end = sEnd;
    }
  }
  let maxAck = oEnd - (sMaxwin > MAXACKWINCONST ? sMaxwin : MAXACKWINCONST) - 1;

  if (!before(seq, sMaxend + 1)) return overshoot(s, end, sEnd, sMaxend, oEnd, oMaxwin, sack, maxAck);
  if (!before(sack, oEnd + 1)) return <u32>Reason.CtTcpAckOutOfWindow;
  if (oMaxwin != 0) {
    if (!after(end, sEnd - oMaxwin - 1)) return IGNORE;
  }
  if (!after(sack, maxAck)) return IGNORE;

  // In window: what the segment shows about its sender...
  let sf = <u32>load<u8>(r + TDF + d);
  if ((f & tcp.SYN) == 0) win <<= sf & <u32>SCALE_MASK;
  let swin = win + (sack - ack);
  if (sMaxwin < swin) store<u32>(s, swin, MAXWIN);
  if (after(end, sEnd)) store<u32>(s, end, END);
  if (f & tcp.ACKF) {
    if ((sf & TD_MAXACK) == 0) {
      store<u32>(s, ack, MAXACK);
      store<u8>(r + TDF + d, <u8>(sf | TD_MAXACK));
    } else if (after(ack, load<u32>(s, MAXACK))) {
      store<u32>(s, ack, MAXACK);
    }
  }
  // ...and about what its receiver may send.
  if (oMaxwin != 0) {
    if (after(end, sMaxend)) store<u32>(o, oMaxwin + (end - sMaxend), MAXWIN);
  }
  if (after(sack + win, oMaxend - 1)) store<u32>(o, win == 0 ? sack + 1 : sack + win, MAXEND);
  return ACCEPT;
}

// A SYN, SYN-ACK or a direction's first segment: starts or restarts its direction's window. Returns
// true when the segment is accepted as it is (a SYN that only starts a window).
function setup(r: usize, d: u32, state: u32, l4: usize, f: u32, end: u32, win: u32, sack: u32): bool {
  let s = r + TD + (<usize>d << 4);
  let o = r + TD + (<usize>(d ^ 1) << 4);
  if (load<u32>(s, MAXWIN) == 0) {
    if (f & tcp.SYN) {
      initSender(r, d, l4, end, win);
      return (f & tcp.ACKF) == 0;                // the simultaneous open's SYN
    }
    // The direction's first segment is mid-stream (a connection picked up from the other side).
    let sw = win << (<u32>load<u8>(r + TDF + d) & SCALE_MASK);
    let mw = sw == 0 ? 1 : sw;
    store<u32>(s, end, END);
    store<u32>(s, mw, MAXWIN);
    store<u32>(s, end + mw, MAXEND);
    if (load<u32>(o, MAXWIN) == 0) {
      store<u32>(o, sack, END);
      store<u32>(o, sack, MAXEND);
    } else if (sack == load<u32>(o, END) + 1) {
      store<u32>(o, sack, END);                  // most likely the answer to a keepalive
    }
    return false;
  }
  if (after(end, load<u32>(s, END)) && (state == 1 || state == 2)) {
    // A SYN or SYN-ACK sent again with a later sequence number: the peer restarted the handshake.
    initSender(r, d, l4, end, win);
    return d == 1 && (f & tcp.ACKF) == 0;
  }
  return false;
}

// Bound I failed: the segment goes past what the receiver's window allows. By a little, with all else
// in order, it is ignored (stacks that send a little past the window: a later ACK of it must still be
// in window, so its end is kept); else it is invalid.
function overshoot(s: usize, end: u32, sEnd: u32, sMaxend: u32, oEnd: u32, oMaxwin: u32, sack: u32, maxAck: u32): u32 {
  let overshot = end - sMaxend + 1;
  if (oMaxwin != 0 && after(end, sEnd - oMaxwin - 1) && after(sack, maxAck) && overshot <= oMaxwin && before(sack, oEnd + 1)) {
    store<u32>(s, end, END);
    return IGNORE;
  }
  return <u32>Reason.CtTcpOutOfWindow;
}

// The RST check Linux makes before the window (tcp_packet, new state CLOSE): a RST whose sequence
// number is below the highest ACK its receiver sent is invalid (the receiver already acknowledged
// past it, so it can only be forged or stale). Returns Reason.None, the Reason, or KEEP_STATE: an
// established connection's RST that is in window but not exactly where the receiver expects it
// passes without closing the connection (RFC 5961: the receiver answers it with a challenge ACK).
export const KEEP_STATE: u32 = 0xfffe;
export function checkRst(r: usize, d: u32, l4: usize, established: bool): u32 {
  let o = r + TD + (<usize>(d ^ 1) << 4);
  if ((load<u8>(r + TDF + (d ^ 1)) & TD_MAXACK) == 0) return Reason.None;
  let seq = tcp.seq(l4);
  if (seq == 0 && !established) return Reason.None;
  let maxack = load<u32>(o, MAXACK);
  if (before(seq, maxack)) return Reason.CtTcpInvalidRst;
  if (!established || seq == maxack) return Reason.None;
  // Linux also closes on a RST that directly follows its sender's last segment ("a RST train");
  // without the last-segment memory, a RST at the sender's highest end stands for it.
  if (seq == load<u32>(r + TD + (<usize>d << 4), END)) return Reason.None;
  return KEEP_STATE;
}

// Linux's table of flag combinations a TCP may send (PSH, ECE and CWR aside: tcp_error()), as a bit
// set indexed by the flags byte's low six bits with PSH (8) cleared: SYN, SYN|URG, SYN|ACK, RST,
// RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG.
const VALID_FLAGS: u64 = (<u64>1 << 0x02) | (<u64>1 << 0x22) | (<u64>1 << 0x12) | (<u64>1 << 0x04) | (<u64>1 << 0x14) | (<u64>1 << 0x11) | (<u64>1 << 0x31) | (<u64>1 << 0x10) | (<u64>1 << 0x30);
@inline export function validFlags(f: u32): bool {
  return ((VALID_FLAGS >> <u64>(f & 0x37)) & 1) != 0;
}
