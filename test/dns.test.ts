// The DNS server (src/dns.ts) on the punt queue: queries built and answers read by this file's own DNS
// encoder and parser (RFC 1035 §4.1, independent of the server's), carried in frames through a real
// Switch + Router (punt -> server -> rx path -> client port) and straight into handle(); local names
// (A, AAAA, NXDOMAIN, NODATA), forwarding to fake upstream servers on 127.0.0.1 (node:dgram and
// node:net: answers, timeouts, SERVFAIL, forged answers ignored, the outstanding bound, TC), DNS over
// TCP through handleStream on an in-memory Duplex pair, a table of malformed input (each named reason)
// and random input that must never throw; then a real client, busybox nslookup in a network namespace.
//
//   port 0  client 10.0.0.2 / fd00::2  ── network 1 ── if 0  10.0.0.1/24 fd00::1/64  (punt dns)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { createServer, type Server, type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Switch, DnsServer, DhcpServer, DNS_DROP_REASONS, NetplaneError, parseResolvConf, type DnsServerOptions, ethernet, ipv4, ipv6, udp, tcp, dissect, verifyChecksums } from '../src/index.js';
import { requirements, linuxHost, exec, sh, teardown } from './e2e/netns.js';

const CLIENT = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const GW = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1', ip6: 'fd00::1' };
const NAMES = { web: ['10.0.0.5', 'fd00::5'], db: ['10.0.0.6'], 'api.team': ['10.0.0.7'] };

