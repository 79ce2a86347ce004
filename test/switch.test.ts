// The L2 switch's behaviour, frames in and frames out: learning, aging, flooding, isolation between
// broadcast domains, VLAN access/trunk rules, the spoof guard, MAC moves, learn limits, static entries,
// and the counters that account for all of it. Runs against NETPLANE_BUILD (debug or release).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, Dataplane, NetplaneError, type PortSpec } from '../src/dataplane.js';
import { ethernet, ipv4, udp, arp, dissect } from '../src/frames.js';

const BC = 'ff:ff:ff:ff:ff:ff';
const mac = (n: number) => `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`;

function frame(src: string, dst: string, vlan?: number | { vid: number; pcp?: number }): Uint8Array {
  return ethernet({ dst, src, vlan, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1000, dstPort: 2000, payload: new Uint8Array([1, 2, 3, 4]) }) }) });
}

// A switch whose every output is recorded as [port, frame copy].
function rig(specs: PortSpec[], opts: ConstructorParameters<typeof Switch>[0] = {}) {
  const sw = new Switch({ maxPorts: 16, macEntries: 64, ...opts });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  const ports = specs.map((s) => sw.addPort(s));
  const send = (port: number, f: Uint8Array, now = 1000) => {
    out.length = 0;
    sw.inject([[port, f]], now);
    return out.map(([p]) => p).sort((a, b) => a - b);
  };
  return { sw, out, ports, send };
}

test('unknown unicast and broadcast flood to every other port of the network; known unicast goes to one port', () => {
  const { sw, send } = rig([{}, {}, {}, {}]);
  assert.equal(send(0, frame(mac(1), BC)), [1, 2, 3]);
  assert.equal(send(1, frame(mac(2), mac(9))), [0, 2, 3], 'unknown unicast floods');
  assert.equal(send(1, frame(mac(2), mac(1))), [0], 'mac(1) was learned on port 0');
  assert.equal(send(0, frame(mac(1), mac(2))), [1], 'mac(2) was learned on port 1');
  const st = sw.counters().stats;
  assert.is(st.flooded, 2);
  assert.is(st.mac_learned, 2);
  assert.is(st.rx_packets, 4);
  assert.is(st.tx_packets, 3 + 3 + 1 + 1);
});

test('frames a handler sends during delivery that fill the batch again are processed, not written past it', () => {
  // Each frame port 1 gets makes it answer with two: the 8 frames of a full batch come back as 16,
  // queued at the end of the flush that delivered them, which fill the batch of 8 twice over.
  const sw = new Switch({ maxPorts: 4, batch: 8 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  let at0 = 0, at1 = 0;
  const frame = (src: string) => ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src, ethertype: 0x88b5, payload: new Uint8Array(46) });
  sw.port(0).onFrame(() => { at0++; });
  sw.port(1).onFrame(() => { at1++; sw.send(1, frame('02:00:00:00:00:02')); sw.send(1, frame('02:00:00:00:00:02')); });
  for (let i = 0; i < 9; i++) sw.send(0, frame('02:00:00:00:00:01'));   // the ninth flushes the first eight
  sw.flush();
  sw.flush();
  assert.is(at1, 9, 'port 1 got all nine');
  assert.is(at0, 18, 'and port 0 all eighteen answers');
});

test('frames are delivered byte for byte unchanged between access ports', () => {
  const { out, send } = rig([{}, {}]);
  const f = frame(mac(1), BC);
  send(0, f);
  assert.is(out.length, 1);
  assert.equal(out[0][1], f);
});

test('the MAC table shows what was learned, with network, VLAN and port', () => {
  const { sw, send } = rig([{ network: 3 }, { network: 3 }, { network: 3, vlan: 7 }]);
  send(0, frame(mac(1), BC), 5000);
  send(2, frame(mac(3), BC), 5001);
  const t = sw.macTable();
  assert.equal(t.map(({ mac, network, vlan, port, static: s }) => ({ mac, network, vlan, port, s })), [
    { mac: mac(1), network: 3, vlan: 0, port: 0, s: false },
    { mac: mac(3), network: 3, vlan: 7, port: 2, s: false },
  ]);
  assert.is(t[0].lastSeen, 5000);
});

