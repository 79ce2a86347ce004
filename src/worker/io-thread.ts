// The I/O thread's side of an IoWorker (src/worker/io.ts): the body of a node:worker_threads worker
// that does the system calls of the transports it hosts, so that the thread running the switch only
// moves frames between rings and the WebAssembly module. It knows nothing of the switch: frames are
// records in two rings (src/worker/ring.ts) tagged with the switch port they belong to.
//
//   TAP readable (libuv poll in this thread) -> read() up to 256 frames (64 super-frames with vnet
//     headers) into a staging buffer -> one record each in the rx ring -> publish once per read call
//     (notify the switch's thread only if it sleeps)
//   tx ring has records (Atomics.waitAsync woke us) -> write() them to their ports' TAPs: one native
//     call per run of records for the same port
//
// The write path allocates nothing per frame.
//
// The TAP descriptors are opened by the switch's thread (so that the device exists when attach
// returns, as with the single-thread TapTransport) and handed over as numbers: descriptors are the
// process's, not a thread's. This thread closes them when told to detach.
//
// Control messages (attach, detach, close) come by postMessage; frames never do.
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { Ring, VNET_BYTES, FLAG_VNET, type BulkCopy } from './ring.js';
import { COUNTERS, READ, WRITTEN, WRITE_FAILED, READ_REFUSED, type IoCommand, type IoReply, type IoThreadData } from './protocol.js';

// The native TAP helper's calls this thread uses. write() takes a batch (descriptors of three u32 into
// `base`: vnet header, frame, length; one writev() a frame in C): the tx ring's data area is `base`,
// so a batch of records is written by one call, nothing copied or allocated.
interface Native {
  read(fd: number, buf: Uint8Array, lens: Uint32Array, slot: number): number;
  write(fd: number, base: Uint8Array, desc: Uint32Array, n: number, hdrLen: number): number;
  poll(fd: number, cb: () => void): object;
  stop(handle: object): void;
  close(fd: number): void;
  copy?: BulkCopy;
}

// The staging buffer reads go into: a plain TAP's frames are at most a jumbo frame (9216 bytes, 256 a
// read call); a TAP with vnet headers reads a header and up to a 64 KiB super-frame (+1 byte to tell
// a longer one), 64 a call; the same 4 MiB either way.
const PLAIN_SLOT = 9216, PLAIN_BATCH = 256;
const VNET_SLOT = VNET_BYTES + 65535 + 1, VNET_BATCH = 64;
const BATCH = PLAIN_BATCH;   // tx records gathered per write call

function main(data: IoThreadData): void {
  const port = parentPort!;
  const n = createRequire(import.meta.url)(data.native) as Native;
  const rx = new Ring(data.rx), tx = new Ring(data.tx);
  rx.bulkCopy = n.copy;
  const counters = new Float64Array(data.counters);
  const fds = new Int32Array(data.maxPorts).fill(-1);
  const pollers = new Map<number, object>();
  const buf = new Uint8Array(VNET_SLOT * VNET_BATCH);
  const lens = new Uint32Array(PLAIN_BATCH);
  const hdrs = new Uint8Array(data.maxPorts);
  let closed = false;

  // A TAP with vnet headers reads header and frame together, and a record holds them together
  // (header at record + 8, frame at + 20): one copy of both.
  const readable = (p: number, fd: number, hdr: number, caps: number) => {
    const slot = hdr ? VNET_SLOT : PLAIN_SLOT, batch = hdr ? VNET_BATCH : PLAIN_BATCH;
    const reads = lens.subarray(0, batch), flags = caps ? FLAG_VNET : 0;
    return () => {
      let got: number;
      do {
        got = n.read(fd, buf, reads, slot);
        for (let i = 0; i < got; i++) {
          const at = i * slot, len = reads[i];
          if (len < hdr || len > hdr + 65535) { counters[p * COUNTERS + READ_REFUSED]++; continue; }
          const off = rx.reserve(len - hdr, p, flags);
          if (off < 0) continue;                      // full: counted in the ring's drops
          if (hdr) rx.copyIn(off - VNET_BYTES, buf.subarray(at, at + len));
          else {
            rx.data.fill(0, off - VNET_BYTES, off);   // a plain TAP: no vnet header
            rx.copyIn(off, buf.subarray(at, at + len));
          }
        }
        counters[p * COUNTERS + READ] += got;
        rx.publish();
      } while (got === batch);
    };
  };

  // The tx records of one drain, gathered per port while consecutive records go to the same one.
  const desc = new Uint32Array(BATCH * 3);
  let gathered = 0, gatherPort = -1;
  const flushGathered = (): void => {
    if (gathered === 0) return;
    const p = gatherPort, fd = fds[p];
    const ok = fd >= 0 ? n.write(fd, tx.data, desc, gathered, hdrs[p]) : 0;
    counters[p * COUNTERS + WRITTEN] += ok;
    counters[p * COUNTERS + WRITE_FAILED] += gathered - ok;
    gathered = 0;
  };
  const writeOne = (off: number, length: number, p: number): void => {
    if (p >= fds.length) return;
    if (p !== gatherPort || gathered === BATCH) { flushGathered(); gatherPort = p; }
    const d = gathered++ * 3;
    desc[d] = off - VNET_BYTES;
    desc[d + 1] = off;
    desc[d + 2] = length;
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
      hdrs[m.port] = m.hdr;
      pollers.set(m.port, n.poll(m.fd, readable(m.port, m.fd, m.hdr, m.caps)));
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