function setup(o: Partial<DnsServerOptions> = {}) {
  const sw = new Switch({ maxPorts: 8 });
  sw.addPort({ network: 1 });
  sw.router.addInterface({ network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64', punt: ['dns'] });
  const srv = new DnsServer(sw, { interface: 0, domain: 'lab.example', names: NAMES, upstream: [], ...o });
  return { sw, srv };
}

// ---- The test's own DNS messages.
const A = 1, NS = 2, MX = 15, AAAA = 28, OPT = 41;
const NOERROR = 0, FORMERR = 1, SERVFAIL = 2, NXDOMAIN = 3, NOTIMP = 4;
const wireName = (n: string): number[] => (n === '' ? [0] : [...n.split('.').flatMap((l) => [l.length, ...Buffer.from(l, 'latin1')]), 0]);
interface QOpts { id?: number; flags?: number; qd?: number; cls?: number; edns?: number }
function query(name: string, type = A, o: QOpts = {}): Uint8Array {
  const id = o.id ?? 0x1234, flags = o.flags ?? 0x0100, qd = o.qd ?? 1, cls = o.cls ?? 1;
  const opt = o.edns ? [0, 0, OPT, o.edns >> 8, o.edns & 255, 0, 0, 0, 0, 0, 0] : [];
  return Uint8Array.from([id >> 8, id & 255, flags >> 8, flags & 255, 0, qd, 0, 0, 0, 0, 0, o.edns ? 1 : 0, ...wireName(name), type >> 8, type & 255, cls >> 8, cls & 255, ...opt]);
}
interface RR { name: string; type: number; cls: number; ttl: number; data: Uint8Array }
interface Msg { id: number; qr: boolean; opcode: number; aa: boolean; tc: boolean; rd: boolean; ra: boolean; rcode: number; qd: Array<{ name: string; type: number; cls: number }>; an: RR[]; ns: RR[]; ar: RR[] }
function parse(b: Uint8Array): Msg {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  assert.ok(b.length >= 12, `a message of ${b.length} bytes`);
  let off = 12;
  const name = (): string => {
    const labels: string[] = [];
    let at = off, jumped = false;
    for (let hops = 0; ; hops++) {
      assert.ok(hops < 64 && at < b.length, 'name inside the message');
      const len = b[at];
      if (len === 0) { if (!jumped) off = at + 1; break; }
      if ((len & 0xc0) === 0xc0) { if (!jumped) off = at + 2; jumped = true; at = ((len & 0x3f) << 8) | b[at + 1]; continue; }
      labels.push(Buffer.from(b.subarray(at + 1, at + 1 + len)).toString('latin1'));
      at += 1 + len;
    }
    return labels.join('.');
  };
  const rrs = (n: number): RR[] => Array.from({ length: n }, () => {
    const nm = name();
    const type = v.getUint16(off), cls = v.getUint16(off + 2), ttl = v.getUint32(off + 4), len = v.getUint16(off + 8);
    assert.ok(off + 10 + len <= b.length, 'record inside the message');
    const data = b.slice(off + 10, off + 10 + len);
    off += 10 + len;
    return { name: nm, type, cls, ttl, data };
  });
  const f = v.getUint16(2);
  const qd = Array.from({ length: v.getUint16(4) }, () => { const nm = name(); const q = { name: nm, type: v.getUint16(off), cls: v.getUint16(off + 2) }; off += 4; return q; });
  const an = rrs(v.getUint16(6)), ns = rrs(v.getUint16(8)), ar = rrs(v.getUint16(10));
  return { id: v.getUint16(0), qr: !!(f & 0x8000), opcode: (f >> 11) & 15, aa: !!(f & 0x400), tc: !!(f & 0x200), rd: !!(f & 0x100), ra: !!(f & 0x80), rcode: f & 15, qd, an, ns, ar };
}
// An upstream server's answer to `q` (its ID and question), with A/AAAA/raw records.
function response(q: Uint8Array, o: { answers?: Array<[number, number[]]>; rcode?: number; tc?: boolean; id?: number; name?: string } = {}): Uint8Array {
  const m = parse(q);
  const id = o.id ?? m.id;
  const qname = o.name ?? m.qd[0].name;
  const recs = (o.answers ?? []).flatMap(([type, data]) => [0xc0, 12, type >> 8, type & 255, 0, 1, 0, 0, 0, 30, data.length >> 8, data.length & 255, ...data]);
  return Uint8Array.from([id >> 8, id & 255, 0x81 | (o.tc ? 2 : 0), 0x80 | (o.rcode ?? 0), 0, 1, 0, (o.answers ?? []).length, 0, 0, 0, 0, ...wireName(qname), m.qd[0].type >> 8, m.qd[0].type & 255, 0, 1, ...recs]);
}
const label = (s: string) => [s.length, ...Buffer.from(s)];
const header = (flags: number, qd = 1, ar = 0) => [0xab, 0xcd, flags >> 8, flags & 255, 0, qd, 0, 0, 0, 0, 0, ar];
const ip4 = (d: Uint8Array) => [...d].join('.');
const ip6 = (d: Uint8Array) => Array.from({ length: 8 }, (_, i) => ((d[2 * i] << 8) | d[2 * i + 1]).toString(16)).join(':');

function frame4(payload: Uint8Array, o: { src?: string; dst?: string; sport?: number; checksum?: number } = {}): Uint8Array {
  return ethernet({ src: CLIENT.mac, dst: GW.mac, payload: ipv4({ src: o.src ?? CLIENT.ip, dst: o.dst ?? GW.ip, payload: udp({ srcPort: o.sport ?? 40000, dstPort: 53, payload, ...(o.checksum !== undefined ? { checksum: o.checksum } : {}) }) }) });
}
function frame6(payload: Uint8Array, sport = 40001): Uint8Array {
  return ethernet({ src: CLIENT.mac, dst: GW.mac, payload: ipv6({ src: CLIENT.ip6, dst: GW.ip6, payload: udp({ srcPort: sport, dstPort: 53, payload }) }) });
}
// The DNS message in a reply frame, after checking its addressing and checksums.
function replyOf(f: Uint8Array, v6 = false, sport = v6 ? 40001 : 40000): Msg {
  assert.ok(verifyChecksums(f), 'IP and UDP checksums');
  const d = dissect(f);
  assert.equal([d.src, d.dst], [GW.mac, CLIENT.mac]);
  if (v6) assert.equal([d.ipv6?.src, d.ipv6?.dst], [GW.ip6, CLIENT.ip6]);
  else assert.equal([d.ipv4?.src, d.ipv4?.dst], [GW.ip, CLIENT.ip]);
  assert.equal([d.udp?.srcPort, d.udp?.dstPort], [53, sport]);
  return parse(f.subarray(v6 ? 14 + 40 + 8 : 14 + 20 + 8));
}
// handle() with the replies collected.
function ask(srv: DnsServer, f: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  srv.handle(f, (r) => out.push(r));
  return out;
}
const tick = () => new Promise((r) => setImmediate(r));
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), `waited for ${what}`);
}
// Timers the test fires by hand.
function manualTimers() {
  const live = new Set<() => void>();
  return {
    timer: (_ms: number, f: () => void) => { live.add(f); return () => live.delete(f); },
    fire() { const fs = [...live]; live.clear(); fs.forEach((f) => f()); return fs.length; },
    get count() { return live.size; },
  };
}
// A fake upstream resolver on 127.0.0.1 (UDP): `answer` decides what (if anything) goes back.
interface Upstream { sock: Socket; port: number; seen: Uint8Array[]; addr: string }
async function upstream(answer?: (q: Uint8Array, send: (m: Uint8Array) => void, rinfo: RemoteInfo) => void): Promise<Upstream> {
  const sock = createSocket('udp4');
  const seen: Uint8Array[] = [];
  sock.on('message', (m, rinfo) => { const q = new Uint8Array(m); seen.push(q); answer?.(q, (r) => sock.send(r, rinfo.port, rinfo.address), rinfo); });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const port = (sock.address() as AddressInfo).port;
  return { sock, port, seen, addr: `127.0.0.1:${port}` };
}
const ANSWER_A = (q: Uint8Array, send: (m: Uint8Array) => void) => send(response(q, { answers: parse(q).qd[0].type === A ? [[A, [93, 184, 216, 34]]] : [] }));

// ---- Local names, through the switch.

test('A for <name>.<domain> through the switch: punted, answered from the gateway, switched to the client', async () => {
  const { sw, srv } = setup();
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  srv.attach();
  sw.inject([[0, frame4(query('web.lab.example', A, { id: 77 }))]]);
  assert.is(sw.counters().stats.punted, 1);
  await tick();
  assert.equal(out.map(([p]) => p), [0], 'to the client port only');
  const m = replyOf(out[0][1]);
  assert.equal([m.id, m.qr, m.aa, m.rd, m.ra, m.rcode, m.tc], [77, true, true, true, true, NOERROR, false]);
  assert.equal(m.qd, [{ name: 'web.lab.example', type: A, cls: 1 }]);
  assert.equal(m.an.map((r) => [r.name, r.type, r.cls, r.ttl, ip4(r.data)]), [['web.lab.example', A, 1, 60, '10.0.0.5']]);
  assert.is(srv.counters().local, 1);
  assert.is(sw.counters().stats.dropped, 0);
});

