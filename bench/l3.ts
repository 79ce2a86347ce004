// L3/NAT suite: the NAT mode of a container host. Internal hosts 10.0.0.0/8 behind port 0 (network 1),
// the uplink on port 1 (network 2), SNAT to the uplink address, the default route via a next hop.
//
// - established: N TCP connections are opened (SYN, SYN-ACK, ACK through the dataplane, so each is
//   ESTABLISHED and translated); then 64-byte TCP segments of uniformly random connections, original
//   direction, are pushed in batches of 256 (fresh frames copied in every batch), each one a full
//   pass: parse, L2 learn and lookup (the gateway MAC), conntrack lookup, state update, the cached
//   SNAT rewrite with checksum deltas, egress L2 lookup, tx descriptor.
// - new connections: SYNs of never-seen tuples into an empty table with room (flushed between
//   rounds), each creating a connection (route, SNAT port choice, two keys) and leaving translated.
// - bytes per connection: the connection table's record and index bytes over its capacity (1M).
import { Dataplane } from '../src/dataplane.js';
import { ethernet, ipv4, tcp } from '../src/frames.js';
import { HASH_SEED, measure, record, roundsSpread, rng, quick, type BenchRecord, type Suite } from './harness.js';

const BATCH = 256;
const FRAME = 64;
const HOSTS = 64;
const GW_IN = '02:6e:70:00:00:00', GW_OUT = '02:6e:70:00:00:01';
const R_MAC = '02:00:00:00:00:fe';

const ip = (s: string) => s.split('.').reduce((a, b) => (a << 8) | Number(b), 0) >>> 0;
const macHi = (m: string) => parseInt(m.slice(0, 5).replace(':', ''), 16);
const macLo = (m: string) => parseInt(m.slice(6).replace(/:/g, ''), 16) >>> 0;
const hostMac = (h: number) => `02:00:00:01:${(h >> 8).toString(16).padStart(2, '0')}:${(h & 255).toString(16).padStart(2, '0')}`;
const hostIp = (h: number) => `10.0.${h >> 8}.${(h & 255) + 1}`;

function natHost(conns: number) {
  const dp = new Dataplane({ build: 'release', hashSeed: HASH_SEED, maxPorts: 4, macEntries: 1024, batch: BATCH, rxBytes: BATCH * 128, connections: conns, neighbors: 1024 });
  const x = dp.exports;
  const ok = (e: number, what: string) => { if (e < 0) throw new Error(`${what}: ${e}`); };
  ok(x.port_configure(0, 1, 0, 0, 0, 0xffffffff), 'port 0');
  ok(x.port_configure(1, 2, 0, 0, 0, 0xffffffff), 'port 1');
  ok(x.iface_configure(0, 0, 1, 0, macHi(GW_IN), macLo(GW_IN), 0), 'if 0');
  ok(x.iface_set_ipv4(0, ip('10.0.0.254'), 8), 'if 0 addr');
  ok(x.iface_configure(1, 0, 2, 0, macHi(GW_OUT), macLo(GW_OUT), 1), 'if 1');
  ok(x.iface_set_ipv4(1, ip('192.168.1.1'), 24), 'if 1 addr');
  ok(x.route_add4(0, 0, 0, 1, ip('192.168.1.254'), 0), 'default route');
  ok(x.snat_set(0, 0, ip('10.0.0.0'), 8, 1, 0, 1024, 65535, 0), 'snat');
  ok(x.neighbor_set4(0, ip('192.168.1.254'), macHi(R_MAC), macLo(R_MAC), 1, 0), 'neighbor R');
  for (let h = 0; h < HOSTS; h++) ok(x.neighbor_set4(0, ip(hostIp(h)), macHi(hostMac(h)), macLo(hostMac(h)), 0, 0), 'neighbor host');
  return dp;
}

// Flow i: host i % HOSTS, source port 1024 + i / HOSTS, to one of 251 servers on port 443 (so that
// no server sees more connections from the one external address than it has ports).
function flowFrame(i: number, flags: string, inbound = false, natPort = 0): Uint8Array {
  const h = i % HOSTS;
  const sport = 1024 + Math.floor(i / HOSTS);
  const server = `93.184.${((i >> 6) % 251) >> 8}.${((i >> 6) % 251) + 1}`;
  const pad = new Uint8Array(FRAME - 54);
  if (inbound) {
    return ethernet({ dst: GW_OUT, src: R_MAC, payload: ipv4({ src: server, dst: '192.168.1.1', payload: tcp({ srcPort: 443, dstPort: natPort, flags, seq: 2, ack: 2 }) }) });
  }
  return ethernet({ dst: GW_IN, src: hostMac(h), payload: ipv4({ src: hostIp(h), dst: server, payload: tcp({ srcPort: sport, dstPort: 443, flags, seq: 1, ack: 1, payload: flags === 'A' ? pad : undefined }) }) });
}

