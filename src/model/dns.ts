// What a network's DNS proxy (the `DnsProxy` extension) means once the defaults are filled in: one
// function, used by the compiler for what the gateway punts and how its DnsServer (src/dns.ts) runs.
//
// Defaults, and why:
//   - Enabled: true on NAT, Internal and Overlay networks with a subnet (either family): a guest told by DHCP
//     that its DNS server is the gateway gets answers there, as from Docker's embedded DNS, HNS's DNS
//     proxy, slirp's 10.0.2.3 and passt's gateway.
//   - The domain of the endpoints' names: the network's Dns.Domain, else DEFAULT_DOMAIN. `.internal`
//     is the top-level domain ICANN reserved for private use (2024), so it never shadows a public name.
//   - Upstream: the network's Dns.ServerList without the gateway's own addresses (a guest-facing list
//     that names the gateway must not make it forward to itself); when that leaves none, the host's
//     resolvers (/etc/resolv.conf).
//   - Names: the endpoints of the network only, as Docker's embedded DNS answers a container's own
//     networks: every network has its own domain (Dns.Domain), and one server answers one domain.
import type { HostComputeNetwork } from './types.js';
import { gatewayOf, hasOwnGateway } from './validate.js';

export const DEFAULT_DOMAIN = 'netplane.internal';

export interface NetworkDns {
  domain: string;
  gateways: string[];             // the gateway's addresses (IPv4 and/or IPv6), where it answers
  upstream?: string[];            // undefined: the host's resolvers
}

// The network's DNS proxy with its defaults, or undefined when it has none.
export function networkDns(n: HostComputeNetwork): NetworkDns | undefined {
  if (!hasOwnGateway(n.Type)) return undefined;
  if (n.DnsProxy?.Enabled === false) return undefined;
  const subnets = (n.Ipams ?? []).flatMap((i) => i.Subnets);
  const v4 = subnets.find((s) => !s.IpAddressPrefix.includes(':'));
  const v6 = subnets.find((s) => s.IpAddressPrefix.includes(':'));
  if (!v4 && !v6) return undefined;
  const gateways = [v4, v6].filter((s) => s !== undefined).map((s) => gatewayOf(s!));
  const upstream = (n.Dns?.ServerList ?? []).filter((a) => !gateways.includes(a));
  return { domain: n.Dns?.Domain || DEFAULT_DOMAIN, gateways, ...(upstream.length ? { upstream } : {}) };
}

// An endpoint's ID or Name as a DNS label of the table: letters, digits, '-', '_', 1-63 characters,
// neither end a '-' (RFC 1123 host names, with '_' as DnsServer allows). Others get no name.
export function dnsLabel(s: string | undefined): string | undefined {
  return s !== undefined && /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(s) ? s.toLowerCase() : undefined;
}
