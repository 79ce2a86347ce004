// IPv6 autoconfiguration in the model (src/compile/services.ts, src/model/ipv6.ts): a Host compiles a
// NAT network with an IPv6 subnet whose gateway punts router solicitations and DHCPv6, and runs a
// RouterAdvertiser and a Dhcp6Server configured from the model (prefix, MTU, RDNSS = the gateway where
// its DNS server runs, DNSSL = the DNS domain, M/O flags; endpoints' MAC + IPv6 address as stateful
// bindings). Solicitations and DHCPv6 messages are frames built here (this file's own builders and
// parsers, as test/ipv6-autoconf.test.ts's); answers are read from what the switch sends back.
// Then the daemon: a Linux network namespace behind socat on a daemon endpoint autoconfigures from
// the RA (default route via the gateway's link-local address) and pings the gateway's IPv6 address.
//
//   port C  client 02:00:00:00:00:0a ── network "n" (10.0.0.0/24, fd00:1::/64) ── gateway fd00:1::1
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../src/host.js';
import { Daemon } from '../src/daemon.js';
import { DEFAULT_DOMAIN } from '../src/model/dns.js';
import { requirements, socatHost, exec, sh, teardown } from './e2e/netns.js';

const A = '02:00:00:00:00:0a';
const A_LL = 'fe80::aff:fe00:a';

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

const NET = { ID: 'n', Type: 'NAT', MTU: 1400, Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }, { IpAddressPrefix: 'fd00:1::/64' }] }] };

