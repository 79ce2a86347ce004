// TCP sequence and window tracking (assembly/nodes/tcpwindow.ts), liberal zones and loose pickup, through
// masquerade, a port mapping, hairpin, IPv6 and a port's ACL. The verdicts are Linux's tcp_in_window's
// for the same segments: what Linux marks invalid is a drop with a named reason here, what it ignores
// passes. Each IPv4 verdict and state here was checked against Linux 6.18 (a namespace router with
// `ct state invalid counter drop`, the same sequence numbers, windows and options).
//
// Host: A 10.0.0.2 and B 10.0.0.3 behind if 0 (10.0.0.1/24); the outside (port 2) behind if 1
// (192.168.1.1/24, external) with the next hop R; masquerade for 10.0.0.0/24; tcp 8080 -> B:80.
// IPv6: A fd00::2 on if 0 (fd00::1/64), C fd01::2 on if 1 (fd01::1/64).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, tcp, arp, dissect, type L4 } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254' };
const C = { mac: '02:00:00:00:00:0c', ip6: 'fd01::2' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };
const SERVER = '1.2.3.4';
const BC = 'ff:ff:ff:ff:ff:ff';
const data = new Uint8Array(100).fill(7);
// TCP options: NOP + window scale 7; SACK permitted + two NOPs.
const WSCALE7 = new Uint8Array([1, 3, 3, 7]);

function host(opts: { ifTcp?: { liberal?: boolean; pickup?: boolean } } = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, macEntries: 256, clock: () => now });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64', tcp: opts.ifTcp });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', address6: 'fd01::1/64', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: R.ip });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: B.ip, internalPort: 80 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 0 });
  rt.setNeighbor({ address: R.ip, mac: R.mac, interface: 1 });
  rt.setNeighbor({ address: A.ip6, mac: A.mac, interface: 0 });
  rt.setNeighbor({ address: C.ip6, mac: C.mac, interface: 1 });
  const send = (port: number, f: Uint8Array, dt = 1) => {
    now += dt;
    out.length = 0;
    sw.inject([[port, f]], now);
    return out.map(([p]) => p);
  };
  const sent = () => out.map(([, f]) => f);
  send(0, ethernet({ dst: BC, src: A.mac, payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: '10.0.0.99' }) }));
  send(1, ethernet({ dst: BC, src: B.mac, payload: arp({ op: 'request', senderMac: B.mac, senderIp: B.ip, targetIp: '10.0.0.99' }) }));
  send(2, ethernet({ dst: BC, src: R.mac, payload: arp({ op: 'request', senderMac: R.mac, senderIp: R.ip, targetIp: '192.168.1.99' }) }));
  const drops = () => sw.counters().drops;
  return { sw, rt, send, sent, drops };
}

interface Seg { flags: string; seq: number; ack?: number; window?: number; options?: Uint8Array; payload?: Uint8Array }
const seg = (s: Seg, sport: number, dport: number): L4 => tcp({ srcPort: sport, dstPort: dport, flags: s.flags, seq: s.seq >>> 0, ack: (s.ack ?? 0) >>> 0, window: s.window ?? 1000, options: s.options, payload: s.payload });
// A (10.0.0.2:50000) to SERVER:443 through masquerade, and the server's answers to the translated tuple.
const out = (s: Seg, sport = 50000) => ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: SERVER, payload: seg(s, sport, 443) }) });
const inn = (s: Seg, dport = 50000) => ethernet({ src: R.mac, dst: GW1.mac, payload: ipv4({ src: SERVER, dst: GW1.ip, payload: seg(s, 443, dport) }) });

// The handshake: A's ISN 1000, the server's 5000; windows as given.
function handshake(h: ReturnType<typeof host>, o: { clientWin?: number; serverWin?: number; clientOpts?: Uint8Array; serverOpts?: Uint8Array } = {}) {
  assert.equal(h.send(0, out({ flags: 'S', seq: 1000, window: o.clientWin ?? 1000, options: o.clientOpts })), [2]);
  assert.equal(h.send(2, inn({ flags: 'SA', seq: 5000, ack: 1001, window: o.serverWin ?? 1000, options: o.serverOpts })), [0]);
  assert.equal(h.send(0, out({ flags: 'A', seq: 1001, ack: 5001, window: o.clientWin ?? 1000 })), [2]);
  assert.is(h.rt.connections()[0].state, 'ESTABLISHED');
}

