// The far side of bench/io.ts's stream case: two clients in QEMU's stream framing, as two guests'
// `-netdev stream` would be. A sends 1514-byte frames to B through the switch; B answers each second
// frame with a 66-byte one, as a TCP receiver's ACKs. `mode` is `flood` (A writes while its socket
// takes it) or a number: that many frames a millisecond timer, the rate of two TCG guests.
import { connect } from 'node:net';

const [pathA, pathB, seconds, mode] = process.argv.slice(2);
const A = [2, 0, 0, 0, 0, 0x0a], B = [2, 0, 0, 0, 0, 0x0b];
const framed = (src, dst, len) => {
  const f = Buffer.alloc(4 + len);
  f.writeUInt32BE(len, 0); f.set(dst, 4); f.set(src, 10); f.writeUInt16BE(0x88b5, 16);
  return f;
};
const a = connect(pathA), b = connect(pathB);
await Promise.all([new Promise((r) => a.on('connect', r)), new Promise((r) => b.on('connect', r))]);
let bytes = 0, frames = 0, pending = Buffer.alloc(0);
const ack = framed(B, A, 66);
b.on('data', (c) => {
  pending = pending.length ? Buffer.concat([pending, c]) : c;
  let off = 0, n = 0;
  while (pending.length - off >= 4) {
    const len = pending.readUInt32BE(off);
    if (pending.length - off - 4 < len) break;
    off += 4 + len; frames++; bytes += len; n++;
  }
  pending = pending.subarray(off);
  for (let i = 0; i < n; i += 2) b.write(ack);
});
a.on('data', () => {});
// B speaks first, so the switch learns where B is.
b.write(framed(B, [255, 255, 255, 255, 255, 255], 64));
await new Promise((r) => setTimeout(r, 200));
process.send({ ready: true });
await new Promise((r) => process.once('message', r));
bytes = 0; frames = 0;
const data = framed(A, B, 1514);
const t0 = performance.now(), end = t0 + Number(seconds) * 1000;
let sent = 0;
await new Promise((done) => {
  const tick = () => {
    if (performance.now() >= end) return done();
    if (mode === 'flood') { let ok = true; while (ok) { ok = a.write(data); sent++; } a.once('drain', tick); }
    else { for (let i = 0; i < Number(mode); i++) { a.write(data); sent++; } setTimeout(tick, 1); }
  };
  tick();
});
await new Promise((r) => setTimeout(r, 300));
process.send({ sent, frames, bytes, ms: performance.now() - t0 });
a.destroy(); b.destroy();
setTimeout(() => process.exit(0), 50);
