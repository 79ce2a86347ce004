// Routing compartments, conntrack and NAT, frames in and exact frames out. Every frame that leaves is
// compared byte for byte with one built independently by src/frames.ts, and its checksums are
// verified by a full recomputation (verifyChecksums), never by the dataplane's own code.
//
// The host network of these scenarios (compartment 0), the NAT mode of a container host:
//
//   port 0  A  10.0.0.2  02:00:00:00:00:0a ─┐
//   port 1  B  10.0.0.3  02:00:00:00:00:0b ─┤ network 1 ── if 0  10.0.0.1/24     GW0 02:6e:70:00:00:00
//                                            │
//   port 2  outside (network 2) ─────────────┴─ network 2 ── if 1  192.168.1.1/24  GW1 02:6e:70:00:00:01 (external)
//           R  192.168.1.254 02:00:00:00:00:fe (next hop of the default route)
//           X  192.168.1.100 02:00:00:00:00:99 (on-link outside host)
//   SNAT 10.0.0.0/24 -> 192.168.1.1 via if 1;  port mapping tcp 8080 -> 10.0.0.3:80
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, udp, tcp, icmp, arp, dissect, verifyChecksums, rawL4, type L4 } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254' };
const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1' };
const BC = 'ff:ff:ff:ff:ff:ff';
const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

function host(opts: ConstructorParameters<typeof Switch>[0] = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, macEntries: 256, clock: () => now, ...opts });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: R.ip });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: B.ip, internalPort: 80 });
  // The endpoints and the outside next hop are known neighbours, as the control plane knows them.
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  rt.setNeighbor({ address: B.ip, mac: B.mac, interface: 0 });
  rt.setNeighbor({ address: R.ip, mac: R.mac, interface: 1 });
  rt.setNeighbor({ address: X.ip, mac: X.mac, interface: 1 });
  const send = (port: number, f: Uint8Array, dt = 1) => {
    now += dt;
    out.length = 0;
    sw.inject([[port, f]], now);
    return out.slice();
  };
  // Teach the switch where the hosts are (their MACs on their ports), as any traffic would.
  send(0, ethernet({ dst: BC, src: A.mac, payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: '10.0.0.99' }) }));
  send(1, ethernet({ dst: BC, src: B.mac, payload: arp({ op: 'request', senderMac: B.mac, senderIp: B.ip, targetIp: '10.0.0.99' }) }));
  send(2, ethernet({ dst: BC, src: R.mac, payload: arp({ op: 'request', senderMac: R.mac, senderIp: R.ip, targetIp: '192.168.1.99' }) }));
  send(2, ethernet({ dst: BC, src: X.mac, payload: arp({ op: 'request', senderMac: X.mac, senderIp: X.ip, targetIp: '192.168.1.99' }) }));
  return { sw, rt, send, clock: { get now() { return now; }, set now(v: number) { now = v; } } };
}

const frame = (src: string, dst: string, l3: ReturnType<typeof ipv4>) => ethernet({ src, dst, payload: l3 });
const v4 = (src: string, dst: string, l4: L4, ttl = 64) => ipv4({ src, dst, ttl, payload: l4 });

function only(out: Array<[number, Uint8Array]>, port: number): Uint8Array {
  assert.is(out.length, 1, `exactly one frame out, got ${out.length}`);
  assert.is(out[0][0], port, 'egress port');
  assert.ok(verifyChecksums(out[0][1]), 'every checksum recomputes');
  return out[0][1];
}

test('the gateway answers ARP for its address, and learns the asker', () => {
  const { send, rt } = host();
  const out = send(0, ethernet({ dst: BC, src: A.mac, payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: GW0.ip }) }));
  // Flooded to B and answered to A.
  const toA = out.filter(([p]) => p === 0);
  assert.is(toA.length, 1);
  assert.equal(toA[0][1], ethernet({ dst: A.mac, src: GW0.mac, payload: arp({ op: 'reply', senderMac: GW0.mac, senderIp: GW0.ip, targetMac: A.mac, targetIp: A.ip }) }));
  assert.ok(out.some(([p]) => p === 1), 'the broadcast still reaches the other hosts');
  assert.ok(rt.neighbors().some((n) => n.address === A.ip && n.mac === A.mac));
});

