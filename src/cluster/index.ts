// Cluster membership through etcd (issue 15; docs/cluster.md): each daemon with a `cluster` setting
// publishes its Overlay networks' local endpoints under a lease it keeps alive, watches the others'
// and programs them as remote endpoints. etcd does the hard parts (consensus, leases, ordered
// watches, transactions); this file only maps the model onto its keys (keys.ts).
//
// Why it is built this way:
// - One lease per daemon, kept alive here (keepaliveOnce every TTL/3, each with a deadline) rather
//   than by the client's background stream: the same call is the health check, so "connected" means
//   "our lease was renewed in the last TTL/3", and an etcd that hangs (SIGSTOP) is seen as one that
//   is gone. Everything we publish (hosts/, endpoints/, claims/) is on that lease, so a host that
//   dies disappears from the others within the TTL, with no reaper of ours.
// - The view is read in one transaction (endpoints/, networks/, hosts/ at one revision) and watched
//   from the next revision, so no event is lost or applied twice. Every change to it schedules one
//   apply of the whole view of other hosts' endpoints (host.setRemoteEndpoints replaces the set),
//   coalescing bursts: a host joining with 100 endpoints is one apply, not 100.
// - An etcd outage changes nothing in the dataplane: the last view stays programmed (stale, never
//   empty). The state says reconnecting since when; every tick tries a full resync (the lease
//   renewed, or granted again if it expired, our keys published again, the view re-read and the
//   watches restarted). The log and `stats` say so.
// - MAC and IP claims refuse conflicts across hosts where they arise: in the Host's change path,
//   before the change commits (Host.changeHook). A claim is created in one transaction with its
//   siblings, only where absent or already ours. While etcd is unreachable an Overlay endpoint that
//   needs a claim it does not hold is refused (Unavailable): the safe choice, since two hosts could
//   otherwise take the same address during a partition and both be right locally.
// - Networks are not on a lease: one created on any host appears on all (through each Host's normal
//   change path; one a host cannot take is logged and shown as a conflict, never a crash).
// The etcd client is loaded with a dynamic import, so nothing but the daemon's cluster mode loads it.
import type { Etcd3, Lease, Watcher, IKeyValue, IRequestOp, ICompare } from 'etcd3';
import { ModelError } from '../model/validate.js';
import type { Change, AnyObject } from '../model/store.js';
import type { ModelState, HostComputeEndpoint, HostComputeNetwork } from '../model/types.js';
import type { ChangeHook } from '../host.js';
import type { CheckedCluster } from './config.js';
import { Keys, claimValue, rangeEnd, type RemoteEndpointSpec, type HostRecord } from './keys.js';

export { checkCluster, type ClusterConfig, type CheckedCluster } from './config.js';
export type { RemoteEndpointSpec, HostRecord } from './keys.js';

export const SOURCE = 'cluster';

// What the cluster needs of a Host (src/host.ts implements it; tests and the bench pass lighter ones).
export interface ClusterHost {
  store: { snapshot(): ModelState };
  change(c: Change): Promise<unknown>;
  serial<T>(fn: () => T | Promise<T>): Promise<T>;
  setRemoteEndpoints(source: string, list: RemoteEndpointSpec[]): Promise<{ applied: number; refused: Array<{ ID: string; reason: string }> }>;
  changeHook?: ChangeHook;
}

export interface ClusterOptions {
  providerAddress: string;       // this host's PA (the daemon's overlay.providerAddress)
  log?: (m: string) => void;
  version?: string;              // netplane's version, in the hosts/ record
  applyDelayMs?: number;         // how long a burst of watch events is coalesced (default 20)
  callTimeoutMs?: number;        // deadline of each etcd call (default TTL/2, at most 5 s)
}

export type ClusterState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface Member { host: string; providerAddress: string; version: string; since: string; lease: string; ttl?: number; self: boolean }

export interface ClusterStatus {
  host: string; prefix: string; etcd: string[];
  state: ClusterState; since: string; lastError?: string;
  lease?: string; leaseTtl: number;
  lastSync?: string; lastApply?: string;
  members: Member[];
  published: string[];                                   // this host's endpoints in etcd
  remotes: number;                                       // other hosts' endpoints in the view
  programmed: number;                                    // of those, applied by the Host
  refused: Array<{ ID: string; reason: string }>;        // and refused by it
  conflicts: { endpoints: Array<{ ID: string; reason: string }>; networks: Array<{ ID: string; reason: string }> };
}

