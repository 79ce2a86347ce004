// Membership through etcd (src/cluster, issue 15) against a real etcd started here: publication
// under a lease, remote endpoints programmed on the others, MAC and IP conflicts refused naming the
// owner before the change commits, a network created on one host appearing on all, a host whose lease
// expired disappearing from the others within the TTL and coming back, and an etcd outage (stopped,
// then killed and restarted) that leaves the remotes programmed and ends in a resync. The hosts are
// in-process (SinkHost: the Host's change path and what setRemoteEndpoints would program); the Host's
// own hook is checked on a real Host. No timing beyond "within the TTL and a margin", by polling.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd, etcdMissing } from './etcd.js';
import { SinkHost, overlayNetwork, endpoint } from './cluster-sink.js';
import { Cluster, checkCluster } from '../src/cluster/index.js';
import { Host } from '../src/host.js';
import { Daemon } from '../src/daemon.js';
import { ModelError } from '../src/model/validate.js';
import { eventually } from './e2e/netns.js';
import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/netplane.js', import.meta.url));
const cli = (args: string[]) => new Promise<{ code: number; out: string; err: string }>((ok) => {
  execFile(process.execPath, [bin, ...args], (e, out, err) => ok({ code: e ? (e as { code?: number }).code ?? 1 : 0, out, err }));
});

const missing = etcdMissing();
if (missing && process.env.CI === 'true') throw new Error(missing);

const TTL = 2;
let etcd: Etcd;
const members: Cluster[] = [];
let prefixes = 0;

// A member: a SinkHost and its Cluster, under a prefix of the test's own.
async function member(prefix: string, host: string, pa: string, sink = new SinkHost()): Promise<{ sink: SinkHost; cluster: Cluster; logs: string[] }> {
  const logs: string[] = [];
  const cluster = new Cluster(sink, checkCluster({ etcd: [etcd.url], host, prefix, leaseTtl: TTL }), { providerAddress: pa, log: (m) => logs.push(m), version: 'test' });
  await cluster.start();
  members.push(cluster);
  return { sink, cluster, logs };
}

async function refusal(p: Promise<unknown>): Promise<ModelError> {
  try { await p; } catch (e) { if (e instanceof ModelError) return e; throw e; }
  throw new Error('the change was not refused');
}

test.before(async () => {
  if (missing) throw new Error(missing);
  etcd = await Etcd.start();
});

test.after(async () => {
  for (const c of members) await c.close({ revoke: true }).catch(() => {});
  await etcd?.stop();
});

test('the cluster setting is checked, errors naming the field', () => {
  const ok = checkCluster({ etcd: ['http://10.0.0.1:2379'], host: 'node-1' });
  assert.equal([ok.prefix, ok.leaseTtl, ok.etcd], ['/netplane', 10, ['http://10.0.0.1:2379']]);
  const field = (c: unknown) => { try { checkCluster(c); } catch (e) { return (e as Error).message.split(':')[0]; } return 'accepted'; };
  assert.is(field({ etcd: ['unix:///run/etcd.sock'], host: 'a' }), 'cluster.etcd[0]');
  assert.is(field({ etcd: ['http://10.0.0.1:2379', 'ftp://x:1'], host: 'a' }), 'cluster.etcd[1]');
  assert.is(field({ etcd: ['http://u:p@10.0.0.1:2379'], host: 'a' }), 'cluster.etcd[0]');
  assert.is(field({ etcd: [], host: 'a' }), 'cluster.etcd');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'Node_1' }), 'cluster.host');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: '-a' }), 'cluster.host');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a'.repeat(64) }), 'cluster.host');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', leaseTtl: 1 }), 'cluster.leaseTtl');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', leaseTtl: 3601 }), 'cluster.leaseTtl');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', prefix: 'netplane' }), 'cluster.prefix');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', prefix: '/np/' }), 'cluster.prefix');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', username: 'u' }), 'cluster.password');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', caFile: '/etc/hostname' }), 'cluster.caFile');
  assert.is(field({ etcd: ['http://10.0.0.1:2379'], host: 'a', token: 'x' }), 'cluster.token');
});

