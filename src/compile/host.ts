// Compiles the HCN-shaped model into a running switch and keeps the two in step. Each object owns
// the dataplane items it compiles to (ports, router interfaces, routes, neighbours, source NAT rules,
// port mappings, load balancers, ACL bindings), recorded with how to undo each. A change touches only
// the objects that changed: their old items are undone and their new ones applied, so unrelated
// objects' connections are never disturbed. If any step fails, what this change did is undone and
// the previous versions re-applied, and the store refuses the change: all or nothing.
//
// What a modified object keeps. Most of its items are simply undone and applied again: no frame is
// processed inside one apply, so traffic sees only the end state, and these items (neighbours, port
// mappings, source NAT rules and exceptions, load balancers) hold nothing but their own settings —
// the connections they made keep their translations in conntrack. Three things are held on to by
// others, and an object keeps them for as long as it exists, across changes of itself or of its
// network:
//   - an endpoint's switch port, the same id and the same SwitchPort object: transports hold that
//     object and set their frame handler on it, and its counters and learned MACs live on it. It is
//     reconfigured in place (network, VLAN, MAC; the dataplane forgets its learned MACs only when its
//     network or VLAN changed), and so is its ACL binding, because unbinding a port's ACLs forgets
//     the port's ACL connections;
//   - a network's number: its ports, MAC table entries and ACL rule set are keyed by it. The rule set
//     too is replaced by the next version's, never cleared in between, for the same reason;
//   - a network's gateway interface: its MAC is in every guest's ARP cache. It is left untouched when
//     its settings did not change, and made again with the same id and MAC when they did.
// The undo of a changed object releases these into a pool under the object's ID instead of removing
// them; compiling its next version — or, for a refused change, its previous one — claims them back.
// What is still released when the apply ends belonged to an object that is gone and is removed then;
// an object created later, even under the same ID, never gets another's port.
//
// A network's gateway runs services for its guests on the punt queue (DHCP: src/compile/services.ts,
// which says what the gateway punts and which servers run); they are planned after the objects are
// compiled and swapped in only when the whole apply succeeded.
//
// A network's TcpTracking goes to its gateway interface (the connections routed through it) and to its
// endpoints' ACL zones.
//
// What each network type does here (docs/model.md says it for users):
//   NAT        its own broadcast domain with a gateway (router interface in the host compartment 0),
//              masqueraded to the host's uplink (when one is configured) except for the network's
//              OutBoundNAT Exceptions. With the socket uplink (HostConfig.uplink.socket) nothing is
//              masqueraded: the default routes lead to the uplink interface, which punts what it
//              would send to the SocketUplink (src/uplink/), whose host sockets are the translation;
//              the gateways punt 'host' (their address reaches the host's loopback) unless
//              hostLoopback is false.
//   Internal   a domain with a gateway: routed to the other networks of the host compartment, no uplink.
//   Overlay    an Internal network whose domain is also a VXLAN segment (its VSID is the VNI) across
//              the hosts of the underlay (HostConfig.overlay; sw.overlay, src/overlay.ts): the same
//              gateway runs on every host (distributed routing: its MAC comes from the VNI, so it is
//              the same everywhere; its address is the subnet's), each routing locally. Its MTU is
//              the underlay's less the 50 bytes of outer headers unless the network gives one, never
//              more. A remote endpoint (IsRemoteEndpoint, or one the cluster hands Host.
//              setRemoteEndpoints) has no port: it is a remote of the domain (its MAC and addresses at
//              its host's provider address) and a neighbour of the gateway.
//   Private    a domain without a gateway: its endpoints reach only each other.
//   Transparent, L2Bridge
//              a domain bridged to the uplink's broadcast domain: the endpoints are on the external
//              L2 network (attached uplink ports join the domain; see transports).
import type { Switch, SwitchPort } from '../dataplane.js';
import type { InterfaceSpec } from '../router.js';
import type { ModelState, HostComputeNetwork, HostComputeEndpoint, HostComputeLoadBalancer, Kind } from '../model/types.js';
import { gatewayOf } from '../model/store.js';
import { prefix, vsidOf, providerAddressOf, ModelError, address } from '../model/validate.js';
import type { AclRule } from './acl.js';
import { GatewayServices, gatewayPunts, type ServicesOptions } from './services.js';
import { SocketUplink, type UplinkLimits } from '../uplink/index.js';

