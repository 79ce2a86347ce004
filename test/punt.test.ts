// The slow path to the host (punt): frames an interface asked the host to handle (DHCPv4 to a server,
// DNS to its gateway address) leave the dataplane through the punt area with a reason, are handed to
// Switch.onPunt after the batch, counted as `punted` (not as drops), and shown by trace. With punting
// off, the default, the same frames behave as before (a DHCP broadcast is flooded, DNS to the gateway
// gets ICMP port unreachable). A full punt area is a counted drop (punt_queue_full). IPv6: router
// solicitations (rs) and DHCPv6 (dhcp6) for the router's advertiser and DHCPv6 server.
//
//   port 0  A  10.0.0.2   ┐
//   port 2  B  10.0.0.3   ┴─ network 1 ── if 0  10.0.0.1/24   GW0 02:6e:70:00:00:00
//   port 1  R  192.168.1.254 ── network 2 ── if 1  192.168.1.1/24   GW1 02:6e:70:00:00:01
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, NetplaneError, type PuntInfo } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, tcp, udp, icmp, icmpv6, dissect } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };

function host(punt0?: Array<'dhcp' | 'dns' | 'rs' | 'dhcp6'>, batch?: number) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now, batch });
  const out: Array<[number, Uint8Array]> = [];
  const punted: Array<[Uint8Array, PuntInfo]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.onPunt((f, info) => punted.push([f.slice(), info]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  sw.addPort({ network: 1 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64', ...(punt0 ? { punt: punt0 } : {}) });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.setNeighbor({ address: R.ip, mac: R.mac, interface: 1 });
  const send = (frames: Array<[number, Uint8Array]>) => {
    now += 1;
    out.length = 0;
    punted.length = 0;
    sw.inject(frames, now);
  };
  return { sw, rt, send, out, punted };
}

// A DHCPDISCOVER (RFC 2131 §4.4.1): BOOTREQUEST from 0.0.0.0:68 to 255.255.255.255:67, broadcast.
function discover(xid = 0x3903f326, mac = A.mac): Uint8Array {
  const bootp = new Uint8Array(236 + 4 + 3 + 1);
  const v = new DataView(bootp.buffer);
  bootp[0] = 1; bootp[1] = 1; bootp[2] = 6;               // op BOOTREQUEST, htype Ethernet, hlen 6
  v.setUint32(4, xid);
  v.setUint16(10, 0x8000);                                // flags: broadcast
  mac.split(':').forEach((h, i) => (bootp[28 + i] = parseInt(h, 16)));
  v.setUint32(236, 0x63825363);                           // magic cookie
  bootp.set([53, 1, 1, 255], 240);                        // DHCP message type DISCOVER, end
  return ethernet({ src: mac, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '0.0.0.0', dst: '255.255.255.255', payload: udp({ srcPort: 68, dstPort: 67, payload: bootp }) }) });
}
// A DNS query for example.com A.
const query = new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, ...'example'.split('').map((c) => c.charCodeAt(0)), 3, 0x63, 0x6f, 0x6d, 0, 0, 1, 0, 1]);
const dns = (dst: string) => ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst, payload: udp({ srcPort: 5353, dstPort: 53, payload: query }) }) });

test('punting off (the default): a DHCP DISCOVER is flooded as before, nothing punted', () => {
  const { sw, send, out, punted } = host();
  const f = discover();
  send([[0, f]]);
  assert.equal(out.map(([p]) => p), [2], 'flooded to the other port of network 1');
  assert.equal(out[0][1], f);
  assert.is(punted.length, 0);
  assert.is(sw.counters().stats.punted, 0);
});