test('the daemon refuses a cluster setting without overlay, or a malformed one, naming the field', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'np-cluster-daemon-'));
  const refusedWith = (c: object) => { try { new Daemon({ stateDir, listen: { socket: false }, ...c }); } catch (e) { return (e as Error).message; } return 'accepted'; };
  assert.match(refusedWith({ cluster: { etcd: ['http://127.0.0.1:2379'], host: 'a' } }), /^cluster: needs the overlay setting/);
  assert.match(refusedWith({ overlay: { providerAddress: '10.99.0.1' }, cluster: { etcd: ['http://127.0.0.1'], host: 'a' } }), /^cluster\.etcd\[0\]: .*needs the port/);
  assert.match(refusedWith({ overlay: { providerAddress: '10.99.0.1' }, cluster: { etcd: ['http://127.0.0.1:2379'], host: 'a', leaseTtl: 0 } }), /^cluster\.leaseTtl: /);
});

test('endpoints are published on the lease and programmed on the other hosts; a network created on one appears on all', async () => {
  const p = `/t${++prefixes}`;
  const a = await member(p, 'a', '10.99.0.1'), b = await member(p, 'b', '10.99.0.2'), c = await member(p, 'c', '10.99.0.3');
  await a.sink.change({ op: 'create', kind: 'network', value: overlayNetwork('ov', 4096) });
  await eventually(() => b.sink.state.networks.some((n) => n.ID === 'ov') && c.sink.state.networks.some((n) => n.ID === 'ov'));
  assert.equal(c.sink.state.networks.find((n) => n.ID === 'ov'), overlayNetwork('ov', 4096) as never);
  assert.ok(b.logs.some((l) => /network ov created/.test(l)));

  await a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('a1', 'ov', '00-15-5D-00-00-01', '10.50.0.11') });
  await b.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('b1', 'ov', '00-15-5D-00-00-02', '10.50.0.12') });
  await eventually(() => c.sink.remoteIds().join() === 'a1,b1' && a.sink.remoteIds().join() === 'b1' && b.sink.remoteIds().join() === 'a1');
  const a1 = c.sink.remotes.find((r) => r.ID === 'a1')!;
  assert.equal(a1, { ID: 'a1', HostComputeNetwork: 'ov', MacAddress: '00-15-5D-00-00-01', IpAddresses: ['10.50.0.11'], ProviderAddress: '10.99.0.1', Host: 'a' });

  const st = await c.cluster.status();
  assert.is(st.state, 'connected');
  assert.equal(st.members.map((m) => [m.host, m.providerAddress]), [['a', '10.99.0.1'], ['b', '10.99.0.2'], ['c', '10.99.0.3']]);
  assert.ok(st.members.every((m) => m.ttl !== undefined && m.ttl > 0 && m.ttl <= TTL && m.lease.length > 0), JSON.stringify(st.members));
  assert.is(st.remotes, 2);
  assert.is(st.programmed, 2);
  assert.equal((await a.cluster.status()).published, ['a1']);
  assert.is(c.cluster.stats().state, 'connected');

  // A modify moves the claims: the old address is free again, the new one is programmed elsewhere.
  await a.sink.change({ op: 'modify', kind: 'endpoint', id: 'a1', value: endpoint('a1', 'ov', '00-15-5D-00-00-01', '10.50.0.21') });
  await eventually(() => c.sink.remotes.find((r) => r.ID === 'a1')?.IpAddresses[0] === '10.50.0.21');
  await c.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('c1', 'ov', '00-15-5D-00-00-03', '10.50.0.11') });
  // A delete withdraws the endpoint from the others.
  await b.sink.change({ op: 'delete', kind: 'endpoint', id: 'b1' });
  await eventually(() => a.sink.remoteIds().join() === 'c1' && c.sink.remoteIds().join() === 'a1');

  // Network modify and delete follow too; a delete a host cannot take (its endpoints use the
  // network) is logged and shown as a conflict there, and the others delete it.
  const wider = { ...overlayNetwork('ov2', 4097, '10.60.0.0/24', '10.60.0.1'), Name: 'second' };
  await b.sink.change({ op: 'create', kind: 'network', value: wider });
  await eventually(() => a.sink.state.networks.some((n) => n.ID === 'ov2') && c.sink.state.networks.some((n) => n.ID === 'ov2'));
  await b.sink.change({ op: 'modify', kind: 'network', id: 'ov2', value: { ...wider, Name: 'renamed' } });
  await eventually(() => a.sink.state.networks.find((n) => n.ID === 'ov2')?.Name === 'renamed' && c.sink.state.networks.find((n) => n.ID === 'ov2')?.Name === 'renamed');
  await a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('a2', 'ov2', '00-15-5D-00-00-09', '10.60.0.9') });
  await b.sink.change({ op: 'delete', kind: 'network', id: 'ov2' });
  await eventually(() => c.sink.state.networks.every((n) => n.ID !== 'ov2'));
  await eventually(async () => (await a.cluster.status()).conflicts.networks.some((x) => x.ID === 'ov2' && /used by endpoints/.test(x.reason)));
  assert.ok(a.sink.state.networks.some((n) => n.ID === 'ov2'));
  assert.ok(a.logs.some((l) => /network ov2 from the cluster not taken here/.test(l)));
});

