// The wire layer (assembly/wire/*) and the parse stage (assembly/nodes/parse.ts), held against frames
// written out as bytes. The known frames below were produced by an independent Python script
// (struct + socket.inet_pton, its own RFC 1071 sum) or taken from test/frames.test.ts, and pasted in:
// the dataplane's dissection of them is checked field by field through frame_parse/parse_result, and
// src/frames.ts builders are checked to produce the same bytes, so neither side is judged by itself.
//
// Then every kind of malformed frame must come back with exactly its drop reason, both from
// frame_parse and as a counted drop of a real Switch; the checksum helpers are compared with the
// TypeScript implementation and with full recomputation; and a seeded fuzz run checks that nothing
// traps, every drop is named, and the switch's counters add up.
import { test } from 'uvu';
import { readFileSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { Dataplane, Switch } from '../src/dataplane.ts';
import {
  arp, ethernet, icmp, icmpv6, internetChecksum, ipv4, ipv6, onesComplementSum, parseIPv4, parseIPv6, tcp, udp,
} from '../src/frames.ts';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
const eq = (actual: Uint8Array, expected: Uint8Array, msg?: string) => assert.is(toHex(actual), toHex(expected), msg);
const text = (s: string) => new TextEncoder().encode(s);
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

const A = '02:00:00:00:00:01';
const B = '02:00:00:00:00:02';
const BCAST = 'ff:ff:ff:ff:ff:ff';
const S4 = '10.0.0.1', D4 = '10.0.0.2', S6 = '2001:db8::1', D6 = '2001:db8::2';

// Fixed-seed PRNG (mulberry32), so every run sees the same "random" cases.
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  return { next, int, bytes };
}

// ---- the dataplane under test -------------------------------------------------------------------

const dp = new Dataplane({ maxPorts: 4, macEntries: 1024, batch: 16, rxBytes: 64 * 1024 });
const x = dp.exports;
const PARSE_REASONS = new Set([
  'eth_truncated', 'vlan_truncated', 'arp_truncated', 'arp_malformed', 'ipv4_truncated', 'ipv4_bad_version',
  'ipv4_bad_ihl', 'ipv4_bad_total_length', 'ipv4_bad_option', 'ipv4_tiny_fragment', 'ipv6_truncated',
  'ipv6_bad_version', 'ipv6_bad_payload_length', 'ipv6_bad_extension_header', 'ipv6_too_many_extension_headers',
  'tcp_truncated', 'tcp_bad_data_offset', 'tcp_bad_option', 'udp_truncated', 'udp_bad_length', 'icmp_truncated',
  'icmpv6_truncated',
]);

interface Parsed {
  reason: string;
  ethertype: number;
  l3: number;
  l4: number;
  l4len: number;
  protocol: number;
  flags: number;
  tci: number;
}

// Writes the frame at `offset` in the rx buffer, followed by `fill` bytes (which the parser must never
// look at), and parses it.
function parseFull(frame: Uint8Array, offset = 0, fill = 0xa5) {
  dp.views();
  dp.rxBuffer.fill(fill, offset, Math.min(dp.rxBuffer.length, offset + frame.length + 128));
  dp.rxBuffer.set(frame, offset);
  const addr = x.rx_buffer() + offset;
  const code = x.frame_parse(addr, frame.length);
  dp.views();
  const m = x.parse_result();
  const u = (o: number) => dp.dv.getUint32(m + o, true);
  return {
    code,
    frame: u(0), len: u(4),
    p: {
      reason: dp.reasons[code] ?? `unknown #${code}`,
      tci: u(20), ethertype: u(24), l3: u(28), l4: u(32), l4len: u(36), protocol: u(40), flags: u(44),
    } as Parsed,
    addr,
  };
}
const parse = (frame: Uint8Array): Parsed => parseFull(frame).p;
const reasonOf = (frame: Uint8Array): string => parseFull(frame).p.reason;

function expectMeta(frame: Uint8Array, want: Partial<Parsed>, msg?: string) {
  const full = { reason: 'none', tci: 0, l4: 0, l4len: 0, protocol: 0, flags: 0, ...want } as Parsed;
  const r = parseFull(frame);
  assert.is(r.frame, r.addr, 'record: frame address');
  assert.is(r.len, frame.length, 'record: length');
  assert.equal(r.p, full, msg);
}

// ---- known frames -------------------------------------------------------------------------------

const ETH_RAW = hex('02 00 00 00 00 02 02 00 00 00 00 01 88 b5 de ad');
const ETH_TAGGED = hex('02 00 00 00 00 02 02 00 00 00 00 01 81 00 b0 64 88 b5 de ad');
const ARP_REQ = hex(`
  ff ff ff ff ff ff 00 11 22 33 44 55 08 06
  00 01 08 00 06 04 00 01 00 11 22 33 44 55 c0 a8 01 64
  00 00 00 00 00 00 c0 a8 01 01`);
// UDP 5353 -> 53 "hello", IPv4 10.0.0.1 -> 10.0.0.2, id 0x1234, DF (test/frames.test.ts).
const UDP4 = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 08 00 45 00
  00 21 12 34 40 00 40 11 14 96 0a 00 00 01 0a 00
  00 02 14 e9 00 35 00 0d 92 e1 68 65 6c 6c 6f`);
// The same UDP datagram with a Router Alert option (94 04 00 00), IHL 6, id 1, DF, TTL 1.
const UDP4_OPT = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 08 00 46 00
  00 25 00 01 40 00 01 11 d0 c0 0a 00 00 01 0a 00
  00 02 94 04 00 00 14 e9 00 35 00 0d 92 e1 68 65
  6c 6c 6f`);
// TCP SYN 40000 -> 443 with MSS, SACK-permitted, timestamps, NOP, window scale (data offset 10).
const TCP4_OPT = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 08 00 45 00
  00 3c 55 aa 40 00 40 06 d1 0f 0a 00 00 01 0a 00
  00 02 9c 40 01 bb 11 22 33 44 00 00 00 00 a0 02
  fa f0 56 aa 00 00 02 04 05 b4 04 02 08 0a 00 00
  00 01 00 00 00 00 01 03 03 07`);
// ICMP echo request id 1 seq 1 "abcd", IPv4 id 2.
const ICMP4 = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 08 00 45 00
  00 20 00 02 00 00 40 01 66 d9 0a 00 00 01 0a 00
  00 02 08 00 33 37 00 01 00 01 61 62 63 64`);