// Pushes frames through in batches; `port` per frame; returns the tx frames' (port, bytes) via cb.
function push(dp: Dataplane, frames: Uint8Array[], port: number[], now: number, onTx?: (p: number, f: Uint8Array) => void): number {
  let sent = 0;
  for (let o = 0; o < frames.length; o += BATCH) {
    const n = Math.min(BATCH, frames.length - o);
    let off = 0;
    for (let i = 0; i < n; i++) {
      const f = frames[o + i];
      dp.rxBuffer.set(f, off);
      dp.rxDescriptors.setUint32(i * 8, off, true);
      dp.rxDescriptors.setUint16(i * 8 + 4, f.length, true);
      dp.rxDescriptors.setUint16(i * 8 + 6, port[o + i], true);
      off += 128;
    }
    const tx = dp.process(n, now);
    sent += tx;
    if (onTx) {
      dp.views();
      for (let t = 0; t < tx; t++) {
        const a = dp.txDescriptors.getUint32(t * 8, true), l = dp.txDescriptors.getUint16(t * 8 + 4, true);
        onTx(dp.txDescriptors.getUint16(t * 8 + 6, true), dp.u8.slice(a, a + l));
      }
    }
  }
  return sent;
}

// Builds the host, opens `flows` connections and returns the function that moves one batch.
export function establishedSetup(flows: number): () => void {
  const dp = natHost(flows);
  // Open every connection: SYN out, learn its NAT port from what leaves, SYN-ACK in, ACK out.
  const syn: Uint8Array[] = [], natPorts: number[] = [];
  for (let i = 0; i < flows; i++) syn.push(flowFrame(i, 'S'));
  push(dp, syn, syn.map(() => 0), 10, (_p, f) => natPorts.push((f[34] << 8) | f[35]));
  if (natPorts.length !== flows) throw new Error(`expected ${flows} SYNs out, got ${natPorts.length}`);
  const synack = natPorts.map((p, i) => flowFrame(i, 'SA', true, p));
  if (push(dp, synack, synack.map(() => 1), 11) !== flows) throw new Error('SYN-ACKs not all delivered');
  const ack: Uint8Array[] = [];
  for (let i = 0; i < flows; i++) ack.push(flowFrame(i, 'A'));
  if (push(dp, ack, ack.map(() => 0), 12) !== flows) throw new Error('ACKs not all forwarded');
  if (dp.exports.ct_count() !== flows) throw new Error(`expected ${flows} connections, got ${dp.exports.ct_count()}`);

  // The timed traffic: random established flows, original direction, 64-byte frames.
  const r = rng(7);
  const poolN = Math.ceil(Math.max(4096, Math.min(flows, 1 << 18)) / BATCH) * BATCH;
  const pool = new Uint8Array(poolN * FRAME);
  for (let i = 0; i < poolN; i++) pool.set(ack[r() % flows], i * FRAME);
  const batches = poolN / BATCH;
  const frameBatches = Array.from({ length: batches }, (_, b) => pool.subarray(b * BATCH * FRAME, (b + 1) * BATCH * FRAME));
  const descs = new Uint8Array(BATCH * 8);
  const dd = new DataView(descs.buffer);
  for (let i = 0; i < BATCH; i++) { dd.setUint32(i * 8, i * FRAME, true); dd.setUint16(i * 8 + 4, FRAME, true); dd.setUint16(i * 8 + 6, 0, true); }
  const rxDescs = new Uint8Array(dp.rxDescriptors.buffer, dp.rxDescriptors.byteOffset, BATCH * 8);
  let k = 0;
  const now0 = performance.now();
  const run = () => {
    dp.rxBuffer.set(frameBatches[k]);
    rxDescs.set(descs);
    const tx = dp.exports.process(BATCH, 100 + performance.now() - now0);
    if (tx !== BATCH) throw new Error(`expected ${BATCH} frames routed, got ${tx}`);
    k = k + 1 === batches ? 0 : k + 1;
  };
  return run;
}

function establishedCase(flows: number): BenchRecord {
  const run = establishedSetup(flows);
  const label = flows >= 1 << 20 ? `${Math.round(flows / (1 << 20))}M` : `${Math.round(flows / 1000)}k`;
  const m = measure(`nat established, ${label} connections`, BATCH, run);
  return record(`nat-established-${label}`, 'Mpps', m.mpps, flows, 'connections', m.spread);
}