test('a MAC or address another host holds refuses the endpoint before it commits, naming the owner', async () => {
  const p = `/t${++prefixes}`;
  const a = await member(p, 'a', '10.99.0.1'), b = await member(p, 'b', '10.99.0.2');
  await a.sink.change({ op: 'create', kind: 'network', value: overlayNetwork('ov', 100) });
  await eventually(() => b.sink.state.networks.some((n) => n.ID === 'ov'));
  await a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('web', 'ov', '00-15-5D-00-00-01', '10.50.0.11') });
  const mac = await refusal(b.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('db', 'ov', '00-15-5D-00-00-01', '10.50.0.12') }));
  assert.is(mac.code, 'Conflict');
  assert.is(mac.field, 'MacAddress');
  assert.match(mac.reason, /endpoint web of host a/);
  const ip = await refusal(b.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('db', 'ov', '00-15-5D-00-00-02', '10.50.0.11') }));
  assert.is(ip.field, 'IpConfigurations[0].IpAddress');
  assert.match(ip.reason, /10\.50\.0\.11 .*endpoint web of host a/);
  assert.is(b.sink.state.endpoints.length, 0);
  // The same endpoint, free MAC and address: taken; then a modify onto a's address is refused, the endpoint unchanged.
  await b.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('db', 'ov', '00-15-5D-00-00-02', '10.50.0.12') });
  const mod = await refusal(b.sink.change({ op: 'modify', kind: 'endpoint', id: 'db', value: endpoint('db', 'ov', '00-15-5D-00-00-02', '10.50.0.11') }));
  assert.is(mod.field, 'IpConfigurations[0].IpAddress');
  assert.is(b.sink.state.endpoints[0].IpConfigurations![0].IpAddress, '10.50.0.12');
  assert.ok(b.cluster.stats().claimsRefused as number >= 3);
  // Once a deletes its endpoint, the claims are released and b may take them.
  await a.sink.change({ op: 'delete', kind: 'endpoint', id: 'web' });
  await eventually(async () => { try { await b.sink.change({ op: 'modify', kind: 'endpoint', id: 'db', value: endpoint('db', 'ov', '00-15-5D-00-00-01', '10.50.0.11') }); return true; } catch { return false; } });
  await eventually(() => a.sink.remotes[0]?.IpAddresses[0] === '10.50.0.11');
});

