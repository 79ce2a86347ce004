#!/usr/bin/env node
// The bench's client path for the socket uplinks that speak QEMU's stream protocol (netplane's stream
// transport and passt): a TAP device (read and written by netplane's native helper, native/tap.c)
// bridged to a unix socket, each frame preceded by its length as a 32-bit big-endian integer, the way
// QEMU's `-netdev stream` sends it. One process per client, so the same client code and cost sit in
// front of every peer. Usage: tap-stream.mjs DEVICE SOCKET (the TAP is created in the root namespace;
// the caller moves it). Prints "connected" once the socket is up; exits when the socket closes.
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const native = createRequire(import.meta.url)(join(dirname(fileURLToPath(import.meta.url)), '../native/build/Release/netplane_tap.node'));
const [dev, path, mtuArg] = process.argv.slice(2);
// The helper's API before and after its batched writes (issue 14): open(dev) -> fd and write(fd, frame),
// or open(dev, offloads) -> [fd, accepted] (-1: a plain TAP, no vnet header) and
// write(fd, base, desc, n, hdrLen) writing n frames described by [header, frame, length] offsets into
// base in one call. A chunk's frames go in one call where the helper has it.
const opened = native.open(dev, -1);
const batched = Array.isArray(opened);
const fd = batched ? opened[0] : opened;
const desc = new Uint32Array(3 * 4096);
let descN = 0;
function tapWrite(base, at, len) {
  if (!batched) { native.write(fd, base.subarray(at, at + len)); return; }
  if (descN === 4096) tapFlush(base);
  desc[descN * 3] = at; desc[descN * 3 + 1] = at; desc[descN * 3 + 2] = len;
  descN++;
}
function tapFlush(base) {
  if (descN) native.write(fd, base, desc, descN, 0);
  descN = 0;
}
const SLOT = Math.max(9216, Number(mtuArg ?? 0) + 18), BATCH = 256;
const buf = new Uint8Array(SLOT * BATCH), lens = new Uint32Array(BATCH);
const out = Buffer.alloc((SLOT + 4) * BATCH);
const sock = connect(path);
// A frame split across chunks is completed in `part` (only its own bytes are copied, not the chunk's);
// whole frames are written to the TAP from the chunk where they lie.
const part = Buffer.alloc(4 + 65536);
let partLen = 0;
sock.on('data', (d) => {
  let o = 0;
  if (partLen > 0) {
    const head = partLen >= 4 ? 0 : Math.min(4 - partLen, d.length);
    d.copy(part, partLen, 0, head); partLen += head; o = head;
    if (partLen < 4) return;
    const want = 4 + part.readUInt32BE(0) - partLen;
    const take = Math.min(want, d.length - o);
    d.copy(part, partLen, o, o + take); partLen += take; o += take;
    if (take < want) return;
    tapWrite(part, 4, partLen - 4);
    tapFlush(part);
    partLen = 0;
  }
  while (d.length - o >= 4) {
    const len = d.readUInt32BE(o);
    if (d.length - o - 4 < len) break;
    tapWrite(d, o + 4, len);
    o += 4 + len;
  }
  tapFlush(d);
  d.copy(part, 0, o);
  partLen = d.length - o;
});
let poller;   // kept referenced: the helper stops polling when the handle is collected
sock.on('connect', () => {
  poller = native.poll(fd, () => {
    let got;
    do {
      got = native.read(fd, buf, lens, SLOT);
      let o = 0;
      for (let i = 0; i < got; i++) {
        out.writeUInt32BE(lens[i], o);
        out.set(buf.subarray(i * SLOT, i * SLOT + lens[i]), o + 4);
        o += 4 + lens[i];
      }
      if (o) sock.write(Buffer.from(out.subarray(0, o)));
    } while (got === BATCH);
  });
  console.log('connected');
});
sock.on('close', () => process.exit(0));
sock.on('error', (e) => { console.error(`tap-stream: ${e.message}`); process.exit(1); });
