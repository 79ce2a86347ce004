// A DNS server on a router interface's gateway addresses, on the punt queue, like Docker's embedded
// DNS and HNS's DNS proxy: the interface punts DNS (InterfaceSpec.punt ['dns']: UDP and TCP to port
// 53 of its IPv4 and IPv6 gateway addresses), the switch hands the frame to Switch.onPunt('dns'),
// and this server answers through the rx path from a port of its own with learning off, as the DHCP
// server does (src/dhcp.ts), so the dataplane switches the reply to the client like any frame from
// the gateway's MAC.
//
// What it answers:
//   - Names in its domain (`<name>.<domain>`, case-insensitive) from a table the caller sets
//     (setNames: name -> addresses, typically an endpoint's ID -> its IpConfigurations): A and AAAA;
//     NXDOMAIN for a name of the domain not in the table; NODATA (NOERROR, no answer) for a known
//     name without that family, for other types, and for the domain itself. A bare name (one label,
//     no domain) that is in the table is answered the same, as a search-list convenience; a bare name
//     that is not is forwarded like any other, so that a guest's lookups of TLDs (DNSSEC, "com." DS)
//     still work. PTR for the table's addresses (in-addr.arpa, ip6.arpa) gives the name (the first
//     name of an address shared by several); other reverse names are forwarded. Local answers are
//     authoritative (AA), TTL `ttl`, no SOA (so a miss is not cached); a query with EDNS (RFC 6891)
//     gets our OPT back (version 0, 1232 bytes; another version: BADVERS), so that a stub such as
//     systemd-resolved does not conclude the server lacks EDNS and degrade its forwarded queries too.
//   - Everything else is forwarded to upstream resolvers: the network's Dns.ServerList when given,
//     else the host's (/etc/resolv.conf `nameserver` lines; ones that are not a usable unicast
//     address are skipped), in order: UDP queries over UDP (node:dgram, one socket per family), TCP
//     queries over TCP (one connection per query to the server's port), so that a TCP client gets its
//     large answer in one go. The query ID is remapped to a random free one; an answer is accepted only
//     from a server this query was sent to, with our ID and the same question (else counted in
//     `upstreamIgnored` and ignored: the query keeps waiting). A server that does not answer within
//     `timeout` ms, or answers SERVFAIL, NOTIMP or REFUSED, is followed by the next (as glibc's
//     resolver does); after the last, SERVFAIL (or that last answer). At most `maxOutstanding` queries
//     are upstream at once; beyond, SERVFAIL at once (counted `overloaded`). Answers are relayed as
//     they are (rcode, TC) with the client's ID; one that does not fit the client's UDP limit (512, or
//     its EDNS size, and never more than the interface MTU allows) goes back as header + question with
//     TC set, so the client retries over TCP. Nothing is cached.
//   - DNS over TCP (RFC 1035 §4.2.2, RFC 7766): handleStream(duplex) reads length-prefixed messages,
//     several per connection (pipelined, answered as they complete), at most `maxStreamQueries` in
//     flight per connection (reading pauses beyond), at most `maxStreams` connections, closed after
//     `streamIdle` ms without a query in flight. The TCP engine feeds it for TCP to gateway:53; until
//     one is attached, punted TCP is counted (tcp_not_handled) and dropped.
//
// Only the virtual network is answered: the server sees nothing but what the dataplane punts (frames
// of its interface's network to its gateway addresses) and replies only into the switch; the upstream
// sockets are the host's, bound to ephemeral ports, and take only answers to what was asked.
// Every query is untrusted: malformed input is counted under a named reason in `dropped` and never
// throws; when the header is readable the client gets FORMERR (NOTIMP for an opcode other than QUERY)
// so that it need not time out; a message with the response bit set gets nothing (no loops).
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { connect as tcpConnect, isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Switch, PuntHandler } from './switch.js';
import { NetplaneError } from './abi.js';
import { ethernet, ipv4, ipv6, udp, formatMac, parseIPv4, parseIPv6, formatIPv4, formatIPv6, onesComplementSum, pseudoHeaderSum } from './frames.js';
import { Pump } from './transports/pump.js';

export interface DnsServerOptions {
  interface: number;               // the router interface whose gateway addresses are served
  domain?: string;                 // names in the table are `<name>.<domain>`; none: bare names only
  names?: DnsNames;                // the initial name table (setNames)
  ttl?: number;                    // seconds on local answers, default 60
  upstream?: string[];             // resolvers: 'a.b.c.d', 'a.b.c.d:port', 'v6', '[v6]:port'; default the host's
  resolvConf?: string;             // where the host's resolvers are read, default /etc/resolv.conf
  timeout?: number;                // ms to wait for one upstream server, default 2000
  maxOutstanding?: number;         // forwarded queries waiting upstream at once, default 256 (1-4096)
  maxStreams?: number;             // DNS-over-TCP connections at once, default 64
  maxStreamQueries?: number;       // queries in flight per TCP connection, default 16
  streamIdle?: number;             // ms a TCP connection may stay idle, default 10000
  timer?: (ms: number, f: () => void) => () => void;   // runs f after ms, returns cancel (tests)
}

