// Linux vxlan interop, end to end: a netplane daemon (in this process) with an Overlay network, VNI 42,
// two real hosts attached by the native TAP, and a Linux host behind a real `vxlan` device in its own
// namespace, one segment across the underlay. ARP both ways (Linux's broadcast flooded to netplane's
// endpoints; netplane answering for the remote endpoint itself), ping both ways, a byte-exact TCP
// transfer both ways, routing from the Linux host through netplane's distributed gateway to another
// network, an ACL on a netplane endpoint blocking the Linux host, the API listing the remote endpoint
// read only, and netplane's counters showing the encapsulation and decapsulation.
//
// The underlay: netplane's socket underlay binds UDP on its provider address and sends outer packets
// from UDP sockets bound there too, and sockets belong to the namespace of the process that opens them. A Node process
// cannot move itself into a namespace, so netplane's underlay is the root side of a veth pair
// (198.19.<n>.1/24, <n> from the pid as e2e/netns.ts's outsideServer does) whose other side is in the
// Linux host's namespace (198.19.<n>.2, where vx0 is `local`); no bridge is needed for two members.
// Nothing else binds UDP 4789 on that address; a vxlan device in the root namespace (bound to
// 0.0.0.0:4789) would make the open fail with EADDRINUSE, loudly.
//
// They need root, /dev/net/tun and the native helper; without them they fail with the reason.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Daemon } from '../src/daemon.js';
import { nativeTapAvailable } from '../src/transports/tap.js';
import { requirements, eventually, nativeHost, exec, background, teardown, sh } from './e2e/netns.js';

const missing = requirements() ?? (nativeTapAvailable() ? undefined : 'the overlay e2e test needs the native helper (node scripts/native.mjs)')
  ?? (() => { try { execFileSync('sh', ['-c', 'command -v bridge && command -v ethtool'], { stdio: 'ignore' }); return undefined; } catch { return 'the overlay e2e test needs bridge (iproute2) and ethtool'; } })();
const work = mkdtempSync(join(tmpdir(), 'netplane-e2e-overlay-'));
const root = fileURLToPath(new URL('..', import.meta.url));
const runFile = promisify(execFile);
const run = `${process.pid % 10000}`;
const n = process.pid % 250 + 1;
const PA = `198.19.${n}.1`, LINUX_PA = `198.19.${n}.2`;
const LINUX_MAC = '02:00:00:00:42:99', LINUX_IP = '10.42.0.99';
const VXNS = `np-${run}-vx`;

