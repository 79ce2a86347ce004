// A host network as a user runs it: the object store (HCN-shaped model), the compiler that keeps a
// switch in step with it, the attachments that connect endpoints to the outside (transports and
// captures), and the state directory that makes it survive a restart.
//
// A change goes through `change()`, one at a time (the daemon's API, its retries and its start all
// queue on the same lock, so no change ever sees another half done): the store checks it whole, the
// compiler applies it to the dataplane, the endpoint's transport and capture are opened, and only
// then is the new state written to state.json and committed. If any step is refused, everything
// before it is undone and the state file is never touched: a refused change cannot reach it, even
// if the process dies at any moment.
//
// A cluster member (src/cluster) hooks into the same path: its check runs inside the change, after
// the attachments opened and before the state file is written, so an Overlay endpoint whose MAC or
// address another host holds is refused like any other refusal (undone, never in state.json); it
// learns of every committed change afterwards, to publish it.
//
// An attachment that cannot open when nobody asked for it in that moment (at start, or a port that
// another program took meanwhile) does not stop the host: the endpoint is degraded, with the reason
// in its Status, in `stats` and in the log, and it is retried with a growing delay until it opens.
// An attachment follows its endpoint's switch port (the compiler keeps the port across modifies),
// so only a change to the endpoint's Transport or Capture reopens it.
//
// With an overlay (HostConfig.overlay), the Host opens the underlay transport (src/transports/
// underlay.ts) on the compiler's underlay port, and keeps the cluster's view: the remote endpoints
// other hosts published, by source (setRemoteEndpoints), which it compiles with the store's objects
// as IsRemoteEndpoint endpoints (never stored in the model or state.json; their own file,
// cluster-view.json, keeps the last view across a restart). A local object always wins: a cluster
// entry whose network is not here, or whose MAC or address a local endpoint has, waits unapplied.
import { Switch, type SwitchOptions } from './dataplane.js';
import { Store, type AnyObject, type Change } from './model/store.js';
import { loadState, saveState, loadLeases, saveLeases, loadClusterView, saveClusterView, STATE_FILE, LEASES_FILE, CLUSTER_FILE } from './model/persist.js';
import { HostCompiler, type HostConfig } from './compile/host.js';
import type { ModelState, Transport, EndpointStatus, HostComputeEndpoint, RemoteEndpointSpec } from './model/types.js';
import { ModelError, hostPort, validateRemoteEndpointSpec } from './model/validate.js';
import { contains } from './model/store.js';
import { UnderlayTransport, type UnderlayStats } from './transports/underlay.js';
import { UdpTransport } from './transports/udp.js';
import { StreamTransport } from './transports/stream.js';
import { WebSocketTransport } from './transports/websocket.js';
import type { TransportStats } from './transports/pump.js';
import { Owned, checkAddress, openCapture, socketPath, LOCK_FILE, TOKEN_FILE, OWNED_FILE, API_SOCKET, type BindPolicy, type Confinement } from './confine.js';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

export interface Attached {
  address: string;                       // where the transport listens or binds
  stats: () => TransportStats;
  close: () => Promise<void>;
}

// Checks a transport against the binding policy and the sockets directory; throws a ModelError
// naming the field.
export function checkTransport(t: Transport, field: string, c: Pick<Confinement, 'bind' | 'socketDir' | 'reserved'>): void {
  if (t.Type === 'udp') {
    checkAddress(c.bind, hostPort(t.Bind, `${field}.Bind`), `${field}.Bind`);
    if (t.Peer) checkAddress(c.bind, hostPort(t.Peer, `${field}.Peer`), `${field}.Peer`, true);
  } else if (t.Type === 'stream' && t.Listen.startsWith('unix:')) {
    socketPath(c as Confinement, t.Listen.slice(5), `${field}.Listen`);
  } else {
    const l = t.Type === 'stream' ? t.Listen.slice(4) : t.Listen;
    checkAddress(c.bind, hostPort(l, `${field}.Listen`), `${field}.Listen`);
  }
}

