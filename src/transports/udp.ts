// UDP datagrams, one Ethernet frame per datagram and nothing else: what QEMU's `-netdev dgram` and
// `socat TUN,tun-type=tap ... UDP:...` speak. A peer that does not keep up costs dropped frames,
// counted, never an unbounded queue.
//
// Any local process can send a datagram to the bound port, and the daemon running this is root, so
// one datagram must not be enough to take a VM's port:
// - With `peer` configured, only datagrams from exactly that address and port are frames of this
//   port; anything else is refused (counted in `refusals`, never delivered). Its host is therefore a
//   numeric address, compared as the datagrams' source reads; a name is an error at open.
// - Without it, the first sender of a frame becomes the peer. Another sender is refused while the
//   peer has sent a frame within `peerIdleMs`; after that silence the next sender takes over, so a
//   restarted socat or QEMU (a new source port) gets the port back. Each peer learned counts in
//   `connects`.
// The transport holds the SwitchPort object it attached to (see pump.ts) and never looks its id up
// again.
//
// Batched I/O. Where the native helper is built (Linux, native/tap.c) and the bind address is
// numeric, the transport uses the helper's own UDP socket instead of Node's dgram: a readiness event
// drains up to 16 datagrams per recvmmsg() call into a pooled buffer (their sources as 20-byte
// records, compared bytewise with the peer's, no string per datagram), and the frames a delivery
// hands this port are copied into a pooled tx buffer and sent to the peer in one sendmmsg() call at
// the end of the delivery (Switch.onDelivered). A datagram the socket cannot take (its buffer full)
// is counted in txDropped, as a full dgram queue (maxQueued) is on the fallback. `native: false`, or
// no helper, keeps Node's dgram socket: one system call and one event per datagram. Either socket asks
// for a 1 MiB receive buffer (UDP_RCVBUF; the kernel's default holds about 90 frames, which a guest's
// burst overflows while the event loop is busy, each overflow a lost frame).
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { isIP } from 'node:net';
import { NetplaneError, type Switch, type SwitchPort } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats, attachTx } from './pump.js';
import { loadNative, type Native } from './native.js';
import { parseIPv4, parseIPv6, formatIPv4, formatIPv6 } from '../frames.js';

export const UDP_RCVBUF = 1024 * 1024;

export interface UdpOptions {
  bind: { host?: string; port: number };
  peer?: { host: string; port: number };
  peerIdleMs?: number;      // silence after which a learned peer may be replaced by another sender (default 30000)
  maxQueued?: number;       // datagrams waiting in the socket's send queue before frames are dropped (dgram)
  native?: boolean;         // default true: batched through the native helper where it is built
}

const ADDR_REC = 20;              // the helper's address record: u8 family, u8 0, u16 port (BE), 16 bytes
const RX_SLOT = MAX_FRAME + 1;    // the longest frame, + 1 to tell a longer (truncated) datagram
const RX_BATCH = 16;              // 1 MiB staging each way
const TX_BYTES = RX_SLOT * RX_BATCH;
const TX_FRAMES = 1024;

// An address as the helper's record; an IPv4 address on an IPv6 socket as ::ffff:a.b.c.d.
function addrRecord(host: string, port: number, v6: boolean): Uint8Array {
  const rec = new Uint8Array(ADDR_REC);
  rec[0] = v6 ? 6 : 4;
  rec[2] = port >> 8;
  rec[3] = port & 0xff;
  if (!v6) rec.set(parseIPv4(host), 4);
  else if (isIP(host) === 4) { rec[14] = rec[15] = 0xff; rec.set(parseIPv4(host), 16); }
  else rec.set(parseIPv6(host), 4);
  return rec;
}

// The native helper's side of the transport: its own UDP socket, read and written in batches.
class NativeUdp {
  private readonly poller: object;
  private readonly buf = new Uint8Array(RX_SLOT * RX_BATCH);
  private readonly lens = new Uint32Array(RX_BATCH);
  private readonly from = new Uint8Array(ADDR_REC * RX_BATCH);
  private readonly from32 = new Uint32Array(this.from.buffer);
  private readonly txBuf = new Uint8Array(TX_BYTES);
  private readonly txDesc = new Uint32Array(TX_FRAMES * 3);
  private txCount = 0;
  private txUsed = 0;
  peer?: Uint8Array;          // the peer's address record
  private peer32?: Uint32Array;
  rxBatches = 0;
  txBatches = 0;