test('a DHCP DISCOVER broadcast is punted (reason dhcp, exact bytes, its origin) and not flooded', () => {
  const { sw, send, out, punted } = host(['dhcp']);
  const f = discover();
  send([[0, f]]);
  assert.is(out.length, 0, 'not flooded');
  assert.is(punted.length, 1);
  assert.equal(punted[0][0], f, 'the frame as it arrived');
  assert.equal(punted[0][1], { port: 0, reason: 'dhcp', interface: 0, compartment: 0, vlan: 0 });
  const c = sw.counters();
  assert.is(c.stats.punted, 1);
  assert.is(c.stats.dropped, 0, 'a punt is not a drop');
  assert.is(sw.dp.exports.punt_count(), 1);
});

test('a DHCP request unicast to the gateway address (a renewal) is punted as dhcp', () => {
  const { send, punted } = host(['dhcp']);
  const f = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: GW0.ip, payload: udp({ srcPort: 68, dstPort: 67, payload: new Uint8Array(244) }) }) });
  send([[0, f]]);
  assert.is(punted.length, 1);
  assert.is(punted[0][1].reason, 'dhcp');
  assert.equal(punted[0][0], f);
});

test('a DNS query to the gateway is punted (UDP and TCP); punting dhcp only leaves it to the router', () => {
  const { send, out, punted, rt, sw } = host(['dns']);
  const u = dns(GW0.ip);
  const t = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: GW0.ip, payload: tcp({ srcPort: 40000, dstPort: 53, seq: 1, flags: 'S', window: 64240 }) }) });
  send([[0, u], [0, t]]);
  assert.is(out.length, 0, 'no ICMP port unreachable, no RST');
  assert.equal(punted.map(([f, i]) => [f, i.reason, i.port]), [[u, 'dns', 0], [t, 'dns', 0]]);
  assert.is(sw.counters().stats.punted, 2);
  rt.setPunt(0, ['dhcp']);
  send([[0, u]]);
  assert.is(punted.length, 0);
  assert.is(out.length, 1, 'answered as before: ICMP port unreachable');
  assert.is(dissect(out[0][1]).icmp?.type, 3);
  assert.is(sw.counters().drops.local_port_unmapped, 1);
});

test('a DHCP broadcast is flooded again once the interface stops punting', () => {
  const { send, out, punted, rt } = host(['dhcp', 'dns']);
  assert.equal(rt.interfaces.get(0)!.punt, ['dhcp', 'dns']);
  rt.setPunt(0, []);
  send([[0, discover()]]);
  assert.is(punted.length, 0);
  assert.equal(out.map(([p]) => p), [2]);
});

test('a DNS query to another address is routed normally, not punted', () => {
  const { send, out, punted } = host(['dhcp', 'dns']);
  send([[0, dns(R.ip)]]);
  assert.is(punted.length, 0);
  assert.is(out.length, 1);
  assert.is(out[0][0], 1, 'routed out of the uplink');
  const d = dissect(out[0][1]);
  assert.is(d.ipv4?.dst, R.ip);
  assert.is(d.udp?.dstPort, 53);
});

test('the punt area takes a whole batch of up to 1024 frames; beyond, the rest are counted drops (punt_queue_full)', () => {
  assert.is(host(['dhcp']).sw.dp.exports.punt_capacity(), 256, 'the default batch of 256 fits whole');
  const { send, out, punted, sw } = host(['dhcp'], 2048);
  const cap = sw.dp.exports.punt_capacity();
  assert.is(cap, 1024, 'a 2048-frame batch punts at most 1024');
  const frames: Array<[number, Uint8Array]> = [];
  for (let i = 0; i <= cap + 1; i++) frames.push([0, discover(i)]);
  send(frames);
  assert.is(punted.length, cap);
  assert.equal(punted.map(([f]) => new DataView(f.buffer, f.byteOffset).getUint32(14 + 20 + 8 + 4)), [...Array(cap).keys()], 'in order');
  assert.is(out.length, 0);
  const c = sw.counters();
  assert.is(c.stats.punted, cap);
  assert.is(c.drops.punt_queue_full, 2);
  // The next batch starts empty.
  send([[0, discover(7)]]);
  assert.is(punted.length, 1);
});

