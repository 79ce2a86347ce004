// Host replies, RFC 5095 and the hop-limit check, compared with the real Linux kernel. The same frames
// go to a network namespace whose TAP device (bridged by socat to a UDP socket of this process) has
// the gateway's MAC and addresses, and to a netplane switch whose router interface has them too; the
// replies are compared field by field: addresses, TTL / hop limit, TCP ports, seq, ack, flags and
// window, ICMP type, code, the second word (pointer) and the quoted bytes. What is left out is listed
// in NOT_COMPARED, each a documented choice (docs/model.md, "Differences from Linux, by choice").
//
// The namespace is also a router (forwarding on, nft conntrack dropping invalid packets in forward)
// with a route via a next hop on the same link, for the hop-limit check before conntrack.
//
// Needs root, /dev/net/tun, ip, socat and nft, like the other end-to-end tests; fails loudly without.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, ipv6, tcp, udp, icmpv6, rawL4, dissect, verifyChecksums, parseIPv6, type L4, type IPv6Extension } from '../src/frames.js';
import { requirements } from './e2e/netns.js';

const GW = { mac: '02:6e:70:00:00:00', ip: '10.9.0.1', ip6: 'fd09::1' };
const A = { mac: '02:00:00:00:00:0a', ip: '10.9.0.2', ip6: 'fd09::2' };
const NEXT = { mac: '02:00:00:00:00:0b', ip: '10.9.0.3', ip6: 'fd09::3' }; // a next hop on the same link
const FAR = { ip: '10.10.0.2', ip6: 'fd0a::2' }; // routed via NEXT
// Fields not compared, and why (docs/model.md says the same):
const NOT_COMPARED = 'IPv4 ID (netplane: a counter), IPv6 flow label (netplane: 0)';

let missing = requirements();
try { execFileSync('sh', ['-c', 'command -v nft'], { stdio: 'ignore' }); } catch { missing ??= 'this test needs nft (apt-get install nftables)'; }

const ns = `np-${process.pid % 10000}-kref`;
const dev = `np${process.pid % 10000}kref`.slice(0, 15);
let socat: ChildProcess | undefined;
let sock: Socket;
let socatPort = 0;
const fromKernel: Uint8Array[] = [];

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nsh = (cmd: string) => execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', cmd], { stdio: 'pipe' });

test.before(async () => { try { await setup(); } catch (e) { console.error("kernel side setup failed:", e); throw e; } });
async function setup() {
  if (missing) return;
  execFileSync('ip', ['netns', 'add', ns]);
  sock = createSocket('udp4');
  await new Promise<void>((ok) => sock.bind(0, '127.0.0.1', () => ok()));
  sock.on('message', (m, r) => { socatPort = r.port; fromKernel.push(new Uint8Array(m)); });
  socat = spawn('socat', ['-b65536', `TUN,tun-type=tap,tun-name=${dev},iff-no-pi,iff-up`, `UDP-DATAGRAM:127.0.0.1:${sock.address().port}`], { stdio: 'ignore', detached: true });
  for (let i = 0; i < 100; i++) {
    try { execFileSync('ip', ['link', 'show', dev], { stdio: 'ignore' }); break; } catch { await wait(20); }
  }
  execFileSync('ip', ['link', 'set', dev, 'netns', ns]);
  nsh([
    'ip link set lo up', `ip link set ${dev} address ${GW.mac}`,
    `ip addr add ${GW.ip}/24 dev ${dev}`, `ip addr add ${GW.ip6}/64 dev ${dev} nodad`,
    `ip link set ${dev} up`,
    `ip neigh replace ${A.ip} lladdr ${A.mac} dev ${dev} nud permanent`,
    `ip neigh replace ${A.ip6} lladdr ${A.mac} dev ${dev} nud permanent`,
    `ip neigh replace ${NEXT.ip} lladdr ${NEXT.mac} dev ${dev} nud permanent`,
    `ip neigh replace ${NEXT.ip6} lladdr ${NEXT.mac} dev ${dev} nud permanent`,
    `ip route add 10.10.0.0/24 via ${NEXT.ip}`, `ip -6 route add fd0a::/64 via ${NEXT.ip6}`,
    // No per-destination ICMP rate limit on the kernel side (netplane's bucket is far from empty here).
    'sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0 net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1',
    `nft add table inet f`, `nft 'add chain inet f through { type filter hook forward priority 0; }'`, 'nft add rule inet f through ct state invalid drop',
  ].join(' && '));
  // The kernel speaks first (an ARP request), so socat's port is known.
  nsh(`ping -c 1 -W 1 ${A.ip} >/dev/null 2>&1; true`);
  for (let i = 0; i < 100 && !socatPort; i++) await wait(20);
}

