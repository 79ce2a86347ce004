// The frame builders and dissector in src/frames.ts are the yardstick other tests hold the dataplane
// against, so they are checked here against bytes written out by hand (or computed by a separate
// Python struct/socket script and pasted in, named where so), never against themselves alone.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  arp, dissect, ethernet, formatIPv4, formatIPv6, formatMac, icmp, icmpv6, internetChecksum, ipv4, ipv6,
  onesComplementSum, parseIPv4, parseIPv6, parseMac, rawL4, tcp, udp, verifyChecksums,
} from '../src/frames.ts';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
const eq = (actual: Uint8Array, expected: Uint8Array) => assert.is(toHex(actual), toHex(expected));
const text = (s: string) => new TextEncoder().encode(s);

const A = '02:00:00:00:00:01';
const B = '02:00:00:00:00:02';

// --- addresses ---------------------------------------------------------------------------------

test('MAC addresses parse with : or -, format lowercase with :', () => {
  eq(parseMac('02:00:5E:10:00:FF'), hex('02005e1000ff'));
  eq(parseMac('02-00-5e-10-00-ff'), hex('02005e1000ff'));
  assert.is(formatMac(parseMac('02-00-5E-10-00-FF')), '02:00:5e:10:00:ff');
  assert.is(formatMac(hex('aa bb 02 00 5e 10 00 ff'), 2), '02:00:5e:10:00:ff');
  for (const bad of ['', '02:00:00:00:00', '02:00:00:00:00:00:00', '02:00-00:00:00:01', '2:0:0:0:0:1', '02:00:00:00:00:0g']) {
    assert.throws(() => parseMac(bad), (e: Error) => e.message.includes(JSON.stringify(bad)), bad);
  }
  assert.throws(() => formatMac(new Uint8Array(5)), RangeError);
});

test('IPv4 addresses: strict dotted quads', () => {
  eq(parseIPv4('192.168.0.199'), hex('c0a800c7'));
  assert.is(formatIPv4(hex('00 0a 00 00 01'), 1), '10.0.0.1');
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', '1..3.4', ' 1.2.3.4', '0x1.2.3.4']) {
    assert.throws(() => parseIPv4(bad), (e: Error) => e.message.includes(JSON.stringify(bad)), bad);
  }
});

test('IPv6 addresses parse every RFC 4291 form', () => {
  eq(parseIPv6('2001:db8::1'), hex('20010db8 00000000 00000000 00000001'));
  eq(parseIPv6('::'), new Uint8Array(16));
  eq(parseIPv6('::1'), hex('00000000 00000000 00000000 00000001'));
  eq(parseIPv6('fe80::'), hex('fe800000 00000000 00000000 00000000'));
  eq(parseIPv6('1:2:3:4:5:6:7:8'), hex('00010002 00030004 00050006 00070008'));
  eq(parseIPv6('1::8'), hex('00010000 00000000 00000000 00000008'));
  eq(parseIPv6('1:2:3::5:6:7:8'), hex('00010002 00030000 00050006 00070008')); // :: for a single group
  eq(parseIPv6('::ffff:1.2.3.4'), hex('00000000 00000000 0000ffff 01020304'));
  eq(parseIPv6('64:ff9b::192.0.2.33'), hex('0064ff9b 00000000 00000000 c0000221'));
  eq(parseIPv6('1:2:3:4:5:6:10.0.0.1'), hex('00010002 00030004 00050006 0a000001'));
  eq(parseIPv6('2001:DB8::ABCD'), hex('20010db8 00000000 00000000 0000abcd'));
});

