// A flow description for `netplane trace`, in the spirit of `ovs-appctl ofproto/trace`'s flow
// argument but written the way tcpdump prints a packet:
//
//   tcp 172.20.0.2:40000 > 1.1.1.1:80 syn        udp 172.20.0.2:5000 > 8.8.8.8:53
//   icmp 172.20.0.2 > 172.20.0.1                 tcp [fd00::2]:40000 > [fd00::1]:22 syn,ack
//   tcp > 1.1.1.1:80   (the source left out: the endpoint's own address, port 49152)
//
// The CLI parses the words (parseFlow) and sends the result; the daemon checks it again (checkFlow,
// errors naming `flow.<field>`) and builds the one frame it describes (flowFrame) from the endpoint's
// MAC to the next hop's, so a trace needs no hand-made hex. Nothing here knows about endpoints.
import { ethernet, ipv4, ipv6, tcp, udp, icmp, icmpv6, parseTcpFlags, formatTcpFlags, type MacAddress } from './frames.js';
import { address, ModelError } from './model/validate.js';

export interface Flow {
  protocol: 'tcp' | 'udp' | 'icmp';
  src?: string;               // absent: the endpoint's address of the destination's family
  sport?: number;             // tcp, udp; absent: 49152
  dst: string;
  dport?: number;             // tcp, udp: required
  flags?: string;             // tcp: letters from FSRPAUEC (default "S", a SYN)
  icmp?: 'echo-request' | 'echo-reply';   // icmp (ICMPv6 for IPv6 addresses); default echo-request
  id?: number;                // icmp echo id
  seq?: number;               // icmp echo sequence
  ttl?: number;               // IPv4 TTL / IPv6 hop limit (default 64)
}

export const DEFAULT_SOURCE_PORT = 49152;

const ARROWS = ['>', '->', 'to'];
const FLAG_WORDS: Record<string, string> = { fin: 'F', syn: 'S', rst: 'R', psh: 'P', ack: 'A', urg: 'U', ece: 'E', cwr: 'C' };
export const FLOW_SYNTAX = 'PROTO [SRC[:PORT] >] DST[:PORT] [MODIFIERS]: PROTO is tcp, udp or icmp; IPv6 as [fd00::2]:80; tcp takes flags (syn, ack, fin, rst, psh, urg, or combined as syn,ack), icmp takes echo-request or echo-reply, id N, seq N; all take ttl N';

// Words as a shell gives them (`tcp 172.20.0.2:40000 '>' 1.1.1.1:80 syn`) to a Flow; throws an
// Error saying which word is wrong.
export function parseFlow(words: string[]): Flow {
  const w = words.flatMap((x) => x.split(/\s+/)).filter(Boolean);
  const proto = (w[0] ?? '').toLowerCase();
  const protocol = proto === 'icmp6' || proto === 'icmpv6' ? 'icmp' : proto;
  if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'icmp') throw new Error(`a flow starts with tcp, udp or icmp, got ${JSON.stringify(w[0] ?? '')}`);
  const arrow = w.findIndex((x) => ARROWS.includes(x));
  let srcWord: string | undefined, dstWord: string | undefined, rest: string[];
  if (arrow >= 0) {
    if (arrow > 2) throw new Error(`one source before ">", got ${w.slice(1, arrow).join(' ')}`);
    srcWord = arrow === 2 ? w[1] : undefined;
    dstWord = w[arrow + 1];
    rest = w.slice(arrow + 2);
  } else {
    dstWord = w[1];
    rest = w.slice(2);
  }
  if (!dstWord) throw new Error('a flow needs a destination (tcp SRC:PORT > DST:PORT)');
  const ports = protocol !== 'icmp';
  const src = srcWord === undefined ? undefined : endpointWord(srcWord, 'source', ports, false);
  const dst = endpointWord(dstWord, 'destination', ports, ports);
  const f: Flow = { protocol, dst: dst.host!, ...(src?.host ? { src: src.host } : {}) };
  if (ports) {
    if (src?.port !== undefined) f.sport = src.port;
    f.dport = dst.port;
  }
  if (proto === 'icmp6' || proto === 'icmpv6') {
    if (!f.dst.includes(':')) throw new Error(`${proto} needs IPv6 addresses, got ${f.dst}`);
  }
  let flags = '';
  for (let i = 0; i < rest.length; i++) {
    const x = rest[i].toLowerCase();
    const number = (what: string, hi: number) => {
      const v = rest[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) > hi) throw new Error(`${what} needs a number from 0 to ${hi}, got ${JSON.stringify(v ?? '')}`);
      return Number(v);
    };
    if (x === 'ttl' || x === 'hlim') { f.ttl = number(x, 255); continue; }
    if (protocol === 'icmp') {
      if (x === 'echo' || x === 'echo-request' || x === 'request' || x === 'ping') f.icmp = 'echo-request';
      else if (x === 'echo-reply' || x === 'reply' || x === 'pong') f.icmp = 'echo-reply';
      else if (x === 'id') f.id = number('id', 65535);
      else if (x === 'seq') f.seq = number('seq', 65535);
      else throw new Error(`unknown icmp modifier ${JSON.stringify(rest[i])} (echo-request, echo-reply, id N, seq N, ttl N)`);
      continue;
    }
    if (protocol === 'tcp') {
      const parts = x.replace(/^flags=/, '').split(/[,+|]/).filter(Boolean);
      if (parts.length && parts.every((p) => FLAG_WORDS[p])) { flags += parts.map((p) => FLAG_WORDS[p]).join(''); continue; }
      throw new Error(`unknown tcp modifier ${JSON.stringify(rest[i])} (flags syn, ack, fin, rst, psh, urg, e.g. syn,ack; ttl N)`);
    }
    throw new Error(`unknown udp modifier ${JSON.stringify(rest[i])} (ttl N)`);
  }
  if (flags) f.flags = [...new Set(flags)].join('');
  return f;
}

