// Offloads (docs/ABI.md "Offloads"): super-frames and partial checksums from a port with a vnet
// header, through L2, NAT (masquerade, its replies, a port mapping, hairpin), an ACL and a VLAN
// trunk, to a plain port (software GSO / checksum completion) and to a port with offloads (the
// super-frame and its vnet header). Every case runs twice on identical fresh switches: once with the
// super-frame, once with the same payload as MTU-sized plain segments; what leaves must be the same
// bytes once finished as the kernel would (the partial checksum completed, then segmented) by this
// file's own code: its checksum, its segmenter (independent of nodes/gso.ts) and src/frames.ts's
// verifyChecksums.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, Offload } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, udp, tcp, arp, verifyChecksums } from '../src/frames.js';

const ALL = Offload.CSUM | Offload.TSO4 | Offload.TSO6 | Offload.TSO_ECN | Offload.USO;
const F_NEEDS_CSUM = 1, F_DATA_VALID = 2;
const GSO_NONE = 0, GSO_TCPV4 = 1, GSO_TCPV6 = 4, GSO_UDP_L4 = 5, GSO_ECN = 0x80;

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3', ip6: 'fd00::3' };
const R = { mac: '02:00:00:00:00:fe', ip: '192.168.1.254', ip6: '' };
const X = { mac: '02:00:00:00:00:99', ip: '192.168.1.100', ip6: '' };
const GW0 = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1', ip6: '' };
const GW1 = { mac: '02:6e:70:00:00:01', ip: '192.168.1.1', ip6: '' };
const BC = 'ff:ff:ff:ff:ff:ff';
type Host = typeof A;

// ---- this file's own checksum, vnet header and segmenter ------------------------------------------

function sum(b: Uint8Array, start: number, end: number, acc = 0): number {
  for (let i = start; i + 1 < end; i += 2) acc += (b[i] << 8) | b[i + 1];
  if ((end - start) & 1) acc += b[end - 1] << 8;
  return acc;
}
const fold = (s: number): number => { while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000); return s; };
const get16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const put16 = (b: Uint8Array, o: number, v: number) => { b[o] = v >> 8; b[o + 1] = v & 0xff; };

interface Layout { l3: number; l4: number; v6: boolean; proto: number; l4len: number; thl: number }
function layout(f: Uint8Array): Layout {
  let l3 = 14;
  if (get16(f, 12) === 0x8100) l3 = 18;
  const v6 = get16(f, l3 - 2) === 0x86dd;
  const l4 = l3 + (v6 ? 40 : (f[l3] & 15) * 4);
  const proto = v6 ? f[l3 + 6] : f[l3 + 9];
  const l4len = v6 ? get16(f, l3 + 4) : get16(f, l3 + 2) - (l4 - l3);
  const thl = proto === 6 ? (f[l4 + 12] >> 4) * 4 : 8;
  return { l3, l4, v6, proto, l4len, thl };
}
function pseudo(f: Uint8Array, L: Layout, l4len: number): number {
  const s = L.v6 ? sum(f, L.l3 + 8, L.l3 + 40) : sum(f, L.l3 + 12, L.l3 + 20);
  return s + L.proto + l4len;
}
const csumAt = (L: Layout) => L.l4 + (L.proto === 6 ? 16 : 6);

// The frame as a sender with checksum offload hands it over: the L4 checksum field holds the folded
// pseudo-header sum (CHECKSUM_PARTIAL).
function partial(frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  const L = layout(f);
  put16(f, csumAt(L), fold(pseudo(f, L, L.l4len)));
  return f;
}
// What the kernel does with CHECKSUM_PARTIAL (skb_checksum_help): sum from csum_start, field included.
function finishCsum(frame: Uint8Array, start: number, offset: number): Uint8Array {
  const f = frame.slice();
  const L = layout(f);
  let c = (~fold(sum(f, start, L.l4 + L.l4len))) & 0xffff;
  if (c === 0 && L.proto === 17) c = 0xffff;
  put16(f, start + offset, c);
  return f;
}
// Linux's GSO for TCP and UDP_L4, written independently: headers copied, payload cut in gso_size
// pieces; IPv4 id + i, lengths, seq, FIN/PSH last only, CWR first only, full checksums.
function segment(frame: Uint8Array, size: number): Uint8Array[] {
  const L = layout(frame);
  const hdr = L.l4 + L.thl;
  const pay = L.l4len - L.thl;
  const out: Uint8Array[] = [];
  for (let off = 0, i = 0; off < pay || (pay === 0 && i === 0); off += size, i++) {
    const n = Math.min(size, pay - off);
    const s = new Uint8Array(hdr + n);
    s.set(frame.subarray(0, hdr));
    s.set(frame.subarray(hdr + off, hdr + off + n), hdr);
    const l4len = L.thl + n;
    if (L.v6) put16(s, L.l3 + 4, l4len + (L.l4 - L.l3 - 40));
    else {
      put16(s, L.l3 + 2, L.l4 - L.l3 + l4len);
      put16(s, L.l3 + 4, (get16(frame, L.l3 + 4) + i) & 0xffff);
      put16(s, L.l3 + 10, 0);
      put16(s, L.l3 + 10, (~fold(sum(s, L.l3, L.l4))) & 0xffff);
    }
    if (L.proto === 6) {
      const seq = (new DataView(frame.buffer, frame.byteOffset).getUint32(L.l4 + 4) + off) >>> 0;
      new DataView(s.buffer).setUint32(L.l4 + 4, seq);
      if (off + n < pay) s[L.l4 + 13] &= ~0x09;
      if (i > 0) s[L.l4 + 13] &= ~0x80;
    } else put16(s, L.l4 + 4, l4len);
    put16(s, csumAt(L), 0);
    let c = (~fold(sum(s, L.l4, L.l4 + l4len, pseudo(s, L, l4len)))) & 0xffff;
    if (c === 0 && L.proto === 17) c = 0xffff;
    put16(s, csumAt(L), c);
    out.push(s);
    if (pay === 0) break;
  }
  return out;
}
function vnetHeader(flags: number, type: number, size: number, hdrLen = 0, start = 0, offset = 0): Uint8Array {
  const h = new Uint8Array(12);
  const v = new DataView(h.buffer);
  h[0] = flags; h[1] = type;
  v.setUint16(2, hdrLen, true); v.setUint16(4, size, true); v.setUint16(6, start, true); v.setUint16(8, offset, true);
  return h;
}
function readVnet(h: Uint8Array) {
  const v = new DataView(h.buffer, h.byteOffset, 12);
  return { flags: h[0], type: h[1], hdrLen: v.getUint16(2, true), size: v.getUint16(4, true), start: v.getUint16(6, true), offset: v.getUint16(8, true) };
}
// What a receiving kernel makes of a frame with its vnet header: complete the checksum, then segment.
function finish(frame: Uint8Array, h?: Uint8Array): Uint8Array[] {
  if (!h) return [frame];
  const v = readVnet(h);
  const f = v.flags & F_NEEDS_CSUM ? finishCsum(frame, v.start, v.offset) : frame;
  if (v.flags & F_NEEDS_CSUM) assert.ok(verifyChecksums(f), 'the partial checksum completes to a correct one');
  return v.type === GSO_NONE ? [f] : segment(f, v.size);
}

