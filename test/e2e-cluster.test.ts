// Three netplane daemons form one overlay network through etcd, end to end on real Linux hosts.
//
// The machine is split into namespaces as three servers on one underlay LAN would be:
//   np-<run>-ul   the underlay: a bridge, 10.99.<k>.254/24, and the etcd server listening there
//   np-<run>-hN   host N (1-3): a veth on the bridge with its provider address 10.99.<k>.N, and a
//                 `netplane serve` process (overlay: that provider address; cluster: the etcd above)
//   np-<run>-gNa, np-<run>-gNb
//                 two guests per host: a TAP made by socat inside hN, speaking to its daemon's
//                 endpoint over UDP on hN's loopback, then moved into the guest's own namespace
// The overlay network is created on host 1 only; the others get it from etcd. Each daemon creates
// its own two endpoints; the others program them as remote endpoints from etcd. Then: every guest
// pings every other (full mesh, across hosts over VXLAN), a byte-exact TCP transfer across hosts, an
// endpoint ACL on host 3 that blocks one guest of host 1, distributed routing into a second overlay
// network whose only endpoint is on host 2, host 3's daemon killed (its endpoints leave
// the others within the lease TTL) and restarted (they come back, traffic flows again), and etcd
// stopped and started again with traffic flowing all along.
//
// The daemons are child processes in their namespaces: a Node process cannot move its sockets into
// another namespace. They are driven through their API sockets (unix sockets in the state
// directories, which the root namespace reaches through the shared filesystem).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { request } from 'node:http';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash, randomBytes } from 'node:crypto';
import { requirements, namespace, devName, background, exec, sh, teardown, eventually } from './e2e/netns.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'netplane.js');
const k = (process.pid % 200) + 20;             // the underlay's 10.99.<k>.0/24, per test process
const TTL = 3;                                   // the cluster lease, seconds

function etcdMissing(): string | undefined {
  try { execFileSync('sh', ['-c', 'command -v etcd'], { stdio: 'ignore' }); return undefined; } catch { return 'the cluster end-to-end test needs etcd (apt-get install etcd-server; scripts/install-test-deps.sh)'; }
}
const missing = requirements() ?? etcdMissing();

interface Reply { status: number; body: any }
function api(sock: string, method: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((ok, fail) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath: sock, method, path, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => { let j: any = text; try { j = JSON.parse(text); } catch { /* text */ } ok({ status: res.statusCode ?? 0, body: j }); });
    });
    req.on('error', fail);
    req.setTimeout(10000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.end(data);
  });
}

interface Daemon { n: number; ns: string; dir: string; sock: string; config: string; proc?: ChildProcess }

function startDaemon(d: Daemon): void {
  d.proc = background(d.ns, `${process.execPath} ${bin} serve --config ${d.config} >> ${join(d.dir, 'log')} 2>&1`);
}
async function daemonUp(d: Daemon): Promise<void> {
  await eventually(async () => { try { return (await api(d.sock, 'GET', '/networks')).status === 200; } catch { return false; } }, 20000)
    .catch(() => { throw new Error(`daemon h${d.n} did not come up: ${log(d)}`); });
}
function stopDaemon(d: Daemon): void {
  try { if (d.proc?.pid) process.kill(-d.proc.pid, 'SIGKILL'); } catch { /* gone */ }
}
const log = (d: Daemon): string => { try { return readFileSync(join(d.dir, 'log'), 'utf8').slice(-3000); } catch { return '(no log)'; } };

const remoteIds = async (d: Daemon): Promise<string[]> => {
  const r = await api(d.sock, 'GET', '/endpoints');
  // Listed as remote:<host>:<ID> (src/host.ts remoteEndpointId); the endpoint's own ID is the last part.
  return (r.body as any[]).filter((e) => e.IsRemoteEndpoint).map((e) => String(e.ID).split(':').pop()!).sort();
};

