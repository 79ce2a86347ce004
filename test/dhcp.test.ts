// The DHCPv4 server (src/dhcp.ts) on the punt queue: crafted client messages (this file's own BOOTP
// builder and parser, independent of the server's encoder) for every message type, the options, static
// vs dynamic vs refused clients, NAKs, expiry, a persistence round trip and counted malformed input;
// then the whole path through the switch (punt → server → rx path → client port); then a real client,
// busybox udhcpc in a network namespace, which gets its static address and default route and pings
// the gateway.
//
//   port 0  client (A, static 10.0.0.50)  ┐
//   port 1  another client                ┴─ network 1 ── if 0  10.0.0.1/24  GW 02:6e:70:00:00:00
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Switch, DhcpServer, NetplaneError, type DhcpServerOptions, ethernet, ipv4, udp, dissect, verifyChecksums } from '../src/index.js';
import { requirements, linuxHost, socatHost, exec, sh, teardown } from './e2e/netns.js';
import { Daemon } from '../src/daemon.js';
import { createSocket } from 'node:dgram';

const A = '02:00:00:00:00:0a', B = '02:00:00:00:00:0b', C = '02:00:00:00:00:0c';
const GW = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1' };
const T0 = 1_700_000_000_000;

function setup(o: Partial<DhcpServerOptions> = {}) {
  const sw = new Switch({ maxPorts: 8, clock: () => T0 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.router.addInterface({ network: 1, address: '10.0.0.1/24', punt: ['dhcp'] });
  const srv = new DhcpServer(sw, { interface: 0, static: [{ mac: A, address: '10.0.0.50' }], dns: ['10.0.0.1', '1.1.1.1'], domain: 'lab.example', leaseTime: 600, ...o });
  return { sw, srv };
}

// ---- The test's own client side: BOOTP/DHCP message builder and parser (RFC 2131 §2, RFC 2132).
interface Msg { type?: number; mac?: string; xid?: number; ciaddr?: string; giaddr?: string; broadcast?: boolean; options?: Array<[number, number[]]>; op?: number; hlen?: number; cookie?: number; raw?: number[] }
const ipBytes = (s: string) => s.split('.').map(Number);
function bootp(m: Msg): Uint8Array {
  const opts: number[] = m.raw ?? [...(m.type ? [53, 1, m.type] : []), ...(m.options ?? []).flatMap(([c, v]) => [c, v.length, ...v]), 255];
  const b = new Uint8Array(240 + opts.length);
  const v = new DataView(b.buffer);
  b[0] = m.op ?? 1; b[1] = 1; b[2] = m.hlen ?? 6;
  v.setUint32(4, m.xid ?? 0xabcd1234);
  v.setUint16(10, m.broadcast ? 0x8000 : 0);
  b.set(ipBytes(m.ciaddr ?? '0.0.0.0'), 12);
  b.set(ipBytes(m.giaddr ?? '0.0.0.0'), 24);
  (m.mac ?? A).split(':').forEach((h, i) => (b[28 + i] = parseInt(h, 16)));
  v.setUint32(236, m.cookie ?? 0x63825363);
  b.set(opts, 240);
  return b;
}
function frame(m: Msg, ipSrc?: string, dst?: { mac: string; ip: string }): Uint8Array {
  const src = ipSrc ?? m.ciaddr ?? '0.0.0.0';
  const to = dst ?? { mac: 'ff:ff:ff:ff:ff:ff', ip: '255.255.255.255' };
  return ethernet({ src: m.mac ?? A, dst: to.mac, payload: ipv4({ src, dst: to.ip, payload: udp({ srcPort: 68, dstPort: 67, payload: bootp(m) }) }) });
}
interface Reply { ethDst: string; ipSrc: string; ipDst: string; sport: number; dport: number; op: number; xid: number; ciaddr: string; yiaddr: string; chaddr: string; flags: number; opts: Map<number, number[]> }
function parseReply(f: Uint8Array): Reply {
  assert.ok(verifyChecksums(f), 'IPv4 and UDP checksums correct');
  const d = dissect(f);
  const b = f.subarray(14 + 20 + 8);
  const v = new DataView(b.buffer, b.byteOffset);
  assert.is(v.getUint32(236), 0x63825363, 'magic cookie');
  const opts = new Map<number, number[]>();
  for (let i = 240; ;) {
    const c = b[i];
    if (c === 255) break;
    assert.ok(i + 1 < b.length, 'options end inside the message');
    opts.set(c, [...b.subarray(i + 2, i + 2 + b[i + 1])]);
    i += 2 + b[i + 1];
  }
  const ipAt = (o: number) => [...b.subarray(o, o + 4)].join('.');
  return { ethDst: d.dst!, ipSrc: d.ipv4!.src, ipDst: d.ipv4!.dst, sport: d.udp!.srcPort, dport: d.udp!.dstPort, op: b[0], xid: v.getUint32(4), flags: v.getUint16(10), ciaddr: ipAt(12), yiaddr: ipAt(16), chaddr: [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':'), opts };
}
const be32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const DISCOVER = 1, OFFER = 2, REQUEST = 3, DECLINE = 4, ACK = 5, NAK = 6, RELEASE = 7, INFORM = 8;

test('DISCOVER → OFFER for a static lease: addressing (broadcast asked), every option', () => {
  const { srv } = setup({ search: ['lab.example', 'example'], routes: [{ destination: '192.168.0.0/16', nextHop: '10.0.0.254' }], mtu: 1400 });
  const r = parseReply(srv.handle(frame({ type: DISCOVER, broadcast: true, xid: 77 }), T0)!);
  assert.equal([r.ethDst, r.ipSrc, r.ipDst, r.sport, r.dport], ['ff:ff:ff:ff:ff:ff', GW.ip, '255.255.255.255', 67, 68]);
  assert.equal([r.op, r.xid, r.yiaddr, r.chaddr, r.flags], [2, 77, '10.0.0.50', A, 0x8000]);
  assert.equal(r.opts.get(53), [OFFER]);
  assert.equal(r.opts.get(54), ipBytes(GW.ip), 'server id');
  assert.equal(r.opts.get(1), [255, 255, 255, 0]);
  assert.equal(r.opts.get(3), ipBytes(GW.ip));
  assert.equal(r.opts.get(6), [...ipBytes('10.0.0.1'), ...ipBytes('1.1.1.1')]);
  assert.equal(String.fromCharCode(...r.opts.get(15)!), 'lab.example');
  assert.equal(r.opts.get(51), be32(600));
  assert.equal(r.opts.get(58), be32(300));
  assert.equal(r.opts.get(59), be32(525));
  assert.equal(r.opts.get(26), [1400 >> 8, 1400 & 255]);
  assert.equal(r.opts.get(119), [3, ...'lab'.split('').map((c) => c.charCodeAt(0)), 7, ...'example'.split('').map((c) => c.charCodeAt(0)), 0, 7, ...'example'.split('').map((c) => c.charCodeAt(0)), 0]);
  // RFC 3442: 192.168/16 via .254 (width 16, two octets), then the default route via the gateway.
  assert.equal(r.opts.get(121), [16, 192, 168, 10, 0, 0, 254, 0, 10, 0, 0, 1]);
  assert.is(srv.counters.offers, 1);
});

test('without the broadcast flag an OFFER is unicast to the offered address at the client MAC', () => {
  const { srv } = setup();
  const r = parseReply(srv.handle(frame({ type: DISCOVER }), T0)!);
  assert.equal([r.ethDst, r.ipDst, r.yiaddr], [A, '10.0.0.50', '10.0.0.50']);
  assert.is(r.opts.has(121), false, 'no routes configured: no option 121');
});

test('REQUEST (selecting) → ACK binds; a REQUEST for another address → NAK, broadcast', () => {
  const { srv } = setup();
  srv.handle(frame({ type: DISCOVER }), T0);
  const ack = parseReply(srv.handle(frame({ type: REQUEST, options: [[54, ipBytes(GW.ip)], [50, ipBytes('10.0.0.50')]] }), T0 + 10)!);
  assert.equal([ack.opts.get(53), ack.yiaddr, ack.ipDst, ack.ethDst], [[ACK], '10.0.0.50', '10.0.0.50', A]);
  assert.equal(ack.opts.get(51), be32(600));
  assert.equal(srv.leasesAt(T0 + 10), [{ mac: A, address: '10.0.0.50', expires: T0 + 10 + 600_000, bound: true }]);
  const nak = parseReply(srv.handle(frame({ type: REQUEST, options: [[54, ipBytes(GW.ip)], [50, ipBytes('10.0.0.51')]] }), T0 + 20)!);
  assert.equal([nak.opts.get(53), nak.yiaddr, nak.ipDst, nak.ethDst], [[NAK], '0.0.0.0', '255.255.255.255', 'ff:ff:ff:ff:ff:ff']);
  assert.is(nak.opts.has(51), false);
  assert.is(nak.opts.has(3), false, 'a NAK carries no configuration');
  assert.equal([srv.counters.acks, srv.counters.naks], [1, 1]);
});

test('REQUEST naming another server: no reply, the offer is withdrawn', () => {
  const { srv } = setup({ static: [], pool: { start: '10.0.0.100', end: '10.0.0.101' } });
  srv.handle(frame({ type: DISCOVER, mac: B }), T0);
  assert.is(srv.leasesAt(T0).length, 1);
  assert.is(srv.handle(frame({ type: REQUEST, mac: B, options: [[54, [10, 0, 0, 9]], [50, ipBytes('10.0.0.100')]] }), T0), undefined);
  assert.is(srv.leasesAt(T0).length, 0);
  assert.is(srv.counters.dropped.other_server, 1);
});

test('INIT-REBOOT: the right address ACKed, a wrong one NAKed, another subnet NAKed, an unknown client ignored', () => {
  const { srv } = setup();
  const req = (addr: string, mac = A) => srv.handle(frame({ type: REQUEST, mac, options: [[50, ipBytes(addr)]] }), T0);
  assert.equal(parseReply(req('10.0.0.50')!).opts.get(53), [ACK]);
  assert.equal(parseReply(req('10.0.0.60')!).opts.get(53), [NAK]);
  assert.equal(parseReply(req('172.16.0.5')!).opts.get(53), [NAK], 'not on this network');
  assert.is(req('10.0.0.60', C), undefined, 'no record of this client: silent (§4.3.2)');
  assert.is(srv.counters.dropped.not_our_lease, 1);
});

test('RENEWING: unicast from ciaddr → ACK unicast to ciaddr with ciaddr set; a foreign ciaddr → NAK', () => {
  const { srv } = setup();
  const r = parseReply(srv.handle(frame({ type: REQUEST, ciaddr: '10.0.0.50' }, '10.0.0.50', GW), T0)!);
  assert.equal([r.opts.get(53), r.ipDst, r.ethDst, r.ciaddr, r.yiaddr], [[ACK], '10.0.0.50', A, '10.0.0.50', '10.0.0.50']);
  const n = parseReply(srv.handle(frame({ type: REQUEST, ciaddr: '10.0.0.77' }, '10.0.0.77', GW), T0)!);
  assert.equal(n.opts.get(53), [NAK]);
});

test('INFORM → ACK with configuration but no lease, unicast to ciaddr', () => {
  const { srv } = setup();
  const r = parseReply(srv.handle(frame({ type: INFORM, mac: C, ciaddr: '10.0.0.9' }, '10.0.0.9', GW), T0)!);
  assert.equal([r.opts.get(53), r.yiaddr, r.ciaddr, r.ipDst, r.ethDst], [[ACK], '0.0.0.0', '10.0.0.9', '10.0.0.9', C]);
  assert.is(r.opts.has(51), false);
  assert.equal(r.opts.get(6), [...ipBytes('10.0.0.1'), ...ipBytes('1.1.1.1')]);
  assert.is(srv.counters.informs, 1);
  assert.is(srv.leasesAt(T0).length, 0);
});

test('unknown MAC without a pool: no OFFER (counted unknown_client); with a pool: a dynamic lease', () => {
  const { srv } = setup();
  assert.is(srv.handle(frame({ type: DISCOVER, mac: C }), T0), undefined);
  assert.is(srv.counters.dropped.unknown_client, 1);
  const dyn = setup({ pool: { start: '10.0.0.100', end: '10.0.0.102' } }).srv;
  const o = parseReply(dyn.handle(frame({ type: DISCOVER, mac: C }), T0)!);
  assert.is(o.yiaddr, '10.0.0.100');
  const p = parseReply(dyn.handle(frame({ type: DISCOVER, mac: B, options: [[50, ipBytes('10.0.0.102')]] }), T0)!);
  assert.is(p.yiaddr, '10.0.0.102', 'the requested address when free');
  const s = parseReply(dyn.handle(frame({ type: DISCOVER, mac: A }), T0)!);
  assert.is(s.yiaddr, '10.0.0.50', 'a static MAC still gets its static address');
});

test('pool exhausted: no_address; the table bounded by maxLeases: lease_table_full', () => {
  const { srv } = setup({ static: [], pool: { start: '10.0.0.100', end: '10.0.0.100' } });
  assert.ok(srv.handle(frame({ type: DISCOVER, mac: B }), T0));
  assert.is(srv.handle(frame({ type: DISCOVER, mac: C }), T0), undefined);
  assert.is(srv.counters.dropped.lease_table_full + srv.counters.dropped.no_address, 1);
  const big = setup({ static: [], pool: { start: '10.0.0.100', end: '10.0.0.200' }, maxLeases: 2 }).srv;
  for (let i = 0; i < 50; i++) big.handle(frame({ type: DISCOVER, mac: `02:00:00:00:01:${i.toString(16).padStart(2, '0')}` }), T0);
  assert.is(big.leasesAt(T0).length, 2);
  assert.is(big.counters.dropped.lease_table_full, 48);
  // Offers expire (offerTime, 60 s): room again later.
  assert.ok(big.handle(frame({ type: DISCOVER, mac: C }), T0 + 61_000));
});

test('lease expiry: an expired dynamic lease\'s address goes to another client; the old client is NAKed', () => {
  const { srv } = setup({ static: [], pool: { start: '10.0.0.100', end: '10.0.0.100' }, leaseTime: 60 });
  srv.handle(frame({ type: DISCOVER, mac: B }), T0);
  assert.equal(parseReply(srv.handle(frame({ type: REQUEST, mac: B, options: [[54, ipBytes(GW.ip)], [50, ipBytes('10.0.0.100')]] }), T0)!).opts.get(53), [ACK]);
  assert.is(srv.handle(frame({ type: DISCOVER, mac: C }), T0 + 59_000), undefined, 'still B\'s');
  const o = parseReply(srv.handle(frame({ type: DISCOVER, mac: C }), T0 + 61_000)!);
  assert.is(o.yiaddr, '10.0.0.100', 'expired: given to C');
  srv.handle(frame({ type: REQUEST, mac: C, options: [[54, ipBytes(GW.ip)], [50, ipBytes('10.0.0.100')]] }), T0 + 61_000);
  const n = parseReply(srv.handle(frame({ type: REQUEST, mac: B, ciaddr: '10.0.0.100' }, '10.0.0.100', GW), T0 + 62_000)!);
  assert.equal(n.opts.get(53), [NAK], 'B renewing an address C now holds');
});

test('RELEASE frees the address; DECLINE marks it unusable for declineTime', () => {
  const { srv } = setup({ static: [], pool: { start: '10.0.0.100', end: '10.0.0.101' }, declineTime: 100 });
  const bind = (mac: string, t: number) => {
    const a = parseReply(srv.handle(frame({ type: DISCOVER, mac }), t)!).yiaddr;
    srv.handle(frame({ type: REQUEST, mac, options: [[54, ipBytes(GW.ip)], [50, ipBytes(a)]] }), t);
    return a;
  };
  assert.is(bind(B, T0), '10.0.0.100');
  assert.is(srv.handle(frame({ type: RELEASE, mac: B, ciaddr: '10.0.0.100', options: [[54, ipBytes(GW.ip)]] }, '10.0.0.100', GW), T0), undefined);
  assert.is(srv.counters.releases, 1);
  assert.is(srv.leasesAt(T0).length, 0);
  assert.is(bind(C, T0), '10.0.0.100', 'released: free again');
  assert.is(srv.handle(frame({ type: DECLINE, mac: C, options: [[54, ipBytes(GW.ip)], [50, ipBytes('10.0.0.100')]] }), T0), undefined);
  assert.is(srv.counters.declines, 1);
  assert.is(bind(C, T0 + 1000), '10.0.0.101', 'the declined address is skipped');
  assert.is(srv.handle(frame({ type: DISCOVER, mac: B }), T0 + 1000), undefined, 'one declined, one bound: nothing to offer');
  assert.is(srv.counters.dropped.no_address, 1);
  assert.is(srv.handle(frame({ type: DISCOVER, mac: '02:00:00:00:00:0d' }), T0 + 50_000), undefined, 'declined still, the other taken');
  assert.is(parseReply(srv.handle(frame({ type: DISCOVER, mac: '02:00:00:00:00:0d' }), T0 + 101_000)!).yiaddr, '10.0.0.100', 'usable again after declineTime');
});

test('persistence: toJSON → JSON → a new server keeps the client\'s address', () => {
  const o = { static: [], pool: { start: '10.0.0.100', end: '10.0.0.110' } };
  const { srv } = setup(o);
  srv.handle(frame({ type: DISCOVER, mac: C }), T0);
  srv.handle(frame({ type: DISCOVER, mac: B }), T0);
  srv.handle(frame({ type: REQUEST, mac: B, options: [[54, ipBytes(GW.ip)], [50, ipBytes('10.0.0.101')]] }), T0);
  const saved = JSON.parse(JSON.stringify(srv));
  assert.equal(saved, { version: 1, leases: [{ mac: B, address: '10.0.0.101', expires: T0 + 600_000 }], declined: [] }, 'bound leases only');
  const again = setup(o).srv;
  again.restore(saved);
  assert.equal(again.toJSON(), saved);
  // Another client asks first: it does not get B's address; B gets its own back.
  assert.is(parseReply(again.handle(frame({ type: DISCOVER, mac: C, options: [[50, ipBytes('10.0.0.101')]] }), T0 + 1000)!).yiaddr, '10.0.0.100');
  assert.is(parseReply(again.handle(frame({ type: DISCOVER, mac: B }), T0 + 1000)!).yiaddr, '10.0.0.101');
  assert.equal(parseReply(again.handle(frame({ type: REQUEST, mac: B, ciaddr: '10.0.0.101' }, '10.0.0.101', GW), T0 + 2000)!).opts.get(53), [ACK]);
  assert.throws(() => setup(o).srv.restore({ version: 1, leases: [{ mac: 'x', address: '10.0.0.1', expires: 1 }], declined: [] }), (e: unknown) => e instanceof NetplaneError && /state\.leases\[0\]\.mac/.test((e as Error).message));
});

test('malformed messages are counted by reason and ignored, never thrown', () => {
  const { srv } = setup();
  const cases: Array<[string, Uint8Array]> = [
    ['bad_cookie', frame({ type: DISCOVER, cookie: 0x63825364 })],
    ['bad_op', frame({ type: DISCOVER, op: 2 })],
    ['bad_htype_hlen', frame({ type: DISCOVER, hlen: 16 })],
    ['bad_options', frame({ raw: [53, 1, 1, 12, 40, 65] })],          // option 12 runs past the end
    ['bad_options', frame({ raw: [53, 1, 1] })],                      // no end option
    ['bad_options', frame({ raw: [53, 1, 1, 52, 1, 9, 255] })],       // bad overload value
    ['no_message_type', frame({ raw: [255] })],
    ['bad_message_type', frame({ raw: [53, 2, 1, 1, 255] })],
    ['bad_message_type', frame({ type: 42 })],
    ['bad_message_type', frame({ type: OFFER })],                     // a server message to a server
    ['relayed', frame({ type: DISCOVER, giaddr: '10.9.9.9' })],
    ['truncated', ethernet({ src: A, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '0.0.0.0', dst: '255.255.255.255', payload: udp({ srcPort: 68, dstPort: 67, payload: bootp({ type: 1 }).subarray(0, 200) }) }) })],
    ['bad_checksum', ethernet({ src: A, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '0.0.0.0', dst: '255.255.255.255', payload: udp({ srcPort: 68, dstPort: 67, payload: bootp({ type: 1 }), checksum: 0x1234 }) }) })],
    ['not_ipv4_udp', new Uint8Array(10)],
    ['not_ipv4_udp', frame({ type: DISCOVER }).subarray(0, 30)],
    ['chaddr_mismatch', ethernet({ src: B, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '0.0.0.0', dst: '255.255.255.255', payload: udp({ srcPort: 68, dstPort: 67, payload: bootp({ type: 1, mac: A }) }) }) })],
  ];
  const want: Record<string, number> = {};
  for (const [reason, f] of cases) {
    assert.is(srv.handle(f, T0), undefined, reason);
    want[reason] = (want[reason] ?? 0) + 1;
  }
  for (const [reason, n] of Object.entries(want)) assert.is(srv.counters.dropped[reason as keyof typeof srv.counters.dropped], n, reason);
  assert.is(srv.counters.received, cases.length);
  assert.equal([srv.counters.offers, srv.counters.acks, srv.counters.naks], [0, 0, 0]);
  // Random bytes behind valid headers: never a throw.
  let seed = 7;
  for (let i = 0; i < 2000; i++) {
    const f = frame({ type: DISCOVER, raw: Array.from({ length: (i % 60) + 1 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255) });
    srv.handle(f, T0);
  }
});

