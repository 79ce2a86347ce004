// IPv6 autoconfiguration on the punt queue: the router advertiser (src/ra.ts) and the DHCPv6 server
// (src/dhcp6.ts). This file builds its own router solicitations and DHCPv6 client messages and parses
// the answers with its own parsers (independent of the SDK's encoders and frames.ts): RS -> RA with
// every option, unsolicited RAs on an injected clock, the final RA, DHCPv6 exchanges (SOLICIT /
// ADVERTISE / REQUEST / REPLY, rapid commit, RENEW, REBIND, RELEASE, DECLINE, CONFIRM, stateless
// INFORMATION-REQUEST), lease persistence and a table of malformed input. Then real Linux clients in a
// network namespace: the kernel autoconfigures from the RA (SLAAC address, default route via the
// router's link-local address) and pings the gateway's global address; ISC dhclient -6 gets its
// stateful address.
//
//   port 0  client A 02:00:00:00:00:0a  ┐
//   port 1  client B                    ┴─ network 1 ── if 0  fd00:1::1/64  GW 02:6e:70:00:00:00
//                                                            link-local fe80::6e:70ff:fe00:0
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, readFileSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Switch, RouterAdvertiser, Dhcp6Server, NetplaneError, type RouterAdvertiserOptions, type Dhcp6ServerOptions } from '../src/index.js';
import { requirements, linuxHost, exec, sh, teardown } from './e2e/netns.js';

const A = '02:00:00:00:00:0a', B = '02:00:00:00:00:0b';
const A_LL = 'fe80::aff:fe00:a';
const GW = { mac: '02:6e:70:00:00:00', ll: 'fe80::6e:70ff:fe00:0', ip: 'fd00:1::1' };
const T0 = 1_700_000_000_000;