test('ping the gateway: an echo reply with correct checksums and a fresh IP ID', () => {
  const { send } = host();
  // Two requests with the same IP ID: each reply has an ID of its own, never the request's.
  const req = frame(A.mac, GW0.mac, ipv4({ src: A.ip, dst: GW0.ip, id: 0x4242, payload: icmp({ type: 8, id: 77, seq: 1, payload }) }));
  const ids: number[] = [];
  for (let i = 0; i < 2; i++) {
    const f = only(send(0, req), 0);
    const id = dissect(f).ipv4!.id;
    assert.is.not(id, 0x4242, 'the reply does not copy the request\'s IP ID');
    assert.equal(f, frame(GW0.mac, A.mac, ipv4({ src: GW0.ip, dst: A.ip, id, payload: icmp({ type: 0, id: 77, seq: 1, payload }) })));
    ids.push(id);
  }
  assert.is.not(ids[0], ids[1], 'two replies, two IP IDs');
});

test('masquerade: UDP out with the external address, the reply back in to the endpoint', () => {
  const { send, rt, sw } = host();
  const out1 = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload })))), 2);
  // The source port is kept when it is free; TTL 64 -> 63; MACs of the next hop and the gateway.
  assert.equal(out1, frame(GW1.mac, R.mac, v4(GW1.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload }), 63)));
  const back = only(send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: 40000, payload }), 50))), 0);
  assert.equal(back, frame(GW0.mac, A.mac, v4('8.8.8.8', A.ip, udp({ srcPort: 53, dstPort: 40000, payload }), 49)));
  const c = rt.connections();
  assert.is(c.length, 1);
  assert.equal(c[0].original, { src: A.ip, dst: '8.8.8.8', sport: 40000, dport: 53 });
  assert.equal(c[0].reply, { src: '8.8.8.8', dst: GW1.ip, sport: 53, dport: 40000 });
  assert.is(c[0].state, 'UDP_REPLIED');
  assert.ok(c[0].snat && !c[0].dnat && c[0].seenReply);
  assert.equal(c[0].packets, [1, 1]);
  assert.is(sw.counters().stats.routed, 2);
});

test('masquerade: a second endpoint with the same source port gets another port', () => {
  const { send } = host();
  send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload }))));
  const f = only(send(1, frame(B.mac, GW0.mac, v4(B.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload })))), 2);
  const d = dissect(f);
  assert.is(d.ipv4!.src, GW1.ip);
  assert.is.not(d.udp!.srcPort, 40000);
  assert.ok(d.udp!.srcPort >= 1024);
  // The reply to that port reaches B.
  const back = only(send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: d.udp!.srcPort, payload })))), 1);
  assert.is(dissect(back).ipv4!.dst, B.ip);
  assert.is(dissect(back).udp!.dstPort, 40000);
});

test('a UDP zero checksum stays zero through NAT', () => {
  const { send } = host();
  const f = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40001, dstPort: 53, payload, zeroChecksum: true })))), 2);
  assert.is(dissect(f).udp!.checksum, 0);
  assert.equal(f, frame(GW1.mac, R.mac, v4(GW1.ip, '8.8.8.8', udp({ srcPort: 40001, dstPort: 53, payload, zeroChecksum: true }), 63)));
});

test('TCP through masquerade: the state machine from SYN to TIME_WAIT', () => {
  const { send, rt } = host();
  const out = (flags: string, seq: number, ack: number) => frame(A.mac, GW0.mac, v4(A.ip, '1.2.3.4', tcp({ srcPort: 50000, dstPort: 443, flags, seq, ack })));
  const inn = (flags: string, seq: number, ack: number) => frame(R.mac, GW1.mac, v4('1.2.3.4', GW1.ip, tcp({ srcPort: 443, dstPort: 50000, flags, seq, ack })));
  const state = () => rt.connections()[0].state;
  const f = only(send(0, out('S', 100, 0)), 2);
  assert.equal(f, frame(GW1.mac, R.mac, v4(GW1.ip, '1.2.3.4', tcp({ srcPort: 50000, dstPort: 443, flags: 'S', seq: 100 }), 63)));
  assert.is(state(), 'SYN_SENT');
  only(send(2, inn('SA', 900, 101)), 0);
  assert.is(state(), 'SYN_RECV');
  only(send(0, out('A', 101, 901)), 2);
  assert.is(state(), 'ESTABLISHED');
  assert.ok(rt.connections()[0].assured);
  const data = only(send(2, frame(R.mac, GW1.mac, v4('1.2.3.4', GW1.ip, tcp({ srcPort: 443, dstPort: 50000, flags: 'PA', seq: 901, ack: 101, payload })))), 0);
  assert.equal(data, frame(GW0.mac, A.mac, v4('1.2.3.4', A.ip, tcp({ srcPort: 443, dstPort: 50000, flags: 'PA', seq: 901, ack: 101, payload }), 63)));
  only(send(0, out('FA', 101, 909)), 2);
  assert.is(state(), 'FIN_WAIT');
  only(send(2, inn('FA', 909, 102)), 0);
  assert.is(state(), 'LAST_ACK');
  only(send(0, out('A', 102, 910)), 2);
  assert.is(state(), 'TIME_WAIT');
});

