// docs/model.schema.json and src/model/validate.ts are one truth told twice: the state the store
// writes validates against the schema; one table of inputs goes through both (the schema, and the
// validators with the daemon's transport check behind them) and both must answer the same; and the
// patterns the schema spells out for addresses, prefixes, MACs, host:port and ACL lists are fuzzed
// against the parsers the validators use. What a JSON Schema cannot say (references, uniqueness,
// order within a value, the config's binding policy) is listed in the table as semantic, with the
// reason, and checked to be refused by netplane while the schema lets it pass.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { spawnSync } from 'node:child_process';
import Ajv, { type ValidateFunction } from 'ajv';
import { Store } from '../src/model/store.js';
import { saveState } from '../src/model/persist.js';
import {
  ModelError, validateNetwork, validateEndpoint, validateNamespace, validateLoadBalancer, address, prefix, hostPort,
} from '../src/model/validate.js';
import { checkTransport } from '../src/host.js';
import type { Transport } from '../src/model/types.js';

const schema = JSON.parse(readFileSync(new URL('../docs/model.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv({ allErrors: true });
const validateState = ajv.compile(schema);
const compiled = new Map<string, ValidateFunction>();
const def = (name: string): ValidateFunction => {
  if (!compiled.has(name)) compiled.set(name, new Ajv({ allErrors: true }).compile({ ...schema, $id: undefined, $ref: `#/definitions/${name}` }));
  return compiled.get(name)!;
};

test('a state the store wrote is valid against the schema', () => {
  const s = new Store();
  s.create('network', { ID: 'nat', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }], Policies: [{ Type: 'VLAN', Settings: { IsolationId: 7 } }] }, { IpAddressPrefix: 'fd00:20::/64' }] }],
    Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Block', Direction: 'In', Priority: 10, RemotePorts: '22', Protocols: 6 } }, { Type: 'OutBoundNAT', Settings: { Exceptions: ['10.0.0.0/8', '192.168.1.1'] } }],
    MacPool: { Ranges: [{ StartMacAddress: '02-00-00-00-01-00', EndMacAddress: '02-00-00-00-01-FF' }] }, Dns: { Domain: 'lan', ServerList: ['172.20.0.1', 'fd00:20::1'] },
    Dhcp: { UnknownClients: 'Lease', Pool: { StartAddress: '172.20.0.200', EndAddress: '172.20.0.250' }, LeaseTime: 600 } });
  s.create('namespace', { ID: 'ns', Type: 'Guest' });
  s.create('endpoint', { ID: 'web', HostComputeNetwork: 'nat', HostComputeNamespace: 'ns', Capture: 'web.pcap', AclDefaults: { In: 'Block' },
    Transport: { Type: 'websocket', Listen: '127.0.0.1:8086', AllowedOrigins: ['http://localhost:8000'] },
    Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }, { Type: 'ACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 100, LocalPorts: ['80', '8000-8999'], LocalAddresses: '172.20.0.0/24, fd00:20::/64' } }] });
  s.create('endpoint', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'stream', Listen: 'unix:vm.sock' }, IpConfigurations: [{ IpAddress: 'fd00:20::5', PrefixLength: 64 }] });
  s.create('loadbalancer', { ID: 'lb', HostComputeEndpoints: ['web'], FrontendVIPs: ['192.168.1.80'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80, DistributionType: 'SourceIP' }], Flags: { DSR: false } });
  const dir = mkdtempSync(join(tmpdir(), 'netplane-schema-'));
  saveState(dir, s.snapshot());
  const doc = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  assert.ok(validateState(doc), JSON.stringify(validateState.errors));
});

// ---- one table, both sides ------------------------------------------------------------------------

type Kind = 'network' | 'endpoint' | 'namespace' | 'loadbalancer';
const SCHEMA: Record<Kind, string> = { network: 'HostComputeNetwork', endpoint: 'HostComputeEndpoint', namespace: 'HostComputeNamespace', loadbalancer: 'HostComputeLoadBalancer' };
const VALIDATE: Record<Kind, (v: unknown) => unknown> = { network: validateNetwork, endpoint: validateEndpoint, namespace: validateNamespace, loadbalancer: validateLoadBalancer };

// Where netplane refuses: the validator; the daemon's transport check before anything opens
// (checkTransport, under the default binding policy: loopback only, no wildcard, no port below 1024);
// UdpTransport.open (a Peer must be numeric: what datagrams come from); or the store (references and
// uniqueness across objects).
type Where = 'validate' | 'transport' | 'open' | 'store';
const socketDir = mkdtempSync(join(tmpdir(), 'netplane-schema-sockets-'));

function netplane(kind: Kind, v: unknown): { ok: true } | { ok: false; by: Where; error: ModelError } {
  const refusal = (by: Where, e: unknown) => {
    if (!(e instanceof ModelError)) throw e;   // anything else (a TypeError) is a crash: a bug
    return { ok: false as const, by, error: e };
  };
  try { VALIDATE[kind](v); } catch (e) { return refusal('validate', e); }
  const t = (v as { Transport?: Transport }).Transport;
  if (kind === 'endpoint' && t) {
    try { checkTransport(t, 'Transport', { bind: {}, socketDir, reserved: [] }); } catch (e) { return refusal('transport', e); }
    if (t.Type === 'udp' && t.Peer && !isIP(hostPort(t.Peer, 'Transport.Peer').host)) {
      return { ok: false, by: 'open', error: new ModelError('InvalidArgument', 'Transport.Peer', 'UdpTransport.open: must be a numeric IP address') };
    }
  }
  if (kind === 'endpoint' || kind === 'loadbalancer') {
    try { base().create(kind, v); } catch (e) { return refusal('store', e); }
  }
  return { ok: true };
}

// The store the endpoint and load balancer rows are created in: network n (10.0.0.0/24, fd00::/64)
// with endpoint taken (MAC 02:00:00:00:00:01, address 10.0.0.9).
function base(): Store {
  const s = new Store();
  s.create('network', { ID: 'n', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }, { IpAddressPrefix: 'fd00::/64' }] }] });
  s.create('endpoint', { ID: 'taken', HostComputeNetwork: 'n', MacAddress: '02:00:00:00:00:01', IpConfigurations: [{ IpAddress: '10.0.0.9' }] });
  return s;
}

interface Row {
  kind: Kind;
  value: Record<string, unknown>;
  // refuse: both refuse (netplane where `by` says, the validator by default); accept: both accept;
  // semantic: the schema cannot say it, netplane refuses (`by`, `why`).
  want: 'refuse' | 'accept' | 'semantic';
  by?: Where;
  field?: string | RegExp;   // the field netplane's refusal names
  why?: string;
}