test.after(async () => {
  if (socat?.pid) { try { process.kill(-socat.pid, 'SIGKILL'); } catch { /* gone */ } }
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
  sock?.close();
});

// netplane with the same gateway and routes.
function netplane() {
  const sw = new Switch({ maxPorts: 2 });
  sw.addPort({ network: 1 });
  const rt = sw.router;
  rt.addInterface({ network: 1, mac: GW.mac, address: `${GW.ip}/24`, address6: `${GW.ip6}/64` });
  for (const h of [A, NEXT]) {
    rt.setNeighbor({ address: h.ip, mac: h.mac, interface: 0 });
    rt.setNeighbor({ address: h.ip6, mac: h.mac, interface: 0 });
  }
  rt.addRoute({ destination: '10.10.0.0/24', interface: 0, nextHop: NEXT.ip });
  rt.addRoute({ destination: 'fd0a::/64', interface: 0, nextHop: NEXT.ip6 });
  return sw;
}

// The kernel's answers to `frame`: what it sends to A's MAC that is not neighbour discovery or MLD
// (with `nd`, only the neighbour advertisements).
async function kernel(frame: Uint8Array, nd = false): Promise<Uint8Array[]> {
  const wanted = (f: Uint8Array) => {
    const d = dissect(f);
    // The setup's ping (an echo request to A, maybe late on a loaded machine) is no answer.
    if (d.dst !== A.mac || d.icmp?.type === 8 || d.icmpv6?.type === 128) return false;
    const discovery = !!d.icmpv6 && d.icmpv6.type >= 130 && d.icmpv6.type <= 143;
    return nd ? discovery && d.icmpv6!.type === 136 : !discovery;
  };
  fromKernel.length = 0;
  sock.send(frame, socatPort, '127.0.0.1');
  // Up to a second for the first answer (a loaded machine), then a moment for any second one.
  for (let t = 0; t < 1000 && !fromKernel.some(wanted); t += 25) await wait(25);
  await wait(100);
  return fromKernel.filter(wanted);
}

function ours(frame: Uint8Array): Uint8Array[] {
  const sw = netplane();
  const out: Uint8Array[] = [];
  sw.onFrame((f) => out.push(f.slice()));
  sw.inject([[0, frame]], 1000);
  return out;
}

// What is compared of a reply.
function fields(f: Uint8Array) {
  assert.ok(verifyChecksums(f), 'checksums recompute');
  const d = dissect(f);
  const l3 = d.ipv4 ? { v: 4, src: d.ipv4.src, dst: d.ipv4.dst, ttl: d.ipv4.ttl, tos: d.ipv4.tos, df: d.ipv4.df, proto: d.ipv4.protocol }
    : { v: 6, src: d.ipv6!.src, dst: d.ipv6!.dst, ttl: d.ipv6!.hopLimit, tos: d.ipv6!.trafficClass, proto: d.ipv6!.upperProtocol };
  const t = d.tcp && { sport: d.tcp.srcPort, dport: d.tcp.dstPort, seq: d.tcp.seq, ack: d.tcp.ack, flags: d.tcp.flagString, window: d.tcp.window, hl: d.tcp.headerLength, data: d.payload?.length };
  const ic = d.icmp ?? d.icmpv6;
  const i = ic && { type: ic.type, code: ic.code, word: (ic.id << 16 | ic.seq) >>> 0, quote: Buffer.from(d.payload!).toString('hex') };
  return { ...l3, tcp: t, icmp: i };
}

async function same(what: string, frame: Uint8Array, nd = false) {
  const k = await kernel(frame, nd);
  const n = ours(frame);
  assert.is(n.length, k.length, `${what}: Linux sent ${k.length} replies, netplane ${n.length}`);
  for (let i = 0; i < k.length; i++) assert.equal(fields(n[i]), fields(k[i]), `${what} (not compared: ${NOT_COMPARED})`);
  return { k, n };
}

const to4 = (l4: L4 | Uint8Array, o: { dst?: string; ttl?: number; protocol?: number } = {}) =>
  ethernet({ src: A.mac, dst: GW.mac, payload: ipv4({ src: A.ip, dst: o.dst ?? GW.ip, ttl: o.ttl ?? 64, id: 0x4242, protocol: o.protocol, payload: l4 }) });
