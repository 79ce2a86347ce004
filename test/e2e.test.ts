// End to end, with real Linux hosts: network namespaces whose TAP devices are attached to netplane
// ports by socat over UDP, real ping, real TCP through netplane: a NAT network (the HCN model driving
// the switch), masquerade to an outside host, a port mapping from outside and by hairpin, pings that
// keep flowing while their endpoints and network are modified, ACLs stopping and cutting connections, two compartments with the same addresses that never see each
// other, and a restart from the state directory after which the hosts talk again and their established
// TCP connections (through a port mapping and through masquerade) carry on.
//
// They need root and /dev/net/tun. Where those are missing they fail loudly in CI (CI=true) and,
// elsewhere, fail with the reason too: there is no silent skip.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, Switch, UdpTransport } from '../src/index.js';
import { requirements, eventually, linuxHost, linuxRouter, exec, background, teardown, type LinuxHost } from './e2e/netns.js';

const missing = requirements();
const work = mkdtempSync(join(tmpdir(), 'netplane-e2e-'));
const NAT = { ID: 'nat', Type: 'NAT', Ipams: [{ Subnets: [{ IpAddressPrefix: '172.30.0.0/24', Routes: [{ NextHop: '172.30.0.1', DestinationPrefix: '0.0.0.0/0' }] }] }] };

let host: Host;
let A: LinuxHost, B: LinuxHost, OUT: LinuxHost;
const stateDir = join(work, 'state');

function newHost(): Host {
  return new Host({ stateDir, config: { uplink: { address: '192.168.100.1/24' } }, switch: { maxPorts: 16 } });
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  if (missing) return;
  host = newHost();
  host.store.create('network', NAT);
  const a = host.store.create('endpoint', { ID: 'a', HostComputeNetwork: 'nat' });
  const b = host.store.create('endpoint', { ID: 'b', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }, { Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 85, ExternalPort: 8095 } }] });
  const up = host.addUplinkPort();
  A = await linuxHost(host.sw, host.portOf('a')!, 'a', { mac: a.MacAddress, address: '172.30.0.2/24', gateway: '172.30.0.1' });
  B = await linuxHost(host.sw, host.portOf('b')!, 'b', { mac: b.MacAddress, address: '172.30.0.3/24', gateway: '172.30.0.1' });
  OUT = await linuxHost(host.sw, up, 'out', { mac: '02:00:00:00:99:01', address: '192.168.100.2/24' });
});

test.after(async () => {
  await teardown();
  rmSync(work, { recursive: true, force: true });
});

test('the requirements are there: root, /dev/net/tun, ip, socat, ping, nc', () => {
  if (missing) {
    const where = process.env.CI ? 'CI must install them (.ci/run does, with apt-get)' : 'run the tests as root with them installed';
    assert.unreachable(`${missing}; ${where}`);
  }
});

test('two endpoints ping each other and move 20 MB over TCP, byte for byte', async () => {
  if (missing) return;
  const ping = await exec(A.ns, 'ping -c 3 -i 0.2 -W 2 172.30.0.3');
  assert.match(ping.out, /[1-3] received/, ping.out + ping.err);
  const data = join(work, 'data'), recv = join(work, 'recv');
  writeFileSync(data, randomBytes(20 * 1024 * 1024));
  background(B.ns, `socat -u TCP-LISTEN:5001,reuseaddr OPEN:${recv},creat,trunc`);
  await wait(300);
  const send = await exec(A.ns, `socat -u OPEN:${data} TCP:172.30.0.3:5001,retry=20,interval=0.2`, 120000);
  assert.is(send.code, 0, send.err);
  await eventually(() => existsSync(recv) && readFileSync(recv).length === 20 * 1024 * 1024, 20000);
  assert.is(sha(recv), sha(data));
});

test('masquerade: an endpoint reaches an outside server, which sees the external address', async () => {
  if (missing) return;
  background(OUT.ns, `socat TCP-LISTEN:8000,reuseaddr,fork SYSTEM:'echo peer=$SOCAT_PEERADDR'`);
  await wait(300);
  const r = await exec(A.ns, 'socat -T 5 - TCP:192.168.100.2:8000,retry=20,interval=0.3 </dev/null');
  assert.match(r.out, /peer=192\.168\.100\.1\b/, r.out + r.err);
  assert.ok(host.sw.router.connections().some((c) => c.snat && c.original.src === '172.30.0.2'));
});

