// The VXLAN overlay (RFC 7348) in the dataplane and its SDK, sw.overlay: encapsulation byte for byte,
// decapsulation and every refusal by reason name, ARP / ND for remote endpoints, two switches wired
// through their underlay ports in memory (each switch's underlay frames are the other's input, which is
// what the socket underlay makes of them: docs/ABI.md "VXLAN overlay"), distributed routing.
//
//   host 1 (PA 10.99.0.1)                          host 2 (PA 10.99.0.2)
//   port 0 underlay  <──────── in memory ────────>  port 0 underlay
//   port 1 A 10.0.0.2 02:..:0a  (network 1, VNI 5001)  port 1 B 10.0.0.3 02:..:0b  (network 1, VNI 5001)
//   port 2 C 10.0.0.4 02:..:0c  (network 1)            port 2 D 10.1.0.2 02:..:0d  (network 2, VNI 5002)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, udp, tcp, icmp, icmpv6, arp, rawL4, dissect, verifyChecksums, parseIPv4, parseIPv6, type L4 } from '../src/frames.js';

const PA1 = '10.99.0.1', PA2 = '10.99.0.2', VNI = 5001, VNI2 = 5002;
const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3', ip6: 'fd00::3' };
const C = { mac: '02:00:00:00:00:0c', ip: '10.0.0.4' };
const D = { mac: '02:00:00:00:00:0d', ip: '10.1.0.2' };
const BC = 'ff:ff:ff:ff:ff:ff';
const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

type Out = Array<[number, Uint8Array]>;
function host(pa: string, opts: ConstructorParameters<typeof Switch>[0] = {}) {
  const sw = new Switch({ maxPorts: 8, macEntries: 256, clock: () => 1000, ...opts });
  const out: Out = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 100 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.overlay.setUnderlay({ port: 0, address: pa });
  sw.overlay.setVni(1, VNI);
  return { sw, out, take: (port?: number) => { const r = out.filter(([p]) => port === undefined || p === port); out.length = 0; return r; } };
}

// Two hosts, each with the other's endpoint as a remote.
function pair() {
  const h1 = host(PA1), h2 = host(PA2);
  h1.sw.overlay.addRemote({ network: 1, mac: B.mac, addresses: [B.ip, B.ip6], providerAddress: PA2 });
  h2.sw.overlay.addRemote({ network: 1, mac: A.mac, addresses: [A.ip, A.ip6], providerAddress: PA1 });
  h1.sw.addStaticMac({ mac: A.mac, port: 1, network: 1 });
  h2.sw.addStaticMac({ mac: B.mac, port: 1, network: 1 });
  // Moves underlay frames across until nothing more crosses; returns what reached the local ports.
  const run = () => {
    const got: Array<[1 | 2, number, Uint8Array]> = [];
    for (let round = 0; round < 10; round++) {
      const o1 = h1.take(), o2 = h2.take();
      for (const [p, f] of o1) if (p === 0) h2.sw.send(0, f); else got.push([1, p, f]);
      for (const [p, f] of o2) if (p === 0) h1.sw.send(0, f); else got.push([2, p, f]);
      if (!o1.some(([p]) => p === 0) && !o2.some(([p]) => p === 0)) break;
      h1.sw.flush(); h2.sw.flush();
    }
    return got;
  };
  return { h1, h2, run };
}

const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const frame = (src: { mac: string; ip: string }, dst: { mac: string; ip: string }, l4: L4) => ethernet({ src: src.mac, dst: dst.mac, payload: ipv4({ src: src.ip, dst: dst.ip, payload: l4 }) });

// What the encapsulation must be: outer Ethernet with zero MACs, IPv4 PA -> PA (TTL 64, DF, the id
// the switch chose), UDP from `sport` to 4789 with checksum 0, VXLAN with I and the VNI, the inner frame.
function vxlanFrame(src: string, dst: string, sport: number, vni: number, inner: Uint8Array, id: number, dport = 4789) {
  const vx = new Uint8Array(8 + inner.length);
  vx[0] = 0x08; vx[4] = vni >>> 16; vx[5] = (vni >>> 8) & 255; vx[6] = vni & 255;
  vx.set(inner, 8);
  return ethernet({ src: '00:00:00:00:00:00', dst: '00:00:00:00:00:00', payload: ipv4({ src, dst, ttl: 64, df: true, id, payload: udp({ srcPort: sport, dstPort: dport, payload: vx, zeroChecksum: true }) }) });
}