// A guest on an endpoint of daemon `d` in `network`: a TAP made by socat in d's namespace (speaking
// to the endpoint's UDP transport on d's loopback), moved into a namespace of its own.
interface Guest { id: string; ns: string; ip: string; host: Daemon }
async function guest(d: Daemon, s: string, network: string, port: number, gateway: string): Promise<Guest> {
  const id = `h${d.n}-${s}`;
  const r = await api(d.sock, 'POST', '/endpoints', { ID: id, HostComputeNetwork: network, Transport: { Type: 'udp', Bind: `127.0.0.1:${port}` } });
  assert.is(r.status, 201, `${id}: ${JSON.stringify(r.body)}`);
  const dev = devName(`g${d.n}${s}`);
  // The TAP stays down until it is in the guest's namespace: a TAP that is up speaks (IPv6 router
  // solicitations), the daemon learns socat's port from it and sends the network's floods back, and
  // socat ends at its first write to a TAP that is down, as it is while it moves.
  background(d.ns, `socat -b65536 TUN,tun-type=tap,tun-name=${dev},iff-no-pi UDP-DATAGRAM:127.0.0.1:${port} 2>>${join(d.dir, `socat-${s}.log`)}`);
  await eventually(() => { try { sh(['ip', 'link', 'show', dev], { ns: d.ns }); return true; } catch { return false; } }, 5000);
  const g = namespace(`g${d.n}${s}`);
  sh(['ip', 'link', 'set', dev, 'netns', g], { ns: d.ns });
  sh(['ip', 'link', 'set', dev, 'address', r.body.MacAddress], { ns: g });
  sh(['ip', 'addr', 'add', `${r.body.IpConfigurations[0].IpAddress}/24`, 'dev', dev], { ns: g });
  sh(['ip', 'link', 'set', dev, 'up'], { ns: g });
  sh(['ip', 'route', 'add', 'default', 'via', gateway], { ns: g });
  return { id, ns: g, ip: r.body.IpConfigurations[0].IpAddress, host: d };
}

const ping = async (from: string, to: string): Promise<boolean> => (await exec(from, `ping -c 1 -W 2 ${to}`, 10000)).code === 0;