// ---- the network ----------------------------------------------------------------------------------
//   port 0 A, port 1 B (network 1, 10.0.0.0/24, fd00::/64, gateway 10.0.0.1), port 2 outside
//   (network 2, 192.168.1.1/24 external, R next hop, X on link), port 3 a trunk of network 1 carrying
//   VLAN 5 tagged, port 4 an access port of VLAN 5 (network 1). SNAT 10.0.0.0/24 via if 1; port
//   mappings tcp 8080 and udp 5353 to B.
function net(caps: Record<number, number> = {}) {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, macEntries: 256, clock: () => now });
  const out: Array<{ port: number; frame: Uint8Array; vnet?: Uint8Array }> = [];
  sw.onFrame((f, p, v) => out.push({ port: p, frame: f.slice(), vnet: v?.slice() }));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  sw.addPort({ network: 1, mode: 'trunk', allowedVlans: [5] });
  sw.addPort({ network: 1, vlan: 5 });
  for (const [p, c] of Object.entries(caps)) sw.setOffload(Number(p), c);
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: R.ip });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: B.ip, internalPort: 80 });
  rt.addPortMapping({ protocol: 'udp', externalPort: 5353, internalAddress: B.ip, internalPort: 53 });
  for (const [h, i] of [[A, 0], [B, 0], [R, 1], [X, 1]] as const) rt.setNeighbor({ address: h.ip, mac: h.mac, interface: i });
  const send = (port: number, f: Uint8Array, v?: Uint8Array) => {
    now += 1;
    out.length = 0;
    sw.send(port, f, v);
    sw.flush(now);
    return out.slice();
  };
  for (const [h, p] of [[A, 0], [B, 1], [R, 2], [X, 2]] as const) {
    send(p, ethernet({ dst: BC, src: h.mac, payload: arp({ op: 'request', senderMac: h.mac, senderIp: h.ip, targetIp: h === R || h === X ? '192.168.1.99' : '10.0.0.99' }) }));
  }
  // Several frames in one batch (one flush), as a transport's read hands them over.
  const batch = (port: number, fs: Uint8Array[]) => {
    now += 1;
    out.length = 0;
    for (const f of fs) sw.send(port, f);
    sw.flush(now);
    return out.slice();
  };
  return { sw, send, batch };
}

interface Path {
  name: string;
  from: number; to: number;             // ingress and egress ports
  src: Host; dst: Host;                  // L2 source and destination (MACs) of the frames sent
  sip: string; dip: string;              // their addresses
  dport: number;
  setup?: (sw: Switch) => void;
  v6?: boolean;
  // A connection to open first (a TCP handshake / a UDP datagram the other way), for reply paths.
  reply?: { from: number; src: Host; dst: Host; sip: string; dip: string; sport: number; dport: number };
}

