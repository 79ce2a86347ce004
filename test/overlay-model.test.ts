// Overlay networks and remote endpoints in the HCN-shaped model (issue 15): what the store refuses
// (naming the field, and the owner of a taken MAC or address), what the compiler makes of them in the
// dataplane through sw.overlay (the VNI, the distributed gateway with the overlay MTU, the remotes and
// their neighbours; refused changes undone), and the cluster's remote endpoints given to the Host
// (setRemoteEndpoints: refused entries named, local endpoints winning, cluster-view.json surviving a
// restart and never overwritten when it is not netplane's).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../src/host.js';
import { Store } from '../src/model/store.js';
import { ModelError } from '../src/model/validate.js';
import { networkDhcp } from '../src/model/dhcp.js';
import { overlayGatewayMac } from '../src/compile/host.js';
import { StateFileError } from '../src/model/persist.js';
import type { RemoteEndpointSpec } from '../src/model/types.js';

const PA = '192.0.2.1';
const OVL = { ID: 'ovl', Type: 'Overlay', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.42.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 42 } }] }] }] };
const remote = (id: string, mac: string, ip: string, pa = '192.0.2.2', extra: Record<string, unknown> = {}) => ({
  ID: id, HostComputeNetwork: 'ovl', IsRemoteEndpoint: true, MacAddress: mac, IpConfigurations: [{ IpAddress: ip }],
  Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: pa } }], ...extra,
});
const spec = (id: string, mac: string, ip: string, host = 'h2', pa = '192.0.2.2'): RemoteEndpointSpec =>
  ({ ID: id, HostComputeNetwork: 'ovl', MacAddress: mac, IpAddresses: [ip], ProviderAddress: pa, Host: host });

// The error a refusal threw: a ModelError with this code, naming this field; its message.
function modelError(e: unknown, code: string, field: string): string {
  assert.instance(e, ModelError, String(e));
  assert.is((e as ModelError).code, code, (e as Error).message);
  assert.is((e as ModelError).field, field, (e as Error).message);
  return (e as Error).message;
}

function refused(fn: () => unknown, code: string, field: string): string {
  try { fn(); } catch (e) { return modelError(e, code, field); }
  assert.unreachable(`expected ${code} on ${field}`);
  return '';
}

async function refusedAsync(p: Promise<unknown>, code: string, field: string): Promise<string> {
  try { await p; } catch (e) { return modelError(e, code, field); }
  assert.unreachable(`expected ${code} on ${field}`);
  return '';
}

const overlayHost = (stateDir?: string, mtu?: number) => new Host({ stateDir, config: { overlay: { providerAddress: PA, mtu } }, underlay: false, switch: { maxPorts: 16 } });

