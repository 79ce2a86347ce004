// IPv6 at the router: neighbour discovery for gateway addresses (global and link-local), ping6 to the
// gateway, routing between compartment networks with the hop limit decremented, neighbour resolution
// by solicitation, and ICMPv6 errors. Exact frames out, checksums recomputed independently.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv6, icmpv6, udp, tcp, parseIPv6, parseMac, dissect, verifyChecksums, type L4 } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: 'fd01::2' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: 'fd00::1', ll: 'fe80::6e:70ff:fe00:0' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: 'fd01::1' };
const payload = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]);

function host(opts: ConstructorParameters<typeof Switch>[0] = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now, ...opts });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  sw.router.addInterface({ network: 1, address6: 'fd00::1/64' });
  sw.router.addInterface({ network: 2, address6: 'fd01::1/64' });
  const send = (port: number, f: Uint8Array, dt = 1) => {
    now += dt;
    out.length = 0;
    sw.inject([[port, f]], now);
    return out.slice();
  };
  return { sw, rt: sw.router, send };
}

const v6 = (src: string, dst: string, l4: L4, hopLimit = 64) => ipv6({ src, dst, hopLimit, payload: l4 });
const nsBody = (target: string, lla?: string) => {
  const b = new Uint8Array(16 + (lla ? 8 : 0));
  b.set(parseIPv6(target));
  if (lla) { b[16] = 1; b[17] = 1; b.set(parseMac(lla), 18); }
  return b;
};
const naBody = (target: string, lla: string) => {
  const b = new Uint8Array(24);
  b.set(parseIPv6(target));
  b[16] = 2; b[17] = 1; b.set(parseMac(lla), 18);
  return b;
};
const solicitedNode = (ip: string) => {
  const b = parseIPv6(ip);
  return { ip: `ff02::1:ff${b[13].toString(16).padStart(2, '0')}:${((b[14] << 8) | b[15]).toString(16)}`, mac: `33:33:ff:${[b[13], b[14], b[15]].map((x) => x.toString(16).padStart(2, '0')).join(':')}` };
};

function only(out: Array<[number, Uint8Array]>, port: number): Uint8Array {
  assert.is(out.length, 1, `exactly one frame out, got ${out.length}`);
  assert.is(out[0][0], port);
  assert.ok(verifyChecksums(out[0][1]), 'checksums recompute');
  return out[0][1];
}

for (const target of [GW0.ip, GW0.ll]) {
  test(`a neighbour solicitation for the gateway (${target}) is answered, and the solicitor learned`, () => {
    const { send, rt } = host();
    const sn = solicitedNode(target);
    const ns = ethernet({ src: A.mac, dst: sn.mac, payload: v6(A.ip, sn.ip, icmpv6({ type: 135, rest: new Uint8Array(4), payload: nsBody(target, A.mac) }), 255) });
    const f = only(send(0, ns), 0);
    const flags = new Uint8Array([0xe0, 0, 0, 0]); // router, solicited, override
    assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(target, A.ip, icmpv6({ type: 136, rest: flags, payload: naBody(target, GW0.mac) }), 255) }));
    assert.ok(rt.neighbors().some((n) => n.address === A.ip && n.mac === A.mac));
  });
}

test('a unicast solicitation (a reachability probe) is answered as Linux does: router + solicited, no Override, no option', () => {
  const { send } = host();
  const ns = ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, GW0.ip, icmpv6({ type: 135, rest: new Uint8Array(4), payload: nsBody(GW0.ip, A.mac) }), 255) });
  const f = only(send(0, ns), 0);
  assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 136, rest: new Uint8Array([0xc0, 0, 0, 0]), payload: parseIPv6(GW0.ip) }), 255) }));
});

test('a solicitation with a hop limit other than 255 is not answered, and counted (RFC 4861 §7.1.1)', () => {
  const { send, sw } = host();
  const sn = solicitedNode(GW0.ip);
  // Network 1 has no other port: the multicast went nowhere else, so the router's verdict is a drop.
  assert.equal(send(0, ethernet({ src: A.mac, dst: sn.mac, payload: v6(A.ip, sn.ip, icmpv6({ type: 135, rest: new Uint8Array(4), payload: nsBody(GW0.ip, A.mac) }), 64) })), []);
  assert.equal(sw.counters().drops, { nd_bad_hop_limit: 1 });
});