test('a frame is never sent back out of its ingress port (same_port drop)', () => {
  const { sw, send } = rig([{}, {}]);
  send(0, frame(mac(1), BC));
  send(0, frame(mac(2), BC));
  assert.equal(send(0, frame(mac(2), mac(1))), [], 'both MACs live behind port 0');
  assert.is(sw.counters().drops.same_port, 1);
  assert.is(sw.portCounters(0).drops.same_port, 1);
});

test('networks are isolated: no flood, no unicast across them', () => {
  const { sw, send } = rig([{ network: 1 }, { network: 1 }, { network: 2 }, { network: 2 }]);
  assert.equal(send(0, frame(mac(1), BC)), [1]);
  assert.equal(send(2, frame(mac(3), BC)), [3]);
  // mac(1) is known in network 1 only: from network 2 it is unknown unicast, flooded inside network 2.
  assert.equal(send(2, frame(mac(3), mac(1))), [3]);
  // The same MAC may exist in two networks at once without moving.
  send(3, frame(mac(1), BC));
  assert.is(sw.counters().stats.mac_moves, 0);
  assert.is(sw.macTable().filter((e) => e.mac === mac(1)).length, 2);
});

test('a broadcast in a network with only the ingress port is no_destination', () => {
  const { sw, send } = rig([{ network: 1 }, { network: 2 }]);
  assert.equal(send(0, frame(mac(1), BC)), []);
  assert.is(sw.counters().drops.no_destination, 1);
});

test('learned MACs age out after the aging time; static entries do not', () => {
  const { sw, send } = rig([{}, {}, {}], { macAgingMs: 10_000 });
  send(0, frame(mac(1), BC), 1000);
  sw.addStaticMac({ mac: mac(5), port: 2 });
  assert.equal(send(1, frame(mac(2), mac(1)), 10_999), [0], 'still fresh at 9.999 s');
  assert.equal(send(1, frame(mac(2), mac(5)), 20_000), [2]);
  // 12 s after mac(1) was last seen: aged, so the lookup misses and the frame floods.
  assert.equal(send(2, frame(mac(5), mac(1)), 13_001), [0, 1]);
  sw.ageMacs(40_000);
  const left = sw.macTable().map((e) => e.mac);
  assert.ok(left.includes(mac(5)), 'the static entry stays');
  assert.not.ok(left.includes(mac(1)));
  assert.ok(sw.counters().stats.mac_aged >= 1);
});

test('the aging sweep runs by itself as batches flow', () => {
  const { sw, send } = rig([{}, {}], { macEntries: 16, macAgingMs: 1000 });
  for (let i = 1; i <= 8; i++) send(0, frame(mac(i), BC), 0);
  assert.is(sw.macTable().length, 8);
  // The table has 32 slots and each batch sweeps 64: one batch well after aging clears it.
  send(1, frame(mac(100), BC), 5000);
  assert.equal(sw.macTable().map((e) => e.mac), [mac(100)]);
  assert.is(sw.counters().stats.mac_aged, 8);
  assert.is(sw.portCounters(0).rxPackets, 8);
});

test('a MAC seen on another port moves, and is counted', () => {
  const { sw, send } = rig([{}, {}, {}]);
  send(0, frame(mac(1), BC));
  send(1, frame(mac(1), BC));
  assert.is(sw.counters().stats.mac_moves, 1);
  assert.equal(sw.macTable().map((e) => e.port), [1]);
  assert.equal(send(2, frame(mac(3), mac(1))), [1]);
});

