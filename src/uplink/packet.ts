// The socket uplink's packet work: reading the frames the dataplane punts (an Ethernet frame around an
// IPv4 or IPv6 packet, as it would have left the router) and writing the IP packets that go back to
// the guest (UDP datagrams from the host's sockets, ICMP echo replies, ICMP errors, TCP resets).
//
// Why here and not frames.ts: frames.ts builds test and tool frames from readable options and
// dissects anything; this works on the uplink's path, one packet at a time, from byte addresses, and
// refuses what it cannot carry by a named reason instead of describing it. Everything is untrusted:
// a short or inconsistent packet is a refusal, never an exception or a read past the end.
import { onesComplementSum, formatIPv4, formatIPv6 } from '../frames.js';

export const PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58;

export interface IpPacket {
  v6: boolean;
  src: Uint8Array;          // 4 or 16 bytes (views into the packet)
  dst: Uint8Array;
  srcText: string;
  dstText: string;
  protocol: number;
  ip: Uint8Array;           // the whole IP packet, cut to its stated length (a view)
  l4: Uint8Array;           // the transport header and payload (a view)
}

// Why a punted frame was not carried (stats: refused_<reason>).
export type ParseRefusal = 'not_ip' | 'truncated' | 'fragment' | 'ipv6_extension' | 'bad_checksum';

const ETH_IPV4 = 0x0800, ETH_IPV6 = 0x86dd, ETH_VLAN = 0x8100;

// The IP packet inside a punted frame. A fragment is refused: the host's sockets carry datagrams, and
// the guest's stack does not fragment below the path MTU it was told (the uplink has none).
export function parseFrame(frame: Uint8Array): IpPacket | ParseRefusal {
  if (frame.length < 14) return 'truncated';
  let off = 12;
  let type = (frame[off] << 8) | frame[off + 1];
  if (type === ETH_VLAN) {
    if (frame.length < 18) return 'truncated';
    off += 4;
    type = (frame[off] << 8) | frame[off + 1];
  }
  return parseIp(frame.subarray(off + 2), type);
}

export function parseIp(b: Uint8Array, ethertype?: number): IpPacket | ParseRefusal {
  if (b.length < 1) return 'truncated';
  const version = b[0] >> 4;
  if (ethertype === ETH_IPV4 || (ethertype === undefined && version === 4)) {
    if (b.length < 20 || version !== 4) return version !== 4 ? 'not_ip' : 'truncated';
    const hl = (b[0] & 15) * 4, total = (b[2] << 8) | b[3];
    if (hl < 20 || total < hl || total > b.length) return 'truncated';
    if ((((b[6] << 8) | b[7]) & 0x3fff) !== 0) return 'fragment';
    const ip = b.subarray(0, total);
    const src = ip.subarray(12, 16), dst = ip.subarray(16, 20);
    return { v6: false, src, dst, srcText: formatIPv4(src), dstText: formatIPv4(dst), protocol: ip[9], ip, l4: ip.subarray(hl) };
  }
  if (ethertype === ETH_IPV6 || (ethertype === undefined && version === 6)) {
    if (b.length < 40 || version !== 6) return version !== 6 ? 'not_ip' : 'truncated';
    const total = 40 + ((b[4] << 8) | b[5]);
    if (total > b.length) return 'truncated';
    const ip = b.subarray(0, total);
    const next = ip[6];
    if (next !== PROTO_TCP && next !== PROTO_UDP && next !== PROTO_ICMPV6) return next === 44 ? 'fragment' : 'ipv6_extension';
    const src = ip.subarray(8, 24), dst = ip.subarray(24, 40);
    return { v6: true, src, dst, srcText: formatIPv6(src), dstText: formatIPv6(dst), protocol: next, ip, l4: ip.subarray(40) };
  }
  return 'not_ip';
}

function pseudoSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  const s = onesComplementSum(dst, onesComplementSum(src));
  return src.length === 4 ? s + protocol + length : s + Math.floor(length / 0x10000) + (length & 0xffff) + protocol;
}