const net = (extra: Record<string, unknown>) => ({ ID: 'n', Type: 'Internal', ...extra });
const subnet = (p: unknown) => net({ Ipams: [{ Subnets: [{ IpAddressPrefix: p }] }] });
const nacl = (s: Record<string, unknown>) => net({ Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 100, ...s } }] });
const ep = (extra: Record<string, unknown>) => ({ ID: 'e', HostComputeNetwork: 'n', ...extra });
const eacl = (s: Record<string, unknown>) => ep({ Policies: [{ Type: 'ACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 100, ...s } }] });
const pm = (s: Record<string, unknown>) => ep({ Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080, ...s } }] });
const tr = (t: Record<string, unknown>) => ep({ Transport: t });
const ws = (extra: Record<string, unknown>) => tr({ Type: 'websocket', Listen: '127.0.0.1:8086', ...extra });
const lb = (extra: Record<string, unknown>) => ({ ID: 'l', HostComputeEndpoints: ['taken'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80 }], ...extra });

const refuse = (kind: Kind, value: Record<string, unknown>, field?: string | RegExp, by: Where = 'validate'): Row => ({ kind, value, want: 'refuse', field, by });
const accept = (kind: Kind, value: Record<string, unknown>): Row => ({ kind, value, want: 'accept' });
const semantic = (kind: Kind, value: Record<string, unknown>, by: Where, field: string | RegExp, why: string): Row => ({ kind, value, want: 'semantic', by, field, why });

const dnet = (d: unknown) => net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }], Dhcp: d });
const pool = (StartAddress: unknown, EndAddress: unknown) => dnet({ Pool: { StartAddress, EndAddress } });

const ovl = (extra: Record<string, unknown> = {}, vsid: unknown = 42) => ({ ID: 'n', Type: 'Overlay', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: vsid } }] }] }], ...extra });
const remote = (extra: Record<string, unknown> = {}) => ep({ IsRemoteEndpoint: true, MacAddress: '02:00:00:00:00:42', IpConfigurations: [{ IpAddress: '10.0.0.42' }], Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: '192.0.2.2' } }], ...extra });

