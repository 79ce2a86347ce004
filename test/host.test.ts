// The model driving a real switch: a NAT network from HCN objects carries traffic (gateway, masquerade
// through the uplink, a port mapping in), a change applies as a diff without disturbing established
// connections, a refused change leaves everything as it was, a restart from the state directory
// restores the same behaviour, and an endpoint keeps its switch port (and so its transport) and its
// network keeps its gateway's MAC across every change that does not delete them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, ModelError } from '../src/index.js';
import type { SwitchOptions } from '../src/dataplane.js';
import { ethernet, ipv4, icmp, tcp, udp, arp, dissect, verifyChecksums } from '../src/frames.js';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { dhcpFrame, parseReply, ipOpt, u32Opt, DISCOVER, OFFER, REQUEST, ACK, NAK, RELEASE } from './dhcp-client.js';

const R = '02:00:00:00:00:fe';
const NAT = {
  ID: 'nat', Type: 'NAT',
  Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }] }] }],
};

function boot(stateDir?: string, options: SwitchOptions = {}) {
  let now = 1000;
  const host = new Host({ stateDir, config: { uplink: { address: '192.168.1.1/24', gateway: '192.168.1.254' } }, switch: { maxPorts: 16, clock: () => now, ...options } });
  const uplink = host.addUplinkPort();
  const out: Array<[number, Uint8Array]> = [];
  host.sw.onFrame((f, p) => out.push([p, f.slice()]));
  const send = (port: number, f: Uint8Array) => {
    out.length = 0;
    host.sw.inject([[port, f]], ++now);
    return out.slice();
  };
  // The outside router answers ARP for itself so the gateway can reach it.
  host.sw.router.setNeighbor({ address: '192.168.1.254', mac: R, interface: 0 });
  return { host, uplink, send };
}

function gwMac(host: Host) {
  return [...host.sw.router.interfaces.values()].find((f) => f.address?.startsWith('172.20.0.1'))!.mac;
}

test('a NAT network and an endpoint from HCN objects: ping the gateway, masquerade out, port mapping in', () => {
  const { host, uplink, send } = boot();
  host.store.create('network', NAT);
  const ep = host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] });
  const port = host.portOf('web')!;
  const ip = ep.IpConfigurations[0].IpAddress, mac = ep.MacAddress;
  assert.is(ip, '172.20.0.2');
  const gw = gwMac(host);
  const ping = send(port, ethernet({ src: mac, dst: gw, payload: ipv4({ src: ip, dst: '172.20.0.1', payload: icmp({ type: 8, id: 1 }) }) }));
  assert.is(ping.length, 1);
  assert.is(dissect(ping[0][1]).icmp!.type, 0);
  const o = send(port, ethernet({ src: mac, dst: gw, payload: ipv4({ src: ip, dst: '8.8.8.8', payload: udp({ srcPort: 5353, dstPort: 53 }) }) }));
  assert.equal(o.map(([p]) => p), [uplink]);
  assert.is(dissect(o[0][1]).ipv4!.src, '192.168.1.1');
  assert.ok(verifyChecksums(o[0][1]));
  const uplinkMac = host.sw.router.interfaces.get(0)!.mac;
  const i = send(uplink, ethernet({ src: R, dst: uplinkMac, payload: ipv4({ src: '203.0.113.9', dst: '192.168.1.1', payload: tcp({ srcPort: 4000, dstPort: 8080, flags: 'S' }) }) }));
  assert.equal(i.map(([p]) => p), [port]);
  assert.equal([dissect(i[0][1]).ipv4!.dst, dissect(i[0][1]).tcp!.dstPort], [ip, 80]);
});

test('a change applies as a diff: an established connection of another endpoint is not disturbed', () => {
  const { host, uplink, send } = boot();
  host.store.create('network', NAT);
  const a = host.store.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  const gw = gwMac(host);
  const syn = ethernet({ src: a.MacAddress, dst: gw, payload: ipv4({ src: a.IpConfigurations[0].IpAddress, dst: '93.184.216.34', payload: tcp({ srcPort: 40000, dstPort: 443, flags: 'S' }) }) });
  send(host.portOf('a')!, syn);
  assert.is(host.sw.router.connections().length, 1);
  host.store.create('endpoint', { ID: 'b', HostComputeNetwork: 'nat' });
  host.store.modify('endpoint', 'b', { ID: 'b', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 17, InternalPort: 53, ExternalPort: 53 } }] });
  const c = host.sw.router.connections();
  assert.is(c.length, 1, 'the connection of a is still there');
  assert.is(c[0].state, 'SYN_SENT');
  const uplinkMac = host.sw.router.interfaces.get(0)!.mac;
  const back = send(uplink, ethernet({ src: R, dst: uplinkMac, payload: ipv4({ src: '93.184.216.34', dst: '192.168.1.1', payload: tcp({ srcPort: 443, dstPort: 40000, flags: 'SA' }) }) }));
  assert.equal(back.map(([p]) => p), [host.portOf('a')], 'and it still works');
});