test('encapsulation is byte-exact: outer IPv4 PA to PA with DF and a valid checksum, UDP 4789 with checksum 0, VXLAN I + VNI', () => {
  const { h1 } = pair();
  const f = frame(A, B, udp({ srcPort: 1000, dstPort: 2000, payload }));
  h1.sw.inject([[1, f]]);
  const out = h1.take();
  assert.is(out.length, 1);
  assert.is(out[0][0], 0, 'to the underlay port only');
  const o = out[0][1];
  const d = dissect(o);
  assert.ok(d.udp!.srcPort >= 49152 && d.udp!.srcPort <= 65535, `source port ${d.udp!.srcPort} in 49152-65535`);
  assert.equal(o, vxlanFrame(PA1, PA2, d.udp!.srcPort, VNI, f, d.ipv4!.id));
  assert.ok(d.ipv4!.checksumOk && d.ipv4!.df && d.ipv4!.ttl === 64);
  assert.is(d.udp!.checksum, 0);
  assert.ok(verifyChecksums(o));
  assert.is(h1.sw.counters().stats.vxlan_encap, 1);
});

test('the outer UDP source port is stable per flow and differs across flows', () => {
  const { h1 } = pair();
  const sport = (sp: number) => {
    h1.sw.inject([[1, frame(A, B, udp({ srcPort: sp, dstPort: 53, payload }))]]);
    return dissect(h1.take()[0][1]).udp!.srcPort;
  };
  const first = sport(40000);
  assert.is(sport(40000), first, 'same flow, same port');
  const others = new Set([40001, 40002, 40003, 40004, 40005, 40006].map(sport));
  others.add(first);
  assert.ok(others.size >= 5, `different flows spread over ports (${[...others]})`);
});

test('decapsulation: the inner frame enters its domain and reaches the destination port byte for byte', () => {
  const { h1, h2, run } = pair();
  // B speaks first so host 2 knows its port.
  h2.sw.inject([[1, frame(B, { mac: BC, ip: '10.0.0.255' }, udp({ srcPort: 9, dstPort: 9, payload }))]]);
  const bcast = run();
  assert.ok(bcast.some(([h, p]) => h === 1 && p === 1) && bcast.some(([h, p]) => h === 1 && p === 2), 'the broadcast is replicated to host 1 and flooded there');
  const f = frame(A, B, udp({ srcPort: 1000, dstPort: 2000, payload }));
  h1.sw.inject([[1, f]]);
  const got = run();
  assert.equal(got, [[2, 1, f]]);
  assert.is(h1.sw.counters().stats.vxlan_decap, 1);
  assert.is(h2.sw.counters().stats.vxlan_decap, 1);
  assert.equal(h2.sw.counters().drops, {});
  assert.is(h2.sw.macTable().find((e) => e.mac === A.mac)!.port, 0xefff, 'a remote is a static entry on the tunnel pseudo-port, never learned');
});

test('ping across two switches, and ARP for a remote endpoint answered locally', () => {
  const { h1, h2, run } = pair();
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: BC, payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: B.ip }) })]]);
  const a = h1.take();
  assert.is(a.length, 1, 'answered, not flooded nor replicated');
  assert.is(a[0][0], 1);
  assert.equal(a[0][1], ethernet({ src: B.mac, dst: A.mac, payload: arp({ op: 'reply', senderMac: B.mac, senderIp: B.ip, targetMac: A.mac, targetIp: A.ip }) }));
  assert.is(h1.sw.counters().stats.vxlan_proxy_replies, 1);
  const req = frame(A, B, icmp({ type: 8, id: 7, seq: 1, payload }));
  h1.sw.inject([[1, req]]);
  assert.equal(run(), [[2, 1, req]]);
  const rep = frame(B, A, icmp({ type: 0, id: 7, seq: 1, payload }));
  h2.sw.inject([[1, rep]]);
  assert.equal(run(), [[1, 1, rep]]);
});