const to6 = (l4: L4 | Uint8Array, o: { dst?: string; hopLimit?: number; protocol?: number; extensions?: IPv6Extension[]; trafficClass?: number } = {}) =>
  ethernet({ src: A.mac, dst: GW.mac, payload: ipv6({ src: A.ip6, dst: o.dst ?? GW.ip6, hopLimit: o.hopLimit ?? 64, protocol: o.protocol, extensions: o.extensions, trafficClass: o.trafficClass, payload: l4 }) });
const data = new Uint8Array([0x6e, 0x65, 0x74, 0x70, 0x6c, 0x61, 0x6e, 0x65]);

test('the requirements are there: root, /dev/net/tun, ip, socat, nft', () => {
  if (missing) assert.unreachable(`${missing}; run the tests as root with them installed`);
  assert.ok(socatPort > 0, 'the kernel side speaks');
});

test('TCP to a closed port, as Linux answers it: SYN, ACK with data, SYN+FIN with data, RST (IPv4 and IPv6)', async () => {
  if (missing) return;
  for (const to of [to4, to6]) {
    const v = to === to4 ? 'IPv4' : 'IPv6';
    const syn = await same(`${v} SYN`, to(tcp({ srcPort: 40000, dstPort: 22, seq: 1000, flags: 'S', window: 64240 })));
    assert.is(syn.k.length, 1);
    const ack = await same(`${v} ACK with data`, to(tcp({ srcPort: 40001, dstPort: 22, seq: 5, ack: 0x12345678, flags: 'PA', payload: data })));
    assert.is(ack.k.length, 1);
    await same(`${v} SYN+FIN with data`, to(tcp({ srcPort: 40002, dstPort: 22, seq: 0xfffffff0, flags: 'SF', payload: data })));
    const rst = await same(`${v} RST`, to(tcp({ srcPort: 40003, dstPort: 22, seq: 5, flags: 'R' })));
    assert.is(rst.k.length, 0);
    const bad = await same(`${v} SYN with a wrong checksum`, to(tcp({ srcPort: 40004, dstPort: 22, seq: 5, flags: 'S', checksum: 0xbad })));
    assert.is(bad.k.length, 0);
  }
});

test('UDP to a closed port: port unreachable quoting the datagram; a bad checksum gets nothing (IPv4 and IPv6)', async () => {
  if (missing) return;
  const u4 = await same('IPv4 UDP', to4(udp({ srcPort: 5353, dstPort: 9, payload: data })));
  assert.equal([fields(u4.k[0]).icmp?.type, fields(u4.k[0]).icmp?.code], [3, 3]);
  const u6 = await same('IPv6 UDP', to6(udp({ srcPort: 5353, dstPort: 9, payload: data })));
  assert.equal([fields(u6.k[0]).icmp?.type, fields(u6.k[0]).icmp?.code], [1, 4]);
  assert.is((await same('IPv4 UDP, bad checksum', to4(udp({ srcPort: 5353, dstPort: 9, payload: data, checksum: 0xbad })))).k.length, 0);
  assert.is((await same('IPv6 UDP, zero checksum', to6(udp({ srcPort: 5353, dstPort: 9, payload: data, checksum: 0 })))).k.length, 0);
});

test('an unknown protocol: IPv4 protocol unreachable; IPv6 Parameter Problem code 1 at the Next Header that named it', async () => {
  if (missing) return;
  const p4 = await same('IPv4 protocol 253', to4(new Uint8Array(16), { protocol: 253 }));
  assert.equal([fields(p4.k[0]).icmp?.type, fields(p4.k[0]).icmp?.code], [3, 2]);
  const p6 = await same('IPv6 next header 253', to6(new Uint8Array(16), { protocol: 253 }));
  assert.equal([fields(p6.k[0]).icmp?.type, fields(p6.k[0]).icmp?.code, fields(p6.k[0]).icmp?.word], [4, 1, 6]);
  const dstopts = { nextHeaderType: 60, bytes: new Uint8Array([0, 0, 1, 4, 0, 0, 0, 0]) };
  const b6 = await same('IPv6 next header 253 behind Destination Options', to6(new Uint8Array(16), { protocol: 253, extensions: [dstopts] }));
  assert.is(fields(b6.k[0]).icmp?.word, 40);
  assert.is((await same('IPv6 no next header', to6(new Uint8Array(0), { protocol: 59 }))).k.length, 0);
});

