// IP fragments through the router, its NAT and the port ACLs (virtual reassembly, tables/frag.ts),
// and the egress MTU (nodes/mtu.ts). Fragments are cut here from datagrams built by src/frames.ts;
// what leaves is put back together by an independent reassembler below, and the reassembled datagram
// is checked like any frame: its L4 checksum recomputed from scratch over the translated addresses.
//
// Topology (compartment 0, as test/l3.test.ts):
//   port 0  A 10.0.0.2   port 1  B 10.0.0.3   network 1 ── if 0  10.0.0.1/24  fd00::1/64
//   port 2  outside (network 2, R 192.168.1.254 next hop, X 192.168.1.100, C fd01::2)
//                                               network 2 ── if 1  192.168.1.1/24 fd01::1/64 (external)
//   SNAT 10.0.0.0/24 -> 192.168.1.1; port mappings udp 5353 -> 10.0.0.3:53, tcp 8080 -> 10.0.0.3:80
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import {
  ethernet, ipv4, ipv6, udp, tcp, icmp, icmpv6, rawL4, dissect, verifyChecksums, parseIPv4, parseIPv6,
  formatIPv4, formatIPv6, internetChecksum, type L4,
} from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254' };
const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100' };
const C = { mac: '02:00:00:00:00:cc', ip6: 'fd01::2' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };
const FAR = '8.8.8.8';

type Out = Array<[number, Uint8Array]>;

function host(opts: ConstructorParameters<typeof Switch>[0] = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, macEntries: 256, clock: () => now, ...opts });
  const out: Out = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', address6: 'fd01::1/64', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: R.ip });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'udp', externalPort: 5353, internalAddress: B.ip, internalPort: 53 });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: B.ip, internalPort: 80 });
  for (const [address, mac, i] of [[A.ip, A.mac, 0], [B.ip, B.mac, 0], [R.ip, R.mac, 1], [X.ip, X.mac, 1], [A.ip6, A.mac, 0], [C.ip6, C.mac, 1]] as const) {
    rt.setNeighbor({ address, mac, interface: i });
  }
  // Many frames in one batch (held fragments are released at the end of the batch they were in).
  const batch = (frames: Array<[number, Uint8Array]>, dt = 1): Out => {
    now += dt;
    out.length = 0;
    sw.inject(frames, now);
    return out.slice();
  };
  const send = (port: number, f: Uint8Array, dt = 1) => batch([[port, f]], dt);
  const learn = (port: number, mac: string, net: 1 | 2) =>
    send(port, ethernet({ src: mac, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: net === 1 ? '10.0.0.99' : '192.168.1.99', dst: '255.255.255.255', payload: udp({ srcPort: 9, dstPort: 9 }) }) }));
  learn(0, A.mac, 1);
  learn(1, B.mac, 1);
  learn(2, R.mac, 2);
  learn(2, X.mac, 2);
  learn(2, C.mac, 2);
  // Drops since the setup (whose broadcasts may reach no port: no_destination).
  const base = sw.counters().drops;
  const drops = () => Object.fromEntries(Object.entries(sw.counters().drops).map(([k, v]) => [k, v - (base[k] ?? 0)]).filter(([, v]) => v !== 0)) as Record<string, number>;
  const stats = () => sw.counters().stats;
  return { sw, rt, send, batch, drops, stats, tick: (dt: number) => (now += dt) };
}

// ---- fragmenting (the sender's side) -------------------------------------------------------------

interface Datagram4 { src: string; dst: string; id: number; l4: L4; df?: boolean; ttl?: number }

// The IPv4 fragments of a datagram, `size` bytes of payload each (a multiple of 8 but for the last).
function fragments4(d: Datagram4, size: number): Uint8Array[] {
  const bytes = d.l4.build(parseIPv4(d.src), parseIPv4(d.dst));
  const out: Uint8Array[] = [];
  for (let off = 0; off < bytes.length; off += size) {
    const chunk = bytes.subarray(off, Math.min(off + size, bytes.length));
    out.push(ipv4({ src: d.src, dst: d.dst, id: d.id, ttl: d.ttl, mf: off + size < bytes.length, fragOffset: off / 8, payload: rawL4(d.l4.protocol, chunk) }).bytes);
  }
  return out;
}

const fragHeader = (offset: number, more: boolean, id: number) => {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint16(2, offset | (more ? 1 : 0));
  v.setUint32(4, id);
  return { nextHeaderType: 44, bytes: b };
};

function fragments6(d: { src: string; dst: string; id: number; l4: L4 }, size: number): Uint8Array[] {
  const bytes = d.l4.build(parseIPv6(d.src), parseIPv6(d.dst));
  const out: Uint8Array[] = [];
  for (let off = 0; off < bytes.length; off += size) {
    const chunk = bytes.subarray(off, Math.min(off + size, bytes.length));
    out.push(ipv6({ src: d.src, dst: d.dst, extensions: [fragHeader(off, off + size < bytes.length, d.id)], payload: rawL4(d.l4.protocol, chunk) }).bytes);
  }
  return out;
}

