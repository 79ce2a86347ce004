// TCP MSS clamping (assembly/nodes/mss.ts) through the whole dataplane: SYNs and SYN-ACKs routed
// between a lan and a wan (MTU 1400) in both directions, IPv4 through masquerade and a port mapping,
// IPv6 routed, with the option layouts real stacks send and odd ones. Every frame that leaves is
// compared byte for byte with one built by src/frames.ts from the expected MSS, and its TCP checksum is
// verified by the sum below (written here, from RFC 1071, sharing nothing with the dataplane).
// The same SYNs through a Linux router with nft's `tcp option maxseg size set rt mtu`:
// test/linux-diff.test.ts.
//
//   port 0  lan  network 1  if 0 10.0.0.1/24 fd00::1/64   A 10.0.0.2 fd00::2, B 10.0.0.3
//   port 1  wan  network 2  if 1 192.168.1.1/24 fd01::1/64, external, MTU 1400   R (next hop), X
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { NetplaneError, Host } from '../src/index.js';
import { ethernet, ipv4, ipv6, tcp, parseIPv4, parseIPv6 } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3', ip6: 'fd00::3' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254', ip6: 'fd01::fe' };
const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100', ip6: 'fd01::99' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };

function router(lanClamp?: number | 'mtu', wanClamp?: number | 'mtu') {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, macEntries: 64, clock: () => now });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, mac: GW0.mac, address: `${GW0.ip}/24`, address6: 'fd00::1/64', ...(lanClamp !== undefined ? { mssClamp: lanClamp } : {}) });
  rt.addInterface({ network: 2, mac: GW1.mac, address: `${GW1.ip}/24`, address6: 'fd01::1/64', external: true, mtu: 1400, ...(wanClamp !== undefined ? { mssClamp: wanClamp } : {}) });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: R.ip });
  rt.addRoute({ destination: '::/0', interface: 1, nextHop: R.ip6 });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: B.ip, internalPort: 80 });
  for (const [hosts, ifc] of [[[A, B], 0], [[R, X], 1]] as const) {
    for (const h of hosts) {
      rt.setNeighbor({ address: h.ip, mac: h.mac, interface: ifc });
      rt.setNeighbor({ address: h.ip6, mac: h.mac, interface: ifc });
      sw.addStaticMac({ mac: h.mac, port: ifc, network: ifc + 1 });
    }
  }
  const send = (port: number, f: Uint8Array) => {
    out.length = 0;
    sw.inject([[port, f]], ++now);
    return out.slice();
  };
  const stat = (name: string) => sw.counters().stats[name];
  const drops = (name: string) => sw.counters().drops[name] ?? 0;
  return { sw, rt, send, stat, drops };
}

// ---- options, as stacks send them -------------------------------------------------------------------

const mss = (v: number) => [2, 4, v >> 8, v & 255];
const TS = [8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0];
const bytes = (...parts: number[][]) => Uint8Array.from(parts.flat());
// Linux: MSS, SACK permitted, timestamps, NOP, window scale 7.
const linuxSyn = (v: number) => bytes(mss(v), [4, 2], TS, [1, 3, 3, 7]);
// Windows: MSS, NOP, window scale 8, NOP, NOP, SACK permitted.
const windowsSyn = (v: number) => bytes(mss(v), [1, 3, 3, 8, 1, 1, 4, 2]);
// macOS / BSD: MSS, NOP, window scale, NOP, NOP, timestamps, SACK permitted, End, End.
const bsdSyn = (v: number) => bytes(mss(v), [1, 3, 3, 6, 1, 1], TS, [4, 2, 0, 0]);
// The MSS last, after timestamps and SACK permitted.
const mssLast = (v: number) => bytes([1, 1, 4, 2], TS, [1, 1], mss(v));
// The MSS value at an odd offset from the TCP header (NOP first): it straddles two checksum words.
const oddMss = (v: number) => bytes([1], mss(v), [1, 1, 1]);
const oddMssAfterTs = (v: number) => bytes([1], TS, mss(v), [0]);

// ---- an independent checksum (RFC 1071) -------------------------------------------------------------

function onesSum(parts: Uint8Array[]): number {
  let s = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i += 2) s += (p[i] << 8) | (i + 1 < p.length ? p[i + 1] : 0);
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

