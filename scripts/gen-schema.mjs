// Writes netplane's docs/model.schema.json (usage: node scripts/gen-schema.mjs [docs/model.schema.json]). The long
// patterns (IPv4, IPv6 after RFC 3986, prefixes, ports, host:port, ACL lists, origins) are composed here
// from named parts and inlined, because JSON Schema cannot reference a pattern from inside another.
// test/schema.test.ts checks the result against src/model/validate.ts (a probe table and fuzzing).
import { writeFileSync } from 'node:fs';

const dec = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const ipv4 = `${dec}(?:\\.${dec}){3}`;
const h = '[0-9A-Fa-f]{1,4}';
const ls32 = `(?:${h}:${h}|${ipv4})`;
// RFC 3986 §3.2.2 IPv6address, alternative by alternative.
const ipv6 = '(?:' + [
  `(?:${h}:){6}${ls32}`,
  `::(?:${h}:){5}${ls32}`,
  `(?:${h})?::(?:${h}:){4}${ls32}`,
  `(?:(?:${h}:){0,1}${h})?::(?:${h}:){3}${ls32}`,
  `(?:(?:${h}:){0,2}${h})?::(?:${h}:){2}${ls32}`,
  `(?:(?:${h}:){0,3}${h})?::${h}:${ls32}`,
  `(?:(?:${h}:){0,4}${h})?::${ls32}`,
  `(?:(?:${h}:){0,5}${h})?::${h}`,
  `(?:(?:${h}:){0,6}${h})?::`,
].join('|') + ')';
const len4 = '(?:0{0,2}[0-9]|0?[12][0-9]|0?3[0-2])';
const len4subnet = '(?:0{0,2}[0-9]|0?[12][0-9]|0?30)';
const len6 = '(?:0{0,2}[0-9]|0?[1-9][0-9]|1[01][0-9]|12[0-8])';
const port1 = '(?:0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
const port0 = '(?:0{0,4}[0-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
const portPlain = '(?:[0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
const zone = '(?:%[0-9A-Za-z.:-]+)?';
const ipHost = `(?:${ipv4}|\\[${ipv6}${zone}\\]|${ipv6}${zone})`;
const hostPortBody = `(?:${ipHost}|localhost):${port1}`;
const name = '[A-Za-z0-9_][A-Za-z0-9._-]{0,99}';
const proto = '0*(?:25[0-6]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const addrItem = `(?:${ipv4}(?:/${len4})?|${ipv6}(?:/${len6})?)`;
const portItem = `${port0}(?:-${port0})?`;
const list = (item) => `^\\s*(?:${item})?(?:\\s*,\\s*(?:${item})?)*\\s*$`;
// What a URL keeps as it is in a host (lower-case ASCII letters, digits and these marks); a last
// label that is a number would be read as an IPv4 address.
const lc = "[a-z0-9!\"$&'()*+,;=_`{}~-]";
const originHost = `(?:(?!(?:[^:]*\\.)?(?:[0-9]+|0x[0-9a-f]*)\\.?(?::|$))(?:${lc}|\\.)+|${ipv4}|\\[[0-9a-f:.]+\\])`;

const ref = (n) => ({ $ref: `#/definitions/${n}` });
const str = (pattern, description) => ({ type: 'string', pattern, ...(description ? { description } : {}) });
const settings = (type, s) => ({ type: 'object', additionalProperties: false, required: ['Type', 'Settings'], properties: { Type: { const: type }, Settings: s } });
const listOf = (item, description) => ({
  description,
  oneOf: [
    str(list(item)),
    { type: 'array', items: str(`^\\s*(?:${item})?\\s*$`) },
  ],
});

