// L2 suite: learn + forward of 64-byte IPv4/UDP frames in batches of 256, with fresh frames copied into
// the rx buffer for every batch, at MAC table sizes 1k, 64k and 1M. Every frame is known unicast between two
// learned hosts on different ports, and every frame also refreshes its source's entry, so each packet
// costs two MAC table lookups over the whole table (uniformly random hosts: the cache-hostile case).
import { Dataplane } from '../src/dataplane.js';
import { ethernet, ipv4, udp } from '../src/frames.js';
import { HASH_SEED, measure, record, rng, quick, type BenchRecord, type Suite } from './harness.js';

const PORTS = 64;
const BATCH = 256;
const FRAME = 64;

function hostMac(h: number, out: Uint8Array, off: number): void {
  out[off] = 0x02; out[off + 1] = 0x00;
  out[off + 2] = (h >>> 24) & 0xff; out[off + 3] = (h >>> 16) & 0xff; out[off + 4] = (h >>> 8) & 0xff; out[off + 5] = h & 0xff;
}
const portOf = (h: number) => h % PORTS;

// EtherType, IPv4 header (20), UDP header (8), 22 bytes of payload: a 64-byte frame.
function template(): Uint8Array {
  const f = ethernet({
    dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01',
    payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1024, dstPort: 9, payload: new Uint8Array(FRAME - 42) }) }),
  });
  if (f.length !== FRAME) throw new Error(`template is ${f.length} bytes`);
  return f.subarray(12);
}

// Builds the switch and the traffic and returns the function that moves one batch.
export function l2Setup(hosts: number, build: 'release' | 'debug' = 'release'): () => void {
  const dp = new Dataplane({ build, hashSeed: HASH_SEED, maxPorts: PORTS, macEntries: hosts, batch: BATCH, rxBytes: BATCH * FRAME });
  const x = dp.exports;
  for (let p = 0; p < PORTS; p++) x.port_configure(p, 0, 0, 0, 0, 0xffffffff);

  // The traffic: one frame per host as source (so all are learned), each to a random other host on
  // another port, in a shuffled order; a multiple of the batch size.
  const n = Math.max(4096, Math.ceil(hosts / BATCH) * BATCH);
  const r = rng();
  const frames = new Uint8Array(n * FRAME);
  // Every frame is a real IPv4/UDP datagram (so the parse stage does its full work): 64 bytes
  // from the EtherType on are a fixed template after the two MACs.
  const ipUdp = template();
  const descs = new Uint8Array(n * 8);
  const dd = new DataView(descs.buffer);
  for (let i = 0; i < n; i++) {
    const src = i % hosts;
    let dst = r() % hosts;
    if (portOf(dst) === portOf(src)) dst = (dst + 1) % hosts;
    const o = i * FRAME;
    hostMac(dst, frames, o);
    hostMac(src, frames, o + 6);
    frames.set(ipUdp, o + 12);
    dd.setUint32(i * 8, (i % BATCH) * FRAME, true);
    dd.setUint16(i * 8 + 4, FRAME, true);
    dd.setUint16(i * 8 + 6, portOf(src), true);
  }
  // Shuffle whole frames and descriptors together, batch slot offsets stay in place.
  for (let i = n - 1; i > 0; i--) {
    const j = r() % (i + 1);
    const a = frames.slice(i * FRAME, i * FRAME + FRAME);
    frames.copyWithin(i * FRAME, j * FRAME, j * FRAME + FRAME);
    frames.set(a, j * FRAME);
    const pi = dd.getUint16(i * 8 + 6, true);
    dd.setUint16(i * 8 + 6, dd.getUint16(j * 8 + 6, true), true);
    dd.setUint16(j * 8 + 6, pi, true);
  }

  const batches = n / BATCH;
  let k = 0;
  const now0 = performance.now();
  // Slices made once, so the timed loop allocates nothing: two copies and one call per batch.
  const frameBatches = Array.from({ length: batches }, (_, b) => frames.subarray(b * BATCH * FRAME, (b + 1) * BATCH * FRAME));
  const descBatches = Array.from({ length: batches }, (_, b) => descs.subarray(b * BATCH * 8, (b + 1) * BATCH * 8));
  const rxDescs = new Uint8Array(dp.rxDescriptors.buffer, dp.rxDescriptors.byteOffset, BATCH * 8);
  const run = () => {
    dp.rxBuffer.set(frameBatches[k]);
    rxDescs.set(descBatches[k]);
    const tx = x.process(BATCH, performance.now() - now0);
    if (tx !== BATCH && learned) throw new Error(`expected ${BATCH} frames forwarded, got ${tx}`);
    k = k + 1 === batches ? 0 : k + 1;
  };
  // Warm up: one pass learns every host (the first frames to a not-yet-learned host are flooded).
  let learned = false;
  for (let i = 0; i < batches * 2; i++) run();
  learned = true;
  if (x.mac_count() !== hosts) throw new Error(`expected ${hosts} MACs learned, got ${x.mac_count()}`);
  return run;
}

export function l2Case(hosts: number): BenchRecord {
  const run = l2Setup(hosts);
  const label = hosts >= 1 << 20 ? `${hosts >> 20}M` : hosts >= 1024 ? `${hosts >> 10}k` : `${hosts}`;
  const m = measure(`l2 learn+forward, ${label} MACs`, BATCH, run);
  return record(`l2-forward-${label}`, 'Mpps', m.mpps, hosts, 'MACs', m.spread);
}

export const l2Suite: Suite = {
  title: 'L2 switch: learn + forward, 64-byte frames, batches of 256',
  processes: 3,
  cases: () => (quick ? [1 << 10, 1 << 16] : [1 << 10, 1 << 16, 1 << 20]).map((h) => () => l2Case(h)),
};