test('a refused change leaves the model and the dataplane as they were', () => {
  const { host } = boot();
  host.store.create('network', NAT);
  host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] });
  const ports = host.sw.ports.size;
  assert.throws(() => host.store.create('endpoint', { ID: 'web2', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] }),
    (e: unknown) => e instanceof ModelError && e.code === 'Conflict' && /endpoint web/.test(e.message));
  assert.is(host.sw.ports.size, ports);
  assert.equal(host.store.list('endpoint').map((e) => e.ID), ['web']);
});

test('restart: the state directory restores every object and the same behaviour', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-host-'));
  const first = boot(dir);
  first.host.store.create('network', NAT);
  const ep = first.host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] });
  const again = boot(dir);
  assert.equal(again.host.store.snapshot(), first.host.store.snapshot());
  const uplinkMac = again.host.sw.router.interfaces.get(0)!.mac;
  const i = again.send(again.uplink, ethernet({ src: R, dst: uplinkMac, payload: ipv4({ src: '203.0.113.9', dst: '192.168.1.1', payload: tcp({ srcPort: 4000, dstPort: 8080, flags: 'S' }) }) }));
  assert.equal(i.map(([p]) => p), [again.host.portOf('web')]);
  assert.is(dissect(i[0][1]).ipv4!.dst, ep.IpConfigurations[0].IpAddress);
});

test('endpoint ACL policies and explicit defaults from the model reach the dataplane', () => {
  const { host, send } = boot();
  host.store.create('network', NAT);
  const a = host.store.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  const b = host.store.create('endpoint', { ID: 'b', HostComputeNetwork: 'nat', AclDefaults: { In: 'Block' },
    Policies: [{ Type: 'ACL', Settings: { Id: 'dns', Action: 'Allow', Direction: 'In', Priority: 100, Protocols: '17', LocalPorts: '53' } }] });
  const to = (port: number) => ethernet({ src: a.MacAddress, dst: b.MacAddress, payload: ipv4({ src: a.IpConfigurations[0].IpAddress, dst: b.IpConfigurations[0].IpAddress, payload: udp({ srcPort: 999, dstPort: port }) }) });
  send(host.portOf('b')!, ethernet({ src: b.MacAddress, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '172.20.0.3', dst: '172.20.0.255', payload: udp({ srcPort: 1, dstPort: 1 }) }) }));
  assert.equal(send(host.portOf('a')!, to(53)).map(([p]) => p), [host.portOf('b')]);
  assert.equal(send(host.portOf('a')!, to(54)), [], 'the explicit default blocks what no rule allows');
  assert.is(host.sw.acls.hits(host.portOf('b'))['dns'], 1);
});

test('a network\'s TcpTracking reaches its gateway (routed connections) and its endpoints\' ACL zones', () => {
  const { host, uplink, send } = boot();
  host.store.create('network', NAT);
  const ep = host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', AclDefaults: { In: 'Block' } });
  const port = host.portOf('web')!, ip = ep.IpConfigurations[0].IpAddress;
  const mid = (sport: number) => ethernet({ src: ep.MacAddress, dst: gwMac(host), payload: ipv4({ src: ip, dst: '8.8.8.8', payload: tcp({ srcPort: sport, dstPort: 443, flags: 'A', seq: 1, ack: 1 }) }) });
  // By default a routed connection is picked up mid-stream, but the endpoint's ACL zone (it has
  // ACLs: a Block default) refuses to.
  assert.equal(send(port, mid(40000)), []);
  assert.is(host.sw.counters().drops.ct_invalid_new, 1);
  host.store.modify('network', 'nat', { ...NAT, TcpTracking: { Pickup: true, Liberal: true } });
  assert.equal(send(port, mid(40001)).map(([p]) => p), [uplink], 'picked up by both');
  const gw = [...host.sw.router.interfaces.values()].find((f) => f.address?.startsWith('172.20.0.1'))!;
  assert.equal(gw.tcp, { liberal: true, pickup: true });
  host.store.modify('network', 'nat', { ...NAT, TcpTracking: { Pickup: false } });
  assert.equal(send(host.portOf('web')!, mid(40002)), []);
  assert.is(host.sw.counters().drops.ct_invalid_new, 2);
});