test('an invalid TCP transition is dropped and counted; with pickup off, a TCP segment without SYN starts nothing', () => {
  const { send, sw, rt } = host();
  rt.setConntrackTcp(0, { pickup: false });
  assert.equal(rt.conntrackTcp(0), { liberal: false, pickup: false });
  assert.equal(send(0, frame(A.mac, GW0.mac, v4(A.ip, '1.2.3.4', tcp({ srcPort: 50001, dstPort: 443, flags: 'A' })))), []);
  assert.is(sw.counters().drops.ct_invalid_new, 1);
  assert.is(rt.connections().length, 0);
  send(0, frame(A.mac, GW0.mac, v4(A.ip, '1.2.3.4', tcp({ srcPort: 50002, dstPort: 443, flags: 'S' }))));
  // A SYN from the server side while SYN_SENT is not a SYN-ACK: invalid.
  assert.equal(send(2, frame(R.mac, GW1.mac, v4('1.2.3.4', GW1.ip, tcp({ srcPort: 443, dstPort: 50002, flags: 'S' })))), []);
  assert.is(sw.counters().drops.ct_tcp_invalid, 1);
  assert.is(rt.connections()[0].state, 'SYN_SENT');
});

test('port mapping: the outside reaches a published port of an endpoint', () => {
  const { send, rt } = host();
  const f = only(send(2, frame(X.mac, GW1.mac, v4(X.ip, GW1.ip, tcp({ srcPort: 33333, dstPort: 8080, flags: 'S', seq: 5 })))), 1);
  assert.equal(f, frame(GW0.mac, B.mac, v4(X.ip, B.ip, tcp({ srcPort: 33333, dstPort: 80, flags: 'S', seq: 5 }), 63)));
  const r = only(send(1, frame(B.mac, GW0.mac, v4(B.ip, X.ip, tcp({ srcPort: 80, dstPort: 33333, flags: 'SA', seq: 70, ack: 6 })))), 2);
  assert.equal(r, frame(GW1.mac, X.mac, v4(GW1.ip, X.ip, tcp({ srcPort: 8080, dstPort: 33333, flags: 'SA', seq: 70, ack: 6 }), 63)));
  const c = rt.connections()[0];
  assert.ok(c.dnat && !c.snat);
});

test('hairpin: an endpoint reaches a published port of its own network through the external address', () => {
  const { send } = host();
  const f = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, GW1.ip, tcp({ srcPort: 41000, dstPort: 8080, flags: 'S', seq: 1 })))), 1);
  // B sees the gateway as the source, so its reply comes back through the router.
  const d = dissect(f);
  assert.is(d.ipv4!.src, GW0.ip);
  assert.is(d.ipv4!.dst, B.ip);
  assert.is(d.tcp!.dstPort, 80);
  assert.is(d.dst, B.mac);
  const r = only(send(1, frame(B.mac, GW0.mac, v4(B.ip, GW0.ip, tcp({ srcPort: 80, dstPort: d.tcp!.srcPort, flags: 'SA', seq: 9, ack: 2 })))), 0);
  // A sees the answer from the address and port it connected to.
  assert.equal(r, frame(GW0.mac, A.mac, v4(GW1.ip, A.ip, tcp({ srcPort: 8080, dstPort: 41000, flags: 'SA', seq: 9, ack: 2 }), 63)));
});

test('an ICMP error about a NATed datagram is translated, quoted header and all checksums included', () => {
  const { send, sw } = host();
  const sent = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 5353, payload })))), 2);
  const quotedOut = sent.subarray(14, 14 + 28); // the translated IP header and the first 8 bytes
  const err = frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, icmp({ type: 3, code: 3, payload: quotedOut })));
  const f = only(send(2, err), 0);
  const original = frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 5353, payload }), 63));
  // What A gets quotes what A sent (after its TTL decrement by the router, as it left), with its own address.
  const expectQuote = original.subarray(14, 14 + 28);
  assert.equal(f, frame(GW0.mac, A.mac, v4('8.8.8.8', A.ip, icmp({ type: 3, code: 3, payload: expectQuote }), 63)));
  assert.is(sw.counters().stats.icmp_translated, 1);
});