// name -> addresses (IPv4 and/or IPv6). Names are relative to the domain: 'web' is web.<domain>.
export type DnsNames = Map<string, string[]> | Record<string, string[]>;

export const DNS_DROP_REASONS = [
  'not_dns', 'bad_checksum', 'bad_source', 'truncated', 'response', 'not_query', 'bad_qdcount',
  'bad_label', 'pointer_loop', 'name_too_long', 'bad_record', 'tcp_not_handled', 'too_many_streams',
  'stream_overflow', 'bad_edns_version',
] as const;
export type DnsDropReason = typeof DNS_DROP_REASONS[number];

export const DNS_UPSTREAM_IGNORED = ['malformed', 'unknown_id', 'wrong_server', 'question_mismatch'] as const;
export type DnsUpstreamIgnored = typeof DNS_UPSTREAM_IGNORED[number];

export interface DnsCounters {
  queries: number;          // well-formed queries (UDP and TCP)
  local: number;            // answered from the name table (with addresses, NODATA or NXDOMAIN)
  nxdomain: number;
  nodata: number;
  forwarded: number;        // queries sent upstream
  relayed: number;          // upstream answers passed back to the client
  timeouts: number;         // an upstream server did not answer in time (the next is tried)
  upstreamErrors: number;   // sending to / connecting to an upstream server failed (the next is tried)
  upstreamFailed: number;   // an upstream answered SERVFAIL, NOTIMP or REFUSED and another server was left (asked next)
  servfail: number;         // SERVFAIL sent: every server failed, none is configured, or overloaded
  overloaded: number;       // refused with SERVFAIL: maxOutstanding queries already upstream
  truncated: number;        // answers cut to header + question with TC set: too large for the client
  streams: number;          // DNS-over-TCP connections taken
  dropped: Record<DnsDropReason, number>;
  upstreamIgnored: Record<DnsUpstreamIgnored, number>;
}

export interface DnsUpstream { address: string; port: number }

const A = 1, PTR = 12, AAAA = 28, OPT = 41, ANY = 255, CLASS_IN = 1;
const NOERROR = 0, FORMERR = 1, SERVFAIL = 2, NXDOMAIN = 3, NOTIMP = 4, REFUSED = 5;
const MAX_MESSAGE = 65535;


interface Question { labels: Uint8Array[]; name: string; type: number; cls: number }
interface Query { id: number; rd: boolean; q: Question; udpSize: number; edns?: number }   // edns: the OPT version, when present
type Reply = (msg: Uint8Array | undefined) => void;
interface Pending {
  id: number;                      // upstream ID (UDP: the key of `pending`)
  query: Uint8Array;               // as sent upstream (our ID)
  q: Question;
  clientId: number;
  edns: boolean;                   // the client sent OPT: our SERVFAIL carries one
  limit: number;                   // the largest answer the client takes
  tcp: boolean;
  servers: DnsUpstream[];
  index: number;                   // the server asked last
  cancel?: () => void;             // its timer (and TCP connection)
  next?: () => void;               // gives up on this server: the next one, or SERVFAIL
  reply: Reply;
}

const defaultTimer = (ms: number, f: () => void): (() => void) => {
  const t = setTimeout(f, ms);
  t.unref?.();
  return () => clearTimeout(t);
};

// 'a.b.c.d', 'a.b.c.d:port', an IPv6 address, '[v6]:port' -> { address (canonical), port }.
export function parseUpstream(s: string): DnsUpstream | undefined {
  if (typeof s !== 'string') return undefined;
  let host = s.trim(), port = 53;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(host) ?? /^([0-9.]+):(\d+)$/.exec(host);
  if (m) { host = m[1]; if (m[2] !== undefined) port = Number(m[2]); }
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  try {
    if (isIP(host) === 4) {
      const b = parseIPv4(host);
      if (b[0] === 0 || b[0] >= 224) return undefined;           // unspecified, multicast, broadcast
      return { address: formatIPv4(b), port };
    }
    if (isIP(host) === 6 && !host.includes('%')) {                  // a zone index: not portable, skipped
      const b = parseIPv6(host);
      if (b[0] === 0xff || b.every((x) => x === 0)) return undefined;
      return { address: formatIPv6(b), port };
    }
  } catch { /* not an address */ }
  return undefined;
}

// The usable `nameserver` lines of a resolv.conf text, in order.
export function parseResolvConf(text: string): DnsUpstream[] {
  const out: DnsUpstream[] = [];
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w[0] !== 'nameserver' || w.length < 2) continue;
    const u = parseUpstream(w[1].includes(':') && !w[1].includes('.') ? `[${w[1]}]` : w[1]);   // an IPv6 literal has no port here
    if (u && !out.some((x) => x.address === u.address && x.port === u.port)) out.push(u);
  }
  return out;
}

const LABEL = /^[A-Za-z0-9_-]{1,63}$/;
function domainName(field: string, s: string): string {
  const n = s.replace(/\.$/, '').toLowerCase();
  if (!n || n.split('.').some((l) => !LABEL.test(l)) || n.length > 253) throw new NetplaneError(field, `${JSON.stringify(s)} is not a domain name`);
  return n;
}