const ROWS: Row[] = [
  // Overlay networks and remote endpoints (issue 15)
  accept('network', ovl()),
  accept('network', ovl({ MTU: 1450, MssClamp: 'Mtu', Dhcp: { Enabled: false }, SilentGateway: true })),
  accept('network', ovl({}, 16777215)),
  accept('network', ovl({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 7 } }] }, { IpAddressPrefix: 'fd00::/64', Policies: [{ Type: 'VSID', Settings: { IsolationId: 7 } }] }] }] })),
  refuse('network', ovl({}, 0), 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId'),
  refuse('network', ovl({}, 16777216), 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId'),
  refuse('network', ovl({}, '42'), 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId'),
  refuse('network', { ID: 'n', Type: 'Overlay' }, 'Ipams'),
  refuse('network', ovl({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }] }), 'Ipams[0].Subnets[0].Policies'),
  refuse('network', ovl({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VLAN', Settings: { IsolationId: 5 } }] }] }] }), 'Ipams[0].Subnets[0].Policies[0].Type'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 5 } }] }] }] }), 'Ipams[0].Subnets[0].Policies[0].Type'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VLAN', Settings: { IsolationId: 4095 } }] }] }] }), 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId'),
  semantic('network', ovl({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 7 } }] }, { IpAddressPrefix: 'fd00::/64', Policies: [{ Type: 'VSID', Settings: { IsolationId: 8 } }] }] }] }),
    'validate', 'Ipams[0].Subnets[1].Policies[0].Settings.IsolationId', 'one VSID per network: the same value in two places'),
  refuse('endpoint', remote({ MacAddress: undefined }), 'MacAddress'),
  refuse('endpoint', remote({ IpConfigurations: [] }), 'IpConfigurations'),
  refuse('endpoint', remote({ Policies: [] }), 'Policies'),
  refuse('endpoint', remote({ Transport: { Type: 'udp', Bind: '127.0.0.1:6000' } }), 'Transport'),
  refuse('endpoint', remote({ Capture: 'x.pcap' }), 'Capture'),
  refuse('endpoint', remote({ Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: '192.0.2.2' } }, { Type: 'ACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 1 } }] }), 'Policies[1].Type'),
  refuse('endpoint', remote({ Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: 'fd00::2' } }] }), 'Policies[0].Settings.ProviderAddress'),
  refuse('endpoint', remote({ Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: '192.0.2.2', Port: 4789 } }] }), 'Policies[0].Settings.Port'),
  refuse('endpoint', remote({ IsRemoteEndpoint: 'yes' }), 'IsRemoteEndpoint'),
  refuse('endpoint', ep({ Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: '192.0.2.2' } }] }), 'Policies[0].Type'),
  semantic('endpoint', remote({ Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: '224.0.0.1' } }] }), 'validate', 'Policies[0].Settings.ProviderAddress', 'a unicast address: a range of values the IPv4 pattern does not tell apart'),
  semantic('endpoint', remote(), 'store', 'IsRemoteEndpoint', 'a remote endpoint is on an Overlay network: that needs the network object'),
  // the network's DNS server (netplane's extension)
  accept('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }], DnsProxy: { Enabled: false } })),
  accept('network', net({ DnsProxy: {} })),
  refuse('network', net({ DnsProxy: false }), 'DnsProxy'),
  refuse('network', net({ DnsProxy: { Enabled: 'no' } }), 'DnsProxy.Enabled'),
  refuse('network', net({ DnsProxy: { Domain: 'x.example' } }), 'DnsProxy.Domain'),
  refuse('network', { ID: 'n', Type: 'Private', DnsProxy: {} }, 'DnsProxy'),
  refuse('network', { ID: 'n', Type: 'Transparent', DnsProxy: { Enabled: false } }, 'DnsProxy'),
  // router advertisements and DHCPv6 (netplane's extensions)
  accept('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: 'fd00::/64' }] }], RouterAdvertisement: { Enabled: false }, Dhcp6: { Enabled: true } })),
  refuse('network', net({ RouterAdvertisement: true }), 'RouterAdvertisement'),
  refuse('network', net({ RouterAdvertisement: { Enabled: 1 } }), 'RouterAdvertisement.Enabled'),
  refuse('network', net({ Dhcp6: { Enabled: 'yes' } }), 'Dhcp6.Enabled'),
  refuse('network', net({ Dhcp6: { Pool: {} } }), 'Dhcp6.Pool'),
  refuse('network', { ID: 'n', Type: 'Private', Dhcp6: {} }, 'Dhcp6'),
  refuse('network', { ID: 'n', Type: 'L2Bridge', RouterAdvertisement: {} }, 'RouterAdvertisement'),
  // the network's DHCP server (netplane's extension)
  refuse('network', dnet('yes'), 'Dhcp'),
  refuse('network', dnet({ Enabled: 'yes' }), 'Dhcp.Enabled'),
  refuse('network', dnet({ UnknownClients: 'Allow' }), 'Dhcp.UnknownClients'),
  refuse('network', dnet({ LeaseTime: 30 }), 'Dhcp.LeaseTime'),
  refuse('network', dnet({ LeaseTime: 90.5 }), 'Dhcp.LeaseTime'),
  refuse('network', dnet({ LeaseTime: 2 ** 32 }), 'Dhcp.LeaseTime'),
  refuse('network', dnet({ Range: '10.0.0.100-10.0.0.200' }), 'Dhcp.Range'),
  refuse('network', pool('10.0.0.300', '10.0.0.200'), 'Dhcp.Pool.StartAddress'),
  refuse('network', pool('fd00::5', '10.0.0.200'), 'Dhcp.Pool.StartAddress'),
  refuse('network', dnet({ Pool: { StartAddress: '10.0.0.100' } }), 'Dhcp.Pool.EndAddress'),
  refuse('network', dnet({ Pool: { StartAddress: '10.0.0.100', EndAddress: '10.0.0.200', Size: 5 } }), 'Dhcp.Pool.Size'),
  refuse('network', dnet({ Pool: '10.0.0.100-10.0.0.200' }), 'Dhcp.Pool'),
  refuse('network', dnet({ UnknownClients: 'Refuse', Pool: { StartAddress: '10.0.0.100', EndAddress: '10.0.0.200' } }), 'Dhcp.Pool'),
  refuse('network', { ID: 'n', Type: 'Private', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }], Dhcp: {} }, 'Dhcp'),
  refuse('network', { ID: 'n', Type: 'L2Bridge', Dhcp: { Enabled: false } }, 'Dhcp'),
  semantic('network', pool('10.0.1.100', '10.0.1.200'), 'validate', 'Dhcp.Pool.StartAddress', 'the pool lies in the gateway\'s subnet (a relation between two fields)'),
  semantic('network', pool('10.0.0.0', '10.0.0.200'), 'validate', 'Dhcp.Pool.StartAddress', 'not the subnet\'s network address'),
  semantic('network', pool('10.0.0.100', '10.0.0.255'), 'validate', 'Dhcp.Pool.EndAddress', 'not the subnet\'s broadcast address'),
  semantic('network', pool('10.0.0.200', '10.0.0.100'), 'validate', 'Dhcp.Pool.EndAddress', 'the end is not before the start (an order of two addresses)'),
  semantic('network', pool('10.0.0.1', '10.0.0.100'), 'validate', 'Dhcp.Pool.StartAddress', 'not the gateway (the subnet\'s first address, or its default route\'s NextHop)'),
  semantic('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Routes: [{ NextHop: '10.0.0.150', DestinationPrefix: '0.0.0.0/0' }] }] }], Dhcp: { Pool: { StartAddress: '10.0.0.100', EndAddress: '10.0.0.200' } } }), 'validate', 'Dhcp.Pool', 'the pool does not contain the gateway'),
  semantic('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: 'fd00::/64' }] }], Dhcp: {} }), 'validate', 'Dhcp', 'DHCPv4 needs an IPv4 subnet (unless Enabled is false)'),
  accept('network', dnet({})),
  accept('network', dnet({ Enabled: false })),
  accept('network', dnet({ UnknownClients: 'Refuse', LeaseTime: 600 })),
  accept('network', pool('10.0.0.2', '10.0.0.254')),
  accept('network', net({ Dhcp: { Enabled: false } })),
  accept('network', { ID: 'n', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }], Dhcp: { UnknownClients: 'Lease', Pool: { StartAddress: '10.0.0.128', EndAddress: '10.0.0.254' }, LeaseTime: 86400 } }),

  // the seven probes of issue 11, and more of their kind
  refuse('network', subnet('999.0.0.0/24'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('10.0.0.0/99'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: 'hello' }] }), 'IpConfigurations[0].IpAddress'),
  refuse('endpoint', eacl({ LocalPorts: '80-70000' }), 'Policies[0].Settings.LocalPorts'),
  refuse('endpoint', ep({ MacAddress: '01:00:5e:00:00:01' }), 'MacAddress'),
  refuse('endpoint', ws({ Listen: 'nonsense' }), 'Transport.Listen'),
  refuse('endpoint', ws({ Listen: 'ws://127.0.0.1:8086/' }), 'Transport.Listen'),
  // CIDR and addresses
  refuse('network', subnet('fd00::/129'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('10.0.0.0'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('10.0.0.0/24/8'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('010.0.0.0/24'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('10.0.0.0/-8'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('10.0.0.0/0x18'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('fd00:::/64'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet('10.0.0.0/31'), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', subnet(24), 'Ipams[0].Subnets[0].IpAddressPrefix'),
  refuse('network', { ID: 'n', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: 'fd00::/64' }] }] }, 'Ipams'),
  refuse('network', { ID: 'n', Type: 'NAT' }, 'Ipams'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Routes: [{ NextHop: 'gateway', DestinationPrefix: '0.0.0.0/0' }] }] }] }), 'Ipams[0].Subnets[0].Routes[0].NextHop'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Routes: [{ NextHop: '10.0.0.1', DestinationPrefix: '0.0.0.0' }] }] }] }), 'Ipams[0].Subnets[0].Routes[0].DestinationPrefix'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Routes: [{ NextHop: '10.0.0.1', DestinationPrefix: '0.0.0.0/0', Metric: 300 }] }] }] }), 'Ipams[0].Subnets[0].Routes[0].Metric'),
  refuse('network', net({ Dns: { ServerList: ['dns.google'] } }), 'Dns.ServerList[0]'),
  refuse('network', net({ SilentGateway: 'yes' }), 'SilentGateway'),
  refuse('network', { ID: 'n', Type: 'Private', SilentGateway: true }, 'SilentGateway'),
  refuse('network', net({ MssClamp: 535 }), 'MssClamp'),
  refuse('network', net({ MssClamp: 65496 }), 'MssClamp'),
  refuse('network', net({ MssClamp: 1400.5 }), 'MssClamp'),
  refuse('network', net({ MssClamp: 'mtu' }), 'MssClamp'),
  refuse('network', net({ MssClamp: '1400' }), 'MssClamp'),
  refuse('network', { ID: 'n', Type: 'Private', MssClamp: 1400 }, 'MssClamp'),
  refuse('network', { ID: 'n', Type: 'Transparent', MssClamp: 'Mtu' }, 'MssClamp'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: '10.0.0.256' }] }), 'IpConfigurations[0].IpAddress'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: '10.0.0.05' }] }), 'IpConfigurations[0].IpAddress'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: '10.0.0.5/24' }] }), 'IpConfigurations[0].IpAddress'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: 'fe80::1%eth0' }] }), 'IpConfigurations[0].IpAddress'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: '10.0.0.5', PrefixLength: 33 }] }), 'IpConfigurations[0].PrefixLength'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: 'fd00::5', PrefixLength: 129 }] }), 'IpConfigurations[0].PrefixLength'),
  refuse('loadbalancer', lb({ FrontendVIPs: ['vip.example'] }), 'FrontendVIPs[0]'),
  refuse('loadbalancer', lb({ SourceVIP: '1.2.3' }), 'SourceVIP'),
  // ports
  refuse('endpoint', pm({ ExternalPort: 0 }), 'Policies[0].Settings.ExternalPort'),
  refuse('endpoint', pm({ InternalPort: 70000 }), 'Policies[0].Settings.InternalPort'),
  refuse('endpoint', pm({ ExternalPort: '8080' }), 'Policies[0].Settings.ExternalPort'),
  refuse('endpoint', pm({ Protocol: 1 }), 'Policies[0].Settings.Protocol'),
  refuse('endpoint', pm({ VIP: 'fd00::1' }), 'Policies[0].Settings.VIP'),
  refuse('endpoint', eacl({ RemotePorts: '80,,abc' }), 'Policies[0].Settings.RemotePorts'),
  refuse('endpoint', eacl({ LocalPorts: '80 - 90' }), 'Policies[0].Settings.LocalPorts'),
  refuse('endpoint', eacl({ LocalPorts: '123456' }), 'Policies[0].Settings.LocalPorts'),
  refuse('endpoint', eacl({ LocalPorts: 80 }), 'Policies[0].Settings.LocalPorts'),
  refuse('endpoint', eacl({ LocalPorts: [80] }), 'Policies[0].Settings.LocalPorts'),
  refuse('loadbalancer', lb({ PortMappings: [{ Protocol: 6, InternalPort: 0, ExternalPort: 80 }] }), 'PortMappings[0].InternalPort'),
  refuse('loadbalancer', lb({ PortMappings: [] }), 'PortMappings'),
  refuse('loadbalancer', { ID: 'l', HostComputeEndpoints: ['taken'] }, 'PortMappings'),
  // unknown fields, at every level
  refuse('network', net({ Colour: 'red' }), 'Colour'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Gateway: '10.0.0.1' }] }] }), 'Ipams[0].Subnets[0].Gateway'),
  refuse('network', nacl({ Ports: '80' }), 'Policies[0].Settings.Ports'),
  refuse('endpoint', ep({ Colour: 'red' }), 'Colour'),
  refuse('endpoint', ep({ IpConfigurations: [{ IpAddress: '10.0.0.5', Gateway: '10.0.0.1' }] }), 'IpConfigurations[0].Gateway'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:5000', Listen: '127.0.0.1:5001' }), 'Transport.Listen'),
  refuse('endpoint', ws({ Path: '/net' }), 'Transport.Path'),
  refuse('namespace', { ID: 'ns', Colour: 'red' }, 'Colour'),
  refuse('loadbalancer', lb({ Flags: { DSR: false, Sticky: true } }), 'Flags.Sticky'),
  // MACs
  refuse('endpoint', ep({ MacAddress: 'ff:ff:ff:ff:ff:ff' }), 'MacAddress'),
  refuse('endpoint', ep({ MacAddress: '03:00:00:00:00:01' }), 'MacAddress'),
  refuse('endpoint', ep({ MacAddress: '02:00:00:00:00' }), 'MacAddress'),
  refuse('endpoint', ep({ MacAddress: '02:00:00:00:00:01:02' }), 'MacAddress'),
  refuse('endpoint', ep({ MacAddress: '02:00-00:00:00:01' }), 'MacAddress'),
  refuse('endpoint', ep({ MacAddress: '0200.0000.0001' }), 'MacAddress'),
  refuse('endpoint', ep({ MacAddress: '02:00:00:00:00:0g' }), 'MacAddress'),
  refuse('network', net({ MacPool: { Ranges: [{ StartMacAddress: '01:00:5e:00:00:00', EndMacAddress: '01:00:5e:00:00:ff' }] } }), 'MacPool.Ranges[0].StartMacAddress'),
  // ACL action, direction, priority, protocols, addresses
  refuse('network', nacl({ Action: 'Deny' }), 'Policies[0].Settings.Action'),
  refuse('network', nacl({ Direction: 'Both' }), 'Policies[0].Settings.Direction'),
  refuse('network', nacl({ Priority: 70000 }), 'Policies[0].Settings.Priority'),
  refuse('network', nacl({ Priority: 1.5 }), 'Policies[0].Settings.Priority'),
  refuse('network', net({ Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Allow', Direction: 'In' } }] }), 'Policies[0].Settings.Priority'),
  refuse('network', nacl({ RuleType: 'Port' }), 'Policies[0].Settings.RuleType'),
  refuse('network', nacl({ Id: 5 }), 'Policies[0].Settings.Id'),
  refuse('network', nacl({ Protocols: '300' }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: '0x11' }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: '1e1' }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: '-0' }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: 'tcp' }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: true }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: ['6'] }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ Protocols: 257 }), 'Policies[0].Settings.Protocols'),
  refuse('network', nacl({ LocalAddresses: '10.0.0.0/33' }), 'Policies[0].Settings.LocalAddresses'),
  refuse('network', nacl({ RemoteAddresses: 'fd00::/64, hello' }), 'Policies[0].Settings.RemoteAddresses'),
  refuse('network', nacl({ RemoteAddresses: '10.0.0.0 /8' }), 'Policies[0].Settings.RemoteAddresses'),
  refuse('network', nacl({ RemoteAddresses: { any: true } }), 'Policies[0].Settings.RemoteAddresses'),
  refuse('network', net({ Policies: [{ Type: 'QoS', Settings: {} }] }), 'Policies[0].Type'),
  refuse('endpoint', ep({ Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 1 } }] }), 'Policies[0].Type'),
  refuse('endpoint', ep({ AclDefaults: { In: 'Deny' } }), 'AclDefaults.In'),
  refuse('network', net({ GroupFwdMask: 1 }), 'GroupFwdMask'),
  refuse('network', net({ GroupFwdMask: 0xfffc }), 'GroupFwdMask'),
  refuse('network', net({ GroupFwdMask: 0x10000 }), 'GroupFwdMask'),
  refuse('network', net({ GroupFwdMask: 8.5 }), 'GroupFwdMask'),
  refuse('network', net({ GroupFwdMask: '8' }), 'GroupFwdMask'),
  accept('network', net({ GroupFwdMask: 0xfff8 })),
  accept('network', net({ GroupFwdMask: 0 })),
  refuse('network', net({ TcpTracking: { Liberal: 'yes' } }), 'TcpTracking.Liberal'),
  refuse('network', net({ TcpTracking: { Loose: true } }), 'TcpTracking.Loose'),
  refuse('network', net({ Policies: [{ Type: 'OutBoundNAT', Settings: { VirtualIP: '::1' } }] }), 'Policies[0].Settings.VirtualIP'),
  refuse('network', net({ Policies: [{ Type: 'OutBoundNAT', Settings: { Exceptions: ['fd00::/8'] } }] }), 'Policies[0].Settings.Exceptions[0]'),
  refuse('network', net({ Policies: [{ Type: 'OutBoundNAT', Settings: { Exceptions: ['10.0.0.0/8/8'] } }] }), 'Policies[0].Settings.Exceptions[0]'),
  // Transport forms
  refuse('endpoint', tr({ Type: 'tcp', Listen: '127.0.0.1:5000' }), 'Transport.Type'),
  refuse('endpoint', tr({ Type: 'udp' }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1' }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:0' }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:70000' }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: 5000 }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:5000', Peer: '127.0.0.1:x' }), 'Transport.Peer'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '[::1:5000' }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '[127.0.0.1]:5000' }), 'Transport.Bind'),
  refuse('endpoint', tr({ Type: 'udp', Bind: 'myhost:5000' }), 'Transport.Bind', 'transport'),
  refuse('endpoint', tr({ Type: 'udp', Bind: 'LOCALHOST:5000' }), 'Transport.Bind', 'transport'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:5000', Peer: '0.0.0.0:5001' }), 'Transport.Peer', 'transport'),
  refuse('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:5000', Peer: 'localhost:5001' }), 'Transport.Peer', 'open'),
  refuse('endpoint', tr({ Type: 'stream', Listen: '127.0.0.1:5000' }), 'Transport.Listen'),
  refuse('endpoint', tr({ Type: 'stream', Listen: 'tcp:127.0.0.1' }), 'Transport.Listen'),
  refuse('endpoint', tr({ Type: 'stream', Listen: 'unix:../evil.sock' }), 'Transport.Listen'),
  refuse('endpoint', tr({ Type: 'stream', Listen: 'unix:/run/evil.sock' }), 'Transport.Listen'),
  refuse('endpoint', tr({ Type: 'stream', Listen: 'unix:.hidden' }), 'Transport.Listen'),
  refuse('endpoint', tr({ Type: 'stream', Listen: 'unix:' }), 'Transport.Listen'),
  refuse('endpoint', tr({ Type: 'stream', Listen: 'tcp:*:5000' }), 'Transport.Listen', 'transport'),
  refuse('endpoint', ws({ Listen: 'ws://127.0.0.1:8086' }), 'Transport.Listen', 'transport'),
  refuse('endpoint', ws({ Listen: '127.0.0.1' }), 'Transport.Listen'),
  refuse('endpoint', ws({ AllowedOrigins: ['https://copy.sh/'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['null'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['*'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['HTTPS://COPY.SH'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['http://localhost:80'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['https://copy.sh:443'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['file:///tmp/v86.html'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: ['copy.sh'] }), 'Transport.AllowedOrigins[0]'),
  refuse('endpoint', ws({ AllowedOrigins: 'http://localhost:8000' }), 'Transport.AllowedOrigins'),
  // Capture names
  refuse('endpoint', ep({ Capture: 'a/b.pcap' }), 'Capture'),
  refuse('endpoint', ep({ Capture: '../x.pcap' }), 'Capture'),
  refuse('endpoint', ep({ Capture: '..' }), 'Capture'),
  refuse('endpoint', ep({ Capture: '.hidden' }), 'Capture'),
  refuse('endpoint', ep({ Capture: '/var/log/x.pcap' }), 'Capture'),
  refuse('endpoint', ep({ Capture: '' }), 'Capture'),
  refuse('endpoint', ep({ Capture: `${'a'.repeat(101)}` }), 'Capture'),
  // IDs, names, kinds
  refuse('network', { ID: '-n', Type: 'Internal' }, 'ID'),
  refuse('network', { ID: 'a/b', Type: 'Internal' }, 'ID'),
  refuse('network', { ID: 'x'.repeat(129), Type: 'Internal' }, 'ID'),
  refuse('network', { ID: 'n', Type: 'Mesh' }, 'Type'),
  refuse('network', net({ Name: 'x'.repeat(257) }), 'Name'),
  refuse('network', net({ Ipams: [{ Type: 'DHCP', Subnets: [] }] }), 'Ipams[0].Type'),
  refuse('network', net({ Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24', Policies: [{ Type: 'VLAN', Settings: { IsolationId: 5000 } }] }] }] }), 'Ipams[0].Subnets[0].Policies[0].Settings.IsolationId'),
  refuse('endpoint', { ID: 'e' }, 'HostComputeNetwork'),
  refuse('endpoint', ep({ HostComputeNamespace: '' }), 'HostComputeNamespace'),
  refuse('namespace', { ID: 'ns', Type: 'Container' }, 'Type'),
  refuse('loadbalancer', lb({ HostComputeEndpoints: ['a b'] }), 'HostComputeEndpoints[0]'),
  refuse('loadbalancer', lb({ PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80, DistributionType: 'RoundRobin' }] }), 'PortMappings[0].DistributionType'),
  refuse('loadbalancer', lb({ Flags: { DSR: 'yes' } }), 'Flags.DSR'),

  // what both accept, in every form the validator allows
  accept('network', { ID: 'nat', Type: 'NAT', Name: 'the NAT', Ipams: [{ Type: 'Static', Subnets: [{ IpAddressPrefix: '172.20.0.5/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0', Metric: 0 }] }, { IpAddressPrefix: 'FD00:20::/64', Policies: [{ Type: 'VLAN', Settings: { IsolationId: 4094 } }] }] }],
    Policies: [{ Type: 'OutBoundNAT', Settings: { VirtualIP: '192.168.1.1', Exceptions: ['10.0.0.0/8', '192.168.1.1'] } }], MacPool: { Ranges: [{ StartMacAddress: '02-6E-70-01-00-00', EndMacAddress: '02:6e:70:01:ff:ff' }] }, Dns: { Domain: 'lan', Search: ['lan'], ServerList: ['1.1.1.1', '::ffff:1.1.1.1'], Options: ['ndots:1'] } }),
  accept('network', subnet('10.0.0.0/024')),
  accept('network', net({ SilentGateway: true })),
  accept('network', net({ MssClamp: 536 })),
  accept('network', net({ MssClamp: 65495 })),
  accept('network', { ID: 'n', Type: 'NAT', MssClamp: 'Mtu', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }] }),
  accept('network', { ID: 'n', Type: 'NAT', SilentGateway: false, Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }] }] }),
  accept('network', subnet('10.0.0.0/30')),
  accept('network', subnet('::/0')),
  accept('network', net({ Ipams: [{}] })),
  accept('network', net({ MacPool: {} })),
  accept('network', net({ TcpTracking: { Liberal: true, Pickup: false } })),
  accept('network', net({ TcpTracking: {} })),
  accept('network', nacl({ Id: 'web', Protocols: ' 6, 17 ,', LocalAddresses: '10.0.0.0/8, fd00::/64, 192.168.1.1', RemoteAddresses: '', LocalPorts: '80, 8000-8999, 0', RemotePorts: '00443', RuleType: 'Switch', Priority: 0 })),
  accept('network', nacl({ Protocols: 6, LocalAddresses: ['10.0.0.0/8', ' ::1 '], LocalPorts: ['80', '8000-8999'], Priority: 65535 })),
  accept('network', nacl({ Protocols: [1, 6, 17, 256] })),
  accept('network', nacl({ Protocols: '256' })),
  accept('endpoint', ep({ Name: 'web', MacAddress: '02:AB:cd:00:00:05', IpConfigurations: [{ IpAddress: '10.0.0.5', PrefixLength: 24 }, { IpAddress: 'fd00::5', PrefixLength: 64 }],
    Routes: [{ NextHop: 'fd00::1', DestinationPrefix: '::/0' }], AclDefaults: { In: 'Block', Out: 'Allow' }, Capture: 'web_1.pcap',
    Policies: [{ Type: 'PortMapping', Settings: { Protocol: 17, InternalPort: 53, ExternalPort: 5353, VIP: '192.168.1.80' } }, { Type: 'OutBoundNAT', Settings: {} }] })),
  accept('endpoint', ep({ Status: { Transport: 'up', Since: '2026-01-01T00:00:00.000Z', Address: 'unix:/var/lib/netplane/sockets/vm.sock' } })),
  accept('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:6000', Peer: '127.0.0.1:6001' })),
  accept('endpoint', tr({ Type: 'udp', Bind: 'localhost:6000' })),
  accept('endpoint', tr({ Type: 'udp', Bind: '[::1]:6000', Peer: '[::1]:6001' })),
  accept('endpoint', tr({ Type: 'udp', Bind: '::1:6000', Peer: '127.0.0.1:53' })),
  accept('endpoint', tr({ Type: 'udp', Bind: '127.0.0.1:06000' })),
  accept('endpoint', tr({ Type: 'stream', Listen: 'tcp:127.0.0.1:10002' })),
  accept('endpoint', tr({ Type: 'stream', Listen: 'tcp:[::1]:10002' })),
  accept('endpoint', tr({ Type: 'stream', Listen: 'tcp:localhost:10002' })),
  accept('endpoint', tr({ Type: 'stream', Listen: 'unix:vm-1.sock' })),
  accept('endpoint', ws({ AllowedOrigins: ['http://localhost:8000', 'https://copy.sh', 'http://127.0.0.1:8000', 'http://[::1]:8000', 'https://v86.example.org', 'http://localhost:0'] })),
  accept('endpoint', ws({ AllowedOrigins: [] })),
  accept('endpoint', ws({ AllowedOrigins: ['http://dev_box.local:3000', 'http://example.123a', 'wss://a.', 'ftp://x'] })),
  accept('namespace', { ID: 'ns' }),
  accept('namespace', { ID: 'ns', Type: 'GuestDefault' }),
  accept('loadbalancer', lb({ SourceVIP: '10.0.0.1', FrontendVIPs: ['192.168.1.80', 'fd00::80'], PortMappings: [{ Protocol: 17, InternalPort: 53, ExternalPort: 53, DistributionType: 'SourceIPProtocol' }], Flags: { DSR: true } })),
  accept('loadbalancer', { ID: 'l', PortMappings: [{ Protocol: 6, InternalPort: 8080, ExternalPort: 80 }] }),

  // what only netplane can check
  semantic('endpoint', ep({ IpConfigurations: [{ IpAddress: '192.168.5.5' }] }), 'store', 'IpConfigurations[0].IpAddress', 'an address must lie in a subnet of its network: that needs the network object'),
  semantic('endpoint', ep({ MacAddress: '02:00:00:00:00:01' }), 'store', 'MacAddress', 'a MAC is unique within its network: that needs the other endpoints'),
  semantic('endpoint', ep({ IpConfigurations: [{ IpAddress: '10.0.0.9' }] }), 'store', 'IpConfigurations[0].IpAddress', 'an address is unique within its network'),
  semantic('endpoint', ep({ HostComputeNetwork: 'nowhere' }), 'store', 'HostComputeNetwork', 'a reference to another object'),
  semantic('endpoint', ep({ HostComputeNamespace: 'nowhere' }), 'store', 'HostComputeNamespace', 'a reference to another object'),
  semantic('loadbalancer', lb({ HostComputeEndpoints: ['nowhere'] }), 'store', 'HostComputeEndpoints[0]', 'a reference to another object'),
  semantic('endpoint', eacl({ LocalPorts: '9000-8000' }), 'validate', 'Policies[0].Settings.LocalPorts', 'a range a-b needs a <= b: a comparison of two numbers inside one string'),
  semantic('network', net({ MacPool: { Ranges: [{ StartMacAddress: '02:00:00:00:00:ff', EndMacAddress: '02:00:00:00:00:00' }] } }), 'validate', 'MacPool.Ranges[0].EndMacAddress', 'StartMacAddress <= EndMacAddress compares two fields'),
  semantic('loadbalancer', lb({ Flags: { DSR: true }, PortMappings: [{ Protocol: 6, InternalPort: 8080, ExternalPort: 80 }] }), 'validate', 'PortMappings[0].InternalPort', 'DSR needs InternalPort equal to ExternalPort: two fields compared'),
  semantic('endpoint', ws({ AllowedOrigins: ['http://[0::1]:8000'] }), 'validate', 'Transport.AllowedOrigins[0]', 'an origin must be exactly what a browser sends (URL.origin): IPv6 in its canonical form'),
  semantic('endpoint', ws({ AllowedOrigins: ['http://xn--a.example'] }), 'validate', 'Transport.AllowedOrigins[0]', 'an "xn--" label must be valid punycode (IDNA), which URL checks'),
  semantic('network', net({ Name: '😀'.repeat(200) }), 'validate', 'Name', 'the validator counts UTF-16 units (400 here), JSON Schema counts characters (200)'),
  semantic('endpoint', tr({ Type: 'udp', Bind: '192.168.1.5:6000' }), 'transport', 'Transport.Bind', 'the binding policy is the daemon config\'s: loopback only by default, others with transports.allowAddresses'),
  semantic('endpoint', tr({ Type: 'udp', Bind: '0.0.0.0:6000' }), 'transport', 'Transport.Bind', 'wildcard addresses need transports.allowWildcard in the daemon config'),
  semantic('endpoint', tr({ Type: 'stream', Listen: 'tcp:127.0.0.1:80' }), 'transport', 'Transport.Listen', 'ports below 1024 need transports.allowPrivilegedPorts in the daemon config'),
];