const PATHS: Path[] = [
  { name: 'L2', from: 0, to: 1, src: A, dst: B, sip: A.ip, dip: B.ip, dport: 80 },
  { name: 'L2 through a port ACL', from: 0, to: 1, src: A, dst: B, sip: A.ip, dip: B.ip, dport: 80,
    setup: (sw) => sw.acls.setPortAcl(1, { rules: [{ Id: 'web', Action: 'Allow', Direction: 'In', Priority: 100, Protocols: '6,17', LocalPorts: '80' }], defaultIn: 'Block', defaultOut: 'Allow' }) },
  { name: 'L2 to a VLAN trunk (tag pushed)', from: 4, to: 3, src: A, dst: B, sip: A.ip, dip: B.ip, dport: 80 },
  { name: 'L2 from a VLAN trunk (tag popped)', from: 3, to: 4, src: A, dst: B, sip: A.ip, dip: B.ip, dport: 80 },
  { name: 'NAT masquerade', from: 0, to: 2, src: A, dst: GW0, sip: A.ip, dip: X.ip, dport: 80 },
  { name: 'port mapping', from: 2, to: 1, src: X, dst: GW1, sip: X.ip, dip: GW1.ip, dport: 8080 },
  { name: 'hairpin', from: 0, to: 1, src: A, dst: GW0, sip: A.ip, dip: GW1.ip, dport: 8080 },
  { name: 'masquerade reply', from: 2, to: 0, src: X, dst: GW1, sip: X.ip, dip: GW1.ip, dport: 0,
    reply: { from: 0, src: A, dst: GW0, sip: A.ip, dip: X.ip, sport: 40000, dport: 80 } },
];
const PATHS6: Path[] = [
  { name: 'L2 IPv6', from: 0, to: 1, src: A, dst: B, sip: A.ip6, dip: B.ip6, dport: 80, v6: true },
  { name: 'L2 IPv6 through a port ACL', from: 0, to: 1, src: A, dst: B, sip: A.ip6, dip: B.ip6, dport: 80, v6: true,
    setup: (sw) => sw.acls.setPortAcl(1, { rules: [{ Id: 'web', Action: 'Allow', Direction: 'In', Priority: 100, Protocols: '6,17', LocalPorts: '80' }], defaultIn: 'Block', defaultOut: 'Allow' }) },
  { name: 'L2 IPv6 to a VLAN trunk', from: 4, to: 3, src: A, dst: B, sip: A.ip6, dip: B.ip6, dport: 80, v6: true },
];

const TS = new Uint8Array([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]); // NOP NOP timestamps
const payloadOf = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff);

function l2of(path: Path, l3: { ethertype: number; bytes: Uint8Array }): Uint8Array {
  return ethernet({ src: path.src.mac, dst: path.dst.mac, payload: l3, ...(path.from === 3 ? { vlan: 5 } : {}) });
}
function ip(path: Path, l4: ReturnType<typeof tcp>, id = 0x1000) {
  return path.v6 ? ipv6({ src: path.sip, dst: path.dip, payload: l4 }) : ipv4({ src: path.sip, dst: path.dip, id, df: true, payload: l4 });
}
const macStr = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ipStr = (b: Uint8Array) => b.length === 4 ? [...b].join('.') : [...Array(8).keys()].map((i) => get16(b, i * 2).toString(16)).join(':');

// The answer to frame e (as it left by port `port`): addresses, MACs and ports swapped, its tag kept.
function answer(e: Uint8Array, port: number, l4: (sport: number, dport: number) => ReturnType<typeof tcp>, v6 = false): [Path, Uint8Array] {
  const L = layout(e);
  const al = v6 ? 16 : 4, so = L.l3 + (v6 ? 8 : 12);
  const p: Path = { name: '', from: port, to: -1, src: { mac: macStr(e.subarray(0, 6)), ip: '', ip6: '' }, dst: { mac: macStr(e.subarray(6, 12)), ip: '', ip6: '' },
    sip: ipStr(e.subarray(so + al, so + 2 * al)), dip: ipStr(e.subarray(so, so + al)), dport: get16(e, L.l4), v6 };
  return [p, l2of(p, ip(p, l4(get16(e, L.l4 + 2), get16(e, L.l4))))];
}

// The connection the data goes on, opened the same way on both switches (a TCP handshake; for a
// reply path by the other side, whose SYN the masquerade translates). Returns the path and ports the
// data takes, and its sequence numbers.
interface Flow { path: Path; sport: number; dport: number; seq: number; ack: number }
function open(n: ReturnType<typeof net>, path: Path, proto: 'tcp' | 'udp', sport: number): Flow {
  const init = path.reply ? { ...path, from: path.reply.from, to: path.from, src: path.reply.src, dst: path.reply.dst, sip: path.reply.sip, dip: path.reply.dip, dport: path.reply.dport } : path;
  const isport = path.reply ? path.reply.sport : sport;
  if (proto === 'udp' && !path.reply) return { path, sport, dport: path.dport === 8080 ? 5353 : path.dport, seq: 0, ack: 0 };
  const first = proto === 'tcp' ? tcp({ srcPort: isport, dstPort: init.dport, seq: 99999, flags: 'S' }) : udp({ srcPort: isport, dstPort: init.dport, payload: payloadOf(4) });
  const o = n.send(init.from, l2of(init, ip(init, first))).filter((x) => x.port === init.to);
  assert.is(o.length, 1, `${path.name}: the connection opens`);
  const [back, synack] = answer(o[0].frame, init.to, (s, d) => tcp({ srcPort: s, dstPort: d, seq: 777, ack: 100000, flags: 'SA' }), path.v6);
  if (proto === 'tcp') {
    assert.is(n.send(init.to, synack).filter((x) => x.port === init.from).length, 1, 'SYN-ACK passes');
    assert.is(n.send(init.from, l2of(init, ip(init, tcp({ srcPort: isport, dstPort: init.dport, seq: 100000, ack: 778, flags: 'A' })))).filter((x) => x.port === init.to).length, 1, 'ACK passes');
  }
  if (path.reply) return { path: { ...back, name: path.name, to: path.to }, sport: get16(synack, layout(synack).l4), dport: back.dport, seq: 778, ack: 100000 };
  return { path, sport, dport: path.dport, seq: 100000, ack: 778 };
}