// Opens a transport on a switch port; a failure (an address in use, a path that is not netplane's)
// is an InvalidArgument naming the field. Unix sockets live in the confinement's sockets directory.
export async function openTransport(sw: Switch, port: number, t: Transport, field: string, c: Confinement): Promise<Attached> {
  try {
    if (t.Type === 'udp') {
      const tr = await UdpTransport.open(sw, port, { bind: hostPort(t.Bind, `${field}.Bind`), peer: t.Peer ? hostPort(t.Peer, `${field}.Peer`) : undefined });
      const a = tr.address();
      return { address: `${a.host}:${a.port}`, stats: () => tr.stats, close: () => tr.close() };
    }
    if (t.Type === 'stream' && t.Listen.startsWith('unix:')) {
      const path = socketPath(c, t.Listen.slice(5), `${field}.Listen`);
      c.owned.clearSocket(path, `${field}.Listen`);
      const tr = await StreamTransport.listen(sw, port, { unix: path, mode: 0o660 });
      c.owned.made(path, 'socket');
      return {
        address: `unix:${path}`, stats: () => tr.stats,
        close: async () => { await tr.close(); c.owned.removeSocket(path); },
      };
    }
    if (t.Type === 'stream') {
      const tr = await StreamTransport.listen(sw, port, { tcp: hostPort(t.Listen.slice(4), `${field}.Listen`) });
      return { address: `tcp:${t.Listen.slice(4)}`, stats: () => tr.stats, close: () => tr.close() };
    }
    const tr = await WebSocketTransport.listen(sw, port, { ...hostPort(t.Listen, `${field}.Listen`), allowedOrigins: t.AllowedOrigins ?? [] });
    return { address: `ws://${t.Listen}/`, stats: () => tr.stats, close: () => tr.close() };
  } catch (e) {
    if (e instanceof ModelError) throw e;
    throw new ModelError('InvalidArgument', t.Type === 'udp' ? `${field}.Bind` : `${field}.Listen`, (e as Error).message);
  }
}

export interface HostOptions {
  stateDir?: string;           // where state.json lives; absent: in memory only
  config?: HostConfig;         // the uplink
  switch?: SwitchOptions;
  captureDir?: string;         // where endpoints' captures go (default: <stateDir>/captures)
  socketDir?: string;          // where "unix:NAME" transports listen (default: <stateDir>/sockets)
  bind?: BindPolicy;           // which addresses and ports transports may bind (default: loopback, 1024 and up)
  reserved?: string[];         // more paths that are never a capture or socket (the API socket)
  log?: (message: string) => void;
  clock?: () => number;        // wall time in ms for DHCP leases (default Date.now): their expiry survives a restart
  resolvConf?: string;         // the host's resolvers, for the gateways' DNS servers (default /etc/resolv.conf)
  // With config.overlay: 'socket' (the default) opens the socket underlay on the provider address;
  // false leaves the underlay port (compiler.underlayPort) to the caller (tests, other transports).
  underlay?: 'socket' | false;
}

// A cluster entry as it is compiled and listed: an IsRemoteEndpoint endpoint with an ID no model
// object can have ("remote:<host>:<ID>": the model's IDs have no colon).
export const remoteEndpointId = (r: RemoteEndpointSpec): string => `remote:${r.Host}:${r.ID}`;

// An endpoint's open attachment: its capture and transport, since when, and how to close both.
interface Open { key: string; since: string; transport?: Attached; close: () => Promise<void> }
interface Degraded { key: string; reason: string; since: string; retryAt: number; delay: number }
interface Forward { udp: boolean; port: number; field: string }

// What a cluster member checks before a change commits (throws to refuse it) and learns after it
// committed. Both run on the Host's lock: neither may call change().
export interface ChangeHook {
  check(c: Change, result: AnyObject, before: ModelState, next: ModelState): Promise<void>;
  committed(c: Change, result: AnyObject, before: ModelState, next: ModelState): void;
}

const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;

export class Host {
  readonly sw: Switch;
  readonly store: Store;
  readonly compiler: HostCompiler;
  readonly confinement: Confinement;
  private open = new Map<string, Open>();
  private degraded = new Map<string, Degraded>();
  private forwardsOpen = new Map<string, { key: string; close: () => Promise<void> }>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly log: (m: string) => void;
  private readonly clock: () => number;
  changeHook?: ChangeHook;       // set by the cluster member (src/cluster), when there is one
  // The cluster's remote endpoints by source (setRemoteEndpoints), applied or waiting.
  private cluster: Record<string, RemoteEndpointSpec[]> = {};
  readonly underlay?: UnderlayTransport;