const eth4 = (src: string, dst: string, l3: Uint8Array) => ethernet({ src, dst, ethertype: 0x0800, payload: l3 });
const eth6 = (src: string, dst: string, l3: Uint8Array) => ethernet({ src, dst, ethertype: 0x86dd, payload: l3 });

// ---- reassembling (the receiver's side, independent of the dataplane) ---------------------------

interface Whole { src: string; dst: string; protocol: number; bytes: Uint8Array; ttl: number; frame: Uint8Array }

// Puts IPv4 fragments (whole Ethernet frames, untagged) back together; checks every fragment's own
// header checksum, that the pieces tile the datagram exactly, and returns the datagram as one frame.
function reassemble4(frames: Uint8Array[]): Whole {
  assert.ok(frames.length > 0, 'fragments arrived');
  const pieces: Array<{ off: number; more: boolean; data: Uint8Array }> = [];
  let src = '', dst = '', protocol = -1, id = -1, ttl = 0;
  for (const f of frames) {
    assert.is((f[12] << 8) | f[13], 0x0800, 'IPv4');
    const ip = f.subarray(14);
    const hl = (ip[0] & 15) * 4;
    assert.is(internetChecksum(ip.subarray(0, hl)), 0, 'each fragment header checksum');
    const total = (ip[2] << 8) | ip[3];
    const ff = (ip[6] << 8) | ip[7];
    const key = [formatIPv4(ip, 12), formatIPv4(ip, 16), ip[9], (ip[4] << 8) | ip[5]];
    if (protocol < 0) [src, dst, protocol, id] = key as [string, string, number, number];
    assert.equal(key, [src, dst, protocol, id], 'one datagram: same addresses, protocol and identification');
    ttl = ip[8];
    pieces.push({ off: (ff & 0x1fff) * 8, more: (ff & 0x2000) !== 0, data: ip.slice(hl, total) });
  }
  pieces.sort((a, b) => a.off - b.off);
  let end = 0;
  for (const p of pieces) {
    assert.is(p.off, end, 'the fragments tile the datagram');
    end += p.data.length;
  }
  assert.not.ok(pieces[pieces.length - 1].more, 'the last fragment has MF clear');
  const bytes = new Uint8Array(end);
  for (const p of pieces) bytes.set(p.data, p.off);
  const frame = eth4('02:00:00:00:00:01', '02:00:00:00:00:02', ipv4({ src, dst, ttl, payload: rawL4(protocol, bytes) }).bytes);
  return { src, dst, protocol, bytes, ttl, frame };
}

function reassemble6(frames: Uint8Array[]): Whole {
  const pieces: Array<{ off: number; more: boolean; data: Uint8Array }> = [];
  let src = '', dst = '', protocol = -1, ttl = 0;
  for (const f of frames) {
    const ip = f.subarray(14);
    assert.is(ip[6], 44, 'a Fragment header');
    src = formatIPv6(ip, 8);
    dst = formatIPv6(ip, 24);
    protocol = ip[40];
    ttl = ip[7];
    const plen = (ip[4] << 8) | ip[5];
    const fo = (ip[42] << 8) | ip[43];
    pieces.push({ off: fo & 0xfff8, more: (fo & 1) !== 0, data: ip.slice(48, 40 + plen) });
  }
  pieces.sort((a, b) => a.off - b.off);
  let end = 0;
  for (const p of pieces) {
    assert.is(p.off, end, 'the fragments tile the datagram');
    end += p.data.length;
  }
  const bytes = new Uint8Array(end);
  for (const p of pieces) bytes.set(p.data, p.off);
  const frame = eth6('02:00:00:00:00:01', '02:00:00:00:00:02', ipv6({ src, dst, hopLimit: ttl, payload: rawL4(protocol, bytes) }).bytes);
  return { src, dst, protocol, bytes, ttl, frame };
}

const big = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);
const on = (out: Out, port: number) => out.filter(([p]) => p === port).map(([, f]) => f);

// ---- through NAT ---------------------------------------------------------------------------------