// The data the case sends as one super-frame: TCP (with timestamps) or UDP.
function data(f: Flow, proto: 'tcp' | 'udp', n: number, flags: string): Uint8Array {
  const seg = proto === 'tcp'
    ? tcp({ srcPort: f.sport, dstPort: f.dport, seq: f.seq, ack: f.ack, flags, options: TS, payload: payloadOf(n) })
    : udp({ srcPort: f.sport, dstPort: f.dport, payload: payloadOf(n) });
  return l2of(f.path, ip(f.path, seg));
}

interface Combo { name: string; type: number; csum: boolean; proto: 'tcp' | 'udp'; flags: string }
const COMBOS4: Combo[] = [
  { name: 'TCPV4 + NEEDS_CSUM', type: GSO_TCPV4, csum: true, proto: 'tcp', flags: 'PA' },
  { name: 'TCPV4 without NEEDS_CSUM', type: GSO_TCPV4, csum: false, proto: 'tcp', flags: 'FPA' },
  { name: 'TCPV4 | ECN, CWR', type: GSO_TCPV4 | GSO_ECN, csum: true, proto: 'tcp', flags: 'CPA' },
  { name: 'UDP_L4 + NEEDS_CSUM', type: GSO_UDP_L4, csum: true, proto: 'udp', flags: '' },
  { name: 'UDP_L4 without NEEDS_CSUM', type: GSO_UDP_L4, csum: false, proto: 'udp', flags: '' },
  { name: 'NEEDS_CSUM only (TCP)', type: GSO_NONE, csum: true, proto: 'tcp', flags: 'PA' },
  { name: 'NEEDS_CSUM only (UDP)', type: GSO_NONE, csum: true, proto: 'udp', flags: '' },
  { name: 'DATA_VALID only (a plain frame)', type: GSO_NONE, csum: false, proto: 'tcp', flags: 'PA' },
];
const COMBOS6: Combo[] = [
  { name: 'TCPV6 + NEEDS_CSUM', type: GSO_TCPV6, csum: true, proto: 'tcp', flags: 'FPA' },
  { name: 'TCPV6 without NEEDS_CSUM', type: GSO_TCPV6, csum: false, proto: 'tcp', flags: 'PA' },
  { name: 'TCPV6 | ECN', type: GSO_TCPV6 | GSO_ECN, csum: true, proto: 'tcp', flags: 'CPA' },
  { name: 'UDP_L4 IPv6', type: GSO_UDP_L4, csum: true, proto: 'udp', flags: '' },
  { name: 'NEEDS_CSUM only IPv6 (UDP)', type: GSO_NONE, csum: true, proto: 'udp', flags: '' },
];

function runCase(path: Path, c: Combo, egressCaps: number, size: number, total: number) {
  const sport = 40000;
  const gso = c.type !== GSO_NONE;
  const n = gso ? total : 700;
  // The reference: plain MTU-sized segments on a switch without offloads.
  const ref = net();
  path.setup?.(ref.sw);
  const flow = open(ref, path, c.proto, sport);
  const sf = data(flow, c.proto, n, c.flags);
  const plain = gso ? segment(sf, size) : [sf];
  const want: Uint8Array[] = [];
  for (const s of plain) {
    const o = ref.send(flow.path.from, s).filter((x) => x.port === path.to);
    assert.is(o.length, 1, `${path.name}: the plain segment leaves by port ${path.to}`);
    want.push(o[0].frame);
  }
  // The same as one super-frame from a port with offloads.
  const off = net({ [path.from]: ALL, [path.to]: egressCaps });
  path.setup?.(off.sw);
  assert.equal(open(off, path, c.proto, sport), flow, 'the same connection on both switches');
  const L = layout(sf);
  const frame = c.csum ? partial(sf) : (gso ? (() => { const f = sf.slice(); put16(f, csumAt(L), 0x1234); return f; })() : sf);
  const h = vnetHeader(c.csum ? F_NEEDS_CSUM : (gso ? 0 : F_DATA_VALID), c.type, gso ? size : 0, L.l4 + L.thl, c.csum ? L.l4 : 0, c.csum ? csumAt(L) - L.l4 : 0);
  const o = off.send(flow.path.from, frame, h).filter((x) => x.port === path.to);
  const got: Uint8Array[] = [];
  for (const x of o) {
    assert.is(x.vnet !== undefined, egressCaps !== 0, 'a vnet header exactly for a port with offloads');
    got.push(...finish(x.frame, x.vnet));
  }
  assert.is(got.length, want.length, `${path.name} / ${c.name} to caps ${egressCaps}: segments`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(verifyChecksums(got[i]), `segment ${i}: every checksum recomputes`);
    assert.equal(got[i], want[i], `segment ${i} is the plain segment's bytes`);
  }
  // A port that takes the frame as it is gets it whole, with a vnet header that describes it.
  const takes = egressCaps === ALL && (c.csum || gso);
  if (takes) {
    assert.is(o.length, 1, 'one super-frame to the port with offloads');
    const v = readVnet(o[0].vnet!);
    const OL = layout(o[0].frame);
    assert.is(v.flags, F_NEEDS_CSUM);
    assert.is(v.type, c.type);
    assert.is(v.size, gso ? size : 0);
    assert.is(v.start, OL.l4, 'csum_start is where the L4 header is now');
    assert.is(v.offset, c.proto === 'tcp' ? 16 : 6);
    if (gso) assert.is(v.hdrLen, OL.l4 + OL.thl);
  }
  return { o, off };
}