test('the host answers through the rx path: from the gateway on a port of its own with learning off', () => {
  const { sw, send, out, punted } = host(['dhcp']);
  const service = sw.addPort({ network: 1, learning: false }).id;
  send([[0, discover()]]);
  assert.is(punted.length, 1);
  const offer = (dst: string) => ethernet({ src: GW0.mac, dst, payload: ipv4({ src: GW0.ip, dst: dst === A.mac ? '10.0.0.2' : '255.255.255.255', payload: udp({ srcPort: 67, dstPort: 68, payload: new Uint8Array(244) }) }) });
  send([[service, offer(A.mac)]]);
  assert.equal(out.map(([p]) => p), [0], 'unicast to the client\'s learned port');
  assert.equal(out[0][1], offer(A.mac));
  send([[service, offer('ff:ff:ff:ff:ff:ff')]]);
  assert.equal(out.map(([p]) => p).sort(), [0, 2], 'a broadcast OFFER is flooded, not punted');
  assert.is(punted.length, 0);
  assert.is(sw.counters().stats.dropped, 0);
});

test('trace shows the punt and changes nothing', () => {
  const { sw } = host(['dhcp']);
  const r = sw.trace(0, discover());
  assert.is(r.punted, 'dhcp');
  assert.is(r.dropped, undefined);
  assert.is(r.output.length, 0);
  const step = r.steps.find((s) => s.step === 'punt');
  assert.ok(step, r.text);
  assert.match(step!.text, /punted to the host \(dhcp\), interface 0/);
  assert.is(sw.counters().stats.punted, 0, 'the trace moved no counter');
  const off = host();
  assert.is(off.sw.trace(0, discover()).punted, undefined);
});

test('onPunt(reason, h): each reason to its own handler, the rest to onPunt(h); clearing one leaves the others', () => {
  const { sw, send, punted } = host(['dhcp', 'dns']);
  const seen: string[] = [];
  sw.onPunt('dns', (_f, info) => seen.push(info.reason));
  send([[0, discover()], [0, dns(GW0.ip)]]);
  assert.equal(seen, ['dns']);
  assert.equal(punted.map(([, i]) => i.reason), ['dhcp'], 'the general handler gets the reason without its own');
  sw.onPunt('dns', undefined);
  send([[0, dns(GW0.ip)]]);
  assert.equal(punted.map(([, i]) => i.reason), ['dns']);
  assert.is(seen.length, 1);
});

test('setPunt and the punt field refuse unknown classes, naming the field', () => {
  const { rt } = host();
  assert.throws(() => rt.setPunt(0, ['ntp' as 'dns']), (e: unknown) => e instanceof NetplaneError && /punt/.test((e as Error).message));
  assert.throws(() => rt.addInterface({ network: 3, punt: ['x' as 'dhcp'] }), (e: unknown) => e instanceof NetplaneError && /punt/.test((e as Error).message));
  assert.throws(() => rt.setPunt(9, ['dns']), (e: unknown) => e instanceof NetplaneError);
  assert.is(rt.interfaces.has(1), true);
});

// IPv6: A's link-local address, the gateway's (fe80:: + the modified EUI-64 of 02:6e:70:00:00:00).
const A6 = 'fe80::aff:fe00:a', GW0_LL = 'fe80::6e:70ff:fe00:0';
const mac6 = (a: string) => a.split(':').map((h) => parseInt(h, 16));
// A router solicitation (RFC 4861 §4.1) with a source link-layer address option, hop limit 255.
const rs = (dst = 'ff02::2', dstMac = '33:33:00:00:00:02', hopLimit = 255, src = A6) =>
  ethernet({ src: A.mac, dst: dstMac, payload: ipv6({ src, dst, hopLimit, payload: icmpv6({ type: 133, payload: src === '::' ? new Uint8Array(0) : new Uint8Array([1, 1, ...mac6(A.mac)]) }) }) });
