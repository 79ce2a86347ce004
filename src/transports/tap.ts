// The native TAP attach (Linux): a TAP device read and written by netplane's own small native helper
// (native/tap.c, built by node-gyp when a compiler is there), without socat and a UDP socket in
// between. The helper tells when the device is readable, then drains up to 256 frames in one call
// into one staging buffer; each goes into the switch's batch. Without the helper this transport is
// not available (`nativeTapAvailable()` says so) and the UDP transport with socat does the job.
// The transport holds the SwitchPort object it attached to (see pump.ts): frames go in only while
// that object is still the switch's port, and close clears only its own handler, never one another
// endpoint set on a port that reuses the id.
import { createRequire } from 'node:module';
import type { Switch } from '../dataplane.js';
import { Pump, newStats, attachTx } from './pump.js';

interface Native {
  open(name: string): number;
  read(fd: number, buf: Uint8Array, lens: Uint32Array, slot: number): number;
  write(fd: number, frame: Uint8Array): number;
  poll(fd: number, cb: () => void): object;
  stop(handle: object): void;
  close(fd: number): void;
}

let native: Native | null | undefined;

function load(): Native | null {
  if (native !== undefined) return native;
  const require = createRequire(import.meta.url);
  // native/build/Release/ (scripts/native.mjs) is two levels up both from the bundle
  // (build/dist/*.js) and from here (src/transports/, run from source with tsx).
  try { native = require('../../native/build/Release/netplane_tap.node') as Native; } catch { native = null; }
  return native;
}

export function nativeTapAvailable(): boolean {
  return process.platform === 'linux' && load() !== null;
}

const SLOT = 9216;    // the largest frame read (jumbo); a TAP with a larger MTU would be truncated
const BATCH = 256;

export class TapTransport {
  readonly stats = newStats();
  private readonly fd: number;
  private readonly poller: object;
  private readonly buf = new Uint8Array(SLOT * BATCH);
  private readonly lens = new Uint32Array(BATCH);
  private readonly detach: () => void;

  constructor(readonly sw: Switch, readonly port: number, readonly name: string) {
    const n = load();
    if (!n) throw new Error('the native TAP helper is not built (npm run build:native needs a C compiler and node-gyp)');
    const swPort = sw.port(port);
    this.fd = n.open(name);
    const pump = Pump.of(sw);
    this.poller = n.poll(this.fd, () => {
      let got: number;
      do {
        got = n.read(this.fd, this.buf, this.lens, SLOT);
        for (let i = 0; i < got; i++) {
          if (pump.receive(swPort, this.buf.subarray(i * SLOT, i * SLOT + this.lens[i]))) this.stats.rxFrames++;
          else this.stats.rxRefused++;
        }
      } while (got === BATCH);
    });
    this.detach = attachTx(swPort, (f) => {
      if (n.write(this.fd, f) > 0) this.stats.txFrames++;
      else this.stats.txDropped++;
    });
  }

  close(): void {
    const n = load()!;
    this.detach();
    n.stop(this.poller);
    n.close(this.fd);
  }
}