test('configuration errors name the field', () => {
  const bad: Array<[Partial<DhcpServerOptions>, RegExp]> = [
    [{ static: [{ mac: A, address: '10.1.0.5' }] }, /static\[0\]\.address/],
    [{ static: [{ mac: 'zz', address: '10.0.0.5' }] }, /static\[0\]\.mac/],
    [{ pool: { start: '10.0.0.9', end: '10.0.0.3' } }, /pool\.end/],
    [{ leaseTime: 0 }, /leaseTime/],
    [{ dns: ['x'] }, /dns\[0\]/],
    [{ routes: Array.from({ length: 40 }, (_, i) => ({ destination: `10.${i}.0.0/16`, nextHop: '10.0.0.1' })) }, /routes|options/],
  ];
  for (const [o, re] of bad) assert.throws(() => setup(o), (e: unknown) => e instanceof NetplaneError && re.test((e as Error).message), JSON.stringify(o));
});

test('through the switch: attach() answers a punted DISCOVER on the rx path, to the client\'s port only', async () => {
  const { sw, srv } = setup();
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  srv.attach(() => T0);
  sw.inject([[0, frame({ type: DISCOVER })]]);
  assert.is(sw.counters().stats.punted, 1);
  await new Promise((r) => setImmediate(r));
  assert.equal(out.map(([p]) => p), [0], 'unicast OFFER switched to port 0 (the learned client MAC)');
  const r = parseReply(out[0][1]);
  assert.equal([r.opts.get(53), r.yiaddr], [[OFFER], '10.0.0.50']);
  out.length = 0;
  sw.inject([[0, frame({ type: DISCOVER, broadcast: true })]]);
  await new Promise((r) => setImmediate(r));
  assert.equal(out.map(([p]) => p).sort(), [0, 1], 'a broadcast OFFER floods the domain, not punted again');
  assert.is(sw.counters().stats.punted, 2);
  assert.is(sw.counters().stats.dropped, 0);
});

