// The model driving a real switch: a NAT network from HCN objects carries traffic (gateway, masquerade
// through the uplink, a port mapping in), a change applies as a diff without disturbing established
// connections, a refused change leaves everything as it was, and a restart from the state directory
// restores the same behaviour.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, ModelError } from '../src/index.js';
import { ethernet, ipv4, icmp, tcp, udp, dissect, verifyChecksums } from '../src/frames.js';

const R = '02:00:00:00:00:fe';
const NAT = {
  ID: 'nat', Type: 'NAT',
  Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }] }] }],
};

function boot(stateDir?: string) {
  let now = 1000;
  const host = new Host({ stateDir, config: { uplink: { address: '192.168.1.1/24', gateway: '192.168.1.254' } }, switch: { maxPorts: 16, clock: () => now } });
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

test.run();
