// The fuzz invariant (issue 12): every frame the switch receives is accounted for. Over a
// deterministic mutation corpus (a seeded PRNG; valid frames of every kind the switch handles: ARP,
// IPv4 and IPv6 TCP/UDP/ICMP to the gateway and across it, Neighbour Discovery, VLAN-tagged frames,
// L2 unicast, broadcast, multicast and reserved groups; each sent clean and mutated by bit flips,
// truncation, length-field changes and trailing junk), fed one frame per process() call:
//
//   Let tx be the number of tx descriptors process() returned for the frame, and d the rise of the
//   sum of the global drop counters. Then d <= 1, and tx > 0 or d == 1.
//
// So a frame is forwarded or answered (tx > 0), or dropped under exactly one named reason (d == 1);
// never silent (tx == 0 and d == 0) and never counted twice. A frame both answered and dropped is
// allowed (tx > 0 and d == 1: TTL exceeded sends an ICMP error and counts the drop; a frame the
// router consumes, such as an ARP request for its address, is answered). A frame the router only
// learns from (an ARP reply to the gateway, a neighbour advertisement) sends nothing, so it is
// counted under a reason that says it was consumed. Both builds run it (the debug build traps on
// any assertion), so no trap either.
//
// A fragment that comes before its datagram's first fragment is held (tables/frag.ts): counted in
// the frag_held statistic, it is sent or dropped in a later call, when its first fragment comes
// (frag_released) or dropped when its datagram times out or is condemned (an overlap: every held
// fragment of it is dropped with the frame that overlapped; frag_held_dropped). So a call whose frame
// was held is accounted for, and the drops of earlier frames released or dropped in a call are not its
// frame's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, udp, tcp, icmp, icmpv6, arp } from '../src/frames.js';

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

const GW0 = '02:6e:70:00:00:00', GW1 = '02:6e:70:00:00:01', GW2 = '02:6e:70:00:00:02';
const A = '02:00:00:00:00:0a', C = '02:00:00:00:00:0c', V = '02:00:00:00:00:1a', R = '02:00:00:00:00:fe';
const BC = 'ff:ff:ff:ff:ff:ff';
const INSIDE = 0, UPLINK = 1, TRUNK = 2, INSIDE2 = 3, UNDERLAY = 4;
// The VXLAN overlay (network 1 is VNI 5001): a remote endpoint RM at PA 10.99.0.2.
const PA = '10.99.0.1', PA2 = '10.99.0.2', RM = '02:00:00:00:00:2b';

