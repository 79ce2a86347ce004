// Frames from transports into the switch in batches: each arriving frame is queued into the switch's
// rx buffer (Switch.send, which processes a full batch at once), and one flush is scheduled for the
// end of the current I/O turn, so everything that arrived together crosses into WebAssembly in one
// call, and the frames that leave are handed back to their transports in one pass.
import type { Switch } from '../dataplane.js';

const pumps = new WeakMap<Switch, Pump>();

export class Pump {
  private scheduled = false;

  static of(sw: Switch): Pump {
    let p = pumps.get(sw);
    if (!p) { p = new Pump(sw); pumps.set(sw, p); }
    return p;
  }

  private constructor(readonly sw: Switch) {}

  receive(port: number, frame: Uint8Array): void {
    this.sw.send(port, frame);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.sw.flush();
      });
    }
  }
}

// Frames shorter than an Ethernet header or longer than a frame can be are not frames: a transport
// refuses them before the switch (the switch would count them too, as eth_truncated).
export const MIN_FRAME = 14;
export const MAX_FRAME = 65535;

export interface TransportStats {
  rxFrames: number;
  txFrames: number;
  txDropped: number;      // frames not sent because the peer was not keeping up (bounded queue) or unknown
  rxRefused: number;      // datagrams / messages that were not frames
}

export const newStats = (): TransportStats => ({ rxFrames: 0, txFrames: 0, txDropped: 0, rxRefused: 0 });