test('the store: remote endpoints are given, not assigned, only on Overlay networks, and a taken MAC or address names its owner', () => {
  const s = new Store();
  s.create('network', OVL);
  s.create('network', { ID: 'int', Type: 'Internal', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.43.0.0/24' }] }] });
  const local = s.create('endpoint', { ID: 'web', HostComputeNetwork: 'ovl', IpConfigurations: [{ IpAddress: '10.42.0.5' }] });
  assert.equal(s.create('endpoint', remote('r1', '02:00:00:00:42:01', '10.42.0.9')).IpConfigurations, [{ IpAddress: '10.42.0.9' }]);
  refused(() => s.create('endpoint', { ...remote('r2', '02:00:00:00:42:02', '10.43.0.9'), HostComputeNetwork: 'int' }), 'InvalidArgument', 'IsRemoteEndpoint');
  assert.match(refused(() => s.create('endpoint', remote('r3', local.MacAddress, '10.42.0.10')), 'Conflict', 'MacAddress'), /endpoint web/);
  assert.match(refused(() => s.create('endpoint', remote('r4', '02:00:00:00:42:04', '10.42.0.5')), 'Conflict', 'IpConfigurations[0].IpAddress'), /endpoint web/);
  assert.match(refused(() => s.create('endpoint', { ID: 'web2', HostComputeNetwork: 'ovl', MacAddress: '02:00:00:00:42:01' }), 'Conflict', 'MacAddress'), /endpoint r1/);
  // A VNI is one network's.
  assert.match(refused(() => s.create('network', { ...OVL, ID: 'ovl2' }), 'Conflict', 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId'), /network ovl's/);
  assert.is(s.list('endpoint').length, 2, 'nothing refused was stored');
});

test('an Overlay network\'s DHCP server leases only to its endpoints unless given a pool (two hosts would lease the same addresses)', () => {
  const n = new Store().create('network', OVL);
  assert.is(networkDhcp(n as never)!.unknownClients, 'Refuse');
  assert.is(networkDhcp(n as never)!.pool, undefined);
  const withPool = new Store().create('network', { ...OVL, Dhcp: { Pool: { StartAddress: '10.42.0.200', EndAddress: '10.42.0.210' } } });
  assert.is(networkDhcp(withPool as never)!.unknownClients, 'Lease');
});

test('the compiler: no underlay refuses an Overlay network naming Type; the MTU is the underlay\'s less 50, never more', () => {
  const plain = new Host({ switch: { maxPorts: 8 } });
  assert.match(refused(() => plain.store.create('network', OVL), 'InvalidArgument', 'Type'), /overlay/);
  assert.is(plain.store.list('network').length, 0);

  const h = overlayHost();
  assert.ok(h.compiler.underlayPort !== undefined, 'the underlay has a switch port');
  assert.match(refused(() => h.store.create('network', { ...OVL, MTU: 1451 }), 'InvalidArgument', 'MTU'), /1450/);
  h.store.create('network', OVL);
  const gw = h.sw.router.interfaces.get(h.compiler.gatewayInterfaceOf('ovl')!)!;
  assert.is(gw.mtu, 1450, 'the default MTU: 1500 - 50');
  assert.is(gw.mac, overlayGatewayMac(42), 'the gateway MAC comes from the VNI: the same on every host');
  assert.is(gw.mac, '0a:6e:70:00:00:2a');
  h.store.modify('network', 'ovl', { ...OVL, MTU: 1400, MssClamp: 'Mtu' });
  assert.is(h.sw.router.interfaces.get(h.compiler.gatewayInterfaceOf('ovl')!)!.mtu, 1400);
  assert.is(h.sw.router.interfaces.get(h.compiler.gatewayInterfaceOf('ovl')!)!.mac, gw.mac, 'kept across a modify');

  const jumbo = overlayHost(undefined, 9000);
  jumbo.store.create('network', { ...OVL, MTU: 8950 });
  assert.is(jumbo.sw.router.interfaces.get(jumbo.compiler.gatewayInterfaceOf('ovl')!)!.mtu, 8950);
  refused(() => new Host({ config: { overlay: { providerAddress: '127.0.0.1' } }, underlay: false }), 'InvalidArgument', 'overlay.providerAddress');
  refused(() => new Host({ config: { overlay: { providerAddress: PA, udpPort: 0 } }, underlay: false }), 'InvalidArgument', 'overlay.udpPort');
});

test('the compiler: a remote endpoint is a remote of the segment and a neighbour of the gateway; removed with it; its PA is never ours', () => {
  const h = overlayHost();
  h.store.create('network', OVL);
  h.store.create('endpoint', remote('r1', '02:00:00:00:42:01', '10.42.0.9'));
  const net = h.compiler.networkOf('ovl')!;
  assert.equal(h.sw.overlay.remotes(), [{ network: net, vlan: 0, mac: '02:00:00:00:42:01', addresses: ['10.42.0.9'], providerAddress: '192.0.2.2' }]);
  assert.is(h.portOf('r1'), undefined, 'a remote endpoint has no switch port');
  assert.ok(h.sw.router.neighbors().some((n) => n.address === '10.42.0.9' && n.mac === '02:00:00:00:42:01'), 'the gateway knows it without ARP');
  assert.match(refused(() => h.store.create('endpoint', remote('r2', '02:00:00:00:42:02', '10.42.0.10', PA)), 'InvalidArgument', 'Policies[0].Settings.ProviderAddress'), /own/);
  assert.is(h.sw.overlay.remotes().length, 1, 'the refused change left the remotes as they were');
  h.store.modify('endpoint', 'r1', remote('r1', '02:00:00:00:42:01', '10.42.0.9', '192.0.2.3'));
  assert.is(h.sw.overlay.remotes()[0].providerAddress, '192.0.2.3');
  h.store.delete('endpoint', 'r1');
  assert.equal(h.sw.overlay.remotes(), []);
  assert.not.ok(h.sw.router.neighbors().some((n) => n.address === '10.42.0.9'));
});

test('setRemoteEndpoints: entries applied or refused by name, local endpoints win, the view survives a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-overlay-'));
  let h = overlayHost(dir);
  await h.change({ op: 'create', kind: 'network', value: OVL });
  await h.change({ op: 'create', kind: 'endpoint', value: { ID: 'web', HostComputeNetwork: 'ovl', MacAddress: '02:00:00:00:00:05', IpConfigurations: [{ IpAddress: '10.42.0.5' }] } });
  const r = await h.setRemoteEndpoints('etcd', [
    spec('a', '02:00:00:00:42:0a', '10.42.0.10'),
    spec('b', '02:00:00:00:00:05', '10.42.0.11'),                     // web's MAC
    spec('c', '02:00:00:00:42:0c', '10.42.0.5'),                      // web's address
    { ...spec('d', '02:00:00:00:42:0d', '10.42.0.13'), HostComputeNetwork: 'elsewhere' },
    spec('e', '02:00:00:00:42:0e', '10.42.0.14', 'h3', PA),           // our own PA
    { ...spec('f', '02:00:00:00:42:0f', '10.42.0.15'), MacAddress: 'nope' },
    spec('g', '02:00:00:00:42:10', '10.99.0.1'),                      // outside the subnets
  ]);
  assert.is(r.applied, 1);
  const why = Object.fromEntries(r.refused.map((x) => [x.ID, x.reason]));
  assert.equal(Object.keys(why).sort(), ['b', 'c', 'd', 'e', 'f', 'g']);
  assert.match(why.b, /^MacAddress: .*endpoint web/);
  assert.match(why.c, /^IpAddresses: .*endpoint web/);
  assert.match(why.d, /^HostComputeNetwork: .*elsewhere/);
  assert.match(why.e, /^ProviderAddress: .*own/);
  assert.match(why.f, /^\[5\]\.MacAddress/);
  assert.match(why.g, /^IpAddresses: .*no subnet/);
  assert.equal(h.remoteEndpoints().map((x) => x.ID), ['a']);
  assert.equal(h.sw.overlay.remotes().map((x) => x.mac), ['02:00:00:00:42:0a']);
  assert.is(h.remoteEndpointObjects()[0].ID, 'remote:h2:a');
  assert.is(h.remoteEndpointObjects()[0].IsRemoteEndpoint, true);
  assert.not.ok(readFileSync(join(dir, 'state.json'), 'utf8').includes('02:00:00:00:42:0a'), 'never in state.json');
  const file = JSON.parse(readFileSync(join(dir, 'cluster-view.json'), 'utf8'));
  assert.is(file.netplane, 'cluster-view');
  assert.is(file.sources.etcd.length, 6, 'the malformed entry is left out; the waiting ones are kept');

  // A local endpoint created later with a cluster entry's MAC wins; the entry waits.
  await h.change({ op: 'create', kind: 'endpoint', value: { ID: 'db', HostComputeNetwork: 'ovl', MacAddress: '02:00:00:00:42:0a', IpConfigurations: [{ IpAddress: '10.42.0.6' }] } });
  assert.equal(h.remoteEndpoints(), []);
  assert.equal(h.sw.overlay.remotes(), []);
  await h.change({ op: 'delete', kind: 'endpoint', id: 'db' });
  assert.equal(h.remoteEndpoints().map((x) => x.ID), ['a'], 'and applies again when the local one goes');

  // A restart (the store unreachable, say) starts with the last view: stale, never empty.
  await h.closeTransports();
  h = overlayHost(dir);
  assert.equal(h.remoteEndpoints().map((x) => x.ID), ['a']);
  assert.equal(h.sw.overlay.remotes().map((x) => x.mac), ['02:00:00:00:42:0a']);
  // An empty list from the source takes its entries away.
  assert.equal(await h.setRemoteEndpoints('etcd', []), { applied: 0, refused: [] });
  assert.equal(h.sw.overlay.remotes(), []);
  assert.equal(JSON.parse(readFileSync(join(dir, 'cluster-view.json'), 'utf8')).sources, {});
  await h.closeTransports();
});