function rig() {
  let now = 1000;
  const sw = new Switch({ maxPorts: 5, clock: () => now, connections: 1024 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  sw.addPort({ network: 1, mode: 'trunk', allowedVlans: [10] });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 9 });
  sw.overlay.setUnderlay({ port: UNDERLAY, address: PA });
  sw.overlay.setVni(1, 5001);
  sw.overlay.addRemote({ network: 1, mac: RM, addresses: ['10.0.0.9', 'fd00::9'], providerAddress: PA2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', address6: 'fd01::1/64', external: true });
  rt.addInterface({ network: 1, vlan: 10, address: '10.10.0.1/24' });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.addRoute({ destination: '::/0', interface: 1, nextHop: 'fd01::fe' });
  rt.addSourceNat({ source: '10.0.0.0/8', interface: 1 });
  rt.addPortMapping({ protocol: 'udp', externalPort: 53, internalAddress: '10.0.0.2', internalPort: 53 });
  rt.addLoadBalancer({ frontendVips: ['192.168.1.80'], portMappings: [{ protocol: 'tcp', externalPort: 80 }], backends: ['10.0.0.2', '10.0.0.3'] });
  rt.setNeighbor({ address: '10.0.0.2', mac: A, interface: 0 });
  rt.setNeighbor({ address: '10.0.0.3', mac: C, interface: 0 });
  rt.setNeighbor({ address: '10.10.0.2', mac: V, interface: 2 });
  rt.setNeighbor({ address: '192.168.1.254', mac: R, interface: 1 });
  rt.setNeighbor({ address: 'fd01::fe', mac: R, interface: 1 });
  rt.setNeighbor({ address: 'fd00::2', mac: A, interface: 0 });
  const dropSum = () => {
    const dp = sw.dp;
    dp.views();
    const base = dp.exports.drops();
    let s = 0;
    for (let i = 0; i < dp.reasons.length; i++) s += Number(dp.dv.getBigUint64(base + i * 8, true));
    return s;
  };
  const counter = (name: string, drop = false) => {
    const dp = sw.dp;
    dp.views();
    const i = (drop ? dp.reasons : dp.statNames).indexOf(name);
    return Number(dp.dv.getBigUint64((drop ? dp.exports.drops() : dp.exports.stats()) + i * 8, true));
  };
  // Frames held for their first fragment, and the earlier ones released or timed out.
  const held = () => ({ held: counter('frag_held'), resolved: counter('frag_released') + counter('frag_held_dropped') });
  return { sw, dropSum, held, tick: () => (now += 3) };
}

type Seed = { name: string; port: number; frame: Uint8Array };

function seeds(): Seed[] {
  const p = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const s: Seed[] = [];
  const add = (name: string, port: number, frame: Uint8Array) => s.push({ name, port, frame });
  const v4 = (src: string, dst: string, payload: Parameters<typeof ipv4>[0]['payload'], ttl?: number) => ipv4({ src, dst, payload, ttl });
  // ARP
  add('arp request for the gateway', INSIDE, ethernet({ src: A, dst: BC, payload: arp({ op: 'request', senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.1' }) }));
  add('arp request for another host', INSIDE, ethernet({ src: A, dst: BC, payload: arp({ op: 'request', senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.3' }) }));
  add('arp request for the VIP', UPLINK, ethernet({ src: R, dst: BC, payload: arp({ op: 'request', senderMac: R, senderIp: '192.168.1.254', targetIp: '192.168.1.80' }) }));
  add('arp reply to the gateway', INSIDE, ethernet({ src: A, dst: GW0, payload: arp({ op: 'reply', senderMac: A, senderIp: '10.0.0.2', targetMac: GW0, targetIp: '10.0.0.1' }) }));
  add('gratuitous arp', INSIDE2, ethernet({ src: C, dst: BC, payload: arp({ op: 'request', senderMac: C, senderIp: '10.0.0.3', targetIp: '10.0.0.3' }) }));
  add('tagged arp request for the VLAN gateway', TRUNK, ethernet({ src: V, dst: BC, vlan: 10, payload: arp({ op: 'request', senderMac: V, senderIp: '10.10.0.2', targetIp: '10.10.0.1' }) }));
  // IPv4 across the router, both ways, and to it
  add('udp out (masquerade)', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '8.8.8.8', udp({ srcPort: 4000, dstPort: 53, payload: p })) }));
  add('tcp syn out', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '1.1.1.1', tcp({ srcPort: 4001, dstPort: 443, flags: 'S' })) }));
  add('tcp ack with no connection', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '1.1.1.1', tcp({ srcPort: 4002, dstPort: 443, flags: 'A' })) }));
  add('echo out', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '1.1.1.1', icmp({ type: 8, id: 7, payload: p })) }));
  add('echo to the gateway', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '10.0.0.1', icmp({ type: 8, id: 8, payload: p })) }));
  add('ttl 1 out', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '1.1.1.1', udp({ srcPort: 4003, dstPort: 53, payload: p }), 1) }));
  add('tcp syn to an unmapped gateway port', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('203.0.113.5', '192.168.1.1', tcp({ srcPort: 5000, dstPort: 22, flags: 'S' })) }));
  add('udp to the mapped port', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('203.0.113.5', '192.168.1.1', udp({ srcPort: 5001, dstPort: 53, payload: p })) }));
  add('tcp syn to the VIP', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('203.0.113.5', '192.168.1.80', tcp({ srcPort: 5002, dstPort: 80, flags: 'S' })) }));
  add('tcp syn to the VIP, wrong port', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('203.0.113.5', '192.168.1.80', tcp({ srcPort: 5003, dstPort: 81, flags: 'S' })) }));
  add('icmp error in', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('8.8.8.8', '192.168.1.1', icmp({ type: 3, code: 3, payload: new Uint8Array(40) })) }));
  add('udp across to the VLAN', INSIDE, ethernet({ src: A, dst: GW0, payload: v4('10.0.0.2', '10.10.0.2', udp({ srcPort: 4004, dstPort: 9, payload: p })) }));
  add('tagged udp from the VLAN out', TRUNK, ethernet({ src: V, dst: GW2, vlan: 10, payload: v4('10.10.0.2', '8.8.4.4', udp({ srcPort: 4005, dstPort: 53, payload: p })) }));
  // L2
  add('l2 unicast', INSIDE, ethernet({ src: A, dst: C, payload: v4('10.0.0.2', '10.0.0.3', udp({ srcPort: 1, dstPort: 2, payload: p })) }));
  add('l2 broadcast', INSIDE2, ethernet({ src: C, dst: BC, payload: v4('10.0.0.3', '10.0.0.255', udp({ srcPort: 1, dstPort: 2, payload: p })) }));
  add('l2 multicast', INSIDE, ethernet({ src: A, dst: '01:00:5e:00:00:fb', payload: v4('10.0.0.2', '224.0.0.251', udp({ srcPort: 5353, dstPort: 5353, payload: p })) }));
  add('reserved group (EAPOL)', INSIDE, ethernet({ src: A, dst: '01:80:c2:00:00:03', ethertype: 0x888e, payload: new Uint8Array(46) }));
  add('zero source MAC', INSIDE, ethernet({ src: '00:00:00:00:00:00', dst: C, payload: v4('10.0.0.2', '10.0.0.3', udp({ srcPort: 1, dstPort: 2, payload: p })) }));
  add('tagged l2 broadcast', TRUNK, ethernet({ src: V, dst: BC, vlan: 10, payload: v4('10.10.0.2', '10.10.0.255', udp({ srcPort: 1, dstPort: 2, payload: p })) }));
  // IPv6
  add('v6 echo to the gateway', INSIDE, ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: 'fd00::1', payload: icmpv6({ type: 128, id: 1, payload: p }) }) }));
  add('v6 udp across', INSIDE, ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: '2001:db8::1', payload: udp({ srcPort: 1, dstPort: 2, payload: p }) }) }));
  add('v6 tcp syn across', INSIDE, ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: '2001:db8::1', payload: tcp({ srcPort: 3, dstPort: 443, flags: 'S' }) }) }));
  add('v6 echo across', INSIDE, ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: '2001:db8::1', payload: icmpv6({ type: 128, id: 2, payload: p }) }) }));
  add('v6 icmp error in', UPLINK, ethernet({ src: R, dst: GW1, payload: ipv6({ src: '2001:db8::1', dst: 'fd00::2', payload: icmpv6({ type: 1, code: 4, payload: new Uint8Array(48) }) }) }));
  add('echo reply in (no connection)', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('8.8.8.8', '192.168.1.1', icmp({ type: 0, id: 99, payload: p })) }));
  add('v6 hop limit 1 across', INSIDE, ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: '2001:db8::1', hopLimit: 1, payload: udp({ srcPort: 4, dstPort: 2, payload: p }) }) }));
  add('v6 udp in (no connection)', UPLINK, ethernet({ src: R, dst: GW1, payload: ipv6({ src: '2001:db8::1', dst: 'fd00::2', payload: udp({ srcPort: 2, dstPort: 1, payload: p }) }) }));
  const ns = (target: string, hopLimit = 255, dst = 'ff02::1:ff00:1', mac = '33:33:ff:00:00:01') => ethernet({ src: A, dst: mac, payload: ipv6({ src: 'fd00::2', dst, hopLimit,
    payload: icmpv6({ type: 135, rest: new Uint8Array(4), payload: new Uint8Array([...v6bytes(target), 1, 1, 2, 0, 0, 0, 0, 0x0a]) }) }) });
  add('nd solicitation for the gateway', INSIDE, ns('fd00::1'));
  add('nd solicitation for another target', INSIDE, ns('fd00::99', 255, 'ff02::1:ff00:99', '33:33:ff:00:00:99'));
  add('nd solicitation with hop limit 64', INSIDE, ns('fd00::1', 64));
  add('nd solicitation unicast to the gateway, hop limit 64', INSIDE, ns('fd00::1', 64, 'fd00::1', GW0));
  add('nd solicitation unicast to the gateway for another target', INSIDE, ns('fd00::99', 255, 'fd00::1', GW0));
  add('nd solicitation for another target on the uplink (no other port)', UPLINK, ethernet({ src: R, dst: '33:33:ff:00:00:99', payload: ipv6({ src: 'fd01::fe', dst: 'ff02::1:ff00:99', hopLimit: 255,
    payload: icmpv6({ type: 135, rest: new Uint8Array(4), payload: new Uint8Array([...v6bytes('fd01::99'), 1, 1, 2, 0, 0, 0, 0, 0xfe]) }) }) }));
  add('nd advertisement to the gateway', INSIDE, ethernet({ src: A, dst: GW0, payload: ipv6({ src: 'fd00::2', dst: 'fd00::1', hopLimit: 255,
    payload: icmpv6({ type: 136, rest: new Uint8Array([0x60, 0, 0, 0]), payload: new Uint8Array([...v6bytes('fd00::2'), 2, 1, 2, 0, 0, 0, 0, 0x0a]) }) }) }));
  add('router solicitation', INSIDE, ethernet({ src: A, dst: '33:33:00:00:00:02', payload: ipv6({ src: 'fd00::2', dst: 'ff02::2', hopLimit: 255, payload: icmpv6({ type: 133, rest: new Uint8Array(4) }) }) }));
  // VXLAN: from the underlay (to a local port, a broadcast, to the gateway, a foreign VNI, ARP) and into it.
  const vx = (inner: Uint8Array, vni = 5001, src = PA2) => {
    const b = new Uint8Array(8 + inner.length);
    b[0] = 8; b[4] = vni >>> 16; b[5] = (vni >>> 8) & 255; b[6] = vni & 255;
    b.set(inner, 8);
    return ethernet({ src: '00:00:00:00:00:00', dst: '00:00:00:00:00:00', payload: ipv4({ src, dst: PA, ttl: 64, payload: udp({ srcPort: 50000, dstPort: 4789, payload: b, zeroChecksum: true }) }) });
  };
  add('vxlan to a local port', UNDERLAY, vx(ethernet({ src: RM, dst: A, payload: v4('10.0.0.9', '10.0.0.2', udp({ srcPort: 1, dstPort: 2, payload: p })) })));
  add('vxlan broadcast', UNDERLAY, vx(ethernet({ src: RM, dst: BC, payload: arp({ op: 'request', senderMac: RM, senderIp: '10.0.0.9', targetIp: '10.0.0.2' }) })));
  add('vxlan to the gateway', UNDERLAY, vx(ethernet({ src: RM, dst: GW0, payload: v4('10.0.0.9', '1.1.1.1', tcp({ srcPort: 7, dstPort: 443, flags: 'S' })) })));
  add('vxlan foreign vni', UNDERLAY, vx(ethernet({ src: RM, dst: A, payload: v4('10.0.0.9', '10.0.0.2', udp({ srcPort: 1, dstPort: 2, payload: p })) }), 77));
  add('vxlan from a non-member', UNDERLAY, vx(ethernet({ src: RM, dst: A, payload: v4('10.0.0.9', '10.0.0.2', udp({ srcPort: 1, dstPort: 2, payload: p })) }), 5001, '10.99.0.7'));
  add('l2 unicast to a remote endpoint', INSIDE, ethernet({ src: A, dst: RM, payload: v4('10.0.0.2', '10.0.0.9', udp({ srcPort: 1, dstPort: 2, payload: p })) }));
  add('routed to a remote endpoint', UPLINK, ethernet({ src: R, dst: GW1, payload: v4('203.0.113.5', '10.0.0.9', tcp({ srcPort: 5004, dstPort: 80, flags: 'SA' })) }));
  add('arp request for a remote endpoint', INSIDE, ethernet({ src: A, dst: BC, payload: arp({ op: 'request', senderMac: A, senderIp: '10.0.0.2', targetIp: '10.0.0.9' }) }));
  add('nd solicitation for a remote endpoint', INSIDE, ns('fd00::9', 255, 'ff02::1:ff00:9', '33:33:ff:00:00:09'));
  add('too big for the tunnel', INSIDE, ethernet({ src: A, dst: RM, payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.9', df: true, payload: udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(1460) }) }) }));
  return s;
}

function v6bytes(a: string): number[] {
  const [h, t] = a.split('::');
  const hs = h ? h.split(':') : [], ts = t ? t.split(':') : [];
  const words = [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts].map((w) => parseInt(w, 16));
  return words.flatMap((w) => [w >> 8, w & 255]);
}

const MUTATIONS = ['clean', 'flip bits', 'truncate', 'ip length', 'l4 length', 'ihl or next header', 'trailing junk', 'ethertype'] as const;

// Mutation m of frame f (the L3 header starts at `l3`).
function mutate(f: Uint8Array, m: typeof MUTATIONS[number], r: () => number): Uint8Array {
  const g = f.slice();
  const l3 = g[12] === 0x81 && g[13] === 0 ? 18 : 14;
  const v6 = g[l3 - 2] === 0x86 && g[l3 - 1] === 0xdd;
  const v4 = g[l3 - 2] === 0x08 && g[l3 - 1] === 0x00;
  const l4 = v6 ? l3 + 40 : v4 ? l3 + (g[l3] & 15) * 4 : l3 + 8;
  const set16 = (at: number, v: number) => { if (at + 1 < g.length) { g[at] = (v >> 8) & 255; g[at + 1] = v & 255; } };
  const delta = () => [-1, 1, -8, 8, -100, 1000, 0x7fff, -0x7fff][r() % 8];
  switch (m) {
    case 'clean': return g;
    case 'flip bits': for (let k = 0; k < 1 + (r() % 4); k++) { const i = l3 - 2 + (r() % (g.length - l3 + 2)); g[i] ^= 1 << (r() % 8); } return g;
    case 'truncate': return g.subarray(0, 12 + (r() % (g.length - 12)));
    case 'ip length': if (v6) set16(l3 + 4, ((g[l3 + 4] << 8) | g[l3 + 5]) + delta()); else if (v4) set16(l3 + 2, ((g[l3 + 2] << 8) | g[l3 + 3]) + delta()); else set16(l3 + 4, r()); return g;
    case 'l4 length': set16(l4 + 4, ((g[l4 + 4] << 8) | g[l4 + 5]) + delta()); if (g[l4 + 12] !== undefined) g[l4 + 12] = r() & 255; return g;
    case 'ihl or next header': if (v4) g[l3] = 0x40 | (r() % 16); else if (v6) g[l3 + 6] = [0, 43, 44, 60, 58, 6, 17, 59, 135][r() % 9]; else g[l3 + 5] = r() & 255; return g;
    case 'trailing junk': { const h = new Uint8Array(g.length + 1 + (r() % 60)); h.set(g); for (let k = g.length; k < h.length; k++) h[k] = r() & 255; return h; }
    case 'ethertype': { const t = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88cc, 0x0600, 0x05dc][r() % 7]; g[l3 - 2] = t >> 8; g[l3 - 1] = t & 255; return g; }
  }
}

const hex = (f: Uint8Array) => Buffer.from(f).toString('hex');

test('every rx frame is forwarded, answered, or counted under exactly one drop reason (one frame per process call)', () => {
  const { sw, dropSum, held, tick } = rig();
  const r = rng(20261130);
  const corpus = seeds();
  const silent = new Map<string, { n: number; example: string }>();
  const double = new Map<string, { n: number; d: number; example: string }>();
  let frames = 0;
  for (let round = 0; round < 100; round++) {
    for (const s of corpus) {
      for (const m of MUTATIONS) {
        const f = mutate(s.frame, m, r);
        const before = dropSum(), h0 = held();
        const tx = sw.inject([[s.port, f]], tick());
        const h1 = held();
        const d = dropSum() - before - (h1.resolved - h0.resolved);
        frames++;
        const key = `${s.name} / ${m}`;
        if (tx === 0 && d <= 0 && h1.held === h0.held) { const e = silent.get(key) ?? { n: 0, example: hex(f) }; e.n++; silent.set(key, e); }
        if (d > 1) { const e = double.get(key) ?? { n: 0, d, example: hex(f) }; e.n++; double.set(key, e); }
      }
    }
  }
  assert.is(sw.counters().stats.rx_packets, frames);
  const list = (m: Map<string, { n: number; example: string }>) => [...m].map(([k, v]) => `  ${k}: ${v.n}, e.g. ${v.example}`).join('\n');
  assert.is(silent.size, 0, `silent frames (neither sent nor counted) of ${frames}:\n${list(silent)}`);
  assert.is(double.size, 0, `frames counted under more than one drop:\n${list(double)}`);
  // Still a working router afterwards.
  assert.ok(sw.inject([[INSIDE, corpus.find((s) => s.name === 'udp out (masquerade)')!.frame]], tick()) >= 1);
});

test.run();
