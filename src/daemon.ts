// `netplane serve`: a Host (model, dataplane, state directory) behind a management API, HTTP + JSON on
// a unix socket and on loopback TCP. Objects: /networks, /endpoints, /namespaces, /loadbalancers (GET
// the list, POST to create, GET/PUT/DELETE /<kind>/<ID>). Views: /mac, /connections, /stats, and
// POST /trace (a frame in hex, or a flow from an endpoint, built here); they name what the dataplane
// numbers (network and endpoint IDs, gateways, the uplink) beside the numbers; /endpoints also lists
// the dynamic DHCP leases as read-only endpoints, /stats the DHCP and DNS servers' counters. Errors are JSON
// { error: { code, field, reason } }.
//
// Who may talk to it (docs/security.md is the threat model):
// - The unix socket is the main door: mode 0660 (its group is configurable), so the file system says
//   who may use it, and no web page can reach it.
// - The TCP listener binds loopback only and requires the bearer token made at first start into the
//   state directory (0600): another local user cannot read it, so cannot use the API.
// - A web page in the user's browser is an attacker: any request with an Origin that the config does
//   not list is refused, so is any Host that is not a loopback name or a configured one (DNS
//   rebinding), and a body that is not application/json (what a page can send without a preflight).
// - Slow or greedy clients cannot hold the daemon: header and request timeouts, a connection cap, a
//   body limit (413).
// Changes are serialized by the Host (one writer); the state directory is locked for the daemon's
// life, so a second daemon on it is refused with the first one's pid.
// With a `cluster` setting (which needs `overlay`), the daemon is a member of an etcd-coordinated
// cluster (src/cluster, loaded only then, with the etcd client): GET /cluster shows it, /stats has
// its counters.
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync, chmodSync, chownSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { Host, openTransport, type Attached } from './host.js';
import { ModelError } from './model/validate.js';
import type { Kind, Transport } from './model/types.js';
import { checkOverlay, type HostConfig, type OverlayConfig } from './compile/host.js';
import { ownDirectory, removeStaleTemporaries, lockStateDir, loadOrCreateToken, isLoopback, API_SOCKET, TOKEN_FILE } from './confine.js';
import { checkFlow, flowFrame, describeFlow } from './flow.js';
import { checkCluster, type ClusterConfig, type CheckedCluster } from './cluster/config.js';
import type { Cluster } from './cluster/index.js';
import { version } from './version.js';

export interface DaemonConfig {
  stateDir: string;
  captureDir?: string;          // default <stateDir>/captures
  socketDir?: string;           // default <stateDir>/sockets ("unix:NAME" transports)
  listen?: {
    host?: string;              // loopback only (default 127.0.0.1)
    port?: number;              // default 7073
    socket?: string | false;    // default <stateDir>/netplane.sock
    socketGroup?: string | number;   // the group that may use the socket (mode 0660)
    allowedHosts?: string[];    // Host names accepted besides localhost, 127.0.0.1 and [::1]
    allowedOrigins?: string[];  // browser origins allowed to call the API (default: none)
  };
  transports?: { allowAddresses?: string[]; allowWildcard?: boolean; allowPrivilegedPorts?: boolean };
  // The host's external side: absent, the socket uplink ({ socket: {} }: egress through this process's
  // sockets, no root); { socket: { hostLoopback?, limits?, address? } }; a TAP-style uplink
  // { address, gateway?, mac?, silent?, transport? }; or false: none.
  uplink?: (HostConfig['uplink'] & { transport?: Transport }) | false;
  defaults?: { network?: boolean };   // create the default NAT network when the state is empty
  // This host's underlay for Overlay networks (docs/model.md "Overlay networks"): its provider
  // address (an IPv4 address of this host), the VXLAN UDP port and the underlay's MTU. Needs the
  // native helper (UDP GSO sends); absent: Overlay networks are refused.
  overlay?: OverlayConfig;
  cluster?: ClusterConfig;      // membership through etcd (src/cluster, docs/cluster.md); needs overlay
}

export const DEFAULT_PORT = 7073;
export const BODY_LIMIT = 1 << 20;
const KINDS: Record<string, Kind> = { networks: 'network', endpoints: 'endpoint', namespaces: 'namespace', loadbalancers: 'loadbalancer' };
const STATUS: Record<string, number> = { InvalidArgument: 400, NotFound: 404, AlreadyExists: 409, Conflict: 409, Unavailable: 503 };
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];
// Router interfaces appear in the MAC table on pseudo-ports from here (assembly/router.ts ROUTER_PORT).
const ROUTER_PORT = 0xf000;

