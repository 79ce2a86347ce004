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

test('a solicitation with a hop limit other than 255 is ignored (RFC 4861 §7.1.1)', () => {
  const { send } = host();
  const sn = solicitedNode(GW0.ip);
  assert.equal(send(0, ethernet({ src: A.mac, dst: sn.mac, payload: v6(A.ip, sn.ip, icmpv6({ type: 135, rest: new Uint8Array(4), payload: nsBody(GW0.ip, A.mac) }), 64) })), []);
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