for (const path of PATHS) {
  for (const c of COMBOS4) {
    if (path.reply && c.proto === 'udp') continue; // a UDP masquerade reply is covered by the TCP one's NAT
    test(`${path.name}: ${c.name}, to a plain port and to a port with offloads, is the plain segments' bytes`, () => {
      runCase(path, c, 0, 1448, 5000);
      runCase(path, c, ALL, 1448, 5000);
    });
  }
}
for (const path of PATHS6) {
  for (const c of COMBOS6) {
    test(`${path.name}: ${c.name}, to a plain port and to a port with offloads, is the plain segments' bytes`, () => {
      runCase(path, c, 0, 1428, 4321);
      runCase(path, c, ALL, 1428, 4321);
    });
  }
}

test('odd lengths and a last segment of one byte; a port with checksum offload but no TSO gets segments', () => {
  const path = PATHS[4];
  for (const total of [1, 1447, 1449, 2897, 6001]) runCase(path, COMBOS4[0], 0, 1448, total);
  const { o, off } = runCase(path, COMBOS4[0], Offload.CSUM, 1000, 4321);
  assert.is(o.length, 5);
  for (const x of o) assert.equal(readVnet(x.vnet!).type, GSO_NONE, 'segments go out as plain frames');
  assert.is(off.sw.counters().stats.gso_frames, 1);
  assert.is(off.sw.counters().stats.gso_segments, 5);
});

test('a TCPV6 super-frame to a port with TSO4 only is segmented; USO missing segments UDP', () => {
  const caps4 = Offload.CSUM | Offload.TSO4;
  const { o } = runCase(PATHS6[0], COMBOS6[0], caps4, 1428, 4321);
  assert.is(o.length, 4);
  const u = runCase(PATHS[0], COMBOS4[3], caps4, 1000, 3000);
  assert.is(u.o.length, 3);
});

test('ECN super-frame to a port without TSO_ECN is segmented: CWR only on the first segment', () => {
  const { o } = runCase(PATHS[0], COMBOS4[2], Offload.CSUM | Offload.TSO4, 1448, 5000);
  assert.is(o.length, 4);
  assert.equal(o.map((x) => (x.frame[layout(x.frame).l4 + 13] & 0x80) !== 0), [true, false, false, false]);
});

test('MTU: a super-frame is routed when its segments fit the egress MTU, refused (DF) when they do not', () => {
  const n = net({ 0: ALL });
  n.sw.router.setMtu(1, 1400);
  const path = PATHS[4];
  const sf = partial(data(open(n, path, 'tcp', 40000), 'tcp', 5000, 'PA'));
  const L = layout(sf);
  const ok = n.send(0, sf, vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1348, L.l4 + L.thl, L.l4, 16));
  assert.is(ok.filter((x) => x.port === 2).length, 4, 'segments of 1348 bytes of payload fit an MTU of 1400');
  const big = n.send(0, sf, vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1349, L.l4 + L.thl, L.l4, 16));
  assert.is(big.filter((x) => x.port === 2).length, 0);
  assert.ok(big.some((x) => x.port === 0), 'fragmentation needed goes back to the sender');
  assert.is(n.sw.counters().drops.mtu_exceeded, 1);
});

test('malformed vnet headers are named drops', () => {
  const path = PATHS[0];
  const fl: Flow = { path, sport: 40000, dport: 80, seq: 1, ack: 1 };
  const tcpF = partial(data(fl, 'tcp', 3000, 'PA'));
  const udpF = partial(data(fl, 'udp', 3000, ''));
  const L = layout(tcpF);
  const icmpF = ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, protocol: 1, payload: new Uint8Array([8, 0, 0, 0, 0, 1, 0, 1]) }) });
  const frag = ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, mf: true, payload: tcp({ srcPort: 1, dstPort: 80, payload: payloadOf(3000) }) }) });
  const cases: Array<[string, Uint8Array, Uint8Array, string]> = [
    ['unknown flag', tcpF, vnetHeader(4, 0, 0), 'vnet_bad_header'],
    ['unknown gso_type', tcpF, vnetHeader(F_NEEDS_CSUM, 3, 1000, 0, L.l4, 16), 'vnet_bad_header'],
    ['csum_start not at the L4 header', tcpF, vnetHeader(F_NEEDS_CSUM, 0, 0, 0, L.l4 + 2, 16), 'vnet_bad_header'],
    ['csum_offset not the TCP checksum', tcpF, vnetHeader(F_NEEDS_CSUM, 0, 0, 0, L.l4, 6), 'vnet_bad_header'],
    ['csum_start past the frame', tcpF, vnetHeader(F_NEEDS_CSUM, 0, 0, 0, 65000, 16), 'vnet_bad_header'],
    ['NEEDS_CSUM on ICMP', icmpF, vnetHeader(F_NEEDS_CSUM, 0, 0, 0, 34, 2), 'vnet_bad_header'],
    ['hdr_len past the frame', tcpF, vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1000, 60000, L.l4, 16), 'vnet_bad_header'],
    ['TCPV4 on UDP', udpF, vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1000, 0, L.l4, 6), 'vnet_gso_mismatch'],
    ['TCPV6 on IPv4', tcpF, vnetHeader(F_NEEDS_CSUM, GSO_TCPV6, 1000, 0, L.l4, 16), 'vnet_gso_mismatch'],
    ['UDP_L4 on TCP', tcpF, vnetHeader(F_NEEDS_CSUM, GSO_UDP_L4, 1000, 0, L.l4, 16), 'vnet_gso_mismatch'],
    ['ECN on UDP_L4', udpF, vnetHeader(F_NEEDS_CSUM, GSO_UDP_L4 | GSO_ECN, 1000, 0, L.l4, 6), 'vnet_gso_mismatch'],
    ['gso without gso_size', tcpF, vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 0, 0, L.l4, 16), 'vnet_gso_mismatch'],
    ['gso_size without gso', tcpF, vnetHeader(F_NEEDS_CSUM, GSO_NONE, 1000, 0, L.l4, 16), 'vnet_gso_mismatch'],
    ['segmenting a fragment', frag, vnetHeader(0, GSO_TCPV4, 1000), 'vnet_gso_mismatch'],
  ];
  for (const [what, f, h, reason] of cases) {
    const n = net({ 0: ALL, 1: ALL });
    const o = n.send(0, f, h);
    assert.is(o.length, 0, `${what}: dropped`);
    assert.is(n.sw.counters().drops[reason], 1, `${what}: counted as ${reason}`);
  }
  // The same vnet header from a port without offloads is never read: the frame is plain.
  const n = net();
  assert.is(n.send(0, tcpF, vnetHeader(4, 0, 0)).length, 1);
});