// TCP SYN and UDP over IPv6 2001:db8::1 -> 2001:db8::2 (test/frames.test.ts).
const TCP6 = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 86 dd 60 00
  00 00 00 18 06 40 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 01 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 02 30 39 00 50 01 02 03 04 00 00
  00 00 60 02 fa f0 0d 32 00 00 02 04 05 b4`);
const UDP6 = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 86 dd 60 00
  00 00 00 0d 11 40 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 01 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 02 14 e9 00 35 00 0d 4b 6f 68 65
  6c 6c 6f`);
// ICMPv6 echo request id 1 seq 1 "ping".
const ICMP6 = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 86 dd 60 00
  00 00 00 0c 3a 40 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 01 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 02 80 00 45 71 00 01 00 01 70 69
  6e 67`);
// UDP behind Hop-by-Hop (PadN) + Destination Options (PadN) + Fragment (offset 0, M 0, id 0x12345678).
const UDP6_EXT = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 86 dd 60 00
  00 00 00 25 00 40 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 01 20 01 0d b8 00 00 00 00 00 00
  00 00 00 00 00 02 3c 00 01 04 00 00 00 00 2c 00
  01 04 00 00 00 00 11 00 00 00 12 34 56 78 14 e9
  00 35 00 0d 4b 6f 68 65 6c 6c 6f`);

const DNS = { srcPort: 5353, dstPort: 53, payload: text('hello') };
const SYN_OPTS = hex('02 04 05 b4 04 02 08 0a 00 00 00 01 00 00 00 00 01 03 03 07');
const PADN = (nh: number) => ({ nextHeaderType: nh, bytes: hex('00 00 01 04 00 00 00 00') });

// ---- 1. round trips -----------------------------------------------------------------------------

test('Ethernet II and 802.1Q: known bytes, builder bytes, dissection', () => {
  eq(ethernet({ dst: B, src: A, ethertype: 0x88b5, payload: hex('de ad') }), ETH_RAW);
  expectMeta(ETH_RAW, { ethertype: 0x88b5, l3: 14 });
  eq(ethernet({ dst: B, src: A, vlan: { vid: 100, pcp: 5, dei: true }, ethertype: 0x88b5, payload: hex('de ad') }), ETH_TAGGED);
  expectMeta(ETH_TAGGED, { ethertype: 0x88b5, l3: 18, tci: 0xb064, flags: 1 });
  // An exactly-14-byte frame and a tag with nothing after the inner EtherType are well formed.
  expectMeta(ETH_RAW.subarray(0, 14), { ethertype: 0x88b5, l3: 14 });
  expectMeta(ETH_TAGGED.subarray(0, 18), { ethertype: 0x88b5, l3: 18, tci: 0xb064, flags: 1 });
  // A tagged IPv4 datagram: every offset moves by the tag.
  const tagged = ethernet({ dst: B, src: A, vlan: { vid: 7, pcp: 3 }, payload: ipv4({ src: S4, dst: D4, id: 0x1234, df: true, payload: udp(DNS) }) });
  eq(tagged, cat(UDP4.subarray(0, 12), hex('81 00 60 07'), UDP4.subarray(12)));
  expectMeta(tagged, { ethertype: 0x0800, l3: 18, l4: 38, l4len: 13, protocol: 17, flags: 1, tci: 0x6007 });
  // A group destination is the switch's business, not the parser's: flags stay 0 here.
  expectMeta(cat(hex('ff ff ff ff ff ff'), ETH_RAW.subarray(6)), { ethertype: 0x88b5, l3: 14 });
});

test('ARP request: known bytes, builder bytes, dissection; Ethernet padding allowed', () => {
  eq(ethernet({ dst: BCAST, src: '00:11:22:33:44:55', payload: arp({ op: 'request', senderMac: '00:11:22:33:44:55', senderIp: '192.168.1.100', targetIp: '192.168.1.1' }) }), ARP_REQ);
  expectMeta(ARP_REQ, { ethertype: 0x0806, l3: 14 });
  expectMeta(cat(ARP_REQ, new Uint8Array(18)), { ethertype: 0x0806, l3: 14 }, 'padded to 60');
  const tagged = cat(ARP_REQ.subarray(0, 12), hex('81 00 00 05'), ARP_REQ.subarray(12));
  expectMeta(tagged, { ethertype: 0x0806, l3: 18, tci: 5, flags: 1 });
});

test('IPv4 without options: UDP, TCP, ICMP', () => {
  eq(ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, id: 0x1234, df: true, payload: udp(DNS) }) }), UDP4);
  expectMeta(UDP4, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 13, protocol: 17 });
  eq(ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, id: 0x55aa, df: true, payload: tcp({ srcPort: 40000, dstPort: 443, seq: 0x11223344, flags: 'S', window: 64240, options: SYN_OPTS }) }) }), TCP4_OPT);
  expectMeta(TCP4_OPT, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 40, protocol: 6 });
  eq(ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, id: 2, payload: icmp({ type: 8, id: 1, seq: 1, payload: text('abcd') }) }) }), ICMP4);
  expectMeta(ICMP4, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 12, protocol: 1 });
  assert.is(internetChecksum(UDP4.subarray(14, 34)), 0, 'the pasted header checksum is right');
  assert.is(internetChecksum(ICMP4.subarray(34)), 0, 'the pasted ICMP checksum is right');
});

test('IPv4 with options: l4 after the options; End/NOP/exact-fit option lists accepted', () => {
  eq(ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, id: 1, df: true, ttl: 1, options: hex('94 04 00 00'), payload: udp(DNS) }) }), UDP4_OPT);
  assert.is(internetChecksum(UDP4_OPT.subarray(14, 38)), 0);
  expectMeta(UDP4_OPT, { ethertype: 0x0800, l3: 14, l4: 38, l4len: 13, protocol: 17 });
  for (const opts of ['01 01 01 01', '00 07 00 00', '01 00 ff ff', '07 08 00 00 00 00 00 00', '07 03 00 00', '44 0c 05 00 00 00 00 00 00 00 00 00']) {
    const o = hex(opts);
    const f = ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, options: o, payload: udp(DNS) }) });
    expectMeta(f, { ethertype: 0x0800, l3: 14, l4: 34 + o.length, l4len: 13, protocol: 17 }, opts);
  }
  // Max IHL: 40 bytes of options.
  const max = ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, options: new Uint8Array(40).fill(1), payload: udp(DNS) }) });
  expectMeta(max, { ethertype: 0x0800, l3: 14, l4: 74, l4len: 13, protocol: 17 });
});