test('a port mapping: reachable from outside, and from another endpoint by the external address', async () => {
  if (missing) return;
  background(B.ns, `socat TCP-LISTEN:80,reuseaddr,fork SYSTEM:'echo hello-from-b'`);
  await wait(300);
  const outside = await exec(OUT.ns, 'socat -T 5 - TCP:192.168.100.1:8080,retry=20,interval=0.3 </dev/null');
  assert.match(outside.out, /hello-from-b/, outside.out + outside.err);
  const hairpin = await exec(A.ns, 'socat -T 5 - TCP:192.168.100.1:8080,retry=20,interval=0.3 </dev/null');
  assert.match(hairpin.out, /hello-from-b/, hairpin.out + hairpin.err);
});

test('a load balancer VIP on the uplink segment: a real host resolves it by ARP, pings it and connects through it', async () => {
  if (missing) return;
  host.store.create('loadbalancer', { ID: 'vip', HostComputeEndpoints: ['b'], FrontendVIPs: ['192.168.100.80'],
    PortMappings: [{ Protocol: 6, InternalPort: 81, ExternalPort: 8081, DistributionType: 'SourceIP' }] });
  background(B.ns, `socat TCP-LISTEN:81,reuseaddr,fork SYSTEM:'echo hello-from-vip'`);
  await wait(300);
  const ping = await exec(OUT.ns, 'ping -c 2 -W 2 192.168.100.80');
  assert.is(ping.code, 0, ping.out + ping.err);
  const neigh = await exec(OUT.ns, 'ip neigh show 192.168.100.80');
  const uplinkMac = [...host.sw.router.interfaces.values()].find((f) => f.address?.startsWith('192.168.100.1/'))!.mac;
  assert.match(neigh.out, new RegExp(`lladdr ${uplinkMac}`), `the VIP resolves to the uplink's MAC: ${neigh.out}`);
  const r = await exec(OUT.ns, 'socat -T 5 - TCP:192.168.100.80:8081,retry=20,interval=0.3 </dev/null');
  assert.match(r.out, /hello-from-vip/, r.out + r.err);
  // A port the VIP does not publish ends at the router (dropped, or refused by a host reply), never
  // routed back out of the uplink to look for the VIP there.
  const drops = () => host.sw.counters().drops;
  const before = drops();
  await exec(OUT.ns, 'socat -T 1 - TCP:192.168.100.80:9999,connect-timeout=1 </dev/null');
  assert.is(drops().neighbor_unresolved ?? 0, before.neighbor_unresolved ?? 0);
  assert.is(drops().no_route ?? 0, before.no_route ?? 0);
  host.store.delete('loadbalancer', 'vip');
});

test('fragments: ping -s 3000 through masquerade, and a 4000-byte UDP datagram through a port mapping, arrive whole', async () => {
  if (missing) return;
  // The TAPs' MTU is 1500: the hosts' kernels fragment, and reassemble what netplane forwards.
  for (const h of [A, B, OUT]) assert.match((await exec(h.ns, `cat /sys/class/net/${h.dev}/mtu`)).out, /^1500/);
  const before = host.sw.counters().stats.routed;
  const ping = await exec(A.ns, 'ping -c 3 -i 0.2 -W 2 -s 3000 192.168.100.2');
  assert.match(ping.out, /3 received/, ping.out + ping.err);
  assert.match(ping.out, /3008 bytes from 192\.168\.100\.2/, 'whole echo replies came back');
  assert.ok(host.sw.counters().stats.routed - before >= 18, 'three fragments each way per ping');
  // A UDP port mapping on B, 5300 -> 5300, for this test.
  const epB = host.store.get('endpoint', 'b');
  host.store.modify('endpoint', 'b', { ...epB, Policies: [...(epB.Policies ?? []), { Type: 'PortMapping', Settings: { Protocol: 17, InternalPort: 5300, ExternalPort: 5300 } }] });
  try {
    const data = join(work, 'udp-data'), recv = join(work, 'udp-recv');
    writeFileSync(data, randomBytes(4000));
    background(B.ns, `socat -u UDP-RECV:5300 OPEN:${recv},creat,trunc`);
    await wait(300);
    // One read of the file, one datagram of 4000 bytes; sent again until it arrives.
    await eventually(async () => {
      await exec(OUT.ns, `socat -u -b 8192 OPEN:${data} UDP-SENDTO:192.168.100.1:5300`);
      await wait(200);
      return existsSync(recv) && readFileSync(recv).length >= 4000;
    });
    assert.is(sha(recv).length, 64);
    assert.equal(readFileSync(recv).subarray(0, 4000), readFileSync(data), 'the datagram arrived whole, byte for byte');
  } finally {
    host.store.modify('endpoint', 'b', epB);
  }
  const drops = host.sw.counters().drops;
  for (const r of ['ip_fragment', 'ip_fragment_overlap', 'ip_fragment_timeout', 'ip_fragment_buffer_full']) assert.is(drops[r], undefined, r);
});

