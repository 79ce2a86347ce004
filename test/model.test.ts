// The HCN-shaped model: validation naming each refused field, idempotent create, precise errors
// (not found, already exists, conflict naming the owner), MAC and IP assignment from pools, refused
// changes leaving the store as it was, and the state directory (atomic writes, restart, corrupt and
// newer files refused with the file named).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../src/model/store.js';
import { ModelError } from '../src/model/validate.js';
import { saveState, loadState, StateFileError } from '../src/model/persist.js';

const nat = { ID: 'nat', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }] }] }] };

function refused(fn: () => unknown, code: string, field: string | RegExp) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ModelError);
    assert.is((e as ModelError).code, code);
    if (typeof field === 'string') assert.is((e as ModelError).field, field);
    else assert.match((e as ModelError).field, field);
    return (e as ModelError).message;
  }
  assert.unreachable(`expected ${code} on ${field}`);
  return '';
}

test('each invalid field is refused by its path', () => {
  const s = new Store();
  refused(() => s.create('network', { ...nat, Type: 'Bridge' }), 'InvalidArgument', 'Type');
  refused(() => s.create('network', { ...nat, ID: '' }), 'InvalidArgument', 'ID');
  refused(() => s.create('network', { ...nat, Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/33' }] }] }), 'InvalidArgument', 'Ipams[0].Subnets[0].IpAddressPrefix');
  refused(() => s.create('network', { ...nat, Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Policies: [{ Type: 'VLAN', Settings: { IsolationId: 5000 } }] }] }] }), 'InvalidArgument', 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId');
  refused(() => s.create('network', { ...nat, Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 1, LocalPorts: '99999' } }] }), 'InvalidArgument', 'Policies[0].Settings.LocalPorts');
  refused(() => s.create('network', { ...nat, Colour: 'red' }), 'InvalidArgument', 'Colour');
  for (const m of [1, 2, 4, 0x4009, 0x10000, -8, 1.5, '8']) refused(() => s.create('network', { ...nat, GroupFwdMask: m }), 'InvalidArgument', 'GroupFwdMask');
  refused(() => s.create('network', { ...nat, MTU: 67 }), 'InvalidArgument', 'MTU');
  refused(() => s.create('network', { ...nat, MTU: 65536 }), 'InvalidArgument', 'MTU');
  refused(() => s.create('network', { ...nat, MTU: '1500' }), 'InvalidArgument', 'MTU');
  const msg = refused(() => s.create('network', { ...nat, MTU: 1000, Ipams: [{ Subnets: [...nat.Ipams[0].Subnets, { IpAddressPrefix: 'fd00::/64' }] }] }), 'InvalidArgument', 'MTU');
  assert.match(msg, /1280/);
  refused(() => s.create('network', { ID: 'n2', Type: 'NAT' }), 'InvalidArgument', 'Ipams');
  s.create('network', nat);
  refused(() => s.create('endpoint', { ID: 'e', HostComputeNetwork: 'nat', MacAddress: '01:00:00:00:00:01' }), 'InvalidArgument', 'MacAddress');
  refused(() => s.create('endpoint', { ID: 'e', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 1, InternalPort: 80, ExternalPort: 80 } }] }), 'InvalidArgument', 'Policies[0].Settings.Protocol');
  refused(() => s.create('endpoint', { ID: 'e', HostComputeNetwork: 'nat', IpConfigurations: [{ IpAddress: '10.9.9.9' }] }), 'InvalidArgument', 'IpConfigurations[0].IpAddress');
  refused(() => s.create('loadbalancer', { ID: 'lb', HostComputeEndpoints: [], PortMappings: [] }), 'InvalidArgument', 'PortMappings');
  assert.is(s.list('endpoint').length, 0, 'nothing was half-created');
});

test('create is idempotent for the same content; other content is AlreadyExists', () => {
  const s = new Store();
  const a = s.create('network', nat);
  assert.equal(s.create('network', nat), a);
  refused(() => s.create('network', { ...nat, Type: 'Internal' }), 'AlreadyExists', 'Type');
  const e = s.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat' });
  assert.equal(s.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat' }), e, 'a retry gets what was assigned');
  assert.is(s.list('endpoint').length, 1);
  // The object has a PortMapping the request does not ask for: not the same request.
  const pm = { ID: 'api', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] };
  s.create('endpoint', pm);
  refused(() => s.create('endpoint', { ID: 'api', HostComputeNetwork: 'nat' }), 'AlreadyExists', 'Policies');
  refused(() => s.create('endpoint', { ...pm, Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8081 } }] }), 'AlreadyExists', 'Policies[0].Settings.ExternalPort');
  refused(() => s.create('endpoint', { ...pm, MacAddress: '02:00:00:00:00:99' }), 'AlreadyExists', 'MacAddress');
  assert.equal(s.create('endpoint', pm).Policies, pm.Policies);
});

