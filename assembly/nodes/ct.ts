// Stage: connection tracking state. Given a packet's connection and direction, moves the connection's
// state machine and sets when it expires. TCP follows the states of RFC 9293 as a middlebox sees
// them (both directions observed): SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
// TIME_WAIT, CLOSE, with RST closing from any state; a segment that makes no sense in the current
// state is an invalid transition, counted and dropped. Within its state, a segment must also be in
// its connection's windows (nodes/tcpwindow.ts: Linux's tcp_in_window) and a RST exactly where its
// receiver expects it. UDP, ICMP echo and other protocols are unreplied until a packet flows the
// other way. Timeouts are per state, configurable, and compared with the `now` the host passes in.
//
// A TCP connection normally starts with a SYN. As Linux does (nf_conntrack_tcp_loose, on by default),
// a zone may also pick one up mid-stream from a plain ACK segment: that is how connections survive a
// restart of the dataplane, which forgets them all. A picked-up connection is ESTABLISHED but tracked
// liberally (its window scale was in SYNs never seen), not assured and on a short timeout until its
// other side answers. RST and FIN segments never start one (they end connections; Linux agrees).
// Per zone: ZONE_LIBERAL (every bound passes but the RST check; Linux's nf_conntrack_tcp_be_liberal)
// and ZONE_NO_PICKUP (only a SYN starts a connection).
import * as arena from "../arena";
import * as flow from "../tables/flow";
import * as tcp from "../wire/tcp";
import * as trace from "../trace";
import * as win from "./tcpwindow";
import { Reason } from "../reasons";
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

// Per conntrack zone (the 15-bit zone, either family): ZONE_* flags, 0 by default.
export const ZONE_LIBERAL: u8 = 1;
export const ZONE_NO_PICKUP: u8 = 2;
export const ZONES: u32 = 0x8000;
export let zoneBase: usize = 0;
export function zoneBytes(): u64 { return arena.span(<u64>ZONES, 1); }
export function allocZones(): void {
  zoneBase = arena.take(<u64>ZONES, 1);
  // A port's ACL zone (nodes/acl.ts) picks nothing up unless told: its ACL decides on a connection's
  // first packet by that packet's direction, and mid-stream the side that opened it is unknown, so a
  // pickup would let the side whose direction allows re-open what the other side's rules refused
  // (a connection a new Block just cut, say).
  memory.fill(zoneBase + ACL_ZONE_BASE, ZONE_NO_PICKUP, <usize>ZONES - ACL_ZONE_BASE);
}
const ACL_ZONE_BASE: usize = 1024;
@inline export function zoneFlags(zone: u32): u32 { return <u32>load<u8>(zoneBase + <usize>(zone & (ZONES - 1))); }

// A picked-up connection's timeout until its other side answers: Linux's (its UNACK timeout).
const PICKUP_UNREPLIED_MS: u32 = 300_000;

// TCP "FIN seen" bits in the record's tcp-flags-seen byte.
const FIN_ORIG: u8 = 1;
const FIN_REPLY: u8 = 2;

// The state a new connection starts in, or None if this packet cannot start one: a lone SYN, or in a
// zone that picks connections up, a plain ACK segment (with or without data).
export function initialState(proto: u32, tcpFlags: u32, zone: u32): State {
  if (proto == 6) {
    if (!win.validFlags(tcpFlags)) return State.None;
    let f = tcpFlags & (tcp.SYN | tcp.ACKF | tcp.RST | tcp.FIN);
    if (f == tcp.SYN) return State.TcpSynSent;
    if (f == tcp.ACKF && (zoneFlags(zone) & ZONE_NO_PICKUP) == 0) return State.TcpEstablished;
    return State.None;
  }
  if (proto == 17) return State.UdpUnreplied;
  if (proto == 1 || proto == 58) return State.IcmpUnreplied;
  return State.OtherUnreplied;
}

// A new connection's first packet (direction 0), after its record is committed: starts a TCP
// connection's windows (tcpwindow.start), then applies the packet as any other. l4 is the transport
// header, l4len its length with the payload.
export function start(r: usize, proto: u32, l4: usize, l4len: u32, now: u32): void {
  if (proto == 6) {
    let f = <u32>load<u8>(l4, 13);
    win.start(r, l4, l4len, f);
    if ((f & tcp.SYN) == 0) bump(Stat.CtTcpPickups);
  }
  update(r, proto, 0, l4, l4len, now);
}