// The TCP segment of an untagged frame, its options, and whether its checksum (with the pseudo-header)
// and, for IPv4, the header checksum are right.
function segment(f: Uint8Array) {
  const v6 = ((f[12] << 8) | f[13]) === 0x86dd;
  const ip = f.subarray(14);
  const hl = v6 ? 40 : (ip[0] & 15) * 4;
  const len = v6 ? (ip[4] << 8) | ip[5] : ((ip[2] << 8) | ip[3]) - hl;
  const seg = ip.subarray(hl, hl + len);
  const src = v6 ? ip.subarray(8, 24) : ip.subarray(12, 16);
  const dst = v6 ? ip.subarray(24, 40) : ip.subarray(16, 20);
  const pseudo = v6 ? bytes([...src], [...dst], [0, 0, len >> 8, len & 255, 0, 0, 0, 6]) : bytes([...src], [...dst], [0, 6, len >> 8, len & 255]);
  const doff = (seg[12] >> 4) * 4;
  return {
    seg,
    options: seg.slice(20, doff),
    sport: (seg[0] << 8) | seg[1],
    dport: (seg[2] << 8) | seg[3],
    tcpOk: onesSum([pseudo, seg]) === 0xffff,
    ipOk: v6 || onesSum([ip.subarray(0, hl)]) === 0xffff,
  };
}

// A TCP segment between two hosts, as frames.ts builds it (checksums computed from scratch).
interface Seg { v6?: boolean; from: { mac: string; ip: string; ip6: string }; to: { mac: string; ip: string; ip6: string }; srcMac?: string; dstMac?: string;
  src?: string; dst?: string; sport: number; dport: number; flags: string; options: Uint8Array; ttl?: number; seq?: number; ack?: number; payload?: Uint8Array }
function frame(s: Seg): Uint8Array {
  const l4 = tcp({ srcPort: s.sport, dstPort: s.dport, flags: s.flags, seq: s.seq ?? 1000, ack: s.ack ?? 0, window: 64240, options: s.options, payload: s.payload });
  const src = s.src ?? (s.v6 ? s.from.ip6 : s.from.ip), dst = s.dst ?? (s.v6 ? s.to.ip6 : s.to.ip);
  return ethernet({
    src: s.srcMac ?? s.from.mac, dst: s.dstMac ?? s.to.mac,
    payload: s.v6 ? ipv6({ src, dst, hopLimit: s.ttl ?? 64, payload: l4 }) : ipv4({ src, dst, id: 0x4242, df: true, ttl: s.ttl ?? 64, payload: l4 }),
  });
}

// Byte for byte, shown as hex.
const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
function same(got: Uint8Array, want: Uint8Array): void { assert.is(hexOf(got), hexOf(want)); }
const sameOptions = (f: Uint8Array, want: Uint8Array) => assert.is(hexOf(segment(f).options), hexOf(want));

function one(out: Array<[number, Uint8Array]>, port: number): Uint8Array {
  assert.is(out.length, 1, `one frame out, got ${out.length}`);
  assert.is(out[0][0], port);
  const d = segment(out[0][1]);
  assert.ok(d.tcpOk, 'TCP checksum of the frame out');
  assert.ok(d.ipOk, 'IPv4 header checksum of the frame out');
  return out[0][1];
}

// A SYN from A out to X (masqueraded); then the SYN-ACK back. Checks both frames byte for byte.
function handshake4(r: ReturnType<typeof router>, synOpts: Uint8Array, wantSyn: Uint8Array, ackOpts: Uint8Array, wantAck: Uint8Array, sport = 40000) {
  const f = one(r.send(0, frame({ from: A, to: X, dstMac: GW0.mac, sport, dport: 443, flags: 'S', options: synOpts })), 1);
  const p = segment(f).sport;
  same(f, frame({ from: A, to: X, srcMac: GW1.mac, dstMac: X.mac, src: GW1.ip, sport: p, dport: 443, flags: 'S', options: wantSyn, ttl: 63 }));
  const g = one(r.send(1, frame({ from: X, to: A, dstMac: GW1.mac, dst: GW1.ip, sport: 443, dport: p, flags: 'SA', seq: 5000, ack: 1001, options: ackOpts })), 0);
  same(g, frame({ from: X, to: A, srcMac: GW0.mac, sport: 443, dport: sport, flags: 'SA', seq: 5000, ack: 1001, options: wantAck, ttl: 63 }));
  return p;
}

// ---- tests -------------------------------------------------------------------------------------------

