// VXLAN suite: encapsulation and decapsulation of 64-byte inner frames (IPv4/UDP) on one switch, in
// batches of 256 with fresh frames copied into the rx buffer every batch, at 1k and 100k remote
// endpoints (100 hosts' provider addresses). Encap: a local port sends to uniformly random remote
// endpoints (L2 lookup of the remote's static entry, the outer headers written into tx memory, the
// inner frame copied). Decap: the underlay port brings frames from random remotes to the local
// endpoint (outer checks, VNI and member lookups, the inner source's spoof check, L2 forward). Both:
// half of each batch each way, the per-core figure for a host that sends and receives.
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, udp } from '../src/frames.js';
import { HASH_SEED, measure, record, rng, quick, type BenchRecord, type Case, type Suite } from './harness.js';

const BATCH = 256;
const FRAME = 64;
const SLOT = 128;
const VNI = 5001;
const HOSTS = 100;
const A_MAC = [0x02, 0, 0, 0, 0, 0x0a];

const remoteMac = (i: number) => [0x02, 0x01, (i >>> 16) & 255, (i >>> 8) & 255, i & 255, 0x01];
const remotePa = (i: number) => `10.99.${Math.floor((i % HOSTS) / 250)}.${(i % HOSTS) % 250 + 2}`;
const hex = (b: number[]) => b.map((x) => x.toString(16).padStart(2, '0')).join(':');

export type VxlanCase = 'encap' | 'decap' | 'both';

export function vxlanSetup(kind: VxlanCase, remotes: number, build: 'release' | 'debug' = 'release'): () => void {
  let now = 1000;
  const sw = new Switch({ build, hashSeed: HASH_SEED, maxPorts: 4, macEntries: remotes + 1024, batch: BATCH, rxBytes: BATCH * SLOT, maxRemotes: remotes, clock: () => now });
  sw.addPort({ network: 100 });
  sw.addPort({ network: 1 });
  sw.overlay.setUnderlay({ port: 0, address: '10.99.255.1' });
  sw.overlay.setVni(1, VNI);
  sw.addStaticMac({ mac: hex(A_MAC), port: 1, network: 1 });
  for (let i = 0; i < remotes; i++) sw.overlay.addRemote({ network: 1, mac: hex(remoteMac(i)), addresses: [], providerAddress: remotePa(i) });

  // Pools of frames (a multiple of the batch), to random remotes: the inner frame alone (encap) and
  // as the underlay brings it (decap).
  const n = Math.ceil(Math.max(4096, Math.min(remotes, 1 << 17)) / BATCH) * BATCH;
  const r = rng();
  const pool = new Uint8Array(n * SLOT);
  const lens = new Uint16Array(n), ports = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const rem = r() % remotes;
    const enc = kind === 'encap' || (kind === 'both' && (i & 1) === 0);
    const inner = ethernet({ dst: enc ? hex(remoteMac(rem)) : hex(A_MAC), src: enc ? hex(A_MAC) : hex(remoteMac(rem)),
      payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.3', payload: udp({ srcPort: 1024 + (i & 1023), dstPort: 9, payload: new Uint8Array(FRAME - 42) }) }) });
    let f = inner;
    if (!enc) {
      const vx = new Uint8Array(8 + inner.length);
      vx[0] = 8; vx[4] = VNI >>> 16; vx[5] = (VNI >>> 8) & 255; vx[6] = VNI & 255;
      vx.set(inner, 8);
      f = ethernet({ src: '00:00:00:00:00:00', dst: '00:00:00:00:00:00', payload: ipv4({ src: remotePa(rem), dst: '10.99.255.1', ttl: 64, payload: udp({ srcPort: 50000, dstPort: 4789, payload: vx, zeroChecksum: true }) }) });
    }
    pool.set(f, i * SLOT);
    lens[i] = f.length;
    ports[i] = enc ? 1 : 0;
  }
  const dp = sw.dp, x = dp.exports;
  dp.views();
  const batches = n / BATCH;
  const frameBatches = Array.from({ length: batches }, (_, b) => pool.subarray(b * BATCH * SLOT, (b + 1) * BATCH * SLOT));
  const descs = new Uint8Array(n * 8);
  const dd = new DataView(descs.buffer);
  for (let i = 0; i < n; i++) {
    dd.setUint32(i * 8, (i % BATCH) * SLOT, true);
    dd.setUint16(i * 8 + 4, lens[i], true);
    dd.setUint16(i * 8 + 6, ports[i], true);
  }
  const descBatches = Array.from({ length: batches }, (_, b) => descs.subarray(b * BATCH * 8, (b + 1) * BATCH * 8));
  const rxDescs = new Uint8Array(dp.rxDescriptors.buffer, dp.rxDescriptors.byteOffset, BATCH * 8);
  let k = 0;
  const run = () => {
    dp.rxBuffer.set(frameBatches[k]);
    rxDescs.set(descBatches[k]);
    const tx = x.process(BATCH, ++now);
    if (tx !== BATCH) throw new Error(`vxlan bench ${kind}: expected ${BATCH} frames out, got ${tx}: ${JSON.stringify(sw.counters().drops)}`);
    k = k + 1 === batches ? 0 : k + 1;
  };
  run();
  return run;
}

function vxlanCase(kind: 'encap' | 'decap' | 'both', remotes: number): BenchRecord {
  const name = `vxlan-${kind}-${remotes >= 1000 ? `${remotes / 1000}k` : remotes}`;
  const m = measure(name, BATCH, vxlanSetup(kind, remotes));
  return record(name, 'Mpps', m.mpps, remotes, 'remote endpoints', m.spread, { innerFrame: FRAME });
}

export const vxlanSuite: Suite = {
  title: 'VXLAN: encapsulation and decapsulation, 64-byte inner frames, batches of 256',
  cases: () => (quick ? [1000] : [1000, 100_000]).flatMap((remotes) =>
    (['encap', 'decap', 'both'] as const).map((kind): Case => () => vxlanCase(kind, remotes))),
};
