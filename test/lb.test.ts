// The L4 load balancer (HCN LoadBalancer): distribution per connection, per source address and
// protocol, per source address (spread checked statistically over many flows), stickiness by
// conntrack, draining when a backend is removed, direct server return, NodePort-style frontends.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, type LoadBalancerSpec } from '../src/index.js';
import { ethernet, ipv4, tcp, udp, icmp, arp, dissect, verifyChecksums } from '../src/frames.js';

const GW0 = '02:6e:70:00:00:00', GW1 = '02:6e:70:00:00:01', R = '02:00:00:00:00:fe';
const BACKENDS = [
  { ip: '10.0.0.2', mac: '02:00:00:00:00:0a', port: 0 },
  { ip: '10.0.0.3', mac: '02:00:00:00:00:0b', port: 1 },
  { ip: '10.0.0.4', mac: '02:00:00:00:00:0c', port: 2 },
];

function cluster(lb: Partial<LoadBalancerSpec> = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, clock: () => now, connections: 1 << 15 });
  for (const b of BACKENDS) sw.addPort({ network: 1 });
  const uplink = sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.setNeighbor({ address: '192.168.1.254', mac: R, interface: 1 });
  for (const b of BACKENDS) rt.setNeighbor({ address: b.ip, mac: b.mac, interface: 0 });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  // The switch learns where each backend is.
  for (const b of BACKENDS) sw.inject([[b.port, ethernet({ src: b.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: b.ip, dst: '10.0.0.255', payload: udp({ srcPort: 1, dstPort: 1 }) }) })]], now);
  sw.inject([[uplink.id, ethernet({ src: R, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '192.168.1.254', dst: '192.168.1.255', payload: udp({ srcPort: 1, dstPort: 1 }) }) })]], now);
  const id = rt.addLoadBalancer({
    frontendVips: ['192.168.1.80'],
    portMappings: [{ protocol: 'tcp', externalPort: 80, internalPort: 8080 }],
    backends: BACKENDS.map((b) => b.ip),
    ...lb,
  });
  const send = (port: number, f: Uint8Array) => {
    out.length = 0;
    sw.inject([[port, f]], ++now);
    return out.slice();
  };
  const syn = (client: string, sport: number, vip = '192.168.1.80', dport = 80, proto: 'tcp' | 'udp' = 'tcp') =>
    ethernet({ src: R, dst: GW1, payload: ipv4({ src: client, dst: vip, payload: proto === 'tcp' ? tcp({ srcPort: sport, dstPort: dport, flags: 'S' }) : udp({ srcPort: sport, dstPort: dport }) }) });
  // Which backend a frame from the outside lands on (by egress port).
  const land = (f: Uint8Array) => {
    const o = send(uplink.id, f);
    assert.is(o.length, 1, 'one backend gets it');
    assert.ok(verifyChecksums(o[0][1]));
    return o[0][0];
  };
  return { sw, rt, id, uplink, send, syn, land };
}

const spread = (counts: number[], total: number) => counts.every((c) => c > total / counts.length * 0.75 && c < total / counts.length * 1.25);

test('per connection (5-tuple): new connections spread evenly over the backends', () => {
  const { land, syn } = cluster();
  const counts = [0, 0, 0];
  const N = 3000;
  for (let i = 0; i < N; i++) counts[land(syn(`203.0.${(i >> 8) & 255}.${i & 255}`, 10000 + i))]++;
  assert.ok(spread(counts, N), `spread ${counts}`);
});

test('translation: to the backend and its port, replies come back from the VIP', () => {
  const { send, syn, uplink } = cluster();
  const o = send(uplink.id, syn('203.0.113.7', 5555));
  const d = dissect(o[0][1]);
  const b = BACKENDS[o[0][0]];
  assert.equal({ dst: d.ipv4!.dst, port: d.tcp!.dstPort, mac: d.dst }, { dst: b.ip, port: 8080, mac: b.mac });
  const back = send(b.port, ethernet({ src: b.mac, dst: GW0, payload: ipv4({ src: b.ip, dst: '203.0.113.7', payload: tcp({ srcPort: 8080, dstPort: 5555, flags: 'SA' }) }) }));
  assert.is(back.length, 1);
  assert.is(back[0][0], uplink.id);
  const r = dissect(back[0][1]);
  assert.equal({ src: r.ipv4!.src, sport: r.tcp!.srcPort }, { src: '192.168.1.80', sport: 80 });
});

