// The socket uplink's host reads (src/uplink/index.ts, ReadPool): pooled buffers, 1 MiB bulk
// buffers for a socket that has more waiting, within a budget, byte-exact.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as net from 'node:net';
import { createHash } from 'node:crypto';
import { ReadPool, READ_BYTES, BULK_READ_BYTES, BULK_BUFFERS, SMALL_READ } from '../src/uplink/index.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 255; }
  return b;
}

// A loopback server that writes `data` to each connection (all of it at once, so the reader finds
// more than a buffer's worth waiting) and ends it.
async function server(data: Buffer): Promise<{ port: number; close: () => void }> {
  const srv = net.createServer((c) => c.end(data));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
}

// Reads one connection through the pool, keeping every chunk (not released) or releasing each at
// once; returns the bytes, the sizes of the buffers the chunks were read into and the chunks' lengths
// (a read shorter than SMALL_READ, which a loaded machine's loopback can give at any point, is
// copied out: its buffer is Node's, not the pool's).
async function read(pool: ReadPool, port: number, keep: boolean): Promise<{ data: Buffer; sizes: number[]; lengths: number[] }> {
  const s = pool.connect({ host: '127.0.0.1', port });
  const parts: Buffer[] = [], sizes: number[] = [], lengths: number[] = [];
  s.on('data', (c: Buffer) => {
    sizes.push(c.buffer.byteLength);
    lengths.push(c.length);
    parts.push(keep ? c : Buffer.from(c));
    if (!keep) { c.fill(0xee); pool.release(c); }   // scribbled: a reused buffer must not alter what was read
  });
  await new Promise((r) => s.on('close', r));
  return { data: Buffer.concat(parts), sizes, lengths };
}

test('a socket that fills its 64 KiB buffer reads on into 1 MiB buffers; released ones are reused; byte-exact', async () => {
  const data = pattern(24 * 1024 * 1024 + 123, 7);
  const srv = await server(data);
  const pool = new ReadPool();
  const r = await read(pool, srv.port, false);
  srv.close();
  assert.is(sha(r.data), sha(data));
  assert.is(r.sizes[0], READ_BYTES, 'the first read: a 64 KiB buffer');
  const bulk = r.sizes.filter((x) => x === BULK_READ_BYTES).length;
  assert.ok(bulk > r.sizes.length / 2, `most reads into bulk buffers (${bulk} of ${r.sizes.length})`);
  assert.ok(pool.bulkBuffers <= 2, `released bulk buffers are reused, not made anew (${pool.bulkBuffers} made)`);
});

test('bulk buffers held by chunks not yet released stop at BULK_BUFFERS: further reads take 64 KiB ones; byte-exact', async () => {
  const data = pattern((BULK_BUFFERS + 8) * BULK_READ_BYTES, 11);
  const srv = await server(data);
  const pool = new ReadPool();
  const r = await read(pool, srv.port, true);
  srv.close();
  assert.is(sha(r.data), sha(data));
  assert.is(pool.bulkBuffers, BULK_BUFFERS, 'the budget, all held');
  assert.ok(r.sizes.filter((x) => x === BULK_READ_BYTES).length <= BULK_BUFFERS);
  const last = r.sizes.lastIndexOf(BULK_READ_BYTES);
  const afterBudget = r.sizes.slice(last + 1);
  assert.ok(afterBudget.some((x) => x === READ_BYTES), 'reads go on once the budget is spent');
  afterBudget.forEach((x, i) => assert.ok(x === READ_BYTES || r.lengths[last + 1 + i] < SMALL_READ,
    `read ${last + 1 + i} after the budget: a 64 KiB buffer (or a small read copied out), not ${x} bytes for ${r.lengths[last + 1 + i]}`));
});

test('a small read is copied out and its buffer goes straight back', async () => {
  const data = pattern(100, 3);
  const srv = await server(data);
  const pool = new ReadPool();
  const r = await read(pool, srv.port, true);
  srv.close();
  assert.equal(r.data, data);
  assert.ok(r.sizes.every((x) => x < READ_BYTES), 'the chunk has a buffer of its own');
  assert.is(pool.bulkBuffers, 0);
});

test.run();