// The socket uplink's settings (docs/model.md "Daemon configuration").
export interface SocketUplinkConfig {
  hostLoopback?: boolean;          // a gateway address reaches the host's loopback (default true)
  limits?: Partial<UplinkLimits>;  // open host sockets per guest address (default 256 TCP, 256 UDP, 16 ping)
  address?: string;                // the uplink interface's address (default 100.64.0.1/30; nothing is sent from it)
}

export interface HostConfig {
  // The host's external side: a TAP-style uplink (its address with prefix, and the next hop of the
  // default route), or the socket uplink ({ socket: {...} }).
  uplink?: { address: string; gateway?: string; mac?: string; silent?: boolean; socket?: undefined } | { socket: SocketUplinkConfig };
  // This host's underlay for Overlay networks (absent: Overlay networks are refused).
  overlay?: OverlayConfig;
}

export const SOCKET_UPLINK_ADDRESS = '100.64.0.1/30';

// This host's side of the overlay (the daemon's `overlay` setting): its provider address (the
// underlay IPv4 address the kernel owns, where VXLAN arrives), the UDP port, and the underlay's IP MTU.
export interface OverlayConfig {
  providerAddress: string;
  udpPort?: number;     // default 4789 (IANA's VXLAN port)
  mtu?: number;         // default 1500
}

export const VXLAN_PORT = 4789;
export const VXLAN_OVERHEAD = 50;   // outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: what Linux's vxlan takes off

// Checks the overlay setting; errors name the field under `field` (`overlay.udpPort`).
export function checkOverlay(v: unknown, field = 'overlay'): Required<OverlayConfig> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelError('InvalidArgument', field, 'must be an object { providerAddress, udpPort?, mtu? }');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['providerAddress', 'udpPort', 'mtu'].includes(k)) throw new ModelError('InvalidArgument', `${field}.${k}`, 'unknown setting (providerAddress, udpPort, mtu)');
  const pa = address(o.providerAddress, `${field}.providerAddress`);
  if (pa.v6 || pa.bytes[0] === 0 || pa.bytes[0] === 127 || pa.bytes[0] >= 224) throw new ModelError('InvalidArgument', `${field}.providerAddress`, `must be a unicast IPv4 address of this host (the underlay is IPv4), got ${JSON.stringify(o.providerAddress)}`);
  const int = (k: string, lo: number, hi: number, d: number) => {
    const x = o[k] ?? d;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < lo || x > hi) throw new ModelError('InvalidArgument', `${field}.${k}`, `must be an integer from ${lo} to ${hi}, got ${JSON.stringify(o[k])}`);
    return x;
  };
  // The least underlay MTU leaves an overlay MTU of 1280 (IPv6's minimum) for the inner packets.
  return { providerAddress: pa.text, udpPort: int('udpPort', 1, 65535, VXLAN_PORT), mtu: int('mtu', 1280 + VXLAN_OVERHEAD, 65535, 1500) };
}

// The gateway MAC of an Overlay network: the same on every host (distributed routing: a guest that
// moves, or a frame routed on one host and delivered on another, meets the same gateway), made from
// the VNI: 0a:6e:70 (locally administered) and the VNI's 24 bits.
export function overlayGatewayMac(vni: number): string {
  return ['0a', '6e', '70', (vni >>> 16) & 255, (vni >>> 8) & 255, vni & 255].map((x) => (typeof x === 'string' ? x : x.toString(16).padStart(2, '0'))).join(':');
}

// The underlay port's network: none of the model's (they start at 2, the uplink's is 1); the
// dataplane takes the port's frames as outer packets before any domain.
const UNDERLAY_NETWORK = 0;

type Undo = () => void;
interface Applied { value: unknown; undo: Undo[] }

const UPLINK_NETWORK = 1;
const HOST_COMPARTMENT = 0;
const ORDER: Kind[] = ['namespace', 'network', 'endpoint', 'loadbalancer'];
const LISTS: Record<Kind, keyof ModelState> = { network: 'networks', endpoint: 'endpoints', namespace: 'namespaces', loadbalancer: 'loadBalancers' };