test('a super-frame punted (socket uplink) arrives as plain segments; a partial checksum punted is completed', () => {
  const n = net({ 0: ALL });
  n.sw.router.setPunt(1, ['uplink']);
  const punted: Uint8Array[] = [];
  n.sw.onPunt((f) => punted.push(f.slice()));
  const path = PATHS[4];
  const fl: Flow = { path, sport: 40000, dport: 80, seq: 100000, ack: 778 };
  const sf = data(fl, 'tcp', 5000, 'PA');
  // No SYN: conntrack picks the connection up mid-stream (the uplink's SYN-ACK would come from the host).
  const L = layout(sf);
  n.send(0, partial(sf), vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1448, L.l4 + L.thl, L.l4, 16));
  assert.is(punted.length, 4);
  for (const p of punted) assert.ok(verifyChecksums(p), 'each punted segment has complete checksums');
  const pay = punted.map((p) => { const q = layout(p); return p.subarray(q.l4 + q.thl, q.l4 + q.l4len); });
  assert.equal(Uint8Array.from(pay.flatMap((p) => [...p])), payloadOf(5000), 'the payload, in order');
  punted.length = 0;
  const small = data({ ...fl, dport: 53 }, 'udp', 100, '');
  const S = layout(small);
  n.send(0, partial(small), vnetHeader(F_NEEDS_CSUM, GSO_NONE, 0, 0, S.l4, 6));
  assert.is(punted.length, 1);
  assert.ok(verifyChecksums(punted[0]), 'its checksum completed (after the masquerade)');
  const q = layout(punted[0]);
  assert.equal(punted[0].subarray(q.l4 + 8), small.subarray(S.l4 + 8), 'the payload as sent');
  assert.is(n.sw.counters().stats.csum_completed, 1);
});

test('with punt offload, a TCP super-frame for the uplink is punted whole with its vnet header; finished as a kernel would, it is the same segments; UDP USO and other punts stay plain', () => {
  const n = net({ 0: ALL });
  n.sw.router.setPunt(1, ['uplink']);
  const punted: Array<{ frame: Uint8Array; vnet?: Uint8Array; reason: string }> = [];
  n.sw.onPunt((f, info) => punted.push({ frame: f.slice(), vnet: info.vnet?.slice(), reason: info.reason }));
  const fl: Flow = { path: PATHS[4], sport: 40010, dport: 80, seq: 100000, ack: 778 };
  const sf = data(fl, 'tcp', 5000, 'PA');
  const L = layout(sf);
  const h = vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1448, L.l4 + L.thl, L.l4, 16);
  // Off (the default): its segments, as the test above.
  n.send(0, partial(sf), h);
  assert.is(punted.length, 4);
  const plain = punted.splice(0).map((p) => p.frame);
  assert.ok(punted.every((p) => p.vnet === undefined));
  assert.throws(() => n.sw.setPuntOffload(1), /caps/);
  assert.is(n.sw.dp.exports.punt_set_offload(8), -3, 'the ABI refuses other bits');
  n.sw.setPuntOffload(2 | 4);
  const before = n.sw.counters().stats;
  n.send(0, partial(data({ ...fl, seq: fl.seq }, 'tcp', 5000, 'PA')), h);
  assert.is(punted.length, 1, 'one punt: the super-frame whole');
  const w = punted[0];
  assert.is(w.reason, 'uplink');
  assert.ok(w.vnet, 'with its vnet header');
  const v = readVnet(w.vnet!);
  const Q = layout(w.frame);
  assert.equal(v, { flags: F_NEEDS_CSUM, type: GSO_TCPV4, hdrLen: Q.l4 + Q.thl, size: 1448, start: Q.l4, offset: 16 });
  assert.equal(finish(w.frame, w.vnet), plain, 'finished as a kernel would: the segments it was punted as before, byte for byte');
  const after = n.sw.counters().stats;
  assert.is(after.gso_punted_whole - before.gso_punted_whole, 1);
  assert.is(after.gso_segments - before.gso_segments, 0, 'nothing segmented');
  // A UDP super-frame (USO) is still punted as its datagrams: their boundaries are the payload's.
  punted.length = 0;
  const uf = data({ ...fl, sport: 40011, dport: 4000 }, 'udp', 3000, '');
  const U = layout(uf);
  n.send(0, partial(uf), vnetHeader(F_NEEDS_CSUM, GSO_UDP_L4, 1000, U.l4 + 8, U.l4, 6));
  assert.is(punted.length, 3);
  assert.ok(punted.every((p) => p.vnet === undefined && verifyChecksums(p.frame)), 'plain datagrams with complete checksums');
  n.sw.setPuntOffload(0);
  punted.length = 0;
  n.send(0, partial(data(fl, 'tcp', 5000, 'PA')), h);
  assert.is(punted.length, 4, 'off again: segments');
});