// Whether the transport checksum of p is right (UDP over IPv4 may have none). ICMPv4 has no
// pseudo-header.
export function checksumOk(p: IpPacket): boolean {
  if (p.protocol === PROTO_UDP && !p.v6 && p.l4.length >= 8 && p.l4[6] === 0 && p.l4[7] === 0) return true;
  const pseudo = p.protocol === PROTO_ICMP ? 0 : pseudoSum(p.src, p.dst, p.protocol, p.l4.length);
  return onesComplementSum(p.l4, pseudo) === 0xffff;
}

// ---- writing ----

let ipId = 1;

// A complete IP packet from src to dst around the transport bytes `l4`, whose checksum (at the
// protocol's offset) is filled here. TTL / hop limit 64; IPv4 without DF, so that the router may
// fragment a large reply to the guest's MTU.
export function ipPacket(src: Uint8Array, dst: Uint8Array, protocol: number, l4: Uint8Array): Uint8Array {
  const v6 = src.length === 16;
  const hl = v6 ? 40 : 20;
  const p = new Uint8Array(hl + l4.length);
  const seg = p.subarray(hl);
  seg.set(l4);
  const at = protocol === PROTO_UDP ? 6 : protocol === PROTO_TCP ? 16 : 2;
  seg[at] = seg[at + 1] = 0;
  let c = ~onesComplementSum(seg, protocol === PROTO_ICMP ? 0 : pseudoSum(src, dst, protocol, seg.length)) & 0xffff;
  if (protocol === PROTO_UDP && c === 0) c = 0xffff;
  seg[at] = c >> 8; seg[at + 1] = c & 255;
  if (v6) {
    p[0] = 0x60;
    p[4] = l4.length >> 8; p[5] = l4.length & 255;
    p[6] = protocol; p[7] = 64;
    p.set(src, 8); p.set(dst, 24);
  } else {
    const total = p.length;
    p[0] = 0x45;
    p[2] = total >> 8; p[3] = total & 255;
    ipId = (ipId + 1) & 0xffff;
    p[4] = ipId >> 8; p[5] = ipId & 255;
    p[8] = 64; p[9] = protocol;
    p.set(src, 12); p.set(dst, 16);
    const h = ~onesComplementSum(p.subarray(0, 20)) & 0xffff;
    p[10] = h >> 8; p[11] = h & 255;
  }
  return p;
}

export function udpPacket(src: Uint8Array, sport: number, dst: Uint8Array, dport: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  u[0] = sport >> 8; u[1] = sport & 255; u[2] = dport >> 8; u[3] = dport & 255;
  u[4] = u.length >> 8; u[5] = u.length & 255;
  u.set(payload, 8);
  return ipPacket(src, dst, PROTO_UDP, u);
}

// An ICMP / ICMPv6 echo reply from `from` to `to`: the message as the host's ping socket received it
// (type on, the kernel's identifier), with the guest's identifier put back.
export function echoReply(from: Uint8Array, to: Uint8Array, message: Uint8Array, id: number): Uint8Array {
  const m = message.slice();
  m[4] = id >> 8; m[5] = id & 255;
  return ipPacket(from, to, from.length === 16 ? PROTO_ICMPV6 : PROTO_ICMP, m);
}

// Destination unreachable (ICMP type 3 / ICMPv6 type 1) from `from` about packet `quoted` (which went
// the other way): as much of it as RFC 792 (header + 8) / RFC 4443 (up to 1280 bytes in all) asks.
export const UNREACH = {
  port: [3, 4], admin: [13, 1], host: [1, 3], net: [0, 0],
} as const;
export function unreachable(from: Uint8Array, quoted: Uint8Array, kind: keyof typeof UNREACH): Uint8Array {
  const v6 = from.length === 16;
  const to = v6 ? quoted.subarray(8, 24) : quoted.subarray(12, 16);
  const qlen = v6 ? Math.min(quoted.length, 1280 - 48) : Math.min(quoted.length, (quoted[0] & 15) * 4 + 8);
  const m = new Uint8Array(8 + qlen);
  m[0] = v6 ? 1 : 3;
  m[1] = UNREACH[kind][v6 ? 1 : 0];
  m.set(quoted.subarray(0, qlen), 8);
  return ipPacket(from, to.slice(), v6 ? PROTO_ICMPV6 : PROTO_ICMP, m);
}

