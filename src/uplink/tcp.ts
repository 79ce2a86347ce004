// The TCP translation engine of the socket uplink: a guest's TCP connection, seen as IP packets,
// spliced to a host-side Node Duplex (normally a net.Socket to the real destination), the way passt's
// tcp.c and gvisor-tap-vsock do it. We are not a TCP stack with sockets of our own: we terminate the
// guest's connection and relay its byte stream, so the host kernel does congestion control, PMTU,
// SACK and everything else toward the real peer.
//
// Sequence mapping. Each flow has two independent sequence spaces, as any TCP endpoint does: the
// guest's (rcvNxt = the next guest byte we expect; guest stream offset = seq - irs - 1) and ours
// (a random ISN per flow; sndUna..sndNxt in flight, sndMax the highest sent). Host stream bytes are
// numbered from our ISN + 1; the host socket's own sequence numbers are never seen.
//
// What is buffered, and the bounds:
// - guest -> host: in-order payload is copied once out of the packet (the caller may reuse its
//   buffer, e.g. a view into wasm memory), into 1 MiB slabs for a socket (below, Slab), and written
//   to the Duplex. The window we advertise is
//   rcvBuf (default 1 MiB) minus duplex.writableLength, so a slow host side closes the window to 0
//   and the guest stops; a window update is sent from the write callback when it has grown by a
//   quarter of the buffer. The flows together never promise more than rcvBufTotal (default 64 MiB):
//   the bytes written to the Duplexes and not yet called back, plus every flow's open window (which
//   never shrinks), stay within it, and a flow it held back gets its update once an eighth of the
//   total is free again. At 256 KiB a 64 KiB-MSS guest (MTU
//   65520) had four segments in flight, and its upload ran at 1.2 Gbit/s at a 1.3 ms RTT; at 1 MiB
//   2.6 (docs/performance.md). The right edge never moves left (RFC 9293 3.8.6), so the Duplex can hold
//   at most rcvBuf plus rounding. Out-of-order segments are dropped and answered with an immediate
//   duplicate ACK (no reorder queue: the guest's own fast retransmit recovers; memory stays flat).
// - host -> guest: the Duplex's chunks are kept as they arrive (no copy) in a queue from sndUna;
//   each packet is built in one scratch buffer the engine reuses (header + payload copied from the
//   queue, checksummed in place), with LINK_HEADROOM bytes before it where the uplink writes the
//   Ethernet header: no allocation and no copy per packet but the switch's own into its rx buffer.
//   With superSegments (the uplink sets it: the dataplane does GSO) a packet carries as many whole
//   MSS as fit in 64 KiB and only the pseudo-header sum; the dataplane decides once for it and
//   segments and checksums it in WebAssembly for the guest's port (docs/uplink.md).
//   The Duplex is read only a little ahead of what can be sent: it is paused when the bytes read and
//   not yet sent reach 256 KiB (READ_AHEAD), when unacked + unsent reaches sndBuf (default 4 MiB, as
//   Linux's tcp_wmem maximum), or when the engine's flows together hold sndBufTotal (default 64 MiB),
//   and resumed once below; what waits stays in the host socket's kernel buffer, as passt leaves it
//   there (it reads with MSG_PEEK), and pausing at sndBuf alone made reads stop and go: with 256 KiB
//   both for reading ahead and in flight, a download through a TAP stalled on it (docs/performance.md).
//   What is in flight is also bounded by a congestion window (RFC 5681 slow start and congestion
//   avoidance from RFC 6928's 10 segments, halved on fast retransmit, one segment after a timeout),
//   since what lies between us and the guest drops when it is full. It grows by the bytes each ACK
//   covers (RFC 3465 byte counting, in slow start without its L limit, as Linux's tcp_slow_start counts
//   every segment acknowledged): the guest ACKs a whole super-segment at once, and one MSS per ACK
//   took a second to open a window of a few MiB.
//   We send within the guest's window (with its scale) and the congestion window: the guest is one
//   hop away on a virtual link, and the loss there is queue overflow, handled by RTO (RFC 6298
//   estimator, go back to sndUna and send one segment, exponential backoff), fast retransmit on the
//   third duplicate ACK and NewReno-style retransmission of the next hole on a partial ACK.
//   A zero window with data waiting arms the persist timer, whose probes are an ACK with an old
//   sequence number (seq = sndNxt - 1), which the guest must answer with its current window.
// - ACKs for in-order data are coalesced: one per flow per input batch (a microtask), which halves
//   the packets toward the guest like a delayed ACK without a timer. Duplicate ACKs, FIN ACKs and
//   window updates go at once. The data a guest ACK makes room for is sent at the same point, once
//   per flow per batch (carrying that ACK), not from inside input(): several ACKs in one batch make
//   one burst, and the packets reach the switch after it has delivered the batch, straight into its
//   rx buffer (what is sent into it while it delivers, it must copy). A batch's guest data is written
//   to the Duplex corked and uncorked at the same point (one writev per batch).
//
// Where this differs from a full TCP: no TIME_WAIT (a FIN retransmitted after the flow is gone gets a
// RST; we are a proxy and the guest's socket is the one that lingers), no SACK, no timestamps, no
// urgent data (the URG pointer is ignored, the bytes are passed as ordinary data), no congestion
// control toward the guest, no simultaneous open, IPv4 fragments and IPv6 Fragment headers are
// dropped (counted ip_fragment; guests send DF segments within our MSS). RST handling follows RFC 5961 (exact
// sequence resets, in-window gets a challenge ACK; a SYN on an open flow gets a challenge ACK).
//
// A guest SYN calls open(key); the SYN-ACK goes only when it resolves (retransmitted SYNs meanwhile
// are absorbed), so the guest sees the real outcome: ECONNREFUSED/ECONNRESET -> RST (RFC 9293
// 3.10.7.1), unreachable and permission errors -> ICMP/ICMPv6 destination unreachable quoting the SYN
// from the destination address, any other error -> RST. Time for state is opts.now (ms); timers are
// one setTimeout per flow, re-armed lazily (an ACK only moves a deadline).
//
// Every packet from the guest is untrusted: malformed input is a drop counted under a named reason in
// counters.dropped, never a throw.
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { onesComplementSum, parseIPv4, parseIPv6, formatIPv4, formatIPv6 } from '../frames.js';

export interface TcpFlowKey { v6: boolean; src: string; sport: number; dst: string; dport: number }

export interface TcpEngineOptions {
  /**
   * An IP packet (v4/v6) toward the guest. It is valid only during the call (the engine builds its
   * packets in one buffer it reuses), and the LINK_HEADROOM bytes before it in packet.buffer are the
   * callee's to write (a link header, so that the frame needs no copy). `mss` is given only with
   * `superSegments`, for a data segment: then the packet's TCP payload may be larger than one segment
   * (cut it at `mss`), and its TCP checksum field holds only the pseudo-header sum, folded and not
   * complemented (Linux's CHECKSUM_PARTIAL: the sum from the TCP header to the end is to be added and
   * complemented). Otherwise every checksum is complete.
   */
  send(packet: Uint8Array, mss?: number): void;
  /** The host side for a guest SYN; reject with an Error whose `code` is an errno name. */
  open(key: TcpFlowKey): Promise<Duplex>;
  now?: () => number;
  /** Flows at once (default 4096); a SYN beyond it gets a RST. */
  maxFlows?: number;
  /** Our MSS (default 1460 over IPv4, 1440 over IPv6: a 1500-byte path). */
  mss?: number;
  /**
   * The MTU of the path to the guests, read as each flow opens (Linux takes its MSS from the route's
   * MTU the same way): our MSS is it less 40 (IPv4) or 60 (IPv6) bytes of headers, and at most `mss`
   * where that is given too.
   */
  pathMtu?: () => number;
  /** Bytes of guest data the host Duplex may hold before our window is 0 (default 1 MiB). */
  rcvBuf?: number;
  /** Bytes of guest data all flows' Duplexes may hold together (default 64 MiB). */
  rcvBufTotal?: number;
  /** Host bytes kept unacked + unsent per flow before the Duplex is paused (default 4 MiB). */
  sndBuf?: number;
  /** Host bytes kept by all flows together before the Duplexes that read are paused (default 64 MiB). */
  sndBufTotal?: number;
  /** Retransmission timeout bounds, ms (RFC 6298; defaults 1000 initial, 200 min, 60000 max). */
  initialRto?: number; minRto?: number; maxRto?: number;
  /** RTOs in a row before a flow is given up (RST both sides); default 12. */
  maxRetries?: number;
  /** SYN / SYN-ACK retransmissions before a handshake is given up; default 5. */
  synRetries?: number;
  /** Check IPv4 header and TCP checksums of guest packets (default true). */
  verifyChecksums?: boolean;
  /**
   * Largest IP packet of a data segment (default 0: one MSS each, checksums complete). Above the
   * guest's MSS, data goes in super-segments of up to this size (a multiple of the MSS of payload)
   * with a partial checksum, and send() gets the MSS to cut them at: for a dataplane that segments
   * (GSO) or a guest that takes them (TSO).
   */
  superSegments?: number;
  /**
   * Called with each host chunk (a 'data' Buffer) once the guest has acknowledged all of it and the
   * engine holds no reference to it any more: the host side may reuse its memory (the uplink's pooled
   * read buffers). Chunks of a flow that dies are not handed back.
   */
  release?: (chunk: Buffer) => void;
}

