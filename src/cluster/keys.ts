// The cluster's keys under the prefix (docs/cluster.md), built and parsed in one place:
//   <p>/hosts/<host>                      {host, providerAddress, version, since}   on the host's lease
//   <p>/endpoints/<host>/<endpointID>     RemoteEndpointSpec JSON                   on the host's lease
//   <p>/claims/<networkID>/mac/<mac>      "<host>/<endpointID>"                     on the host's lease
//   <p>/claims/<networkID>/ip/<ip>        "<host>/<endpointID>"                     on the host's lease
//   <p>/networks/<networkID>              the network's JSON                        no lease
// IDs, host names, MACs (the model's form) and addresses have no '/', so a key splits unambiguously.

import type { RemoteEndpointSpec } from '../model/types.js';

// What a host publishes of each of its Overlay endpoints, and what the others program from it: the
// Host API's RemoteEndpointSpec (src/model/types.ts).
export type { RemoteEndpointSpec };

export interface HostRecord { host: string; providerAddress: string; version: string; since: string }

export class Keys {
  constructor(readonly prefix: string) {}
  get hosts(): string { return `${this.prefix}/hosts/`; }
  get endpoints(): string { return `${this.prefix}/endpoints/`; }
  get networks(): string { return `${this.prefix}/networks/`; }
  host(h: string): string { return `${this.hosts}${h}`; }
  endpoint(h: string, id: string): string { return `${this.endpoints}${h}/${id}`; }
  network(id: string): string { return `${this.networks}${id}`; }
  claimMac(net: string, mac: string): string { return `${this.prefix}/claims/${net}/mac/${mac.toLowerCase()}`; }
  claimIp(net: string, ip: string): string { return `${this.prefix}/claims/${net}/ip/${ip.toLowerCase()}`; }
  // The host an endpoint key belongs to (undefined for a key not of that form).
  endpointHost(key: string): string | undefined {
    if (!key.startsWith(this.endpoints)) return undefined;
    const rest = key.slice(this.endpoints.length).split('/');
    return rest.length === 2 && rest[0] && rest[1] ? rest[0] : undefined;
  }
  last(key: string, under: string): string { return key.slice(under.length); }
}

// A claim's value: which endpoint of which host holds it.
export const claimValue = (host: string, endpoint: string): string => `${host}/${endpoint}`;

// The end of a prefix range: the prefix with its last byte incremented (etcd's range_end).
export function rangeEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1]++;
  return b;
}