test('conntrack counts the whole payload of a super-frame: the ACK of all of it passes, one beyond is out of window', () => {
  const path = PATHS[4];
  const n = net({ 0: ALL });
  const fl = open(n, path, 'tcp', 40000);
  const sf = partial(data(fl, 'tcp', 5000, 'PA'));
  const L = layout(sf);
  assert.is(n.send(0, sf, vnetHeader(F_NEEDS_CSUM, GSO_TCPV4, 1448, L.l4 + L.thl, L.l4, 16)).filter((x) => x.port === 2).length, 4);
  // X acknowledges the 5000 bytes (as it saw them: to the masquerade's address and port).
  const seen = n.send(0, data(fl, 'tcp', 0, 'A')).find((x) => x.port === 2)!.frame;
  const ack = (a: number) => answer(seen, 2, (s, d) => tcp({ srcPort: s, dstPort: d, seq: 778, ack: a, flags: 'A' }))[1];
  assert.is(n.send(2, ack(100000 + 5000)).filter((x) => x.port === 0).length, 1, 'the ACK of the whole super-frame passes');
  assert.is(n.send(2, ack(100000 + 5000 + 1000)).filter((x) => x.port === 0).length, 0, 'an ACK of data never sent does not');
  assert.is(n.sw.counters().drops.ct_tcp_ack_out_of_window, 1);
});

test('a partial checksum to a router address is taken as verified: unmapped TCP gets its RST', () => {
  const n = net({ 0: ALL });
  const path: Path = { name: 'to the gateway', from: 0, to: 0, src: A, dst: GW0, sip: A.ip, dip: GW0.ip, dport: 81 };
  const f = partial(data({ path, sport: 40000, dport: 81, seq: 1, ack: 1 }, 'tcp', 100, 'PA'));
  const L = layout(f);
  const o = n.send(0, f, vnetHeader(F_NEEDS_CSUM, GSO_NONE, 0, 0, L.l4, 16));
  assert.is(o.length, 1, 'answered');
  assert.is(o[0].frame[layout(o[0].frame).l4 + 13] & 0x04, 0x04, 'with a RST');
  assert.is(n.sw.counters().drops.local_bad_checksum ?? 0, 0);
  // The same partial frame from a port without offloads is a wrong checksum.
  const plain = net();
  assert.is(plain.send(0, f).length, 0);
  assert.is(plain.sw.counters().drops.local_bad_checksum, 1);
});

// ---- GRO: consecutive segments to a port with TSO4 leave as one super-frame (nodes/gro.ts) -------

// The TCP checksum of segment f recomputed (after a test changed its header).
function refresh(f: Uint8Array): Uint8Array {
  const L = layout(f);
  put16(f, csumAt(L), 0);
  put16(f, csumAt(L), (~fold(sum(f, L.l4, L.l4 + L.l4len, pseudo(f, L, L.l4len)))) & 0xffff);
  return f;
}
const vnetOf = (x: { vnet?: Uint8Array }) => x.vnet ? readVnet(x.vnet) : undefined;

// Sends `segs` in one batch on a reference switch without offloads and on one whose egress port has
// `caps`; what leaves the egress, finished as a kernel would, must be the reference's frames. Returns
// what the port with caps got, and its switch.
function groCase(path: Path, caps: number, segs: (flow: Flow) => Uint8Array[]) {
  const ref = net();
  path.setup?.(ref.sw);
  const flow = open(ref, path, 'tcp', 40000);
  const frames = segs(flow);
  const want = ref.batch(flow.path.from, frames).filter((x) => x.port === path.to).map((x) => x.frame);
  const g = net({ [path.to]: caps });
  path.setup?.(g.sw);
  assert.equal(open(g, path, 'tcp', 40000), flow, 'the same connection on both switches');
  const o = g.batch(flow.path.from, frames).filter((x) => x.port === path.to);
  const got = o.flatMap((x) => finish(x.frame, x.vnet));
  assert.is(got.length, want.length, `${path.name}: the segments, once finished`);
  for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `${path.name}: segment ${i} is the reference's bytes`);
  return { o, sw: g.sw, want };
}
const GRO_PATHS = PATHS.filter((p) => ['L2', 'L2 through a port ACL', 'NAT masquerade', 'port mapping', 'hairpin', 'masquerade reply'].includes(p.name));

test('GRO: 14 segments of one flow in one batch, through L2, an ACL, NAT (masquerade, its reply, a port mapping, hairpin), leave a port with TSO4 as one super-frame that the kernel cuts back into them', () => {
  for (const path of GRO_PATHS) {
    const { o, sw } = groCase(path, ALL, (f) => segment(data(f, 'tcp', 20000, 'PA'), 1448));
    assert.is(o.length, 1, `${path.name}: one frame`);
    assert.equal({ ...vnetOf(o[0]), hdrLen: 0 }, { flags: F_NEEDS_CSUM, type: GSO_TCPV4, hdrLen: 0, size: 1448, start: 34, offset: 16 }, path.name);
    assert.is(vnetOf(o[0])!.hdrLen, 14 + 20 + 32, 'hdr_len: the headers with the timestamp option');
    const st = sw.counters().stats;
    assert.is(st.gro_frames, 1);
    assert.is(st.gro_segments, 14);
  }
});