test('learn limit: new MACs beyond it are dropped (port security), known ones still pass', () => {
  const { sw, send } = rig([{ learnLimit: 2 }, {}]);
  assert.equal(send(0, frame(mac(1), BC)), [1]);
  assert.equal(send(0, frame(mac(2), BC)), [1]);
  assert.equal(send(0, frame(mac(3), BC)), []);
  assert.equal(send(0, frame(mac(1), BC)), [1]);
  assert.is(sw.portCounters(0).drops.learn_limit, 1);
  assert.is(sw.macTable().length, 2);
  // When a learned MAC ages out, the port has room again.
  sw.setMacAging(1000);
  sw.ageMacs(10_000);
  assert.equal(send(0, frame(mac(3), BC), 10_000), [1]);
});

test('spoof guard: only the endpoint MAC may send on its port', () => {
  const { sw, send } = rig([{ mac: mac(1) }, {}]);
  assert.equal(send(0, frame(mac(1), BC)), [1]);
  assert.equal(send(0, frame(mac(2), BC)), []);
  assert.is(sw.portCounters(0).drops.mac_spoof, 1);
  assert.not.ok(sw.macTable().some((e) => e.mac === mac(2)), 'the spoofed MAC is not learned');
});

test('a multicast source MAC is always dropped', () => {
  const { sw, send } = rig([{}, {}]);
  assert.equal(send(0, frame('01:00:5e:00:00:01', BC)), []);
  assert.is(sw.counters().drops.src_mac_multicast, 1);
});

// The IEEE 802.1D/802.1Q link-local group addresses, 01:80:c2:00:00:0X.
const LL = (b: number) => `01:80:c2:00:00:${b.toString(16).padStart(2, '0')}`;
const ZERO = '00:00:00:00:00:00';
// Slow protocols (LACP), EAPOL and LLDP EtherTypes, so the frames look like what really goes there.
const llFrame = (src: string, b: number) => ethernet({ dst: LL(b), src, ethertype: b === 2 ? 0x8809 : b === 3 ? 0x888e : b === 0xe ? 0x88cc : 0x88b5, payload: new Uint8Array(46) });

test('reserved group addresses 01:80:c2:00:00:01-0f are never forwarded or flooded (l2_reserved_group)', () => {
  const { sw, send } = rig([{}, {}, {}, { mode: 'trunk', allowedVlans: [5] }]);
  for (let b = 1; b <= 0xf; b++) {
    assert.equal(send(0, llFrame(mac(1), b)), [], LL(b));
    assert.equal(send(3, ethernet({ dst: LL(b), src: mac(3), vlan: 5, ethertype: 0x88b5, payload: new Uint8Array(46) })), [], `${LL(b)} tagged`);
  }
  assert.is(sw.counters().drops.l2_reserved_group, 30);
  assert.is(sw.portCounters(0).drops.l2_reserved_group, 15);
  assert.is(sw.counters().stats.flooded, 0);
  assert.is(sw.counters().stats.tx_packets, 0);
  // Linux learns the source of a link-local frame it does not forward (no_linklocal_learn off).
  assert.ok(sw.macTable().some((e) => e.mac === mac(1) && e.port === 0));
  const t = sw.trace(0, llFrame(mac(1), 0xe));
  assert.is(t.dropped, 'l2_reserved_group', 'the trace names the reason');
  assert.equal(t.output, []);
});

test('01:80:c2:00:00:00 (STP, no STP running), 01:80:c2:00:00:10 and the GARP/MRP range 20-2f flood as on a Linux bridge', () => {
  const { sw, send } = rig([{}, {}, {}]);
  for (const b of [0x00, 0x10, 0x20, 0x21, 0x2f]) assert.equal(send(0, llFrame(mac(1), b)), [1, 2], LL(b));
  assert.is(sw.counters().drops.l2_reserved_group ?? 0, 0);
});