test('one table through the schema and the validators: both refuse or both accept', () => {
  const wrong: string[] = [];
  for (const row of ROWS) {
    const label = `${row.kind} ${JSON.stringify(row.value)}`;
    const schemaOk = def(SCHEMA[row.kind])(row.value);
    const n = netplane(row.kind, row.value);
    const fail = (why: string) => wrong.push(`${label}: ${why}`);
    if (row.want === 'accept') {
      if (!schemaOk) fail(`the schema refuses: ${JSON.stringify(def(SCHEMA[row.kind]).errors)}`);
      if (!n.ok) fail(`netplane refuses (${n.by}): ${n.error.message}`);
      continue;
    }
    if (row.want === 'refuse' && schemaOk) fail('the schema accepts it');
    if (row.want === 'semantic' && !schemaOk) fail(`the schema refuses it, so it is no semantic-only case: ${JSON.stringify(def(SCHEMA[row.kind]).errors)}`);
    if (n.ok) { fail('netplane accepts it'); continue; }
    if (n.by !== row.by) fail(`refused by ${n.by} (${n.error.message}), expected by ${row.by}`);
    if (row.field !== undefined && !(typeof row.field === 'string' ? n.error.field === row.field : row.field.test(n.error.field))) fail(`the refusal names ${n.error.field}, expected ${row.field} (${n.error.message})`);
  }
  assert.equal(wrong, []);
  assert.ok(ROWS.filter((r) => r.want === 'refuse').length >= 100);
});