test('in-order IPv4 fragments of a UDP datagram cross masquerade, and the fragmented reply comes back', () => {
  const { send, batch, stats, sw } = host();
  const payload = big(3000);
  const frags = fragments4({ src: A.ip, dst: FAR, id: 0x1234, l4: udp({ srcPort: 40000, dstPort: 53, payload }) }, 1480);
  assert.is(frags.length, 3);
  const out: Uint8Array[] = [];
  for (const f of frags) out.push(...on(send(0, eth4(A.mac, GW0.mac, f)), 2));
  const w = reassemble4(out);
  assert.is(w.src, GW1.ip, 'every fragment leaves with the external address');
  assert.is(w.dst, FAR);
  assert.is(w.ttl, 63);
  assert.ok(verifyChecksums(w.frame), 'the reassembled datagram has a correct UDP checksum');
  const d = dissect(w.frame);
  assert.is(d.udp!.dstPort, 53);
  assert.equal(d.payload, payload);
  for (const f of out) assert.is(dissect(f).dst, R.mac, 'to the next hop');
  // The reply, fragmented by the server, in one batch.
  const sport = d.udp!.srcPort;
  const back = fragments4({ src: FAR, dst: GW1.ip, id: 0x0777, l4: udp({ srcPort: 53, dstPort: sport, payload: big(2000) }) }, 1200);
  const r = reassemble4(on(batch(back.map((f) => [2, eth4(R.mac, GW1.mac, f)] as [number, Uint8Array])), 0));
  assert.is(r.dst, A.ip);
  assert.ok(verifyChecksums(r.frame));
  assert.is(dissect(r.frame).udp!.dstPort, 40000);
  assert.is(sw.router.connections().length, 1, 'one connection for both datagrams');
  assert.is(sw.dp.exports.frag_count(), 0, 'complete datagrams leave nothing in the fragment table');
  assert.is(stats().frag_held, 0);
});

test('out-of-order fragments through a UDP port mapping: held until the first, then all translated', () => {
  const { send, batch, stats, drops, sw } = host();
  const payload = big(4000);
  const frags = fragments4({ src: X.ip, dst: GW1.ip, id: 42, l4: udp({ srcPort: 33000, dstPort: 5353, payload }) }, 1480);
  assert.is(frags.length, 3);
  // The last and the middle come first, each in a batch of its own: held, nothing leaves.
  assert.equal(send(2, eth4(X.mac, GW1.mac, frags[2])), []);
  assert.equal(send(2, eth4(X.mac, GW1.mac, frags[1])), []);
  assert.is(stats().frag_held, 2);
  // The first: it and the two held ones leave, to B.
  const out = on(send(2, eth4(X.mac, GW1.mac, frags[0])), 1);
  assert.is(out.length, 3);
  assert.is(stats().frag_released, 2);
  const w = reassemble4(out);
  assert.is(w.src, X.ip);
  assert.is(w.dst, B.ip, 'destination translated in every fragment');
  assert.ok(verifyChecksums(w.frame));
  const d = dissect(w.frame);
  assert.is(d.udp!.dstPort, 53);
  assert.equal(d.payload, payload);
  assert.equal(drops(), {});
  // Reversed within one batch.
  const again = fragments4({ src: X.ip, dst: GW1.ip, id: 43, l4: udp({ srcPort: 33001, dstPort: 5353, payload }) }, 1480).reverse();
  const w2 = reassemble4(on(batch(again.map((f) => [2, eth4(X.mac, GW1.mac, f)] as [number, Uint8Array])), 1));
  assert.is(w2.dst, B.ip);
  assert.ok(verifyChecksums(w2.frame));
  assert.is(sw.dp.exports.frag_count(), 0);
});

test('a fragmented echo (ping -s 3000) crosses masquerade both ways', () => {
  const { batch } = host();
  const data = big(3000);
  const req = fragments4({ src: A.ip, dst: FAR, id: 7, l4: icmp({ type: 8, id: 0x4242, seq: 1, payload: data }) }, 1480);
  const w = reassemble4(on(batch(req.map((f) => [0, eth4(A.mac, GW0.mac, f)] as [number, Uint8Array])), 2));
  assert.is(w.src, GW1.ip);
  assert.ok(verifyChecksums(w.frame), 'ICMP checksum of the whole message');
  const id = dissect(w.frame).icmp!.id!;
  const rep = fragments4({ src: FAR, dst: GW1.ip, id: 99, l4: icmp({ type: 0, id, seq: 1, payload: data }) }, 1480);
  const r = reassemble4(on(batch(rep.reverse().map((f) => [2, eth4(R.mac, GW1.mac, f)] as [number, Uint8Array])), 0));
  assert.is(r.dst, A.ip);
  assert.is(dissect(r.frame).icmp!.id, 0x4242, 'the echo id translated back');
  assert.ok(verifyChecksums(r.frame));
});

