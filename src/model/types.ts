// The configuration model, in the shape of the Windows Host Compute Network (HCN) v2 schema as
// hcsshim writes it (field names included), so an HNS user recognises every object:
// HostComputeNetwork, HostComputeEndpoint, HostComputeNamespace, HostComputeLoadBalancer.
// docs/model.md is its reference; src/model/validate.ts says what each field accepts.

export type NetworkType = 'NAT' | 'Transparent' | 'L2Bridge' | 'Internal' | 'Private' | 'Overlay';

export interface Route {
  NextHop: string;
  DestinationPrefix: string;
  Metric?: number;
}

// VLAN: the subnet's 802.1Q VLAN (1-4094). VSID: an Overlay network's virtual subnet ID, its VXLAN
// network identifier (1-16777215), as HCN's subnet policy carries it.
export interface SubnetPolicy {
  Type: 'VLAN' | 'VSID';
  Settings: { IsolationId: number };
}

export interface Subnet {
  IpAddressPrefix: string;
  Routes?: Route[];          // a 0.0.0.0/0 (or ::/0) route's NextHop is the network's gateway
  Policies?: SubnetPolicy[];
}

export interface Ipam {
  Type?: 'Static';
  Subnets: Subnet[];
}

export interface AclPolicySetting {
  Id?: string;
  Protocols?: string;
  Action: 'Allow' | 'Block';
  Direction: 'In' | 'Out';
  LocalAddresses?: string;
  RemoteAddresses?: string;
  LocalPorts?: string;
  RemotePorts?: string;
  RuleType?: 'Switch' | 'Host';
  Priority: number;
}

export interface OutboundNatPolicySetting {
  VirtualIP?: string;
  Exceptions?: string[];
}

export interface PortMappingPolicySetting {
  Protocol: number;          // 6 TCP, 17 UDP
  InternalPort: number;
  ExternalPort: number;
  VIP?: string;
}

export type NetworkPolicy =
  | { Type: 'NetworkACL'; Settings: AclPolicySetting }
  | { Type: 'OutBoundNAT'; Settings: OutboundNatPolicySetting };

export type EndpointPolicy =
  | { Type: 'PortMapping'; Settings: PortMappingPolicySetting }
  | { Type: 'ProviderAddress'; Settings: { ProviderAddress: string } }   // a remote endpoint's host (its underlay IPv4 address)
  | { Type: 'ACL'; Settings: AclPolicySetting }
  | { Type: 'OutBoundNAT'; Settings: OutboundNatPolicySetting };

export interface MacPool { Ranges: Array<{ StartMacAddress: string; EndMacAddress: string }> }

export interface HostComputeNetwork {
  ID: string;
  Name?: string;
  Type: NetworkType;
  Ipams?: Ipam[];
  Policies?: NetworkPolicy[];
  MacPool?: MacPool;
  Dns?: Dns;
  // netplane extension: which reserved group addresses 01:80:c2:00:00:0n the network's switch
  // forwards (bit n), as the Linux bridge's group_fwd_mask; 0 (the default) forwards none of 01-0f.
  GroupFwdMask?: number;
  TcpTracking?: TcpTracking;  // netplane extension: conntrack's TCP tracking for the network's connections
  MTU?: number;              // the gateway interface's MTU, 68-65535 (default 1500; 1280 at least with IPv6)
  MssClamp?: number | 'Mtu'; // netplane extension: TCP MSS clamp of the SYNs routed in or out of the network, 536-65495 or 'Mtu' (the MTUs less the headers)
  SilentGateway?: boolean;   // netplane extension: the gateway sends no TCP RST / ICMP unreachable for traffic to its addresses that nothing handles
  Dhcp?: DhcpSettings;       // netplane extension: the DHCPv4 server on the gateway (NAT and Internal networks)
  DnsProxy?: DnsProxySettings;   // netplane extension: the DNS server on the gateway (NAT and Internal networks)
  RouterAdvertisement?: { Enabled?: boolean };   // netplane extension: RAs for the IPv6 subnet (NAT and Internal networks)
  Dhcp6?: { Enabled?: boolean };                 // netplane extension: the DHCPv6 server (NAT and Internal networks)
}

// The DNS server a NAT or Internal network's gateway runs (docs/model.md "DNS"): the network's
// endpoints as <ID>.<domain> (and <Name>.<domain>), the rest forwarded (Dns.ServerList or the host's).
export interface DnsProxySettings {
  Enabled?: boolean;                          // default true (when the network has a subnet)
}