test('fragments, side by side with a Linux router (nft masquerade): the same large ping crosses both', async () => {
  if (missing) return;
  const lr = linuxRouter('fr', 77);
  // What each server receives: Linux reassembles for conntrack and fragments again; netplane forwards
  // the sender's fragments as they are (docs/model.md, Fragments and MTU). Both deliver the datagram.
  const linux = await exec(lr.client, 'ping -c 3 -i 0.2 -W 2 -s 3000 192.168.77.2');
  assert.match(linux.out, /3 received/, 'the Linux reference: ' + linux.out + linux.err);
  const ours = await exec(A.ns, 'ping -c 3 -i 0.2 -W 2 -s 3000 192.168.100.2');
  assert.match(ours.out, /3 received/, 'netplane: ' + ours.out + ours.err);
  for (const r of [linux, ours]) assert.match(r.out, /3008 bytes from/);
  // A datagram larger than the path with DF set: both answer with fragmentation needed, the sender
  // learns the MTU (ping -M do reports it).
  await exec(lr.router, `ip link set np${process.pid % 10000}frrs mtu 1400`);
  host.sw.router.setMtu(host.sw.router.interfaces.get([...host.sw.router.interfaces.values()].find((f) => f.external)!.id)!.id, 1400);
  try {
    const l = await exec(lr.client, 'ping -c 2 -i 0.3 -W 1 -M do -s 1450 192.168.77.2; ping -c 1 -W 1 -M do -s 1450 192.168.77.2');
    const n = await exec(A.ns, 'ping -c 2 -i 0.3 -W 1 -M do -s 1450 192.168.100.2; ping -c 1 -W 1 -M do -s 1450 192.168.100.2');
    for (const [who, r] of [['Linux', l], ['netplane', n]] as const) {
      assert.match(r.out + r.err, /mtu ?= ?1400|Message too long|Frag needed/i, `${who}: the sender learned the path MTU: ${r.out}${r.err}`);
    }
    assert.ok(host.sw.counters().drops.mtu_exceeded >= 1);
  } finally {
    host.sw.router.setMtu([...host.sw.router.interfaces.values()].find((f) => f.external)!.id, 1500);
  }
});

test('modifying an endpoint and its network while it pings: every ping answered, before and after', async () => {
  if (missing) return;
  const portA = host.sw.port(host.portOf('a')!), portB = host.sw.port(host.portOf('b')!);
  const epA = host.store.get('endpoint', 'a'), net = host.store.get('network', 'nat');
  const mapped = { ...epA, Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 81, ExternalPort: 8081 } }] };
  const allowAll = { ...net, Policies: [
    { Type: 'NetworkACL', Settings: { Id: 'all-in', Action: 'Allow', Direction: 'In', Priority: 100 } },
    { Type: 'NetworkACL', Settings: { Id: 'all-out', Action: 'Allow', Direction: 'Out', Priority: 100 } },
  ] };
  const excepted = { ...net, Policies: [{ Type: 'OutBoundNAT', Settings: { Exceptions: ['10.0.0.0/8'] } }] };
  // A pings its gateway, B pings A; -D stamps each reply with the time it came.
  const gateway = exec(A.ns, 'ping -D -n -c 50 -i 0.1 -W 1 172.30.0.1');
  const peer = exec(B.ns, 'ping -D -n -c 50 -i 0.1 -W 1 172.30.0.2');
  await wait(500);
  for (const [kind, id, value] of [
    ['endpoint', 'a', mapped], ['network', 'nat', allowAll], ['endpoint', 'a', epA], ['network', 'nat', excepted],
    ['endpoint', 'a', mapped], ['network', 'nat', net], ['endpoint', 'a', epA],
  ] as const) {
    host.store.modify(kind, id, value);
    await wait(400);
  }
  const last = Date.now() / 1000;
  for (const [what, r] of [['A to its gateway', await gateway], ['B to A', await peer]] as const) {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.out);
    assert.ok(m, `${what}: ${r.out}${r.err}`);
    assert.ok(Number(m![2]) >= Number(m![1]) - 1, `${what}: ${m![2]} of ${m![1]} answered\n${r.out}`);
    const after = [...r.out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].filter((x) => Number(x[1]) > last).length;
    assert.ok(after >= 5, `${what}: ${after} replies after the last modify`);
  }
  assert.ok(host.sw.port(host.portOf('a')!) === portA && host.sw.port(host.portOf('b')!) === portB, 'the endpoints kept their ports');
  assert.equal(host.store.get('network', 'nat'), net);
});