/** Bytes free before every packet send() gets (an Ethernet header's worth). */
export const LINK_HEADROOM = 14;
// Host bytes read and not yet sent, per flow, before the Duplex is paused (at most sndBuf).
const READ_AHEAD = 256 * 1024;
const MAX_PACKET = 65535 - LINK_HEADROOM;

export type TcpState = 'OPENING' | 'SYN_SENT' | 'SYN_RCVD' | 'ESTABLISHED' | 'CLOSE_WAIT' | 'FIN_WAIT' | 'LAST_ACK';

export interface TcpFlowInfo {
  key: TcpFlowKey;
  state: TcpState;
  /** The host socket's ends, when the Duplex is a net.Socket (or looks like one). */
  host?: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number };
  /** Guest bytes written to the host side; host bytes the guest has acknowledged. */
  toHost: number;
  toGuest: number;
}

export const TCP_DROP_REASONS = [
  'short', 'bad_ip_version', 'bad_ip_header_length', 'bad_ip_total_length', 'bad_ip_checksum',
  'ip_fragment', 'not_tcp', 'bad_tcp_header_length', 'bad_tcp_checksum', 'bad_port',
  'out_of_order', 'out_of_window', 'bad_ack', 'no_flow', 'unexpected_syn',
] as const;
export type TcpDropReason = typeof TCP_DROP_REASONS[number];

export interface TcpCounters {
  flowsOpened: number;        // guest SYNs whose open() resolved
  flowsConnected: number;     // host-initiated flows the guest accepted
  flowsClosed: number;        // flows removed, for any reason
  refused: number;            // open() failed -> RST to the guest
  unreachable: number;        // open() failed -> ICMP unreachable to the guest
  connectFailed: number;      // host-initiated: guest RST or no answer
  resetByGuest: number;       // guest RST on a flow
  resetToGuest: number;       // RST sent on a flow (host error/close, give up, close())
  rstNoFlow: number;          // RST answering a segment for no flow
  flowTableFull: number;      // SYNs refused because maxFlows flows exist
  synAbsorbed: number;        // retransmitted SYNs while open() was pending
  retransmits: number;        // segments sent again (RTO, fast retransmit, partial ACK)
  fastRetransmits: number;
  timeouts: number;           // RTO expiries
  windowProbes: number;
  windowUpdates: number;
  dupAcksSent: number;
  bytesToHost: number;
  bytesToGuest: number;
  unpooledWrites: number;     // guest data given a Buffer of its own: PINNED_SLABS slabs still waited for writes
  dropped: Record<TcpDropReason, number>;
}

const FIN = 1, SYN = 2, RST = 4, PSH = 8, ACK = 16;
const MAX_WSCALE = 14;

// Guest data for the host sockets (net.Socket) is copied into 1 MiB slabs, not into a Buffer of its own each time:
// a Buffer over 4 KiB is an ArrayBuffer of its own, and at a few Gbit/s of 64 KiB super-segments the
// external memory they added up to had V8 run a full mark-compact every few hundred MB (a fifth of
// the main thread in a TSO upload, docs/performance.md). A slab is written over again only once every
// write from it has completed (its callback ran); a slab whose writes never complete (a socket
// destroyed without calling back) is left to the garbage collector. At most SPARE_SLABS wait spare.
// One pending chunk keeps its whole slab: a guest could strew small writes to a host that never
// reads across many slabs. So at most PINNED_SLABS retired slabs may wait for their writes; beyond,
// chunks are Buffers of their own again, whose memory is what the windows bound.
const SLAB = 1 << 20;
const SPARE_SLABS = 4;
const PINNED_SLABS = 16;
class Slab {
  readonly buf = Buffer.allocUnsafeSlow(SLAB);
  used = 0;
  pending = 0;      // writes from it not yet called back
  retired = false;  // no longer the one chunks are taken from
}
// A flow's life; 'OPENING' waits for open(), 'SYN_SENT' is host-initiated.
const S_OPENING = 0, S_SYN_SENT = 1, S_SYN_RCVD = 2, S_OPEN = 3;

const seqLt = (a: number, b: number) => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number) => ((a - b) | 0) <= 0;
const u16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
function put16(b: Uint8Array, o: number, v: number) { b[o] = v >>> 8; b[o + 1] = v; }
function put32(b: Uint8Array, o: number, v: number) { b[o] = v >>> 24; b[o + 1] = v >>> 16; b[o + 2] = v >>> 8; b[o + 3] = v; }
const fold = (s: number) => { while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000); return s; };

function randomIsn(): number {
  const a = new Uint32Array(1);
  globalThis.crypto.getRandomValues(a);
  return a[0];
}

function addrKey(b: Uint8Array, o: number, n: number): string {
  return n === 4 ? String(u32(b, o)) : `${u32(b, o)}.${u32(b, o + 4)}.${u32(b, o + 8)}.${u32(b, o + 12)}`;
}

class Flow {
  state = S_OPENING;
  duplex: Duplex | undefined;
  dead = false;
  // Addresses as the guest sees them: packets to the guest go remote -> guest.
  constructor(readonly engine: TcpEngine, readonly id: string, readonly key: TcpFlowKey,
    readonly guestAddr: Uint8Array, readonly remoteAddr: Uint8Array) {
    this.onTimer = this.onTimer.bind(this);
    this.onData = this.onData.bind(this);
    this.onEnd = this.onEnd.bind(this);
    this.onError = this.onError.bind(this);
    this.onClose = this.onClose.bind(this);
  }
  // Ours.
  iss = 0; sndUna = 0; sndNxt = 0; sndMax = 0;
  sndWnd = 0; sndWl1 = 0; sndWl2 = 0; sndWscale = 0;
  sendMss = 536;
  // Congestion window toward the guest (RFC 5681 slow start / congestion avoidance, halved on a fast
  // retransmit, one segment after a timeout): the path to the guest (a transport's queue, a UDP
  // socket buffer, a TAP's) drops what it cannot take, and the guest's window says nothing about it.
  cwnd = 0; ssthresh = 0x7fffffff;
  // The host stream from sndUna: chunks, the head's offset, bytes; a cursor at sndNxt.
  q: Buffer[] = []; qHead = 0; qHeadOff = 0; qBytes = 0; curIdx = 0; curOff = 0;
  hostEnded = false;          // 'end' from the Duplex: FIN after the queue
  finAcked = false;           // the guest acknowledged our FIN
  hostClosed = false;         // the Duplex cannot take writes any more
  paused = false;
  dupAcks = 0; recover = 0; inRecovery = false;
  // Theirs.
  irs = 0; rcvNxt = 0; rcvAdvEdge = 0; rcvWscale = 0; wsOk = false;
  guestFin = false; ackDue = false;
  sendDue = false;            // an ACK opened room: trySend at the end of the batch
  corked = false;             // guest data written to the Duplex corked: uncorked at the end of the batch
  unwritten = 0;              // guest bytes written to the Duplex, not yet called back
  promised = 0;               // its open window, as counted in the engine's total
  listed = false;             // in the engine's list for the end of the batch
  // Timers (ms on opts.now): one deadline, one setTimeout.
  timerAt = 0; timerFireAt = 0; timer: ReturnType<typeof setTimeout> | undefined;
  rto = 1000; srtt = 0; rttvar = 0; rttSeq = 0; rttAt = 0; rttOn = false; retries = 0;
  persistBackoff = 0;
  toHost = 0; toGuest = 0;

  onTimer() { this.timer = undefined; this.engine.timer(this); }
  onData(chunk: Buffer | string) { this.engine.hostData(this, typeof chunk === 'string' ? Buffer.from(chunk) : chunk); }
  onEnd() { this.engine.hostEnd(this); }
  onError() { this.engine.hostGone(this, true); }
  onClose() { this.engine.hostGone(this, false); }
}

interface Seg {
  v6: boolean; ipEnd: number; off: number; hlen: number; srcOff: number; alen: number;
  sport: number; dport: number; seq: number; ack: number; flags: number; wnd: number; len: number;
  mss: number; ws: number;   // options; -1 when absent
}