// Distributed routing over the overlay (nodes/vxlan.ts): every host runs the same gateway, so a
// connection routed between two overlay networks to a remote endpoint is routed here in one
// direction only; its other direction is routed by the remote host and reaches the local endpoint
// bridged. Such a one-sided connection (its original direction's next hop is a remote endpoint)
// may start from any valid TCP segment or an echo reply, and is tracked without TCP state or window
// checks: a RST closes it, a FIN shortens its timeout, anything else keeps it established. Linux's
// conntrack on each host would see the same one-sided traffic and refuse it (a deliberate
// difference: HNS's distributed router does not track it either).
export const CT_ONE_SIDED: u8 = 0x20;   // in the record's byte 29, beside the FIN-seen bits
export function markOneSided(r: usize): void {
  store<u8>(r, load<u8>(r, 29) | CT_ONE_SIDED, 29);
  markLiberal(r);
}

// A new connection tracked liberally from its start (an interface it is routed through says so).
export function markLiberal(r: usize): void {
  store<u8>(r + win.TDF, win.TD_LIBERAL);
  store<u8>(r + win.TDF, win.TD_LIBERAL, 1);
}

// Applies one packet (direction `dir`: 0 original, 1 reply) to connection record r. Returns
// Reason.None when the packet passes (its connection moved, or for a TCP segment conntrack ignores,
// left as it was), else the reason it is invalid (the packet is dropped; the connection is left as
// it was).
export function update(r: usize, proto: u32, dir: u32, l4: usize, l4len: u32, now: u32): Reason {
  return updateInline(r, proto, dir, l4, l4len, now);
}
// The body of update(), inlined into hit(): the established path makes no call it need not make (a
// call in V8's WebAssembly spills every live value of the caller; docs/performance.md).
@inline function updateInline(r: usize, proto: u32, dir: u32, l4: usize, l4len: u32, now: u32): Reason {
  let s = <u32>load<u8>(r, 27);
  let ns = s;
  let flags = load<u8>(r, 28);
  if (dir == 1) flags |= flow.CT_SEEN_REPLY;
  let t: u32 = 0;
  if (proto == 6) {
    let f = <u32>load<u8>(l4, 13);
    if (!win.validFlags(f)) return Reason.CtTcpBadFlags;
    if (load<u8>(r, 29) & CT_ONE_SIDED) {
      ns = (f & tcp.RST) != 0 ? State.TcpClose : (f & tcp.FIN) != 0 || s == State.TcpTimeWait ? State.TcpTimeWait : State.TcpEstablished;
      store<u8>(r, <u8>ns, 27);
      store<u8>(r, flags, 28);
      store<u32>(r, now + timeout(ns), 36);
      return Reason.None;
    }
    // An established segment moves nothing (tcpNext's answer, inline); the FIN-seen bits in a local,
    // not tcpNext's global, which V8 would store and load again.
    let seen: u8 = 0;
    if (((s ^ State.TcpEstablished) | (f & (tcp.SYN | tcp.FIN | tcp.RST))) != 0) {
      ns = tcpNext(r, s, dir, f);
      if (ns == State.None) return Reason.CtTcpInvalid;
      seen = nextSeen;
    }
    let checked = true;
    if (f & tcp.RST) {
      // A closing connection takes any RST (Linux: its tuple may already be reused); others only
      // one where the receiver's ACKs say the sender is.
      if (s >= <u32>State.TcpFinWait) checked = false;
      else {
        let established = s == State.TcpEstablished && (flags & flow.CT_ASSURED) != 0;
        let v = win.checkRst(r, dir, l4, established);
        if (v == win.KEEP_STATE) ns = s;
        else if (v != 0) return <Reason>v;
      }
    }
    if (checked) {
      let v = win.check(r, dir, s, l4, l4len, f);
      // Liberal (the connection's sender, or its zone): what fails a bound passes and moves its state.
      if (v != win.ACCEPT) {
        if ((load<u8>(r + win.TDF + dir) & win.TD_LIBERAL) != 0 || (zoneFlags(<u32>load<u16>(r, 24)) & ZONE_LIBERAL) != 0) v = win.ACCEPT;
      }
      if (v == win.IGNORE) {
        bump(Stat.CtTcpIgnored);
        ignored = true;
        return Reason.None;
      }
      if (v != win.ACCEPT) return <Reason>v;
    }
    if (seen) store<u8>(r, seen, 29);
    t = timeout(ns);
    if (ns == State.TcpEstablished) {
      // Assured once both sides took part; a picked-up connection, once its other side answers.
      if (flags & flow.CT_SEEN_REPLY) flags |= flow.CT_ASSURED;
      else if (t > PICKUP_UNREPLIED_MS) t = PICKUP_UNREPLIED_MS;
    }
  } else {
    if (dir == 1) {
      if (s == State.UdpUnreplied) { ns = State.UdpReplied; flags |= flow.CT_ASSURED; }
      else if (s == State.IcmpUnreplied) ns = State.IcmpReplied;
      else if (s == State.OtherUnreplied) { ns = State.OtherReplied; flags |= flow.CT_ASSURED; }
    }
    t = timeout(ns);
  }
  store<u8>(r, <u8>ns, 27);
  store<u8>(r, flags, 28);
  store<u32>(r, now + t, 36);
  return Reason.None;
}