test('IPv6 addresses: bad inputs throw naming the input', () => {
  for (const bad of ['', ':', ':::', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', 'g::', ':1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:', '1:2:3:4:5:6:7:8::', '1.2.3.4', '::1.2.3', '::1.2.3.4:5', '1:2:3:4:5:6:7:1.2.3.4', 'fe80::1%eth0']) {
    assert.throws(() => parseIPv6(bad), (e: Error) => e.message.includes(JSON.stringify(bad)), bad);
  }
});

test('IPv6 addresses format in RFC 5952 canonical form', () => {
  const cases: [string, string][] = [
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a lone zero group is not compressed (§4.2.2)
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run wins (§4.2.3)
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // ties go to the first run
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'], // IPv4-mapped keeps its dotted tail (§5)
    ['fe80::0abc:0001', 'fe80::abc:1'],
  ];
  for (const [input, canonical] of cases) assert.is(formatIPv6(parseIPv6(input)), canonical, input);
  assert.is(formatIPv6(hex('ff' + '20010db8000000000000000000000002'), 1), '2001:db8::2');
});

// --- checksums ---------------------------------------------------------------------------------

test('Internet checksum: the RFC 1071 §3 example and odd lengths', () => {
  // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carry).
  assert.is(onesComplementSum(hex('00 01 f2 03 f4 f5 f6 f7')), 0xddf2);
  assert.is(internetChecksum(hex('00 01 f2 03 f4 f5 f6 f7')), 0x220d);
  // An odd last byte is padded with zero on the right: 0x0102 + 0x0300.
  assert.is(internetChecksum(hex('01 02 03')), ~0x0402 & 0xffff);
  // A running sum can be carried in: same as summing the concatenation.
  assert.is(internetChecksum(hex('f6 f7'), onesComplementSum(hex('00 01 f2 03 f4 f5'))), 0x220d);
  assert.is(internetChecksum(new Uint8Array(0)), 0xffff);
});

test('one\'s-complement sum: long data at every alignment and length (the word-at-a-time path) equals a byte-pair reference', () => {
  const ref = (d: Uint8Array, acc: number) => {
    let s = acc;
    for (let i = 0; i < d.length; i += 2) s += (d[i] << 8) | (i + 1 < d.length ? d[i + 1] : 0);
    while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
    return s;
  };
  const buf = new Uint8Array(65536 + 16);
  let x = 12345;
  const rnd = () => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x >>> 16; };
  for (let t = 0; t < 400; t++) {
    // All-ones data (every word 0xffff: the carries at their largest), zeros, and random bytes.
    for (let i = 0; i < buf.length; i++) buf[i] = t % 4 === 0 ? 0xff : t % 4 === 1 ? 0 : rnd() & 255;
    const off = t % 8, len = t % 7 === 0 ? 65535 - (t % 5) : 60 + (rnd() % 3000);
    const d = buf.subarray(off, off + len), acc = rnd() % 0x20000;
    assert.is(onesComplementSum(d, acc), ref(d, acc), `offset ${off}, length ${len}`);
  }
});

// --- builders, byte-exact ----------------------------------------------------------------------

test('ipv4() builds the classic example header 4500 0073 ... b861 byte for byte', () => {
  const p = ipv4({ src: '192.168.0.1', dst: '192.168.0.199', df: true, protocol: 17, payload: new Uint8Array(0x73 - 20) });
  eq(p.bytes.subarray(0, 20), hex('45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7'));
  assert.is(p.bytes.length, 0x73);
  assert.is(p.ethertype, 0x0800);
});

test('ipv4() options, fragment fields and overrides land where they belong', () => {
  const p = ipv4({
    src: '10.0.0.1', dst: '10.0.0.2', id: 0xbeef, tos: 0xb8, ttl: 1, mf: true, fragOffset: 0x123,
    options: hex('01 01 01 00'), protocol: 253, payload: hex('aa bb'),
  }).bytes;
  eq(p.subarray(0, 10), hex('46 b8 00 1a be ef 21 23 01 fd'));
  eq(p.subarray(20), hex('01 01 01 00 aa bb'));
  assert.is(internetChecksum(p.subarray(0, 24)), 0, 'header checksum covers the options');
  const bad = ipv4({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, payload: hex('00'), totalLength: 999, ihl: 4, checksum: 0x1234 }).bytes;
  eq(bad.subarray(0, 4), hex('44 00 03 e7'));
  eq(bad.subarray(10, 12), hex('12 34'));
  assert.throws(() => ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: hex('00') }), /protocol is required/);
  assert.throws(() => ipv4({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 1, payload: hex('00'), options: hex('01 01') }), /multiple of 4/);
  assert.throws(() => ipv4({ src: '2001:db8::1', dst: '10.0.0.2', protocol: 1, payload: hex('00') }), /invalid IPv4 address/);
});