export class TcpEngine {
  readonly counters: TcpCounters;
  private readonly flowsById = new Map<string, Flow>();
  private readonly now: () => number;
  private readonly maxFlows: number;
  private readonly mss?: number;
  private readonly rcvBuf: number;
  private slab = new Slab();
  private readonly spareSlabs: Slab[] = [];
  private pinnedSlabs = 0;            // retired slabs with writes not yet called back
  private readonly sndBuf: number;
  private readonly sndBufTotal: number;
  private readonly rcvBufTotal: number;
  private unwritten = 0;                     // guest bytes written to the Duplexes, not yet called back
  private promised = 0;                      // the flows' open windows (rcvAdvEdge - rcvNxt) together
  private readonly rcvStarved = new Set<Flow>();   // windows held back by rcvBufTotal
  private readonly readAhead: number;
  private held = 0;                          // host bytes all flows keep (their qBytes)
  private readonly starved = new Set<Flow>();   // paused while the flows held sndBufTotal
  private readonly release?: (chunk: Buffer) => void;
  private readonly initialRto: number;
  private readonly minRto: number;
  private readonly maxRto: number;
  private readonly maxRetries: number;
  private readonly synRetries: number;
  private readonly verify: boolean;
  private readonly ourWscale: number;
  private readonly superSegments: number;
  // Packets are built here at LINK_HEADROOM, one at a time: send() has it until it returns. A packet
  // built while another is being sent (send() ran the switch, whose answers came back in) gets a
  // buffer of its own.
  private readonly scratch = Buffer.allocUnsafe(LINK_HEADROOM + MAX_PACKET);   // its own ArrayBuffer (not pooled): offset 0
  private readonly scratch32 = new Uint32Array(this.scratch.buffer, 0, (LINK_HEADROOM + MAX_PACKET) >> 2);
  private sending = 0;
  private due: Flow[] = [];
  private dueScheduled = false;
  private closed = false;

