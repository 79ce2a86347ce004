// Stage: connection tracking state. Given a packet's connection and direction, moves the connection's
// state machine and sets when it expires. TCP follows the states of RFC 9293 as a middlebox sees
// them (both directions observed): SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
// TIME_WAIT, CLOSE, with RST closing from any state; a segment that makes no sense in the current
// state is an invalid transition, counted and dropped. UDP, ICMP echo and other protocols are
// unreplied until a packet flows the other way. Timeouts are per state, configurable, and compared
// with the `now` the host passes in.
import * as arena from "../arena";
import * as flow from "../tables/flow";
import * as tcp from "../wire/tcp";
import * as trace from "../trace";
import { bump, Stat } from "../counters";

export const enum State {
  None = 0,
  TcpSynSent, TcpSynRecv, TcpEstablished, TcpFinWait, TcpCloseWait, TcpLastAck, TcpTimeWait, TcpClose,
  UdpUnreplied, UdpReplied,
  IcmpUnreplied, IcmpReplied,
  OtherUnreplied, OtherReplied,
  Count,
}

const STATE_NAMES: StaticArray<string> = [
  "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE",
  "UDP_UNREPLIED", "UDP_REPLIED", "ICMP_UNREPLIED", "ICMP_REPLIED", "OTHER_UNREPLIED", "OTHER_REPLIED",
];
export function stateName(s: u32): string { return s < <u32>STATE_NAMES.length ? unchecked(STATE_NAMES[s]) : "unknown"; }

// Timeouts in ms, per state. Defaults: Open vSwitch's for opening and established TCP (30 s, 24 h),
// Linux's for the closing states and for UDP and ICMP.
export let timeoutBase: usize = 0;
export function timeoutBytes(): u64 { return arena.span(<u64>State.Count, 4); }
export function allocTimeouts(): void {
  timeoutBase = arena.take(<u64>State.Count, 4);
  setDefaults();
}
export function setDefaults(): void {
  const d: StaticArray<u32> = [
    30_000,                       // None (not used)
    30_000, 30_000, 86_400_000,   // SYN_SENT, SYN_RECV, ESTABLISHED
    120_000, 60_000, 30_000,      // FIN_WAIT, CLOSE_WAIT, LAST_ACK
    120_000, 10_000,              // TIME_WAIT, CLOSE
    30_000, 120_000,              // UDP unreplied, replied
    30_000, 30_000,               // ICMP
    60_000, 120_000,              // other
  ];
  for (let i = 0; i < <i32>State.Count; i++) store<u32>(timeoutBase + (<usize>i << 2), unchecked(d[i]));
}
@inline export function timeout(s: u32): u32 { return load<u32>(timeoutBase + (<usize>s << 2)); }

// TCP "FIN seen" bits in the record's tcp-flags-seen byte.
const FIN_ORIG: u8 = 1;
const FIN_REPLY: u8 = 2;

// The state a new connection starts in, or None if this packet cannot start one (TCP without a lone
// SYN: a connection must be seen from its start to be tracked, and NAT needs that anyway).
export function initialState(proto: u32, tcpFlags: u32): State {
  if (proto == 6) {
    return (tcpFlags & (tcp.SYN | tcp.ACKF | tcp.RST | tcp.FIN)) == tcp.SYN ? State.TcpSynSent : State.None;
  }
  if (proto == 17) return State.UdpUnreplied;
  if (proto == 1 || proto == 58) return State.IcmpUnreplied;
  return State.OtherUnreplied;
}

// Applies one packet (direction `dir`: 0 original, 1 reply) to connection record r. Returns false for
// an invalid TCP transition (the packet is dropped; the connection is left as it was).
export function update(r: usize, proto: u32, dir: u32, tcpFlags: u32, now: u32): bool {
  let s = <u32>load<u8>(r, 27);
  let ns = s;
  let flags = load<u8>(r, 28);
  if (dir == 1 && (flags & flow.CT_SEEN_REPLY) == 0) flags |= flow.CT_SEEN_REPLY;
  if (proto == 6) {
    ns = tcpNext(r, s, dir, tcpFlags);
    if (ns == State.None) return false;
    if (ns == State.TcpEstablished) flags |= flow.CT_ASSURED;
  } else if (dir == 1) {
    if (s == State.UdpUnreplied) { ns = State.UdpReplied; flags |= flow.CT_ASSURED; }
    else if (s == State.IcmpUnreplied) ns = State.IcmpReplied;
    else if (s == State.OtherUnreplied) { ns = State.OtherReplied; flags |= flow.CT_ASSURED; }
  }
  store<u8>(r, <u8>ns, 27);
  store<u8>(r, flags, 28);
  store<u32>(r, now, 32);
  store<u32>(r, now + timeout(ns), 36);
  return true;
}

