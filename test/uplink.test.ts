// The socket uplink (src/uplink/): a guest simulated by frames reaches real sockets through the
// host's own sockets. In process: a switch with a guest network (gateway 10.0.0.1 / fd00::1, punt
// host) and the uplink interface (punt uplink, default routes on-link to it); UDP to a dgram server on
// the host's loopback through the gateway address, UDP and ICMP echo to a server in a network
// namespace joined to the root namespace by a veth pair ("outside the virtual network"), ICMP port
// unreachable from a refused UDP socket, per-guest limits, idle timeouts, ACLs, trace, TCP through a
// stand-in engine (the TcpEngine contract). End to end: a Linux host in a namespace on a TAP does the
// same with nc and ping.
//
//   port 0  guest A 10.0.0.2 / fd00::2    ┐
//   port 1  guest B 10.0.0.3              ┴─ network 1 ── if 0  10.0.0.1/24 fd00::1/64 (punt host)
//   (the uplink's injection port)  ── network 5 ── if 1  100.64.0.1/24 fd00:64::1/64 (punt uplink)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { type Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { Switch } from '../src/dataplane.js';
import { Pump } from '../src/transports/pump.js';
import { SocketUplink, type SocketUplinkOptions, type TcpEngineOptions, type TcpFlowKey } from '../src/uplink/index.js';
import { ethernet, ipv4, ipv6, udp, tcp, icmp, icmpv6, dissect, type Dissection } from '../src/frames.js';
import { requirements, outsideServer, setSysctl, background, linuxHost, nativeHost, nativeOr, exec, sh, teardown } from './e2e/netns.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3' };
const GW = { mac: '02:6e:70:00:00:00', ip: '10.0.0.1', ip6: 'fd00::1' };

const missing = requirements();
if (missing) throw new Error(missing);

// Made before the first test, not at import: uvu runs every test file in one process, and another
// file's teardown (test/e2e/netns.ts) would take it down before these tests run.
let server: ReturnType<typeof outsideServer>;
const PING_ALLOWED = '0 2147483647';
// The host's ping_group_range as found: tests that need ping sockets set it and put it back.
const withPing = async (f: () => Promise<void>) => {
  const restore = setSysctl('net.ipv4.ping_group_range', PING_ALLOWED);
  try { await f(); } finally { restore(); }
};

function rig(opts: Partial<SocketUplinkOptions> = {}) {
  const sw = new Switch({ maxPorts: 8 });
  const got: Array<{ port: number; frame: Uint8Array; d: Dissection }> = [];
  sw.addPort({ network: 1 });
  sw.addPort({ network: 1 });
  for (const p of [0, 1]) sw.port(p).onFrame((f) => got.push({ port: p, frame: f.slice(), d: dissect(f) }));
  const rt = sw.router;
  rt.addInterface({ id: 0, network: 1, address: '10.0.0.1/24', address6: 'fd00::1/64' });
  rt.addInterface({ id: 1, network: 5, address: '100.64.0.1/24', address6: 'fd00:64::1/64', mtu: 65535 });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1 });
  rt.addRoute({ destination: '::/0', interface: 1 });
  const logs: string[] = [];
  const up = SocketUplink.attach(sw, { interface: 1, host: [0], log: (m) => logs.push(m), ...opts });
  const pump = Pump.of(sw);
  const send = (port: number, frame: Uint8Array) => { pump.receive(sw.port(port), frame); };
  return { sw, rt, up, got, send, logs };
}

// The e2e tests' switch: one port on network 1 behind gateway 10.0.0.1 (interface 0, `gateway` adds
// to it), the uplink on interface 1 with the default routes.
function uplinkSwitch(gateway: { address6?: string; mtu?: number } = {}, opts: Partial<SocketUplinkOptions> = {}) {
  const sw = new Switch({ maxPorts: 8 });
  const port = sw.addPort({ network: 1 }).id;
  sw.router.addInterface({ id: 0, network: 1, address: '10.0.0.1/24', ...gateway });
  sw.router.addInterface({ id: 1, network: 5, address: '100.64.0.1/24', mtu: 65535 });
  sw.router.addRoute({ destination: '0.0.0.0/0', interface: 1 });
  if (gateway.address6) sw.router.addRoute({ destination: '::/0', interface: 1 });
  return { sw, port, up: SocketUplink.attach(sw, { interface: 1, host: [0], ...opts }) };
}

const guestUdp = (dst: string, sport: number, dport: number, payload: string, who: { mac: string; ip: string } = A) =>
  ethernet({ src: who.mac, dst: GW.mac, payload: ipv4({ src: who.ip, dst, payload: udp({ srcPort: sport, dstPort: dport, payload: new TextEncoder().encode(payload) }) }) });
