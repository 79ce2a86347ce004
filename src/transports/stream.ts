// QEMU's stream framing (`-netdev stream`, and the legacy `-netdev socket`): each frame is preceded by
// its length as a 32-bit big-endian integer, over TCP or a unix socket. A listener belongs to one
// switch port: whoever connects is that port, and a client that reconnects gets its port back (the
// new connection replaces the old). Reads and writes resume mid-frame: a frame split across chunks is
// reassembled, and Node's stream resumes a partial write. A client that sends a length that is no
// frame (0, or beyond the largest frame) is disconnected with the reason logged, and the switch goes
// on. A client that does not read costs dropped frames (its queue is bounded), not memory.
import { createServer, type Server, type Socket } from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';
import type { Switch } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats } from './pump.js';

export interface StreamOptions {
  tcp?: { host?: string; port: number };
  unix?: string;
  maxQueuedBytes?: number;       // bytes waiting to be written to the client before frames are dropped
  log?: (message: string) => void;
}

export class StreamTransport {
  readonly stats = newStats();
  disconnects: Array<{ reason: string }> = [];
  private client?: Socket;
  private readonly maxQueuedBytes: number;

  private constructor(readonly sw: Switch, readonly port: number, readonly server: Server, readonly opts: StreamOptions) {
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 1 << 20;
    server.on('connection', (s) => this.attach(s));
    sw.port(port).onFrame((f) => this.write(f));
  }

  static async listen(sw: Switch, port: number, opts: StreamOptions): Promise<StreamTransport> {
    sw.port(port);
    const server = createServer();
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      if (opts.unix) {
        if (existsSync(opts.unix)) unlinkSync(opts.unix);
        server.listen(opts.unix, () => ok());
      } else {
        server.listen(opts.tcp?.port ?? 0, opts.tcp?.host ?? '127.0.0.1', () => ok());
      }
    });
    return new StreamTransport(sw, port, server, opts);
  }

  address(): { host: string; port: number } | string {
    const a = this.server.address();
    return typeof a === 'string' || a === null ? String(a) : { host: a.address, port: a.port };
  }

  private attach(s: Socket): void {
    if (this.client) this.client.destroy();
    this.client = s;
    s.setNoDelay(true);
    const pump = Pump.of(this.sw);
    let pending = Buffer.alloc(0);
    s.on('data', (chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let off = 0;
      while (pending.length - off >= 4) {
        const len = pending.readUInt32BE(off);
        if (len < MIN_FRAME || len > MAX_FRAME) {
          this.refuse(s, `bad length prefix ${len} (a frame is ${MIN_FRAME} to ${MAX_FRAME} bytes)`);
          return;
        }
        if (pending.length - off - 4 < len) break;
        this.stats.rxFrames++;
        pump.receive(this.port, pending.subarray(off + 4, off + 4 + len));
        off += 4 + len;
      }
      pending = off === pending.length ? Buffer.alloc(0) : Buffer.from(pending.subarray(off));
    });
    s.on('error', () => {});
    s.on('close', () => { if (this.client === s) this.client = undefined; });
  }

  private refuse(s: Socket, reason: string): void {
    this.stats.rxRefused++;
    this.disconnects.push({ reason });
    (this.opts.log ?? ((m: string) => console.error(m)))(`netplane: port ${this.port}: client disconnected: ${reason}`);
    s.destroy();
  }

  private write(f: Uint8Array): void {
    const s = this.client;
    if (!s || s.destroyed || s.writableLength > this.maxQueuedBytes) { this.stats.txDropped++; return; }
    const b = Buffer.allocUnsafe(4 + f.length);
    b.writeUInt32BE(f.length, 0);
    b.set(f, 4);
    this.stats.txFrames++;
    s.write(b);
  }

  close(): Promise<void> {
    this.sw.ports.get(this.port)?.onFrame(undefined); // the port may be gone already
    this.client?.destroy();
    return new Promise((ok) => this.server.close(() => { if (this.opts.unix && existsSync(this.opts.unix)) unlinkSync(this.opts.unix); ok(); }));
  }
}