test('TTL expiry: time exceeded from the gateway quotes the packet; counted', () => {
  const { send, sw, rt } = host();
  const pkt = frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload }), 1));
  const f = only(send(0, pkt), 0);
  const id = dissect(f).ipv4!.id;
  assert.is.not(id, 0, 'a fresh IP ID');
  assert.equal(f, frame(GW0.mac, A.mac, ipv4({ src: GW0.ip, dst: A.ip, id, tos: 0xc0, payload: icmp({ type: 11, code: 0, payload: pkt.subarray(14) }) })));
  assert.is(sw.counters().drops.ttl_exceeded, 1);
  assert.is(sw.counters().stats.icmp_errors, 1);
  assert.is(rt.connections().length, 0, 'a packet that expired leaves no connection behind');
});

test('no route: destination unreachable (net) and a counted drop; errors are rate-limited', () => {
  const { send, sw, rt } = host();
  rt.removeRoute({ destination: '0.0.0.0/0' });
  rt.setRateLimit('icmpErrors', 1, 2);
  const pkt = frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload })));
  const f = only(send(0, pkt), 0);
  const id = dissect(f).ipv4!.id;
  assert.equal(f, frame(GW0.mac, A.mac, ipv4({ src: GW0.ip, dst: A.ip, id, tos: 0xc0, payload: icmp({ type: 3, code: 0, payload: pkt.subarray(14) }) })));
  assert.is.not(dissect(only(send(0, pkt, 0), 0)).ipv4!.id, id, 'each error has an IP ID of its own');
  assert.equal(send(0, pkt, 0), [], 'the burst of 2 is spent');
  assert.is(sw.counters().drops.no_route, 3);
  assert.is(sw.counters().stats.icmp_rate_limited, 1);
  assert.is(send(0, pkt, 1000).length, 1, 'a token comes back after a second');
});

test('a neighbour not yet known: ARP request out, packet dropped, then forwarded once answered', () => {
  const { send, sw, rt } = host();
  rt.addRoute({ destination: '172.16.0.0/16', interface: 1, nextHop: '192.168.1.253' });
  const pkt = frame(A.mac, GW0.mac, v4(A.ip, '172.16.0.9', udp({ srcPort: 40000, dstPort: 53, payload })));
  const out = send(0, pkt);
  assert.is(out.length, 1);
  assert.is(out[0][0], 2);
  assert.equal(out[0][1], ethernet({ dst: BC, src: GW1.mac, payload: arp({ op: 'request', senderMac: GW1.mac, senderIp: GW1.ip, targetIp: '192.168.1.253' }) }));
  assert.is(sw.counters().drops.neighbor_unresolved, 1);
  const R2 = '02:00:00:00:00:fd';
  send(2, ethernet({ dst: GW1.mac, src: R2, payload: arp({ op: 'reply', senderMac: R2, senderIp: '192.168.1.253', targetMac: GW1.mac, targetIp: GW1.ip }) }));
  const f = only(send(0, pkt), 2);
  assert.is(dissect(f).dst, R2);
});

test('timeouts: an unreplied UDP connection expires and its port is free again', () => {
  const { send, rt, sw, clock } = host();
  send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload }))));
  assert.is(rt.connections().length, 1);
  assert.is(rt.conntrackTimeouts().UDP_UNREPLIED, 30_000);
  // A reply after 31 s finds no connection: the external address has no such service, and says so
  // (ICMP port unreachable, as a host with nothing on the port).
  const late = send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: 40000, payload }))), 31_000);
  assert.is(late.length, 1);
  assert.equal([dissect(late[0][1]).icmp?.type, dissect(late[0][1]).icmp?.code], [3, 3]);
  assert.is(sw.counters().drops.local_port_unmapped, 1);
  assert.is(rt.connections().length, 0);
  assert.ok(sw.counters().stats.ct_expired >= 1);
  rt.setConntrackTimeout('UDP_UNREPLIED', 5000);
  send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload }))));
  assert.is(rt.connections()[0].expires, (clock.now + 5000) >>> 0);
  assert.throws(() => rt.setConntrackTimeout('BOGUS', 1), /state: unknown conntrack state/);
});