// A DHCPv6 SOLICIT (RFC 8415 §16.2) from the client port 546, only its header: the dataplane looks no further.
const solicit6 = (dst = 'ff02::1:2', dstMac = '33:33:00:01:00:02', src = A6) =>
  ethernet({ src: A.mac, dst: dstMac, payload: ipv6({ src, dst, hopLimit: 1, payload: udp({ srcPort: 546, dstPort: 547, payload: new Uint8Array([1, 0x12, 0x34, 0x56]) }) }) });

test('rs off: a router solicitation is flooded and not punted (nd_router_message at the router)', () => {
  const { sw, send, out, punted } = host(['dhcp']);
  send([[0, rs()]]);
  assert.is(punted.length, 0);
  assert.equal(out.map(([p]) => p), [2]);
  send([[0, rs(GW0_LL, GW0.mac)]]);
  assert.is(punted.length, 0);
  assert.is(sw.counters().drops.nd_router_message, 1, 'unicast to the gateway: dropped as before');
});

test('rs: a router solicitation to ff02::2 or a gateway address (link-local, global) is punted as rs', () => {
  const { sw, send, out, punted } = host(['rs']);
  const m = rs();
  send([[0, m]]);
  assert.equal(punted.map(([f, i]) => [f, i]), [[m, { port: 0, reason: 'rs', interface: 0, compartment: 0, vlan: 0 }]]);
  assert.equal(out.map(([p]) => p), [2], 'a group frame is still flooded, as a bridge does');
  for (const [dst, mac] of [[GW0_LL, GW0.mac], ['fd00::1', GW0.mac]]) {
    const u = rs(dst, mac);
    send([[0, u]]);
    assert.equal(punted.map(([f, i]) => [f, i.reason]), [[u, 'rs']], dst);
    assert.is(out.length, 0);
  }
  send([[0, rs('ff02::2', '33:33:00:00:00:02', 255, '::')]]);
  assert.is(punted.length, 1, 'from the unspecified address, without a link-layer option');
  assert.is(sw.trace(0, rs(GW0_LL, GW0.mac)).punted, 'rs', 'trace names the reason');
  assert.is(sw.trace(0, solicit6()).punted, undefined, 'dhcp6 not punted here');
  const c = sw.counters();
  assert.is(c.stats.punted, 4);
  assert.is(c.stats.dropped, 0);
});

test('rs: invalid solicitations, or ones not for the router, are not punted', () => {
  const { sw, send, punted } = host(['rs']);
  send([[0, rs('ff02::2', '33:33:00:00:00:02', 64)]]);
  assert.is(punted.length, 0, 'hop limit 64');
  send([[0, rs('ff02::1', '33:33:00:00:00:01')]]);
  assert.is(punted.length, 0, 'to all-nodes');
  const bad = rs(GW0_LL, GW0.mac);
  bad[14 + 40 + 2] ^= 1;
  send([[0, bad]]);
  assert.is(punted.length, 0, 'bad checksum');
  // From :: with a source link-layer address option (RFC 4861 §6.1.1).
  const lla = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: '::', dst: GW0_LL, hopLimit: 255, payload: icmpv6({ type: 133, payload: new Uint8Array([1, 1, ...mac6(A.mac)]) }) }) });
  send([[0, lla]]);
  assert.is(punted.length, 0, 'unspecified source with an option');
  const d = sw.counters().drops;
  assert.is(d.nd_bad_hop_limit ?? 0, 0, 'a multicast also flooded is no drop');
  assert.is(d.nd_malformed, 2);
});