test('by source address: every connection of a client goes to one backend, clients spread', () => {
  const { land, syn } = cluster({ portMappings: [{ protocol: 'tcp', externalPort: 80, internalPort: 8080, distribution: 'SourceIP' }] });
  const counts = [0, 0, 0];
  const N = 600;
  for (let c = 0; c < N; c++) {
    const client = `198.51.${c >> 8}.${c & 255}`;
    const first = land(syn(client, 20000));
    for (let k = 1; k < 4; k++) assert.is(land(syn(client, 20000 + k)), first, `client ${client} sticks`);
    counts[first]++;
  }
  assert.ok(spread(counts, N), `spread ${counts}`);
});

test('by source address and protocol: a client\'s TCP and UDP may differ, each sticks', () => {
  const { land, syn, rt } = cluster({
    portMappings: [
      { protocol: 'tcp', externalPort: 53, internalPort: 53, distribution: 'SourceIPProtocol' },
      { protocol: 'udp', externalPort: 53, internalPort: 53, distribution: 'SourceIPProtocol' },
    ],
  });
  let differ = 0;
  for (let c = 0; c < 200; c++) {
    const client = `198.51.100.${c}`;
    const t = land(syn(client, 30000, '192.168.1.80', 53, 'tcp'));
    const u = land(syn(client, 30000, '192.168.1.80', 53, 'udp'));
    assert.is(land(syn(client, 30001, '192.168.1.80', 53, 'tcp')), t);
    assert.is(land(syn(client, 30001, '192.168.1.80', 53, 'udp')), u);
    if (t !== u) differ++;
  }
  assert.ok(differ > 50, `protocols hash apart for some clients (${differ} of 200)`);
  void rt;
});

test('draining: a removed backend keeps its connections and gets no new ones', () => {
  const { send, syn, land, rt, id, uplink } = cluster();
  // Find a connection on backend 0.
  let sport = 40000;
  while (land(syn('203.0.113.9', sport)) !== 0) sport++;
  rt.setBackends(id, [BACKENDS[1].ip, BACKENDS[2].ip]);
  // The established connection still goes to backend 0 (an ACK of the same tuple).
  const ack = ethernet({ src: R, dst: GW1, payload: ipv4({ src: '203.0.113.9', dst: '192.168.1.80', payload: tcp({ srcPort: sport, dstPort: 80, flags: 'A' }) }) });
  const b0 = BACKENDS[0];
  send(b0.port, ethernet({ src: b0.mac, dst: GW0, payload: ipv4({ src: b0.ip, dst: '203.0.113.9', payload: tcp({ srcPort: 8080, dstPort: sport, flags: 'SA' }) }) }));
  const o = send(uplink.id, ack);
  assert.equal(o.map(([p]) => p), [0], 'the old connection drains on backend 0');
  for (let i = 0; i < 300; i++) assert.is.not(land(syn('203.0.113.10', 50000 + i)), 0, 'no new connection on the removed backend');
});

test('direct server return: the destination stays the VIP, the reply is not translated', () => {
  const { send, syn, uplink } = cluster({ dsr: true, portMappings: [{ protocol: 'tcp', externalPort: 80 }] });
  const o = send(uplink.id, syn('203.0.113.7', 6000));
  assert.is(o.length, 1);
  const b = BACKENDS[o[0][0]];
  const d = dissect(o[0][1]);
  assert.equal({ dst: d.ipv4!.dst, port: d.tcp!.dstPort, mac: d.dst }, { dst: '192.168.1.80', port: 80, mac: b.mac });
  const back = send(b.port, ethernet({ src: b.mac, dst: GW0, payload: ipv4({ src: '192.168.1.80', dst: '203.0.113.7', payload: tcp({ srcPort: 80, dstPort: 6000, flags: 'SA' }) }) }));
  assert.equal(back.map(([p]) => p), [uplink.id]);
  assert.equal(dissect(back[0][1]).ipv4!.src, '192.168.1.80');
});