  constructor(readonly opts: HostOptions = {}) {
    this.log = opts.log ?? ((m) => console.error(m));
    this.sw = new Switch(opts.switch);
    const dir = opts.stateDir ? resolve(opts.stateDir) : undefined;
    this.clock = opts.clock ?? Date.now;
    this.compiler = new HostCompiler(this.sw, opts.config, {
      clock: this.clock, log: this.log, resolvConf: opts.resolvConf,
      leases: dir ? { load: () => loadLeases(dir), save: (l) => saveLeases(dir, l) } : undefined,
    });
    const ov = this.compiler.overlay;
    if (ov && opts.underlay !== false) {
      try {
        this.underlay = UnderlayTransport.open(this.sw, this.compiler.underlayPort!, { address: ov.providerAddress, udpPort: ov.udpPort });
      } catch (e) {
        throw new ModelError('InvalidArgument', 'overlay', `cannot open the underlay on ${ov.providerAddress}:${ov.udpPort} (UDP sockets there: an address of this host and a free port): ${(e as Error).message}`);
      }
    }
    this.confinement = {
      captureDir: opts.captureDir ? resolve(opts.captureDir) : dir && join(dir, 'captures'),
      socketDir: opts.socketDir ? resolve(opts.socketDir) : dir && join(dir, 'sockets'),
      reserved: [...(dir ? [STATE_FILE, LEASES_FILE, CLUSTER_FILE, LOCK_FILE, TOKEN_FILE, OWNED_FILE, API_SOCKET].map((f) => join(dir, f)) : []), ...(opts.reserved ?? []).map((p) => resolve(p))],
      owned: new Owned(dir),
      bind: opts.bind ?? {},
    };
    const initial = dir ? loadState(dir) : undefined;
    if (dir) this.cluster = loadClusterView(dir);
    if (initial) this.compiler.apply(this.withCluster(initial));
    // Changes made directly on the store (the SDK's synchronous path) compile and save here; the
    // daemon's changes go through change(), which saves only after the attachments opened.
    this.store = new Store(initial, (next) => {
      const before = this.withCluster(this.store.snapshot());
      this.compiler.apply(this.withCluster(next));
      try {
        if (dir) saveState(dir, next);
      } catch (e) {
        this.compiler.apply(before, true);
        throw e;
      }
    });
  }

  // ---- the cluster's remote endpoints ----------------------------------------------------------------

  // Replaces the remote endpoints from `source` (a cluster membership) with `list`, on the change
  // lock: each entry is checked; one that is malformed, for a network this host does not have (or
  // not an Overlay one), at this host's own provider address, or whose MAC or address a local
  // endpoint (or another entry) has, is refused with the reason; the rest are compiled as
  // IsRemoteEndpoint endpoints. The view is saved in cluster-view.json (the malformed entries left
  // out; the refused ones kept, to apply when what refused them goes). Throws, changing nothing, only
  // when the dataplane or the file refuses the whole change.
  setRemoteEndpoints(source: string, list: RemoteEndpointSpec[]): Promise<{ applied: number; refused: Array<{ ID: string; reason: string }> }> {
    return this.serial(async () => {
      if (typeof source !== 'string' || source === '') throw new ModelError('InvalidArgument', 'source', 'must be a non-empty string');
      if (!Array.isArray(list)) throw new ModelError('InvalidArgument', 'list', 'must be an array of remote endpoints');
      const refused: Array<{ ID: string; reason: string }> = [];
      const kept: RemoteEndpointSpec[] = [];
      list.forEach((x, i) => {
        try { kept.push(validateRemoteEndpointSpec(x, `[${i}]`)); } catch (e) {
          const id = typeof (x as { ID?: unknown })?.ID === 'string' ? (x as { ID: string }).ID : `[${i}]`;
          refused.push({ ID: id, reason: e instanceof ModelError ? `${e.field}: ${e.reason}` : (e as Error).message });
        }
      });
      const view = { ...this.cluster };
      if (kept.length) view[source] = kept; else delete view[source];
      const state = this.store.snapshot();
      const plan = this.clusterPlan(state, view);
      let applied = 0;
      for (const r of kept) {
        const why = plan.waiting.get(`${source}\u0000${remoteEndpointId(r)}`);
        if (why) refused.push({ ID: r.ID, reason: why }); else applied++;
      }
      const before = this.withCluster(state);
      this.compiler.apply({ ...state, endpoints: [...state.endpoints, ...plan.endpoints] });
      try {
        if (this.opts.stateDir) saveClusterView(this.opts.stateDir, view);
      } catch (e) {
        this.compiler.apply(before, true);
        throw e;
      }
      this.cluster = view;
      return { applied, refused };
    });
  }

