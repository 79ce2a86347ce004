// The overlay's underlay on the host's own sockets (the socket underlay of the shared contract): the
// kernel owns the provider address (PA) and routes the outer packets; netplane owns the VXLAN.
//
// Why sockets and not a device: a TAP or a packet socket on the underlay NIC would make netplane a
// second IP stack on the host's address (its own ARP, its own routing to the other hosts). With a
// UDP socket bound to PA:udpPort the kernel hands us exactly the VXLAN datagrams for us, and UDP
// sockets bound to the PA send the outer datagrams, the kernel resolving the next hop. The dataplane
// still builds and parses whole outer headers (they carry the entropy source port, the sender the
// membership check needs), so this transport only translates:
//
//   in:  each datagram is read (recvmmsg, many per call, through the native helper's udpRecv) at an
//        offset of 42 bytes into its slot of a pooled buffer, and the 14 + 20 + 8 bytes in front of it
//        are written there: an Ethernet header with zero MACs and type 0x0800, an IPv4 header (the
//        sender's address to the PA, TTL 64, a valid checksum) and a UDP header (the sender's port to
//        udpPort, checksum 0). No copy of the payload; the frame goes to the switch as the underlay
//        port's. The socket has UDP_GRO: a run another host sent as one UDP GSO message (below) comes
//        as one message of its datagrams back to back, which the kernel did not cut, and each is
//        handed over in turn, its headers written over the tail of the one before.
//   out: a frame the switch hands the underlay port is an outer IPv4/UDP packet behind 14 bytes of
//        Ethernet. The port's frames of a delivery come in one call (SwitchPort.onBatch: where they lie
//        in the module's memory), and at the end of the delivery (Switch.onDelivered), while that
//        memory still holds them, they leave in sendmmsg calls (the helper's udpSendSegments), each
//        UDP payload (the VXLAN header and the inner frame) read where it lies and sent to the
//        destination address and port of its outer headers: no copy in JavaScript. A run of
//        datagrams of one flow (the segments of a super-frame the dataplane cut and encapsulated one
//        by one: same destination, same source port, equal lengths but the last) is one UDP GSO
//        message (UDP_SEGMENT) whose payload is the run's payloads one after another (one iovec
//        each): the kernel's stack runs once for the run and cuts it into the same datagrams at
//        the end. It used to send each outer packet whole on a raw socket, one pass
//        of the kernel's IP output each, which bound a sending host to 1.3-1.6 Gbit/s
//        (docs/performance.md). A packet the kernel refuses (its queue full, too big for the route,
//        no route) and an outer packet that is not UDP are counted in txDropped. A kernel without
//        UDP_SEGMENT (before Linux 4.18) gets every datagram as a message of its own (`gso` false),
//        and one without UDP_GRO (before 5.0) hands every datagram over on its own (`gro` false).
//
// What the kernel writes, not the dataplane: the outer source port is the sending socket's (16
// sockets bound to the PA on ports the kernel picks; the dataplane's per-flow source port chooses
// the socket, so a flow keeps one source port and the underlay's ECMP still sees 16 of them), the IP
// identification, and the UDP checksum, which the kernel computes (UDP GSO requires one; the
// dataplane writes 0, and RFC 7348 §5 lets a receiver take either). DF is set on every datagram and
// none is fragmented (IP_PMTUDISC_PROBE), as the dataplane sets it; TTL 64 and TOS 0, as it writes.
//
// No raw socket, so no CAP_NET_RAW: the PA must be an address of this host (the bind fails otherwise)
// and the UDP port free: the open fails with the errno's name (EADDRNOTAVAIL, EADDRINUSE), and the
// daemon refuses its `overlay` setting with that reason. There is no fallback without the native
// helper (Node.js's dgram sockets take one datagram a call, without UDP_SEGMENT); the in-memory SDK
// can drive the underlay port itself.
import type { Switch, SwitchPort } from '../dataplane.js';
import { Pump, newStats, attachBatch, MAX_FRAME, type TransportStats } from './pump.js';
import { loadNative, type Native } from './native.js';
import { parseIPv4 } from '../frames.js';

export interface UnderlayOptions {
  address: string;        // the provider address (IPv4, an address of this host)
  udpPort?: number;       // default 4789
}

