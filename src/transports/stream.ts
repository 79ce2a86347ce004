// QEMU's stream framing (`-netdev stream`, and the legacy `-netdev socket`): each frame is preceded by
// its length as a 32-bit big-endian integer, over TCP or a unix socket. Reads and writes resume
// mid-frame: a frame split across chunks is reassembled, and Node's stream resumes a partial write. A
// client that sends a length that is no frame (0, or beyond the largest frame) is disconnected with
// the reason logged, and the switch goes on. A client that does not read costs dropped frames (its
// queue is bounded), not memory.
//
// The cost that matters is CPU per frame: a QEMU guest's TCP stream through the switch is one read, one
// process() and one write per event-loop turn, on cores the guests need. So nothing here allocates
// per frame or per read beyond the view of each frame: the Deframer parses frames in place in the
// chunk Node read, and keeps only a frame split across reads, in one buffer of its own; the
// FrameWriter takes the frames one flush hands a client in one call (the switch's BatchHandler: no
// call and no view per frame), copies them into one staging buffer and writes it with one write() at
// the end of the tick, reusing the buffer whenever the kernel took it whole.
//
// A unix socket's send buffer is asked to be 4 MiB (SO_SNDBUF through the native helper, where it is
// built; Node.js sets no socket buffer sizes; the kernel doubles the request and caps it at
// net.core.wmem_max), as passt does for its own: at the default 208 KiB the kernel took a batch of a
// download only in part about every other write, and each partial write cost a fresh staging buffer,
// external memory that V8 answered with full collections, and a wait for the socket to drain
// (docs/performance.md). A TCP client's buffer is left to the kernel's autotuning.
//
// The daemon running this is root and any local user may dial a TCP port, so a listener belongs to
// one switch port and one client at a time: while that client is alive, another connection is
// refused at once (counted in `refusals`, logged, kept in `disconnects`) and cannot take the VM's
// port; once the client is gone, the next connection is accepted, so a restarting QEMU gets its port
// back. The transport holds the SwitchPort object it attached to (see pump.ts): it sets and clears
// its handler on that object and never looks the id up again, since the id may belong to another
// endpoint by the time it closes.
//
// A unix socket is created where the caller says and nowhere else: netplane does not remove what is
// at the path first (it never deletes what it did not create), so an existing file makes listen fail
// with EADDRINUSE. Keeping the path free and its directory closed to others is the caller's path
// policy; `mode` then narrows who may connect (chmod right after listen; until then the process umask
// applies). Node removes the socket it bound when the server closes, so close has nothing to unlink.
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync } from 'node:fs';
import type { Switch, SwitchPort } from '../dataplane.js';
import { loadNative } from './native.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats, attachBatch, noteDisconnect, logOf } from './pump.js';

export interface StreamOptions {
  tcp?: { host?: string; port: number };
  unix?: string;
  mode?: number;                 // permission bits of the unix socket (for example 0o660)
  maxQueuedBytes?: number;       // bytes waiting to be written to the client before frames are dropped
  log?: (message: string) => void;
}

export class StreamTransport {
  readonly stats = newStats();
  readonly disconnects: Array<{ reason: string }> = [];
  private client?: Socket;
  private writer?: FrameWriter;
  private readonly maxQueuedBytes: number;
  private readonly detach: () => void;
  private readonly log: (message: string) => void;

  private constructor(readonly sw: Switch, private readonly swPort: SwitchPort, readonly server: Server, readonly opts: StreamOptions) {
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 1 << 20;
    this.log = logOf(opts.log);
    server.on('connection', (s) => this.attach(s));
    server.on('error', (e) => this.log(`netplane: port ${this.port}: listener: ${e.message}`));
    this.detach = attachBatch(swPort, (mem, frames, n) => this.write(mem, frames, n));
  }

  static async listen(sw: Switch, port: number, opts: StreamOptions): Promise<StreamTransport> {
    const swPort = sw.port(port);
    const server = await listenOn(opts);
    return new StreamTransport(sw, swPort, server, opts);
  }

  get port(): number { return this.swPort.id; }

  address(): { host: string; port: number } | string { return addressOf(this.server); }