test('IPv6 plain: TCP, UDP, ICMPv6', () => {
  eq(ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, payload: tcp({ srcPort: 12345, dstPort: 80, seq: 0x01020304, flags: 'S', window: 64240, options: hex('02 04 05 b4') }) }) }), TCP6);
  expectMeta(TCP6, { ethertype: 0x86dd, l3: 14, l4: 54, l4len: 24, protocol: 6 });
  eq(ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, payload: udp(DNS) }) }), UDP6);
  expectMeta(UDP6, { ethertype: 0x86dd, l3: 14, l4: 54, l4len: 13, protocol: 17 });
  eq(ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, payload: icmpv6({ type: 128, id: 1, seq: 1, payload: text('ping') }) }) }), ICMP6);
  expectMeta(ICMP6, { ethertype: 0x86dd, l3: 14, l4: 54, l4len: 12, protocol: 58 });
  // Padding after the payload is allowed; no next header (59) is well formed with no L4 check.
  expectMeta(cat(UDP6, new Uint8Array(7)), { ethertype: 0x86dd, l3: 14, l4: 54, l4len: 13, protocol: 17 });
  const none = ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, protocol: 59, payload: new Uint8Array(0) }) });
  expectMeta(none, { ethertype: 0x86dd, l3: 14, l4: 54, l4len: 0, protocol: 59 });
});

test('IPv6 with Hop-by-Hop + Destination Options + Fragment extension headers', () => {
  const built = ethernet({
    dst: B, src: A,
    payload: ipv6({ src: S6, dst: D6, extensions: [PADN(0), PADN(60), { nextHeaderType: 44, bytes: hex('00 00 00 00 12 34 56 78') }], payload: udp(DNS) }),
  });
  eq(built, UDP6_EXT);
  // An atomic fragment (offset 0, M 0) is a whole packet (RFC 6946): not flagged as a fragment.
  expectMeta(UDP6_EXT, { ethertype: 0x86dd, l3: 14, l4: 78, l4len: 13, protocol: 17, flags: 0 });
  // Eight extension headers are the most allowed.
  const eight = ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, extensions: Array.from({ length: 8 }, () => PADN(60)), payload: udp(DNS) }) });
  expectMeta(eight, { ethertype: 0x86dd, l3: 14, l4: 54 + 64, l4len: 13, protocol: 17 });
  // A routing header (type 4, segments left 0) and a longer Destination Options header (len 1 = 16 bytes).
  const rh = ethernet({
    dst: B, src: A,
    payload: ipv6({ src: S6, dst: D6, extensions: [{ nextHeaderType: 43, bytes: cat(hex('00 02 04 00 00 00 00 00'), parseIPv6(D6)) }, { nextHeaderType: 60, bytes: hex('00 01 01 0c 00 00 00 00 00 00 00 00 00 00 00 00') }], payload: udp(DNS) }),
  });
  expectMeta(rh, { ethertype: 0x86dd, l3: 14, l4: 54 + 24 + 16, l4len: 13, protocol: 17 });
});

test('fragments: first fragments carry L4, later ones do not (IPv4 and IPv6)', () => {
  const tcpSeg = tcp({ srcPort: 1, dstPort: 2 }).build(parseIPv4(S4), parseIPv4(D4));
  const first = ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, mf: true, protocol: 6, payload: tcpSeg }) });
  expectMeta(first, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 20, protocol: 6, flags: 2 });
  // A later fragment: anything may follow the IP header (the middle of some segment).
  for (const mf of [true, false]) {
    const later = ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, mf, fragOffset: 185, protocol: 6, payload: hex('ff 00 01') }) });
    expectMeta(later, { ethertype: 0x0800, l3: 14, l4: 0, l4len: 3, protocol: 6, flags: 6 }, `later fragment mf=${mf}`);
  }
  // The first fragment of a 3008-byte UDP datagram: its UDP length covers the fragments still to come.
  const big = udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(3000) }).build(parseIPv4(S4), parseIPv4(D4));
  const udpFirst = ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, mf: true, protocol: 17, payload: big.subarray(0, 1480) }) });
  expectMeta(udpFirst, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 1480, protocol: 17, flags: 2 });
  const big6 = udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(3000) }).build(parseIPv6(S6), parseIPv6(D6));
  const frag6 = (offsetM: number) => ({ nextHeaderType: 44, bytes: cat(hex('00 00'), Uint8Array.of(offsetM >> 8, offsetM & 0xff), hex('00 00 00 09')) });
  const udp6First = ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, extensions: [frag6(0x0001)], protocol: 17, payload: big6.subarray(0, 1448) }) });
  expectMeta(udp6First, { ethertype: 0x86dd, l3: 14, l4: 62, l4len: 1448, protocol: 17, flags: 2 });
  // ... but an atomic fragment holds the whole datagram, so its UDP length must fit.
  const atomicLong = ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, extensions: [frag6(0)], protocol: 17, payload: big6.subarray(0, 1448) }) });
  assert.is(reasonOf(atomicLong), 'udp_bad_length');
  const udp6Later = ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, extensions: [frag6((1448 >> 3) << 3)], protocol: 17, payload: hex('01') }) });
  expectMeta(udp6Later, { ethertype: 0x86dd, l3: 14, l4: 0, l4len: 0, protocol: 17, flags: 6 });
});

test('Ethernet padding after a short IPv4 datagram is accepted; the datagram ends at total length', () => {
  const f = ethernet({ dst: B, src: A, padTo60: true, payload: ipv4({ src: S4, dst: D4, payload: udp({ srcPort: 1, dstPort: 2, payload: hex('01') }) }) });
  assert.is(f.length, 60);
  expectMeta(f, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 9, protocol: 17 });
  // Padding of 0xff bytes, which a parser reading past total length would take for a bad option or length.
  const icmpPadded = cat(ICMP4, new Uint8Array(40).fill(0xff));
  expectMeta(icmpPadded, { ethertype: 0x0800, l3: 14, l4: 34, l4len: 12, protocol: 1 });
});

// ---- 2. malformed frames ------------------------------------------------------------------------

interface Bad { what: string; frame: Uint8Array; reason: string }
const BAD: Bad[] = [];
const bad = (what: string, frame: Uint8Array, reason: string) => BAD.push({ what, frame, reason });
const withByte = (f: Uint8Array, at: number, v: number) => { const c = f.slice(); c[at] = v; return c; };
const v4 = (protocol: number, payload: Uint8Array, o: Partial<Parameters<typeof ipv4>[0]> = {}) =>
  ethernet({ dst: B, src: A, payload: ipv4({ src: S4, dst: D4, protocol, payload, ...o }) });
const v6 = (protocol: number, payload: Uint8Array, o: Partial<Parameters<typeof ipv6>[0]> = {}) =>
  ethernet({ dst: B, src: A, payload: ipv6({ src: S6, dst: D6, protocol, payload, ...o }) });
