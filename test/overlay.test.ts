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
import { ethernet, ipv4, ipv6, udp, tcp, icmp, icmpv6, arp, dissect, verifyChecksums, parseIPv6, type L4 } from '../src/frames.js';

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

test.run();
