// What a network's IPv6 autoconfiguration (the `RouterAdvertisement` and `Dhcp6` extensions) means
// once the defaults are filled in, for the compiler (src/compile/services.ts).
//
// Defaults, and why:
//   - Both on for NAT, Internal and Overlay networks with an IPv6 subnet (the first one is the gateway's): a
//     guest gets a default route and an address with no configuration of its own, as from any IPv6
//     router (radvd) and as passt does.
//   - The advertisement carries the subnet (SLAAC when it is a /64, RFC 4862), the MTU, RDNSS and DNSSL
//     (below); the M flag when DHCPv6 has addresses to give (endpoints with a MAC and an IPv6
//     address of the subnet: their static bindings), the O flag when DHCPv6 runs.
//   - DNS (RDNSS, DHCPv6 option 23): the gateway's IPv6 address when its DNS server runs, else the IPv6
//     addresses of Dns.ServerList. Search (DNSSL, option 24): the DNS server's domain, then Dns.Search.
import type { HostComputeNetwork, Subnet } from './types.js';
import { gatewayOf, prefix, hasOwnGateway } from './validate.js';
import { networkDns } from './dns.js';

export interface NetworkIpv6 {
  subnet: Subnet;
  gateway: string;
  ra: boolean;
  dhcp6: boolean;
  dns: string[];
  search: string[];
}

export function networkIpv6(n: HostComputeNetwork): NetworkIpv6 | undefined {
  if (!hasOwnGateway(n.Type)) return undefined;
  const subnet = (n.Ipams ?? []).flatMap((i) => i.Subnets).find((s) => s.IpAddressPrefix.includes(':'));
  if (!subnet) return undefined;
  const ra = n.RouterAdvertisement?.Enabled !== false, dhcp6 = n.Dhcp6?.Enabled !== false;
  if (!ra && !dhcp6) return undefined;
  const gateway = gatewayOf(subnet);
  const d = networkDns(n);
  const dns = d ? [gateway] : (n.Dns?.ServerList ?? []).filter((a) => a.includes(':'));
  const search = [...(d ? [d.domain] : []), ...(n.Dns?.Search ?? [])].filter((s, i, all) => s && all.indexOf(s) === i);
  return { subnet, gateway, ra, dhcp6, dns, search };
}

// Whether IPv6 address `a` lies in `subnet` (a prefix text).
export function inSubnet6(a: string, subnet: string): boolean {
  if (!a.includes(':')) return false;
  const p = prefix(subnet, 'IpAddressPrefix');
  let x: Uint8Array;
  try { x = prefix(`${a}/128`, 'IpAddress').bytes; } catch { return false; }
  for (let i = 0; i < p.len; i++) if (((x[i >> 3] ^ p.bytes[i >> 3]) >> (7 - (i & 7))) & 1) return false;
  return true;
}