test('two interfaces, two servers on one switch: each answers its own domain; detach stops one', async () => {
  const { sw, srv } = setup();
  const p2 = sw.addPort({ network: 2 }).id;
  sw.router.addInterface({ network: 2, address: '10.2.0.1/24', punt: ['dhcp'] });
  const srv2 = new DhcpServer(sw, { interface: 1, static: [{ mac: B, address: '10.2.0.7' }] });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  srv.attach(() => T0);
  const detach2 = srv2.attach(() => T0);
  assert.throws(() => srv2.attach(), /already has a DHCP server/);
  sw.inject([[0, frame({ type: DISCOVER })], [p2, frame({ type: DISCOVER, mac: B })]]);
  await new Promise((r) => setImmediate(r));
  assert.equal(out.map(([p, f]) => [p, parseReply(f).yiaddr, parseReply(f).ipSrc]).sort(), [[0, '10.0.0.50', '10.0.0.1'], [p2, '10.2.0.7', '10.2.0.1']]);
  detach2();
  out.length = 0;
  sw.inject([[0, frame({ type: DISCOVER })], [p2, frame({ type: DISCOVER, mac: B })]]);
  await new Promise((r) => setImmediate(r));
  assert.equal(out.map(([p]) => p), [0]);
  assert.is(srv2.counters.received, 1);
});