// ---- the patterns, fuzzed against the parsers -----------------------------------------------------

// A small deterministic generator (mulberry32) of strings near the valid forms: pieces of valid
// addresses, ports and separators, mutated.
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(Number(process.env.NETPLANE_FUZZ_SEED ?? 11));
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(a: T[]): T => a[int(a.length)];
const octet = () => pick(['0', '1', '7', '9', '10', '42', '99', '100', '199', '200', '249', '250', '255', '256', '300', '00', '01', '010', '1000', '', 'a', ' 1']);
const v4 = () => Array.from({ length: pick([3, 4, 4, 4, 4, 4, 5]) }, octet).join('.');
const h16 = () => pick(['0', '1', 'a', 'F', 'ff', 'abc', 'ABCD', 'ffff', '0000', '12345', 'g', '', '00000', 'fe80', 'fd00']);
function v6(): string {
  const n = int(10);
  const groups = Array.from({ length: n }, h16);
  if (random() < 0.3 && n > 0) groups[n - 1] = v4();
  let text = groups.join(':');
  if (random() < 0.7) {
    const at = int(n + 1);
    text = `${groups.slice(0, at).join(':')}::${groups.slice(at).join(':')}`;
  }
  if (random() < 0.05) text = text.replace('::', ':::');
  if (random() < 0.05) text += '::';
  if (random() < 0.05) text += '%eth0';
  return text;
}
const ip = () => (random() < 0.4 ? v4() : v6());
const length = () => pick(['0', '1', '8', '24', '30', '31', '32', '33', '64', '99', '128', '129', '024', '0032', '', '-1', ' 8', '1e1']);
const maybeLen = () => (random() < 0.7 ? `/${length()}` : random() < 0.5 ? '' : `/${length()}/${length()}`);
const portText = () => pick(['0', '1', '80', '080', '00080', '000080', '1023', '8080', '65535', '65536', '99999', '123456', '', 'x', '-1', ' 80']);
const accepts = (f: () => unknown) => { try { f(); return true; } catch (e) { if (e instanceof ModelError) return false; throw e; } };
const N = 4000;