test('a neighbour solicitation for a remote endpoint is answered with its MAC: solicited, override, not a router', () => {
  const { h1 } = pair();
  const sn = 'ff02::1:ff00:3';
  // The builder's id and sequence words are the message's reserved / flags word.
  const ns = new Uint8Array(24);
  ns.set(parseIPv6(B.ip6), 0); ns[16] = 1; ns[17] = 1; ns.set([2, 0, 0, 0, 0, 0x0a], 18);
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: '33:33:ff:00:00:03', payload: ipv6({ src: A.ip6, dst: sn, hopLimit: 255, payload: icmpv6({ type: 135, code: 0, payload: ns }) }) })]]);
  const out = h1.take();
  assert.is(out.length, 1);
  assert.is(out[0][0], 1);
  const na = new Uint8Array(24);
  na.set(parseIPv6(B.ip6), 0); na[16] = 2; na[17] = 1; na.set([2, 0, 0, 0, 0, 0x0b], 18);
  assert.equal(out[0][1], ethernet({ src: B.mac, dst: A.mac, payload: ipv6({ src: B.ip6, dst: A.ip6, hopLimit: 255, payload: icmpv6({ type: 136, code: 0, id: 0x6000, seq: 0, payload: na }) }) }));
  assert.ok(verifyChecksums(out[0][1]));
});

// An underlay frame as the socket transport would hand it over, with parts overridable.
function underlay(o: { src?: string; dst?: string; dport?: number; vni?: number; flags?: number[]; inner?: Uint8Array; proto?: number } = {}) {
  const inner = o.inner ?? frame(B, A, udp({ srcPort: 5, dstPort: 6, payload }));
  const vx = new Uint8Array(8 + inner.length);
  vx.set(o.flags ?? [0x08, 0, 0, 0], 0);
  const vni = o.vni ?? VNI;
  vx[4] = vni >>> 16; vx[5] = (vni >>> 8) & 255; vx[6] = vni & 255;
  if (o.flags && o.flags.length > 4) vx[7] = o.flags[4];
  vx.set(inner, 8);
  const l4 = o.proto === 6 ? tcp({ srcPort: 50000, dstPort: o.dport ?? 4789, payload: vx }) : udp({ srcPort: 50000, dstPort: o.dport ?? 4789, payload: vx, zeroChecksum: true });
  return ethernet({ src: '00:00:00:00:00:00', dst: '00:00:00:00:00:00', payload: ipv4({ src: o.src ?? PA2, dst: o.dst ?? PA1, payload: l4 }) });
}

test('every refusal on the underlay is a counted drop with its reason', () => {
  const { h1 } = pair();
  h1.sw.inject([[1, frame(A, { mac: BC, ip: '10.0.0.255' }, udp({ srcPort: 1, dstPort: 1, payload }))]]);
  h1.take();
  const cases: Array<[string, Uint8Array]> = [
    ['underlay_not_vxlan', ethernet({ src: A.mac, dst: BC, payload: arp({ op: 'request', senderMac: A.mac, senderIp: PA2, targetIp: PA1 }) })],
    ['underlay_not_vxlan', underlay({ dst: '10.99.0.9' })],
    ['underlay_not_vxlan', underlay({ dport: 4790 })],
    ['underlay_not_vxlan', underlay({ proto: 6 })],
    ['underlay_malformed', underlay().subarray(0, 30)],
    ['underlay_malformed', (() => { const f = underlay(); f[24] ^= 1; return f; })()],
    ['underlay_malformed', (() => { const f = underlay(); f[38] = 0; f[39] = 4; return f; })()],
    ['vxlan_bad_header', underlay({ flags: [0x0c, 0, 0, 0] })],
    ['vxlan_bad_header', underlay({ flags: [0x00, 0, 0, 0] })],
    ['vxlan_bad_header', underlay({ flags: [0x08, 0, 1, 0] })],
    ['vxlan_bad_header', underlay({ flags: [0x08, 0, 0, 0, 1] })],
    ['vxlan_unknown_vni', underlay({ vni: 77 })],
    ['vxlan_not_member', underlay({ src: '10.99.0.7' })],
    ['vxlan_inner_spoof', underlay({ inner: frame(A, B, udp({ srcPort: 5, dstPort: 6, payload })) })],
    ['vxlan_inner_malformed', underlay({ inner: new Uint8Array(13) })],
    ['vxlan_inner_malformed', underlay({ inner: ethernet({ src: B.mac, dst: A.mac, vlan: 5, payload: ipv4({ src: B.ip, dst: A.ip, payload: udp({ srcPort: 1, dstPort: 2 }) }) }) })],
    ['src_mac_multicast', underlay({ inner: ethernet({ src: '03:00:00:00:00:01', dst: A.mac, payload: ipv4({ src: B.ip, dst: A.ip, payload: udp({ srcPort: 1, dstPort: 2 }) }) }) })],
  ];
  for (const [reason, f] of cases) {
    const before = h1.sw.counters().drops[reason] ?? 0;
    h1.sw.inject([[0, f]]);
    assert.equal(h1.take(), [], `${reason}: nothing leaves`);
    assert.is(h1.sw.counters().drops[reason], before + 1, reason);
  }
  assert.is(h1.sw.portCounters(0).dropped, cases.length, 'counted on the underlay port');
  // A remote programmed at another PA is a spoof when it comes from this one.
  h1.sw.overlay.addMember(VNI, '10.99.0.3');
  h1.sw.inject([[0, underlay({ src: '10.99.0.3' })]]);
  assert.is(h1.sw.counters().drops.vxlan_inner_spoof, 2);
});

