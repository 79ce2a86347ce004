// QEMU's stream framing as the stream transport does it without per-frame copies: the Deframer
// (frames parsed in place, a frame split across reads kept in one buffer of its own) and the
// FrameWriter (a batch's frames gathered into one write, bounded when the client does not read).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, connect, type Socket } from 'node:net';
import { Deframer, FrameWriter, STAGING_BYTES } from '../src/transports/stream.js';
import { Switch, StreamTransport } from '../src/index.js';

// Frames of the given lengths, each filled with a pattern of its index, so a frame put together from
// wrong pieces shows.
function frames(lengths: number[]): Buffer[] {
  return lengths.map((n, i) => { const f = Buffer.alloc(n); for (let k = 0; k < n; k++) f[k] = (i * 31 + k * 7) & 255; return f; });
}
function framed(fs: Buffer[]): Buffer {
  return Buffer.concat(fs.flatMap((f) => { const h = Buffer.alloc(4); h.writeUInt32BE(f.length); return [h, f]; }));
}
function deframe(chunks: Buffer[]): { got: Buffer[]; errors: string[] } {
  const got: Buffer[] = [], errors: string[] = [];
  // Each frame is copied as it is handed out: the view is only valid during the call.
  const d = new Deframer((f) => got.push(Buffer.from(f)), (r) => errors.push(r));
  for (const c of chunks) d.push(c);
  return { got, errors };
}
const LENGTHS = [14, 60, 1514, 15, 9000, 65535, 14, 1500, 64];

test('deframer: many frames in one read, handed out whole and in order', () => {
  const fs = frames(LENGTHS);
  const { got, errors } = deframe([framed(fs)]);
  assert.equal(errors, []);
  assert.is(got.length, fs.length);
  got.forEach((f, i) => assert.ok(f.equals(fs[i]), `frame ${i}`));
});

test('deframer: a stream cut at every offset into two reads, and into one-byte reads, gives the same frames', () => {
  const fs = frames([14, 60, 1514, 15, 300, 14]);
  const bytes = framed(fs);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { got, errors } = deframe([bytes.subarray(0, cut), bytes.subarray(cut)]);
    assert.equal(errors, [], `cut at ${cut}`);
    assert.is(got.length, fs.length, `cut at ${cut}`);
    got.forEach((f, i) => assert.ok(f.equals(fs[i]), `cut at ${cut}: frame ${i}`));
  }
  const { got } = deframe([...bytes].map((b) => Buffer.from([b])));
  assert.is(got.length, fs.length);
  got.forEach((f, i) => assert.ok(f.equals(fs[i]), `one-byte reads: frame ${i}`));
});

test('deframer: reads of random sizes, including the largest frame split over many reads', () => {
  const fs = frames(LENGTHS.concat(LENGTHS));
  const bytes = framed(fs);
  let seed = 12345;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return 1 + (seed % n); };
  for (const max of [3, 100, 2000, 70000]) {
    const chunks: Buffer[] = [];
    for (let off = 0; off < bytes.length;) { const n = rnd(max); chunks.push(bytes.subarray(off, off + n)); off += n; }
    const { got, errors } = deframe(chunks);
    assert.equal(errors, []);
    assert.is(got.length, fs.length, `reads of up to ${max}`);
    got.forEach((f, i) => assert.ok(f.equals(fs[i]), `reads of up to ${max}: frame ${i}`));
  }
});

test('deframer: a bad length prefix, whole or split across reads, is reported once and nothing after it is handed out', () => {
  const good = frames([60]);
  for (const bad of [0, 13, 65536, 0xffffffff]) {
    const h = Buffer.alloc(4); h.writeUInt32BE(bad);
    const bytes = Buffer.concat([framed(good), h, framed(good)]);
    for (const cut of [64, 65, 66, 67, 68]) {
      const { got, errors } = deframe([bytes.subarray(0, cut), bytes.subarray(cut)]);
      assert.is(got.length, 1, `prefix ${bad}, cut at ${cut}: only the frame before it`);
      assert.equal(errors, [`bad length prefix ${bad} (a frame is 14 to 65535 bytes)`]);
    }
  }
});

test('deframer: a frame handler that stops the client ends the chunk there', () => {
  const fs = frames([60, 60, 60]);
  let stop = false;
  const got: number[] = [];
  const d = new Deframer((f) => { got.push(f.length); stop = true; }, () => {}, () => stop);
  d.push(framed(fs));
  assert.equal(got, [60]);
});

// A connected pair: `server` is the accepted side, `client` the dialled one.
async function pair(): Promise<{ server: Socket; client: Socket; close: () => void }> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const accepted = new Promise<Socket>((ok) => srv.once('connection', ok));
  const client = connect((srv.address() as { port: number }).port, '127.0.0.1');
  const server = await accepted;
  return { server, client, close: () => { client.destroy(); server.destroy(); srv.close(); } };
}
function collect(s: Socket): Buffer[] {
  const got: Buffer[] = [];
  const d = new Deframer((f) => got.push(Buffer.from(f)), (r) => { throw new Error(r); });
  s.on('data', (c: Buffer) => d.push(c));
  return got;
}
const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) { if (Date.now() > end) throw new Error('timed out'); await new Promise((r) => setTimeout(r, 5)); }
};