export class HostCompiler {
  private applied = new Map<string, Applied>();
  private networkNumber = new Map<string, number>();
  private bridgedGroupFwd = new Map<string, number>();   // GroupFwdMask of each Transparent/L2Bridge network
  private endpointPort = new Map<string, number>();
  private gatewayInterface = new Map<string, number>();
  private uplinkInterface?: number;
  private state: ModelState = { networks: [], endpoints: [], namespaces: [], loadBalancers: [] };
  // What undone objects released, by object ID, for their next version to claim (see the top).
  private releasedPorts = new Released<SwitchPort>((p) => this.sw.removePort(p.id));
  private releasedNumbers = new Released<number>((n) => this.sw.acls.setNetworkRules(n, []));
  private releasedGateways = new Released<number>((i) => this.sw.router.removeInterface(i));
  // What the gateways run for their guests (DHCP; src/compile/services.ts), planned and committed
  // with every apply.
  readonly services: GatewayServices;

  // The socket uplink, when configured: it carries what the uplink interface punts.
  readonly socketUplink?: SocketUplink;

  // The overlay's underlay (HostConfig.overlay), checked, and the switch port whose frames are its
  // outer packets (the Host attaches the underlay transport to it).
  readonly overlay?: Required<OverlayConfig>;
  readonly underlayPort?: number;

  constructor(readonly sw: Switch, readonly config: HostConfig = {}, services: ServicesOptions = {}) {
    if (config.overlay) {
      this.overlay = checkOverlay(config.overlay);
      const port = sw.addPort({ network: UNDERLAY_NETWORK });
      try {
        this.overlaySdk().setUnderlay({ port: port.id, address: this.overlay.providerAddress, udpPort: this.overlay.udpPort, mtu: this.overlay.mtu });
      } catch (e) {
        sw.removePort(port.id);
        throw e;
      }
      this.underlayPort = port.id;
    }
    this.services = new GatewayServices(sw, services);
    const up = config.uplink;
    if (up?.socket) {
      const s = up.socket;
      this.uplinkInterface = sw.router.addInterface({ network: UPLINK_NETWORK, address: s.address ?? SOCKET_UPLINK_ADDRESS, external: true, mtu: 65535, punt: ['uplink'] });
      // On-link default routes: everything not for a guest network leaves by the uplink, punted.
      sw.router.addRoute({ compartment: HOST_COMPARTMENT, destination: '0.0.0.0/0', interface: this.uplinkInterface });
      sw.router.addRoute({ compartment: HOST_COMPARTMENT, destination: '::/0', interface: this.uplinkInterface });
      this.socketUplink = SocketUplink.attach(sw, {
        interface: this.uplinkInterface, hostLoopback: s.hostLoopback, limits: s.limits,
        log: services.log,
        // DNS over TCP to a gateway: its network's DNS server (the services punt it as 'dns' and hand
        // the segments to the uplink's host TCP path, services.ts).
        services: { 53: (stream, key) => this.services.dnsStream(stream, key) },
      });
      this.services.setUplink(this.socketUplink);
    } else if (up) {
      this.uplinkInterface = sw.router.addInterface({ network: UPLINK_NETWORK, address: up.address, external: true, mac: up.mac, silent: up.silent });
      if (up.gateway) sw.router.addRoute({ compartment: HOST_COMPARTMENT, destination: '0.0.0.0/0', interface: this.uplinkInterface, nextHop: up.gateway });
    }
  }

