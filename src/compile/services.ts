// The services a network's gateway runs for its guests on the punt queue: the DHCPv4 server
// (src/dhcp.ts), the DNS server (src/dns.ts), router advertisements (src/ra.ts) and the DHCPv6 server
// (src/dhcp6.ts). This is the one
// place that decides, from the model, what a gateway punts (gatewayPunts, read when the compiler
// makes the interface) and which servers run with what configuration (plan/commit), that answers
// what the gateway interfaces punt (the switch's handler of each punt reason, dispatched by interface),
// and that sends the replies into the network: through one port per network, made on first use,
// with learning off (docs/ABI.md "The punt area"), so the dataplane switches a reply like any frame
// from the gateway's MAC.
//
// All or nothing, like the rest of the compiler: `plan` builds every server a new model state needs
// (a configuration the server refuses throws a ModelError naming the model's field) without touching
// the running ones; `commit` swaps them in and cannot fail. A server whose configuration did not
// change is kept as it is; a changed one is rebuilt and takes over its predecessor's leases
// (DhcpServer.toJSON / restore: a lease that no longer fits, e.g. its MAC became an endpoint with
// another address, is dropped). A change undone by its caller after the apply (the Host, when an
// endpoint's transport cannot open) gets the replaced servers back as they were.
//
// DNS: a network's DnsServer (src/model/dns.ts says when and with what defaults) answers its endpoints'
// names, `<endpoint ID>.<domain>` and `<Name>.<domain>`, with their addresses; the table is set on
// the running server at every commit (setNames: queries already upstream are not disturbed), so a
// server is rebuilt only when its own configuration (interface, domain, upstream) changed. With it,
// DHCP's DNS option is the gateway and its domain option the server's domain, so that a guest's
// resolver asks the server that knows the names; Dns.ServerList becomes the server's upstream.
//
// IPv6 (src/model/ipv6.ts says when and with what): a RouterAdvertiser answers solicitations and
// advertises every so often (a timer here ticks each one; its frames go through the network's port,
// as every reply), and a Dhcp6Server gives the endpoints' IPv6 addresses to their MACs (stateful)
// and DNS/search to everyone. Both are rebuilt only when their configuration changed; DHCPv6 bindings
// carry over (toJSON/restore) but are not saved for a restart: they are all static (an endpoint's
// MAC gets its address again), so nothing is lost.
//
// Leases survive a restart: the servers' lease state is handed to `leases.save` after every message
// that changed it (ACK, RELEASE, DECLINE) and after a commit, and `leases.load` gives the first
// server of each network its predecessor's state. Expiry is in wall time (the clock), so a restored
// lease means the same after a restart.
import type { Switch, SwitchPort } from '../dataplane.js';
import type { PuntInfo } from '../switch.js';
import type { ModelState, HostComputeNetwork } from '../model/types.js';
import type { PuntClass } from '../abi.js';
import { DhcpServer, type DhcpServerOptions, type DhcpState, type DhcpCounters } from '../dhcp.js';
import { DnsServer, type DnsCounters, type DnsServerOptions } from '../dns.js';
import { networkDns, dnsLabel } from '../model/dns.js';
import { RouterAdvertiser, type RouterAdvertiserOptions, type RaCounters } from '../ra.js';
import { Dhcp6Server, type Dhcp6ServerOptions, type Dhcp6Counters } from '../dhcp6.js';
import { networkIpv6, inSubnet6 } from '../model/ipv6.js';
import type { SocketUplink, TcpFlowKey } from '../uplink/index.js';
import type { Duplex } from 'node:stream';
import { Pump } from '../transports/pump.js';
import { NetplaneError } from '../abi.js';
import { ModelError } from '../model/validate.js';
import { networkDhcp, ipText, ipNumber } from '../model/dhcp.js';

export interface LeaseStore {
  load(): Record<string, DhcpState>;                 // by network ID
  save(state: Record<string, DhcpState>): void;
}

export interface ServicesOptions {
  clock?: () => number;                             // wall time in ms (default Date.now)
  leases?: LeaseStore;
  log?: (message: string) => void;
  resolvConf?: string;                              // the host's resolvers (default /etc/resolv.conf)
}