// ---- A real client.
const missing = requirements();

test('e2e: busybox udhcpc in a namespace gets its static address and default route, then pings the gateway', async () => {
  if (missing) throw new Error(missing);
  const sw = new Switch({ maxPorts: 4 });
  const port = sw.addPort({ network: 7 }).id;
  sw.router.addInterface({ network: 7, address: '10.77.0.1/24', punt: ['dhcp'] });
  const mac = '02:00:00:77:00:02';
  const srv = new DhcpServer(sw, { interface: 0, static: [{ mac, address: '10.77.0.42' }], dns: ['10.77.0.1'] });
  srv.attach();
  const dir = mkdtempSync(join(tmpdir(), 'netplane-dhcp-'));
  try {
    const h = await linuxHost(sw, port, 'dh', { mac, address: '169.254.77.2/16' });
    sh(['ip', 'addr', 'flush', 'dev', h.dev], { ns: h.ns });
    const script = join(dir, 'udhcpc.sh');
    writeFileSync(script, `#!/bin/sh\ncase "$1" in\n deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;\n bound|renew)\n  ip addr add "$ip/$mask" dev "$interface"\n  for r in $router; do ip route add default via "$r" dev "$interface"; done\n  echo "$ip $mask $router $dns $lease" > ${dir}/lease ;;\nesac\nexit 0\n`);
    chmodSync(script, 0o755);
    const r = await exec(h.ns, `busybox udhcpc -i ${h.dev} -n -q -t 5 -s ${script}`, 60000);
    assert.is(r.code, 0, `udhcpc: ${r.out} ${r.err}`);
    assert.is(readFileSync(join(dir, 'lease'), 'utf8').trim(), '10.77.0.42 24 10.77.0.1 10.77.0.1 3600');
    assert.match(sh(['ip', '-4', 'addr', 'show', 'dev', h.dev], { ns: h.ns }), /inet 10\.77\.0\.42\/24/);
    assert.match(sh(['ip', 'route', 'show', 'default'], { ns: h.ns }), /default via 10\.77\.0\.1/);
    const p = await exec(h.ns, 'ping -c 2 -W 2 10.77.0.1', 15000);
    assert.is(p.code, 0, p.out + p.err);
    assert.ok(srv.counters.acks >= 1 && srv.counters.offers >= 1);
    assert.equal(srv.leasesAt(Date.now()).map((l) => [l.mac, l.address, l.bound]), [[mac, '10.77.0.42', true]]);
  } finally {
    await teardown();
  }
});

