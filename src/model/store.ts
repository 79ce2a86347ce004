// The object store: create, get, list, modify and delete for every HCN object, with HNS's error
// kinds made precise. Creating an object that exists with the same content succeeds (clients retry)
// and returns what exists; with other content (a field given that differs, or a field the object has
// that the request left out) it is AlreadyExists naming the first field that differs. A reference to
// a missing object is NotFound naming the field; deleting an object others use, or a port mapping
// another endpoint owns, is a Conflict naming the owner. Endpoints without a MAC or an IP get one from
// their network's pools (those two fields may be absent from a retried create, and a modify that
// leaves them out keeps them), stored in the object so they survive a restart; an assigned address
// is never in the network's DHCP pool.
//
// Every change is checked whole against a copy of the state before it is committed, so a refused
// change leaves the store exactly as it was; `onChange` (the compiler into the dataplane) runs on
// the new state before it is committed too, and a failure there also refuses the change. A caller
// with work of its own between the two (the daemon opens transports, then saves) uses `prepare`,
// which computes and checks a change without committing it, then `accept`.
import { ModelError, validateNetwork, validateEndpoint, validateNamespace, validateLoadBalancer, prefix, macNumber, gatewayOf, vsidAt } from './validate.js';
import { networkDhcp } from './dhcp.js';
import type { ModelState, Kind, HostComputeNetwork, HostComputeEndpoint } from './types.js';
import { formatIPv4 } from '../frames.js';

export { gatewayOf };

// An HCN object as the store hands it out: its ID and the fields of its kind (src/model/types.ts).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyObject = { ID: string } & Record<string, any>;

const VALIDATE: Record<Kind, (v: unknown) => AnyObject> = {
  network: validateNetwork,
  endpoint: validateEndpoint,
  namespace: validateNamespace,
  loadbalancer: validateLoadBalancer,
};
const LIST: Record<Kind, keyof ModelState> = { network: 'networks', endpoint: 'endpoints', namespace: 'namespaces', loadbalancer: 'loadBalancers' };
const NAME: Record<Kind, string> = { network: 'HostComputeNetwork', endpoint: 'HostComputeEndpoint', namespace: 'HostComputeNamespace', loadbalancer: 'HostComputeLoadBalancer' };

// Locally administered MACs for endpoints of networks without a MacPool: 02:6e:70:01:xx:xx.
const DEFAULT_MAC_POOL = { start: 0x026e70010000, end: 0x026e7001ffff };

export const emptyState = (): ModelState => ({ networks: [], endpoints: [], namespaces: [], loadBalancers: [] });

export class Store {
  private state: ModelState;

  constructor(initial: ModelState = emptyState(), private readonly onChange?: (next: ModelState) => void) {
    this.state = structuredClone(initial);
    checkState(this.state);
  }

  snapshot(): ModelState { return structuredClone(this.state); }

  list(kind: Kind): AnyObject[] { return structuredClone(this.state[LIST[kind]] as AnyObject[]); }

  get(kind: Kind, id: string): AnyObject {
    const o = (this.state[LIST[kind]] as AnyObject[]).find((x) => x.ID === id);
    if (!o) throw new ModelError('NotFound', 'ID', `no ${NAME[kind]} ${JSON.stringify(id)}`);
    return structuredClone(o);
  }

  create(kind: Kind, value: unknown): AnyObject { return this.run(this.prepare({ op: 'create', kind, value })); }
  modify(kind: Kind, id: string, value: unknown): AnyObject { return this.run(this.prepare({ op: 'modify', kind, id, value })); }
  delete(kind: Kind, id: string): void { this.run(this.prepare({ op: 'delete', kind, id })); }