test('NodePort style: no frontend VIPs means every gateway address; no backends is a counted drop', () => {
  const { land, syn, rt, sw, send, uplink } = cluster({ frontendVips: [], portMappings: [{ protocol: 'tcp', externalPort: 30080, internalPort: 80 }] });
  assert.ok(land(syn('203.0.113.1', 1000, '192.168.1.1', 30080)) >= 0);
  const lb = rt.addLoadBalancer({ frontendVips: ['192.168.1.81'], portMappings: [{ protocol: 'udp', externalPort: 9 }], backends: [] });
  assert.equal(send(uplink.id, syn('203.0.113.1', 1001, '192.168.1.81', 9, 'udp')), []);
  assert.is(sw.counters().drops.lb_no_backend, 1);
  rt.removeLoadBalancer(lb);
  assert.throws(() => rt.addLoadBalancer({ portMappings: [], backends: [] }), /portMappings/);
  assert.throws(() => rt.addLoadBalancer({ portMappings: [{ protocol: 'tcp', externalPort: 1, distribution: 'Random' as never }], backends: [] }), /portMappings\[0\]\.distribution/);
  assert.throws(() => rt.addLoadBalancer({ dsr: true, portMappings: [{ protocol: 'tcp', externalPort: 1, internalPort: 2 }], backends: [] }), /direct server return/);
});

// An ARP request from a peer on `port` for `target`; returns the replies' (sender MAC, sender IP).
function askArp(send: (p: number, f: Uint8Array) => Array<[number, Uint8Array]>, port: number, target: string, from = '192.168.1.254', mac = R) {
  const o = send(port, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: mac, payload: arp({ op: 'request', senderMac: mac, senderIp: from, targetIp: target }) }));
  return o.map(([, f]) => dissect(f)).filter((d) => d.arp?.op === 2).map((d) => ({ mac: d.arp!.senderMac, ip: d.arp!.senderIp, to: d.dst }));
}

test('frontend VIPs are answered for ARP with the gateway MAC of the interface whose subnet holds them', () => {
  const { send, uplink, rt, sw, id } = cluster();
  assert.equal(askArp(send, uplink.id, '192.168.1.80'), [{ mac: GW1, ip: '192.168.1.80', to: R }]);
  assert.equal(askArp(send, uplink.id, '192.168.1.81'), [], 'not a VIP');
  // A backend asking for the VIP from the other side: the VIP is not in 10.0.0.0/24, no answer there.
  assert.equal(askArp(send, 0, '192.168.1.80', BACKENDS[0].ip, BACKENDS[0].mac), []);
  // A VIP outside every subnet is routed to, never claimed on a segment.
  const far = rt.addLoadBalancer({ frontendVips: ['172.16.0.80'], portMappings: [{ protocol: 'tcp', externalPort: 80 }], backends: [BACKENDS[0].ip] });
  assert.equal(askArp(send, uplink.id, '172.16.0.80'), []);
  rt.removeLoadBalancer(far);
  // Gone with its balancer.
  rt.removeLoadBalancer(id);
  assert.equal(askArp(send, uplink.id, '192.168.1.80'), []);
  assert.is(sw.counters().stats.arp_replies, 1);
});

test('a VIP that shares its address with two balancers stays answered until the last is removed', () => {
  const { send, uplink, rt, id } = cluster();
  const udpLb = rt.addLoadBalancer({ frontendVips: ['192.168.1.80'], portMappings: [{ protocol: 'udp', externalPort: 53 }], backends: [BACKENDS[1].ip] });
  rt.removeLoadBalancer(id);
  assert.equal(askArp(send, uplink.id, '192.168.1.80').length, 1);
  rt.removeLoadBalancer(udpLb);
  assert.equal(askArp(send, uplink.id, '192.168.1.80').length, 0);
});