test('ping -s 3000 the gateway: answered fragment by fragment, one fresh identification, the whole reply valid', () => {
  const { batch, send, drops } = host();
  const data = big(3000);
  const req = fragments4({ src: A.ip, dst: GW0.ip, id: 0x3535, l4: icmp({ type: 8, id: 0x99, seq: 1, payload: data }) }, 1480);
  const out = on(batch(req.map((f) => [0, eth4(A.mac, GW0.mac, f)] as [number, Uint8Array])), 0);
  assert.is(out.length, 3);
  const ids = new Set(out.map((f) => (f[18] << 8) | f[19]));
  assert.is(ids.size, 1, 'one identification for the reply');
  assert.not.ok(ids.has(0x3535), 'not the request\'s');
  const w = reassemble4(out);
  assert.is(w.src, GW0.ip);
  assert.is(w.dst, A.ip);
  assert.ok(verifyChecksums(w.frame), 'the reply\'s ICMP checksum over the whole message');
  const d = dissect(w.frame);
  assert.is(d.icmp!.type, 0);
  assert.is(d.icmp!.id, 0x99);
  assert.equal(d.payload, data);
  // Out of order: the later ones wait for the first, then are answered with it.
  const req2 = fragments4({ src: A.ip, dst: GW0.ip, id: 0x3536, l4: icmp({ type: 8, id: 0x99, seq: 2, payload: data }) }, 1480);
  assert.equal(send(0, eth4(A.mac, GW0.mac, req2[2])), []);
  const out2 = on(batch([[0, eth4(A.mac, GW0.mac, req2[1])], [0, eth4(A.mac, GW0.mac, req2[0])]]), 0);
  const w2 = reassemble4(out2);
  assert.ok(verifyChecksums(w2.frame));
  assert.is(dissect(w2.frame).icmp!.seq, 2);
  // Anything else in fragments to the gateway is not delivered.
  const u = fragments4({ src: A.ip, dst: GW0.ip, id: 0x3537, l4: udp({ srcPort: 1, dstPort: 9, payload: data }) }, 1480);
  assert.equal(batch(u.map((f) => [0, eth4(A.mac, GW0.mac, f)] as [number, Uint8Array])), []);
  assert.is(drops().ip_fragment, 3);
});

test('IPv6 fragments follow their connection, in order and out of order', () => {
  const { batch, send, stats } = host();
  const payload = big(3000);
  const frags = fragments6({ src: A.ip6, dst: C.ip6, id: 0xabcdef01, l4: udp({ srcPort: 5000, dstPort: 6000, payload }) }, 1232);
  assert.is(frags.length, 3);
  const w = reassemble6(on(batch(frags.map((f) => [0, eth6(A.mac, GW0.mac, f)] as [number, Uint8Array])), 2));
  assert.is(w.dst, C.ip6);
  assert.is(w.ttl, 63);
  assert.ok(verifyChecksums(w.frame));
  assert.equal(dissect(w.frame).payload, payload);
  // The reply, last fragment first.
  const back = fragments6({ src: C.ip6, dst: A.ip6, id: 5, l4: udp({ srcPort: 6000, dstPort: 5000, payload }) }, 1232);
  assert.equal(send(2, eth6(C.mac, GW1.mac, back[2])), []);
  assert.is(stats().frag_held, 1);
  const out = on(batch([[2, eth6(C.mac, GW1.mac, back[0])], [2, eth6(C.mac, GW1.mac, back[1])]]), 0);
  const r = reassemble6(out);
  assert.is(r.dst, A.ip6);
  assert.ok(verifyChecksums(r.frame));
});

test('IPv6 atomic fragments (offset 0, M clear) are whole packets (RFC 6946)', () => {
  const { send, drops, sw } = host();
  const pkt = ipv6({ src: A.ip6, dst: C.ip6, extensions: [fragHeader(0, false, 77)], payload: udp({ srcPort: 1, dstPort: 2, payload: big(40) }) });
  const out = on(send(0, eth6(A.mac, GW0.mac, pkt.bytes)), 2);
  assert.is(out.length, 1);
  assert.ok(verifyChecksums(out[0]));
  assert.is(sw.router.connections().length, 1, 'tracked as a connection (ports read after the Fragment header)');
  assert.is(sw.dp.exports.frag_count(), 0, 'no datagram awaited');
  assert.equal(drops(), {});
});

test('the trace tells a held fragment and one that follows its first fragment', () => {
  const { sw, send } = host();
  const frags = fragments4({ src: A.ip, dst: FAR, id: 21, l4: udp({ srcPort: 40000, dstPort: 53, payload: big(3000) }) }, 1480);
  const held = sw.trace(0, eth4(A.mac, GW0.mac, frags[1]));
  assert.ok(held.steps.some((s) => s.step === 'fragment' && /held/.test(s.text)), JSON.stringify(held.steps));
  send(0, eth4(A.mac, GW0.mac, frags[0]));
  const follows = sw.trace(0, eth4(A.mac, GW0.mac, frags[1]));
  assert.ok(follows.steps.some((s) => s.step === 'fragment' && /follows its first fragment: ports 40000 -> 53/.test(s.text)), JSON.stringify(follows.steps));
  assert.is(follows.output.length, 1);
});

// ---- attacks -------------------------------------------------------------------------------------