test('AAAA over IPv6 to the gateway\'s IPv6 address, answered from it', async () => {
  const { sw, srv } = setup();
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  srv.attach();
  sw.inject([[0, frame6(query('web.lab.example', AAAA, { id: 6 }))]]);
  await tick();
  assert.equal(out.map(([p]) => p), [0]);
  const m = replyOf(out[0][1], true);
  assert.equal(m.an.map((r) => [r.type, ip6(r.data)]), [[AAAA, 'fd00:0:0:0:0:0:0:5']]);
});

test('local names: case-insensitive (question echoed as asked), NXDOMAIN, NODATA, empty non-terminal, apex, bare names', () => {
  const { srv } = setup();
  const one = (name: string, type = A) => replyOf(ask(srv, frame4(query(name, type)))[0]);
  const m = one('WeB.Lab.EXAMPLE');
  assert.equal([m.rcode, m.qd[0].name, m.an.map((r) => ip4(r.data))], [NOERROR, 'WeB.Lab.EXAMPLE', ['10.0.0.5']]);
  const nx = one('nope.lab.example');
  assert.equal([nx.rcode, nx.aa, nx.an.length], [NXDOMAIN, true, 0]);
  assert.equal([one('db.lab.example', AAAA).rcode, one('db.lab.example', AAAA).an.length], [NOERROR, 0], 'known name, no IPv6: NODATA');
  assert.equal([one('web.lab.example', MX).rcode, one('web.lab.example', MX).an.length], [NOERROR, 0], 'other types: NODATA');
  assert.equal(one('api.team.lab.example').an.map((r) => ip4(r.data)), ['10.0.0.7'], 'a two-label name');
  assert.equal([one('team.lab.example').rcode, one('team.lab.example').an.length], [NOERROR, 0], 'empty non-terminal: NODATA');
  assert.equal([one('lab.example', NS).rcode, one('lab.example').an.length], [NOERROR, 0], 'the domain itself: NODATA');
  assert.equal(one('x.api.team.lab.example').rcode, NXDOMAIN);
  assert.equal(one('WEB').an.map((r) => ip4(r.data)), ['10.0.0.5'], 'a bare name in the table');
  assert.equal(one('web', 255).an.map((r) => r.type), [A, AAAA], 'ANY: both families');
  assert.is(one('nope').rcode, SERVFAIL, 'a bare name not in the table is forwarded (no upstream here: SERVFAIL)');
  const c = srv.counters();
  assert.is(c.nxdomain, 2);
  assert.is(c.nodata, 8);
  assert.is(c.servfail, 1);
  assert.is(c.forwarded, 0);
});

test('PTR for the table\'s addresses (in-addr.arpa, ip6.arpa) names them; other reverse names are forwarded', () => {
  const { srv } = setup();
  const one = (name: string, type = 12) => replyOf(ask(srv, frame4(query(name, type)))[0]);
  const ptrName = (m: Msg) => { const d = m.an[0].data; const l: string[] = []; for (let i = 0; d[i]; i += d[i] + 1) l.push(Buffer.from(d.subarray(i + 1, i + 1 + d[i])).toString()); return l.join('.'); };
  const v4 = one('5.0.0.10.IN-ADDR.ARPA');
  assert.equal([v4.rcode, v4.aa, v4.an[0].type, ptrName(v4)], [NOERROR, true, 12, 'web.lab.example']);
  const v6 = one(`5.${'0.'.repeat(29)}d.f.ip6.arpa`);
  assert.equal(ptrName(v6), 'web.lab.example');
  assert.equal([one('7.0.0.10.in-addr.arpa').an.length, ptrName(one('7.0.0.10.in-addr.arpa'))], [1, 'api.team.lab.example']);
  assert.equal([one('5.0.0.10.in-addr.arpa', A).rcode, one('5.0.0.10.in-addr.arpa', A).an.length], [NOERROR, 0], 'other types: NODATA');
  assert.is(one('9.0.0.10.in-addr.arpa').rcode, SERVFAIL, 'not ours: forwarded (no upstream here)');
});

test('setNames replaces the table; a bad entry is refused naming it, and the old table stays', () => {
  const { srv } = setup();
  srv.setNames(new Map([['web', ['10.0.0.9']], ['new', ['fd00::9']]]));
  const one = (name: string, type = A) => replyOf(ask(srv, frame4(query(name, type)))[0]);
  assert.equal(one('web.lab.example').an.map((r) => ip4(r.data)), ['10.0.0.9']);
  assert.equal(one('new.lab.example', AAAA).an.map((r) => ip6(r.data)), ['fd00:0:0:0:0:0:0:9']);
  assert.is(one('db.lab.example').rcode, NXDOMAIN);
  assert.throws(() => srv.setNames({ ok: ['10.0.0.1'], bad: ['10.0.0.300'] }), (e: unknown) => e instanceof NetplaneError && e.field === 'names.bad');
  assert.throws(() => srv.setNames({ 'no spaces': ['10.0.0.1'] }), (e: unknown) => e instanceof NetplaneError && e.field === 'names.no spaces');
  assert.equal(one('web.lab.example').an.map((r) => ip4(r.data)), ['10.0.0.9'], 'unchanged');
});