test('a state with an Overlay network does not start without the overlay setting, naming Type', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-overlay-'));
  const h = overlayHost(dir);
  await h.change({ op: 'create', kind: 'network', value: OVL });
  await h.closeTransports();
  assert.match(refused(() => new Host({ stateDir: dir }), 'InvalidArgument', 'Type'), /network ovl is an Overlay network/);
  assert.equal(overlayHost(dir).store.list('network').map((n) => n.ID), ['ovl'], 'the state is untouched');
});

test('cluster-view.json that is not netplane\'s is refused at start, naming the file, and left as it was', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-overlay-'));
  writeFileSync(join(dir, 'cluster-view.json'), '{"mine": true}\n');
  try { overlayHost(dir); assert.unreachable('started'); } catch (e) {
    assert.instance(e, StateFileError);
    assert.match((e as Error).message, /cluster-view\.json: not a netplane cluster view/);
  }
  assert.is(readFileSync(join(dir, 'cluster-view.json'), 'utf8'), '{"mine": true}\n');
  assert.ok(existsSync(join(dir, 'cluster-view.json')));
});

test('setRemoteEndpoints is serialized with changes, and a network created after its entries applies them', async () => {
  const h = overlayHost();
  const early = h.setRemoteEndpoints('etcd', [spec('a', '02:00:00:00:42:0a', '10.42.0.10')]);
  const net = h.change({ op: 'create', kind: 'network', value: OVL });
  const r = await early;
  assert.is(r.applied, 0, 'the network is not there yet');
  await net;
  assert.equal(h.remoteEndpoints().map((x) => x.ID), ['a'], 'applied once the network exists');
  await refusedAsync(h.change({ op: 'delete', kind: 'network', id: 'nowhere' }), 'NotFound', 'ID');
  assert.is(h.sw.overlay.remotes().length, 1);
});

test.run();