const guestUdp6 = (dst: string, sport: number, dport: number, payload: string) =>
  ethernet({ src: A.mac, dst: GW.mac, payload: ipv6({ src: A.ip6, dst, payload: udp({ srcPort: sport, dstPort: dport, payload: new TextEncoder().encode(payload) }) }) });
const text = (d: Dissection) => new TextDecoder().decode(d.payload);


// A UDP echo server: answers "echo:<payload>".
async function echoServer(type: 'udp4' | 'udp6', address: string): Promise<DgramSocket> {
  const s = createSocket(type);
  s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
  await new Promise<void>((ok) => s.bind(0, address, ok));
  return s;
}

async function until<T>(what: string, f: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The echo server in the outside namespace (test/e2e/echo-server.mjs), and its TCP file.
const outsidePort = 7007;
const file = join(tmpdir(), `np-uplink-${process.pid}.bin`);
const fileBytes = randomBytes(3 * 1024 * 1024 + 777);
const fileHash = createHash('sha256').update(fileBytes).digest('hex');
test.before(async () => {
  writeFileSync(file, fileBytes);
  server = outsideServer('upsrv');
  background(server.ns, `${process.execPath} ${fileURLToPath(new URL('./e2e/echo-server.mjs', import.meta.url))} ${outsidePort} ${file}`);
  await until('the outside server', () => /:7007\b[\s\S]*:7007\b/.test(sh(['ss', '-uln'], { ns: server.ns })), 10000);
});
test.after(async () => { await teardown(); rmSync(file, { force: true }); });

test('UDP to the gateway address reaches a dgram server on the host\'s 127.0.0.1 / ::1 (reason host), answered from the gateway', async () => {
  const { up, got, send } = rig();
  const s4 = await echoServer('udp4', '127.0.0.1'), s6 = await echoServer('udp6', '::1');
  try {
    send(0, guestUdp(GW.ip, 40000, s4.address().port, 'hi'));
    send(0, guestUdp6(GW.ip6, 40001, s6.address().port, 'hi6'));
    await until('both answers', () => got.length >= 2);
    const r4 = got.find((g) => g.d.ipv4)!, r6 = got.find((g) => g.d.ipv6)!;
    assert.is(r4.port, 0);
    assert.equal([r4.d.src, r4.d.dst, r4.d.ipv4!.src, r4.d.ipv4!.dst, r4.d.udp!.srcPort, r4.d.udp!.dstPort], [GW.mac, A.mac, GW.ip, A.ip, s4.address().port, 40000]);
    assert.is(text(r4.d), 'echo:hi');
    assert.is(r4.d.udp!.checksumOk, true);
    assert.is(r4.d.ipv4!.checksumOk, true);
    assert.equal([r6.d.ipv6!.src, r6.d.ipv6!.dst, r6.d.udp!.checksumOk], [GW.ip6, A.ip6, true]);
    assert.is(text(r6.d), 'echo:hi6');
    const f = up.flows().filter((x) => x.protocol === 'udp');
    assert.is(f.length, 2);
    assert.ok(f.every((x) => x.via === 'host' && x.replied));
    assert.ok(f.some((x) => x.peer === `127.0.0.1:${s4.address().port}`), JSON.stringify(f));
    assert.ok(f.some((x) => x.peer === `[::1]:${s6.address().port}`), JSON.stringify(f));
    assert.is(up.stats().udp_rx, 2);
  } finally { up.close(); s4.close(); s6.close(); }
});

test('UDP to a server outside the virtual network, IPv4 and IPv6: replies injected from the remote address, conntrack sees them', async () => {
  const { up, got, send, rt, sw } = rig();
  try {
    send(0, guestUdp(server.address, 41000, outsidePort, 'ping4'));
    send(0, guestUdp6(server.address6, 41001, outsidePort, 'ping6'));
    await until('both answers', () => got.length >= 2, 8000);
    const r4 = got.find((g) => g.d.ipv4)!, r6 = got.find((g) => g.d.ipv6)!;
    assert.equal([r4.d.src, r4.d.dst, r4.d.ipv4!.src, r4.d.ipv4!.dst, r4.d.udp!.srcPort, r4.d.udp!.dstPort, text(r4.d)],
      [GW.mac, A.mac, server.address, A.ip, outsidePort, 41000, 'ping4'], 'routed to A by the router: not masqueraded');
    assert.equal([r6.d.ipv6!.src, r6.d.ipv6!.dst, text(r6.d)], [server.address6, A.ip6, 'ping6']);
    const conns = rt.connections().filter((c) => c.protocol === 17);
    assert.is(conns.length, 2, JSON.stringify(conns));
    assert.ok(conns.every((c) => c.seenReply), JSON.stringify(conns));
    const flows = up.flows().filter((f) => f.via === 'uplink');
    assert.ok(flows.some((f) => f.peer === `${server.address}:${outsidePort}` && f.guest === `${A.ip}:41000` && /^\d+\.\d+\.\d+\.\d+:\d+$/.test(f.local ?? '')), JSON.stringify(flows));
    assert.is(sw.counters().stats.punted, 2);
  } finally { up.close(); }
});

test('answers larger than the guest MTU arrive fragmented: by the SDK for the gateway (IPv4, IPv6) and IPv6, by the router for IPv4', async () => {
  const { up, got, send } = rig();
  const big = createSocket('udp4'), big6 = createSocket('udp6');
  for (const s of [big, big6]) s.on('message', (m, r) => s.send(Buffer.alloc(Number(m.toString()), 7), r.port, r.address));
  await new Promise<void>((ok) => big.bind(0, '127.0.0.1', ok));
  await new Promise<void>((ok) => big6.bind(0, '::1', ok));
  const ip6Frag = (g: { frame: Uint8Array }) => g.frame[14 + 6] === 44;
  try {
    send(0, guestUdp(GW.ip, 48000, big.address().port, '4000'));
    send(0, guestUdp6(GW.ip6, 48001, big6.address().port, '4000'));
    await until('fragments', () => got.filter((g) => g.d.ipv4).length >= 3 && got.filter((g) => g.d.ipv6).length >= 3);
    const v4 = got.filter((g) => g.d.ipv4), v6 = got.filter((g) => g.d.ipv6);
    assert.ok(got.every((g) => g.frame.length <= 1514), got.map((g) => g.frame.length).join());
    assert.equal(v4.map((g) => [g.d.ipv4!.fragOffset * 8, g.d.ipv4!.mf, g.d.ipv4!.checksumOk]), [[0, true, true], [1480, true, true], [2960, false, true]]);
    assert.is(v4.reduce((n, g) => n + g.d.ipv4!.totalLength - 20, 0), 4008);
    assert.ok(v6.every(ip6Frag), 'IPv6 Fragment headers');
    assert.is(v6.reduce((n, g) => n + g.frame.length - 14 - 48, 0), 4008);
    got.length = 0;
    // Through the router: the outside echo sends back what the guest sent (3000 bytes).
    send(0, guestUdp(server.address, 48002, outsidePort, 'x'.repeat(3000)));
    send(0, guestUdp6(server.address6, 48003, outsidePort, 'y'.repeat(3000)));
    await until('routed fragments', () => got.filter((g) => g.d.ipv4).length >= 3 && got.filter((g) => g.d.ipv6).length >= 3, 8000);
    const r4 = got.filter((g) => g.d.ipv4), r6 = got.filter((g) => g.d.ipv6);
    assert.ok(got.every((g) => g.frame.length <= 1514));
    assert.equal(r4.map((g) => g.d.ipv4!.src), [server.address, server.address, server.address], 'fragmented by the router (IPv4, no DF)');
    assert.ok(r6.every(ip6Frag) && r6.every((g) => g.d.ipv6!.src === server.address6), 'fragmented by the uplink, forwarded by conntrack');
    assert.is(r6.reduce((n, g) => n + g.frame.length - 14 - 48, 0), 3008);
    assert.is(up.stats().injection_refused, 0);
  } finally { up.close(); big.close(); big6.close(); }
});

test('a refused UDP port outside (ECONNREFUSED on the connected socket) becomes ICMP port unreachable to the guest', async () => {
  const { up, got, send } = rig();
  try {
    send(0, guestUdp(server.address, 41002, 9, 'anyone?'));
    // The kernel reports the ICMP error on the socket's next receive; a second datagram makes sure.
    await new Promise((r) => setTimeout(r, 100));
    send(0, guestUdp(server.address, 41002, 9, 'anyone?'));
    const e = await until('port unreachable', () => got.find((g) => g.d.icmp));
    assert.equal([e.d.icmp!.type, e.d.icmp!.code, e.d.ipv4!.src, e.d.ipv4!.dst, e.d.dst], [3, 3, server.address, A.ip, A.mac]);
    assert.is(e.d.icmp!.checksumOk, true);
    assert.ok(up.stats().icmp_errors_sent >= 1);
  } finally { up.close(); }
});

test('ICMP echo through ping sockets (ping_group_range set for the test), the guest\'s identifier kept', async () => {
  await withPing(async () => {
    const { up, got, send } = rig();
    try {
      const echo = (seq: number) => ethernet({ src: A.mac, dst: GW.mac, payload: ipv4({ src: A.ip, dst: server.address, payload: icmp({ type: 8, id: 0x4242, seq, payload: new Uint8Array(32).fill(seq) }) }) });
      send(0, echo(1));
      send(0, echo(2));
      const echo6 = ethernet({ src: A.mac, dst: GW.mac, payload: ipv6({ src: A.ip6, dst: server.address6, payload: icmpv6({ type: 128, id: 0x4343, seq: 1, payload: new Uint8Array(8) }) }) });
      send(0, echo6);
      await until('three replies', () => got.length >= 3, 5000);
      const r = got.filter((g) => g.d.icmp).map((g) => [g.d.icmp!.type, g.d.icmp!.id, g.d.icmp!.seq, g.d.icmp!.checksumOk, g.d.ipv4!.src, g.d.payload![0]]);
      assert.equal(r.sort(), [[0, 0x4242, 1, true, server.address, 1], [0, 0x4242, 2, true, server.address, 2]]);
      const r6 = got.find((g) => g.d.icmpv6)!;
      assert.equal([r6.d.icmpv6!.type, r6.d.icmpv6!.id, r6.d.icmpv6!.checksumOk, r6.d.ipv6!.src], [129, 0x4343, true, server.address6]);
      assert.is(up.stats().ping_flows, 2, 'one socket per (guest, remote, identifier)');
      assert.ok(up.flows().some((f) => f.protocol === 'icmp' && f.guest === `${A.ip}#${0x4242}` && f.replied));
    } finally { up.close(); }
  });
});

test('ping sockets not permitted (ping_group_range "1 0"): a counted refusal, one log line naming the sysctl, admin-prohibited to the guest', async () => {
  const restore = setSysctl('net.ipv4.ping_group_range', '1 0');
  const { up, got, send, logs } = rig();
  try {
    for (const seq of [1, 2]) send(0, ethernet({ src: A.mac, dst: GW.mac, payload: ipv4({ src: A.ip, dst: server.address, payload: icmp({ type: 8, id: 7, seq }) }) }));
    await until('two refusals', () => got.length >= 2);
    assert.is(up.stats().refused_ping_not_permitted, 2);
    assert.is(logs.length, 1, 'said once');
    assert.match(logs[0], /net\.ipv4\.ping_group_range/);
    assert.equal([got[0].d.icmp!.type, got[0].d.icmp!.code], [3, 13]);
  } finally { up.close(); restore(); }
});

test('per-guest limits: the third UDP flow of a guest is refused (udp_limit), another guest is not', async () => {
  const { up, got, send } = rig({ limits: { udp: 2 } });
  try {
    for (const sp of [42000, 42001, 42002]) send(0, guestUdp(server.address, sp, outsidePort, `a${sp}`));
    send(1, guestUdp(server.address, 42000, outsidePort, 'b', B));
    await until('three answers', () => got.length >= 3, 8000);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.map((g) => text(g.d)).sort(), ['a42000', 'a42001', 'b']);
    const s = up.stats();
    assert.is(s.refused_udp_limit, 1);
    assert.is(s.udp_flows, 3);
  } finally { up.close(); }
});