test('arp() and ethernet() build a known who-has request byte for byte', () => {
  // "who-has 192.168.1.1 tell 192.168.1.100", from 00:11:22:33:44:55, broadcast.
  const frame = ethernet({
    dst: 'ff:ff:ff:ff:ff:ff', src: '00:11:22:33:44:55',
    payload: arp({ op: 'request', senderMac: '00:11:22:33:44:55', senderIp: '192.168.1.100', targetIp: '192.168.1.1' }),
  });
  eq(frame, hex(`
    ff ff ff ff ff ff 00 11 22 33 44 55 08 06
    00 01 08 00 06 04 00 01 00 11 22 33 44 55 c0 a8 01 64
    00 00 00 00 00 00 c0 a8 01 01`));
  const reply = arp({ op: 2, senderMac: parseMac(B), senderIp: parseIPv4('10.0.0.2'), targetMac: A, targetIp: '10.0.0.1' });
  eq(reply.bytes.subarray(6, 8), hex('00 02'));
  const padded = ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: A, payload: reply, padTo60: true });
  assert.is(padded.length, 60);
  eq(padded.subarray(42), new Uint8Array(18));
});

test('ethernet() inserts an 802.1Q tag: TPID 8100, then PCP|DEI|VID, then the EtherType', () => {
  const frame = ethernet({ dst: B, src: A, vlan: { vid: 100, pcp: 5, dei: true }, ethertype: 0x88b5, payload: hex('de ad') });
  // TCI = 5 << 13 | 1 << 12 | 100 = 0xb064
  eq(frame, hex('02 00 00 00 00 02 02 00 00 00 00 01 81 00 b0 64 88 b5 de ad'));
  const plain = ethernet({ dst: B, src: A, vlan: 4094, ethertype: 0x88b5, payload: hex('de ad') });
  eq(plain.subarray(12, 18), hex('81 00 0f fe 88 b5'));
  assert.throws(() => ethernet({ dst: B, src: A, vlan: 4096, ethertype: 0x88b5, payload: hex('00') }), /VLAN vid/);
  assert.throws(() => ethernet({ dst: B, src: A, payload: hex('00') }), /ethertype is required/);
});

// The four frames below were computed by an independent Python script (struct + socket.inet_pton,
// its own RFC 1071 sum) and pasted here; the UDP/IPv4 one is also worked by hand.
const SYN = { srcPort: 12345, dstPort: 80, seq: 0x01020304, flags: 'S', window: 64240, options: hex('02 04 05 b4') /* MSS 1460 */ };
const DNS = { srcPort: 5353, dstPort: 53, payload: text('hello') };

test('TCP SYN over IPv4, byte for byte', () => {
  const frame = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', id: 0x1234, df: true, payload: tcp(SYN) }) });
  eq(frame, hex(`
    02 00 00 00 00 02 02 00 00 00 00 01 08 00 45 00
    00 2c 12 34 40 00 40 06 14 96 0a 00 00 01 0a 00
    00 02 30 39 00 50 01 02 03 04 00 00 00 00 60 02
    fa f0 54 a4 00 00 02 04 05 b4`));
});

test('UDP over IPv4, byte for byte, checksum worked by hand', () => {
  const frame = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', id: 0x1234, df: true, payload: udp(DNS) }) });
  // pseudo-header 0a00+0001+0a00+0002+0011+000d = 0x1421
  // UDP 14e9+0035+000d+0000 + 6865+6c6c+6f00 = 0x158fc
  // 0x1421 + 0x158fc = 0x16d1d -> 0x6d1e after the end-around carry -> complement 0x92e1
  eq(frame, hex(`
    02 00 00 00 00 02 02 00 00 00 00 01 08 00 45 00
    00 21 12 34 40 00 40 11 14 96 0a 00 00 01 0a 00
    00 02 14 e9 00 35 00 0d 92 e1 68 65 6c 6c 6f`));
});