test('traffic to a VIP that no mapping takes ends at the router: never routed back out of the uplink', () => {
  const { send, syn, uplink, sw } = cluster();
  const toVip = (o: Array<[number, Uint8Array]>) => o.map(([, f]) => dissect(f)).filter((d) => d.ipv4?.dst === '192.168.1.80');
  for (const [f, what] of [[syn('203.0.113.9', 4000, '192.168.1.80', 81), 'TCP to an unmapped port'],
                           [syn('203.0.113.9', 4001, '192.168.1.80', 80, 'udp'), 'UDP to a TCP-only port']] as const) {
    const before = sw.counters().drops;
    const o = send(uplink.id, f);
    assert.equal(toVip(o), [], `${what}: not sent on`);
    // Dropped as traffic to the router (or answered by it, as a host would: a RST, a port unreachable).
    const dropped = (sw.counters().drops.local_unsupported ?? 0) - (before.local_unsupported ?? 0);
    const answered = o.map(([, g]) => dissect(g)).filter((d) => d.ipv4?.src === '192.168.1.80' || d.ipv4?.src === '192.168.1.1');
    assert.ok(dropped >= 1 || answered.length === 1, `${what}: counted or answered`);
  }
  assert.is(sw.counters().drops.no_route ?? 0, 0);
  // An echo request to the VIP is answered from the VIP, as for any router address.
  const o = send(uplink.id, ethernet({ src: R, dst: GW1, payload: ipv4({ src: '203.0.113.9', dst: '192.168.1.80', payload: icmp({ type: 8, code: 0, id: 7, seq: 1 }) }) }));
  assert.is(o.length, 1);
  const r = dissect(o[0][1]);
  assert.equal({ src: r.ipv4!.src, dst: r.ipv4!.dst, type: r.icmp!.type }, { src: '192.168.1.80', dst: '203.0.113.9', type: 0 });
});

// N backends behind one port (which backend a connection landed on is its destination address).
function farm(n: number, distribution: 'SourceIP' | 'SourceIPProtocol' | 'None') {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, clock: () => now, connections: 1 << 16 });
  const inside = sw.addPort({ network: 1 });
  const uplink = sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.1.0.1/16' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.setNeighbor({ address: '192.168.1.254', mac: R, interface: 1 });
  const backends = Array.from({ length: n }, (_, i) => `10.1.${i >> 8}.${(i & 255) + 2}`);
  backends.forEach((b, i) => rt.setNeighbor({ address: b, mac: `02:00:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, interface: 0 }));
  const id = rt.addLoadBalancer({ frontendVips: ['192.168.1.80'], portMappings: [{ protocol: 'tcp', externalPort: 80, distribution }], backends });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  let sport = 1024;
  // The backend a new connection from `client` lands on.
  const land = (client: string) => {
    out.length = 0;
    sw.inject([[uplink.id, ethernet({ src: R, dst: GW1, payload: ipv4({ src: client, dst: '192.168.1.80', payload: tcp({ srcPort: sport++, dstPort: 80, flags: 'S' }) }) })]], ++now);
    assert.is(out.length, 1);
    assert.is(out[0][0], inside.id);
    return dissect(out[0][1]).ipv4!.dst;
  };
  return { sw, rt, id, backends, land };
}

const clients = (n: number) => Array.from({ length: n }, (_, i) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);

for (const distribution of ['SourceIP', 'SourceIPProtocol'] as const) {
  test(`${distribution}: removing one of N backends moves only that backend's clients (Maglev), and the spread stays even`, () => {
    const N = 10, C = 4000;
    const { rt, id, backends, land } = farm(N, distribution);
    const before = new Map(clients(C).map((c) => [c, land(c)]));
    const count = (m: Map<string, string>) => backends.map((b) => [...m.values()].filter((x) => x === b).length);
    const even = (counts: number[], total: number, n: number) => counts.filter((c) => c > 0).every((c) => c > total / n * 0.8 && c < total / n * 1.2);
    assert.ok(even(count(before), C, N), `spread ${count(before)}`);
    const gone = backends[3];
    rt.setBackends(id, backends.filter((b) => b !== gone));
    const after = new Map(clients(C).map((c) => [c, land(c)]));
    let moved = 0, orphans = 0;
    for (const [c, b] of before) {
      if (b === gone) orphans++;
      else if (after.get(c) !== b) moved++;
    }
    // Maglev's disruption is not zero (a few slots change hands), but far from the ~half of all
    // clients a modulo moves: at most 3 % of the clients that kept their backend.
    assert.ok(moved <= (C - orphans) * 0.03, `${moved} of ${C - orphans} clients of remaining backends moved`);
    assert.ok(orphans + moved <= C / N * 1.3, `${orphans + moved} of ${C} clients moved: about 1/${N} expected`);
    assert.ok(![...after.values()].includes(gone));
    assert.ok(even(count(after), C, N - 1), `spread after ${count(after)}`);
    // And back: the same table as before, so every client returns to its first backend.
    rt.setBackends(id, backends);
    const again = new Map(clients(C).map((c) => [c, land(c)]));
    let differ = 0;
    for (const [c, b] of before) if (again.get(c) !== b) differ++;
    assert.is(differ, 0, 'the table depends only on the backend set');
  });
}

test.run();
