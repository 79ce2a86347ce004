// The frame ring between the I/O thread and the switch's thread (src/worker/ring.ts; format in
// docs/ABI.md "The frame ring"): records of odd lengths, wrap-around at the end of the data area,
// a full ring dropping (counted) instead of overwriting, vnet headers carried with their frame, the
// sleeping consumer's wake-up, and a producer and a consumer in two threads moving frames whose
// bytes are checksummed on both sides.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { Ring, CONTROL_BYTES, RECORD_HEADER, VNET_BYTES, FLAG_VNET, recordBytes, BULK_COPY_MIN, type BulkCopy } from '../src/worker/ring.js';
import { nativeTapAvailable } from '../src/transports/tap.js';
import { nativeOr } from './e2e/netns.js';

const frameOf = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 31 + seed * 7) & 255);
const drainAll = (r: Ring) => {
  const out: Array<{ port: number; flags: number; frame: Uint8Array; vnet: Uint8Array }> = [];
  r.drain((off, len, port, flags) => out.push({ port, flags, frame: r.data.slice(off, off + len), vnet: r.data.slice(off - VNET_BYTES, off) }));
  return out;
};

test('records of odd lengths come out as they went in, with port, flags and vnet header; only published ones', () => {
  const r = Ring.create(4096);
  assert.is(r.capacity, 4096);
  assert.is(r.buffer.byteLength, CONTROL_BYTES + 4096);
  const vnet = Uint8Array.from([1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0]);
  const lens = [1, 7, 14, 15, 60, 61, 1513];
  lens.forEach((l, i) => assert.ok(r.push(i + 3, frameOf(l, i), i === 2 ? vnet : undefined)));
  assert.equal(drainAll(r), [], 'nothing before publish()');
  assert.ok(r.publish());
  assert.not.ok(r.publish(), 'nothing new to publish');
  const got = drainAll(r);
  assert.is(got.length, lens.length);
  got.forEach((g, i) => {
    assert.is(g.port, i + 3);
    assert.equal(g.frame, frameOf(lens[i], i));
    assert.is(g.flags, i === 2 ? FLAG_VNET : 0);
    assert.equal(g.vnet, i === 2 ? vnet : new Uint8Array(12));
  });
  assert.ok(r.empty);
  assert.is(recordBytes(1), 24);
  assert.is(recordBytes(4), 24);
  assert.is(recordBytes(5), 32);
  assert.is(RECORD_HEADER, 20);
});

test('wrap-around: records never straddle the end; the padding is skipped; thousands of laps stay exact', () => {
  const r = Ring.create(8192);
  let seq = 0, next = 0;
  for (let lap = 0; lap < 3000; lap++) {
    const k = 1 + (lap % 5);
    for (let j = 0; j < k; j++, seq++) assert.ok(r.push(seq & 0xffff, frameOf(97 + (seq * 13) % 700, seq)), `push ${seq}`);
    r.publish();
    r.drain((off, len, port) => {
      assert.is(port, next & 0xffff);
      assert.is(len, 97 + (next * 13) % 700);
      assert.equal(r.data.slice(off, off + len), frameOf(len, next));
      assert.ok(off + len <= r.capacity, 'inside the data area');
      next++;
    });
  }
  assert.is(next, seq);
  assert.is(r.drops, 0);
  // The positions are free-running: after this many bytes they went around the area many times.
  assert.ok(Atomics.load(r.ctl, 0) >>> 0 > 100 * r.capacity);
});

// The bulk copier (Ring.bulkCopy): the native helper's memcpy where it is built (the I/O worker sets
// it), else a recording stand-in, so that the test checks which frames take it either way.
const native = nativeTapAvailable() ? createRequire(import.meta.url)('../native/build/Release/netplane_tap.node') as { copy: BulkCopy } : undefined;