  constructor(private readonly n: Native, readonly fd: number, readonly host: string, readonly port: number, readonly v6: boolean,
              onDatagram: (msg: Uint8Array, fromPeer: boolean, from: () => { host: string; port: number; rec: Uint8Array }) => void,
              private readonly sent: (ok: number, dropped: number) => void) {
    this.poller = n.poll(fd, () => {
      let got: number;
      do {
        got = n.udpRecv(fd, this.buf, this.lens, RX_SLOT, this.from);
        if (got > 0) this.rxBatches++;
        for (let i = 0; i < got; i++) {
          const at = i * RX_SLOT, r = i * ADDR_REC;
          onDatagram(this.buf.subarray(at, at + this.lens[i]), this.isPeer(i), () => {
            const rec = this.from.slice(r, r + ADDR_REC);
            const host = rec[0] === 6 ? formatIPv6(rec, 4) : formatIPv4(rec, 4);
            return { host, port: (rec[2] << 8) | rec[3], rec };
          });
        }
      } while (got === RX_BATCH);
    });
  }

  setPeer(rec: Uint8Array | undefined): void {
    this.peer = rec;
    this.peer32 = rec ? new Uint32Array(rec.slice().buffer) : undefined;
  }

  private isPeer(i: number): boolean {
    const p = this.peer32;
    if (!p) return false;
    const f = this.from32, o = i * (ADDR_REC / 4);
    return f[o] === p[0] && f[o + 1] === p[1] && f[o + 2] === p[2] && f[o + 3] === p[3] && f[o + 4] === p[4];
  }

  queue(f: Uint8Array): boolean {
    if (this.txCount === TX_FRAMES || this.txUsed + f.length > TX_BYTES) this.flush();
    if (f.length > TX_BYTES) return false;
    const off = this.txUsed, d = this.txCount * 3;
    this.txBuf.set(f, off);
    this.txDesc[d] = off;
    this.txDesc[d + 1] = off;
    this.txDesc[d + 2] = f.length;
    this.txCount++;
    this.txUsed = (off + f.length + 7) & ~7;
    return true;
  }

  flush(): void {
    const count = this.txCount;
    if (count === 0) return;
    this.txCount = 0;
    this.txUsed = 0;
    if (!this.peer) { this.sent(0, count); return; }
    const ok = this.n.udpSend(this.fd, this.txBuf, this.txDesc, count, this.peer);
    this.txBatches++;
    this.sent(ok, count - ok);
  }

  close(): void {
    this.n.stop(this.poller);
    this.n.close(this.fd);
  }
}

export class UdpTransport {
  readonly stats = newStats();
  private peer?: { host: string; port: number };
  private peerHeardAt = 0;
  private readonly maxQueued: number;
  private readonly peerIdleMs: number;
  private readonly detach: () => void;
  private readonly pump: Pump;
  private readonly undelivered?: () => void;

  // Exactly one of socket (Node's dgram) and nat (the native helper's batched socket).
  private constructor(readonly sw: Switch, private readonly swPort: SwitchPort, private readonly opts: UdpOptions,
                      private readonly socket?: Socket, private readonly nat?: NativeUdp) {
    this.peer = opts.peer;
    this.maxQueued = opts.maxQueued ?? 1024;
    this.peerIdleMs = opts.peerIdleMs ?? 30000;
    this.pump = Pump.of(sw);
    if (socket) {
      socket.on('message', (msg, from) => {
        const fromPeer = this.peer !== undefined && from.address === this.peer.host && from.port === this.peer.port;
        this.arrived(msg, fromPeer, () => from);
      });
      this.detach = attachTx(swPort, (f) => this.write(f));
    } else {
      const n = nat!;
      // A peer of the other family never matches (its record stays zeros, family 0), as on dgram.
      if (opts.peer) n.setPeer(isIP(opts.peer.host) === 6 && !n.v6 ? new Uint8Array(ADDR_REC) : addrRecord(opts.peer.host, opts.peer.port, n.v6));
      this.detach = attachTx(swPort, (f) => { if (!n.queue(f)) this.stats.txDropped++; });
      this.undelivered = sw.onDelivered(() => n.flush());
    }
  }