test('EDNS: a query with OPT gets OPT back (our size, version 0) on local answers and our SERVFAIL; two OPTs: FORMERR', () => {
  const { srv } = setup();
  const m = replyOf(ask(srv, frame4(query('web.lab.example', A, { edns: 4096 })))[0]);
  assert.equal(m.ar.map((r) => [r.name, r.type, r.cls, r.ttl]), [['', OPT, 1232, 0]]);
  assert.equal(m.an.length, 1);
  const f = replyOf(ask(srv, frame4(query('example.org', A, { edns: 1232 })))[0]);
  assert.equal([f.rcode, f.ar.map((r) => r.type)], [SERVFAIL, [OPT]]);
  assert.equal(replyOf(ask(srv, frame4(query('web.lab.example')))[0]).ar, [], 'no OPT asked, none given');
  const two = Uint8Array.from([...header(0x100, 1, 2), ...wireName('web'), 0, 1, 0, 1, 0, 0, OPT, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, OPT, 4, 0, 0, 0, 0, 0, 0, 0]);
  assert.is(replyOf(ask(srv, frame4(two))[0]).rcode, FORMERR);
  assert.is(srv.counters().dropped.bad_record, 1);
});

test('an answer larger than 512 bytes without EDNS is cut with TC; with EDNS 4096 it fits', () => {
  const many = Array.from({ length: 40 }, (_, i) => `10.0.1.${i + 1}`);
  const { srv } = setup({ names: { big: many } });
  const m = replyOf(ask(srv, frame4(query('big.lab.example')))[0]);
  assert.is(m.tc, true);
  assert.ok(m.an.length > 0 && m.an.length < 40, `${m.an.length} answers`);
  const e = replyOf(ask(srv, frame4(query('big.lab.example', A, { edns: 4096 })))[0]);
  assert.equal([e.tc, e.an.length], [false, 40]);
  assert.is(srv.counters().truncated, 1);
});

// ---- Forwarding.

test('forwarded: the query goes upstream with another ID, the answer comes back with the client\'s', async () => {
  const up = await upstream(ANSWER_A);
  try {
    const { srv } = setup({ upstream: [up.addr] });
    const out: Uint8Array[] = [];
    srv.handle(frame4(query('example.org', A, { id: 0xbeef })), (r) => out.push(r));
    assert.is(out.length, 0, 'not answered at once');
    await until(() => out.length === 1, 'the relayed answer');
    const m = replyOf(out[0]);
    assert.equal([m.id, m.rcode, m.aa, m.qd[0].name, m.an.map((r) => ip4(r.data))], [0xbeef, NOERROR, false, 'example.org', ['93.184.216.34']]);
    const sent = parse(up.seen[0]);
    assert.equal([sent.qd, sent.rd], [m.qd, true], 'the same question, RD kept');
    assert.equal(up.seen[0].subarray(2), query('example.org', A, { id: 0xbeef }).subarray(2), 'only the ID differs');
    const c = srv.counters();
    assert.equal([c.forwarded, c.relayed, c.local], [1, 1, 0]);
    srv.close();
  } finally { up.sock.close(); }
});

test('a server that does not answer in time: the next one is asked; after the last, SERVFAIL', async () => {
  const silent = await upstream();
  const good = await upstream(ANSWER_A);
  try {
    const t = manualTimers();
    const { srv } = setup({ upstream: [silent.addr, good.addr], timer: t.timer });
    const out: Uint8Array[] = [];
    srv.handle(frame4(query('example.org', A, { id: 1 })), (r) => out.push(r));
    await until(() => silent.seen.length === 1, 'the first server asked');
    assert.is(good.seen.length, 0);
    assert.is(t.fire(), 1, 'its timeout');
    await until(() => out.length === 1, 'the second server\'s answer');
    assert.equal(replyOf(out[0]).an.map((r) => ip4(r.data)), ['93.184.216.34']);
    assert.is(srv.counters().timeouts, 1);

    const { srv: srv2 } = setup({ upstream: [silent.addr, silent.addr], timer: t.timer });
    out.length = 0;
    srv2.handle(frame4(query('example.org', AAAA, { id: 2 })), (r) => out.push(r));
    await until(() => silent.seen.length === 2, 'asked');
    t.fire();
    await until(() => silent.seen.length === 3, 'asked again');
    t.fire();
    assert.is(out.length, 1);
    const m = replyOf(out[0]);
    assert.equal([m.id, m.rcode, m.qd[0].type], [2, SERVFAIL, AAAA]);
    assert.equal([srv2.counters().timeouts, srv2.counters().servfail], [2, 1]);
    srv.close(); srv2.close();
  } finally { silent.sock.close(); good.sock.close(); }
});

test('an upstream that answers REFUSED or SERVFAIL: the next server is asked; the last one\'s answer is relayed', async () => {
  const refusing = await upstream((q, send) => send(response(q, { rcode: 5 })));
  const failing = await upstream((q, send) => send(response(q, { rcode: SERVFAIL })));
  const good = await upstream(ANSWER_A);
  try {
    const { srv } = setup({ upstream: [refusing.addr, failing.addr, good.addr] });
    const out: Uint8Array[] = [];
    srv.handle(frame4(query('example.org', A, { id: 3 })), (r) => out.push(r));
    await until(() => out.length === 1, 'the answer');
    assert.equal(replyOf(out[0]).an.map((r) => ip4(r.data)), ['93.184.216.34']);
    assert.equal([refusing.seen.length, failing.seen.length, good.seen.length], [1, 1, 1]);
    const only = setup({ upstream: [refusing.addr] }).srv;
    only.handle(frame4(query('example.org', A, { id: 4 })), (r) => out.push(r));
    await until(() => out.length === 2, 'the refusal');
    assert.equal([replyOf(out[1]).id, replyOf(out[1]).rcode], [4, 5]);
    assert.equal([srv.counters().upstreamFailed, srv.counters().relayed, only.counters().upstreamFailed], [2, 1, 0]);
    srv.close(); only.close();
  } finally { refusing.sock.close(); failing.sock.close(); good.sock.close(); }
});