test('deleting objects removes what they compiled to', () => {
  const { host } = boot();
  host.store.create('network', NAT);
  host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat' });
  const ports = host.sw.ports.size;
  host.store.delete('endpoint', 'web');
  assert.is(host.sw.ports.size, ports - 1);
  host.store.delete('network', 'nat');
  assert.is(host.sw.router.interfaces.size, 1, 'only the uplink interface is left');
});

const pm = (external: number) => ({ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: external } });
const ALLOW_ALL = [
  { Type: 'NetworkACL', Settings: { Id: 'all-in', Action: 'Allow', Direction: 'In', Priority: 100 } },
  { Type: 'NetworkACL', Settings: { Id: 'all-out', Action: 'Allow', Direction: 'Out', Priority: 100 } },
];

// An endpoint 'a' whose port has a handler, as a transport sets one, and what reaches that handler
// when the endpoint pings its gateway or asks the gateway's MAC.
function attached(options: SwitchOptions = {}) {
  const b = boot(undefined, options);
  const { host, send } = b;
  host.store.create('network', NAT);
  const a = host.store.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  host.store.create('endpoint', { ID: 'b', HostComputeNetwork: 'nat', Policies: [pm(8080)] });
  const id = host.portOf('a')!;
  const port = host.sw.port(id);
  const got: Uint8Array[] = [];
  port.onFrame((f) => got.push(f.slice()));
  const ip = a.IpConfigurations[0].IpAddress, mac = a.MacAddress;
  let seq = 0;
  const pings = () => {
    got.length = 0;
    send(id, ethernet({ src: mac, dst: gwMac(host), payload: ipv4({ src: ip, dst: '172.20.0.1', payload: icmp({ type: 8, id: 7, seq: ++seq }) }) }));
    return got.filter((f) => dissect(f).icmp?.type === 0 && dissect(f).icmp?.seq === seq).length;
  };
  const whoHas = () => {
    got.length = 0;
    send(id, ethernet({ src: mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: mac, senderIp: ip, targetIp: '172.20.0.1' }) }));
    return got.map((f) => dissect(f).arp).find((r) => r?.op === 2)?.senderMac;
  };
  const same = (what: string) => {
    assert.is(host.portOf('a'), id, `${what}: the same port id`);
    assert.ok(host.sw.port(id) === port, `${what}: the same SwitchPort object`);
    assert.is(pings(), 1, `${what}: the ping reply reaches the port's handler`);
    assert.is(port.queue.length, 0, `${what}: nothing piles up in the port's queue`);
  };
  return { ...b, a, id, port, pings, whoHas, same };
}

test('an endpoint keeps its port and its handler across a modify of itself and of its network', () => {
  const { host, a, pings, whoHas, same } = attached();
  assert.is(pings(), 1);
  const gw = gwMac(host);
  assert.is(whoHas(), gw);
  host.store.modify('endpoint', 'a', { ID: 'a', HostComputeNetwork: 'nat', MacAddress: a.MacAddress, IpConfigurations: a.IpConfigurations, Policies: [pm(9090)] });
  same('endpoint modify');
  host.store.modify('network', 'nat', { ...NAT, Policies: ALLOW_ALL });
  same('network modify');
  assert.is(gwMac(host), gw, 'the gateway keeps its MAC');
  assert.is(whoHas(), gw, 'and answers ARP with it, to the same handler');
  assert.ok(host.sw.acls.ruleIds(host.portOf('a')!, 1).includes('all-in'), 'the network ACL is bound to the kept port');
  host.store.modify('network', 'nat', NAT);
  same('network ACL removed');
  assert.equal(host.sw.acls.ruleIds(host.portOf('a')!, 1), []);
});