test('TCP SYN over IPv6, byte for byte', () => {
  const frame = ethernet({ dst: B, src: A, payload: ipv6({ src: '2001:db8::1', dst: '2001:db8::2', payload: tcp(SYN) }) });
  eq(frame, hex(`
    02 00 00 00 00 02 02 00 00 00 00 01 86 dd 60 00
    00 00 00 18 06 40 20 01 0d b8 00 00 00 00 00 00
    00 00 00 00 00 01 20 01 0d b8 00 00 00 00 00 00
    00 00 00 00 00 02 30 39 00 50 01 02 03 04 00 00
    00 00 60 02 fa f0 0d 32 00 00 02 04 05 b4`));
});

test('UDP over IPv6, byte for byte', () => {
  const frame = ethernet({ dst: B, src: A, payload: ipv6({ src: '2001:db8::1', dst: '2001:db8::2', payload: udp(DNS) }) });
  eq(frame, hex(`
    02 00 00 00 00 02 02 00 00 00 00 01 86 dd 60 00
    00 00 00 0d 11 40 20 01 0d b8 00 00 00 00 00 00
    00 00 00 00 00 01 20 01 0d b8 00 00 00 00 00 00
    00 00 00 00 00 02 14 e9 00 35 00 0d 4b 6f 68 65
    6c 6c 6f`));
});

test('UDP: a computed checksum of 0 is sent as ffff; zeroChecksum sends 0', () => {
  // Payload d6b9 makes the sum all ones for these addresses and ports (found by the Python script).
  const src = parseIPv4('10.0.0.1'), dst = parseIPv4('10.0.0.2');
  const seg = udp({ srcPort: 5353, dstPort: 53, payload: hex('d6 b9') }).build(src, dst);
  eq(seg, hex('14 e9 00 35 00 0a ff ff d6 b9'));
  const none = udp({ srcPort: 5353, dstPort: 53, payload: hex('d6 b9'), zeroChecksum: true }).build(src, dst);
  eq(none.subarray(6, 8), hex('00 00'));
  const frame = (l4: ReturnType<typeof udp>) => ethernet({ dst: B, src: A, payload: ipv4({ src, dst, payload: l4 }) });
  assert.is(dissect(frame(udp({ srcPort: 5353, dstPort: 53, payload: hex('d6 b9') }))).udp?.checksumOk, true);
  assert.is(dissect(frame(udp({ srcPort: 1, dstPort: 2, zeroChecksum: true }))).udp?.checksumOk, true, 'none is fine on IPv4');
  const v6 = ethernet({ dst: B, src: A, payload: ipv6({ src: '::1', dst: '::2', payload: udp({ srcPort: 1, dstPort: 2, zeroChecksum: true }) }) });
  assert.is(dissect(v6).udp?.checksumOk, false, 'RFC 8200 forbids a zero UDP checksum on IPv6');
});

test('TCP flags and option rules', () => {
  const seg = (flags: number | string) => tcp({ srcPort: 1, dstPort: 2, flags }).build(parseIPv4('1.1.1.1'), parseIPv4('2.2.2.2'));
  assert.is(seg('SA')[13], 0x12);
  assert.is(seg('FSRPAU')[13], 0x3f);
  assert.is(seg('EC')[13], 0xc0);
  assert.is(seg(0x18)[13], 0x18);
  assert.throws(() => seg('SX'), /invalid TCP flags "SX"/);
  assert.throws(() => tcp({ srcPort: 1, dstPort: 2, options: hex('02 04 05') }), /multiple of 4/);
  assert.throws(() => tcp({ srcPort: 1, dstPort: 2, options: new Uint8Array(44) }), /at most 40/);
  assert.throws(() => tcp({ srcPort: 70000, dstPort: 2 }), /srcPort/);
  const forced = tcp({ srcPort: 1, dstPort: 2, checksum: 0xdead }).build(parseIPv4('1.1.1.1'), parseIPv4('2.2.2.2'));
  eq(forced.subarray(16, 18), hex('de ad'));
});

