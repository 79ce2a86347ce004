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
import { WebSocketServer, type WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { Switch, SwitchPort } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats, attachTx, noteDisconnect, logOf } from './pump.js';

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
  private readonly detach: () => void;
  private readonly log: (message: string) => void;

  private constructor(readonly sw: Switch, private readonly swPort: SwitchPort, readonly opts: WebSocketOptions) {
    this.log = logOf(opts.log);
    this.server = new WebSocketServer({
      host: opts.host ?? '127.0.0.1', port: opts.port, path: opts.path, maxPayload: MAX_FRAME,
      verifyClient: (info, verdict) => this.verify(info, verdict),
    });
    this.server.on('connection', (ws) => this.attach(ws));
    this.detach = attachTx(swPort, (f) => this.write(f));
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

  private attach(ws: WebSocket): void {
    this.client?.terminate();    // a client on its way out, no longer open
    this.client = ws;
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
    ws.on('close', () => { if (this.client === ws) this.client = undefined; });
  }

  private write(f: Uint8Array): void {
    const ws = this.client;
    if (!ws || ws.readyState !== ws.OPEN || ws.bufferedAmount > (this.opts.maxBufferedBytes ?? 1 << 20)) { this.stats.txDropped++; return; }
    this.stats.txFrames++;
    ws.send(Buffer.from(f), { binary: true });
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