test('a refused change leaves the port object in place: refused by the store, and by the compiler', () => {
  // Room for two port mappings: b's 8080 and a's 9090, and no third.
  const { host, a, id, port, same } = attached({ portMappings: 2 });
  const ep = (policies: unknown[]) => ({ ID: 'a', HostComputeNetwork: 'nat', MacAddress: a.MacAddress, IpConfigurations: a.IpConfigurations, Policies: policies });
  host.store.modify('endpoint', 'a', ep([pm(9090)]));
  assert.throws(() => host.store.modify('endpoint', 'a', ep([pm(8080)])), (e: unknown) => e instanceof ModelError && e.code === 'Conflict');
  same('refused by the store');
  assert.throws(() => host.store.modify('endpoint', 'a', ep([pm(9090), pm(9091)])), /portMapping/);
  same('refused by the compiler');
  // A refused change of the network too (its gateway made again on a VLAN, then put back).
  const before = host.store.snapshot();
  const gw = gwMac(host);
  const next = structuredClone(before);
  next.networks[0].Ipams![0].Subnets[0].Policies = [{ Type: 'VLAN', Settings: { IsolationId: 5 } }];
  next.endpoints.find((e) => e.ID === 'a')!.Policies = [pm(9090), pm(9091)] as typeof next.endpoints[0]['Policies'];
  assert.throws(() => host.store.replace(next), /portMapping/);
  assert.equal(host.store.snapshot(), before);
  same('a refused network change');
  assert.is(gwMac(host), gw);
  assert.is(host.sw.ports.get(id), port);
});

test('a network modify that changes the gateway keeps its MAC; the port forgets its MACs only when its VLAN changes', () => {
  const { host, a, id, pings, whoHas, same } = attached();
  const gw = gwMac(host);
  const learned = () => host.sw.macTable().some((m) => m.mac === a.MacAddress && m.port === id);
  pings();
  assert.ok(learned());
  host.store.modify('network', 'nat', { ...NAT, Policies: ALLOW_ALL });
  assert.ok(learned(), 'same network and VLAN: the learned MAC stays');
  const vlan = structuredClone(NAT) as typeof NAT & { Ipams: Array<{ Subnets: Array<{ Policies?: unknown[] }> }> };
  vlan.Ipams[0].Subnets[0].Policies = [{ Type: 'VLAN', Settings: { IsolationId: 5 } }];
  host.store.modify('network', 'nat', vlan);
  assert.not.ok(learned(), 'another VLAN: forgotten');
  assert.is(host.sw.port(id).spec.vlan, 5);
  assert.is(gwMac(host), gw, 'the gateway, made again on the VLAN, has the same MAC');
  same('VLAN added');
  assert.is(whoHas(), gw);
});

test('a network\'s MTU reaches its gateway interface, in place on a modify (same interface, same MAC)', () => {
  const { host } = boot();
  host.store.create('network', { ...NAT, MTU: 9000 });
  const gw = () => [...host.sw.router.interfaces.values()].find((f) => f.address?.startsWith('172.20.0.1'))!;
  const before = gw();
  assert.is(before.mtu, 9000);
  host.store.modify('network', 'nat', { ...NAT, MTU: 1400 });
  assert.is(gw().mtu, 1400);
  assert.is(gw().id, before.id);
  assert.is(gw().mac, before.mac);
  host.store.modify('network', 'nat', NAT);
  assert.is(gw().mtu, 1500, 'absent: the default');
});