test('GRO: what ends a run (a sequence gap, a bad checksum, PSH, another flow between, an IP id out of step) and ports that do not take super-frames', () => {
  const L2 = PATHS[0];
  const segsOf = (f: Flow) => segment(data(f, 'tcp', 20000, 'PA'), 1448);
  const types = (o: Array<{ vnet?: Uint8Array }>) => o.map((x) => { const v = vnetOf(x); return v && v.type === GSO_TCPV4 ? 'S' : '.'; }).join('');
  // A segment missing: the run stops before the gap and a new one starts after it.
  assert.is(types(groCase(L2, ALL, (f) => segsOf(f).filter((_, i) => i !== 5)).o), 'SS');
  // A segment whose payload was damaged in flight: never merged (the merged frame's checksum would be
  // trusted); it leaves as it came, its bad checksum with it, between the runs around it.
  const bad = groCase(L2, ALL, (f) => segsOf(f).map((s, i) => { if (i === 3) { const c = s.slice(); c[c.length - 1] ^= 0x55; return c; } return s; }));
  assert.is(types(bad.o), 'S.S');
  assert.not.ok(verifyChecksums(bad.o[1].frame), 'the damaged segment still fails its checksum');
  // PSH in the middle: the run takes it as its last segment.
  assert.is(types(groCase(L2, ALL, (f) => segsOf(f).map((s, i) => { if (i === 5) { const c = s.slice(); c[layout(c).l4 + 13] |= 0x08; return refresh(c); } return s; })).o), 'SS');
  // Two flows interleaved: no two adjacent segments of one flow, nothing merged.
  const two = groCase(L2, ALL, (f) => {
    const a = segsOf(f), b = segment(data({ ...f, sport: f.sport + 1 }, 'tcp', 20000, 'PA'), 1448);
    return a.flatMap((s, i) => [s, b[i]]);
  });
  assert.is(types(two.o), '.'.repeat(28));
  // Every IP id the same (not the +1 of one sender's segments): not merged.
  assert.is(types(groCase(L2, ALL, (f) => segsOf(f).map((s) => { const c = s.slice(); put16(c, 18, 0x1000); put16(c, 24, 0); put16(c, 24, (~fold(sum(c, 14, 34))) & 0xffff); return c; })).o), '.'.repeat(14));
  // A port with checksum offload but no TSO4, and a plain port: the segments as they are.
  assert.is(groCase(L2, Offload.CSUM | Offload.TSO6, segsOf).o.length, 14);
  assert.is(groCase(L2, 0, segsOf).o.length, 14);
});

test('GRO over IPv6: 14 segments through L2 and a port ACL leave a port with TSO6 as one TCPV6 super-frame; a flow label or hop limit that changes ends the run; a port with TSO4 alone takes them as they are', () => {
  const V6 = PATHS6.filter((p) => p.name === 'L2 IPv6' || p.name === 'L2 IPv6 through a port ACL');
  assert.is(V6.length, 2);
  const segsOf = (f: Flow) => segment(data(f, 'tcp', 20000, 'PA'), 1448);
  for (const path of V6) {
    const { o, sw } = groCase(path, ALL, segsOf);
    assert.is(o.length, 1, `${path.name}: one frame`);
    assert.equal(vnetOf(o[0]), { flags: F_NEEDS_CSUM, type: GSO_TCPV6, hdrLen: 14 + 40 + 32, size: 1448, start: 54, offset: 16 }, path.name);
    assert.is(get16(o[0].frame, 14 + 4), 32 + 20000, 'the payload length: TCP header and all the data');
    const st = sw.counters().stats;
    assert.is(st.gro_frames, 1);
    assert.is(st.gro_segments, 14);
  }
  const L2v6 = V6[0];
  const types = (o: Array<{ vnet?: Uint8Array }>) => o.map((x) => { const v = vnetOf(x); return v && v.type === GSO_TCPV6 ? 'S' : '.'; }).join('');
  // The flow label of segment 7 on (a sender that rehashed the flow): two runs, as Linux's GRO flushes.
  assert.is(types(groCase(L2v6, ALL, (f) => segsOf(f).map((s, i) => { if (i < 7) return s; const c = s.slice(); c[14 + 3] ^= 0x01; return c; })).o), 'SS');
  // One segment with another hop limit (not in the TCP checksum): it leaves alone, between two runs.
  assert.is(types(groCase(L2v6, ALL, (f) => segsOf(f).map((s, i) => { if (i !== 4) return s; const c = s.slice(); c[14 + 7] -= 1; return c; })).o), 'S.S');
  // A port with TSO4 but not TSO6 gets the segments as they are, and one with TSO6 alone merges them.
  assert.is(types(groCase(L2v6, Offload.CSUM | Offload.TSO4, segsOf).o), '.'.repeat(14));
  assert.is(types(groCase(L2v6, Offload.CSUM | Offload.TSO6, segsOf).o), 'S');
});

test('setOffload refuses TSO without checksum offload, and caps outside the flags', () => {
  const n = net();
  assert.throws(() => n.sw.setOffload(0, Offload.TSO4), /caps/);
  assert.throws(() => n.sw.setOffload(0, 32), /caps/);
  assert.throws(() => n.sw.setOffload(0, Offload.CSUM | Offload.TSO_ECN), /caps/);
  n.sw.setOffload(0, ALL);
  assert.is(n.sw.offload(0), ALL);
  n.sw.modifyPort(0, { network: 1 });
  assert.is(n.sw.dp.exports.port_offload(0), ALL, 'a reconfigured port keeps its offloads');
});

test.run();