test('IPv4, clamp to the MTU on the lan: SYN out and SYN-ACK back lowered to 1400 - 40, through masquerade, with Linux, Windows and BSD option layouts', () => {
  const r = router('mtu');
  handshake4(r, linuxSyn(1460), linuxSyn(1360), linuxSyn(1460), linuxSyn(1360), 40000);
  handshake4(r, windowsSyn(1460), windowsSyn(1360), bsdSyn(8960), bsdSyn(1360), 40001);
  handshake4(r, mssLast(65495), mssLast(1360), oddMss(1461), oddMss(1360), 40002);
  assert.is(r.stat('mss_clamped'), 6);
});

test('IPv4: an MSS at or below the limit is left as it is (never raised), and counted nowhere', () => {
  const r = router('mtu');
  handshake4(r, linuxSyn(1360), linuxSyn(1360), windowsSyn(536), windowsSyn(536), 40010);
  handshake4(r, oddMss(1200), oddMss(1200), mssLast(1359), mssLast(1359), 40011);
  assert.is(r.stat('mss_clamped'), 0);
});

test('an MSS value at an odd offset: the checksum update swaps its bytes (every value, against a full recomputation)', () => {
  const r = router(1000);
  // Values whose two bytes differ in every way that matters to the end-around carry.
  for (const [i, v] of [1001, 0x0401, 0xffff, 0x10ff, 0xff10, 0x8000, 0x7fff, 0xfefe].entries()) {
    handshake4(r, oddMssAfterTs(v), oddMssAfterTs(1000), oddMss(v), oddMss(1000), 40100 + i);
  }
  assert.is(r.stat('mss_clamped'), 16);
});

test('a fixed clamp: the smaller of the two interfaces\' limits wins; one interface clamps both directions', () => {
  let r = router(1000, 'mtu');
  handshake4(r, linuxSyn(1460), linuxSyn(1000), linuxSyn(1460), linuxSyn(1000), 40020);
  r = router('mtu', 1300);
  handshake4(r, linuxSyn(1460), linuxSyn(1300), linuxSyn(1460), linuxSyn(1300), 40021);
  r = router(undefined, 1200);
  handshake4(r, windowsSyn(1460), windowsSyn(1200), windowsSyn(1460), windowsSyn(1200), 40022);
  assert.is(r.stat('mss_clamped'), 2);
});

test('a SYN arriving through a port mapping (DNAT) is clamped after the translation', () => {
  const r = router('mtu');
  const f = one(r.send(1, frame({ from: X, to: B, dstMac: GW1.mac, dst: GW1.ip, sport: 5555, dport: 8080, flags: 'S', options: bsdSyn(1460) })), 0);
  same(f, frame({ from: X, to: B, srcMac: GW0.mac, sport: 5555, dport: 80, flags: 'S', options: bsdSyn(1360), ttl: 63 }));
  const g = one(r.send(0, frame({ from: B, to: X, dstMac: GW0.mac, sport: 80, dport: 5555, flags: 'SA', seq: 9, ack: 1001, options: linuxSyn(1460) })), 1);
  same(g, frame({ from: B, to: X, srcMac: GW1.mac, dstMac: X.mac, src: GW1.ip, sport: 8080, dport: 5555, flags: 'SA', seq: 9, ack: 1001, options: linuxSyn(1360), ttl: 63 }));
});

test('IPv6: clamp to the MTU is 1400 - 60, both directions', () => {
  const r = router('mtu');
  const f = one(r.send(0, frame({ v6: true, from: A, to: X, dstMac: GW0.mac, sport: 41000, dport: 443, flags: 'S', options: linuxSyn(1440) })), 1);
  same(f, frame({ v6: true, from: A, to: X, srcMac: GW1.mac, dstMac: X.mac, sport: 41000, dport: 443, flags: 'S', options: linuxSyn(1340), ttl: 63 }));
  const g = one(r.send(1, frame({ v6: true, from: X, to: A, dstMac: GW1.mac, sport: 443, dport: 41000, flags: 'SA', seq: 7, ack: 1001, options: oddMssAfterTs(8940) })), 0);
  same(g, frame({ v6: true, from: X, to: A, srcMac: GW0.mac, sport: 443, dport: 41000, flags: 'SA', seq: 7, ack: 1001, options: oddMssAfterTs(1340), ttl: 63 }));
  // Below the limit: unchanged.
  const h = one(r.send(0, frame({ v6: true, from: A, to: X, dstMac: GW0.mac, sport: 41001, dport: 443, flags: 'S', options: windowsSyn(1220) })), 1);
  same(h, frame({ v6: true, from: A, to: X, srcMac: GW1.mac, dstMac: X.mac, sport: 41001, dport: 443, flags: 'S', options: windowsSyn(1220), ttl: 63 }));
  assert.is(r.stat('mss_clamped'), 2);
});

