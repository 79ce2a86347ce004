// The differential suite: every scenario below runs its frames through a Linux kernel (a router with
// nft masquerade, a port forward and conntrack, or a bridge, in network namespaces) and through
// netplane with the same topology, and compares what comes out field by field (test/e2e/linux-diff.ts
// says how). A scenario is a row of data: add one by adding a row.
//
// Each step also says what Linux does (`linux: ['wan']`: one frame out of wan; `[]`: nothing), which
// is checked first: a scenario whose reference does not behave as described is a broken scenario.
// Where netplane differs on purpose, the scenario names the difference (`deliberate`) and
// docs/model.md ("Deliberate differences from Linux") says why.
//
// Needs root, /dev/net/tun, ip, socat and nft; without them every test fails and says so.
// NETPLANE_DIFF_VERBOSE=1 prints both sides' frames, field by field, for every scenario;
// NETPLANE_DIFF_ONLY=<regex> runs only the scenarios whose names match.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ethernet, ipv4, ipv6, tcp, udp, icmp, icmpv6, arp, parseIPv6, parseMac, type L4 } from '../src/frames.js';
import { requirements, DiffSuite, showResults, l4Ports, A, B, R, X, GW0, GW1, VIP, type Scenario, type SideView } from './e2e/linux-diff.js';

const missing = requirements();
const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

// Frames: from A (lan) and from the outside (wan, by R, the next hop, or X, on-link).
const fromA = (dst: string, l4: L4, o: { ttl?: number; id?: number } = {}) =>
  ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst, ttl: o.ttl ?? 64, id: o.id ?? 0x1001, payload: l4 }) });
const fromB = (dst: string, l4: L4, o: { ttl?: number; id?: number } = {}) =>
  ethernet({ src: B.mac, dst: GW0.mac, payload: ipv4({ src: B.ip, dst, ttl: o.ttl ?? 64, id: o.id ?? 0x1002, payload: l4 }) });
const fromOut = (src: string, dst: string, l4: L4, o: { ttl?: number; id?: number; mac?: string } = {}) =>
  ethernet({ src: o.mac ?? R.mac, dst: GW1.mac, payload: ipv4({ src, dst, ttl: o.ttl ?? 60, id: o.id ?? 0x2001, payload: l4 }) });
const fromA6 = (dst: string, l4: L4, hopLimit = 64, extensions?: Parameters<typeof ipv6>[0]['extensions']) =>
  ethernet({ src: A.mac, dst: GW0.mac, payload: ipv6({ src: A.ip6, dst, hopLimit, extensions, payload: l4 }) });
const fromOut6 = (src: string, dst: string, l4: L4, hopLimit = 60) =>
  ethernet({ src: R.mac, dst: GW1.mac, payload: ipv6({ src, dst, hopLimit, payload: l4 }) });

const S = '1.2.3.4';                 // an outside server, behind R
const T = (o: Parameters<typeof tcp>[0]) => tcp({ window: 29200, ...o });
// MSS 1460, NOP, window scale 7.
const MSS_WS7 = new Uint8Array([2, 4, 0x05, 0xb4, 1, 3, 3, 7]);
// Linux's SYN options (MSS, SACK permitted, timestamps, NOP, window scale 7) and macOS's (MSS, NOP,
// window scale 6, NOP, NOP, timestamps, SACK permitted, End, End).
const TSOPT = [8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0];
const LINUX_SYN = (mss: number) => Uint8Array.from([2, 4, mss >> 8, mss & 255, 4, 2, ...TSOPT, 1, 3, 3, 7]);
const BSD_SYN = (mss: number) => Uint8Array.from([2, 4, mss >> 8, mss & 255, 1, 3, 3, 6, 1, 1, ...TSOPT, 4, 2, 0, 0]);

// The IPv4 header and first 8 bytes of a frame's datagram: what an ICMP error quotes at least.
const quote = (f: Uint8Array, n = 28) => f.subarray(14, 14 + n);
// A fragment of an IPv4 datagram whose bytes (after the IP header) are `data`.
function fragment(src: { mac: string; ip: string }, dstMac: string, dst: string, id: number, data: Uint8Array, off: number, len: number, more: boolean, protocol = 17) {
  return ethernet({ src: src.mac, dst: dstMac, payload: ipv4({ src: src.ip, dst, id, ttl: 64, protocol, fragOffset: off / 8, mf: more, payload: data.subarray(off, off + len) }) });
}
const bigUdp = (src: string, dst: string, sport: number, dport: number, n: number) => {
  const body = new Uint8Array(n).map((_, i) => (i * 7) & 255);
  return udp({ srcPort: sport, dstPort: dport, payload: body }).build(ipv4Bytes(src), ipv4Bytes(dst));
};
const ipv4Bytes = (s: string) => Uint8Array.from(s.split('.').map(Number));

// An IPv6 type 0 routing header with one address left to visit.
function rh0(addr: string, segmentsLeft = 1): Uint8Array {
  const h = new Uint8Array(24);
  h[1] = 2; h[2] = 0; h[3] = segmentsLeft;
  h.set(parseIPv6(addr), 8);
  return h;
}
// An IPv6 fragment header with offset 0 and M=0: an atomic fragment (RFC 6946).
const atomicFragment = (id: number) => { const h = new Uint8Array(8); new DataView(h.buffer).setUint32(4, id); return h; };

