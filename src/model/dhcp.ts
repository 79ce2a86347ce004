// What a network's DHCP settings (the `Dhcp` extension) mean once the defaults are filled in: one
// function, used by the store (an endpoint's assigned address stays out of the pool) and by the
// compiler (the server's configuration), so the two can never disagree about the pool.
//
// Defaults, and why:
//   - Enabled: true on NAT, Internal and Overlay networks with an IPv4 subnet: a guest that asks gets an
//     address, as on HNS's NAT network, slirp, passt and gvproxy.
//   - UnknownClients: 'Lease'. A guest whose MAC is no endpoint's (a VM started without the MAC that
//     `endpoint get` prints, a nested container) still "just works" (issue 13's goal, and what every
//     user-space peer does). Only frames the switch lets in reach the server: an endpoint's port drops
//     any other source MAC (the spoof guard), so a dynamic lease goes to a port without one.
//     'Refuse' is one field away for networks where only the model's endpoints may get an address.
//     On an Overlay network the default is 'Refuse' unless a Pool is given: every host of the network
//     runs the same gateway, and each host's own pool would lease the same addresses to guests on
//     different hosts (give each host a Pool of its own to lease there).
//   - Pool: the upper half of the gateway's subnet (e.g. .128-.254 of a /24), without the gateway;
//     endpoints given no address get theirs from the lower half, so the two never meet. A subnet
//     smaller than 16 addresses has no default pool (its few addresses are the endpoints').
//   - LeaseTime: 3600 s.
import type { HostComputeNetwork, Subnet } from './types.js';
import { prefix, gatewayOf, hasOwnGateway } from './validate.js';

export interface NetworkDhcp {
  subnet: Subnet;                 // the gateway's subnet: the network's first IPv4 one
  gateway: string;
  unknownClients: 'Lease' | 'Refuse';
  pool?: { start: number; end: number };   // addresses as 32-bit numbers
  leaseTime: number;
}

export const DEFAULT_LEASE_TIME = 3600;
const MIN_POOL_SUBNET = 16;

export const ipNumber = (s: string): number => s.split('.').reduce((a, x) => ((a << 8) | Number(x)) >>> 0, 0);
export const ipText = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;

// The network's DHCPv4 server with its defaults, or undefined when it has none.
export function networkDhcp(n: HostComputeNetwork): NetworkDhcp | undefined {
  if (!hasOwnGateway(n.Type)) return undefined;
  if (n.Dhcp?.Enabled === false) return undefined;
  const subnet = (n.Ipams ?? []).flatMap((i) => i.Subnets).find((s) => !s.IpAddressPrefix.includes(':'));
  if (!subnet) return undefined;
  const gateway = gatewayOf(subnet);
  const unknownClients = n.Dhcp?.UnknownClients ?? (n.Type === 'Overlay' && !n.Dhcp?.Pool ? 'Refuse' : 'Lease');
  let pool: NetworkDhcp['pool'];
  if (unknownClients === 'Lease') {
    if (n.Dhcp?.Pool) pool = { start: ipNumber(n.Dhcp.Pool.StartAddress), end: ipNumber(n.Dhcp.Pool.EndAddress) };
    else {
      const p = prefix(subnet.IpAddressPrefix, 'IpAddressPrefix');
      const size = 2 ** (32 - p.len);
      if (size >= MIN_POOL_SUBNET) {
        const base = ipNumber(p.text.split('/')[0]);
        let start = base + size / 2, end = base + size - 2;
        const gw = ipNumber(gateway);
        if (gw >= start && gw <= end) {
          // The gateway inside the upper half: the larger side of it.
          if (gw - start >= end - gw) end = gw - 1; else start = gw + 1;
        }
        if (start <= end) pool = { start, end };
      }
    }
  }
  return { subnet, gateway, unknownClients, pool, leaseTime: n.Dhcp?.LeaseTime ?? DEFAULT_LEASE_TIME };
}