test('group_fwd_mask: a network can relay LLDP or EAPOL, never STP/PAUSE/LACP bits; per network', () => {
  const { sw, send } = rig([{}, {}, { network: 1 }, { network: 1 }]);
  assert.is(sw.groupFwdMask(1), 0, 'Linux default');
  sw.setGroupFwdMask(1, 1 << 0xe);
  assert.is(sw.groupFwdMask(1), 0x4000);
  assert.equal(send(2, llFrame(mac(2), 0xe)), [3], 'LLDP relayed in network 1');
  assert.equal(send(0, llFrame(mac(1), 0xe)), [], 'network 0 keeps the default');
  assert.equal(send(2, llFrame(mac(2), 3)), [], 'EAPOL not in the mask');
  sw.setGroupFwdMask(1, (1 << 0xe) | (1 << 3) | 0xfff8);
  assert.equal(send(2, llFrame(mac(2), 3)), [3], 'EAPOL relayed (802.1X passthrough, bit 3 is allowed in Linux)');
  for (const b of [1, 2]) assert.equal(send(2, llFrame(mac(2), b)), [], `${LL(b)} never relayed`);
  assert.equal(send(2, llFrame(mac(2), 0)), [3], 'STP address floods regardless');
  for (const m of [1, 2, 4, 0x4002, 0x10000, -1, 1.5]) {
    assert.throws(() => sw.setGroupFwdMask(1, m), (e: unknown) => e instanceof NetplaneError && e.field === 'groupFwdMask', `mask ${m}`);
  }
  assert.throws(() => sw.setGroupFwdMask(70000, 8), /network/);
  assert.is(sw.groupFwdMask(1), 0xfff8, 'refused masks changed nothing');
  const x = sw.dp.exports;
  assert.is(x.network_set_group_fwd_mask(1, 4), -3);
  assert.is(x.network_set_group_fwd_mask(1, 0x10000), -3);
  assert.is(x.network_set_group_fwd_mask(0x10000, 8), -6);
  assert.is(x.network_group_fwd_mask(1), 0xfff8);
  assert.is(x.network_group_fwd_mask(0x10000), 0);
  sw.setGroupFwdMask(1, 0);
  assert.equal(send(2, llFrame(mac(2), 0xe)), []);
});

test('a frame from 00:00:00:00:00:00 is dropped (l2_zero_source) and never learned', () => {
  const { sw, send } = rig([{}, {}, {}]);
  assert.equal(send(0, frame(ZERO, BC)), []);
  assert.equal(send(0, frame(ZERO, mac(2))), []);
  assert.is(sw.trace(0, frame(ZERO, BC)).dropped, 'l2_zero_source');
  assert.is(sw.counters().drops.l2_zero_source, 2);
  assert.is(sw.portCounters(0).drops.l2_zero_source, 2);
  assert.not.ok(sw.macTable().some((e) => e.mac === ZERO), 'the zero MAC is not learned');
  // Unicast to the zero MAC is unknown unicast: flooded, not sent to port 0 alone.
  assert.equal(send(1, frame(mac(2), ZERO)), [0, 2]);
  assert.throws(() => sw.addStaticMac({ mac: ZERO, port: 1 }), /mac: 00:00:00:00:00:00 is not a station/);
  assert.is(sw.dp.exports.mac_add_static(0, 0, 0, 0, 1, 1000), -9);
  assert.is(sw.macTable().length, 1);
});

test('static MAC entries forward and refuse to move', () => {
  const { sw, send } = rig([{}, {}, {}]);
  sw.addStaticMac({ mac: mac(7), port: 2 });
  assert.equal(send(0, frame(mac(1), mac(7))), [2]);
  assert.equal(send(1, frame(mac(7), BC)), [], 'mac(7) is static on port 2');
  assert.is(sw.counters().drops.static_mac_conflict, 1);
  assert.equal(send(2, frame(mac(7), BC)), [0, 1]);
  assert.ok(sw.removeMac({ mac: mac(7) }));
  assert.not.ok(sw.removeMac({ mac: mac(7) }));
  assert.throws(() => sw.addStaticMac({ mac: BC, port: 1 }), /group address/);
  assert.throws(() => sw.addStaticMac({ mac: mac(8), port: 9 }), /no port 9/);
});