function setup() {
  const host = new Host({ log: () => {} });
  host.store.create('network', NET);
  const sw = host.sw;
  const client = sw.addPort({ network: host.compiler.networkOf('n')! }).id;
  const out: Uint8Array[] = [];
  sw.onFrame((f, p) => { if (p === client) out.push(f.slice()); });
  const gw = () => sw.router.interfaces.get(host.compiler.gatewayInterfaceOf('n')!)!;
  const send = (f: Uint8Array) => { out.length = 0; sw.inject([[client, f]]); return out; };
  return { host, sw, send, gw, out };
}
const names = (b: number[]) => { const out: string[] = []; let cur: string[] = []; for (let i = 0; i < b.length;) { const l = b[i++]; if (l === 0) { if (cur.length) out.push(cur.join('.')); cur = []; continue; } cur.push(String.fromCharCode(...b.slice(i, i + l))); i += l; } return out; };
// The first frame sent to the client's own address (the periodic multicast RAs are left aside).
const waitFor = async (out: Uint8Array[], what: string) => {
  const mine = () => out.find((f) => f6(f, 38) === f6(p6(A_LL)));
  for (let i = 0; i < 200 && !mine(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(mine(), what);
  return mine()!;
};

test('a NAT network with an IPv6 subnet: RS -> RA with the prefix, MTU, RDNSS = gateway, DNSSL = the DNS domain, M and O when an endpoint has a binding', async () => {
  const { host, send, gw, out } = setup();
  try {
    assert.equal(gw().punt, ['dhcp', 'dns', 'rs', 'dhcp6']);
    let ra = parseRa(await waitFor(send(rs()), 'an RA'));
    assert.equal([ra.src, ra.dst, ra.hl, ra.lifetime], [f6(p6(linkLocalOf(gw().mac))), f6(p6(A_LL)), 255, 1800]);
    assert.is(ra.flags & 0xc0, 0x40, 'O only: no endpoint has an IPv6 address to bind');
    const opt = (t: number) => ra.opts.filter(([k]) => k === t).map(([, d]) => d);
    assert.equal(opt(3).map((d) => [d[0], d[1] & 0xc0, f6(d, 14)]), [[64, 0xc0, 'fd00:1:0:0:0:0:0:0']], 'the /64, on-link and SLAAC');
    assert.equal(opt(5).map((d) => be32(d, 2)), [1400], 'the network MTU');
    assert.equal(opt(25).map((d) => f6(d, 6)), ['fd00:1:0:0:0:0:0:1'], 'RDNSS: the gateway');
    assert.equal(opt(31).map((d) => names(d.slice(6))), [[DEFAULT_DOMAIN]], 'DNSSL: the DNS domain');
    // An endpoint with a MAC and an IPv6 address: M is set, DHCPv6 gives its address to its MAC.
    host.store.create('endpoint', { ID: 'vm', HostComputeNetwork: 'n', MacAddress: A, IpConfigurations: [{ IpAddress: '10.0.0.5' }, { IpAddress: 'fd00:1::5' }] });
    ra = parseRa(await waitFor(send(rs()), 'an RA'));
    assert.is(ra.flags & 0xc0, 0xc0, 'M and O');
    const sol = dhcp6(1, [...o6(1, DUID_LL(A)), ...o6(14, []), ...iaNa(7), ...o6(6, [0, 23, 0, 24])]);
    const reply = parseD6(await waitFor(send(sol), 'a DHCPv6 reply'));
    assert.equal([reply.type, reply.dport, reply.dst], [7, 546, f6(p6(A_LL))]);
    assert.equal(parseIa(reply.opts.get(3)![0]).addrs.map(([a]) => a), ['fd00:1:0:0:0:0:0:5']);
    assert.equal(reply.opts.get(23)!.map((d) => f6(d)), ['fd00:1:0:0:0:0:0:1']);
    assert.equal(reply.opts.get(24)!.map((d) => names(d)), [[DEFAULT_DOMAIN]]);
    const c6 = host.compiler.services.dhcp6Counters();
    assert.equal(c6.map((c) => [c.network, c.replies]), [['n', 1]]);
    assert.ok(host.compiler.services.raCounters()[0].solicited >= 2);
    // Switched off one by one: the gateway stops punting them.
    host.store.modify('network', 'n', { ...NET, Dhcp6: { Enabled: false } });
    assert.equal(gw().punt, ['dhcp', 'dns', 'rs']);
    ra = parseRa(await waitFor(send(rs()), 'an RA'));
    assert.is(ra.flags & 0xc0, 0, 'neither M nor O without DHCPv6');
    host.store.modify('network', 'n', { ...NET, Dhcp6: { Enabled: false }, RouterAdvertisement: { Enabled: false } });
    assert.equal(gw().punt, ['dhcp', 'dns']);
    send(rs());
    await new Promise((r) => setTimeout(r, 50));
    assert.is(out.filter((f) => f[20] === 58 && f[54] === 134).length, 0, 'no RA');
    assert.equal(host.compiler.services.raCounters(), []);
  } finally {
    host.compiler.services.close();
  }
});

test('a network without an IPv6 subnet has neither; one with only IPv6 (Internal) has both, without the DNS server RDNSS comes from Dns.ServerList', async () => {
  const host = new Host({ log: () => {} });
  host.store.create('network', { ID: 'v4', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.1.0.0/24' }] }] });
  host.store.create('network', { ID: 'v6', Type: 'Internal', DnsProxy: { Enabled: false }, Dns: { ServerList: ['2001:db8::53', '192.0.2.53'] }, Ipams: [{ Subnets: [{ IpAddressPrefix: 'fd00:2::/64' }] }] });
  const punt = (id: string) => host.sw.router.interfaces.get(host.compiler.gatewayInterfaceOf(id)!)!.punt;
  assert.equal(punt('v4'), ['dhcp', 'dns']);
  assert.equal(punt('v6'), ['rs', 'dhcp6']);
  const port = host.sw.addPort({ network: host.compiler.networkOf('v6')! }).id;
  const out: Uint8Array[] = [];
  host.sw.onFrame((f, p) => { if (p === port) out.push(f.slice()); });
  host.sw.inject([[port, rs()]]);
  const ra = parseRa(await waitFor(out, 'an RA'));
  assert.equal(ra.opts.filter(([k]) => k === 25).map(([, d]) => f6(d, 6)), ['2001:db8:0:0:0:0:0:53']);
  assert.equal(ra.opts.filter(([k]) => k === 31), [], 'no DNSSL: no DNS domain');
  host.compiler.services.close();
});

const missing = requirements();

test('e2e: a namespace behind socat on a daemon endpoint autoconfigures from the RA (SLAAC address, default route via the gateway\'s link-local) and pings the gateway\'s IPv6 address', async () => {
  if (missing) throw new Error(missing);
  const state = mkdtempSync(join(tmpdir(), 'netplane-gw6-daemon-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false } });
  await d.listen();
  try {
    await d.host.change({ op: 'create', kind: 'network', value: { ID: 'six', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.21.0.0/24' }, { IpAddressPrefix: 'fd00:21::/64' }] }] } });
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'vm', HostComputeNetwork: 'six', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } } });
    const h = await socatHost('g6', { host: '127.0.0.1', port: free }, ep.MacAddress);
    sh(['sysctl', '-qw', `net.ipv6.conf.${h.dev}.accept_ra=2`], { ns: h.ns });
    sh(['ip', 'link', 'set', h.dev, 'down'], { ns: h.ns });
    sh(['ip', 'link', 'set', h.dev, 'up'], { ns: h.ns });
    let addr = '', route = '';
    for (let i = 0; i < 100; i++) {
      addr = sh(['ip', '-6', 'addr', 'show', 'dev', h.dev, 'scope', 'global'], { ns: h.ns });
      route = sh(['ip', '-6', 'route', 'show', 'default'], { ns: h.ns });
      if (/inet6 fd00:21::/.test(addr) && /default via fe80::/.test(route) && !/tentative/.test(addr)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(addr, /inet6 fd00:21::[0-9a-f:]+\/64/, addr);
    assert.match(route, /default via fe80::/, route);
    const p = await exec(h.ns, 'ping -6 -c 2 -W 2 fd00:21::1', 15000);
    assert.is(p.code, 0, p.out + p.err);
    assert.ok(d.host.compiler.services.raCounters()[0].solicitations >= 1);
  } finally {
    await teardown();
    await d.close();
  }
});

function linkLocalOf(m: string): string {
  const b = mac(m);
  const w = [b[0] ^ 2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
  return `fe80::${((w[0] << 8) | w[1]).toString(16)}:${((w[2] << 8) | w[3]).toString(16)}:${((w[4] << 8) | w[5]).toString(16)}:${((w[6] << 8) | w[7]).toString(16)}`;
}

test.run();