test('dhcp6: a SOLICIT to ff02::1:2 is punted and not flooded; to a gateway address punted too; off, flooded', () => {
  const { sw, send, out, punted, rt } = host(['dhcp6']);
  const m = solicit6();
  send([[0, m]]);
  assert.equal(punted.map(([f, i]) => [f, i]), [[m, { port: 0, reason: 'dhcp6', interface: 0, compartment: 0, vlan: 0 }]]);
  assert.is(out.length, 0, 'not flooded');
  for (const dst of [GW0_LL, 'fd00::1']) {
    const u = solicit6(dst, GW0.mac);
    send([[0, u]]);
    assert.equal(punted.map(([f, i]) => [f, i.reason]), [[u, 'dhcp6']], dst);
    assert.is(out.length, 0);
  }
  // Port 547 to another group, or another port to ff02::1:2: flooded as before.
  const other = ethernet({ src: A.mac, dst: '33:33:00:01:00:03', payload: ipv6({ src: A6, dst: 'ff02::1:3', hopLimit: 1, payload: udp({ srcPort: 546, dstPort: 547, payload: new Uint8Array(4) }) }) });
  send([[0, other]]);
  assert.is(punted.length, 0);
  assert.equal(out.map(([p]) => p), [2]);
  assert.is(sw.counters().stats.dropped, 0);
  rt.setPunt(0, ['rs']);
  send([[0, m]]);
  assert.is(punted.length, 0);
  assert.equal(out.map(([p]) => p), [2], 'dhcp6 off: flooded');
  assert.equal(rt.interfaces.get(0)!.punt, ['rs']);
});

test('iface_set_punt takes masks 16 (rs) and 32 (dhcp6), refuses unknown bits', () => {
  const { sw } = host();
  const x = sw.dp.exports;
  assert.is(x.iface_set_punt(0, 1 | 2 | 16 | 32), 0);
  assert.is(x.iface_set_punt(0, 64), -3);
});

test('iface_set_punt takes masks 4 (uplink) and 8 (host) with the others', () => {
  const { sw, rt } = host();
  assert.is(sw.dp.exports.iface_set_punt(0, 1 | 2 | 4 | 8 | 16 | 32), 0);
  rt.setPunt(0, ['uplink', 'host']);
  assert.equal(rt.interfaces.get(0)!.punt, ['uplink', 'host']);
});

// ---- the socket uplink's classes: uplink (everything routed out of an interface) and host ----
//
//   port 0  A  10.0.0.2 / fd00::2 ── network 1 ── if 0  10.0.0.1/24 fd00::1/64 (punt host)
//   port 1  (the host's injection port, learning off) ── network 5 ── if 1  100.64.0.1/24 (punt uplink)
//   routes 0.0.0.0/0 and ::/0 on-link out of if 1
const UP = { mac: '02:6e:70:00:00:01' };
const PEER = '02:00:00:00:00:99';
const FAR = '198.51.100.7', FAR6 = '2001:db8::7';
function uplink(opts: { host?: boolean; mtu?: number } = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now });
  const out: Array<[number, Uint8Array]> = [];
  const punted: Array<[Uint8Array, PuntInfo]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.onPunt((f, info) => punted.push([f.slice(), info]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 5, learning: false });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64', ...(opts.host ? { punt: ['host' as const, 'dns' as const] } : {}) });
  rt.addInterface({ network: 5, address: '100.64.0.1/24', address6: 'fd00:64::1/64', punt: ['uplink'], mtu: opts.mtu ?? 1500 });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1 });
  rt.addRoute({ destination: '::/0', interface: 1 });
  const send = (frames: Array<[number, Uint8Array]>) => {
    now += 1;
    out.length = 0;
    punted.length = 0;
    sw.inject(frames, now);
  };
  return { sw, rt, send, out, punted };
}
const fromA = (dst: string, payload: Parameters<typeof ipv4>[0]['payload'], o: { df?: boolean } = {}) =>
  ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst, payload, ttl: 64, ...o }) });
const fromA6 = (dst: string, payload: Parameters<typeof ipv6>[0]['payload']) =>
  ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: 'fd00::2', dst, payload, hopLimit: 64 }) });