test('idle UDP flows close after 30 s, 120 s once answered (conntrack\'s UDP times), and release the guest\'s count', async () => {
  let now = 0;
  const { up, got, send } = rig({ clock: () => now, sweepInterval: 0, limits: { udp: 1 } });
  try {
    send(0, guestUdp(server.address, 43000, outsidePort, 'x'));
    await until('answer', () => got.length >= 1, 8000);
    send(0, guestUdp(server.address, 43001, 9, 'unanswered'));
    await new Promise((r) => setTimeout(r, 50));
    assert.is(up.stats().refused_udp_limit, 1, 'the limit counts open sockets');
    now = 30_000;
    up.sweep();
    assert.is(up.stats().udp_open, 1, 'an answered flow lives past 30 s');
    now = 120_000;
    up.sweep();
    assert.is(up.stats().udp_open, 0);
    send(0, guestUdp(server.address, 43001, outsidePort, 'y'));
    await until('second answer', () => got.length >= 2, 8000);
    assert.is(up.stats().udp_flows, 2, 'the released count lets a new flow open');
  } finally { up.close(); }
});

test('an ACL blocking egress drops in the dataplane: nothing punted, no socket opened', async () => {
  const { up, send, sw } = rig();
  try {
    sw.acls.setPortAcl(0, { rules: [{ Id: 'no-out', Action: 'Block', Direction: 'Out', Priority: 100, RemoteAddresses: `${server.address}/32` }] });
    send(0, guestUdp(server.address, 44000, outsidePort, 'blocked'));
    await new Promise((r) => setTimeout(r, 50));
    const c = sw.counters();
    assert.ok(c.stats.dropped >= 1, JSON.stringify(c.drops));
    assert.is(c.stats.punted, 0);
    assert.is(up.stats().frames, 0);
    assert.is(up.stats().udp_flows, 0);
  } finally { up.close(); }
});