test('a SYN-ACK that acknowledges more than the SYN is dropped (ct_tcp_ack_out_of_window); the right one passes', () => {
  const h = host();
  assert.equal(h.send(0, out({ flags: 'S', seq: 1000 })), [2]);
  assert.equal(h.send(2, inn({ flags: 'SA', seq: 5000, ack: 9999 })), [], 'ack 9999 for a SYN at 1000');
  assert.is(h.drops().ct_tcp_ack_out_of_window, 1);
  assert.is(h.rt.connections()[0].state, 'SYN_SENT', 'the connection did not move');
  // An ACK from far below is not invalid for Linux either: it passes, ignored, and moves nothing.
  assert.equal(h.send(2, inn({ flags: 'SA', seq: 5000, ack: 1000 - 100_000 })), [0]);
  assert.is(h.rt.connections()[0].state, 'SYN_SENT');
  assert.equal(h.send(2, inn({ flags: 'SA', seq: 5000, ack: 1001 })), [0]);
  assert.is(h.rt.connections()[0].state, 'SYN_RECV');
});

test('data beyond the receiver\'s window is dropped (ct_tcp_out_of_window); data in the window passes', () => {
  const h = host();
  handshake(h);
  // The client advertised 1000 bytes from 5001: the server may send up to 6001.
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5001, ack: 1001, payload: data })), [0], 'in window');
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5101 + 100_000, ack: 1001, payload: data })), [], 'far beyond the window');
  assert.is(h.drops().ct_tcp_out_of_window, 1);
  // Data acknowledging what A never sent: dropped as well.
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5101, ack: 1001 + 50_000, payload: data })), []);
  assert.is(h.drops().ct_tcp_ack_out_of_window, 1);
  // The client's side: in window, then a blind injection far ahead.
  assert.equal(h.send(0, out({ flags: 'PA', seq: 1001, ack: 5101, payload: data })), [2]);
  assert.equal(h.send(0, out({ flags: 'PA', seq: 1001 + 3_000_000, ack: 5101, payload: data })), []);
  assert.is(h.drops().ct_tcp_out_of_window, 2);
  // An old retransmission (before the window) passes without moving anything, as Linux ignores it.
  const ignored = h.sw.counters().stats.ct_tcp_ignored;
  assert.equal(h.send(0, out({ flags: 'PA', seq: 1001 - 100_000, ack: 5101, payload: data })), [2]);
  assert.is(h.sw.counters().stats.ct_tcp_ignored, ignored + 1);
  // The trace says which and why.
  assert.match(h.sw.trace(0, out({ flags: 'PA', seq: 1001 - 100_000, ack: 5101, payload: data })).text, /conntrack +hit: connection \d+, original direction, TCP segment outside the window, ignored/);
  assert.match(h.sw.trace(0, out({ flags: 'PA', seq: 1001 + 3_000_000, ack: 5101, payload: data })).text, /drop +ct_tcp_out_of_window/);
});

test('window scaling counts when both SYNs carry the option, and only then', () => {
  // Scaled: the client's window 1000 << 7 = 128000 bytes, so data 100000 bytes ahead is in window.
  const h = host();
  handshake(h, { clientOpts: WSCALE7, serverOpts: WSCALE7 });
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5001 + 100_000, ack: 1001, payload: data })), [0], 'in the scaled window');
  assert.is(h.drops().ct_tcp_out_of_window ?? 0, 0);
  // The server did not send the option: no scaling either way, the same segment is out of window.
  const u = host();
  handshake(u, { clientOpts: WSCALE7 });
  assert.equal(u.send(2, inn({ flags: 'PA', seq: 5001 + 100_000, ack: 1001, payload: data })), []);
  assert.is(u.drops().ct_tcp_out_of_window, 1);
});