test('VNI isolation: a frame with another VNI never reaches this network', () => {
  const { h1 } = pair();
  h1.sw.addPort({ id: 3, network: 2 });
  h1.sw.overlay.setVni(2, VNI2);
  h1.sw.overlay.addMember(VNI2, PA2);
  h1.sw.inject([[0, underlay({ vni: VNI2, inner: frame(D, A, udp({ srcPort: 1, dstPort: 2, payload })) })]]);
  const out = h1.take();
  assert.equal(out.map(([p]) => p), [3], 'only network 2 (VNI 5002) sees it');
  assert.throws(() => h1.sw.overlay.setVni(3, VNI2), /vni: VNI 5002 is already another domain's/);
});

test('remote add, replace and remove', () => {
  const { h1 } = pair();
  assert.equal(h1.sw.overlay.remotes(), [{ network: 1, vlan: 0, mac: B.mac, addresses: [B.ip, 'fd00::3'], providerAddress: PA2 }]);
  h1.sw.overlay.addRemote({ network: 1, mac: B.mac, addresses: ['10.0.0.30'], providerAddress: '10.99.0.5' });
  assert.equal(h1.sw.overlay.remotes(), [{ network: 1, vlan: 0, mac: B.mac, addresses: ['10.0.0.30'], providerAddress: '10.99.0.5' }]);
  assert.equal(h1.sw.overlay.members(), [{ vni: VNI, providerAddress: '10.99.0.5', explicit: false, remotes: 1 }], 'membership follows the remote');
  h1.sw.inject([[1, frame(A, B, udp({ srcPort: 1, dstPort: 2, payload }))]]);
  assert.is(dissect(h1.take()[0][1]).ipv4!.dst, '10.99.0.5');
  // The old address is no longer answered; the new one is.
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: BC, payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: B.ip }) })]]);
  assert.equal(h1.take().map(([p]) => p).sort(), [0, 2], 'old address: flooded and replicated');
  assert.ok(h1.sw.overlay.removeRemote({ network: 1, mac: B.mac }));
  assert.not.ok(h1.sw.overlay.removeRemote({ network: 1, mac: B.mac }));
  assert.equal(h1.sw.overlay.remotes(), []);
  assert.equal(h1.sw.overlay.members(), []);
  h1.sw.inject([[1, frame(A, B, udp({ srcPort: 1, dstPort: 2, payload }))]]);
  assert.equal(h1.take().map(([p]) => p), [2], 'unknown now: flooded locally; no member left to replicate to');
  assert.throws(() => h1.sw.overlay.addRemote({ network: 1, mac: 'zz', addresses: [], providerAddress: PA2 }), /^mac:/);
  assert.throws(() => h1.sw.overlay.addRemote({ network: 1, mac: B.mac, addresses: ['224.0.0.1'], providerAddress: PA2 }), /addresses\[0\]/);
  assert.throws(() => h1.sw.overlay.addRemote({ network: 1, mac: B.mac, addresses: [], providerAddress: PA1 }), /providerAddress: 10.99.0.1 is this host's own/);
  assert.throws(() => h1.sw.overlay.setVni(1, 0), /vni/);
});