test('ACLs: a Block stops what an Allow lets through, and cuts an established connection', async () => {
  if (missing) return;
  const log = join(work, 'stream');
  background(B.ns, `socat -u TCP-LISTEN:7000,reuseaddr OPEN:${log},creat,append`);
  background(B.ns, `socat TCP-LISTEN:7001,reuseaddr,fork SYSTEM:'echo open'`);
  const portB = host.portOf('b')!;
  host.sw.acls.setPortAcl(portB, { rules: [{ Id: 'allow-a', Action: 'Allow', Direction: 'In', Priority: 200, RemoteAddresses: '172.30.0.2' }], defaultIn: 'Block' });
  await wait(300);
  background(A.ns, `sh -c 'i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done | socat -u - TCP:172.30.0.3:7000,retry=20,interval=0.2'`);
  const lines = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
  await eventually(() => lines() >= 5);
  const fresh = await exec(A.ns, 'socat -T 3 - TCP:172.30.0.3:7001,connect-timeout=3 </dev/null');
  assert.match(fresh.out, /open/, 'the Allow lets a new connection through');
  host.sw.acls.setPortAcl(portB, { rules: [
    { Id: 'allow-a', Action: 'Allow', Direction: 'In', Priority: 200, RemoteAddresses: '172.30.0.2' },
    { Id: 'block-a', Action: 'Block', Direction: 'In', Priority: 100, RemoteAddresses: '172.30.0.2' },
  ], defaultIn: 'Block' });
  await wait(500);
  const at = lines();
  await wait(1500);
  assert.ok(lines() <= at + 1, `the established connection is cut (${at} then ${lines()} lines)`);
  const refused = await exec(A.ns, 'socat -T 3 - TCP:172.30.0.3:7001,connect-timeout=2 </dev/null');
  assert.not.match(refused.out, /open/, 'and a new one does not get through');
  assert.ok((host.sw.acls.hits(portB)['block-a'] ?? 0) + (host.sw.counters().drops.acl_blocked ?? 0) > 0);
  host.sw.acls.setPortAcl(portB, {});
});

test('two compartments with the same subnet carry traffic without seeing each other', async () => {
  if (missing) return;
  const sw = new Switch({ maxPorts: 8 });
  const hosts: LinuxHost[][] = [];
  for (const c of [1, 2]) {
    const rt = sw.router;
    const pIn = sw.addPort({ network: c * 10 }), pOut = sw.addPort({ network: c * 10 + 1 });
    rt.addInterface({ compartment: c, network: c * 10, address: '10.9.0.1/24' });
    rt.addInterface({ compartment: c, network: c * 10 + 1, address: '10.9.1.1/24' });
    hosts.push([
      await linuxHost(sw, pIn.id, `p${c}`, { mac: `02:00:00:00:0${c}:02`, address: '10.9.0.2/24', gateway: '10.9.0.1' }),
      await linuxHost(sw, pOut.id, `q${c}`, { mac: `02:00:00:00:0${c}:12`, address: '10.9.1.2/24', gateway: '10.9.1.1' }),
    ]);
  }
  // Watch compartment 2's q while compartment 1's p pings its own q at the very same addresses.
  const capture = join(work, 'q2.txt');
  background(hosts[1][1].ns, `sh -c 'timeout 4 tcpdump -l -n -i ${hosts[1][1].dev} icmp > ${capture} 2>/dev/null'`);
  await wait(500);
  const ping = await exec(hosts[0][0].ns, 'ping -c 3 -i 0.2 -W 2 10.9.1.2');
  assert.match(ping.out, /[1-3] received/, ping.out + ping.err);
  await wait(4000);
  assert.is(existsSync(capture) ? readFileSync(capture, 'utf8').trim() : '', '', 'compartment 2 saw none of it');
  const ping2 = await exec(hosts[1][0].ns, 'ping -c 3 -i 0.2 -W 2 10.9.1.2');
  assert.match(ping2.out, /[1-3] received/, 'and compartment 2 works on its own');
  const zones = new Set(sw.router.connections().map((c) => c.compartment));
  assert.equal([...zones].sort(), [1, 2]);
});