test('VLAN access ports: only their own VLAN, untagged on the wire', () => {
  const { sw, send } = rig([{ vlan: 10 }, { vlan: 10 }, { vlan: 20 }, {}]);
  assert.equal(send(0, frame(mac(1), BC)), [1]);
  assert.equal(send(3, frame(mac(4), BC)), [], 'VLAN 0 has no other member');
  assert.equal(send(0, frame(mac(1), BC, 10)), [], 'tagged frames are refused on access ports');
  assert.is(sw.counters().drops.vlan_tagged_on_access, 1);
  // A priority tag (VID 0) is untagged traffic with a priority: accepted, and it leaves untagged.
  const { out } = { out: [] as Uint8Array[] };
  sw.onFrame((f) => out.push(f.slice()));
  sw.inject([[0, frame(mac(1), BC, { vid: 0, pcp: 5 })]]);
  assert.is(out.length, 1);
  assert.equal(out[0], frame(mac(1), BC));
});

test('VLAN trunk: tags pushed towards the trunk, popped towards access ports, native VLAN untagged', () => {
  const { out, send, sw } = rig([
    { vlan: 10 },
    { vlan: 20 },
    { mode: 'trunk', allowedVlans: [10, 20] },
    { mode: 'trunk', vlan: 10, allowedVlans: [20] },
    {},
  ]);
  // From an access port in VLAN 10: the trunk gets it tagged 10, the trunk whose native VLAN is 10
  // gets it untagged; VLAN 20 and VLAN 0 ports get nothing.
  assert.equal(send(0, frame(mac(1), BC)), [2, 3]);
  const to2 = out.find(([p]) => p === 2)![1];
  const to3 = out.find(([p]) => p === 3)![1];
  assert.equal(to2, frame(mac(1), BC, 10));
  assert.equal(to3, frame(mac(1), BC));
  // From trunk 2 tagged 20: to the VLAN 20 access port untagged, to trunk 3 tagged (20 is not its native).
  assert.equal(send(2, frame(mac(2), BC, { vid: 20, pcp: 3 })), [1, 3]);
  assert.equal(out.find(([p]) => p === 1)![1], frame(mac(2), BC));
  assert.equal(out.find(([p]) => p === 3)![1], frame(mac(2), BC, { vid: 20, pcp: 3 }), 'the priority bits are kept');
  // Untagged on trunk 2 is its native VLAN 0: only the VLAN 0 access port is in that domain.
  assert.equal(send(2, frame(mac(3), BC)), [4]);
  // Untagged on trunk 3 is VLAN 10; on trunk 2 it leaves tagged 10.
  assert.equal(send(3, frame(mac(4), BC)), [0, 2]);
  assert.equal(out.find(([p]) => p === 2)![1], frame(mac(4), BC, 10));
  // A VLAN the trunk does not carry is dropped.
  assert.equal(send(2, frame(mac(5), BC, 30)), []);
  assert.is(sw.counters().drops.vlan_not_allowed, 1);
  // Learning is per VLAN: mac(1) in VLAN 10 is known; a unicast to it in VLAN 10 goes to port 0 only.
  assert.equal(send(2, frame(mac(6), mac(1), 10)), [0]);
  assert.equal(out[0][1], frame(mac(6), mac(1)));
});

test('a trunk can drop untagged frames', () => {
  const { sw, send } = rig([{ mode: 'trunk', allowedVlans: [5], dropUntagged: true }, { vlan: 5 }]);
  assert.equal(send(0, frame(mac(1), BC)), []);
  assert.is(sw.counters().drops.vlan_untagged_on_trunk, 1);
  assert.equal(send(0, frame(mac(1), BC, 5)), [1]);
});

