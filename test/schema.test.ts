// docs/model.schema.json stays true: the state the store writes validates against it, and objects the
// store refuses for their shape are refused by the schema too.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import { Store } from '../src/model/store.js';
import { saveState } from '../src/model/persist.js';

const schema = JSON.parse(readFileSync(new URL('../docs/model.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv({ allErrors: true });
const validateState = ajv.compile(schema);
const def = (name: string) => new Ajv({ allErrors: true }).compile({ ...schema, $id: undefined, $ref: `#/definitions/${name}` });

test('a state the store wrote is valid against the schema', () => {
  const s = new Store();
  s.create('network', { ID: 'nat', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }], Policies: [{ Type: 'VLAN', Settings: { IsolationId: 7 } }] }] }],
    Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Block', Direction: 'In', Priority: 10, RemotePorts: '22' } }, { Type: 'OutBoundNAT', Settings: { Exceptions: ['10.0.0.0/8'] } }] });
  s.create('namespace', { ID: 'ns', Type: 'Guest' });
  s.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', HostComputeNamespace: 'ns', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }, { Type: 'ACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 100, LocalPorts: '80' } }] });
  s.create('loadbalancer', { ID: 'lb', HostComputeEndpoints: ['web'], FrontendVIPs: ['192.168.1.80'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80, DistributionType: 'SourceIP' }], Flags: { DSR: false } });
  const dir = mkdtempSync(join(tmpdir(), 'netplane-schema-'));
  saveState(dir, s.snapshot());
  const doc = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  assert.ok(validateState(doc), JSON.stringify(validateState.errors));
});

test('shapes the store refuses, the schema refuses', () => {
  const network = def('HostComputeNetwork'), endpoint = def('HostComputeEndpoint'), lb = def('HostComputeLoadBalancer');
  assert.not.ok(network({ ID: 'n', Type: 'Mesh' }));
  assert.not.ok(network({ ID: 'n', Type: 'NAT', Colour: 'red' }));
  assert.not.ok(network({ ID: 'n', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VLAN', Settings: { IsolationId: 5000 } }] }] }] }));
  assert.not.ok(endpoint({ ID: 'e', HostComputeNetwork: 'n', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 1, InternalPort: 1, ExternalPort: 1 } }] }));
  assert.not.ok(endpoint({ ID: 'e' }));
  assert.not.ok(lb({ ID: 'l', HostComputeEndpoints: [], PortMappings: [] }));
  assert.ok(endpoint({ ID: 'e', HostComputeNetwork: 'n' }));
});

test.run();