// Distributed routing: both hosts run the same gateways on networks 1 (10.0.0.0/24, VNI 5001) and 2
// (10.1.0.0/24, VNI 5002). A (host 1, network 1) talks to D (host 2, network 2): host 1 routes A -> D,
// host 2 routes D -> A; each receiver only switches.
function routedPair() {
  const { h1, h2, run } = pair();
  for (const h of [h1, h2]) {
    h.sw.addPort({ id: 3, network: 2 });
    h.sw.overlay.setVni(2, VNI2);
    h.sw.router.addInterface({ id: 0, network: 1, address: '10.0.0.1/24' });
    h.sw.router.addInterface({ id: 1, network: 2, address: '10.1.0.1/24' });
  }
  h1.sw.overlay.addRemote({ network: 2, mac: D.mac, addresses: [D.ip], providerAddress: PA2 });
  // Every host is a member of both VNIs (what the cluster programs): routed frames arrive in the VNI
  // of the egress network, where the sender need not hold endpoints.
  for (const vni of [VNI, VNI2]) { h1.sw.overlay.addMember(vni, PA2); h2.sw.overlay.addMember(vni, PA1); }
  h2.sw.addStaticMac({ mac: D.mac, port: 3, network: 2 });
  const GW1 = '02:6e:70:00:00:00', GW2 = '02:6e:70:00:00:01'; // the default gateway MACs of interfaces 0 and 1, on every host
  return { h1, h2, run, GW1, GW2 };
}

test('distributed routing: a TCP handshake and data across subnets, each host routing one direction through conntrack', () => {
  const { h1, h2, run, GW1, GW2 } = routedPair();
  const seg = (from: 'A' | 'D', flags: string, seq: number, ack: number, data: Uint8Array = new Uint8Array(0)) => from === 'A'
    ? ethernet({ src: A.mac, dst: GW1, payload: ipv4({ src: A.ip, dst: D.ip, ttl: 64, payload: tcp({ srcPort: 40000, dstPort: 80, flags, seq, ack, payload: data }) }) })
    : ethernet({ src: D.mac, dst: GW2, payload: ipv4({ src: D.ip, dst: A.ip, ttl: 64, payload: tcp({ srcPort: 80, dstPort: 40000, flags, seq, ack, payload: data }) }) });
  // What the receiver gets: routed by the sender's host (TTL 63, from the gateway of the egress network).
  const routed = (from: 'A' | 'D', flags: string, seq: number, ack: number, data: Uint8Array = new Uint8Array(0)) => from === 'A'
    ? ethernet({ src: GW2, dst: D.mac, payload: ipv4({ src: A.ip, dst: D.ip, ttl: 63, payload: tcp({ srcPort: 40000, dstPort: 80, flags, seq, ack, payload: data }) }) })
    : ethernet({ src: GW1, dst: A.mac, payload: ipv4({ src: D.ip, dst: A.ip, ttl: 63, payload: tcp({ srcPort: 80, dstPort: 40000, flags, seq, ack, payload: data }) }) });
  const steps: Array<['A' | 'D', string, number, number, Uint8Array?]> = [
    ['A', 'S', 1000, 0], ['D', 'SA', 5000, 1001], ['A', 'A', 1001, 5001],
    ['A', 'PA', 1001, 5001, payload], ['D', 'A', 5001, 1009], ['D', 'PA', 5001, 1009, payload], ['A', 'A', 1009, 5009],
    ['A', 'FA', 1009, 5009], ['D', 'FA', 5009, 1010], ['A', 'A', 1010, 5010],
  ];
  for (const [from, flags, seq, ack, data] of steps) {
    (from === 'A' ? h1 : h2).sw.inject([[from === 'A' ? 1 : 3, seg(from, flags, seq, ack, data)]]);
    const got = run();
    assert.equal(got, [[from === 'A' ? 2 : 1, from === 'A' ? 3 : 1, routed(from, flags, seq, ack, data)]], `${from} ${flags}`);
  }
  assert.equal(h1.sw.counters().drops, {});
  assert.equal(h2.sw.counters().drops, {});
  const c1 = h1.sw.router.connections(), c2 = h2.sw.router.connections();
  assert.is(c1.length, 1);
  assert.is(c2.length, 1);
  assert.is(c1[0].original.src, A.ip, 'host 1 tracks A -> D');
  assert.is(c2[0].original.src, D.ip, 'host 2 tracks D -> A');
});