test('a port that is down neither receives nor sends; removing a port forgets its MACs', () => {
  const { sw, send } = rig([{}, {}, {}]);
  send(1, frame(mac(2), BC));
  sw.setPortUp(1, false);
  assert.equal(send(1, frame(mac(2), BC)), []);
  assert.is(sw.portCounters(1).drops.port_down, 1);
  assert.equal(send(0, frame(mac(1), BC)), [2], 'not flooded to the down port');
  assert.equal(send(0, frame(mac(1), mac(2))), [2], 'the learned port is down: flooded to the others');
  sw.setPortUp(1, true);
  sw.removePort(1);
  assert.not.ok(sw.macTable().some((e) => e.port === 1));
  assert.equal(send(0, frame(mac(1), BC)), [2]);
  const x = sw.dp.exports;
  sw.dp.views();
  sw.dp.rxDescriptors.setUint32(0, 0, true);
  sw.dp.rxDescriptors.setUint16(4, 60, true);
  sw.dp.rxDescriptors.setUint16(6, 1, true);
  assert.is(x.process(1, 2000), 0);
  assert.is(sw.counters().drops.port_invalid, 1);
});

test('per-port counters add up to the switch-wide ones', () => {
  const { sw, send } = rig([{ mac: mac(1) }, {}, { vlan: 3 }]);
  send(0, frame(mac(1), BC));
  send(0, frame(mac(9), BC));
  send(1, frame(mac(2), mac(1)));
  send(2, frame(mac(3), BC));
  send(1, new Uint8Array(10));
  const all = sw.counters();
  const ports = [0, 1, 2].map((p) => sw.portCounters(p));
  const sum = (k: 'rxPackets' | 'txPackets' | 'dropped' | 'rxBytes' | 'txBytes') => ports.reduce((a, p) => a + p[k], 0);
  assert.is(sum('rxPackets'), all.stats.rx_packets);
  assert.is(sum('txPackets'), all.stats.tx_packets);
  assert.is(sum('rxBytes'), all.stats.rx_bytes);
  assert.is(sum('txBytes'), all.stats.tx_bytes);
  assert.is(sum('dropped'), all.stats.dropped);
  assert.equal(all.drops, { eth_truncated: 1, mac_spoof: 1, no_destination: 1 });
  assert.is(ports[0].rxPackets, 2);
  assert.is(ports[0].txPackets, 1);
});

test('a full MAC table still forwards, learns nothing new, and counts it', () => {
  const { sw, send } = rig([{}, {}], { macEntries: 4 });
  for (let i = 1; i <= 6; i++) send(0, frame(mac(i), BC));
  assert.is(sw.macTable().length, 4);
  assert.is(sw.counters().stats.mac_table_full, 2);
  assert.equal(send(1, frame(mac(20), mac(6))), [0], 'unknown, flooded');
});

test('many frames in one flush: a batch boundary does not change the result', () => {
  const { sw, out } = rig([{}, {}, {}], { batch: 8 });
  for (let i = 0; i < 100; i++) sw.send(i % 3, frame(mac(i % 3 + 1), mac(((i + 1) % 3) + 1)));
  sw.flush(1000);
  assert.is(sw.counters().stats.rx_packets, 100);
  assert.is(sw.counters().stats.batches >= 13, true);
  // After the first round every destination is known: exactly one copy per frame from then on.
  assert.ok(out.length >= 100 && out.length <= 100 + 2 * 3);
});

test('receive() queues frames per port when no handler is set, bounded by queueLimit', () => {
  const sw = new Switch({ maxPorts: 4 });
  const a = sw.addPort();
  const b = sw.addPort({ queueLimit: 3 });
  for (let i = 0; i < 5; i++) a.send(frame(mac(1), BC));
  sw.flush(1);
  const got = b.receive();
  assert.is(got.length, 3);
  assert.is(b.counters().hostQueueDrops, 2);
  assert.equal(dissect(got[0]).src, mac(1));
  assert.is(b.receive().length, 0);
});