test('a network keeps its gateway interface when a lower interface id has come free', () => {
  const { host } = boot();
  const other = { ...NAT, ID: 'other', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.21.0.0/24' }] }] };
  host.store.create('network', other);
  host.store.create('network', NAT);
  const gw = gwMac(host), number = host.compiler.networkOf('nat');
  host.store.delete('network', 'other');
  host.store.modify('network', 'nat', { ...NAT, Policies: ALLOW_ALL });
  assert.is(gwMac(host), gw);
  assert.is(host.compiler.networkOf('nat'), number, 'and its network number');
});

test('a deleted endpoint\'s port is removed, and a new endpoint never gets the old port object', () => {
  const { host, id, port } = attached();
  host.store.delete('endpoint', 'a');
  assert.is(host.portOf('a'), undefined);
  assert.not.ok(host.sw.ports.has(id), 'the port is gone');
  host.store.create('endpoint', { ID: 'c', HostComputeNetwork: 'nat' });
  host.store.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  for (const ep of ['a', 'c']) {
    const p = host.sw.port(host.portOf(ep)!);
    assert.ok(p !== port, `${ep} has a port object of its own`);
    assert.is(p.handler, undefined);
  }
});

test('GroupFwdMask: a network forwards the reserved group addresses it names (EAPOL, LLDP), others drop them', () => {
  const { host, send } = boot();
  host.store.create('network', { ...NAT, GroupFwdMask: 0x4008 });   // 01:80:c2:00:00:03 (EAPOL) and 0e (LLDP)
  host.store.create('network', { ...NAT, ID: 'other', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.21.0.0/24' }] }] });
  const a = host.store.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  host.store.create('endpoint', { ID: 'b', HostComputeNetwork: 'nat' });
  const c = host.store.create('endpoint', { ID: 'c', HostComputeNetwork: 'other' });
  host.store.create('endpoint', { ID: 'd', HostComputeNetwork: 'other' });
  const group = (n: number, src: string) => ethernet({ dst: `01:80:c2:00:00:0${n.toString(16)}`, src, ethertype: 0x888e, payload: new Uint8Array(46) });
  const ports = (o: Array<[number, Uint8Array]>) => o.map(([p]) => p);
  assert.equal(ports(send(host.portOf('a')!, group(3, a.MacAddress))), [host.portOf('b')!], 'EAPOL crosses the network that asks');
  assert.equal(ports(send(host.portOf('a')!, group(0xe, a.MacAddress))), [host.portOf('b')!], 'LLDP too');
  assert.equal(ports(send(host.portOf('a')!, group(4, a.MacAddress))), [], 'but not 04');
  assert.equal(ports(send(host.portOf('c')!, group(3, c.MacAddress))), [], 'the other network drops EAPOL');
  assert.is(host.sw.counters().drops.l2_reserved_group, 2);
  // A modify that drops the mask takes it away; deleting the network leaves its number at 0.
  host.store.modify('network', 'nat', { ...NAT });
  assert.equal(ports(send(host.portOf('a')!, group(3, a.MacAddress))), []);
  // The model refuses bits 0-2 naming the field, and nothing changes.
  assert.throws(() => host.store.modify('network', 'nat', { ...NAT, GroupFwdMask: 0x4 }), /GroupFwdMask/);
});

test('SilentGateway: the network\'s gateway sends no RST for an unmapped port; switched off in place, it does (same gateway)', () => {
  const { host, send } = boot();
  host.store.create('network', { ...NAT, SilentGateway: true });
  const ep = host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat' });
  const port = host.portOf('web')!;
  const gw = gwMac(host);
  const syn = ethernet({ src: ep.MacAddress, dst: gw, payload: ipv4({ src: ep.IpConfigurations[0].IpAddress, dst: '172.20.0.1', payload: tcp({ srcPort: 4000, dstPort: 22, flags: 'S' }) }) });
  assert.equal(send(port, syn), []);
  assert.is(host.sw.counters().drops.local_port_unmapped, 1);
  const gwId = host.compiler.gatewayInterfaceOf('nat');
  host.store.modify('network', 'nat', { ...NAT, SilentGateway: false });
  assert.is(host.compiler.gatewayInterfaceOf('nat'), gwId);
  const r = send(host.portOf('web')!, syn);
  assert.is(r.length, 1);
  assert.is(dissect(r[0][1]).tcp!.flagString, 'RA');
});

// ---- DHCP on the model's networks ------------------------------------------------------------------

const T0 = 1_800_000_000_000;   // the DHCP servers' wall clock in these tests
const STRANGER = '02:00:00:00:0c:0c';

// A host whose DHCP clock the test moves, and a way to send a frame and collect what the switch sends
// back (the server's reply goes in through the pump, so after the current turn).
function dhcpHost(stateDir?: string, wall = { now: T0 }) {
  const host = new Host({ stateDir, clock: () => wall.now, switch: { maxPorts: 16 }, log: () => {} });
  const out: Array<[number, Uint8Array]> = [];
  host.sw.onFrame((f, p) => out.push([p, f.slice()]));
  const exchange = async (port: number, f: Uint8Array) => {
    out.length = 0;
    host.sw.inject([[port, f]]);
    await new Promise((r) => setImmediate(r));
    return out.filter(([p]) => p === port).map(([, x]) => parseReply(x));
  };
  return { host, exchange, wall };
}

const DHCP_NAT = {
  ...NAT, MTU: 1400, Dns: { Domain: 'lab.example', Search: ['lab.example'] },
  Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }, { NextHop: '172.20.0.254', DestinationPrefix: '10.9.0.0/16' }] }] }],
};