test('distributed routing: ping across subnets; an ACL on the receiving port blocks inner traffic', () => {
  const { h1, h2, run, GW1, GW2 } = routedPair();
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: GW1, payload: ipv4({ src: A.ip, dst: D.ip, ttl: 64, payload: icmp({ type: 8, id: 9, seq: 1, payload }) }) })]]);
  assert.equal(run(), [[2, 3, ethernet({ src: GW2, dst: D.mac, payload: ipv4({ src: A.ip, dst: D.ip, ttl: 63, payload: icmp({ type: 8, id: 9, seq: 1, payload }) }) })]]);
  h2.sw.inject([[3, ethernet({ src: D.mac, dst: GW2, payload: ipv4({ src: D.ip, dst: A.ip, ttl: 64, payload: icmp({ type: 0, id: 9, seq: 1, payload }) }) })]]);
  assert.equal(run(), [[1, 1, ethernet({ src: GW1, dst: A.mac, payload: ipv4({ src: D.ip, dst: A.ip, ttl: 63, payload: icmp({ type: 0, id: 9, seq: 1, payload }) }) })]]);
  // Port ACLs apply to decapsulated packets: D takes nothing from 10.0.0.0/24.
  h2.sw.acls.setPortAcl(3, { rules: [{ Id: 'no-net1', Action: 'Block', Direction: 'In', RemoteAddresses: '10.0.0.0/24', Priority: 100 }], defaultIn: 'Allow', defaultOut: 'Allow' });
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: GW1, payload: ipv4({ src: A.ip, dst: D.ip, ttl: 64, payload: udp({ srcPort: 1, dstPort: 2, payload }) }) })]]);
  assert.equal(run(), []);
  assert.is(h2.sw.counters().drops.acl_blocked, 1);
});

test('inner IPv4 fragments from the underlay that come before their first fragment are held, then routed after it in their domain', () => {
  // A vxlan peer that does not route itself (as Linux's vx0 in e2e-overlay) sends B's datagram to the
  // gateway of network 1; host 1 routes it into network 2, to a local endpoint E.
  const h = host(PA1);
  const E = { mac: '02:00:00:00:00:0e', ip: '10.1.0.5' };
  const GW1 = '02:6e:70:00:00:00', GW2 = '02:6e:70:00:00:01';
  h.sw.addPort({ id: 3, network: 2 });
  h.sw.router.addInterface({ id: 0, network: 1, address: '10.0.0.1/24' });
  h.sw.router.addInterface({ id: 1, network: 2, address: '10.1.0.1/24' });
  h.sw.overlay.addRemote({ network: 1, mac: B.mac, addresses: [B.ip], providerAddress: PA2 });
  h.sw.addStaticMac({ mac: E.mac, port: 3, network: 2 });
  h.sw.router.setNeighbor({ address: E.ip, mac: E.mac, interface: 1 });
  const data = udp({ srcPort: 5000, dstPort: 6000, payload: new Uint8Array(40).map((_, i) => i) }).build(parseIPv4(B.ip), parseIPv4(E.ip));
  const frags = (ttl: number, src: string, dst: string) => [[0, 24, true], [24, data.length, false]].map(([a, b, mf]) =>
    ethernet({ src, dst, payload: ipv4({ src: B.ip, dst: E.ip, id: 77, ttl, mf: mf as boolean, fragOffset: (a as number) / 8, payload: rawL4(17, data.subarray(a as number, b as number)) }) }));
  const [first, later] = frags(64, B.mac, GW1);
  h.sw.send(0, vxlanFrame(PA2, PA1, 50000, VNI, later, 1));
  h.sw.flush();
  assert.equal(h.take(), [], 'the later fragment is held');
  assert.is(h.sw.counters().stats.frag_held, 1);
  h.sw.send(0, vxlanFrame(PA2, PA1, 50000, VNI, first, 2));
  h.sw.flush();
  const [r1, r2] = frags(63, GW2, E.mac);
  assert.equal(h.take(), [[3, r1], [3, r2]], 'both routed to E, the held one after its first fragment');
  assert.equal(h.sw.counters().drops, {});
});

