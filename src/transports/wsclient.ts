// A switch port connected, as a WebSocket client, to a daemon's WebSocket endpoint (websocket.ts):
// one binary message per Ethernet frame each way, the framing v86 and websockproxy speak. It uses the
// platform's WebSocket (a browser's, or any class with the same interface passed as `WebSocket`) and
// nothing else, so it is part of the browser bundle: this is how a page's switch joins a host network.
//
// - Frames the port emits go out as messages. While the socket is not open (connecting, or waiting
//   to reconnect) they wait in a queue of at most `queueLimit` frames; beyond that, and while the
//   socket's own buffer holds more than `maxBufferedBytes`, a frame is dropped and counted
//   (txDropped): a slow or absent daemon costs frames, never the page's memory.
// - A message is a frame if it is binary and 14 to 65535 bytes long; anything else is counted
//   (rxRefused) and dropped. Frames that arrive together enter the switch in one batch (pump.ts).
// - The daemon refuses a handshake whose Origin it does not list (403) and a second client on a port
//   (409). A browser shows the page neither status, only a close before the socket opened: that is
//   counted as a refusal, and the reason says where to look.
// - With `reconnect`, a lost connection is tried again after a delay that doubles up to a bound and
//   starts over once a connection opens; the daemon gives the port to the next client once the old
//   one has gone, so a daemon restart or a page reload reconnects.
import type { Switch, SwitchPort } from '../switch.js';
import { Pump, MIN_FRAME, MAX_FRAME, newStats, attachTx, noteDisconnect, logOf } from './pump.js';

// What this transport uses of a WebSocket: the browser's, Node.js 22's global, or ws's class all fit.
// (Named here rather than taken from the DOM's types, so the declarations compile without lib "DOM".)
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  binaryType: string;
  onopen: ((ev: any) => unknown) | null;
  onmessage: ((ev: any) => unknown) | null;
  onclose: ((ev: any) => unknown) | null;
  onerror: ((ev: any) => unknown) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface WebSocketClientOptions {
  url: string | URL;                 // the endpoint's listener: "ws://127.0.0.1:8001/"
  protocols?: string | string[];
  queueLimit?: number;               // frames kept while not connected (default 256)
  maxBufferedBytes?: number;         // socket buffer beyond which frames are dropped (default 1 MiB)
  reconnect?: boolean | { delayMs?: number; maxDelayMs?: number };   // default off; on: 250 ms doubling to 10 s
  WebSocket?: WebSocketClass;        // the class to use (default: the global WebSocket)
  log?: (message: string) => void;
}

export type WebSocketClientState = 'connecting' | 'open' | 'waiting' | 'closed';

const OPEN = 1;

export class WebSocketClientTransport {
  readonly stats = newStats();
  readonly disconnects: Array<{ reason: string }> = [];
  // Called on every change of state (a page shows it; a test waits for it).
  onstatechange?: (state: WebSocketClientState) => void;
  private current: WebSocketClientState = 'connecting';
  private ws?: WebSocketLike;
  private readonly queue: Uint8Array[] = [];
  private timer?: ReturnType<typeof setTimeout>;
  private delay: number;
  private readonly detach: () => void;
  private readonly log: (message: string) => void;
  private readonly Socket: WebSocketClass;
  private readonly swPort: SwitchPort;

