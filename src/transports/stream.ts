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
    const server = await listenOn(opts);
    return new StreamTransport(sw, port, server, opts);
  }

  address(): { host: string; port: number } | string { return addressOf(this.server); }

  private attach(s: Socket): void {
    if (this.client) this.client.destroy();
    this.client = s;
    s.setNoDelay(true);
    const pump = Pump.of(this.sw);
    readFrames(s, (frame) => {
      this.stats.rxFrames++;
      pump.receive(this.port, frame);
    }, (reason) => this.refuse(s, reason));
    s.on('error', () => {});
    s.on('close', () => { if (this.client === s) this.client = undefined; });
  }

  private refuse(s: Socket, reason: string): void {
    this.stats.rxRefused++;
    this.disconnects.push({ reason });
    (this.opts.log ?? ((m: string) => console.error(m)))(`netplane: port ${this.port}: client disconnected: ${reason}`);
    s.destroy();
  }

  private write(f: Uint8Array): void { writeFrame(this.client, f, this.maxQueuedBytes, this.stats); }

  close(): Promise<void> {
    this.sw.ports.get(this.port)?.onFrame(undefined); // the port may be gone already
    this.client?.destroy();
    return closeServer(this.server, this.opts);
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
    const server = await listenOn(opts);
    return new StreamServer(sw, server, opts);
  }

  address(): { host: string; port: number } | string { return addressOf(this.server); }

  // The port of the client with this MAC, if it has been seen.
  portOf(mac: string): number | undefined { return this.byMac.get(mac)?.port; }

  private attach(s: Socket): void {
    s.setNoDelay(true);
    const pump = Pump.of(this.sw);
    let port: number | undefined;
    const log = this.opts.log ?? ((m: string) => console.error(m));
    const refuse = (reason: string) => {
      this.stats.rxRefused++;
      this.disconnects.push({ reason });
      log(`netplane: stream client disconnected: ${reason}`);
      s.destroy();
    };
    readFrames(s, (frame) => {
      if (port === undefined) {
        const mac = [...frame.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
        let c = this.byMac.get(mac);
        if (c?.socket && !c.socket.destroyed) return `${mac} is already connected`;
        if (!c) {
          if (this.byMac.size >= (this.opts.maxClients ?? 64)) return `more than ${this.opts.maxClients ?? 64} clients`;
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
    }, refuse);
    s.on('error', () => {});
  }

  private write(c: { socket?: Socket }, f: Uint8Array): void {
    writeFrame(c.socket, f, this.opts.maxQueuedBytes ?? 1 << 20, this.stats);
  }

  close(): Promise<void> {
    for (const c of this.byMac.values()) { c.socket?.destroy(); this.sw.ports.get(c.port)?.onFrame(undefined); }
    return closeServer(this.server, this.opts);
  }
}

// The pieces both listeners share: listening, deframing, framing, closing.
async function listenOn(opts: StreamOptions): Promise<Server> {
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
  return server;
}

function addressOf(server: Server): { host: string; port: number } | string {
  const a = server.address();
  return typeof a === 'string' || a === null ? String(a) : { host: a.address, port: a.port };
}

function closeServer(server: Server, opts: StreamOptions): Promise<void> {
  return new Promise((ok) => server.close(() => { if (opts.unix && existsSync(opts.unix)) unlinkSync(opts.unix); ok(); }));
}

// Calls onFrame for each length-prefixed frame read from s, resuming frames split across chunks. A
// length that is no frame, or a reason returned by onFrame, ends the client through refuse.
function readFrames(s: Socket, onFrame: (frame: Buffer) => string | void, refuse: (reason: string) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  s.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (pending.length - off >= 4) {
      const len = pending.readUInt32BE(off);
      if (len < MIN_FRAME || len > MAX_FRAME) return refuse(`bad length prefix ${len} (a frame is ${MIN_FRAME} to ${MAX_FRAME} bytes)`);
      if (pending.length - off - 4 < len) break;
      const reason = onFrame(pending.subarray(off + 4, off + 4 + len));
      if (reason) return refuse(reason);
      off += 4 + len;
    }
    pending = off === pending.length ? Buffer.alloc(0) : Buffer.from(pending.subarray(off));
  });
}

function writeFrame(s: Socket | undefined, f: Uint8Array, maxQueuedBytes: number, stats: { txFrames: number; txDropped: number }): void {
  if (!s || s.destroyed || s.writableLength > maxQueuedBytes) { stats.txDropped++; return; }
  const b = Buffer.allocUnsafe(4 + f.length);
  b.writeUInt32BE(f.length, 0);
  b.set(f, 4);
  stats.txFrames++;
  s.write(b);
}