test('uplink: a packet routed out of a punt-uplink interface is punted as it would leave, no ARP, no L2', () => {
  const { sw, send, out, punted, rt } = uplink();
  send([[0, fromA(FAR, udp({ srcPort: 40000, dstPort: 53, payload: query }))]]);
  assert.is(out.length, 0, 'nothing sent: no ARP request, no frame on network 5');
  assert.is(punted.length, 1);
  const [f, info] = punted[0];
  assert.equal(info, { port: 0, reason: 'uplink', interface: 1, compartment: 0, vlan: 0 });
  const d = dissect(f);
  assert.is(d.src, UP.mac, 'from the uplink interface');
  assert.is(d.dst, '00:00:00:00:00:00', 'to no neighbour');
  assert.is(d.ipv4?.src, A.ip, 'not masqueraded');
  assert.is(d.ipv4?.dst, FAR);
  assert.is(d.ipv4?.ttl, 63, 'routed: TTL decremented');
  assert.is(d.ipv4?.checksumOk, true);
  assert.is(d.udp?.checksumOk, true);
  const c = sw.counters();
  assert.is(c.stats.punted, 1);
  assert.is(c.stats.routed, 1);
  assert.is(c.stats.arp_requests, 0);
  assert.is(c.stats.dropped, 0);
  assert.is(rt.neighbors().length, 0);
  assert.is(rt.connections().length, 1, 'conntrack has the flow');
});

test('uplink: the reply injected from a peer MAC to the uplink MAC reaches the guest by conntrack', () => {
  const { sw, send, out, punted, rt } = uplink();
  send([[0, fromA(FAR, udp({ srcPort: 40000, dstPort: 5000, payload: new Uint8Array(8) }))]]);
  assert.is(punted.length, 1);
  const reply = ethernet({ src: PEER, dst: UP.mac, payload: ipv4({ src: FAR, dst: A.ip, payload: udp({ srcPort: 5000, dstPort: 40000, payload: new Uint8Array(4) }) }) });
  send([[1, reply]]);
  assert.is(punted.length, 0);
  assert.equal(out.map(([p]) => p), [0]);
  const d = dissect(out[0][1]);
  assert.is(d.src, GW0.mac);
  assert.is(d.dst, A.mac);
  assert.is(d.ipv4?.src, FAR);
  assert.is(d.udp?.srcPort, 5000);
  const conns = rt.connections();
  assert.is(conns.length, 1);
  assert.is(sw.counters().stats.dropped, 0);
});

test('uplink: no MTU fragmentation or Packet Too Big on a punt-uplink interface (IPv4 and IPv6)', () => {
  const { send, out, punted, sw } = uplink({ mtu: 576 });
  const big = new Uint8Array(1200);
  send([[0, fromA(FAR, udp({ srcPort: 40000, dstPort: 9, payload: big }), { df: true })], [0, fromA(FAR, udp({ srcPort: 40001, dstPort: 9, payload: big }))]]);
  assert.is(out.length, 0, 'no fragmentation needed');
  assert.equal(punted.map(([f]) => f.length), [14 + 20 + 8 + 1200, 14 + 20 + 8 + 1200], 'whole, not fragmented');
  send([[0, fromA6(FAR6, udp({ srcPort: 40000, dstPort: 9, payload: big }))]]);
  assert.is(out.length, 0, 'no Packet Too Big');
  assert.is(punted.length, 1);
  assert.is(sw.counters().drops.mtu_exceeded, undefined);
});

test('uplink: IPv6 is punted without a neighbour solicitation, and its reply routed back', () => {
  const { sw, send, out, punted } = uplink();
  send([[0, fromA6(FAR6, icmpv6({ type: 128, id: 7, seq: 1, payload: new Uint8Array(16) }))]]);
  assert.is(out.length, 0, 'no NS');
  assert.is(punted.length, 1);
  const d = dissect(punted[0][0]);
  assert.is(punted[0][1].reason, 'uplink');
  assert.is(d.ipv6?.src, 'fd00::2');
  assert.is(d.ipv6?.hopLimit, 63);
  assert.is(d.src, UP.mac);
  const reply = ethernet({ src: PEER, dst: UP.mac, payload: ipv6({ src: FAR6, dst: 'fd00::2', payload: icmpv6({ type: 129, id: 7, seq: 1, payload: new Uint8Array(16) }) }) });
  send([[1, reply]]);
  assert.equal(out.map(([p]) => p), [0], 'routed to A (A was learned by ND of the ingress)');
  assert.is(dissect(out[0][1]).icmpv6?.type, 129);
  assert.is(sw.counters().stats.arp_requests, 0);
});