// "1.2.3.4:80", "[fd00::1]:80", "1.2.3.4", "fd00::1", ":40000" (the endpoint's own address).
function endpointWord(s: string, what: string, ports: boolean, needPort: boolean): { host?: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]*):(\d+)$/.exec(s) ?? /^([^[\]]+)()$/.exec(s);
  if (!m) throw new Error(`${what} ${JSON.stringify(s)}: write ADDRESS:PORT, [IPv6]:PORT or ADDRESS`);
  const host = m[1] || undefined;
  if (host === undefined && what === 'destination') throw new Error(`the destination needs an address, got ${JSON.stringify(s)}`);
  if (host !== undefined) {
    try { address(host, what); } catch { throw new Error(`${what} ${JSON.stringify(host)} is not an IPv4 or IPv6 address`); }
  }
  const port = m[2] ? Number(m[2]) : undefined;
  if (port !== undefined && !ports) throw new Error(`${what} ${JSON.stringify(s)}: icmp has no ports`);
  if (port !== undefined && (port < 1 || port > 65535)) throw new Error(`${what} port ${port} is not 1-65535`);
  if (needPort && port === undefined) throw new Error(`the destination needs a port: ${s}:PORT`);
  return { host, port };
}

// The daemon's check of a flow it was sent: a Flow, or a ModelError naming `<field>.<member>`.
export function checkFlow(v: unknown, field = 'flow'): Flow {
  const bad = (f: string, why: string) => new ModelError('InvalidArgument', `${field}.${f}`, why);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelError('InvalidArgument', field, `must be an object like { "protocol": "tcp", "dst": "1.1.1.1", "dport": 80 }`);
  const o = v as Record<string, unknown>;
  const keys = ['protocol', 'src', 'sport', 'dst', 'dport', 'flags', 'icmp', 'id', 'seq', 'ttl'];
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(k, `unknown field (known: ${keys.join(', ')})`);
  if (o.protocol !== 'tcp' && o.protocol !== 'udp' && o.protocol !== 'icmp') throw bad('protocol', `must be "tcp", "udp" or "icmp", got ${JSON.stringify(o.protocol)}`);
  const dst = address(o.dst, `${field}.dst`);
  const src = o.src === undefined ? undefined : address(o.src, `${field}.src`);
  if (src && src.v6 !== dst.v6) throw bad('src', `${src.text} and ${dst.text} are not of one family`);
  const int = (k: string, lo: number, hi: number) => {
    const x = o[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < lo || x > hi) throw bad(k, `must be an integer from ${lo} to ${hi}, got ${JSON.stringify(x)}`);
    return x;
  };
  const f: Flow = { protocol: o.protocol, dst: dst.text, ...(src ? { src: src.text } : {}) };
  const ttl = int('ttl', 0, 255);
  if (ttl !== undefined) f.ttl = ttl;
  if (o.protocol === 'icmp') {
    for (const k of ['sport', 'dport', 'flags']) if (o[k] !== undefined) throw bad(k, 'icmp has no ports or flags');
    if (o.icmp !== undefined && o.icmp !== 'echo-request' && o.icmp !== 'echo-reply') throw bad('icmp', `must be "echo-request" or "echo-reply", got ${JSON.stringify(o.icmp)}`);
    if (o.icmp) f.icmp = o.icmp;
    const id = int('id', 0, 65535), seq = int('seq', 0, 65535);
    if (id !== undefined) f.id = id;
    if (seq !== undefined) f.seq = seq;
    return f;
  }
  for (const k of ['icmp', 'id', 'seq']) if (o[k] !== undefined) throw bad(k, `${o.protocol} has no ${k}`);
  const dport = int('dport', 1, 65535);
  if (dport === undefined) throw bad('dport', `${o.protocol} needs a destination port`);
  f.dport = dport;
  const sport = int('sport', 1, 65535);
  if (sport !== undefined) f.sport = sport;
  if (o.flags !== undefined) {
    if (o.protocol !== 'tcp') throw bad('flags', 'only tcp has flags');
    if (typeof o.flags !== 'string') throw bad('flags', 'must be letters from FSRPAUEC, such as "SA"');
    try { f.flags = formatTcpFlags(parseTcpFlags(o.flags)); } catch (e) { throw bad('flags', (e as Error).message); }
  }
  return f;
}

