// Host replies: traffic to a router address that nothing handles (no port mapping for its protocol and
// port, not an echo request) is answered as a Linux host with nothing listening answers it: TCP RST by
// RFC 9293's rules, ICMP port unreachable for UDP, protocol unreachable (IPv6: Parameter Problem,
// unrecognized Next Header) for the rest; rate-limited, from the address the request was sent to, with
// fresh IPv4 IDs; silent per interface on request. The request is counted as a drop either way. Exact
// frames out, checksums recomputed independently.
//
//   port 0  A  10.0.0.2 / fd00::2  ── network 1 ── if 0  10.0.0.1/24, fd00::1/64     GW0 02:6e:70:00:00:00
//   port 1  R  192.168.1.254       ── network 2 ── if 1  192.168.1.1/24 (external)    GW1 02:6e:70:00:00:01
//   port mapping tcp 8080 -> 10.0.0.3:80
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, tcp, udp, icmp, icmpv6, rawL4, dissect, verifyChecksums, type L4 } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1', ip6: 'fd00::1', ll: 'fe80::6e:70ff:fe00:0' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };
const payload = new Uint8Array([1, 2, 3, 4, 5]);

function host() {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: '10.0.0.3', internalPort: 80 });
  const send = (port: number, f: Uint8Array, dt = 1) => {
    now += dt;
    out.length = 0;
    sw.inject([[port, f]], now);
    return out.slice();
  };
  return { sw, rt, send };
}

function only(out: Array<[number, Uint8Array]>, port: number): Uint8Array {
  assert.is(out.length, 1, `exactly one frame out, got ${out.length}`);
  assert.is(out[0][0], port, 'egress port');
  assert.ok(verifyChecksums(out[0][1]), 'every checksum recomputes');
  return out[0][1];
}

const fromR = (l4: L4, dst = GW1.ip, id = 0x1234) => ethernet({ src: R.mac, dst: GW1.mac, payload: ipv4({ src: R.ip, dst, id, payload: l4 }) });
// The router's reply to R, with the IPv4 ID it chose (checked apart: fresh, not the request's); ICMP
// errors have precedence Internetwork Control (TOS 0xc0), RSTs DF set, as Linux's.
const toR = (l4: L4, id: number, src = GW1.ip) => ethernet({ src: GW1.mac, dst: R.mac, payload: ipv4({ src, dst: R.ip, id, tos: l4.protocol === 1 ? 0xc0 : 0, df: l4.protocol === 6, payload: l4 }) });
const idOf = (f: Uint8Array) => dissect(f).ipv4!.id;

test('IPv4: a SYN to an unmapped port of the external address gets RST+ACK (seq 0, ack = SEG.SEQ + 1)', () => {
  const { send, sw } = host();
  const f = only(send(1, fromR(tcp({ srcPort: 40000, dstPort: 22, seq: 1000, flags: 'S', window: 64240 }))), 1);
  assert.not.equal(idOf(f), 0x1234, 'a fresh IP ID, not the request\'s');
  assert.equal(f, toR(tcp({ srcPort: 22, dstPort: 40000, seq: 0, ack: 1001, flags: 'RA', window: 0 }), idOf(f)));
  const c = sw.counters();
  assert.equal(c.drops, { local_port_unmapped: 1 }, 'the SYN is still a counted drop');
  assert.is(c.stats.host_resets, 1);
});

test('IPv4: RFC 9293 §3.10.7.1 — an ACK gets RST with seq = SEG.ACK; SYN and FIN count in SEG.LEN; a RST gets nothing', () => {
  const { send, sw } = host();
  let f = only(send(1, fromR(tcp({ srcPort: 40000, dstPort: 22, seq: 5, ack: 77777, flags: 'PA', payload }))), 1);
  assert.equal(f, toR(tcp({ srcPort: 22, dstPort: 40000, seq: 77777, ack: 0, flags: 'R', window: 0 }), idOf(f)));
  f = only(send(1, fromR(tcp({ srcPort: 40000, dstPort: 22, seq: 0xfffffffe, flags: 'SF', payload }))), 1);
  assert.equal(f, toR(tcp({ srcPort: 22, dstPort: 40000, seq: 0, ack: (0xfffffffe + 5 + 2) >>> 0, flags: 'RA', window: 0 }), idOf(f)));
  assert.equal(send(1, fromR(tcp({ srcPort: 40000, dstPort: 22, seq: 5, flags: 'R' }))), []);
  assert.equal(sw.counters().drops, { local_port_unmapped: 3 });
});