function tcpNext(r: usize, s: u32, dir: u32, f: u32): u32 {
  if (f & tcp.RST) return State.TcpClose;
  let syn = (f & tcp.SYN) != 0, ack = (f & tcp.ACKF) != 0, fin = (f & tcp.FIN) != 0;
  let seen = load<u8>(r, 29);
  switch (s) {
    case State.TcpSynSent: {
      if (dir == 0) return syn && !ack ? s : State.None;         // a retransmitted SYN
      return syn && ack ? State.TcpSynRecv : State.None;          // the SYN-ACK
    }
    case State.TcpSynRecv: {
      if (syn) return (dir == 1 && ack) || (dir == 0 && !ack) ? s : State.None; // retransmissions
      if (dir == 0 && fin) { store<u8>(r, seen | FIN_ORIG, 29); return State.TcpFinWait; }
      return ack && dir == 0 ? State.TcpEstablished : s;
    }
    case State.TcpEstablished: {
      if (syn) return State.None;
      if (fin) {
        store<u8>(r, seen | (dir == 0 ? FIN_ORIG : FIN_REPLY), 29);
        return dir == 0 ? State.TcpFinWait : State.TcpCloseWait;
      }
      return s;
    }
    case State.TcpFinWait:
    case State.TcpCloseWait: {
      if (syn) return State.None;
      if (fin) {
        let both = seen | (dir == 0 ? FIN_ORIG : FIN_REPLY);
        store<u8>(r, both, 29);
        if ((both & (FIN_ORIG | FIN_REPLY)) == (FIN_ORIG | FIN_REPLY)) return State.TcpLastAck;
      }
      return s;
    }
    case State.TcpLastAck: {
      if (syn) return State.None;
      return ack && !fin ? State.TcpTimeWait : s;
    }
    case State.TcpTimeWait:
    case State.TcpClose: {
      // Only a new SYN (handled by the caller as a new connection) or stray ACKs/FINs arrive here.
      return syn ? State.None : s;
    }
  }
  return State.None;
}

// TIME_WAIT or CLOSE with a new SYN from the original side: the caller releases the old connection
// and starts a new one (the 4-tuple is reused, as by a client reconnecting from the same port).
@inline export function reopens(r: usize, dir: u32, tcpFlags: u32): bool {
  let s = <u32>load<u8>(r, 27);
  return (s == State.TcpTimeWait || s == State.TcpClose) && dir == 0 &&
    (tcpFlags & (tcp.SYN | tcp.ACKF)) == tcp.SYN;
}

// A connection lookup's result (0: none) unless the connection has expired, which is removed (counted)
// and gives 0. The sweep reaches an expired record only later, so every lookup that decides whether a
// tuple is in use (a packet's connection, NAT's free reply tuple, an ICMP error's related connection)
// goes through here: as in Linux, an expired connection holds nothing.
@inline export function alive(v: u32, now: u32): u32 {
  if (v == 0) return 0;
  let ri = (v - 1) >> 1;
  if (flow.expired(flow.rec(ri), now)) {
    flow.release(ri);
    bump(Stat.CtExpired);
    return 0;
  }
  return v;
}

// A connection lookup's result (0: none) if the connection is still alive for this packet: an expired
// one is removed (counted), and so is one in TIME_WAIT or CLOSE that a new SYN reopens; 0 then.
export function live(v: u32, proto: u32, tcpFlags: u32, now: u32): u32 {
  v = alive(v, now);
  if (v == 0) return 0;
  let ri = (v - 1) >> 1;
  let r = flow.rec(ri);
  if (proto == 6 && reopens(r, (v - 1) & 1, tcpFlags)) {
    flow.release(ri);
    return 0;
  }
  return v;
}

// update() for a hit, noted in the trace.
export function hit(r: usize, ri: u32, proto: u32, dir: u32, tcpFlags: u32, now: u32): bool {
  let ok = update(r, proto, dir, tcpFlags, now);
  trace.note(trace.Step.Conntrack, 1, ri, dir, <u32>load<u8>(r, 27));
  return ok;
}

// A record for a new connection: a free one, else one freed by early drop (counted), looking at up to
// EVICT_SCAN records; -1 when none can be freed (the table is full of assured connections).
const EVICT_SCAN: u32 = 64;
export function take(now: u32): i32 {
  let ri = flow.take();
  if (ri >= 0) return ri;
  if (!flow.evictOne(now, EVICT_SCAN)) return -1;
  bump(Stat.CtEarlyDrop);
  return flow.take();
}