export interface UnderlayStats extends TransportStats {
  rxBatches: number;
  txBatches: number;
  rxTooLong: number;      // datagrams that do not fit a frame with the 42 bytes of outer headers
  rxRuns: number;         // messages that were a sender's run of datagrams, coalesced by the kernel (UDP_GRO)
  txRuns: number;         // runs of a flow's datagrams handed to the kernel as one UDP GSO send
}

const OUTER = 14 + 20 + 8;             // what is synthesized in front of each datagram
const ADDR_REC = 20;                   // the helper's address record (udp.ts)
const SLOT = 65536;                    // the largest datagram a frame can hold (MAX_FRAME - OUTER), + room to tell a longer one
const RX_BATCH = 16;
const TX_MESSAGES = 1024;
const TX_IOVS = 4096;                  // (offset, length) pairs: the payloads of the queued messages
const SEG_DESC = 6;                    // udpSendSegments' record: socket, first pair in txIovs, pairs, segment size, address, port
const TX_SOCKETS = 16;
// A UDP GSO message: at most 64 segments (Linux's UDP_MAX_SEGMENTS) and 65507 bytes of payload (an
// IPv4 UDP datagram's largest).
const RUN_SEGMENTS = 64;
const RUN_BYTES = 65507;
// The UDP socket's receive buffer asked for (SO_RCVBUF, capped by net.core.rmem_max): the default
// (rmem_default, 208 KiB) holds about 90 datagrams, less than two super-frames' worth of VXLAN
// segments from a sending host, and what overflows it is lost (7.5 % of the datagrams in the
// two-host bench, each a TCP retransmission in the guests).
export const UNDERLAY_RCVBUF = 4 * 1024 * 1024;

export class UnderlayTransport {
  readonly stats: UnderlayStats = { ...newStats(), rxBatches: 0, txBatches: 0, rxTooLong: 0, rxRuns: 0, txRuns: 0 };
  private readonly udpFd: number;
  private readonly txFds: number[] = [];
  private readonly poller: object;
  private readonly buf = new Uint8Array(OUTER + SLOT * RX_BATCH);
  private readonly lens = new Uint32Array(RX_BATCH);
  private readonly segs = new Uint32Array(RX_BATCH);
  private readonly from = new Uint8Array(ADDR_REC * RX_BATCH);
  private readonly txDesc = new Uint32Array(TX_MESSAGES * SEG_DESC);
  private readonly txIovs = new Uint32Array(TX_IOVS * 2);
  private txCount = 0;                 // messages
  private txIovN = 0;                  // pairs in txIovs
  private txGrams = 0;                 // the datagrams the messages hold
  private runOpen = false;             // the last message may take another segment of its run
  private runBytes = 0;                // the last message's payload
  private mem: Uint8Array | undefined; // the module's memory, during the delivery whose frames are queued
  private readonly pa: Uint8Array;
  private readonly detach: () => void;
  private readonly undelivered: () => void;
  private readonly swPort: SwitchPort;
  readonly udpPort: number;
  readonly txPorts: number[] = [];     // the send sockets' UDP ports on the PA (the outer source ports)
  readonly gro: boolean;               // the UDP socket takes a sender's runs of datagrams as one message (UDP_GRO)
  readonly gso: boolean;               // runs leave as one UDP GSO send (UDP_SEGMENT); without it, datagram by datagram
  readonly receiveBuffer: number;      // the UDP socket's receive buffer as the kernel set it (0 with a helper without rcvBuf)

