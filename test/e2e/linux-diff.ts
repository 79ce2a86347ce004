// The differential harness: the same raw Ethernet frames through a Linux kernel and through netplane,
// the outputs compared field by field.
//
// Why this shape. Linux's conntrack/NAT, bridge and IPv6 router are what users hold a NAT, a switch
// and a router to. Comparing end results of real applications (does `curl` work?) hides the fields a
// peer can see: TTL, TCP flags and numbers, which port a NAT chose, what an ICMP error quotes. So the
// harness speaks raw frames on both sides:
//
//   Linux:    a namespace holding a router (or a bridge) whose interfaces are TAP devices made by
//             socat (TUN,tun-type=tap ... UDP-DATAGRAM), as test/e2e/netns.ts attaches hosts. This
//             process holds the UDP ends, so it writes a crafted frame into one interface and reads,
//             byte for byte, what the kernel emits on each of them. The router's neighbours are
//             static entries, so the kernel never asks ARP/ND for the fake hosts.
//   netplane: a Switch in memory with the same topology (the same gateway MACs and addresses, the
//             same neighbours, SNAT, port mapping, timeouts), a virtual clock, tx captured.
//
// A step is one frame in; its result is every frame out, per interface, in order. Each frame out is
// described as a list of named fields (eth.src, ip.ttl, tcp.flags, icmp.q.udp.sport, ...) by a parser
// of its own in this file, which also recomputes every checksum (IPv4 header, TCP/UDP/ICMP/ICMPv6 with
// pseudo-headers, quoted headers, and whole datagrams reassembled from fragments). The two lists are
// compared field by field.
//
// Where a choice may differ, values are symbolic, not equal:
//   - ports and ICMP identifiers that appear in no input frame are chosen by a NAT. They are named in
//     order of appearance per side (P1, P2, ...) with their class (<1024, 1024+) attached, so "the
//     masquerade port is consistent across the flow and of the same class" is an exact comparison of
//     symbols. A later input frame can use a symbol (`s.port('P1')`), which each side resolves to its
//     own value.
//   - an IPv4 ID that appears in no input frame was made by the router: it reads as "fresh". An ID
//     copied from an input stays a number, so copying where Linux makes a fresh one is a difference.
//
// Ordering on the Linux side: after a frame, the harness pings the router (or the bridge's own
// address) on the interface the frame came in by, and waits for the echo reply; the kernel handles a
// TAP write synchronously, so everything the frame caused is queued by then. Then it pings on every
// other interface: what the frame sent there is read before that echo reply. No sleeps, no timeouts
// as a way to decide "nothing came out".
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createSocket, type Socket } from 'node:dgram';
import { createHash } from 'node:crypto';
import { Switch, type PortSpec } from '../../src/index.js';
import { ethernet, ipv4, icmp } from '../../src/frames.js';
import { requirements as netnsRequirements } from './netns.js';

// ---------------------------------------------------------------------------------------------
// Requirements: fail loudly, never skip.

