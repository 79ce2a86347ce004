// Policy suite: ACLs and the load balancer.
//
// - New connections through N ACL rules (N = 10, 100, 1000): a server port with a default-Block In
//   rule set of N rules, where the only rule the traffic matches is the last one by precedence (an
//   Allow at the highest priority number), so a linear scan would read every rule. UDP datagrams of
//   never-seen tuples from a client port, each classified and tracked in the server port's zone.
// - Established flows with 10 and 1000 rules, and without ACLs: datagrams of 4096 flows whose
//   connections exist: a known connection costs one conntrack lookup, whatever the number of rules.
// - Load balancer new connections: SYNs of never-seen tuples to a VIP with 16 backends, through the
//   router (DNAT chosen by a 5-tuple hash).
import { Switch, type AclRule } from '../src/index.js';
import { ethernet, ipv4, udp, tcp } from '../src/frames.js';
import { measure, record, roundsSpread, quick, type BenchRecord, type Case, type Spread, type Suite } from './harness.js';

const BATCH = 256;
const SLOT = 128;
const A = { mac: '02:00:00:00:00:0a' }, B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };

function rules(n: number): AclRule[] {
  const out: AclRule[] = [];
  for (let i = 0; i < n - 1; i++) {
    out.push({ Action: 'Block', Direction: 'In', Priority: 100 + i, RemoteAddresses: `172.${16 + (i >> 8)}.${i & 255}.0/24`, LocalPorts: `${1000 + i}`, Protocols: '17' });
  }
  out.push({ Id: 'allow-all', Action: 'Allow', Direction: 'In', Priority: 65000 });
  return out;
}

// Frames laid out per batch, descriptors once: the timed loop is two copies and one call per batch.
function batches(frames: Uint8Array[], port: number) {
  const n = frames.length - (frames.length % BATCH);
  const buf = new Uint8Array(n * SLOT);
  frames.slice(0, n).forEach((f, i) => buf.set(f, i * SLOT));
  const descs = new Uint8Array(BATCH * 8);
  const dd = new DataView(descs.buffer);
  for (let i = 0; i < BATCH; i++) { dd.setUint32(i * 8, i * SLOT, true); dd.setUint16(i * 8 + 4, frames[0].length, true); dd.setUint16(i * 8 + 6, port, true); }
  return { count: n / BATCH, chunk: (b: number) => buf.subarray(b * BATCH * SLOT, (b + 1) * BATCH * SLOT), descs };
}

function lan(withRules: number) {
  const sw = new Switch({ build: 'release', maxPorts: 4, macEntries: 1024, batch: BATCH, rxBytes: BATCH * SLOT, connections: 1 << 20, clock: () => 1 });
  const a = sw.addPort({ network: 1 });
  const b = sw.addPort({ network: 1 });
  sw.inject([[b.id, ethernet({ src: B.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: B.ip, dst: '10.0.0.255', payload: udp({ srcPort: 1, dstPort: 1 }) }) })]]);
  sw.inject([[a.id, ethernet({ src: A.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.255', payload: udp({ srcPort: 1, dstPort: 1 }) }) })]]);
  if (withRules) sw.acls.setPortAcl(b.id, { rules: rules(withRules), defaultIn: 'Block' });
  return { sw, a, b };
}

const flowFrames = (n: number) => Array.from({ length: n }, (_, i) =>
  ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: B.ip, payload: udp({ srcPort: 1024 + (i % 60000), dstPort: 5000 }) }) }));

// Runs all batches once per round, best of `rounds` (the table flushed before each): connections/s,
// and the spread over the rounds. One untimed round warms up first (the table's memory, first runs).
function newConnections(sw: Switch, frames: ReturnType<typeof batches>, rounds: number, expectOut: boolean): { perSec: number; spread: Spread } {
  const x = sw.dp.exports;
  const rxd = new Uint8Array(sw.dp.rxDescriptors.buffer, sw.dp.rxDescriptors.byteOffset, BATCH * 8);
  const times: number[] = [];
  for (let r = -1; r < rounds; r++) {
    x.ct_flush(0x10000);
    let out = 0;
    const t0 = performance.now();
    for (let b = 0; b < frames.count; b++) {
      sw.dp.rxBuffer.set(frames.chunk(b));
      rxd.set(frames.descs);
      out += x.process(BATCH, 2 + r);
    }
    if (r >= 0) times.push(performance.now() - t0);
    if (expectOut && out !== frames.count * BATCH) throw new Error(`expected ${frames.count * BATCH} frames out, got ${out}`);
  }
  return { perSec: (frames.count * BATCH) / (Math.min(...times) / 1000), spread: roundsSpread(frames.count * BATCH, times) };
}