// The network `npm start` begins with: one NAT network with a gateway.
export const DEFAULT_NETWORK = {
  ID: 'nat', Name: 'nat', Type: 'NAT',
  Ipams: [{ Type: 'Static', Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }] }] }],
};

// The uplink setting, checked: errors name the field (uplink.socket.limits.tcp).
function checkUplink(u: NonNullable<DaemonConfig['uplink']> & object): HostConfig['uplink'] & { transport?: Transport } {
  if (typeof u !== 'object' || u === null) throw new Error('uplink: must be an object ({ socket: {...} } or { address, ... }) or false');
  if (!('socket' in u) || u.socket === undefined) return u;
  const s = u.socket as Record<string, unknown>;
  if (typeof s !== 'object' || s === null) throw new Error('uplink.socket: must be an object');
  for (const k of Object.keys(s)) if (!['hostLoopback', 'limits', 'address'].includes(k)) throw new Error(`uplink.socket.${k}: unknown setting (hostLoopback, limits, address)`);
  for (const k of Object.keys(u)) if (k !== 'socket') throw new Error(`uplink.${k}: not with uplink.socket (a socket uplink has no address, gateway or transport)`);
  if (s.hostLoopback !== undefined && typeof s.hostLoopback !== 'boolean') throw new Error('uplink.socket.hostLoopback: must be true or false');
  if (s.limits !== undefined) {
    if (typeof s.limits !== 'object' || s.limits === null) throw new Error('uplink.socket.limits: must be an object { tcp?, udp?, ping? }');
    for (const [k, v] of Object.entries(s.limits)) {
      if (!['tcp', 'udp', 'ping'].includes(k)) throw new Error(`uplink.socket.limits.${k}: unknown limit (tcp, udp, ping)`);
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 65535) throw new Error(`uplink.socket.limits.${k}: must be an integer 0-65535, got ${JSON.stringify(v)}`);
    }
  }
  if (s.address !== undefined && (typeof s.address !== 'string' || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(s.address))) throw new Error('uplink.socket.address: must be an IPv4 address with prefix, e.g. 100.64.0.1/30');
  return u;
}