  // Computes and checks a change without committing it: `next` is the whole state it would make
  // (undefined for a retried create, which changes nothing), `result` what the caller answers.
  // `others`: endpoints that are not in the store but hold MACs and addresses all the same (the
  // cluster's remote endpoints): an assigned MAC or address avoids theirs too.
  prepare(c: Change, others: HostComputeEndpoint[] = []): { next?: ModelState; result: AnyObject } {
    if (c.op === 'create') {
      const v = VALIDATE[c.kind](c.value);
      const existing = (this.state[LIST[c.kind]] as AnyObject[]).find((x) => x.ID === v.ID);
      if (existing) {
        // A retried create: the same request again returns what exists (with what was assigned).
        const diff = firstDifference(v, existing, c.kind === 'endpoint' ? ASSIGNED : [], '');
        if (diff === undefined) return { result: structuredClone(existing) };
        throw new ModelError('AlreadyExists', diff, `${NAME[c.kind]} ${JSON.stringify(v.ID)} exists with another ${diff}`);
      }
      const next = structuredClone(this.state);
      const obj = c.kind === 'endpoint' ? assign(next, v as HostComputeEndpoint, others) : v;
      (next[LIST[c.kind]] as AnyObject[]).push(obj);
      checkState(next);
      return { next, result: structuredClone(obj) };
    }
    this.get(c.kind, c.id);
    const next = structuredClone(this.state);
    const list = next[LIST[c.kind]] as AnyObject[];
    const at = list.findIndex((x) => x.ID === c.id);
    if (c.op === 'delete') {
      const users = usersOf(this.state, c.kind, c.id);
      if (users) throw new ModelError('Conflict', 'ID', `${KIND_WORD[c.kind]} ${c.id} is used by ${users.text}; delete or change ${users.many ? 'them' : 'it'} first`);
      const [gone] = list.splice(at, 1);
      checkState(next);
      return { next, result: gone };
    }
    const v = VALIDATE[c.kind](c.value);
    if (v.ID !== c.id) throw new ModelError('InvalidArgument', 'ID', `cannot change an object's ID (${JSON.stringify(c.id)} to ${JSON.stringify(v.ID)})`);
    // An endpoint keeps what was assigned to it (its guest was configured with them, its DHCP lease
    // is them) when a modify leaves them out on the same network.
    const cur = list[at];
    if (c.kind === 'endpoint' && v.HostComputeNetwork === cur.HostComputeNetwork) {
      for (const k of ASSIGNED) if (v[k] === undefined && cur[k] !== undefined) v[k] = structuredClone(cur[k]);
    }
    const obj = c.kind === 'endpoint' ? assign({ ...next, endpoints: next.endpoints.filter((e) => e.ID !== c.id) }, v as HostComputeEndpoint) : v;
    list[at] = obj;
    checkState(next);
    return { next, result: structuredClone(obj) };
  }

  // Commits a state prepared (and applied) by the caller, without running onChange again.
  accept(next: ModelState): void {
    this.state = structuredClone(next);
  }

  private run(p: { next?: ModelState; result: AnyObject }): AnyObject {
    if (p.next) this.commit(p.next);
    return p.result;
  }

  // Puts a whole earlier state back (a change undone by its caller), through the same checks and
  // compile as any change.
  replace(state: ModelState): void {
    this.commit(structuredClone(state));
  }

  private commit(next: ModelState): void {
    checkState(next);
    this.onChange?.(next);
    this.state = next;
  }
}

export type Change =
  | { op: 'create'; kind: Kind; value: unknown }
  | { op: 'modify'; kind: Kind; id: string; value: unknown }
  | { op: 'delete'; kind: Kind; id: string };

// Top-level fields the store fills in when a create leaves them out.
const ASSIGNED = ['MacAddress', 'IpConfigurations'];