// Neighbour discovery to the gateway MAC that the router does not answer: each has its named reason,
// a drop and a trace verdict; none vanishes (rx = answered + dropped).
{
  const ns = (o: { target?: string; src?: string; dst?: string; hop?: number; code?: number; body?: Uint8Array; checksum?: number }) =>
    ethernet({ src: A.mac, dst: GW0.mac, payload: v6(o.src ?? A.ip, o.dst ?? GW0.ip, icmpv6({ type: 135, code: o.code, checksum: o.checksum, rest: new Uint8Array(4), payload: o.body ?? nsBody(o.target ?? GW0.ip, A.mac) }), o.hop ?? 255) });
  const nd = (type: number, rest: Uint8Array, body: Uint8Array, dst = GW0.ip) =>
    ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, dst, icmpv6({ type, rest, payload: body }), 255) });
  const badOption = nsBody(GW0.ip, A.mac); badOption[17] = 0;      // an option of length 0
  const cases: Array<[string, Uint8Array, string]> = [
    ['hop limit 64', ns({ hop: 64 }), 'nd_bad_hop_limit'],
    ['hop limit 254 on a router solicitation', ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, GW0.ip, icmpv6({ type: 133, rest: new Uint8Array(4) }), 254) }), 'nd_bad_hop_limit'],
    ['a solicitation for another address', ns({ target: 'fd00::77' }), 'nd_not_target'],
    ['an advertisement', nd(136, new Uint8Array([0x60, 0, 0, 0]), naBody(A.ip, A.mac)), 'nd_advertisement'],
    ['code 1', ns({ code: 1 }), 'nd_malformed'],
    ['a wrong checksum', ns({ checksum: 0x1234 }), 'nd_malformed'],
    ['an option of length 0', ns({ body: badOption }), 'nd_malformed'],
    ['a multicast target', ns({ target: 'ff02::1' }), 'nd_malformed'],
    ['shorter than its fixed part', ns({ body: new Uint8Array(8) }), 'nd_malformed'],
    ['duplicate address detection with a source link-layer address', ns({ src: '::', dst: solicitedNode(GW0.ip).ip }), 'nd_malformed'],
    ['a solicited advertisement to a multicast address', nd(136, new Uint8Array([0x40, 0, 0, 0]), naBody(A.ip, A.mac), 'ff02::1'), 'nd_malformed'],
    ['a router solicitation', nd(133, new Uint8Array(4), new Uint8Array(0), 'ff02::2'), 'nd_router_message'],
    ['a router advertisement', nd(134, new Uint8Array([64, 0, 0, 0]), new Uint8Array(8)), 'nd_router_message'],
    ['a redirect', nd(137, new Uint8Array(4), new Uint8Array(32)), 'nd_router_message'],
  ];
  for (const [what, frame, reason] of cases) {
    test(`neighbour discovery to the gateway, ${what}: no answer, dropped as ${reason}, traced`, () => {
      const { send, sw } = host();
      assert.equal(send(0, frame), []);
      const c = sw.counters();
      assert.equal(c.drops, { [reason]: 1 });
      assert.is(c.stats.rx_packets, c.stats.dropped);
      assert.is(sw.trace(0, frame).dropped, reason);
    });
  }
}