test('ICMP echo: checksum over the message only; ICMPv6 echo: over the pseudo-header too', () => {
  // Type 8, id 1, seq 1, payload "abcd": 0800 + 0001 + 0001 + 6162 + 6364 = 0xccc8 -> 3337
  const echo = icmp({ type: 8, id: 1, seq: 1, payload: text('abcd') }).build(new Uint8Array(4), new Uint8Array(4));
  eq(echo, hex('08 00 33 37 00 01 00 01 61 62 63 64'));
  // ICMPv6 echo request ::1 -> ::1, id 1 seq 1, no data. Pseudo-header 0001 + 0001 + length 0008 + 003a,
  // message 8000 + 0001 + 0001: sum 0x8046 -> 7fb9.
  const echo6 = icmpv6({ type: 128, id: 1, seq: 1 }).build(parseIPv6('::1'), parseIPv6('::1'));
  eq(echo6, hex('80 00 7f b9 00 01 00 01'));
  assert.throws(() => icmpv6({ type: 128 }).build(parseIPv4('1.1.1.1'), parseIPv4('2.2.2.2')), /IPv6 addresses/);
  assert.throws(() => icmp({ type: 3, rest: hex('00 00') }).build(new Uint8Array(4), new Uint8Array(4)), /rest must be 4 bytes/);
});

test('IPv6 extension headers: next-header chain and the final destination in the pseudo-header', () => {
  const hopByHop = { nextHeaderType: 0, bytes: hex('00 00 01 04 00 00 00 00') }; // PadN
  // A Segment Routing header (type 4), one segment left; Segment List[0] is the final destination.
  const final = parseIPv6('2001:db8::99');
  const srh = { nextHeaderType: 43, bytes: new Uint8Array([0, 4, 4, 1, 1, 0, 0, 0, ...final, ...parseIPv6('2001:db8::2')]) };
  const pkt = ipv6({ src: '2001:db8::1', dst: '2001:db8::2', extensions: [hopByHop, srh], payload: udp(DNS) });
  const b = pkt.bytes;
  assert.is(b[6], 0, 'IPv6 next header: hop-by-hop');
  assert.is(b[40], 43, 'hop-by-hop next header: routing');
  assert.is(b[48], 17, 'routing next header: UDP');
  assert.is(b[41], 0, 'the rest of the extension is as given');
  assert.is((b[4] << 8) | b[5], 8 + 40 + 13);
  eq(b.subarray(88), udp(DNS).build(parseIPv6('2001:db8::1'), final));
  const d = dissect(ethernet({ dst: B, src: A, payload: pkt }));
  assert.equal([d.ipv6?.nextHeader, d.ipv6?.upperProtocol, d.ipv6?.upperOffset], [0, 17, 14 + 88]);
  assert.is(d.udp?.checksumOk, true);
  assert.throws(() => ipv6({ src: '::1', dst: '::2', extensions: [{ nextHeaderType: 60, bytes: new Uint8Array(6) }], payload: udp(DNS) }), /multiple of 8/);
});

// --- dissect -----------------------------------------------------------------------------------