export function readConfig(file: string): DaemonConfig {
  let c: DaemonConfig;
  try { c = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file}: ${(e as Error).message}`); }
  if (typeof c.stateDir !== 'string') throw new Error(`${file}: stateDir: must be the path of the state directory`);
  return c;
}

// A refusal before the request reaches the API: status, code and reason, and headers to add.
class Refusal {
  constructor(readonly status: number, readonly code: string, readonly field: string, readonly reason: string, readonly headers: Record<string, string> = {}) {}
}

export class Daemon {
  readonly host: Host;
  readonly token: string;
  readonly stateDir: string;
  socketPath?: string;
  port?: number;
  private servers: Server[] = [];
  private uplink?: Attached;
  private uplinkPort?: number;
  private release: () => void;
  private retry?: NodeJS.Timeout;
  private clusterConfig?: CheckedCluster;
  cluster?: Cluster;

  constructor(readonly config: DaemonConfig) {
    const l = config.listen ?? {};
    if (l.host !== undefined && !isLoopback(l.host)) throw new Error(`listen.host: the API listens on loopback only (got ${l.host}); other users use the unix socket`);
    if (config.cluster !== undefined) {
      if (!config.overlay) throw new Error('cluster: needs the overlay setting (overlay.providerAddress: the address the other hosts reach this one at)');
      this.clusterConfig = checkCluster(config.cluster);
    }
    this.stateDir = resolve(config.stateDir);
    ownDirectory(this.stateDir, 'the state directory');
    this.release = lockStateDir(this.stateDir);
    try {
      for (const t of removeStaleTemporaries(this.stateDir)) console.error(`netplane: removed ${t}, left by an interrupted write`);
      this.token = loadOrCreateToken(this.stateDir);
      this.socketPath = l.socket === false ? undefined : resolve(l.socket ?? join(this.stateDir, API_SOCKET));
      const t = config.transports ?? {};
      const uplink = config.uplink === undefined ? { socket: {} } : config.uplink === false ? undefined : checkUplink(config.uplink);
      let overlay: OverlayConfig | undefined;
      try {
        overlay = config.overlay === undefined ? undefined : checkOverlay(config.overlay);
      } catch (e) {
        throw e instanceof ModelError ? new Error(`${e.field}: ${e.reason}`) : e;
      }
      this.host = new Host({
        stateDir: this.stateDir, config: { uplink, overlay }, captureDir: config.captureDir, socketDir: config.socketDir,
        bind: { addresses: t.allowAddresses, wildcard: t.allowWildcard, privilegedPorts: t.allowPrivilegedPorts },
        reserved: this.socketPath ? [this.socketPath] : [],
      });
      for (const d of [this.host.confinement.captureDir, this.host.confinement.socketDir]) if (d) ownDirectory(d, 'a directory of netplane\'s');
      if (config.defaults?.network && this.host.store.list('network').length === 0) this.host.store.create('network', DEFAULT_NETWORK);
    } catch (e) {
      this.release();
      throw e instanceof ModelError ? new Error(`${e.field}: ${e.reason}`) : e;
    }
  }

  async listen(): Promise<void> {
    const l = this.config.listen ?? {};
    try {
      if (this.config.uplink && this.config.uplink.transport) {
        this.uplinkPort = this.host.addUplinkPort();
        this.uplink = await openTransport(this.host.sw, this.uplinkPort, this.config.uplink.transport, 'uplink.transport', this.host.confinement);
      }
      await this.host.syncTransports();
      this.retry = setInterval(() => { this.host.retryDegraded().catch(() => {}); }, 1000);
      this.retry.unref();
      if (this.clusterConfig) await this.joinCluster(this.clusterConfig);
      const tcp = this.server('tcp');
      await new Promise<void>((ok, fail) => { tcp.once('error', fail); tcp.listen(l.port ?? DEFAULT_PORT, l.host ?? '127.0.0.1', () => ok()); });
      const addr = tcp.address();
      this.port = typeof addr === 'object' && addr ? addr.port : undefined;
      if (this.socketPath) {
        const path = this.socketPath;
        this.host.confinement.owned.clearSocket(path, 'listen.socket');
        const unix = this.server('unix');
        await new Promise<void>((ok, fail) => { unix.once('error', fail); unix.listen(path, () => ok()); });
        this.host.confinement.owned.made(path, 'socket');
        chmodSync(path, 0o660);
        if (l.socketGroup !== undefined) chownSync(path, -1, groupId(l.socketGroup));
      }
    } catch (e) {
      await this.close();
      throw e instanceof ModelError ? new Error(`${e.field}: ${e.reason}`) : e;
    }
  }

  // Joins the cluster: the etcd client is loaded only here. An unreachable etcd does not stop the
  // daemon (it runs on with the remote endpoints it saved, reconnecting); a host name another member
  // holds does.
  private async joinCluster(c: CheckedCluster): Promise<void> {
    const { Cluster } = await import('./cluster/index.js');
    const cluster = new Cluster(this.host, c, { providerAddress: this.config.overlay!.providerAddress, version: version() });
    await cluster.start();
    this.cluster = cluster;
  }

  private server(via: 'tcp' | 'unix'): Server {
    const s = createServer({ requestTimeout: 15_000, headersTimeout: 10_000, keepAliveTimeout: 5_000 }, (req, res) => {
      this.handle(req, res, via).catch((e) => send(res, 500, { error: { code: 'Internal', reason: String(e) } }));
    });
    s.maxConnections = 64;
    s.on('clientError', (_e, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'); else socket.destroy(); });
    this.servers.push(s);
    return s;
  }

  // The connection table; a connection the socket uplink carries names its host socket
  // (`uplink: { via, local, peer }`: 'uplink' to the world, 'host' to the host's loopback,
  // 'forward' from a host peer of a UDP port forward).
  private connections(): unknown[] {
    const up = this.host.compiler.socketUplink;
    const flows = new Map<string, { via: string; local?: string; peer?: string }>();
    for (const f of up?.flows() ?? []) flows.set(`${f.protocol}|${f.guest}|${f.remote}`, { via: f.via, local: f.local, peer: f.peer });
    const hp = (a: string, p: number) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
    return this.host.sw.router.connections().map((c) => {
      const o = c.original as { src: string; sport: number; dst: string; dport: number };
      const proto = c.protocol === 6 ? 'tcp' : c.protocol === 17 ? 'udp' : 'icmp';
      const f = flows.get(`${proto}|${hp(o.src, o.sport)}|${hp(o.dst, o.dport)}`);
      return f ? { ...c, uplink: f } : c;
    });
  }

  async close(): Promise<void> {
    clearInterval(this.retry);
    await this.cluster?.close();
    this.cluster = undefined;
    await Promise.all(this.servers.map((s) => new Promise<void>((ok) => { s.close(() => ok()); s.closeAllConnections(); })));
    this.servers = [];
    await this.host.closeTransports();
    this.host.compiler.close();
    await this.uplink?.close();
    this.uplink = undefined;
    if (this.socketPath) this.host.confinement.owned.removeSocket(this.socketPath);
    this.release();
  }

  // Who may talk to the API: the checks every request passes before it is read.
  private admit(req: IncomingMessage, via: 'tcp' | 'unix'): Refusal | undefined {
    const l = this.config.listen ?? {};
    if (via === 'tcp') {
      const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
      if (!LOOPBACK_NAMES.includes(host) && !(l.allowedHosts ?? []).includes(host)) {
        return new Refusal(403, 'Forbidden', 'Host', `Host ${JSON.stringify(req.headers.host ?? '')} is not a loopback name or one in listen.allowedHosts (DNS rebinding is refused)`);
      }
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !(l.allowedOrigins ?? []).includes(origin)) {
      return new Refusal(403, 'Forbidden', 'Origin', `requests from ${origin} are not allowed (listen.allowedOrigins)`);
    }
    return undefined;
  }

  private authorized(req: IncomingMessage, via: 'tcp' | 'unix'): boolean {
    if (via === 'unix') return true;   // the socket's mode says who can connect
    const want = Buffer.from(`Bearer ${this.token}`);
    const got = Buffer.from(req.headers.authorization ?? '');
    return got.length === want.length && timingSafeEqual(got, want);
  }

  private async handle(req: IncomingMessage, res: ServerResponse, via: 'tcp' | 'unix'): Promise<void> {
    try {
      const refused = this.admit(req, via);
      if (refused) throw refused;
      const url = new URL(req.url ?? '/', 'http://netplane');
      let parts: string[];
      try { parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); } catch {
        throw new Refusal(400, 'InvalidArgument', 'path', `malformed percent-escape in ${url.pathname}`);
      }
      const [top, id, extra] = parts;
      const allow = extra !== undefined ? undefined
        : top && KINDS[top] ? (id ? ['GET', 'PUT', 'DELETE'] : ['GET', 'POST'])
        : !id && ['mac', 'connections', 'stats', 'cluster'].includes(top) ? ['GET']
        : !id && top === 'trace' ? ['POST'] : undefined;
      if (!allow) throw new ModelError('NotFound', 'path', `no such resource: ${url.pathname}`);
      if (!allow.includes(req.method ?? '')) throw new Refusal(405, 'MethodNotAllowed', 'method', `${req.method} is not allowed on ${url.pathname} (${allow.join(', ')})`, { allow: allow.join(', ') });
      if (!this.authorized(req, via)) {
        throw new Refusal(401, 'Unauthorized', 'Authorization', `the TCP API needs "Authorization: Bearer <token>" (the token is in ${join(this.stateDir, TOKEN_FILE)}; the netplane CLI sends it)`, { 'www-authenticate': 'Bearer realm="netplane"' });
      }
      const body = req.method === 'POST' || req.method === 'PUT' ? await readBody(req) : undefined;
      const host = this.host, store = host.store, sw = host.sw;
      const withStatus = (kind: Kind, o: { ID: string }) => kind === 'endpoint' ? { ...o, Status: { ...host.endpointStatus(o.ID), Port: host.portOf(o.ID) } } : o;
      if (KINDS[top]) {
        const kind = KINDS[top];
        // Dynamic DHCP leases are endpoints too, read only (Host.leaseEndpoints), and so are the
        // remote endpoints the cluster programs (Host.remoteEndpointObjects).
        const remotes = kind === 'endpoint' ? host.remoteEndpointObjects() : [];
        const leases = kind === 'endpoint' ? [...host.leaseEndpoints(), ...remotes] : [];
        const lease = id !== undefined ? leases.find((e) => e.ID === id) : undefined;
        if (lease && req.method !== 'GET') {
          if (lease.IsRemoteEndpoint) throw new ModelError('Conflict', 'ID', `endpoint ${id} is a remote endpoint of host ${(lease.Status as { Host?: string }).Host} (read only): the cluster programs it from that host's publication`);
          throw new ModelError('Conflict', 'ID', `endpoint ${id} is a dynamic DHCP lease (read only): it goes when its client releases it or it expires; give the network's Dhcp.UnknownClients "Refuse" to stop them`);
        }
        if (req.method === 'GET') return send(res, 200, lease ?? (id ? withStatus(kind, store.get(kind, id)) : [...store.list(kind).map((o) => withStatus(kind, o)), ...leases]));
        if (req.method === 'POST') return send(res, 201, withStatus(kind, await host.change({ op: 'create', kind, value: json(body) })));
        if (req.method === 'PUT') return send(res, 200, withStatus(kind, await host.change({ op: 'modify', kind, id, value: json(body) })));
        await host.change({ op: 'delete', kind, id });
        return send(res, 200, { deleted: id });
      }
      if (top === 'mac') return send(res, 200, sw.macTable().map((e) => ({ ...e, networkId: this.networkName(e.network), ...this.portName(e.port) })));
      if (top === 'connections') return send(res, 200, this.connections());
      if (top === 'cluster') {
        if (!this.cluster) throw new ModelError('NotFound', 'cluster', 'this daemon is not a cluster member (no cluster setting in its config; docs/cluster.md)');
        return send(res, 200, await this.cluster.status());
      }
      if (top === 'stats') {
        const ports = [...sw.ports.keys()].map((p) => ({ port: p, ...this.portName(p), networkId: this.networkName(sw.ports.get(p)!.spec.network ?? 0), ...sw.portCounters(p) }));
        const underlay = host.underlayStats();
        return send(res, 200, { ...sw.counters(), ports, transports: host.transportStats(), ...(underlay ? { underlay } : {}), dhcp: host.compiler.services.counters(), dns: host.compiler.services.dnsCounters(), ra: host.compiler.services.raCounters(), dhcp6: host.compiler.services.dhcp6Counters(), ...(this.cluster ? { cluster: this.cluster.stats() } : {}) });
      }
      return send(res, 200, this.trace(json(body)));
    } catch (e) {
      if (e instanceof Refusal) {
        for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
        if (e.status === 413) res.setHeader('connection', 'close');
        return send(res, e.status, { error: { code: e.code, field: e.field, reason: e.reason } });
      }
      if (e instanceof ModelError) return send(res, STATUS[e.code] ?? 400, { error: { code: e.code, field: e.field, reason: e.reason } });
      const err = e as Error & { field?: string; reason?: string };
      send(res, 400, { error: { code: 'InvalidArgument', field: err.field ?? '', reason: err.reason ?? err.message } });
    }
  }

  // POST /trace: { port, frame } (hex), { endpoint, frame }, or { endpoint, flow } (src/flow.ts), a
  // frame built here from the endpoint's MAC and address to its next hop: the endpoint on the same
  // network that has the destination address, else the network's gateway.
  private trace(body: unknown): Record<string, unknown> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ModelError('InvalidArgument', 'body', 'must be an object: { port, frame }, { endpoint, frame } or { endpoint, flow }');
    const t = body as { port?: unknown; frame?: unknown; endpoint?: unknown; flow?: unknown };
    const { store, sw, compiler } = this.host;
    let port: number;
    let ep: ReturnType<typeof store.get> | undefined;
    if (t.endpoint !== undefined) {
      if (t.port !== undefined) throw new ModelError('InvalidArgument', 'port', 'give the port or the endpoint, not both');
      if (typeof t.endpoint !== 'string') throw new ModelError('InvalidArgument', 'endpoint', 'must be an endpoint ID');
      ep = store.list('endpoint').find((e) => e.ID === t.endpoint);
      if (!ep) throw new ModelError('NotFound', 'endpoint', `no endpoint ${JSON.stringify(t.endpoint)}`);
      const p = compiler.portOf(ep.ID);
      if (p === undefined) throw new ModelError('InvalidArgument', 'endpoint', `endpoint ${ep.ID} has no switch port`);
      port = p;
    } else {
      if (typeof t.port !== 'number' || !sw.ports.has(t.port)) throw new ModelError('InvalidArgument', 'port', `no port ${JSON.stringify(t.port)} (netplane endpoint list shows each endpoint's)`);
      port = t.port;
    }
    let frame: Uint8Array;
    let flow: string | undefined;
    if (t.flow !== undefined) {
      if (t.frame !== undefined) throw new ModelError('InvalidArgument', 'frame', 'give the frame or the flow, not both');
      if (!ep) throw new ModelError('InvalidArgument', 'endpoint', 'a flow needs the endpoint it comes from');
      const f = checkFlow(t.flow);
      const v6 = f.dst.includes(':');
      const src = (ep.IpConfigurations ?? []).map((c: { IpAddress: string }) => c.IpAddress).find((a: string) => a.includes(':') === v6);
      if (!ep.MacAddress) throw new ModelError('InvalidArgument', 'endpoint', `endpoint ${ep.ID} has no MAC`);
      const peer = store.list('endpoint').find((e) => e.ID !== ep!.ID && e.HostComputeNetwork === ep!.HostComputeNetwork && e.MacAddress &&
        (e.IpConfigurations ?? []).some((c: { IpAddress: string }) => c.IpAddress === f.dst));
      const gw = compiler.gatewayInterfaceOf(ep.HostComputeNetwork);
      const dstMac = peer?.MacAddress ?? (gw !== undefined ? sw.router.interfaces.get(gw)?.mac : undefined);
      if (!dstMac) throw new ModelError('InvalidArgument', 'flow.dst', `${f.dst} is no endpoint of network ${ep.HostComputeNetwork}, and the network has no gateway to send it to`);
      frame = flowFrame(f, { srcMac: ep.MacAddress, dstMac, src });
      flow = describeFlow(f, f.src ?? src);
    } else {
      if (typeof t.frame !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(t.frame)) throw new ModelError('InvalidArgument', 'frame', 'must be the frame in hex (or give an endpoint and a flow)');
      frame = Buffer.from(t.frame, 'hex');
    }
    const r = sw.trace(port, frame);
    return {
      port, ...(ep ? { endpoint: ep.ID } : {}), ...(flow ? { flow } : {}), frame: Buffer.from(frame).toString('hex'),
      steps: r.steps, text: r.text, dropped: r.dropped,
      output: r.output.map((o) => ({ port: o.port, ...this.portName(o.port), frame: Buffer.from(o.frame).toString('hex') })),
    };
  }

  // What a port number is, for views: an endpoint's port, a gateway (a router interface's pseudo-port,
  // `gateway` names the network whose, or "uplink" for the host's uplink side), the uplink port, or
  // just a port.
  private portName(port: number): { kind: 'endpoint' | 'gateway' | 'uplink' | 'underlay' | 'port'; endpoint?: string; gateway?: string } {
    const c = this.host.compiler;
    if (port >= ROUTER_PORT) {
      const owner = c.interfaceOwner(port - ROUTER_PORT);
      return owner ? { kind: 'gateway', gateway: 'network' in owner ? owner.network : 'uplink' } : { kind: 'gateway' };
    }
    if (port === this.uplinkPort) return { kind: 'uplink' };
    if (port === c.underlayPort) return { kind: 'underlay' };
    const served = c.services.servicePortOwner(port);   // where a gateway's DHCP replies come in
    if (served !== undefined) return { kind: 'gateway', gateway: served };
    const endpoint = c.endpointAt(port);
    return endpoint ? { kind: 'endpoint', endpoint } : { kind: 'port' };
  }

  // A network number's name: the IDs of the networks compiled to it (Transparent and L2Bridge ones
  // share the uplink's), else "uplink" for the uplink's.
  private networkName(num: number): string {
    const ids = this.host.compiler.networksNumbered(num);
    return ids.length ? ids.join(',') : num === this.host.compiler.uplinkNetwork() ? 'uplink' : String(num);
  }
}

function groupId(g: string | number): number {
  if (typeof g === 'number') return g;
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === g) return Number(gid);
  }
  throw new Error(`listen.socketGroup: no group ${JSON.stringify(g)} in /etc/group`);
}

function json(body: string | undefined): unknown {
  try { return JSON.parse(body ?? ''); } catch { throw new ModelError('InvalidArgument', 'body', 'must be a JSON document'); }
}

// The body of a change: application/json only (a web page cannot send that without a preflight, which
// is refused), at most BODY_LIMIT bytes (413, and the connection is closed).
function readBody(req: IncomingMessage): Promise<string> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') return Promise.reject(new Refusal(403, 'Forbidden', 'Content-Type', `a body must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? '(none)')}`));
  const tooLarge = new Refusal(413, 'PayloadTooLarge', 'body', `a body is at most ${BODY_LIMIT} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > BODY_LIMIT) return Promise.reject(tooLarge);
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) { req.removeAllListeners('data'); req.pause(); fail(tooLarge); return; }
      chunks.push(c);
    });
    req.on('end', () => ok(Buffer.concat(chunks).toString('utf8')));
    req.on('error', fail);
  });
}

function send(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent) return;
  const body = JSON.stringify(value, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' });
  res.end(body);
}