const OVL = { ID: 'ovl', Type: 'Overlay', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.42.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 42 } }] }] }] };
const INT = { ID: 'int', Type: 'Internal', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.43.0.0/24' }] }] };
const EP = (id: string, ip: string, mac: string, net = 'ovl', extra: Record<string, unknown> = {}) =>
  ({ ID: id, HostComputeNetwork: net, MacAddress: mac, IpConfigurations: [{ IpAddress: ip, PrefixLength: 24 }], ...extra });

let daemon: Daemon;
let A: { ns: string; dev: string }, B: { ns: string; dev: string }, C: { ns: string; dev: string };

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${daemon.port}${path}`, {
    method, headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

const stat = (name: string) => (daemon.host.sw.counters().stats as Record<string, number>)[name] ?? 0;

test.before(async () => {
  if (missing) return;
  // The underlay: root side (netplane's PA) <-> the Linux host's namespace (its PA, vx0).
  sh(['ip', 'netns', 'add', VXNS]);
  const dev = `np${run}u`.slice(0, 13);
  sh(['ip', 'link', 'add', `${dev}o`, 'type', 'veth', 'peer', 'name', `${dev}i`, 'netns', VXNS]);
  sh(['ip', 'addr', 'add', `${PA}/24`, 'dev', `${dev}o`]);
  sh(['ip', 'link', 'set', `${dev}o`, 'up']);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns: VXNS });
  sh(['ip', 'addr', 'add', `${LINUX_PA}/24`, 'dev', `${dev}i`], { ns: VXNS });
  sh(['ip', 'link', 'set', `${dev}i`, 'up'], { ns: VXNS });
  sh(['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'local', LINUX_PA, 'nolearning'], { ns: VXNS });
  sh(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', PA], { ns: VXNS });
  sh(['ip', 'link', 'set', 'vx0', 'address', LINUX_MAC], { ns: VXNS });
  sh(['ip', 'addr', 'add', `${LINUX_IP}/24`, 'dev', 'vx0'], { ns: VXNS });
  sh(['ip', 'link', 'set', 'vx0', 'up'], { ns: VXNS });
  // vx0 leaves its TCP checksums to the device (CHECKSUM_PARTIAL), and over a veth no NIC completes
  // them: the UDP socket on the other side reads the inner segment as it is, checksum unfilled. A real
  // underlay NIC fills it in; here the kernel must, so vx0's checksum offload is off.
  sh(['ethtool', '-K', 'vx0', 'tx', 'off'], { ns: VXNS });
  sh(['ip', 'route', 'add', '10.43.0.0/24', 'via', '10.42.0.1'], { ns: VXNS });

  daemon = new Daemon({ stateDir: join(work, 'state'), listen: { port: 0, socket: false }, uplink: false, overlay: { providerAddress: PA } });
  await daemon.listen();
  for (const [path, body] of [['/networks', OVL], ['/networks', INT],
    ['/endpoints', EP('a', '10.42.0.2', '02:00:00:00:42:02')], ['/endpoints', EP('b', '10.42.0.3', '02:00:00:00:42:03')],
    ['/endpoints', EP('c', '10.43.0.2', '02:00:00:00:43:02', 'int')],
    ['/endpoints', EP('linux', LINUX_IP, LINUX_MAC, 'ovl', { IsRemoteEndpoint: true, Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: LINUX_PA } }] })]] as const) {
    const r = await api('POST', path, body);
    assert.is(r.status, 201, JSON.stringify(r.json));
  }
  const sw = daemon.host.sw;
  // Plain TAPs (no offloads): frames within the overlay MTU, 1450, as vx0's.
  A = await nativeHost(sw, daemon.host.portOf('a')!, 'a', { mac: '02:00:00:00:42:02', address: '10.42.0.2/24', gateway: '10.42.0.1', offload: false });
  B = await nativeHost(sw, daemon.host.portOf('b')!, 'b', { mac: '02:00:00:00:42:03', address: '10.42.0.3/24', gateway: '10.42.0.1', offload: false });
  C = await nativeHost(sw, daemon.host.portOf('c')!, 'c', { mac: '02:00:00:00:43:02', address: '10.43.0.2/24', gateway: '10.43.0.1', offload: false });
  for (const h of [A, B]) sh(['ip', 'link', 'set', h.dev, 'mtu', '1450'], { ns: h.ns });
});

test.after(async () => {
  if (daemon) await daemon.close();
  await teardown();
  try { execFileSync('ip', ['netns', 'del', VXNS], { stdio: 'ignore' }); } catch { /* gone, or never made */ }
  rmSync(work, { recursive: true, force: true });
});

test('the requirements are there: root, /dev/net/tun, the native helper, ip, bridge, ethtool, socat, ping', () => {
  if (missing) assert.unreachable(`${missing}; ${process.env.CI ? 'CI must install them' : 'run the tests as root with them installed'}`);
});

test('ARP resolves both ways, and ping goes both ways across VXLAN', async () => {
  if (missing) return;
  const decap = stat('vxlan_decap'), encap = stat('vxlan_encap');
  const fromLinux = await exec(VXNS, 'ping -c 3 -i 0.2 -W 2 10.42.0.2');
  assert.match(fromLinux.out, /3 received/, fromLinux.out + fromLinux.err);
  const fromA = await exec(A.ns, `ping -c 3 -i 0.2 -W 2 ${LINUX_IP}`);
  assert.match(fromA.out, /3 received/, fromA.out + fromA.err);
  const neighA = await exec(A.ns, `ip neigh show ${LINUX_IP}`);
  assert.match(neighA.out, new RegExp(`lladdr ${LINUX_MAC}`), `a resolved the Linux host: ${neighA.out}`);
  const neighL = await exec(VXNS, 'ip neigh show 10.42.0.2 dev vx0');
  assert.match(neighL.out, /lladdr 02:00:00:00:42:02/, `the Linux host resolved a: ${neighL.out}`);
  assert.ok(stat('vxlan_decap') >= decap + 6, `decapsulated: ${stat('vxlan_decap') - decap}`);
  assert.ok(stat('vxlan_encap') >= encap + 6, `encapsulated: ${stat('vxlan_encap') - encap}`);
  const u = daemon.host.underlayStats()!;
  assert.ok(u.rxFrames > 0 && u.txFrames > 0, JSON.stringify(u));
});

test('a byte-exact TCP transfer both ways (4 MB each)', async () => {
  if (missing) return;
  for (const [from, to, toIp, port] of [[A.ns, VXNS, LINUX_IP, 5001], [VXNS, B.ns, '10.42.0.3', 5002]] as const) {
    const data = join(work, `data${port}`), recv = join(work, `recv${port}`);
    writeFileSync(data, randomBytes(4 * 1024 * 1024));
    background(to, `socat -u TCP-LISTEN:${port},reuseaddr OPEN:${recv},creat,trunc`);
    await wait(300);
    const send = await exec(from, `socat -u OPEN:${data} TCP:${toIp}:${port},retry=20,interval=0.2`, 60000);
    const c = daemon.host.sw.counters();
    assert.is(send.code, 0, `${from} -> ${toIp}: ${send.err} drops ${JSON.stringify(Object.fromEntries(Object.entries(c.drops).filter(([, v]) => v)))} underlay ${JSON.stringify(daemon.host.underlayStats())}`);
    await eventually(() => existsSync(recv) && readFileSync(recv).length === 4 * 1024 * 1024, 20000);
    assert.is(sha(recv), sha(data), `${from} -> ${toIp}`);
  }
});

test('distributed routing: the Linux host reaches another network through netplane\'s gateway on the segment', async () => {
  if (missing) return;
  const r = await exec(VXNS, 'ping -c 2 -i 0.2 -W 2 10.43.0.2');
  assert.match(r.out, /2 received/, r.out + r.err);
  const neigh = await exec(VXNS, 'ip neigh show 10.42.0.1 dev vx0');
  assert.match(neigh.out, /lladdr 0a:6e:70:00:00:2a/, `the gateway's MAC is the VNI's: ${neigh.out}`);
});

test('an ACL on a netplane endpoint blocks the Linux host, and only it', async () => {
  if (missing) return;
  const b = (await api('GET', '/endpoints/b')).json;
  const put = await api('PUT', '/endpoints/b', { ...b, Policies: [{ Type: 'ACL', Settings: { Action: 'Block', Direction: 'In', Priority: 100, RemoteAddresses: LINUX_IP } }] });
  assert.is(put.status, 200, JSON.stringify(put.json));
  const blocked = await exec(VXNS, 'ping -c 2 -i 0.2 -W 1 10.42.0.3');
  assert.match(blocked.out, /0 received/, blocked.out);
  const other = await exec(A.ns, 'ping -c 2 -i 0.2 -W 2 10.42.0.3');
  assert.match(other.out, /2 received/, other.out + other.err);
  const still = await exec(VXNS, 'ping -c 2 -i 0.2 -W 2 10.42.0.2');
  assert.match(still.out, /2 received/, still.out + still.err);
  const back = await api('PUT', '/endpoints/b', { ...b, Policies: [] });
  assert.is(back.status, 200);
  const open = await exec(VXNS, 'ping -c 2 -i 0.2 -W 2 10.42.0.3');
  assert.match(open.out, /2 received/, open.out + open.err);
});

test('the API and the CLI: the remote endpoint and the cluster\'s are listed, the cluster\'s read only; the underlay port and its counters', async () => {
  if (missing) return;
  const r = await daemon.host.setRemoteEndpoints('test', [{ ID: 'far', HostComputeNetwork: 'ovl', MacAddress: '02:00:00:00:42:77', IpAddresses: ['10.42.0.77'], ProviderAddress: '198.19.0.77', Host: 'far-host' }]);
  assert.equal(r, { applied: 1, refused: [] });
  const list = (await api('GET', '/endpoints')).json as Array<Record<string, any>>;
  assert.is(list.find((e) => e.ID === 'linux')?.IsRemoteEndpoint, true);
  const far = list.find((e) => e.ID === 'remote:far-host:far');
  assert.ok(far && far.IsRemoteEndpoint === true && far.Status.Host === 'far-host', JSON.stringify(list));
  const del = await api('DELETE', '/endpoints/remote:far-host:far');
  assert.is(del.status, 409);
  assert.match(del.json.error.reason, /remote endpoint of host far-host/);
  const stats = (await api('GET', '/stats')).json;
  assert.ok(stats.underlay && stats.underlay.rxFrames > 0, JSON.stringify(stats.underlay));
  assert.ok(stats.ports.some((p: { kind: string }) => p.kind === 'underlay'));
  // The CLI: the remote endpoints in `endpoint list`, the underlay in `stats`.
  // (Asynchronously: the daemon answering it runs in this process.)
  const cli = async (args: string[]) => (await runFile(process.execPath, [join(root, 'bin/netplane.js'), ...args, '--url', `http://127.0.0.1:${daemon.port}`, '--state-dir', join(work, 'state')], { encoding: 'utf8' })).stdout;
  const eps = await cli(['endpoint', 'list']);
  assert.match(eps, /\nlinux +ovl +02:00:00:00:42:99 +10\.42\.0\.99 +remote 198\.19\.\d+\.2\b/, eps);
  assert.match(eps, /\nremote:far-host:far +ovl .*remote 198\.19\.0\.77 \(far-host\)/, eps);
  assert.match(await cli(['stats']), /UNDERLAY +RX +TX/);
  await daemon.host.setRemoteEndpoints('test', []);
});

test('the daemon refuses an overlay it cannot open, naming `overlay` and the reason; and Overlay networks without one', async () => {
  if (missing) return;
  try {
    new Daemon({ stateDir: join(work, 'state2'), listen: { port: 0, socket: false }, uplink: false, overlay: { providerAddress: '198.19.0.254' } });
    assert.unreachable('opened an underlay on an address this host does not have');
  } catch (e) {
    assert.match((e as Error).message, /^overlay: cannot open the underlay on 198\.19\.0\.254:4789.*EADDRNOTAVAIL/, (e as Error).message);
  }
  const plain = new Daemon({ stateDir: join(work, 'state3'), listen: { port: 0, socket: false }, uplink: false });
  await plain.listen();
  try {
    const r = await fetch(`http://127.0.0.1:${plain.port}/networks`, { method: 'POST', headers: { authorization: `Bearer ${plain.token}`, 'content-type': 'application/json' }, body: JSON.stringify(OVL) });
    assert.is(r.status, 400);
    assert.is(((await r.json()) as { error: { field: string } }).error.field, 'Type');
  } finally {
    await plain.close();
  }
});

test.run();