test('forged upstream answers are counted and ignored: wrong ID, wrong question, wrong server, not a response', async () => {
  const other = createSocket('udp4');
  await new Promise<void>((r) => other.bind(0, '127.0.0.1', r));
  const up = await upstream((q, send, rinfo) => {
    const id = (q[0] << 8) | q[1];
    send(response(q, { id: id ^ 1, answers: [[A, [6, 6, 6, 6]]] }));
    send(response(q, { name: 'evil.example', answers: [[A, [6, 6, 6, 6]]] }));
    other.send(response(q, { answers: [[A, [6, 6, 6, 6]]] }), rinfo.port, rinfo.address);
    const notResponse = response(q, { answers: [[A, [6, 6, 6, 6]]] });
    notResponse[2] &= 0x7f;
    send(notResponse);
    setTimeout(() => send(response(q, { answers: [[A, [1, 2, 3, 4]]] })), 20);
  });
  try {
    const { srv } = setup({ upstream: [up.addr] });
    const out: Uint8Array[] = [];
    srv.handle(frame4(query('example.org')), (r) => out.push(r));
    await until(() => out.length === 1, 'the real answer');
    assert.equal(replyOf(out[0]).an.map((r) => ip4(r.data)), ['1.2.3.4']);
    assert.equal(srv.counters().upstreamIgnored, { malformed: 1, unknown_id: 1, wrong_server: 1, question_mismatch: 1 });
    srv.close();
  } finally { up.sock.close(); other.close(); }
});

test('bounded outstanding: beyond maxOutstanding a query gets SERVFAIL at once (counted)', async () => {
  const silent = await upstream();
  try {
    const t = manualTimers();
    const { srv } = setup({ upstream: [silent.addr], maxOutstanding: 2, timer: t.timer });
    const out: Uint8Array[] = [];
    for (let id = 1; id <= 3; id++) srv.handle(frame4(query(`n${id}.example.org`, A, { id })), (r) => out.push(r));
    assert.is(out.length, 1);
    assert.equal([replyOf(out[0]).id, replyOf(out[0]).rcode], [3, SERVFAIL]);
    assert.equal([srv.counters().overloaded, srv.counters().forwarded], [1, 2]);
    await until(() => silent.seen.length === 2, 'two upstream');
    t.fire();
    assert.equal(out.slice(1).map((f) => replyOf(f).rcode), [SERVFAIL, SERVFAIL]);
    srv.handle(frame4(query('n4.example.org', A, { id: 4 })), (r) => out.push(r));
    assert.is(out.length, 3, 'room again: forwarded, not refused');
    srv.close();
  } finally { silent.sock.close(); }
});

test('TC from upstream is relayed as it is; an answer too large for the client is cut to header + question with TC', async () => {
  const up = await upstream((q, send) => {
    const name = parse(q).qd[0].name;
    if (name === 'tc.example.org') send(response(q, { tc: true }));
    else send(response(q, { answers: Array.from({ length: 40 }, (_, i): [number, number[]] => [A, [192, 0, 2, i]]) }));
  });
  try {
    const { srv } = setup({ upstream: [up.addr] });
    const out: Uint8Array[] = [];
    srv.handle(frame4(query('tc.example.org', A, { id: 10 })), (r) => out.push(r));
    srv.handle(frame4(query('big.example.org', A, { id: 11 })), (r) => out.push(r));
    await until(() => out.length === 2, 'both answers');
    const [tc, big] = [10, 11].map((id) => out.map((f) => replyOf(f)).find((m) => m.id === id)!);
    assert.equal([tc.tc, tc.rcode, tc.an.length], [true, NOERROR, 0]);
    assert.equal([big.tc, big.an.length, big.qd[0].name], [true, 0, 'big.example.org']);
    assert.is(srv.counters().truncated, 1);
    srv.close();
  } finally { up.sock.close(); }
});

test('upstream from resolv.conf: usable nameserver lines in order, others skipped; none: SERVFAIL', () => {
  assert.equal(parseResolvConf('# c\nnameserver 10.255.255.53\nnameserver 0.0.0.0\nnameserver fe80::1%eth0\nnameserver ::1\nnameserver bogus\nnameserver 224.0.0.1\noptions ndots:1\nnameserver 10.255.255.53\nsearch x\n'),
    [{ address: '10.255.255.53', port: 53 }, { address: '::1', port: 53 }]);
  const dir = mkdtempSync(join(tmpdir(), 'netplane-dns-'));
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 192.0.2.53\n');
  const { srv } = setup({ upstream: undefined, resolvConf: join(dir, 'resolv.conf') });
  assert.equal(srv.upstreams(), [{ address: '192.0.2.53', port: 53 }]);
  const none = setup({ upstream: undefined, resolvConf: join(dir, 'missing') }).srv;
  assert.equal(none.upstreams(), []);
  assert.is(replyOf(ask(none, frame4(query('example.org')))[0]).rcode, SERVFAIL);
  assert.throws(() => setup({ upstream: ['10.0.0.1:99999'] }), (e: unknown) => e instanceof NetplaneError && e.field === 'upstream[0]');
  assert.equal(setup({ upstream: ['1.1.1.1', '[2606:4700::1111]:5353', '8.8.8.8:5300'] }).srv.upstreams(), [{ address: '1.1.1.1', port: 53 }, { address: '2606:4700::1111', port: 5353 }, { address: '8.8.8.8', port: 5300 }]);
});