test('a host whose lease expired disappears from the others within the TTL, and comes back', async () => {
  const p = `/t${++prefixes}`;
  const a = await member(p, 'a', '10.99.0.1'), b = await member(p, 'b', '10.99.0.2');
  await a.sink.change({ op: 'create', kind: 'network', value: overlayNetwork('ov', 7) });
  await eventually(() => b.sink.state.networks.some((n) => n.ID === 'ov'));
  await b.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('b1', 'ov', '00-15-5D-00-00-02', '10.50.0.12') });
  await eventually(() => a.sink.remoteIds().join() === 'b1');
  // b dies: its keep-alive stops, its lease runs out.
  await b.cluster.close();
  const t = Date.now();
  await eventually(() => a.sink.remotes.length === 0, (TTL + 3) * 1000);
  assert.ok(Date.now() - t < (TTL + 3) * 1000);
  await eventually(async () => (await a.cluster.status()).members.map((m) => m.host).join() === 'a');
  // b comes back with its state: published again, programmed on a.
  const b2 = await member(p, 'b', '10.99.0.2', b.sink);
  await eventually(() => a.sink.remoteIds().join() === 'b1');
  assert.equal((await b2.cluster.status()).published, ['b1']);
  // While b was gone, a took b1's MAC: b, back, does not publish b1 and shows the conflict with its owner.
  await b2.cluster.close();
  await eventually(() => a.sink.remotes.length === 0, (TTL + 3) * 1000);
  await a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('a9', 'ov', '00-15-5D-00-00-02', '10.50.0.19') });
  const b3 = await member(p, 'b', '10.99.0.2', b.sink);
  const st = await b3.cluster.status();
  assert.equal(st.published, []);
  assert.equal(st.conflicts.endpoints.map((x) => x.ID), ['b1']);
  assert.match(st.conflicts.endpoints[0].reason, /^MacAddress: .*endpoint a9 of host a/);
  assert.ok(b3.logs.some((l) => /endpoint b1 not published/.test(l)));
  await a.sink.change({ op: 'delete', kind: 'endpoint', id: 'a9' });
  // Another daemon cannot take b's name with another provider address.
  const err = await member(p, 'b', '10.99.0.9').then(() => undefined, (e: Error) => e);
  assert.match(err?.message ?? '', /^cluster\.host: "b" is already a member .* 10\.99\.0\.2/);
});

test('an etcd outage keeps the remotes, says reconnecting, refuses new claims, and resyncs', async () => {
  const p = `/t${++prefixes}`;
  const a = await member(p, 'a', '10.99.0.1'), b = await member(p, 'b', '10.99.0.2');
  await a.sink.change({ op: 'create', kind: 'network', value: overlayNetwork('ov', 9) });
  await eventually(() => b.sink.state.networks.some((n) => n.ID === 'ov'));
  await a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('a1', 'ov', '00-15-5D-00-00-01', '10.50.0.11') });
  await b.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('b1', 'ov', '00-15-5D-00-00-02', '10.50.0.12') });
  await eventually(() => a.sink.remoteIds().join() === 'b1' && b.sink.remoteIds().join() === 'a1');

  for (const outage of ['stopped', 'killed'] as const) {
    const resyncs = a.cluster.stats().resyncs as number;
    const onA = a.sink.remoteIds().join(), onB = b.sink.remoteIds().join();
    const reconnected = () => a.logs.filter((l) => /reconnected to etcd after .* and resynced/.test(l)).length;
    const logged = reconnected();
    if (outage === 'stopped') etcd.pause(); else await etcd.kill();
    await eventually(async () => (await a.cluster.status()).state === 'reconnecting' && (await b.cluster.status()).state === 'reconnecting', 15000);
    const st = await a.cluster.status();
    assert.ok(st.since && st.lastError, JSON.stringify(st));
    assert.is(a.cluster.stats().state, 'reconnecting');
    assert.ok(a.logs.some((l) => /etcd unreachable .*keeping the 1 remote endpoints programmed \(stale\)/.test(l)), a.logs.join('\n'));
    // Stale, never empty.
    assert.is(a.sink.remoteIds().join(), onA);
    assert.is(b.sink.remoteIds().join(), onB);
    assert.ok(onB.includes('a1'));
    // An Overlay endpoint that needs a claim is refused while etcd is away; one that changes no claim is not.
    const e = await refusal(a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint('a2', 'ov', '00-15-5D-00-00-05', '10.50.0.15') }));
    assert.is(e.code, 'Unavailable');
    assert.match(e.reason, /etcd is unreachable \(reconnecting since/);
    await a.sink.change({ op: 'modify', kind: 'endpoint', id: 'a1', value: { ...endpoint('a1', 'ov', '00-15-5D-00-00-01', '10.50.0.11'), Name: 'renamed' } });

    if (outage === 'stopped') etcd.resume(); else await etcd.restart();
    await eventually(async () => (await a.cluster.status()).state === 'connected' && (await b.cluster.status()).state === 'connected', 20000);
    assert.ok((a.cluster.stats().resyncs as number) > resyncs);
    await eventually(() => reconnected() > logged);
    await eventually(() => a.sink.remoteIds().join() === onA && b.sink.remoteIds().join() === onB, 10000);
    await a.sink.change({ op: 'create', kind: 'endpoint', value: endpoint(`a-${outage}`, 'ov', outage === 'stopped' ? '00-15-5D-00-00-06' : '00-15-5D-00-00-07', outage === 'stopped' ? '10.50.0.16' : '10.50.0.17') });
    await eventually(() => b.sink.remoteIds().includes(`a-${outage}`));
  }
});