test('trace shows the punt to the uplink', () => {
  const { sw, up } = rig();
  try {
    const r = sw.trace(0, guestUdp(server.address, 45000, outsidePort, 't'));
    assert.is(r.punted, 'uplink', r.text);
    assert.match(r.text, /punted to the host \(uplink\), interface 1/);
    assert.is(up.stats().frames, 0, 'a trace carries nothing');
  } finally { up.close(); }
});

test('TCP without an engine: RST to the guest (tcp_unavailable); with one, open() connects to the destination or the loopback, limited per guest', async () => {
  const plain = rig({ tcp: false });
  try {
    plain.send(0, ethernet({ src: A.mac, dst: GW.mac, payload: ipv4({ src: A.ip, dst: server.address, payload: tcp({ srcPort: 46000, dstPort: 80, seq: 100, flags: 'S', window: 64240 }) }) }));
    const r = await until('RST', () => plain.got.find((g) => g.d.tcp));
    assert.is(r.d.tcp!.flagString.includes('R'), true, r.d.tcp!.flagString);
    assert.is(r.d.tcp!.ack, 101);
    assert.is(r.d.ipv4!.src, server.address);
    assert.is(plain.up.stats().refused_tcp_unavailable, 1);
  } finally { plain.up.close(); }

  // A stand-in engine: opens the host side for every SYN it gets, and records how that went.
  const results: Array<[string, string]> = [];
  const engines: TcpEngineOptions[] = [];
  const factory = (o: TcpEngineOptions) => {
    engines.push(o);
    return {
      input(p: Uint8Array) {
        const d = dissect(ethernet({ src: A.mac, dst: GW.mac, payload: { ethertype: 0x0800, bytes: p } }));
        const key: TcpFlowKey = { v6: false, src: d.ipv4!.src, sport: d.tcp!.srcPort, dst: d.ipv4!.dst, dport: d.tcp!.dstPort };
        o.open(key).then((s: Duplex) => { results.push([`${key.dst}:${key.dport}`, 'open']); s.destroy(); },
          (e: NodeJS.ErrnoException) => results.push([`${key.dst}:${key.dport}`, e.code ?? '?']));
      },
      flows: () => [],
      close() {},
    };
  };
  const listener: Server = createServer((s) => s.end());
  await new Promise<void>((ok) => listener.listen(0, '127.0.0.1', ok));
  const lport = (listener.address() as { port: number }).port;
  const { up, send } = rig({ tcp: factory, limits: { tcp: 1 } });
  try {
    assert.is(engines.length, 2, 'one engine for the uplink, one for the host');
    const syn = (dst: string, dport: number, sport: number) => ethernet({ src: A.mac, dst: GW.mac, payload: ipv4({ src: A.ip, dst, payload: tcp({ srcPort: sport, dstPort: dport, seq: 1, flags: 'S', window: 64240 }) }) });
    send(0, syn(GW.ip, lport, 47000));
    await until('host open', () => results.length >= 1);
    assert.equal(results[0], [`${GW.ip}:${lport}`, 'open'], 'the gateway address reached 127.0.0.1 at the same port');
    await new Promise((r) => setTimeout(r, 50));   // the socket's close releases the count
    send(0, syn(server.address, 9, 47001));
    await until('refused outside', () => results.length >= 2);
    assert.equal(results[1], [`${server.address}:9`, 'ECONNREFUSED'], 'a closed port outside');
  } finally { up.close(); listener.close(); }
  // The limit: a connection held open counts; the next one is refused without a socket.
  const held: Duplex[] = [];
  const hold = (o: TcpEngineOptions) => ({
    input() { o.open({ v6: false, src: A.ip, sport: 1, dst: '127.0.0.1', dport: lport2 }).then((s) => held.push(s), (e: NodeJS.ErrnoException) => results.push(['limit', e.code ?? '?'])); },
    flows: () => [], close() {},
  });
  const l2: Server = createServer(() => {});
  await new Promise<void>((ok) => l2.listen(0, '127.0.0.1', ok));
  const lport2 = (l2.address() as { port: number }).port;
  const r2 = rig({ tcp: hold, limits: { tcp: 1 } });
  try {
    const seg = ethernet({ src: A.mac, dst: GW.mac, payload: ipv4({ src: A.ip, dst: server.address, payload: tcp({ srcPort: 1, dstPort: 1, seq: 1, flags: 'S', window: 1 }) }) });
    r2.send(0, seg);
    await until('held', () => held.length === 1);
    r2.send(0, seg);
    await until('limited', () => results.some((x) => x[0] === 'limit'));
    assert.equal(results.find((x) => x[0] === 'limit'), ['limit', 'ECONNREFUSED']);
    assert.is(r2.up.stats().refused_tcp_limit, 1);
  } finally { r2.up.close(); for (const s of held) s.destroy(); l2.close(); }
});