  // Starts connecting at once; connect() is the same and waits until the socket is open.
  constructor(readonly sw: Switch, port: number | SwitchPort, readonly opts: WebSocketClientOptions) {
    const Socket = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket;
    if (!Socket) throw new Error('netplane: no WebSocket here; pass the class as the `WebSocket` option');
    for (const k of ['queueLimit', 'maxBufferedBytes'] as const) {
      const v = opts[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw new RangeError(`${k} must be a non-negative integer, got ${v}`);
    }
    this.Socket = Socket;
    this.log = logOf(opts.log);
    this.swPort = typeof port === 'number' ? sw.port(port) : port;
    this.delay = this.reconnectDelays()[0];
    this.detach = attachTx(this.swPort, (f) => this.write(f));
    this.open();
  }

  // Resolves once the socket is open. Without reconnect, rejects if the first attempt fails; with
  // it, keeps trying (race it with a timeout to give up).
  static connect(sw: Switch, port: number | SwitchPort, opts: WebSocketClientOptions): Promise<WebSocketClientTransport> {
    const t = new WebSocketClientTransport(sw, port, opts);
    const failed = () => new Error(`netplane: WebSocket ${String(opts.url)}: ${t.disconnects.at(-1)?.reason ?? 'closed'}`);
    if (t.state === 'closed') return Promise.reject(failed());
    return new Promise((ok, fail) => {
      const prev = t.onstatechange;
      t.onstatechange = (s) => {
        prev?.(s);
        if (s === 'open') { t.onstatechange = prev; ok(t); }
        else if (s === 'closed') { t.onstatechange = prev; fail(failed()); }
      };
    });
  }

  get port(): number { return this.swPort.id; }
  get state(): WebSocketClientState { return this.current; }
  // Frames waiting for the connection to open.
  get queued(): number { return this.queue.length; }

  close(): void {
    if (this.current === 'closed') return;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close(1000, 'closed by the page');
    }
    this.finish();
  }

  private reconnectDelays(): [number, number] {
    const r = this.opts.reconnect;
    const o = typeof r === 'object' ? r : {};
    return [o.delayMs ?? 250, o.maxDelayMs ?? 10_000];
  }

  private setState(s: WebSocketClientState): void {
    if (s === this.current) return;
    this.current = s;
    this.onstatechange?.(s);
  }

  private open(): void {
    this.setState('connecting');
    let ws: WebSocketLike;
    try {
      ws = new this.Socket(String(this.opts.url), this.opts.protocols);
    } catch (e) {
      // A malformed URL or a refused scheme: no attempt will do better.
      noteDisconnect(this.disconnects, (e as Error).message);
      this.stats.refusals++;
      this.finish();
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.stats.connects++;
      this.delay = this.reconnectDelays()[0];
      this.setState('open');
      while (this.queue.length && this.ws === ws) this.send(ws, this.queue.shift()!, false);
    };
    ws.onmessage = (ev: { data: unknown }) => {
      const d = ev.data;
      const frame = d instanceof ArrayBuffer ? new Uint8Array(d) : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : undefined;
      if (!frame || frame.length < MIN_FRAME || frame.length > MAX_FRAME) { this.stats.rxRefused++; return; }
      if (Pump.of(this.sw).receive(this.swPort, frame)) this.stats.rxFrames++;
      else this.stats.rxRefused++;
    };
    ws.onerror = () => {};   // a close event always follows, with what can be known
    ws.onclose = (ev: { code: number; reason: string }) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      let reason: string;
      if (opened) reason = `closed by the daemon (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
      else {
        this.stats.refusals++;
        reason = `could not connect (${ev.code}): nothing listening, or the daemon refused the handshake ` +
          '(an Origin not in the endpoint\'s AllowedOrigins, or the port already has a client; its log says which)';
      }
      noteDisconnect(this.disconnects, reason);
      this.log(`netplane: port ${this.port}: WebSocket ${String(this.opts.url)}: ${reason}`);
      if (!this.opts.reconnect) { this.finish(); return; }
      this.setState('waiting');
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, this.reconnectDelays()[1]);
      this.timer = setTimeout(() => this.open(), wait);
    };
  }

  private write(f: Uint8Array): void {
    const ws = this.ws;
    if (ws && ws.readyState === OPEN) { this.send(ws, f); return; }
    if (this.current === 'closed' || this.queue.length >= (this.opts.queueLimit ?? 256)) { this.stats.txDropped++; return; }
    this.queue.push(f.slice());   // f is a view of the module's memory, valid until the next batch
  }

  private send(ws: WebSocketLike, f: Uint8Array, copy = true): void {
    if (ws.bufferedAmount > (this.opts.maxBufferedBytes ?? 1 << 20)) { this.stats.txDropped++; return; }
    ws.send(copy ? f.slice() : f);
    this.stats.txFrames++;
  }

  private finish(): void {
    this.stats.txDropped += this.queue.length;
    this.queue.length = 0;
    this.detach();
    this.setState('closed');
  }
}