  constructor(private readonly opts: TcpEngineOptions) {
    this.now = opts.now ?? Date.now;
    this.maxFlows = opts.maxFlows ?? 4096;
    this.mss = opts.mss;
    this.rcvBuf = opts.rcvBuf ?? 1024 * 1024;
    this.rcvBufTotal = opts.rcvBufTotal ?? 64 * 1024 * 1024;
    this.sndBuf = opts.sndBuf ?? 4 * 1024 * 1024;
    this.sndBufTotal = opts.sndBufTotal ?? 64 * 1024 * 1024;
    this.readAhead = Math.min(READ_AHEAD, this.sndBuf);
    this.release = opts.release;
    this.initialRto = opts.initialRto ?? 1000;
    this.minRto = opts.minRto ?? 200;
    this.maxRto = opts.maxRto ?? 60000;
    this.maxRetries = opts.maxRetries ?? 12;
    this.synRetries = opts.synRetries ?? 5;
    this.verify = opts.verifyChecksums ?? true;
    this.superSegments = opts.superSegments ?? 0;
    for (const [name, v, min, max] of [['mss', opts.mss, 64, 65495], ['rcvBuf', this.rcvBuf, 1, 2 ** 30], ['rcvBufTotal', this.rcvBufTotal, 1, 2 ** 40], ['sndBuf', this.sndBuf, 1, 2 ** 30], ['sndBufTotal', this.sndBufTotal, 1, 2 ** 40], ['maxFlows', this.maxFlows, 1, 2 ** 24], ['superSegments', opts.superSegments, 0, MAX_PACKET]] as const) {
      if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= max)) throw new RangeError(`TcpEngine ${name} must be an integer in ${min}..${max}, got ${v}`);
    }
    let s = 0;
    while (s < MAX_WSCALE && (this.rcvBuf >> s) > 0xffff) s++;
    this.ourWscale = s;
    this.counters = {
      flowsOpened: 0, flowsConnected: 0, flowsClosed: 0, refused: 0, unreachable: 0, connectFailed: 0,
      resetByGuest: 0, resetToGuest: 0, rstNoFlow: 0, flowTableFull: 0, synAbsorbed: 0, retransmits: 0,
      fastRetransmits: 0, timeouts: 0, windowProbes: 0, windowUpdates: 0, dupAcksSent: 0, bytesToHost: 0, bytesToGuest: 0, unpooledWrites: 0,
      dropped: Object.fromEntries(TCP_DROP_REASONS.map((r) => [r, 0])) as Record<TcpDropReason, number>,
    };
    this.flushDue = this.flushDue.bind(this);
  }

  // ------------------------------------------------------------------------------------------
  // Guest packets

  // partialChecksum: a guest's TCP super-frame, punted whole, whose checksum field holds only the
  // pseudo-header sum (the guest kernel left the rest to its NIC, as Linux's CHECKSUM_PARTIAL): not
  // verified, as Linux takes such a packet from a TAP.
  input(p: Uint8Array, partialChecksum = false): void {
    if (this.closed) return;
    const s = this.parse(p, partialChecksum);
    if (s === undefined) return;
    const id = `${s.v6 ? 6 : 4}:${addrKey(p, s.srcOff, s.alen)}:${s.sport}:${addrKey(p, s.srcOff + s.alen, s.alen)}:${s.dport}`;
    const f = this.flowsById.get(id);
    if (f === undefined) return this.noFlow(p, s, id);
    if (f.state === S_OPENING) {
      if (s.flags & RST) { if (s.seq === f.irs + 1 || s.seq === f.irs) this.guestReset(f); return; }
      if ((s.flags & (SYN | ACK)) === SYN && s.seq === f.irs) { this.counters.synAbsorbed++; return; }
      return this.drop('out_of_window');
    }
    if (f.state === S_SYN_SENT) return this.synSent(f, p, s);
    this.segment(f, p, s);
  }

  private drop(r: TcpDropReason): undefined { this.counters.dropped[r]++; return undefined; }

  // Validates the IP and TCP headers; undefined after a counted drop.
  private parse(p: Uint8Array, partialChecksum: boolean): Seg | undefined {
    const n = p.length;
    if (n < 20) return this.drop('short');
    const s: Seg = { v6: false, ipEnd: 0, off: 0, hlen: 0, srcOff: 0, alen: 0, sport: 0, dport: 0, seq: 0, ack: 0, flags: 0, wnd: 0, len: 0, mss: -1, ws: -1 };
    const ver = p[0] >> 4;
    let off: number, end: number;
    if (ver === 4) {
      const ihl = (p[0] & 15) * 4;
      if (ihl < 20) return this.drop('bad_ip_header_length');
      if (ihl > n) return this.drop('short');
      const total = u16(p, 2);
      if (total < ihl) return this.drop('bad_ip_total_length');
      if (total > n) return this.drop('short');
      if (this.verify && onesComplementSum(p.subarray(0, ihl)) !== 0xffff) return this.drop('bad_ip_checksum');
      if (u16(p, 6) & 0x3fff) return this.drop('ip_fragment');
      if (p[9] !== 6) return this.drop('not_tcp');
      s.v6 = false; s.srcOff = 12; s.alen = 4; off = ihl; end = total;
    } else if (ver === 6) {
      if (n < 40) return this.drop('short');
      end = 40 + u16(p, 4);
      if (end > n) return this.drop('short');
      let nh = p[6];
      off = 40;
      while (nh === 0 || nh === 43 || nh === 60) {   // hop-by-hop, routing, destination options
        if (off + 8 > end) return this.drop('short');
        nh = p[off];
        off += (p[off + 1] + 1) * 8;
      }
      if (nh === 44) return this.drop('ip_fragment');
      if (nh !== 6) return this.drop('not_tcp');
      s.v6 = true; s.srcOff = 8; s.alen = 16;
    } else return this.drop('bad_ip_version');
    const tcpLen = end - off;
    if (tcpLen < 20) return this.drop('short');
    const hlen = (p[off + 12] >> 4) * 4;
    if (hlen < 20 || hlen > tcpLen) return this.drop('bad_tcp_header_length');
    if (this.verify && !partialChecksum) {
      let sum = onesComplementSum(p.subarray(s.srcOff, s.srcOff + 2 * s.alen), 6 + tcpLen);
      sum = onesComplementSum(p.subarray(off, end), sum);
      if (sum !== 0xffff) return this.drop('bad_tcp_checksum');
    }
    s.ipEnd = end; s.off = off; s.hlen = hlen;
    s.sport = u16(p, off); s.dport = u16(p, off + 2);
    if (s.sport === 0 || s.dport === 0) return this.drop('bad_port');
    s.seq = u32(p, off + 4); s.ack = u32(p, off + 8); s.flags = p[off + 13]; s.wnd = u16(p, off + 14);
    s.len = tcpLen - hlen;
    s.mss = -1; s.ws = -1;
    if (s.flags & SYN) {
      // MSS (2) and window scale (3); a malformed option ends the walk.
      for (let i = off + 20, e = off + hlen; i < e;) {
        const kind = p[i];
        if (kind === 0) break;
        if (kind === 1) { i++; continue; }
        if (i + 1 >= e) break;
        const l = p[i + 1];
        if (l < 2 || i + l > e) break;
        if (kind === 2 && l === 4) s.mss = u16(p, i + 2);
        else if (kind === 3 && l === 3) s.ws = Math.min(p[i + 2], MAX_WSCALE);
        i += l;
      }
    }
    return s;
  }

  // RFC 9293 3.10.7.1: a segment for no connection. A SYN starts one.
  private noFlow(p: Uint8Array, s: Seg, id: string): void {
    if (s.flags & RST) { this.drop('no_flow'); return; }
    if ((s.flags & (SYN | ACK | FIN)) === SYN) {
      if (this.flowsById.size >= this.maxFlows) {
        this.counters.flowTableFull++;
        this.resetFor(p, s);
        return;
      }
      const guest = p.slice(s.srcOff, s.srcOff + s.alen), remote = p.slice(s.srcOff + s.alen, s.srcOff + 2 * s.alen);
      const key: TcpFlowKey = { v6: s.v6, src: s.v6 ? formatIPv6(guest) : formatIPv4(guest), sport: s.sport, dst: s.v6 ? formatIPv6(remote) : formatIPv4(remote), dport: s.dport };
      const f = new Flow(this, id, key, guest, remote);
      f.irs = s.seq;
      f.rcvNxt = (s.seq + 1) >>> 0;
      this.synOptions(f, s);
      this.flowsById.set(id, f);
      // The SYN is quoted if open() fails with an unreachable error; keep a copy.
      const syn = p.slice(0, s.ipEnd);
      let promise: Promise<Duplex>;
      try { promise = Promise.resolve(this.opts.open(key)); } catch (e) { promise = Promise.reject(e); }
      promise.then((d) => this.opened(f, d), (e) => this.openFailed(f, syn, e));
      return;
    }
    this.counters.rstNoFlow++;
    this.drop('no_flow');
    this.resetFor(p, s);
  }

  private synOptions(f: Flow, s: Seg): void {
    const our = this.ourMss(f.key.v6);
    f.sendMss = Math.min(our, s.mss > 0 ? s.mss : (f.key.v6 ? 1220 : 536));
    f.cwnd = 10 * f.sendMss;   // RFC 6928's initial window
    f.wsOk = s.ws >= 0;
    f.sndWscale = f.wsOk ? s.ws : 0;
    f.rcvWscale = f.wsOk ? this.ourWscale : 0;
    f.sndWnd = s.wnd;   // a SYN's window is never scaled
    f.sndWl1 = s.seq; f.sndWl2 = 0;
  }

  private opened(f: Flow, d: Duplex): void {
    if (f.dead || this.closed) { destroyQuietly(d, false); return; }
    this.counters.flowsOpened++;
    this.attach(f, d);
    f.iss = randomIsn();
    f.sndUna = f.iss; f.sndNxt = f.sndMax = (f.iss + 1) >>> 0;
    f.state = S_SYN_RCVD;
    f.rto = this.initialRto;
    this.sendSynAck(f);
    this.arm(f, f.rto);
  }

  private openFailed(f: Flow, syn: Uint8Array, e: unknown): void {
    if (f.dead || this.closed) return;
    this.remove(f);
    const code = (e as { code?: unknown } | null)?.code;
    const icmp = typeof code === 'string' ? UNREACH[code] : undefined;
    if (icmp === undefined) {
      this.counters.refused++;
      // RST+ACK, seq 0, acking the SYN (RFC 9293 3.10.7.1, ACK bit off in the SYN).
      this.out(this.tcpPacket(f.key.v6, f.remoteAddr, f.guestAddr, f.key.dport, f.key.sport, 0, f.rcvNxt, RST | ACK, 0, 0));
      return;
    }
    this.counters.unreachable++;
    this.out(unreachable(f.key.v6, f.remoteAddr, f.guestAddr, f.key.v6 ? icmp[1] : icmp[0], syn));
  }

  private attach(f: Flow, d: Duplex): void {
    f.duplex = d;
    d.on('error', f.onError);
    d.on('close', f.onClose);
  }

  private startReading(f: Flow): void {
    const d = f.duplex!;
    d.on('end', f.onEnd);
    d.on('data', f.onData);
  }

  // Host-initiated (a port forward): SYN to the guest from key.dst:dport to key.src:sport.
  connect(key: TcpFlowKey, host: Duplex): void {
    if (this.closed) { destroyQuietly(host, false); return; }
    const guest = key.v6 ? parseIPv6(key.src) : parseIPv4(key.src), remote = key.v6 ? parseIPv6(key.dst) : parseIPv4(key.dst);
    const n = guest.length;
    const both = new Uint8Array(2 * n); both.set(guest); both.set(remote, n);
    const id = `${key.v6 ? 6 : 4}:${addrKey(both, 0, n)}:${key.sport}:${addrKey(both, n, n)}:${key.dport}`;
    if (this.flowsById.has(id) || this.flowsById.size >= this.maxFlows) {
      if (!this.flowsById.has(id)) this.counters.flowTableFull++;
      this.counters.connectFailed++;
      destroyQuietly(host, true);
      return;
    }
    const f = new Flow(this, id, { ...key }, guest, remote);
    f.state = S_SYN_SENT;
    f.sendMss = this.ourMss(key.v6);
    f.cwnd = 10 * f.sendMss;   // RFC 6928's initial window
    this.flowsById.set(id, f);
    this.attach(f, host);
    f.iss = randomIsn();
    f.sndUna = f.iss; f.sndNxt = f.sndMax = (f.iss + 1) >>> 0;
    f.rto = this.initialRto;
    this.sendSyn(f);
    this.arm(f, f.rto);
  }

  private synSent(f: Flow, p: Uint8Array, s: Seg): void {
    const ackOk = (s.flags & ACK) !== 0 && s.ack === f.sndNxt;
    if (s.flags & ACK && !ackOk) {
      if (!(s.flags & RST)) this.resetFor(p, s);
      this.drop('bad_ack');
      return;
    }
    if (s.flags & RST) {
      if (ackOk) { this.counters.connectFailed++; this.guestReset(f); }
      return;
    }
    if (!(s.flags & SYN) || !ackOk) { this.drop('unexpected_syn'); return; }  // no simultaneous open
    f.irs = s.seq; f.rcvNxt = (s.seq + 1) >>> 0;
    const ourMss = f.sendMss;
    this.synOptions(f, s);
    f.sendMss = Math.min(ourMss, s.mss > 0 ? s.mss : (f.key.v6 ? 1220 : 536));
    f.cwnd = 10 * f.sendMss;   // RFC 6928's initial window
    f.sndUna = s.ack;
    f.sndWl1 = s.seq; f.sndWl2 = s.ack;
    f.state = S_OPEN; f.retries = 0; f.rto = this.initialRto;
    this.disarm(f);
    this.counters.flowsConnected++;
    this.sendAck(f);
    this.startReading(f);
  }

  // A segment on a flow past OPENING / SYN_SENT (RFC 9293 3.10.7.4, RFC 5961).
  private segment(f: Flow, p: Uint8Array, s: Seg): void {
    const flags = s.flags;
    const wnd = ((f.rcvAdvEdge - f.rcvNxt) | 0) > 0 ? (f.rcvAdvEdge - f.rcvNxt) | 0 : 0;
    if (flags & RST) {
      if (s.seq === f.rcvNxt) this.guestReset(f);
      else if (((s.seq - f.rcvNxt) | 0) > 0 && ((s.seq - f.rcvNxt) | 0) < Math.max(wnd, 1)) this.sendAck(f);  // challenge ACK
      else this.drop('out_of_window');
      return;
    }
    if (flags & SYN) {
      if (f.state === S_SYN_RCVD && !(flags & ACK) && s.seq === f.irs) { this.sendSynAck(f); this.counters.synAbsorbed++; return; }
      this.drop('unexpected_syn');
      this.sendAck(f);   // RFC 5961 4.2 challenge ACK
      return;
    }
    if (!(flags & ACK)) { this.drop('bad_ack'); return; }
    if (f.state === S_SYN_RCVD) {
      if (s.ack !== f.sndNxt) { this.drop('bad_ack'); this.resetFor(p, s); return; }
      f.state = S_OPEN;
      f.sndUna = s.ack;
      f.sndWnd = s.wnd << f.sndWscale; f.sndWl1 = s.seq; f.sndWl2 = s.ack;
      f.retries = 0;
      this.disarm(f);
      this.startReading(f);
      if (f.dead) return;
    }
    // Sequence acceptability: data and FIN must start at or before rcvNxt (in-order only).
    const len = s.len, fin = (flags & FIN) !== 0;
    const off = (f.rcvNxt - s.seq) | 0;   // bytes of this segment we already have
    if (len + (fin ? 1 : 0) > 0) {
      if (off < 0) {
        // Ahead of rcvNxt: out of order. Process the ACK (it may be new), then dup-ACK.
        if (!this.ackPart(f, p, s)) return;
        this.drop(((-off) | 0) < Math.max(wnd, 1) ? 'out_of_order' : 'out_of_window');
        this.counters.dupAcksSent++;
        this.sendAck(f);
        return;
      }
      if (off >= len + (fin ? 1 : 0)) {
        // All old (a retransmission of what we have): re-ACK.
        if (!this.ackPart(f, p, s)) return;
        this.counters.dupAcksSent++;
        this.sendAck(f);
        return;
      }
    } else if (off < -(Math.max(wnd, 1)) || off > 0x40000000) {
      this.drop('out_of_window');
      this.sendAck(f);
      return;
    }
    if (!this.ackPart(f, p, s)) return;
    if (f.dead) return;
    if (len > 0 && len > off && !f.guestFin) {
      if (f.hostClosed) { this.resetFlow(f); return; }
      let take = len - off;
      const room = (f.rcvAdvEdge - f.rcvNxt) | 0;
      let clipped = false;
      if (take > room) { take = room > 0 ? room : 0; clipped = true; }
      if (take > 0) {
        const start = s.off + s.hlen + off;
        // Only a socket's write is done with the bytes when it calls back (they are in the kernel); another
        // Duplex (an in-process service's pair) may hand the chunk itself on, so it gets one of its own.
        const socket = f.duplex instanceof Socket;
        const sl = socket ? this.slabFor(take) : undefined;
        const chunk = sl ? sl.buf.subarray(sl.used, sl.used + take) : Buffer.allocUnsafe(take);
        if (sl) { sl.used = (sl.used + take + 7) & ~7; sl.pending++; }
        else if (socket) this.counters.unpooledWrites++;
        chunk.set(p.subarray(start, start + take));
        f.rcvNxt = (f.rcvNxt + take) >>> 0;
        this.repromise(f);
        f.toHost += take;
        this.counters.bytesToHost += take;
        // A batch's segments reach the host socket in one writev, not one write each.
        if (!f.corked) { f.corked = true; f.duplex!.cork(); this.enlist(f); }
        f.unwritten += take;
        this.unwritten += take;
        f.duplex!.write(chunk, () => { if (sl) this.slabWritten(sl); this.wroteOut(f, take); });
        if (f.dead) return;
      }
      if (clipped) { this.drop('out_of_window'); this.sendAck(f); return; }
    }
    if (fin && !f.guestFin) {
      f.guestFin = true;
      f.rcvNxt = (f.rcvNxt + 1) >>> 0;
      this.repromise(f);
      if (!f.hostClosed) f.duplex!.end();
      this.sendAck(f);
      this.maybeDone(f);
      return;
    }
    if (len > 0 && len > off) this.ackLater(f);
  }

  // The ACK field of a synchronized segment; false when the segment is to be dropped.
  private ackPart(f: Flow, p: Uint8Array, s: Seg): boolean {
    const acked = (s.ack - f.sndUna) | 0;
    const sentRange = (f.sndMax - f.sndUna) | 0;
    if (acked > sentRange) { this.drop('bad_ack'); this.sendAck(f); return false; }
    const wnd = s.wnd << f.sndWscale;
    const winUpdate = seqLt(f.sndWl1, s.seq) || (f.sndWl1 === s.seq && seqLe(f.sndWl2, s.ack));
    if (acked > 0) {
      this.acked(f, s.ack, acked);
      if (f.dead) return false;
    } else if (acked === 0 && sentRange > 0 && s.len === 0 && !(s.flags & FIN) && wnd === f.sndWnd) {
      if (++f.dupAcks === 3) this.fastRetransmit(f);
    }
    if (acked >= 0 && winUpdate) {
      const opened = wnd > f.sndWnd;
      f.sndWnd = wnd; f.sndWl1 = s.seq; f.sndWl2 = s.ack;
      if (opened) f.persistBackoff = 0;
    }
    this.sendLater(f);
    return !f.dead;
  }

  private acked(f: Flow, ack: number, acked: number): void {
    const dataEnd = (f.sndUna + f.qBytes) >>> 0;
    let data = acked;
    if (f.hostEnded && ((ack - dataEnd) | 0) > 0) { data--; f.finAcked = true; }   // our FIN
    if (data > 0) {
      this.dequeue(f, data);
      f.toGuest += data;
      this.counters.bytesToGuest += data;
    }
    f.sndUna = ack;
    if (seqLt(f.sndNxt, ack)) { f.sndNxt = ack; f.curIdx = f.qHead; f.curOff = f.qHeadOff; }
    f.dupAcks = 0;
    f.retries = 0;
    if (!f.inRecovery) {
      const mss = f.sendMss;
      if (f.cwnd < f.ssthresh) f.cwnd += data;
      else f.cwnd += Math.max(1, Math.floor(mss * data / f.cwnd));
      if (f.cwnd > this.sndBuf) f.cwnd = this.sndBuf;
    }
    if (f.rttOn && seqLt(f.rttSeq, ack)) { f.rttOn = false; this.rttSample(f, this.now() - f.rttAt); }
    if (f.inRecovery) {
      if (seqLt(ack, f.recover)) { this.retransmitHead(f); } else f.inRecovery = false;
    }
    this.maybeResume(f);
    if (f.sndUna === f.sndMax) this.disarm(f);
    else this.arm(f, f.rto);
    if (f.finAcked) this.maybeDone(f);
  }

  private rttSample(f: Flow, r: number): void {
    if (r < 0) r = 0;
    if (f.srtt === 0) { f.srtt = r || 1; f.rttvar = r / 2; }
    else { f.rttvar = 0.75 * f.rttvar + 0.25 * Math.abs(f.srtt - r); f.srtt = 0.875 * f.srtt + 0.125 * r; }
    f.rto = Math.min(this.maxRto, Math.max(this.minRto, Math.ceil(f.srtt + Math.max(1, 4 * f.rttvar))));
  }

  // Drops `n` acknowledged bytes from the head of the send queue.
  private dequeue(f: Flow, n: number): void {
    f.qBytes -= n;
    this.held -= n;
    if (this.starved.size > 0 && this.held < this.sndBufTotal) for (const g of this.starved) this.maybeResume(g);
    while (n > 0) {
      const c = f.q[f.qHead];
      const left = c.length - f.qHeadOff;
      if (n < left) { f.qHeadOff += n; break; }
      n -= left;
      f.q[f.qHead] = undefined as unknown as Buffer;
      this.release?.(c);
      f.qHead++; f.qHeadOff = 0;
    }
    if (f.curIdx < f.qHead || (f.curIdx === f.qHead && f.curOff < f.qHeadOff)) { f.curIdx = f.qHead; f.curOff = f.qHeadOff; }
    if (f.qHead > 64 && f.qHead * 2 > f.q.length) {
      f.q = f.q.slice(f.qHead);
      f.curIdx -= f.qHead; f.qHead = 0;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Host side

  hostData(f: Flow, chunk: Buffer): void {
    if (f.dead || chunk.length === 0) return;
    f.q.push(chunk);
    f.qBytes += chunk.length;
    this.held += chunk.length;
    this.trySend(f, 0);
    if (f.paused || f.dead) return;
    const unsent = f.qBytes - ((f.sndNxt - f.sndUna) | 0);
    if (unsent >= this.readAhead || f.qBytes >= this.sndBuf || this.held >= this.sndBufTotal) {
      f.paused = true;
      f.duplex!.pause();
      if (this.held >= this.sndBufTotal) this.starved.add(f);
    }
  }

  // Reading goes on once the flow has sent most of what it read ahead, its queue is below sndBuf by
  // as much, and the flows together hold less than sndBufTotal.
  private maybeResume(f: Flow): void {
    if (!f.paused || f.dead || f.hostClosed) return;
    const unsent = f.qBytes - ((f.sndNxt - f.sndUna) | 0), half = this.readAhead >> 1;
    if (unsent > half || f.qBytes > this.sndBuf - half || this.held >= this.sndBufTotal) return;
    f.paused = false;
    this.starved.delete(f);
    f.duplex!.resume();
  }

  hostEnd(f: Flow): void {
    if (f.dead || f.hostEnded) return;
    f.hostEnded = true;
    this.trySend(f, 0);
  }

  hostGone(f: Flow, error: boolean): void {
    if (f.dead) return;
    f.hostClosed = true;
    if (error || !f.hostEnded) {
      // Closed without an orderly end (error, reset, destroyed): RST to the guest.
      if (f.state === S_SYN_SENT) { this.counters.connectFailed++; this.kill(f, false); return; }
      this.resetFlow(f);
      return;
    }
    this.maybeDone(f);
  }

  // The Duplex took a chunk: the window may have opened enough to tell the guest.
  // Only a window the field can show counts: without window scaling the guest sees at most 65535,
  // and an update that cannot open it further is a useless packet (one per chunk written, before).
  private written(f: Flow): void {
    if (f.dead || f.guestFin || f.state !== S_OPEN) return;
    const free = Math.min(this.freeSpace(f), 0xffff * (1 << f.rcvWscale));
    const adv = (f.rcvAdvEdge - f.rcvNxt) | 0;
    if (free - adv >= Math.max(f.sendMss, this.rcvBuf >> 2) || (adv < f.sendMss && free >= Math.min(this.rcvBuf >> 1, f.sendMss))) {
      this.counters.windowUpdates++;
      this.sendAck(f);
    }
  }

  // The slab the next `n` bytes of guest data go into (n <= MAX_PACKET < SLAB); undefined when
  // PINNED_SLABS retired slabs still wait for writes.
  private slabFor(n: number): Slab | undefined {
    let sl = this.slab;
    if (sl.used + n <= SLAB) return sl;
    if (sl.pending === 0) { sl.used = 0; return sl; }
    if (this.pinnedSlabs >= PINNED_SLABS) return undefined;
    sl.retired = true;
    this.pinnedSlabs++;
    sl = this.spareSlabs.pop() ?? new Slab();
    this.slab = sl;
    return sl;
  }

  private slabWritten(sl: Slab): void {
    if (--sl.pending !== 0 || !sl.retired) return;
    this.pinnedSlabs--;
    sl.used = 0;
    sl.retired = false;
    if (this.spareSlabs.length < SPARE_SLABS) this.spareSlabs.push(sl);
  }

  // A write to f's Duplex called back: the flow's window, and those the total held back, may open.
  // (A dead flow's bytes left the total when it was removed.)
  private wroteOut(f: Flow, n: number): void {
    if (f.dead) return;
    f.unwritten -= n;
    this.unwritten -= n;
    this.written(f);
    if (this.rcvStarved.size > 0 && this.rcvBufTotal - this.unwritten - this.promised >= this.rcvBufTotal >> 3) {
      const held = [...this.rcvStarved];
      this.rcvStarved.clear();
      for (const g of held) this.written(g);
    }
  }

  // f's open window as counted in `promised` (set only once the window's edge is: the SYN-ACK's).
  private repromise(f: Flow): void {
    const p = Math.max(0, (f.rcvAdvEdge - f.rcvNxt) | 0);
    this.promised += p - f.promised;
    f.promised = p;
  }

  private freeSpace(f: Flow): number {
    const used = f.hostClosed || !f.duplex ? 0 : f.duplex.writableLength;
    const own = this.rcvBuf - used, all = this.rcvBufTotal - this.unwritten - (this.promised - f.promised);
    if (all < own && !f.hostClosed) {
      this.rcvStarved.add(f);
      return all > 0 ? all : 0;
    }
    return own > 0 ? own : 0;
  }

  // The window field for a segment we send, moving rcvAdvEdge (never left, RFC 9293 3.8.6).
  private window(f: Flow): number {
    let free = this.freeSpace(f);
    if (free < Math.min(this.rcvBuf >> 1, f.sendMss)) free = 0;   // receiver SWS avoidance (RFC 1122 4.2.3.3)
    const cur = (f.rcvAdvEdge - f.rcvNxt) | 0;
    if (free < cur) free = cur;
    let w = Math.ceil(free / (1 << f.rcvWscale));
    if (w > 0xffff) w = 0xffff;
    const edge = (f.rcvNxt + w * (1 << f.rcvWscale)) >>> 0;
    if (seqLt(f.rcvAdvEdge, edge) || f.state !== S_OPEN) f.rcvAdvEdge = edge;
    this.repromise(f);
    return w;
  }

  // Sends what the guest's window allows; `limit` > 0 caps the number of segments (after an RTO).
  private trySend(f: Flow, limit: number): void {
    if (f.dead || f.state !== S_OPEN) return;
    let sent = 0;
    for (;;) {
      const inflight = (f.sndNxt - f.sndUna) | 0;
      const dataEnd = (f.sndUna + f.qBytes) >>> 0;
      const unsent = (dataEnd - f.sndNxt) | 0;
      if (unsent > 0) {
        const room = (f.sndWnd < f.cwnd ? f.sndWnd : f.cwnd) - inflight;
        if (room <= 0) {
          if (inflight === 0) this.armPersist(f);
          break;
        }
        const most = this.largest(f);
        let n = unsent < most ? unsent : most;
        if (n > room) {
          // Sender SWS avoidance: a window-limited runt only when nothing is in flight.
          if (inflight > 0 && room < f.sendMss) break;
          n = room;
        }
        // A FIN rides only on a segment that is one: a segmenter would have to keep it for the last.
        const fin = f.hostEnded && n === unsent && n <= f.sendMss;
        // The flow's state moves before the packet goes: send() may run the switch, whose answers
        // (the guest's ACKs) come back into this engine before it returns.
        const pkt = this.dataPacket(f, f.sndNxt, n, fin, f.curIdx, f.curOff);
        f.curIdx = this.endIdx; f.curOff = this.endOff;
        f.sndNxt = (f.sndNxt + n + (fin ? 1 : 0)) >>> 0;
        this.sent(f);
        this.emit(f, pkt, this.superSegments ? f.sendMss : undefined);
      } else if (unsent === 0 && f.hostEnded && f.sndNxt === dataEnd) {
        const seq = f.sndNxt;
        f.sndNxt = (f.sndNxt + 1) >>> 0;
        this.sent(f);
        this.sendPacket(f, seq, FIN | ACK, 0);
      } else break;
      if (f.dead || f.state !== S_OPEN) return;
      if (limit > 0 && ++sent >= limit) break;
    }
    this.maybeResume(f);
  }

  // What trySend does after moving sndNxt: sndMax, the RTT sample, the retransmission timer.
  private sent(f: Flow): void {
    if (seqLt(f.sndMax, f.sndNxt)) {
      if (!f.rttOn) { f.rttOn = true; f.rttSeq = f.sndMax; f.rttAt = this.now(); }
      f.sndMax = f.sndNxt;
    }
    if (f.timer === undefined || f.timerAt === 0) this.arm(f, f.rto);
  }

  private emit(f: Flow, pkt: Uint8Array, mss?: number): void {
    this.clearAck(f);
    this.out(pkt, mss);
  }

  private out(pkt: Uint8Array, mss?: number): void {
    this.sending++;
    try {
      if (mss === undefined) this.opts.send(pkt);
      else this.opts.send(pkt, mss);
    } finally {
      this.sending--;
    }
  }

  // The most payload one data packet carries: one MSS, or with superSegments as many whole MSS as fit.
  private largest(f: Flow): number {
    if (this.superSegments === 0) return f.sendMss;
    const k = Math.floor((this.superSegments - (f.key.v6 ? 60 : 40)) / f.sendMss);
    return k > 1 ? k * f.sendMss : f.sendMss;
  }

  // Where the last dataPacket's bytes ended in the queue (chunk index, offset).
  private endIdx = 0;
  private endOff = 0;

  // A data segment of n bytes at seq, its payload from queue position (idx, off); changes nothing
  // of the flow (the caller moves the cursor to endIdx/endOff if it is to advance).
  private dataPacket(f: Flow, seq: number, n: number, fin: boolean, idx: number, o: number): Uint8Array {
    const v6 = f.key.v6, ipLen = v6 ? 40 : 20;
    const pkt = this.header(v6, f.remoteAddr, f.guestAddr, f.key.dport, f.key.sport, seq, f.rcvNxt, ACK | PSH | (fin ? FIN : 0), this.window(f), 0, n);
    let at = ipLen + 20, left = n;
    while (left > 0) {
      const c = f.q[idx];
      const take = Math.min(left, c.length - o);
      c.copy(pkt, at, o, o + take);
      at += take; left -= take; o += take;
      if (o === c.length) { idx++; o = 0; }
    }
    this.endIdx = idx; this.endOff = o;
    this.finish(pkt, v6, this.superSegments > 0);
    return pkt;
  }

  private retransmitHead(f: Flow): void {
    const dataLeft = f.qBytes;
    if (dataLeft === 0) {
      if (f.hostEnded) { this.sendPacket(f, f.sndUna, FIN | ACK, 0); this.counters.retransmits++; }
      return;
    }
    const n = Math.min(dataLeft, f.sendMss, Math.max(f.sndWnd, 1));
    const pkt = this.dataPacket(f, f.sndUna, n, f.hostEnded && n === dataLeft, f.qHead, f.qHeadOff);
    f.rttOn = false;
    this.counters.retransmits++;
    this.emit(f, pkt, this.superSegments ? f.sendMss : undefined);
  }

  private fastRetransmit(f: Flow): void {
    if (f.inRecovery) return;
    f.inRecovery = true;
    f.recover = f.sndMax;
    f.ssthresh = Math.max(((f.sndMax - f.sndUna) | 0) >> 1, 2 * f.sendMss);
    f.cwnd = f.ssthresh;
    this.counters.fastRetransmits++;
    this.retransmitHead(f);
  }

  // ------------------------------------------------------------------------------------------
  // Timers

  private arm(f: Flow, delay: number): void {
    const at = this.now() + delay;
    f.timerAt = at;
    if (f.timer !== undefined && f.timerFireAt <= at) return;
    if (f.timer !== undefined) clearTimeout(f.timer);
    f.timerFireAt = at;
    f.timer = setTimeout(f.onTimer, delay);
  }

  private disarm(f: Flow): void { f.timerAt = 0; }

  private armPersist(f: Flow): void {
    if (f.timerAt !== 0) return;
    const d = Math.min(this.maxRto, Math.max(this.minRto, f.rto) * 2 ** f.persistBackoff);
    this.arm(f, d);
  }

  timer(f: Flow): void {
    if (f.dead || f.timerAt === 0 || this.closed) return;
    const now = this.now();
    if (now < f.timerAt) {
      f.timerFireAt = f.timerAt;
      f.timer = setTimeout(f.onTimer, f.timerAt - now);
      return;
    }
    f.timerAt = 0;
    if (f.state === S_SYN_SENT || f.state === S_SYN_RCVD) {
      if (++f.retries > this.synRetries) {
        if (f.state === S_SYN_SENT) { this.counters.connectFailed++; this.kill(f, false); }
        else this.resetFlow(f);
        return;
      }
      f.rto = Math.min(this.maxRto, f.rto * 2);
      this.counters.retransmits++;
      if (f.state === S_SYN_SENT) this.sendSyn(f); else this.sendSynAck(f);
      this.arm(f, f.rto);
      return;
    }
    if (f.sndMax !== f.sndUna) {
      this.counters.timeouts++;
      if (++f.retries > this.maxRetries) { this.resetFlow(f); return; }
      f.rto = Math.min(this.maxRto, f.rto * 2);
      f.rttOn = false;
      f.inRecovery = false; f.dupAcks = 0;
      f.ssthresh = Math.max(((f.sndMax - f.sndUna) | 0) >> 1, 2 * f.sendMss);
      f.cwnd = f.sendMss;
      // Go back to sndUna and send one segment; ACKs clock out the rest.
      f.sndNxt = f.sndUna; f.curIdx = f.qHead; f.curOff = f.qHeadOff;
      const before = f.sndNxt;
      if (f.qBytes === 0 && f.hostEnded) { const seq = f.sndNxt; f.sndNxt = (seq + 1) >>> 0; this.sendPacket(f, seq, FIN | ACK, 0); }
      else if (f.sndWnd === 0) { this.probe(f); f.timerAt = 0; this.arm(f, f.rto); return; }
      else this.trySend(f, 1);
      if (f.sndNxt !== before) this.counters.retransmits++;
      this.arm(f, f.rto);
      return;
    }
    // Persist: data waits behind a zero window.
    if (f.qBytes > 0 && f.sndWnd === 0) {
      this.probe(f);
      if (f.persistBackoff < 16) f.persistBackoff++;
      this.armPersist(f);
    }
  }

  private probe(f: Flow): void {
    this.counters.windowProbes++;
    this.sendPacket(f, (f.sndUna - 1) >>> 0, ACK, 0);
  }

  // ------------------------------------------------------------------------------------------
  // Ending flows

  private maybeDone(f: Flow): void {
    if (f.dead) return;
    if (f.guestFin && f.finAcked) {
      this.flushOne(f);
      this.remove(f);
    }
  }

  private guestReset(f: Flow): void {
    this.counters.resetByGuest++;
    this.kill(f, true);
  }

  // RST to the guest and the host side destroyed.
  private resetFlow(f: Flow): void {
    if (f.dead) return;
    this.counters.resetToGuest++;
    this.sendPacket(f, f.sndNxt, RST | ACK, 0);
    this.kill(f, true);
  }

  private kill(f: Flow, reset: boolean): void {
    const d = f.duplex;
    this.remove(f);
    if (d) destroyQuietly(d, reset);
  }

  private remove(f: Flow): void {
    if (f.dead) return;
    f.dead = true;
    f.timerAt = 0;
    if (f.timer !== undefined) { clearTimeout(f.timer); f.timer = undefined; }
    this.held -= f.qBytes;
    this.starved.delete(f);
    this.unwritten -= f.unwritten;
    f.unwritten = 0;
    this.promised -= f.promised;
    f.promised = 0;
    this.rcvStarved.delete(f);
    f.q = []; f.qBytes = 0;
    if (this.flowsById.get(f.id) === f) this.flowsById.delete(f.id);
    this.counters.flowsClosed++;
  }

  close(): void {
    if (this.closed) return;
    for (const f of [...this.flowsById.values()]) {
      if (f.state === S_OPEN || f.state === S_SYN_RCVD) this.resetFlow(f);
      else this.kill(f, true);
    }
    this.closed = true;
  }

  flows(): TcpFlowInfo[] {
    const out: TcpFlowInfo[] = [];
    for (const f of this.flowsById.values()) {
      const info: TcpFlowInfo = { key: { ...f.key }, state: stateName(f), toHost: f.toHost, toGuest: f.toGuest };
      const d = f.duplex as unknown as { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number } | undefined;
      if (d && (d.localAddress !== undefined || d.remoteAddress !== undefined)) {
        info.host = { localAddress: d.localAddress, localPort: d.localPort, remoteAddress: d.remoteAddress, remotePort: d.remotePort };
      }
      out.push(info);
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // ACKs and packet building

  // What the guest's segments call for is done once per flow at the end of the input batch (a
  // microtask): their data goes to the host side (corked until then: one writev), then the data an
  // ACK made room for, then the ACK for their data if no data segment carried it. Sending from a batch's end rather than from inside it also lets the switch take the segments
  // straight into its rx buffer (while it delivers a batch it must copy what is sent into it).
  private ackLater(f: Flow): void {
    f.ackDue = true;
    this.enlist(f);
  }

  private sendLater(f: Flow): void {
    f.sendDue = true;
    this.enlist(f);
  }

  private enlist(f: Flow): void {
    if (f.listed) return;
    f.listed = true;
    this.due.push(f);
    if (!this.dueScheduled) { this.dueScheduled = true; queueMicrotask(this.flushDue); }
  }

  private flushDue(): void {
    this.dueScheduled = false;
    const list = this.due;
    this.due = [];
    for (const f of list) {
      f.listed = false;
      if (f.corked) { f.corked = false; if (!f.dead && !f.hostClosed) f.duplex!.uncork(); }
      if (f.sendDue) { f.sendDue = false; this.trySend(f, 0); }
      this.flushOne(f);
    }
  }

  private flushOne(f: Flow): void {
    if (f.ackDue && !f.dead) this.sendAck(f);
  }

  private clearAck(f: Flow): void { f.ackDue = false; }

  private sendAck(f: Flow): void {
    if (f.state === S_OPENING || f.state === S_SYN_SENT) return;
    this.sendPacket(f, f.sndNxt, ACK, 0);
  }

  private sendSynAck(f: Flow): void { this.sendPacket(f, f.iss, SYN | ACK, f.wsOk ? 8 : 4); }
  // The MSS we announce and send at most: from the path's MTU where we are told it (IPv6's minimum
  // MTU at least), else `mss`, else a 1500-byte path's.
  private ourMss(v6: boolean): number {
    const hdrs = v6 ? 60 : 40;
    const mtu = this.opts.pathMtu?.();
    if (mtu === undefined || !Number.isInteger(mtu)) return this.mss ?? 1500 - hdrs;
    const fromPath = Math.max(v6 ? 1280 : 576, Math.min(65535, mtu)) - hdrs;
    return Math.min(this.mss ?? fromPath, fromPath);
  }

  private sendSyn(f: Flow): void {
    const pkt = this.header(f.key.v6, f.remoteAddr, f.guestAddr, f.key.dport, f.key.sport, f.iss, 0, SYN, 0xffff, 8, 0);
    this.synOpts(pkt, f.key.v6 ? 40 : 20, f.sendMss, this.ourWscale, 8);
    this.finish(pkt, f.key.v6);
    this.out(pkt);
  }

  // A segment with no payload on a flow (ACK, FIN, RST, SYN-ACK with `optLen` option bytes).
  private sendPacket(f: Flow, seq: number, flags: number, optLen: number): void {
    const v6 = f.key.v6;
    const win = flags & SYN ? Math.min(0xffff, this.freeSpace(f)) : flags & RST ? 0 : this.window(f);
    const pkt = this.header(v6, f.remoteAddr, f.guestAddr, f.key.dport, f.key.sport, seq, flags & ACK ? f.rcvNxt : 0, flags, win, optLen, 0);
    if (flags & SYN) {
      this.synOpts(pkt, v6 ? 40 : 20, this.ourMss(v6), f.rcvWscale, optLen);
      f.rcvAdvEdge = (f.rcvNxt + win) >>> 0;
      this.repromise(f);
    }
    this.finish(pkt, v6);
    if (flags & ACK) this.clearAck(f);
    this.out(pkt);
  }

  private synOpts(pkt: Uint8Array, at: number, mss: number, ws: number, optLen: number): void {
    at += 20;
    pkt[at] = 2; pkt[at + 1] = 4; put16(pkt, at + 2, mss);
    if (optLen === 8) { pkt[at + 4] = 1; pkt[at + 5] = 3; pkt[at + 6] = 3; pkt[at + 7] = ws; }
  }

  // A RST answering a segment that has no flow (RFC 9293 3.10.7.1).
  private resetFor(p: Uint8Array, s: Seg): void {
    const src = p.subarray(s.srcOff + s.alen, s.srcOff + 2 * s.alen), dst = p.subarray(s.srcOff, s.srcOff + s.alen);
    const pkt = s.flags & ACK
      ? this.tcpPacket(s.v6, src, dst, s.dport, s.sport, s.ack, 0, RST, 0, 0)
      : this.tcpPacket(s.v6, src, dst, s.dport, s.sport, 0, (s.seq + s.len + (s.flags & SYN ? 1 : 0) + (s.flags & FIN ? 1 : 0)) >>> 0, RST | ACK, 0, 0);
    this.out(pkt);
  }

  private tcpPacket(v6: boolean, src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number, win: number, optLen: number): Buffer {
    const pkt = this.header(v6, src, dst, sport, dport, seq, ack, flags, win, optLen, 0);
    this.finish(pkt, v6);
    return pkt;
  }

  // IP + TCP headers of one packet; payload and checksums are filled by the caller / finish().
  private header(v6: boolean, src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number, win: number, optLen: number, payload: number): Buffer {
    const ipLen = v6 ? 40 : 20, tcpLen = 20 + optLen + payload;
    const pkt = this.packetBuffer(ipLen + tcpLen);
    if (v6) {
      put32(pkt, 0, 0x60000000);
      put16(pkt, 4, tcpLen);
      pkt[6] = 6; pkt[7] = 64;
      pkt.set(src, 8); pkt.set(dst, 24);
    } else {
      pkt[0] = 0x45; pkt[1] = 0;
      put16(pkt, 2, ipLen + tcpLen);
      put32(pkt, 4, 0x00004000);   // id 0, DF
      pkt[8] = 64; pkt[9] = 6; pkt[10] = 0; pkt[11] = 0;
      pkt.set(src, 12); pkt.set(dst, 16);
    }
    const t = ipLen;
    put16(pkt, t, sport); put16(pkt, t + 2, dport);
    put32(pkt, t + 4, seq); put32(pkt, t + 8, ack);
    pkt[t + 12] = ((20 + optLen) / 4) << 4; pkt[t + 13] = flags;
    put16(pkt, t + 14, win);
    put32(pkt, t + 16, 0);   // checksum, urgent
    return pkt;
  }

  // Checksums: the IPv4 header's, and the TCP one complete, or with `partial` only the pseudo-header
  // sum (folded, not complemented), which whoever segments or finishes the packet completes.
  private finish(pkt: Uint8Array, v6: boolean, partial = false): void {
    const ipLen = v6 ? 40 : 20, tcpLen = pkt.length - ipLen;
    if (!v6) put16(pkt, 10, ~onesComplementSum(pkt.subarray(0, 20)) & 0xffff);
    const a = v6 ? 8 : 12;
    const sum = onesComplementSum(pkt.subarray(a, a + 2 * (v6 ? 16 : 4)), 6 + tcpLen);
    if (partial) put16(pkt, ipLen + 16, fold(sum));
    else if (pkt.buffer === this.scratch.buffer) put16(pkt, ipLen + 16, ~fold(this.scratchSum(pkt.byteOffset + ipLen, pkt.byteOffset + pkt.length) + sum) & 0xffff);
    else put16(pkt, ipLen + 16, ~fold(onesComplementSum(pkt.subarray(ipLen), sum)) & 0xffff);
  }

  // The one's-complement sum of scratch[start, end), as big-endian 16-bit words from an even start,
  // 32 bits at a time through a view made once (the payload checksum is most of a segment's cost).
  // The sum of little-endian 32-bit words, folded to 16 bits, is the sum of the little-endian 16-bit
  // words, which is the big-endian one byte-swapped (RFC 1071 2(B)).
  private scratchSum(start: number, end: number): number {
    const b = this.scratch;
    let s = 0, i = start;
    if (i & 2 && i + 2 <= end) { s = (b[i] << 8) | b[i + 1]; i += 2; }
    const w = this.scratch32, last = (end - i) >> 2;
    let le = 0;
    for (let k = i >> 2, e = k + last; k < e; k++) le += w[k];
    i += last << 2;
    while (le > 0xffff) le = (le % 0x10000) + Math.floor(le / 0x10000);
    s += ((le & 0xff) << 8) | (le >> 8);
    for (; i + 1 < end; i += 2) s += (b[i] << 8) | b[i + 1];
    if (i < end) s += b[i] << 8;
    return fold(s);
  }

  // Where a packet of n bytes is built: the scratch buffer, unless a send() is under way.
  private packetBuffer(n: number): Buffer {
    if (this.sending === 0) return this.scratch.subarray(LINK_HEADROOM, LINK_HEADROOM + n);
    return Buffer.allocUnsafe(LINK_HEADROOM + n).subarray(LINK_HEADROOM);
  }
}

// errno -> [ICMPv4 code (type 3), ICMPv6 code (type 1)]
const UNREACH: Record<string, [number, number]> = {
  ENETUNREACH: [0, 0], ENETDOWN: [0, 0],
  EHOSTUNREACH: [1, 3], EHOSTDOWN: [1, 3], ETIMEDOUT: [1, 3],
  EACCES: [13, 1], EPERM: [13, 1],
};

// ICMP/ICMPv6 destination unreachable from `src` to `dst` quoting `orig` (RFC 792 / RFC 1812 4.3.2.3:
// up to 576 bytes in all; RFC 4443 3.1: up to the minimum MTU, 1280).
function unreachable(v6: boolean, src: Uint8Array, dst: Uint8Array, code: number, orig: Uint8Array): Buffer {
  const ipLen = v6 ? 40 : 20;
  const quote = Math.min(orig.length, (v6 ? 1280 : 576) - ipLen - 8);
  const msgLen = 8 + quote;
  const pkt = Buffer.alloc(LINK_HEADROOM + ipLen + msgLen).subarray(LINK_HEADROOM);
  if (v6) {
    put32(pkt, 0, 0x60000000); put16(pkt, 4, msgLen); pkt[6] = 58; pkt[7] = 64;
    pkt.set(src, 8); pkt.set(dst, 24);
  } else {
    pkt[0] = 0x45; put16(pkt, 2, ipLen + msgLen); pkt[8] = 64; pkt[9] = 1;
    pkt.set(src, 12); pkt.set(dst, 16);
    put16(pkt, 10, ~onesComplementSum(pkt.subarray(0, 20)) & 0xffff);
  }
  pkt[ipLen] = v6 ? 1 : 3; pkt[ipLen + 1] = code;
  pkt.set(orig.subarray(0, quote), ipLen + 8);
  const sum = v6 ? onesComplementSum(pkt.subarray(8, 40), 58 + msgLen) : 0;
  put16(pkt, ipLen + 2, ~fold(onesComplementSum(pkt.subarray(ipLen), sum)) & 0xffff);
  return pkt;
}

function destroyQuietly(d: Duplex, reset: boolean): void {
  d.on('error', () => {});
  const s = d as Duplex & { resetAndDestroy?: () => void; connecting?: boolean };
  // A guest RST becomes a RST on the host socket (SO_LINGER 0) when the Duplex is a connected net.Socket.
  if (reset && typeof s.resetAndDestroy === 'function' && !s.destroyed && !s.connecting) {
    try { s.resetAndDestroy(); return; } catch { /* not a TCP handle */ }
  }
  d.destroy();
}

function stateName(f: Flow): TcpState {
  switch (f.state) {
    case S_OPENING: return 'OPENING';
    case S_SYN_SENT: return 'SYN_SENT';
    case S_SYN_RCVD: return 'SYN_RCVD';
  }
  const ourFin = f.hostEnded && f.sndNxt === ((f.sndUna + f.qBytes + 1) >>> 0);
  if (f.guestFin) return ourFin ? 'LAST_ACK' : 'CLOSE_WAIT';
  return ourFin ? 'FIN_WAIT' : 'ESTABLISHED';
}