const TCP_SEG = TCP4_OPT.subarray(34);         // 40-byte header, no data
const UDP_SEG = UDP4.subarray(34);             // 13 bytes
const ICMP_MSG = ICMP4.subarray(34);           // 12 bytes
const ICMP6_MSG = ICMP6.subarray(54);          // 12 bytes
const tcpWith = (dataOffsetByte: number, options: Uint8Array) => {
  const s = cat(TCP_SEG.subarray(0, 20), options);
  s[12] = dataOffsetByte;
  return s;
};

// Truncation at every header boundary.
for (let n = 0; n < 14; n++) bad(`eth ${n} bytes`, ARP_REQ.subarray(0, n), 'eth_truncated');
for (let n = 14; n < 18; n++) bad(`802.1Q cut at ${n}`, ETH_TAGGED.subarray(0, n), 'vlan_truncated');
for (let n = 14; n < 42; n++) bad(`ARP cut at ${n}`, ARP_REQ.subarray(0, n), 'arp_truncated');
for (let n = 14; n < 34; n++) bad(`IPv4 cut at ${n - 14}`, UDP4.subarray(0, n), 'ipv4_truncated');
bad('tagged IPv4 cut at 19', cat(UDP4.subarray(0, 12), hex('81 00 00 00'), UDP4.subarray(12, 33)), 'ipv4_truncated');
for (let n = 34; n < UDP4.length; n++) bad(`IPv4 datagram cut at ${n} (total length past frame)`, UDP4.subarray(0, n), 'ipv4_bad_total_length');
for (let n = 14; n < 54; n++) bad(`IPv6 cut at ${n - 14}`, UDP6.subarray(0, n), 'ipv6_truncated');
for (let n = 54; n < UDP6.length; n++) bad(`IPv6 cut at ${n} (payload length past frame)`, UDP6.subarray(0, n), 'ipv6_bad_payload_length');
for (let n = 0; n < 20; n++) {
  bad(`TCP/IPv4 segment of ${n} bytes`, v4(6, TCP_SEG.subarray(0, n)), 'tcp_truncated');
  bad(`TCP/IPv6 segment of ${n} bytes`, v6(6, TCP_SEG.subarray(0, n)), 'tcp_truncated');
}
for (let n = 20; n < 40; n++) bad(`TCP segment of ${n} bytes, data offset 40`, v4(6, TCP_SEG.subarray(0, n)), 'tcp_bad_data_offset');
for (let n = 0; n < 8; n++) {
  bad(`UDP/IPv4 ${n} bytes`, v4(17, UDP_SEG.subarray(0, n)), 'udp_truncated');
  bad(`UDP/IPv6 ${n} bytes`, v6(17, UDP_SEG.subarray(0, n)), 'udp_truncated');
  bad(`ICMP ${n} bytes`, v4(1, ICMP_MSG.subarray(0, n)), 'icmp_truncated');
  bad(`ICMPv6 ${n} bytes`, v6(58, ICMP6_MSG.subarray(0, n)), 'icmpv6_truncated');
}
// ARP that is not Ethernet/IPv4.
bad('ARP htype 6', withByte(ARP_REQ, 15, 6), 'arp_malformed');
bad('ARP htype 0x0101', withByte(ARP_REQ, 14, 1), 'arp_malformed');
bad('ARP ptype 0x86dd', withByte(withByte(ARP_REQ, 16, 0x86), 17, 0xdd), 'arp_malformed');
bad('ARP hlen 8', withByte(ARP_REQ, 18, 8), 'arp_malformed');
bad('ARP plen 16', withByte(ARP_REQ, 19, 16), 'arp_malformed');
// IPv4 header fields.
for (const vi of [0x65, 0x05, 0x45 - 0x40, 0xf5]) bad(`IPv4 version/IHL byte ${vi.toString(16)}`, withByte(UDP4, 14, vi), 'ipv4_bad_version');
for (const ihl of [0, 1, 4]) bad(`IPv4 IHL ${ihl}`, withByte(UDP4, 14, 0x40 | ihl), 'ipv4_bad_ihl');
bad('IPv4 IHL 15 past the frame', withByte(UDP4, 14, 0x4f), 'ipv4_bad_ihl');
bad('IPv4 IHL 9 past the frame by 3 bytes', withByte(UDP4, 14, 0x49), 'ipv4_bad_ihl');
for (const tl of [0, 19]) bad(`IPv4 total length ${tl}`, v4(17, UDP_SEG, { totalLength: tl }), 'ipv4_bad_total_length');
bad('IPv4 total length below IHL 6', v4(17, UDP_SEG, { options: hex('01 01 01 01'), totalLength: 21 }), 'ipv4_bad_total_length');
bad('IPv4 total length one past the frame', v4(17, UDP_SEG, { totalLength: 34 }), 'ipv4_bad_total_length');
bad('IPv4 total length 65535', v4(17, UDP_SEG, { totalLength: 65535 }), 'ipv4_bad_total_length');
for (const [what, opts] of [
  ['option length 0', '07 00 00 00'], ['option length 1', '07 01 00 00'], ['option past the header', '07 05 00 00'],
  ['option length 255', '01 07 ff 00'], ['type without a length byte at the end', '01 01 01 07'],
  ['second option past the header', '07 03 00 01 01 07 05 00'], ['length 0 after NOPs', '01 01 94 00'],
]) bad(`IPv4 ${what}`, v4(17, UDP_SEG, { options: hex(opts) }), 'ipv4_bad_option');
// Tiny first fragments (RFC 1858).
bad('tiny first fragment: 8 bytes of TCP', v4(6, TCP_SEG.subarray(0, 8), { mf: true }), 'ipv4_tiny_fragment');
bad('tiny first fragment: TCP header longer than the fragment', v4(6, TCP_SEG.subarray(0, 24), { mf: true }), 'ipv4_tiny_fragment');
bad('tiny first fragment: 4 bytes of UDP', v4(17, UDP_SEG.subarray(0, 4), { mf: true }), 'ipv4_tiny_fragment');
bad('tiny first fragment: 4 bytes of ICMP', v4(1, ICMP_MSG.subarray(0, 4), { mf: true }), 'ipv4_tiny_fragment');
// IPv6 base header and extension headers.
for (const b0 of [0x40, 0x00, 0x70, 0xf0]) bad(`IPv6 version ${b0 >> 4}`, withByte(UDP6, 14, b0), 'ipv6_bad_version');
bad('IPv6 payload length 65535', withByte(withByte(UDP6, 18, 0xff), 19, 0xff), 'ipv6_bad_payload_length');
bad('IPv6 Hop-by-Hop longer than the payload', v6(17, UDP_SEG, { extensions: [{ nextHeaderType: 0, bytes: hex('00 01 01 0c 00 00 00 00 00 00 00 00 00 00 00 00') }], payloadLength: 8 }), 'ipv6_bad_extension_header');
bad('IPv6 Destination Options with hdr ext len 255', v6(17, UDP_SEG, { extensions: [{ nextHeaderType: 60, bytes: hex('00 ff 01 04 00 00 00 00') }] }), 'ipv6_bad_extension_header');
bad('IPv6 extension header: fewer than 8 bytes of payload', v6(17, hex('11 00 01 02'), { protocol: 0 }), 'ipv6_bad_extension_header');
bad('IPv6 Fragment header cut short', v6(44, hex('11 00 00 00'), {}), 'ipv6_bad_extension_header');
bad('IPv6 AH past the payload', v6(51, hex('11 04 00 00 00 00 00 00'), {}), 'ipv6_bad_extension_header');
bad('IPv6 Routing header past the payload', v6(43, hex('11 02 04 00 00 00 00 00'), {}), 'ipv6_bad_extension_header');
bad('IPv6 Hop-by-Hop not first', v6(17, UDP_SEG, { extensions: [PADN(60), PADN(0)] }), 'ipv6_bad_extension_header');
bad('IPv6 Hop-by-Hop after a Fragment header', v6(17, UDP_SEG, { extensions: [{ nextHeaderType: 44, bytes: new Uint8Array(8) }, PADN(0)] }), 'ipv6_bad_extension_header');
bad('IPv6 9 chained Destination Options', v6(17, UDP_SEG, { extensions: Array.from({ length: 9 }, () => PADN(60)) }), 'ipv6_too_many_extension_headers');
bad('IPv6 Hop-by-Hop + 8 more', v6(17, UDP_SEG, { extensions: [PADN(0), ...Array.from({ length: 8 }, () => PADN(43))] }), 'ipv6_too_many_extension_headers');
bad('IPv6 9 chained atomic Fragment headers', v6(17, UDP_SEG, { extensions: Array.from({ length: 9 }, () => ({ nextHeaderType: 44, bytes: new Uint8Array(8) })) }), 'ipv6_too_many_extension_headers');
// TCP data offset and options.
for (const dof of [0x00, 0x10, 0x40]) bad(`TCP data offset ${dof >> 4}`, v4(6, tcpWith(dof, new Uint8Array(0))), 'tcp_bad_data_offset');
bad('TCP data offset 15 past a 20-byte segment', v4(6, tcpWith(0xf0, new Uint8Array(0))), 'tcp_bad_data_offset');
bad('TCP/IPv6 data offset 6 past a 20-byte segment', v6(6, tcpWith(0x60, new Uint8Array(0))), 'tcp_bad_data_offset');
for (const [what, opts] of [
  ['option length 0', '08 00 00 00'], ['option length 1', '02 01 00 00'], ['option past the header', '02 04 05 b4 08 0a 00 00'],
  ['kind without a length byte at the end', '01 01 01 08'], ['length 255', '03 ff 00 00'],
]) {
  const o = hex(opts);
  bad(`TCP ${what}`, v4(6, tcpWith(((20 + o.length) / 4) << 4, o)), 'tcp_bad_option');
  bad(`TCP/IPv6 ${what}`, v6(6, tcpWith(((20 + o.length) / 4) << 4, o)), 'tcp_bad_option');
}
// UDP length.
for (const ul of [0, 1, 7]) {
  bad(`UDP length ${ul}`, v4(17, withByte(UDP_SEG, 5, ul)), 'udp_bad_length');
  bad(`UDP/IPv6 length ${ul}`, v6(17, withByte(UDP_SEG, 5, ul)), 'udp_bad_length');
}
bad('UDP length past the datagram by one', v4(17, withByte(UDP_SEG, 5, 14)), 'udp_bad_length');
bad('UDP length past the datagram into Ethernet padding', cat(v4(17, withByte(UDP_SEG, 5, 20)), new Uint8Array(20)), 'udp_bad_length');
bad('UDP/IPv6 length past the datagram', v6(17, withByte(UDP_SEG, 5, 14)), 'udp_bad_length');