  static async open(sw: Switch, port: number, opts: UdpOptions): Promise<UdpTransport> {
    const swPort = sw.port(port);
    if (opts.peer && !isIP(opts.peer.host)) throw new NetplaneError('peer.host', `must be a numeric IP address (the source address of its datagrams), got ${JSON.stringify(opts.peer.host)}`);
    const host = opts.bind.host ?? '127.0.0.1';
    const v6 = host.includes(':');
    // A bind address the helper's record cannot hold (a name, a scoped IPv6 address) stays on dgram.
    const n = opts.native === false || !isIP(host) || host.includes('%') || opts.peer?.host.includes('%') ? null : loadNative();
    if (n) {
      let t: UdpTransport | undefined;
      const [fd, bound] = n.udpOpen(addrRecord(host, opts.bind.port, v6));
      if (typeof n.rcvBuf === 'function') n.rcvBuf(fd, UDP_RCVBUF);
      const nat = new NativeUdp(n, fd, host, bound, v6, (msg, fromPeer, from) => t!.arrived(msg, fromPeer, from),
        (ok, dropped) => { t!.stats.txFrames += ok; t!.stats.txDropped += dropped; });
      t = new UdpTransport(sw, swPort, opts, undefined, nat);
      return t;
    }
    const socket = createSocket(v6 ? 'udp6' : 'udp4');
    await new Promise<void>((ok, fail) => { socket.once('error', fail); socket.bind(opts.bind.port, host, () => { socket.off('error', fail); ok(); }); });
    try { socket.setRecvBufferSize(UDP_RCVBUF); } catch { /* the kernel's limit; the default stays */ }
    return new UdpTransport(sw, swPort, opts, socket);
  }

  get port(): number { return this.swPort.id; }

  // Whether datagrams go through the native helper in batches (recvmmsg/sendmmsg), and its calls
  // that moved datagrams so far (undefined on Node's dgram: one call per datagram).
  get batched(): boolean { return this.nat !== undefined; }
  get batches(): { rx: number; tx: number } | undefined { return this.nat && { rx: this.nat.rxBatches, tx: this.nat.txBatches }; }

  address(): { host: string; port: number } {
    if (this.nat) return { host: this.nat.host, port: this.nat.port };
    const a = this.socket!.address();
    return { host: a.address, port: a.port };
  }

  // A datagram from `from` (fromPeer: it is the peer's): a frame of the port, or refused.
  private arrived(msg: Uint8Array, fromPeer: boolean, from: () => { address?: string; host?: string; port: number; rec?: Uint8Array }): void {
    if (!fromPeer && !this.mayTakeOver()) { this.stats.refusals++; return; }
    if (msg.length < MIN_FRAME || msg.length > MAX_FRAME) { this.stats.rxRefused++; return; }
    if (!fromPeer) this.learn(from());
    this.peerHeardAt = Date.now();
    if (this.pump.receive(this.swPort, msg)) this.stats.rxFrames++;
    else this.stats.rxRefused++;
  }

  // A sender other than the peer: never when the peer is configured; when it is learned, only once
  // the peer has been silent for peerIdleMs.
  private mayTakeOver(): boolean {
    return !this.opts.peer && (!this.peer || Date.now() - this.peerHeardAt >= this.peerIdleMs);
  }

  private learn(from: { address?: string; host?: string; port: number; rec?: Uint8Array }): void {
    this.peer = { host: from.host ?? (from as RemoteInfo).address, port: from.port };
    if (this.nat) this.nat.setPeer(from.rec);
    this.stats.connects++;
  }

  private write(f: Uint8Array): void {
    const socket = this.socket!;
    if (!this.peer || socket.getSendQueueCount() >= this.maxQueued) { this.stats.txDropped++; return; }
    socket.send(Buffer.from(f), this.peer.port, this.peer.host, this.sent);
  }

  // A frame longer than a datagram can carry (65507 bytes over IPv4) fails to send: a drop.
  private readonly sent = (e: Error | null) => { if (e) this.stats.txDropped++; else this.stats.txFrames++; };

  close(): Promise<void> {
    this.detach();
    if (this.nat) {
      this.undelivered?.();
      this.nat.close();
      return Promise.resolve();
    }
    return new Promise((ok) => this.socket!.close(() => ok()));
  }
}