test('table full: unassured connections are dropped early to make room; assured ones are not', () => {
  const { send, sw, rt } = host({ connections: 4 });
  const out = (sport: number) => frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: sport, dstPort: 53, payload })));
  for (let p = 1; p <= 4; p++) send(0, out(40000 + p));
  assert.is(rt.connections().length, 4);
  assert.is(only(send(0, out(40005)), 2).length > 0, true);
  assert.is(sw.counters().stats.ct_early_drop, 1);
  // Make all four assured (replied UDP), then a fifth connection has nowhere to go.
  for (const c of rt.connections()) {
    send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: c.reply.dport, payload }))));
  }
  assert.ok(rt.connections().every((c) => c.assured));
  assert.equal(send(0, out(40009)), []);
  assert.is(sw.counters().drops.ct_table_full, 1);
});

test('port exhaustion is a counted drop; ports are reused towards other destinations', () => {
  const { send, sw, rt } = host();
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [5000, 5001] });
  const out = (src: typeof A, sport: number, dst: string) => frame(src.mac, GW0.mac, v4(src.ip, dst, udp({ srcPort: sport, dstPort: 53, payload })));
  const p1 = dissect(only(send(0, out(A, 40000, '8.8.8.8')), 2)).udp!.srcPort;
  const p2 = dissect(only(send(1, out(B, 40000, '8.8.8.8')), 2)).udp!.srcPort;
  assert.equal([p1, p2].sort(), [5000, 5001]);
  assert.equal(send(0, out(A, 40001, '8.8.8.8')), []);
  assert.is(sw.counters().drops.nat_port_exhausted, 1);
  const p4 = dissect(only(send(0, out(A, 40001, '8.8.4.4')), 2)).udp!.srcPort;
  assert.ok(p4 === 5000 || p4 === 5001);
});

test('an expired connection holds no NAT port, though the sweep has not reached it yet', () => {
  const { send, sw, rt } = host();
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [20000, 20000] });
  const syn = (sport: number) => frame(A.mac, GW0.mac, v4(A.ip, '1.2.3.4', tcp({ srcPort: sport, dstPort: 443, flags: 'S', seq: 1 })));
  assert.is(dissect(only(send(0, syn(50000)), 2)).tcp!.srcPort, 20000);
  // Control: while the first connection lives, the one port is taken.
  assert.equal(send(0, syn(50001)), []);
  assert.is(sw.counters().drops.nat_port_exhausted, 1);
  // Past the SYN_SENT timeout, with no packet of the connection since, the port is free again.
  assert.is(rt.conntrackTimeouts().SYN_SENT, 30_000);
  const f = only(send(0, syn(50002), 60_000), 2);
  assert.is(dissect(f).tcp!.srcPort, 20000, 'the same external port, translated, not refused');
  assert.is(sw.counters().drops.nat_port_exhausted, 1, 'no new exhaustion drop');
  assert.ok(sw.counters().stats.ct_expired >= 1);
  assert.is(rt.connections().length, 1);
  // The reply reaches the new connection's endpoint, not the expired one's.
  const back = only(send(2, frame(R.mac, GW1.mac, v4('1.2.3.4', GW1.ip, tcp({ srcPort: 443, dstPort: 20000, flags: 'SA', seq: 9, ack: 2 })))), 0);
  assert.is(dissect(back).tcp!.dstPort, 50002);
});

test('without a port range a source port keeps its class, as Linux masquerade: 500 stays 500, a taken low port stays low', () => {
  const { send } = host();
  const out = (src: typeof A, sport: number, dport = 500) => frame(src.mac, GW0.mac, v4(src.ip, '8.8.8.8', udp({ srcPort: sport, dstPort: dport, payload })));
  assert.is(dissect(only(send(0, out(A, 500)), 2)).udp!.srcPort, 500, 'the port itself while its tuple is free');
  const b = dissect(only(send(1, out(B, 500)), 2)).udp!.srcPort;
  assert.ok(b >= 1 && b <= 511 && b !== 500, `a taken port below 512 maps into 1-511, got ${b}`);
  assert.is(dissect(only(send(0, out(A, 700)), 2)).udp!.srcPort, 700);
  const c = dissect(only(send(1, out(B, 700)), 2)).udp!.srcPort;
  assert.ok(c >= 600 && c <= 1023 && c !== 700, `a taken port of 512-1023 maps into 600-1023, got ${c}`);
  assert.is(dissect(only(send(0, out(A, 40000)), 2)).udp!.srcPort, 40000);
  const d = dissect(only(send(1, out(B, 40000)), 2)).udp!.srcPort;
  assert.ok(d >= 1024 && d !== 40000, `a taken high port maps into 1024-65535, got ${d}`);
});

