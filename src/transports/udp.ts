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
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { isIP } from 'node:net';
import { NetplaneError, type Switch, type SwitchPort } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats, attachTx } from './pump.js';

export interface UdpOptions {
  bind: { host?: string; port: number };
  peer?: { host: string; port: number };
  peerIdleMs?: number;      // silence after which a learned peer may be replaced by another sender (default 30000)
  maxQueued?: number;       // datagrams waiting in the socket's send queue before frames are dropped
}

export class UdpTransport {
  readonly stats = newStats();
  private peer?: { host: string; port: number };
  private peerHeardAt = 0;
  private readonly maxQueued: number;
  private readonly peerIdleMs: number;
  private readonly detach: () => void;

  private constructor(readonly sw: Switch, private readonly swPort: SwitchPort, private readonly opts: UdpOptions, private readonly socket: Socket) {
    this.peer = opts.peer;
    this.maxQueued = opts.maxQueued ?? 1024;
    this.peerIdleMs = opts.peerIdleMs ?? 30000;
    const pump = Pump.of(sw);
    socket.on('message', (msg, from) => {
      const fromPeer = this.peer !== undefined && from.address === this.peer.host && from.port === this.peer.port;
      if (!fromPeer && !this.mayTakeOver()) { this.stats.refusals++; return; }
      if (msg.length < MIN_FRAME || msg.length > MAX_FRAME) { this.stats.rxRefused++; return; }
      if (!fromPeer) this.learn(from);
      this.peerHeardAt = Date.now();
      if (pump.receive(swPort, msg)) this.stats.rxFrames++;
      else this.stats.rxRefused++;
    });
    this.detach = attachTx(swPort, (f) => this.write(f));
  }

  static async open(sw: Switch, port: number, opts: UdpOptions): Promise<UdpTransport> {
    const swPort = sw.port(port);
    if (opts.peer && !isIP(opts.peer.host)) throw new NetplaneError('peer.host', `must be a numeric IP address (the source address of its datagrams), got ${JSON.stringify(opts.peer.host)}`);
    const family = (opts.bind.host ?? '127.0.0.1').includes(':') ? 'udp6' : 'udp4';
    const socket = createSocket(family);
    await new Promise<void>((ok, fail) => { socket.once('error', fail); socket.bind(opts.bind.port, opts.bind.host ?? '127.0.0.1', () => { socket.off('error', fail); ok(); }); });
    return new UdpTransport(sw, swPort, opts, socket);
  }

  get port(): number { return this.swPort.id; }

  address(): { host: string; port: number } {
    const a = this.socket.address();
    return { host: a.address, port: a.port };
  }

  // A sender other than the peer: never when the peer is configured; when it is learned, only once
  // the peer has been silent for peerIdleMs.
  private mayTakeOver(): boolean {
    return !this.opts.peer && (!this.peer || Date.now() - this.peerHeardAt >= this.peerIdleMs);
  }

  private learn(from: RemoteInfo): void {
    this.peer = { host: from.address, port: from.port };
    this.stats.connects++;
  }

  private write(f: Uint8Array): void {
    if (!this.peer || this.socket.getSendQueueCount() >= this.maxQueued) { this.stats.txDropped++; return; }
    this.socket.send(Buffer.from(f), this.peer.port, this.peer.host, this.sent);
  }

  // A frame longer than a datagram can carry (65507 bytes over IPv4) fails to send: a drop.
  private readonly sent = (e: Error | null) => { if (e) this.stats.txDropped++; else this.stats.txFrames++; };

  close(): Promise<void> {
    this.detach();
    return new Promise((ok) => this.socket.close(() => ok()));
  }
}