test('overlapping fragments condemn the datagram: ip_fragment_overlap', () => {
  const { send, drops } = host();
  const frags = fragments4({ src: A.ip, dst: FAR, id: 1, l4: udp({ srcPort: 40000, dstPort: 53, payload: big(3000) }) }, 1480);
  assert.is(on(send(0, eth4(A.mac, GW0.mac, frags[0])), 2).length, 1);
  // A fragment at offset 8 rewriting the UDP header the first fragment carried (RFC 1858).
  const evil = ipv4({ src: A.ip, dst: FAR, id: 1, mf: true, fragOffset: 1, payload: rawL4(17, big(16)) }).bytes;
  assert.equal(send(0, eth4(A.mac, GW0.mac, evil)), []);
  assert.is(drops().ip_fragment_overlap, 1);
  // Everything after it of that datagram is dropped too.
  assert.equal(send(0, eth4(A.mac, GW0.mac, frags[1])), []);
  assert.equal(send(0, eth4(A.mac, GW0.mac, frags[2])), []);
  assert.is(drops().ip_fragment_overlap, 3);
  // An exact duplicate is no overlap: a retransmission passes.
  const ok = fragments4({ src: A.ip, dst: FAR, id: 2, l4: udp({ srcPort: 40000, dstPort: 53, payload: big(3000) }) }, 1480);
  send(0, eth4(A.mac, GW0.mac, ok[0]));
  assert.is(on(send(0, eth4(A.mac, GW0.mac, ok[1])), 2).length, 1);
  assert.is(on(send(0, eth4(A.mac, GW0.mac, ok[1])), 2).length, 1);
  assert.is(drops().ip_fragment_overlap, 3);
});

test('tiny first fragments are parse drops: ipv4_tiny_fragment, ipv6_tiny_fragment', () => {
  const { send, drops } = host();
  // A TCP first fragment holding 8 bytes of its 20-byte header.
  const seg = tcp({ srcPort: 1000, dstPort: 8080, flags: 'S' }).build(parseIPv4(X.ip), parseIPv4(GW1.ip));
  assert.equal(send(2, eth4(X.mac, GW1.mac, ipv4({ src: X.ip, dst: GW1.ip, id: 5, mf: true, payload: rawL4(6, seg.subarray(0, 8)) }).bytes)), []);
  assert.is(drops().ipv4_tiny_fragment, 1);
  const u = udp({ srcPort: 1, dstPort: 2, payload: big(100) }).build(parseIPv6(A.ip6), parseIPv6(C.ip6));
  assert.equal(send(0, eth6(A.mac, GW0.mac, ipv6({ src: A.ip6, dst: C.ip6, extensions: [fragHeader(0, true, 9)], payload: rawL4(17, u.subarray(0, 4)) }).bytes)), []);
  assert.is(drops().ipv6_tiny_fragment, 1);
});

test('a datagram past 65535 bytes (ping of death): ip_fragment_oversized', () => {
  const { send, drops } = host();
  const f = ipv4({ src: A.ip, dst: FAR, id: 3, mf: false, fragOffset: 8189, payload: rawL4(1, big(100)) }).bytes;
  assert.equal(send(0, eth4(A.mac, GW0.mac, f)), []);
  assert.is(drops().ip_fragment_oversized, 1);
});

test('more than 64 fragments, and a non-last fragment not a multiple of 8 bytes', () => {
  const { send, drops } = host();
  const l4 = udp({ srcPort: 40000, dstPort: 53, payload: big(8 * 70) }).build(parseIPv4(A.ip), parseIPv4(FAR));
  let sent = 0;
  for (let off = 0; off < l4.length; off += 8) {
    const out = send(0, eth4(A.mac, GW0.mac, ipv4({ src: A.ip, dst: FAR, id: 4, mf: off + 8 < l4.length, fragOffset: off / 8, payload: rawL4(17, l4.subarray(off, off + 8)) }).bytes));
    sent += on(out, 2).length;
  }
  assert.is(sent, 64, 'the first 64 fragments pass');
  assert.is(drops().ip_fragment_too_many, 71 - 64, 'the 65th condemns the datagram: it and the rest');
  assert.is(drops().ip_fragment_overlap, undefined);
  const odd = ipv4({ src: A.ip, dst: FAR, id: 5, mf: true, fragOffset: 10, payload: rawL4(17, big(13)) }).bytes;
  assert.equal(send(0, eth4(A.mac, GW0.mac, odd)), []);
  assert.is(drops().ip_fragment_bad_length, 1);
});

test('a held fragment whose first never comes is dropped on timeout: ip_fragment_timeout', () => {
  const { send, drops, stats, tick, rt, sw } = host();
  rt.setFragmentTimeout(5000);
  const frags = fragments4({ src: X.ip, dst: GW1.ip, id: 8, l4: udp({ srcPort: 1, dstPort: 5353, payload: big(3000) }) }, 1480);
  assert.equal(send(2, eth4(X.mac, GW1.mac, frags[1])), []);
  assert.is(stats().frag_held, 1);
  tick(6000);
  // The sweep runs with every batch; the first fragment now starts a new datagram.
  const out = on(send(2, eth4(X.mac, GW1.mac, frags[0])), 1);
  assert.is(out.length, 1, 'only the first fragment: the held one is gone');
  assert.is(drops().ip_fragment_timeout, 1);
  assert.is(stats().frag_expired, 1);
  assert.is(sw.dp.exports.frag_timeout(), 5000);
});