test('RFC 5095: a type 0 routing header with segments left gets Parameter Problem at the Routing Type; with none left, an echo reply without it', async () => {
  if (missing) return;
  const rh0 = (left: number): IPv6Extension => {
    const b = new Uint8Array(24);
    b[1] = 2; b[3] = left;
    b.set(parseIPv6('fd09::99'), 8);
    return { nextHeaderType: 43, bytes: b };
  };
  const echo = (left: number) => to6(icmpv6({ type: 128, id: 7, seq: 1, payload: data }), { extensions: [rh0(left)] });
  const pp = await same('RH0, segments left 1', echo(1));
  assert.equal([fields(pp.k[0]).icmp?.type, fields(pp.k[0]).icmp?.code, fields(pp.k[0]).icmp?.word], [4, 0, 42]);
  const er = await same('RH0, segments left 0', echo(0));
  assert.equal([fields(er.k[0]).icmp?.type, fields(er.k[0]).proto], [129, 58]);
  // The echo reply keeps the request's traffic class.
  const tc = await same('echo with traffic class 0x28', to6(icmpv6({ type: 128, id: 8, seq: 1, payload: data }), { trafficClass: 0x28 }));
  assert.is(fields(tc.k[0]).tos, 0x28);
});

test('hop limit / TTL 1 on a packet that would start no connection: Time Exceeded before conntrack, as Linux', async () => {
  if (missing) return;
  const t6 = await same('IPv6 ACK, hop limit 1', to6(tcp({ srcPort: 40000, dstPort: 80, seq: 1, ack: 1, flags: 'A' }), { dst: FAR.ip6, hopLimit: 1 }));
  assert.equal([fields(t6.k[0]).icmp?.type, fields(t6.k[0]).icmp?.code], [3, 0]);
  const t4 = await same('IPv4 ACK, TTL 1', to4(tcp({ srcPort: 40000, dstPort: 80, seq: 1, ack: 1, flags: 'A' }), { dst: FAR.ip, ttl: 1 }));
  assert.equal([fields(t4.k[0]).icmp?.type, fields(t4.k[0]).icmp?.code], [11, 0]);
  await same('IPv6 stray echo reply, hop limit 1', to6(icmpv6({ type: 129, id: 3, seq: 1 }), { dst: FAR.ip6, hopLimit: 1 }));
});

test('neighbour discovery to the gateway: a solicitation for it is advertised alike; the invalid ones get nothing from either', async () => {
  if (missing) return;
  const body = (target: string, optLen = 1) => {
    const b = new Uint8Array(24);
    b.set(parseIPv6(target));
    b[16] = 1; b[17] = optLen; b.set([2, 0, 0, 0, 0, 0x0a], 18);
    return b;
  };
  const ns = (o: { dst?: string; mac?: string; hop?: number; target?: string; code?: number; checksum?: number; optLen?: number } = {}) =>
    ethernet({ src: A.mac, dst: o.mac ?? GW.mac, payload: ipv6({ src: A.ip6, dst: o.dst ?? GW.ip6, hopLimit: o.hop ?? 255, payload: icmpv6({ type: 135, code: o.code, checksum: o.checksum, rest: new Uint8Array(4), payload: body(o.target ?? GW.ip6, o.optLen) }) }) });
  const na = await same('unicast solicitation', ns(), true);
  assert.is(na.k.length, 1);
  // To a unicast solicitation (a reachability probe) Linux answers router + solicited, without
  // Override and without the target link-layer address option; netplane too.
  assert.is(fields(na.k[0]).icmp?.word, 0xc0000000, 'router, solicited');
  const ll = 'fe80::6e:70ff:fe00:0';
  const mc = await same('multicast solicitation for the link-local address', ns({ dst: 'ff02::1:ff00:0', mac: '33:33:ff:00:00:00', target: ll }), true);
  assert.is(fields(mc.k[0]).icmp?.word, 0xe0000000, 'router, solicited, override');
  for (const [what, f] of [['hop limit 64', ns({ hop: 64 })], ['another target', ns({ target: 'fd09::77' })], ['code 1', ns({ code: 1 })],
    ['a wrong checksum', ns({ checksum: 0xbad })], ['an option of length 0', ns({ optLen: 0 })]] as Array<[string, Uint8Array]>) {
    assert.is((await same(`solicitation with ${what}`, f, true)).k.length, 0, what);
  }
});

test.run();
