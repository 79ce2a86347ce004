// The tables' secret hash key (DataplaneOptions.hashSeed, docs/ABI.md set_hash_seed) against hash
// flooding. The hash functions are public (assembly/tables/), so with a known seed anyone can compute
// keys that share a home slot: a guest picks its source MACs, a remote host its source ports. Each test
// computes such keys with its own model of the hash (BigInt, written from the formulas, not calling the
// module), shows that with seed 0 they really pile into one probe run (so the model is the module's
// hash), then that a switch keyed with another seed scatters the same keys: it finds every key where
// the model with that seed puts it, and no long run forms. The keys are read where the tables keep
// them (mac_table, ct_index), through the public ABI.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Dataplane, Switch } from '../src/dataplane.js';
import { ethernet, ipv4, tcp, arp } from '../src/frames.js';

const M64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;
const mul = (a: bigint, b: bigint) => (a * b) & M64;
function mix64(h: bigint): bigint {
  h ^= h >> 33n; h = mul(h, 0xff51afd7ed558ccdn);
  h ^= h >> 33n; h = mul(h, 0xc4ceb9fe1a85ec53n);
  return h ^ (h >> 33n);
}
// tables/mac.ts hash: the key (the MAC's bytes little-endian in the low 48 bits, the VLAN above),
// the network multiplied in, the seed xored, then the finalizer.
function macHash(seed: bigint, mac: number[], vlan: number, network: number): number {
  let k = BigInt(vlan) << 48n;
  mac.forEach((b, i) => { k |= BigInt(b) << BigInt(8 * i); });
  return Number(mix64(k ^ mul(BigInt(network), GOLDEN) ^ seed) & 0xffffffffn);
}
// tables/flow.ts hashWire: the 8 bytes of addresses and the 4 of ports as the packet carries them,
// loaded little-endian; 0 is kept for an empty slot.
const le = (bytes: number[]) => bytes.reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);
const ipBytes = (a: string) => a.split('.').map(Number);
function flowHash(seed: bigint, zone: number, proto: number, src: string, dst: string, sport: number, dport: number): number {
  const addrs = le([...ipBytes(src), ...ipBytes(dst)]);
  const ports = le([sport >> 8, sport & 255, dport >> 8, dport & 255]);
  const b = (ports << 32n) | (BigInt(proto) << 16n) | BigInt(zone);
  const r = Number(mix64(addrs ^ seed ^ mul(b, GOLDEN)) & 0xffffffffn);
  return r === 0 ? 1 : r;
}
const randomSeed = () => { const r = crypto.getRandomValues(new Uint32Array(2)); return (BigInt(r[1]) << 32n) | BigInt(r[0]); };

// ---- the MAC table: a guest's source MACs ---------------------------------------------------------

// 256 entries: 512 slots in 128 lines of 4 (tables/mac.ts).
const MAC_ENTRIES = 256, MAC_SLOTS = 512, LINE = 4;
// 40 locally administered MACs whose home line is line 0 under seed 0.
function collidingMacs(): number[][] {
  const out: number[][] = [];
  for (let i = 1; out.length < 40; i++) {
    const mac = [0x02, 0x00, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255];
    if (((macHash(0n, mac, 0, 0) & (MAC_SLOTS - 1)) & ~(LINE - 1)) === 0) out.push(mac);
  }
  return out;
}
const hex = (m: number[]) => m.map((b) => b.toString(16).padStart(2, '0')).join(':');

// Where each MAC sits in the table: its slot number.
function macSlots(sw: Switch, macs: number[][]): number[] {
  const dp = sw.dp;
  dp.views();
  const base = dp.exports.mac_table(), slots = dp.exports.mac_table_slots();
  assert.is(slots, MAC_SLOTS);
  const at = new Map<string, number>();
  for (let i = 0; i < slots; i++) {
    const s = base + i * 16;
    if (dp.dv.getUint16(s + 6, true) & 0x8000) at.set(hex([...dp.u8.subarray(s, s + 6)]), i);
  }
  return macs.map((m) => { const i = at.get(hex(m)); assert.ok(i !== undefined, `${hex(m)} is in the table`); return i!; });
}