export function requirements(): string | undefined {
  const base = netnsRequirements();
  if (base) return base;
  try { execFileSync('sh', ['-c', 'command -v nft'], { stdio: 'ignore' }); } catch { return 'the differential tests need nft (apt-get install nftables; scripts/install-test-deps.sh does)'; }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The topology, one description for both sides.

export const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
export const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3', ip6: 'fd00::3' };
export const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254', ip6: 'fd01::fe' };
export const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100', ip6: 'fd01::99' };
export const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1', ip6: 'fd00::1', ll: 'fe80::6e:70ff:fe00:0' };
export const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1', ip6: 'fd01::1' };
const LAN_HOSTS = [A, B];
const WAN_HOSTS = [R, X];

//   lan  10.0.0.1/24 fd00::1/64 (GW0)   A, B
//   wan  192.168.1.1/24 fd01::1/64 (GW1, external)   R (default next hop, both families), X
//   masquerade 10.0.0.0/24 out of wan; port forward tcp 8080 on any router address -> B:80;
//   hairpin (lan to a forwarded port) masqueraded to 10.0.0.1; conntrack on, invalid dropped.
export interface RouterConfig {
  /** SNAT port range (nft `masquerade to :lo-hi`). */
  snatPorts?: [number, number];
  /** Conntrack timeouts in ms by netplane state name; Linux gets the same in seconds. */
  timeouts?: Partial<Record<keyof typeof LINUX_TIMEOUTS, number>>;
  /** A stateful block towards the lan: only established/related traffic enters it (both families). */
  blockInbound?: boolean;
  /** A load balancer: VIP 192.168.1.80 on the wan segment, tcp 80 -> B:8080 (kube-proxy's DNAT; the
   *  VIP is a local address on Linux, as kube-proxy's IPVS mode binds it, so it answers ARP). */
  loadBalancer?: boolean;
  /** TCP MSS clamping of everything forwarded: nft `tcp option maxseg size set rt mtu` ('mtu') or
   *  `... set <mss>` in the forward chain; netplane's lan interface `mssClamp` (every forwarded
   *  packet crosses the lan). */
  mssClamp?: number | 'mtu';
  /** The wan interface's MTU (default 1500). */
  wanMtu?: number;
}

export const VIP = '192.168.1.80';

const LINUX_TIMEOUTS = {
  SYN_SENT: 'nf_conntrack_tcp_timeout_syn_sent',
  ESTABLISHED: 'nf_conntrack_tcp_timeout_established',
  CLOSE: 'nf_conntrack_tcp_timeout_close',
  TIME_WAIT: 'nf_conntrack_tcp_timeout_time_wait',
  UDP_UNREPLIED: 'nf_conntrack_udp_timeout',
  UDP_REPLIED: 'nf_conntrack_udp_timeout_stream',
};

export type Topology = 'router' | 'bridge';
const IFACES: Record<Topology, string[]> = { router: ['lan', 'wan'], bridge: ['p0', 'p1', 'p2'] };

// ---------------------------------------------------------------------------------------------
// Scenarios

/** What a frame builder sees of its side: the values its symbols stand for, and earlier outputs. */
export interface SideView {
  side: 'linux' | 'netplane';
  /** The value of a symbolic port, e.g. "P1". */
  port(sym: string): number;
  /** The i-th frame out of step `step` (0-based), on interface `iface` if given. */
  out(step: number, i?: number, iface?: string): Uint8Array;
}

export type Step =
  | {
    send: string;
    frame: Uint8Array | ((s: SideView) => Uint8Array);
    /** The interfaces Linux sends frames out of, in order; for a group, on its last step. */
    linux?: string[];
    /** Consecutive steps of one group are compared together, after the last: when a frame leaves
     *  may differ (fragments), what leaves may not. */
    group?: string;
    /** For a documented reference: the frames the kernel's documentation says leave, by interface. */
    expect?: Array<[string, Uint8Array | ((s: SideView) => Uint8Array)]>;
    note?: string;
  }
  | { advance: number; note?: string };

/** A field difference netplane keeps on purpose: docs/model.md says why. */
export interface Deliberate { step?: number; field: RegExp; why: string }

export interface Scenario {
  name: string;
  topology: Topology;
  config?: RouterConfig;
  /** 'documented': this kernel lacks the feature (CONFIG_BRIDGE_VLAN_FILTERING, IP_VS); the steps'
   *  `expect` frames, written from the kernel's documented behaviour, stand in for it. `source` says where. */
  reference?: { documented: string };
  /** Bridge ports as netplane's PortSpec (mode, vlan, allowedVlans); the documented bridge has the
   *  same memberships. */
  ports?: PortSpec[];
  steps: Step[];
  deliberate?: Deliberate[];
}

export interface StepResult { step: number; linux: Described[]; netplane: Described[]; diffs: string[] }

// ---------------------------------------------------------------------------------------------
// Running a scenario on both sides

let seq = 0;
const run = `${process.pid % 100000}`;

// Runs a table of scenarios in order, the next few kernels being set up (namespace, socat, sysctl,
// nft: most of a scenario's time) while the current one runs.
export class DiffSuite {
  private made = new Map<Scenario, Promise<Reference>>();
  constructor(private readonly scenarios: Scenario[], private readonly ahead = 3) {}

  run(sc: Scenario): Promise<{ diffs: string[]; results: StepResult[] }> {
    const i = this.scenarios.indexOf(sc);
    for (let k = i; k <= i + this.ahead && k < this.scenarios.length; k++) this.prepare(this.scenarios[k]);
    const side = this.made.get(sc)!;
    this.made.delete(sc);
    return side.then((linux) => runScenario(sc, linux));
  }

  // Whatever was set up for scenarios that did not run.
  async close(): Promise<void> {
    for (const p of this.made.values()) await p.then((s) => s.close(), () => {});
    this.made.clear();
  }

  private prepare(sc: Scenario): void {
    if (this.made.has(sc)) return;
    const p: Promise<Reference> = sc.reference ? Promise.resolve(new DocumentedSide(sc)) : LinuxSide.create(sc.topology, sc.config ?? {});
    p.catch(() => { /* reported when its scenario runs */ });
    this.made.set(sc, p);
  }
}

type Reference = LinuxSide | DocumentedSide;

export async function runScenario(sc: Scenario, made?: Reference): Promise<{ diffs: string[]; results: StepResult[] }> {
  const linux = made ?? (sc.reference ? new DocumentedSide(sc) : await LinuxSide.create(sc.topology, sc.config ?? {}));
  const np = new NetplaneSide(sc.topology, sc.config ?? {}, sc.ports);
  try {
    // The port mapping's ports are configuration, not a NAT's choice.
    const literals = { ports: new Set<number>([80, 8080]), ids: new Set<number>() };
    const pending = { linux: [] as Out[], netplane: [] as Out[] };
    const views = { linux: new View('linux'), netplane: new View('netplane') };
    const results: StepResult[] = [];
    const diffs: string[] = [];
    const allowed = (i: number, d: string) => (sc.deliberate ?? []).some((x) => (x.step === undefined || x.step === i) && x.field.test(d));
    for (let i = 0; i < sc.steps.length; i++) {
      const st = sc.steps[i];
      if ('advance' in st) {
        await linux.advance(st.advance);
        np.advance(st.advance);
        views.linux.outs.push([]);
        views.netplane.outs.push([]);
        continue;
      }
      const frames: Record<'linux' | 'netplane', Uint8Array | undefined> = { linux: undefined, netplane: undefined };
      for (const side of ['linux', 'netplane'] as const) {
        try {
          frames[side] = typeof st.frame === 'function' ? st.frame(views[side]) : st.frame;
        } catch (e) {
          diffs.push(`step ${i}${st.note ? ` (${st.note})` : ''}: the ${side} frame cannot be built: ${(e as Error).message}`);
        }
      }
      if (!frames.linux || !frames.netplane) break;
      for (const f of [frames.linux, frames.netplane]) collectLiterals(f, literals);
      const lo = linux instanceof DocumentedSide ? linux.expected(st, views.linux) : await linux.send(st.send, frames.linux);
      const no = np.send(st.send, frames.netplane);
      views.linux.outs.push(lo);
      views.netplane.outs.push(no);
      pending.linux.push(...lo);
      pending.netplane.push(...no);
      const next = sc.steps[i + 1];
      if (st.group && next && 'group' in next && next.group === st.group) continue;
      const [lall, nall] = [pending.linux.splice(0), pending.netplane.splice(0)];
      const ld = describeAll(lall, views.linux, literals, sc.config);
      const nd = describeAll(nall, views.netplane, literals, sc.config);
      const label = `step ${i}${st.note ? ` (${st.note})` : ''}`;
      // The reference must do what the scenario says it does; else the setup is wrong, not netplane.
      const lifs = lall.map((o) => o.iface);
      if (!sc.reference && lifs.join(',') !== (st.linux ?? []).join(',')) {
        throw new Error(`${sc.name}: ${label}: the Linux kernel sent [${lifs}], the scenario says [${st.linux ?? []}]:\n${ld.map(show).join('\n')}`);
      }
      for (const d of ld) if (d.bad.length) throw new Error(`${sc.name}: ${label}: a Linux frame fails its own checksums (${d.bad}): the harness is wrong`);
      const stepDiffs = compare(ld, nd).filter((d) => !allowed(i, d));
      for (const d of nd) if (d.bad.length) stepDiffs.push(`netplane frame ${d.iface} has bad checksums: ${d.bad.join(', ')}`);
      if (!st.group && nall.length === 0 && !(frames.netplane[0] & 1) && !np.dropCounted()) stepDiffs.push('netplane sent nothing and counted no drop');
      for (const d of stepDiffs) diffs.push(`${label}: ${d}`);
      results.push({ step: i, linux: ld, netplane: nd, diffs: stepDiffs });
    }
    return { diffs, results };
  } finally {
    await linux.close();
  }
}

class View implements SideView {
  outs: Out[][] = [];
  portSyms = new Map<number, string>();
  symPorts = new Map<string, number>();
  constructor(readonly side: 'linux' | 'netplane') {}
  port(sym: string): number {
    const v = this.symPorts.get(sym);
    if (v === undefined) throw new Error(`no port ${sym} on the ${this.side} side (known: ${[...this.symPorts.keys()].join(', ') || 'none'})`);
    return v;
  }
  out(step: number, i = 0, iface?: string): Uint8Array {
    const list = (this.outs[step] ?? []).filter((o) => !iface || o.iface === iface);
    if (!list[i]) throw new Error(`step ${step} sent no frame ${i}${iface ? ` on ${iface}` : ''}`);
    return list[i].frame;
  }
  sym(port: number, literal: Set<number>): string {
    const known = this.portSyms.get(port);
    if (known) return known;
    if (literal.has(port)) return String(port);
    const s = `P${this.symPorts.size + 1}`;
    this.portSyms.set(port, s);
    this.symPorts.set(s, port);
    return s;
  }
}

interface Out { iface: string; frame: Uint8Array }

// ---------------------------------------------------------------------------------------------
// The Linux side

class Wire {
  frames: Uint8Array[] = [];
  private waiters: Array<() => void> = [];
  private constructor(readonly dev: string, readonly sock: Socket, readonly socat: ChildProcess, readonly peer: number) {
    sock.on('message', (m) => {
      this.frames.push(new Uint8Array(m));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  // A TAP named `dev` in the root namespace, bridged by socat to a UDP socket of this process.
  static async open(dev: string): Promise<Wire> {
    const sock = createSocket('udp4');
    await new Promise<void>((ok) => sock.bind(0, '127.0.0.1', ok));
    const peer = await freeUdpPort();
    const socat = spawn('socat', ['-b65536', `TUN,tun-type=tap,tun-name=${dev},iff-no-pi,iff-up`, `UDP-DATAGRAM:127.0.0.1:${sock.address().port},bind=127.0.0.1:${peer}`],
      { stdio: 'ignore', detached: true });
    const w = new Wire(dev, sock, socat, peer);
    for (let i = 0; i < 200 && !linkExists(dev); i++) await sleep(10);
    if (!linkExists(dev)) throw new Error(`socat did not create ${dev}`);
    return w;
  }

  send(frame: Uint8Array): void { this.sock.send(frame, this.peer, '127.0.0.1'); }

  // Waits for a frame that satisfies `match`; returns everything before it (and removes it all).
  async until(match: (f: Uint8Array) => boolean, ms = 3000): Promise<Uint8Array[]> {
    const t0 = Date.now();
    for (;;) {
      const k = this.frames.findIndex(match);
      if (k >= 0) return this.frames.splice(0, k + 1).slice(0, k);
      if (Date.now() - t0 > ms) throw new Error(`no marker reply from the kernel on ${this.dev} within ${ms} ms`);
      await new Promise<void>((ok) => { this.waiters.push(ok); setTimeout(ok, 50); });
    }
  }

  close(): void {
    try { if (this.socat.pid) process.kill(-this.socat.pid, 'SIGKILL'); } catch { /* gone */ }
    this.sock.close();
  }
}

const MARKER_ID = 0xfee1;
// Per interface: the fake host that pings, and the address it pings.
const MARKERS: Record<string, { mac: string; ip: string; dst: string; dstMac: string }> = {
  lan: { mac: A.mac, ip: A.ip, dst: GW0.ip, dstMac: GW0.mac },
  wan: { mac: R.mac, ip: R.ip, dst: GW1.ip, dstMac: GW1.mac },
  p0: { mac: '02:00:00:00:fe:00', ip: '10.9.9.10', dst: '10.9.9.1', dstMac: '02:6e:70:00:0b:00' },
  p1: { mac: '02:00:00:00:fe:01', ip: '10.9.9.11', dst: '10.9.9.1', dstMac: '02:6e:70:00:0b:00' },
  p2: { mac: '02:00:00:00:fe:02', ip: '10.9.9.12', dst: '10.9.9.1', dstMac: '02:6e:70:00:0b:00' },
};

class LinuxSide {
  private marks = 0;
  private constructor(readonly ns: string, readonly wires: Map<string, Wire>) {}

  static async create(topology: Topology, cfg: RouterConfig): Promise<LinuxSide> {
    const k = seq++;
    const ns = `npd-${run}-${k}`;
    const wires = new Map<string, Wire>();
    const names = IFACES[topology];
    const side = new LinuxSide(ns, wires);
    try {
      for (const [i, name] of names.entries()) wires.set(name, await Wire.open(`nd${run}x${k}x${i}`.slice(0, 15)));
      // One shell for it all (this runs while another scenario does: nothing here may block the
      // event loop). Device defaults first: a TAP moved into the namespace takes them (no DAD, no
      // router solicitations, no flow labels: nothing the kernel would send on its own).
      const inNs = (lines: string[]) => `ip netns exec ${ns} sh -ec '${lines.join('; ')}'`;
      await shell([
        `ip netns add ${ns}`,
        inNs([
          'ip link set lo up',
          'sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.router_solicitations=0 net.ipv6.auto_flowlabels=0',
          'sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000 net.ipv4.icmp_msgs_burst=100000',
        ]),
        ...[...wires].map(([name, w]) => `ip link set ${w.dev} netns ${ns} name ${name}`),
        inNs(topology === 'router' ? routerScript(cfg) : bridgeScript()),
        ...(topology === 'router' ? [`ip netns exec ${ns} nft -f - <<'EOF'\n${nftRuleset(cfg)}EOF`] : []),
      ].join('\n'));
      // The first marker on each interface shows the wiring works (and drains whatever came before).
      for (const name of names) await side.mark(name);
      for (const w of wires.values()) w.frames.length = 0;
      return side;
    } catch (e) {
      await side.close();
      throw e;
    }
  }

  private async mark(iface: string): Promise<Uint8Array[]> {
    const m = MARKERS[iface];
    const n = ++this.marks & 0xffff;
    const w = this.wires.get(iface)!;
    w.send(ethernet({ src: m.mac, dst: m.dstMac, payload: ipv4({ src: m.ip, dst: m.dst, id: 0xfee1, payload: icmp({ type: 8, id: MARKER_ID, seq: n }) }) }));
    return w.until((f) => isMarkerReply(f, n));
  }

  async send(iface: string, frame: Uint8Array): Promise<Out[]> {
    const w = this.wires.get(iface);
    if (!w) throw new Error(`no interface ${iface}`);
    w.send(frame);
    const out: Out[] = [];
    for (const f of await this.mark(iface)) out.push({ iface, frame: f });
    for (const name of this.wires.keys()) {
      if (name === iface) continue;
      for (const f of await this.mark(name)) out.push({ iface: name, frame: f });
    }
    return out.filter((o) => !isNoise(o.frame));
  }

  async advance(ms: number): Promise<void> { await sleep(ms); }

  async close(): Promise<void> {
    for (const w of this.wires.values()) w.close();
    await shell(`ip netns del ${this.ns} 2>/dev/null || true`);
  }
}

function routerScript(cfg: RouterConfig): string[] {
  const neigh = (h: { mac: string; ip: string; ip6: string }, dev: string) => [
    `ip neigh replace ${h.ip} lladdr ${h.mac} dev ${dev} nud permanent`,
    `ip -6 neigh replace ${h.ip6} lladdr ${h.mac} dev ${dev} nud permanent`,
  ];
  const timeouts = Object.entries(cfg.timeouts ?? {}).map(([k, ms]) => `net.netfilter.${LINUX_TIMEOUTS[k as keyof typeof LINUX_TIMEOUTS]}=${Math.ceil((ms as number) / 1000)}`);
  return [
    'sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1',
    ...(timeouts.length ? [`sysctl -qw ${timeouts.join(' ')}`] : []),
    `ip link set lan address ${GW0.mac}`, `ip link set wan address ${GW1.mac}`,
    ...(cfg.wanMtu ? [`ip link set wan mtu ${cfg.wanMtu}`] : []),
    'ip link set lan up', 'ip link set wan up',
    `ip addr add ${GW0.ip}/24 dev lan`, `ip addr add ${GW1.ip}/24 dev wan`,
    `ip -6 addr add ${GW0.ip6}/64 dev lan nodad`, `ip -6 addr add ${GW1.ip6}/64 dev wan nodad`,
    ...LAN_HOSTS.flatMap((h) => neigh(h, 'lan')), ...WAN_HOSTS.flatMap((h) => neigh(h, 'wan')),
    `ip route add default via ${R.ip} dev wan`, `ip -6 route add default via ${R.ip6} dev wan`,
    ...(cfg.loadBalancer ? [`ip addr add ${VIP}/32 dev wan`] : []),
  ];
}

function nftRuleset(cfg: RouterConfig): string {
  // A port range needs a transport protocol; ICMP identifiers keep the default choice.
  const ranged = cfg.snatPorts ? `oifname "wan" ip saddr 10.0.0.0/24 meta l4proto { tcp, udp } masquerade to :${cfg.snatPorts[0]}-${cfg.snatPorts[1]}\n    ` : '';
  const block = cfg.blockInbound ? 'ct state established,related accept\n    oifname "lan" drop' : '';
  const clamp = cfg.mssClamp ? `tcp flags & (syn | rst) == syn tcp option maxseg size set ${cfg.mssClamp === 'mtu' ? 'rt mtu' : cfg.mssClamp}` : '';
  return `flush ruleset
table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local tcp dport 8080 dnat to ${B.ip}:80${cfg.loadBalancer ? `\n    ip daddr ${VIP} tcp dport 80 dnat to ${B.ip}:8080` : ''}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ${ranged}oifname "wan" ip saddr 10.0.0.0/24 masquerade
    oifname "lan" ip saddr 10.0.0.0/24 ct status dnat masquerade
  }
}
table inet filter {
  # Invalid TCP is dropped on the way in too: an invalid segment is not un-NATed, so it is addressed
  # to the router, whose own stack would answer it with a RST. (Not all invalid input: conntrack
  # calls an ICMPv6 message invalid when its checksum covers a routing header's final destination.)
  chain input {
    type filter hook input priority filter; policy accept;
    meta l4proto tcp ct state invalid drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state invalid drop
    ${block}
    ${clamp}
  }
}
`;
}

function bridgeScript(): string[] {
  const ports = IFACES.bridge;
  return [
    `ip link add br0 address ${MARKERS.p0.dstMac} type bridge stp_state 0 forward_delay 0 mcast_snooping 0`,
    'sysctl -qw net.ipv6.conf.br0.disable_ipv6=1',
    ...ports.flatMap((p) => [`sysctl -qw net.ipv6.conf.${p}.disable_ipv6=1`, `ip link set ${p} master br0`, `ip link set ${p} up`]),
    'ip link set br0 up',
    'ip addr add 10.9.9.1/24 dev br0',
    ...ports.map((p) => `ip neigh replace ${MARKERS[p].ip} lladdr ${MARKERS[p].mac} dev br0 nud permanent`),
  ];
}

function shell(script: string): Promise<void> {
  return new Promise((ok, fail) => {
    const p = spawn('sh', ['-ec', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? ok() : fail(new Error(`setting up the Linux side failed (${code}): ${err}\n${script}`))));
  });
}

function isMarkerReply(f: Uint8Array, n: number): boolean {
  return f.length >= 42 && f[12] === 0x08 && f[13] === 0 && f[23] === 1 && f[34] === 0 && u16(f, 38) === MARKER_ID && u16(f, 40) === n;
}

// What a kernel sends on its own, unasked: MLD and IGMP reports, router solicitations.
function isNoise(f: Uint8Array): boolean {
  const d = parse(f);
  if (d.l4 === 'icmpv6' && [130, 131, 132, 133, 143].includes(d.icmpType!)) return true;
  if (d.l3 === 'ip' && d.proto === 2) return true;
  return false;
}

// A reference written down: what the kernel's documentation says a step sends.
class DocumentedSide {
  constructor(readonly sc: Scenario) {}
  expected(st: Extract<Step, { send: string }>, view: SideView): Out[] {
    return (st.expect ?? []).map(([iface, f]) => ({ iface, frame: typeof f === 'function' ? f(view) : f }));
  }
  async advance(_ms: number): Promise<void> { /* time is the netplane side's */ }
  async close(): Promise<void> { /* nothing was made */ }
}

// ---------------------------------------------------------------------------------------------
// The netplane side

class NetplaneSide {
  private now = 1000;
  private out: Out[] = [];
  private dropsBefore = 0;
  private dropsAfter = 0;
  readonly sw: Switch;
  private ifaces: string[];

  constructor(topology: Topology, cfg: RouterConfig, ports?: PortSpec[]) {
    this.ifaces = IFACES[topology];
    this.sw = new Switch({ maxPorts: 8, macEntries: 256, clock: () => this.now });
    const sw = this.sw;
    sw.onFrame((f, p) => this.out.push({ iface: this.ifaces[p], frame: f.slice() }));
    if (topology === 'bridge') {
      for (let i = 0; i < 3; i++) sw.addPort({ network: 1, ...ports?.[i] });
      return;
    }
    sw.addPort({ network: 1 });
    sw.addPort({ network: 2 });
    const rt = sw.router;
    rt.addInterface({ network: 1, mac: GW0.mac, address: `${GW0.ip}/24`, address6: `${GW0.ip6}/64`, ...(cfg.mssClamp ? { mssClamp: cfg.mssClamp } : {}) });
    rt.addInterface({ network: 2, mac: GW1.mac, address: `${GW1.ip}/24`, address6: `${GW1.ip6}/64`, external: true, ...(cfg.wanMtu ? { mtu: cfg.wanMtu } : {}) });
    rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: R.ip });
    rt.addRoute({ destination: '::/0', interface: 1, nextHop: R.ip6 });
    rt.addSourceNat({ source: '10.0.0.0/24', interface: 1, ...(cfg.snatPorts ? { ports: cfg.snatPorts } : {}) });
    rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: B.ip, internalPort: 80 });
    for (const [hosts, ifc, port] of [[LAN_HOSTS, 0, 0], [WAN_HOSTS, 1, 1]] as const) {
      for (const h of hosts) {
        rt.setNeighbor({ address: h.ip, mac: h.mac, interface: ifc });
        rt.setNeighbor({ address: h.ip6, mac: h.mac, interface: ifc });
        sw.addStaticMac({ mac: h.mac, port, network: ifc + 1 });
      }
    }
    // Unlimited ICMP errors, as the Linux side is set (rate limits are not what is compared).
    rt.setRateLimit('icmpErrors', 100000, 100000);
    for (const [state, ms] of Object.entries(cfg.timeouts ?? {})) rt.setConntrackTimeout(state, ms as number);
    if (cfg.blockInbound) sw.acls.setPortAcl(0, { rules: [], defaultIn: 'Block', defaultOut: 'Allow' });
    if (cfg.loadBalancer) rt.addLoadBalancer({ frontendVips: [VIP], portMappings: [{ protocol: 'tcp', externalPort: 80, internalPort: 8080 }], backends: [B.ip] });
  }

  send(iface: string, frame: Uint8Array): Out[] {
    const port = this.ifaces.indexOf(iface);
    if (port < 0) throw new Error(`no interface ${iface}`);
    this.out.length = 0;
    this.now += 1;
    this.dropsBefore = this.drops();
    this.sw.inject([[port, frame]], this.now);
    this.dropsAfter = this.drops();
    // Per interface, in order (the Linux side reads each interface in order, not across them).
    return this.ifaces.flatMap((i) => this.out.filter((o) => o.iface === i));
  }

  dropCounted(): boolean { return this.dropsAfter > this.dropsBefore; }

  private drops(): number { return Object.values(this.sw.counters().drops).reduce((a, b) => a + b, 0); }

  advance(ms: number): void { this.now += ms; }
}