test('malformed frames: each returns exactly its drop reason from frame_parse', () => {
  assert.ok(BAD.length > 250, `${BAD.length} cases`);
  const wrong: string[] = [];
  for (const b of BAD) {
    assert.ok(PARSE_REASONS.has(b.reason), `${b.what}: ${b.reason} is a parse reason`);
    assert.ok(dp.reasons.includes(b.reason), `${b.reason} is a reason the module names`);
    const got = reasonOf(b.frame);
    if (got !== b.reason) wrong.push(`${b.what}: got ${got}, want ${b.reason}`);
  }
  assert.equal(wrong, []);
});

test('malformed frames: the reason does not depend on where the frame sits or what follows it', () => {
  for (const [i, b] of BAD.entries()) {
    for (const fill of [0x00, 0xff]) {
      const off = (i * 7) % 64 + 1; // odd and even, unaligned offsets
      assert.is(parseFull(b.frame, off, fill).p.reason, b.reason, `${b.what} at ${off}, fill ${fill}`);
    }
  }
});

test('reason numbers and names match docs/ABI.md, every one documented', () => {
  const doc = readFileSync(new URL('../docs/ABI.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| (\d+) \| `([a-z0-9_]+)` \|/gm)].map((m) => [Number(m[1]), m[2]] as const);
  const documented = new Map(rows);
  for (let r = 1; r < dp.reasons.length; r++) assert.is(documented.get(r), dp.reasons[r], `reason ${r}`);
  assert.is(Math.max(...documented.keys()), dp.reasons.length - 1, 'no documented reason the module lacks');
  // The stable numbers of the first reasons never move.
  assert.equal(dp.reasons.slice(0, 5), ['none', 'rx_bad_descriptor', 'port_invalid', 'port_down', 'eth_truncated']);
});

test('every export of the module is documented in docs/ABI.md', () => {
  const doc = readFileSync(new URL('../docs/ABI.md', import.meta.url), 'utf8');
  const wasm = readFileSync(new URL(`../build/netplane.${dp.build}.wasm`, import.meta.url));
  const missing = WebAssembly.Module.exports(new WebAssembly.Module(wasm)).map((e) => e.name).filter((n) => !doc.includes('`' + n + '`'));
  assert.equal(missing, []);
});

test('frame_parse refuses a frame outside the rx buffer', () => {
  const rb = x.rx_buffer(), size = x.rx_buffer_size();
  assert.is(dp.reasons[x.frame_parse(rb - 1, 20)], 'rx_bad_descriptor');
  assert.is(dp.reasons[x.frame_parse(rb + size - 10, 20)], 'rx_bad_descriptor');
  assert.is(dp.reasons[x.frame_parse(0xfffffff0, 0xffff)], 'rx_bad_descriptor');
  assert.is(dp.reasons[x.frame_parse(rb + size - 14, 14)], 'none', 'the last 14 bytes are inside');
});

// ---- 3. the same frames through a Switch ---------------------------------------------------------

function makeSwitch() {
  const sw = new Switch({ maxPorts: 4, macEntries: 4096, batch: 64, rxBytes: 64 * 2048, clock: () => 1000 });
  sw.addPort({ id: 0 });
  sw.addPort({ id: 1 });
  return sw;
}
// The broadcast destination, so every accepted frame floods to port 1; the source stays 02:..:01.
function broadcast(f: Uint8Array): Uint8Array {
  const c = f.slice();
  c.fill(0xff, 0, Math.min(6, c.length));
  return c;
}

test('malformed frames through a Switch: dropped under their reason, switch-wide and on the port, nothing sent', () => {
  const sw = makeSwitch();
  const wrong: string[] = [];
  for (const b of BAD) {
    const before = sw.counters(), pBefore = sw.portCounters(0);
    const tx = sw.inject([[0, broadcast(b.frame)]]);
    const after = sw.counters(), pAfter = sw.portCounters(0);
    const d = (after.drops[b.reason] ?? 0) - (before.drops[b.reason] ?? 0);
    const pd = (pAfter.drops[b.reason] ?? 0) - (pBefore.drops[b.reason] ?? 0);
    const dropped = after.stats.dropped - before.stats.dropped;
    if (tx !== 0 || d !== 1 || pd !== 1 || dropped !== 1 || pAfter.dropped - pBefore.dropped !== 1) {
      wrong.push(`${b.what}: tx ${tx}, ${b.reason} +${d} (port +${pd}), dropped +${dropped}`);
    }
  }
  assert.equal(wrong, []);
  assert.equal(sw.port(1).receive(), [], 'nothing reached port 1');
  const c = sw.counters();
  assert.is(c.stats.rx_packets, BAD.length);
  assert.is(c.stats.dropped, BAD.length);
  assert.is(c.stats.tx_packets, 0);
  assert.is(sw.portCounters(1).txPackets, 0);
  // The sum over reasons is exactly the drop total.
  assert.is(Object.values(c.drops).reduce((a, n) => a + n, 0), BAD.length);
  // And the valid frames still pass: one copy each to port 1.
  const good = [ETH_RAW, ARP_REQ, UDP4, UDP4_OPT, TCP4_OPT, ICMP4, TCP6, UDP6, ICMP6, UDP6_EXT];
  assert.is(sw.inject(good.map((f) => [0, broadcast(f)] as [number, Uint8Array])), good.length);
  const got = sw.port(1).receive();
  assert.is(got.length, good.length);
  got.forEach((f, i) => eq(f, broadcast(good[i])));
});

test('an rx descriptor pointing outside the rx buffer is counted as rx_bad_descriptor', () => {
  const sw = makeSwitch();
  const d = sw.dp;
  d.views();
  const size = d.exports.rx_buffer_size();
  const cases: Array<[number, number]> = [[size - 10, 60], [size, 1], [0xffffffff, 0xffff], [size - 59, 60]];
  cases.forEach(([off, len], i) => {
    d.rxDescriptors.setUint32(i * 8, off >>> 0, true);
    d.rxDescriptors.setUint16(i * 8 + 4, len, true);
    d.rxDescriptors.setUint16(i * 8 + 6, 0, true);
  });
  // One good frame after them, exactly at the end of the buffer.
  const good = broadcast(UDP4);
  d.rxBuffer.set(good, size - good.length);
  d.rxDescriptors.setUint32(cases.length * 8, size - good.length, true);
  d.rxDescriptors.setUint16(cases.length * 8 + 4, good.length, true);
  d.rxDescriptors.setUint16(cases.length * 8 + 6, 0, true);
  const tx = d.process(cases.length + 1, 1000);
  assert.is(tx, 1, 'the good frame is flooded to port 1');
  assert.is(d.txDescriptors.getUint16(6, true), 1);
  const c = sw.counters();
  assert.equal(c.drops, { rx_bad_descriptor: cases.length });
  assert.is(sw.portCounters(0).drops.rx_bad_descriptor, cases.length);
});

// ---- 4. checksums -------------------------------------------------------------------------------

// The module's checksum of data placed at rx_buffer + offset of d, with 16 bytes of 0x5a after it
// (a sum that read past the end would count them).
function wasmChecksum(data: Uint8Array, offset = 0, d = dp): number {
  d.views();
  d.rxBuffer.fill(0x5a, offset, offset + data.length + 16);
  d.rxBuffer.set(data, offset);
  return d.exports.inet_checksum(d.exports.rx_buffer() + offset, data.length);
}

test('inet_checksum on known buffers', () => {
  const classic = hex('45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7');
  assert.is(wasmChecksum(classic), 0xb861);
  assert.is(wasmChecksum(classic, 3), 0xb861, 'unaligned');
  const filled = classic.slice();
  filled[10] = 0xb8;
  filled[11] = 0x61;
  assert.is(wasmChecksum(filled), 0, 'a header with its checksum sums to all ones');
  assert.is(wasmChecksum(hex('01')), 0xfeff, 'odd length: the last byte is the high byte');
  assert.is(wasmChecksum(hex('00 01 f2')), 0x0dfe);
  assert.is(wasmChecksum(hex('00 01 f2 03 f4 f5 f6 f7 ab')), internetChecksum(hex('00 01 f2 03 f4 f5 f6 f7 ab')));
  assert.is(wasmChecksum(new Uint8Array(0)), 0xffff, 'empty');
  assert.is(wasmChecksum(new Uint8Array(20)), 0xffff, 'all zero');
  assert.is(wasmChecksum(new Uint8Array(21)), 0xffff, 'all zero, odd');
  assert.is(wasmChecksum(new Uint8Array(20).fill(0xff)), 0x0000, 'all ones');
  assert.is(wasmChecksum(new Uint8Array(1).fill(0xff)), 0x00ff, 'one 0xff byte');
  assert.is(wasmChecksum(new Uint8Array(1501).fill(0xff)), 0x00ff, 'all ones, odd');
  assert.is(wasmChecksum(new Uint8Array(1500).fill(0xff)), 0x0000);
  // The known frames' checksums.
  assert.is(wasmChecksum(ICMP4.subarray(34)), 0);
  assert.is(wasmChecksum(TCP4_OPT.subarray(14, 34)), 0);
});

test('inet_checksum matches internetChecksum on random buffers (0..1500 bytes, any alignment)', () => {
  const r = prng(0x5eed1071);
  for (let i = 0; i < 400; i++) {
    const n = i < 40 ? i : r.int(1501);
    const data = r.next() < 0.1 ? new Uint8Array(n).fill(r.next() < 0.5 ? 0xff : 0) : r.bytes(n);
    const off = r.int(8);
    assert.is(wasmChecksum(data, off), internetChecksum(data), `length ${n} at +${off}`);
  }
});

// The sum takes 32 bytes a step in SIMD lanes, folded into 64 bits once a block of 512 KiB: lengths
// around the step, super-frame sizes, and lengths past one and two blocks, all ones (each lane's
// largest growth) and random, at odd offsets.
test('inet_checksum matches internetChecksum on super-frame sizes and past the sum\'s 512 KiB block', () => {
  const big = new Dataplane({ maxPorts: 2, macEntries: 64, batch: 4, rxBytes: 1280 * 1024 });
  const at = (data: Uint8Array, off: number) => wasmChecksum(data, off, big);
  const r = prng(0x51dd);
  for (const n of [16, 31, 32, 33, 47, 48, 63, 64, 65, 95, 1514, 9001, 65535, 65536, 65549, 524287, 524288, 524320, 524353, 1048576 + 77]) {
    for (const off of [0, 1, 7]) {
      const ones = new Uint8Array(n).fill(0xff), rand = r.bytes(n);
      assert.is(at(ones, off), internetChecksum(ones), `${n} bytes of 0xff at +${off}`);
      assert.is(at(rand, off), internetChecksum(rand), `${n} random bytes at +${off}`);
    }
  }
});

// A random IPv4 header with a correct checksum.
function randomHeader(r: ReturnType<typeof prng>): Uint8Array {
  const h = r.bytes(20);
  h[0] = 0x45;
  h[10] = 0;
  h[11] = 0;
  const c = internetChecksum(h);
  h[10] = c >> 8;
  h[11] = c & 0xff;
  return h;
}
const word = (h: Uint8Array, i: number) => (h[i] << 8) | h[i + 1];
const setWord = (h: Uint8Array, i: number, v: number) => { h[i] = v >> 8; h[i + 1] = v & 0xff; };
function recomputed(h: Uint8Array): number {
  const c = h.slice();
  c[10] = 0;
  c[11] = 0;
  return internetChecksum(c);
}

test('inet_checksum_adjust16 (RFC 1624) equals full recomputation', () => {
  const r = prng(1624);
  for (let i = 0; i < 400; i++) {
    const h = randomHeader(r);
    const at = [2, 4, 6, 8, 12, 14, 16, 18][r.int(8)];
    const old = word(h, at), now = r.int(4) === 0 ? [0, 0xffff, old][r.int(3)] : r.int(0x10000);
    setWord(h, at, now);
    assert.is(x.inet_checksum_adjust16(word(h, 10), old, now), recomputed(h), `case ${i}: word ${at} ${old} -> ${now}`);
  }
  // Corner cases: the new header sums to 0xffff, so the full computation gives a checksum of 0x0000;
  // then from that header to another.
  for (let i = 0; i < 200; i++) {
    const h = randomHeader(r);
    const at = [2, 4, 6, 8, 12, 14, 16, 18][r.int(8)];
    const old = word(h, at);
    const rest = h.slice();
    setWord(rest, at, 0);
    setWord(rest, 10, 0);
    const target = ~onesComplementSum(rest) & 0xffff; // makes the sum 0xffff
    setWord(h, at, target);
    const full = recomputed(h);
    assert.is(full, 0, 'the header really sums to all ones');
    const adj = x.inet_checksum_adjust16(word(h, 10), old, target);
    assert.is(adj, full, `into the corner: ${old} -> ${target}`);
    setWord(h, 10, full);
    const next = r.int(0x10000);
    setWord(h, at, next);
    assert.is(x.inet_checksum_adjust16(full, target, next), recomputed(h), `out of the corner: ${target} -> ${next}`);
  }
});

test('inet_checksum_adjust32 (an IPv4 address) equals full recomputation', () => {
  const r = prng(0xadd232);
  const u32 = (h: Uint8Array, i: number) => ((h[i] << 24) | (h[i + 1] << 16) | (h[i + 2] << 8) | h[i + 3]) >>> 0;
  for (let i = 0; i < 400; i++) {
    const h = randomHeader(r);
    const at = r.next() < 0.5 ? 12 : 16;
    const old = u32(h, at);
    const now = i % 10 === 0 ? (old ^ 0xffff0000) >>> 0 : i % 10 === 1 ? old : (r.int(0x10000) * 0x10000 + r.int(0x10000)) >>> 0;
    h.set([now >>> 24, (now >>> 16) & 0xff, (now >>> 8) & 0xff, now & 0xff], at);
    assert.is(x.inet_checksum_adjust32(word(h, 10), old, now), recomputed(h), `case ${i}: ${old.toString(16)} -> ${now.toString(16)}`);
  }
  // A NAT-like rewrite chain: many successive address changes stay equal to recomputation.
  const h = randomHeader(r);
  for (let i = 0; i < 100; i++) {
    const old = u32(h, 12);
    const now = (r.int(0x10000) * 0x10000 + r.int(0x10000)) >>> 0;
    h.set([now >>> 24, (now >>> 16) & 0xff, (now >>> 8) & 0xff, now & 0xff], 12);
    setWord(h, 10, x.inet_checksum_adjust32(word(h, 10), old, now));
    assert.is(word(h, 10), recomputed(h));
  }
});

// ---- 5. fuzz ------------------------------------------------------------------------------------

const VALID = [ETH_RAW, ETH_TAGGED, ARP_REQ, UDP4, UDP4_OPT, TCP4_OPT, ICMP4, TCP6, UDP6, ICMP6, UDP6_EXT];

function mutate(r: ReturnType<typeof prng>, base: Uint8Array): Uint8Array {
  let f = base.slice();
  const k = r.int(4);
  if (k === 0 || k === 3) {
    for (let flips = 1 + r.int(4); flips > 0; flips--) f[r.int(Math.min(f.length, 80))] = r.int(4) === 0 ? r.int(256) : f[r.int(f.length)] ^ (1 << r.int(8));
  }
  if (k === 1 || k === 3) f = f.subarray(0, r.int(f.length + 1));
  if (k === 2) f = cat(f, r.bytes(r.int(40)));
  return f;
}

// Checks one frame_parse result for internal consistency; returns the reason name.
function checkParsed(f: Uint8Array): string {
  const a = parseFull(f, 0, 0x00), b = parseFull(f, 8, 0xff);
  assert.equal(b.p, a.p, 'the result does not depend on bytes after the frame');
  const p = a.p;
  assert.ok(a.code < dp.reasons.length, `known reason ${a.code}`);
  if (p.reason !== 'none') {
    assert.ok(PARSE_REASONS.has(p.reason), `parse reason, got ${p.reason}`);
    return p.reason;
  }
  assert.ok(f.length >= 14);
  assert.ok(p.l3 === 14 || p.l3 === 18);
  assert.is(p.flags & 1, p.l3 === 18 ? 1 : 0);
  if (p.l4 !== 0) {
    assert.ok(p.ethertype === 0x0800 || p.ethertype === 0x86dd);
    assert.ok(p.l4 >= p.l3 + 20 && p.l4 + p.l4len <= f.length, 'L4 lies inside the frame');
    if (p.protocol === 6) assert.ok(p.l4len >= 20 && (f[p.l4 + 12] >> 4) * 4 <= p.l4len);
    if (p.protocol === 17) assert.ok(p.l4len >= 8);
  }
  return 'none';
}

function fuzzCases(): Uint8Array[] {
  const r = prng(0xf022);
  const out: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const f = r.bytes(r.int(201));
    // Give a third of them a plausible EtherType, so the random bytes reach the IP parsers.
    if (f.length >= 14 && i % 3 === 0) {
      const et = [0x0800, 0x86dd, 0x0806, 0x8100][r.int(4)];
      f[12] = et >> 8;
      f[13] = et & 0xff;
      if (et === 0x8100 && f.length >= 18) { f[16] = r.int(2) ? 0x08 : 0x86; f[17] = f[16] === 0x08 ? 0x00 : 0xdd; }
      const l3 = et === 0x8100 ? 18 : 14;
      if (f.length > l3) f[l3] = (f[12] === 0x86 || f[16] === 0x86 ? 0x60 : 0x45) | (f[l3] & (r.int(2) ? 0x0f : 0));
    }
    out.push(f);
  }
  for (let i = 0; i < 4000; i++) out.push(mutate(r, VALID[i % VALID.length]));
  return out;
}
const FUZZ = fuzzCases();

test('fuzz: frame_parse never traps, reasons are parse reasons, accepted frames are consistent', () => {
  const seen = new Set<string>();
  for (const f of FUZZ) seen.add(checkParsed(f));
  // The corpus reaches deep into the parsers, not just the Ethernet check.
  for (const r of ['none', 'eth_truncated', 'ipv4_bad_total_length', 'ipv6_bad_payload_length', 'tcp_bad_option', 'udp_bad_length']) {
    assert.ok(seen.has(r), `fuzz corpus produced ${r}: ${[...seen].join(', ')}`);
  }
});

test('fuzz: through a Switch, every frame is either sent once or dropped under a named reason', () => {
  const sw = makeSwitch();
  let forwarded = 0;
  const perReason: Record<string, number> = {};
  for (const [i, raw] of FUZZ.entries()) {
    // Half keep their random destination, half are broadcast.
    const f = i % 2 ? broadcast(raw) : raw;
    const expected = reasonOf(f);
    const before = sw.counters();
    const tx = sw.inject([[0, f]], 1000 + i);
    const after = sw.counters();
    const deltas = Object.entries(after.drops)
      .map(([n, c]) => [n, c - (before.drops[n] ?? 0)] as [string, number])
      .filter(([, d]) => d !== 0);
    const dropped = after.stats.dropped - before.stats.dropped;
    assert.ok(tx + dropped === 1, `frame ${i}: tx ${tx}, dropped ${dropped}`);
    assert.is(after.stats.rx_packets - before.stats.rx_packets, 1);
    if (expected !== 'none') {
      assert.equal(deltas, [[expected, 1]], `frame ${i}: dropped as the parser says`);
    } else if (dropped) {
      assert.is(deltas.length, 1, `frame ${i}: exactly one reason`);
      assert.ok(['src_mac_multicast', 'vlan_tagged_on_access', 'same_port'].includes(deltas[0][0]), `frame ${i}: ${deltas[0][0]}`);
    } else {
      assert.is(sw.dp.txDescriptors.getUint16(6, true), 1, 'sent to port 1');
    }
    if (dropped) perReason[deltas[0][0]] = (perReason[deltas[0][0]] ?? 0) + 1;
    forwarded += tx;
    sw.port(1).receive();
  }
  const c = sw.counters();
  assert.is(c.stats.rx_packets, FUZZ.length);
  assert.is(c.stats.rx_packets, c.stats.dropped + forwarded, 'rx = dropped + forwarded');
  assert.is(c.stats.tx_packets, forwarded);
  assert.equal(c.drops, perReason);
  assert.ok(!('none' in c.drops) && Object.keys(c.drops).every((n) => dp.reasons.indexOf(n) > 0));
  assert.ok(forwarded > 500 && c.stats.dropped > 500, `both outcomes exercised: ${forwarded} sent, ${c.stats.dropped} dropped`);
  const p0 = sw.portCounters(0), p1 = sw.portCounters(1);
  assert.is(p0.rxPackets, FUZZ.length);
  assert.is(p0.dropped, c.stats.dropped);
  assert.is(p1.txPackets, forwarded);
});

test('fuzz: whole batches through a Switch keep rx = dropped + forwarded', () => {
  const sw = makeSwitch();
  let forwarded = 0;
  for (let i = 0; i < FUZZ.length; i += 64) {
    forwarded += sw.inject(FUZZ.slice(i, i + 64).map((f) => [0, broadcast(f)] as [number, Uint8Array]), 1000 + i);
    sw.port(1).receive();
  }
  const c = sw.counters();
  assert.is(c.stats.rx_packets, FUZZ.length);
  assert.is(c.stats.rx_packets, c.stats.dropped + forwarded);
  assert.is(Object.values(c.drops).reduce((a, n) => a + n, 0), c.stats.dropped);
  // Broadcast from the same source: the parse verdict alone decides, except group sources and tags.
  const accepted = FUZZ.filter((f) => reasonOf(broadcast(f)) === 'none').length;
  assert.ok(forwarded <= accepted && forwarded > accepted / 2, `${forwarded} of ${accepted}`);
});

test.run();