// A UDP host port forward (udpForward): two host peers send to a bound socket; each gets a source
// port of its own on the peer address, the port mapping DNATs the datagrams to guest A, and A's
// answers (un-DNATed by conntrack, punted to the peer address) go back to the right host peer from
// the bound socket. Nothing to the peer address without a flow leaves as egress.
test('UDP host port forward: each host peer its own flow through the port mapping, answers to the right peer, limit and idle time', async () => {
  let now = 1_000_000;
  const { up, got, send, rt } = rig({ clock: () => now, sweepInterval: 0 });
  const bound = createSocket('udp4');
  await new Promise<void>((ok) => bound.bind(0, '127.0.0.1', ok));
  const ext = bound.address().port;
  rt.addPortMapping({ protocol: 'udp', externalPort: ext, internalAddress: A.ip, internalPort: 53 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  const fwd = up.udpForward({ socket: bound, address: '100.64.0.1', port: ext, peer: '100.64.0.2', maxFlows: 2 });
  send(0, guestUdp(GW.ip, 9, 9, 'learn'));   // A's MAC learned on port 0 (host_loopback refuses it, nothing else)
  await new Promise((r) => setTimeout(r, 50));
  got.length = 0;
  const peers = await Promise.all([0, 1, 2].map(async () => {
    const c = createSocket('udp4');
    const heard: string[] = [];
    c.on('message', (m) => heard.push(m.toString()));
    await new Promise<void>((ok) => c.bind(0, '127.0.0.1', ok));
    return { c, heard };
  }));
  try {
    peers[0].c.send('one', ext, '127.0.0.1');
    await until('the first datagram at A', () => got.length >= 1);
    peers[1].c.send('two', ext, '127.0.0.1');
    await until('the second datagram at A', () => got.length >= 2);
    const [g1, g2] = got.map((g) => g.d);
    assert.equal([g1.dst, g1.ipv4!.src, g1.ipv4!.dst, g1.udp!.dstPort, text(g1), g1.udp!.checksumOk], [A.mac, '100.64.0.2', A.ip, 53, 'one', true], 'DNATed to A:53 from the peer address');
    assert.equal([g2.ipv4!.src, g2.ipv4!.dst, g2.udp!.dstPort, text(g2)], ['100.64.0.2', A.ip, 53, 'two']);
    assert.is.not(g1.udp!.srcPort, g2.udp!.srcPort, 'a source port per host peer');
    // A answers each from :53; conntrack makes it ext -> the peer's port, the uplink sends it on.
    send(0, guestUdp('100.64.0.2', 53, g2.udp!.srcPort, 'answer-two'));
    send(0, guestUdp('100.64.0.2', 53, g1.udp!.srcPort, 'answer-one'));
    await until('both answers at the host peers', () => peers[0].heard.length > 0 && peers[1].heard.length > 0);
    assert.equal(peers[0].heard, ['answer-one']);
    assert.equal(peers[1].heard, ['answer-two']);
    const flows = up.flows().filter((f) => f.via === 'forward');
    assert.is(flows.length, 2, JSON.stringify(flows));
    assert.ok(flows.every((f) => f.replied && f.remote === `100.64.0.1:${ext}` && f.local === `127.0.0.1:${ext}`), JSON.stringify(flows));
    assert.ok(flows.some((f) => f.peer === `127.0.0.1:${peers[0].c.address().port}` && f.guest === `100.64.0.2:${g1.udp!.srcPort}`), JSON.stringify(flows));
    const conns = rt.connections().filter((c) => c.protocol === 17);
    assert.ok(conns.some((c) => c.dnat && c.seenReply && c.original.src === '100.64.0.2' && c.original.dport === ext), JSON.stringify(conns));
    // A datagram to the peer address on no flow's port is refused, never sent out as egress.
    const before = up.stats();
    send(0, guestUdp('100.64.0.2', 53, 9, 'nobody'));
    await until('the refusal', () => up.stats().refused_forward_udp_unknown === 1);
    assert.is(up.stats().udp_flows, before.udp_flows, 'no egress socket');
    // The table is full (maxFlows 2): a third host peer is refused and counted.
    peers[2].c.send('three', ext, '127.0.0.1');
    await until('the refusal of a third peer', () => up.stats().refused_forward_udp_limit === 1);
    assert.is(got.length, 2, 'nothing injected for it');
    let s = up.stats();
    assert.equal([s.forward_udp_flows, s.forward_udp_rx, s.forward_udp_tx, s.forward_udp_open], [2, 2, 2, 2]);
    // Answered flows live 120 s idle; then they end and the third peer gets one.
    now += 119_000; up.sweep();
    assert.is(up.stats().forward_udp_open, 2);
    now += 1_000; up.sweep();
    s = up.stats();
    assert.equal([s.forward_udp_open, s.forward_udp_closed], [0, 2]);
    peers[2].c.send('three', ext, '127.0.0.1');
    await until('the third datagram at A', () => got.length >= 3);
    assert.is(text(got[2].d), 'three');
    // Unanswered: 30 s.
    now += 30_000; up.sweep();
    assert.is(up.stats().forward_udp_open, 0);
    // Closed: the socket is the caller's and no longer heard.
    fwd.close();
    peers[0].c.send('late', ext, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    assert.is(got.length, 3);
    assert.is(bound.listenerCount('message'), 0);
    // The peer address stays no egress destination after the forward closed.
    send(0, guestUdp('100.64.0.2', 53, g1.udp!.srcPort, 'after close'));
    await until('the refusal after close', () => up.stats().refused_forward_udp_unknown === 2);
    assert.is(up.stats().udp_flows, before.udp_flows, 'still no egress socket');
  } finally { up.close(); bound.close(); for (const p of peers) p.c.close(); }
});

test('udpForward checks its options, naming the field', () => {
  const { up } = rig();
  const socket = createSocket('udp4');
  try {
    for (const [o, field] of [[{ address: 'x' }, 'address'], [{ peer: '1.2.3' }, 'peer'], [{ port: 0 }, 'port'], [{ maxFlows: -1 }, 'maxFlows']] as const) {
      const ok = { socket, address: '100.64.0.1', peer: '100.64.0.2', port: 5000 };
      assert.throws(() => up.udpForward(Object.assign(ok, o)), (e: Error) => e.message.startsWith(field), field);
    }
  } finally { up.close(); socket.close(); }
});

test('attach refuses a second uplink and an unknown interface, naming the field; close restores the punt classes', () => {
  const { sw, up, rt } = rig();
  assert.equal(rt.interfaces.get(1)!.punt, ['uplink']);
  assert.equal(rt.interfaces.get(0)!.punt, ['host']);
  assert.throws(() => SocketUplink.attach(sw, { interface: 1 }), /socket uplink/);
  up.close();
  assert.equal(rt.interfaces.get(1)!.punt, []);
  assert.equal(rt.interfaces.get(0)!.punt, []);
  assert.throws(() => SocketUplink.attach(sw, { interface: 9 }), /no interface 9/);
  assert.throws(() => SocketUplink.attach(sw, { interface: 1, limits: { udp: -1 } }), /limits\.udp/);
});

test('e2e: a Linux host on a TAP: UDP round trip with nc and ping through the uplink to a server outside, IPv4 and IPv6', async () => {
  const restore = setSysctl('net.ipv4.ping_group_range', PING_ALLOWED);
  const { sw, port, up } = uplinkSwitch({ address6: 'fd00::1/64' });
  try {
    const h = await linuxHost(sw, port, 'upg', { mac: A.mac, address: '10.0.0.2/24', gateway: '10.0.0.1' });
    sh(['ip', '-6', 'addr', 'add', 'fd00::2/64', 'dev', h.dev, 'nodad'], { ns: h.ns });
    sh(['ip', '-6', 'route', 'add', 'default', 'via', 'fd00::1'], { ns: h.ns });
    const u = await exec(h.ns, `echo hello-uplink | nc -u -w 2 ${server.address} ${outsidePort}`, 10000);
    assert.match(u.out, /hello-uplink/, JSON.stringify(u));
    const u6 = await exec(h.ns, `echo hello-uplink6 | nc -6 -u -w 2 ${server.address6} ${outsidePort}`, 10000);
    assert.match(u6.out, /hello-uplink6/, JSON.stringify(u6));
    const p = await exec(h.ns, `ping -c 2 -W 2 ${server.address}`, 10000);
    assert.is(p.code, 0, p.out + p.err);
    assert.match(p.out, /2 received/);
    const p6 = await exec(h.ns, `ping -6 -c 2 -W 2 ${server.address6}`, 10000);
    assert.is(p6.code, 0, p6.out + p6.err);
    assert.match(p6.out, /2 received/);
    const s = up.stats();
    assert.ok(s.udp_rx >= 2 && s.ping_rx >= 4, JSON.stringify(s));
  } finally { up.close(); restore(); }
});

test('e2e: a Linux host fetches a file over TCP through the uplink (outside) and from the host\'s loopback via the gateway, sha256 equal', async () => {
  const { sw, port, up } = uplinkSwitch({}, { services: { 5300: (st) => st.pipe(st) } });
  const local: Server = createServer((c) => { c.on('error', () => {}); c.end(fileBytes); });
  await new Promise<void>((ok) => local.listen(0, '127.0.0.1', ok));
  try {
    const h = await linuxHost(sw, port, 'upt', { mac: A.mac, address: '10.0.0.2/24', gateway: '10.0.0.1' });
    const out = await exec(h.ns, `socat -u TCP:${server.address}:${outsidePort} STDOUT | sha256sum`, 60000);
    assert.is(out.out.split(' ')[0], fileHash, JSON.stringify(out));
    const lport = (local.address() as { port: number }).port;
    const lo = await exec(h.ns, `socat -u TCP:10.0.0.1:${lport} STDOUT | sha256sum`, 60000);
    assert.is(lo.out.split(' ')[0], fileHash, JSON.stringify(lo));
    const svc = await exec(h.ns, `echo hi-service | socat -t 2 - TCP:10.0.0.1:5300`, 20000);
    assert.is(svc.out, 'hi-service\n', 'an in-process service on a gateway port (services), not the loopback');
    const s = up.stats();
    assert.is(s.tcp_flows_opened, 3, JSON.stringify(s));
    assert.ok(s.tcp_bytes_to_guest >= 2 * fileBytes.length, JSON.stringify(s));
    // The engine sent super-segments (superSegments, the default), which the dataplane cut for the
    // plain port the TAP is on: fewer packets injected than 1460-byte segments delivered (each of the
    // guest's ACKs opens a few segments, sent as one), and the guest's kernel took every piece (the
    // checksums it verifies, the sha256 above).
    assert.ok(s.injected * 3 < (s.tcp_bytes_to_guest / 1460) * 2, `super-segments: ${s.injected} packets injected for ${s.tcp_bytes_to_guest} bytes`);
    const refused = await exec(h.ns, `socat -u TCP:${server.address}:9 STDOUT`, 20000);
    assert.match(refused.err, /Connection refused/, 'a closed port outside: RST to the guest');
  } finally { up.close(); local.close(); }
});

test('e2e: a Linux host with a 9000-byte MTU on a plain TAP, behind a 9000-byte gateway interface, gets segments of its MSS (8960), not 1460; sha256 equal', async () => {
  if (!nativeOr('the jumbo download did not run')) return;
  const { sw, port, up } = uplinkSwitch({ mtu: 9000 });
  const local: Server = createServer((c) => { c.on('error', () => {}); c.end(fileBytes); });
  await new Promise<void>((ok) => local.listen(0, '127.0.0.1', ok));
  try {
    const h = await nativeHost(sw, port, 'upj', { mac: A.mac, address: '10.0.0.2/24', gateway: '10.0.0.1', offload: false, mtu: 9000 });
    const lport = (local.address() as { port: number }).port;
    const lo = await exec(h.ns, `socat -u TCP:10.0.0.1:${lport} STDOUT | sha256sum`, 60000);
    assert.is(lo.out.split(' ')[0], fileHash, JSON.stringify(lo));
    const t = h.tap.stats;
    // Every frame to the guest is at most its MTU (the TAP would pass a longer one to a kernel that
    // drops it, and the sha256 above would fail); at 1460 bytes a segment it would take 2150 frames.
    const frames = t.txFrames;
    assert.ok(frames * 8960 < fileBytes.length * 1.5, `segments of the guest's MSS: ${frames} frames for ${fileBytes.length} bytes`);
  } finally { up.close(); local.close(); }
});

test('e2e: a Linux host on an offloaded TAP uploads 20 MB to the host\'s loopback: its TSO super-frames reach the engine whole, sha256 equal', async () => {
  if (!nativeOr('the offloaded upload did not run')) return;
  const hash = createHash('sha256');
  let got = 0;
  let done!: () => void;
  const received = new Promise<void>((ok) => { done = ok; });
  const sink: Server = createServer((c) => { c.on('data', (d) => { hash.update(d); got += d.length; }); c.on('end', () => done()); c.on('error', () => {}); });
  await new Promise<void>((ok) => sink.listen(0, '127.0.0.1', ok));
  const file = join(tmpdir(), `np-upload-${process.pid}`);
  const bytes = randomBytes(20 << 20);
  writeFileSync(file, bytes);
  const { sw, port, up } = uplinkSwitch();
  try {
    const h = await nativeHost(sw, port, 'upo', { mac: A.mac, address: '10.0.0.2/24', gateway: '10.0.0.1', offload: true });
    const lport = (sink.address() as { port: number }).port;
    const r = await exec(h.ns, `socat -u OPEN:${file} TCP:10.0.0.1:${lport}`, 60000);
    assert.is(r.code, 0, JSON.stringify(r));
    await received;
    assert.is(got, bytes.length);
    assert.is(hash.digest('hex'), createHash('sha256').update(bytes).digest('hex'), 'the bytes the host received are the file');
    const s = up.stats();
    const st = sw.counters().stats;
    assert.ok(h.tap.stats.rxSuperFrames > 0, `the guest sent super-frames: ${JSON.stringify(h.tap.stats)}`);
    assert.ok(st.gso_punted_whole > 0, `punted whole: ${JSON.stringify(st)}`);
    assert.ok(s.tcp_segments * 1448 * 4 < bytes.length, `the engine took fewer, larger segments: ${s.tcp_segments} for ${bytes.length} bytes`);
  } finally { up.close(); sink.close(); rmSync(file, { force: true }); }
});

test.run();