export class DnsServer {
  private readonly c: DnsCounters;
  private readonly ifaceId: number;
  private readonly network: number;
  private readonly vlan: number;
  private readonly gwMac: string;
  private readonly mtu: number;
  private readonly domain?: string;
  private readonly ttl: number;
  private readonly timeout: number;
  private readonly maxOutstanding: number;
  private readonly maxStreams: number;
  private readonly maxStreamQueries: number;
  private readonly streamIdle: number;
  private readonly timer: (ms: number, f: () => void) => () => void;
  private readonly resolvConf: string;
  private names = new Map<string, { v4: Uint8Array[]; v6: Uint8Array[] }>();
  private nonTerminals = new Set<string>();
  private reverse = new Map<string, Uint8Array>();        // in-addr.arpa / ip6.arpa name -> PTR rdata   // 'team' when 'web.team' is a name: NODATA, not NXDOMAIN
  private servers: DnsUpstream[] = [];
  private readonly pending = new Map<number, Pending>();   // UDP, by upstream ID
  private readonly tcpPending = new Set<Pending>();
  private readonly sockets = new Map<4 | 6, Socket>();
  private readonly streams = new Set<Duplex>();
  private servicePort?: number;

  constructor(private readonly sw: Switch, o: DnsServerOptions) {
    const f = sw.router.interfaces.get(o.interface);
    if (!f) throw new NetplaneError('interface', `no interface ${o.interface}`);
    if (!f.address && !f.address6) throw new NetplaneError('interface', `interface ${o.interface} has no address`);
    this.ifaceId = o.interface;
    this.network = f.network;
    this.vlan = f.vlan;
    this.gwMac = f.mac;
    this.mtu = f.mtu;
    if (o.domain !== undefined) this.domain = domainName('domain', o.domain);
    const int = (field: string, v: number | undefined, d: number, lo: number, hi: number): number => {
      const x = v ?? d;
      if (!Number.isInteger(x) || x < lo || x > hi) throw new NetplaneError(field, `expected an integer ${lo}-${hi}, got ${v}`);
      return x;
    };
    this.ttl = int('ttl', o.ttl, 60, 0, 0x7fffffff);
    this.timeout = int('timeout', o.timeout, 2000, 1, 600000);
    this.maxOutstanding = int('maxOutstanding', o.maxOutstanding, 256, 1, 4096);
    this.maxStreams = int('maxStreams', o.maxStreams, 64, 0, 65536);
    this.maxStreamQueries = int('maxStreamQueries', o.maxStreamQueries, 16, 1, 1024);
    this.streamIdle = int('streamIdle', o.streamIdle, 10000, 1, 3600000);
    this.timer = o.timer ?? defaultTimer;
    this.resolvConf = o.resolvConf ?? '/etc/resolv.conf';
    this.setUpstream(o.upstream);
    if (o.names) this.setNames(o.names);
    this.c = {
      queries: 0, local: 0, nxdomain: 0, nodata: 0, forwarded: 0, relayed: 0, timeouts: 0, upstreamErrors: 0, upstreamFailed: 0,
      servfail: 0, overloaded: 0, truncated: 0, streams: 0,
      dropped: Object.fromEntries(DNS_DROP_REASONS.map((r) => [r, 0])) as Record<DnsDropReason, number>,
      upstreamIgnored: Object.fromEntries(DNS_UPSTREAM_IGNORED.map((r) => [r, 0])) as Record<DnsUpstreamIgnored, number>,
    };
  }

  counters(): DnsCounters {
    return { ...this.c, dropped: { ...this.c.dropped }, upstreamIgnored: { ...this.c.upstreamIgnored } };
  }

  // Replaces the name table; validates all of it first (names: labels of letters, digits, '-', '_';
  // addresses: IPv4 or IPv6). Queries already upstream are not affected.
  setNames(names: DnsNames): void {
    const entries = names instanceof Map ? [...names] : Object.entries(names ?? {});
    const table = new Map<string, { v4: Uint8Array[]; v6: Uint8Array[] }>();
    const ents = new Set<string>();
    for (const [name, addrs] of entries) {
      const n = domainName(`names.${name}`, name);
      if (this.domain && n.length + 1 + this.domain.length > 253) throw new NetplaneError(`names.${name}`, `${name}.${this.domain} is longer than 253 characters`);
      if (!Array.isArray(addrs)) throw new NetplaneError(`names.${name}`, 'expected a list of addresses');
      const e = table.get(n) ?? { v4: [], v6: [] };
      for (const a of addrs) {
        const fam = typeof a === 'string' ? isIP(a) : 0;
        if (fam === 4) e.v4.push(parseIPv4(a));
        else if (fam === 6 && !a.includes('%')) e.v6.push(parseIPv6(a));
        else throw new NetplaneError(`names.${name}`, `${JSON.stringify(a)} is not an IPv4 or IPv6 address`);
      }
      table.set(n, e);
      const l = n.split('.');
      for (let i = 1; i < l.length; i++) ents.add(l.slice(i).join('.'));
    }
    const reverse = new Map<string, Uint8Array>();
    for (const [n, e] of table) {
      const target = Uint8Array.from((this.domain ? `${n}.${this.domain}` : n).split('.').flatMap((l) => [l.length, ...[...l].map((c) => c.charCodeAt(0))]).concat(0));
      for (const a of [...e.v4, ...e.v6]) { const k = reverseName(a); if (!reverse.has(k)) reverse.set(k, target); }
    }
    this.names = table;
    this.nonTerminals = ents;
    this.reverse = reverse;
  }

