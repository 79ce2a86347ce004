// Frame builders and a dissector, in plain TypeScript.
//
// Why this file exists: the dataplane parses and rewrites headers in WebAssembly, and a test that
// checks it with the dataplane's own wire code proves nothing. This is a second, independent
// implementation of the same wire formats, written for clarity rather than speed, so that tests
// can build the frames they feed in and judge the frames that come out.
//
// Why it is shaped this way:
// - Frames are composed inside out, but a TCP, UDP or ICMPv6 checksum covers a pseudo-header made of
//   the IP addresses, which only the IP layer knows. So an L4 builder returns a deferred `L4`
//   (protocol + `build(src, dst)`), and the IPv4 or IPv6 builder calls it with its own addresses:
//   4-byte addresses give the IPv4 pseudo-header (RFC 793/768), 16-byte ones the IPv6 one (RFC 8200
//   §8.1), whose destination is the final one when a Routing header is present.
// - Every field a malformed-input test needs to break (lengths, IHL, checksums) can be overridden;
//   everything else is derived, so a plain call builds a correct frame.
// - `dissect` never throws: it is pointed at dataplane output, which may be wrong in any way. A layer
//   whose fixed header is cut short is left out. A checksum is judged (`checksumOk`) only when every
//   byte it covers is in the frame; a truncated datagram or a fragment leaves `checksumOk` absent
//   rather than guessing. Judging is the receiver's rule of RFC 1071 §1(3): the one's-complement sum
//   over the covered bytes, checksum field included, is all ones.

export type Bytes = Uint8Array;
/** A MAC address as "02:00:00:00:00:01" (or with '-') or as 6 bytes. */
export type MacAddress = string | Bytes;
/** An IP address as text or as bytes (4 for IPv4, 16 for IPv6). */
export type IPAddress = string | Bytes;

const EMPTY: Bytes = new Uint8Array(0);

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

// IPv6 extension headers that `dissect` walks past (RFC 8200 §4): their Next Header is byte 0.
const IPV6_HOP_BY_HOP = 0;
const IPV6_ROUTING = 43;
const IPV6_FRAGMENT = 44;
const IPV6_AUTH = 51;
const IPV6_DEST_OPTS = 60;

// ---------------------------------------------------------------------------------------------
// Addresses