test('daemons: a network and endpoints through etcd, remotes in GET /endpoints, a conflict over HTTP, GET /cluster, stats and netplane cluster status', async () => {
  const prefix = `/t${++prefixes}`;
  const daemons: Daemon[] = [];
  // Provider addresses: /32s of the benchmarking range (RFC 2544's 198.18.0.0/15) added to lo for
  // the test (an underlay address must be the host's own, not 127/8), apart per test process.
  if (process.getuid?.() !== 0) throw new Error('the daemons\' overlay needs root (addresses on lo)');
  const pa = (n: number) => `198.${18 + (process.pid & 1)}.${(process.pid >> 1) % 250}.${n}`;
  for (const n of [2, 3]) execFileSync('ip', ['addr', 'replace', `${pa(n)}/32`, 'dev', 'lo']);
  const dropAddresses = () => { for (const n of [2, 3]) { try { execFileSync('ip', ['addr', 'del', `${pa(n)}/32`, 'dev', 'lo'], { stdio: 'ignore' }); } catch { /* gone */ } } };
  process.once('exit', dropAddresses);
  const start = async (host: string, n: number) => {
    const d = new Daemon({
      stateDir: mkdtempSync(join(tmpdir(), `np-cluster-${host}-`)), listen: { port: 0, socket: false }, uplink: false,
      overlay: { providerAddress: pa(n) }, cluster: { etcd: [etcd.url], host, prefix, leaseTtl: TTL },
    });
    daemons.push(d);
    await d.listen();
    return d;
  };
  const api = async (d: Daemon, method: string, path: string, body?: unknown) => {
    const r = await fetch(`http://127.0.0.1:${d.port}${path}`, { method, headers: { authorization: `Bearer ${d.token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: r.status, value: await r.json() as any };
  };
  try {
    const a = await start('a', 2), b = await start('b', 3);
    assert.is((await api(a, 'POST', '/networks', overlayNetwork('ov', 4242))).status, 201);
    await eventually(() => b.host.store.list('network').some((n) => n.ID === 'ov'));
    assert.is((await api(a, 'POST', '/endpoints', endpoint('web', 'ov', '00-15-5D-00-00-01', '10.50.0.11'))).status, 201);
    await eventually(() => b.host.remoteEndpoints().some((r) => r.ID === 'web'));
    const listed = (await api(b, 'GET', '/endpoints')).value.find((e: any) => e.ID === 'remote:a:web');
    assert.is(listed.IsRemoteEndpoint, true);
    assert.equal(listed.IpConfigurations.map((c: any) => c.IpAddress), ['10.50.0.11']);
    // b's own endpoint with a's MAC: refused over HTTP, 409, naming the owner; nothing saved.
    const r = await api(b, 'POST', '/endpoints', endpoint('db', 'ov', '00-15-5D-00-00-01', '10.50.0.12'));
    assert.is(r.status, 409);
    assert.equal([r.value.error.code, r.value.error.field], ['Conflict', 'MacAddress']);
    assert.match(r.value.error.reason, /endpoint web of host a/);
    assert.not.ok(readFileSync(join(b.stateDir, 'state.json'), 'utf8').includes('"db"'));
    assert.is((await api(b, 'POST', '/endpoints', endpoint('db', 'ov', '00-15-5D-00-00-02', '10.50.0.12'))).status, 201);
    await eventually(() => a.host.remoteEndpoints().some((x) => x.ID === 'db' && x.ProviderAddress === pa(3) && x.Host === 'b'));

    // The member counts what the Host applied once setRemoteEndpoints has answered.
    await eventually(async () => (await api(a, 'GET', '/cluster')).value.programmed === 1);
    const st = (await api(a, 'GET', '/cluster')).value;
    assert.is(st.state, 'connected');
    assert.equal(st.members.map((m: any) => [m.host, m.providerAddress, m.self]), [['a', pa(2), true], ['b', pa(3), false]]);
    assert.equal(st.published, ['web']);
    assert.is(st.programmed, 1);
    const stats = (await api(a, 'GET', '/stats')).value;
    assert.equal([stats.cluster.state, stats.cluster.members, stats.cluster.published, stats.cluster.programmed], ['connected', 2, 1, 1]);
    const out = await cli(['cluster', 'status', '--url', `http://127.0.0.1:${a.port}`, '--token', a.token]);
    assert.is(out.code, 0, out.err);
    assert.match(out.out, /state: +connected since/);
    assert.match(out.out, new RegExp(`a \\(this host\\) +${pa(2).replace(/\./g, '\\.')} +\\d+ +\\d+ s`));
    assert.match(out.out, /published here \(1\): web/);
    assert.match(out.out, /remote endpoints: 1 in the cluster, 1 programmed, 0 refused/);
    const json = await cli(['cluster', 'status', '--json', '--url', `http://127.0.0.1:${a.port}`, '--token', a.token]);
    assert.is(JSON.parse(json.out).host, 'a');
    // A daemon without a cluster setting: 404 naming it.
    const plain = new Daemon({ stateDir: mkdtempSync(join(tmpdir(), 'np-cluster-plain-')), listen: { port: 0, socket: false }, uplink: false });
    daemons.push(plain);
    await plain.listen();
    const none = await api(plain, 'GET', '/cluster');
    assert.equal([none.status, none.value.error.field], [404, 'cluster']);
  } finally {
    for (const d of daemons) await d.close();
    dropAddresses();
  }
});

test('a member started while etcd is away runs on, reconnecting, and joins when it comes back', async () => {
  const p = `/t${++prefixes}`;
  const sink = new SinkHost();
  sink.state.networks.push(overlayNetwork('ov', 11) as never);
  sink.state.endpoints.push(endpoint('e1', 'ov', '00-15-5D-00-00-11', '10.50.0.41') as never);
  etcd.pause();
  let m: Awaited<ReturnType<typeof member>>;
  try {
    m = await member(p, 'late', '10.99.0.7', sink);
    assert.is((await m.cluster.status()).state, 'reconnecting');
    assert.ok(m.logs.some((l) => /cannot reach etcd .*reconnecting/.test(l)), m.logs.join('\n'));
  } finally {
    etcd.resume();
  }
  await eventually(async () => (await m.cluster.status()).state === 'connected', 20000);
  const other = await member(p, 'other', '10.99.0.8');
  await eventually(() => other.sink.remoteIds().join() === 'e1' && other.sink.state.networks.some((n) => n.ID === 'ov'));
});

test('Host.changeHook: a refused check leaves the store and state.json as they were; a committed change is reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'np-cluster-host-'));
  const host = new Host({ stateDir: dir, log: () => {} });
  const seen: string[] = [];
  host.changeHook = {
    async check(c, result) { if (c.kind === 'endpoint' && result.ID === 'taken') throw new ModelError('Conflict', 'MacAddress', 'held in the cluster by endpoint x of host y'); },
    committed(c, result) { seen.push(`${c.op} ${c.kind} ${result.ID}`); },
  };
  await host.change({ op: 'create', kind: 'network', value: { ID: 'n', Type: 'Internal', Ipams: [{ Type: 'Static', Subnets: [{ IpAddressPrefix: '10.1.0.0/24' }] }] } });
  const saved = readFileSync(join(dir, 'state.json'), 'utf8');
  const e = await refusal(host.change({ op: 'create', kind: 'endpoint', value: { ID: 'taken', HostComputeNetwork: 'n', IpConfigurations: [{ IpAddress: '10.1.0.5', PrefixLength: 24 }] } }));
  assert.is(e.field, 'MacAddress');
  assert.is(readFileSync(join(dir, 'state.json'), 'utf8'), saved);
  assert.is(host.store.list('endpoint').length, 0);
  assert.is(host.portOf('taken'), undefined);
  await host.change({ op: 'create', kind: 'endpoint', value: { ID: 'ok', HostComputeNetwork: 'n', IpConfigurations: [{ IpAddress: '10.1.0.6', PrefixLength: 24 }] } });
  assert.equal(seen, ['create network n', 'create endpoint ok']);
  host.compiler.close();
});

test.run();
