// Malformed and random input through the router: thousands of mutated and random frames addressed to
// the gateway MACs, in both directions of live NAT connections, must never trap (the debug build has
// its assertions on); the switch must count every frame it received and name every drop, and must
// still forward correctly afterwards.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, udp, tcp, icmp, icmpv6, arp, parseIPv6 as ipv6Bytes } from '../src/frames.js';

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

const GW0 = '02:6e:70:00:00:00', GW1 = '02:6e:70:00:00:01';
const A = '02:00:00:00:00:0a', R = '02:00:00:00:00:fe';

function host(hashSeed?: bigint) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now, connections: 512, hashSeed });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', address6: 'fd01::1/64', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.addRoute({ destination: '::/0', interface: 1, nextHop: 'fd01::fe' });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'udp', externalPort: 53, internalAddress: '10.0.0.2', internalPort: 53 });
  rt.setNeighbor({ address: '10.0.0.2', mac: A, interface: 0 });
  rt.setNeighbor({ address: '192.168.1.254', mac: R, interface: 1 });
  return { sw, tick: () => (now += 7) };
}

function seeds(): Uint8Array[] {
  const p = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  return [
    ethernet({ src: A, dst: GW0, payload: ipv4({ src: '10.0.0.2', dst: '8.8.8.8', payload: udp({ srcPort: 4000, dstPort: 53, payload: p }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv4({ src: '10.0.0.2', dst: '1.1.1.1', payload: tcp({ srcPort: 4001, dstPort: 443, flags: 'S' }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv4({ src: '10.0.0.2', dst: '1.1.1.1', payload: icmp({ type: 8, id: 7, payload: p }) }) }),
    ethernet({ src: R, dst: GW1, payload: ipv4({ src: '8.8.8.8', dst: '192.168.1.1', payload: udp({ srcPort: 53, dstPort: 4000, payload: p }) }) }),
    ethernet({ src: R, dst: GW1, payload: ipv4({ src: '8.8.8.8', dst: '192.168.1.1', payload: icmp({ type: 3, code: 3, payload: new Uint8Array(40) }) }) }),
    ethernet({ src: R, dst: GW1, payload: ipv4({ src: '9.9.9.9', dst: '192.168.1.1', payload: udp({ srcPort: 999, dstPort: 53, payload: p }) }) }),
    ethernet({ src: A, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.1' }) }),
    ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: 'fd00::1', payload: icmpv6({ type: 128, id: 1, payload: p }) }) }),
    ethernet({ src: A, dst: '33:33:ff:00:00:01', payload: ipv6({ src: 'fd00::2', dst: 'ff02::1:ff00:1', hopLimit: 255, payload: icmpv6({ type: 135, rest: new Uint8Array(4), payload: new Uint8Array(24) }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: '2001:db8::1', payload: udp({ srcPort: 1, dstPort: 2, payload: p }) }) }),
  ];
}

test('mutated router traffic never traps, every frame is counted, every drop named', () => {
  const { sw, tick } = host();
  const r = rng(99);
  const base = seeds();
  let frames = 0;
  for (let round = 0; round < 3000; round++) {
    const seed = base[r() % base.length];
    let f = seed.slice();
    const kind = r() % 4;
    if (kind === 0) f = f.subarray(0, 14 + (r() % Math.max(1, f.length - 14)));             // truncate past Ethernet
    else if (kind === 1) for (let k = 0; k < 1 + (r() % 4); k++) f[14 + (r() % (f.length - 14))] = r() & 255; // flip bytes
    else if (kind === 2) { const g = new Uint8Array(f.length + (r() % 40)); g.set(f); for (let k = f.length; k < g.length; k++) g[k] = r() & 255; f = g; } // trailing junk
    const port = seed[6] === 0x02 && seed[11] === 0xfe ? 1 : 0;
    sw.send(port, f);
    frames++;
    if (round % 32 === 31) sw.flush(tick());
  }
  sw.flush(tick());
  const c = sw.counters();
  assert.is(c.stats.rx_packets, frames);
  // Nothing traps, and the dataplane still works: a clean masqueraded datagram goes out.
  let out = 0;
  sw.onFrame(() => out++);
  sw.inject([[0, base[0]]], tick());
  assert.ok(out >= 1, 'still forwarding after the fuzzing');
  for (const [name, n] of Object.entries(c.drops)) assert.ok(sw.reasons.includes(name) && n > 0, name);
});

test('random bytes after a valid Ethernet header to the gateway never trap', () => {
  const { sw, tick } = host();
  const r = rng(7);
  for (let round = 0; round < 2000; round++) {
    const len = 14 + (r() % 120);
    const f = new Uint8Array(len);
    for (let i = 14; i < len; i++) f[i] = r() & 255;
    f.set([0x02, 0x6e, 0x70, 0, 0, r() & 1], 0);
    f.set([0x02, 0, 0, 0, 0, 0x0a], 6);
    const types = [0x0800, 0x86dd, 0x0806, 0x8100];
    const t = types[r() % types.length];
    f[12] = t >> 8; f[13] = t & 255;
    if (t === 0x0800) f[14] = 0x45;
    if (t === 0x86dd) f[14] = 0x60;
    sw.send(r() & 1, f);
    if (round % 50 === 49) sw.flush(tick());
  }
  sw.flush(tick());
  assert.is(sw.counters().stats.rx_packets, 2000);
});

test('VXLAN on the underlay: mutated and random outer, VXLAN and inner headers never trap, every frame is counted', () => {
  const { sw, tick } = host();
  sw.addPort({ id: 3, network: 9 });
  sw.overlay.setUnderlay({ port: 3, address: '10.99.0.1' });
  sw.overlay.setVni(1, 5001);
  sw.overlay.addRemote({ network: 1, mac: '02:00:00:00:00:2b', addresses: ['10.0.0.9'], providerAddress: '10.99.0.2' });
  const r = rng(11);
  const inner = [
    ethernet({ src: '02:00:00:00:00:2b', dst: A, payload: ipv4({ src: '10.0.0.9', dst: '10.0.0.2', payload: udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(9) }) }) }),
    ethernet({ src: '02:00:00:00:00:2b', dst: GW0, payload: ipv4({ src: '10.0.0.9', dst: '8.8.8.8', payload: tcp({ srcPort: 3, dstPort: 443, flags: 'S' }) }) }),
    ethernet({ src: '02:00:00:00:00:2b', dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: '02:00:00:00:00:2b', senderIp: '10.0.0.9', targetIp: '10.0.0.1' }) }),
    ethernet({ src: '02:00:00:00:00:2b', dst: GW0, payload: ipv6({ src: 'fd00::9', dst: 'fd00::1', payload: icmpv6({ type: 128, id: 1 }) }) }),
  ];
  const wrap = (i: Uint8Array) => {
    const b = new Uint8Array(8 + i.length);
    b[0] = 8; b[5] = 0x13; b[6] = 0x89;
    b.set(i, 8);
    return ethernet({ src: '00:00:00:00:00:00', dst: '00:00:00:00:00:00', payload: ipv4({ src: '10.99.0.2', dst: '10.99.0.1', payload: udp({ srcPort: 50000, dstPort: 4789, payload: b, zeroChecksum: true }) }) });
  };
  let n = 0;
  for (let round = 0; round < 3000; round++) {
    let f = wrap(inner[r() % inner.length]);
    const k = r() % 4;
    if (k === 0) for (let j = 0; j < 1 + (r() % 4); j++) f[r() % f.length] ^= 1 << (r() % 8);
    else if (k === 1) f = f.subarray(0, r() % f.length);
    else if (k === 2) for (let j = 14 + (r() % 40); j < f.length; j++) f[j] = r() & 255;
    if (f.length === 0) continue;
    sw.send(3, f);
    n++;
    if (round % 50 === 49) sw.flush(tick());
  }
  sw.flush(tick());
  const c = sw.counters();
  assert.is(c.stats.rx_packets, n);
  assert.ok(c.stats.vxlan_decap > 0 && (c.drops.underlay_malformed ?? 0) > 0 && (c.drops.vxlan_bad_header ?? 0) + (c.drops.vxlan_unknown_vni ?? 0) > 0, JSON.stringify(c.drops));
  // Still decapsulates afterwards.
  const before = sw.counters().stats.vxlan_decap;
  sw.inject([[3, wrap(inner[0])]], tick());
  assert.is(sw.counters().stats.vxlan_decap, before + 1);
});

test('the same fuzzing with ACLs on both ports and a load balancer never traps', () => {
  const { sw, tick } = host();
  sw.acls.setPortAcl(0, { rules: [
    { Action: 'Allow', Direction: 'Out', Priority: 100, Protocols: '6,17', RemotePorts: '1-1024' },
    { Action: 'Block', Direction: 'In', Priority: 50, RemoteAddresses: '9.9.9.0/24, fd01::/16' },
  ], defaultIn: 'Allow', defaultOut: 'Block' });
  sw.acls.setPortAcl(1, { rules: [{ Action: 'Allow', Direction: 'In', Priority: 1, LocalPorts: '53' }], defaultIn: 'Block' });
  sw.router.addLoadBalancer({ frontendVips: ['192.168.1.80'], portMappings: [{ protocol: 'tcp', externalPort: 80 }], backends: ['10.0.0.2'] });
  const r = rng(1234);
  const base = seeds();
  for (let round = 0; round < 3000; round++) {
    const seed = base[r() % base.length];
    const f = seed.slice();
    for (let k = 0; k < 1 + (r() % 3); k++) f[14 + (r() % (f.length - 14))] = r() & 255;
    sw.send(r() & 1, r() % 3 === 0 ? f.subarray(0, 14 + (r() % (f.length - 14))) : f);
    if (round % 40 === 39) sw.flush(tick());
  }
  sw.flush(tick());
  assert.is(sw.counters().stats.rx_packets, 3000);
  // A trace of a mutated frame works too, and changes nothing.
  const before = sw.counters().stats.rx_packets;
  const t = sw.trace(0, base[1]);
  assert.ok(t.steps.length >= 3);
  assert.is(sw.counters().stats.rx_packets, before);
});

// Every frame is forwarded, answered, or counted: none vanishes. Frames one at a time, so that each
// one's outcome is seen alone: at least one frame out, or a drop, or held as a fragment awaiting its
// first (test/fuzz-invariant.test.ts checks that nothing is counted twice). The
// corpus adds what the router takes without forwarding: neighbour discovery of every kind, ARP replies
// and requests for others, multicast, ICMPv6 errors, routing headers, host replies.
function routerSeeds(): Uint8Array[] {
  const p = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const target = (ip: string, opt?: number) => {
    const b = new Uint8Array(opt ? 24 : 16);
    b.set(ipv6Bytes(ip));
    if (opt) { b[16] = opt; b[17] = 1; b.set([2, 0, 0, 0, 0, 0x0a], 18); }
    return b;
  };
  const nd = (type: number, dst: string, dmac: string, body: Uint8Array, hop = 255, rest = new Uint8Array(4)) =>
    ethernet({ src: A, dst: dmac, payload: ipv6({ src: 'fd00::2', dst, hopLimit: hop, payload: icmpv6({ type, rest, payload: body }) }) });
  const rh0 = new Uint8Array(24); rh0[1] = 2; rh0[3] = 1; rh0.set(ipv6Bytes('fd01::9'), 8);
  const quote = ipv6({ src: 'fd00::2', dst: '2001:db8::1', payload: udp({ srcPort: 1, dstPort: 2, payload: p }) }).bytes;
  return [
    nd(135, 'fd00::1', GW0, target('fd00::1', 1)),
    nd(135, 'ff02::1:ff00:1', '33:33:ff:00:00:01', target('fd00::1', 1)),
    nd(135, 'ff02::1:ff00:77', '33:33:ff:00:00:77', target('fd00::77', 1)),
    nd(135, 'fd00::1', GW0, target('fd00::1', 1), 64),
    nd(136, 'fd00::1', GW0, target('fd00::2', 2), 255, new Uint8Array([0x60, 0, 0, 0])),
    nd(136, 'ff02::1', '33:33:00:00:00:01', target('fd00::2', 2), 255, new Uint8Array([0x20, 0, 0, 0])),
    nd(133, 'ff02::2', '33:33:00:00:00:02', new Uint8Array(0)),
    nd(134, 'fd00::1', GW0, new Uint8Array(8), 255, new Uint8Array([64, 0, 0, 0])),
    nd(137, 'fd00::1', GW0, new Uint8Array(32)),
    ethernet({ src: A, dst: '33:33:00:00:00:16', payload: ipv6({ src: 'fd00::2', dst: 'ff02::16', hopLimit: 1, payload: icmpv6({ type: 143, payload: new Uint8Array(20) }) }) }),
    ethernet({ src: A, dst: '33:33:00:00:00:01', payload: ipv6({ src: 'fd00::2', dst: 'ff02::1', payload: udp({ srcPort: 1, dstPort: 2, payload: p }) }) }),
    ethernet({ src: A, dst: GW0, payload: arp({ op: 'reply', senderMac: A, senderIp: '10.0.0.2', targetMac: GW0, targetIp: '10.0.0.1' }) }),
    ethernet({ src: A, dst: GW0, payload: arp({ op: 'request', senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.9' }) }),
    ethernet({ src: A, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.9' }) }),
    ethernet({ src: A, dst: '01:00:5e:00:00:fb', payload: ipv4({ src: '10.0.0.2', dst: '224.0.0.251', payload: udp({ srcPort: 5353, dstPort: 5353, payload: p }) }) }),
    ethernet({ src: R, dst: GW1, payload: ipv6({ src: 'fd01::fe', dst: 'fd00::2', payload: icmpv6({ type: 1, code: 4, payload: quote }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: 'fd00::1', extensions: [{ nextHeaderType: 43, bytes: rh0 }], payload: icmpv6({ type: 128, id: 1, payload: p }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: 'fd00::1', payload: tcp({ srcPort: 1, dstPort: 22, flags: 'S' }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.1', payload: tcp({ srcPort: 1, dstPort: 22, flags: 'A', ack: 5 }) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.1', protocol: 47, payload: new Uint8Array(8) }) }),
    ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: '2001:db8::1', hopLimit: 1, payload: tcp({ srcPort: 1, dstPort: 2, flags: 'A' }) }) }),
  ];
}

for (const withPeer of [false, true]) {
  test(`no frame vanishes: each is forwarded, answered or counted once (${withPeer ? 'a second port in network 1: multicasts are flooded' : 'no other port: nothing to flood to'})`, () => {
    const { sw, tick } = host();
    if (withPeer) sw.addPort({ network: 1 });
    const r = rng(2024);
    const base = [...routerSeeds(), ...seeds()];
    let out = 0;
    sw.onFrame(() => out++);
    let vanished = 0, rounds = 0;
    const examples: string[] = [];
    for (let round = 0; round < 4000; round++) {
      const seed = base[round < base.length ? round : r() % base.length];
      let f = seed.slice();
      if (round >= base.length) {
        const kind = r() % 3;
        if (kind === 0) for (let k = 0; k < 1 + (r() % 3); k++) f[14 + (r() % (f.length - 14))] = r() & 255;
        else if (kind === 1) f = f.subarray(0, 14 + (r() % Math.max(1, f.length - 14)));
      }
      const port = seed[6] === 0x02 && seed[11] === 0xfe ? 1 : 0;
      const before = sw.counters();
      out = 0;
      sw.inject([[port, f]], tick());
      const after = sw.counters();
      const dropped = after.stats.dropped - before.stats.dropped;
      const held = (after.stats.frag_held ?? 0) - (before.stats.frag_held ?? 0);
      rounds++;
      if (out === 0 && dropped === 0 && held === 0) {
        vanished++;
        if (examples.length < 3) examples.push(Buffer.from(f).toString('hex'));
      }
    }
    assert.is(vanished, 0, `${vanished} of ${rounds} frames vanished, e.g. ${examples.join(' ')}`);
    // The seeds alone: the router's verdicts have names.
    const names = Object.keys(sw.counters().drops);
    for (const n of ['nd_advertisement', 'nd_bad_hop_limit', 'nd_router_message', 'local_port_unmapped', 'ipv6_source_route']) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  });
}


// The batch runs in three passes when a table holds more than the cache does (pipeline.ts), else
// each packet runs to completion; the tests' tables are small, so most run the second. Both must
// forward the same frames and count the same drops: the same mutated traffic, with L2 frames and
// broadcasts among it, through a switch forced into three passes and one left to choose.
test('three passes and run to completion forward the same frames and count the same drops', () => {
  // One hash seed for both: where a translation's port is taken, the free one is searched from a
  // keyed hash of the tuple (nodes/nat.ts), so two seeds may pick two ports.
  const seed = BigInt(Date.now()) * 0x9e3779b1n % (1n << 64n);
  const run = (threePasses: boolean) => {
    const { sw, tick } = host(seed);
    if (threePasses) sw.dp.exports.batch_set_touch_above(0);
    const out: string[] = [];
    sw.onFrame((f, port) => out.push(`${port} ${Buffer.from(f).toString('hex')}`));
    const r = rng(5);
    const base = [...seeds(),
      ethernet({ src: A, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 1, senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.1' }) }),
      ethernet({ src: A, dst: '02:00:00:00:00:0b', payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.3', payload: udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(8) }) }) })];
    for (let round = 0; round < 3000; round++) {
      const seed = base[r() % base.length];
      const f = seed.slice();
      if (r() % 3 === 0) for (let k = 0; k < 1 + (r() % 3); k++) f[14 + (r() % (f.length - 14))] = r() & 255;
      sw.send(seed[6] === 0x02 && seed[11] === 0xfe ? 1 : 0, f);
      if (round % 64 === 63) sw.flush(tick());
    }
    sw.flush(tick());
    return { out, drops: sw.counters().drops, mode: sw.dp.exports.batch_touch_above() };
  };
  const three = run(true), chosen = run(false);
  assert.is(three.mode, 0);
  assert.is(chosen.mode, 1 << 20);
  assert.ok(chosen.out.length > 1000, `${chosen.out.length} frames out`);
  assert.equal(three.out, chosen.out, `the same frames (hash seed ${seed})`);
  assert.equal(three.drops, chosen.drops, `the same drops (hash seed ${seed})`);
});

test.run();