// What a network's gateway interface punts to the host.
export function gatewayPunts(n: HostComputeNetwork): PuntClass[] {
  const v6 = networkIpv6(n);
  return [
    ...(networkDhcp(n) ? ['dhcp' as const] : []), ...(networkDns(n) ? ['dns' as const] : []),
    ...(v6?.ra ? ['rs' as const] : []), ...(v6?.dhcp6 ? ['dhcp6' as const] : []),
  ];
}

interface Running {
  network: string;
  iface: number;
  domain: { network: number; vlan: number };        // the gateway's broadcast domain
  key?: string;                                     // the DHCP configuration it was built from
  dhcp?: DhcpServer;
  statics: Set<string>;                             // the MACs with a static lease (endpoints)
  dnsKey?: string;                                  // the DNS configuration its server was built from
  dns?: DnsServer;
  names?: Map<string, string[]>;                    // the DNS server's table (set at commit)
  raKey?: string;
  ra?: RouterAdvertiser;
  dhcp6Key?: string;
  dhcp6?: Dhcp6Server;
  port?: SwitchPort;                                // the replies' way in, made on first use
}

export interface DhcpLeaseView { network: string; mac: string; address: string; prefixLength: number; expires: number; static: boolean }

// The model's field behind a DhcpServer configuration field.
const FIELDS: Array<[RegExp, string]> = [
  [/^pool\.start$/, 'Dhcp.Pool.StartAddress'], [/^pool\.end$/, 'Dhcp.Pool.EndAddress'], [/^leaseTime$/, 'Dhcp.LeaseTime'],
  [/^domain$/, 'Dns.Domain'], [/^search(.*)$/, 'Dns.Search$1'], [/^dns/, 'Dns.ServerList'], [/^mtu$/, 'MTU'],
  [/^routes/, 'Ipams'], [/^options$/, 'Dns'],
];

export class GatewayServices {
  private running = new Map<string, Running>();      // by network ID
  private byIface = new Map<number, Running>();
  private replaced = new Map<string, Running>();      // what the last commit replaced, for a revert
  private stored?: Record<string, DhcpState>;         // the state file's, until each network's first server takes its own
  private readonly clock: () => number;
  private readonly log: (m: string) => void;

  constructor(private readonly sw: Switch, private readonly opts: ServicesOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.log = opts.log ?? ((m) => console.error(m));
    this.stored = opts.leases?.load();
    // One handler per punt reason (Switch.onPunt(reason, h)); each dispatches by interface. A
    // service added here registers its own reason the same way.
    sw.onPunt('dhcp', (frame, info) => this.dhcp(frame, info));
    sw.onPunt('dns', (frame, info) => this.dns(frame, info));
    sw.onPunt('rs', (frame, info) => {
      const r = this.byIface.get(info.interface);
      const ra = r?.ra?.solicited(frame, this.clock());
      if (ra) Pump.of(this.sw).receive(this.portOf(r!), ra);
    });
    sw.onPunt('dhcp6', (frame, info) => {
      const r = this.byIface.get(info.interface);
      const reply = r?.dhcp6?.handle(frame, this.clock());
      if (reply) Pump.of(this.sw).receive(this.portOf(r!), reply);
    });
  }

  private timer?: ReturnType<typeof setInterval>;
  private uplink?: SocketUplink;

  // The socket uplink whose TCP engine carries DNS over TCP to the gateways (it calls dnsStream).
  setUplink(u: SocketUplink): void { this.uplink = u; }

  // A DNS-over-TCP connection to a gateway address (key.dst): that network's DNS server takes it.
  dnsStream(stream: Duplex, key: TcpFlowKey): void {
    for (const r of this.running.values()) {
      const f = this.sw.router.interfaces.get(r.iface);
      if (r.dns && (f?.address?.split('/')[0] === key.dst || f?.address6?.split('/')[0] === key.dst)) { r.dns.handleStream(stream); return; }
    }
    stream.destroy();
  }