// Set by update() when it passed a TCP segment without moving its connection (for the trace).
let ignored = false;

// tcpNext's new "FIN seen" bits for the record's byte 29 (0: unchanged), stored only if the segment is
// accepted.
let nextSeen: u8 = 0;

// The state segment f of direction dir moves connection r to from state s (None: an invalid
// transition); leaves the FIN-seen bits in nextSeen.
function tcpNext(r: usize, s: u32, dir: u32, f: u32): u32 {
  nextSeen = 0;
  if (f & tcp.RST) return State.TcpClose;
  let seen = load<u8>(r, 29);
  let syn = (f & tcp.SYN) != 0, ack = (f & tcp.ACKF) != 0, fin = (f & tcp.FIN) != 0;
  switch (s) {
    case State.TcpSynSent: {
      if (dir == 0) return syn && !ack ? s : State.None;         // a retransmitted SYN
      return syn && ack ? State.TcpSynRecv : State.None;          // the SYN-ACK
    }
    case State.TcpSynRecv: {
      if (syn) return (dir == 1 && ack) || (dir == 0 && !ack) ? s : State.None; // retransmissions
      if (dir == 0 && fin) { nextSeen = seen | FIN_ORIG; return State.TcpFinWait; }
      return ack && dir == 0 ? State.TcpEstablished : s;
    }
    case State.TcpEstablished: {
      if (syn) return State.None;
      if (fin) {
        nextSeen = seen | (dir == 0 ? FIN_ORIG : FIN_REPLY);
        return dir == 0 ? State.TcpFinWait : State.TcpCloseWait;
      }
      return s;
    }
    case State.TcpFinWait:
    case State.TcpCloseWait: {
      if (syn) return State.None;
      if (fin) {
        let both = seen | (dir == 0 ? FIN_ORIG : FIN_REPLY);
        nextSeen = both;
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
// Almost no segment is a SYN without ACK: that test comes first and alone, as a branch (the state's
// load after it keeps the optimizer from folding the three tests into one computed value).
@inline export function reopens(r: usize, dir: u32, tcpFlags: u32): bool {
  if ((tcpFlags & (tcp.SYN | tcp.ACKF)) != tcp.SYN || dir != 0) return false;
  let s = <u32>load<u8>(r, 27);
  return s == State.TcpTimeWait || s == State.TcpClose;
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
@inline export function live(v: u32, proto: u32, tcpFlags: u32, now: u32): u32 {
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

// update() for a hit, noted in the trace (a: 1 a hit, 2 a hit whose segment conntrack ignored).
@inline export function hit(r: usize, ri: u32, proto: u32, dir: u32, l4: usize, l4len: u32, now: u32): Reason {
  ignored = false;
  let why = updateInline(r, proto, dir, l4, l4len, now);
  // (The record's arguments are computed only when tracing.)
  if (trace.traceOn) trace.record(trace.Step.Conntrack, ignored ? 2 : 1, ri, dir, <u32>load<u8>(r, 27));
  return why;
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