test('e2e: a daemon endpoint created without addresses; busybox udhcpc behind socat gets the assigned address, keeps it across a daemon restart, and pings the gateway', async () => {
  if (missing) throw new Error(missing);
  const state = mkdtempSync(join(tmpdir(), 'netplane-dhcp-daemon-'));
  const dir = mkdtempSync(join(tmpdir(), 'netplane-dhcp-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const start = async () => { const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false }, defaults: { network: true } }); await d.listen(); return d; };
  let d = await start();
  try {
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } } });
    const h = await socatHost('dd', { host: '127.0.0.1', port: free }, ep.MacAddress);
    const script = join(dir, 'udhcpc.sh');
    writeFileSync(script, `#!/bin/sh\ncase "$1" in\n deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;\n bound|renew)\n  ip addr flush dev "$interface"\n  ip addr add "$ip/$mask" dev "$interface"\n  for r in $router; do ip route replace default via "$r" dev "$interface"; done\n  echo "$ip $mask $router $dns $lease" > ${dir}/lease ;;\nesac\nexit 0\n`);
    chmodSync(script, 0o755);
    const r = await exec(h.ns, `busybox udhcpc -i ${h.dev} -n -q -t 5 -s ${script}`, 60000);
    assert.is(r.code, 0, `udhcpc: ${r.out} ${r.err}`);
    assert.is(readFileSync(join(dir, 'lease'), 'utf8').trim(), `${ep.IpConfigurations[0].IpAddress} 24 172.20.0.1 172.20.0.1 3600`, 'the endpoint\'s address, the gateway as router and DNS');
    assert.equal(d.host.endpointStatus('vm').Dhcp?.Lease, 'Static');
    await d.close();
    d = await start();
    assert.equal(d.host.endpointStatus('vm').Dhcp?.Lease, 'Static', 'the lease is back after the restart');
    // The client renews (-R: release first would drop it; a plain new run asks for its address again).
    const again = await exec(h.ns, `busybox udhcpc -i ${h.dev} -n -q -t 5 -s ${script}`, 60000);
    assert.is(again.code, 0, `udhcpc after the restart: ${again.out} ${again.err}`);
    assert.match(sh(['ip', '-4', 'addr', 'show', 'dev', h.dev], { ns: h.ns }), new RegExp(`inet ${ep.IpConfigurations[0].IpAddress.replace(/\./g, '\\.')}/24`));
    const p = await exec(h.ns, 'ping -c 2 -W 2 172.20.0.1', 15000);
    assert.is(p.code, 0, p.out + p.err);
    assert.ok(d.host.compiler.services.counters()[0].acks >= 1);
  } finally {
    await teardown();
    await d.close();
  }
});

test.run();
