// WebSocket, one binary message per Ethernet frame: what v86, JSLinux and websockproxy clients speak.
// Like the stream transport, a listener is one switch port and a reconnecting client gets it back;
// a text message or a message that is no frame disconnects the client with the reason; a client
// that does not keep up costs dropped frames (bounded by bufferedAmount).
import { WebSocketServer, type WebSocket } from 'ws';
import type { Switch } from '../dataplane.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats } from './pump.js';

export interface WebSocketOptions {
  host?: string;
  port: number;
  path?: string;
  maxBufferedBytes?: number;
  log?: (message: string) => void;
}

export class WebSocketTransport {
  readonly stats = newStats();
  disconnects: Array<{ reason: string }> = [];
  private client?: WebSocket;

  private constructor(readonly sw: Switch, readonly port: number, readonly server: WebSocketServer, readonly opts: WebSocketOptions) {
    const pump = Pump.of(sw);
    server.on('connection', (ws) => {
      this.client?.terminate();
      this.client = ws;
      ws.on('message', (data, isBinary) => {
        const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        if (!isBinary || frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
          this.stats.rxRefused++;
          const reason = !isBinary ? 'a text message (frames are binary messages)' : `a ${frame.length}-byte message is no frame`;
          this.disconnects.push({ reason });
          (opts.log ?? ((m: string) => console.error(m)))(`netplane: port ${port}: client disconnected: ${reason}`);
          ws.close(1003, reason.slice(0, 120));
          return;
        }
        this.stats.rxFrames++;
        pump.receive(port, frame);
      });
      ws.on('close', () => { if (this.client === ws) this.client = undefined; });
      ws.on('error', () => {});
    });
    sw.port(port).onFrame((f) => {
      const ws = this.client;
      if (!ws || ws.readyState !== ws.OPEN || ws.bufferedAmount > (opts.maxBufferedBytes ?? 1 << 20)) { this.stats.txDropped++; return; }
      this.stats.txFrames++;
      ws.send(Buffer.from(f), { binary: true });
    });
  }

  static async listen(sw: Switch, port: number, opts: WebSocketOptions): Promise<WebSocketTransport> {
    sw.port(port);
    const server = await new Promise<WebSocketServer>((ok, fail) => {
      const s = new WebSocketServer({ host: opts.host ?? '127.0.0.1', port: opts.port, path: opts.path });
      s.once('listening', () => ok(s));
      s.once('error', fail);
    });
    return new WebSocketTransport(sw, port, server, opts);
  }

  address(): { host: string; port: number } {
    const a = this.server.address();
    return typeof a === 'string' || a === null ? { host: String(a), port: 0 } : { host: a.address, port: a.port };
  }

  close(): Promise<void> {
    this.sw.ports.get(this.port)?.onFrame(undefined); // the port may be gone already
    this.client?.terminate();
    return new Promise((ok) => this.server.close(() => ok()));
  }
}
