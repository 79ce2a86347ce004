// The I/O thread's side of an IoWorker (src/worker/io.ts): the body of a node:worker_threads worker
// that does the system calls of the transports it hosts, so that the thread running the switch only
// moves frames between rings and the WebAssembly module. It knows nothing of the switch: frames are
// records in two rings (src/worker/ring.ts) tagged with the switch port they belong to.
//
//   TAP readable (libuv poll in this thread) -> read() up to 256 frames into a staging buffer ->
//     one record each in the rx ring -> publish once (notify the switch's thread if it sleeps)
//   tx ring has records (Atomics.waitAsync woke us) -> write() each to its port's TAP
//
// The TAP descriptors are opened by the switch's thread (so that the device exists when attach
// returns, as with the single-thread TapTransport) and handed over as numbers: descriptors are the
// process's, not a thread's. This thread closes them when told to detach.
//
// Control messages (attach, detach, close) come by postMessage; frames never do.
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { Ring, VNET_BYTES } from './ring.js';
import { COUNTERS, READ, WRITTEN, WRITE_FAILED, type IoCommand, type IoReply, type IoThreadData } from './protocol.js';

// The native TAP helper's calls this thread uses. write() comes in two forms, by the helper's age:
// one frame a call, or a batch (descriptors of three u32 into `base`: vnet header, frame, length; one
// writev() a frame in C): with the latter, the tx ring's data area is `base` and a batch of records
// is written by one call, nothing copied or allocated.
interface Native {
  read(fd: number, buf: Uint8Array, lens: Uint32Array, slot: number): number;
  write(fd: number, frame: Uint8Array): number;
  write(fd: number, base: Uint8Array, desc: Uint32Array, n: number, hdrLen: number): number;
  poll(fd: number, cb: () => void): object;
  stop(handle: object): void;
  close(fd: number): void;
}

const SLOT = 9216;   // the largest frame read (jumbo), as in the single-thread TapTransport
const BATCH = 256;

function main(data: IoThreadData): void {
  const port = parentPort!;
  const n = createRequire(import.meta.url)(data.native) as Native;
  const rx = new Ring(data.rx), tx = new Ring(data.tx);
  const counters = new Float64Array(data.counters);
  const fds = new Int32Array(data.maxPorts).fill(-1);
  const pollers = new Map<number, object>();
  const buf = new Uint8Array(SLOT * BATCH);
  const lens = new Uint32Array(BATCH);
  let closed = false;

  const readable = (p: number, fd: number) => () => {
    let got: number;
    do {
      got = n.read(fd, buf, lens, SLOT);
      for (let i = 0; i < got; i++) {
        const off = rx.reserve(lens[i], p);
        if (off < 0) continue;                      // full: counted in the ring's drops
        rx.data.fill(0, off - VNET_BYTES, off);     // a TAP without IFF_VNET_HDR: no vnet header
        rx.data.set(buf.subarray(i * SLOT, i * SLOT + lens[i]), off);
      }
      counters[p * COUNTERS + READ] += got;
      rx.publish();
    } while (got === BATCH);
  };

  // The tx records of one drain, gathered per port while consecutive records go to the same one.
  const batched = new Uint8Array(data.maxPorts);
  const desc = new Uint32Array(BATCH * 3);
  let gathered = 0, gatherPort = -1;
  const flushGathered = (): void => {
    if (gathered === 0) return;
    const p = gatherPort, fd = fds[p];
    const ok = fd >= 0 ? n.write(fd, tx.data, desc, gathered, 0) : 0;
    counters[p * COUNTERS + WRITTEN] += ok;
    counters[p * COUNTERS + WRITE_FAILED] += gathered - ok;
    gathered = 0;
  };
  const writeOne = (off: number, length: number, p: number): void => {
    if (p >= fds.length) return;
    if (batched[p]) {
      if (p !== gatherPort || gathered === BATCH) { flushGathered(); gatherPort = p; }
      const d = gathered++ * 3;
      desc[d] = off - VNET_BYTES;
      desc[d + 1] = off;
      desc[d + 2] = length;
      return;
    }
    const fd = fds[p];
    if (fd >= 0 && n.write(fd, tx.data.subarray(off, off + length)) > 0) counters[p * COUNTERS + WRITTEN]++;
    else counters[p * COUNTERS + WRITE_FAILED]++;
  };

  // One turn per wake: drain what is there, then sleep on the ring, or, when the switch's thread
  // produced more meanwhile, come back after this thread's pending I/O (setImmediate), so that a
  // busy tx side never starves the TAPs' reads.
  const txTurn = (): void => {
    if (closed) return;
    tx.drain(writeOne, 0x7fffffff, flushGathered);
    const wake = tx.wait();
    if (wake) wake.then(txTurn);
    else if (!tx.closed) setImmediate(txTurn);
  };

  const detach = (p: number): void => {
    const h = pollers.get(p);
    if (h) { n.stop(h); pollers.delete(p); }
    if (fds[p] >= 0) { n.close(fds[p]); fds[p] = -1; }
  };

  port.on('message', (m: IoCommand) => {
    if (m.op === 'tap') {
      detach(m.port);
      fds[m.port] = m.fd;
      batched[m.port] = m.batched ? 1 : 0;
      pollers.set(m.port, n.poll(m.fd, readable(m.port, m.fd)));
    } else if (m.op === 'detach') {
      detach(m.port);
      port.postMessage({ op: 'detached', port: m.port } satisfies IoReply);
    } else if (m.op === 'close') {
      closed = true;
      for (const p of [...pollers.keys()]) detach(p);
      rx.close();
      tx.close();
      port.postMessage({ op: 'closed' } satisfies IoReply);
      port.close();
    }
  });
  txTurn();
  port.postMessage({ op: 'ready' } satisfies IoReply);
}

if (parentPort && workerData?.rx instanceof SharedArrayBuffer) main(workerData as IoThreadData);