// The DHCPv4 server a NAT or Internal network's gateway runs (docs/model.md "DHCP"). Endpoints'
// MacAddress + IpConfigurations are its static leases; the rest of its options come from the network
// (gateway, Dns, MTU, subnet routes).
export interface DhcpSettings {
  Enabled?: boolean;                          // default true (when the network has an IPv4 subnet)
  UnknownClients?: 'Lease' | 'Refuse';        // MACs that are no endpoint's: a dynamic lease from Pool (default) or no answer
  Pool?: { StartAddress: string; EndAddress: string };  // default: the upper half of the subnet
  LeaseTime?: number;                         // seconds, 60-4294967294, default 3600
}

// Linux's nf_conntrack_tcp_be_liberal and nf_conntrack_tcp_loose, for one network (docs/model.md).
export interface TcpTracking {
  Liberal?: boolean;          // segments outside the TCP window pass (default false)
  Pickup?: boolean;           // connections are picked up mid-stream, as after a restart (default true
                              // for routed traffic; an endpoint's ACLs pick up only when this is true)
}

export interface IpConfig {
  IpAddress: string;
  PrefixLength?: number;
}

export interface Dns {
  Domain?: string;
  Search?: string[];
  ServerList?: string[];
  Options?: string[];
}

// netplane's extension to HCN: how the endpoint's frames reach the switch (HCN attaches a VM's or a
// container's vNIC; here a VM, a browser VM or a TAP device connects through a transport).
export type Transport =
  | { Type: 'udp'; Bind: string; Peer?: string }          // "host:port"
  | { Type: 'stream'; Listen: string }                    // "tcp:host:port" or "unix:NAME" (in the sockets directory)
  | { Type: 'websocket'; Listen: string; AllowedOrigins?: string[] };  // "host:port"; the browser pages that may connect

export interface HostComputeEndpoint {
  ID: string;
  Name?: string;
  HostComputeNetwork: string;
  HostComputeNamespace?: string;
  MacAddress?: string;
  IpConfigurations?: IpConfig[];
  Routes?: Route[];
  Dns?: Dns;
  Policies?: EndpointPolicy[];
  Transport?: Transport;   // netplane extension
  AclDefaults?: { In?: 'Allow' | 'Block'; Out?: 'Allow' | 'Block' };  // netplane extension: the default actions
  Capture?: string;        // netplane extension: a pcap file (a name in the capture directory) of everything the endpoint sends and receives
  // HCN's: the endpoint lives on another host of its Overlay network, reached through VXLAN at its
  // ProviderAddress policy's address; it has no switch port here (MacAddress and IpConfigurations
  // given, never assigned).
  IsRemoteEndpoint?: boolean;
}

// A remote endpoint as the cluster membership hands it to the Host (Host.setRemoteEndpoints): an
// endpoint of another host, in the words of the store's endpoints.
export interface RemoteEndpointSpec {
  ID: string;                  // the endpoint's ID on its host
  HostComputeNetwork: string;  // the network's ID (the same on every host)
  MacAddress: string;
  IpAddresses: string[];
  ProviderAddress: string;     // the host's underlay IPv4 address
  Host: string;                // the host's member name
}

// What the daemon reports about an endpoint's attachment (read only; never stored).
export interface EndpointStatus {
  Transport: 'none' | 'up' | 'degraded';
  Reason?: string;          // why it is degraded
  Since?: string;           // when it became what it is (ISO 8601)
  Address?: string;         // where the transport listens (a unix socket's full path)
  Dhcp?: DhcpLeaseStatus;   // the endpoint's DHCP lease, when a client holds one
}

// An endpoint's DHCP lease as the daemon reports it. A 'Dynamic' one is an endpoint the DHCP server
// made for an unknown MAC (read only; no switch port of its own): it goes when the lease is released
// or expires.
export interface DhcpLeaseStatus { Lease: 'Static' | 'Dynamic'; Expires: string }

export interface HostComputeNamespace {
  ID: string;
  Type?: 'Host' | 'HostDefault' | 'Guest' | 'GuestDefault';
}

export interface LoadBalancerPortMapping {
  Protocol: number;
  InternalPort: number;
  ExternalPort: number;
  DistributionType?: 'None' | 'SourceIPProtocol' | 'SourceIP';
}

export interface HostComputeLoadBalancer {
  ID: string;
  HostComputeEndpoints: string[];
  SourceVIP?: string;
  FrontendVIPs?: string[];
  PortMappings: LoadBalancerPortMapping[];
  Flags?: { DSR?: boolean };
}

export interface ModelState {
  networks: HostComputeNetwork[];
  endpoints: HostComputeEndpoint[];
  namespaces: HostComputeNamespace[];
  loadBalancers: HostComputeLoadBalancer[];
}

export type Kind = 'network' | 'endpoint' | 'namespace' | 'loadbalancer';