  private constructor(private readonly n: Native, readonly sw: Switch, port: number, opts: UnderlayOptions) {
    this.swPort = sw.port(port);
    this.pa = parseIPv4(opts.address);
    const rec = new Uint8Array(ADDR_REC);
    rec[0] = 4;
    this.udpPort = opts.udpPort ?? 4789;
    rec[2] = this.udpPort >> 8;
    rec[3] = this.udpPort & 0xff;
    rec.set(this.pa, 4);
    [this.udpFd] = n.udpOpen(rec);
    try {
      const txRec = rec.slice();
      txRec[2] = 0; txRec[3] = 0;
      for (let i = 0; i < TX_SOCKETS; i++) {
        const [fd, txPort] = n.udpOpen(txRec);
        this.txFds.push(fd);
        this.txPorts.push(txPort);
        const e = n.udpDf(fd);
        if (e < 0) throw new Error(`setsockopt(IP_MTU_DISCOVER): errno ${-e}`);
        // Nothing reads them: they take nothing in, so no sender can fill their receive queues.
        const r = n.udpSendOnly(fd);
        if (r < 0) throw new Error(`setsockopt(SO_ATTACH_FILTER): errno ${-r}`);
      }
    } catch (e) {
      for (const fd of [this.udpFd, ...this.txFds]) n.close(fd);
      throw e;
    }
    this.receiveBuffer = typeof n.rcvBuf === 'function' ? Math.max(0, n.rcvBuf(this.udpFd, UNDERLAY_RCVBUF)) : 0;
    // A kernel without UDP_GRO (before 5.0) hands every datagram on its own: segs stay 0. One without
    // UDP_SEGMENT (before 4.18) would refuse every run: each datagram is then a message of its own.
    this.gro = n.udpGro(this.udpFd) === 0;
    this.gso = n.udpGso(this.txFds[0]) === 0;
    const pump = Pump.of(sw);
    // Datagram i lands at OUTER + i * SLOT: its outer headers go in the OUTER bytes before it, the
    // tail of the previous slot, which only a datagram too long to accept reaches (it is dropped
    // before the next one's headers are written).
    const rx = this.buf.subarray(OUTER);
    this.poller = n.poll(this.udpFd, () => {
      let got: number;
      do {
        got = n.udpRecv(this.udpFd, rx, this.lens, SLOT, this.from, this.segs);
        if (got > 0) this.stats.rxBatches++;
        for (let i = 0; i < got; i++) this.received(pump, i);
      } while (got === RX_BATCH);
    });
    this.detach = attachBatch(this.swPort, (mem, frames, count) => {
      for (let k = 0; k < count; k++) this.queue(mem, frames[2 * k], frames[2 * k + 1]);
    });
    this.undelivered = sw.onDelivered(() => this.flush());
  }

  // Opens the sockets; throws with the errno's name where the helper is there, else says it is not.
  static open(sw: Switch, port: number, opts: UnderlayOptions): UnderlayTransport {
    const n = loadNative();
    if (!n) throw new Error('the socket underlay needs the native helper (npm run build:native: a C compiler and node-gyp, on Linux)');
    return new UnderlayTransport(n, sw, port, opts);
  }

  // Message i of a read: one datagram, or (UDP_GRO) a run of equal datagrams from one sender, the
  // last shorter, each handed to the switch in turn. A datagram's outer headers are written in the
  // 42 bytes before it: for the first, the previous slot's tail; for each later one, the tail of the
  // one before, which the switch has copied by then (Switch.send copies the frame).
  private received(pump: Pump, i: number): void {
    const len = this.lens[i], seg = this.segs[i];
    if (len > SLOT) { this.stats.rxTooLong++; return; }
    if (seg === 0 || seg >= len) { this.deliver(pump, i * SLOT, len, i); return; }
    this.stats.rxRuns++;
    for (let o = 0; o < len; o += seg) this.deliver(pump, i * SLOT + o, Math.min(seg, len - o), i);
  }

  // The datagram of `len` bytes at buf[at + OUTER], from the sender of message i: its outer headers
  // written in front of it, then to the switch.
  private deliver(pump: Pump, at: number, len: number, i: number): void {
    if (OUTER + len > MAX_FRAME) { this.stats.rxTooLong++; return; }
    const b = this.buf, r = i * ADDR_REC, from = this.from;
    // Ethernet: zero MACs, IPv4.
    b.fill(0, at, at + 12);
    b[at + 12] = 0x08; b[at + 13] = 0x00;
    // IPv4: 20 bytes, TTL 64, UDP, sender -> PA.
    const ip = at + 14, total = 20 + 8 + len;
    b[ip] = 0x45; b[ip + 1] = 0;
    b[ip + 2] = total >> 8; b[ip + 3] = total & 0xff;
    b[ip + 4] = 0; b[ip + 5] = 0; b[ip + 6] = 0; b[ip + 7] = 0;
    b[ip + 8] = 64; b[ip + 9] = 17; b[ip + 10] = 0; b[ip + 11] = 0;
    b[ip + 12] = from[r + 4]; b[ip + 13] = from[r + 5]; b[ip + 14] = from[r + 6]; b[ip + 15] = from[r + 7];
    const pa = this.pa;
    b[ip + 16] = pa[0]; b[ip + 17] = pa[1]; b[ip + 18] = pa[2]; b[ip + 19] = pa[3];
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += (b[ip + k] << 8) | b[ip + k + 1];
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    sum = ~sum & 0xffff;
    b[ip + 10] = sum >> 8; b[ip + 11] = sum & 0xff;
    // UDP: the sender's port -> udpPort, checksum 0 (RFC 7348 §5 lets VXLAN's be zero).
    const u = ip + 20, ulen = 8 + len;
    b[u] = from[r + 2]; b[u + 1] = from[r + 3];
    b[u + 2] = this.udpPort >> 8; b[u + 3] = this.udpPort & 0xff;
    b[u + 4] = ulen >> 8; b[u + 5] = ulen & 0xff;
    b[u + 6] = 0; b[u + 7] = 0;
    if (pump.receive(this.swPort, b.subarray(at, at + OUTER + len))) this.stats.rxFrames++;
    else this.stats.rxRefused++;
  }

