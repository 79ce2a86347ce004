// Frames from transports into the switch in batches: each arriving frame is queued into the switch's
// rx buffer (Switch.send, which processes a full batch at once), and one flush is scheduled for the
// end of the current I/O turn, so everything that arrived together crosses into WebAssembly in one
// call, and the frames that leave are handed back to their transports in one pass.
//
// A transport holds the SwitchPort object it attached to, not just its id: the compiler keeps a port
// object across endpoint modifications, but after a delete the id can be given to another endpoint.
// The pump delivers a frame only while that very object is still the switch's port with that id, so
// a transport that outlives its port never injects frames as someone else's port (it counts them
// refused instead). The same object carries the transport's tx handler, set and cleared on it.
import type { Switch, SwitchPort, FrameHandler, BatchHandler } from '../switch.js';

const pumps = new WeakMap<Switch, Pump>();

// The end of the current I/O turn: setImmediate in Node.js; in a browser (the WebSocket client), a
// zero timeout, which runs after the messages already queued with it.
const later: (f: () => void) => void = typeof setImmediate === 'function' ? (f) => setImmediate(f) : (f) => setTimeout(f, 0);

export class Pump {
  private scheduled = false;

  static of(sw: Switch): Pump {
    let p = pumps.get(sw);
    if (!p) { p = new Pump(sw); pumps.set(sw, p); }
    return p;
  }

  private readonly rxBytes: number;

  private constructor(readonly sw: Switch) { this.rxBytes = sw.dp.exports.rx_buffer_size(); }

  // False when the switch does not take the frame: the port is no longer this transport's, or the
  // frame is larger than the switch's rx buffer. `vnet`: the frame's vnet header, for a port with
  // offloads (Switch.setOffload).
  receive(port: SwitchPort, frame: Uint8Array, vnet?: Uint8Array): boolean {
    if (this.sw.ports.get(port.id) !== port || frame.length > this.rxBytes) return false;
    this.sw.send(port.id, frame, vnet);
    if (!this.scheduled) {
      this.scheduled = true;
      later(this.flushLater);
    }
    return true;
  }

  // One function for every turn, made once.
  private readonly flushLater = (): void => {
    this.scheduled = false;
    this.sw.flush();
  };
}

// Makes h the port's tx handler. The returned detach clears it only while it is still h: another
// transport may have attached to the same port object since, and its handler is not ours to clear.
export function attachTx(port: SwitchPort, h: FrameHandler): () => void {
  port.onFrame(h);
  return () => { if (port.handler === h) port.onFrame(undefined); };
}

// Makes h the port's batch handler (Switch BatchHandler: a delivery's frames for the port in one call);
// detach clears it only while it is still h.
export function attachBatch(port: SwitchPort, h: BatchHandler): () => void {
  port.onBatch(h);
  return () => { if (port.batchHandler === h) port.onBatch(undefined); };
}

// Frames shorter than an Ethernet header or longer than a frame can be are not frames: a transport
// refuses them before the switch (the switch would count them too, as eth_truncated).
export const MIN_FRAME = 14;
export const MAX_FRAME = 65535;

export interface TransportStats {
  rxFrames: number;
  txFrames: number;
  txDropped: number;      // frames not sent because the peer was not keeping up (bounded queue) or unknown
  rxRefused: number;      // datagrams / messages that were not frames, or that the port could no longer take
  connects: number;       // clients or peers accepted (a learned UDP peer counts each time it is learned)
  refusals: number;       // clients or peers turned away: the port already has one, a foreign Origin, a stranger
}

export const newStats = (): TransportStats => ({ rxFrames: 0, txFrames: 0, txDropped: 0, rxRefused: 0, connects: 0, refusals: 0 });

// Why clients were disconnected or turned away, newest last. Bounded: a client that reconnects in a
// loop must cost a counter, not memory in a root daemon.
export const KEPT_DISCONNECTS = 64;

export function noteDisconnect(list: Array<{ reason: string }>, reason: string): void {
  if (list.length >= KEPT_DISCONNECTS) list.shift();
  list.push({ reason });
}

export const logOf = (log?: (message: string) => void): ((message: string) => void) => log ?? ((m) => console.error(m));