test('a full fragment table and a full hold area are counted drops', () => {
  const { send, drops, sw, tick } = host({ connections: 1024 });
  const cap = sw.dp.exports.frag_capacity();
  const slots = sw.dp.exports.frag_hold_slots();
  assert.is(cap, 256);
  assert.is(slots, 64);
  const later = (id: number) => ipv4({ src: X.ip, dst: GW1.ip, id, mf: true, fragOffset: 185, payload: rawL4(17, big(8)) }).bytes;
  // Out-of-order fragments of `slots` datagrams fill the hold area; one more cannot be held.
  for (let i = 0; i < slots; i++) send(2, eth4(X.mac, GW1.mac, later(i)));
  assert.is(drops().ip_fragment_buffer_full, undefined);
  send(2, eth4(X.mac, GW1.mac, later(slots)));
  assert.is(drops().ip_fragment_buffer_full, 1);
  // First fragments of other datagrams fill the table.
  const first = (id: number) => ipv4({ src: A.ip, dst: FAR, id, mf: true, payload: rawL4(17, udp({ srcPort: 40000, dstPort: 53, payload: big(1000) }).build(parseIPv4(A.ip), parseIPv4(FAR)).subarray(0, 8)) }).bytes;
  for (let i = 0; sw.dp.exports.frag_count() < cap; i++) send(0, eth4(A.mac, GW0.mac, first(1000 + i)));
  assert.is(drops().ip_fragment_table_full, undefined);
  assert.equal(send(0, eth4(A.mac, GW0.mac, first(5000))), []);
  assert.is(drops().ip_fragment_table_full, 1);
  // Once they have expired, a new datagram finds room even before the sweep has passed them all.
  tick(31_000);
  assert.is(on(send(0, eth4(A.mac, GW0.mac, first(5001))), 2).length, 1);
  assert.is(drops().ip_fragment_table_full, 1);
});

test('a later fragment whose first made no connection follows its decision: ip_fragment', () => {
  const { send, drops } = host();
  // To the gateway on a port nothing is mapped to: the first fragment is for the router itself.
  const frags = fragments4({ src: X.ip, dst: GW1.ip, id: 11, l4: udp({ srcPort: 1, dstPort: 9999, payload: big(3000) }) }, 1480);
  for (const f of frags) assert.equal(send(2, eth4(X.mac, GW1.mac, f)), []);
  assert.is(drops().ip_fragment, 3);
});

// ---- port ACLs -----------------------------------------------------------------------------------

test('fragments through port ACLs follow the first fragment: blocked datagrams lose every fragment', () => {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now });
  const a = sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  const out: Out = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  const send = (port: number, f: Uint8Array) => { out.length = 0; sw.inject([[port, f]], ++now); return out.slice(); };
  const Bl = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };
  send(1, eth4(Bl.mac, 'ff:ff:ff:ff:ff:ff', ipv4({ src: Bl.ip, dst: '10.0.0.255', payload: udp({ srcPort: 9, dstPort: 9 }) }).bytes));
  sw.acls.setPortAcl(a.id, { rules: [{ Action: 'Block', Direction: 'Out', Priority: 100, Protocols: '17', RemotePorts: '53' }], defaultOut: 'Allow', defaultIn: 'Allow' });
  const dgram = (id: number, dport: number) => fragments4({ src: A.ip, dst: Bl.ip, id, l4: udp({ srcPort: 7000, dstPort: dport, payload: big(3000) }) }, 1480).map((f) => eth4(A.mac, Bl.mac, f));
  // Blocked: the first as acl_blocked, the rest as ip_fragment.
  for (const f of dgram(1, 53)) assert.equal(send(a.id, f), []);
  assert.is(sw.counters().drops.acl_blocked, 1);
  assert.is(sw.counters().drops.ip_fragment, 2);
  // Allowed, in order: all pass.
  const ok = dgram(2, 54);
  const passed = ok.flatMap((f) => send(a.id, f).map(([, x]) => x));
  assert.is(passed.length, 3);
  assert.ok(verifyChecksums(reassemble4(passed).frame));
  // Allowed, out of order at the Out ACL: held, then passed after the first.
  const late = dgram(3, 55);
  assert.equal(send(a.id, late[2]), []);
  assert.equal(send(a.id, late[1]), []);
  const all = send(a.id, late[0]);
  assert.is(all.length, 3);
  assert.ok(verifyChecksums(reassemble4(all.map(([, x]) => x)).frame));
  // Out of order and blocked: the held ones are dropped when the first is.
  const bad = dgram(4, 53);
  send(a.id, bad[1]);
  assert.equal(send(a.id, bad[0]), []);
  assert.is(sw.counters().drops.ip_fragment, 3);
});

// ---- MTU -----------------------------------------------------------------------------------------