// The frame a flow describes, from `srcMac` to `dstMac`; `src` fills a flow without a source.
export function flowFrame(f: Flow, o: { srcMac: MacAddress; dstMac: MacAddress; src?: string }): Uint8Array {
  const src = f.src ?? o.src;
  if (!src) throw new ModelError('InvalidArgument', 'flow.src', `no source address (the endpoint has no ${f.dst.includes(':') ? 'IPv6' : 'IPv4'} address)`);
  const v6 = f.dst.includes(':');
  const hop = f.ttl ?? 64;
  const l4 = f.protocol === 'tcp' ? tcp({ srcPort: f.sport ?? DEFAULT_SOURCE_PORT, dstPort: f.dport!, flags: f.flags ?? 'S', seq: 1000 })
    : f.protocol === 'udp' ? udp({ srcPort: f.sport ?? DEFAULT_SOURCE_PORT, dstPort: f.dport! })
    : (v6 ? icmpv6 : icmp)({ type: f.icmp === 'echo-reply' ? (v6 ? 129 : 0) : (v6 ? 128 : 8), id: f.id ?? 1, seq: f.seq ?? 1 });
  const payload = v6 ? ipv6({ src, dst: f.dst, hopLimit: hop, payload: l4 }) : ipv4({ src, dst: f.dst, ttl: hop, payload: l4 });
  return ethernet({ src: o.srcMac, dst: o.dstMac, payload });
}

// One line, tcpdump style: "tcp 172.20.0.2:49152 > 1.1.1.1:80 [S]".
export function describeFlow(f: Flow, src = f.src ?? '(endpoint)'): string {
  const at = (h: string, p?: number) => p === undefined ? h : h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`;
  if (f.protocol === 'icmp') return `${f.dst.includes(':') ? 'icmp6' : 'icmp'} ${src} > ${f.dst} ${f.icmp ?? 'echo-request'}${f.ttl !== undefined ? ` ttl ${f.ttl}` : ''}`;
  return `${f.protocol} ${at(src, f.sport ?? DEFAULT_SOURCE_PORT)} > ${at(f.dst, f.dport)}${f.protocol === 'tcp' ? ` [${f.flags ?? 'S'}]` : ''}${f.ttl !== undefined ? ` ttl ${f.ttl}` : ''}`;
}
