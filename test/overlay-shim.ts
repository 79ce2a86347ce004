// TEMPORARY until the dataplane's sw.overlay (helper "vxlan-dp") is merged: a stand-in with the
// contract's API that records what the compiler programs. Deleted at the merge.
import { Switch } from '../src/dataplane.js';

type Remote = { network: number; vlan: number; mac: string; addresses: string[]; providerAddress: string };
if (!('overlay' in Switch.prototype)) {
  Object.defineProperty(Switch.prototype, 'overlay', {
    get() {
      const self = this as { _ov?: unknown };
      if (!self._ov) {
        const remotes = new Map<string, Remote>();
        const vnis = new Map<string, number>();
        self._ov = {
          underlay: undefined as unknown,
          setUnderlay(u: unknown) { this.underlay = u; },
          clearUnderlay() { this.underlay = undefined; },
          setVni(network: number, vni: number, vlan = 0) {
            for (const [k, v] of vnis) if (v === vni && k !== `${network}/${vlan}`) throw new Error(`vni: ${vni} is another domain's`);
            vnis.set(`${network}/${vlan}`, vni);
          },
          removeVni(network: number, vlan = 0) { vnis.delete(`${network}/${vlan}`); },
          addRemote(r: { network: number; vlan?: number; mac: string; addresses: string[]; providerAddress: string }) {
            if (!vnis.has(`${r.network}/${r.vlan ?? 0}`)) throw new Error('network: no VNI');
            remotes.set(`${r.network}/${r.vlan ?? 0}/${r.mac}`, { network: r.network, vlan: r.vlan ?? 0, mac: r.mac, addresses: [...r.addresses], providerAddress: r.providerAddress });
          },
          removeRemote(r: { network: number; vlan?: number; mac: string }) { return remotes.delete(`${r.network}/${r.vlan ?? 0}/${r.mac}`); },
          remotes() { return [...remotes.values()].map((r) => structuredClone(r)); },
        };
      }
      return self._ov;
    },
  });
}