test('frames from BULK_COPY_MIN bytes up go through the bulk copier, smaller ones do not; all come out exact, across wraps', () => {
  const r = Ring.create(1 << 18);
  const used: number[] = [];
  const copy: BulkCopy = native ? native.copy : (dst, at, src) => dst.set(src, at);
  r.bulkCopy = (dst, at, src) => { used.push(src.length); copy(dst, at, src); };
  // From a WebAssembly memory, as the switch hands its frames over.
  const mem = new Uint8Array(new WebAssembly.Memory({ initial: 2 }).buffer);
  const lens = [64, BULK_COPY_MIN - 1, BULK_COPY_MIN, 1514, 9000, 65535, 60, 65535, 40000];
  for (let lap = 0; lap < 20; lap++) {
    used.length = 0;
    lens.forEach((l, i) => {
      mem.set(frameOf(l, lap + i), 100);
      assert.ok(r.push(i, mem.subarray(100, 100 + l)), `lap ${lap} frame ${i}`);
    });
    r.publish();
    assert.equal(used, lens.filter((l) => l >= BULK_COPY_MIN));
    const got = drainAll(r);
    assert.equal(got.map((g) => g.frame.length), lens);
    got.forEach((g, i) => assert.equal(g.frame, frameOf(lens[i], lap + i), `lap ${lap} frame ${i}`));
  }
});

test('the native copy refuses a range outside its destination and copies nothing', () => {
  if (!nativeOr('its copy was not checked', !!native) || !native) return;
  const dst = new Uint8Array(new SharedArrayBuffer(4096));
  assert.throws(() => native.copy(dst, 4000, new Uint8Array(100)), /out of range/);
  assert.throws(() => native.copy(dst, -1, new Uint8Array(1)), /out of range/);
  assert.throws(() => native.copy(dst, 0, new Uint16Array(4) as unknown as Uint8Array), /Uint8Array/);
  assert.ok(dst.every((b) => b === 0));
  native.copy(dst, 4096 - 3, Uint8Array.from([1, 2, 3]));
  assert.equal([...dst.subarray(4093)], [1, 2, 3]);
});

test('a full ring drops the frame, counts it and keeps what it has; space comes back when drained', () => {
  const r = Ring.create(4096);
  let n = 0;
  while (r.push(1, frameOf(500, n))) n++;
  assert.is(n, Math.floor(4096 / recordBytes(500)));
  assert.is(r.drops, 1);
  assert.ok(r.push(1, frameOf(8, 0)), 'a smaller frame still fits in what is left');
  assert.is(r.drops, 1);
  r.publish();
  const got = drainAll(r);
  assert.is(got.length, n + 1, 'nothing overwritten');
  got.slice(0, n).forEach((g, i) => assert.equal(g.frame, frameOf(500, i)));
  assert.equal(got[n].frame, frameOf(8, 0));
  assert.ok(r.push(1, frameOf(500, 99)), 'room again');
  // Longer than half the area: never fits, always a drop (a wrap must always be possible).
  const before = r.drops;
  assert.not.ok(r.push(1, new Uint8Array(r.maxFrame + 1)));
  assert.is(r.drops, before + 1);
  assert.throws(() => new Ring(new SharedArrayBuffer(CONTROL_BYTES + 4096)), /not a frame ring/);
});

test('a sleeping consumer wakes when frames are published, and when the ring closes', async () => {
  const r = Ring.create(8192);
  const consumer = new Ring(r.buffer);
  const wake = consumer.wait();
  assert.ok(wake, 'empty: it sleeps');
  assert.is(Atomics.load(r.ctl, 32), 1, 'the sleeping flag is set');
  r.push(2, frameOf(64, 1));
  assert.is(consumer.wait() !== undefined, true, 'still nothing published');
  r.publish();
  await wake;
  assert.is(Atomics.load(r.ctl, 32), 0);
  assert.is(consumer.wait(), undefined, 'frames there: no sleep');
  assert.is(drainAll(consumer).length, 1);
  const closing = consumer.wait()!;
  r.close();
  await closing;
  assert.ok(consumer.closed);
  assert.is(consumer.wait(), undefined);
});