export interface StreamServerOptions extends StreamOptions {
  // Makes the port of a new client (for example sw.addPort({ network: 1 }).id).
  newPort: () => number;
  maxClients?: number;
}

// One listener for several clients, each on its own port. A client is known by the source MAC of its
// first frame, so a VM that reconnects (QEMU restarts its netdev) gets its port back, with what the
// switch learned about it; a new MAC gets a new port, up to maxClients.
export class StreamServer {
  readonly stats = newStats();
  disconnects: Array<{ reason: string }> = [];
  private readonly byMac = new Map<string, { port: number; socket?: Socket }>();

  private constructor(readonly sw: Switch, readonly server: Server, readonly opts: StreamServerOptions) {
    server.on('connection', (s) => this.attach(s));
  }

  static async listen(sw: Switch, opts: StreamServerOptions): Promise<StreamServer> {
    const server = createServer();
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      if (opts.unix) {
        if (existsSync(opts.unix)) unlinkSync(opts.unix);
        server.listen(opts.unix, () => ok());
      } else {
        server.listen(opts.tcp?.port ?? 0, opts.tcp?.host ?? '127.0.0.1', () => ok());
      }
    });
    return new StreamServer(sw, server, opts);
  }

  address(): { host: string; port: number } | string {
    const a = this.server.address();
    return typeof a === 'string' || a === null ? String(a) : { host: a.address, port: a.port };
  }

  // The port of the client with this MAC, if it has been seen.
  portOf(mac: string): number | undefined { return this.byMac.get(mac)?.port; }

  private attach(s: Socket): void {
    s.setNoDelay(true);
    const pump = Pump.of(this.sw);
    let port: number | undefined;
    let pending = Buffer.alloc(0);
    const log = this.opts.log ?? ((m: string) => console.error(m));
    const refuse = (reason: string) => {
      this.stats.rxRefused++;
      this.disconnects.push({ reason });
      log(`netplane: stream client disconnected: ${reason}`);
      s.destroy();
    };
    s.on('data', (chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let off = 0;
      while (pending.length - off >= 4) {
        const len = pending.readUInt32BE(off);
        if (len < MIN_FRAME || len > MAX_FRAME) return refuse(`bad length prefix ${len} (a frame is ${MIN_FRAME} to ${MAX_FRAME} bytes)`);
        if (pending.length - off - 4 < len) break;
        const frame = pending.subarray(off + 4, off + 4 + len);
        if (port === undefined) {
          const mac = [...frame.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
          let c = this.byMac.get(mac);
          if (c?.socket && !c.socket.destroyed) return refuse(`${mac} is already connected`);
          if (!c) {
            if (this.byMac.size >= (this.opts.maxClients ?? 64)) return refuse(`more than ${this.opts.maxClients ?? 64} clients`);
            const p = this.opts.newPort();
            c = { port: p };
            this.byMac.set(mac, c);
            this.sw.port(p).onFrame((f) => this.write(c!, f));
          }
          c.socket = s;
          port = c.port;
        }
        this.stats.rxFrames++;
        pump.receive(port, frame);
        off += 4 + len;
      }
      pending = off === pending.length ? Buffer.alloc(0) : Buffer.from(pending.subarray(off));
    });
    s.on('error', () => {});
  }

  private write(c: { socket?: Socket }, f: Uint8Array): void {
    const s = c.socket;
    if (!s || s.destroyed || s.writableLength > (this.opts.maxQueuedBytes ?? 1 << 20)) { this.stats.txDropped++; return; }
    const b = Buffer.allocUnsafe(4 + f.length);
    b.writeUInt32BE(f.length, 0);
    b.set(f, 4);
    this.stats.txFrames++;
    s.write(b);
  }

  close(): Promise<void> {
    for (const c of this.byMac.values()) { c.socket?.destroy(); this.sw.ports.get(c.port)?.onFrame(undefined); }
    return new Promise((ok) => this.server.close(() => { if (this.opts.unix && existsSync(this.opts.unix)) unlinkSync(this.opts.unix); ok(); }));
  }
}
