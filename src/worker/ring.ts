// A single-producer single-consumer ring of frames over a SharedArrayBuffer: how the I/O thread and the
// switch's thread hand frames to each other (src/worker/io.ts) without a message, a copy into a
// structured clone, or an allocation per frame. Snabb's links and DPDK's rte_ring are the model: a
// bounded array of records, one writer and one reader, each owning one index; the writer drops
// (counted) when the ring is full rather than waiting or growing, because a stalled consumer must
// cost frames, not memory or a blocked I/O thread.
//
// The format is documented in docs/ABI.md ("The frame ring") so that a host in another language
// (a C I/O thread, a wasm host with threads) can be either end:
//   control block, 256 bytes, Int32 little-endian:
//     [0]  head      bytes ever written by the producer (mod 2^32), stored with release semantics
//     [16] tail      bytes ever consumed by the consumer (mod 2^32); head and tail on their own lines
//     [32] sleeping  1 while the consumer waits for frames (it Atomics.waits on this word for 1)
//     [33] drops     frames the producer refused because the ring was full
//     [34] capacity  the data area's bytes, a power of two, 2^12..2^30
//     [35] closed    1 once either end closed the ring
//   data area from byte 256, `capacity` bytes, records back to back, each 8-byte aligned:
//     u32 length (of the frame; 0xffffffff: no record, the rest of the area up to its end is padding),
//     u16 port, u16 flags (bit 0: the vnet header is meaningful), 12 bytes: the virtio-net header
//     (struct virtio_net_hdr_v1, zeros when none), the frame, padding to a multiple of 8.
//   The vnet header directly precedes the frame as a TAP opened with IFF_VNET_HDR reads and writes
//   them, so an I/O thread moves record+8 .. record+20+length with one system call.
//
// Positions are free-running 32-bit counters, not indexes: used bytes = head - tail (mod 2^32), which
// tells a full ring from an empty one without a wasted slot. A record never wraps: when it does not
// fit before the end of the area, the producer writes a padding marker there and starts the record
// at offset 0 (the space the padding takes counts as used until the consumer passes it).
//
// Wake-ups cost something only when the consumer sleeps: it sets `sleeping`, checks once more that
// the ring is empty, and waits; a producer that publishes frames exchanges `sleeping` to 0 and
// notifies only when it was 1. So a busy consumer is never notified, and a batch of frames costs one
// notify at most. The producer publishes (stores head) once per batch (`publish`), not per frame.
import { BULK_COPY_MIN, copyInto, type BulkCopy } from '../switch.js';