test('dissect() reads back what the builders wrote', () => {
  const frame = ethernet({
    dst: B, src: A, vlan: { vid: 7, pcp: 3 },
    payload: ipv4({ src: '10.1.2.3', dst: '10.9.8.7', ttl: 17, id: 42, df: true, payload: tcp({ ...SYN, flags: 'PA', ack: 99, payload: text('GET /') }) }),
  });
  const d = dissect(frame);
  assert.equal(d.vlan, { vid: 7, pcp: 3, dei: false });
  assert.is(d.ethertype, 0x0800);
  assert.is(d.dst, B);
  assert.equal(d.ipv4, {
    src: '10.1.2.3', dst: '10.9.8.7', tos: 0, ttl: 17, protocol: 6, id: 42, df: true, mf: false, fragOffset: 0,
    headerLength: 20, totalLength: 20 + 24 + 5, checksum: d.ipv4!.checksum, checksumOk: true,
  });
  assert.equal(d.tcp, {
    srcPort: 12345, dstPort: 80, seq: 0x01020304, ack: 99, headerLength: 24, flags: 0x18, flagString: 'PA',
    window: 64240, checksum: d.tcp!.checksum, urgent: 0, checksumOk: true,
  });
  assert.is(new TextDecoder().decode(d.payload), 'GET /');
  const a = dissect(ethernet({ dst: B, src: A, payload: arp({ op: 'reply', senderMac: B, senderIp: '10.0.0.2', targetMac: A, targetIp: '10.0.0.1' }) }));
  assert.equal(a.arp, { op: 2, senderMac: B, senderIp: '10.0.0.2', targetMac: A, targetIp: '10.0.0.1' });
});

test('dissect() ignores Ethernet padding past the IPv4 total length', () => {
  const frame = ethernet({ dst: B, src: A, padTo60: true, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1, dstPort: 2, payload: hex('01') }) }) });
  assert.is(frame.length, 60);
  const d = dissect(frame);
  assert.is(d.udp?.checksumOk, true);
  eq(d.payload!, hex('01'));
});

const samples: Record<string, { frame: Uint8Array; layers: [string, number][] }> = {
  'TCP/IPv4 in a VLAN': {
    frame: ethernet({ dst: B, src: A, vlan: 5, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', options: hex('01010100'), payload: tcp({ ...SYN, payload: text('xyz') }) }) }),
    // layer name, the frame length from which it appears
    layers: [['dst', 14], ['vlan', 18], ['ipv4', 18 + 20], ['tcp', 18 + 24 + 20]],
  },
  'UDP/IPv6': {
    frame: ethernet({ dst: B, src: A, payload: ipv6({ src: '2001:db8::1', dst: '2001:db8::2', payload: udp(DNS) }) }),
    layers: [['dst', 14], ['ipv6', 54], ['udp', 62]],
  },
  'ICMPv6/IPv6': {
    frame: ethernet({ dst: B, src: A, payload: ipv6({ src: '2001:db8::1', dst: '2001:db8::2', payload: icmpv6({ type: 128, payload: text('ping') }) }) }),
    layers: [['dst', 14], ['ipv6', 54], ['icmpv6', 62]],
  },
  'ICMP/IPv4': {
    frame: ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: icmp({ type: 8, payload: text('ping') }) }) }),
    layers: [['dst', 14], ['ipv4', 34], ['icmp', 42]],
  },
  ARP: {
    frame: ethernet({ dst: B, src: A, payload: arp({ op: 1, senderMac: A, senderIp: '10.0.0.1', targetIp: '10.0.0.2' }) }),
    layers: [['dst', 14], ['arp', 42]],
  },
};

test('dissect() on every truncation: never throws, leaves out cut layers, does not judge cut checksums', () => {
  for (const [name, { frame, layers }] of Object.entries(samples)) {
    assert.ok(verifyChecksums(frame), name);
    for (let len = 0; len <= frame.length; len++) {
      const cut = frame.slice(0, len);
      const d = dissect(cut) as Record<string, unknown>;
      for (const [layer, from] of layers) assert.is(layer in d, len >= from, `${name} cut to ${len}: ${layer}`);
      const l4 = (d.tcp ?? d.udp ?? d.icmp ?? d.icmpv6) as { checksumOk?: boolean } | undefined;
      if (l4) assert.is(l4.checksumOk, len === frame.length ? true : undefined, `${name} cut to ${len}: L4 checksumOk`);
      assert.ok(verifyChecksums(cut), `${name} cut to ${len}: nothing judged wrong`);
    }
  }
});