test('an advertisement is learned from before it is counted; a flooded solicitation for another host is not a drop', () => {
  const { send, sw, rt } = host();
  send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, GW0.ip, icmpv6({ type: 136, rest: new Uint8Array([0x60, 0, 0, 0]), payload: naBody(A.ip, A.mac) }), 255) }));
  assert.ok(rt.neighbors().some((n) => n.address === A.ip && n.mac === A.mac));
  // With a second port in network 1 the solicitation for that host reaches it: forwarded, the router's
  // verdict only traced.
  sw.addPort({ network: 1 });
  const sn = solicitedNode('fd00::77');
  const f = ethernet({ src: A.mac, dst: sn.mac, payload: v6(A.ip, sn.ip, icmpv6({ type: 135, rest: new Uint8Array(4), payload: nsBody('fd00::77', A.mac) }), 255) });
  const out = send(0, f);
  assert.equal(out.map(([p]) => p), [2]);
  assert.equal(sw.counters().drops, { nd_advertisement: 1 }, 'the advertisement only');
  const t = sw.trace(0, f);
  assert.is(t.dropped, undefined);
  assert.ok(t.steps.some((s) => s.step === 'local' && s.a === 0 && /nd_not_target/.test(s.text)), t.text);
});

test('ping6 the gateway', () => {
  const { send } = host();
  const f = only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, GW0.ip, icmpv6({ type: 128, id: 3, seq: 4, payload })) })), 0);
  assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 129, id: 3, seq: 4, payload })) }));
});

test('routing between two networks: hop limit decremented, MACs rewritten, payload untouched', () => {
  const { send, rt } = host();
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  send(1, ethernet({ src: B.mac, dst: '33:33:00:00:00:01', payload: v6(B.ip, 'ff02::1', udp({ srcPort: 1, dstPort: 2 })) })); // B's MAC is learned on port 1
  const f = only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 5000, dstPort: 6000, payload })) })), 1);
  assert.equal(f, ethernet({ src: GW1.mac, dst: B.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 5000, dstPort: 6000, payload }), 63) }));
});

test('an unknown next hop is solicited, then used once it answers', () => {
  const { send, sw } = host();
  const pkt = ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 5000, dstPort: 6000, payload })) });
  const out = send(0, pkt);
  const sn = solicitedNode(B.ip);
  assert.is(out.length, 1);
  assert.is(out[0][0], 1);
  assert.equal(out[0][1], ethernet({ src: GW1.mac, dst: sn.mac, payload: v6(GW1.ip, sn.ip, icmpv6({ type: 135, rest: new Uint8Array(4), payload: nsBody(B.ip, GW1.mac) }), 255) }));
  assert.is(sw.counters().drops.neighbor_unresolved, 1);
  send(1, ethernet({ src: B.mac, dst: GW1.mac, payload: v6(B.ip, GW1.ip, icmpv6({ type: 136, rest: new Uint8Array([0x60, 0, 0, 0]), payload: naBody(B.ip, B.mac) }), 255) }));
  const f = only(send(0, pkt), 1);
  assert.is(dissect(f).dst, B.mac);
});

test('hop limit 1: time exceeded; no route: destination unreachable', () => {
  const { send, sw } = host();
  const expiring = ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 1, dstPort: 2, payload }), 1) });
  const f = only(send(0, expiring), 0);
  assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 3, code: 0, payload: expiring.subarray(14) })) }));
  const lost = ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, '2001:db8::9', udp({ srcPort: 1, dstPort: 2, payload })) });
  const g = only(send(0, lost), 0);
  assert.equal(g, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 1, code: 0, payload: lost.subarray(14) })) }));
  assert.is(sw.counters().drops.ttl_exceeded, 1);
  assert.is(sw.counters().drops.no_route, 1);
});

test('hop limit 1 is checked before conntrack: a TCP segment that starts no connection gets Time Exceeded too', () => {
  const { send, sw } = host();
  const ack = ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, tcp({ srcPort: 5555, dstPort: 22, flags: 'A', seq: 7, ack: 9 }), 1) });
  const f = only(send(0, ack), 0);
  assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 3, code: 0, payload: ack.subarray(14) })) }));
  assert.equal(sw.counters().drops, { ttl_exceeded: 1 });
  // A stray echo reply with hop limit 1 as well.
  only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, icmpv6({ type: 129, id: 1 }), 1) })), 0);
  assert.equal(sw.counters().drops, { ttl_exceeded: 2 });
});