test('a RST below what its receiver acknowledged is dropped; one where the receiver expects it closes', () => {
  const h = host();
  handshake(h);
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5001, ack: 1001, payload: data })), [0]);
  assert.equal(h.send(0, out({ flags: 'A', seq: 1001, ack: 5101 })), [2]);
  // A acknowledged up to 5101: a RST from the server at 5050 is stale or forged.
  assert.equal(h.send(2, inn({ flags: 'R', seq: 5050 })), []);
  assert.is(h.drops().ct_tcp_invalid_rst, 1);
  // Far beyond the window.
  assert.equal(h.send(2, inn({ flags: 'R', seq: 5101 + 1_000_000 })), []);
  assert.is(h.drops().ct_tcp_out_of_window, 1);
  assert.is(h.rt.connections()[0].state, 'ESTABLISHED');
  // In window but not exactly at 5101: passes (the receiver answers with a challenge ACK, RFC 5961),
  // the connection stays.
  assert.equal(h.send(2, inn({ flags: 'R', seq: 5101 + 500 })), [0]);
  assert.is(h.rt.connections()[0].state, 'ESTABLISHED');
  assert.equal(h.send(2, inn({ flags: 'R', seq: 5101 })), [0]);
  assert.is(h.rt.connections()[0].state, 'CLOSE');
});

test('a liberal zone passes what is out of window, but not a RST below the receiver\'s ACK', () => {
  const h = host();
  h.rt.setConntrackTcp(0, { liberal: true });
  assert.equal(h.rt.conntrackTcp(0), { liberal: true, pickup: true });
  assert.equal(h.send(0, out({ flags: 'S', seq: 1000 })), [2]);
  assert.equal(h.send(2, inn({ flags: 'SA', seq: 5000, ack: 9999 })), [0], 'the bad SYN-ACK passes');
  assert.is(h.rt.connections()[0].state, 'SYN_RECV');
  assert.equal(h.send(0, out({ flags: 'A', seq: 1001, ack: 5001 })), [2]);
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5101 + 100_000, ack: 1001, payload: data })), [0], 'so does data far beyond the window');
  assert.equal(h.send(0, out({ flags: 'A', seq: 1001, ack: 5001 })), [2]);
  assert.equal(h.send(2, inn({ flags: 'R', seq: 4000 })), []);
  assert.is(h.drops().ct_tcp_invalid_rst, 1);
  // Switched back: the window holds again for the same connection.
  h.rt.setConntrackTcp(0, { liberal: false });
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5101 + 3_000_000, ack: 1001, payload: data })), []);
  assert.is(h.drops().ct_tcp_out_of_window, 1);
});

test('an interface\'s tcp.liberal makes the connections routed through it liberal', () => {
  const h = host({ ifTcp: { liberal: true } });
  assert.equal(h.send(0, out({ flags: 'S', seq: 1000 })), [2]);
  assert.equal(h.send(2, inn({ flags: 'SA', seq: 5000, ack: 9999 })), [0]);
  assert.is(h.drops().ct_tcp_ack_out_of_window ?? 0, 0);
});

