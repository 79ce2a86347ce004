// The socket uplink: guests reach the world through this process's own sockets, without root, a TAP
// device or NAT rules on the host, as passt, slirp4netns and gvproxy do. A router interface in
// compartment 0 punts everything routed out of it (punt class 'uplink', docs/ABI.md "The punt area"):
// the dataplane has already done conntrack, the guest port's ACLs and TTL, so this only carries what
// left: UDP on a connected datagram socket per flow, TCP through the TCP engine (src/uplink/tcp.ts,
// the TcpEngine contract), ICMP echo on unprivileged ping sockets (./ping.ts). Answers come back as
// frames injected through a Pump on a port of the uplink's network with learning off, from a virtual
// peer MAC to the interface's MAC, with the real remote address as source (no masquerade: the host's
// sockets are the translation), so conntrack, NAT, ACLs and trace see them as the reply direction of
// the connection the guest opened.
//
// TCP and UDP to a guest network's gateway address that nothing else takes (punt class 'host') go to
// the host's loopback at the same port, as passt maps its gateway (hostLoopback: false refuses them,
// RST / ICMP port unreachable). Their answers are injected on the guest's own network, from the
// gateway's MAC and address, as the DHCP server's are.
//
// Host resources are what a guest can exhaust, so each guest address (the packets' source) has
// limits on open sockets per kind; what is not carried is a refusal counted under a named reason
// (stats()), never an exception. UDP flows close after the idle time of conntrack's UDP (30 s, 120 s
// once the remote answered), ping flows after 30 s.
//
// Host port forwards: TCP through connect() (the engine's SYN from the uplink's peer), UDP through
// udpForward(): each host peer that sends to a bound dgram socket gets a source port of its own on
// the peer address, its datagrams enter through the uplink interface to address:port (the port
// mapping's DNAT takes them on) and the endpoint's answers, punted back to peer:thatPort once
// conntrack has undone the DNAT, leave from the bound socket to that host peer. The table is bounded
// and flows end by the same idle times as UDP flows.
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { connect as netConnect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { Duplex } from 'node:stream';
import { Offload, type Switch, type SwitchPort, type PuntInfo } from '../switch.js';
import type { PuntClass } from '../abi.js';
import { NetplaneError } from '../abi.js';
import { parseMac, parseIPv4, formatIPv4, formatIPv6 } from '../frames.js';
import { Pump } from '../transports/pump.js';
import {
  parseFrame, checksumOk, udpPacket, echoReply, unreachable, resetFor, frame, fragment, port,
  PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, type IpPacket, type UNREACH,
} from './packet.js';
import { PingSocket, PingError } from './ping.js';
import { TcpEngine, LINK_HEADROOM, type TcpFlowKey, type TcpEngineOptions } from './tcp.js';

export type { TcpFlowKey, TcpEngineOptions };

// The TCP engine (./tcp.ts): the contract in COMMON13.md; a factory so tests can stand one in.
export interface TcpEngineLike {
  // partialChecksum: a TCP super-frame punted whole (its checksum field the pseudo-header sum only;
  // the default engine takes them, SocketUplink asks the switch for them only with it).
  input(packet: Uint8Array, partialChecksum?: boolean): void;
  connect?(key: TcpFlowKey, host: Duplex): void;
  flows(): unknown[];
  close(): void;
  counters?: object;
}
export type TcpEngineFactory = (opts: TcpEngineOptions) => TcpEngineLike;

export interface UplinkLimits { tcp: number; udp: number; ping: number }

export interface SocketUplinkOptions {
  interface: number;             // the router interface whose routes lead out (punt class 'uplink' set on it)
  host?: number[];               // guest interfaces whose gateway addresses reach the host's loopback (punt class 'host' set on them)
  hostLoopback?: boolean;        // carry 'host' punts to 127.0.0.1 / ::1 (default true); false: refuse them
  limits?: Partial<UplinkLimits>;// open host sockets per guest address (default 256 TCP, 256 UDP, 16 ping)
  udpTimeout?: number;           // ms a UDP flow lives idle (default 30000)
  udpRepliedTimeout?: number;    // ... once the remote answered (default 120000)
  pingTimeout?: number;          // ms a ping flow lives idle (default 30000)
  peerMac?: string;              // the virtual peer the answers come from (default 02:6e:70:ff:ff:fe)
  clock?: () => number;          // ms, for idle times (default Date.now)
  sweepInterval?: number;        // ms between idle sweeps (default 1000; 0: none, call sweep())
  tcp?: TcpEngineFactory | false; // the TCP engine (default ./tcp.ts); false: TCP is refused with RST (tcp_unavailable)
  tcpOptions?: Partial<Omit<TcpEngineOptions, 'send' | 'open' | 'now'>>;  // for the default engine
  services?: Record<number, (stream: Duplex, key: TcpFlowKey) => void>;  // gateway TCP ports served in this process instead of the loopback (53: DnsServer.handleStream)
  superSegments?: boolean;       // TCP to the guests in super-segments the dataplane segments (default true)
  log?: (message: string) => void;
}

export const DEFAULT_LIMITS: UplinkLimits = { tcp: 256, udp: 256, ping: 16 };

export const UPLINK_COUNTERS = [
  'frames', 'injected', 'injection_refused', 'switch_frames_ignored',
  'udp_flows', 'udp_closed', 'udp_tx', 'udp_rx', 'udp_tx_bytes', 'udp_rx_bytes',
  'tcp_segments', 'tcp_opened', 'tcp_open_failed',
  'ping_flows', 'ping_closed', 'ping_tx', 'ping_rx',
  'icmp_errors_sent', 'icmp_from_guest',
  'forward_udp_flows', 'forward_udp_closed', 'forward_udp_rx', 'forward_udp_tx', 'forward_udp_rx_bytes', 'forward_udp_tx_bytes',
] as const;
export const UPLINK_REFUSALS = [
  'not_ip', 'truncated', 'fragment', 'ipv6_extension', 'bad_checksum', 'unsupported_protocol', 'icmp_not_echo',
  'udp_limit', 'tcp_limit', 'ping_limit', 'udp_queue_full', 'udp_socket_error', 'ping_not_permitted',
  'ping_unavailable', 'ping_send_failed', 'tcp_unavailable', 'host_loopback_off', 'host_unknown_guest',
  'forward_udp_limit', 'forward_udp_unknown', 'forward_udp_send_failed',
] as const;
export type UplinkRefusal = typeof UPLINK_REFUSALS[number];

export interface UplinkFlow {
  protocol: 'tcp' | 'udp' | 'icmp';
  via: 'uplink' | 'host' | 'forward';   // 'forward': a host port forward (guest: the peer's end, remote: the mapped port)
  guest: string;                 // the guest's end, address:port ([v6]:port), or address#id for echo
  remote: string;                // the remote end as the guest addressed it
  local?: string;                // the host socket's local end
  peer?: string;                 // the host socket's remote end (the loopback for 'host')
  idle?: number;                 // ms since the last packet
  replied?: boolean;
  txBytes?: number; rxBytes?: number;
  tcp?: unknown;                 // the TCP engine's own record
}

const PEER_MAC = '02:6e:70:ff:ff:fe';
const UDP_QUEUE = 32;            // datagrams held while a new flow's socket connects
const QUOTE = 576;               // bytes of the last datagram kept for an ICMP error's quote

const FORWARD_PORTS = [49152, 65535];   // the source ports host peers of UDP forwards get on the peer address
const FORWARD_FLOWS = 256;               // host peers per UDP forward by default

const hostPort = (a: string, p: number): string => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
const attached = new WeakMap<Switch, SocketUplink>();

// An answer to a guest. `headroom`: LINK_HEADROOM bytes before ip in its buffer may be written (the
// TCP engine's packets), so the frame is made there, without a copy. `mss`: a TCP super-segment with a
// partial checksum (TcpEngineOptions.send), injected with a vnet header.
interface Inject { (ip: Uint8Array, headroom?: boolean, mss?: number): void }

// Offload capabilities of the injection ports (sw.setOffload; docs/ABI.md): partial checksums and
// TCP segmentation, v4 and v6.
const INJECT_OFFLOADS = Offload.CSUM | Offload.TSO4 | Offload.TSO6;
const VNET_NEEDS_CSUM = 1, GSO_TCPV4 = 1, GSO_TCPV6 = 4;
interface Endpoint { tcp: number; udp: number; ping: number }

interface UdpFlow {
  key: string; via: 'uplink' | 'host'; v6: boolean;
  guest: Uint8Array; guestText: string; sport: number;
  remote: Uint8Array; remoteText: string; dport: number;
  target: string; socket: DgramSocket; ready: boolean; queue: Buffer[];
  lastSeen: number; replied: boolean; last: Uint8Array; inject: Inject;
  txBytes: number; rxBytes: number;
}
export interface UdpForwardOptions {
  socket: DgramSocket;           // bound by the caller (udp4): what host peers send to it is carried, answers leave from it
  address: string;               // the uplink interface's address: the datagrams' destination...
  port: number;                  // ... and port (the port mapping's external port, which DNATs them to the endpoint)
  peer: string;                  // their source address: one the router sends back out of the uplink interface, no guest's
  maxFlows?: number;             // host peers at once (default 256); more are refused (forward_udp_limit)
}
export interface UdpForward { close(): void }

interface Forward { o: UdpForwardOptions; address: Uint8Array; peer: Uint8Array; flows: Map<string, ForwardFlow>; listener: (m: Buffer, r: { address: string; port: number }) => void }
interface ForwardFlow { fwd: Forward; host: string; hostPort: number; sport: number; lastSeen: number; replied: boolean; txBytes: number; rxBytes: number }
interface PingFlow {
  key: string; v6: boolean; guest: Uint8Array; guestText: string; remote: Uint8Array; remoteText: string;
  id: number; socket: PingSocket; lastSeen: number; replied: boolean; inject: Inject; last: Uint8Array;
}

export class SocketUplink {
  private readonly counters = Object.fromEntries(UPLINK_COUNTERS.map((c) => [c, 0])) as Record<typeof UPLINK_COUNTERS[number], number>;
  private readonly refusals = Object.fromEntries(UPLINK_REFUSALS.map((c) => [c, 0])) as Record<UplinkRefusal, number>;
  private readonly udp = new Map<string, UdpFlow>();
  private readonly ping = new Map<string, PingFlow>();
  private readonly forwards = new Set<Forward>();
  private readonly forwardPeers = new Set<string>();                  // every forward's peer address, kept after it closes
  private readonly forwardPorts = new Map<number, ForwardFlow>();     // source port on a forward's peer -> its flow
  private forwardNext = FORWARD_PORTS[0];
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly guests = new Map<string, { inject: Inject }>();   // guest address -> its 'host' injection
  private readonly hostPorts = new Map<number, SwitchPort>();         // guest interface -> injection port
  private readonly limits: UplinkLimits;
  private readonly pump: Pump;
  private readonly port: SwitchPort;
  private readonly peerMac: Uint8Array;
  private readonly ifaceMac: Uint8Array;
  private readonly clock: () => number;
  private readonly log: (m: string) => void;
  private readonly tcpUplink?: TcpEngineLike;
  private readonly tcpHost?: TcpEngineLike;
  private readonly timer?: ReturnType<typeof setInterval>;
  private readonly added: Array<[number, PuntClass]> = [];
  private readonly said = new Set<string>();
  private readonly reads = new ReadPool();
  private readonly offload: boolean;                               // the injection ports take vnet headers (superSegments)
  private readonly wholePunts: boolean;                            // the switch punts TCP super-frames whole (setPuntOffload)
  private readonly vnet = new Uint8Array(12);
  private closed = false;

  // Attaches a socket uplink to switch `sw`'s router interface `o.interface` (one per switch).
  static attach(sw: Switch, o: SocketUplinkOptions): SocketUplink {
    if (attached.has(sw)) throw new NetplaneError('interface', 'this switch already has a socket uplink');
    const u = new SocketUplink(sw, o);
    attached.set(sw, u);
    return u;
  }

  private constructor(readonly sw: Switch, readonly o: SocketUplinkOptions) {
    const f = sw.router.interfaces.get(o.interface);
    if (!f) throw new NetplaneError('interface', `no interface ${o.interface}`);
    for (const h of o.host ?? []) if (!sw.router.interfaces.has(h)) throw new NetplaneError('host', `no interface ${h}`);
    this.limits = { ...DEFAULT_LIMITS, ...(o.limits ?? {}) };
    for (const k of ['tcp', 'udp', 'ping'] as const) {
      const v = this.limits[k];
      if (!Number.isInteger(v) || v < 0 || v > 65535) throw new NetplaneError(`limits.${k}`, `expected an integer from 0 to 65535, got ${v}`);
    }
    for (const k of ['udpTimeout', 'udpRepliedTimeout', 'pingTimeout', 'sweepInterval'] as const) {
      const v = o[k];
      if (v !== undefined && (!Number.isFinite(v) || v < 0)) throw new NetplaneError(k, `expected a number of ms, got ${v}`);
    }
    try { this.peerMac = parseMac(o.peerMac ?? PEER_MAC); } catch (e) { throw new NetplaneError('peerMac', (e as Error).message); }
    this.ifaceMac = parseMac(f.mac);
    this.clock = o.clock ?? Date.now;
    this.log = o.log ?? ((m) => console.error(m));
    this.pump = Pump.of(sw);
    this.port = sw.addPort({ network: f.network, vlan: f.vlan, learning: false });
    // Where the switch takes super-frames, the TCP engine builds segments of up to 64 KiB with only
    // the pseudo-header checksum: conntrack decides once for all of them and the dataplane segments
    // and checksums them for the guest's port (or passes them whole to a port that takes them).
    this.offload = o.superSegments !== false;
    if (this.offload) sw.setOffload(this.port.id, INJECT_OFFLOADS);
    // The other way, a guest's TCP super-frames come whole (with the default engine, which takes a
    // partial checksum): its payload goes to the host socket in one piece, not as 45 segments.
    this.wholePunts = this.offload && o.tcp === undefined;
    if (this.wholePunts) sw.setPuntOffload(Offload.TSO4 | Offload.TSO6);
    // What the switch floods to the injection port (the router's own frames, other guests' broadcasts
    // on the uplink network) is not the host's: counted and dropped.
    this.port.onFrame(() => { this.counters.switch_frames_ignored++; });
    this.addPunt(o.interface, 'uplink');
    for (const h of o.host ?? []) this.addPunt(h, 'host');
    const tcp = o.tcp === undefined ? (x: TcpEngineOptions) => new TcpEngine({ ...o.tcpOptions, ...x }) : o.tcp;
    if (tcp) {
      const now = () => this.clock();
      const superSegments = this.offload ? Math.min(65535, sw.dp.rxBuffer.length) - LINK_HEADROOM : 0;
      const release = (c: Buffer) => this.reads.release(c);
      // Our MSS from the smallest guest interface's MTU (see injectUplink: the MTU of the route to each
      // guest would be exact, the smallest is never too large): a guest on a 65520-byte link, as
      // passt and QEMU users run them, gets 64 KiB segments, a 1500-byte one 1460 as before.
      const pathMtu = () => this.guestMtu();
      this.tcpUplink = tcp({ superSegments, release, pathMtu, send: (p, mss) => this.injectUplink(p, true, mss), open: (k) => this.openTcp(k, false), now });
      this.tcpHost = tcp({ superSegments, release, pathMtu, send: (p, mss) => this.injectHost(p, true, mss), open: (k) => this.openTcp(k, true), now });
    }
    sw.onPunt('uplink', (fr, info) => this.punted(fr, info));
    sw.onPunt('host', (fr, info) => this.punted(fr, info));
    const every = o.sweepInterval ?? 1000;
    if (every > 0) {
      this.timer = setInterval(() => this.sweep(), every);
      this.timer.unref?.();
    }
  }

  private addPunt(id: number, c: PuntClass): void {
    const f = this.sw.router.interfaces.get(id)!;
    if (f.punt.includes(c)) return;
    this.sw.router.setPunt(id, [...f.punt, c]);
    this.added.push([id, c]);
  }

  // Counters by name, refusals as refused_<reason>.
  stats(): Record<string, number> {
    const s: Record<string, number> = { ...this.counters };
    for (const [k, v] of Object.entries(this.refusals)) s[`refused_${k}`] = v;
    s.udp_open = this.udp.size;
    s.ping_open = this.ping.size;
    s.forward_udp_open = this.forwardPorts.size;
    // The TCP engines' own counters, both added up: tcp_<name> and tcp_dropped_<reason>.
    for (const e of [this.tcpUplink, this.tcpHost]) {
      for (const [k, v] of Object.entries(e?.counters ?? {})) {
        const name = `tcp_${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
        if (typeof v === 'number') s[name] = (s[name] ?? 0) + v;
        else if (v && typeof v === 'object') for (const [r, n] of Object.entries(v)) if (typeof n === 'number') s[`${name}_${r}`] = (s[`${name}_${r}`] ?? 0) + n;
      }
    }
    return s;
  }

  // Every flow the uplink carries, with its host socket, for `netplane ct`.
  flows(): UplinkFlow[] {
    const now = this.clock();
    const out: UplinkFlow[] = [];
    for (const f of this.udp.values()) {
      let local: string | undefined, peer: string | undefined;
      try { const a = f.socket.address(); local = hostPort(a.address, a.port); } catch { /* not bound yet */ }
      try { const a = f.socket.remoteAddress(); peer = hostPort(a.address, a.port); } catch { /* not connected yet */ }
      out.push({ protocol: 'udp', via: f.via, guest: hostPort(f.guestText, f.sport), remote: hostPort(f.remoteText, f.dport), local, peer,
        idle: now - f.lastSeen, replied: f.replied, txBytes: f.txBytes, rxBytes: f.rxBytes });
    }
    for (const f of this.forwardPorts.values()) {
      let local: string | undefined;
      try { const a = f.fwd.o.socket.address(); local = hostPort(a.address, a.port); } catch { /* closed */ }
      out.push({ protocol: 'udp', via: 'forward', guest: hostPort(f.fwd.o.peer, f.sport), remote: hostPort(f.fwd.o.address, f.fwd.o.port), local,
        peer: hostPort(f.host, f.hostPort), idle: now - f.lastSeen, replied: f.replied, txBytes: f.txBytes, rxBytes: f.rxBytes });
    }
    for (const f of this.ping.values()) {
      out.push({ protocol: 'icmp', via: 'uplink', guest: `${f.guestText}#${f.id}`, remote: f.remoteText, peer: f.remoteText, idle: now - f.lastSeen, replied: f.replied });
    }
    for (const [e, via] of [[this.tcpUplink, 'uplink'], [this.tcpHost, 'host']] as const) {
      for (const t of e?.flows() ?? []) {
        const r = t as { key?: TcpFlowKey; host?: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number }; toHost?: number; toGuest?: number };
        const k = r.key, h = r.host;
        out.push({ protocol: 'tcp', via, guest: k ? hostPort(k.src, k.sport) : '', remote: k ? hostPort(k.dst, k.dport) : '',
          local: h?.localAddress !== undefined ? hostPort(h.localAddress, h.localPort ?? 0) : undefined,
          peer: h?.remoteAddress !== undefined ? hostPort(h.remoteAddress, h.remotePort ?? 0) : undefined,
          txBytes: r.toHost, rxBytes: r.toGuest, tcp: t });
      }
    }
    return out;
  }

  // A host-initiated connection (a host port forward): the engine sends the guest a SYN from
  // key.dst:dport to key.src:sport through the uplink interface (so the router's port-mapping DNAT
  // takes it to the endpoint) and splices the accepted connection to `host`. Without an engine, or
  // closed, `host` is destroyed.
  connect(key: TcpFlowKey, host: Duplex): void {
    if (this.closed || !this.tcpUplink?.connect) { host.destroy(); return; }
    this.tcpUplink.connect(key, host);
  }

  // A UDP host port forward on `o.socket` (see the top of this file). close() ends its flows and
  // stops listening to the socket; the socket stays the caller's.
  udpForward(o: UdpForwardOptions): UdpForward {
    if (this.closed) throw new NetplaneError('uplink', 'closed');
    let address: Uint8Array, peer: Uint8Array;
    try { address = parseIPv4(o.address); } catch (e) { throw new NetplaneError('address', (e as Error).message); }
    try { peer = parseIPv4(o.peer); } catch (e) { throw new NetplaneError('peer', (e as Error).message); }
    if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new NetplaneError('port', `expected an integer from 1 to 65535, got ${o.port}`);
    const max = o.maxFlows ?? FORWARD_FLOWS;
    if (!Number.isInteger(max) || max < 0 || max > 16384) throw new NetplaneError('maxFlows', `expected an integer from 0 to 16384, got ${max}`);
    const fwd: Forward = { o, address, peer, flows: new Map(), listener: (m, r) => this.forwardIn(fwd, m, r.address, r.port) };
    this.forwards.add(fwd);
    this.forwardPeers.add(o.peer);
    o.socket.on('message', fwd.listener);
    return { close: () => this.closeForward(fwd) };
  }

  // Closes the flows idle past their time.
  sweep(): void {
    const now = this.clock();
    const udpIdle = this.o.udpTimeout ?? 30_000, udpReplied = this.o.udpRepliedTimeout ?? 120_000;
    for (const f of this.udp.values()) if (now - f.lastSeen >= (f.replied ? udpReplied : udpIdle)) this.closeUdp(f);
    const pingIdle = this.o.pingTimeout ?? 30_000;
    for (const f of this.ping.values()) if (now - f.lastSeen >= pingIdle) this.closePing(f);
    for (const f of this.forwardPorts.values()) if (now - f.lastSeen >= (f.replied ? udpReplied : udpIdle)) this.closeForwardFlow(f);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const f of this.udp.values()) this.closeUdp(f);
    for (const f of this.ping.values()) this.closePing(f);
    for (const f of [...this.forwards]) this.closeForward(f);
    this.tcpUplink?.close();
    this.tcpHost?.close();
    this.sw.onPunt('uplink', undefined);
    this.sw.onPunt('host', undefined);
    if (this.wholePunts) this.sw.setPuntOffload(0);
    for (const [id, c] of this.added) {
      const f = this.sw.router.interfaces.get(id);
      if (f) this.sw.router.setPunt(id, f.punt.filter((x) => x !== c));
    }
    this.port.onFrame(undefined);
    if (this.sw.ports.get(this.port.id) === this.port) this.sw.removePort(this.port.id);
    for (const p of this.hostPorts.values()) if (this.sw.ports.get(p.id) === p) this.sw.removePort(p.id);
    attached.delete(this.sw);
  }

  // TCP a gateway service punted under another reason (DNS over TCP: DnsServer.attach({ tcp })) is
  // carried like 'host' TCP, so that `services` (or the loopback) answers it.
  readonly hostTcp = (fr: Uint8Array, info: PuntInfo): void => this.punted(fr, { ...info, reason: 'host' });

  // ---- from the dataplane ----

  private punted(fr: Uint8Array, info: PuntInfo): void {
    if (this.closed) return;
    this.counters.frames++;
    const p = parseFrame(fr);
    if (typeof p === 'string') return this.refuse(p);
    const via = info.reason === 'host' ? 'host' : 'uplink';
    if (via === 'host') this.noteGuest(p, fr, info.interface);
    if (p.protocol === PROTO_TCP) return this.tcp(p, via, info.vnet !== undefined);
    if (p.protocol !== PROTO_UDP && p.protocol !== PROTO_ICMP && p.protocol !== PROTO_ICMPV6) return this.refuse('unsupported_protocol');
    if (!checksumOk(p)) return this.refuse('bad_checksum');
    if (p.protocol === PROTO_UDP) return this.udpIn(p, via);
    const type = p.l4[0];
    if (type === (p.v6 ? 128 : 8) && p.l4.length >= 8 && via === 'uplink') return this.pingIn(p);
    // An error the guest sends about an answer (port unreachable for a late reply): the socket is not
    // told, the flow ends by its idle time.
    if (p.v6 ? type < 128 : type === 3 || type === 11 || type === 12) { this.counters.icmp_from_guest++; return; }
    this.refuse('icmp_not_echo');
  }

  private refuse(r: UplinkRefusal): void { this.refusals[r]++; }

  private once(key: string, message: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.log(message);
  }

  // ---- to the guest ----

  // An answer through the router. IPv4 larger than the guest's MTU is left to the router to fragment
  // (we send it without DF); IPv6 is fragmented here to the smallest MTU of the guest interfaces, as
  // its source must (routers send Packet Too Big instead, which would only come back to us).
  // A super-segment (mss) is never fragmented: the dataplane segments it.
  private injectUplink(ip: Uint8Array, headroom = false, mss?: number): void {
    if (this.closed) return;
    if (mss === undefined && ip[0] >> 4 === 6 && ip.length > 1280) {
      for (const p of fragment(ip, this.guestMtu())) this.put(this.port, frame(this.ifaceMac, this.peerMac, p));
      return;
    }
    this.put(this.port, headroom ? inPlace(this.ifaceMac, this.peerMac, ip) : frame(this.ifaceMac, this.peerMac, ip), mss);
  }

  private put(port: SwitchPort, f: Uint8Array, mss?: number): void {
    if (this.offload ? this.pump.receive(port, f, this.vnetFor(f, mss)) : this.pump.receive(port, f)) this.counters.injected++;
    else this.counters.injection_refused++;
  }

  // The vnet header (virtio_net_hdr_v1, little-endian) of an injected frame: zeros for a complete
  // one; for a TCP segment of the engine's (IP without options, mss given), NEEDS_CSUM from the TCP
  // header, and TCPV4/TCPV6 at gso_size mss when it carries more than one segment.
  private vnetFor(f: Uint8Array, mss?: number): Uint8Array {
    const v = this.vnet;
    v.fill(0);
    if (mss === undefined) return v;
    const v6 = f[14] >> 4 === 6, l4 = 14 + (v6 ? 40 : 20);
    const hdrLen = l4 + (f[l4 + 12] >> 4) * 4;
    v[0] = VNET_NEEDS_CSUM;
    if (f.length - hdrLen > mss) {
      v[1] = v6 ? GSO_TCPV6 : GSO_TCPV4;
      v[2] = hdrLen & 255; v[3] = hdrLen >> 8;
      v[4] = mss & 255; v[5] = mss >> 8;
    }
    v[6] = l4 & 255; v[7] = l4 >> 8;
    v[8] = 16;
    return v;
  }

  private guestMtu(): number {
    let m = 65535;
    for (const [id, f] of this.sw.router.interfaces) if (id !== this.o.interface && f.mtu < m) m = f.mtu;
    return m;
  }

  // A 'host' answer: to the guest (the packet's destination) on its own network, from its gateway.
  private injectHost(ip: Uint8Array, headroom = false, mss?: number): void {
    const dst = ip[0] >> 4 === 6 ? formatIPv6(ip, 24) : formatIPv4(ip, 16);
    const g = this.guests.get(dst);
    if (!g) return this.refuse('host_unknown_guest');
    g.inject(ip, headroom, mss);
  }

  private noteGuest(p: IpPacket, fr: Uint8Array, iface: number): void {
    if (this.guests.has(p.srcText)) return;
    const f = this.sw.router.interfaces.get(iface);
    if (!f) return;
    let port = this.hostPorts.get(iface);
    if (!port) {
      port = this.sw.addPort({ network: f.network, vlan: f.vlan, learning: false });
      if (this.offload) this.sw.setOffload(port.id, INJECT_OFFLOADS);
      port.onFrame(() => { this.counters.switch_frames_ignored++; });
      this.hostPorts.set(iface, port);
    }
    const guestMac = fr.slice(6, 12), gwMac = parseMac(f.mac), sp = port;
    // Straight to the guest on its network, no router hop: fragmented here to the interface's MTU
    // (a super-segment is not: the dataplane segments it).
    this.guests.set(p.srcText, {
      inject: (ip, headroom, mss) => {
        if (this.closed) return;
        const mtu = this.sw.router.interfaces.get(iface)?.mtu ?? 1500;
        if (mss !== undefined || ip.length <= mtu) {
          this.put(sp, headroom ? inPlace(guestMac, gwMac, ip) : frame(guestMac, gwMac, ip), mss);
          return;
        }
        for (const piece of fragment(ip, mtu)) this.put(sp, frame(guestMac, gwMac, piece));
      },
    });
  }

  private endpoint(guest: string): Endpoint {
    let e = this.endpoints.get(guest);
    if (!e) this.endpoints.set(guest, (e = { tcp: 0, udp: 0, ping: 0 }));
    return e;
  }
  private release(guest: string, kind: keyof Endpoint): void {
    const e = this.endpoints.get(guest);
    if (!e) return;
    e[kind]--;
    if (e.tcp + e.udp + e.ping <= 0) this.endpoints.delete(guest);
  }

  private errorToGuest(inject: Inject, from: Uint8Array, quoted: Uint8Array, kind: keyof typeof UNREACH): void {
    this.counters.icmp_errors_sent++;
    inject(unreachable(from, quoted, kind));
  }

  // ---- UDP ----

  private udpIn(p: IpPacket, via: 'uplink' | 'host'): void {
    if (p.l4.length < 8) return this.refuse('truncated');
    const sport = port(p.l4, 0), dport = port(p.l4, 2);
    if (via === 'uplink' && this.forwardPeers.has(p.dstText)) return this.forwardOut(p, sport, dport);
    const key = `${p.srcText}|${sport}|${p.dstText}|${dport}`;
    let f = this.udp.get(key);
    const now = this.clock();
    if (!f) {
      const inject: Inject = via === 'host' ? (ip) => this.injectHost(ip) : (ip) => this.injectUplink(ip);
      if (via === 'host' && this.o.hostLoopback === false) {
        this.refuse('host_loopback_off');
        return this.errorToGuest(inject, p.dst.slice(), p.ip.slice(0, QUOTE), 'port');
      }
      const e = this.endpoint(p.srcText);
      if (e.udp >= this.limits.udp) return this.refuse('udp_limit');
      e.udp++;
      f = this.openUdp(key, p, sport, dport, via, inject, now);
    }
    f.lastSeen = now;
    f.last = p.ip.slice(0, QUOTE);
    const payload = Buffer.from(p.l4.subarray(8, Math.max(8, Math.min(p.l4.length, port(p.l4, 4)))));
    f.txBytes += payload.length;
    this.counters.udp_tx++;
    this.counters.udp_tx_bytes += payload.length;
    if (f.ready) f.socket.send(payload);
    else if (f.queue.length < UDP_QUEUE) f.queue.push(payload);
    else this.refuse('udp_queue_full');
  }

  private openUdp(key: string, p: IpPacket, sport: number, dport: number, via: 'uplink' | 'host', inject: Inject, now: number): UdpFlow {
    const socket = createSocket({ type: p.v6 ? 'udp6' : 'udp4' });
    const target = via === 'host' ? (p.v6 ? '::1' : '127.0.0.1') : p.dstText;
    const f: UdpFlow = {
      key, via, v6: p.v6, guest: p.src.slice(), guestText: p.srcText, sport, remote: p.dst.slice(), remoteText: p.dstText, dport,
      target, socket, ready: false, queue: [], lastSeen: now, replied: false, last: p.ip.slice(0, QUOTE), inject, txBytes: 0, rxBytes: 0,
    };
    this.udp.set(key, f);
    this.counters.udp_flows++;
    socket.on('message', (msg) => {
      if (this.udp.get(key) !== f) return;
      f.replied = true;
      f.lastSeen = this.clock();
      f.rxBytes += msg.length;
      this.counters.udp_rx++;
      this.counters.udp_rx_bytes += msg.length;
      inject(udpPacket(f.remote, f.dport, f.guest, f.sport, msg));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.udp.get(key) !== f) return;
      // The kernel reports an ICMP error for a connected socket on its next receive: port unreachable
      // as ECONNREFUSED, the others as EHOSTUNREACH / ENETUNREACH. The guest gets the same error.
      const kind = err.code === 'ECONNREFUSED' ? 'port' : err.code === 'EHOSTUNREACH' ? 'host' : err.code === 'ENETUNREACH' ? 'net' : undefined;
      if (kind) this.errorToGuest(inject, f.remote, f.last, kind);
      else {
        this.refuse('udp_socket_error');
        this.once(`udp ${err.code}`, `netplane uplink: UDP socket to ${hostPort(target, dport)}: ${err.message}`);
      }
      if (!f.ready) this.closeUdp(f);
    });
    socket.connect(dport, target, () => {
      if (this.udp.get(key) !== f) return;
      f.ready = true;
      for (const d of f.queue.splice(0)) socket.send(d);
    });
    return f;
  }

  private closeUdp(f: UdpFlow): void {
    if (this.udp.get(f.key) !== f) return;
    this.udp.delete(f.key);
    this.release(f.guestText, 'udp');
    this.counters.udp_closed++;
    try { f.socket.close(); } catch { /* already closed */ }
  }

  // ---- UDP host port forwards ----

  // A datagram from host peer `host`:`hostPort` to the forward's socket: into the uplink interface
  // from the peer address and the port this host peer has, to address:port.
  private forwardIn(fwd: Forward, msg: Buffer, host: string, hostPort: number): void {
    if (this.closed || !this.forwards.has(fwd)) return;
    const key = `${host}|${hostPort}`;
    let f = fwd.flows.get(key);
    const now = this.clock();
    if (!f) {
      const sport = fwd.flows.size < (fwd.o.maxFlows ?? FORWARD_FLOWS) ? this.forwardPort() : undefined;
      if (sport === undefined) return this.refuse('forward_udp_limit');
      f = { fwd, host, hostPort, sport, lastSeen: now, replied: false, txBytes: 0, rxBytes: 0 };
      fwd.flows.set(key, f);
      this.forwardPorts.set(sport, f);
      this.counters.forward_udp_flows++;
    }
    f.lastSeen = now;
    f.rxBytes += msg.length;
    this.counters.forward_udp_rx++;
    this.counters.forward_udp_rx_bytes += msg.length;
    this.injectUplink(udpPacket(fwd.peer, f.sport, fwd.address, fwd.o.port, msg));
  }

  // The next source port no forward flow holds, after the last one given (undefined: all taken).
  private forwardPort(): number | undefined {
    const [lo, hi] = FORWARD_PORTS;
    for (let i = 0; i <= hi - lo; i++) {
      const p = this.forwardNext;
      this.forwardNext = p >= hi ? lo : p + 1;
      if (!this.forwardPorts.has(p)) return p;
    }
    return undefined;
  }

  // A guest's datagram routed out to a forward's peer address: an endpoint's answer (conntrack has
  // undone the DNAT: from address:port to peer:the host peer's port) leaves from the forward's socket
  // to its host peer. Nothing to the peer address is egress: what no flow has is refused.
  private forwardOut(p: IpPacket, sport: number, dport: number): void {
    const f = this.forwardPorts.get(dport);
    if (!f || f.fwd.o.peer !== p.dstText || f.fwd.o.address !== p.srcText || f.fwd.o.port !== sport) return this.refuse('forward_udp_unknown');
    const payload = p.l4.subarray(8, Math.max(8, Math.min(p.l4.length, port(p.l4, 4))));
    f.replied = true;
    f.lastSeen = this.clock();
    f.txBytes += payload.length;
    this.counters.forward_udp_tx++;
    this.counters.forward_udp_tx_bytes += payload.length;
    try {
      f.fwd.o.socket.send(Buffer.from(payload), f.hostPort, f.host, (err) => { if (err) this.refuse('forward_udp_send_failed'); });
    } catch { this.refuse('forward_udp_send_failed'); }
  }

  private closeForwardFlow(f: ForwardFlow): void {
    if (this.forwardPorts.get(f.sport) !== f) return;
    this.forwardPorts.delete(f.sport);
    f.fwd.flows.delete(`${f.host}|${f.hostPort}`);
    this.counters.forward_udp_closed++;
  }

  private closeForward(fwd: Forward): void {
    if (!this.forwards.delete(fwd)) return;
    fwd.o.socket.off('message', fwd.listener);
    for (const f of [...fwd.flows.values()]) this.closeForwardFlow(f);
  }

  // ---- ICMP echo ----

  private pingIn(p: IpPacket): void {
    const id = port(p.l4, 4);
    const key = `${p.srcText}|${p.dstText}|${id}`;
    let f = this.ping.get(key);
    const inject: Inject = (ip) => this.injectUplink(ip);
    if (!f) {
      const e = this.endpoint(p.srcText);
      if (e.ping >= this.limits.ping) return this.refuse('ping_limit');
      let socket: PingSocket;
      const box: { f?: PingFlow } = {};
      try {
        socket = new PingSocket(p.v6, (msg) => this.pingReply(box.f!, msg));
      } catch (err) {
        const code = err instanceof PingError ? err.code : 'EINVAL';
        if (code === 'ENATIVE') {
          this.refuse('ping_unavailable');
          this.once('ping native', `netplane uplink: ICMP echo is not carried: ${(err as Error).message}`);
        } else {
          this.refuse('ping_not_permitted');
          let range = '?';
          try { range = readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8').trim().replace(/\s+/, ' '); } catch { /* not Linux */ }
          this.once('ping denied', `netplane uplink: ICMP echo is not carried: ping sockets are not permitted (${code}); ` +
            `sysctl net.ipv4.ping_group_range is "${range}" and must include group ${process.getgid?.() ?? '?'} ` +
            `(e.g. sysctl -w net.ipv4.ping_group_range="0 2147483647")`);
        }
        return this.errorToGuest(inject, p.dst.slice(), p.ip.slice(0, QUOTE), 'admin');
      }
      e.ping++;
      f = box.f = { key, v6: p.v6, guest: p.src.slice(), guestText: p.srcText, remote: p.dst.slice(), remoteText: p.dstText, id, socket, lastSeen: 0, replied: false, inject, last: p.ip.slice(0, QUOTE) };
      this.ping.set(key, f);
      this.counters.ping_flows++;
    }
    f.lastSeen = this.clock();
    f.last = p.ip.slice(0, QUOTE);
    const r = f.socket.send(p.dstText, p.l4.slice());
    if (typeof r === 'string') {
      const kind = r === 'ENETUNREACH' ? 'net' : r === 'EHOSTUNREACH' ? 'host' : undefined;
      if (kind) return this.errorToGuest(inject, p.dst.slice(), f.last, kind);
      this.refuse('ping_send_failed');
      return this.once(`ping ${r}`, `netplane uplink: ICMP echo to ${p.dstText}: ${r}`);
    }
    this.counters.ping_tx++;
  }

  private pingReply(f: PingFlow | undefined, msg: Uint8Array): void {
    if (!f || this.ping.get(f.key) !== f || msg.length < 8 || msg[0] !== (f.v6 ? 129 : 0)) return;
    f.replied = true;
    f.lastSeen = this.clock();
    this.counters.ping_rx++;
    f.inject(echoReply(f.remote, f.guest, msg, f.id));
  }

  private closePing(f: PingFlow): void {
    if (this.ping.get(f.key) !== f) return;
    this.ping.delete(f.key);
    this.release(f.guestText, 'ping');
    this.counters.ping_closed++;
    f.socket.close();
  }

  // ---- TCP ----

  private tcp(p: IpPacket, via: 'uplink' | 'host', partialChecksum = false): void {
    this.counters.tcp_segments++;
    const engine = via === 'host' ? this.tcpHost : this.tcpUplink;
    if (!engine) {
      this.refuse('tcp_unavailable');
      const rst = resetFor(p);
      if (rst) (via === 'host' ? this.injectHost(rst) : this.injectUplink(rst));
      return;
    }
    engine.input(p.ip, partialChecksum);   // the engine copies what it keeps
  }

  // The host side of a guest's new connection: a TCP socket to the real destination, or to the
  // loopback for 'host'. Rejections carry an errno name (the engine answers RST or ICMP).
  private openTcp(k: TcpFlowKey, host: boolean): Promise<Duplex> {
    const refuse = (code: string, why?: UplinkRefusal) => {
      if (why) this.refuse(why);
      return Promise.reject(Object.assign(new Error(code), { code }));
    };
    if (this.closed) return refuse('ECONNREFUSED');
    const service = host ? this.o.services?.[k.dport] : undefined;
    if (service) {
      const [ours, theirs] = duplexPair();
      this.counters.tcp_opened++;
      service(theirs, k);
      return Promise.resolve(ours);
    }
    if (host && this.o.hostLoopback === false) return refuse('ECONNREFUSED', 'host_loopback_off');
    const e = this.endpoint(k.src);
    if (e.tcp >= this.limits.tcp) return refuse('ECONNREFUSED', 'tcp_limit');
    e.tcp++;
    return new Promise((resolve, reject) => {
      const s = this.reads.connect({ host: host ? (k.v6 ? '::1' : '127.0.0.1') : k.dst, port: k.dport });
      let released = false;
      const release = () => { if (!released) { released = true; this.release(k.src, 'tcp'); } };
      s.once('close', release);
      let open = false;
      s.once('connect', () => { open = true; this.counters.tcp_opened++; resolve(s); });
      s.once('error', (err) => { if (!open) { this.counters.tcp_open_failed++; release(); reject(err); } });
    });
  }
}