// ---------------------------------------------------------------------------------------------
// Describing frames: fields, symbols, checksums (an independent parser; nothing from src/)

export interface Described { iface: string; fields: Array<[string, string]>; bad: string[] }

function show(d: Described): string {
  return `  ${d.iface}: ${d.fields.map(([k, v]) => `${k}=${v}`).join(' ')}`;
}

export function showResults(r: StepResult[]): string {
  return r.map((s) => `step ${s.step}\n linux:\n${s.linux.map(show).join('\n') || '  (nothing)'}\n netplane:\n${s.netplane.map(show).join('\n') || '  (nothing)'}`).join('\n');
}

const u16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const mac = (b: Uint8Array, o: number) => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ip4 = (b: Uint8Array, o: number) => [...b.subarray(o, o + 4)].join('.');
function ip6(b: Uint8Array, o: number): string {
  const w: string[] = [];
  for (let i = 0; i < 8; i++) w.push(u16(b, o + 2 * i).toString(16));
  return w.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

// RFC 1071 sum over byte ranges, folded at the end.
function sum(parts: Array<Uint8Array>): number {
  let s = 0;
  for (const p of parts) {
    for (let i = 0; i + 1 < p.length; i += 2) s += (p[i] << 8) | p[i + 1];
    if (p.length & 1) s += p[p.length - 1] << 8;
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
function pseudo(src: Uint8Array, dst: Uint8Array, proto: number, len: number): Uint8Array {
  if (src.length === 4) return Uint8Array.from([...src, ...dst, 0, proto, len >> 8, len & 255]);
  return Uint8Array.from([...src, ...dst, (len >>> 24) & 255, (len >> 16) & 255, (len >> 8) & 255, len & 255, 0, 0, 0, proto]);
}
const sumsOk = (parts: Uint8Array[]) => sum(parts) === 0xffff;

interface Parsed {
  l3?: 'ip' | 'ip6' | 'arp' | 'other';
  proto?: number;
  l4?: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'other';
  icmpType?: number;
}

function parse(f: Uint8Array): Parsed {
  const et = f.length >= 14 ? u16(f, 12) : 0;
  if (et === 0x0800 && f.length >= 34) {
    const proto = f[23];
    const frag = (u16(f, 20) & 0x1fff) !== 0;
    const hl = (f[14] & 15) * 4;
    return { l3: 'ip', proto, l4: proto === 1 ? 'icmp' : 'other', icmpType: proto === 1 && !frag ? f[14 + hl] : undefined };
  }
  if (et === 0x86dd && f.length >= 54) {
    let nh = f[20], p = 54;
    while ((nh === 0 || nh === 60 || nh === 43) && p + 8 <= f.length) { const len = (f[p + 1] + 1) * 8; nh = f[p]; p += len; }
    return { l3: 'ip6', proto: nh, l4: nh === 58 ? 'icmpv6' : 'other', icmpType: nh === 58 && p < f.length ? f[p] : undefined };
  }
  return { l3: et === 0x0806 ? 'arp' : 'other' };
}

interface Ctx { view: View; literals: { ports: Set<number>; ids: Set<number> }; cfg?: RouterConfig }

function describeAll(outs: Out[], view: View, literals: Ctx['literals'], cfg?: RouterConfig): Described[] {
  const ds = outs.map((o) => describe(o, { view, literals, cfg }));
  reassemblyCheck(outs, ds);
  return ds;
}

function describe(o: Out, c: Ctx): Described {
  const f = o.frame;
  const fields: Array<[string, string]> = [];
  const bad: string[] = [];
  const put = (k: string, v: string | number | boolean) => fields.push([k, String(v)]);
  put('eth.dst', mac(f, 0));
  put('eth.src', mac(f, 6));
  let et = u16(f, 12), off = 14;
  if (et === 0x8100 && f.length >= 18) {
    const tci = u16(f, 14);
    put('vlan.vid', tci & 0xfff); put('vlan.pcp', tci >> 13); put('vlan.dei', (tci & 0x1000) !== 0);
    et = u16(f, 16);
    off = 18;
  }
  put('eth.type', et.toString(16));
  const body = f.subarray(off);
  if (et === 0x0800) ipv4Fields(body, '', put, bad, c);
  else if (et === 0x86dd) ipv6Fields(body, '', put, bad, c);
  else if (et === 0x0806 && body.length >= 28) {
    put('arp.op', u16(body, 6)); put('arp.sha', mac(body, 8)); put('arp.spa', ip4(body, 14)); put('arp.tha', mac(body, 18)); put('arp.tpa', ip4(body, 24));
  } else put('payload', `${body.length}:${digest(body)}`);
  return { iface: o.iface, fields, bad };
}

type Put = (k: string, v: string | number | boolean) => void;
const digest = (b: Uint8Array) => createHash('sha1').update(b).digest('hex').slice(0, 10);
// A NAT-chosen port's class: the configured SNAT range when there is one, else Linux masquerade's
// classes (nf_nat_l4proto_unique_tuple: 1-511, 600-1023, 1024-65535).
function portClass(p: number, cfg?: RouterConfig): string {
  const r = cfg?.snatPorts;
  if (r) return p >= r[0] && p <= r[1] ? `${r[0]}-${r[1]}` : `outside ${r[0]}-${r[1]}`;
  return p < 512 ? '1-511' : p < 1024 ? '512-1023' : '1024+';
}

function portField(put: Put, k: string, p: number, c: Ctx): void {
  const s = c.view.sym(p, c.literals.ports);
  put(k, s.startsWith('P') ? `${s}(${portClass(p, c.cfg)})` : s);
}

// `quoted`: inside an ICMP error, where the datagram may be cut short (checksums not judged).
function ipv4Fields(b: Uint8Array, pre: string, put: Put, bad: string[], c: Ctx, quoted = false): void {
  if (b.length < 20) { put(`${pre}ip`, `short:${b.length}`); return; }
  const hl = (b[0] & 15) * 4;
  const total = u16(b, 2);
  const fo = u16(b, 6);
  const id = u16(b, 4);
  put(`${pre}ip.src`, ip4(b, 12)); put(`${pre}ip.dst`, ip4(b, 16));
  put(`${pre}ip.ttl`, b[8]); put(`${pre}ip.tos`, b[1]); put(`${pre}ip.proto`, b[9]);
  put(`${pre}ip.id`, c.literals.ids.has(id) ? id : 'fresh');
  put(`${pre}ip.df`, (fo & 0x4000) !== 0); put(`${pre}ip.mf`, (fo & 0x2000) !== 0); put(`${pre}ip.off`, (fo & 0x1fff) * 8);
  put(`${pre}ip.len`, total); put(`${pre}ip.hl`, hl);
  if (hl > 20) put(`${pre}ip.options`, hex(b.subarray(20, Math.min(hl, b.length))));
  const hdrOk = hl >= 20 && hl <= b.length && sumsOk([b.subarray(0, hl)]);
  put(`${pre}ip.csum`, hdrOk ? 'ok' : 'bad');
  if (!hdrOk) bad.push(`${pre}ip header`);
  if (!quoted && total !== b.length) put(`${pre}ip.trailing`, b.length - total);
  const end = quoted ? b.length : Math.min(total, b.length);
  const l4 = b.subarray(hl, end);
  if ((fo & 0x1fff) !== 0) { put(`${pre}frag.payload`, `${l4.length}:${digest(l4)}`); return; }
  const whole = !quoted && !(fo & 0x2000);
  l4Fields(b[9], l4, b.subarray(12, 16), b.subarray(16, 20), pre, put, bad, c, whole, quoted ? 'quoted' : (fo & 0x2000) ? 'fragment' : 'whole');
}

function ipv6Fields(b: Uint8Array, pre: string, put: Put, bad: string[], c: Ctx, quoted = false): void {
  if (b.length < 40) { put(`${pre}ip6`, `short:${b.length}`); return; }
  const first = u32(b, 0);
  put(`${pre}ip6.src`, ip6(b, 8)); put(`${pre}ip6.dst`, ip6(b, 24));
  put(`${pre}ip6.hlim`, b[7]); put(`${pre}ip6.tc`, (first >>> 20) & 255); put(`${pre}ip6.flow`, first & 0xfffff);
  put(`${pre}ip6.plen`, u16(b, 4));
  // Extension headers: their types in order, and their bytes.
  let nh = b[6], p = 40, chain = `${nh}`, fragWhole = true, later = false;
  let dst = b.subarray(24, 40);
  const end = quoted ? b.length : Math.min(40 + u16(b, 4), b.length);
  while ([0, 43, 44, 60].includes(nh) && p + 8 <= end) {
    const len = nh === 44 ? 8 : (b[p + 1] + 1) * 8;
    const h = b.subarray(p, Math.min(p + len, end));
    put(`${pre}ip6.ext${nh}`, hex(h));
    if (nh === 44) { const fo = u16(b, p + 2); if (fo & 0xfff8) later = true; if (fo & 1) fragWhole = false; }
    if (nh === 43 && h.length >= 24 && h[3] > 0 && h[2] === 0) { const n = Math.floor((h.length - 8) / 16); dst = h.subarray(8 + (n - 1) * 16, 8 + n * 16); }
    nh = b[p];
    p += len;
    chain += `,${nh}`;
  }
  put(`${pre}ip6.chain`, chain);
  if (later) { put(`${pre}frag.payload`, digest(b.subarray(p, end))); return; }
  l4Fields(nh, b.subarray(p, end), b.subarray(8, 24), dst, pre, put, bad, c, !quoted && fragWhole, quoted ? 'quoted' : fragWhole ? 'whole' : 'fragment');
}

function l4Fields(proto: number, s: Uint8Array, src: Uint8Array, dst: Uint8Array, pre: string, put: Put, bad: string[], c: Ctx, judge: boolean, kind: string): void {
  const v6 = src.length === 16;
  const ck = (ok: boolean, what: string) => {
    if (!judge) return kind === 'fragment' ? 'fragment' : 'n/a';
    if (!ok) bad.push(`${pre}${what}`);
    return ok ? 'ok' : 'bad';
  };
  if (proto === 6 && s.length >= (kind === 'quoted' ? 8 : 20)) {
    portField(put, `${pre}tcp.sport`, u16(s, 0), c); portField(put, `${pre}tcp.dport`, u16(s, 2), c);
    put(`${pre}tcp.seq`, u32(s, 4));
    if (s.length < 20) return;
    const doff = (s[12] >> 4) * 4;
    put(`${pre}tcp.ack`, u32(s, 8)); put(`${pre}tcp.flags`, tcpFlags(s[13])); put(`${pre}tcp.win`, u16(s, 14)); put(`${pre}tcp.urp`, u16(s, 18));
    if (doff > 20) put(`${pre}tcp.opts`, hex(s.subarray(20, Math.min(doff, s.length))));
    if (kind !== 'quoted') put(`${pre}tcp.payload`, `${s.length - doff}:${digest(s.subarray(doff))}`);
    put(`${pre}tcp.csum`, ck(sumsOk([pseudo(src, dst, 6, s.length), s]), 'tcp checksum'));
  } else if (proto === 17 && s.length >= 8) {
    portField(put, `${pre}udp.sport`, u16(s, 0), c); portField(put, `${pre}udp.dport`, u16(s, 2), c);
    put(`${pre}udp.len`, u16(s, 4));
    if (kind !== 'quoted') put(`${pre}udp.payload`, `${s.length - 8}:${digest(s.subarray(8))}`);
    if (u16(s, 6) === 0) { put(`${pre}udp.csum`, 'zero'); if (v6 && judge) bad.push(`${pre}udp zero checksum on IPv6`); }
    else put(`${pre}udp.csum`, ck(u16(s, 4) === s.length && sumsOk([pseudo(src, dst, 17, s.length), s]), 'udp checksum'));
  } else if ((proto === 1 && !v6) || (proto === 58 && v6)) {
    const type = s[0];
    put(`${pre}icmp.type`, type); put(`${pre}icmp.code`, s[1]);
    const error = v6 ? type < 128 : [3, 4, 5, 11, 12].includes(type);
    const echo = v6 ? type === 128 || type === 129 : type === 0 || type === 8;
    if (echo) { portField(put, `${pre}icmp.id`, u16(s, 4), c); put(`${pre}icmp.seq`, u16(s, 6)); put(`${pre}icmp.payload`, `${s.length - 8}:${digest(s.subarray(8))}`); }
    else put(`${pre}icmp.rest`, hex(s.subarray(4, 8)));
    put(`${pre}icmp.csum`, ck(sumsOk(v6 ? [pseudo(src, dst, 58, s.length), s] : [s]), 'icmp checksum'));
    if (error && kind !== 'quoted') {
      const q = s.subarray(8);
      put(`${pre}icmp.qlen`, q.length);
      if (v6) ipv6Fields(q, `${pre}q.`, put, bad, c, true);
      else ipv4Fields(q, `${pre}q.`, put, bad, c, true);
    } else if (v6 && (type === 135 || type === 136) && s.length >= 24) {
      put(`${pre}nd.target`, ip6(s, 8));
      put(`${pre}nd.opts`, hex(s.subarray(24)) || 'none');
    } else if (!echo && kind !== 'quoted') put(`${pre}icmp.body`, `${s.length - 8}:${digest(s.subarray(8))}`);
  } else put(`${pre}l4`, `${proto}:${s.length}:${digest(s)}`);
}

function tcpFlags(x: number): string {
  let s = '';
  'FSRPAUEC'.split('').forEach((ch, i) => { if (x & (1 << i)) s += ch; });
  return s || '-';
}

// Fragments of one datagram in one step's output: reassembled, the whole L4 checksum judged.
function reassemblyCheck(outs: Out[], ds: Described[]): void {
  const groups = new Map<string, number[]>();
  outs.forEach((o, i) => {
    const f = o.frame;
    if (u16(f, 12) !== 0x0800) return;
    const fo = u16(f, 20);
    if (!(fo & 0x3fff & ~0x4000)) return;
    const key = `${o.iface}|${hex(f.subarray(26, 34))}|${u16(f, 18)}|${f[23]}`;
    groups.set(key, [...(groups.get(key) ?? []), i]);
  });
  for (const idx of groups.values()) {
    const parts = idx.map((i) => { const b = outs[i].frame.subarray(14); const hl = (b[0] & 15) * 4; return { off: (u16(b, 6) & 0x1fff) * 8, mf: (u16(b, 6) & 0x2000) !== 0, data: b.subarray(hl, u16(b, 2)) }; })
      .sort((x, y) => x.off - y.off);
    let at = 0;
    for (const p of parts) { if (p.off !== at) at = -1; if (at < 0) break; at += p.data.length; }
    const complete = at > 0 && !parts[parts.length - 1].mf;
    const first = outs[idx[0]].frame.subarray(14);
    let verdict = 'incomplete';
    if (complete) {
      const whole = new Uint8Array(at);
      for (const p of parts) whole.set(p.data, p.off);
      const proto = first[9];
      const src = first.subarray(12, 16), dst = first.subarray(16, 20);
      const ok = proto === 17 && u16(whole, 6) === 0 ? true : sumsOk(proto === 1 ? [whole] : [pseudo(src, dst, proto, whole.length), whole]);
      verdict = `${whole.length}:${ok ? 'ok' : 'bad'}`;
      if (!ok) ds[idx[0]].bad.push('reassembled datagram checksum');
    }
    ds[idx[0]].fields.push(['reassembled', verdict]);
  }
}

function collectLiterals(f: Uint8Array, lit: Ctx['literals']): void {
  const et = u16(f, 12);
  let proto = -1, l4 = f.subarray(0, 0);
  if (et === 0x0800 && f.length >= 34) {
    const b = f.subarray(14), hl = (b[0] & 15) * 4;
    lit.ids.add(u16(b, 4));
    if ((u16(b, 6) & 0x1fff) === 0) { proto = b[9]; l4 = b.subarray(hl); }
  } else if (et === 0x86dd && f.length >= 54) {
    const b = f.subarray(14);
    let nh = b[6], p = 40;
    while ([0, 43, 44, 60].includes(nh) && p + 8 <= b.length) { const len = nh === 44 ? 8 : (b[p + 1] + 1) * 8; nh = b[p]; p += len; }
    proto = nh; l4 = b.subarray(p);
  }
  if ((proto === 6 || proto === 17) && l4.length >= 4) { lit.ports.add(u16(l4, 0)); lit.ports.add(u16(l4, 2)); }
  if ((proto === 1 || proto === 58) && l4.length >= 8) {
    const t = l4[0];
    if ([0, 8, 128, 129].includes(t)) lit.ports.add(u16(l4, 4));
    // The quoted datagram of an error we send: its ports are ours too.
    else if (l4.length >= 8 + 28) {
      const q = l4.subarray(8);
      if (q[0] >> 4 === 4) { const hl = (q[0] & 15) * 4; lit.ids.add(u16(q, 4)); if (q.length >= hl + 4) { lit.ports.add(u16(q, hl)); lit.ports.add(u16(q, hl + 2)); } }
      else if (q[0] >> 4 === 6 && q.length >= 44) { lit.ports.add(u16(q, 40)); lit.ports.add(u16(q, 42)); }
    }
  }
}

/** The ports (or ICMP identifier, as sport) of a frame's IPv4/IPv6 datagram: for building replies. */
export function l4Ports(f: Uint8Array): { sport: number; dport: number } {
  const et = u16(f, 12);
  let p = 14 + (et === 0x0800 ? (f[14] & 15) * 4 : 40);
  const proto = et === 0x0800 ? f[23] : f[20];
  if (proto === 1 || proto === 58) p += 4;
  return { sport: u16(f, p), dport: u16(f, p + 2) };
}

// ---------------------------------------------------------------------------------------------
// Comparison

function compare(l: Described[], n: Described[]): string[] {
  const diffs: string[] = [];
  const ifaces = [...new Set([...l, ...n].map((d) => d.iface))];
  for (const ifc of ifaces) {
    const a = l.filter((d) => d.iface === ifc), b = n.filter((d) => d.iface === ifc);
    if (a.length !== b.length) {
      diffs.push(`${ifc}: linux sent ${a.length} frame(s), netplane ${b.length}\n linux:\n${a.map(show).join('\n') || '  (nothing)'}\n netplane:\n${b.map(show).join('\n') || '  (nothing)'}`);
      continue;
    }
    a.forEach((x, i) => {
      const ma = new Map(x.fields), mb = new Map(b[i].fields);
      for (const k of new Set([...ma.keys(), ...mb.keys()])) {
        if (ma.get(k) !== mb.get(k)) diffs.push(`${ifc}[${i}] ${k}: linux=${ma.get(k) ?? '(absent)'} netplane=${mb.get(k) ?? '(absent)'}`);
      }
    });
  }
  return diffs;
}

// ---------------------------------------------------------------------------------------------

const linkExists = (dev: string) => existsSync(`/sys/class/net/${dev}`);

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((ok) => s.bind(0, '127.0.0.1', ok));
  const p = s.address().port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return p;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