  private attach(s: Socket): void {
    s.on('error', () => {});
    if (this.client && !this.client.destroyed) {
      const reason = `port ${this.port} already has a client`;
      this.stats.refusals++;
      noteDisconnect(this.disconnects, reason);
      this.log(`netplane: ${reason}; refused`);
      s.destroy();
      return;
    }
    this.client = s;
    this.writer = new FrameWriter(s, this.maxQueuedBytes, this.stats, this.opts.unix !== undefined);
    this.stats.connects++;
    s.setNoDelay(true);
    const pump = Pump.of(this.sw);
    readFrames(s, (frame) => {
      if (pump.receive(this.swPort, frame)) this.stats.rxFrames++;
      else this.stats.rxRefused++;
    }, (reason) => {
      this.stats.rxRefused++;
      noteDisconnect(this.disconnects, reason);
      this.log(`netplane: port ${this.port}: client disconnected: ${reason}`);
      s.destroy();
    });
    s.on('close', () => { if (this.client === s) this.client = undefined; });
  }

  /** The kernel's send buffer of the client's unix socket once widened (bytes), 0 when it was not. */
  get sendBuffer(): number { return this.client && this.writer?.socket === this.client ? this.writer.sendBuffer : 0; }

  private write(mem: Uint8Array, frames: Uint32Array, n: number): void {
    if (this.client && this.writer?.socket === this.client) this.writer.write(mem, frames, n);
    else this.stats.txDropped += n;
  }

  close(): Promise<void> {
    this.detach();
    this.client?.destroy();
    return closeServer(this.server);
  }
}

export interface StreamServerOptions extends StreamOptions {
  // Makes the port of a new client (for example sw.addPort({ network: 1 }).id).
  newPort: () => number;
  maxClients?: number;
}

interface Client { swPort: SwitchPort; socket?: Socket; writer?: FrameWriter; detach: () => void }

// One listener for several clients, each on its own port. A client is known by the source MAC of its
// first frame, so a VM that reconnects (QEMU restarts its netdev) gets its port back, with what the
// switch learned about it; a new MAC gets a new port, up to maxClients. The rule of one client per
// port holds here too: a connection whose MAC's port already has a live client is refused, as is
// one beyond maxClients. The MAC only sorts the clients the socket lets in; who may connect at all is
// the listener's (its mode and directory, or a loopback address).
export class StreamServer {
  readonly stats = newStats();
  readonly disconnects: Array<{ reason: string }> = [];
  private readonly byMac = new Map<string, Client>();
  private readonly log: (message: string) => void;

  private constructor(readonly sw: Switch, readonly server: Server, readonly opts: StreamServerOptions) {
    this.log = logOf(opts.log);
    server.on('connection', (s) => this.attach(s));
    server.on('error', (e) => this.log(`netplane: stream listener: ${e.message}`));
  }

  static async listen(sw: Switch, opts: StreamServerOptions): Promise<StreamServer> {
    const server = await listenOn(opts);
    return new StreamServer(sw, server, opts);
  }

  address(): { host: string; port: number } | string { return addressOf(this.server); }

  // The port of the client with this MAC, if it has been seen.
  portOf(mac: string): number | undefined { return this.byMac.get(mac)?.swPort.id; }