  // Builds what `next` needs (throws a ModelError, having changed nothing); `gateway` gives a
  // network's compiled gateway interface and broadcast domain.
  // `revert`: the change just committed is being undone (its caller failed after the apply), so a
  // server replaced by it comes back as it was, leases and all.
  plan(next: ModelState, gateway: (network: string) => { iface: number; network: number; vlan: number } | undefined, revert = false): Map<string, Running> {
    const out = new Map<string, Running>();
    for (const n of next.networks) {
      const gw = gateway(n.ID);
      if (!gw) continue;
      const cur = this.running.get(n.ID);
      const prev = revert ? this.replaced.get(n.ID) : undefined;
      const r: Running = { network: n.ID, iface: gw.iface, domain: { network: gw.network, vlan: gw.vlan }, statics: new Set(), port: cur?.port };
      const f = this.sw.router.interfaces.get(gw.iface)!;
      const s = networkDns(n);
      const d = networkDhcp(n);
      if (d) this.planDhcp(n, d, s?.domain, next, gw, f, cur, prev, r);
      if (s) {
        const options: DnsServerOptions = {
          interface: gw.iface, domain: s.domain,
          ...(s.upstream ? { upstream: s.upstream } : {}),
          ...(this.opts.resolvConf ? { resolvConf: this.opts.resolvConf } : {}),
        };
        const key = JSON.stringify([f.address, f.address6, f.mac, f.mtu, gw, options]);
        if (cur?.dnsKey === key) r.dns = cur.dns;
        else if (prev?.dnsKey === key) r.dns = prev.dns;
        else {
          try {
            r.dns = new DnsServer(this.sw, options);
          } catch (e) {
            if (e instanceof NetplaneError) throw new ModelError('InvalidArgument', e.field === 'domain' ? 'Dns.Domain' : e.field.startsWith('upstream') ? 'Dns.ServerList' : `DnsProxy (${e.field})`, `the DNS server refuses it: ${e.reason}`);
            throw e;
          }
          // The network's counters go on across a reconfiguration.
          if (cur?.dns) r.dns.carryCounters(cur.dns);
        }
        r.dnsKey = key;
        r.names = endpointNames(n, next, s.domain);
      }
      const v6 = networkIpv6(n);
      if (v6 && f.address6) this.planIpv6(n, v6, next, gw, f, cur, prev, r);
      if (r.dhcp || r.dns || r.ra || r.dhcp6) out.set(n.ID, r);
    }
    return out;
  }

  private planIpv6(n: HostComputeNetwork, v6: NonNullable<ReturnType<typeof networkIpv6>>, next: ModelState,
    gw: { iface: number; network: number; vlan: number }, f: { address6?: string; mac: string; mtu: number }, cur: Running | undefined, prev: Running | undefined, r: Running): void {
    const refused = (what: string, e: unknown): never => {
      if (e instanceof NetplaneError) {
        const field = /^(dns|search)/.test(e.field) ? (e.field.startsWith('dns') ? 'Dns.ServerList' : 'Dns.Search') : /^mtu$/.test(e.field) ? 'MTU' : `${what} (${e.field})`;
        throw new ModelError('InvalidArgument', field, `the ${what === 'Dhcp6' ? 'DHCPv6 server' : 'router advertiser'} refuses it: ${e.reason}`);
      }
      throw e;
    };
    if (v6.dhcp6) {
      // Endpoints' stateful bindings: a MAC and an IPv6 address of the subnet.
      const bindings = next.endpoints
        .filter((e) => e.HostComputeNetwork === n.ID && e.MacAddress && !e.IsRemoteEndpoint)
        .map((e) => ({ mac: e.MacAddress!, address: (e.IpConfigurations ?? []).map((c) => c.IpAddress).find((a) => inSubnet6(a, v6.subnet.IpAddressPrefix) && a !== v6.gateway) }))
        .filter((b): b is { mac: string; address: string } => b.address !== undefined);
      const options: Dhcp6ServerOptions = { interface: gw.iface, dns: v6.dns, search: v6.search, bindings };
      const key = JSON.stringify([f.address6, f.mac, gw, options]);
      r.dhcp6Key = key;
      if (cur?.dhcp6Key === key) r.dhcp6 = cur.dhcp6;
      else if (prev?.dhcp6Key === key) r.dhcp6 = prev.dhcp6;
      else {
        try { r.dhcp6 = new Dhcp6Server(this.sw, options); } catch (e) { refused('Dhcp6', e); }
        if (cur?.dhcp6) {
          Object.assign(r.dhcp6!.counters, structuredClone(cur.dhcp6.counters));
          try { r.dhcp6!.restore(cur.dhcp6.toJSON()); } catch { /* bindings that no longer fit: dropped */ }
        }
      }
    }
    if (v6.ra) {
      const options: RouterAdvertiserOptions = {
        interface: gw.iface, dns: v6.dns, search: v6.search,
        managed: r.dhcp6?.stateful ?? false, otherConfig: r.dhcp6 !== undefined,
      };
      const key = JSON.stringify([f.address6, f.mac, f.mtu, gw, options]);
      r.raKey = key;
      if (cur?.raKey === key) r.ra = cur.ra;
      else if (prev?.raKey === key) r.ra = prev.ra;
      else {
        try { r.ra = new RouterAdvertiser(this.sw, options); } catch (e) { refused('RouterAdvertisement', e); }
        if (cur?.ra) Object.assign(r.ra!.counters, structuredClone(cur.ra.counters));
      }
    }
  }