  // The remote endpoints from the cluster that are applied.
  remoteEndpoints(): RemoteEndpointSpec[] {
    return this.clusterPlan(this.store.snapshot(), this.cluster).applied.map((r) => structuredClone(r));
  }

  // The applied ones as endpoints (read only, never stored), for GET /endpoints and `endpoint list`.
  remoteEndpointObjects(): Array<HostComputeEndpoint & { Status: EndpointStatus & { Host: string } }> {
    return this.remoteEndpoints().map((r) => ({ ...remoteEndpoint(r), Status: { Transport: 'none' as const, Host: r.Host } }));
  }

  // A state with the cluster's applicable entries added as IsRemoteEndpoint endpoints: what the
  // compiler is given for every change.
  private withCluster(state: ModelState): ModelState {
    const plan = this.clusterPlan(state, this.cluster);
    return plan.endpoints.length ? { ...state, endpoints: [...state.endpoints, ...plan.endpoints] } : state;
  }

  // Which entries of `view` apply over `state` (sources in name order, entries in order: the first
  // to claim a MAC or an address keeps it), and why the others wait.
  private clusterPlan(state: ModelState, view: Record<string, RemoteEndpointSpec[]>) {
    const endpoints: HostComputeEndpoint[] = [];
    const applied: RemoteEndpointSpec[] = [];
    const waiting = new Map<string, string>();
    const own = this.compiler.overlay?.providerAddress;
    const macs = new Map<string, string>(), addrs = new Map<string, string>(), ids = new Set<string>();
    for (const e of state.endpoints) {
      if (e.MacAddress) macs.set(`${e.HostComputeNetwork}/${e.MacAddress}`, `endpoint ${e.ID}`);
      for (const c of e.IpConfigurations ?? []) addrs.set(`${e.HostComputeNetwork}/${c.IpAddress}`, `endpoint ${e.ID}`);
    }
    for (const source of Object.keys(view).sort()) {
      for (const r of view[source]) {
        const id = remoteEndpointId(r);
        const why = (() => {
          const net = state.networks.find((n) => n.ID === r.HostComputeNetwork);
          if (!net) return `HostComputeNetwork: this host has no network ${r.HostComputeNetwork}`;
          if (net.Type !== 'Overlay') return `HostComputeNetwork: network ${net.ID} is ${net.Type}, not Overlay`;
          if (!own) return 'this host has no overlay (the daemon\'s `overlay` setting)';
          if (r.ProviderAddress === own) return `ProviderAddress: ${own} is this host's own provider address`;
          if (ids.has(id)) return `ID: endpoint ${r.ID} of host ${r.Host} is given twice`;
          const m = macs.get(`${net.ID}/${r.MacAddress}`);
          if (m) return `MacAddress: ${r.MacAddress} belongs to ${m} of network ${net.ID}`;
          for (const a of r.IpAddresses) {
            const o = addrs.get(`${net.ID}/${a}`);
            if (o) return `IpAddresses: ${a} belongs to ${o} of network ${net.ID}`;
            if (!(net.Ipams ?? []).some((i) => i.Subnets.some((s) => contains(s.IpAddressPrefix, a)))) return `IpAddresses: ${a} is in no subnet of network ${net.ID}`;
          }
          return undefined;
        })();
        if (why) { waiting.set(`${source}\u0000${id}`, why); continue; }
        ids.add(id);
        macs.set(`${r.HostComputeNetwork}/${r.MacAddress}`, `remote endpoint ${r.ID} of host ${r.Host}`);
        for (const a of r.IpAddresses) addrs.set(`${r.HostComputeNetwork}/${a}`, `remote endpoint ${r.ID} of host ${r.Host}`);
        endpoints.push(remoteEndpoint(r));
        applied.push(r);
      }
    }
    return { endpoints, applied, waiting };
  }