test('DHCP: an endpoint created without addresses gets a MAC and an IP, and its DHCP lease is them, with the network\'s options', async () => {
  const { host, exchange } = dhcpHost();
  host.store.create('network', DHCP_NAT);
  const ep = host.store.create('endpoint', { ID: 'vm', HostComputeNetwork: 'nat' });
  assert.is(ep.MacAddress, '02:6e:70:01:00:00');
  assert.equal(ep.IpConfigurations, [{ IpAddress: '172.20.0.2', PrefixLength: 24 }]);
  assert.equal(host.store.get('endpoint', 'vm'), ep, 'stored with what was assigned');
  const gw = gwMac(host);
  const [offer] = await exchange(host.portOf('vm')!, dhcpFrame({ type: DISCOVER, mac: ep.MacAddress, broadcast: true }));
  assert.ok(offer, 'the gateway answers the DISCOVER');
  assert.equal([offer.type, offer.yiaddr, offer.ethSrc, offer.ipSrc], [OFFER, '172.20.0.2', gw, '172.20.0.1']);
  assert.equal(ipOpt(offer.opts.get(3)), ['172.20.0.1'], 'router: the gateway');
  assert.equal(ipOpt(offer.opts.get(6)), ['172.20.0.1'], 'DNS: the gateway, since the network has no ServerList');
  assert.is(String.fromCharCode(...offer.opts.get(15)!), 'lab.example');
  assert.equal(offer.opts.get(26), [1400 >> 8, 1400 & 255], 'the network\'s MTU');
  assert.is(u32Opt(offer.opts.get(51)), 3600);
  assert.equal(offer.opts.get(121), [16, 10, 9, 172, 20, 0, 254, 0, 172, 20, 0, 1], 'the subnet\'s route, then the default route (RFC 3442)');
  const [ack] = await exchange(host.portOf('vm')!, dhcpFrame({ type: REQUEST, mac: ep.MacAddress, requested: '172.20.0.2', server: '172.20.0.1', broadcast: true }));
  assert.equal([ack.type, ack.yiaddr], [ACK, '172.20.0.2']);
  assert.equal(host.endpointStatus('vm').Dhcp, { Lease: 'Static', Expires: new Date(T0 + 3600_000).toISOString() });
  assert.equal(host.leaseEndpoints(), [], 'a static lease is the endpoint itself, not another one');
  // A modify that leaves the assigned fields out keeps them (and so the lease).
  host.store.create('endpoint', { ID: 'other', HostComputeNetwork: 'nat' });
  host.store.delete('endpoint', 'other');
  const kept = host.store.modify('endpoint', 'vm', { ID: 'vm', HostComputeNetwork: 'nat', Name: 'renamed' });
  assert.equal([kept.MacAddress, kept.IpConfigurations], [ep.MacAddress, ep.IpConfigurations]);
});