  private planDhcp(n: HostComputeNetwork, d: NonNullable<ReturnType<typeof networkDhcp>>, dnsDomain: string | undefined, next: ModelState,
    gw: { iface: number; network: number; vlan: number }, f: { address?: string; mac: string; mtu: number }, cur: Running | undefined, prev: Running | undefined, r: Running): void {
    // Endpoints' static leases: a MAC and an address the server can lease in the gateway's subnet.
    const [net, len] = d.subnet.IpAddressPrefix.split('/');
    const hostMask = 2 ** (32 - Number(len)) - 1, base = ipNumber(net), gwNum = ipNumber(d.gateway);
    const leasable = (a: string) => {
      if (a.includes(':')) return false;
      const k = ipNumber(a);
      return k > base && k < base + hostMask && k !== gwNum;
    };
    // A remote endpoint's lease is its own host's to give (its DHCP broadcasts reach every host of
    // the overlay; only that one answers).
    const statics = next.endpoints
      .filter((e) => e.HostComputeNetwork === n.ID && e.MacAddress && !e.IsRemoteEndpoint)
      .map((e) => ({ mac: e.MacAddress!, address: (e.IpConfigurations ?? []).map((c) => c.IpAddress).find(leasable) }))
      .filter((s): s is { mac: string; address: string } => s.address !== undefined);
    // With the gateway's DNS server, DHCP names it (it knows the endpoints' names and forwards the
    // rest to Dns.ServerList); without, the ServerList itself (none: no DNS option).
    const domain = dnsDomain ?? n.Dns?.Domain;
    const options: DhcpServerOptions = {
      interface: gw.iface,
      leaseTime: d.leaseTime,
      dns: dnsDomain !== undefined ? [d.gateway] : (n.Dns?.ServerList ?? []).filter((a) => !a.includes(':')),
      ...(domain ? { domain } : {}),
      ...(n.Dns?.Search?.length ? { search: n.Dns.Search } : {}),
      routes: (d.subnet.Routes ?? []).filter((x) => !x.DestinationPrefix.includes(':') && !x.DestinationPrefix.endsWith('/0'))
        .map((x) => ({ destination: x.DestinationPrefix, nextHop: x.NextHop })),
      static: statics,
      ...(d.pool ? { pool: { start: ipText(d.pool.start), end: ipText(d.pool.end) } } : {}),
    };
    const key = JSON.stringify([f.address, f.mac, f.mtu, gw, options]);
    r.key = key;
    if (cur?.key === key) { r.dhcp = cur.dhcp; r.statics = cur.statics; return; }
    if (prev?.key === key) { r.dhcp = prev.dhcp; r.statics = prev.statics; return; }
    let dhcp: DhcpServer;
    try {
      dhcp = new DhcpServer(this.sw, options);
    } catch (e) {
      if (e instanceof NetplaneError) throw new ModelError('InvalidArgument', modelField(e.field), `the DHCP server refuses it: ${e.reason}`);
      throw e;
    }
    // The network's counters go on across a reconfiguration (stats count per network).
    if (cur?.dhcp) { const c = structuredClone(cur.dhcp.counters); Object.assign(dhcp.counters, c); }
    const prior = cur?.dhcp?.toJSON() ?? this.stored?.[n.ID];
    if (prior) {
      try { dhcp.restore(prior); } catch (e) {
        // Only a state file edited by hand gets here: its leases are dropped, and said so.
        this.log(`netplane: network ${n.ID}: DHCP leases not restored: ${(e as Error).message}`);
      }
    }
    r.dhcp = dhcp;
    r.statics = new Set(statics.map((x) => x.mac));
  }

