// A light host for the cluster tests and the convergence bench: an in-memory model (networks and
// endpoints, no dataplane) with the Host's change path as the cluster sees it (serialized, the
// ChangeHook's check before the commit, committed after) and a setRemoteEndpoints that records what
// a Host would program, refusing what a Host refuses (a network it does not have, a MAC or address of
// a local endpoint).
import type { ClusterHost, RemoteEndpointSpec } from '../src/cluster/index.js';
import type { ChangeHook } from '../src/host.js';
import type { Change, AnyObject } from '../src/model/store.js';
import type { ModelState } from '../src/model/types.js';
import { ModelError } from '../src/model/validate.js';

export class SinkHost implements ClusterHost {
  state: ModelState = { networks: [], endpoints: [], namespaces: [], loadBalancers: [] };
  remotes: RemoteEndpointSpec[] = [];
  refused: Array<{ ID: string; reason: string }> = [];
  applies = 0;
  changeHook?: ChangeHook;
  onApply?: (list: RemoteEndpointSpec[]) => void;
  private queue: Promise<unknown> = Promise.resolve();
  readonly store = { snapshot: (): ModelState => structuredClone(this.state) };

  serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const r = this.queue.then(fn);
    this.queue = r.catch(() => undefined);
    return r;
  }

  change(c: Change): Promise<AnyObject> {
    return this.serial(async () => {
      const before = structuredClone(this.state);
      const next = structuredClone(this.state);
      const list = (c.kind === 'network' ? next.networks : next.endpoints) as AnyObject[];
      let result: AnyObject;
      if (c.op === 'create') {
        result = structuredClone(c.value) as AnyObject;
        if (list.some((x) => x.ID === result.ID)) throw new ModelError('AlreadyExists', 'ID', `${result.ID} exists`);
        list.push(result);
      } else {
        const at = list.findIndex((x) => x.ID === c.id);
        if (at < 0) throw new ModelError('NotFound', 'ID', `no ${c.id}`);
        if (c.op === 'delete') {
          if (c.kind === 'network' && next.endpoints.some((e) => e.HostComputeNetwork === c.id)) throw new ModelError('Conflict', 'ID', `network ${c.id} is used by endpoints`);
          [result] = list.splice(at, 1);
        } else {
          result = structuredClone(c.value) as AnyObject;
          list[at] = result;
        }
      }
      await this.changeHook?.check(c, result, before, next);
      this.state = next;
      this.changeHook?.committed(c, result, before, next);
      return result;
    });
  }

  setRemoteEndpoints(_source: string, list: RemoteEndpointSpec[]): Promise<{ applied: number; refused: Array<{ ID: string; reason: string }> }> {
    return this.serial(() => {
      const applied: RemoteEndpointSpec[] = [];
      const refused: Array<{ ID: string; reason: string }> = [];
      const nets = new Set(this.state.networks.map((n) => n.ID));
      const taken = new Map<string, string>();   // "network|MAC or address" -> local endpoint
      for (const e of this.state.endpoints) {
        if (e.MacAddress) taken.set(`${e.HostComputeNetwork}|${e.MacAddress}`, e.ID);
        for (const c of e.IpConfigurations ?? []) taken.set(`${e.HostComputeNetwork}|${c.IpAddress}`, e.ID);
      }
      for (const r of list) {
        const local = [r.MacAddress, ...r.IpAddresses].map((x) => taken.get(`${r.HostComputeNetwork}|${x}`)).find((x) => x);
        if (!nets.has(r.HostComputeNetwork)) refused.push({ ID: r.ID, reason: `no network ${r.HostComputeNetwork} here` });
        else if (local) refused.push({ ID: r.ID, reason: `conflicts with local endpoint ${local}` });
        else applied.push(r);
      }
      this.remotes = applied;
      this.refused = refused;
      this.applies++;
      this.onApply?.(applied);
      return { applied: applied.length, refused };
    });
  }

  remoteIds(): string[] { return this.remotes.map((r) => r.ID).sort(); }
}

export const overlayNetwork = (id: string, vsid: number, prefix = '10.50.0.0/24', gw = '10.50.0.1') => ({
  ID: id, Type: 'Overlay',
  Ipams: [{ Type: 'Static', Subnets: [{ IpAddressPrefix: prefix, Routes: [{ NextHop: gw, DestinationPrefix: '0.0.0.0/0' }], Policies: [{ Type: 'VSID', Settings: { IsolationId: vsid } }] }] }],
});

export const endpoint = (id: string, net: string, mac: string, ip: string) => ({
  ID: id, HostComputeNetwork: net, MacAddress: mac, IpConfigurations: [{ IpAddress: ip, PrefixLength: 24 }],
});