test('IPv4: UDP to an unmapped port, or to a port mapped for TCP only, gets port unreachable quoting it', () => {
  const { send, sw } = host();
  for (const port of [53, 8080]) {
    const req = fromR(udp({ srcPort: 5353, dstPort: port, payload }));
    const f = only(send(1, req), 1);
    assert.equal(f, toR(icmp({ type: 3, code: 3, payload: req.subarray(14) }), idOf(f)));
  }
  assert.equal(sw.counters().drops, { local_port_unmapped: 2 });
  assert.is(sw.counters().stats.icmp_errors, 2);
});

test('IPv4: the reply comes from the address the request was sent to (the external address, asked from inside)', () => {
  const { send } = host();
  const req = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: GW1.ip, payload: tcp({ srcPort: 1, dstPort: 25, seq: 9, flags: 'S' }) }) });
  const f = only(send(0, req), 0);
  const d = dissect(f);
  assert.equal([d.ipv4!.src, d.ipv4!.dst, d.tcp!.flagString, d.tcp!.ack], [GW1.ip, A.ip, 'RA', 10]);
});

test('IPv4: another protocol gets protocol unreachable; IGMP gets nothing; all counted local_unsupported', () => {
  const { send, sw } = host();
  const gre = fromR(rawL4(47, new Uint8Array(8)));
  const f = only(send(1, gre), 1);
  assert.equal(f, toR(icmp({ type: 3, code: 2, payload: gre.subarray(14) }), idOf(f)));
  assert.equal(send(1, fromR(rawL4(2, new Uint8Array(8)))), []);
  assert.equal(sw.counters().drops, { local_unsupported: 2 });
});

test('IPv4: a corrupt segment or header to the router is not answered (local_bad_checksum)', () => {
  const { send, sw } = host();
  assert.equal(send(1, fromR(tcp({ srcPort: 1, dstPort: 22, flags: 'S', checksum: 0xbad }))), []);
  assert.equal(send(1, ethernet({ src: R.mac, dst: GW1.mac, payload: ipv4({ src: R.ip, dst: GW1.ip, checksum: 0xbad, payload: udp({ srcPort: 1, dstPort: 2 }) }) })), []);
  assert.equal(send(1, fromR(icmp({ type: 8, id: 1, checksum: 0xbad }))), []);
  assert.equal(sw.counters().drops, { local_bad_checksum: 3 });
});

test('silent interfaces: no RST, no unreachable, the request still counted; the other interface still answers', () => {
  const { send, sw, rt } = host();
  rt.setSilent(1, true);
  assert.equal(send(1, fromR(tcp({ srcPort: 1, dstPort: 22, flags: 'S' }))), []);
  assert.equal(send(1, fromR(udp({ srcPort: 1, dstPort: 53 }))), []);
  assert.equal(send(1, fromR(rawL4(47, new Uint8Array(8)))), []);
  assert.equal(sw.counters().drops, { local_port_unmapped: 2, local_unsupported: 1 });
  // Echo is not a host reply of this kind: still answered.
  only(send(1, fromR(icmp({ type: 8, id: 1, payload }))), 1);
  // Inside (interface 0) answers.
  only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: GW1.ip, payload: udp({ srcPort: 1, dstPort: 53 }) }) })), 0);
  rt.setSilent(1, false);
  only(send(1, fromR(tcp({ srcPort: 1, dstPort: 22, flags: 'S' }))), 1);
  assert.throws(() => rt.setSilent(9, true), /interface: no interface 9/);
  assert.throws(() => rt.addInterface({ network: 3, silent: 'yes' as unknown as boolean }), /silent: expected true or false/);
  const quiet = rt.addInterface({ network: 3, address: '172.16.0.1/24', silent: true });
  assert.is(rt.interfaces.get(quiet)!.silent, true);
});

test('host replies share the ICMP error rate limit', () => {
  const { send, sw, rt } = host();
  rt.setRateLimit('icmpErrors', 1, 2);
  let replies = 0;
  for (let i = 0; i < 5; i++) replies += send(1, fromR(tcp({ srcPort: 1000 + i, dstPort: 22, flags: 'S' })), 0).length;
  assert.is(replies, 2);
  assert.is(sw.counters().stats.icmp_rate_limited, 3);
  assert.equal(sw.counters().drops, { local_port_unmapped: 5 });
});