  private attach(s: Socket): void {
    s.on('error', () => {});
    s.setNoDelay(true);
    const pump = Pump.of(this.sw);
    const maxClients = this.opts.maxClients ?? 64;
    let client: Client | undefined;
    const end = (reason: string) => {
      noteDisconnect(this.disconnects, reason);
      this.log(`netplane: stream client disconnected: ${reason}`);
      s.destroy();
    };
    const refuse = (reason: string) => {
      this.stats.refusals++;
      end(`${reason}; refused`);
    };
    readFrames(s, (frame) => {
      if (!client) {
        const mac = [...frame.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
        let c = this.byMac.get(mac);
        if (c?.socket && !c.socket.destroyed) return refuse(`port ${c.swPort.id} (${mac}) already has a client`);
        if (!c) {
          if (this.byMac.size >= maxClients) return refuse(`more than ${maxClients} clients`);
          let swPort: SwitchPort;
          try { swPort = this.sw.port(this.opts.newPort()); } catch (e) { return refuse(`no port for ${mac}: ${(e as Error).message}`); }
          const fresh: Client = { swPort, detach: attachBatch(swPort, (mem, frames, n) => this.write(fresh, mem, frames, n)) };
          this.byMac.set(mac, fresh);
          c = fresh;
        }
        c.socket = s;
        c.writer = new FrameWriter(s, this.opts.maxQueuedBytes ?? 1 << 20, this.stats, this.opts.unix !== undefined);
        client = c;
        this.stats.connects++;
      }
      if (pump.receive(client.swPort, frame)) this.stats.rxFrames++;
      else this.stats.rxRefused++;
    }, (reason) => {
      this.stats.rxRefused++;
      end(reason);
    });
  }

  private write(c: Client, mem: Uint8Array, frames: Uint32Array, n: number): void {
    if (c.writer && c.writer.socket === c.socket) c.writer.write(mem, frames, n);
    else this.stats.txDropped += n;
  }

  close(): Promise<void> {
    for (const c of this.byMac.values()) { c.socket?.destroy(); c.detach(); }
    return closeServer(this.server);
  }
}

// A unix socket's send buffer asked to be UNIX_SNDBUF (see the top of this file); the kernel's answer,
// or 0 without the native helper or a descriptor.
export const UNIX_SNDBUF = 4 * 1024 * 1024;
function widenSendBuffer(s: Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const n = loadNative();
  if (typeof n?.sndBuf !== 'function' || typeof fd !== 'number' || fd < 0) return 0;   // a helper built before it had sndBuf
  const got = n!.sndBuf(fd, UNIX_SNDBUF);
  return got > 0 ? got : 0;
}

// The pieces both listeners share: listening, deframing, framing, closing.
async function listenOn(opts: StreamOptions): Promise<Server> {
  const server = createServer();
  // Every connection, also one refused or not yet known by its first frame, so close ends them all
  // (server.close waits for every open connection).
  const open = new Set<Socket>();
  server.on('connection', (s) => { open.add(s); s.on('close', () => open.delete(s)); });
  openSockets.set(server, open);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    const listening = () => { server.off('error', fail); ok(); };
    if (opts.unix) server.listen(opts.unix, listening);
    else server.listen(opts.tcp?.port ?? 0, opts.tcp?.host ?? '127.0.0.1', listening);
  });
  if (opts.unix && opts.mode !== undefined) {
    try {
      chmodSync(opts.unix, opts.mode);
    } catch (e) {
      await closeServer(server);
      throw e;
    }
  }
  return server;
}

function addressOf(server: Server): { host: string; port: number } | string {
  const a = server.address();
  return typeof a === 'string' || a === null ? String(a) : { host: a.address, port: a.port };
}

const openSockets = new WeakMap<Server, Set<Socket>>();

function closeServer(server: Server): Promise<void> {
  return new Promise((ok) => {
    server.close(() => ok());
    for (const s of openSockets.get(server) ?? []) s.destroy();
  });
}

// Calls onFrame for each length-prefixed frame read from s, resuming frames split across chunks. A
// length that is no frame ends the client through badLength; onFrame may end it too (by destroying
// s), and then nothing more is read.
function readFrames(s: Socket, onFrame: (frame: Buffer) => void, badLength: (reason: string) => void): void {
  const d = new Deframer(onFrame, badLength, () => s.destroyed);
  s.on('data', (chunk: Buffer) => d.push(chunk));
}

// QEMU's stream framing, undone in place: each frame is handed out as a view into the chunk it
// arrived in (valid during the call: the switch copies it at once), and only a frame split across
// chunks is copied, into `partial`, which is allocated once (a length prefix and the largest frame).
// The frames of a chunk therefore cost no copy and no allocation but their views.
export class Deframer {
  private readonly partial = Buffer.allocUnsafe(4 + MAX_FRAME);
  private have = 0;           // bytes of a split frame held in `partial`, its length prefix included
  private failed = false;