function agree(what: string, schemaName: string, gen: () => string, validator: (s: string) => boolean, known?: (s: string) => boolean) {
  const check = def(schemaName);
  const differ: string[] = [];
  let valid = 0;
  for (let i = 0; i < N; i++) {
    const s = gen();
    const a = check(s), b = validator(s);
    if (b) valid++;
    if (a !== b && !(known && known(s))) differ.push(`${JSON.stringify(s)}: schema ${a ? 'accepts' : 'refuses'}, validator ${b ? 'accepts' : 'refuses'}`);
  }
  assert.equal(differ.slice(0, 10), [], `${what}: ${differ.length} of ${N} differ`);
  assert.ok(valid > N / 20 && valid < N - N / 20, `${what}: the generator should give both kinds (${valid} of ${N} valid)`);
}

test('addresses: the schema\'s ipv4, ipv6 and ip patterns against the parsers', () => {
  agree('ip', 'ip', ip, (s) => accepts(() => address(s, 'f')));
  agree('ipv4', 'ipv4', v4, (s) => accepts(() => address(s, 'f')) && !s.includes(':'));
  agree('ipv6', 'ipv6', v6, (s) => accepts(() => address(s, 'f')) && s.includes(':'));
});

test('prefixes: the schema\'s prefix and subnet patterns against prefix() and validateNetwork', () => {
  agree('prefix', 'prefix', () => `${ip()}${maybeLen()}`, (s) => accepts(() => prefix(s, 'f')));
  agree('subnet', 'subnetPrefix', () => `${ip()}${maybeLen()}`, (s) => accepts(() => validateNetwork(subnet(s))));
});