test('an exhausted range: a new SYN takes over the tuple of a translated connection closed by RST, not of a live one', () => {
  const { send, sw, rt } = host();
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [20000, 20000] });
  const seg = (src: typeof A, sport: number, flags: string, seq = 1) => frame(src.mac, GW0.mac, v4(src.ip, '1.2.3.4', tcp({ srcPort: sport, dstPort: 443, flags, seq })));
  assert.is(dissect(only(send(0, seg(A, 50000, 'S')), 2)).tcp!.srcPort, 20000);
  // A live connection is never taken over.
  assert.equal(send(1, seg(B, 50001, 'S')), []);
  assert.is(sw.counters().drops.nat_port_exhausted, 1);
  // The server resets it: CLOSE, which would hold the tuple for its 10 s timeout.
  only(send(2, frame(R.mac, GW1.mac, v4('1.2.3.4', GW1.ip, tcp({ srcPort: 443, dstPort: 20000, flags: 'RA', seq: 0, ack: 2 })))), 0);
  assert.ok(rt.connections().some((c) => c.state === 'CLOSE'));
  // Not for a SYN whose sequence number is not past the old connection's (as Linux).
  assert.equal(send(1, seg(B, 50001, 'S', 0)), []);
  assert.is(sw.counters().drops.nat_port_exhausted, 2);
  const f = only(send(1, seg(B, 50001, 'S', 1000)), 2);
  assert.is(dissect(f).tcp!.srcPort, 20000, 'B gets the port at once');
  assert.is(sw.counters().drops.nat_port_exhausted, 2);
  const cs = rt.connections();
  assert.is(cs.length, 1, 'the closed connection is gone');
  const back = only(send(2, frame(R.mac, GW1.mac, v4('1.2.3.4', GW1.ip, tcp({ srcPort: 443, dstPort: 20000, flags: 'SA', seq: 9, ack: 1001 })))), 1);
  assert.is(dissect(back).tcp!.dstPort, 50001, 'replies reach the new connection');
  // UDP never takes over.
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [20001, 20001] });
  only(send(0, frame(A.mac, GW0.mac, v4(A.ip, '1.2.3.4', udp({ srcPort: 5, dstPort: 53, payload })))), 2);
  assert.equal(send(1, frame(B.mac, GW0.mac, v4(B.ip, '1.2.3.4', udp({ srcPort: 5, dstPort: 53, payload })))), []);
});

test('an ICMP error quoting an expired connection is not related to it', () => {
  const { send, sw } = host();
  const sent = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 5353, payload })))), 2);
  const err = frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, icmp({ type: 3, code: 3, payload: sent.subarray(14, 14 + 28) })));
  assert.equal(send(2, err, 31_000), []);
  assert.is(sw.counters().drops.icmp_error_unmatched, 1);
  assert.is(sw.counters().stats.icmp_translated, 0);
});

test('endpoint-independent mapping: one external port per internal endpoint, whatever the destination', () => {
  for (const eim of [false, true]) {
    const { send, rt } = host();
    rt.removeSourceNat(0);
    rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, endpointIndependent: eim });
    const out = (src: typeof A, dst: string) => frame(src.mac, GW0.mac, v4(src.ip, dst, udp({ srcPort: 40000, dstPort: 3478, payload })));
    const port = (f: Uint8Array) => dissect(f).udp!.srcPort;
    assert.is(port(only(send(0, out(A, '1.1.1.1')), 2)), 40000, 'A keeps its port towards D1');
    const b = port(only(send(1, out(B, '2.2.2.2')), 2));
    const a2 = port(only(send(0, out(A, '2.2.2.2')), 2));
    if (eim) {
      assert.is.not(b, 40000, 'B may not take the port A\'s mapping owns');
      assert.is(a2, 40000, 'A has the same external port towards D2');
    } else {
      assert.is(b, 40000, 'endpoint-dependent: 40000 is free towards D2');
      assert.is.not(a2, 40000, 'endpoint-dependent: towards D2 A needs another port');
    }
  }
});

test('endpoint-independent mapping is released with its last connection', () => {
  const { send, rt } = host();
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, endpointIndependent: true });
  const out = (src: typeof A, dst: string) => frame(src.mac, GW0.mac, v4(src.ip, dst, udp({ srcPort: 40000, dstPort: 3478, payload })));
  send(0, out(A, '1.1.1.1'));
  send(0, out(A, '2.2.2.2'));
  assert.ok(rt.connections().every((c) => c.reply.dport === 40000));
  assert.is(rt.flushConnections(), 2);
  // With A's mapping gone, B can have port 40000.
  assert.is(dissect(only(send(1, out(B, '3.3.3.3')), 2)).udp!.srcPort, 40000);
});