// ---- DNS over TCP.

// Two connected in-memory Duplex ends.
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  for (let i = 0; i < 2; i++) {
    ends.push(new Duplex({
      read() {},
      write(chunk, _enc, cb) { ends[1 - i].push(chunk); cb(); },
      final(cb) { ends[1 - i].push(null); cb(); },
    }));
  }
  return [ends[0], ends[1]];
}
const framed = (m: Uint8Array) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 255]), m]);
// Reads length-prefixed messages from a stream end until it ends.
function collect(s: Duplex): { msgs: Msg[]; ended: () => boolean } {
  let buf = Buffer.alloc(0), ended = false;
  const msgs: Msg[] = [];
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { msgs.push(parse(new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0))))); buf = buf.subarray(2 + buf.readUInt16BE(0)); }
  });
  s.on('end', () => (ended = true));
  return { msgs, ended: () => ended };
}

test('TCP: several queries on one connection, split reads, one forwarded over TCP upstream; the server ends after the client', async () => {
  const tcpUp: Server = createServer((c) => {
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const q = new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      const r = response(q, { answers: Array.from({ length: 60 }, (_, i): [number, number[]] => [A, [198, 51, 100, i]]) });
      c.write(framed(r).subarray(0, 5));                   // split on the upstream side too
      setTimeout(() => c.end(framed(r).subarray(5)), 5);
    });
  });
  await new Promise<void>((r) => tcpUp.listen(0, '127.0.0.1', r));
  try {
    const { srv } = setup({ upstream: [`127.0.0.1:${(tcpUp.address() as AddressInfo).port}`] });
    const [client, server] = duplexPair();
    srv.handleStream(server);
    const got = collect(client);
    const bytes = Buffer.concat([framed(query('web.lab.example', A, { id: 1 })), framed(query('far.example.org', A, { id: 2 })), framed(query('db.lab.example', A, { id: 3 })), framed(query('nope.lab.example', A, { id: 4 }))]);
    let at = 0;
    for (const cut of [1, 3, 17, 40, bytes.length]) {        // pieces of 1, 2, 14, 23 bytes and the rest
      client.write(bytes.subarray(at, cut));
      at = cut;
      await tick();
    }
    client.end();
    await until(() => got.ended(), 'the server to end the connection');
    const byId = new Map(got.msgs.map((m) => [m.id, m]));
    assert.equal([...byId.keys()].sort(), [1, 2, 3, 4]);
    assert.equal(byId.get(1)!.an.map((r) => ip4(r.data)), ['10.0.0.5']);
    assert.equal(byId.get(3)!.an.map((r) => ip4(r.data)), ['10.0.0.6']);
    assert.is(byId.get(4)!.rcode, NXDOMAIN);
    assert.equal([byId.get(2)!.tc, byId.get(2)!.an.length], [false, 60], 'a large answer, whole over TCP');
    const c = srv.counters();
    assert.equal([c.streams, c.queries, c.forwarded, c.relayed], [1, 4, 1, 1]);
    srv.close();
  } finally { tcpUp.close(); }
});

test('TCP: bounded connections (too_many_streams), a buffer beyond the bound (stream_overflow), malformed messages answered FORMERR', async () => {
  const { srv } = setup({ maxStreams: 1 });
  const [c1, s1] = duplexPair();
  srv.handleStream(s1);
  const got = collect(c1);
  const [, s2] = duplexPair();
  srv.handleStream(s2);
  assert.is(s2.destroyed, true);
  assert.is(srv.counters().dropped.too_many_streams, 1);
  c1.write(framed(Uint8Array.from([0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0])));    // QDCOUNT 2
  c1.write(framed(Uint8Array.from([1, 2, 3])));                                 // shorter than a header
  c1.write(framed(query('web.lab.example', A, { id: 5 })));
  await until(() => got.msgs.length === 2, 'two answers');
  assert.equal(got.msgs.map((m) => [m.id, m.rcode]), [[9, FORMERR], [5, NOERROR]]);
  assert.equal([srv.counters().dropped.bad_qdcount, srv.counters().dropped.truncated], [1, 1]);
  c1.write(Buffer.alloc(5 * 65537, 0xff));
  await until(() => s1.destroyed, 'the connection closed');
  assert.is(srv.counters().dropped.stream_overflow, 1);
  const t = manualTimers();
  const idleSrv = setup({ timer: t.timer }).srv;
  const [c3, s3] = duplexPair();
  idleSrv.handleStream(s3);
  c3.write(framed(query('web.lab.example')));
  await tick();
  assert.is(s3.destroyed, false);
  t.fire();
  assert.is(s3.destroyed, true, 'closed when idle');
});