// The other thread: a producer pushing `count` frames of pseudo-random lengths and contents in
// bursts, publishing after each, with a running checksum of what it pushed (dropped frames
// excluded), reported at the end.
const producer = `
const { parentPort, workerData } = require('node:worker_threads');
const { buffer, count } = workerData;
const ctl = new Int32Array(buffer, 0, 64), cap = Atomics.load(ctl, 34), mask = cap - 1;
const data = new Uint8Array(buffer, 256, cap), dv = new DataView(buffer, 256, cap);
let head = Atomics.load(ctl, 0), sum = 0, sent = 0, x = 12345;
const rnd = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
for (let i = 0; i < count; i++) {
  const len = 14 + (rnd() % 1600), size = (20 + len + 7) & ~7, at = head & mask, toEnd = cap - at;
  const need = size <= toEnd ? size : size + toEnd;
  if (((head - Atomics.load(ctl, 16)) >>> 0) + need > cap) {
    // Full: count it, publish what is reserved (the consumer can only free what it sees), retry.
    Atomics.add(ctl, 33, 1); Atomics.store(ctl, 0, head); if (Atomics.exchange(ctl, 32, 0) === 1) Atomics.notify(ctl, 32);
    i--; continue;
  }
  let rec = at;
  if (size > toEnd) { dv.setInt32(at, -1, true); rec = 0; }
  dv.setUint32(rec, len, true); dv.setUint16(rec + 4, i & 0xffff, true); dv.setUint16(rec + 6, 0, true);
  const seed = rnd() & 255;
  for (let k = 0; k < len; k++) { const b = (seed + k * 7) & 255; data[rec + 20 + k] = b; sum = (sum + b * (k + 1)) >>> 0; }
  head = (head + need) | 0;
  if ((i & 15) === 15 || i === count - 1) { Atomics.store(ctl, 0, head); if (Atomics.exchange(ctl, 32, 0) === 1) Atomics.notify(ctl, 32); }
}
parentPort.postMessage({ sum, sent: count });
`;

test('a producer in another thread (written to the documented format, not with Ring) and this consumer: every frame, in order, checksums equal', async () => {
  const r = Ring.create(1 << 14);   // small: the producer laps it and meets a full ring many times
  const count = 20000;
  const w = new Worker(producer, { eval: true, workerData: { buffer: r.buffer, count } });
  const done = new Promise<{ sum: number; sent: number }>((ok, fail) => { w.once('message', ok); w.once('error', fail); });
  let sum = 0, got = 0, order = true;
  const each = (off: number, len: number, port: number) => {
    if (port !== (got & 0xffff)) order = false;
    for (let k = 0; k < len; k++) sum = (sum + r.data[off + k] * (k + 1)) >>> 0;
    got++;
  };
  while (got < count) {
    r.drain(each);
    if (got < count) await r.wait();
  }
  const theirs = await done;
  await w.terminate();
  assert.ok(order, 'in order, none lost');
  assert.is(got, theirs.sent);
  assert.is(sum, theirs.sum);
  assert.ok(r.empty);
  assert.ok(r.drops > 0, 'the producer met a full ring (and counted it)');
});

test('and the other way: this thread produces with Ring, a worker consumes with Atomics.wait (blocking)', async () => {
  const r = Ring.create(1 << 13);
  const count = 5000;
  const consumer = `
const { parentPort, workerData } = require('node:worker_threads');
const { buffer, count } = workerData;
const ctl = new Int32Array(buffer, 0, 64), cap = Atomics.load(ctl, 34), mask = cap - 1;
const data = new Uint8Array(buffer, 256, cap), dv = new DataView(buffer, 256, cap);
let tail = Atomics.load(ctl, 16), got = 0, sum = 0;
while (got < count) {
  const head = Atomics.load(ctl, 0);
  if (head === tail) { Atomics.store(ctl, 32, 1); if (Atomics.load(ctl, 0) === tail) Atomics.wait(ctl, 32, 1); Atomics.store(ctl, 32, 0); continue; }
  while (tail !== head) {
    const at = tail & mask, len = dv.getInt32(at, true);
    if (len === -1) { tail = (tail + cap - at) | 0; continue; }
    for (let k = 0; k < len; k++) sum = (sum + data[at + 20 + k] * (k + 1)) >>> 0;
    tail = (tail + ((20 + len + 7) & ~7)) | 0; got++;
  }
  Atomics.store(ctl, 16, tail);
}
parentPort.postMessage({ sum, got });
`;
  const w = new Worker(consumer, { eval: true, workerData: { buffer: r.buffer, count } });
  const done = new Promise<{ sum: number; got: number }>((ok, fail) => { w.once('message', ok); w.once('error', fail); });
  let sum = 0, sent = 0;
  while (sent < count) {
    const len = 14 + ((sent * 7919) % 1500);
    const f = frameOf(len, sent);
    if (!r.push(1, f)) { r.publish(); await new Promise((ok) => setImmediate(ok)); continue; }
    for (let k = 0; k < len; k++) sum = (sum + f[k] * (k + 1)) >>> 0;
    sent++;
    if (sent % 8 === 0) r.publish();
  }
  r.publish();
  const theirs = await done;
  await w.terminate();
  assert.is(theirs.got, count);
  assert.is(theirs.sum, sum);
});

test.run();