test('MACs: the schema\'s pattern against the validator', () => {
  const hex = () => pick(['00', '02', 'ff', 'FE', 'aB', '6e', '70', '0a', '12', '03', '01', '0', '000', 'g0']);
  const mac = () => {
    const sep = pick([':', ':', ':', '-', '-', '.', '']);
    const parts = Array.from({ length: pick([5, 6, 6, 6, 6, 6, 7]) }, hex);
    let s = parts.join(sep);
    if (random() < 0.1) s = s.replace(sep, sep === ':' ? '-' : ':');
    return s;
  };
  agree('mac', 'mac', mac, (s) => accepts(() => validateEndpoint(ep({ MacAddress: s }))));
});

test('host:port: the schema\'s patterns against hostPort() and the daemon\'s host rule', () => {
  const host = () => pick([v4(), v6(), `[${v6()}]`, `[${v4()}]`, 'localhost', 'LOCALHOST', 'myhost', '', '*', '[::1', '::1]']);
  const hp = () => `${host()}:${portText()}`;
  // The daemon's rule (confine.ts checkAddress, whatever the policy allows): an IP address or localhost.
  agree('hostPort', 'hostPort', hp, (s) => accepts(() => { const a = hostPort(s, 'f'); if (a.host !== 'localhost' && !isIP(a.host)) throw new ModelError('InvalidArgument', 'f', 'host'); }));
  // A peer is what datagrams come from: numeric, never a wildcard (checkAddress with peer, udp.ts).
  const peer = () => `${pick([v4(), v6(), `[${v6()}]`, '127.0.0.1', '[::1]', '0.0.0.0', '::', '[::]', 'localhost'])}:${portText()}`;
  agree('peer', 'peer', peer, (s) => accepts(() => { const a = hostPort(s, 'f'); if (!isIP(a.host) || a.host === '0.0.0.0' || a.host === '::') throw new ModelError('InvalidArgument', 'f', 'peer'); }));
});

