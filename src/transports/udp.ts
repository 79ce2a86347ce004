// UDP datagrams, one Ethernet frame per datagram and nothing else: what QEMU's `-netdev dgram` and
// `socat TUN,tun-type=tap ... UDP:...` speak. The peer is configured, or learned from the first
// datagram (then it follows the last sender, as a reconnecting peer would). A peer that does not keep
// up costs dropped frames, counted, never an unbounded queue.
import { createSocket, type Socket } from 'node:dgram';
import type { Switch } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats } from './pump.js';

export interface UdpOptions {
  bind: { host?: string; port: number };
  peer?: { host: string; port: number };
  maxQueued?: number;       // datagrams waiting in the socket's send queue before frames are dropped
}

export class UdpTransport {
  readonly stats = newStats();
  private socket: Socket;
  private peer?: { host: string; port: number };
  private readonly maxQueued: number;

  private constructor(readonly sw: Switch, readonly port: number, opts: UdpOptions, socket: Socket) {
    this.socket = socket;
    this.peer = opts.peer;
    this.maxQueued = opts.maxQueued ?? 1024;
    const pump = Pump.of(sw);
    socket.on('message', (msg, rinfo) => {
      if (msg.length < MIN_FRAME || msg.length > MAX_FRAME) { this.stats.rxRefused++; return; }
      if (!opts.peer) this.peer = { host: rinfo.address, port: rinfo.port };
      this.stats.rxFrames++;
      pump.receive(port, msg);
    });
    sw.port(port).onFrame((f) => this.write(f));
  }

  static async open(sw: Switch, port: number, opts: UdpOptions): Promise<UdpTransport> {
    sw.port(port);
    const family = (opts.bind.host ?? '127.0.0.1').includes(':') ? 'udp6' : 'udp4';
    const socket = createSocket(family);
    await new Promise<void>((ok, fail) => { socket.once('error', fail); socket.bind(opts.bind.port, opts.bind.host ?? '127.0.0.1', () => { socket.off('error', fail); ok(); }); });
    return new UdpTransport(sw, port, opts, socket);
  }

  address(): { host: string; port: number } {
    const a = this.socket.address();
    return { host: a.address, port: a.port };
  }

  private write(f: Uint8Array): void {
    if (!this.peer || this.socket.getSendQueueCount() >= this.maxQueued) { this.stats.txDropped++; return; }
    this.stats.txFrames++;
    this.socket.send(Buffer.from(f), this.peer.port, this.peer.host);
  }

  close(): Promise<void> {
    this.sw.ports.get(this.port)?.onFrame(undefined); // the port may be gone already
    return new Promise((ok) => this.socket.close(() => ok()));
  }
}