// The host sockets' reads into pooled buffers. A net.Socket that Node reads for itself allocates a
// fresh 64 KiB ArrayBuffer per read, and the engine keeps each chunk until the guest acknowledges it;
// at a gigabit that is ~100 MB of external memory per 100 MB carried, which V8 answers with a full
// mark-compact every ~100 ms (most of the helper threads' CPU). Here each socket reads into a buffer
// from a free list (net.connect's onread), the chunk goes to the engine as the socket's 'data' (pushed
// through the stream, so data before the engine listens waits, and a full stream stops reading), and
// the engine hands each chunk back once acknowledged (TcpEngineOptions.release); a small read is
// copied out at once so its buffer goes straight back. The list is bounded: beyond it, buffers are
// left to the collector.
//
// A socket whose read filled its buffer has more waiting: its next reads take 1 MiB (bulk) buffers,
// until a read fills less than a quarter of one. Each read is a syscall that also sends the sender
// a window update, whose processing (the sender's next pushes, over the loopback) runs in our
// syscall: a 64 KiB read cost about 35 us of that, and reads 16 times larger took the download's CPU
// from 130-150 to 85-105 ms per 100 MB (docs/performance.md). A bulk buffer may hold a small chunk for
// as long as the guest takes to acknowledge it, so at most BULK_BUFFERS of them exist at once,
// whether free, waiting for a read or holding chunks (a buffer of a flow that died is counted until
// it is collected); beyond, sockets read 64 KiB.
export const READ_BYTES = 64 * 1024;
export const BULK_READ_BYTES = 1024 * 1024;
export const BULK_BUFFERS = 32;
// A read of fewer bytes than SMALL_READ is copied out into a buffer of its own (chunk()).
export const SMALL_READ = 4096;
const KEPT_READ_BUFFERS = 256;