// The L2 frames: a non-IP EtherType, so no host stack has anything to say about them.
const l2 = (src: string, dst: string, tag = 0, vlan?: { vid: number; pcp?: number }) => ethernet({ src, dst, vlan, ethertype: 0x88b5, payload: new Uint8Array(46).fill(tag) });
// A neighbour solicitation from A for `target`: to its solicited-node group with A's link-layer
// address, or unicast to the gateway (a reachability probe).
function ns(target: string, o: { unicast?: boolean; hopLimit?: number } = {}) {
  const t = parseIPv6(target);
  const group = `ff02::1:ff${t[13].toString(16).padStart(2, '0')}:${((t[14] << 8) | t[15]).toString(16)}`;
  const groupMac = `33:33:ff:${[t[13], t[14], t[15]].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
  const body = new Uint8Array(24);
  body.set(t);
  body[16] = 1; body[17] = 1; body.set(parseMac(A.mac), 18);
  return ethernet({ src: A.mac, dst: o.unicast ? GW0.mac : groupMac, payload: ipv6({ src: A.ip6, dst: o.unicast ? target : group, hopLimit: o.hopLimit ?? 255, payload: icmpv6({ type: 135, rest: new Uint8Array(4), payload: body }) }) });
}
const BC = 'ff:ff:ff:ff:ff:ff';
const M = (n: number) => `02:00:00:00:10:${n.toString(16).padStart(2, '0')}`;

const handshake = (sport: number, dst = S): Scenario['steps'] => [
  { send: 'lan', frame: fromA(dst, T({ srcPort: sport, dstPort: 443, flags: 'S', seq: 1000 })), linux: ['wan'], note: 'SYN' },
  { send: 'wan', frame: (s) => fromOut(dst, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'SA', seq: 5000, ack: 1001 })), linux: ['lan'], note: 'SYN-ACK' },
  { send: 'lan', frame: fromA(dst, T({ srcPort: sport, dstPort: 443, flags: 'A', seq: 1001, ack: 5001 })), linux: ['wan'], note: 'ACK' },
];
// The source port (or echo identifier) a side sent out in step `step`: where a reply must go.
const sportOf = (s: SideView, step: number) => l4Ports(s.out(step)).sport;
// The source port in the first fragment of a datagram sent in `steps`, whichever step it left in:
// netplane forwards each fragment as it comes, Linux all of them once the datagram is whole.
const firstFragmentSport = (s: SideView, steps: number[]) => {
  for (const st of steps) {
    for (let i = 0; i < 64; i++) {
      let f: Uint8Array;
      try { f = s.out(st, i); } catch { break; }
      if ((((f[20] << 8) | f[21]) & 0x1fff) === 0) return l4Ports(f).sport;
    }
  }
  throw new Error(`${s.side}: no first fragment out of steps ${steps.join(', ')}`);
};

const scenarios: Scenario[] = [
  // ---- IPv4 through masquerade ------------------------------------------------------------------
  {
    name: 'TCP life cycle through masquerade: handshake, data both ways, FIN both ways',
    topology: 'router',
    steps: [
      ...handshake(40000),
      { send: 'lan', frame: fromA(S, T({ srcPort: 40000, dstPort: 443, flags: 'PA', seq: 1001, ack: 5001, payload })), linux: ['wan'], note: 'data out' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'PA', seq: 5001, ack: 1009, payload })), linux: ['lan'], note: 'data in' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40000, dstPort: 443, flags: 'FA', seq: 1009, ack: 5009 })), linux: ['wan'], note: 'FIN out' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'FA', seq: 5009, ack: 1010 })), linux: ['lan'], note: 'FIN in' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40000, dstPort: 443, flags: 'A', seq: 1010, ack: 5010 })), linux: ['wan'], note: 'last ACK' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40000, dstPort: 443, flags: 'S', seq: 200000 })), linux: ['wan'], note: 'a new SYN on the TIME_WAIT tuple reopens it' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 8), flags: 'SA', seq: 300000, ack: 200001 })), linux: ['lan'], note: 'its SYN-ACK' },
    ],
  },
  {
    name: 'TCP RST from the server is forwarded; a late segment of the closed connection still passes (conntrack CLOSE state)',
    topology: 'router',
    steps: [
      ...handshake(40001),
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'R', seq: 5001 })), linux: ['lan'], note: 'RST in' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40001, dstPort: 443, flags: 'PA', seq: 1001, ack: 5001, payload })), linux: ['wan'], note: 'data after RST (CLOSE state: Linux still forwards)' },
    ],
  },
  {
    name: 'RST then a new SYN with the same tuple: a new connection at once, with the same port',
    topology: 'router',
    steps: [
      ...handshake(40002),
      { send: 'lan', frame: fromA(S, T({ srcPort: 40002, dstPort: 443, flags: 'R', seq: 1001 })), linux: ['wan'], note: 'RST out' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40002, dstPort: 443, flags: 'S', seq: 90000 })), linux: ['wan'], note: 'new SYN, same tuple' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 4), flags: 'SA', seq: 7000, ack: 90001 })), linux: ['lan'], note: 'its SYN-ACK' },
    ],
  },
  {
    name: 'connection refused: a retransmitted SYN, the server\'s RST-ACK back, a retry with the same tuple',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 40007, dstPort: 444, flags: 'S', seq: 1000 })), linux: ['wan'], note: 'SYN' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40007, dstPort: 444, flags: 'S', seq: 1000 })), linux: ['wan'], note: 'the same SYN again' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 444, dstPort: sportOf(s, 0), flags: 'RA', seq: 0, ack: 1001, window: 0 })), linux: ['lan'], note: 'RST-ACK: refused' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40007, dstPort: 444, flags: 'S', seq: 2000 })), linux: ['wan'], note: 'retry, same tuple' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 444, dstPort: sportOf(s, 3), flags: 'SA', seq: 8000, ack: 2001 })), linux: ['lan'], note: 'accepted this time' },
    ],
  },
  {
    name: 'SYN-ACK acknowledging what was never sent is invalid, dropped (Linux tcp_in_window)',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 40003, dstPort: 443, flags: 'S', seq: 1000 })), linux: ['wan'], note: 'SYN' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'SA', seq: 5000, ack: 777777 })), linux: [], note: 'SYN-ACK, bad ACK' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'SA', seq: 5000, ack: 1001 })), linux: ['lan'], note: 'the right SYN-ACK still passes' },
    ],
  },
  {
    name: 'a segment far outside the window is invalid, dropped; in-window data passes',
    topology: 'router',
    steps: [
      ...handshake(40004),
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'PA', seq: 5001 + 0x40000000, ack: 1001, payload })), linux: [], note: 'data 1 GB ahead' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'R', seq: 5001 + 0x40000000 })), linux: [], note: 'RST far out of window' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'PA', seq: 5001, ack: 1001, payload })), linux: ['lan'], note: 'in-window data' },
    ],
  },
  {
    name: 'window scaling: data 2 MB ahead is inside a window scaled by 7 and passes; 10 MB ahead does not',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 40006, dstPort: 443, flags: 'S', seq: 1000, options: MSS_WS7 })), linux: ['wan'], note: 'SYN, window scale 7' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'SA', seq: 5000, ack: 1001, options: MSS_WS7 })), linux: ['lan'], note: 'SYN-ACK, window scale 7' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40006, dstPort: 443, flags: 'A', seq: 1001, ack: 5001 })), linux: ['wan'], note: 'ACK: 29200 << 7 = 3.7 MB of window' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'PA', seq: 5001 + 2_000_000, ack: 1001, payload })), linux: ['lan'], note: 'data 2 MB ahead' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'PA', seq: 5001 + 10_000_000, ack: 1001, payload })), linux: [], note: 'data 10 MB ahead' },
    ],
  },
  {
    name: 'a TCP segment with no connection is picked up mid-stream (nf_conntrack_tcp_loose)',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 40005, dstPort: 443, flags: 'PA', seq: 123456, ack: 654321, payload })), linux: ['wan'], note: 'ACK with data, no SYN seen' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'A', seq: 654321, ack: 123464 })), linux: ['lan'], note: 'the answer comes back in' },
    ],
  },
  {
    name: 'UDP through masquerade, out and back; a zero checksum stays zero',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA('8.8.8.8', udp({ srcPort: 40010, dstPort: 53, payload })), linux: ['wan'], note: 'query' },
      { send: 'wan', frame: (s) => fromOut('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: sportOf(s, 0), payload })), linux: ['lan'], note: 'answer' },
      { send: 'lan', frame: fromA('8.8.8.8', udp({ srcPort: 40011, dstPort: 53, payload, zeroChecksum: true })), linux: ['wan'], note: 'zero checksum out' },
      { send: 'wan', frame: (s) => fromOut('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: sportOf(s, 2), payload, zeroChecksum: true })), linux: ['lan'], note: 'zero checksum in' },
    ],
  },
  {
    name: 'two endpoints with the same source port: the second gets another port of the same class',
    topology: 'router',
    deliberate: [],
    steps: [
      { send: 'lan', frame: fromA('8.8.8.8', udp({ srcPort: 40012, dstPort: 53, payload })), linux: ['wan'] },
      { send: 'lan', frame: fromB('8.8.8.8', udp({ srcPort: 40012, dstPort: 53, payload })), linux: ['wan'], note: 'B, same port: remapped' },
      { send: 'wan', frame: (s) => fromOut('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: sportOf(s, 1), payload })), linux: ['lan'], note: 'the answer to the remapped port reaches B' },
    ],
  },
  {
    name: 'source port class: a port below 1024 stays below 1024 (UDP 500 keeps 500 when free)',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(S, udp({ srcPort: 500, dstPort: 500, payload })), linux: ['wan'], note: 'A:500' },
      { send: 'lan', frame: fromB(S, udp({ srcPort: 500, dstPort: 500, payload })), linux: ['wan'], note: 'B:500, 500 taken: another port below 1024' },
    ],
  },
  {
    name: 'ICMP echo through masquerade, and its reply',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA('8.8.8.8', icmp({ type: 8, id: 0x1234, seq: 1, payload })), linux: ['wan'], note: 'echo request' },
      { send: 'wan', frame: (s) => fromOut('8.8.8.8', GW1.ip, icmp({ type: 0, id: sportOf(s, 0), seq: 1, payload })), linux: ['lan'], note: 'echo reply' },
    ],
  },
  {
    name: 'ICMP errors from outside quoting a translated flow are translated back (UDP, TCP, echo)',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA('8.8.8.8', udp({ srcPort: 40020, dstPort: 5353, payload })), linux: ['wan'], note: 'UDP out' },
      { send: 'wan', frame: (s) => fromOut('8.8.8.8', GW1.ip, icmp({ type: 3, code: 3, payload: quote(s.out(0)) })), linux: ['lan'], note: 'port unreachable quoting it' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40021, dstPort: 443, flags: 'S', seq: 1000 })), linux: ['wan'], note: 'SYN out' },
      { send: 'wan', frame: (s) => fromOut(R.ip, GW1.ip, icmp({ type: 3, code: 4, rest: new Uint8Array([0, 0, 0x05, 0x00]), payload: quote(s.out(2)) })), linux: ['lan'], note: 'fragmentation needed from the next hop' },
      { send: 'lan', frame: fromA('9.9.9.9', icmp({ type: 8, id: 0x2222, seq: 7, payload })), linux: ['wan'], note: 'echo out' },
      { send: 'wan', frame: (s) => fromOut(R.ip, GW1.ip, icmp({ type: 11, code: 0, payload: quote(s.out(4)) })), linux: ['lan'], note: 'time exceeded quoting the echo' },
      { send: 'wan', frame: fromOut(R.ip, GW1.ip, icmp({ type: 3, code: 1, payload: quote(fromOut(GW1.ip, '7.7.7.7', udp({ srcPort: 41000, dstPort: 53 }))) })), linux: [], note: 'an error quoting no flow' },
    ],
  },
  {
    name: 'TTL 1: time exceeded from the gateway, quoting the datagram',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA('8.8.8.8', udp({ srcPort: 40030, dstPort: 53, payload }), { ttl: 1 }), linux: ['lan'], note: 'UDP, TTL 1' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40031, dstPort: 443, flags: 'S', seq: 1 }), { ttl: 1 }), linux: ['lan'], note: 'SYN, TTL 1' },
      { send: 'wan', frame: fromOut(X.ip, '10.0.0.3', udp({ srcPort: 1, dstPort: 2, payload }), { ttl: 1, mac: X.mac }), linux: ['wan'], note: 'from outside, TTL 1' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40032, dstPort: 443, flags: 'A', seq: 5, ack: 6 }), { ttl: 1 }), linux: ['lan'], note: 'TCP ACK of no connection, TTL 1 (picked up, then expired)' },
    ],
  },
  {
    name: 'port forward from outside: tcp 8080 on the external address reaches B:80, replies come from 8080',
    topology: 'router',
    steps: [
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, T({ srcPort: 33333, dstPort: 8080, flags: 'S', seq: 5 }), { mac: X.mac }), linux: ['lan'], note: 'SYN to 8080' },
      { send: 'lan', frame: fromB(X.ip, T({ srcPort: 80, dstPort: 33333, flags: 'SA', seq: 70, ack: 6 })), linux: ['wan'], note: 'SYN-ACK from B' },
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, T({ srcPort: 33333, dstPort: 8080, flags: 'A', seq: 6, ack: 71 }), { mac: X.mac }), linux: ['lan'], note: 'ACK' },
      { send: 'wan', frame: (s) => fromOut(X.ip, GW1.ip, icmp({ type: 3, code: 3, payload: quote(s.out(1)) }), { mac: X.mac }), linux: ['lan'], note: 'an ICMP error quoting what B sent, as X got it' },
      { send: 'lan', frame: fromB(X.ip, T({ srcPort: 81, dstPort: 33333, flags: 'S', seq: 70 })), linux: ['wan'], note: 'B connecting out from port 81: plain masquerade, the port kept' },
    ],
  },
  {
    name: 'hairpin: A reaches the forwarded port through the external address; B sees the gateway',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(GW1.ip, T({ srcPort: 41000, dstPort: 8080, flags: 'S', seq: 1 })), linux: ['lan'], note: 'SYN to 192.168.1.1:8080' },
      { send: 'lan', frame: (s) => fromB(GW0.ip, T({ srcPort: 80, dstPort: sportOf(s, 0), flags: 'SA', seq: 9, ack: 2 })), linux: ['lan'], note: 'SYN-ACK from B to the gateway' },
    ],
  },
  {
    name: 'unmapped TCP and UDP to the router addresses are answered: RST, port unreachable',
    topology: 'router',
    steps: [
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, T({ srcPort: 33334, dstPort: 9999, flags: 'S', seq: 77 }), { mac: X.mac }), linux: ['wan'], note: 'SYN to an unmapped port (outside)' },
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, udp({ srcPort: 33335, dstPort: 9999, payload }), { mac: X.mac }), linux: ['wan'], note: 'UDP to an unmapped port (outside)' },
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, udp({ srcPort: 33336, dstPort: 8080, payload }), { mac: X.mac }), linux: ['wan'], note: 'UDP to the TCP-mapped port' },
      { send: 'lan', frame: fromA(GW0.ip, T({ srcPort: 33337, dstPort: 22, flags: 'S', seq: 99 })), linux: ['lan'], note: 'SYN to the gateway (inside)' },
      { send: 'lan', frame: fromA(GW0.ip, T({ srcPort: 33338, dstPort: 22, flags: 'A', seq: 5, ack: 6 })), linux: ['lan'], note: 'ACK to the gateway: RST with seq = ack' },
    ],
  },
  {
    name: 'ping the gateway: an echo reply with a fresh IP ID',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA(GW0.ip, icmp({ type: 8, id: 0x77, seq: 1, payload }), { id: 0x4242 }), linux: ['lan'] },
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, icmp({ type: 8, id: 0x78, seq: 1, payload }), { mac: X.mac, id: 0x4243 }), linux: ['wan'] },
    ],
  },
  {
    name: 'pool exhaustion: SNAT ports 20000-20001, a third flow to the same server is dropped',
    topology: 'router',
    config: { snatPorts: [20000, 20001] },
    deliberate: [{ step: 3, field: /tcp\.sport: linux=P\d\(20000-20001\) netplane=P\d\(20000-20001\)$/, why: 'which free port of the range a new flow gets is a choice; that it is in the range is not' }],
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 50000, dstPort: 443, flags: 'S', seq: 1 })), linux: ['wan'] },
      { send: 'lan', frame: fromA(S, T({ srcPort: 50001, dstPort: 443, flags: 'S', seq: 1 })), linux: ['wan'] },
      { send: 'lan', frame: fromA(S, T({ srcPort: 50002, dstPort: 443, flags: 'S', seq: 1 })), linux: [], note: 'no port left' },
      { send: 'lan', frame: fromA('1.2.3.5', T({ srcPort: 50002, dstPort: 443, flags: 'S', seq: 1 })), linux: ['wan'], note: 'another server: the ports are free towards it' },
    ],
  },
  {
    name: 'an expired connection frees its NAT port (SNAT port 20000 only, SYN_SENT timeout 1 s)',
    topology: 'router',
    config: { snatPorts: [20000, 20000], timeouts: { SYN_SENT: 1000 } },
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 50010, dstPort: 443, flags: 'S', seq: 1 })), linux: ['wan'] },
      { send: 'lan', frame: fromA(S, T({ srcPort: 50011, dstPort: 443, flags: 'S', seq: 1 })), linux: [], note: 'while it lives the port is taken' },
      { advance: 2100 },
      { send: 'lan', frame: fromA(S, T({ srcPort: 50012, dstPort: 443, flags: 'S', seq: 1 })), linux: ['wan'], note: 'expired: the port is free' },
    ],
  },
  {
    name: 'a fragmented UDP datagram (ping -s 3000 style) crosses the NAT, fragment boundaries and ID kept',
    topology: 'router',
    steps: (() => {
      const d = bigUdp(A.ip, X.ip, 40040, 7000, 3000);
      return [
        { send: 'lan', frame: fragment(A, GW0.mac, X.ip, 0x3333, d, 0, 1480, true), group: 'datagram', note: 'first fragment' },
        { send: 'lan', frame: fragment(A, GW0.mac, X.ip, 0x3333, d, 1480, 1480, true), group: 'datagram', note: 'second fragment' },
        { send: 'lan', frame: fragment(A, GW0.mac, X.ip, 0x3333, d, 2960, 48, false), group: 'datagram', linux: ['wan', 'wan', 'wan'], note: 'last fragment' },
        { send: 'wan', frame: (s) => fragment(X, GW1.mac, GW1.ip, 0x4444, bigUdp(X.ip, GW1.ip, 7000, firstFragmentSport(s, [0, 1, 2]), 2000), 0, 1480, true), group: 'answer', note: 'the answer, first fragment' },
        { send: 'wan', frame: (s) => fragment(X, GW1.mac, GW1.ip, 0x4444, bigUdp(X.ip, GW1.ip, 7000, firstFragmentSport(s, [0, 1, 2]), 2000), 1480, 528, false), group: 'answer', linux: ['lan', 'lan'], note: 'the answer, last fragment' },
      ] as Scenario['steps'];
    })(),
  },
  {
    name: 'fragments out of order: the last first, then the first; the datagram still crosses the NAT',
    topology: 'router',
    steps: (() => {
      const d = bigUdp(A.ip, X.ip, 40041, 7001, 2000);
      return [
        { send: 'lan', frame: fragment(A, GW0.mac, X.ip, 0x3334, d, 1480, 528, false), group: 'datagram', note: 'last fragment first' },
        { send: 'lan', frame: fragment(A, GW0.mac, X.ip, 0x3334, d, 0, 1480, true), group: 'datagram', linux: ['wan', 'wan'], note: 'then the first' },
      ] as Scenario['steps'];
    })(),
  },
  {
    name: 'ping -s 3000 the gateway: the fragmented echo request is answered in fragments',
    topology: 'router',
    steps: (() => {
      const d = icmp({ type: 8, id: 0x99, seq: 1, payload: new Uint8Array(3000).fill(0x5a) }).build(ipv4Bytes(A.ip), ipv4Bytes(GW0.ip));
      return [
        { send: 'lan', frame: fragment(A, GW0.mac, GW0.ip, 0x3335, d, 0, 1480, true, 1), group: 'ping' },
        { send: 'lan', frame: fragment(A, GW0.mac, GW0.ip, 0x3335, d, 1480, 1480, true, 1), group: 'ping' },
        { send: 'lan', frame: fragment(A, GW0.mac, GW0.ip, 0x3335, d, 2960, 48, false, 1), group: 'ping', linux: ['lan', 'lan', 'lan'] },
      ] as Scenario['steps'];
    })(),
  },
  // ---- the router's own answers ------------------------------------------------------------------
  {
    name: 'ARP: the gateway answers for its own addresses only',
    topology: 'router',
    steps: [
      { send: 'lan', frame: ethernet({ src: A.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: GW0.ip }) }), linux: ['lan'], note: 'who has 10.0.0.1' },
      { send: 'wan', frame: ethernet({ src: X.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: X.mac, senderIp: X.ip, targetIp: GW1.ip }) }), linux: ['wan'], note: 'who has 192.168.1.1' },
      { send: 'lan', frame: ethernet({ src: A.mac, dst: GW0.mac, payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetMac: GW0.mac, targetIp: GW0.ip }) }), linux: ['lan'], note: 'unicast request (a neighbour probe)' },
      { send: 'lan', frame: ethernet({ src: A.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: A.mac, senderIp: A.ip, targetIp: '10.0.0.99' }) }), linux: [], note: 'who has another address' },
    ],
  },
  {
    name: 'IPv6 neighbour discovery: solicitations for the gateway are answered; a unicast one without the target link-layer address and Override, as Linux',
    topology: 'router',
    steps: [
      { send: 'lan', frame: ns(GW0.ip6), linux: ['lan'], note: 'NS to the solicited-node group' },
      { send: 'lan', frame: ns(GW0.ll), linux: ['lan'], note: 'NS for the link-local address' },
      { send: 'lan', frame: ns(GW0.ip6, { unicast: true }), linux: ['lan'], note: 'unicast NS (a reachability probe): no override, no option' },
      { send: 'lan', frame: ns(GW0.ip6, { hopLimit: 64 }), linux: [], note: 'hop limit 64: not from on-link (RFC 4861 §7.1.1)' },
      { send: 'lan', frame: ns('fd00::99'), linux: [], note: 'for another target' },
    ],
  },
  {
    name: 'ping6 the gateway, from inside and outside',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA6(GW0.ip6, icmpv6({ type: 128, id: 9, seq: 1, payload })), linux: ['lan'] },
      { send: 'wan', frame: ethernet({ src: X.mac, dst: GW1.mac, payload: ipv6({ src: X.ip6, dst: GW1.ip6, payload: icmpv6({ type: 128, id: 9, seq: 2, payload }) }) }), linux: ['wan'] },
    ],
  },
  {
    name: 'MTU 1500: a DF datagram too big for the wan gets fragmentation needed; one without DF is fragmented',
    topology: 'router',
    steps: [
      { send: 'lan', frame: ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: X.ip, df: true, id: 0x5151, payload: udp({ srcPort: 40050, dstPort: 9, payload: new Uint8Array(1800).fill(3) }) }) }), linux: ['lan'], note: 'DF, 1828 bytes' },
      { send: 'lan', frame: ethernet({ src: A.mac, dst: GW0.mac, payload: ipv4({ src: A.ip, dst: X.ip, id: 0x5152, payload: udp({ srcPort: 40051, dstPort: 9, payload: new Uint8Array(1800).fill(4) }) }) }), linux: ['wan', 'wan'], note: 'no DF, 1828 bytes' },
    ],
  },
  {
    name: 'IPv6 MTU 1500: a packet too big for the wan gets Packet Too Big',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA6(X.ip6, udp({ srcPort: 5010, dstPort: 9, payload: new Uint8Array(1600).fill(5) })), linux: ['lan'] },
    ],
  },
  // ---- TCP MSS clamping: nft `tcp option maxseg size set rt mtu` / `set 1000` in the forward chain --
  {
    name: 'MSS clamp to the MTU (wan MTU 1400): SYN out, SYN-ACK back, port forward in, IPv6; lowered to 1360 / 1340, never raised, none added',
    topology: 'router',
    config: { mssClamp: 'mtu', wanMtu: 1400 },
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 40600, dstPort: 443, flags: 'S', seq: 1000, options: LINUX_SYN(1460) })), linux: ['wan'], note: 'SYN, MSS 1460' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'SA', seq: 5000, ack: 1001, options: BSD_SYN(8960) })), linux: ['lan'], note: 'SYN-ACK, MSS 8960' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40600, dstPort: 443, flags: 'A', seq: 1001, ack: 5001 })), linux: ['wan'], note: 'ACK' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40601, dstPort: 443, flags: 'S', seq: 1000, options: LINUX_SYN(1200) })), linux: ['wan'], note: 'SYN, MSS 1200: kept' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40602, dstPort: 443, flags: 'S', seq: 1000, options: MSS_WS7 })), linux: ['wan'], note: 'SYN, MSS 1460 and window scale' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40603, dstPort: 443, flags: 'S', seq: 1000, options: new Uint8Array([1, 3, 3, 7, 4, 2, 1, 1]) })), linux: ['wan'], note: 'SYN without MSS: none added' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40604, dstPort: 443, flags: 'S', seq: 1000, options: new Uint8Array([1, 1, 4, 2, 2, 4, 0x23, 0x28]) })), linux: ['wan'], note: 'SYN, MSS 9000 last' },
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, T({ srcPort: 5555, dstPort: 8080, flags: 'S', seq: 7000, options: LINUX_SYN(65495) }), { mac: X.mac }), linux: ['lan'], note: 'port forward SYN, MSS 65495' },
      { send: 'lan', frame: fromA6(X.ip6, T({ srcPort: 40605, dstPort: 443, flags: 'S', seq: 1000, options: LINUX_SYN(1440) })), linux: ['wan'], note: 'IPv6 SYN, MSS 1440' },
      { send: 'wan', frame: ethernet({ src: X.mac, dst: GW1.mac, payload: ipv6({ src: X.ip6, dst: A.ip6, payload: T({ srcPort: 443, dstPort: 40605, flags: 'SA', seq: 9000, ack: 1001, options: BSD_SYN(8940) }) }) }), linux: ['lan'], note: 'IPv6 SYN-ACK, MSS 8940' },
    ],
  },
  {
    name: 'MSS clamp to 1000: SYN and SYN-ACK lowered, 536 kept',
    topology: 'router',
    config: { mssClamp: 1000 },
    deliberate: [{ step: 3, field: /tcp\.opts/, why: 'an MSS option after End of Option List: Linux lowers it, netplane leaves the padding alone (docs/model.md)' }],
    steps: [
      { send: 'lan', frame: fromA(S, T({ srcPort: 40700, dstPort: 443, flags: 'S', seq: 1000, options: LINUX_SYN(1460) })), linux: ['wan'], note: 'SYN, MSS 1460' },
      { send: 'wan', frame: (s) => fromOut(S, GW1.ip, T({ srcPort: 443, dstPort: sportOf(s, 0), flags: 'SA', seq: 5000, ack: 1001, options: LINUX_SYN(1460) })), linux: ['lan'], note: 'SYN-ACK, MSS 1460' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40701, dstPort: 443, flags: 'S', seq: 1000, options: LINUX_SYN(536) })), linux: ['wan'], note: 'SYN, MSS 536: kept' },
      { send: 'lan', frame: fromA(S, T({ srcPort: 40703, dstPort: 443, flags: 'S', seq: 1000, options: new Uint8Array([0, 0, 0, 0, 2, 4, 0x05, 0xb4]) })), linux: ['wan'], note: 'SYN, End then an MSS 1460 no receiver reads' },
      // Not compared: an MSS value at an odd offset (NOP, MSS). Linux rewrites it with a wrong TCP
      // checksum (docs/model.md, deliberate differences); test/mss.test.ts checks netplane's.
    ],
  },
  {
    name: 'load balancer VIP on the uplink segment: ARP answered, the mapped port balanced, an unmapped port refused',
    topology: 'router',
    config: { loadBalancer: true },
    steps: [
      { send: 'wan', frame: ethernet({ src: X.mac, dst: BC, payload: arp({ op: 'request', senderMac: X.mac, senderIp: X.ip, targetIp: VIP }) }), linux: ['wan'], note: 'who has the VIP' },
      { send: 'wan', frame: fromOut(X.ip, VIP, T({ srcPort: 34000, dstPort: 80, flags: 'S', seq: 10 }), { mac: X.mac }), linux: ['lan'], note: 'SYN to VIP:80: to B:8080' },
      { send: 'lan', frame: fromB(X.ip, T({ srcPort: 8080, dstPort: 34000, flags: 'SA', seq: 90, ack: 11 })), linux: ['wan'], note: 'the answer leaves from VIP:80' },
      { send: 'wan', frame: fromOut(X.ip, VIP, T({ srcPort: 34001, dstPort: 81, flags: 'S', seq: 10 }), { mac: X.mac }), linux: ['wan'], note: 'SYN to an unmapped port of the VIP: RST' },
    ],
  },
  // ---- IPv6 ----------------------------------------------------------------------------------------
  {
    name: 'IPv6 forwarding: hop limit decremented, MACs rewritten, both ways',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA6(X.ip6, udp({ srcPort: 5000, dstPort: 6000, payload })), linux: ['wan'] },
      { send: 'wan', frame: ethernet({ src: X.mac, dst: GW1.mac, payload: ipv6({ src: X.ip6, dst: A.ip6, hopLimit: 9, payload: udp({ srcPort: 6000, dstPort: 5000, payload }) }) }), linux: ['lan'] },
    ],
  },
  {
    name: 'IPv6 hop limit 1 on a new flow: Time Exceeded from the gateway',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA6('2001:db8::9', udp({ srcPort: 5001, dstPort: 6001, payload }), 1), linux: ['lan'] },
      { send: 'lan', frame: fromA6('2001:db8::9', T({ srcPort: 5002, dstPort: 443, flags: 'S', seq: 1 }), 1), linux: ['lan'] },
      { send: 'lan', frame: fromA6('2001:db8::9', T({ srcPort: 5003, dstPort: 443, flags: 'A', seq: 5, ack: 6 }), 1), linux: ['lan'], note: 'TCP ACK of no connection' },
    ],
  },
  {
    name: 'a stateful block towards the lan: replies and related errors pass; new inbound, a port forward and errors for no flow do not (IPv6 and IPv4)',
    topology: 'router',
    config: { blockInbound: true },
    steps: [
      { send: 'lan', frame: fromA6('2001:db8::53', udp({ srcPort: 5003, dstPort: 53, payload })), linux: ['wan'], note: 'out' },
      { send: 'wan', frame: fromOut6('2001:db8::53', A.ip6, udp({ srcPort: 53, dstPort: 5003, payload })), linux: ['lan'], note: 'reply in' },
      { send: 'wan', frame: (s) => fromOut6('2001:db8::1', A.ip6, icmpv6({ type: 1, code: 4, payload: s.out(0).subarray(14, 14 + 48) })), linux: ['lan'], note: 'an error about that flow: related' },
      { send: 'wan', frame: fromOut6('2001:db8::53', A.ip6, udp({ srcPort: 53, dstPort: 5004, payload })), linux: [], note: 'new inbound: blocked' },
      { send: 'wan', frame: fromOut6('2001:db8::1', A.ip6, icmpv6({ type: 1, code: 4, payload: ipv6({ src: A.ip6, dst: '2001:db8::77', hopLimit: 63, payload: udp({ srcPort: 5005, dstPort: 53, payload }) }).bytes })), linux: [], note: 'an error quoting a flow that never existed' },
      { send: 'lan', frame: fromA('8.8.8.8', udp({ srcPort: 40060, dstPort: 53, payload })), linux: ['wan'], note: 'IPv4 out' },
      { send: 'wan', frame: (s) => fromOut('8.8.8.8', GW1.ip, udp({ srcPort: 53, dstPort: sportOf(s, 5), payload })), linux: ['lan'], note: 'IPv4 reply in' },
      { send: 'wan', frame: (s) => fromOut(R.ip, GW1.ip, icmp({ type: 3, code: 1, payload: quote(s.out(5)) })), linux: ['lan'], note: 'IPv4 error about it: related' },
      { send: 'wan', frame: fromOut(X.ip, GW1.ip, T({ srcPort: 33339, dstPort: 8080, flags: 'S', seq: 5 }), { mac: X.mac }), linux: [], note: 'the port forward, blocked towards the lan' },
    ],
  },
  {
    name: 'IPv6 type 0 routing header with segments left: Parameter Problem (RFC 5095)',
    topology: 'router',
    steps: [
      { send: 'lan', frame: fromA6(GW0.ip6, icmpv6({ type: 128, id: 5, seq: 1, payload }), 64, [{ nextHeaderType: 43, bytes: rh0('2001:db8::5') }]), linux: ['lan'], note: 'echo request to the gateway with RH0' },
      { send: 'lan', frame: fromA6(GW0.ip6, icmpv6({ type: 128, id: 5, seq: 2, payload }), 64, [{ nextHeaderType: 43, bytes: rh0('2001:db8::5', 0) }]), linux: ['lan'], note: 'RH0 with no segments left is ignored: echo reply' },
    ],
  },
  {
    name: 'IPv6 atomic fragment (offset 0, M=0) is a whole packet (RFC 6946); forwarded with its fragment header (deliberate: Linux conntrack strips it)',
    topology: 'router',
    deliberate: [{ step: 0, field: /^wan\[0\] ip6\.(plen|chain|ext44):/, why: 'Linux conntrack defragments the atomic fragment and forwards it without its fragment header; netplane forwards the packet as it came, as a router without conntrack does' }],
    steps: [
      { send: 'lan', frame: fromA6(X.ip6, udp({ srcPort: 5006, dstPort: 6006, payload }), 64, [{ nextHeaderType: 44, bytes: atomicFragment(0x1234) }]), linux: ['wan'], note: 'forwarded' },
      { send: 'lan', frame: fromA6(GW0.ip6, icmpv6({ type: 128, id: 6, seq: 1, payload }), 64, [{ nextHeaderType: 44, bytes: atomicFragment(0x1235) }]), linux: ['lan'], note: 'to the gateway: answered' },
    ],
  },
  // ---- L2: the switch against a Linux bridge ------------------------------------------------------
  {
    name: 'L2: unknown unicast floods, learning then narrows it to one port, broadcast floods',
    topology: 'bridge',
    steps: [
      { send: 'p0', frame: l2(M(1), M(2), 1), linux: ['p1', 'p2'], note: 'M2 unknown: flooded' },
      { send: 'p1', frame: l2(M(2), M(1), 2), linux: ['p0'], note: 'M1 learned on p0' },
      { send: 'p0', frame: l2(M(1), M(2), 3), linux: ['p1'], note: 'M2 learned on p1' },
      { send: 'p2', frame: l2(M(3), 'ff:ff:ff:ff:ff:ff', 4), linux: ['p0', 'p1'], note: 'broadcast' },
      { send: 'p2', frame: l2(M(2), M(1), 5), linux: ['p0'], note: 'M2 moves to p2' },
      { send: 'p0', frame: l2(M(1), M(2), 6), linux: ['p2'], note: 'to its new port' },
      { send: 'p0', frame: l2(M(1), M(1), 7), linux: [], note: 'to a MAC on the port it came from: not sent back' },
    ],
  },
  {
    name: 'L2: reserved group addresses 01:80:c2:00:00:01-0f are not forwarded; 00 (STP off) is',
    topology: 'bridge',
    steps: [
      { send: 'p0', frame: l2(M(4), '01:80:c2:00:00:00', 1), linux: ['p1', 'p2'], note: 'STP group, STP off: flooded' },
      ...[1, 2, 3, 0x0e, 0x0d, 0x0f].map((x) => ({ send: 'p0', frame: l2(M(4), `01:80:c2:00:00:${x.toString(16).padStart(2, '0')}`, x), linux: [] as string[], note: `01:80:c2:00:00:${x.toString(16).padStart(2, '0')}` })),
      { send: 'p0', frame: l2(M(4), '01:80:c2:00:00:21', 0x21), linux: ['p1', 'p2'], note: 'the 0x20 range (GARP/MRP) floods' },
    ],
  },
  {
    name: 'L2 VLANs against the documented Linux bridge with vlan_filtering (this kernel has no CONFIG_BRIDGE_VLAN_FILTERING); an access port drops frames tagged with its own VLAN (deliberate: the bridge accepts them)',
    topology: 'bridge',
    deliberate: [{ step: 6, field: /^p1: linux sent 1 frame\(s\), netplane 0/, why: 'an access port carries untagged (or priority-tagged) frames only; the bridge has memberships, not modes' }],
    // p0: bridge vlan add dev p0 vid 10 pvid untagged; p1: vid 10, vid 20 (tagged); p2: vid 20 pvid untagged.
    reference: { documented: 'Documentation/networking/switchdev.rst and bridge(8): ingress untagged and priority-tagged frames take the PVID (PCP kept), tagged frames of a VLAN the port is not a member of are dropped, egress is untagged where the VLAN is marked untagged, learning is per VLAN' },
    ports: [{ mode: 'access', vlan: 10 }, { mode: 'trunk', allowedVlans: [10, 20] }, { mode: 'access', vlan: 20 }],
    steps: [
      { send: 'p0', frame: l2(M(1), BC, 1), expect: [['p1', l2(M(1), BC, 1, { vid: 10 })]], note: 'untagged on the access port: VLAN 10, tagged on the trunk' },
      { send: 'p1', frame: l2(M(2), BC, 2, { vid: 20 }), expect: [['p2', l2(M(2), BC, 2)]], note: 'tagged 20 on the trunk: untagged on the VLAN 20 port' },
      { send: 'p1', frame: l2(M(3), M(1), 3, { vid: 10 }), expect: [['p0', l2(M(3), M(1), 3)]], note: 'M1 learned in VLAN 10' },
      { send: 'p2', frame: l2(M(4), M(1), 4), expect: [['p1', l2(M(4), M(1), 4, { vid: 20 })]], note: 'M1 is unknown in VLAN 20: flooded there' },
      { send: 'p1', frame: l2(M(5), BC, 5, { vid: 30 }), expect: [], note: 'VLAN 30: the trunk is no member, dropped' },
      { send: 'p0', frame: l2(M(1), BC, 6, { vid: 0, pcp: 3 }), expect: [['p1', l2(M(1), BC, 6, { vid: 10, pcp: 3 })]], note: 'priority-tagged: the PVID, the PCP kept' },
      { send: 'p0', frame: l2(M(1), BC, 7, { vid: 10 }), expect: [['p1', l2(M(1), BC, 7, { vid: 10 })]], note: 'tagged with the access port\'s own VLAN: a member, accepted' },
      { send: 'p0', frame: l2(M(1), BC, 8, { vid: 20 }), expect: [], note: 'tagged with a VLAN the access port is no member of: dropped' },
    ],
  },
  {
    name: 'L2: a zero or multicast source MAC is dropped and never learned',
    topology: 'bridge',
    steps: [
      { send: 'p1', frame: l2('00:00:00:00:00:00', M(5), 1), linux: [], note: 'zero source' },
      { send: 'p1', frame: l2('01:00:5e:00:00:01', M(5), 2), linux: [], note: 'multicast source' },
      { send: 'p0', frame: l2(M(6), '00:00:00:00:00:00', 3), linux: ['p1', 'p2'], note: 'to the zero MAC: unknown, flooded' },
    ],
  },
];

test('the requirements are there: root, /dev/net/tun, ip, socat, nft', () => {
  if (missing) assert.unreachable(`${missing}; ${process.env.CI ? 'CI must install them (scripts/install-test-deps.sh)' : 'run the tests as root with them installed'}`);
});

const chosen = process.env.NETPLANE_DIFF_ONLY ? scenarios.filter((sc) => new RegExp(process.env.NETPLANE_DIFF_ONLY!).test(sc.name)) : scenarios;
const suite = new DiffSuite(chosen);
test.after(() => suite.close());

for (const sc of chosen) {
  test(sc.name, async () => {
    if (missing) assert.unreachable(missing);
    const { diffs, results } = await suite.run(sc);
    if (process.env.NETPLANE_DIFF_VERBOSE) console.log(`\n# ${sc.name}\n${showResults(results)}`);
    assert.ok(diffs.length === 0, `netplane differs from Linux:\n${diffs.join('\n')}`);
  });
}

test.run();