// The RST a closed port answers segment p with (RFC 9293 §3.10.7.1): with ACK, seq = SEG.ACK; without,
// RST+ACK with ack = SEG.SEQ + SEG.LEN. Undefined for a RST or a short header.
export function resetFor(p: IpPacket): Uint8Array | undefined {
  const t = p.l4;
  if (t.length < 20) return undefined;
  const flags = t[13];
  if (flags & 4) return undefined;
  const hl = (t[12] >> 4) * 4;
  const r = new Uint8Array(20);
  r.set(t.subarray(2, 4), 0); r.set(t.subarray(0, 2), 2);
  const dv = new DataView(r.buffer);
  if (flags & 16) {
    r.set(t.subarray(8, 12), 4);
    r[13] = 4;
  } else {
    const seq = new DataView(t.buffer, t.byteOffset).getUint32(4);
    const len = Math.max(0, t.length - hl) + (flags & 2 ? 1 : 0) + (flags & 1 ? 1 : 0);
    dv.setUint32(8, (seq + len) >>> 0);
    r[13] = 4 | 16;
  }
  r[12] = 5 << 4;
  return ipPacket(p.dst.slice(), p.src.slice(), PROTO_TCP, r);
}

// Packet `ip` (one of ipPacket's: no options, no extension headers) as fragments of at most `mtu`
// bytes, or [ip] when it fits. We are the packet's source, so IPv6 fragments too (a Fragment header,
// RFC 8200 §4.5). For answers that do not pass a router hop that would (the gateway's own, and IPv6,
// which routers never fragment).
let fragId = 1;
export function fragment(ip: Uint8Array, mtu: number): Uint8Array[] {
  if (ip.length <= mtu) return [ip];
  const v6 = ip[0] >> 4 === 6;
  const hl = v6 ? 40 : 20;
  const room = ((mtu - hl - (v6 ? 8 : 0)) & ~7);
  if (room < 8) return [];
  const body = ip.subarray(hl);
  const out: Uint8Array[] = [];
  fragId = (fragId + 1) >>> 0;
  for (let off = 0; off < body.length; off += room) {
    const chunk = body.subarray(off, Math.min(body.length, off + room));
    const more = off + chunk.length < body.length ? 1 : 0;
    if (v6) {
      const f = new Uint8Array(48 + chunk.length);
      f.set(ip.subarray(0, 40));
      const plen = 8 + chunk.length;
      f[4] = plen >> 8; f[5] = plen & 255; f[6] = 44;
      f[40] = ip[6];
      const fo = (off & ~7) | more;
      f[42] = fo >> 8; f[43] = fo & 255;
      new DataView(f.buffer).setUint32(44, fragId);
      f.set(chunk, 48);
      out.push(f);
    } else {
      const f = new Uint8Array(20 + chunk.length);
      f.set(ip.subarray(0, 20));
      f[2] = f.length >> 8; f[3] = f.length & 255;
      const fo = (more << 13) | (off >> 3);
      f[6] = fo >> 8; f[7] = fo & 255;
      f[10] = f[11] = 0;
      const h = ~onesComplementSum(f.subarray(0, 20)) & 0xffff;
      f[10] = h >> 8; f[11] = h & 255;
      f.set(chunk, 20);
      out.push(f);
    }
  }
  return out;
}

// An Ethernet frame around IP packet `ip`.
export function frame(dstMac: Uint8Array, srcMac: Uint8Array, ip: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + ip.length);
  f.set(dstMac, 0); f.set(srcMac, 6);
  const v6 = ip[0] >> 4 === 6;
  f[12] = v6 ? 0x86 : 0x08; f[13] = v6 ? 0xdd : 0x00;
  f.set(ip, 14);
  return f;
}

export const port = (l4: Uint8Array, at: number): number => (l4[at] << 8) | l4[at + 1];