function learnAll(sw: Switch, macs: number[][]): void {
  sw.addPort();
  // As a guest would: frames from each source MAC.
  sw.inject(macs.map((m) => [0, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: hex(m), payload: arp({ op: 'request', senderMac: hex(m), senderIp: '10.0.0.2', targetIp: '10.0.0.1' }) })] as [number, Uint8Array]), 1000);
  assert.is(sw.macTable().length, macs.length, 'every source MAC was learned');
}

test('MAC table, seed 0: source MACs computed from the public hash pile into one probe run', () => {
  const macs = collidingMacs();
  const sw = new Switch({ maxPorts: 2, macEntries: MAC_ENTRIES, hashSeed: 0n });
  learnAll(sw, macs);
  const slots = macSlots(sw, macs);
  // All 40 share line 0: they fill lines 0..9 one after another, and the last one's lookup walks them all.
  assert.is(Math.max(...slots), 39, 'the run reaches slot 39');
  assert.is(new Set(slots.map((s) => s >> 2)).size, 10, 'ten full lines in a row');
});

test('MAC table, a secret seed: the same MACs land where the keyed hash says, scattered', () => {
  const macs = collidingMacs();
  const seed = randomSeed();
  const sw = new Switch({ maxPorts: 2, macEntries: MAC_ENTRIES, hashSeed: seed });
  learnAll(sw, macs);
  const slots = macSlots(sw, macs);
  const homeLines = macs.map((m) => (macHash(seed, m, 0, 0) & (MAC_SLOTS - 1)) >> 2);
  const inHome = slots.filter((s, i) => s >> 2 === homeLines[i]).length;
  // 40 keys in 128 lines of 4: a line overflows only when five keys share it.
  assert.ok(inHome >= 38, `${inHome} of 40 in the home line the seeded model gives (seed ${seed})`);
  assert.ok(new Set(slots.map((s) => s >> 2)).size >= 25, 'spread over many lines');
});

// ---- conntrack: a remote host's source ports --------------------------------------------------------

// A NAT host with a port mapping, tcp 8080 -> 10.0.0.3:80, reached from outside at 192.168.1.1.
const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };
const CONNS = 64, INDEX_SLOTS = 256;

function natHost(hashSeed: bigint) {
  const sw = new Switch({ maxPorts: 4, macEntries: 256, connections: CONNS, hashSeed, clock: () => 1000 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: '10.0.0.3', internalPort: 80 });
  rt.setNeighbor({ address: '10.0.0.3', mac: '02:00:00:00:00:0b', interface: 0 });
  rt.setNeighbor({ address: X.ip, mac: X.mac, interface: 1 });
  return sw;
}
// 30 source ports whose connection key has home slot 0 under seed 0.
function collidingPorts(): number[] {
  const out: number[] = [];
  for (let p = 1024; out.length < 30 && p < 65536; p++) if ((flowHash(0n, 0, 6, X.ip, GW1.ip, p, 8080) & (INDEX_SLOTS - 1)) === 0) out.push(p);
  assert.is(out.length, 30);
  return out;
}
function connect(sw: Switch, ports: number[]): void {
  sw.inject(ports.map((p) => [1, ethernet({ src: X.mac, dst: GW1.mac, payload: ipv4({ src: X.ip, dst: GW1.ip, payload: tcp({ srcPort: p, dstPort: 8080, seq: 1000, flags: 'S' }) }) })] as [number, Uint8Array]), 1000);
  assert.is(sw.dp.exports.ct_count(), ports.length, 'one connection per SYN');
}
// Where each connection's original key sits in the index: (slot, hash), found by the hash the model gives.
function indexSlots(sw: Switch, hashes: number[]): number[] {
  const dp = sw.dp;
  dp.views();
  const base = dp.exports.ct_index(), slots = dp.exports.ct_index_slots();
  assert.is(slots, INDEX_SLOTS);
  const at = new Map<number, number>();
  for (let i = 0; i < slots; i++) {
    const h = dp.dv.getUint32(base + i * 8, true);
    if (h !== 0) at.set(h, i);
  }
  return hashes.map((h) => { const i = at.get(h); assert.ok(i !== undefined, `a key with hash ${h.toString(16)} is in the index`); return i!; });
}
const displacement = (slot: number, hash: number) => (slot - (hash & (INDEX_SLOTS - 1)) + INDEX_SLOTS) & (INDEX_SLOTS - 1);