test('left alone: no MSS option, no options, an MSS after End of Option List, a kind-2 option of another length, segments without SYN', () => {
  const r = router(600);
  const cases: Array<[Uint8Array, Uint8Array, number]> = [
    [bytes([1, 3, 3, 7], [4, 2, 1, 1], TS, [1, 1]), bytes([1, 3, 3, 7], [4, 2, 1, 1], TS, [1, 1]), 0],
    [new Uint8Array(0), new Uint8Array(0), 0],
    // What follows End is padding to a receiver (RFC 9293 §3.2): not an option.
    [bytes([0], mss(1460), [0, 0, 0]), bytes([0], mss(1460), [0, 0, 0]), 0],
    // Kind 2 with length 6 is no MSS option; the real one after it is the first MSS option.
    [bytes([2, 6, 5, 0xb4, 0, 0], mss(1460), [1, 1]), bytes([2, 6, 5, 0xb4, 0, 0], mss(600), [1, 1]), 1],
    // Only the first MSS option is clamped (as Linux's TCPMSS and nft).
    [bytes(mss(1460), mss(1460)), bytes(mss(600), mss(1460)), 1],
  ];
  let port = 42000, clamped = 0;
  for (const [opts, want, n] of cases) {
    handshake4(r, opts, want, opts, want, port++);
    clamped += 2 * n;
    assert.is(r.stat('mss_clamped'), clamped);
  }
  // An established segment carrying bytes that look like an MSS option (no SYN: never touched).
  const p = handshake4(r, linuxSyn(1460), linuxSyn(600), linuxSyn(1460), linuxSyn(600), 42100);
  const data = frame({ from: A, to: X, dstMac: GW0.mac, sport: 42100, dport: 443, flags: 'A', seq: 1001, ack: 5001, options: bytes([1, 1], mss(1460), [1, 1]), payload: Uint8Array.of(1, 2, 3) });
  const f = one(r.send(0, data), 1);
  same(f, frame({ from: A, to: X, srcMac: GW1.mac, dstMac: X.mac, src: GW1.ip, sport: p, dport: 443, flags: 'A', seq: 1001, ack: 5001, options: bytes([1, 1], mss(1460), [1, 1]), payload: Uint8Array.of(1, 2, 3), ttl: 63 }));
  assert.is(r.stat('mss_clamped'), clamped + 2);
});

test('malformed options are a counted drop (tcp_bad_option) before any clamping, never a trap', () => {
  const r = router('mtu');
  const bad = [
    bytes([2, 9, 5, 0xb4]),       // longer than what is left of the header
    bytes([1, 1, 1, 2]),          // kind 2 with no room for its length
    bytes([2, 0, 5, 0xb4]),       // length 0
    bytes([2, 1, 5, 0xb4]),       // length 1
    bytes([2, 40, 5, 0xb4]),      // longer than the header
    bytes([1, 2, 4, 5, 0xb4, 8, 10, 0]), // timestamps overrun the header
  ];
  for (const [i, o] of bad.entries()) {
    const before = r.drops('tcp_bad_option');
    assert.equal(r.send(0, frame({ from: A, to: X, dstMac: GW0.mac, sport: 43000 + i, dport: 443, flags: 'S', options: o })), []);
    assert.is(r.drops('tcp_bad_option'), before + 1, `options ${Buffer.from(o).toString('hex')}`);
  }
  assert.is(r.stat('mss_clamped'), 0);
});