// ---- Malformed input: each named reason.

const MALFORMED: Array<[string, () => Uint8Array, number | undefined]> = [
  ['not_dns', () => ethernet({ src: CLIENT.mac, dst: GW.mac, payload: ipv4({ src: CLIENT.ip, dst: GW.ip, payload: udp({ srcPort: 1, dstPort: 54, payload: query('x') }) }) }), undefined],
  ['bad_checksum', () => frame4(query('web.lab.example'), { checksum: 0x1234 }), undefined],
  ['bad_source', () => frame4(query('web.lab.example'), { src: '0.0.0.0' }), undefined],
  ['truncated', () => frame4(Uint8Array.from([1, 2, 3, 4, 5])), undefined],
  ['response', () => frame4(query('web.lab.example', A, { flags: 0x8100 })), undefined],
  ['not_query', () => frame4(query('web.lab.example', A, { flags: 0x1000 })), NOTIMP],        // opcode 2 (STATUS)
  ['bad_qdcount', () => frame4(query('web.lab.example', A, { qd: 2 })), FORMERR],
  ['bad_label', () => frame4(Uint8Array.from([...header(0x100), 0x41, 0x41, 0, 0, 1, 0, 1])), FORMERR],
  ['pointer_loop', () => frame4(Uint8Array.from([...header(0x100), 0xc0, 12, 0, 1, 0, 1])), FORMERR],
  ['name_too_long', () => frame4(Uint8Array.from([...header(0x100), ...Array.from({ length: 5 }, () => label('a'.repeat(60))).flat(), 0, 0, 1, 0, 1])), FORMERR],
  ['bad_record', () => frame4(Uint8Array.from([...header(0x100, 1, 1), ...wireName('web'), 0, 1, 0, 1, 0, 0, OPT])), FORMERR],
  ['bad_edns_version', () => frame4(Uint8Array.from([...header(0x100, 1, 1), ...wireName('web'), 0, 1, 0, 1, 0, 0, OPT, 4, 0, 0, 1, 0, 0, 0, 0])), NOERROR],   // version 1: BADVERS
];
const RCODE_NAMES: Record<number, string> = { [NOERROR]: 'BADVERS', [FORMERR]: 'FORMERR', [NOTIMP]: 'NOTIMP' };

for (const [reason, make, rcode] of MALFORMED) {
  test(`malformed: ${reason} is counted${rcode === undefined ? ' and dropped' : ` and answered ${RCODE_NAMES[rcode]}`}`, () => {
    const { srv } = setup();
    const out = ask(srv, make());
    const c = srv.counters();
    assert.is(c.dropped[reason as keyof typeof c.dropped], 1, reason);
    assert.is(Object.values(c.dropped).reduce((a, b) => a + b, 0), 1, 'only that reason');
    assert.is(c.queries, 0);
    if (rcode === undefined) assert.is(out.length, 0);
    else {
      const m = replyOf(out[0]);
      assert.equal([m.id, m.qr, m.rcode, m.an.length], [reason === 'not_query' || reason === 'bad_qdcount' ? 0x1234 : 0xabcd, true, rcode, 0]);
      if (reason === 'bad_edns_version') assert.equal(m.ar.map((r) => [r.type, r.ttl >>> 24]), [[OPT, 1]], 'extended rcode 16 (BADVERS) in the OPT record');
    }
  });
}

test('malformed: punted TCP with no TCP engine is counted (tcp_not_handled); with one it is handed over', async () => {
  const { sw, srv } = setup();
  const syn = ethernet({ src: CLIENT.mac, dst: GW.mac, payload: ipv4({ src: CLIENT.ip, dst: GW.ip, payload: tcp({ srcPort: 40000, dstPort: 53, seq: 1, flags: 'S', window: 64240 }) }) });
  const detach = srv.attach();
  sw.inject([[0, syn]]);
  assert.is(srv.counters().dropped.tcp_not_handled, 1);
  detach();
  const taken: number[] = [];
  srv.attach({ tcp: (f, info) => taken.push(f.length, info.port) });
  sw.inject([[0, syn]]);
  assert.equal(taken, [syn.length, 0]);
  assert.equal(DNS_DROP_REASONS.filter((r) => !MALFORMED.some(([m]) => m === r)), ['tcp_not_handled', 'too_many_streams', 'stream_overflow'], 'every reason has a test');
});

test('random input never throws (frames and streams)', () => {
  const { srv } = setup({ upstream: ['127.0.0.1:9'], timer: manualTimers().timer, maxOutstanding: 1 });
  let seed = 12345;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const base = query('web.lab.example', A, { edns: 1232 });
  for (let i = 0; i < 3000; i++) {
    const m = base.slice(0, rnd(base.length + 1));
    for (let k = rnd(6); k > 0; k--) if (m.length) m[rnd(m.length)] = rnd(256);
    srv.handle(frame4(m), () => {});
  }
  const [c, s] = duplexPair();
  srv.handleStream(s);
  for (let i = 0; i < 200; i++) c.write(Buffer.from(Array.from({ length: rnd(40) }, () => rnd(256))));
  const k = srv.counters();
  assert.ok(k.queries + Object.values(k.dropped).reduce((a, b) => a + b, 0) >= 3000, 'every frame counted');
  srv.close();
});