  // The socket uplink's interface address and the peer address host port forwards come from (the
  // next address of its subnet: routed back out of the uplink, never a guest's).
  uplinkAddresses(): { address: string; peer: string } | undefined {
    const s = this.config.uplink?.socket;
    if (!s) return undefined;
    const address = (s.address ?? SOCKET_UPLINK_ADDRESS).split('/')[0];
    const b = address.split('.').map(Number);
    const n = (((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0) + 1;
    return { address, peer: `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}` };
  }

  // Ends the socket uplink's flows and the gateways' services (the Host's close).
  close(): void {
    this.socketUplink?.close();
    this.services.close();
  }

  private overlaySdk() { return this.sw.overlay; }

  // What a gateway punts: its services', and 'host' with the socket uplink's hostLoopback.
  private punts(n: HostComputeNetwork) {
    const p = gatewayPunts(n);
    const s = this.config.uplink?.socket;
    return s && s.hostLoopback !== false ? [...p, 'host' as const] : p;
  }

  // The switch port an endpoint is attached by (transports attach to it): the same one for as long as
  // the endpoint exists.
  portOf(endpoint: string): number | undefined { return this.endpointPort.get(endpoint); }
  networkOf(network: string): number | undefined { return this.networkNumber.get(network); }
  uplinkNetwork(): number { return UPLINK_NETWORK; }

  // Reverse lookups, for views that name what the dataplane numbers (the daemon's /mac and /stats).
  // The endpoint a switch port belongs to.
  endpointAt(port: number): string | undefined {
    for (const [id, p] of this.endpointPort) if (p === port) return id;
    return undefined;
  }
  // The networks compiled to a network number (Transparent and L2Bridge networks share the uplink's).
  networksNumbered(num: number): string[] {
    return [...this.networkNumber].filter(([, n]) => n === num).map(([id]) => id).sort();
  }
  // A network's gateway: its router interface id (the interface's MAC is the one guests resolve).
  gatewayInterfaceOf(network: string): number | undefined { return this.gatewayInterface.get(network); }
  // Whose a router interface is: a network's gateway, or the host's uplink side.
  interfaceOwner(iface: number): { network: string } | { uplink: true } | undefined {
    if (iface === this.uplinkInterface) return { uplink: true };
    for (const [network, i] of this.gatewayInterface) if (i === iface) return { network };
    return undefined;
  }

  // Brings the dataplane from the last applied state to `next`; throws (having restored the
  // dataplane) if any item is refused.
  // `revert`: `next` is the state before a change that was applied and is now being undone.
  apply(next: ModelState, revert = false): void {
    const prev = this.state;
    const changed = (kind: Kind) => {
      const before = new Map((prev[LISTS[kind]] as Array<{ ID: string }>).map((o) => [o.ID, o]));
      const after = new Map((next[LISTS[kind]] as Array<{ ID: string }>).map((o) => [o.ID, o]));
      const gone = [...before.keys()].filter((id) => !after.has(id) || JSON.stringify(after.get(id)) !== JSON.stringify(before.get(id)));
      const come = [...after.keys()].filter((id) => !before.has(id) || JSON.stringify(after.get(id)) !== JSON.stringify(before.get(id)));
      return { gone, come, after };
    };
    // Endpoints follow their network (a changed network recompiles its endpoints), load balancers
    // their endpoints (their addresses).
    const plan = new Map(ORDER.map((k) => [k, changed(k)]));
    const netChanged = new Set([...plan.get('network')!.gone, ...plan.get('network')!.come]);
    const epPlan = plan.get('endpoint')!;
    for (const e of next.endpoints) if (netChanged.has(e.HostComputeNetwork) && !epPlan.come.includes(e.ID)) { epPlan.gone.push(e.ID); epPlan.come.push(e.ID); }
    for (const e of prev.endpoints) if (netChanged.has(e.HostComputeNetwork) && !epPlan.gone.includes(e.ID)) epPlan.gone.push(e.ID);
    const epChanged = new Set([...epPlan.gone, ...epPlan.come]);
    const lbPlan = plan.get('loadbalancer')!;
    for (const lb of next.loadBalancers) if (lb.HostComputeEndpoints.some((id) => epChanged.has(id)) && !lbPlan.come.includes(lb.ID)) { lbPlan.gone.push(lb.ID); lbPlan.come.push(lb.ID); }
    for (const lb of prev.loadBalancers) if (lb.HostComputeEndpoints.some((id) => epChanged.has(id)) && !lbPlan.gone.includes(lb.ID)) lbPlan.gone.push(lb.ID);

    const undone: Array<[Kind, string, Applied]> = [];
    const done: Array<[Kind, string]> = [];
    try {
      for (const kind of [...ORDER].reverse()) {
        for (const id of plan.get(kind)!.gone) {
          const key = `${kind}/${id}`;
          const a = this.applied.get(key);
          if (!a) continue;
          runUndo(a.undo);
          this.applied.delete(key);
          undone.push([kind, id, a]);
        }
      }
      for (const kind of ORDER) {
        const p = plan.get(kind)!;
        for (const id of p.come) {
          const value = p.after.get(id)!;
          this.applied.set(`${kind}/${id}`, { value, undo: this.compile(kind, value, next) });
          done.push([kind, id]);
        }
      }
      this.reconcileMembers(next);
      // The gateways' services for the new state: built whole (or refused) before any is swapped in.
      const services = this.services.plan(next, (network) => {
        const iface = this.gatewayInterface.get(network);
        const f = iface === undefined ? undefined : this.sw.router.interfaces.get(iface);
        return f && { iface: f.id, network: f.network, vlan: f.vlan };
      }, revert);
      this.services.commit(services);
      this.state = structuredClone(next);
    } catch (e) {
      // Back to exactly what was: undo this change's items, re-apply what it undid (which claims
      // back the ports, numbers and gateways released on the way).
      for (const [kind, id] of done.reverse()) {
        const a = this.applied.get(`${kind}/${id}`);
        if (a) runUndo(a.undo);
        this.applied.delete(`${kind}/${id}`);
      }
      for (const [kind, id, a] of undone.reverse()) {
        this.applied.set(`${kind}/${id}`, { value: a.value, undo: this.compile(kind, a.value, prev) });
      }
      this.reconcileMembers(prev);
      throw e;
    } finally {
      // Released and not claimed back: what belonged to objects that are gone.
      this.releasedPorts.drop();
      this.releasedGateways.drop();
      this.releasedNumbers.drop();
    }
  }

  // Distributed routing encapsulates a routed packet into its destination's segment, where the
  // sending host may hold no endpoint of its own; the dataplane takes a VNI only from its members,
  // and a host holding remotes in one segment is an implicit member of that segment only. So every
  // host that holds a remote endpoint of any Overlay network is made an explicit member of every
  // Overlay segment of this host (keys "vni/pa", kept in step after each apply).
  private members = new Set<string>();
  private reconcileMembers(state: ModelState): void {
    if (!this.overlay) return;
    const sdk = this.overlaySdk();
    const vnis = state.networks.filter((n) => n.Type === 'Overlay').map((n) => vsidOf(n)!);
    const pas = new Set(state.endpoints.filter((e) => e.IsRemoteEndpoint).map((e) => providerAddressOf(e)).filter((a): a is string => !!a));
    const want = new Set(vnis.flatMap((v) => [...pas].map((pa) => `${v}/${pa}`)));
    for (const k of this.members) if (!want.has(k)) { const [v, pa] = k.split('/'); sdk.removeMember(Number(v), pa); this.members.delete(k); }
    for (const k of want) if (!this.members.has(k)) { const [v, pa] = k.split('/'); sdk.addMember(Number(v), pa); this.members.add(k); }
  }

  private compile(kind: Kind, value: unknown, state: ModelState): Undo[] {
    const undo: Undo[] = [];
    try {
      if (kind === 'network') this.compileNetwork(value as HostComputeNetwork, undo);
      else if (kind === 'endpoint') this.compileEndpoint(value as HostComputeEndpoint, state, undo);
      else if (kind === 'loadbalancer') this.compileBalancer(value as HostComputeLoadBalancer, state, undo);
      return undo;
    } catch (e) {
      runUndo(undo);
      throw e;
    }
  }

  private compileNetwork(n: HostComputeNetwork, undo: Undo[]): void {
    const sw = this.sw, rt = sw.router;
    if (n.Type === 'Transparent' || n.Type === 'L2Bridge') {
      // Bridged to the uplink: its endpoints join the uplink's broadcast domain, which forwards the
      // reserved group addresses any of its bridged networks asks for (one domain, one mask).
      this.networkNumber.set(n.ID, UPLINK_NETWORK);
      this.bridgedGroupFwd.set(n.ID, n.GroupFwdMask ?? 0);
      this.applyBridgedGroupFwd();
      undo.push(() => { this.networkNumber.delete(n.ID); this.bridgedGroupFwd.delete(n.ID); this.applyBridgedGroupFwd(); });
      return;
    }
    const network = this.releasedNumbers.claim(n.ID) ?? this.freeNetworkNumber();
    this.networkNumber.set(n.ID, network);
    undo.push(() => { this.networkNumber.delete(n.ID); this.releasedNumbers.release(n.ID, network); });
    sw.setGroupFwdMask(network, n.GroupFwdMask ?? 0);
    undo.push(() => sw.setGroupFwdMask(network, 0));
    const subnets = (n.Ipams ?? []).flatMap((i) => i.Subnets);
    const v4 = subnets.find((s) => !s.IpAddressPrefix.includes(':'));
    const v6 = subnets.find((s) => s.IpAddressPrefix.includes(':'));
    const vlan = v4?.Policies?.find((p) => p.Type === 'VLAN')?.Settings.IsolationId ?? 0;
    let mtu = n.MTU;
    let mac: string | undefined;
    if (n.Type === 'Overlay') {
      const ov = this.overlay;
      if (!ov) throw new ModelError('InvalidArgument', 'Type', `network ${n.ID} is an Overlay network, and this host has no underlay (the daemon's \`overlay\` setting: its provider address)`);
      const most = ov.mtu - VXLAN_OVERHEAD;
      if (mtu !== undefined && mtu > most) throw new ModelError('InvalidArgument', 'MTU', `${mtu} does not fit the underlay: its MTU ${ov.mtu} less ${VXLAN_OVERHEAD} bytes of VXLAN headers is ${most}`);
      mtu ??= most;
      const vni = vsidOf(n)!;
      mac = overlayGatewayMac(vni);
      const sdk = this.overlaySdk();
      sdk.setVni(network, vni);
      undo.push(() => sdk.removeVni(network));
    }
    if (n.Type !== 'Private' && (v4 || v6)) {
      const gw = this.gateway(n.ID, {
        mac,
        compartment: HOST_COMPARTMENT, network, vlan,
        address: v4 ? `${gatewayOf(v4)}/${prefix(v4.IpAddressPrefix, 'IpAddressPrefix').len}` : undefined,
        address6: v6 ? `${gatewayOf(v6)}/${prefix(v6.IpAddressPrefix, 'IpAddressPrefix').len}` : undefined,
        tcp: n.TcpTracking ? { liberal: n.TcpTracking.Liberal, pickup: n.TcpTracking.Pickup } : undefined,
        mtu,
        mssClamp: n.MssClamp === 'Mtu' ? 'mtu' : n.MssClamp,
        silent: n.SilentGateway ?? false,
        punt: this.punts(n),
      });
      this.gatewayInterface.set(n.ID, gw);
      undo.push(() => { this.gatewayInterface.delete(n.ID); this.releasedGateways.release(n.ID, gw); });
    }
    if (n.Type === 'NAT' && v4 && this.uplinkInterface !== undefined && !this.socketUplink) {
      const rule = rt.addSourceNat({ compartment: HOST_COMPARTMENT, source: v4.IpAddressPrefix, interface: this.uplinkInterface });
      undo.push(() => rt.removeSourceNat(rule));
      for (const p of n.Policies ?? []) {
        if (p.Type !== 'OutBoundNAT') continue;
        for (const ex of p.Settings.Exceptions ?? []) {
          const id = rt.addNatException({ compartment: HOST_COMPARTMENT, destination: ex });
          undo.push(() => rt.removeNatException(id));
        }
      }
    }
    // Replaces what the number had (its previous version's rules); they go when the number does.
    sw.acls.setNetworkRules(network, (n.Policies ?? []).filter((p) => p.Type === 'NetworkACL').map((p) => p.Settings as AclRule));
  }

  private applyBridgedGroupFwd(): void {
    this.sw.setGroupFwdMask(UPLINK_NETWORK, [...this.bridgedGroupFwd.values()].reduce((a, m) => a | m, 0));
  }

  private freeNetworkNumber(): number {
    const used = new Set([...this.networkNumber.values(), ...this.releasedNumbers.items()]);
    let num = UPLINK_NETWORK + 1;
    while (used.has(num)) num++;
    return num;
  }

  // The network's gateway interface: the one its previous version released, untouched if its
  // settings are the same, else made again with the same id and MAC; a new one for a new network.
  private gateway(network: string, spec: InterfaceSpec): number {
    const rt = this.sw.router;
    const kept = this.releasedGateways.claim(network);
    if (kept === undefined) return rt.addInterface(spec);
    const old = rt.interfaces.get(kept)!;
    if (old.compartment === spec.compartment && old.network === spec.network && old.vlan === spec.vlan && old.address === spec.address && old.address6 === spec.address6 &&
        (spec.mac === undefined || spec.mac === old.mac) &&
        JSON.stringify(old.tcp ?? {}) === JSON.stringify(spec.tcp ?? {})) {
      // Only the MTU or MSS clamp changed (or nothing): set it in place, the guests stay attached.
      if (old.mtu !== (spec.mtu ?? 1500)) rt.setMtu(kept, spec.mtu ?? 1500);
      if (old.mssClamp !== spec.mssClamp) rt.setMssClamp(kept, spec.mssClamp);
      if (old.silent !== !!spec.silent) rt.setSilent(kept, !!spec.silent); // in place: no connection or MAC disturbed
      if (JSON.stringify(old.punt) !== JSON.stringify(spec.punt ?? [])) rt.setPunt(kept, spec.punt ?? []);
      return kept;
    }
    rt.removeInterface(kept);
    try {
      return rt.addInterface({ ...spec, id: kept, mac: spec.mac ?? old.mac });
    } catch (e) {
      rt.addInterface(old);
      this.releasedGateways.release(network, kept);
      throw e;
    }
  }

  private compileEndpoint(e: HostComputeEndpoint, state: ModelState, undo: Undo[]): void {
    const sw = this.sw, rt = sw.router;
    const network = this.networkNumber.get(e.HostComputeNetwork);
    if (network === undefined) throw new Error(`endpoint ${e.ID}: network ${e.HostComputeNetwork} is not compiled`);
    const net = state.networks.find((n) => n.ID === e.HostComputeNetwork)!;
    if (e.IsRemoteEndpoint) return this.compileRemote(e, network, undo);
    const vlan = (net.Ipams ?? []).flatMap((i) => i.Subnets).find((s) => !s.IpAddressPrefix.includes(':'))?.Policies?.find((p) => p.Type === 'VLAN')?.Settings.IsolationId ?? 0;
    const spec = { network, vlan, mac: e.MacAddress };
    const kept = this.releasedPorts.claim(e.ID);
    const port = kept ?? sw.addPort(spec);
    this.endpointPort.set(e.ID, port.id);
    undo.push(() => { this.endpointPort.delete(e.ID); this.releasedPorts.release(e.ID, port); });
    // In place; the dataplane forgets the port's learned MACs itself if its network or VLAN changed.
    if (kept) sw.modifyPort(port.id, spec);
    const gw = this.gatewayInterface.get(e.HostComputeNetwork);
    const v4 = (e.IpConfigurations ?? []).find((c) => !c.IpAddress.includes(':'))?.IpAddress;
    for (const c of e.IpConfigurations ?? []) {
      if (gw === undefined || !e.MacAddress) continue;
      rt.setNeighbor({ compartment: HOST_COMPARTMENT, address: c.IpAddress, mac: e.MacAddress, interface: gw });
      undo.push(() => rt.removeNeighbor({ compartment: HOST_COMPARTMENT, address: c.IpAddress }));
    }
    const rules: AclRule[] = [];
    for (const p of e.Policies ?? []) {
      if (p.Type === 'PortMapping' && v4) {
        const pm = { compartment: HOST_COMPARTMENT, protocol: p.Settings.Protocol === 6 ? 'tcp' as const : 'udp' as const, externalPort: p.Settings.ExternalPort, vip: p.Settings.VIP };
        rt.addPortMapping({ ...pm, internalAddress: v4, internalPort: p.Settings.InternalPort });
        undo.push(() => rt.removePortMapping(pm));
      } else if (p.Type === 'ACL') {
        rules.push(p.Settings as AclRule);
      } else if (p.Type === 'OutBoundNAT' && v4 && p.Settings.VirtualIP && this.uplinkInterface !== undefined && !this.socketUplink) {
        const rule = rt.addSourceNat({ compartment: HOST_COMPARTMENT, source: `${v4}/32`, interface: this.uplinkInterface, address: p.Settings.VirtualIP });
        undo.push(() => rt.removeSourceNat(rule));
      }
    }
    // Replaces what the port had (its previous version's ACL); it goes when the port does.
    // The port's ACL zone tracks TCP as its network says; it picks up only when told to (src/acl.ts).
    const tcp = net.TcpTracking ? { liberal: net.TcpTracking.Liberal, pickup: net.TcpTracking.Pickup === true } : undefined;
    sw.acls.setPortAcl(port.id, { rules, defaultIn: e.AclDefaults?.In, defaultOut: e.AclDefaults?.Out, tcp });
  }

  // A remote endpoint: a remote of its network's VXLAN segment (its MAC and addresses at its host's
  // provider address), and a neighbour of the gateway, so traffic routed to it needs no ARP.
  private compileRemote(e: HostComputeEndpoint, network: number, undo: Undo[]): void {
    const rt = this.sw.router, sdk = this.overlaySdk();
    const pa = providerAddressOf(e)!;
    const at = (e.Policies ?? []).findIndex((p) => p.Type === 'ProviderAddress');
    if (pa === this.overlay?.providerAddress) throw new ModelError('InvalidArgument', `Policies[${at}].Settings.ProviderAddress`, `${pa} is this host's own provider address: a remote endpoint is on another host`);
    const mac = e.MacAddress!;
    sdk.addRemote({ network, mac, addresses: (e.IpConfigurations ?? []).map((c) => c.IpAddress), providerAddress: pa });
    undo.push(() => { sdk.removeRemote({ network, mac }); });
    const gw = this.gatewayInterface.get(e.HostComputeNetwork);
    for (const c of e.IpConfigurations ?? []) {
      if (gw === undefined) continue;
      rt.setNeighbor({ compartment: HOST_COMPARTMENT, address: c.IpAddress, mac, interface: gw });
      undo.push(() => rt.removeNeighbor({ compartment: HOST_COMPARTMENT, address: c.IpAddress }));
    }
  }

  private compileBalancer(lb: HostComputeLoadBalancer, state: ModelState, undo: Undo[]): void {
    const rt = this.sw.router;
    const backends = lb.HostComputeEndpoints.map((id) => state.endpoints.find((e) => e.ID === id)?.IpConfigurations?.find((c) => !c.IpAddress.includes(':'))?.IpAddress)
      .filter((a): a is string => !!a);
    const id = rt.addLoadBalancer({
      compartment: HOST_COMPARTMENT,
      frontendVips: lb.FrontendVIPs,
      dsr: lb.Flags?.DSR,
      backends,
      portMappings: lb.PortMappings.map((p) => ({ protocol: p.Protocol === 6 ? 'tcp' as const : 'udp' as const, externalPort: p.ExternalPort, internalPort: p.InternalPort, distribution: p.DistributionType })),
    });
    undo.push(() => rt.removeLoadBalancer(id));
  }
}

function runUndo(undo: Undo[]): void {
  for (const u of [...undo].reverse()) u();
}

// Items an undone object released, by the object's ID: its next version claims them back within the
// same apply; what is left at the end of the apply is dropped.
class Released<T> {
  private byOwner = new Map<string, T>();
  constructor(private readonly remove: (item: T) => void) {}
  release(owner: string, item: T): void { this.byOwner.set(owner, item); }
  claim(owner: string): T | undefined {
    const item = this.byOwner.get(owner);
    this.byOwner.delete(owner);
    return item;
  }
  items(): IterableIterator<T> { return this.byOwner.values(); }
  drop(): void {
    const left = [...this.byOwner.values()];
    this.byOwner.clear();
    for (const item of left) this.remove(item);
  }
}