  // Attaches a port to the uplink's broadcast domain (the host's external network).
  addUplinkPort(): number {
    return this.sw.addPort({ network: this.compiler.uplinkNetwork() }).id;
  }

  portOf(endpoint: string): number | undefined { return this.compiler.portOf(endpoint); }

  // Runs `fn` when every change queued before it has finished: one change at a time.
  serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const r = this.queue.then(fn);
    this.queue = r.catch(() => undefined);
    return r;
  }

  // One change, all or nothing: checked, compiled, attached, saved, committed; or refused with
  // nothing changed (the dataplane, the attachments, the store and the state file).
  change(c: Change): Promise<AnyObject> {
    return this.serial(async () => {
      // An assigned MAC or address also avoids the cluster's remote endpoints. Two hosts assigning at
      // the same moment can still pick the same one: the cluster's claim refuses the second.
      const { next, result } = this.store.prepare(c, this.clusterPlan(this.store.snapshot(), this.cluster).endpoints);
      if (!next) return result;
      const touched = c.kind === 'endpoint' ? new Set([result.ID]) : new Set<string>();
      for (const e of next.endpoints) if (touched.has(e.ID)) this.checkAttachment(e, next);
      const before = this.store.snapshot();
      this.compiler.apply(this.withCluster(next));
      try {
        await this.attach(next, touched);
        await this.changeHook?.check(c, result, before, next);
        if (this.opts.stateDir) saveState(this.opts.stateDir, next);
      } catch (e) {
        this.compiler.apply(this.withCluster(before), true);
        await this.attach(before, new Set());
        throw e;
      }
      this.store.accept(next);
      this.changeHook?.committed(c, result, before, next);
      return result;
    });
  }

  // Brings the attachments in line with the store (after changes made directly on it, and at start).
  // Those that cannot open leave their endpoint degraded; none is refused.
  syncTransports(): Promise<void> {
    return this.serial(() => this.attach(this.store.snapshot(), new Set()));
  }

  // Tries the degraded endpoints whose retry time has come.
  retryDegraded(now = Date.now()): Promise<void> {
    if (![...this.degraded.values()].some((d) => d.retryAt <= now)) return Promise.resolve();
    return this.serial(() => this.attach(this.store.snapshot(), new Set(), now));
  }

  // The underlay transport's counters (undefined without one).
  underlayStats(): UnderlayStats | undefined { return this.underlay && { ...this.underlay.stats }; }

  async closeTransports(): Promise<void> {
    await this.serial(async () => {
      this.underlay?.close();
      (this as { underlay?: UnderlayTransport }).underlay = undefined;
      for (const o of this.open.values()) await o.close();
      this.open.clear();
      for (const o of this.forwardsOpen.values()) await o.close();
      this.forwardsOpen.clear();
      this.degraded.clear();
    });
  }

  // What the daemon reports about an endpoint: its attachment, and the DHCP lease its MAC holds.
  endpointStatus(id: string): EndpointStatus {
    let ep: AnyObject | undefined;
    try { ep = this.store.get('endpoint', id); } catch { ep = undefined; }
    const lease = ep && this.compiler.services.leases().find((l) => l.static && l.network === ep.HostComputeNetwork && l.mac === ep.MacAddress);
    const dhcp = lease ? { Dhcp: { Lease: 'Static' as const, Expires: new Date(lease.expires).toISOString() } } : {};
    const d = this.degraded.get(id);
    if (d) return { Transport: 'degraded', Reason: d.reason, Since: d.since, ...dhcp };
    const o = this.open.get(id);
    if (o) return { Transport: 'up', Since: o.since, ...(o.transport ? { Address: o.transport.address } : {}), ...dhcp };
    return { Transport: 'none', ...dhcp };
  }

  // The dynamic DHCP leases, as endpoints (read only, never stored): the client is on some port of
  // the network (not one of its own), so they have no switch port, Transport or policies. Their ID
  // "dhcp:<network>:<MAC>" has colons, which no endpoint ID the model accepts has. A lease released
  // or expired is gone from here.
  leaseEndpoints(): Array<HostComputeEndpoint & { Status: EndpointStatus }> {
    return this.compiler.services.leases().filter((l) => !l.static).map((l) => ({
      ID: `dhcp:${l.network}:${l.mac}`, HostComputeNetwork: l.network, MacAddress: l.mac,
      IpConfigurations: [{ IpAddress: l.address, PrefixLength: l.prefixLength }],
      Status: { Transport: 'none' as const, Dhcp: { Lease: 'Dynamic' as const, Expires: new Date(l.expires).toISOString() } },
    }));
  }

  // Every endpoint's transport with its counters, for `stats`.
  transportStats(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const e of this.store.list('endpoint')) {
      if (!e.Transport && !e.Capture) continue;
      const o = this.open.get(e.ID);
      out.push({ endpoint: e.ID, type: e.Transport?.Type ?? 'capture', ...this.endpointStatus(e.ID), ...(o?.transport ? o.transport.stats() : {}) });
    }
    return out;
  }

  // An endpoint's host port forwards: its TCP and UDP PortMappings, when the socket uplink carries
  // them (a host socket on 127.0.0.1:ExternalPort whose connections or datagrams enter through the
  // uplink interface).
  private forwards(ep: HostComputeEndpoint): Forward[] {
    if (!this.compiler.socketUplink) return [];
    return (ep.Policies ?? []).flatMap((p, i) => (p.Type === 'PortMapping' && (p.Settings.Protocol === 6 || p.Settings.Protocol === 17)
      ? [{ udp: p.Settings.Protocol === 17, port: p.Settings.ExternalPort, field: `Policies[${i}].Settings.ExternalPort` }] : []));
  }

  // TCP: listens on 127.0.0.1:port and carries each connection to the uplink address:port as a SYN
  // from the uplink's peer (SOCKET_UPLINK_PEER), which the port mapping's DNAT takes to the endpoint.
  // UDP: a dgram socket bound there, each host peer a flow of the uplink's udpForward().
  // Returns its close.
  private async listenForward(f: Forward): Promise<() => Promise<void>> {
    checkAddress(this.confinement.bind, { host: '127.0.0.1', port: f.port }, f.field);
    const up = this.compiler.socketUplink!;
    const { address, peer } = this.compiler.uplinkAddresses()!;
    const cannot = (e: unknown) => new ModelError('Conflict', f.field, `cannot listen on 127.0.0.1:${f.port}${f.udp ? ' (UDP)' : ''}: ${(e as Error).message}`);
    if (f.udp) {
      const socket = createSocket('udp4');
      await new Promise<void>((ok, fail) => {
        socket.once('error', (e) => fail(cannot(e)));
        socket.bind(f.port, '127.0.0.1', () => ok());
      });
      socket.on('error', (e) => this.log(`netplane: UDP port forward 127.0.0.1:${f.port}: ${e.message}`));
      const fwd = up.udpForward({ socket, address, peer, port: f.port });
      return async () => { fwd.close(); await new Promise<void>((ok) => socket.close(() => ok())); };
    }
    const server = createServer((sock) => {
      const cport = sock.remotePort;
      if (cport === undefined) { sock.destroy(); return; }
      up.connect({ v6: false, src: address, sport: f.port, dst: peer, dport: cport }, sock);
    });
    await new Promise<void>((ok, fail) => {
      server.once('error', (e) => fail(cannot(e)));
      server.listen(f.port, '127.0.0.1', () => ok());
    });
    return () => new Promise<void>((ok) => server.close(() => ok()));
  }

  // The checks a transport or capture must pass before anything is opened: the binding policy, the
  // directories, and no two endpoints on one socket name or capture file.
  private checkAttachment(e: HostComputeEndpoint, state: ModelState): void {
    if (e.Transport) checkTransport(e.Transport, 'Transport', this.confinement);
    for (const other of state.endpoints) {
      if (other.ID === e.ID) continue;
      if (e.Capture && other.Capture === e.Capture) throw new ModelError('Conflict', 'Capture', `${e.Capture} is the capture of endpoint ${other.ID}`);
      if (e.Transport?.Type === 'stream' && other.Transport?.Type === 'stream' && e.Transport.Listen === other.Transport.Listen) {
        throw new ModelError('Conflict', 'Transport.Listen', `${e.Transport.Listen} is the transport of endpoint ${other.ID}`);
      }
    }
  }

  // Closes the attachments of endpoints gone or changed and opens the wanted ones. An endpoint in
  // `strict` (the one a change is about) that cannot open throws; others become degraded.
  private async attach(state: ModelState, strict: Set<string>, now = Date.now()): Promise<void> {
    const want = new Map<string, { key: string; port: number; ep: HostComputeEndpoint }>();
    for (const ep of state.endpoints) {
      const port = this.portOf(ep.ID);
      if (port === undefined || (!ep.Transport && !ep.Capture)) continue;
      want.set(ep.ID, { key: JSON.stringify([port, ep.Transport, ep.Capture]), port, ep });
    }
    for (const [id, o] of this.open) {
      if (want.get(id)?.key === o.key) continue;
      await o.close();
      this.open.delete(id);
    }
    for (const [id, d] of this.degraded) if (want.get(id)?.key !== d.key) this.degraded.delete(id);
    for (const [id, w] of want) {
      if (this.open.has(id)) continue;
      const d = this.degraded.get(id);
      if (d && !strict.has(id) && d.retryAt > now) continue;
      try {
        if (!strict.has(id)) this.checkAttachment(w.ep, state);
        const o = await this.openAttachment(w.key, w.port, w.ep, now);
        this.open.set(id, o);
        if (d) { this.degraded.delete(id); this.log(`netplane: endpoint ${id}: attached again (${o.transport?.address ?? 'capture'})`); }
      } catch (e) {
        if (strict.has(id)) throw e;
        const reason = e instanceof ModelError ? `${e.field}: ${e.reason}` : (e as Error).message;
        const delay = d ? Math.min(d.delay * 2, RETRY_MAX_MS) : RETRY_FIRST_MS;
        if (!d || d.reason !== reason) this.log(`netplane: endpoint ${id}: degraded: ${reason} (retrying)`);
        this.degraded.set(id, { key: w.key, reason, since: d?.since ?? new Date(now).toISOString(), retryAt: now + delay, delay });
      }
    }
    await this.attachForwards(state, strict);
  }

  // Host port forwards, kept apart from the transports so that a port mapping added or removed never
  // reopens a transport. All of an endpoint's listeners open or none; the endpoint a change is about
  // (`strict`) is refused when one cannot, others are logged and tried again at the next change.
  private async attachForwards(state: ModelState, strict: Set<string>): Promise<void> {
    const want = new Map<string, { key: string; f: Forward[] }>();
    for (const ep of state.endpoints) {
      const f = this.forwards(ep);
      if (f.length && this.portOf(ep.ID) !== undefined) want.set(ep.ID, { key: JSON.stringify(f), f });
    }
    for (const [id, o] of this.forwardsOpen) {
      if (want.get(id)?.key === o.key) continue;
      await o.close();
      this.forwardsOpen.delete(id);
    }
    for (const [id, w] of want) {
      if (this.forwardsOpen.has(id)) continue;
      const closes: Array<() => Promise<void>> = [];
      const close = async () => { for (const c of closes.splice(0)) await c(); };
      try {
        for (const f of w.f) closes.push(await this.listenForward(f));
        this.forwardsOpen.set(id, { key: w.key, close });
      } catch (e) {
        await close();
        if (strict.has(id)) throw e;
        this.log(`netplane: endpoint ${id}: port forward not open: ${e instanceof ModelError ? `${e.field}: ${e.reason}` : (e as Error).message}`);
      }
    }
  }

  private async openAttachment(key: string, port: number, ep: HostComputeEndpoint, now: number): Promise<Open> {
    const closes: Array<() => void | Promise<void>> = [];
    const close = async () => { for (const c of closes.splice(0).reverse()) await c(); };
    try {
      if (ep.Capture) closes.push(this.sw.capture(port, openCapture(this.confinement, ep.Capture, 'Capture')));
      const transport = ep.Transport ? await openTransport(this.sw, port, ep.Transport, 'Transport', this.confinement) : undefined;
      if (transport) closes.push(transport.close);
      return { key, since: new Date(now).toISOString(), transport, close };
    } catch (e) {
      await close();
      throw e;
    }
  }
}

// A cluster entry as the endpoint it is compiled as.
function remoteEndpoint(r: RemoteEndpointSpec): HostComputeEndpoint {
  return {
    ID: remoteEndpointId(r), HostComputeNetwork: r.HostComputeNetwork, MacAddress: r.MacAddress,
    IpConfigurations: r.IpAddresses.map((a) => ({ IpAddress: a })), IsRemoteEndpoint: true,
    Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: r.ProviderAddress } }],
  };
}