// The path of the first field where a create request and an existing object differ, or undefined
// when the request is the same (both validated, so both normalized); `assigned` fields may be absent
// from the request.
function firstDifference(req: unknown, existing: unknown, assigned: string[], path: string): string | undefined {
  if (Array.isArray(req) || Array.isArray(existing)) {
    if (!Array.isArray(req) || !Array.isArray(existing)) return path;
    for (let i = 0; i < Math.max(req.length, existing.length); i++) {
      const d = firstDifference(req[i], existing[i], [], `${path}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (typeof req === 'object' && req !== null && typeof existing === 'object' && existing !== null) {
    const a = req as Record<string, unknown>, b = existing as Record<string, unknown>;
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (a[k] === undefined && assigned.includes(k)) continue;
      const d = firstDifference(a[k], b[k], [], path ? `${path}.${k}` : k);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  return req === existing ? undefined : path;
}

const KIND_WORD: Record<Kind, string> = { network: 'network', endpoint: 'endpoint', namespace: 'namespace', loadbalancer: 'load balancer' };

// Who refers to an object ("endpoint web", "endpoints web, db"), or undefined when nobody does: a
// delete of an object in use is a Conflict naming its users, not a dangling reference.
function usersOf(s: ModelState, kind: Kind, id: string): { text: string; many: boolean } | undefined {
  const name = (word: string, ids: string[]) => ids.length === 0 ? undefined : { text: `${word}${ids.length > 1 ? 's' : ''} ${ids.join(', ')}`, many: ids.length > 1 };
  if (kind === 'network') return name('endpoint', s.endpoints.filter((e) => e.HostComputeNetwork === id).map((e) => e.ID));
  if (kind === 'namespace') return name('endpoint', s.endpoints.filter((e) => e.HostComputeNamespace === id).map((e) => e.ID));
  if (kind === 'endpoint') return name('load balancer', s.loadBalancers.filter((lb) => lb.HostComputeEndpoints.includes(id)).map((lb) => lb.ID));
  return undefined;
}

// Referential integrity and ownership, over a whole state.
export function checkState(s: ModelState): void {
  const networks = new Map(s.networks.map((n) => [n.ID, n]));
  const namespaces = new Set(s.namespaces.map((n) => n.ID));
  const endpoints = new Map(s.endpoints.map((e) => [e.ID, e]));
  const macs = new Map<string, string>();
  const addrs = new Map<string, string>();
  const mappings = new Map<string, string>();
  // A VNI is one segment: one network's.
  const vnis = new Map<number, string>();
  for (const n of s.networks) {
    const at = vsidAt(n);
    if (!at) continue;
    const vni = at.vni;
    const owner = vnis.get(vni);
    if (owner) throw new ModelError('Conflict', at.field, `network ${n.ID}: VSID ${vni} is network ${owner}'s`);
    vnis.set(vni, n.ID);
  }
  for (const e of s.endpoints) {
    const net = networks.get(e.HostComputeNetwork);
    if (!net) throw new ModelError('NotFound', 'HostComputeNetwork', `endpoint ${e.ID}: no network ${JSON.stringify(e.HostComputeNetwork)}`);
    if (e.IsRemoteEndpoint && net.Type !== 'Overlay') throw new ModelError('InvalidArgument', 'IsRemoteEndpoint', `endpoint ${e.ID}: network ${net.ID} is ${net.Type}; remote endpoints are on Overlay networks`);
    if (e.HostComputeNamespace && !namespaces.has(e.HostComputeNamespace)) throw new ModelError('NotFound', 'HostComputeNamespace', `endpoint ${e.ID}: no namespace ${JSON.stringify(e.HostComputeNamespace)}`);
    if (e.MacAddress) {
      const k = `${e.HostComputeNetwork}/${e.MacAddress}`;
      if (macs.has(k)) throw new ModelError('Conflict', 'MacAddress', `${e.MacAddress} belongs to endpoint ${macs.get(k)} of the same network`);
      macs.set(k, e.ID);
    }
    for (const [i, c] of (e.IpConfigurations ?? []).entries()) {
      const k = `${e.HostComputeNetwork}/${c.IpAddress}`;
      if (addrs.has(k)) throw new ModelError('Conflict', `IpConfigurations[${i}].IpAddress`, `${c.IpAddress} belongs to endpoint ${addrs.get(k)} of the same network`);
      addrs.set(k, e.ID);
      if (!inSubnets(net, c.IpAddress)) throw new ModelError('InvalidArgument', `IpConfigurations[${i}].IpAddress`, `${c.IpAddress} is in no subnet of network ${net.ID}`);
    }
    for (const [i, p] of (e.Policies ?? []).entries()) {
      if (p.Type !== 'PortMapping') continue;
      const k = `${p.Settings.Protocol}/${p.Settings.VIP ?? '*'}/${p.Settings.ExternalPort}`;
      const owner = mappings.get(k);
      if (owner) throw new ModelError('Conflict', `Policies[${i}].Settings.ExternalPort`, `${p.Settings.Protocol === 6 ? 'TCP' : 'UDP'} port ${p.Settings.ExternalPort}${p.Settings.VIP ? ` on ${p.Settings.VIP}` : ''} is mapped by endpoint ${owner}`);
      mappings.set(k, e.ID);
    }
  }
  for (const lb of s.loadBalancers) {
    lb.HostComputeEndpoints.forEach((id, i) => {
      if (!endpoints.has(id)) throw new ModelError('NotFound', `HostComputeEndpoints[${i}]`, `load balancer ${lb.ID}: no endpoint ${JSON.stringify(id)}`);
    });
  }
}

function inSubnets(n: HostComputeNetwork, ip: string): boolean {
  return (n.Ipams ?? []).some((i) => i.Subnets.some((s) => contains(s.IpAddressPrefix, ip)));
}

function toBig(b: Uint8Array): bigint { let v = 0n; for (const x of b) v = (v << 8n) | BigInt(x); return v; }

export function contains(cidr: string, ip: string): boolean {
  const p = prefix(cidr, 'prefix');
  if (p.v6 !== ip.includes(':')) return false;
  const a = prefix(`${ip}/${p.v6 ? 128 : 32}`, 'address');
  const bits = p.v6 ? 128 : 32;
  const shift = BigInt(bits - p.len);
  return (toBig(a.bytes) >> shift) === (toBig(p.bytes) >> shift);
}

// Gives an endpoint a MAC from its network's pool and an address from its first IPv4 subnet when it
// has none (HNS's assignment), avoiding what other endpoints (and `others`) and the gateway use.
function assign(s: ModelState, e: HostComputeEndpoint, others: HostComputeEndpoint[] = []): HostComputeEndpoint {
  const net = s.networks.find((n) => n.ID === e.HostComputeNetwork);
  if (!net) throw new ModelError('NotFound', 'HostComputeNetwork', `no network ${JSON.stringify(e.HostComputeNetwork)}`);
  const peers = [...s.endpoints, ...others].filter((x) => x.HostComputeNetwork === net.ID);
  const out = structuredClone(e);
  if (!out.MacAddress) {
    const used = new Set(peers.map((p) => p.MacAddress).filter(Boolean).map((m) => macNumber(m!)));
    const ranges = net.MacPool?.Ranges.map((r) => ({ start: macNumber(r.StartMacAddress), end: macNumber(r.EndMacAddress) })) ?? [DEFAULT_MAC_POOL];
    let found: number | undefined;
    for (const r of ranges) {
      for (let m = r.start; m <= r.end && found === undefined; m++) if (!used.has(m) && !(Math.floor(m / 2 ** 40) & 1)) found = m;
      if (found !== undefined) break;
    }
    if (found === undefined) throw new ModelError('Conflict', 'MacAddress', `the MAC pool of network ${net.ID} is exhausted`);
    out.MacAddress = found.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
  }
  if (!out.IpConfigurations || out.IpConfigurations.length === 0) {
    const subnet = (net.Ipams ?? []).flatMap((i) => i.Subnets).find((x) => !x.IpAddressPrefix.includes(':'));
    if (subnet) {
      const p = prefix(subnet.IpAddressPrefix, 'IpAddressPrefix');
      const base = Number(toBig(p.bytes));
      const size = 2 ** (32 - p.len);
      const used = new Set([gatewayOf(subnet), ...peers.flatMap((x) => (x.IpConfigurations ?? []).map((c) => c.IpAddress))]);
      // The DHCP pool is the dynamic leases' (src/model/dhcp.ts): endpoints get addresses outside it.
      const pool = networkDhcp(net)?.pool;
      let ip: string | undefined;
      for (let i = 1; i < size - 1 && !ip; i++) {
        const n = base + i;
        if (pool && n >= pool.start && n <= pool.end) continue;
        const text = formatIPv4(new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]));
        if (!used.has(text)) ip = text;
      }
      if (!ip) throw new ModelError('Conflict', 'IpConfigurations', `subnet ${subnet.IpAddressPrefix} of network ${net.ID} has no free address${pool ? ' outside its DHCP pool (Dhcp.Pool)' : ''}`);
      out.IpConfigurations = [{ IpAddress: ip, PrefixLength: p.len }];
    }
  }
  return out;
}