test('conntrack, seed 0: source ports computed from the public hash make one long probe run', () => {
  const ports = collidingPorts();
  const sw = natHost(0n);
  connect(sw, ports);
  const hashes = ports.map((p) => flowHash(0n, 0, 6, X.ip, GW1.ip, p, 8080));
  const slots = indexSlots(sw, hashes);
  const worst = Math.max(...slots.map((s, i) => displacement(s, hashes[i])));
  assert.ok(worst >= 29, `the last key's lookup walks ${worst} slots past its home`);
});

test('conntrack, a secret seed: the same connections are keyed where the seeded model says, and no run forms', () => {
  const ports = collidingPorts();
  const seed = randomSeed();
  const sw = natHost(seed);
  connect(sw, ports);
  const hashes = ports.map((p) => flowHash(seed, 0, 6, X.ip, GW1.ip, p, 8080));
  const slots = indexSlots(sw, hashes);
  const worst = Math.max(...slots.map((s, i) => displacement(s, hashes[i])));
  // 60 keys (both directions) in 256 slots.
  assert.ok(worst < 10, `the longest walk is ${worst} slots (seed ${seed})`);
  assert.ok(new Set(hashes.map((h) => h & (INDEX_SLOTS - 1))).size >= 20, 'the keys have many home slots');
});

// ---- the seed itself ----------------------------------------------------------------------------------

test('every switch gets its own random seed unless given one', () => {
  const macs = collidingMacs();
  const a = new Switch({ maxPorts: 2, macEntries: MAC_ENTRIES });
  const b = new Switch({ maxPorts: 2, macEntries: MAC_ENTRIES });
  learnAll(a, macs);
  learnAll(b, macs);
  const sa = macSlots(a, macs), sb = macSlots(b, macs);
  assert.ok(sa.some((s, i) => s !== sb[i]), 'two switches place the same 40 MACs differently');
  assert.ok(Math.max(...sa) !== 39 || new Set(sa.map((s) => s >> 2)).size !== 10, 'and not as seed 0 does');
});

test('hashSeed out of range or not a bigint is refused, naming the field', () => {
  for (const bad of [-1n, 1n << 64n, 5, '0x10', null]) {
    assert.throws(() => new Dataplane({ hashSeed: bad as unknown as bigint }),
      (e: Error & { field?: string }) => e.field === 'hashSeed' && /bigint from 0 to 2\^64-1/.test(e.message), `refused: ${String(bad)}`);
  }
  new Dataplane({ hashSeed: (1n << 64n) - 1n, connections: 16 });
});

test('set_hash_seed works only before create: the tables never mix two seeds', () => {
  const dp = new Dataplane({ connections: 16, hashSeed: 0n });
  assert.is(dp.exports.set_hash_seed(1, 2), -1, 'refused once created (already_created)');
});

test('the load balancer\'s backend choice takes no seed: two hosts with different seeds agree', () => {
  // A connection balanced over 8 backends on two switches keyed differently goes to the same backend.
  const pick = (seed: bigint, sport: number) => {
    const sw = natHost(seed);
    const out: Array<[number, Uint8Array]> = [];
    sw.onFrame((f, p) => out.push([p, f.slice()]));
    sw.router.addLoadBalancer({ frontendVips: ['192.168.1.50'], portMappings: [{ protocol: 'tcp', externalPort: 80 }],
      backends: [1, 2, 3, 4, 5, 6, 7, 8].map((i) => `10.0.0.${10 + i}`) });
    for (let i = 1; i <= 8; i++) sw.router.setNeighbor({ address: `10.0.0.${10 + i}`, mac: `02:00:00:00:01:0${i}`, interface: 0 });
    sw.inject([[1, ethernet({ src: X.mac, dst: GW1.mac, payload: ipv4({ src: X.ip, dst: '192.168.1.50', payload: tcp({ srcPort: sport, dstPort: 80, seq: 1, flags: 'S' }) }) })]], 1000);
    assert.is(out.length, 1, 'the SYN is forwarded to a backend');
    return [...out[0][1].subarray(14 + 16, 14 + 20)].join('.');
  };
  const seen = new Set<string>();
  for (const sport of [40000, 40001, 40002, 40003, 40004, 40005]) {
    const a = pick(randomSeed(), sport), b = pick(randomSeed(), sport);
    assert.is(a, b, `source port ${sport}: the same backend on both`);
    seen.add(a);
  }
  assert.ok(seen.size >= 2, 'and the choice does depend on the connection');
});

test.run();