  // The upstream resolvers: a list (the network's Dns.ServerList), or undefined for the host's,
  // read from resolv.conf now (an unreadable file: none, and forwarded queries get SERVFAIL).
  setUpstream(list?: string[]): void {
    if (list === undefined) {
      let text = '';
      try { text = readFileSync(this.resolvConf, 'utf8'); } catch { /* none */ }
      this.servers = parseResolvConf(text);
      return;
    }
    if (!Array.isArray(list)) throw new NetplaneError('upstream', 'expected a list of addresses');
    this.servers = list.map((s, i) => {
      const u = parseUpstream(s);
      if (!u) throw new NetplaneError(`upstream[${i}]`, `${JSON.stringify(s)} is not a unicast address with an optional port`);
      return u;
    });
  }

  upstreams(): DnsUpstream[] { return this.servers.map((s) => ({ ...s })); }

  // Answers the DNS this server's interface punts, through a port of its own (learning off) in the
  // interface's broadcast domain. Servers on several interfaces of one switch share its 'dns' punt
  // handler, which dispatches by interface. Punted TCP (to gateway:53) goes to `tcp` (the TCP engine,
  // which calls handleStream for each connection); without it, it is counted and dropped.
  // Returns detach.
  attach(o: { tcp?: PuntHandler } = {}): () => void {
    if (this.servicePort === undefined) this.servicePort = this.sw.addPort({ network: this.network, vlan: this.vlan, learning: false }).id;
    const port = this.sw.port(this.servicePort);
    const pump = Pump.of(this.sw);
    const detach = this.sw.onInterfacePunt('dns', this.ifaceId,
      (frame, info) => this.handlePunt(frame, (reply) => { pump.receive(port, reply); }, o.tcp && ((f) => o.tcp!(f, info))), 'a DNS server');
    return () => { detach(); };
  }

  // One punted frame, as attach's handler takes it: UDP to handle(); TCP (to gateway:53) to `tcp`
  // (the TCP engine), or counted (tcp_not_handled) and dropped without one.
  handlePunt(frame: Uint8Array, send: (frame: Uint8Array) => void, tcp?: (frame: Uint8Array) => void): void {
    if (isTcp(frame)) {
      if (tcp) tcp(frame);
      else this.c.dropped.tcp_not_handled++;
      return;
    }
    this.handle(frame, send);
  }

  // Takes over another server's counters (a reconfigured server counts on from its predecessor).
  carryCounters(from: DnsServer): void {
    const c = from.counters();
    Object.assign(this.c, c);
  }

  // One punted frame carrying a DNS query over UDP: `send` gets the reply frame, now (a local answer)
  // or later (a forwarded one), or never (dropped).
  handle(frame: Uint8Array, send: (frame: Uint8Array) => void): void {
    const p = this.parseFrame(frame);
    if (typeof p === 'string') { this.c.dropped[p]++; return; }
    const budget = this.mtu - (p.v6 ? 40 : 20) - 8;
    this.answer(p.payload, budget, false, (msg) => {
      if (!msg) return;
      const u = udp({ srcPort: 53, dstPort: p.sport, payload: msg });
      const l3 = p.v6 ? ipv6({ src: p.dst, dst: p.src, hopLimit: 64, payload: u }) : ipv4({ src: p.dst, dst: p.src, ttl: 64, payload: u });
      send(ethernet({ src: this.gwMac, dst: p.mac, payload: l3 }));
    });
  }

