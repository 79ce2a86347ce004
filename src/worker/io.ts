// The dataplane off the I/O thread (Node.js): an IoWorker is a node:worker_threads thread that does
// the frame I/O of the transports it hosts (the native TAP attach: read() and write() on the
// devices), while the Switch, the WebAssembly module and the whole control plane stay on the thread
// that made them. Frames cross between the two in two single-producer single-consumer rings over
// SharedArrayBuffers (src/worker/ring.ts, format in docs/ABI.md "The frame ring"):
//
//   I/O thread:     TAP -> read() -> rx ring ─┐                 ┌─> tx ring -> write() -> TAP
//   switch thread:                            └> drain: one batch ┘  (push per tx frame, publish per batch)
//                                                 sw.send ... sw.flush (process() once per wake)
//
// Why this split and not the switch in the worker: the control plane (src/router.ts, src/compile/*,
// the daemon, every test) calls the module's exports synchronously and reads its counters and tables
// straight from its memory; a switch in another thread would make every one of those calls a round
// trip. The system calls are what costs (one read() and one write() per frame, each a few µs, while
// process() spends well under 1 µs a frame), and they need nothing from the switch, so they move.
// The single-thread transports (src/transports/*) stay the default, and the only choice in a
// browser: an IoWorker is opt-in, one thread for any number of TAPs.
//
// The switch's thread wakes when the rx ring goes from empty to non-empty (Atomics.waitAsync: no
// message, no event per frame), drains everything there into the switch's rx batch (sw.send copies
// each frame into the module's rx buffer), calls flush() once (one process() call), and the frames
// that leave on a hosted port go into the tx ring, published once when the batch's delivery ends.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import type { Switch, SwitchPort } from '../switch.js';
import { attachTx, newStats, type TransportStats } from '../transports/pump.js';
import { Ring, FLAG_VNET, VNET_BYTES, type BulkCopy } from './ring.js';
import { TUN_F_ALL, capsOfTunOffloads } from '../transports/tap.js';
import { COUNTERS, READ, WRITTEN, WRITE_FAILED, READ_REFUSED, type IoCommand, type IoReply, type IoThreadData } from './protocol.js';

export interface IoWorkerOptions {
  // Each ring's data area (a power of two; default 4 MiB: ~2700 1500-byte frames, 60 64 KiB
  // super-frames). A record holds at most half of it: below 256 KiB, super-frames are ring drops.
  ringBytes?: number;
}

// open(name, offloads) -> [fd, accepted]: offloads are the TUN_F_* bits offered (-1 opens a plain TAP),
// accepted the bits the kernel took (-1 for a plain TAP). As src/transports/tap.ts.
interface NativeOpen { open(name: string, offloads: number): [number, number]; close(fd: number): void; copy?: BulkCopy }

const nativePath = '../../native/build/Release/netplane_tap.node';   // from build/dist/ and from src/worker/


export interface IoTapOptions {
  offload?: boolean;   // default true: IFF_VNET_HDR and the kernel's offloads, where the helper has them
}

// The worker's entry: build/dist/io-thread.js beside the bundle; run from source (tsx, the tests),
// src/worker/io-thread.ts, loaded through tsx's loader, which a worker does not inherit.
function startThread(data: IoThreadData): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const url = new URL('./io-thread.ts', here).href;
    return new Worker(`import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(url)}); })`, { eval: true, workerData: data });
  }
  return new Worker(new URL('./io-thread.js', here), { workerData: data });
}

// A TAP device served by an IoWorker, attached to one switch port.
export class IoTap {
  readonly stats: TransportStats = newStats();
  private readonly detachTx: () => void;
  private closing?: Promise<void>;

  // caps: the offload caps set on the port (0: plain frames).
  constructor(private readonly io: IoWorker, readonly swPort: SwitchPort, readonly name: string, readonly fd: number, hdr: number, readonly caps: number) {
    if (caps) swPort.sw.setOffload(swPort.id, caps);
    this.detachTx = attachTx(swPort, (f, _port, vnet?: Uint8Array) => io.transmit(this, f, vnet));
    io.command({ op: 'tap', port: swPort.id, fd, hdr, caps });
  }

  get port(): number { return this.swPort.id; }

  // Frames read from the device, written to it, and not written (the device's queue full).
  get deviceCounters(): { read: number; written: number; writeFailed: number; readRefused: number } { return this.io.deviceCounters(this.port); }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.detachTx();
      if (this.caps && this.swPort.sw.ports.get(this.port) === this.swPort) this.swPort.sw.setOffload(this.port, 0);
      await this.io.detach(this);
    })();
    return this.closing;
  }
}

export class IoWorker {
  private readonly rx: Ring;
  private readonly tx: Ring;
  private readonly counters: Float64Array;
  private readonly thread: Worker;
  private readonly taps: Array<IoTap | undefined>;
  private readonly native: NativeOpen;
  private publishing = false;
  private closed = false;
  private closing?: Promise<void>;
  private readonly waiting = new Map<number, () => void>();
  private failure?: Error;
  // Resolves once the thread runs (TAPs attached before that keep their frames queued in the kernel
  // meanwhile; a thread takes some milliseconds to start, seconds from source through tsx).
  readonly ready: Promise<void>;