test('endpoint-independent mapping: a connection that replaces the mapping\'s last one keeps the mapping', () => {
  // One connection record: A's second connection takes the place of its first (early drop), which
  // was the mapping's only one. The mapping must live on with the new connection, owning its port.
  const { send, sw, rt } = host({ connections: 1 });
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [20000, 20000], endpointIndependent: true });
  const out = (src: typeof A, dst: string) => frame(src.mac, GW0.mac, v4(src.ip, dst, udp({ srcPort: 40000, dstPort: 3478, payload })));
  assert.is(dissect(only(send(0, out(A, '1.1.1.1')), 2)).udp!.srcPort, 20000);
  assert.is(dissect(only(send(0, out(A, '2.2.2.2')), 2)).udp!.srcPort, 20000);
  assert.is(sw.counters().stats.ct_early_drop, 1);
  assert.equal(send(1, out(B, '3.3.3.3')), [], 'B may not take the port A\'s mapping owns');
  assert.is(sw.counters().drops.nat_port_exhausted, 1);
});

test('endpoint-independent mapping: a mapping whose connections all expired owns no port', () => {
  const { send, sw, rt } = host();
  rt.removeSourceNat(0);
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [20000, 20000], endpointIndependent: true });
  const out = (src: typeof A, dst: string) => frame(src.mac, GW0.mac, v4(src.ip, dst, udp({ srcPort: 40000, dstPort: 3478, payload })));
  assert.is(dissect(only(send(0, out(A, '1.1.1.1')), 2)).udp!.srcPort, 20000);
  // Control: while A's connection lives, its mapping owns the one port.
  assert.equal(send(1, out(B, '2.2.2.2')), []);
  assert.is(sw.counters().drops.nat_port_exhausted, 1);
  // Past UDP_UNREPLIED (30 s) nothing of A's lives, though the sweep has not reached it.
  const f = only(send(1, out(B, '2.2.2.2'), 60_000), 2);
  assert.is(dissect(f).udp!.srcPort, 20000, 'B gets the port');
  assert.is(sw.counters().drops.nat_port_exhausted, 1, 'no new exhaustion drop');
  assert.is(rt.connections().length, 1);
  // B's mapping now owns it: A, back, is refused until B's connection ends.
  assert.equal(send(0, out(A, '3.3.3.3')), []);
  assert.is(sw.counters().drops.nat_port_exhausted, 2);
});

test('NAT exceptions: destinations in an exception leave untranslated', () => {
  const { send, rt } = host();
  rt.addNatException({ destination: '192.168.0.0/16' });
  const f = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, X.ip, udp({ srcPort: 40000, dstPort: 53, payload })))), 2);
  assert.equal(f, frame(GW1.mac, X.mac, v4(A.ip, X.ip, udp({ srcPort: 40000, dstPort: 53, payload }), 63)));
  assert.not.ok(rt.connections()[0].snat);
});

test('overlapping compartments: the same addresses in two compartments never meet', () => {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, clock: () => now });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  const rt = sw.router;
  for (const c of [1, 2]) {
    sw.addPort({ network: c * 10 });       // ports 0 (c1) and 2 (c2): endpoints
    sw.addPort({ network: c * 10 + 1 });   // ports 1 (c1) and 3 (c2): uplinks
    const inner = rt.addInterface({ compartment: c, network: c * 10, address: '10.0.0.1/24' });
    const outer = rt.addInterface({ compartment: c, network: c * 10 + 1, address: '192.168.1.1/24', external: true });
    rt.addRoute({ compartment: c, destination: '0.0.0.0/0', interface: outer, nextHop: R.ip });
    rt.addSourceNat({ compartment: c, source: '10.0.0.0/24', interface: outer });
    rt.setNeighbor({ compartment: c, address: R.ip, mac: R.mac, interface: outer });
    rt.setNeighbor({ compartment: c, address: A.ip, mac: A.mac, interface: inner });
  }
  const gw = (c: number) => rt.interfaces.get((c - 1) * 2)!.mac;
  const pkt = (c: number) => frame(A.mac, gw(c), v4(A.ip, '8.8.8.8', udp({ srcPort: 40000, dstPort: 53, payload })));
  for (const [c, port, uplink] of [[1, 0, 1], [2, 2, 3]]) {
    out.length = 0;
    sw.inject([[port, pkt(c)]], ++now);
    assert.is(out.length, 1);
    assert.is(out[0][0], uplink, `compartment ${c} leaves by its own uplink`);
  }
  // Identical tuples, two zones: two connections.
  assert.is(rt.connections().length, 2);
  assert.equal(rt.connections().map((c) => c.compartment).sort(), [1, 2]);
  // The reply on compartment 2's uplink goes to compartment 2's endpoint port only.
  out.length = 0;
  sw.inject([[3, frame(R.mac, rt.interfaces.get(3)!.mac, v4('8.8.8.8', '192.168.1.1', udp({ srcPort: 53, dstPort: 40000, payload })))]], ++now);
  assert.equal(out.map(([p]) => p), [2]);
});