test('two switches in one process share nothing', () => {
  const s1 = new Switch({ maxPorts: 4 });
  const s2 = new Switch({ maxPorts: 4 });
  s1.addPort(); s1.addPort(); s2.addPort(); s2.addPort();
  s1.inject([[0, frame(mac(1), BC)]], 1);
  assert.is(s1.macTable().length, 1);
  assert.is(s2.macTable().length, 0);
  assert.is(s2.counters().stats.rx_packets, 0);
});

test('invalid configuration is refused with the field named, and changes nothing', () => {
  const sw = new Switch({ maxPorts: 4 });
  const p = sw.addPort({ vlan: 5 });
  assert.throws(() => sw.addPort({ vlan: 4095 }), (e: unknown) => e instanceof NetplaneError && e.field === 'vlan');
  assert.throws(() => sw.addPort({ id: 4 }), /id: must be an integer from 0 to 3/);
  assert.throws(() => sw.addPort({ id: 0 }), /port 0 already exists/);
  assert.throws(() => sw.addPort({ mode: 'hybrid' as never }), /mode/);
  assert.throws(() => sw.addPort({ allowedVlans: [3] }), /allowedVlans: only a trunk/);
  assert.throws(() => sw.addPort({ mode: 'trunk', allowedVlans: [1, 5000] }), /allowedVlans\[1\]/);
  assert.throws(() => sw.addPort({ mac: 'zz:00:00:00:00:01' }), /^NetplaneError: mac|mac:/);
  assert.throws(() => sw.modifyPort(0, { network: 70000 }), /network/);
  assert.is(p.spec.vlan, 5);
  assert.is(sw.ports.size, 1);
  assert.throws(() => new Switch({ maxPorts: 0 }), /maxPorts/);
  assert.throws(() => sw.setMacAging(0), /macAgingMs/);
});

test('the raw dataplane rejects bad arguments without changing anything', () => {
  const dp = new Dataplane({ maxPorts: 4 });
  const x = dp.exports;
  assert.is(x.create(4, 4, 4, 4096), -1);
  assert.is(x.port_configure(4, 0, 0, 0, 0, 0xffffffff), -4);
  assert.is(x.port_configure(0, 0, 2, 0, 0, 0xffffffff), -3);
  assert.is(x.port_configure(0, 0, 0, 4095, 0, 0xffffffff), -5);
  assert.is(x.port_configure(0, 0, 0, 0, 8, 0xffffffff), -3);
  assert.is(x.port_allow_vlan(0, 5, 1), -4, 'port 0 was never configured');
  assert.is(x.mac_set_aging(0), -3);
  assert.is(x.mac_aging(), 300000);
  assert.is(x.process(0, NaN), 0);
  assert.is(x.process(1_000_000, -1), 0, 'a count above the batch is capped, and an empty rx descriptor is a drop, not a trap');
});

test('ARP between two hosts goes through unchanged', () => {
  const { out, send } = rig([{}, {}]);
  const req = ethernet({ dst: BC, src: mac(1), payload: arp({ op: 'request', senderMac: mac(1), senderIp: '10.0.0.1', targetIp: '10.0.0.2' }) });
  assert.equal(send(0, req), [1]);
  assert.equal(out[0][1], req);
  assert.is(dissect(out[0][1]).arp!.op, 1);
});