test('MTU: a bridged IPv4 packet with DF too big for the tunnel gets fragmentation needed from its destination, as Linux', () => {
  const { h1 } = pair();
  const big = new Uint8Array(1500 - 20 - 8 - 50 + 1);  // one byte over: IP packet 1451 > 1450
  const f = ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, df: true, ttl: 61, payload: udp({ srcPort: 7, dstPort: 8, payload: big }) }) });
  h1.sw.inject([[1, f]]);
  const out = h1.take();
  assert.is(out.length, 1);
  assert.is(out[0][0], 1, 'back to the sender');
  const rest = new Uint8Array([0, 0, 0x05, 0xaa]); // next-hop MTU 1450
  const quoted = f.subarray(14, 14 + 548);
  assert.equal(out[0][1], ethernet({ src: B.mac, dst: A.mac, payload: ipv4({ src: B.ip, dst: A.ip, ttl: 61, id: 0, df: true, payload: icmp({ type: 3, code: 4, rest, payload: quoted }) }) }));
  assert.is(h1.sw.counters().drops.vxlan_too_big, 1);
  // The largest that fits goes through; without DF the too-big one is only a counted drop.
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, df: true, payload: udp({ srcPort: 7, dstPort: 8, payload: big.subarray(1) }) }) })]]);
  const ok = h1.take();
  assert.equal(ok.map(([p, x]) => [p, x.length]), [[0, 1500 + 14]]);
  h1.sw.inject([[1, ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, payload: udp({ srcPort: 7, dstPort: 8, payload: big }) }) })]]);
  assert.equal(h1.take(), []);
  assert.is(h1.sw.counters().drops.vxlan_too_big, 2);
});

test('MTU: an IPv6 packet too big for the tunnel gets Packet Too Big from its destination', () => {
  const { h1 } = pair();
  const big = new Uint8Array(1450 - 40 - 8 + 1);
  const f = ethernet({ src: A.mac, dst: B.mac, payload: ipv6({ src: A.ip6, dst: B.ip6, hopLimit: 50, payload: udp({ srcPort: 7, dstPort: 8, payload: big }) }) });
  h1.sw.inject([[1, f]]);
  const out = h1.take();
  assert.is(out.length, 1);
  const d = dissect(out[0][1]);
  assert.equal([out[0][0], d.src, d.dst, d.ipv6!.src, d.ipv6!.dst, d.ipv6!.hopLimit, d.icmpv6!.type, d.icmpv6!.code, d.icmpv6!.checksumOk], [1, B.mac, A.mac, 'fd00::3', 'fd00::2', 50, 2, 0, true]);
  assert.is(u32(out[0][1], 14 + 40 + 4), 1450, 'the tunnel MTU');
  assert.is(out[0][1].length, 14 + 1280, 'quoting as much as fits the IPv6 minimum MTU');
});

test('head-end replication: a broadcast from a local port goes to every other member once, and is counted', () => {
  const { h1 } = pair();
  h1.sw.overlay.addMember(VNI, '10.99.0.3');
  h1.sw.overlay.addMember(VNI, PA1); // this host itself: never a copy
  h1.sw.inject([[1, frame(A, { mac: BC, ip: '10.0.0.255' }, udp({ srcPort: 1, dstPort: 1, payload }))]]);
  const out = h1.take();
  assert.equal(out.map(([p, f]) => p === 0 ? dissect(f).ipv4!.dst : `port ${p}`).sort(), ['10.99.0.2', '10.99.0.3', 'port 2']);
  assert.is(h1.sw.counters().stats.vxlan_bum_copies, 2);
  // What came from the overlay is never sent back into it.
  h1.sw.inject([[0, underlay({ inner: frame(B, { mac: BC, ip: '10.0.0.255' }, udp({ srcPort: 1, dstPort: 1, payload })) })]]);
  assert.equal(h1.take().map(([p]) => p).sort(), [1, 2]);
});

test('a frame from the overlay to another remote endpoint is not sent back into it (split horizon)', () => {
  const { h1 } = pair();
  h1.sw.overlay.addRemote({ network: 1, mac: '02:00:00:00:00:0e', addresses: [], providerAddress: '10.99.0.3' });
  h1.sw.inject([[0, underlay({ inner: frame(B, { mac: '02:00:00:00:00:0e', ip: '10.0.0.9' }, udp({ srcPort: 1, dstPort: 1, payload })) })]]);
  assert.equal(h1.take(), []);
  assert.is(h1.sw.counters().drops.vxlan_split_horizon, 1);
});

test('the trace follows a frame into the overlay', () => {
  const { h1 } = pair();
  const t = h1.sw.trace(1, frame(A, B, udp({ srcPort: 1, dstPort: 2, payload })));
  assert.match(t.text, /l2 +to a remote endpoint: VXLAN to 10\.99\.0\.2, VNI 5001/);
  assert.equal(t.output.map((o) => o.port), [0]);
});

test.run();