class HostNameTaken extends Error {}

const CHUNK = 100;   // operations per transaction (etcd's --max-txn-ops is 128 by default)

export class Cluster implements ChangeHook {
  readonly keys: Keys;
  private client?: Etcd3;
  private lease?: Lease;
  private leaseId?: string;
  private state: ClusterState = 'connecting';
  private since = Date.now();
  private lastError?: string;
  private started = new Date().toISOString();
  private timer?: NodeJS.Timeout;
  private busy = false;
  private watchers: Watcher[] = [];
  private generation = 0;                                  // watch events of an older resync are ignored
  // The view: what etcd holds of the others (and of us), by key.
  private endpoints = new Map<string, RemoteEndpointSpec>();
  private networks = new Map<string, string>();            // network ID -> its canonical JSON
  private hosts = new Map<string, Member>();
  // What we hold on our lease: endpoint keys and claims, key -> value.
  private published = new Map<string, string>();
  private held = new Map<string, string>();
  private pendingNetworks = new Map<string, 'put' | 'delete'>();   // local changes not yet in etcd
  private deletedNetworks = new Set<string>();                     // deleted in etcd, to delete here
  private ours = new WeakSet<Change>();                            // changes this cluster made
  private endpointConflicts = new Map<string, string>();
  private networkConflicts = new Map<string, string>();
  private refusedRemotes: Array<{ ID: string; reason: string }> = [];
  private programmed = 0;
  private lastSync?: number;
  private lastApply?: number;
  private applyTimer?: NodeJS.Timeout;
  private applying?: Promise<void>;
  private applyAgain = false;
  private work: Promise<unknown> = Promise.resolve();
  private readonly log: (m: string) => void;
  private readonly callTimeout: number;
  readonly counters = { resyncs: 0, watchEvents: 0, applies: 0, claimsRefused: 0, malformed: 0, keepaliveFailures: 0, leaseGrants: 0, writes: 0 };

  constructor(private readonly host: ClusterHost, readonly config: CheckedCluster, private readonly opts: ClusterOptions) {
    this.keys = new Keys(config.prefix);
    this.log = opts.log ?? ((m) => console.error(m));
    this.callTimeout = opts.callTimeoutMs ?? Math.min(5000, config.leaseTtl * 500);
  }