test('MACs and addresses come from the pools; the gateway and taken ones are skipped', () => {
  const s = new Store();
  s.create('network', { ...nat, MacPool: { Ranges: [{ StartMacAddress: '02-00-00-00-10-00', EndMacAddress: '02-00-00-00-10-01' }] } });
  const a = s.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  const b = s.create('endpoint', { ID: 'b', HostComputeNetwork: 'nat', IpConfigurations: [{ IpAddress: '172.20.0.3' }] });
  const c = s.create('endpoint', { ID: 'c', HostComputeNetwork: 'nat', MacAddress: '02:00:00:00:20:00' });
  assert.is(a.MacAddress, '02:00:00:00:10:00');
  assert.is(a.IpConfigurations[0].IpAddress, '172.20.0.2', '.1 is the gateway');
  assert.is(b.MacAddress, '02:00:00:00:10:01');
  assert.is(c.IpConfigurations[0].IpAddress, '172.20.0.4', '.3 is taken');
  assert.match(refused(() => s.create('endpoint', { ID: 'd', HostComputeNetwork: 'nat' }), 'Conflict', 'MacAddress'), /exhausted/);
});

test('references and ownership: not found, conflicts naming the owner, deletes refused while in use', () => {
  const s = new Store();
  refused(() => s.create('endpoint', { ID: 'e', HostComputeNetwork: 'nope' }), 'NotFound', 'HostComputeNetwork');
  s.create('network', nat);
  refused(() => s.create('endpoint', { ID: 'e', HostComputeNetwork: 'nat', HostComputeNamespace: 'ns1' }), 'NotFound', 'HostComputeNamespace');
  const pm = (ext: number) => ({ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: ext } });
  s.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', Policies: [pm(8080)] });
  assert.match(refused(() => s.create('endpoint', { ID: 'web2', HostComputeNetwork: 'nat', Policies: [pm(8080)] }), 'Conflict', 'Policies[0].Settings.ExternalPort'), /mapped by endpoint web/);
  s.create('endpoint', { ID: 'web2', HostComputeNetwork: 'nat', Policies: [pm(8081)] });
  assert.match(refused(() => s.delete('network', 'nat'), 'Conflict', 'ID'), /network nat is used by endpoints web, web2/);
  refused(() => s.get('endpoint', 'zzz'), 'NotFound', 'ID');
  s.create('loadbalancer', { ID: 'lb', HostComputeEndpoints: ['web', 'web2'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80 }] });
  assert.match(refused(() => s.delete('endpoint', 'web'), 'Conflict', 'ID'), /endpoint web is used by load balancer lb;/);
  s.create('namespace', { ID: 'ns1' });
  s.modify('endpoint', 'web2', { ...s.get('endpoint', 'web2'), HostComputeNamespace: 'ns1' });
  assert.match(refused(() => s.delete('namespace', 'ns1'), 'Conflict', 'ID'), /namespace ns1 is used by endpoint web2;/);
  s.delete('loadbalancer', 'lb');
  s.delete('endpoint', 'web');
  assert.equal(s.list('endpoint').map((e) => e.ID), ['web2']);
});

test('a change refused by the compiler leaves the store as it was', () => {
  let fail = false;
  const s = new Store(undefined, () => { if (fail) throw new Error('dataplane refused'); });
  s.create('network', nat);
  fail = true;
  assert.throws(() => s.create('endpoint', { ID: 'e', HostComputeNetwork: 'nat' }), /dataplane refused/);
  assert.is(s.list('endpoint').length, 0);
  assert.throws(() => s.modify('network', 'nat', { ...nat, Name: 'x' }), /dataplane refused/);
  assert.is(s.get('network', 'nat').Name, undefined);
});

test('the state directory: saved atomically, restored whole; corrupt or newer files refused by name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-state-'));
  const s = new Store();
  s.create('network', nat);
  s.create('namespace', { ID: 'ns1' });
  s.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', HostComputeNamespace: 'ns1' });
  saveState(dir, s.snapshot());
  assert.equal(readdirSync(dir), ['state.json'], 'no temporary file is left behind');
  const back = new Store(loadState(dir));
  assert.equal(back.snapshot(), s.snapshot());
  const file = join(dir, 'state.json');
  const good = readFileSync(file, 'utf8');
  writeFileSync(file, good.slice(0, good.length / 2));
  assert.throws(() => loadState(dir), (e: unknown) => e instanceof StateFileError && e.file === file && /corrupt/.test(e.message));
  writeFileSync(file, good.replace('"version": 1', '"version": 7'));
  assert.throws(() => loadState(dir), /newer netplane \(state version 7/);
  writeFileSync(file, good.replace('"HostComputeNetwork": "nat"', '"HostComputeNetwork": "gone"'));
  assert.throws(() => loadState(dir), /inconsistent/);
  assert.equal(loadState(mkdtempSync(join(tmpdir(), 'netplane-empty-'))).networks, [], 'no state yet: empty');
});

test.run();