// Hands frames to the writer the way the switch does (a BatchHandler): one call, (address, length)
// pairs into one memory, with other bytes between the frames.
function hand(w: FrameWriter, fs: Uint8Array[]): void {
  const mem = new Uint8Array(fs.reduce((a, f) => a + f.length + 8, 8)).fill(0xee);
  const d = new Uint32Array(2 * fs.length);
  let at = 8;
  fs.forEach((f, i) => { mem.set(f, at); d[2 * i] = at; d[2 * i + 1] = f.length; at += f.length + 8; });
  w.write(mem, d, fs.length);
}

test('frame writer: the frames handed over in one tick leave in one write, framed and in order', async () => {
  const { server, client, close } = await pair();
  try {
    const stats = { txFrames: 0, txDropped: 0 };
    const w = new FrameWriter(server, 1 << 20, stats);
    const got = collect(client);
    const fs = frames([60, 1514, 14, 1514, 300]);
    hand(w, fs.slice(0, 2)); hand(w, fs.slice(2));   // two deliveries in one tick
    assert.is(w.writes, 0, 'nothing is written before the end of the tick');
    await new Promise((r) => setImmediate(r));
    assert.is(w.writes, 1);
    hand(w, fs);
    await until(() => got.length === 10);
    assert.is(w.writes, 2, 'one write per batch');
    got.forEach((f, i) => assert.ok(f.equals(fs[i % 5]), `frame ${i}`));
    assert.equal(stats, { txFrames: 10, txDropped: 0 });
  } finally { close(); }
});

test('frame writer: frames staged for a socket that is gone by the end of the tick count as dropped, not sent', async () => {
  const { server, close } = await pair();
  try {
    const stats = { txFrames: 0, txDropped: 0 };
    const w = new FrameWriter(server, 1 << 20, stats);
    hand(w, frames([60, 60, 60]));
    server.destroy();
    await new Promise((r) => setImmediate(r));
    assert.equal(stats, { txFrames: 0, txDropped: 3 });
    assert.is(w.writes, 0);
    hand(w, frames([60]));
    assert.equal(stats, { txFrames: 0, txDropped: 4 }, 'a frame for a destroyed socket is dropped at once');
  } finally { close(); }
});

test('frame writer: a batch larger than the staging buffer goes out in pieces, every frame whole', async () => {
  const { server, client, close } = await pair();
  try {
    const stats = { txFrames: 0, txDropped: 0 };
    const w = new FrameWriter(server, 64 << 20, stats);
    const got = collect(client);
    const fs = frames(Array.from({ length: 40 }, (_, i) => (i % 2 ? 65535 : 1514)));
    hand(w, fs);
    const total = fs.reduce((a, f) => a + 4 + f.length, 0);
    await until(() => got.length === fs.length);
    assert.ok(w.writes >= Math.ceil(total / STAGING_BYTES) && w.writes < fs.length, `${w.writes} writes for ${total} bytes`);
    got.forEach((f, i) => assert.ok(f.equals(fs[i]), `frame ${i}`));
  } finally { close(); }
});

test('stream transport: a client that stops reading loses whole frames, bounded, and reads well-framed frames after it resumes', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const tb = await StreamTransport.listen(sw, pb.id, { tcp: { port: 0 }, maxQueuedBytes: 512 * 1024 });
  const addr = tb.address() as { host: string; port: number };
  const b = await new Promise<Socket>((ok) => { const s = connect(addr.port, addr.host); s.once('connect', () => ok(s)); });
  await until(() => tb.stats.connects === 1);
  const got = collect(b);
  b.pause();
  try {
    // The socket may hold several batches (maxQueuedBytes), so the staging buffer it holds must not be
    // filled again. Frame k carries k at byte 20 and a pattern of k after it, so a frame overwritten while the
    // socket still held it, or put together from two, shows.
    const make = (k: number) => {
      const f = Buffer.alloc(1400);
      f.fill(0xff, 0, 6); f.set([2, 0, 0, 0, 0, 0x0a], 6); f.writeUInt16BE(0x88b5, 12);
      f.writeUInt32BE(k, 20);
      for (let i = 24; i < f.length; i++) f[i] = (k + i) & 255;
      return f;
    };
    let k = 0;
    for (let round = 0; round < 100; round++) {
      for (let i = 0; i < 64; i++) pa.send(make(k++));
      sw.flush();
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(tb.stats.txDropped > 0, 'frames were dropped');
    assert.ok(tb.stats.txFrames * 1404 < 512 * 1024 + 2 * STAGING_BYTES + 8 * 1024 * 1024, 'what was queued stayed bounded');
    b.resume();
    await until(() => got.length === tb.stats.txFrames);
    assert.is(got.length + tb.stats.txDropped, 6400, 'every frame was sent or counted dropped');
    let last = -1;
    for (const f of got) {
      const seq = f.readUInt32BE(20);
      assert.ok(seq > last, `in order: ${seq} after ${last}`);
      assert.ok(f.equals(make(seq)), `frame ${seq} arrives whole`);
      last = seq;
    }
  } finally {
    b.destroy();
    await tb.close();
  }
});

test.run();
