// A host network as a user runs it: the object store (HCN-shaped model), the compiler that keeps a
// switch in step with it, and the state directory that makes it survive a restart. A change is
// validated, compiled into the dataplane and saved, or refused with the running state unchanged.
import { Switch, type SwitchOptions } from './dataplane.js';
import { Store } from './model/store.js';
import { loadState, saveState } from './model/persist.js';
import { HostCompiler, type HostConfig } from './compile/host.js';
import type { ModelState } from './model/types.js';

export interface HostOptions {
  stateDir?: string;           // where state.json lives; absent: in memory only
  config?: HostConfig;         // the uplink
  switch?: SwitchOptions;
}

export class Host {
  readonly sw: Switch;
  readonly store: Store;
  readonly compiler: HostCompiler;

  constructor(readonly opts: HostOptions = {}) {
    this.sw = new Switch(opts.switch);
    this.compiler = new HostCompiler(this.sw, opts.config);
    const initial = opts.stateDir ? loadState(opts.stateDir) : undefined;
    if (initial) this.compiler.apply(initial);
    let current: ModelState | undefined = initial;
    this.store = new Store(initial, (next) => {
      const before = current ?? { networks: [], endpoints: [], namespaces: [], loadBalancers: [] };
      this.compiler.apply(next);
      try {
        if (opts.stateDir) saveState(opts.stateDir, next);
      } catch (e) {
        this.compiler.apply(before);
        throw e;
      }
      current = next;
    });
  }

  // Attaches a port to the uplink's broadcast domain (the host's external network).
  addUplinkPort(): number {
    return this.sw.addPort({ network: this.compiler.uplinkNetwork() }).id;
  }

  portOf(endpoint: string): number | undefined { return this.compiler.portOf(endpoint); }
}
