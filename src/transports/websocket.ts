// WebSocket, one binary message per Ethernet frame: what v86, JSLinux and websockproxy clients speak.
// A text message or a message that is no frame disconnects the client with the reason; a client that
// does not keep up costs dropped frames (bounded by bufferedAmount).
//
// The daemon running this is root, and any web page the host's user opens can dial a WebSocket on
// localhost, so who may connect is decided at the upgrade, before a frame is read:
// - A browser always sends Origin; a handshake whose Origin is not exactly one of `allowedOrigins`
//   is refused with HTTP 403 (none are allowed unless listed). A handshake without Origin comes from
//   no browser (websockproxy, node) and is allowed: who can reach the listener at all is its
//   address's (loopback by default, or what the daemon's binding policy lets it bind).
// - A listener is one switch port with one client: while that client is open, another handshake is
//   refused with 409, so nobody takes a VM's port from it; once it has gone, the next client gets the
//   port (a reloaded browser VM reconnects).
// - A message is at most one frame, so ws is told so (maxPayload = MAX_FRAME): a longer message ends
//   the client with 1009 as soon as its length is known, instead of being buffered up to ws's 100 MiB.
// Every refusal is counted (`refusals`, or `rxRefused` for messages) and logged. The transport holds
// the SwitchPort object it attached to (see pump.ts) and never looks its id up again.
//
// Sending: the frames one delivery hands the port (the switch's BatchHandler) are copied into one
// Buffer, and each goes out as its message while the client's socket is corked, so the batch leaves in
// one writev instead of a write per frame, and costs one allocation instead of one per frame (ws keeps
// each message's bytes until the socket has written them, so the Buffer cannot be reused).
import { WebSocketServer, type WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Switch, SwitchPort } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats, attachBatch, noteDisconnect, logOf } from './pump.js';

export interface WebSocketOptions {
  host?: string;
  port: number;
  path?: string;
  allowedOrigins?: string[];     // browser origins that may connect, exactly as sent ("https://copy.sh")
  maxBufferedBytes?: number;
  log?: (message: string) => void;
}

type Verdict = (ok: boolean, code?: number, message?: string) => void;

export class WebSocketTransport {
  readonly stats = newStats();
  readonly disconnects: Array<{ reason: string }> = [];
  private readonly server: WebSocketServer;   // private: keeps ws's types out of the public declarations
  private client?: WebSocket;
  private socket?: Socket;                    // the client's TCP socket, corked around a batch's sends
  private readonly detach: () => void;
  private readonly log: (message: string) => void;

  private constructor(readonly sw: Switch, private readonly swPort: SwitchPort, readonly opts: WebSocketOptions) {
    this.log = logOf(opts.log);
    this.server = new WebSocketServer({
      host: opts.host ?? '127.0.0.1', port: opts.port, path: opts.path, maxPayload: MAX_FRAME,
      verifyClient: (info, verdict) => this.verify(info, verdict),
    });
    this.server.on('connection', (ws, req) => this.attach(ws, req.socket));
    this.detach = attachBatch(swPort, (mem, frames, n) => this.write(mem, frames, n));
  }

  static async listen(sw: Switch, port: number, opts: WebSocketOptions): Promise<WebSocketTransport> {
    const t = new WebSocketTransport(sw, sw.port(port), opts);
    await new Promise<void>((ok, fail) => {
      const failed = (e: Error) => { t.detach(); fail(e); };
      t.server.once('error', failed);
      t.server.once('listening', () => {
        t.server.off('error', failed);
        t.server.on('error', (e) => t.log(`netplane: port ${t.port}: listener: ${e.message}`));
        ok();
      });
    });
    return t;
  }

  get port(): number { return this.swPort.id; }

  address(): { host: string; port: number } {
    const a = this.server.address();
    return typeof a === 'string' || a === null ? { host: String(a), port: 0 } : { host: a.address, port: a.port };
  }

  // ws hands over the handshake before upgrading; the verdict is given at once, so no second
  // handshake can pass between this check and the 'connection' that makes this client the port's.
  private verify(info: { origin?: string; req: IncomingMessage }, verdict: Verdict): void {
    const refuse = (code: number, reason: string) => {
      this.stats.refusals++;
      noteDisconnect(this.disconnects, reason);
      this.log(`netplane: port ${this.port}: refused a WebSocket client from ${info.req.socket.remoteAddress}: ${reason}`);
      verdict(false, code, reason);
    };
    const origin = info.origin;
    if (origin !== undefined && !(this.opts.allowedOrigins ?? []).includes(origin)) {
      return refuse(403, `Origin ${JSON.stringify(origin.slice(0, 200))} is not allowed`);
    }
    const c = this.client;
    if (c && c.readyState === c.OPEN) return refuse(409, 'port already has a client');
    verdict(true);
  }

  private attach(ws: WebSocket, socket: Socket): void {
    this.client?.terminate();    // a client on its way out, no longer open
    this.client = ws;
    this.socket = socket;
    this.stats.connects++;
    const pump = Pump.of(this.sw);
    const disconnect = (reason: string) => {
      this.stats.rxRefused++;
      noteDisconnect(this.disconnects, reason);
      this.log(`netplane: port ${this.port}: client disconnected: ${reason}`);
    };
    ws.on('message', (data, isBinary) => {
      if (ws.readyState !== ws.OPEN) return;     // what a client sends after it was told to go is not delivered
      const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (!isBinary || frame.length < MIN_FRAME) {
        const reason = !isBinary ? 'a text message (frames are binary messages)' : `a ${frame.length}-byte message is no frame`;
        disconnect(reason);
        ws.close(1003, reason.slice(0, 120));
        return;
      }
      if (pump.receive(this.swPort, frame)) this.stats.rxFrames++;
      else this.stats.rxRefused++;
    });
    // ws has closed the connection already (1009 for a message over maxPayload, 1002 for a protocol
    // violation); what is left is to count it and say why.
    ws.on('error', (e: Error & { code?: string }) => {
      if (e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') disconnect(`a message over ${MAX_FRAME} bytes is no frame`);
      else if (e.code?.startsWith('WS_ERR_')) disconnect(`protocol error: ${e.message}`);
    });
    ws.on('close', () => { if (this.client === ws) { this.client = undefined; this.socket = undefined; } });
  }

  // The frames of one delivery: frame i at mem[frames[2i] .. + frames[2i + 1]).
  private write(mem: Uint8Array, frames: Uint32Array, n: number): void {
    const ws = this.client, socket = this.socket;
    const limit = this.opts.maxBufferedBytes ?? 1 << 20;
    if (!ws || !socket || ws.readyState !== ws.OPEN || ws.bufferedAmount > limit) { this.stats.txDropped += n; return; }
    let total = 0;
    for (let i = 0; i < n; i++) total += frames[2 * i + 1];
    const copy = Buffer.allocUnsafe(total);
    socket.cork();
    try {
      for (let i = 0, at = 0; i < n; i++) {
        // bufferedAmount counts what the corked socket holds: a slow client loses the batch's rest.
        if (ws.bufferedAmount > limit) { this.stats.txDropped += n - i; break; }
        const addr = frames[2 * i], len = frames[2 * i + 1];
        copy.set(mem.subarray(addr, addr + len), at);
        ws.send(copy.subarray(at, at + len), { binary: true });
        at += len;
        this.stats.txFrames++;
      }
    } finally { socket.uncork(); }
  }

  close(): Promise<void> {
    this.detach();
    this.client?.terminate();
    return new Promise((ok) => {
      this.server.close(() => ok());
      for (const c of this.server.clients) c.terminate();
    });
  }
}