// n SYNs of n flows, laid out per batch beforehand (128 bytes a frame), the descriptors of one batch,
// and a view of the module's rx descriptors to copy them into: a timed batch is two copies and a call.
function synBatches(dp: ReturnType<typeof natHost>, n: number) {
  const batches = n / BATCH;
  const frames = new Uint8Array(n * 128);
  for (let i = 0; i < n; i++) frames.set(flowFrame(i, 'S'), i * 128);
  const synLen = flowFrame(0, 'S').length;
  const descs = new Uint8Array(BATCH * 8);
  const dd = new DataView(descs.buffer);
  for (let i = 0; i < BATCH; i++) { dd.setUint32(i * 8, i * 128, true); dd.setUint16(i * 8 + 4, synLen, true); dd.setUint16(i * 8 + 6, 0, true); }
  const rxDescs = new Uint8Array(dp.rxDescriptors.buffer, dp.rxDescriptors.byteOffset, BATCH * 8);
  return { batches, frames, descs, rxDescs };
}

// For bench/ab.ts: the new-connection case one batch at a time (256 SYNs through SNAT, each a new
// connection). `prepare(k)` runs outside the timing before k batches: when fewer than k are left of
// the `n` connections the table holds, it flushes the table and starts again, so the timed batches
// never include the flush and every round fills the same range of table occupancy on both sides.
export function newConnectionsSetup(n = 1 << 19): (() => void) & { prepare(k: number): void } {
  const dp = natHost(n);
  const { batches, frames, descs, rxDescs } = synBatches(dp, n);
  const frameBatches = Array.from({ length: batches }, (_, b) => frames.subarray(b * BATCH * 128, (b + 1) * BATCH * 128));
  let b = 0;
  const run = () => {
    if (b === batches) { dp.exports.ct_flush(0x10000); b = 0; }
    dp.rxBuffer.set(frameBatches[b++]);
    rxDescs.set(descs);
    const out = dp.exports.process(BATCH, 10);
    if (out !== BATCH) throw new Error(`expected ${BATCH} SYNs translated, got ${out}`);
  };
  return Object.assign(run, { prepare(k: number) { if (b + k > batches) { dp.exports.ct_flush(0x10000); b = 0; } } });
}

function newConnectionsCase(): BenchRecord {
  const n = quick ? 1 << 17 : 1 << 19;
  const dp = natHost(n);
  const { batches, frames, descs, rxDescs } = synBatches(dp, n);
  // Round -1 warms up (first touches of the table's memory, the code paths' first runs) and is not
  // timed; the figure is the best timed round, the spread is over all timed rounds.
  const times: number[] = [];
  for (let round = -1; round < (quick ? 3 : 6); round++) {
    dp.exports.ct_flush(0x10000);
    let out = 0;
    const t0 = performance.now();
    for (let b = 0; b < batches; b++) {
      dp.rxBuffer.set(frames.subarray(b * BATCH * 128, (b + 1) * BATCH * 128));
      rxDescs.set(descs);
      out += dp.exports.process(BATCH, 10 + round);
    }
    const dt = performance.now() - t0;
    if (out !== n) throw new Error(`expected ${n} SYNs translated, got ${out}`);
    if (round >= 0) times.push(dt);
  }
  const perSec = n / (Math.min(...times) / 1000);
  const spread = roundsSpread(n, times);
  console.log(`  ${'nat new connections (SYN through SNAT)'.padEnd(44)} ${(perSec / 1e6).toFixed(2).padStart(7)} M conn/s  ±${spread.rme.toFixed(1)}%  (best of ${times.length} rounds of ${n}, ${spread.min.toFixed(2)}–${spread.max.toFixed(2)})`);
  return record('nat-new-connections', 'Mconn/s', perSec / 1e6, n, 'SYNs per round', spread, { connsPerSec: Math.round(perSec) });
}

// The connection table's own footprint: record and index bytes per connection, read from the module.
function bytesPerConnection(): BenchRecord {
  const n = 1 << 20;
  const dp = new Dataplane({ build: 'release', connections: n });
  const x = dp.exports;
  const bytes = (x.ct_record_size() * x.ct_capacity() + x.ct_index_slots() * 8) / n;
  console.log(`  ${'memory per connection'.padEnd(44)} ${bytes.toFixed(1).padStart(7)} bytes`);
  return record('nat-bytes-per-connection', 'bytes/conn', bytes, n, 'connections');
}

export const l3Suite: Suite = {
  title: 'L3/NAT: conntrack + SNAT, 64-byte TCP, batches of 256',
  processes: 3,
  cases: () => [...(quick ? [10_000, 100_000] : [10_000, 100_000, 1 << 20]).map((n) => () => establishedCase(n)), newConnectionsCase, bytesPerConnection],
};