  // An outer packet the dataplane built (mem[at .. at + flen), valid until the delivery ends): its UDP
  // payload, where it lies, queued as a message of its own or as the next segment of the last
  // message's run. Nothing is copied: the sends at the end of the delivery read the module's memory.
  private queue(mem: Uint8Array, at: number, flen: number): void {
    const ihl = flen >= 14 + 20 ? (mem[at + 14] & 0x0f) * 4 : 0;
    if (ihl < 20 || mem[at + 12] !== 0x08 || mem[at + 13] !== 0x00 || mem[at + 14] >> 4 !== 4 || mem[at + 23] !== 17 || flen < 14 + ihl + 8) {
      this.stats.txDropped++;
      return;
    }
    const u = at + 14 + ihl, pay = u + 8, len = at + flen - pay;
    const addr = (mem[at + 30] | (mem[at + 31] << 8) | (mem[at + 32] << 16) | (mem[at + 33] << 24)) >>> 0;
    const port = (mem[u + 2] << 8) | mem[u + 3];
    const fd = this.txFds[((mem[u] << 8) | mem[u + 1]) % TX_SOCKETS];
    const d = this.txDesc, iovs = this.txIovs;
    if (this.runOpen) {
      const l = (this.txCount - 1) * SEG_DESC;
      const seg = d[l + 3] || this.runBytes;
      if (d[l] === fd && d[l + 4] === addr && d[l + 5] === port && len > 0 && len <= seg &&
          this.runBytes + len <= RUN_BYTES && d[l + 2] < RUN_SEGMENTS && this.txIovN < TX_IOVS) {
        if (d[l + 3] === 0) this.stats.txRuns++;
        iovs[2 * this.txIovN] = pay;
        iovs[2 * this.txIovN + 1] = len;
        this.txIovN++;
        d[l + 2]++;
        d[l + 3] = seg;
        this.runBytes += len;
        this.txGrams++;
        this.runOpen = len === seg;
        return;
      }
    }
    // A full queue is sent now: its frames are in the same memory, which the delivery still holds.
    if (this.txCount === TX_MESSAGES || this.txIovN === TX_IOVS) this.flush();
    this.mem = mem;
    const k = this.txCount * SEG_DESC;
    d[k] = fd;
    d[k + 1] = this.txIovN;
    d[k + 2] = 1;
    d[k + 3] = 0;
    d[k + 4] = addr;
    d[k + 5] = port;
    iovs[2 * this.txIovN] = pay;
    iovs[2 * this.txIovN + 1] = len;
    this.txIovN++;
    this.txCount++;
    this.txGrams++;
    this.runBytes = len;
    this.runOpen = this.gso && len > 0;
  }

  private flush(): void {
    const count = this.txCount, grams = this.txGrams, mem = this.mem;
    this.txCount = 0;
    this.txIovN = 0;
    this.txGrams = 0;
    this.runOpen = false;
    this.mem = undefined;
    if (count === 0 || !mem) return;
    const sent = this.n.udpSendSegments(mem, this.txDesc, count, this.txIovs);
    this.stats.txBatches++;
    this.stats.txFrames += sent;
    this.stats.txDropped += grams - sent;
  }

  close(): void {
    this.detach();
    this.undelivered();
    this.n.stop(this.poller);
    this.n.close(this.udpFd);
    for (const fd of this.txFds) this.n.close(fd);
  }
}