test('e2e cluster: three daemons, one overlay network through etcd: full mesh, TCP, an ACL across hosts, a host lost and back, an etcd outage', async () => {
  if (missing) throw new Error(missing);
  const etcdDir = mkdtempSync(join(tmpdir(), 'netplane-etcd-'));
  const daemons: Daemon[] = [];
  try {
    // The underlay LAN and etcd on it.
    const ul = namespace('ul');
    const br = devName('br');
    sh(['ip', 'link', 'add', br, 'type', 'bridge'], { ns: ul });
    sh(['ip', 'addr', 'add', `10.99.${k}.254/24`, 'dev', br], { ns: ul });
    sh(['ip', 'link', 'set', br, 'up'], { ns: ul });
    const etcdUrl = `http://10.99.${k}.254:2379`;
    const etcdCmd = `etcd --name np --data-dir ${etcdDir} --listen-client-urls ${etcdUrl} --advertise-client-urls ${etcdUrl} ` +
      `--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster np=http://127.0.0.1:2380 > ${join(etcdDir, 'log')} 2>&1`;
    let etcd = background(ul, etcdCmd);

    for (const n of [1, 2, 3]) {
      const ns = namespace(`h${n}`);
      const [v, u] = [devName(`h${n}v`), devName(`h${n}u`)];
      sh(['ip', 'link', 'add', v, 'netns', ns, 'type', 'veth', 'peer', 'name', u, 'netns', ul]);
      sh(['ip', 'link', 'set', u, 'master', br], { ns: ul });
      sh(['ip', 'link', 'set', u, 'up'], { ns: ul });
      sh(['ip', 'addr', 'add', `10.99.${k}.${n}/24`, 'dev', v], { ns });
      sh(['ip', 'link', 'set', v, 'up'], { ns });
      const dir = mkdtempSync(join(tmpdir(), `netplane-h${n}-`));
      const d: Daemon = { n, ns, dir, sock: join(dir, 'api.sock'), config: join(dir, 'config.json') };
      writeFileSync(d.config, JSON.stringify({
        stateDir: join(dir, 'state'),
        listen: { socket: d.sock },
        uplink: false,
        overlay: { providerAddress: `10.99.${k}.${n}` },
        cluster: { etcd: [etcdUrl], host: `h${n}`, leaseTtl: TTL },
      }));
      daemons.push(d);
      startDaemon(d);
    }
    for (const d of daemons) await daemonUp(d);
    const [h1, h2, h3] = daemons;

    // The overlay network, created on host 1 only, appears on all three.
    const net = { ID: 'ov', Type: 'Overlay', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.240.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 4242 } }] }] }] };
    const made = await api(h1.sock, 'POST', '/networks', net);
    assert.is(made.status, 201, JSON.stringify(made.body));
    for (const d of [h2, h3]) await eventually(async () => ((await api(d.sock, 'GET', '/networks')).body as any[]).some((x) => x.ID === 'ov'), 15000);

    // Two guests per host, each on an endpoint of its own daemon.
    // A host assigns MACs and addresses around the remote endpoints it knows (a claim refuses what
    // two hosts pick at the same moment), so each host starts once it knows the others' so far.
    const guests: Guest[] = [];
    for (const d of daemons) {
      const known = guests.map((g) => g.id).sort();
      await eventually(async () => JSON.stringify(await remoteIds(d)) === JSON.stringify(known), 15000);
      for (const [i, s] of ['a', 'b'].entries()) guests.push(await guest(d, s, 'ov', 41000 + d.n * 10 + i, '10.240.0.1'));
    }
    // Each daemon programs the four endpoints of the other two as remote endpoints.
    for (const d of daemons) {
      const want = guests.filter((g) => g.host !== d).map((g) => g.id).sort();
      await eventually(async () => JSON.stringify(await remoteIds(d)) === JSON.stringify(want), 15000)
        .catch(async () => { throw new Error(`h${d.n} remotes ${JSON.stringify(await remoteIds(d))}, want ${JSON.stringify(want)}`); });
    }

    // Full mesh: every guest reaches every other, on its host and across hosts.
    const failed: string[] = [];
    for (const a of guests) for (const b of guests) {
      if (a === b) continue;
      let ok = false;
      for (let i = 0; i < 3 && !ok; i++) ok = await ping(a.ns, b.ip);
      if (!ok) failed.push(`${a.id} -> ${b.id}`);
    }
    assert.equal(failed, [], `pings that failed:\n${failed.join('\n')}\n${log(h1)}`);

    // The gateway is every host's own (distributed routing): each guest pings 10.240.0.1 locally.
    for (const g of guests) assert.ok(await ping(g.ns, '10.240.0.1'), `${g.id} -> its gateway`);

    // Distributed routing into a segment where the sending host holds no endpoint: a second overlay
    // network, created on host 2, with one endpoint there; guests of hosts 1 and 3 reach it through
    // their own host's gateway (their host routes, then encapsulates into ov2's VNI).
    const net2 = { ID: 'ov2', Type: 'Overlay', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.241.0.0/24', Policies: [{ Type: 'VSID', Settings: { IsolationId: 4243 } }] }] }] };
    assert.is((await api(h2.sock, 'POST', '/networks', net2)).status, 201);
    for (const d of [h1, h3]) await eventually(async () => ((await api(d.sock, 'GET', '/networks')).body as any[]).some((x) => x.ID === 'ov2'), 15000);
    guests.push(await guest(h2, 'r', 'ov2', 41028, '10.241.0.1'));
    for (const d of [h1, h3]) await eventually(async () => (await remoteIds(d)).includes('h2-r'), 15000);
    for (const g of [guests[0], guests[4]]) {
      let ok = false;
      for (let i = 0; i < 3 && !ok; i++) ok = await ping(g.ns, guests[6].ip);
      assert.ok(ok, `${g.id} -> h2-r (routed across hosts into ov2)`);
    }

    // A byte-exact TCP transfer from a guest of host 3 to a guest of host 1.
    const data = randomBytes(4_000_000);
    const file = join(etcdDir, 'payload');
    writeFileSync(file, data);
    const [g1a, g1b, , , g3a, g3b] = guests;
    background(g3a.ns, `socat -u OPEN:${file} TCP-LISTEN:5001,reuseaddr`);
    await eventually(async () => (await exec(g3a.ns, 'ss -ltn | grep -q :5001')).code === 0, 5000);
    const got = await exec(g1a.ns, `nc -w 10 ${g3a.ip} 5001 < /dev/null | sha256sum`, 60000);
    assert.is(got.out.split(' ')[0], createHash('sha256').update(data).digest('hex'), `the bytes across hosts: ${got.err}`);

    // An ACL on host 3's endpoint h3-b blocks g1a (another host's guest) and nothing else.
    const ep = (await api(h3.sock, 'GET', '/endpoints/h3-b')).body;
    const blocked = { ...ep, Policies: [{ Type: 'ACL', Settings: { Id: 'no-g1a', Action: 'Block', Direction: 'In', RemoteAddresses: `${g1a.ip}/32`, Priority: 100 } }] };
    delete blocked.Status;
    const m = await api(h3.sock, 'PUT', '/endpoints/h3-b', blocked);
    assert.is(m.status, 200, JSON.stringify(m.body));
    assert.not.ok(await ping(g1a.ns, g3b.ip), 'g1a is blocked at h3-b');
    assert.ok(await ping(g1b.ns, g3b.ip), 'g1b is not');
    assert.ok(await ping(g3b.ns, g1b.ip), 'h3-b still reaches out');

    // Host 3 is lost: its endpoints leave hosts 1 and 2 within the lease TTL (plus the watch's
    // delivery), and traffic among the survivors goes on.
    stopDaemon(h3);
    const lost = Date.now();
    for (const d of [h1, h2]) await eventually(async () => !(await remoteIds(d)).some((id) => id.startsWith('h3-')), (TTL + 5) * 1000);
    const gone = Date.now() - lost;
    assert.ok(await ping(g1a.ns, guests[2].ip), 'h1 -> h2 after host 3 left');
    // It comes back (its state directory has its endpoints) and is programmed again.
    startDaemon(h3);
    await daemonUp(h3);
    for (const d of [h1, h2]) await eventually(async () => (await remoteIds(d)).filter((id) => id.startsWith('h3-')).length === 2, 20000);
    await eventually(() => ping(g1b.ns, g3a.ip), 10000);

    // etcd stops: the dataplanes keep their remote endpoints (stale, not empty) and traffic flows;
    // the status says the cluster is unreachable; when etcd is back, every daemon reconnects and
    // the next change propagates again.
    process.kill(-etcd.pid!, 'SIGKILL');
    await eventually(async () => (await api(h1.sock, 'GET', '/cluster')).body?.state !== 'connected', 20000);
    assert.equal(await remoteIds(h1), guests.filter((g) => g.host !== h1).map((g) => g.id).sort(), 'remotes kept during the outage');
    assert.ok(await ping(g1a.ns, guests[2].ip), 'traffic across hosts during the outage');
    const stats = (await api(h1.sock, 'GET', '/stats')).body;
    assert.ok(stats.cluster, 'stats has a cluster section');
    etcd = background(ul, etcdCmd);
    for (const d of daemons) await eventually(async () => (await api(d.sock, 'GET', '/cluster')).body?.state === 'connected', 30000);
    const late = await api(h2.sock, 'POST', '/endpoints', { ID: 'h2-c', HostComputeNetwork: 'ov', Transport: { Type: 'udp', Bind: '127.0.0.1:41029' } });
    assert.is(late.status, 201, JSON.stringify(late.body));
    await eventually(async () => (await remoteIds(h1)).includes('h2-c'), 15000);
    assert.ok(await ping(g1a.ns, g3a.ip), 'traffic after etcd came back');
    const status = (await api(h1.sock, 'GET', '/cluster')).body;
    assert.equal((status.members as any[]).map((x) => x.host).sort(), ['h1', 'h2', 'h3'], JSON.stringify(status));
    process.stdout.write(`  host 3's endpoints left the others ${gone} ms after its daemon died (lease TTL ${TTL} s)\n`);
  } finally {
    for (const d of daemons) stopDaemon(d);
    await teardown();
  }
});

test.run();