test('uplink: turning the class on re-resolves an established connection; off, ARP is asked again', () => {
  const { send, out, punted, rt } = uplink();
  rt.setPunt(1, []);
  const f = () => fromA(FAR, udp({ srcPort: 40000, dstPort: 5000, payload: new Uint8Array(8) }));
  send([[0, f()]]);
  assert.is(punted.length, 0);
  assert.is(out.length, 1, 'an ARP request for the destination (on-link)');
  assert.is(dissect(out[0][1]).arp?.targetIp, FAR);
  rt.setPunt(1, ['uplink']);
  send([[0, f()]]);
  assert.is(out.length, 0);
  assert.is(punted.length, 1, 'the same connection now leaves by the punt');
});

test('host: TCP and UDP to the gateway are punted (reason host); DNS stays dns; echo answered by the router', () => {
  const { sw, send, out, punted } = uplink({ host: true });
  const u = fromA(GW0.ip, udp({ srcPort: 40000, dstPort: 8080, payload: new Uint8Array(3) }));
  const t = fromA(GW0.ip, tcp({ srcPort: 40001, dstPort: 22, seq: 1, flags: 'S', window: 64240 }));
  const d = dns(GW0.ip);
  const t6 = fromA6('fd00::1', tcp({ srcPort: 40002, dstPort: 80, seq: 1, flags: 'S', window: 64240 }));
  send([[0, u], [0, t], [0, d], [0, t6]]);
  assert.equal(punted.map(([f, i]) => [f, i.reason, i.interface]), [[u, 'host', 0], [t, 'host', 0], [d, 'dns', 0], [t6, 'host', 0]], 'as they arrived');
  assert.is(out.length, 0, 'no RST, no port unreachable');
  send([[0, fromA(GW0.ip, icmp({ type: 8, id: 1, seq: 1, payload: new Uint8Array(8) }))]]);
  assert.is(punted.length, 0);
  assert.is(out.length, 1);
  assert.is(dissect(out[0][1]).icmp?.type, 0, 'echo reply from the router');
  assert.is(sw.counters().stats.punted, 4);
});

test('host: without the class, TCP to the gateway gets the router\'s RST as before', () => {
  const { send, out, punted } = uplink();
  send([[0, fromA(GW0.ip, tcp({ srcPort: 40001, dstPort: 22, seq: 1, flags: 'S', window: 64240 }))]]);
  assert.is(punted.length, 0);
  assert.is(out.length, 1);
  assert.ok(dissect(out[0][1]).tcp!.flags & 4, 'RST');
});

test('uplink: trace shows the punt with the frame as it would leave; an egress ACL drop is never punted', () => {
  const { sw, send, punted } = uplink();
  const f = fromA(FAR, udp({ srcPort: 40000, dstPort: 53, payload: query }));
  const r = sw.trace(0, f);
  assert.is(r.punted, 'uplink', r.text);
  assert.match(r.steps.find((s) => s.step === 'punt')!.text, /punted to the host \(uplink\), interface 1/);
  assert.ok(r.steps.some((s) => s.step === 'route'), r.text);
  sw.acls.setPortAcl(0, { rules: [{ Id: 'no-dns', Action: 'Block', Direction: 'Out', Protocols: '17', RemotePorts: '53', Priority: 100 }] });
  send([[0, f]]);
  assert.is(punted.length, 0);
  assert.ok(sw.counters().stats.dropped >= 1, 'counted in the dataplane');
});

test.run();