test('malformed or unsupported L3 input is dropped with a reason', () => {
  const { send, sw } = host();
  // An IPv4 fragment for the gateway itself, not of an echo request (netplane does not reassemble for itself).
  send(0, frame(A.mac, GW0.mac, ipv4({ src: A.ip, dst: GW0.ip, mf: true, payload: udp({ srcPort: 1, dstPort: 9, payload }) })));
  assert.is(sw.counters().drops.ip_fragment, 1);
  // A protocol the router does not route (an EtherType other than IPv4/ARP to the gateway MAC).
  send(0, ethernet({ src: A.mac, dst: GW0.mac, ethertype: 0x88b5, payload }));
  assert.is(sw.counters().drops.l3_unsupported_ethertype, 1);
  // A stray echo reply to a router address: nothing of the router's to answer.
  send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, icmp({ type: 0, id: 9 }))));
  assert.is(sw.counters().drops.local_unsupported, 1);
  // A stray echo reply passing through matches no connection.
  send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', A.ip, icmp({ type: 0, id: 9 }))));
  assert.is(sw.counters().drops.ct_invalid_new, 1);
  // An ICMP error quoting nothing of ours.
  send(2, frame(R.mac, GW1.mac, v4('8.8.8.8', GW1.ip, icmp({ type: 3, code: 1, payload: new Uint8Array(28) }))));
  assert.is(sw.counters().drops.icmp_error_unmatched, 1);
  // Something other than ping to a gateway address.
  send(0, frame(A.mac, GW0.mac, v4(A.ip, GW0.ip, icmp({ type: 13, payload: new Uint8Array(12) }))));
  assert.is(sw.counters().drops.local_unsupported, 2);
  // A truncated TCP header to the gateway MAC never reaches the router: the parse stage drops it.
  send(0, frame(A.mac, GW0.mac, ipv4({ src: A.ip, dst: '8.8.8.8', protocol: 6, payload: new Uint8Array(10) })));
  assert.is(sw.counters().drops.tcp_truncated, 1);
  // A protocol without ports (GRE) is tracked by addresses.
  const g = only(send(0, frame(A.mac, GW0.mac, v4(A.ip, '8.8.8.8', rawL4(47, payload)))), 2);
  assert.is(dissect(g).ipv4!.src, GW1.ip);
});

test('invalid router configuration is refused, naming the field, and changes nothing', () => {
  const { rt } = host();
  assert.throws(() => rt.addInterface({ network: 1 }), /network: network 1 VLAN 0 already has interface 0/);
  assert.throws(() => rt.addInterface({ network: 5, address: '10.9.0.1' }), /address: expected an IPv4 prefix/);
  assert.throws(() => rt.addInterface({ network: 5, compartment: 5000 }), /compartment/);
  assert.throws(() => rt.addRoute({ destination: '10.0.0.0/33', interface: 0 }), /destination: prefix length 33/);
  assert.throws(() => rt.addRoute({ destination: '10.0.0.0/8' }), /interface: a route needs/);
  assert.throws(() => rt.addRoute({ destination: '10.0.0.0/8', interface: 0, compartment: 3 }), /interface 0 is in compartment 0, not 3/);
  assert.throws(() => rt.addPortMapping({ protocol: 'sctp' as never, externalPort: 1, internalAddress: B.ip, internalPort: 1 }), /protocol/);
  assert.throws(() => rt.addPortMapping({ protocol: 'tcp', externalPort: 0, internalAddress: B.ip, internalPort: 1 }), /externalPort/);
  assert.throws(() => rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ports: [9, 2] }), /ports\[1\]/);
  assert.throws(() => rt.setNeighbor({ address: '10.0.0.300', mac: A.mac, interface: 0 }), /address/);
  assert.is(rt.interfaces.size, 2);
});

test.run();