test('a handler that sends into the switch while a batch is delivered never overwrites what is being delivered', () => {
  // A batch of 4: the handler of port 1 answers every frame it gets with 3 frames into network 2,
  // which fill the rx batch during the delivery. Those must wait until the delivery is over (not
  // flush in the middle, when the tx descriptors and frames being handed out would be overwritten).
  const sw = new Switch({ maxPorts: 8, batch: 4 });
  const a = sw.addPort({ network: 1 }), b = sw.addPort({ network: 1 });
  const c = sw.addPort({ network: 2 }), d = sw.addPort({ network: 2 });
  const frame = (src: number, id: number) => ethernet({ dst: '02:00:00:00:00:99', src: `02:00:00:00:00:${src.toString(16).padStart(2, '0')}`,
    payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: id, dstPort: 9 }) }) });
  const atB: number[] = [], atD: number[] = [];
  b.onFrame((f) => {
    const id = dissect(f).udp!.srcPort;
    atB.push(id);
    for (let k = 0; k < 3; k++) c.send(frame(0x10, 1000 + id * 10 + k));
  });
  d.onFrame((f) => atD.push(dissect(f).udp!.srcPort));
  for (let id = 1; id <= 4; id++) a.send(frame(0x01, id));
  sw.flush();
  sw.flush();
  assert.equal(atB, [1, 2, 3, 4], 'every frame of the batch delivered, each once, in order');
  assert.equal(atD, [1, 2, 3, 4].flatMap((id) => [0, 1, 2].map((k) => 1000 + id * 10 + k)), 'the answers went in after, all of them, in order');
});

test('a port\'s batch handler gets the delivery\'s frames for it in one call, in order, as (address, length) pairs; frame handlers of other ports unchanged; a throwing handler loses nothing later', () => {
  const sw = new Switch({ maxPorts: 8, macEntries: 64 });
  const a = sw.addPort(), b = sw.addPort(), c = sw.addPort();
  const calls: Uint8Array[][] = [];
  b.onBatch((mem, frames, n, port) => {
    assert.is(port, b.id);
    const got: Uint8Array[] = [];
    for (let i = 0; i < n; i++) got.push(mem.slice(frames[2 * i], frames[2 * i] + frames[2 * i + 1]));
    calls.push(got);
  });
  const atC: Uint8Array[] = [];
  c.onFrame((f) => atC.push(f.slice()));
  const fs = [1, 2, 3, 4, 5].map((k) => ethernet({ dst: BC, src: mac(1), payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1000 + k, dstPort: 2000, payload: new Uint8Array(k * 100).fill(k) }) }) }));
  sw.inject(fs.map((f) => [a.id, f] as [number, Uint8Array]), 1000);
  assert.is(calls.length, 1, 'one call for the delivery');
  assert.is(calls[0].length, 5);
  calls[0].forEach((f, i) => assert.equal([...f], [...fs[i]], `frame ${i} byte for byte, in order`));
  assert.is(atC.length, 5, 'a port with a frame handler still gets each frame');
  // Watched (an any-port handler): each frame still reaches the batch handler, one per call.
  const seen: number[] = [];
  sw.onFrame((_f, p) => seen.push(p));
  calls.length = 0;
  sw.inject(fs.slice(0, 3).map((f) => [a.id, f] as [number, Uint8Array]), 1000);
  sw.onFrame(undefined);
  assert.equal(calls.map((x) => x.length), [1, 1, 1]);
  calls.flat().forEach((f, i) => assert.equal([...f], [...fs[i]]));
  assert.is(seen.filter((p) => p === b.id).length, 3);
  // A handler that throws: the error surfaces, and the next delivery is whole.
  let boom = true;
  b.onBatch((mem, frames, n) => { if (boom) { boom = false; throw new Error('boom'); } const got: Uint8Array[] = []; for (let i = 0; i < n; i++) got.push(mem.slice(frames[2 * i], frames[2 * i] + frames[2 * i + 1])); calls.push(got); });
  calls.length = 0;
  assert.throws(() => sw.inject(fs.map((f) => [a.id, f] as [number, Uint8Array]), 1000), /boom/);
  sw.inject(fs.slice(0, 2).map((f) => [a.id, f] as [number, Uint8Array]), 1000);
  assert.is(calls.length, 1);
  assert.is(calls[0].length, 2, 'nothing left over from the delivery that threw');
  // Without a batch handler the port's frames go to its queue again.
  b.onBatch(undefined);
  sw.inject([[a.id, fs[0]]], 1000);
  assert.is(b.receive().length, 1);
});

test.run();