test('pickup: a plain ACK segment with no connection starts one mid-stream (masquerade keeps the port); RST and FIN do not', () => {
  const h = host();
  assert.equal(h.send(0, out({ flags: 'R', seq: 1001 })), []);
  assert.equal(h.send(0, out({ flags: 'FA', seq: 1001, ack: 5001 })), []);
  assert.is(h.drops().ct_invalid_new, 2);
  assert.equal(h.send(0, out({ flags: 'PA', seq: 1001, ack: 5001, payload: data })), [2]);
  const f = dissect(h.sent()[0]);
  assert.is(f.ipv4!.src, GW1.ip);
  assert.is(f.tcp!.srcPort, 50000, 'the same external port as before a restart, since it is free');
  let c = h.rt.connections();
  assert.is(c.length, 1);
  assert.equal([c[0].state, c[0].assured], ['ESTABLISHED', false]);
  assert.is(h.sw.counters().stats.ct_tcp_pickups, 1);
  // The other side answers: assured; a picked-up connection stays liberal (its window scale is unknown).
  assert.equal(h.send(2, inn({ flags: 'A', seq: 5001, ack: 1101 })), [0]);
  assert.ok(h.rt.connections()[0].assured);
  assert.equal(h.send(2, inn({ flags: 'PA', seq: 5001 + 200_000, ack: 1101, payload: data })), [0]);
  // From the outside, through the port mapping: translated to B:80.
  assert.equal(h.send(2, ethernet({ src: R.mac, dst: GW1.mac, payload: ipv4({ src: '8.8.8.8', dst: GW1.ip, payload: seg({ flags: 'A', seq: 7, ack: 9 }, 33333, 8080) }) })), [1]);
  const g = dissect(h.sent()[0]);
  assert.equal([g.ipv4!.dst, g.tcp!.dstPort], [B.ip, 80]);
  c = h.rt.connections();
  assert.is(c.length, 2);
});

test('with pickup off (per compartment or per interface) a mid-stream segment is ct_invalid_new', () => {
  const h = host();
  h.rt.setConntrackTcp(0, { pickup: false });
  assert.equal(h.send(0, out({ flags: 'A', seq: 1001, ack: 5001 })), []);
  assert.is(h.drops().ct_invalid_new, 1);
  const i = host({ ifTcp: { pickup: false } });
  assert.equal(i.send(0, out({ flags: 'A', seq: 1001, ack: 5001 })), []);
  assert.equal(i.send(2, ethernet({ src: R.mac, dst: GW1.mac, payload: ipv4({ src: '8.8.8.8', dst: GW1.ip, payload: seg({ flags: 'A', seq: 7, ack: 9 }, 33333, 8080) }) })), [], 'either end\'s interface decides');
  assert.is(i.drops().ct_invalid_new, 2);
  assert.equal(i.send(0, out({ flags: 'S', seq: 1000 })), [2], 'a SYN still starts one');
});

test('flag combinations no TCP sends are dropped: ct_invalid_new for a new one, ct_tcp_bad_flags on a connection', () => {
  const h = host();
  assert.equal(h.send(0, out({ flags: 'SF', seq: 1000 })), []);
  assert.is(h.drops().ct_invalid_new, 1);
  handshake(h);
  assert.equal(h.send(0, out({ flags: 'SF', seq: 1001, ack: 5001 })), []);
  assert.equal(h.send(0, out({ flags: '', seq: 1001 })), []);
  assert.is(h.drops().ct_tcp_bad_flags, 2);
});

test('hairpin through a port mapping: the window holds for the translated connection', () => {
  const h = host();
  const ab = (s: Seg) => ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: GW1.ip, payload: seg(s, 40000, 8080) }) });
  assert.equal(h.send(0, ab({ flags: 'S', seq: 1000 })), [1]);
  const syn = dissect(h.sent()[0]);
  assert.equal([syn.ipv4!.src, syn.ipv4!.dst, syn.tcp!.seq], [GW0.ip, B.ip, 1000], 'seq numbers are not translated');
  const ba = (s: Seg) => ethernet({ src: B.mac, dst: GW0.mac, payload: ipv4({ src: B.ip, dst: GW0.ip, payload: seg(s, 80, syn.tcp!.srcPort) }) });
  assert.equal(h.send(1, ba({ flags: 'SA', seq: 5000, ack: 1500 })), [], 'a SYN-ACK acknowledging more than the SYN');
  assert.is(h.drops().ct_tcp_ack_out_of_window, 1);
  assert.equal(h.send(1, ba({ flags: 'SA', seq: 5000, ack: 1001 })), [0]);
  assert.equal(h.send(0, ab({ flags: 'A', seq: 1001, ack: 5001 })), [1]);
  assert.equal(h.send(1, ba({ flags: 'PA', seq: 5001 + 100_000, ack: 1001, payload: data })), []);
  assert.is(h.drops().ct_tcp_out_of_window, 1);
  assert.equal(h.send(1, ba({ flags: 'PA', seq: 5001, ack: 1001, payload: data })), [0]);
});