  // Connects and joins: resolves once joined, or once the first attempt failed for want of etcd (the
  // daemon runs on, reconnecting; its remotes are what it persisted). A host name that another
  // member holds is refused here.
  async start(): Promise<void> {
    const mod = await import('etcd3') as unknown as { Etcd3?: typeof Etcd3; default?: { Etcd3: typeof Etcd3 } };
    const Client = mod.Etcd3 ?? mod.default!.Etcd3;
    const c = this.config;
    this.client = new Client({
      hosts: c.etcd,
      ...(c.username !== undefined ? { auth: { username: c.username, password: c.password! } } : {}),
      ...(c.ca ? { credentials: { rootCertificate: c.ca } } : {}),
      dialTimeout: this.callTimeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: new Date(Date.now() + this.callTimeout) }),
    });
    this.host.changeHook = this;
    try {
      await this.resync();
    } catch (e) {
      await this.close();
      throw e;
    }
    this.timer = setInterval(() => { this.tick().catch((e) => this.log(`netplane: cluster: ${(e as Error).message}`)); }, Math.max(500, (c.leaseTtl * 1000) / 3));
    this.timer.unref();
  }

  // Leaves: stops the watches and the keep-alive. With revoke, our keys go at once (a host leaving
  // for good); without, they stay until the lease's TTL runs out, so a daemon restarted within it
  // never flaps the others' dataplanes.
  async close(opts: { revoke?: boolean } = {}): Promise<void> {
    this.state = 'closed';
    clearInterval(this.timer);
    clearTimeout(this.applyTimer);
    if (this.host.changeHook === this) this.host.changeHook = undefined;
    this.stopWatches();
    if (opts.revoke && this.lease) await withTimeout(this.lease.revoke(), this.callTimeout, 'revoke').catch(() => {});
    else this.lease?.release();
    this.client?.close();
    await this.applying;
  }

  // ---- the lease, the health check and the resync ----

  private async tick(): Promise<void> {
    if (this.busy || this.state === 'closed') return;
    if (this.state !== 'connected') return this.resync();
    try {
      await withTimeout(this.lease!.keepaliveOnce({ deadline: new Date(Date.now() + this.callTimeout) }), this.callTimeout, 'lease keep-alive');
    } catch (e) {
      this.counters.keepaliveFailures++;
      if (isLeaseGone(e)) this.forgetLease();
      this.disconnected(e);
    }
  }

  private forgetLease(): void {
    this.lease?.release();
    this.lease = undefined;
    this.leaseId = undefined;
    this.published.clear();      // whatever was on it is gone from etcd
    this.held.clear();
  }

  private disconnected(e: unknown): void {
    if (this.state !== 'connected') { this.lastError = errorText(e); return; }
    this.state = 'reconnecting';
    this.since = Date.now();
    this.lastError = errorText(e);
    this.stopWatches();
    this.log(`netplane: cluster: etcd unreachable (${this.lastError}); keeping the ${this.programmed} remote endpoints programmed (stale) and reconnecting`);
  }

  private stopWatches(): void {
    this.generation++;
    for (const w of this.watchers.splice(0)) { w.removeAllListeners(); w.on('error', () => {}); w.cancel().catch(() => {}); }
  }

  // A full sync: the lease (renewed, or granted anew), the host key, the view read at one revision,
  // the watches from the next, then our endpoints and networks published and the view applied.
  private async resync(): Promise<void> {
    if (this.busy || this.state === 'closed') return;
    this.busy = true;
    const wasDown = this.state === 'reconnecting';
    const downSince = this.since;
    try {
      await this.ensureLease();
      await this.joinHosts();
      const rev = await this.readView();
      await this.watchFrom(rev);
      this.state = 'connected';
      this.since = Date.now();
      this.lastError = undefined;
      this.lastSync = Date.now();
      if (wasDown) this.counters.resyncs++;
      await this.host.serial(() => this.reconcileLocked());
      await this.flushNetworks(true);
      if (wasDown) {
        this.log(`netplane: cluster: reconnected to etcd after ${((Date.now() - downSince) / 1000).toFixed(1)} s and resynced: ${this.hosts.size} members, ${this.remoteList().length} remote endpoints, ${this.published.size} published (lease ${this.leaseId})`);
      } else {
        this.log(`netplane: cluster: joined ${this.config.prefix} at ${this.config.etcd.join(',')} as ${this.config.host} (lease ${this.leaseId}, TTL ${this.config.leaseTtl} s): ${this.hosts.size} members, ${this.remoteList().length} remote endpoints`);
      }
      this.scheduleApply();
      this.scheduleNetworks();
    } catch (e) {
      if (e instanceof HostNameTaken && this.state === 'connecting') throw e;
      if (this.state === 'connecting') {
        this.state = 'reconnecting';
        this.log(`netplane: cluster: cannot reach etcd at ${this.config.etcd.join(',')} (${errorText(e)}); running with the remote endpoints saved before, reconnecting`);
      }
      if ((this.state as ClusterState) !== 'closed') this.state = 'reconnecting';
      this.lastError = errorText(e);
      this.stopWatches();
    } finally {
      this.busy = false;
    }
  }

  private async ensureLease(): Promise<void> {
    if (this.lease) {
      try {
        await withTimeout(this.lease.keepaliveOnce({ deadline: new Date(Date.now() + this.callTimeout) }), this.callTimeout, 'lease keep-alive');
        return;
      } catch (e) {
        if (!isLeaseGone(e)) throw e;
        this.log(`netplane: cluster: lease ${this.leaseId} expired; granting a new one and publishing again`);
        this.forgetLease();
      }
    }
    const lease = this.client!.lease(this.config.leaseTtl, { autoKeepAlive: false });
    lease.on('lost', () => {});
    try {
      this.leaseId = await withTimeout(lease.grant(), this.callTimeout, 'lease grant');
    } catch (e) {
      lease.release();
      throw e;
    }
    this.lease = lease;
    this.counters.leaseGrants++;
  }

  // <p>/hosts/<host> on our lease: created if absent; taken over if it is ours from before (same
  // provider address: this daemon restarted within the TTL); another member's name is refused.
  private async joinHosts(): Promise<void> {
    const key = this.keys.host(this.config.host);
    const rec: HostRecord = { host: this.config.host, providerAddress: this.opts.providerAddress, version: this.opts.version ?? 'unknown', since: this.started };
    const put: IRequestOp = { request_put: { key: Buffer.from(key), value: Buffer.from(JSON.stringify(rec)), lease: this.leaseId } };
    const r = await this.client!.kv.txn({
      compare: [{ key: Buffer.from(key), target: 'Version', result: 'Equal', version: 0 }],
      success: [put],
      failure: [{ request_range: { key: Buffer.from(key) } }],
    });
    if (r.succeeded) return;
    const kv = r.responses[0].response_range.kvs[0];
    const other = kv && parse<HostRecord>(kv.value);
    if (kv && kv.lease === this.leaseId) return;
    if (other && other.providerAddress !== this.opts.providerAddress) {
      throw new HostNameTaken(`cluster.host: ${JSON.stringify(this.config.host)} is already a member of ${this.config.prefix} with provider address ${other.providerAddress} (lease ${kv.lease}); give this host another name`);
    }
    await this.client!.kv.txn({ compare: [{ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: kv?.mod_revision ?? 0 }], success: [put] });
  }

  // Reads endpoints/, networks/ and hosts/ in one transaction (one revision), replacing the view.
  private async readView(): Promise<string> {
    const range = (p: string): IRequestOp => ({ request_range: { key: Buffer.from(p), range_end: rangeEnd(p) } });
    const r = await this.client!.kv.txn({ success: [range(this.keys.endpoints), range(this.keys.networks), range(this.keys.hosts)] });
    const [eps, nets, hosts] = r.responses.map((x) => x.response_range.kvs);
    this.endpoints.clear();
    this.networks.clear();
    this.hosts.clear();
    for (const kv of eps) this.onPut('endpoint', kv);
    for (const kv of nets) this.onPut('network', kv);
    for (const kv of hosts) this.onPut('host', kv);
    this.deletedNetworks.clear();
    return r.header.revision;
  }

  private async watchFrom(rev: string): Promise<void> {
    this.stopWatches();
    const gen = this.generation;
    const from = String(BigInt(rev) + 1n);
    for (const [kind, prefix] of [['endpoint', this.keys.endpoints], ['network', this.keys.networks], ['host', this.keys.hosts]] as const) {
      const w = await withTimeout(this.client!.watch().prefix(prefix).startRevision(from).create(), this.callTimeout, 'watch');
      this.watchers.push(w);
      w.on('put', (kv) => { if (gen === this.generation) { this.counters.watchEvents++; this.onPut(kind, kv); this.changed(kind); } });
      w.on('delete', (kv) => { if (gen === this.generation) { this.counters.watchEvents++; this.onDelete(kind, kv); this.changed(kind); } });
      w.on('disconnected', (e) => { if (gen === this.generation) this.disconnected(e); });
      w.on('error', (e) => { if (gen === this.generation) this.disconnected(e); });
    }
  }

  private changed(kind: 'endpoint' | 'network' | 'host'): void {
    if (kind === 'endpoint') this.scheduleApply();
    if (kind === 'network') this.scheduleNetworks();
  }

  private onPut(kind: 'endpoint' | 'network' | 'host', kv: IKeyValue): void {
    const key = kv.key.toString();
    if (kind === 'endpoint') {
      const h = this.keys.endpointHost(key);
      const spec = parse<RemoteEndpointSpec>(kv.value);
      if (!h || !isSpec(spec) || spec.Host !== h || key !== this.keys.endpoint(h, spec.ID)) return this.malformed(key);
      this.endpoints.set(key, spec);
    } else if (kind === 'network') {
      const id = this.keys.last(key, this.keys.networks);
      const n = parse<HostComputeNetwork>(kv.value);
      if (!n || typeof n !== 'object' || n.ID !== id) return this.malformed(key);
      this.networks.set(id, canonical(n));
      this.deletedNetworks.delete(id);
    } else {
      const h = this.keys.last(key, this.keys.hosts);
      const r = parse<HostRecord>(kv.value);
      if (!r || r.host !== h || typeof r.providerAddress !== 'string') return this.malformed(key);
      this.hosts.set(h, { host: h, providerAddress: r.providerAddress, version: String(r.version), since: String(r.since), lease: String(kv.lease), self: h === this.config.host });
    }
  }

  private onDelete(kind: 'endpoint' | 'network' | 'host', kv: IKeyValue): void {
    const key = kv.key.toString();
    if (kind === 'endpoint') this.endpoints.delete(key);
    else if (kind === 'host') this.hosts.delete(this.keys.last(key, this.keys.hosts));
    else {
      const id = this.keys.last(key, this.keys.networks);
      if (this.networks.delete(id)) this.deletedNetworks.add(id);
    }
  }

  private malformed(key: string): void {
    this.counters.malformed++;
    this.log(`netplane: cluster: ignoring ${key}: not what netplane writes there`);
  }

  // ---- programming the others' endpoints ----

  private remoteList(): RemoteEndpointSpec[] {
    return [...this.endpoints.values()].filter((e) => e.Host !== this.config.host);
  }

  private scheduleApply(): void {
    if (this.applyTimer || this.state === 'closed') return;
    this.applyTimer = setTimeout(() => {
      this.applyTimer = undefined;
      if (this.applying) { this.applyAgain = true; return; }
      this.applying = this.apply().finally(() => {
        this.applying = undefined;
        if (this.applyAgain) { this.applyAgain = false; this.scheduleApply(); }
      });
    }, this.opts.applyDelayMs ?? 20);
  }

  private async apply(): Promise<void> {
    try {
      const r = await this.host.setRemoteEndpoints(SOURCE, this.remoteList());
      this.counters.applies++;
      this.lastApply = Date.now();
      this.programmed = r.applied;
      const before = new Set(this.refusedRemotes.map((x) => `${x.ID}|${x.reason}`));
      this.refusedRemotes = r.refused;
      for (const x of r.refused) if (!before.has(`${x.ID}|${x.reason}`)) this.log(`netplane: cluster: remote endpoint ${x.ID} not programmed: ${x.reason}`);
    } catch (e) {
      this.log(`netplane: cluster: programming the remote endpoints failed: ${errorText(e)}`);
    }
  }

  // ---- networks: ours published, the others' taken here through the Host's change path ----

  private scheduleNetworks(): void {
    this.work = this.work.then(() => this.applyNetworks()).catch((e) => this.log(`netplane: cluster: ${errorText(e)}`));
  }

  private async applyNetworks(): Promise<void> {
    if (this.state === 'closed') return;
    const local = new Map(this.host.store.snapshot().networks.map((n) => [n.ID, n]));
    const conflict = (id: string, e: unknown) => {
      const reason = e instanceof ModelError ? `${e.code}: ${e.field}: ${e.reason}` : errorText(e);
      if (this.networkConflicts.get(id) !== reason) this.log(`netplane: cluster: network ${id} from the cluster not taken here: ${reason}`);
      this.networkConflicts.set(id, reason);
    };
    for (const [id, json] of this.networks) {
      if (this.pendingNetworks.has(id)) continue;
      const have = local.get(id);
      if (have && canonical(have) === json) { this.networkConflicts.delete(id); continue; }
      const c: Change = have ? { op: 'modify', kind: 'network', id, value: JSON.parse(json) } : { op: 'create', kind: 'network', value: JSON.parse(json) };
      this.ours.add(c);
      try {
        await this.host.change(c);
        this.networkConflicts.delete(id);
        this.log(`netplane: cluster: network ${id} ${have ? 'modified' : 'created'} as the cluster has it`);
        this.scheduleApply();   // remote endpoints on it were refused until now
      } catch (e) { conflict(id, e); }
    }
    // A delete refused here stays to be tried again at the next network event and resync.
    for (const id of [...this.deletedNetworks]) {
      if (!local.has(id) || this.pendingNetworks.has(id) || this.networks.has(id)) { this.deletedNetworks.delete(id); continue; }
      const c: Change = { op: 'delete', kind: 'network', id };
      this.ours.add(c);
      try {
        await this.host.change(c);
        this.deletedNetworks.delete(id);
        this.networkConflicts.delete(id);
        this.log(`netplane: cluster: network ${id} deleted, as in the cluster`);
      } catch (e) { conflict(id, e); }
    }
    for (const id of [...this.networkConflicts.keys()]) if (!this.networks.has(id) && !this.deletedNetworks.has(id)) this.networkConflicts.delete(id);
  }

  // Local network changes to etcd. At a resync (all), every local Overlay network etcd lacks is
  // published too: one created here while etcd was away, or before this host joined.
  private async flushNetworks(all = false): Promise<void> {
    if (this.state !== 'connected') return;
    const local = new Map(this.host.store.snapshot().networks.map((n) => [n.ID, n]));
    if (all) for (const n of local.values()) if (n.Type === ('Overlay' as string) && !this.networks.has(n.ID) && !this.pendingNetworks.has(n.ID)) this.pendingNetworks.set(n.ID, 'put');
    for (const [id, op] of [...this.pendingNetworks]) {
      const n = local.get(id);
      const key = Buffer.from(this.keys.network(id));
      if (op === 'put' && n) {
        const json = canonical(n);
        if (this.networks.get(id) !== json) await this.client!.kv.put({ key, value: Buffer.from(json) });
        this.networks.set(id, json);
      } else if (op === 'delete' || !n) {
        await this.client!.kv.deleteRange({ key });
        this.networks.delete(id);
      }
      this.pendingNetworks.delete(id);
    }
  }

  // ---- ChangeHook: the Host's change path ----

  async check(c: Change, result: AnyObject, _before: ModelState, next: ModelState): Promise<void> {
    if (c.kind !== 'endpoint' || c.op === 'delete') return;
    const e = next.endpoints.find((x) => x.ID === result.ID);
    if (!e || !this.isPublished(e, next)) return;
    const want = claimValue(this.config.host, e.ID);
    const claims = this.claimsOf(e);
    if (claims.every((k) => this.held.get(k.key) === want)) return;
    if (this.state !== 'connected') {
      throw new ModelError('Unavailable', 'HostComputeNetwork', `the cluster's etcd is unreachable (${this.state} since ${new Date(this.since).toISOString()}${this.lastError ? `: ${this.lastError}` : ''}), so the endpoint's MAC and addresses cannot be claimed on Overlay network ${e.HostComputeNetwork}; try again once \`netplane cluster status\` says connected`);
    }
    try {
      await this.claim(e);
    } catch (err) {
      if (err instanceof ModelError) throw err;
      throw new ModelError('Unavailable', 'HostComputeNetwork', `the cluster's etcd did not answer the claim of the endpoint's MAC and addresses (${errorText(err)}); nothing changed`);
    }
  }

  committed(c: Change, result: AnyObject, before: ModelState, next: ModelState): void {
    if (this.ours.has(c)) return;
    if (c.kind === 'network') {
      const id = c.op === 'create' ? result.ID : c.id;
      const overlay = (s: ModelState) => s.networks.find((n) => n.ID === id)?.Type === ('Overlay' as string);
      if (overlay(next)) this.pendingNetworks.set(id, 'put');
      else if (overlay(before)) this.pendingNetworks.set(id, 'delete');
      else return;
      this.work = this.work.then(() => this.flushNetworks()).catch((e) => this.log(`netplane: cluster: publishing networks: ${errorText(e)} (again at the next resync)`));
      return;
    }
    if (c.kind !== 'endpoint') return;
    this.work = this.work.then(() => this.host.serial(() => this.reconcileLocked())).catch((e) => this.log(`netplane: cluster: publishing endpoints: ${errorText(e)} (again at the next resync)`));
  }

  private isPublished(e: HostComputeEndpoint, s: ModelState): boolean {
    if ((e as { IsRemoteEndpoint?: boolean }).IsRemoteEndpoint || !e.MacAddress) return false;
    return s.networks.find((n) => n.ID === e.HostComputeNetwork)?.Type === ('Overlay' as string);
  }

  private claimsOf(e: HostComputeEndpoint): Array<{ key: string; field: string; what: string }> {
    return [
      { key: this.keys.claimMac(e.HostComputeNetwork, e.MacAddress!), field: 'MacAddress', what: `MAC ${e.MacAddress}` },
      ...(e.IpConfigurations ?? []).map((c, i) => ({ key: this.keys.claimIp(e.HostComputeNetwork, c.IpAddress), field: `IpConfigurations[${i}].IpAddress`, what: `address ${c.IpAddress}` })),
    ];
  }

  // Claims an endpoint's MAC and addresses in one transaction: each claim absent, or already this
  // endpoint's; a claim another endpoint holds refuses it, naming the owner.
  private async claim(e: HostComputeEndpoint): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const r = await this.claimBatch([e]);
      const refused = r.refused.get(e.ID);
      if (refused) throw refused;
      if (r.claimed) return;
    }
    throw new Error('the claims kept changing under three attempts');
  }

  // Claims for several endpoints: one read and one transaction (all or none) for those whose claims
  // are free or theirs; those with a claim held by another endpoint are refused (by endpoint ID).
  private async claimBatch(eps: HostComputeEndpoint[]): Promise<{ claimed: boolean; refused: Map<string, ModelError> }> {
    const all = eps.map((e) => ({ e, want: claimValue(this.config.host, e.ID), claims: this.claimsOf(e) }));
    const keys = all.flatMap((x) => x.claims.map((k) => k.key));
    const read = await this.client!.kv.txn({ success: keys.map((k) => ({ request_range: { key: Buffer.from(k) } })) });
    const refused = new Map<string, ModelError>();
    const compare: ICompare[] = [];
    const success: IRequestOp[] = [];
    let i = 0;
    for (const { e, want, claims } of all) {
      const cmp: ICompare[] = [];
      let conflict: ModelError | undefined;
      for (const k of claims) {
        const kv = read.responses[i++].response_range.kvs[0];
        const owner = kv?.value.toString();
        if (owner !== undefined && owner !== want && !conflict) {
          const [h, ep] = owner.split('/');
          conflict = new ModelError('Conflict', k.field, `${k.what} on network ${e.HostComputeNetwork} is held in the cluster by endpoint ${ep} of host ${h}`);
        }
        cmp.push(kv ? { key: Buffer.from(k.key), target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision } : { key: Buffer.from(k.key), target: 'Version', result: 'Equal', version: 0 });
      }
      if (conflict) { this.counters.claimsRefused++; refused.set(e.ID, conflict); continue; }
      compare.push(...cmp);
      for (const k of claims) success.push({ request_put: { key: Buffer.from(k.key), value: Buffer.from(want), lease: this.leaseId } });
    }
    if (!success.length) return { claimed: false, refused };
    const r = await this.client!.kv.txn({ compare, success });
    if (r.succeeded) for (const x of all) if (!refused.has(x.e.ID)) for (const k of x.claims) this.held.set(k.key, x.want);
    return { claimed: r.succeeded, refused };
  }

  // Brings etcd in line with the local endpoints (on the Host's lock, so it sees no change half
  // done): claims taken where missing, endpoint keys put where different, those gone deleted, claims
  // no endpoint needs released.
  private async reconcileLocked(): Promise<void> {
    if (this.state !== 'connected') return;
    const s = this.host.store.snapshot();
    const wantKeys = new Map<string, string>();
    const wantClaims = new Set<string>();
    const mine = s.endpoints.filter((e) => this.isPublished(e, s));
    const refused = new Map<string, ModelError>();
    // Claims missing, in batches of about CHUNK keys; a batch that lost a race goes one by one.
    const missing = mine.filter((e) => !this.claimsOf(e).every((k) => this.held.get(k.key) === claimValue(this.config.host, e.ID)));
    for (let i = 0; i < missing.length;) {
      const batch: HostComputeEndpoint[] = [];
      for (let n = 0; i < missing.length && (batch.length === 0 || n + this.claimsOf(missing[i]).length <= CHUNK); i++) { n += this.claimsOf(missing[i]).length; batch.push(missing[i]); }
      const r = await this.claimBatch(batch);
      for (const [id, err] of r.refused) refused.set(id, err);
      if (r.claimed || r.refused.size === batch.length) continue;
      for (const e of batch) {
        if (refused.has(e.ID)) continue;
        try { await this.claim(e); } catch (err) { if (!(err instanceof ModelError)) throw err; refused.set(e.ID, err); }
      }
    }
    for (const e of mine) {
      const err = refused.get(e.ID);
      if (err) {
        const reason = `${err.field}: ${err.reason}`;
        if (this.endpointConflicts.get(e.ID) !== reason) this.log(`netplane: cluster: endpoint ${e.ID} not published: ${reason}`);
        this.endpointConflicts.set(e.ID, reason);
        continue;
      }
      this.endpointConflicts.delete(e.ID);
      for (const k of this.claimsOf(e)) wantClaims.add(k.key);
      const spec: RemoteEndpointSpec = {
        ID: e.ID, HostComputeNetwork: e.HostComputeNetwork, MacAddress: e.MacAddress!,
        IpAddresses: (e.IpConfigurations ?? []).map((c) => c.IpAddress), ProviderAddress: this.opts.providerAddress, Host: this.config.host,
      };
      wantKeys.set(this.keys.endpoint(this.config.host, e.ID), JSON.stringify(spec));
    }
    for (const id of [...this.endpointConflicts.keys()]) if (!s.endpoints.some((e) => e.ID === id)) this.endpointConflicts.delete(id);
    const ops: IRequestOp[] = [];
    for (const [k, v] of wantKeys) if (this.published.get(k) !== v) ops.push({ request_put: { key: Buffer.from(k), value: Buffer.from(v), lease: this.leaseId } });
    const ours = `${this.keys.endpoints}${this.config.host}/`;
    const stale = new Set([...this.published.keys(), ...[...this.endpoints.keys()].filter((k) => k.startsWith(ours))]);
    for (const k of stale) if (!wantKeys.has(k)) ops.push({ request_delete_range: { key: Buffer.from(k) } });
    for (let i = 0; i < ops.length; i += CHUNK) await this.client!.kv.txn({ success: ops.slice(i, i + CHUNK) });
    this.counters.writes += ops.length;
    this.published = wantKeys;
    // Claims no endpoint needs any more: deleted where they are still ours.
    const release = [...this.held].filter(([k]) => !wantClaims.has(k));
    for (const [k, v] of release) {
      await this.client!.kv.txn({ compare: [{ key: Buffer.from(k), target: 'Value', result: 'Equal', value: Buffer.from(v) }], success: [{ request_delete_range: { key: Buffer.from(k) } }] });
      this.held.delete(k);
    }
  }

  // ---- what `netplane cluster status`, GET /cluster and stats show ----

  // The members with their leases' time left (asked of etcd; absent while it is unreachable).
  async status(): Promise<ClusterStatus> {
    const members = [...this.hosts.values()].sort((a, b) => a.host.localeCompare(b.host));
    const withTtl = this.state !== 'connected' ? members : await Promise.all(members.map(async (m) => {
      try {
        const r = await withTimeout(this.client!.leaseClient.leaseTimeToLive({ ID: m.lease }), Math.min(this.callTimeout, 1000), 'lease TTL');
        return { ...m, ttl: Number(r.TTL) };
      } catch { return m; }
    }));
    const iso = (t?: number) => (t === undefined ? undefined : new Date(t).toISOString());
    return {
      host: this.config.host, prefix: this.config.prefix, etcd: this.config.etcd,
      state: this.state, since: new Date(this.since).toISOString(), ...(this.lastError ? { lastError: this.lastError } : {}),
      lease: this.leaseId, leaseTtl: this.config.leaseTtl,
      lastSync: iso(this.lastSync), lastApply: iso(this.lastApply),
      members: withTtl,
      published: [...this.published.keys()].map((k) => k.slice(`${this.keys.endpoints}${this.config.host}/`.length)).sort(),
      remotes: this.remoteList().length, programmed: this.programmed, refused: this.refusedRemotes,
      conflicts: {
        endpoints: [...this.endpointConflicts].map(([ID, reason]) => ({ ID, reason })),
        networks: [...this.networkConflicts].map(([ID, reason]) => ({ ID, reason })),
      },
    };
  }

  stats(): Record<string, unknown> {
    return {
      state: this.state, since: new Date(this.since).toISOString(), members: this.hosts.size, published: this.published.size,
      remotes: this.remoteList().length, programmed: this.programmed, refused: this.refusedRemotes.length,
      conflicts: this.endpointConflicts.size + this.networkConflicts.size,
      lastSync: this.lastSync === undefined ? undefined : new Date(this.lastSync).toISOString(), ...this.counters,
    };
  }

  get connected(): boolean { return this.state === 'connected'; }
}

function parse<T>(b: Buffer | undefined): T | undefined {
  if (!b) return undefined;
  try { return JSON.parse(b.toString()) as T; } catch { return undefined; }
}

function isSpec(s: unknown): s is RemoteEndpointSpec {
  const o = s as RemoteEndpointSpec;
  return typeof o === 'object' && o !== null && typeof o.ID === 'string' && typeof o.HostComputeNetwork === 'string' && typeof o.MacAddress === 'string' &&
    Array.isArray(o.IpAddresses) && o.IpAddresses.every((a) => typeof a === 'string') && typeof o.ProviderAddress === 'string' && typeof o.Host === 'string';
}

// JSON with object keys sorted: the same network, however its fields were ordered, is one string.
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x));
}

function isLeaseGone(e: unknown): boolean {
  return (e as Error)?.constructor?.name === 'EtcdLeaseInvalidError' || /lease not found|is expired or revoked/i.test((e as Error)?.message ?? '');
}

function errorText(e: unknown): string {
  return ((e as Error)?.message ?? String(e)).split('\n')[0];
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_ok, fail) => { t = setTimeout(() => fail(new Error(`${what}: no answer from etcd in ${ms} ms`)), ms); })]).finally(() => clearTimeout(t));
}