test('setMssClamp changes it in place, undefined removes it; the SDK and the ABI refuse what is out of range', () => {
  const r = router();
  handshake4(r, linuxSyn(1460), linuxSyn(1460), linuxSyn(1460), linuxSyn(1460), 44000);
  r.rt.setMssClamp(0, 1000);
  assert.is(r.rt.interfaces.get(0)!.mssClamp, 1000);
  handshake4(r, linuxSyn(1460), linuxSyn(1000), linuxSyn(1460), linuxSyn(1000), 44001);
  r.rt.setMssClamp(0, undefined);
  assert.is(r.rt.interfaces.get(0)!.mssClamp, undefined);
  handshake4(r, linuxSyn(1460), linuxSyn(1460), linuxSyn(1460), linuxSyn(1460), 44002);
  for (const v of [535, 65496, 1400.5, 'MTU', 0]) {
    assert.throws(() => r.rt.setMssClamp(0, v as number), (e: unknown) => e instanceof NetplaneError && e.field === 'mssClamp', String(v));
    assert.throws(() => r.rt.addInterface({ network: 9, mssClamp: v as number }), (e: unknown) => e instanceof NetplaneError && e.field === 'mssClamp', String(v));
  }
  assert.throws(() => r.rt.setMssClamp(7, 1000), (e: unknown) => e instanceof NetplaneError && e.field === 'interface');
  const x = r.sw.dp.exports;
  for (const v of [1, 535, 65496, 0xfffe, 0x10000]) assert.is(x.iface_set_mss_clamp(0, v), -3, String(v));
  for (const v of [0, 536, 65495, 0xffff]) assert.is(x.iface_set_mss_clamp(0, v), 0, String(v));
  // The record holds it at byte 42, beside the IPv6 prefix length.
  const rec = x.iface_record(1);
  const mem = new DataView(x.memory.buffer);
  assert.is(mem.getUint16(rec + 40, true), 64);
  assert.is(mem.getUint16(rec + 42, true), 0);
  x.iface_set_mss_clamp(1, 0xffff);
  assert.is(mem.getUint16(rec + 42, true), 0xffff);
});

test('the model: a NAT network\'s MssClamp clamps at its gateway, both ways; changed in place it keeps the gateway', () => {
  let now = 1000;
  const host = new Host({ config: { uplink: { address: '192.168.1.1/24', gateway: '192.168.1.254' } }, switch: { maxPorts: 16, clock: () => now } });
  const uplink = host.addUplinkPort();
  const out: Array<[number, Uint8Array]> = [];
  host.sw.onFrame((f, p) => out.push([p, f.slice()]));
  const send = (port: number, f: Uint8Array) => { out.length = 0; host.sw.inject([[port, f]], ++now); return out.slice(); };
  host.sw.router.setNeighbor({ address: '192.168.1.254', mac: R.mac, interface: 0 });
  const NAT = { ID: 'nat', Type: 'NAT', MTU: 1400, MssClamp: 'Mtu', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24' }] }] };
  host.store.create('network', NAT);
  const ep = host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] });
  const gwId = host.compiler.gatewayInterfaceOf('nat')!;
  const gw = host.sw.router.interfaces.get(gwId)!;
  assert.is(gw.mssClamp, 'mtu');
  const port = host.portOf('web')!;
  const me = { mac: ep.MacAddress, ip: ep.IpConfigurations[0].IpAddress, ip6: '::' };
  const far = { mac: R.mac, ip: '203.0.113.9', ip6: '::' };
  // Out: the gateway's MTU (1400) is the smaller one.
  let f = one(send(port, frame({ from: me, to: far, dstMac: gw.mac, sport: 40000, dport: 443, flags: 'S', options: linuxSyn(1460) })), uplink);
  sameOptions(f, linuxSyn(1360));
  // In, through the port mapping.
  const upMac = host.sw.router.interfaces.get(0)!.mac;
  f = one(send(uplink, frame({ from: far, to: me, dstMac: upMac, dst: '192.168.1.1', sport: 5555, dport: 8080, flags: 'S', options: windowsSyn(1460) })), port);
  sameOptions(f, windowsSyn(1360));
  host.store.modify('network', 'nat', { ...NAT, MssClamp: 1000 });
  assert.is(host.compiler.gatewayInterfaceOf('nat'), gwId);
  assert.is(host.sw.router.interfaces.get(gwId)!.mssClamp, 1000);
  f = one(send(port, frame({ from: me, to: far, dstMac: gw.mac, sport: 40001, dport: 443, flags: 'S', options: linuxSyn(1460) })), uplink);
  sameOptions(f, linuxSyn(1000));
  host.store.modify('network', 'nat', { ...NAT, MssClamp: undefined });
  f = one(send(port, frame({ from: me, to: far, dstMac: gw.mac, sport: 40002, dport: 443, flags: 'S', options: linuxSyn(1460) })), uplink);
  sameOptions(f, linuxSyn(1460));
  assert.throws(() => host.store.modify('network', 'nat', { ...NAT, MssClamp: 100 }), /MssClamp/);
});

test.run();