test('DHCP: an unknown MAC gets a dynamic lease from the pool, shown as a read-only endpoint without port or static MAC; released, it is gone; Refuse counts', async () => {
  const { host, exchange } = dhcpHost();
  host.store.create('network', NAT);
  const ports = host.sw.ports.size;
  const guest = host.sw.addPort({ network: host.compiler.networkOf('nat')! }).id;   // a port with no endpoint's spoof guard
  const [offer] = await exchange(guest, dhcpFrame({ type: DISCOVER, mac: STRANGER }));
  assert.equal([offer.type, offer.yiaddr, offer.ethDst], [OFFER, '172.20.0.128', STRANGER], 'the first address of the default pool, the upper half');
  assert.equal(host.leaseEndpoints(), [], 'an offer is no lease yet');
  const [ack] = await exchange(guest, dhcpFrame({ type: REQUEST, mac: STRANGER, requested: '172.20.0.128', server: '172.20.0.1' }));
  assert.is(ack.type, ACK);
  assert.equal(host.leaseEndpoints(), [{
    ID: `dhcp:nat:${STRANGER}`, HostComputeNetwork: 'nat', MacAddress: STRANGER, IpConfigurations: [{ IpAddress: '172.20.0.128', PrefixLength: 24 }],
    Status: { Transport: 'none', Dhcp: { Lease: 'Dynamic', Expires: new Date(T0 + 3600_000).toISOString() } },
  }]);
  assert.equal(host.store.list('endpoint'), [], 'not in the store');
  assert.is(host.sw.ports.size, ports + 2, 'the guest\'s port and the gateway\'s reply port, nothing for the lease');
  assert.ok(!host.sw.macTable().some((e) => e.mac === STRANGER && e.static), 'no static MAC entry for it');
  // An endpoint created now gets an address outside the pool.
  assert.is(host.store.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat' }).IpConfigurations[0].IpAddress, '172.20.0.2');
  await exchange(guest, dhcpFrame({ type: RELEASE, mac: STRANGER, ciaddr: '172.20.0.128', server: '172.20.0.1' }, { mac: gwMac(host), ip: '172.20.0.1' }));
  assert.equal(host.leaseEndpoints(), [], 'released: gone');
  host.store.modify('network', 'nat', { ...NAT, Dhcp: { UnknownClients: 'Refuse' } });
  assert.equal(await exchange(guest, dhcpFrame({ type: DISCOVER, mac: STRANGER })), [], 'refused: no answer');
  const [c] = host.compiler.services.counters();
  assert.equal([c.network, c.dropped.unknown_client], ['nat', 1], 'counted as refused');
  const [webOffer] = await exchange(host.portOf('web')!, dhcpFrame({ type: DISCOVER, mac: host.store.get('endpoint', 'web').MacAddress }));
  assert.is(webOffer.yiaddr, '172.20.0.2', 'endpoints are still served');
});

test('DHCP: a lease expires; Enabled false stops the punt (the DISCOVER is flooded), and a refused change keeps the server as it was', async () => {
  const { host, exchange, wall } = dhcpHost();
  host.store.create('network', { ...NAT, Dhcp: { LeaseTime: 60, Pool: { StartAddress: '172.20.0.200', EndAddress: '172.20.0.201' } } });
  const guest = host.sw.addPort({ network: host.compiler.networkOf('nat')! }).id;
  await exchange(guest, dhcpFrame({ type: DISCOVER, mac: STRANGER }));
  const [ack] = await exchange(guest, dhcpFrame({ type: REQUEST, mac: STRANGER, requested: '172.20.0.200', server: '172.20.0.1' }));
  assert.equal([ack.type, ack.yiaddr, u32Opt(ack.opts.get(51))], [ACK, '172.20.0.200', 60]);
  wall.now += 61_000;
  assert.equal(host.leaseEndpoints(), [], 'expired: gone');
  const before = host.store.snapshot();
  assert.throws(() => host.store.modify('network', 'nat', { ...NAT, Dns: { Search: ['not a name'] } }), (e: ModelError) => e.field === 'Dns.Search[0]' && /DHCP/.test(e.reason));
  assert.equal(host.store.snapshot(), before, 'the model is unchanged');
  const [offer] = await exchange(guest, dhcpFrame({ type: DISCOVER, mac: STRANGER }));
  assert.equal([offer.yiaddr, u32Opt(offer.opts.get(51))], ['172.20.0.200', 60], 'the server as it was');
  host.store.modify('network', 'nat', { ...NAT, Dhcp: { Enabled: false } });
  const peer = host.sw.addPort({ network: host.compiler.networkOf('nat')! }).id;
  host.sw.inject([[guest, dhcpFrame({ type: DISCOVER, mac: STRANGER })]]);
  await new Promise((r) => setImmediate(r));
  assert.ok(host.sw.port(peer).receive().length === 1, 'no server: the broadcast is flooded like any other');
  assert.equal(host.compiler.services.counters(), []);
});

test('DHCP: leases survive a restart (state directory), and the renewal gets the same address; a foreign lease file is refused, untouched', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-host-dhcp-'));
  const wall = { now: T0 };
  const a = dhcpHost(dir, wall);
  a.host.store.create('network', NAT);
  let guest = a.host.sw.addPort({ network: a.host.compiler.networkOf('nat')! }).id;
  await a.exchange(guest, dhcpFrame({ type: DISCOVER, mac: STRANGER }));
  await a.exchange(guest, dhcpFrame({ type: REQUEST, mac: STRANGER, requested: '172.20.0.128', server: '172.20.0.1' }));
  const file = join(dir, 'dhcp-leases.json');
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal([saved.netplane, saved.networks.nat.leases], ['dhcp-leases', [{ mac: STRANGER, address: '172.20.0.128', expires: T0 + 3600_000 }]]);
  wall.now += 1000_000;
  const b = dhcpHost(dir, wall);
  assert.equal(b.host.leaseEndpoints().map((e) => [e.ID, e.IpConfigurations![0].IpAddress]), [[`dhcp:nat:${STRANGER}`, '172.20.0.128']], 'the lease is back');
  guest = b.host.sw.addPort({ network: b.host.compiler.networkOf('nat')! }).id;
  // Renewing: unicast from its address to the server, ciaddr set.
  const [renew] = await b.exchange(guest, dhcpFrame({ type: REQUEST, mac: STRANGER, ciaddr: '172.20.0.128' }, { mac: gwMac(b.host), ip: '172.20.0.1' }));
  assert.equal([renew.type, renew.yiaddr, renew.ipDst], [ACK, '172.20.0.128', '172.20.0.128']);
  assert.is(b.host.leaseEndpoints()[0].Status.Dhcp!.Expires, new Date(wall.now + 3600_000).toISOString(), 'renewed from now');
  // Another client asking for that address is refused it.
  const [nak] = await b.exchange(guest, dhcpFrame({ type: REQUEST, mac: '02:00:00:00:0d:0d', requested: '172.20.0.128', server: '172.20.0.1' }));
  assert.is(nak.type, NAK);
  writeFileSync(file, '{"some": "other program"}\n');
  assert.throws(() => dhcpHost(dir, wall), /dhcp-leases\.json: not a netplane DHCP lease file/);
  assert.is(readFileSync(file, 'utf8'), '{"some": "other program"}\n', 'not overwritten');
  assert.ok(existsSync(join(dir, 'state.json')));
});