// ---- This file's own wire helpers.
function p6(s: string): number[] {
  const [l, r] = s.includes('::') ? s.split('::') : [s, undefined];
  const g = (x: string | undefined) => (x ? x.split(':').map((h) => parseInt(h, 16)) : []);
  const head = g(l), tail = g(r);
  const all = r === undefined ? head : [...head, ...Array(8 - head.length - tail.length).fill(0), ...tail];
  return all.flatMap((w) => [w >> 8, w & 255]);
}
const f6 = (b: ArrayLike<number>, o = 0) => Array.from({ length: 8 }, (_, i) => ((b[o + 2 * i] << 8) | b[o + 2 * i + 1]).toString(16)).join(':');
const mac = (s: string) => s.split(':').map((h) => parseInt(h, 16));
const fmac = (b: ArrayLike<number>, o = 0) => Array.from({ length: 6 }, (_, i) => b[o + i].toString(16).padStart(2, '0')).join(':');
const u16 = (x: number) => [x >> 8, x & 255];
const u32 = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255];
function sum(b: ArrayLike<number>, s = 0): number {
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
// Ethernet / IPv6 / an upper-layer message of protocol nh whose checksum sits at `ck` (ICMPv6 2, UDP 6).
function frame6(o: { srcMac: string; dstMac: string; src: string; dst: string; hl: number; nh: number; l4: number[]; ck: number; badSum?: boolean }): Uint8Array {
  const l4 = o.l4.slice();
  const pseudo = [...p6(o.src), ...p6(o.dst), ...u32(l4.length), 0, 0, 0, o.nh];
  const c = (~sum(l4, sum(pseudo)) & 0xffff) ^ (o.badSum ? 1 : 0);
  l4[o.ck] = c >> 8; l4[o.ck + 1] = c & 255;
  return Uint8Array.from([...mac(o.dstMac), ...mac(o.srcMac), 0x86, 0xdd, 0x60, 0, 0, 0, ...u16(l4.length), o.nh, o.hl, ...p6(o.src), ...p6(o.dst), ...l4]);
}
// A router solicitation, with a source link-layer address option unless from ::.
const rs = (o: { src?: string; dst?: string; dstMac?: string; hl?: number; opts?: number[]; badSum?: boolean; code?: number } = {}) => {
  const src = o.src ?? A_LL;
  const opts = o.opts ?? (src === '::' ? [] : [1, 1, ...mac(A)]);
  return frame6({ srcMac: A, dstMac: o.dstMac ?? '33:33:00:00:00:02', src, dst: o.dst ?? 'ff02::2', hl: o.hl ?? 255, nh: 58, l4: [133, o.code ?? 0, 0, 0, 0, 0, 0, 0, ...opts], ck: 2, badSum: o.badSum });
};
interface Ra { srcMac: string; dstMac: string; src: string; dst: string; hl: number; curHopLimit: number; flags: number; lifetime: number; reachable: number; retrans: number; opts: Array<[number, number[]]> }
function parseRa(f: Uint8Array): Ra {
  assert.is((f[12] << 8) | f[13], 0x86dd, 'IPv6');
  assert.is(f[20], 58, 'ICMPv6');
  const len = (f[18] << 8) | f[19];
  const m = f.subarray(54, 54 + len);
  assert.is(len, f.length - 54);
  assert.is(sum(m, sum([...f.subarray(22, 54), ...u32(len), 0, 0, 0, 58])), 0xffff, 'ICMPv6 checksum');
  assert.is(m[0], 134, 'a router advertisement');
  const opts: Array<[number, number[]]> = [];
  for (let i = 16; i < len;) { assert.ok(m[i + 1] > 0); opts.push([m[i], [...m.subarray(i + 2, i + m[i + 1] * 8)]]); i += m[i + 1] * 8; }
  const dv = new DataView(m.buffer, m.byteOffset);
  return { srcMac: fmac(f, 6), dstMac: fmac(f, 0), src: f6(f, 22), dst: f6(f, 38), hl: f[21], curHopLimit: m[4], flags: m[5], lifetime: dv.getUint16(6), reachable: dv.getUint32(8), retrans: dv.getUint32(12), opts };
}
const be32 = (b: number[], o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

// DHCPv6 (RFC 8415 §8, §21): type, transaction id, options (code, length, data).
const o6 = (code: number, data: number[]) => [...u16(code), ...u16(data.length), ...data];
const DUID_LL = (m: string) => [0, 3, 0, 1, ...mac(m)];
const DUID_LLT = (m: string) => [0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, ...mac(m)];
const DUID_EN = [0, 2, 0, 0, 0x7f, 0x3a, 1, 2, 3, 4];
const iaNa = (iaid: number, addrs: string[] = []) => o6(3, [...u32(iaid), ...u32(0), ...u32(0), ...addrs.flatMap((a) => o6(5, [...p6(a), ...u32(0), ...u32(0)]))]);
const SERVER_DUID = DUID_LL(GW.mac);
function dhcp6(type: number, opts: number[], o: { srcMac?: string; src?: string; dst?: string; dstMac?: string; xid?: number; badSum?: boolean; dport?: number; raw?: number[] } = {}): Uint8Array {
  const xid = o.xid ?? 0x123456;
  const body = o.raw ?? [type, xid >> 16, (xid >> 8) & 255, xid & 255, ...opts];
  const l4 = [...u16(546), ...u16(o.dport ?? 547), ...u16(8 + body.length), 0, 0, ...body];
  return frame6({ srcMac: o.srcMac ?? A, dstMac: o.dstMac ?? '33:33:00:01:00:02', src: o.src ?? A_LL, dst: o.dst ?? 'ff02::1:2', hl: 1, nh: 17, l4, ck: 6, badSum: o.badSum });
}
interface D6 { dstMac: string; src: string; dst: string; sport: number; dport: number; type: number; xid: number; opts: Map<number, number[][]> }
function parseD6(f: Uint8Array): D6 {
  assert.is(f[20], 17, 'UDP');
  const len = (f[18] << 8) | f[19];
  const u = f.subarray(54, 54 + len);
  assert.is(sum(u, sum([...f.subarray(22, 54), ...u32(len), 0, 0, 0, 17])), 0xffff, 'UDP checksum');
  const b = u.subarray(8);
  return { dstMac: fmac(f, 0), src: f6(f, 22), dst: f6(f, 38), sport: (u[0] << 8) | u[1], dport: (u[2] << 8) | u[3], type: b[0], xid: (b[1] << 16) | (b[2] << 8) | b[3], opts: opts6([...b.subarray(4)]) };
}
function opts6(b: number[]): Map<number, number[][]> {
  const m = new Map<number, number[][]>();
  for (let i = 0; i < b.length;) {
    const code = (b[i] << 8) | b[i + 1], len = (b[i + 2] << 8) | b[i + 3];
    assert.ok(i + 4 + len <= b.length, 'option inside the message');
    m.set(code, [...(m.get(code) ?? []), b.slice(i + 4, i + 4 + len)]);
    i += 4 + len;
  }
  return m;
}
// An IA_NA: its IAID, T1, T2, addresses with lifetimes, and status code if any.
function parseIa(d: number[]) {
  const sub = opts6(d.slice(12));
  return {
    iaid: be32(d, 0), t1: be32(d, 4), t2: be32(d, 8),
    addrs: (sub.get(5) ?? []).map((a) => [f6(a), be32(a, 16), be32(a, 20)] as [string, number, number]),
    status: sub.get(13)?.[0] ? (sub.get(13)![0][0] << 8) | sub.get(13)![0][1] : undefined,
  };
}
const status6 = (m: D6) => { const s = m.opts.get(13)?.[0]; return s ? (s[0] << 8) | s[1] : undefined; };
const names = (b: number[]) => { const out: string[] = []; let cur: string[] = []; for (let i = 0; i < b.length;) { const l = b[i++]; if (l === 0) { if (cur.length) out.push(cur.join('.')); cur = []; continue; } cur.push(String.fromCharCode(...b.slice(i, i + l))); i += l; } return out; };

const tick = () => new Promise((r) => setImmediate(r));
const noTimer = () => () => {};

function setup(punt: Array<'rs' | 'dhcp6'> = ['rs', 'dhcp6']) {
  const sw = new Switch({ maxPorts: 8, clock: () => 1000 });
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  sw.router.addInterface({ network: 1, address6: 'fd00:1::1/64', mtu: 1400, punt });
  const out: Array<[number, Uint8Array]> = [];
  // What the router's services send (from the gateway's MAC; a client's flooded frames left out).
  sw.onFrame((f, p) => { if (fmac(f, 6) === GW.mac) out.push([p, f.slice()]); });
  return { sw, out };
}

// ---- Router advertisements.

test('RS -> a unicast RA from the link-local address: hop limit 255, M/O, lifetime, SLLA, MTU, prefix, RDNSS, DNSSL', async () => {
  const { sw, out } = setup();
  let now = T0;
  const ra = new RouterAdvertiser(sw, { interface: 0, search: ['lab.example', 'example.org'], managed: true, otherConfig: true });
  assert.is(ra.source, GW.ll);
  ra.attach(() => now, noTimer);
  await tick();
  out.length = 0;   // the first unsolicited one, at attach
  sw.inject([[0, rs()]]);
  await tick();
  assert.equal(out.map(([p]) => p), [0], 'unicast to the solicitor only');
  const a = parseRa(out[0][1]);
  assert.equal([a.srcMac, a.dstMac, a.src, a.dst, a.hl], [GW.mac, A, f6(p6(GW.ll)), f6(p6(A_LL)), 255]);
  assert.equal([a.curHopLimit, a.flags, a.lifetime, a.reachable, a.retrans], [64, 0xc0, 1800, 0, 0]);
  assert.equal(a.opts.map(([t]) => t), [1, 5, 3, 25, 31]);
  assert.equal(fmac(a.opts[0][1]), GW.mac, 'source link-layer address');
  assert.is(be32(a.opts[1][1], 2), 1400, 'MTU: the interface\'s');
  const p = a.opts[2][1];
  assert.equal([p[0], p[1], be32(p, 2), be32(p, 6), f6(p, 14)], [64, 0xc0, 2592000, 604800, f6(p6('fd00:1::'))], 'prefix /64, L and A, RFC 4861 default lifetimes');
  const r = a.opts[3][1];
  assert.equal([be32(r, 2), f6(r, 6), r.length], [1800, f6(p6(GW.ip)), 22], 'RDNSS: the gateway, lifetime 3 x MaxRtrAdvInterval');
  const d = a.opts[4][1];
  assert.is(be32(d, 2), 1800);
  assert.equal(names(d.slice(6)), ['lab.example', 'example.org'], 'DNSSL');
  assert.is((d.length + 2) % 8, 0, 'padded to 8 bytes');
  assert.equal([ra.counters.solicitations, ra.counters.solicited], [1, 1]);
  assert.is(sw.counters().stats.dropped, 0);
  // Unicast to the gateway's address too; the RS without SLLA goes to the frame's source MAC.
  out.length = 0;
  sw.inject([[0, rs({ dst: GW.ll, dstMac: GW.mac, opts: [] })]]);
  await tick();
  assert.equal(out.map(([p, f]) => [p, parseRa(f).dstMac]), [[0, A]]);
});

test('RS from :: gets the next multicast RA to ff02::1, no sooner than 3 s after the last', async () => {
  const { sw, out } = setup();
  let now = T0;
  const ra = new RouterAdvertiser(sw, { interface: 0 }, () => 0.5);
  ra.attach(() => now, noTimer);
  await tick();
  assert.equal(out.map(([p, f]) => [p, parseRa(f).dst, parseRa(f).dstMac]), [[0, f6(p6('ff02::1')), '33:33:00:00:00:01'], [1, f6(p6('ff02::1')), '33:33:00:00:00:01']], 'the first unsolicited RA, flooded');
  out.length = 0;
  now += 1000;
  sw.inject([[0, rs({ src: '::' })]]);
  await tick();
  assert.is(out.length, 0, 'within 3 s of the last multicast RA: deferred');
  assert.is(ra.nextAt(), T0 + 3000);
  now = T0 + 3000;
  assert.ok(ra.tick(now), 'sent at last + 3 s');
  await tick();
  assert.equal(out.map(([p]) => p).sort(), [0, 1]);
  now += 5000;
  out.length = 0;
  sw.inject([[0, rs({ src: '::' })]]);
  await tick();
  assert.is(out.length, 2, 'more than 3 s later: at once');
});

test('periodic RAs on an injected clock: the first three at most 16 s apart, then within [min, max]', () => {
  const { sw } = setup();
  const ra = new RouterAdvertiser(sw, { interface: 0, maxInterval: 60, minInterval: 20 }, () => 1);
  const sent: number[] = [];
  for (let now = 0; now <= 300_000; now += 500) if (ra.tick(now)) sent.push(now);
  assert.equal(sent.slice(0, 5), [0, 16000, 32000, 48000, 108000], 'initial 16 s, then max (random 1)');
  const b = new RouterAdvertiser(sw, { interface: 0, maxInterval: 60, minInterval: 20 }, () => 0);
  const s2: number[] = [];
  for (let now = 0; now <= 100_000; now += 500) if (b.tick(now)) s2.push(now);
  assert.equal(s2.slice(0, 5), [0, 16000, 32000, 48000, 68000], 'then min (random 0)');
  assert.is(b.counters.unsolicited, s2.length);
});

test('attach runs a timer; detach sends a final RA with router lifetime 0 and stops answering', async () => {
  const { sw, out } = setup();
  let now = T0;
  const ra = new RouterAdvertiser(sw, { interface: 0 }, () => 0);
  let fire: (() => void) | undefined;
  let stopped = false;
  const detach = ra.attach(() => now, (run) => { fire = run; return () => { stopped = true; }; });
  assert.throws(() => new RouterAdvertiser(sw, { interface: 0 }).attach(() => now, noTimer), /already has a router advertiser/);
  await tick();
  assert.is(out.length, 2);
  out.length = 0;
  now += 15999;
  fire!();
  await tick();
  assert.is(out.length, 0, 'not due yet');
  now += 1;
  fire!();
  await tick();
  assert.is(out.length, 2, 'the timer sent the second initial RA');
  out.length = 0;
  detach();
  await tick();
  assert.is(stopped, true, 'the timer stopped');
  assert.equal(out.map(([, f]) => parseRa(f).lifetime), [0, 0], 'final RA: lifetime 0');
  out.length = 0;
  now += 100000;
  sw.inject([[0, rs()]]);
  await tick();
  assert.is(out.length, 0, 'no answer');
  assert.is(sw.counters().stats.punted, 1, 'still punted (the interface punts rs), nobody answers');
});

test('RA options: a non-/64 prefix is on-link only; M/O off by default; mtu null, dns [] leave options out', () => {
  const { sw } = setup();
  const ra = new RouterAdvertiser(sw, { interface: 0, prefixes: [{ prefix: 'fd00:1::/56' }, { prefix: 'fd00:2::/64', autonomous: false, validLifetime: 600, preferredLifetime: 300 }], mtu: null, dns: [], lifetime: 0 });
  const a = parseRa(ra.tick(0)!);
  assert.equal([a.flags, a.lifetime], [0, 0]);
  assert.equal(a.opts.map(([t]) => t), [1, 3, 3]);
  assert.equal([a.opts[1][1][0], a.opts[1][1][1]], [56, 0x80]);
  assert.equal([a.opts[2][1][1], be32(a.opts[2][1], 2), be32(a.opts[2][1], 6)], [0x80, 600, 300]);
  const field = (o: Partial<RouterAdvertiserOptions>, name: RegExp) => assert.throws(() => new RouterAdvertiser(sw, { interface: 0, ...o }), (e: unknown) => e instanceof NetplaneError && name.test((e as Error).message));
  field({ prefixes: [{ prefix: 'fd00::/48', autonomous: true }] }, /prefixes\[0\]\.autonomous/);
  field({ prefixes: [{ prefix: 'fe80::/64' }] }, /prefixes\[0\]\.prefix.*link-local/);
  field({ prefixes: [{ prefix: 'nope/64' }] }, /prefixes\[0\]\.prefix/);
  field({ mtu: 1200 }, /mtu/);
  field({ dns: ['10.0.0.1'] }, /dns\[0\]/);
  field({ maxInterval: 2 }, /maxInterval/);
  field({ minInterval: 500 }, /minInterval/);
  field({ lifetime: 10 }, /lifetime/);
  field({ search: ['bad name'] }, /search\[0\]/);
  field({ interface: 9 }, /interface/);
});

test('malformed solicitations are counted by name, never answered, never thrown', () => {
  const { sw } = setup();
  const ra = new RouterAdvertiser(sw, { interface: 0 });
  const cut = rs().slice(0, 60);
  const cases: Array<[string, Uint8Array]> = [
    ['not_ipv6_icmp', new Uint8Array(10)],
    ['not_ipv6_icmp', dhcp6(11, [])],
    ['truncated', cut],
    ['bad_checksum', rs({ badSum: true })],
    ['bad_hop_limit', rs({ hl: 64 })],
    ['bad_options', rs({ opts: [1, 0, 0, 0, 0, 0, 0, 0] })],
    ['bad_options', rs({ opts: [1, 2, ...mac(A)] })],
    ['bad_options', rs({ src: '::', opts: [1, 1, ...mac(A)] })],
    ['bad_options', rs({ code: 1 })],
    ['not_solicitation', frame6({ srcMac: A, dstMac: GW.mac, src: A_LL, dst: GW.ll, hl: 255, nh: 58, l4: [128, 0, 0, 0, 0, 1, 0, 1], ck: 2 })],
  ];
  for (const [why, f] of cases) {
    const before = ra.counters.dropped[why as keyof typeof ra.counters.dropped];
    assert.is(ra.solicited(f, 0), undefined, why);
    assert.is(ra.counters.dropped[why as keyof typeof ra.counters.dropped], before + 1, why);
  }
  assert.is(ra.counters.solicitations, 0);
  // A flood of valid ones: 10 a second answered, the rest counted.
  let answered = 0;
  for (let i = 0; i < 15; i++) if (ra.solicited(rs(), 5000)) answered++;
  assert.equal([answered, ra.counters.dropped.rate_limited], [10, 5]);
  assert.ok(ra.solicited(rs(), 6000), 'the next second');
});

// ---- DHCPv6.

const A_ADDR = 'fd00:1::a:50', B_ADDR = 'fd00:1::b:60', D_ADDR = 'fd00:1::d:70';
function dsetup(o: Partial<Dhcp6ServerOptions> = {}) {
  const { sw, out } = setup();
  const srv = new Dhcp6Server(sw, { interface: 0, bindings: [{ mac: A, address: A_ADDR }, { mac: B, address: B_ADDR }, { duid: '00:02:00:00:7f:3a:01:02:03:04', address: D_ADDR }], search: ['lab.example'], ...o });
  return { sw, out, srv };
}
const ids = (m: D6) => [m.opts.get(2)?.[0], m.opts.get(1)?.[0]];

test('SOLICIT -> ADVERTISE -> REQUEST -> REPLY through the switch: the bound address, lifetimes, DNS, domain list', async () => {
  const { sw, out, srv } = dsetup();
  let now = T0;
  srv.attach(() => now);
  sw.inject([[0, dhcp6(1, [...o6(1, DUID_LLT(A)), ...o6(8, [0, 0]), ...iaNa(7)])]]);
  await tick();
  assert.equal(out.map(([p]) => p), [0]);
  const adv = parseD6(out[0][1]);
  assert.equal([adv.dstMac, adv.src, adv.dst, adv.sport, adv.dport, adv.type, adv.xid], [A, f6(p6(GW.ll)), f6(p6(A_LL)), 547, 546, 2, 0x123456]);
  assert.equal(ids(adv), [SERVER_DUID, DUID_LLT(A)], 'server DUID-LL of the gateway MAC; the client id echoed');
  assert.equal(adv.opts.get(7), [[255]], 'preference 255');
  const ia = parseIa(adv.opts.get(3)![0]);
  assert.equal(ia, { iaid: 7, t1: 1800, t2: 2880, addrs: [[f6(p6(A_ADDR)), 3600, 7200]], status: undefined });
  assert.equal(adv.opts.get(23)!.map((d) => f6(d)), [f6(p6(GW.ip))], 'DNS: the gateway');
  assert.equal(names(adv.opts.get(24)![0]), ['lab.example']);
  assert.equal(srv.leasesAt(now), [], 'an ADVERTISE commits nothing');
  out.length = 0;
  sw.inject([[0, dhcp6(3, [...o6(1, DUID_LLT(A)), ...o6(2, SERVER_DUID), ...iaNa(7)], { xid: 0xabcdef })]]);
  await tick();
  const rep = parseD6(out[0][1]);
  assert.equal([rep.type, rep.xid], [7, 0xabcdef]);
  assert.equal(parseIa(rep.opts.get(3)![0]).addrs, [[f6(p6(A_ADDR)), 3600, 7200]]);
  assert.equal(srv.leasesAt(now).map((l) => [l.address, l.iaid, l.expires]), [[A_ADDR, 7, now + 7200_000]]);
  assert.equal([srv.counters.advertises, srv.counters.replies], [1, 1]);
  assert.is(sw.counters().stats.dropped, 0);
});

test('rapid commit: SOLICIT with option 14 -> REPLY with 14, committed; off -> ADVERTISE', () => {
  const { srv } = dsetup();
  const m = parseD6(srv.handle(dhcp6(1, [...o6(1, DUID_LL(B)), ...o6(14, []), ...iaNa(1)]), T0)!);
  assert.equal([m.type, m.opts.get(14)], [7, [[]]]);
  assert.equal(parseIa(m.opts.get(3)![0]).addrs[0][0], f6(p6(B_ADDR)));
  assert.equal(srv.leasesAt(T0).map((l) => l.address), [B_ADDR]);
  const off = dsetup({ rapidCommit: false }).srv;
  const a = parseD6(off.handle(dhcp6(1, [...o6(1, DUID_LL(B)), ...o6(14, []), ...iaNa(1)]), T0)!);
  assert.equal([a.type, a.opts.has(14)], [2, false]);
  assert.equal(off.leasesAt(T0), []);
});

test('clients are known by DUID, by the MAC in a DUID-LL / DUID-LLT, or by the frame\'s source MAC', () => {
  const { srv } = dsetup();
  const addr = (duid: number[], srcMac = A) => {
    const m = parseD6(srv.handle(dhcp6(1, [...o6(1, duid), ...iaNa(1)], { srcMac }), T0)!);
    const ia = parseIa(m.opts.get(3)![0]);
    return ia.addrs[0]?.[0] ?? `status ${status6(m)}, IA ${ia.status}, DNS ${m.opts.has(23)}`;
  };
  assert.is(addr(DUID_EN, '02:00:00:00:00:99'), f6(p6(D_ADDR)), 'by DUID');
  assert.is(addr(DUID_LL(B)), f6(p6(B_ADDR)), 'DUID-LL: its MAC, not the frame\'s');
  assert.is(addr(DUID_LLT(A), B), f6(p6(A_ADDR)), 'DUID-LLT');
  assert.is(addr([0, 4, ...Array(16).fill(7)], B), f6(p6(B_ADDR)), 'a DUID-UUID: the source MAC');
  assert.is(addr([0, 4, ...Array(16).fill(7)], '02:00:00:00:00:99'), 'status 2, IA 2, DNS true', 'unknown: ADVERTISE with NoAddrsAvail, in the message and the IA');
  // A second IA_NA gets NoAddrsAvail; an old address the client lists gets lifetimes 0.
  const m = parseD6(srv.handle(dhcp6(3, [...o6(1, DUID_LL(A)), ...o6(2, SERVER_DUID), ...iaNa(1, ['fd00:1::99']), ...iaNa(2)]), T0)!);
  const [i1, i2] = m.opts.get(3)!.map(parseIa);
  assert.equal(i1.addrs, [[f6(p6(A_ADDR)), 3600, 7200], [f6(p6('fd00:1::99')), 0, 0]]);
  assert.equal([i2.iaid, i2.status, i2.addrs], [2, 2, []]);
});

test('unknown client: REQUEST -> IA NoAddrsAvail, RENEW -> NoBinding, REBIND not answered', () => {
  const { srv } = dsetup();
  const who = o6(1, DUID_LL('02:00:00:00:00:99'));
  const src = { srcMac: '02:00:00:00:00:99' };
  assert.is(parseIa(parseD6(srv.handle(dhcp6(3, [...who, ...o6(2, SERVER_DUID), ...iaNa(1)], src), T0)!).opts.get(3)![0]).status, 2);
  assert.is(parseIa(parseD6(srv.handle(dhcp6(5, [...who, ...o6(2, SERVER_DUID), ...iaNa(1)], src), T0)!).opts.get(3)![0]).status, 3);
  assert.is(srv.handle(dhcp6(6, [...who, ...iaNa(1)], src), T0), undefined);
  assert.is(srv.counters.dropped.unknown_client, 1);
});

test('stateless INFORMATION-REQUEST -> REPLY with DNS, domain list and information refresh time', () => {
  const { srv } = dsetup({ dns: ['fd00:1::53', '2001:db8::53'], informationRefreshTime: 3600 });
  const m = parseD6(srv.handle(dhcp6(11, [...o6(1, DUID_LL('02:00:00:00:00:99')), ...o6(6, [0, 23, 0, 24])], { srcMac: '02:00:00:00:00:99' }), T0)!);
  assert.is(m.type, 7);
  assert.equal(m.opts.get(23)!.map((d) => [f6(d), f6(d, 16)]), [[f6(p6('fd00:1::53')), f6(p6('2001:db8::53'))]]);
  assert.equal(names(m.opts.get(24)![0]), ['lab.example']);
  assert.equal(m.opts.get(32), [u32(3600)]);
  assert.is(m.opts.has(3), false);
  assert.is(srv.counters.informations, 1);
  // Without a client id too (§18.2.6 allows it).
  assert.is(parseD6(srv.handle(dhcp6(11, []), T0)!).type, 7);
  // A stateless-only server: no bindings, answers information requests, and is not `stateful`.
  const { sw } = setup();
  const s2 = new Dhcp6Server(sw, { interface: 0 });
  assert.equal([s2.stateful, srv.stateful], [false, true]);
});

test('RENEW and REBIND extend the lease; RELEASE ends it; DECLINE records the address; CONFIRM checks the link', () => {
  const { srv } = dsetup();
  const cid = o6(1, DUID_LL(A)), sid = o6(2, SERVER_DUID);
  srv.handle(dhcp6(3, [...cid, ...sid, ...iaNa(9)]), T0);
  const renew = parseD6(srv.handle(dhcp6(5, [...cid, ...sid, ...iaNa(9, [A_ADDR])]), T0 + 1000)!);
  assert.equal(parseIa(renew.opts.get(3)![0]).addrs, [[f6(p6(A_ADDR)), 3600, 7200]]);
  assert.equal(srv.leasesAt(T0).map((l) => l.expires), [T0 + 1000 + 7200_000]);
  parseD6(srv.handle(dhcp6(6, [...cid, ...iaNa(9, [A_ADDR])]), T0 + 2000)!);
  assert.equal(srv.leasesAt(T0).map((l) => l.expires), [T0 + 2000 + 7200_000], 'REBIND (no server id)');
  const rel = parseD6(srv.handle(dhcp6(8, [...cid, ...sid, ...iaNa(9, [A_ADDR])]), T0 + 3000)!);
  assert.equal([rel.type, status6(rel)], [7, 0]);
  assert.equal(srv.leasesAt(T0), []);
  const again = parseD6(srv.handle(dhcp6(8, [...cid, ...sid, ...iaNa(9, [A_ADDR])]), T0 + 3000)!);
  assert.is(parseIa(again.opts.get(3)![0]).status, 3, 'nothing bound any more: NoBinding');
  srv.handle(dhcp6(3, [...cid, ...sid, ...iaNa(9)]), T0);
  const dec = parseD6(srv.handle(dhcp6(9, [...cid, ...sid, ...iaNa(9, [A_ADDR])]), T0 + 4000)!);
  assert.is(status6(dec), 0);
  assert.equal(srv.declinedAddresses(), [{ address: A_ADDR, at: T0 + 4000 }]);
  assert.equal([srv.counters.releases, srv.counters.declines], [2, 1]);
  const confirm = (a: string) => status6(parseD6(srv.handle(dhcp6(4, [...cid, ...iaNa(9, [a])]), T0)!));
  assert.is(confirm(A_ADDR), 0, 'on link: Success');
  assert.is(confirm('fd00:2::5'), 4, 'NotOnLink');
});

test('leases to JSON and back; restore refuses malformed state naming the field', () => {
  const { srv } = dsetup();
  srv.handle(dhcp6(3, [...o6(1, DUID_LL(A)), ...o6(2, SERVER_DUID), ...iaNa(9)]), T0);
  srv.handle(dhcp6(3, [...o6(1, DUID_EN), ...o6(2, SERVER_DUID), ...iaNa(4)], { srcMac: B }), T0);
  const state = JSON.parse(JSON.stringify(srv));
  assert.equal(state.leases.map((l: { address: string }) => l.address).sort(), [A_ADDR, D_ADDR].sort());
  const fresh = dsetup().srv;
  fresh.restore(state);
  assert.equal(fresh.leasesAt(T0), srv.leasesAt(T0));
  // A lease whose binding changed is dropped.
  const moved = dsetup({ bindings: [{ mac: A, address: 'fd00:1::a:51' }] }).srv;
  moved.restore(state);
  assert.equal(moved.leasesAt(T0), []);
  const bad = (s: unknown, field: RegExp) => assert.throws(() => fresh.restore(s as never), (e: unknown) => e instanceof NetplaneError && field.test((e as Error).message));
  bad({ version: 2 }, /state/);
  bad({ version: 1, leases: [{ duid: 'zz', iaid: 1, address: A_ADDR, expires: 1 }], declined: [] }, /state\.leases\[0\]\.duid/);
  bad({ version: 1, leases: [{ duid: '000300010200000000000a', iaid: 1, address: 'x', expires: 1 }], declined: [] }, /state\.leases\[0\]\.address/);
  bad({ version: 1, leases: [], declined: [{ address: A_ADDR }] }, /state\.declined\[0\]\.at/);
});

test('server options are validated, naming the field', () => {
  const { sw } = setup();
  const field = (o: Partial<Dhcp6ServerOptions>, name: RegExp) => assert.throws(() => new Dhcp6Server(sw, { interface: 0, ...o }), (e: unknown) => e instanceof NetplaneError && name.test((e as Error).message));
  field({ bindings: [{ mac: A, address: 'fd00:2::1' }] }, /bindings\[0\]\.address.*subnet/);
  field({ bindings: [{ mac: A, address: A_ADDR }, { mac: B, address: A_ADDR }] }, /bindings\[1\]\.address/);
  field({ bindings: [{ address: A_ADDR }] }, /bindings\[0\]/);
  field({ bindings: [{ duid: 'xyz', address: A_ADDR }] }, /bindings\[0\]\.duid/);
  field({ dns: ['1.2.3.4'] }, /dns\[0\]/);
  field({ preferredLifetime: 100, validLifetime: 50 }, /validLifetime/);
  field({ preference: 256 }, /preference/);
  field({ interface: 5 }, /interface/);
});

test('malformed or misdirected DHCPv6 is counted by name, never answered, never thrown', () => {
  const { srv } = dsetup();
  const cid = o6(1, DUID_LL(A)), sid = o6(2, SERVER_DUID);
  const ok = dhcp6(1, [...cid, ...iaNa(1)]);
  const cases: Array<[string, Uint8Array]> = [
    ['not_ipv6_udp', new Uint8Array(5)],
    ['not_ipv6_udp', rs()],
    ['not_ipv6_udp', dhcp6(1, cid, { dport: 546 })],
    ['not_ipv6_udp', dhcp6(1, cid, { src: '::' })],
    ['truncated', ok.slice(0, ok.length - 4)],
    ['bad_checksum', dhcp6(1, cid, { badSum: true })],
    ['truncated', dhcp6(0, [], { raw: [1, 2] })],
    ['bad_options', dhcp6(0, [], { raw: [1, 0, 0, 1, 0, 1, 0, 9, 1] })],
    ['bad_options', dhcp6(1, [...cid, ...o6(3, [0, 0, 0, 1])])],
    ['bad_options', dhcp6(1, [...cid, ...o6(3, [...u32(1), ...u32(0), ...u32(0), ...o6(5, [1, 2, 3])])])],
    ['bad_options', dhcp6(1, [...cid, ...cid])],
    ['bad_options', dhcp6(11, [...cid, ...iaNa(1)])],
    ['bad_message_type', dhcp6(7, cid)],
    ['bad_message_type', dhcp6(10, cid)],
    ['relayed', dhcp6(12, [])],
    ['no_client_id', dhcp6(1, iaNa(1))],
    ['unexpected_server_id', dhcp6(1, [...cid, ...sid, ...iaNa(1)])],
    ['other_server', dhcp6(3, [...cid, ...iaNa(1)])],
    ['other_server', dhcp6(3, [...cid, ...o6(2, DUID_LL('02:00:00:00:00:77')), ...iaNa(1)])],
    ['nothing_to_confirm', dhcp6(4, [...cid, ...iaNa(1)])],
  ];
  for (const [why, f] of cases) {
    const before = srv.counters.dropped[why as keyof typeof srv.counters.dropped];
    assert.is(srv.handle(f, T0), undefined, why);
    assert.is(srv.counters.dropped[why as keyof typeof srv.counters.dropped], before + 1, why);
  }
  assert.equal(srv.leasesAt(T0), []);
  // Random garbage after a valid header: never throws.
  let seed = 7;
  for (let i = 0; i < 300; i++) {
    const body = Array.from({ length: (i % 60) + 4 }, () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 255);
    srv.handle(dhcp6(0, [], { raw: body }), T0);
  }
  assert.is(srv.counters.received, cases.length + 300);
});

// ---- Real Linux clients.
const missing = requirements();

test('e2e: the Linux kernel autoconfigures from the RA (SLAAC address, default route via the link-local gateway) and pings the gateway', async () => {
  if (missing) throw new Error(missing);
  const sw = new Switch({ maxPorts: 4 });
  const port = sw.addPort({ network: 7 }).id;
  sw.router.addInterface({ network: 7, address6: 'fd00:77::1/64', mtu: 1400, punt: ['rs'] });
  const hostMac = '02:00:00:77:00:02';
  const ra = new RouterAdvertiser(sw, { interface: 0, search: ['lab.example'] });
  const detach = ra.attach();
  try {
    const h = await linuxHost(sw, port, 'ra', { mac: hostMac, address: '169.254.77.2/16' });
    for (const [k, v] of [['accept_ra', '2'], ['autoconf', '1'], ['accept_dad', '0']]) sh(['sysctl', '-qw', `net.ipv6.conf.${h.dev}.${k}=${v}`], { ns: h.ns });
    // Down and up: the kernel solicits again with these settings.
    sh(['ip', 'link', 'set', h.dev, 'down'], { ns: h.ns });
    sh(['ip', 'link', 'set', h.dev, 'up'], { ns: h.ns });
    const slaac = 'fd00:77::ff:fe77:2';   // the modified EUI-64 of 02:00:00:77:00:02
    let addrs = '', routes = '';
    for (let i = 0; i < 100; i++) {
      addrs = sh(['ip', '-6', 'addr', 'show', 'dev', h.dev], { ns: h.ns });
      routes = sh(['ip', '-6', 'route', 'show', 'default'], { ns: h.ns });
      if (addrs.includes(`${slaac}/64`) && routes.includes('default')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(addrs, new RegExp(`inet6 ${slaac}/64 scope global dynamic`), addrs);
    assert.match(routes, /default via fe80::6e:70ff:fe00:0 dev \S+ proto ra/, routes);
    assert.ok(ra.counters.solicitations >= 1, 'the kernel solicited');
    const p = await exec(h.ns, 'ping -6 -c 2 -W 2 fd00:77::1', 15000);
    assert.is(p.code, 0, p.out + p.err);
    const l = await exec(h.ns, `ping -6 -c 1 -W 2 fe80::6e:70ff:fe00:0%${h.dev}`, 15000);
    assert.is(l.code, 0, 'the gateway answers on its link-local address: ' + l.out + l.err);
    // The MTU option: the kernel takes the interface's MTU (1400, its link's is 1500) from it.
    assert.is(sh(['sysctl', '-n', `net.ipv6.conf.${h.dev}.mtu`], { ns: h.ns }).trim(), '1400');
  } finally {
    detach();
    await teardown();
  }
});

const dhclient = ['/usr/sbin/dhclient', '/sbin/dhclient'].find((p) => existsSync(p));

test('e2e: ISC dhclient -6 gets its stateful address (and DNS server, search list) from the DHCPv6 server; dhclient -6 -S its stateless configuration', async () => {
  if (missing) throw new Error(missing);
  if (!dhclient) throw new Error('this test needs ISC dhclient (apt-get install isc-dhcp-client; scripts/install-test-deps.sh)');
  const sw = new Switch({ maxPorts: 4 });
  const port = sw.addPort({ network: 8 }).id;
  sw.router.addInterface({ network: 8, address6: 'fd00:78::1/64', punt: ['rs', 'dhcp6'] });
  const hostMac = '02:00:00:78:00:02';
  const srv = new Dhcp6Server(sw, { interface: 0, bindings: [{ mac: hostMac, address: 'fd00:78::42' }], search: ['lab.example'] });
  const ra = new RouterAdvertiser(sw, { interface: 0, managed: srv.stateful, otherConfig: true, prefixes: [{ prefix: 'fd00:78::/64', autonomous: false }] });
  const detachSrv = srv.attach();
  const detachRa = ra.attach();
  const dir = mkdtempSync(join(tmpdir(), 'netplane-dhcp6-'));
  try {
    const h = await linuxHost(sw, port, 'd6', { mac: hostMac, address: '169.254.78.2/16' });
    sh(['sysctl', '-qw', `net.ipv6.conf.${h.dev}.accept_dad=0`], { ns: h.ns });
    // Our own script: dhclient-script would rewrite the machine's /etc/resolv.conf (a namespace shares /etc).
    const script = join(dir, 'script.sh');
    writeFileSync(script, `#!/bin/sh\ncase "$reason" in\n BOUND6|RENEW6|REBIND6|REBOOT6)\n  ip -6 addr add "$new_ip6_address/128" dev "$interface" valid_lft "$new_max_life" preferred_lft "$new_preferred_life"\n  echo "$new_ip6_address $new_dhcp6_name_servers $new_dhcp6_domain_search $new_preferred_life $new_max_life" > ${dir}/lease ;;\nesac\nexit 0\n`);
    chmodSync(script, 0o755);
    for (let i = 0; i < 50 && !/inet6 fe80::\S+ scope link\s*$/m.test(sh(['ip', '-6', 'addr', 'show', 'dev', h.dev], { ns: h.ns })); i++) await new Promise((r) => setTimeout(r, 100));
    const r = await exec(h.ns, `${dhclient} -6 -1 -v -pf ${dir}/pid -lf ${dir}/leases -sf ${script} ${h.dev}`, 60000);
    assert.is(r.code, 0, `dhclient: ${r.out} ${r.err}`);
    assert.is(readFileSync(join(dir, 'lease'), 'utf8').trim(), 'fd00:78::42 fd00:78::1 lab.example. 3600 7200');
    assert.match(sh(['ip', '-6', 'addr', 'show', 'dev', h.dev], { ns: h.ns }), /inet6 fd00:78::42\/128 scope global/);
    assert.equal(srv.leasesAt(Date.now()).map((l) => l.address), ['fd00:78::42']);
    assert.ok(srv.counters.advertises >= 1 && srv.counters.replies >= 1);
    const p = await exec(h.ns, 'ping -6 -c 2 -W 2 -I fd00:78::42 fd00:78::1', 15000);
    assert.is(p.code, 0, p.out + p.err);
    // Stateless (-S): an INFORMATION-REQUEST for the DNS server and search list only.
    const info = join(dir, 'info.sh');
    writeFileSync(info, `#!/bin/sh\n[ -n "$new_dhcp6_name_servers" ] && echo "$reason $new_ip6_address|$new_dhcp6_name_servers $new_dhcp6_domain_search" > ${dir}/info\nexit 0\n`);
    chmodSync(info, 0o755);
    const s = await exec(h.ns, `${dhclient} -6 -S -1 -v -pf ${dir}/pid-s -lf ${dir}/leases-s -sf ${info} ${h.dev}`, 60000);
    assert.is(s.code, 0, `dhclient -S: ${s.out} ${s.err}`);
    assert.is(readFileSync(join(dir, 'info'), 'utf8').trim(), 'RENEW6 |fd00:78::1 lab.example.', 'no address, the DNS server and search list');
    assert.is(srv.counters.informations, 1);
  } finally {
    for (const f of ['pid', 'pid-s']) {
      try { const pid = Number(readFileSync(join(dir, f), 'utf8').trim()); if (pid > 0) process.kill(pid, 'SIGTERM'); } catch { /* it never daemonized */ }
    }
    detachRa();
    detachSrv();
    await teardown();
  }
});

test.run();