  // A DNS-over-TCP connection (RFC 7766): length-prefixed queries in, answers out as they complete.
  handleStream(s: Duplex): void {
    if (this.streams.size >= this.maxStreams) { this.c.dropped.too_many_streams++; s.destroy(); return; }
    this.streams.add(s);
    this.c.streams++;
    let buf = Buffer.alloc(0), inflight = 0, ended = false, closed = false, looping = false;
    let idle: (() => void) | undefined;
    const close = () => {
      if (closed) return;
      closed = true;
      idle?.();
      this.streams.delete(s);
      s.destroy();
    };
    const arm = () => { idle?.(); idle = inflight === 0 ? this.timer(this.streamIdle, close) : undefined; };
    const next = (): void => {
      if (looping) return;             // an answer given synchronously inside the loop below
      looping = true;
      while (!closed && inflight < this.maxStreamQueries && buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const n = buf.readUInt16BE(0);
        const msg = new Uint8Array(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
        inflight++;
        this.answer(msg, MAX_MESSAGE, true, (reply) => {
          inflight--;
          if (closed) return;
          if (reply) {
            const out = Buffer.alloc(2 + reply.length);
            out.writeUInt16BE(reply.length, 0);
            out.set(reply, 2);
            s.write(out);
          }
          next();
        });
      }
      looping = false;
      if (closed) return;
      if (inflight >= this.maxStreamQueries) s.pause();
      else s.resume();
      if (ended && inflight === 0) { closed = true; idle?.(); this.streams.delete(s); s.end(); return; }
      arm();
    };
    s.on('data', (d: Buffer) => {
      if (closed) return;
      buf = buf.length ? Buffer.concat([buf, d]) : Buffer.from(d);
      if (buf.length > 4 * (MAX_MESSAGE + 2)) { this.c.dropped.stream_overflow++; close(); return; }
      next();
    });
    s.on('end', () => { ended = true; if (!closed) next(); });
    s.on('error', close);
    s.on('close', close);
    arm();
  }

  // Ends everything in progress: upstream sockets and connections, timers, TCP clients.
  close(): void {
    for (const p of [...this.pending.values(), ...this.tcpPending]) p.cancel?.();
    this.pending.clear();
    this.tcpPending.clear();
    for (const sock of this.sockets.values()) sock.close();
    this.sockets.clear();
    for (const s of [...this.streams]) s.destroy();
    this.streams.clear();
  }

  // ---------------------------------------------------------------------------------------------

  // One query message; `reply` is called exactly once (undefined: nothing to send).
  private answer(msg: Uint8Array, budget: number, tcp: boolean, reply: Reply): void {
    const r = parseQuery(msg);
    if (typeof r === 'string' || 'drop' in r) {
      const reason = typeof r === 'string' ? r : r.drop;
      this.c.dropped[reason]++;
      reply(typeof r === 'string' ? undefined : r.reply);
      return;
    }
    if (r.edns !== undefined && r.edns > 0) {                 // RFC 6891 §6.1.3: BADVERS (16), we speak version 0
      this.c.dropped.bad_edns_version++;
      reply(message(r.id, 0x8000 | (r.rd ? 0x0100 : 0) | 0x0080, encodeQuestion(r.q), [], [optRecord(16 >> 4)]));
      return;
    }
    this.c.queries++;
    const limit = tcp ? MAX_MESSAGE : Math.min(budget, Math.max(512, r.udpSize));
    const local = this.lookup(r.q);
    if (local) { this.c.local++; reply(this.localAnswer(r, local, limit)); return; }
    this.forward(msg, r, limit, tcp, reply);
  }

  // What the name table says about q: undefined when q is not ours (forward it).
  private lookup(q: Question): { rcode: number; records: Array<[number, Uint8Array]> } | undefined {
    const inClass = q.cls === CLASS_IN || q.cls === ANY;
    const ptr = this.reverse.get(q.name);
    if (ptr) return { rcode: NOERROR, records: inClass && (q.type === PTR || q.type === ANY) ? [[PTR, ptr]] : [] };
    let rel: string | undefined;
    if (this.domain && (q.name === this.domain || q.name.endsWith(`.${this.domain}`))) rel = q.name.slice(0, Math.max(0, q.name.length - this.domain.length - 1));
    else if (q.labels.length === 1 && this.names.has(q.name)) rel = q.name;
    if (rel === undefined) return undefined;
    const e = rel ? this.names.get(rel) : undefined;
    if (!e) {
      if (rel === '' || this.nonTerminals.has(rel)) return { rcode: NOERROR, records: [] };
      return { rcode: NXDOMAIN, records: [] };
    }
    const addrs = !inClass ? [] : q.type === A ? e.v4 : q.type === AAAA ? e.v6 : q.type === ANY ? [...e.v4, ...e.v6] : [];
    return { rcode: NOERROR, records: addrs.map((a) => [a.length === 4 ? A : AAAA, a]) };
  }

  private localAnswer(r: Query, l: { rcode: number; records: Array<[number, Uint8Array]> }, limit: number): Uint8Array {
    if (l.rcode === NXDOMAIN) this.c.nxdomain++;
    else if (l.records.length === 0) this.c.nodata++;
    const question = encodeQuestion(r.q);
    const records: Uint8Array[] = [];
    const opt = r.edns !== undefined ? [optRecord(0)] : [];
    let size = 12 + question.length + (opt.length ? OPT_SIZE : 0), tc = false;
    for (const [type, a] of l.records) {
      const rr = new Uint8Array(12 + a.length);
      const v = new DataView(rr.buffer);
      v.setUint16(0, 0xc00c);                                // the question's name
      v.setUint16(2, type);
      v.setUint16(4, CLASS_IN);
      v.setUint32(6, this.ttl);
      v.setUint16(10, a.length);
      rr.set(a, 12);
      if (size + rr.length > limit) { tc = true; break; }
      records.push(rr);
      size += rr.length;
    }
    if (tc) this.c.truncated++;
    return message(r.id, 0x8400 | (tc ? 0x0200 : 0) | (r.rd ? 0x0100 : 0) | 0x0080 | l.rcode, question, records, opt);
  }

  private forward(msg: Uint8Array, r: Query, limit: number, tcp: boolean, reply: Reply): void {
    if (this.servers.length === 0) { this.c.servfail++; reply(this.fail(r, SERVFAIL)); return; }
    if (this.pending.size + this.tcpPending.size >= this.maxOutstanding) {
      this.c.overloaded++;
      this.c.servfail++;
      reply(this.fail(r, SERVFAIL));
      return;
    }
    let id = randomInt(65536);
    if (!tcp) while (this.pending.has(id)) id = randomInt(65536);
    const query = new Uint8Array(msg);
    query[0] = id >> 8; query[1] = id & 255;
    const p: Pending = { id, query, q: r.q, clientId: r.id, edns: r.edns !== undefined, limit, tcp, servers: [...this.servers], index: 0, reply };
    if (tcp) this.tcpPending.add(p);
    else this.pending.set(id, p);
    this.c.forwarded++;
    this.attempt(p);
  }

  private fail(r: Query, rcode: number): Uint8Array {
    return message(r.id, 0x8000 | (r.rd ? 0x0100 : 0) | 0x0080 | rcode, encodeQuestion(r.q), [], r.edns !== undefined ? [optRecord(0)] : []);
  }

  // Sends p to servers[index] with a timer; on timeout or error the next server, after the last SERVFAIL.
  private attempt(p: Pending): void {
    const srv = p.servers[p.index];
    let done = false;
    const giveUp = (why: 'timeout' | 'error' | 'ignored' | 'rcode') => {
      if (done) return;
      done = true;
      stop();
      cancelIo();
      if (why === 'timeout') this.c.timeouts++;
      else if (why === 'error') this.c.upstreamErrors++;
      else if (why === 'rcode') this.c.upstreamFailed++;
      if (++p.index < p.servers.length) { this.attempt(p); return; }
      this.finish(p);
      this.c.servfail++;
      p.reply(message(p.clientId, 0x8000 | (p.query[2] & 1 ? 0x0100 : 0) | 0x0080 | SERVFAIL, encodeQuestion(p.q), [], p.edns ? [optRecord(0)] : []));
    };
    let cancelIo = () => {};
    const stop = this.timer(this.timeout, () => giveUp('timeout'));
    p.cancel = () => { done = true; stop(); cancelIo(); };
    p.next = () => giveUp('rcode');
    if (!p.tcp) {
      const sock = this.socket(isIP(srv.address) === 6 ? 6 : 4);
      sock.send(p.query, srv.port, srv.address, (err) => { if (err) giveUp('error'); });
      return;
    }
    const conn = tcpConnect({ host: srv.address, port: srv.port });
    cancelIo = () => conn.destroy();
    let buf = Buffer.alloc(0);
    conn.on('connect', () => {
      const out = Buffer.alloc(2 + p.query.length);
      out.writeUInt16BE(p.query.length, 0);
      out.set(p.query, 2);
      conn.write(out);
    });
    conn.on('data', (d: Buffer) => {
      if (done) return;
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const msg = new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      conn.destroy();
      const why = check(msg, p);
      if (why) { this.c.upstreamIgnored[why]++; giveUp('ignored'); return; }
      this.accept(p, msg);
    });
    conn.on('error', () => giveUp('error'));
    conn.on('close', () => giveUp('error'));
  }

  private socket(family: 4 | 6): Socket {
    let s = this.sockets.get(family);
    if (s) return s;
    s = createSocket(family === 6 ? 'udp6' : 'udp4');
    s.on('message', (msg, rinfo) => this.fromUpstream(new Uint8Array(msg), rinfo));
    s.on('error', () => { this.c.upstreamErrors++; });
    s.unref();
    this.sockets.set(family, s);
    return s;
  }

  private fromUpstream(msg: Uint8Array, rinfo: RemoteInfo): void {
    if (msg.length < 12 || (msg[2] & 0x80) === 0) { this.c.upstreamIgnored.malformed++; return; }
    const p = this.pending.get((msg[0] << 8) | msg[1]);
    if (!p) { this.c.upstreamIgnored.unknown_id++; return; }
    const addr = rinfo.family === 'IPv6' ? formatIPv6(parseIPv6(rinfo.address.split('%')[0])) : rinfo.address;
    if (!p.servers.slice(0, p.index + 1).some((s) => s.address === addr && s.port === rinfo.port)) { this.c.upstreamIgnored.wrong_server++; return; }
    const why = check(msg, p);
    if (why) { this.c.upstreamIgnored[why]++; return; }
    this.accept(p, msg);
  }

  // The answer to p from the server asked. SERVFAIL, NOTIMP or REFUSED while another server is left:
  // ask that one (as glibc's resolver does); otherwise relay it.
  private accept(p: Pending, msg: Uint8Array): void {
    const rcode = msg[3] & 15;
    if ((rcode === SERVFAIL || rcode === NOTIMP || rcode === REFUSED) && p.index + 1 < p.servers.length) { p.next!(); return; }
    p.cancel?.();
    this.deliver(p, msg);
  }

  private finish(p: Pending): void {
    if (p.tcp) this.tcpPending.delete(p);
    else this.pending.delete(p.id);
  }

  // An accepted upstream answer to the client: its ID back, or header + question with TC when too large.
  private deliver(p: Pending, msg: Uint8Array): void {
    this.finish(p);
    this.c.relayed++;
    let out: Uint8Array;
    if (msg.length > p.limit) {
      this.c.truncated++;
      out = message(p.clientId, ((msg[2] << 8) | msg[3]) | 0x0200, encodeQuestion(p.q), []);
    } else {
      out = new Uint8Array(msg);
      out[0] = p.clientId >> 8; out[1] = p.clientId & 255;
    }
    p.reply(out);
  }

  // Ethernet (one optional 802.1Q tag) / IPv4 or IPv6 / UDP to port 53, every length checked.
  private parseFrame(frame: Uint8Array): { v6: boolean; mac: string; src: Uint8Array; dst: Uint8Array; sport: number; payload: Uint8Array } | DnsDropReason {
    const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    if (frame.length < 14) return 'not_dns';
    let l3 = 14, type = v.getUint16(12);
    if (type === 0x8100) { if (frame.length < 18) return 'not_dns'; type = v.getUint16(16); l3 = 18; }
    let l4: number, end: number, src: Uint8Array, dst: Uint8Array;
    if (type === 0x0800) {
      if (frame.length < l3 + 20) return 'not_dns';
      const ihl = (frame[l3] & 15) * 4, total = v.getUint16(l3 + 2);
      if (frame[l3] >> 4 !== 4 || ihl < 20 || frame[l3 + 9] !== 17 || total < ihl + 8 || l3 + total > frame.length) return 'not_dns';
      if ((v.getUint16(l3 + 6) & 0x3fff) !== 0) return 'not_dns';   // a fragment
      l4 = l3 + ihl; end = l3 + total;
      src = frame.slice(l3 + 12, l3 + 16); dst = frame.slice(l3 + 16, l3 + 20);
      if (src[0] === 0 || src[0] >= 224 ) return 'bad_source';
    } else if (type === 0x86dd) {
      if (frame.length < l3 + 40 || frame[l3] >> 4 !== 6 || frame[l3 + 6] !== 17) return 'not_dns';
      l4 = l3 + 40; end = l4 + v.getUint16(l3 + 4);
      if (end > frame.length || end < l4 + 8) return 'not_dns';
      src = frame.slice(l3 + 8, l3 + 24); dst = frame.slice(l3 + 24, l3 + 40);
      if (src[0] === 0xff || src.every((x) => x === 0)) return 'bad_source';
    } else return 'not_dns';
    const ulen = v.getUint16(l4 + 4);
    if (ulen < 8 || l4 + ulen > end || v.getUint16(l4 + 2) !== 53) return 'not_dns';
    const sum = v.getUint16(l4 + 6);
    if (sum === 0 && type === 0x86dd) return 'bad_checksum';               // RFC 8200 §8.1
    if (sum !== 0) {
      if (onesComplementSum(frame.subarray(l4, l4 + ulen), pseudoHeaderSum(src, dst, 17, ulen)) !== 0xffff) return 'bad_checksum';
    }
    return { v6: type === 0x86dd, mac: formatMac(frame, 6), src, dst, sport: v.getUint16(l4), payload: frame.slice(l4 + 8, l4 + ulen) };
  }
}

// 10.0.0.5 -> 5.0.0.10.in-addr.arpa; IPv6 -> its 32 nibbles reversed .ip6.arpa (RFC 3596 §2.5).
function reverseName(a: Uint8Array): string {
  if (a.length === 4) return `${a[3]}.${a[2]}.${a[1]}.${a[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((a[i] & 15).toString(16), (a[i] >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

function isTcp(frame: Uint8Array): boolean {
  if (frame.length < 14) return false;
  let l3 = 14, type = (frame[12] << 8) | frame[13];
  if (type === 0x8100 && frame.length >= 18) { type = (frame[16] << 8) | frame[17]; l3 = 18; }
  if (type === 0x0800) return frame.length > l3 + 9 && frame[l3 + 9] === 6;
  if (type === 0x86dd) return frame.length > l3 + 6 && frame[l3 + 6] === 6;
  return false;
}

// ---- Messages (RFC 1035 §4.1)

function message(id: number, flags: number, question: Uint8Array, answers: Uint8Array[], additional: Uint8Array[] = []): Uint8Array {
  const n = 12 + question.length + [...answers, ...additional].reduce((s, a) => s + a.length, 0);
  const m = new Uint8Array(n);
  const v = new DataView(m.buffer);
  v.setUint16(0, id);
  v.setUint16(2, flags);
  v.setUint16(4, question.length ? 1 : 0);
  v.setUint16(6, answers.length);
  v.setUint16(10, additional.length);
  m.set(question, 12);
  let off = 12 + question.length;
  for (const a of [...answers, ...additional]) { m.set(a, off); off += a.length; }
  return m;
}

// Our EDNS OPT record (RFC 6891 §6.1.2): root name, our UDP payload size, the upper bits of an
// extended rcode, version 0, no flags (we do not sign: DO clear), no options.
const EDNS_SIZE = 1232, OPT_SIZE = 11;
function optRecord(extRcode: number): Uint8Array {
  return Uint8Array.from([0, 0, OPT, EDNS_SIZE >> 8, EDNS_SIZE & 255, extRcode, 0, 0, 0, 0, 0]);
}

function encodeQuestion(q: Question): Uint8Array {
  const n = q.labels.reduce((s, l) => s + 1 + l.length, 1);
  const b = new Uint8Array(n + 4);
  let off = 0;
  for (const l of q.labels) { b[off++] = l.length; b.set(l, off); off += l.length; }
  b[off++] = 0;
  b[off++] = q.type >> 8; b[off++] = q.type & 255;
  b[off++] = q.cls >> 8; b[off++] = q.cls & 255;
  return b;
}

type NameError = 'truncated' | 'bad_label' | 'pointer_loop' | 'name_too_long';

// A (possibly compressed) name at `off`: its labels and where the name ends in the message. A pointer
// must point strictly before the label it replaces, so that no chain loops.
function readName(b: Uint8Array, off: number): { labels: Uint8Array[]; end: number } | NameError {
  const labels: Uint8Array[] = [];
  let end = -1, wire = 1, at = off;
  for (;;) {
    if (at >= b.length) return 'truncated';
    const len = b[at];
    if (len === 0) { if (end < 0) end = at + 1; break; }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (at + 1 >= b.length) return 'truncated';
      const target = ((len & 0x3f) << 8) | b[at + 1];
      if (end < 0) end = at + 2;
      if (target >= at) return 'pointer_loop';
      at = target;
      continue;
    }
    if (kind !== 0) return 'bad_label';                     // 0x40 extended, 0x80 reserved (RFC 6891 §5)
    if (at + 1 + len > b.length) return 'truncated';
    wire += 1 + len;
    if (wire > 255) return 'name_too_long';
    labels.push(b.subarray(at + 1, at + 1 + len));
    at += 1 + len;
  }
  return { labels, end };
}

// Lower case, dotted; a byte that is not a letter, digit, '-' or '_' is escaped as \DDD so that such a
// label never equals a name of the table.
function nameOf(labels: Uint8Array[]): string {
  return labels.map((l) => {
    let s = '';
    for (const c of l) {
      if ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f) s += String.fromCharCode(c);
      else if (c >= 0x41 && c <= 0x5a) s += String.fromCharCode(c + 32);
      else s += `\\${String(c).padStart(3, '0')}`;
    }
    return s;
  }).join('.');
}

function readQuestion(b: Uint8Array, off: number): { q: Question; end: number } | NameError {
  const n = readName(b, off);
  if (typeof n === 'string') return n;
  if (n.end + 4 > b.length) return 'truncated';
  const q: Question = { labels: n.labels.map((l) => l.slice()), name: nameOf(n.labels), type: (b[n.end] << 8) | b[n.end + 1], cls: (b[n.end + 2] << 8) | b[n.end + 3] };
  return { q, end: n.end + 4 };
}

// A query from a client: the query, or why not with the reply it still gets (FORMERR, NOTIMP), or only
// why not (no header to answer, or a response).
function parseQuery(b: Uint8Array): Query | DnsDropReason | { drop: DnsDropReason; reply: Uint8Array } {
  if (b.length < 12) return 'truncated';
  if (b[2] & 0x80) return 'response';
  const id = (b[0] << 8) | b[1], rd = (b[2] & 1) !== 0;
  const refuse = (drop: DnsDropReason, rcode: number, flags = 0) => ({ drop, reply: message(id, 0x8000 | flags | (rd ? 0x0100 : 0) | rcode, new Uint8Array(0), []) });
  const opcode = (b[2] >> 3) & 15;
  if (opcode !== 0) return refuse('not_query', NOTIMP, opcode << 11);
  if (((b[4] << 8) | b[5]) !== 1) return refuse('bad_qdcount', FORMERR);
  const r = readQuestion(b, 12);
  if (typeof r === 'string') return refuse(r, FORMERR);
  // The other sections: a query's answer and authority are normally empty; the additional section may
  // carry EDNS's OPT record (RFC 6891), whose class is the client's UDP payload size.
  let off = r.end, udpSize = 512, edns: number | undefined;
  const records = ((b[6] << 8) | b[7]) + ((b[8] << 8) | b[9]) + ((b[10] << 8) | b[11]);
  const additional = (b[10] << 8) | b[11];
  for (let i = 0; i < records; i++) {
    const n = readName(b, off);
    if (typeof n === 'string') return refuse(n === 'truncated' ? 'bad_record' : n, FORMERR);
    if (n.end + 10 > b.length) return refuse('bad_record', FORMERR);
    const type = (b[n.end] << 8) | b[n.end + 1], cls = (b[n.end + 2] << 8) | b[n.end + 3];
    const rdlen = (b[n.end + 8] << 8) | b[n.end + 9];
    if (n.end + 10 + rdlen > b.length) return refuse('bad_record', FORMERR);
    if (type === OPT) {
      if (i < records - additional || edns !== undefined || n.labels.length) return refuse('bad_record', FORMERR);   // RFC 6891 §6.1.1
      udpSize = Math.max(512, cls);
      edns = b[n.end + 5];
    }
    off = n.end + 10 + rdlen;
  }
  return { id, rd, q: r.q, udpSize, edns };
}

// Why an upstream answer is not the answer to p, or undefined when it is.
function check(msg: Uint8Array, p: Pending): DnsUpstreamIgnored | undefined {
  if (msg.length < 12 || (msg[2] & 0x80) === 0) return 'malformed';
  if (((msg[0] << 8) | msg[1]) !== p.id) return 'unknown_id';
  if (((msg[4] << 8) | msg[5]) !== 1) return 'question_mismatch';
  const r = readQuestion(msg, 12);
  if (typeof r === 'string') return 'malformed';
  if (r.q.name !== p.q.name || r.q.type !== p.q.type || r.q.cls !== p.q.cls) return 'question_mismatch';
  return undefined;
}