test('MTU: DF set gets ICMP fragmentation needed with the MTU; mtu_exceeded', () => {
  const { send, drops, rt } = host();
  rt.setMtu(1, 1000);
  const pkt = ipv4({ src: A.ip, dst: FAR, df: true, payload: udp({ srcPort: 40000, dstPort: 53, payload: big(1400) }) }).bytes;
  const out = send(0, eth4(A.mac, GW0.mac, pkt));
  assert.is(out.length, 1);
  assert.is(out[0][0], 0, 'back to the sender');
  assert.ok(verifyChecksums(out[0][1]));
  const d = dissect(out[0][1]);
  assert.is(d.ipv4!.src, GW0.ip);
  assert.is(d.ipv4!.dst, A.ip);
  assert.is(d.icmp!.type, 3);
  assert.is(d.icmp!.code, 4);
  const ic = out[0][1].subarray(14 + 20);
  assert.is((ic[6] << 8) | ic[7], 1000, 'next-hop MTU');
  assert.is(formatIPv4(ic, 8 + 12), A.ip, 'quotes the packet as A sent it (untranslated)');
  assert.is(drops().mtu_exceeded, 1);
});

test('MTU: without DF the router fragments (RFC 791), the fragments reassemble to the translated datagram', () => {
  const { send, stats, rt } = host();
  rt.setMtu(1, 576);
  const payload = big(1400);
  const out = on(send(0, eth4(A.mac, GW0.mac, ipv4({ src: A.ip, dst: FAR, id: 0x5151, payload: udp({ srcPort: 40000, dstPort: 53, payload }) }).bytes)), 2);
  assert.is(out.length, 3);
  for (const f of out) assert.ok(f.length - 14 <= 576, 'each fragment fits the MTU');
  assert.is(stats().fragments_made, 3);
  const w = reassemble4(out);
  assert.is(w.src, GW1.ip);
  assert.is(w.ttl, 63);
  assert.ok(verifyChecksums(w.frame));
  assert.equal(dissect(w.frame).payload, payload);
  // A fragment that is itself too large is fragmented again; the last piece keeps MF.
  const frags = fragments4({ src: A.ip, dst: FAR, id: 0x5252, l4: udp({ srcPort: 40000, dstPort: 53, payload: big(2500) }) }, 1480);
  const out2 = frags.flatMap((f) => on(send(0, eth4(A.mac, GW0.mac, f)), 2));
  assert.ok(out2.length > 3);
  const w2 = reassemble4(out2);
  assert.ok(verifyChecksums(w2.frame));
  assert.equal(dissect(w2.frame).payload, big(2500));
});

test('MTU: the router\'s fragments pass an endpoint\'s In ACL as fragments of the connection', () => {
  const { send, batch, drops, rt, sw } = host();
  sw.acls.setPortAcl(0, { rules: [], defaultIn: 'Block', defaultOut: 'Allow' });
  rt.setMtu(0, 576);
  const req = on(send(0, eth4(A.mac, GW0.mac, ipv4({ src: A.ip, dst: FAR, payload: udp({ srcPort: 40000, dstPort: 53, payload: big(20) }) }).bytes)), 2);
  const sport = dissect(req[0]).udp!.srcPort;
  const payload = big(1400);
  const out = on(batch([[2, eth4(R.mac, GW1.mac, ipv4({ src: FAR, dst: GW1.ip, id: 9, payload: udp({ srcPort: 53, dstPort: sport, payload }) }).bytes)]]), 0);
  assert.is(out.length, 3, 'every piece passes the Block-by-default In ACL: they follow the first');
  const w = reassemble4(out);
  assert.is(w.dst, A.ip);
  assert.ok(verifyChecksums(w.frame));
  assert.equal(dissect(w.frame).payload, payload);
  assert.equal(drops(), {});
});

test('MTU: IPv6 gets Packet Too Big with the MTU, never fragmented', () => {
  const { send, drops, rt } = host();
  rt.setMtu(1, 1280);
  const out = send(0, eth6(A.mac, GW0.mac, ipv6({ src: A.ip6, dst: C.ip6, payload: udp({ srcPort: 1, dstPort: 2, payload: big(1400) }) }).bytes));
  assert.is(out.length, 1);
  assert.is(out[0][0], 0);
  assert.ok(verifyChecksums(out[0][1]));
  const d = dissect(out[0][1]);
  assert.is(d.icmpv6!.type, 2);
  const ic = out[0][1].subarray(14 + 40);
  assert.is(new DataView(ic.buffer, ic.byteOffset).getUint32(4), 1280);
  assert.is(drops().mtu_exceeded, 1);
  // A packet that fits passes.
  assert.is(on(send(0, eth6(A.mac, GW0.mac, ipv6({ src: A.ip6, dst: C.ip6, payload: udp({ srcPort: 1, dstPort: 2, payload: big(1000) }) }).bytes)), 2).length, 1);
});

