// A host network as a user runs it: the object store (HCN-shaped model), the compiler that keeps a
// switch in step with it, and the state directory that makes it survive a restart. A change is
// validated, compiled into the dataplane and saved, or refused with the running state unchanged.
import { Switch, type SwitchOptions } from './dataplane.js';
import { Store } from './model/store.js';
import { loadState, saveState } from './model/persist.js';
import { HostCompiler, type HostConfig } from './compile/host.js';
import type { ModelState, Transport } from './model/types.js';
import { ModelError, hostPort } from './model/validate.js';
import { UdpTransport } from './transports/udp.js';
import { StreamTransport } from './transports/stream.js';
import { WebSocketTransport } from './transports/websocket.js';

interface Open { key: string; close: () => Promise<void> }

// Opens a transport on a switch port; a failure (an address in use) is an InvalidArgument naming the
// field.
export async function openTransport(sw: Switch, port: number, t: Transport, field = 'Transport'): Promise<() => Promise<void>> {
  try {
    if (t.Type === 'udp') {
      const tr = await UdpTransport.open(sw, port, { bind: hostPort(t.Bind, `${field}.Bind`), peer: t.Peer ? hostPort(t.Peer, `${field}.Peer`) : undefined });
      return () => tr.close();
    }
    if (t.Type === 'stream') {
      const tr = await StreamTransport.listen(sw, port, t.Listen.startsWith('unix:') ? { unix: t.Listen.slice(5) } : { tcp: hostPort(t.Listen.slice(4), `${field}.Listen`) });
      return () => tr.close();
    }
    const tr = await WebSocketTransport.listen(sw, port, hostPort(t.Listen, `${field}.Listen`));
    return () => tr.close();
  } catch (e) {
    if (e instanceof ModelError) throw e;
    throw new ModelError('InvalidArgument', t.Type === 'udp' ? `${field}.Bind` : `${field}.Listen`, (e as Error).message);
  }
}

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

  private open = new Map<string, Open>();

  // Puts the model (and so the dataplane and the state file) back to an earlier snapshot.
  restore(state: ModelState): void {
    this.store.replace(state);
  }

  // Brings the endpoints' transports and captures in line with the model: closes those of endpoints
  // gone or changed, opens the new ones. Throws (a ModelError naming the field) if one cannot open;
  // the caller undoes the change that asked for it.
  async syncTransports(): Promise<void> {
    const want = new Map<string, { key: string; port: number; ep: { Transport?: Transport; Capture?: string } }>();
    for (const ep of this.store.list('endpoint')) {
      const port = this.portOf(ep.ID);
      if (port === undefined || (!ep.Transport && !ep.Capture)) continue;
      want.set(ep.ID, { key: JSON.stringify([port, ep.Transport, ep.Capture]), port, ep: { Transport: ep.Transport, Capture: ep.Capture } });
    }
    for (const [id, o] of this.open) {
      if (want.get(id)?.key === o.key) continue;
      await o.close();
      this.open.delete(id);
    }
    for (const [id, w] of want) {
      if (this.open.has(id)) continue;
      const closes: Array<() => Promise<void>> = [];
      if (w.ep.Capture) {
        const stop = this.sw.capture(w.port, w.ep.Capture);
        closes.push(async () => stop());
      }
      try {
        if (w.ep.Transport) closes.push(await openTransport(this.sw, w.port, w.ep.Transport));
      } catch (e) {
        for (const c of closes) await c();
        throw e;
      }
      this.open.set(id, { key: w.key, close: async () => { for (const c of closes) await c(); } });
    }
  }

  async closeTransports(): Promise<void> {
    for (const o of this.open.values()) await o.close();
    this.open.clear();
  }
}