test('IPv6: the same window checks and pickup', () => {
  const h = host();
  const ac = (s: Seg) => ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip6, dst: C.ip6, payload: seg(s, 50000, 22) }) });
  const ca = (s: Seg) => ethernet({ src: C.mac, dst: GW1.mac, payload: ipv6({ src: C.ip6, dst: A.ip6, payload: seg(s, 22, 50000) }) });
  assert.equal(h.send(0, ac({ flags: 'S', seq: 1000 })), [2]);
  assert.equal(h.send(2, ca({ flags: 'SA', seq: 5000, ack: 1002 })), []);
  assert.is(h.drops().ct_tcp_ack_out_of_window, 1);
  assert.equal(h.send(2, ca({ flags: 'SA', seq: 5000, ack: 1001 })), [0]);
  assert.equal(h.send(0, ac({ flags: 'A', seq: 1001, ack: 5001 })), [2]);
  assert.equal(h.send(2, ca({ flags: 'PA', seq: 5001 + 100_000, ack: 1001, payload: data })), []);
  assert.is(h.drops().ct_tcp_out_of_window, 1);
  assert.equal(h.send(2, ca({ flags: 'PA', seq: 5001, ack: 1001, payload: data })), [0]);
  // Pickup of another connection from its middle.
  const ac2 = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip6, dst: C.ip6, payload: seg({ flags: 'A', seq: 1, ack: 1 }, 50001, 22) }) });
  assert.equal(h.send(0, ac2), [2]);
  assert.is(h.rt.connections().filter((c) => c.family === 6).length, 2);
  h.rt.setConntrackTcp(0, { pickup: false });
  const ac3 = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip6, dst: C.ip6, payload: seg({ flags: 'A', seq: 1, ack: 1 }, 50002, 22) }) });
  assert.equal(h.send(0, ac3), []);
  assert.is(h.drops().ct_invalid_new, 1);
});

test('a port\'s ACL zone tracks windows too, and picks up only when its tcp.pickup says so', () => {
  const h = host();
  const b = 1;
  h.sw.acls.setPortAcl(b, { rules: [], defaultIn: 'Block' });
  const ab = (s: Seg, sport = 40000) => ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, payload: seg(s, sport, 22) }) });
  const ba = (s: Seg, dport = 40000) => ethernet({ src: B.mac, dst: A.mac, payload: ipv4({ src: B.ip, dst: A.ip, payload: seg(s, 22, dport) }) });
  // B opens (Out is allowed), A answers.
  assert.equal(h.send(1, ba({ flags: 'S', seq: 5000 }, 40000)), [0]);
  assert.equal(h.send(0, ab({ flags: 'SA', seq: 1000, ack: 7777 })), [], 'A\'s SYN-ACK acknowledges more than the SYN');
  assert.is(h.drops().ct_tcp_ack_out_of_window, 1);
  assert.equal(h.send(0, ab({ flags: 'SA', seq: 1000, ack: 5001 })), [1]);
  assert.equal(h.send(1, ba({ flags: 'A', seq: 5001, ack: 1001 })), [0]);
  assert.equal(h.send(0, ab({ flags: 'PA', seq: 1001 + 100_000, ack: 5001, payload: data })), []);
  assert.is(h.drops().ct_tcp_out_of_window, 1);
  // No pickup in an ACL zone by default: B's mid-stream segment of an unknown connection is refused.
  assert.equal(h.send(1, ba({ flags: 'A', seq: 1, ack: 1 }, 40001)), []);
  assert.is(h.drops().ct_invalid_new, 1);
  h.sw.acls.setPortAcl(b, { rules: [], defaultIn: 'Block', tcp: { pickup: true } });
  assert.equal(h.send(1, ba({ flags: 'A', seq: 1, ack: 1 }, 40001)), [0]);
});

test.run();