  constructor(private readonly onFrame: (frame: Buffer) => void, private readonly badLength: (reason: string) => void, private readonly stopped: () => boolean = () => false) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    let off = 0;
    if (this.have > 0) {
      const p = this.partial;
      if (this.have < 4) {
        const n = Math.min(4 - this.have, chunk.length);
        chunk.copy(p, this.have, 0, n);
        this.have += n;
        off = n;
        if (this.have < 4) return;
      }
      const len = p.readUInt32BE(0);
      if (!this.lengthOk(len)) return;
      const n = Math.min(4 + len - this.have, chunk.length - off);
      chunk.copy(p, this.have, off, off + n);
      this.have += n;
      off += n;
      if (this.have < 4 + len) return;
      this.have = 0;
      this.onFrame(p.subarray(4, 4 + len));
      if (this.stopped()) return;
    }
    while (chunk.length - off >= 4) {
      const len = chunk.readUInt32BE(off);
      if (!this.lengthOk(len)) return;
      if (chunk.length - off - 4 < len) break;
      this.onFrame(chunk.subarray(off + 4, off + 4 + len));
      if (this.stopped()) return;
      off += 4 + len;
    }
    if (off < chunk.length) {
      chunk.copy(this.partial, 0, off);
      this.have = chunk.length - off;
      // A split length prefix is checked once it is whole (the next chunk); a whole one was checked above.
    }
  }

  private lengthOk(len: number): boolean {
    if (len >= MIN_FRAME && len <= MAX_FRAME) return true;
    this.failed = true;
    this.badLength(`bad length prefix ${len} (a frame is ${MIN_FRAME} to ${MAX_FRAME} bytes)`);
    return false;
  }
}

// The frames one flush hands a client, gathered: each is copied with its length prefix into a
// staging buffer, and at the end of the tick (the switch hands a batch's frames over one after
// another in the same tick) the buffer goes out in one write. When the kernel took it all at once
// (nothing left queued in the socket), the buffer is used again for the next batch; if the kernel took
// only part, the socket holds the buffer until written and the next batch gets a fresh one; a batch
// that finds bytes still queued goes out as a copy of its own size (so a slow client pins at most one
// staging buffer). A batch larger than the buffer is written in pieces as it fills. A client whose socket holds more than maxQueuedBytes unwritten loses
// frames (txDropped), never memory.
export const STAGING_BYTES = 256 * 1024;

export class FrameWriter {
  private buf = Buffer.allocUnsafe(STAGING_BYTES);
  private used = 0;
  private staged = 0;         // frames in the buffer, counted sent; dropped instead if the socket goes first
  private scheduled = false;
  writes = 0;                 // write() calls made on the socket: one per batch, unless the batch overflowed the buffer
  readonly sendBuffer: number;   // the unix socket's send buffer as widened, 0 when it was not

  constructor(readonly socket: Socket, private readonly maxQueuedBytes: number, private readonly stats: { txFrames: number; txDropped: number }, unix = false) {
    this.sendBuffer = unix ? widenSendBuffer(socket) : 0;
  }

  // The frames of one delivery for this client (the switch's BatchHandler): frame i at mem[frames[2i]
  // .. + frames[2i + 1]), each copied behind its length prefix in one loop.
  write(mem: Uint8Array, frames: Uint32Array, n: number): void {
    const s = this.socket;
    // What the socket holds changes only when we write to it: checked first and after each write.
    if (s.destroyed || s.writableLength > this.maxQueuedBytes) { this.stats.txDropped += n; return; }
    let b = this.buf, at = this.used;
    for (let i = 0; i < n; i++) {
      const addr = frames[2 * i], len = frames[2 * i + 1];
      if (at + 4 + len > b.length) {
        this.used = at;
        this.flush();
        b = this.buf; at = 0;
        if (s.destroyed || s.writableLength > this.maxQueuedBytes) { this.stats.txDropped += n - i; break; }
      }
      b[at] = len >>> 24; b[at + 1] = (len >>> 16) & 255; b[at + 2] = (len >>> 8) & 255; b[at + 3] = len & 255;
      b.set(mem.subarray(addr, addr + len), at + 4);
      at += 4 + len;
      this.staged++;
      this.stats.txFrames++;
    }
    this.used = at;
    if (at > 0 && !this.scheduled) { this.scheduled = true; process.nextTick(this.atTickEnd); }
  }

  private readonly atTickEnd = (): void => { this.scheduled = false; this.flush(); };

  private flush(): void {
    if (this.used === 0) return;
    const s = this.socket;
    const n = this.used, frames = this.staged;
    this.used = 0;
    this.staged = 0;
    if (s.destroyed) { this.stats.txFrames -= frames; this.stats.txDropped += frames; return; }
    this.writes++;
    if (s.writableLength > 0) {
      // Queued behind bytes the kernel has not taken yet: a copy the size of the batch waits in the
      // socket, and the staging buffer stays ours.
      s.write(Buffer.from(this.buf.subarray(0, n)));
      return;
    }
    s.write(this.buf.subarray(0, n));
    if (s.writableLength > 0) this.buf = Buffer.allocUnsafe(STAGING_BYTES);
  }
}