export class ReadPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly freeBulk: ArrayBuffer[] = [];
  private readonly ours = new WeakSet<ArrayBuffer>();
  private readonly bulkGone = new FinalizationRegistry<null>(() => { this.bulkBuffers--; });
  /** Bulk buffers in existence (at most BULK_BUFFERS). */
  bulkBuffers = 0;

  take(bulk: boolean): Buffer {
    if (bulk) {
      const ab = this.freeBulk.pop();
      if (ab) return Buffer.from(ab);
      if (this.bulkBuffers < BULK_BUFFERS) {
        const b = this.made(BULK_READ_BYTES);
        this.bulkBuffers++;
        this.bulkGone.register(b.buffer, null);
        return b;
      }
    }
    const ab = this.free.pop();
    return ab ? Buffer.from(ab) : this.made(READ_BYTES);
  }

  private made(size: number): Buffer {
    const b = Buffer.allocUnsafeSlow(size);
    this.ours.add(b.buffer as ArrayBuffer);
    return b;
  }

  release(c: Buffer): void {
    const ab = c.buffer as ArrayBuffer;
    if (c.byteOffset !== 0 || !this.ours.has(ab)) return;
    if (ab.byteLength === BULK_READ_BYTES) this.freeBulk.push(ab);
    else if (this.free.length < KEPT_READ_BUFFERS) this.free.push(ab);
  }

  // The chunk a read of n bytes into `buf` gives the engine.
  chunk(n: number, buf: Buffer): Buffer {
    if (n >= SMALL_READ) return buf.subarray(0, n);
    const small = Buffer.from(buf.subarray(0, n));
    this.release(buf);
    return small;
  }

  connect(to: { host: string; port: number }): Socket {
    let bulk = false;
    const s: Socket = netConnect({
      ...to,
      onread: {
        buffer: () => this.take(bulk),
        callback: (n: number, buf: Uint8Array): boolean => {
          bulk = n === buf.length || (bulk && n >= BULK_READ_BYTES / 4);
          return s.push(this.chunk(n, buf as Buffer));
        },
      },
    });
    return s;
  }
}

// The Ethernet frame around a TCP engine packet, made in the LINK_HEADROOM bytes before it.
function inPlace(dstMac: Uint8Array, srcMac: Uint8Array, ip: Uint8Array): Uint8Array {
  const f = new Uint8Array(ip.buffer, ip.byteOffset - LINK_HEADROOM, ip.length + LINK_HEADROOM);
  f.set(dstMac, 0); f.set(srcMac, 6);
  const v6 = ip[0] >> 4 === 6;
  f[12] = v6 ? 0x86 : 0x08; f[13] = v6 ? 0xdd : 0x00;
  return f;
}

// Two connected in-memory Duplex ends (Node 20 has no stream.duplexPair): what one writes the other
// reads. For in-process gateway services; their answers are small, so no backpressure is kept.
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (i: number) => new Duplex({
    read() { /* pushed by the other end */ },
    write(chunk, _enc, done) { ends[1 - i].push(chunk); done(); },
    final(done) { ends[1 - i].push(null); done(); },
    destroy(err, done) { const o = ends[1 - i]; if (!o.destroyed) o.destroy(); done(err); },
  });
  ends.push(make(0), make(1));
  return [ends[0], ends[1]];
}
