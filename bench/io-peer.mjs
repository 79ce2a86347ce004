// The far side of bench/io.ts: sends 64-byte frames from host A to host B through the switch's UDP
// transport A, as fast as the socket takes them, and counts the frames transport B delivers.
import { createSocket } from 'node:dgram';

const [toA, toB, seconds] = process.argv.slice(2).map(Number);
const a = createSocket('udp4'), b = createSocket('udp4');
const frame = (src, dst) => {
  const f = Buffer.alloc(64);
  Buffer.from(dst.split(':').map((x) => parseInt(x, 16))).copy(f, 0);
  Buffer.from(src.split(':').map((x) => parseInt(x, 16))).copy(f, 6);
  f.writeUInt16BE(0x88b5, 12);
  return f;
};
const A = '02:00:00:00:00:0a', B = '02:00:00:00:00:0b';
let received = 0;
b.on('message', () => received++);
await new Promise((r) => a.bind(0, '127.0.0.1', r));
await new Promise((r) => b.bind(0, '127.0.0.1', r));
// B speaks first so the switch learns it and transport B learns where B is.
b.send(frame(B, 'ff:ff:ff:ff:ff:ff'), toB, '127.0.0.1');
await new Promise((r) => setTimeout(r, 200));
received = 0;
const f = frame(A, B);
let sent = 0;
const t0 = performance.now();
const end = t0 + seconds * 1000;
await new Promise((done) => {
  const burst = () => {
    for (let i = 0; i < 64; i++) { a.send(f, toA, '127.0.0.1'); sent++; }
    if (performance.now() < end) setImmediate(burst); else done();
  };
  burst();
});
await new Promise((r) => setTimeout(r, 300));
process.send({ sent, received, ms: performance.now() - t0 });
a.close(); b.close();
process.exit(0);