function aclNewCase(k: number): BenchRecord {
  const n = quick ? 1 << 16 : 1 << 18;
  const frames = batches(flowFrames(n), 0);
  const { sw } = lan(k);
  const { perSec, spread } = newConnections(sw, frames, quick ? 3 : 4, true);
  if (sw.acls.hits()['allow-all'] < n) throw new Error('the allow rule did not decide every connection');
  logRounds(`acl new connections, ${k} rules`, perSec, spread);
  return record(`acl-new-connections-${k}`, 'Mconn/s', perSec / 1e6, k, 'rules', spread, { connsPerSec: Math.round(perSec) });
}

// Established: 4096 flows, their connections in place, with 10 and 1000 rules and with no ACLs at all.
// (The flows are few enough for the connection table to stay in cache, so this shows the work per
// packet, not memory latency.)
function aclEstablishedCase(k: number): BenchRecord {
  const frames = batches(flowFrames(4096), 0);
  const { sw } = lan(k);
  const x = sw.dp.exports;
  const rxd = new Uint8Array(sw.dp.rxDescriptors.buffer, sw.dp.rxDescriptors.byteOffset, BATCH * 8);
  const pass = (b: number) => { sw.dp.rxBuffer.set(frames.chunk(b)); rxd.set(frames.descs); return x.process(BATCH, 3); };
  for (let b = 0; b < frames.count; b++) pass(b);
  let b = 0;
  const m = measure(`established flows, ${k ? `${k} ACL rules` : 'no ACLs'}`, BATCH, () => {
    if (pass(b) !== BATCH) throw new Error('established flow not forwarded');
    b = b + 1 === frames.count ? 0 : b + 1;
  });
  return record(k ? `acl-established-${k}-rules` : 'established-no-acl', 'Mpps', m.mpps, k, 'rules', m.spread, { flows: 4096 });
}

function lbCase(): BenchRecord {
  const sw = new Switch({ build: 'release', maxPorts: 4, batch: BATCH, rxBytes: BATCH * SLOT, connections: 1 << 20, clock: () => 1 });
  sw.addPort({ network: 1 });
  const up = sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/16' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  const backends = Array.from({ length: 16 }, (_, i) => `10.0.1.${i + 1}`);
  backends.forEach((ip, i) => rt.setNeighbor({ address: ip, mac: `02:00:00:00:01:${(i + 1).toString(16).padStart(2, '0')}`, interface: 0 }));
  rt.setNeighbor({ address: '192.168.1.254', mac: '02:00:00:00:00:fe', interface: 1 });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.addLoadBalancer({ frontendVips: ['192.168.1.80'], portMappings: [{ protocol: 'tcp', externalPort: 80, internalPort: 8080 }], backends });
  const n = quick ? 1 << 16 : 1 << 18;
  const frames = batches(Array.from({ length: n }, (_, i) => ethernet({ src: '02:00:00:00:00:fe', dst: '02:6e:70:00:00:01',
    payload: ipv4({ src: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: '192.168.1.80', payload: tcp({ srcPort: 1024 + (i % 60000), dstPort: 80, flags: 'S' }) }) })), up.id);
  const { perSec, spread } = newConnections(sw, frames, quick ? 3 : 4, true);
  logRounds('load balancer new connections, 16 backends', perSec, spread);
  return record('lb-new-connections', 'Mconn/s', perSec / 1e6, 16, 'backends', spread, { connsPerSec: Math.round(perSec) });
}

export const policySuite: Suite = {
  title: 'Policy: ACL classification, established flows with ACLs, load balancer',
  cases: () => [...[10, 100, 1000].map((k): Case => () => aclNewCase(k)), ...[0, 10, 1000].map((k): Case => () => aclEstablishedCase(k)), lbCase],
};

function logRounds(name: string, perSec: number, s: Spread): void {
  console.log(`  ${name.padEnd(44)} ${(perSec / 1e6).toFixed(2).padStart(7)} M conn/s  ±${s.rme.toFixed(1)}%  (best of ${s.samples} rounds, ${s.min.toFixed(2)}–${s.max.toFixed(2)})`);
}