test('MTU: the errors are rate-limited like other ICMP errors', () => {
  const { send, drops, stats, rt } = host();
  rt.setMtu(1, 1000);
  rt.setRateLimit('icmpErrors', 1, 2);
  const pkt = ipv4({ src: A.ip, dst: FAR, df: true, payload: udp({ srcPort: 40000, dstPort: 53, payload: big(1400) }) }).bytes;
  let errors = 0;
  for (let i = 0; i < 5; i++) errors += send(0, eth4(A.mac, GW0.mac, pkt), 0).length;
  assert.is(errors, 2);
  assert.is(stats().icmp_rate_limited, 3);
  assert.is(drops().mtu_exceeded, 5);
});

test('MTU: later fragments carry only the options with the copy flag (RFC 791)', () => {
  const { send, rt } = host();
  rt.setMtu(1, 576);
  // A copied option (type 0x94, Router Alert: copy flag set) and one that is not (type 7, Record Route).
  const options = Uint8Array.from([0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0]);
  const payload = big(1200);
  const out = on(send(0, eth4(A.mac, GW0.mac, ipv4({ src: A.ip, dst: FAR, id: 0x6161, options, payload: udp({ srcPort: 40000, dstPort: 53, payload }) }).bytes)), 2);
  assert.ok(out.length >= 3);
  const ihl = (f: Uint8Array) => (f[14] & 15) * 4;
  assert.is(ihl(out[0]), 32, 'the first fragment keeps every option');
  for (const f of out.slice(1)) {
    assert.is(ihl(f), 24, 'later fragments: the Router Alert, padded to 4 bytes');
    assert.equal([...f.subarray(34, 38)], [0x94, 4, 0, 0]);
    assert.ok(f.length - 14 <= 576);
  }
  const w = reassemble4(out);
  assert.ok(verifyChecksums(w.frame));
  assert.equal(dissect(w.frame).payload, payload);
});

test('fuzz: every fragment is forwarded once or counted once under one drop reason, held ones included', () => {
  for (const seed of [1, 2, 3]) {
    const { batch, drops, tick, sw } = host();
    let x = seed * 2654435761;
    const rnd = (n: number) => { x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return x % n; };
    const dropsBefore = Object.values(drops()).reduce((a, b) => a + b, 0);
    let sent = 0, forwarded = 0;
    for (let b = 0; b < 150; b++) {
      const frames: Array<[number, Uint8Array]> = [];
      for (let k = 1 + rnd(6); k > 0; k--) {
        const id = rnd(6), v6 = rnd(3) === 0, first = rnd(3) === 0;
        const off = first ? 0 : 8 * (1 + rnd(400));
        const len = first ? 8 + 8 * rnd(40) : rnd(5) === 0 ? 1 + rnd(300) : 8 * (1 + rnd(40));
        const more = rnd(4) !== 0;
        const body = first ? udp({ srcPort: 40000 + id, dstPort: 53, payload: big(len + 200) }).build(parseIPv4(A.ip), parseIPv4(FAR)).subarray(0, len) : big(len);
        const l3 = v6
          ? ipv6({ src: A.ip6, dst: C.ip6, extensions: [fragHeader(off, more, id)], payload: rawL4(17, first ? udp({ srcPort: 40000 + id, dstPort: 53, payload: big(len + 200) }).build(parseIPv6(A.ip6), parseIPv6(C.ip6)).subarray(0, len) : body) }).bytes
          : ipv4({ src: A.ip, dst: FAR, id, mf: more, fragOffset: off / 8, payload: rawL4(17, body) }).bytes;
        frames.push([0, v6 ? eth6(A.mac, GW0.mac, l3) : eth4(A.mac, GW0.mac, l3)]);
      }
      sent += frames.length;
      forwarded += batch(frames, rnd(3) === 0 ? 2000 : 1).length;
    }
    // Past every datagram's timeout: what is still held is dropped.
    tick(31_000);
    for (let i = 0; i < 100 && sw.dp.exports.frag_count() > 0; i++) forwarded += batch([]).length; // the sweep visits 16 records a batch
    const counted = Object.values(drops()).reduce((a, b) => a + b, 0) - dropsBefore;
    assert.is(forwarded + counted, sent, `seed ${seed}: ${sent} in, ${forwarded} out, ${counted} dropped`);
    assert.is(sw.dp.exports.frag_count(), 0);
    assert.ok(sw.counters().stats.frag_held > 0 && forwarded > 0 && counted > 0, 'the corpus exercised holding, forwarding and dropping');
  }
});

test('the interface MTU is validated and defaults to 1500', () => {
  const { rt, sw } = host();
  assert.is(rt.interfaces.get(0)!.mtu, 1500);
  assert.throws(() => rt.setMtu(0, 67), /mtu/);
  assert.throws(() => rt.setMtu(0, 65536), /mtu/);
  assert.is(sw.dp.exports.iface_set_mtu(0, 10), -3);
  rt.setMtu(0, 9000);
  assert.is(rt.interfaces.get(0)!.mtu, 9000);
  assert.throws(() => rt.addInterface({ network: 5, mtu: 20 }), /mtu/);
});

test.run();