test('the trace shows the reply and the counted request', () => {
  const { sw } = host();
  const t = sw.trace(1, fromR(tcp({ srcPort: 1, dstPort: 22, flags: 'S' })));
  assert.ok(t.steps.some((s) => s.step === 'local' && /TCP RST/.test(s.text)), t.text);
  assert.is(t.dropped, 'local_port_unmapped');
  assert.is(t.output.length, 1);
});

// ---- IPv6 ----

const fromA6 = (l4: L4 | Uint8Array, o: { dst?: string; protocol?: number; extensions?: Parameters<typeof ipv6>[0]['extensions'] } = {}) =>
  ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip6, dst: o.dst ?? GW0.ip6, protocol: o.protocol, extensions: o.extensions, payload: l4 }) });
const toA6 = (l4: L4, src = GW0.ip6) => ethernet({ src: GW0.mac, dst: A.mac, payload: ipv6({ src, dst: A.ip6, payload: l4 }) });

test('IPv6: RST for TCP, port unreachable (1, 4) for UDP, from the address asked (global or link-local)', () => {
  const { send, sw } = host();
  let f = only(send(0, fromA6(tcp({ srcPort: 40000, dstPort: 22, seq: 41, flags: 'S' }))), 0);
  assert.equal(f, toA6(tcp({ srcPort: 22, dstPort: 40000, seq: 0, ack: 42, flags: 'RA', window: 0 })));
  f = only(send(0, fromA6(tcp({ srcPort: 40000, dstPort: 22, seq: 41, ack: 99, flags: 'A' }), { dst: GW0.ll })), 0);
  assert.equal(f, toA6(tcp({ srcPort: 22, dstPort: 40000, seq: 99, ack: 0, flags: 'R', window: 0 }), GW0.ll));
  const req = fromA6(udp({ srcPort: 5353, dstPort: 53, payload }));
  f = only(send(0, req), 0);
  assert.equal(f, toA6(icmpv6({ type: 1, code: 4, payload: req.subarray(14) })));
  assert.equal(sw.counters().drops, { local_port_unmapped: 3 });
});

test('IPv6: an unknown upper layer gets Parameter Problem code 1 pointing at the Next Header that named it; 59 gets nothing', () => {
  const { send, sw } = host();
  const gre = fromA6(new Uint8Array(8), { protocol: 47 });
  let f = only(send(0, gre), 0);
  assert.equal(f, toA6(icmpv6({ type: 4, code: 1, rest: new Uint8Array([0, 0, 0, 6]), payload: gre.subarray(14) })));
  // Behind a Destination Options header (8 bytes at 40): its Next Header field, at 40.
  const dstopts = { nextHeaderType: 60, bytes: new Uint8Array([0, 0, 1, 4, 0, 0, 0, 0]) };
  const behind = fromA6(new Uint8Array(8), { protocol: 47, extensions: [dstopts] });
  f = only(send(0, behind), 0);
  assert.equal(f, toA6(icmpv6({ type: 4, code: 1, rest: new Uint8Array([0, 0, 0, 40]), payload: behind.subarray(14) })));
  assert.equal(send(0, fromA6(new Uint8Array(0), { protocol: 59 })), []);
  assert.equal(sw.counters().drops, { local_unsupported: 3 });
});

test('IPv6: a zero UDP checksum or a wrong one is not answered (local_bad_checksum); silent interfaces stay silent', () => {
  const { send, sw, rt } = host();
  assert.equal(send(0, fromA6(udp({ srcPort: 1, dstPort: 53, checksum: 0 }))), []);
  assert.equal(send(0, fromA6(tcp({ srcPort: 1, dstPort: 22, flags: 'S', checksum: 0xbad }))), []);
  assert.equal(send(0, fromA6(icmpv6({ type: 128, id: 1, checksum: 0xbad }))), []);
  assert.equal(sw.counters().drops, { local_bad_checksum: 3 });
  rt.setSilent(0, true);
  assert.equal(send(0, fromA6(tcp({ srcPort: 1, dstPort: 22, flags: 'S' }))), []);
  assert.equal(send(0, fromA6(new Uint8Array(8), { protocol: 47 })), []);
  assert.equal(sw.counters().drops, { local_bad_checksum: 3, local_port_unmapped: 1, local_unsupported: 1 });
});

test.run();