const schema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://netplane.invalid/model.schema.json',
  title: 'netplane HCN-shaped model',
  description: 'The objects of the management API and of state.json. Field names follow HCN v2 as hcsshim writes them. ' +
    'src/model/validate.ts and this schema refuse the same shapes and the same malformed values (test/schema.test.ts probes both with one table, and fuzzes the address, prefix, MAC and port patterns against the validator\'s parsers). ' +
    'What a JSON Schema cannot say, the daemon checks besides (semantic checks, each refusal naming the field): ' +
    'references between objects (an endpoint\'s network and namespace, a load balancer\'s endpoints) and uniqueness (a MAC or an IP address once per network, a published port once); ' +
    'an endpoint\'s IpAddress inside a subnet of its network; order within a value (StartMacAddress <= EndMacAddress, port ranges a-b with a <= b); ' +
    'a DSR load balancer\'s InternalPort equal to its ExternalPort; the binding policy of the daemon\'s config (loopback addresses only, wildcard addresses, ports below 1024; docs/security.md); ' +
    'unix socket and capture files (a name that is free, or netplane\'s own); an AllowedOrigins entry exactly as a browser sends it (URL.origin); ' +
    'and string lengths, which the validator counts in UTF-16 units where JSON Schema counts characters.',
  definitions: {
    id: str('^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    ipv4: str(`^${ipv4}$`, 'a dotted quad, four decimal octets 0-255 without leading zeros'),
    ipv6: str(`^${ipv6}$`, 'an IPv6 address in RFC 4291 text form (RFC 3986 IPv6address: "::" once, an IPv4 tail allowed), no zone'),
    ip: { anyOf: [ref('ipv4'), ref('ipv6')] },
    prefix: str(`^(?:${ipv4}/${len4}|${ipv6}/${len6})$`, 'address/length, IPv4 (0-32) or IPv6 (0-128); host bits are cleared when stored'),
    ipv4Prefix: str(`^${ipv4}/${len4}$`),
    subnetPrefix: str(`^(?:${ipv4}/${len4subnet}|${ipv6}/${len6})$`, 'a subnet: IPv4 up to /30 (room for a gateway and endpoints), IPv6 any length'),
    mac: str(`^(?:[0-9A-Fa-f][02468ACEace](?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f][02468ACEace](?:-[0-9A-Fa-f]{2}){5})$`, 'a station (unicast) MAC, six hex octets separated by ":" or by "-" (not mixed); stored lower-case with ":"'),
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    protocol: { enum: [6, 17] },
    hostPort: str(`^${hostPortBody}$`, '"host:port": an IPv4 address, an IPv6 address (in brackets or not), or localhost, and a port 1-65535. Which addresses and ports the daemon binds is its config\'s binding policy: loopback only by default (docs/security.md)'),
    peer: {
      ...str(`^${ipHost}:${port1}$`, '"address:port" of the one sender a UDP port accepts: a numeric address (what datagrams come from), never a wildcard'),
      not: { pattern: '^(?:0\\.0\\.0\\.0|\\[::\\]|::):' },
    },
    fileName: str(`^${name}$`, 'a plain file name in one of the daemon\'s directories: letters, digits, ".", "_", "-"; no "/", no leading "." (so no "..")'),
    origin: {
      ...str(`^(?:https?|wss?|ftp)://${originHost}(?::${portPlain})?$`, 'a browser origin exactly as a browser sends it: scheme://host[:port], lower-case, no path, no default port ("http://localhost:8000", "https://copy.sh"). The daemon compares it with URL.origin, which also puts IPv6 hosts in canonical form and checks "xn--" labels'),
      not: { anyOf: [{ pattern: '^(?:http|ws)://.*:80$' }, { pattern: '^(?:https|wss)://.*:443$' }, { pattern: '^ftp://.*:21$' }] },
    },
    shortString: { type: 'string', maxLength: 256 },
    addressList: listOf(addrItem, 'IPv4/IPv6 addresses and prefixes, comma-separated ("10.0.0.0/8, fd00::/64") or as an array; absent: any'),
    portList: listOf(portItem, 'ports 0-65535 and ranges a-b (a <= b: checked by the daemon), comma-separated ("80, 8000-8999") or as an array; absent: any'),
    route: {
      type: 'object', additionalProperties: false, required: ['NextHop', 'DestinationPrefix'],
      properties: { NextHop: ref('ip'), DestinationPrefix: ref('prefix'), Metric: { type: 'integer', minimum: 0, maximum: 255 } },
    },
    dns: {
      type: 'object', additionalProperties: false,
      properties: { Domain: ref('shortString'), Search: { type: 'array', items: ref('shortString') }, ServerList: { type: 'array', items: ref('ip') }, Options: { type: 'array', items: ref('shortString') } },
    },
    acl: {
      type: 'object', additionalProperties: false, required: ['Action', 'Direction', 'Priority'],
      properties: {
        Id: { type: 'string', description: 'names the rule in hit counters' },
        Protocols: {
          description: 'protocol numbers 0-256 (256: any): a comma-separated decimal list ("6, 17"), a number, or an array of numbers; absent or empty: any',
          oneOf: [str(list(proto)), { type: 'integer', minimum: 0, maximum: 256 }, { type: 'array', items: { type: 'integer', minimum: 0, maximum: 256 } }],
        },
        Action: { enum: ['Allow', 'Block'] },
        Direction: { enum: ['In', 'Out'] },
        LocalAddresses: ref('addressList'),
        RemoteAddresses: ref('addressList'),
        LocalPorts: ref('portList'),
        RemotePorts: ref('portList'),
        RuleType: { enum: ['Switch', 'Host'] },
        Priority: { type: 'integer', minimum: 0, maximum: 65535 },
      },
    },
    outboundNat: {
      type: 'object', additionalProperties: false,
      properties: {
        VirtualIP: { ...ref('ipv4'), description: 'IPv4 only (there is no NAT66)' },
        Exceptions: { type: 'array', items: str(`^${ipv4}(?:/${len4})?$`), description: 'IPv4 destinations never translated: prefixes, or addresses (/32)' },
      },
    },
    portMapping: {
      type: 'object', additionalProperties: false, required: ['Protocol', 'InternalPort', 'ExternalPort'],
      properties: { Protocol: ref('protocol'), InternalPort: ref('port'), ExternalPort: ref('port'), VIP: { ...ref('ipv4'), description: 'IPv4 only (there is no NAT66)' } },
    },
    HostComputeNetwork: {
      type: 'object', additionalProperties: false, required: ['ID', 'Type'],
      properties: {
        ID: ref('id'),
        Name: ref('shortString'),
        Type: { enum: ['NAT', 'Transparent', 'L2Bridge', 'Internal', 'Private', 'Overlay'] },
        Ipams: {
          type: 'array',
          items: {
            type: 'object', additionalProperties: false,
            properties: {
              Type: { const: 'Static' },
              Subnets: {
                type: 'array',
                items: {
                  type: 'object', additionalProperties: false, required: ['IpAddressPrefix'],
                  properties: {
                    IpAddressPrefix: ref('subnetPrefix'),
                    Routes: { type: 'array', items: ref('route') },
                    Policies: {
                      type: 'array',
                      items: {
                        oneOf: [
                          settings('VLAN', { type: 'object', additionalProperties: false, required: ['IsolationId'], properties: { IsolationId: { type: 'integer', minimum: 1, maximum: 4094 } } }),
                          settings('VSID', { type: 'object', additionalProperties: false, required: ['IsolationId'], properties: { IsolationId: { type: 'integer', minimum: 1, maximum: 16777215, description: "an Overlay network's VXLAN network identifier (HCN's VSID)" } } }),
                        ],
                      },
                    },
                  },
                },
              },
            },
          },
        },
        Policies: { type: 'array', items: { oneOf: [settings('NetworkACL', ref('acl')), settings('OutBoundNAT', ref('outboundNat'))] } },
        MacPool: {
          type: 'object', additionalProperties: false,
          properties: { Ranges: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['StartMacAddress', 'EndMacAddress'], properties: { StartMacAddress: ref('mac'), EndMacAddress: ref('mac') } } } },
        },
        Dns: ref('dns'),
        // Bits 0-2 (STP, PAUSE, LACP) are refused: a multiple of 8.
        GroupFwdMask: { type: 'integer', minimum: 0, maximum: 65535, multipleOf: 8 },
        TcpTracking: {
          description: "netplane's extension: conntrack's TCP tracking of the network's connections (Linux's nf_conntrack_tcp_be_liberal and nf_conntrack_tcp_loose)",
          type: 'object', additionalProperties: false,
          properties: { Liberal: { type: 'boolean' }, Pickup: { type: 'boolean' } },
        },
        MTU: { type: 'integer', minimum: 68, maximum: 65535 },
        MssClamp: {
          description: "netplane extension: TCP MSS clamping of the SYNs and SYN-ACKs routed in or out of the network: the largest MSS they may carry, or Mtu (the smaller of the ingress and egress MTUs less 40 bytes for IPv4, 60 for IPv6); NAT, Internal and Overlay networks only",
          oneOf: [{ type: 'integer', minimum: 536, maximum: 65495 }, { const: 'Mtu' }],
        },
        SilentGateway: { type: 'boolean', description: 'netplane extension: the gateway sends no TCP RST / ICMP unreachable for traffic to its addresses that nothing handles (default false: it answers as a Linux host); NAT, Internal and Overlay networks only' },
        Dhcp: {
          description: "netplane extension: the DHCPv4 server on the gateway (NAT, Internal and Overlay networks); endpoints' MacAddress + IpConfigurations are its static leases. The pool lies in the network's first IPv4 subnet, without its network, broadcast or gateway address",
          type: 'object', additionalProperties: false,
          properties: {
            Enabled: { type: 'boolean', description: 'default true when the network has an IPv4 subnet' },
            UnknownClients: { enum: ['Lease', 'Refuse'], description: "MACs that are no endpoint's: a dynamic lease from the pool (Lease, the default) or no answer" },
            Pool: {
              type: 'object', additionalProperties: false, required: ['StartAddress', 'EndAddress'],
              properties: { StartAddress: ref('ipv4'), EndAddress: ref('ipv4') },
              description: 'the dynamic leases (default: the upper half of the subnet; endpoints given no address get theirs outside it)',
            },
            LeaseTime: { type: 'integer', minimum: 60, maximum: 4294967294, description: 'seconds, default 3600' },
          },
          if: { required: ['UnknownClients'], properties: { UnknownClients: { const: 'Refuse' } } },
          then: { description: 'a pool serves unknown clients, which Refuse refuses', not: { required: ['Pool'] } },
        },
        DnsProxy: {
          description: "netplane extension: the DNS server on the gateway's addresses (NAT, Internal and Overlay networks): the network's endpoints as <ID>.<domain> and <Name>.<domain> (domain: Dns.Domain, default netplane.internal), the rest forwarded to Dns.ServerList or the host's resolvers",
          type: 'object', additionalProperties: false,
          properties: { Enabled: { type: 'boolean', description: 'default true when the network has a subnet' } },
        },
        RouterAdvertisement: {
          description: "netplane extension: router advertisements from the gateway for the network's IPv6 subnet (SLAAC prefix when a /64, RDNSS, DNSSL, MTU, M/O flags); NAT, Internal and Overlay networks",
          type: 'object', additionalProperties: false,
          properties: { Enabled: { type: 'boolean', description: 'default true when the network has an IPv6 subnet' } },
        },
        Dhcp6: {
          description: "netplane extension: the DHCPv6 server on the gateway: endpoints' MacAddress + IPv6 address as stateful bindings, DNS (the gateway) and search list for all; NAT, Internal and Overlay networks",
          type: 'object', additionalProperties: false,
          properties: { Enabled: { type: 'boolean', description: 'default true when the network has an IPv6 subnet' } },
        },
      },
      allOf: [
        {
          if: { required: ['Type'], properties: { Type: { const: 'NAT' } } },
          then: {
            description: 'a NAT network needs an IPv4 subnet',
            required: ['Ipams'],
            properties: { Ipams: { type: 'array', contains: { type: 'object', required: ['Subnets'], properties: { Subnets: { type: 'array', contains: { type: 'object', properties: { IpAddressPrefix: ref('ipv4Prefix') } } } } } } },
          },
        },
        {
          if: { required: ['MTU', 'Ipams'], properties: { MTU: { type: 'integer', maximum: 1279 }, Ipams: { type: 'array', contains: { type: 'object', required: ['Subnets'], properties: { Subnets: { type: 'array', contains: { type: 'object', required: ['IpAddressPrefix'], properties: { IpAddressPrefix: { type: 'string', pattern: ':' } } } } } } } } },
          then: { description: 'an IPv6 link needs an MTU of 1280 at least (RFC 8200 §5)', not: {} },
        },
        {
          if: { required: ['Ipams'], properties: { Ipams: { type: 'array', contains: { type: 'object', required: ['Subnets'], properties: { Subnets: { type: 'array', contains: { type: 'object', required: ['Policies'], properties: { Policies: { type: 'array', contains: { type: 'object', required: ['Type'], properties: { Type: { const: 'VSID' } } } } } } } } } } } },
          then: { description: 'a VSID is an Overlay network\'s', required: ['Type'], properties: { Type: { const: 'Overlay' } } },
        },
        {
          if: { required: ['Type'], properties: { Type: { const: 'Overlay' } } },
          then: {
            description: 'an Overlay network has a subnet, each subnet its VSID policy, and no VLAN (that all VSIDs are the same one the daemon checks)',
            required: ['Ipams'],
            properties: { Ipams: { type: 'array', contains: { type: 'object', required: ['Subnets'], properties: { Subnets: { type: 'array', minItems: 1 } } },
              items: { type: 'object', properties: { Subnets: { type: 'array', items: { type: 'object', required: ['Policies'], properties: { Policies: { type: 'array',
                contains: { type: 'object', required: ['Type'], properties: { Type: { const: 'VSID' } } },
                items: { type: 'object', properties: { Type: { const: 'VSID' } } } } } } } } } } },
          },
        },
        {
          if: { required: ['Dhcp'] },
          then: { description: 'only NAT, Internal and Overlay networks have a gateway to serve DHCP', properties: { Type: { enum: ['NAT', 'Internal', 'Overlay'] } } },
        },
        {
          if: { required: ['DnsProxy'] },
          then: { description: 'only NAT, Internal and Overlay networks have a gateway to answer DNS', properties: { Type: { enum: ['NAT', 'Internal', 'Overlay'] } } },
        },
        {
          if: { required: ['RouterAdvertisement'] },
          then: { description: 'only NAT, Internal and Overlay networks have a gateway to advertise', properties: { Type: { enum: ['NAT', 'Internal', 'Overlay'] } } },
        },
        {
          if: { required: ['Dhcp6'] },
          then: { description: 'only NAT, Internal and Overlay networks have a gateway to serve DHCPv6', properties: { Type: { enum: ['NAT', 'Internal', 'Overlay'] } } },
        },
        {
          if: { required: ['SilentGateway'] },
          then: { description: 'only NAT, Internal and Overlay networks have a gateway of their own', properties: { Type: { enum: ['NAT', 'Internal', 'Overlay'] } } },
        },
        {
          if: { required: ['MssClamp'] },
          then: { description: 'only NAT, Internal and Overlay networks have a gateway of their own to clamp at', properties: { Type: { enum: ['NAT', 'Internal', 'Overlay'] } } },
        },
      ],
    },
    HostComputeEndpoint: {
      type: 'object', additionalProperties: false, required: ['ID', 'HostComputeNetwork'],
      properties: {
        ID: ref('id'),
        Name: ref('shortString'),
        HostComputeNetwork: ref('id'),
        HostComputeNamespace: ref('id'),
        MacAddress: ref('mac'),
        IpConfigurations: {
          type: 'array',
          items: {
            type: 'object', additionalProperties: false, required: ['IpAddress'],
            properties: { IpAddress: ref('ip'), PrefixLength: { type: 'integer', minimum: 0, maximum: 128 } },
            if: { properties: { IpAddress: ref('ipv4') } },
            then: { properties: { PrefixLength: { type: 'integer', maximum: 32 } } },
          },
        },
        Routes: { type: 'array', items: ref('route') },
        Dns: ref('dns'),
        Transport: {
          description: 'netplane extension: how the endpoint\'s frames reach the switch (docs/connect.md)',
          oneOf: [
            { type: 'object', additionalProperties: false, required: ['Type', 'Bind'], properties: { Type: { const: 'udp' }, Bind: ref('hostPort'), Peer: ref('peer') } },
            { type: 'object', additionalProperties: false, required: ['Type', 'Listen'], properties: { Type: { const: 'stream' }, Listen: str(`^(?:tcp:${hostPortBody}|unix:${name})$`, '"tcp:host:port", or "unix:NAME" (a socket in the daemon\'s sockets directory)') } },
            { type: 'object', additionalProperties: false, required: ['Type', 'Listen'], properties: { Type: { const: 'websocket' }, Listen: ref('hostPort'), AllowedOrigins: { type: 'array', items: ref('origin') } } },
          ],
        },
        Capture: { ...ref('fileName'), description: 'netplane extension: a pcap file of everything the endpoint sends and receives, a name in the capture directory' },
        AclDefaults: { type: 'object', additionalProperties: false, properties: { In: { enum: ['Allow', 'Block'] }, Out: { enum: ['Allow', 'Block'] } } },
        Policies: { type: 'array', items: { oneOf: [settings('PortMapping', ref('portMapping')), settings('ACL', ref('acl')), settings('OutBoundNAT', ref('outboundNat')),
          settings('ProviderAddress', { type: 'object', additionalProperties: false, required: ['ProviderAddress'], properties: { ProviderAddress: { ...ref('ipv4'), description: "a remote endpoint's host: its underlay IPv4 address (unicast; checked by the daemon)" } } })] } },
        IsRemoteEndpoint: { type: 'boolean', description: "HCN's: the endpoint is another host's, on an Overlay network, at its ProviderAddress policy's address: MacAddress and IpConfigurations given, no port here (no Transport, Capture, AclDefaults, namespace or other policy)" },
        Status: {
          readOnly: true,
          description: 'what the daemon reports about the endpoint (read only): its attachment (Transport: "none", "up" or "degraded"; Reason; Since; Address, where the transport listens, a unix socket\'s full path) and its switch port. Never stored; accepted back and ignored, so a client can get, edit and put an endpoint',
        },
      },
      allOf: [
        {
          if: { required: ['IsRemoteEndpoint'], properties: { IsRemoteEndpoint: { const: true } } },
          then: {
            description: 'a remote endpoint: its MAC and addresses given, one ProviderAddress policy and no other, nothing to attach',
            required: ['MacAddress', 'IpConfigurations', 'Policies'],
            properties: {
              IpConfigurations: { type: 'array', minItems: 1 },
              Policies: { type: 'array', minItems: 1, maxItems: 1, items: { type: 'object', properties: { Type: { const: 'ProviderAddress' } } } },
            },
            not: { anyOf: [{ required: ['Transport'] }, { required: ['Capture'] }, { required: ['AclDefaults'] }, { required: ['HostComputeNamespace'] }] },
          },
          else: {
            description: 'a ProviderAddress policy is a remote endpoint\'s',
            properties: { Policies: { type: 'array', items: { type: 'object', properties: { Type: { not: { const: 'ProviderAddress' } } } } } },
          },
        },
      ],
    },
    HostComputeNamespace: {
      type: 'object', additionalProperties: false, required: ['ID'],
      properties: { ID: ref('id'), Type: { enum: ['Host', 'HostDefault', 'Guest', 'GuestDefault'] } },
    },
    HostComputeLoadBalancer: {
      type: 'object', additionalProperties: false, required: ['ID', 'PortMappings'],
      properties: {
        ID: ref('id'),
        HostComputeEndpoints: { type: 'array', items: ref('id') },
        SourceVIP: ref('ip'),
        FrontendVIPs: { type: 'array', items: ref('ip') },
        PortMappings: {
          type: 'array', minItems: 1,
          items: { type: 'object', additionalProperties: false, required: ['Protocol', 'InternalPort', 'ExternalPort'], properties: { Protocol: ref('protocol'), InternalPort: ref('port'), ExternalPort: ref('port'), DistributionType: { enum: ['None', 'SourceIPProtocol', 'SourceIP'] } } },
        },
        Flags: { type: 'object', additionalProperties: false, properties: { DSR: { type: 'boolean', description: 'direct server return: every InternalPort must equal its ExternalPort (checked by the daemon)' } } },
      },
    },
    State: {
      type: 'object', required: ['netplane', 'version'],
      properties: {
        netplane: { const: 'state' },
        version: { const: 1 },
        networks: { type: 'array', items: ref('HostComputeNetwork') },
        endpoints: { type: 'array', items: ref('HostComputeEndpoint') },
        namespaces: { type: 'array', items: ref('HostComputeNamespace') },
        loadBalancers: { type: 'array', items: ref('HostComputeLoadBalancer') },
      },
    },
  },
  $ref: '#/definitions/State',
};

// Pretty print: an object or array on one line when it fits, else one member a line.
const flatten = (v) => (typeof v !== 'object' || v === null ? JSON.stringify(v)
  : Array.isArray(v) ? `[${v.map(flatten).join(', ')}]`
  : `{ ${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${flatten(x)}`).join(', ')} }`);
function fmt(v, indent = '') {
  const flat = flatten(v);
  if (flat.length + indent.length <= 150 || typeof v !== 'object' || v === null) return flat;
  const inner = indent + '  ';
  if (Array.isArray(v)) return `[\n${v.map((x) => inner + fmt(x, inner)).join(',\n')}\n${indent}]`;
  return `{\n${Object.entries(v).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${fmt(x, inner)}`).join(',\n')}\n${indent}}`;
}
writeFileSync(process.argv[2] ?? new URL('../docs/model.schema.json', import.meta.url), fmt(schema) + '\n');