export function parseMac(s: string): Bytes {
  const sep = String(s).includes('-') ? '-' : ':';
  const parts = String(s).split(sep);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`invalid MAC address ${JSON.stringify(s)}`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

export function formatMac(b: Bytes, off = 0): string {
  need(b, off, 6, 'MAC address');
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(b[off + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** A strict dotted quad: four decimal octets, no leading zeros (which some parsers read as octal). */
export function parseIPv4(s: string): Bytes {
  const parts = String(s).split('.');
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) {
    throw new Error(`invalid IPv4 address ${JSON.stringify(s)}`);
  }
  return Uint8Array.from(parts, Number);
}

export function formatIPv4(b: Bytes, off = 0): string {
  need(b, off, 4, 'IPv4 address');
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 4291 §2.2 text forms: eight groups, `::` once for one or more zero groups, an IPv4 tail. */
export function parseIPv6(s: string): Bytes {
  const bad = () => new Error(`invalid IPv6 address ${JSON.stringify(s)}`);
  let text = String(s);
  if (text.includes('.')) {
    // The last 32 bits written as a dotted quad: rewrite them as two hex groups.
    const cut = text.lastIndexOf(':');
    if (cut < 0) throw bad();
    let v4: Bytes;
    try {
      v4 = parseIPv4(text.slice(cut + 1));
    } catch {
      throw bad();
    }
    text = `${text.slice(0, cut + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) throw bad();
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (![...head, ...tail].every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) throw bad();
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) throw bad();
  const out = new Uint8Array(16);
  const put = (g: string, i: number) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  };
  head.forEach((g, i) => put(g, i));
  tail.forEach((g, i) => put(g, 8 - tail.length + i));
  return out;
}

/** RFC 5952: lowercase, no leading zeros, the longest run (first if tied) of two or more zero groups
 *  as `::`. IPv4-mapped addresses are written ::ffff:a.b.c.d (RFC 5952 §5), as inet_ntop does. */
export function formatIPv6(b: Bytes, off = 0): string {
  need(b, off, 16, 'IPv6 address');
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + 2 * i] << 8) | b[off + 2 * i + 1]);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${formatIPv4(b, off + 12)}`;
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

function need(b: Bytes, off: number, len: number, what: string): void {
  if (!(off >= 0 && off + len <= b.length)) throw new RangeError(`${what} needs ${len} bytes at offset ${off}, have ${b.length}`);
}

function macBytes(a: MacAddress, what: string): Bytes {
  if (typeof a === 'string') return parseMac(a);
  if (a.length !== 6) throw new Error(`${what}: a MAC address is 6 bytes, got ${a.length}`);
  return a;
}

function ipv4Bytes(a: IPAddress, what: string): Bytes {
  if (typeof a === 'string') return parseIPv4(a);
  if (a.length !== 4) throw new Error(`${what}: an IPv4 address is 4 bytes, got ${a.length}`);
  return a;
}

function ipv6Bytes(a: IPAddress, what: string): Bytes {
  if (typeof a === 'string') return parseIPv6(a);
  if (a.length !== 16) throw new Error(`${what}: an IPv6 address is 16 bytes, got ${a.length}`);
  return a;
}

function uint(name: string, v: number, bits: number): number {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) throw new RangeError(`${name} must be a ${bits}-bit unsigned integer, got ${v}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// The Internet checksum (RFC 1071)

/** The 16-bit one's-complement sum of `data` as big-endian words (an odd last byte padded with zero),
 *  added to `acc`. Chain calls to sum a pseudo-header and a segment; every chunk but the last must
 *  then have even length. */
export function onesComplementSum(data: Bytes, acc = 0): number {
  let s = acc;
  const even = data.length & ~1;
  let i = 0;
  // Long data at an even offset is summed as 32-bit words in the machine's order (a 16-bit word first
  // when the offset is 2 past a multiple of 4, one after when one is left): the one's-complement sum
  // does not depend on byte order (RFC 1071 §2(B)), so a little-endian sum is the big-endian one with
  // its two bytes swapped, and 32-bit words fold to the same 16-bit sum (2^16 ≡ 1 modulo 0xffff). The
  // total stays exact in a double (at most 2^14 words of 2^32 for 64 KiB). A Uint8Array subarray of an
  // ArrayBuffer is all the view needs. Four sums, not one: one double's chain of adds bounds the loop
  // (its latency each word), four independent ones run 2-3 times faster (10 against 21-29 us for
  // 64 KiB here), which is a tenth of the socket uplink's CPU when it verifies a guest's 64 KiB segments.
  if (even >= 64 && (data.byteOffset & 1) === 0 && LITTLE_ENDIAN) {
    let le = 0, k = 0;
    if (data.byteOffset & 2) { le = data[0] | (data[1] << 8); k = 2; }
    const words = (even - k) >> 2;
    const w = new Uint32Array(data.buffer, data.byteOffset + k, words);
    let a = 0, b = 0, c = 0, d = 0, j = 0;
    for (const n4 = words & ~3; j < n4; j += 4) { a += w[j]; b += w[j + 1]; c += w[j + 2]; d += w[j + 3]; }
    for (; j < words; j++) le += w[j];
    le += a + b + c + d;
    k += words * 4;
    if (k < even) le += data[k] | (data[k + 1] << 8);
    while (le > 0xffff) le = (le % 0x10000) + Math.floor(le / 0x10000);
    s += ((le & 0xff) << 8) | (le >> 8);
    i = even;
  }
  for (; i < even; i += 2) s += (data[i] << 8) | data[i + 1];
  if (data.length & 1) s += data[even] << 8;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The checksum field value: the complement of the one's-complement sum. */
export function internetChecksum(data: Bytes, initial = 0): number {
  return ~onesComplementSum(data, initial) & 0xffff;
}

/** The one's-complement sum (unfolded) of the IPv4 or IPv6 pseudo-header, by the length of `src`. */
export function pseudoHeaderSum(src: Bytes, dst: Bytes, protocol: number, length: number): number {
  const s = onesComplementSum(dst, onesComplementSum(src));
  // IPv4: zero, protocol, 16-bit length. IPv6: 32-bit length, three zero bytes, next header.
  return src.length === 4 ? s + protocol + length : s + Math.floor(length / 0x10000) + (length & 0xffff) + protocol;
}

function checkPseudoAddresses(src: Bytes, dst: Bytes, what: string): void {
  if (!((src.length === 4 || src.length === 16) && src.length === dst.length)) {
    throw new Error(`${what}: pseudo-header addresses must both be 4 or both 16 bytes, got ${src.length} and ${dst.length}`);
  }
}

// ---------------------------------------------------------------------------------------------
// L4 builders

/** A transport message waiting for its IP addresses (the pseudo-header needs them). */
export interface L4 {
  protocol: number;
  build(src: Bytes, dst: Bytes): Bytes;
}

// RFC 793 control bits, with RFC 3168's ECE and CWR, in bit order.
const TCP_FLAG_LETTERS = 'FSRPAUEC';

export function parseTcpFlags(s: string): number {
  let flags = 0;
  for (const c of s.toUpperCase()) {
    const bit = TCP_FLAG_LETTERS.indexOf(c);
    if (bit < 0) throw new Error(`invalid TCP flags ${JSON.stringify(s)}: use letters from ${TCP_FLAG_LETTERS}`);
    flags |= 1 << bit;
  }
  return flags;
}

export function formatTcpFlags(flags: number): string {
  let s = '';
  for (let bit = 0; bit < TCP_FLAG_LETTERS.length; bit++) if (flags & (1 << bit)) s += TCP_FLAG_LETTERS[bit];
  return s;
}

export interface TcpOptions {
  srcPort: number;
  dstPort: number;
  seq?: number;
  ack?: number;
  /** A number, or letters from "FSRPAUEC" such as "SA". */
  flags?: number | string;
  window?: number;
  urgent?: number;
  /** Raw option bytes, already padded by the caller to a multiple of 4 (at most 40). */
  options?: Bytes;
  payload?: Bytes;
  /** Written instead of the computed checksum (for bad-checksum tests). */
  checksum?: number;
}

export function tcp(o: TcpOptions): L4 {
  const flags = typeof o.flags === 'string' ? parseTcpFlags(o.flags) : uint('TCP flags', o.flags ?? 0, 8);
  const options = o.options ?? EMPTY;
  if (options.length % 4 !== 0 || options.length > 40) {
    throw new Error(`TCP options must be a multiple of 4 bytes and at most 40, got ${options.length}`);
  }
  const payload = o.payload ?? EMPTY;
  const fields = [
    uint('TCP srcPort', o.srcPort, 16), uint('TCP dstPort', o.dstPort, 16),
    uint('TCP seq', o.seq ?? 0, 32), uint('TCP ack', o.ack ?? 0, 32),
    uint('TCP window', o.window ?? 65535, 16), uint('TCP urgent', o.urgent ?? 0, 16),
  ];
  const [srcPort, dstPort, seq, ack, window, urgent] = fields;
  return {
    protocol: IPPROTO_TCP,
    build(src, dst) {
      checkPseudoAddresses(src, dst, 'TCP');
      const headerLength = 20 + options.length;
      const seg = new Uint8Array(headerLength + payload.length);
      const v = new DataView(seg.buffer);
      v.setUint16(0, srcPort);
      v.setUint16(2, dstPort);
      v.setUint32(4, seq);
      v.setUint32(8, ack);
      seg[12] = (headerLength / 4) << 4;
      seg[13] = flags;
      v.setUint16(14, window);
      v.setUint16(18, urgent);
      seg.set(options, 20);
      seg.set(payload, headerLength);
      v.setUint16(16, o.checksum ?? internetChecksum(seg, pseudoHeaderSum(src, dst, IPPROTO_TCP, seg.length)));
      return seg;
    },
  };
}

export interface UdpOptions {
  srcPort: number;
  dstPort: number;
  payload?: Bytes;
  /** Send checksum 0, "no checksum" (allowed on IPv4 only, RFC 768; RFC 8200 §8.1 forbids it on IPv6). */
  zeroChecksum?: boolean;
  /** Written instead of the computed checksum. */
  checksum?: number;
}

export function udp(o: UdpOptions): L4 {
  const srcPort = uint('UDP srcPort', o.srcPort, 16), dstPort = uint('UDP dstPort', o.dstPort, 16);
  const payload = o.payload ?? EMPTY;
  const length = uint('UDP length', 8 + payload.length, 16);
  return {
    protocol: IPPROTO_UDP,
    build(src, dst) {
      checkPseudoAddresses(src, dst, 'UDP');
      const seg = new Uint8Array(length);
      const v = new DataView(seg.buffer);
      v.setUint16(0, srcPort);
      v.setUint16(2, dstPort);
      v.setUint16(4, length);
      seg.set(payload, 8);
      let checksum = o.checksum;
      if (checksum === undefined) {
        // RFC 768: a computed 0 is sent as all ones; 0 in the field means "not computed".
        checksum = o.zeroChecksum ? 0 : internetChecksum(seg, pseudoHeaderSum(src, dst, IPPROTO_UDP, length)) || 0xffff;
      }
      v.setUint16(6, checksum);
      return seg;
    },
  };
}

export interface IcmpOptions {
  type: number;
  code?: number;
  /** Identifier and sequence number, the second word of echo messages. */
  id?: number;
  seq?: number;
  /** 4 bytes that replace id/seq, e.g. unused + next-hop MTU in "fragmentation needed". */
  rest?: Bytes;
  payload?: Bytes;
  /** Written instead of the computed checksum. */
  checksum?: number;
}

function icmpMessage(o: IcmpOptions, what: string): Bytes {
  const rest = o.rest;
  if (rest && rest.length !== 4) throw new Error(`${what} rest must be 4 bytes, got ${rest.length}`);
  const payload = o.payload ?? EMPTY;
  const msg = new Uint8Array(8 + payload.length);
  const v = new DataView(msg.buffer);
  msg[0] = uint(`${what} type`, o.type, 8);
  msg[1] = uint(`${what} code`, o.code ?? 0, 8);
  if (rest) msg.set(rest, 4);
  else {
    v.setUint16(4, uint(`${what} id`, o.id ?? 0, 16));
    v.setUint16(6, uint(`${what} seq`, o.seq ?? 0, 16));
  }
  msg.set(payload, 8);
  return msg;
}

/** ICMP for IPv4 (RFC 792): the checksum covers the ICMP message alone. */
export function icmp(o: IcmpOptions): L4 {
  return {
    protocol: IPPROTO_ICMP,
    build() {
      const msg = icmpMessage(o, 'ICMP');
      new DataView(msg.buffer).setUint16(2, o.checksum ?? internetChecksum(msg));
      return msg;
    },
  };
}

/** ICMPv6 (RFC 4443 §2.3): the checksum includes the IPv6 pseudo-header. */
export function icmpv6(o: IcmpOptions): L4 {
  return {
    protocol: IPPROTO_ICMPV6,
    build(src, dst) {
      if (src.length !== 16 || dst.length !== 16) throw new Error('ICMPv6 needs IPv6 addresses for its pseudo-header');
      const msg = icmpMessage(o, 'ICMPv6');
      new DataView(msg.buffer).setUint16(2, o.checksum ?? internetChecksum(msg, pseudoHeaderSum(src, dst, IPPROTO_ICMPV6, msg.length)));
      return msg;
    },
  };
}

/** Any other upper-layer protocol, bytes as given. */
export function rawL4(protocol: number, bytes: Bytes): L4 {
  uint('protocol', protocol, 8);
  return { protocol, build: () => bytes };
}

// ---------------------------------------------------------------------------------------------
// L3 builders

/** A network-layer packet and the EtherType that announces it. */
export interface L3 {
  ethertype: number;
  bytes: Bytes;
}

function upperLayer(payload: L4 | Bytes, protocol: number | undefined, src: Bytes, dst: Bytes, what: string) {
  if (payload instanceof Uint8Array) {
    if (protocol === undefined) throw new Error(`${what}: protocol is required when the payload is raw bytes`);
    return { protocol: uint(`${what} protocol`, protocol, 8), bytes: payload };
  }
  return { protocol: uint(`${what} protocol`, protocol ?? payload.protocol, 8), bytes: payload.build(src, dst) };
}

export interface IPv4Options {
  src: IPAddress;
  dst: IPAddress;
  ttl?: number;
  id?: number;
  tos?: number;
  df?: boolean;
  mf?: boolean;
  /** In 8-byte units. */
  fragOffset?: number;
  /** Raw option bytes, a multiple of 4, at most 40. */
  options?: Bytes;
  /** The Protocol field; required when `payload` is raw bytes, else taken from the L4. */
  protocol?: number;
  payload: L4 | Bytes;
  /** Overrides, for malformed-packet tests. The checksum is still computed over the real header. */
  totalLength?: number;
  ihl?: number;
  checksum?: number;
}

export function ipv4(o: IPv4Options): L3 {
  const src = ipv4Bytes(o.src, 'IPv4 src'), dst = ipv4Bytes(o.dst, 'IPv4 dst');
  const options = o.options ?? EMPTY;
  if (options.length % 4 !== 0 || options.length > 40) {
    throw new Error(`IPv4 options must be a multiple of 4 bytes and at most 40, got ${options.length}`);
  }
  const { protocol, bytes: body } = upperLayer(o.payload, o.protocol, src, dst, 'IPv4');
  const headerLength = 20 + options.length;
  const totalLength = uint('IPv4 totalLength', o.totalLength ?? headerLength + body.length, 16);
  const pkt = new Uint8Array(headerLength + body.length);
  const v = new DataView(pkt.buffer);
  pkt[0] = 0x40 | uint('IPv4 ihl', o.ihl ?? headerLength / 4, 4);
  pkt[1] = uint('IPv4 tos', o.tos ?? 0, 8);
  v.setUint16(2, totalLength);
  v.setUint16(4, uint('IPv4 id', o.id ?? 0, 16));
  v.setUint16(6, (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | uint('IPv4 fragOffset', o.fragOffset ?? 0, 13));
  pkt[8] = uint('IPv4 ttl', o.ttl ?? 64, 8);
  pkt[9] = protocol;
  pkt.set(src, 12);
  pkt.set(dst, 16);
  pkt.set(options, 20);
  v.setUint16(10, o.checksum ?? internetChecksum(pkt.subarray(0, headerLength)));
  pkt.set(body, headerLength);
  return { ethertype: ETHERTYPE_IPV4, bytes: pkt };
}

/** An IPv6 extension header as raw bytes; the builder writes its Next Header (byte 0). */
export interface IPv6Extension {
  /** This header's own type, written into the Next Header field of the header before it. */
  nextHeaderType: number;
  bytes: Bytes;
}

export interface IPv6Options {
  src: IPAddress;
  dst: IPAddress;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  extensions?: IPv6Extension[];
  payload: L4 | Bytes;
  /** The upper-layer Next Header; required when `payload` is raw bytes. */
  protocol?: number;
  /** Override, for malformed-packet tests. */
  payloadLength?: number;
}

export function ipv6(o: IPv6Options): L3 {
  const src = ipv6Bytes(o.src, 'IPv6 src'), dst = ipv6Bytes(o.dst, 'IPv6 dst');
  const exts = o.extensions ?? [];
  let finalDst = dst;
  for (const e of exts) {
    uint('IPv6 extension nextHeaderType', e.nextHeaderType, 8);
    if (e.bytes.length < 8 || e.bytes.length % 8 !== 0) {
      throw new Error(`IPv6 extension header ${e.nextHeaderType} must be a multiple of 8 bytes, got ${e.bytes.length}`);
    }
    if (e.nextHeaderType === IPV6_ROUTING) finalDst = routingFinalDestination(e.bytes) ?? finalDst;
  }
  const { protocol, bytes: body } = upperLayer(o.payload, o.protocol, src, finalDst, 'IPv6');
  const extLength = exts.reduce((n, e) => n + e.bytes.length, 0);
  const pkt = new Uint8Array(40 + extLength + body.length);
  const v = new DataView(pkt.buffer);
  v.setUint32(0, ((6 << 28) | (uint('IPv6 trafficClass', o.trafficClass ?? 0, 8) << 20) | uint('IPv6 flowLabel', o.flowLabel ?? 0, 20)) >>> 0);
  v.setUint16(4, uint('IPv6 payloadLength', o.payloadLength ?? extLength + body.length, 16));
  pkt[6] = exts.length ? exts[0].nextHeaderType : protocol;
  pkt[7] = uint('IPv6 hopLimit', o.hopLimit ?? 64, 8);
  pkt.set(src, 8);
  pkt.set(dst, 24);
  let off = 40;
  exts.forEach((e, i) => {
    pkt.set(e.bytes, off);
    pkt[off] = i + 1 < exts.length ? exts[i + 1].nextHeaderType : protocol;
    off += e.bytes.length;
  });
  pkt.set(body, off);
  return { ethertype: ETHERTYPE_IPV6, bytes: pkt };
}

// The final destination named by a Routing header with segments left (RFC 8200 §8.1): the last
// address of a type 0 or type 2 header, Segment List[0] of a Segment Routing header (RFC 8754).
function routingFinalDestination(rh: Bytes): Bytes | undefined {
  const len = Math.min(rh.length, (rh[1] + 1) * 8);
  if (rh[3] === 0 || len < 24) return undefined;
  const type = rh[2];
  if (type === 0 || type === 2) {
    const n = Math.floor((len - 8) / 16);
    return rh.slice(8 + (n - 1) * 16, 8 + n * 16);
  }
  if (type === 4) return rh.slice(8, 24);
  return undefined;
}

export interface ArpOptions {
  op: 1 | 2 | 'request' | 'reply';
  senderMac: MacAddress;
  senderIp: IPAddress;
  targetMac?: MacAddress;
  targetIp: IPAddress;
}

/** ARP for IPv4 over Ethernet (RFC 826): 28 bytes. */
export function arp(o: ArpOptions): L3 {
  const op = o.op === 'request' ? 1 : o.op === 'reply' ? 2 : o.op;
  const pkt = new Uint8Array(28);
  const v = new DataView(pkt.buffer);
  v.setUint16(0, 1); // hardware type: Ethernet
  v.setUint16(2, ETHERTYPE_IPV4);
  pkt[4] = 6;
  pkt[5] = 4;
  v.setUint16(6, uint('ARP op', op, 16));
  pkt.set(macBytes(o.senderMac, 'ARP senderMac'), 8);
  pkt.set(ipv4Bytes(o.senderIp, 'ARP senderIp'), 14);
  pkt.set(macBytes(o.targetMac ?? '00:00:00:00:00:00', 'ARP targetMac'), 18);
  pkt.set(ipv4Bytes(o.targetIp, 'ARP targetIp'), 24);
  return { ethertype: ETHERTYPE_ARP, bytes: pkt };
}

// ---------------------------------------------------------------------------------------------
// Ethernet

/** An 802.1Q tag's control information. */
export interface Vlan {
  vid: number;
  pcp?: number;
  dei?: boolean;
}

export interface EthernetOptions {
  dst: MacAddress;
  src: MacAddress;
  /** A VLAN id, or the full tag: inserts an 802.1Q tag (TPID 0x8100). */
  vlan?: number | Vlan;
  /** Required with a raw-bytes payload; overrides the payload's own EtherType otherwise. */
  ethertype?: number;
  payload: Bytes | L3;
  /** Pad with zeros to the 60-byte minimum frame (64 with the FCS this builder leaves out). */
  padTo60?: boolean;
}

/** An Ethernet II frame, without FCS. */
export function ethernet(o: EthernetOptions): Bytes {
  const body = o.payload instanceof Uint8Array ? o.payload : o.payload.bytes;
  const ethertype = o.ethertype ?? (o.payload instanceof Uint8Array ? undefined : o.payload.ethertype);
  if (ethertype === undefined) throw new Error('ethernet: ethertype is required when the payload is raw bytes');
  const tag = o.vlan === undefined ? undefined : typeof o.vlan === 'number' ? { vid: o.vlan } : o.vlan;
  const headerLength = tag ? 18 : 14;
  const length = Math.max(headerLength + body.length, o.padTo60 ? 60 : 0);
  const frame = new Uint8Array(length);
  const v = new DataView(frame.buffer);
  frame.set(macBytes(o.dst, 'ethernet dst'), 0);
  frame.set(macBytes(o.src, 'ethernet src'), 6);
  if (tag) {
    v.setUint16(12, ETHERTYPE_VLAN);
    v.setUint16(14, (uint('VLAN pcp', tag.pcp ?? 0, 3) << 13) | (tag.dei ? 0x1000 : 0) | uint('VLAN vid', tag.vid, 12));
  }
  v.setUint16(headerLength - 2, uint('ethertype', ethertype, 16));
  frame.set(body, headerLength);
  return frame;
}

// ---------------------------------------------------------------------------------------------
// The dissector

export interface ArpInfo { op: number; senderMac: string; senderIp: string; targetMac: string; targetIp: string }

export interface IPv4Info {
  src: string; dst: string; tos: number; ttl: number; protocol: number; id: number;
  df: boolean; mf: boolean; fragOffset: number; headerLength: number; totalLength: number;
  checksum: number;
  /** Absent when the header runs past the end of the frame; false when IHL is below 5. */
  checksumOk?: boolean;
}

export interface IPv6Info {
  src: string; dst: string; trafficClass: number; flowLabel: number; hopLimit: number;
  nextHeader: number; payloadLength: number;
  /** The protocol after the extension headers, and where (from the start of the frame) its bytes
   *  begin. Absent when an extension header is cut short. */
  upperProtocol?: number;
  upperOffset?: number;
}

export interface TcpInfo {
  srcPort: number; dstPort: number; seq: number; ack: number; headerLength: number;
  flags: number; flagString: string; window: number; checksum: number; urgent: number;
  /** Absent when the segment is not all in the frame (truncated, or a first fragment). */
  checksumOk?: boolean;
}

export interface UdpInfo {
  srcPort: number; dstPort: number; length: number; checksum: number;
  /** True for checksum 0 on IPv4 ("not computed"), false for it on IPv6. Absent when the datagram
   *  is not all in the frame. */
  checksumOk?: boolean;
}

export interface IcmpInfo {
  type: number; code: number; id: number; seq: number; checksum: number;
  /** Absent when the message is not all in the frame. */
  checksumOk?: boolean;
  /** ICMPv4 errors only: the header checksum of the quoted IPv4 header, when it is complete. */
  embeddedChecksumOk?: boolean;
}

export interface Dissection {
  dst?: string;
  src?: string;
  vlan?: { vid: number; pcp: number; dei: boolean };
  ethertype?: number;
  arp?: ArpInfo;
  ipv4?: IPv4Info;
  ipv6?: IPv6Info;
  tcp?: TcpInfo;
  udp?: UdpInfo;
  icmp?: IcmpInfo;
  icmpv6?: IcmpInfo;
  /** The L4 payload, a copy. */
  payload?: Bytes;
}

const u16 = (b: Bytes, o: number) => (b[o] << 8) | b[o + 1];
const u32 = (b: Bytes, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
// The receiver's check: covered bytes plus pseudo-header sum to all ones.
const sumsToOnes = (bytes: Bytes, pseudo = 0) => onesComplementSum(bytes, pseudo) === 0xffff;

/** Describes a frame layer by layer. Never throws; see the top of this file for what is left out. */
export function dissect(frame: Bytes): Dissection {
  const d: Dissection = {};
  if (frame.length < 14) return d;
  d.dst = formatMac(frame, 0);
  d.src = formatMac(frame, 6);
  let ethertype = u16(frame, 12);
  let off = 14;
  if (ethertype === ETHERTYPE_VLAN && frame.length >= 18) {
    const tci = u16(frame, 14);
    d.vlan = { vid: tci & 0xfff, pcp: tci >> 13, dei: (tci & 0x1000) !== 0 };
    ethertype = u16(frame, 16);
    off = 18;
  }
  d.ethertype = ethertype;
  if (ethertype === ETHERTYPE_ARP) dissectArp(frame, off, d);
  else if (ethertype === ETHERTYPE_IPV4) dissectIPv4(frame, off, d);
  else if (ethertype === ETHERTYPE_IPV6) dissectIPv6(frame, off, d);
  return d;
}

function dissectArp(f: Bytes, off: number, d: Dissection): void {
  // Only Ethernet/IPv4 ARP: the address formats depend on it.
  if (f.length < off + 28 || u16(f, off) !== 1 || u16(f, off + 2) !== ETHERTYPE_IPV4 || f[off + 4] !== 6 || f[off + 5] !== 4) return;
  d.arp = {
    op: u16(f, off + 6),
    senderMac: formatMac(f, off + 8), senderIp: formatIPv4(f, off + 14),
    targetMac: formatMac(f, off + 18), targetIp: formatIPv4(f, off + 24),
  };
}

function dissectIPv4(f: Bytes, off: number, d: Dissection): void {
  if (f.length < off + 20 || f[off] >> 4 !== 4) return;
  const headerLength = (f[off] & 0xf) * 4;
  const frag = u16(f, off + 6);
  const ip: IPv4Info = {
    src: formatIPv4(f, off + 12), dst: formatIPv4(f, off + 16), tos: f[off + 1], ttl: f[off + 8],
    protocol: f[off + 9], id: u16(f, off + 4), df: (frag & 0x4000) !== 0, mf: (frag & 0x2000) !== 0,
    fragOffset: frag & 0x1fff, headerLength, totalLength: u16(f, off + 2), checksum: u16(f, off + 10),
  };
  d.ipv4 = ip;
  if (headerLength < 20) {
    ip.checksumOk = false;
    return;
  }
  if (off + headerLength > f.length) return;
  ip.checksumOk = sumsToOnes(f.subarray(off, off + headerLength));
  if (ip.totalLength < headerLength || ip.fragOffset !== 0) return;
  transport(f, off + headerLength, off + ip.totalLength, ip.protocol, f.subarray(off + 12, off + 16), f.subarray(off + 16, off + 20), !ip.mf, d);
}

function dissectIPv6(f: Bytes, off: number, d: Dissection): void {
  if (f.length < off + 40 || f[off] >> 4 !== 6) return;
  const first = u32(f, off);
  const ip: IPv6Info = {
    src: formatIPv6(f, off + 8), dst: formatIPv6(f, off + 24), trafficClass: (first >>> 20) & 0xff,
    flowLabel: first & 0xfffff, hopLimit: f[off + 7], nextHeader: f[off + 6], payloadLength: u16(f, off + 4),
  };
  d.ipv6 = ip;
  const end = off + 40 + ip.payloadLength;
  const limit = Math.min(end, f.length);
  let next = ip.nextHeader, p = off + 40, whole = true, firstFragment = true;
  let finalDst = f.subarray(off + 24, off + 40);
  while (next === IPV6_HOP_BY_HOP || next === IPV6_ROUTING || next === IPV6_DEST_OPTS || next === IPV6_FRAGMENT || next === IPV6_AUTH) {
    if (p + 8 > limit) return;
    const len = next === IPV6_FRAGMENT ? 8 : next === IPV6_AUTH ? (f[p + 1] + 2) * 4 : (f[p + 1] + 1) * 8;
    if (p + len > limit) return;
    if (next === IPV6_ROUTING) finalDst = routingFinalDestination(f.subarray(p, p + len)) ?? finalDst;
    if (next === IPV6_FRAGMENT) {
      const fo = u16(f, p + 2);
      if (fo & 0xfff8) firstFragment = false;
      if (fo & 1) whole = false;
    }
    next = f[p];
    p += len;
  }
  ip.upperProtocol = next;
  ip.upperOffset = p;
  // A later fragment carries the middle of the upper-layer message, not its header.
  if (firstFragment) transport(f, p, end, next, f.subarray(off + 8, off + 24), finalDst, whole, d);
}

// The upper-layer message at [start, end) as the IP header declares it (end may lie past the frame).
// `whole` is false for a first fragment, whose checksum covers bytes this frame does not have.
function transport(f: Bytes, start: number, end: number, protocol: number, src: Bytes, dst: Bytes, whole: boolean, d: Dissection): void {
  const seg = f.subarray(start, Math.min(end, f.length));
  const judge = whole && end <= f.length;
  const v6 = src.length === 16;
  if (protocol === IPPROTO_TCP) {
    if (seg.length < 20) return;
    const headerLength = (seg[12] >> 4) * 4;
    const t: TcpInfo = {
      srcPort: u16(seg, 0), dstPort: u16(seg, 2), seq: u32(seg, 4), ack: u32(seg, 8), headerLength,
      flags: seg[13], flagString: formatTcpFlags(seg[13]), window: u16(seg, 14), checksum: u16(seg, 16), urgent: u16(seg, 18),
    };
    if (judge) t.checksumOk = sumsToOnes(seg, pseudoHeaderSum(src, dst, IPPROTO_TCP, seg.length));
    d.tcp = t;
    if (headerLength >= 20 && headerLength <= seg.length) d.payload = seg.slice(headerLength);
  } else if (protocol === IPPROTO_UDP) {
    if (seg.length < 8) return;
    const u: UdpInfo = { srcPort: u16(seg, 0), dstPort: u16(seg, 2), length: u16(seg, 4), checksum: u16(seg, 6) };
    if (u.checksum === 0) u.checksumOk = !v6;
    else if (judge) {
      u.checksumOk = u.length >= 8 && u.length <= seg.length
        && sumsToOnes(seg.subarray(0, u.length), pseudoHeaderSum(src, dst, IPPROTO_UDP, u.length));
    }
    d.udp = u;
    if (u.length >= 8) d.payload = seg.slice(8, u.length);
  } else if ((protocol === IPPROTO_ICMP && !v6) || (protocol === IPPROTO_ICMPV6 && v6)) {
    if (seg.length < 8) return;
    const m: IcmpInfo = { type: seg[0], code: seg[1], id: u16(seg, 4), seq: u16(seg, 6), checksum: u16(seg, 2) };
    if (judge) m.checksumOk = sumsToOnes(seg, v6 ? pseudoHeaderSum(src, dst, IPPROTO_ICMPV6, seg.length) : 0);
    const payload = seg.slice(8);
    if (!v6 && ICMP_ERRORS.has(m.type) && payload.length >= 20 && payload[0] >> 4 === 4) {
      const hl = (payload[0] & 0xf) * 4;
      if (hl >= 20 && hl <= payload.length) m.embeddedChecksumOk = sumsToOnes(payload.subarray(0, hl));
    }
    if (v6) d.icmpv6 = m;
    else d.icmp = m;
    d.payload = payload;
  }
}

// ICMPv4 messages that quote the offending datagram's IP header (RFC 792, RFC 1812 §4.3.2.3).
const ICMP_ERRORS = new Set([3, 4, 5, 11, 12]);

/** True iff every checksum the frame lets us judge is right: the IPv4 header, TCP, UDP (0 on IPv4
 *  means "none"), ICMP, ICMPv6, and the IPv4 header quoted in an ICMP error when it is complete. */
export function verifyChecksums(frame: Bytes): boolean {
  const d = dissect(frame);
  return [d.ipv4?.checksumOk, d.tcp?.checksumOk, d.udp?.checksumOk, d.icmp?.checksumOk, d.icmp?.embeddedChecksumOk, d.icmpv6?.checksumOk]
    .every((ok) => ok !== false);
}