  // Swaps in what `plan` built; the ports of networks gone (or moved to another domain) go.
  commit(next: Map<string, Running>): void {
    for (const [id, r] of this.running) {
      const n = next.get(id);
      if (r.port && (!n || n.port !== r.port || n.domain.network !== r.domain.network || n.domain.vlan !== r.domain.vlan)) {
        if (this.sw.ports.get(r.port.id) === r.port) this.sw.removePort(r.port.id);
        if (n && n.port === r.port) n.port = undefined;
      }
    }
    this.stored = undefined;   // taken by the servers it had leases for; the rest belonged to networks gone
    const before = JSON.stringify(this.state());
    this.replaced = new Map([...this.running].filter(([id, r]) => {
      const n = next.get(id);
      return n?.dhcp !== r.dhcp || n?.dns !== r.dns || n?.ra !== r.ra || n?.dhcp6 !== r.dhcp6;
    }));
    const advertising = new Set([...this.running.values()].map((r) => r.ra));
    // A DNS server no longer running ends what it has in progress (upstream sockets, TCP clients); one
    // brought back by a revert opens its sockets again on its next forwarded query.
    const keep = new Set([...next.values()].map((r) => r.dns));
    for (const r of this.running.values()) if (r.dns && !keep.has(r.dns)) r.dns.close();
    this.running = next;
    this.byIface = new Map([...next.values()].map((r) => [r.iface, r]));
    // setNames cannot refuse these: endpointNames keeps only valid labels that fit the domain.
    for (const r of next.values()) if (r.dns && r.names) r.dns.setNames(r.names);
    // A new advertiser advertises at once (its first of the initial, closer-spaced ones); all are
    // ticked every second after.
    for (const r of next.values()) if (r.ra && !advertising.has(r.ra)) this.tick(r);
    const any = [...next.values()].some((r) => r.ra);
    if (any && !this.timer) {
      this.timer = setInterval(() => { for (const r of this.running.values()) if (r.ra) this.tick(r); }, 1000);
      this.timer.unref?.();
    } else if (!any && this.timer) { clearInterval(this.timer); this.timer = undefined; }
    if (JSON.stringify(this.state()) !== before) this.save();
  }

  // The dynamic and static leases held now (expired ones and offers left out).
  leases(now = this.clock()): DhcpLeaseView[] {
    const out: DhcpLeaseView[] = [];
    for (const r of this.running.values()) {
      if (!r.dhcp) continue;
      const f = this.sw.router.interfaces.get(r.iface);
      const len = Number(f?.address?.split('/')[1] ?? 32);
      for (const l of r.dhcp.leasesAt(now)) if (l.bound) out.push({ network: r.network, mac: l.mac, address: l.address, prefixLength: len, expires: l.expires, static: r.statics.has(l.mac) });
    }
    return out;
  }

  // Each DHCP server's counters (unknown clients refused: dropped.unknown_client), for `stats`.
  counters(): Array<{ network: string } & DhcpCounters> {
    return [...this.running.values()].filter((r) => r.dhcp).map((r) => ({ network: r.network, ...structuredClone(r.dhcp!.counters) }));
  }

  private tick(r: Running): void {
    const ra = r.ra?.tick(this.clock());
    if (ra) Pump.of(this.sw).receive(this.portOf(r), ra);
  }

  // Each router advertiser's and DHCPv6 server's counters, for `stats`.
  raCounters(): Array<{ network: string } & RaCounters> {
    return [...this.running.values()].filter((r) => r.ra).map((r) => ({ network: r.network, ...structuredClone(r.ra!.counters) }));
  }
  dhcp6Counters(): Array<{ network: string } & Dhcp6Counters> {
    return [...this.running.values()].filter((r) => r.dhcp6).map((r) => ({ network: r.network, ...structuredClone(r.dhcp6!.counters) }));
  }

  // Each DNS server's counters, for `stats`.
  dnsCounters(): Array<{ network: string } & DnsCounters> {
    return [...this.running.values()].filter((r) => r.dns).map((r) => ({ network: r.network, ...r.dns!.counters() }));
  }