test('a restart from the state directory: same objects, the hosts talk again, and established TCP connections through a port mapping and through masquerade carry on', async () => {
  if (missing) return;
  // Two long-lived connections: OUT to 192.168.100.1:8095 (B:85 by a port mapping) and A to OUT:8001
  // (masquerade). Each client reads what to send from a FIFO that a sleeping writer holds open.
  const pm = { fifo: join(work, 'pm.fifo'), recv: join(work, 'pm.recv') };
  const mq = { fifo: join(work, 'mq.fifo'), recv: join(work, 'mq.recv') };
  for (const c of [pm, mq]) { await exec(A.ns, `mkfifo ${c.fifo}`); writeFileSync(c.recv, ''); }
  background(B.ns, `socat -u TCP-LISTEN:85,reuseaddr OPEN:${pm.recv},append`);
  background(OUT.ns, `socat -u TCP-LISTEN:8001,reuseaddr OPEN:${mq.recv},append`);
  await wait(300);
  background(OUT.ns, `socat -u OPEN:${pm.fifo} TCP:192.168.100.1:8095,retry=20,interval=0.2`);
  background(A.ns, `socat -u OPEN:${mq.fifo} TCP:192.168.100.2:8001,retry=20,interval=0.2`);
  for (const c of [pm, mq]) background(A.ns, `sleep 600 > ${c.fifo}`);
  const say = (c: typeof pm, line: string) => exec(A.ns, `sh -c 'echo ${line} >> ${c.fifo}'`);
  const heard = (c: typeof pm, line: string) => () => readFileSync(c.recv, 'utf8').includes(line);
  await say(pm, 'before-pm');
  await say(mq, 'before-mq');
  await eventually(heard(pm, 'before-pm'));
  await eventually(heard(mq, 'before-mq'));
  const masqueraded = host.sw.router.connections().find((c) => c.original.dport === 8001)!;
  const ports = { a: A.transport.address().port, b: B.transport.address().port, out: OUT.transport.address().port };
  const objects = host.store.snapshot();
  for (const t of [A, B, OUT]) await t.transport.close();
  host = newHost();
  assert.equal(host.store.snapshot(), objects);
  const up = host.addUplinkPort();
  A.transport = await UdpTransport.open(host.sw, host.portOf('a')!, { bind: { host: '127.0.0.1', port: ports.a } });
  B.transport = await UdpTransport.open(host.sw, host.portOf('b')!, { bind: { host: '127.0.0.1', port: ports.b } });
  OUT.transport = await UdpTransport.open(host.sw, up, { bind: { host: '127.0.0.1', port: ports.out } });
  // The re-opened transports close even when an assertion fails (else they hold the test run open).
  try {
    // The hosts speak first (socat's side of the UDP path learns nothing; ours learns the peer).
    await exec(B.ns, 'ping -c 1 -W 1 172.30.0.1 >/dev/null 2>&1; true');
    await exec(OUT.ns, 'ping -c 1 -W 1 192.168.100.1 >/dev/null 2>&1; true');
    const ping = await exec(A.ns, 'ping -c 3 -i 0.3 -W 2 172.30.0.3');
    assert.match(ping.out, /[1-3] received/, ping.out + ping.err);
    const out = await exec(A.ns, 'socat -T 5 - TCP:192.168.100.2:8000,retry=20,interval=0.3 </dev/null');
    assert.match(out.out, /peer=192\.168\.100\.1\b/);
    // The new dataplane knows neither connection: their next segments pick them up (loose pickup), and
    // masquerade takes the same external port, which is free.
    await say(pm, 'after-pm');
    await say(mq, 'after-mq');
    await eventually(heard(pm, 'after-pm'), 15000);
    await eventually(heard(mq, 'after-mq'), 15000);
    const again = host.sw.router.connections().find((c) => c.original.dport === 8001)!;
    assert.equal(again.reply.dport, masqueraded.reply.dport, 'the same external port');
    assert.ok(host.sw.counters().stats.ct_tcp_pickups >= 2);
  } finally {
    for (const t of [A, B, OUT]) await t.transport.close();
  }
});

test.run();