test('dissect() survives malformed headers', () => {
  const base = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: tcp(SYN) }) });
  const withIhl = (ihl: number) => { const f = base.slice(); f[14] = 0x40 | ihl; return f; };
  assert.is(dissect(withIhl(4)).ipv4?.checksumOk, false);
  assert.not.ok('tcp' in dissect(withIhl(4)));
  assert.is(dissect(withIhl(15)).ipv4?.checksumOk, undefined, 'a 60-byte header past the end is not judged');
  const shortTotal = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', totalLength: 10, payload: tcp(SYN) }) });
  assert.not.ok('tcp' in dissect(shortTotal));
  const tcpBadOffset = base.slice();
  tcpBadOffset[14 + 20 + 12] = 0xf0; // data offset 60 bytes, more than the segment
  assert.is(dissect(tcpBadOffset).tcp?.headerLength, 60);
  assert.not.ok('payload' in dissect(tcpBadOffset));
  const udpLong = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, payload: hex('00 01 00 02 00 ff 12 34') }) });
  assert.is(dissect(udpLong).udp?.checksumOk, false, 'UDP length past the IP datagram');
  const later = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', fragOffset: 3, payload: tcp(SYN) }) });
  assert.not.ok('tcp' in dissect(later), 'a later fragment has no TCP header');
  const first = ethernet({ dst: B, src: A, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', mf: true, payload: tcp(SYN) }) });
  assert.is(dissect(first).tcp?.checksumOk, undefined, 'a first fragment cannot be judged');
  assert.equal(dissect(hex('ff ff ff')), {});
});

// --- verifyChecksums -----------------------------------------------------------------------------

test('verifyChecksums() catches any single flipped byte under a checksum', () => {
  for (const [name, { frame }] of Object.entries(samples)) {
    if (name === 'ARP') continue; // nothing to check
    const l3 = name.includes('VLAN') ? 18 : 14;
    // IPv4: every header byte after version/IHL (a new version is simply another protocol).
    // IPv6 has no header checksum: from the addresses on, which the pseudo-header covers.
    const from = name.includes('IPv6') ? l3 + 8 : l3 + 1;
    for (let i = from; i < frame.length; i++) {
      const f = frame.slice();
      f[i] ^= 0xff;
      assert.not.ok(verifyChecksums(f), `${name}: byte ${i} flipped`);
    }
  }
  // The IPv6 payload length is covered through the upper-layer length, when it shrinks; when it
  // grows past the frame the datagram looks truncated, and that is not judged.
  const { frame } = samples['UDP/IPv6'];
  const shorter = frame.slice();
  shorter[19] -= 1;
  assert.not.ok(verifyChecksums(shorter));
  const longer = frame.slice();
  longer[19] += 1;
  assert.is(dissect(longer).udp?.checksumOk, undefined);
});

test('verifyChecksums() checks the IPv4 header quoted in an ICMP error', () => {
  const quoted = ipv4({ src: '10.0.0.2', dst: '10.0.0.9', payload: udp({ srcPort: 1, dstPort: 2 }) }).bytes.slice(0, 28);
  const fragNeeded = (original: Uint8Array) => ethernet({
    dst: B, src: A,
    payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: icmp({ type: 3, code: 4, rest: hex('00 00 05 dc'), payload: original }) }),
  });
  const good = dissect(fragNeeded(quoted));
  assert.equal([good.icmp?.checksumOk, good.icmp?.embeddedChecksumOk], [true, true]);
  assert.ok(verifyChecksums(fragNeeded(quoted)));
  const broken = quoted.slice();
  broken[8] = 1; // the TTL changed without the checksum following (a NAT bug, say)
  const d = dissect(fragNeeded(broken));
  assert.equal([d.icmp?.checksumOk, d.icmp?.embeddedChecksumOk], [true, false]);
  assert.not.ok(verifyChecksums(fragNeeded(broken)));
  assert.is(dissect(fragNeeded(quoted.slice(0, 19))).icmp?.embeddedChecksumOk, undefined, 'incomplete quote not judged');
});

test('rawL4() passes bytes through untouched', () => {
  const pkt = ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: rawL4(47, hex('00 00 65 58')) });
  assert.is(pkt.bytes[9], 47);
  eq(pkt.bytes.subarray(20), hex('00 00 65 58'));
});

test.run();