test('DHCP: a change refused after its apply (the endpoint\'s transport cannot open) gives the servers back as they were, leases and all', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-host-dhcp-revert-'));
  const { host, exchange } = dhcpHost(dir);
  host.store.create('network', NAT);
  const guest = host.sw.addPort({ network: host.compiler.networkOf('nat')! }).id;
  await exchange(guest, dhcpFrame({ type: DISCOVER, mac: STRANGER }));
  await exchange(guest, dhcpFrame({ type: REQUEST, mac: STRANGER, requested: '172.20.0.128', server: '172.20.0.1' }));
  const taken = createSocket('udp4');
  await new Promise<void>((ok) => taken.bind(0, '127.0.0.1', () => ok()));
  try {
    // Its MAC as an endpoint with another address would end the dynamic lease, if it were accepted.
    const refused = host.change({ op: 'create', kind: 'endpoint', value: { ID: 'x', HostComputeNetwork: 'nat', MacAddress: STRANGER, IpConfigurations: [{ IpAddress: '172.20.0.50' }], Transport: { Type: 'udp', Bind: `127.0.0.1:${taken.address().port}` } } });
    await refused.then(() => assert.unreachable('refused'), (e: ModelError) => assert.is(e.field, 'Transport.Bind'));
  } finally {
    taken.close();
  }
  assert.equal(host.leaseEndpoints().map((e) => e.IpConfigurations![0].IpAddress), ['172.20.0.128'], 'the lease is still there');
  assert.equal(JSON.parse(readFileSync(join(dir, 'dhcp-leases.json'), 'utf8')).networks.nat.leases.map((l: { address: string }) => l.address), ['172.20.0.128'], 'and in the lease file');
  const [renew] = await exchange(guest, dhcpFrame({ type: REQUEST, mac: STRANGER, ciaddr: '172.20.0.128' }, { mac: gwMac(host), ip: '172.20.0.1' }));
  assert.equal([renew.type, renew.yiaddr], [ACK, '172.20.0.128']);
});

test('DHCP: an endpoint\'s assigned address stays out of the pool, so a small subnet runs out first outside it', () => {
  const host = new Host({ log: () => {} });
  host.store.create('network', { ID: 'lab', Type: 'Internal', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.1.0.0/28' }] }] });
  const got = [2, 3, 4, 5, 6, 7].map((i) => host.store.create('endpoint', { ID: `e${i}`, HostComputeNetwork: 'lab' }).IpConfigurations[0].IpAddress);
  assert.equal(got, ['10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.5', '10.1.0.6', '10.1.0.7']);
  assert.throws(() => host.store.create('endpoint', { ID: 'e8', HostComputeNetwork: 'lab' }), (e: ModelError) => e.field === 'IpConfigurations' && /outside its DHCP pool/.test(e.reason));
  assert.is(host.store.create('endpoint', { ID: 'e8', HostComputeNetwork: 'lab', IpConfigurations: [{ IpAddress: '10.1.0.9' }] }).IpConfigurations[0].IpAddress, '10.1.0.9', 'given explicitly, a pool address is the endpoint\'s (its static lease)');
});

test.run();
