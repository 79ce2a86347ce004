// Super-frame suite: 64 KiB TCP super-frames (TSO, CHECKSUM_PARTIAL, the largest a 16-bit frame length
// holds: 65535 bytes with the Ethernet header, 65469 bytes of payload, gso_size 1448) from a port with
// offloads, through L2 and through NAT (masquerade of an established connection), to a port with
// offloads (the super-frame leaves as it is, with its vnet header) and to a plain port (software GSO
// into 46 segments with full checksums). Fresh frames are copied into the rx buffer every batch, as a
// host does. The figure is super-frames per second (as Mpps) and the payload rate in Gbit/s.
import { Switch, Offload } from '../src/dataplane.js';
import { ethernet, ipv4, tcp, arp } from '../src/frames.js';
import { measure, record, type BenchRecord, type Case, type Suite } from './harness.js';

// 64 ports: tx_capacity() is batch × min(ports, 64) descriptors, one per segment of software GSO.
const BATCH = 16;
const SLOT = 65536;
const GSO_SIZE = 1448;
const ALL = Offload.CSUM | Offload.TSO4 | Offload.TSO6 | Offload.TSO_ECN | Offload.USO;
const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };
const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100' };
const GW0 = '02:6e:70:00:00:00';
const TS = new Uint8Array([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]);

// The super-frame as a TSO sender hands it over: the TCP checksum field holds the pseudo-header sum.
function superFrame(dstMac: string, dst: string): Uint8Array {
  const payload = new Uint8Array(65535 - 14 - 20 - 32).map((_, i) => i & 0xff);
  const f = ethernet({ src: A.mac, dst: dstMac, payload: ipv4({ src: A.ip, dst, df: true, payload: tcp({ srcPort: 40000, dstPort: 80, seq: 1, ack: 1, flags: 'A', options: TS, payload }) }) });
  const v = new DataView(f.buffer);
  let s = 0;
  for (let i = 26; i < 34; i += 2) s += v.getUint16(i);
  s += 6 + (f.length - 34);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  v.setUint16(34 + 16, s);
  return f;
}
function vnetHeader(): Uint8Array {
  const h = new Uint8Array(12);
  const v = new DataView(h.buffer);
  h[0] = 1; h[1] = 1;
  v.setUint16(2, 66, true); v.setUint16(4, GSO_SIZE, true); v.setUint16(6, 34, true); v.setUint16(8, 16, true);
  return h;
}

export function gsoSetup(path: 'l2' | 'nat', outCaps: number, build: 'release' | 'debug' = 'release'): { run: () => void; bytes: number } {
  let now = 1000;
  const sw = new Switch({ build, maxPorts: 64, macEntries: 64, batch: BATCH, rxBytes: BATCH * SLOT, clock: () => now });
  sw.addPort({ network: 1 });
  sw.addPort({ network: path === 'l2' ? 1 : 2 });
  sw.setOffload(0, ALL);
  sw.setOffload(1, outCaps);
  let frame: Uint8Array;
  if (path === 'l2') {
    sw.inject([[1, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: B.mac, payload: arp({ op: 'request', senderMac: B.mac, senderIp: B.ip, targetIp: A.ip }) })]]);
    frame = superFrame(B.mac, B.ip);
  } else {
    const rt = sw.router;
    rt.addInterface({ network: 1, address: '10.0.0.1/24' });
    rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
    rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
    rt.setNeighbor({ address: X.ip, mac: X.mac, interface: 1 });
    rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
    // The same super-frame again and again: a liberal zone takes it as a retransmission would be taken.
    rt.setConntrackTcp(0, { liberal: true });
    sw.inject([[1, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: X.mac, payload: arp({ op: 'request', senderMac: X.mac, senderIp: X.ip, targetIp: '192.168.1.99' }) })]]);
    frame = superFrame(GW0, X.ip);
  }
  const x = sw.dp.exports;
  const dp = sw.dp;
  dp.views();
  const h = vnetHeader();
  for (let i = 0; i < BATCH; i++) {
    dp.rxDescriptors.setUint32(i * 8, i * SLOT, true);
    dp.rxDescriptors.setUint16(i * 8 + 4, frame.length, true);
    dp.rxDescriptors.setUint16(i * 8 + 6, 0, true);
    dp.rxOffloads.set(h, i * 12);
  }
  const segs = Math.ceil((frame.length - 66) / GSO_SIZE);
  const want = outCaps ? BATCH : BATCH * segs;
  const run = () => {
    for (let i = 0; i < BATCH; i++) dp.rxBuffer.set(frame, i * SLOT);
    const tx = x.process(BATCH, ++now);
    if (tx !== want) throw new Error(`gso bench ${path}: expected ${want} frames out, got ${tx}`);
  };
  run();
  return { run, bytes: frame.length - 66 };
}

function gsoCase(path: 'l2' | 'nat', to: 'tso' | 'plain', caps: number): BenchRecord {
  const { run, bytes } = gsoSetup(path, caps);
  const name = `gso-${path}-64k-to-${to}-port`;
  const m = measure(name, BATCH, run);
  const gbps = (m.mpps * 1e6 * bytes * 8) / 1e9;
  console.log(`  ${''.padEnd(44)} = ${gbps.toFixed(1)} Gbit/s of TCP payload`);
  return record(name, 'Mpps', m.mpps, BATCH, 'super-frames a batch', m.spread, { gbps: Math.round(gbps * 10) / 10, segments: caps ? 1 : Math.ceil(bytes / GSO_SIZE) });
}

export const gsoSuite: Suite = {
  title: 'Super-frames: 64 KiB TCP through L2 and NAT, to a port with offloads and to a plain port',
  cases: () => (['l2', 'nat'] as const).flatMap((path) =>
    ([['tso', ALL], ['plain', 0]] as const).map(([to, caps]): Case => () => gsoCase(path, to, caps))),
};