  constructor(readonly sw: Switch, opts: IoWorkerOptions = {}) {
    const require = createRequire(import.meta.url);
    let path: string;
    try {
      path = require.resolve(nativePath);
      this.native = require(path) as NativeOpen;
    } catch {
      throw new Error('the native TAP helper is not built (npm run build:native needs a C compiler and node-gyp)');
    }
    const maxPorts = sw.dp.maxPorts;
    this.rx = Ring.create(opts.ringBytes ?? 1 << 22);
    this.tx = Ring.create(opts.ringBytes ?? 1 << 22);
    this.tx.bulkCopy = this.native.copy;
    sw.bulkCopy ??= this.native.copy;   // the rx ring's frames into the module's rx buffer
    this.counters = new Float64Array(new SharedArrayBuffer(maxPorts * COUNTERS * 8));
    this.taps = new Array(maxPorts);
    this.thread = startThread({ rx: this.rx.buffer, tx: this.tx.buffer, counters: this.counters.buffer as SharedArrayBuffer, native: path, maxPorts });
    let started!: () => void;
    this.ready = new Promise((ok) => { started = ok; });
    this.thread.on('message', (m: IoReply) => {
      if (m.op === 'ready') started();
      else if (m.op === 'detached') { this.waiting.get(m.port)?.(); this.waiting.delete(m.port); }
    });
    // A thread that died (it should not: nothing in it throws per frame) leaves its descriptors to
    // this one; the taps then only count their frames as dropped.
    this.thread.on('error', (e) => {
      this.failure = e;
      this.closed = true;
      started();
      for (const t of this.taps) if (t) this.native.close(t.fd);
      for (const w of this.waiting.values()) w();
      this.waiting.clear();
    });
    this.rxTurn();
  }

  // Opens the TAP device `name` (created when it does not exist, as TapTransport does) in this
  // thread, so that it exists on return, and hands it to the I/O thread for switch port `port`.
  // With offloads (the default, where the helper has vnet headers), the offloads the kernel accepted
  // become the port's caps (sw.setOffload) until the TAP is closed, as with TapTransport.
  tap(port: number, name: string, opts: IoTapOptions = {}): IoTap {
    if (this.closed) throw new Error(this.failure ? `the I/O worker failed: ${this.failure.message}` : 'the I/O worker is closed');
    const swPort = this.sw.port(port);
    if (this.taps[port]) throw new Error(`port ${port} already has a TAP on this I/O worker`);
    const offload = opts.offload !== false;
    const opened = this.native.open(name, offload ? TUN_F_ALL : -1);
    const t = new IoTap(this, swPort, name, opened[0], opened[1] >= 0 ? VNET_BYTES : 0, capsOfTunOffloads(opened[1]));
    this.taps[port] = t;
    return t;
  }

  // Frames the rx ring could not take (the switch's thread not keeping up), and the tx ring (the
  // I/O thread not keeping up).
  get ringDrops(): { rx: number; tx: number } { return { rx: this.rx.drops, tx: this.tx.drops }; }

  deviceCounters(port: number): { read: number; written: number; writeFailed: number; readRefused: number } {
    const c = this.counters, b = port * COUNTERS;
    return { read: c[b + READ], written: c[b + WRITTEN], writeFailed: c[b + WRITE_FAILED], readRefused: c[b + READ_REFUSED] };
  }

  command(m: IoCommand): void { this.thread.postMessage(m); }

  // The tx handler of each hosted port: a record in the tx ring; published once per batch (a
  // microtask, which runs when the switch's delivery of the batch has returned).
  transmit(t: IoTap, frame: Uint8Array, vnet?: Uint8Array): void {
    if (this.closed || !this.tx.push(t.port, frame, vnet)) { t.stats.txDropped++; return; }
    t.stats.txFrames++;
    if (!this.publishing) {
      this.publishing = true;
      queueMicrotask(this.publish);
    }
  }

  private readonly publish = (): void => {
    this.publishing = false;
    this.tx.publish();
  };

  // One wake of the switch's thread: every frame in the rx ring into the switch, one flush.
  private readonly rxTurn = (): void => {
    if (this.closed) return;
    if (this.rx.drain(this.receive) > 0) this.sw.flush();
    const wake = this.rx.wait();
    if (wake) wake.then(this.rxTurn);
    else if (!this.rx.closed) setImmediate(this.rxTurn);
  };

  // A frame goes in only while the tap's port object is still the switch's port with that id (see
  // src/transports/pump.ts); the ring's bytes are copied into the module's rx buffer by send().
  private readonly receive = (off: number, length: number, port: number, flags: number): void => {
    const t = this.taps[port];
    if (!t) return;
    if (this.sw.ports.get(port) !== t.swPort || length > this.sw.dp.rxBuffer.length) { t.stats.rxRefused++; return; }
    const d = this.rx.data;
    this.sw.send(port, d.subarray(off, off + length), flags & FLAG_VNET ? d.subarray(off - VNET_BYTES, off) : undefined);
    t.stats.rxFrames++;
  };

  detach(t: IoTap): Promise<void> {
    if (this.taps[t.port] !== t) return Promise.resolve();
    this.taps[t.port] = undefined;
    if (this.closed) return Promise.resolve();
    return new Promise((ok) => {
      this.waiting.set(t.port, ok);
      this.command({ op: 'detach', port: t.port });
    });
  }

  // Detaches every TAP (the I/O thread closes their descriptors) and ends the thread.
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const t of this.taps) if (t) await t.close();
      if (!this.failure) {
        this.closed = true;
        const exited = new Promise<void>((ok) => this.thread.once('exit', () => ok()));
        this.command({ op: 'close' });
        await exited;
      }
      this.closed = true;
      this.rx.close();
      this.tx.close();
    })();
    return this.closing;
  }
}