test('an ICMPv6 error is routed along the connection it quotes; one quoting no connection is dropped', () => {
  const { send, rt, sw } = host();
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  const sent = only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 5000, dstPort: 6000, payload })) })), 1);
  // B's port unreachable, quoting the datagram as B got it, goes back to A, hop limit decremented.
  const unreach = (src: string, dst: string, quote: Uint8Array, type = 1, code = 4) =>
    ethernet({ src: B.mac, dst: GW1.mac, payload: v6(src, dst, icmpv6({ type, code, payload: quote.subarray(14) })) });
  const f = only(send(1, unreach(B.ip, A.ip, sent)), 0);
  assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(B.ip, A.ip, icmpv6({ type: 1, code: 4, payload: sent.subarray(14) }), 63) }));
  // So does a Packet Too Big from a router on the way (another source).
  only(send(1, unreach('fd01::fe', A.ip, sent, 2, 0)), 0);
  // A spoofed error about a flow that never existed, and one sent to someone other than the quoted
  // packet's source: both dropped.
  const never = ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 7000, dstPort: 53, payload })) });
  assert.equal(send(1, unreach(B.ip, A.ip, never)), []);
  assert.equal(send(1, unreach(B.ip, 'fd00::3', sent)), []);
  assert.equal(sw.counters().drops, { icmp_error_unmatched: 2 });
});

test('RFC 5095: a routing header with segments left to a gateway address gets Parameter Problem; with none left it is ignored and not reflected', () => {
  const { send, sw } = host();
  const rh0 = (segmentsLeft: number) => {
    const b = new Uint8Array(24);
    b[1] = 2; b[2] = 0; b[3] = segmentsLeft;
    b.set(parseIPv6('fd01::2'), 8);
    return { nextHeaderType: 43, bytes: b };
  };
  const req = (segmentsLeft: number) => ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip, dst: GW0.ip, extensions: [rh0(segmentsLeft)], payload: icmpv6({ type: 128, id: 5, seq: 1, payload }) }) });
  const r1 = req(1);
  const f = only(send(0, r1), 0);
  // Code 0 (erroneous header field), pointer 42: the Routing Type byte (40 + 2).
  assert.equal(f, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 4, code: 0, rest: new Uint8Array([0, 0, 0, 42]), payload: r1.subarray(14) })) }));
  assert.equal(sw.counters().drops, { ipv6_source_route: 1 });
  // Segments left 0: processed as if the header were not there; the reply carries no routing header.
  const g = only(send(0, req(0)), 0);
  assert.equal(g, ethernet({ src: GW0.mac, dst: A.mac, payload: v6(GW0.ip, A.ip, icmpv6({ type: 129, id: 5, seq: 1, payload })) }));
  // A routing header in a packet only passing through is not the router's to process (RFC 5095 §3).
  sw.router.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  const through = ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip, dst: B.ip, extensions: [rh0(1)], payload: udp({ srcPort: 1, dstPort: 2, payload }) }) });
  only(send(0, through), 1);
});

test('IPv6 routes: longest prefix wins, blackholes drop, removal falls back', () => {
  const { send, sw, rt } = host();
  const C = '02:00:00:00:00:0c';
  rt.setNeighbor({ address: 'fd01::99', mac: C, interface: 1 });
  rt.addRoute({ destination: '2001:db8::/32', interface: 1, nextHop: 'fd01::99' });
  rt.addRoute({ destination: '2001:db8:1::/48', blackhole: true });
  const to = (dst: string) => ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, dst, udp({ srcPort: 1, dstPort: 2, payload })) });
  assert.is(dissect(only(send(0, to('2001:db8:2::1')), 1)).dst, C);
  assert.equal(send(0, to('2001:db8:1::1')), []);
  assert.is(sw.counters().drops.route_blackhole, 1);
  assert.ok(rt.removeRoute({ destination: '2001:db8:1::/48' }));
  assert.is(dissect(only(send(0, to('2001:db8:1::1')), 1)).dst, C);
  assert.throws(() => rt.addRoute({ destination: '2001:db8::/129', interface: 1 }), /destination: prefix length 129/);
});