// A copy into the ring from BULK_COPY_MIN bytes up goes through the bulk copier when one is set (see
// Ring.bulkCopy).
export { BULK_COPY_MIN, type BulkCopy };
export const CONTROL_BYTES = 256;
export const RECORD_HEADER = 20;
export const VNET_BYTES = 12;
export const FLAG_VNET = 1;
// Atomics.waitAsync (ES2024; V8 and so Node.js >= 16 have it) is not in this project's TypeScript lib.
type WaitAsync = (a: Int32Array, index: number, value: number) => { async: boolean; value: Promise<unknown> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
const WRAP = -1;                 // 0xffffffff read as Int32
const HEAD = 0, TAIL = 16, SLEEPING = 32, DROPS = 33, CAPACITY = 34, CLOSED = 35;

export const recordBytes = (length: number): number => (RECORD_HEADER + length + 7) & ~7;

export class Ring {
  readonly ctl: Int32Array;
  readonly data: Uint8Array;      // the data area; records at data offsets
  readonly capacity: number;
  private readonly dv: DataView;
  private readonly mask: number;
  // The producer's position not yet published, and the consumer's position not yet released: each
  // end keeps its own index in a local and stores it to the shared word once per batch.
  private head: number;
  private tail: number;
  // V8 copies into a SharedArrayBuffer (TypedArray.prototype.set) a word at a time with relaxed
  // atomics: 3.2 µs for a 64 KiB super-frame against 0.7 µs with memcpy, a fifth of the switch
  // thread's time in a TSO download. Where the native helper is there, its memcpy copies the larger
  // frames in (copyIn). Safe because a record's bytes belong to one end at a time.
  bulkCopy?: BulkCopy;

  // `buffer` from Ring.create(capacity) on one side, the same SharedArrayBuffer on the other.
  constructor(readonly buffer: SharedArrayBuffer) {
    this.ctl = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    this.capacity = Atomics.load(this.ctl, CAPACITY);
    if (this.capacity < 4096 || this.capacity & (this.capacity - 1) || buffer.byteLength !== CONTROL_BYTES + this.capacity) {
      throw new RangeError(`not a frame ring: capacity ${this.capacity} in a ${buffer.byteLength}-byte buffer`);
    }
    this.mask = this.capacity - 1;
    this.data = new Uint8Array(buffer, CONTROL_BYTES, this.capacity);
    this.dv = new DataView(buffer, CONTROL_BYTES, this.capacity);
    this.head = Atomics.load(this.ctl, HEAD);
    this.tail = Atomics.load(this.ctl, TAIL);
  }

  // A new ring of `capacity` data bytes (rounded up to a power of two, 4 KiB..1 GiB).
  static create(capacity = 1 << 22): Ring {
    let c = 4096;
    while (c < capacity && c < 1 << 30) c *= 2;
    const buffer = new SharedArrayBuffer(CONTROL_BYTES + c);
    Atomics.store(new Int32Array(buffer, 0, CONTROL_BYTES / 4), CAPACITY, c);
    return new Ring(buffer);
  }

  // The largest frame a record can carry in this ring (half the area, so that a wrap always fits).
  get maxFrame(): number { return Math.min(65535, this.capacity / 2 - RECORD_HEADER); }
  get drops(): number { return Atomics.load(this.ctl, DROPS) >>> 0; }
  get closed(): boolean { return Atomics.load(this.ctl, CLOSED) !== 0; }

  // ---- producer ----

  // Reserves a record for a frame of `length` bytes and writes its header; returns the data offset
  // where the frame's bytes go (the vnet header is at offset - 12), or -1 when the ring is full or
  // the frame too long (counted in drops). The record is the consumer's once `publish()` runs.
  reserve(length: number, port: number, flags = 0): number {
    const size = recordBytes(length);
    const at = this.head & this.mask;
    const toEnd = this.capacity - at;
    const need = size <= toEnd ? size : size + toEnd;
    const used = (this.head - Atomics.load(this.ctl, TAIL)) >>> 0;
    if (length > this.maxFrame || used + need > this.capacity) {
      Atomics.add(this.ctl, DROPS, 1);
      return -1;
    }
    let rec = at;
    if (size > toEnd) {
      this.dv.setInt32(at, WRAP, true);
      rec = 0;
    }
    this.dv.setUint32(rec, length, true);
    this.dv.setUint16(rec + 4, port, true);
    this.dv.setUint16(rec + 6, flags, true);
    this.head = (this.head + need) | 0;
    return rec + RECORD_HEADER;
  }

  // Copies a frame (and its vnet header, when given) into a new record; false when dropped.
  push(port: number, frame: Uint8Array, vnet?: Uint8Array): boolean {
    const off = this.reserve(frame.length, port, vnet ? FLAG_VNET : 0);
    if (off < 0) return false;
    if (vnet) this.data.set(vnet.length === VNET_BYTES ? vnet : vnet.subarray(0, VNET_BYTES), off - VNET_BYTES);
    else this.data.fill(0, off - VNET_BYTES, off);
    this.copyIn(off, frame);
    return true;
  }

  // Copies bytes into the data area at `off` (a record the caller reserved).
  copyIn(off: number, bytes: Uint8Array): void {
    copyInto(this.data, off, bytes, this.bulkCopy);
  }

  // Makes the records reserved so far visible to the consumer, and wakes it if it sleeps. True when
  // anything was published.
  publish(): boolean {
    if (Atomics.load(this.ctl, HEAD) === this.head) return false;
    Atomics.store(this.ctl, HEAD, this.head);
    if (Atomics.load(this.ctl, SLEEPING) !== 0 && Atomics.exchange(this.ctl, SLEEPING, 0) === 1) Atomics.notify(this.ctl, SLEEPING);
    return true;
  }

  // ---- consumer ----

  // Hands each published record to `each(offset, length, port, flags)` (offset of the frame in
  // `data`; the vnet header is the 12 bytes before it), at most `max` of them, calls `done` (a
  // consumer that gathers records and hands them on in one call does it there), then releases
  // their space to the producer. Returns how many. The bytes are valid until `done` returns.
  drain(each: (offset: number, length: number, port: number, flags: number) => void, max = 0x7fffffff, done?: () => void): number {
    const head = Atomics.load(this.ctl, HEAD);
    let tail = this.tail, n = 0;
    while (tail !== head && n < max) {
      let at = tail & this.mask;
      const length = this.dv.getInt32(at, true);
      if (length === WRAP) {
        tail = (tail + this.capacity - at) | 0;
        continue;
      }
      each(at + RECORD_HEADER, length, this.dv.getUint16(at + 4, true), this.dv.getUint16(at + 6, true));
      tail = (tail + recordBytes(length)) | 0;
      n++;
    }
    done?.();
    this.tail = tail;
    Atomics.store(this.ctl, TAIL, tail);
    return n;
  }

  get empty(): boolean { return Atomics.load(this.ctl, HEAD) === this.tail; }

  // Resolves when the ring has frames (or is closed), at once if it has some already. The consumer
  // announces that it sleeps, then checks again, so a producer publishing in between either sees
  // the flag (and notifies) or its frames are seen here: no lost wake-up.
  wait(): Promise<unknown> | undefined {
    if (!this.empty || this.closed) return undefined;
    Atomics.store(this.ctl, SLEEPING, 1);
    if (!this.empty || this.closed) { Atomics.store(this.ctl, SLEEPING, 0); return undefined; }
    const r = waitAsync(this.ctl, SLEEPING, 1);
    return r.async ? r.value as Promise<unknown> : undefined;
  }

  // The blocking form for a thread that may block (a worker, not a browser's main thread).
  waitSync(timeoutMs = Infinity): void {
    if (!this.empty || this.closed) return;
    Atomics.store(this.ctl, SLEEPING, 1);
    if (this.empty && !this.closed) Atomics.wait(this.ctl, SLEEPING, 1, timeoutMs);
    Atomics.store(this.ctl, SLEEPING, 0);
  }

  // Either end: no more frames; a sleeping consumer wakes and sees `closed`.
  close(): void {
    Atomics.store(this.ctl, CLOSED, 1);
    Atomics.store(this.ctl, SLEEPING, 0);
    Atomics.notify(this.ctl, SLEEPING);
  }
}