  // A network's DNS server, if it runs one (its upstreams, its TCP side: handleStream).
  dnsServer(network: string): DnsServer | undefined { return this.running.get(network)?.dns; }

  // Ends the DNS servers' upstream sockets and connections (the daemon's close).
  close(): void {
    for (const r of this.running.values()) r.dns?.close();
    if (this.timer) { clearInterval(this.timer); this.timer = undefined; }
  }

  private state(): Record<string, DhcpState> {
    const s: Record<string, DhcpState> = { ...(this.stored ?? {}) };
    for (const r of this.running.values()) if (r.dhcp) s[r.network] = r.dhcp.toJSON();
    return s;
  }

  private save(): void {
    if (!this.opts.leases) return;
    try { this.opts.leases.save(this.state()); } catch (e) {
      // The leases are still served; only their copy for a restart is behind.
      this.log(`netplane: DHCP leases not saved: ${(e as Error).message}`);
    }
  }

  // A DHCP message an interface punted: its network's server answers (the lease file follows what
  // changed a lease).
  private dhcp(frame: Uint8Array, info: PuntInfo): void {
    const r = this.byIface.get(info.interface);
    if (!r?.dhcp) return;
    const c = r.dhcp.counters, changes = c.acks + c.releases + c.declines;
    const reply = r.dhcp.handle(frame, this.clock());
    if (reply) Pump.of(this.sw).receive(this.portOf(r), reply);
    if (c.acks + c.releases + c.declines !== changes) this.save();
  }

  // A DNS query an interface punted: its network's server answers (now, or when upstream does).
  // TCP to gateway:53 is the TCP engine's (the socket uplink), which feeds DnsServer.handleStream;
  // without it the server counts the segment (tcp_not_handled).
  private dns(frame: Uint8Array, info: PuntInfo): void {
    const r = this.byIface.get(info.interface);
    if (!r?.dns) return;
    const dns = r.dns;
    const up = this.uplink;
    dns.handlePunt(frame, (reply) => {
      // An answer that comes back after its server was replaced or its network removed goes nowhere.
      if (this.running.get(r.network)?.dns === dns) Pump.of(this.sw).receive(this.portOf(this.running.get(r.network)!), reply);
    }, up && ((f) => up.hostTcp(f, info)));
  }

  private portOf(r: Running): SwitchPort {
    if (!r.port || this.sw.ports.get(r.port.id) !== r.port) r.port = this.sw.addPort({ ...r.domain, learning: false });
    return r.port;
  }

  // The switch port a network's replies come in by, if made (views name it).
  servicePortOwner(port: number): string | undefined {
    for (const r of this.running.values()) if (r.port?.id === port) return r.network;
    return undefined;
  }
}

// A network's endpoints as names of its DNS server: `<ID>` and `<Name>` (when a valid label) with
// every address of the endpoint. An ID that is no label gets no name; a Name that is another
// endpoint's ID is left out (an ID is never shadowed); a Name several endpoints share gives all their
// addresses (as Docker's network aliases). A name too long for the domain is left out.
function endpointNames(n: HostComputeNetwork, next: ModelState, domain: string): Map<string, string[]> {
  const eps = next.endpoints.filter((e) => e.HostComputeNetwork === n.ID);
  const out = new Map<string, string[]>();
  const fits = (l: string) => l.length + 1 + domain.length <= 253;
  const addrs = (e: (typeof eps)[number]) => (e.IpConfigurations ?? []).map((c) => c.IpAddress);
  const ids = new Set<string>();
  for (const e of eps) {
    const l = dnsLabel(e.ID);
    if (!l || !fits(l)) continue;
    ids.add(l);
    out.set(l, [...(out.get(l) ?? []), ...addrs(e)]);
  }
  for (const e of eps) {
    const l = dnsLabel(e.Name);
    if (!l || !fits(l) || ids.has(l)) continue;
    const have = out.get(l) ?? [];
    out.set(l, [...have, ...addrs(e).filter((a) => !have.includes(a))]);
  }
  return out;
}

function modelField(f: string): string {
  for (const [re, to] of FIELDS) if (re.test(f)) return f.replace(re, to);
  return `Dhcp (${f})`;
}