test('IPv6 connections are tracked: TCP states, replies matched, listed with their addresses', () => {
  const { send, rt, sw } = host();
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  const ab = (flags: string) => ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, tcp({ srcPort: 5555, dstPort: 22, flags })) });
  const ba = (flags: string) => ethernet({ src: B.mac, dst: GW1.mac, payload: v6(B.ip, A.ip, tcp({ srcPort: 22, dstPort: 5555, flags })) });
  rt.setConntrackTcp(0, { pickup: false });
  assert.equal(send(0, ab('A')), [], 'with pickup off, a segment without SYN starts nothing');
  assert.is(sw.counters().drops.ct_invalid_new, 1);
  only(send(0, ab('S')), 1);
  only(send(1, ba('SA')), 0);
  only(send(0, ab('A')), 1);
  const c = rt.connections();
  assert.is(c.length, 1);
  assert.equal({ family: c[0].family, state: c[0].state, original: c[0].original, reply: c[0].reply }, {
    family: 6, state: 'ESTABLISHED',
    original: { src: A.ip, dst: B.ip, sport: 5555, dport: 22 },
    reply: { src: B.ip, dst: A.ip, sport: 22, dport: 5555 },
  });
  assert.equal(c[0].packets, [2, 1]);
  assert.equal(send(1, ba('S')), [], 'a SYN from the server side of an established connection is invalid');
  assert.is(sw.counters().drops.ct_tcp_invalid, 1);
});

test('IPv6 echo through the router is tracked by identifier; a stray echo reply is not let in', () => {
  const { send, rt, sw } = host();
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  assert.equal(send(1, ethernet({ src: B.mac, dst: GW1.mac, payload: v6(B.ip, A.ip, icmpv6({ type: 129, id: 42 })) })), []);
  assert.is(sw.counters().drops.ct_invalid_new, 1);
  const f = only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, icmpv6({ type: 128, id: 42, seq: 1, payload })) })), 1);
  assert.equal(f, ethernet({ src: GW1.mac, dst: B.mac, payload: v6(A.ip, B.ip, icmpv6({ type: 128, id: 42, seq: 1, payload }), 63) }));
  only(send(1, ethernet({ src: B.mac, dst: GW1.mac, payload: v6(B.ip, A.ip, icmpv6({ type: 129, id: 42, seq: 1, payload })) })), 0);
  assert.is(rt.connections()[0].state, 'ICMP_REPLIED');
});

test('IPv6 and IPv4 connections with the same numbers never meet; flushing frees the interned addresses', () => {
  const { send, rt } = host();
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  for (let p = 1; p <= 20; p++) send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 1000 + p, dstPort: 53, payload })) }));
  assert.is(rt.connections().length, 20);
  assert.ok(rt.connections().every((c) => c.family === 6 && c.original.src === A.ip));
  assert.is(rt.flushConnections(0), 20);
  assert.is(rt.connections().length, 0);
  // After the flush the same tuples are new connections again, and still resolve to the right hosts.
  only(send(0, ethernet({ src: A.mac, dst: GW0.mac, payload: v6(A.ip, B.ip, udp({ srcPort: 1001, dstPort: 53, payload })) })), 1);
  assert.equal(rt.connections()[0].original.dst, B.ip);
});

test('a connection whose addresses do not fit is refused whole: counted, and no address reference kept', () => {
  const { send, rt, sw } = host({ ipv6Addresses: 2 });
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 1 });
  rt.setNeighbor({ address: 'fd01::3', mac: '02:00:00:00:00:0c', interface: 1 });
  const out = (src: string, dst: string) => ethernet({ src: A.mac, dst: GW0.mac, payload: v6(src, dst, udp({ srcPort: 1000, dstPort: 53, payload })) });
  only(send(0, out(A.ip, B.ip)), 1);
  // A is known; fd01::3 would be a third address.
  assert.equal(send(0, out(A.ip, 'fd01::3')), []);
  assert.is(sw.counters().drops.ct_table_full, 1);
  assert.is(rt.connections().length, 1);
  // Once the first connection goes, both slots are free again: the refused one held no reference to A.
  assert.is(rt.flushConnections(0), 1);
  only(send(0, out('fd00::3', 'fd01::3')), 1);
  assert.is(rt.connections().length, 1);
});

test.run();