test('two interfaces: each server answers its own network; detach stops one', async () => {
  const { sw, srv } = setup();
  const p2 = sw.addPort({ network: 2 }).id;
  sw.router.addInterface({ network: 2, address: '10.2.0.1/24', punt: ['dns'] });
  const srv2 = new DnsServer(sw, { interface: 1, domain: 'two.example', names: { web: ['10.2.0.5'] }, upstream: [] });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  srv.attach();
  const detach2 = srv2.attach();
  assert.throws(() => srv2.attach(), /already has a DNS server/);
  const q2 = ethernet({ src: '02:00:00:00:00:0b', dst: '02:6e:70:00:00:01', payload: ipv4({ src: '10.2.0.9', dst: '10.2.0.1', payload: udp({ srcPort: 4000, dstPort: 53, payload: query('web.two.example') }) }) });
  sw.inject([[0, frame4(query('web.lab.example'))], [p2, q2]]);
  await tick();
  assert.equal(out.map(([p, f]) => [p, ip4(parse(f.subarray(42)).an[0].data)]).sort(), [[0, '10.0.0.5'], [p2, '10.2.0.5']]);
  detach2();
  out.length = 0;
  sw.inject([[0, frame4(query('web.lab.example'))], [p2, q2]]);
  await tick();
  assert.equal(out.map(([p]) => p), [0]);
});

test('DHCP and DNS servers on one switch: each takes its own punt reason', async () => {
  const { sw, srv } = setup();
  sw.router.setPunt(0, ['dhcp', 'dns']);
  const dhcp = new DhcpServer(sw, { interface: 0, static: [{ mac: CLIENT.mac, address: CLIENT.ip }] });
  const out: Array<[number, Uint8Array]> = [];
  sw.onFrame((f, p) => out.push([p, f.slice()]));
  srv.attach();
  dhcp.attach();
  const bootp = new Uint8Array(244);
  bootp.set([1, 1, 6]);
  CLIENT.mac.split(':').forEach((h, i) => (bootp[28 + i] = parseInt(h, 16)));
  bootp.set([0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255], 236);
  const discover = ethernet({ src: CLIENT.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: ipv4({ src: '0.0.0.0', dst: '255.255.255.255', payload: udp({ srcPort: 68, dstPort: 67, payload: bootp.subarray(0, 244) }) }) });
  sw.inject([[0, discover], [0, frame4(query('web.lab.example'))]]);
  await tick();
  assert.equal(out.map(([, f]) => dissect(f).udp?.srcPort).sort(), [53, 67]);
  assert.equal([dhcp.counters.offers, srv.counters().local], [1, 1]);
});

// ---- A real client.
const missing = requirements();

test('e2e: busybox nslookup in a namespace resolves a local name (A and AAAA) and a forwarded one through the gateway', async () => {
  if (missing) throw new Error(missing);
  const up = await upstream((q, send) => {
    const m = parse(q);
    send(response(q, m.qd[0].name === 'far.example.org' && m.qd[0].type === A ? { answers: [[A, [192, 0, 2, 44]]] } : { rcode: m.qd[0].name === 'far.example.org' ? 0 : NXDOMAIN }));
  });
  const sw = new Switch({ maxPorts: 4 });
  const port = sw.addPort({ network: 7 }).id;
  sw.router.addInterface({ network: 7, address: '10.79.0.1/24', address6: 'fd79::1/64', punt: ['dns'] });
  const srv = new DnsServer(sw, { interface: 0, domain: 'lab.example', names: { web: ['10.79.0.5', 'fd79::5'] }, upstream: [up.addr] });
  srv.attach();
  try {
    const h = await linuxHost(sw, port, 'dn', { mac: '02:00:00:79:00:02', address: '10.79.0.2/24', gateway: '10.79.0.1' });
    sh(['ip', '-6', 'addr', 'add', 'fd79::2/64', 'dev', h.dev, 'nodad'], { ns: h.ns });
    const local = await exec(h.ns, 'busybox nslookup web.lab.example 10.79.0.1', 30000);
    assert.is(local.code, 0, `nslookup: ${local.out} ${local.err}`);
    assert.match(local.out, /Address:\s+10\.79\.0\.5/);
    assert.match(local.out, /Address:\s+fd79::5/);
    const far = await exec(h.ns, 'busybox nslookup far.example.org 10.79.0.1', 30000);
    assert.is(far.code, 0, `nslookup: ${far.out} ${far.err}`);
    assert.match(far.out, /Address:\s+192\.0\.2\.44/);
    const v6 = await exec(h.ns, 'busybox nslookup -type=AAAA web.lab.example fd79::1', 30000);
    assert.is(v6.code, 0, `nslookup over IPv6: ${v6.out} ${v6.err}`);
    assert.match(v6.out, /Address:\s+fd79::5/);
    const rev = await exec(h.ns, 'busybox nslookup 10.79.0.5 10.79.0.1', 30000);
    assert.match(rev.out, /web\.lab\.example/, `reverse: ${rev.out} ${rev.err}`);
    const nx = await exec(h.ns, 'busybox nslookup nope.lab.example 10.79.0.1', 30000);
    assert.match(nx.out + nx.err, /NXDOMAIN/);
    const c = srv.counters();
    assert.ok(c.local >= 4 && c.relayed >= 1, JSON.stringify(c));
    assert.is(Object.values(c.dropped).reduce((a, b) => a + b, 0), 0);
  } finally {
    srv.close();
    up.sock.close();
    await teardown();
  }
});

test.run();