test('ACL lists: the schema\'s Protocols, addresses and ports against the validator', () => {
  const list = (item: () => string) => () => Array.from({ length: int(4) }, () => `${pick(['', ' ', '\t'])}${item()}${pick(['', ' '])}`).join(pick([',', ',', ', ', ';']));
  const proto = () => pick(['0', '1', '6', '17', '006', '255', '256', '257', '1000', '', 'tcp', '0x11', '1e1', '-0', '+6', '6 17']);
  const range = () => (random() < 0.6 ? portText() : `${portText()}-${portText()}`);
  // A reversed range (9000-8000) is the one thing here the schema cannot compare.
  const reversed = (s: string) => s.split(/[,]/).some((x) => { const m = /^\s*(\d+)-(\d+)\s*$/.exec(x); return !!m && Number(m[1]) > Number(m[2]) && Number(m[1]) <= 65535 && m[1].length <= 5 && m[2].length <= 5; });
  const rule = (k: string, s: string) => validateEndpoint(eacl({ [k]: s }));
  const acl = def('acl');
  for (const [k, gen, known] of [['Protocols', list(proto)], ['LocalAddresses', list(() => `${ip()}${random() < 0.5 ? maybeLen() : ''}`)], ['RemotePorts', list(range), reversed]] as Array<[string, () => string, ((s: string) => boolean)?]>) {
    compiled.set(`acl.${k}`, ((s: unknown) => acl({ Action: 'Allow', Direction: 'In', Priority: 1, [k]: s })) as unknown as ValidateFunction);
    agree(k, `acl.${k}`, gen, (s) => accepts(() => rule(k, s)), known);
  }
  // Protocols as numbers: a number or an array of numbers, 0-256.
  compiled.set('acl.Protocols[]', ((s: unknown) => acl({ Action: 'Allow', Direction: 'In', Priority: 1, Protocols: JSON.parse(s as string) })) as unknown as ValidateFunction);
  const number = () => pick(['0', '6', '17', '255', '256', '257', '-1', '6.5', '"6"', '1e3', 'null']);
  agree('Protocols as numbers', 'acl.Protocols[]', () => (random() < 0.3 ? number() : `[${Array.from({ length: int(4) }, number).join(',')}]`),
    (s) => accepts(() => validateEndpoint(eacl({ Protocols: JSON.parse(s) }))));
});

test('origins: the schema\'s pattern against the validator (URL.origin)', () => {
  const label = () => pick(['localhost', 'copy', 'sh', 'a_b', '-a', 'xn--a', 'ab--cd', 'A', '123', '0x7f', '123a', '', 'a!b', 'a b', 'a%41', 'é']);
  const host = () => pick([
    Array.from({ length: 1 + int(3) }, label).join('.') + (random() < 0.1 ? '.' : ''),
    v4(), `[${v6()}]`, 'localhost', 'LOCALHOST',
  ]);
  const origin = () => `${pick(['http', 'https', 'ws', 'wss', 'ftp', 'file', 'HTTP', 'blob:http', 'gopher'])}://${host()}${pick(['', '', ':80', ':443', ':21', ':8000', ':0', ':65535', ':65536', ':080', ':'])}${pick(['', '', '', '/', '/x', '?q'])}`;
  // Known: URL puts an IPv6 host in canonical form and decodes "xn--" labels; the schema cannot.
  agree('origin', 'origin', origin, (s) => accepts(() => validateEndpoint(ws({ AllowedOrigins: [s] }))), (s) => s.includes('[') || s.includes('xn--'));
});

test('docs/model.schema.json is exactly what scripts/gen-schema.mjs writes (edit the generator, not the file)', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'netplane-schema-')), 'schema.json');
  const r = spawnSync(process.execPath, [new URL('../scripts/gen-schema.mjs', import.meta.url).pathname, out], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.is(readFileSync(out, 'utf8'), readFileSync(new URL('../docs/model.schema.json', import.meta.url), 'utf8'));
});

test.run();
