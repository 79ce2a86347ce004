// The daemon and the CLI as a user runs them: `netplane serve` in its own process, the CLI against it
// (objects, errors that name the field, exit codes, human tables and --json, the views), and a restart
// that brings every object back from the state directory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSocket } from 'node:dgram';
import { Daemon } from '../src/daemon.js';
import { ethernet, arp, dissect } from '../src/frames.js';
import { dhcpFrame, parseReply, DISCOVER, OFFER, REQUEST, ACK } from './dhcp-client.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/netplane.js');

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((ok) => {
    execFile(process.execPath, [bin, ...args], { cwd: root }, (e, out, err) => ok({ code: e ? (e as { code?: number }).code ?? 1 : 0, out, err }));
  });
}

async function serve(stateDir: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, [bin, 'serve', '--state-dir', stateDir, '--port', '0'], { cwd: root });
  let text = '';
  const url = await new Promise<string>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`no banner: ${text}`)), 15000);
    proc.stdout!.on('data', (d) => {
      text += d;
      const m = /api: +(http:\/\/127\.0\.0\.1:\d+)\//.exec(text);
      if (m) { clearTimeout(t); ok(m[1]); }
    });
    proc.on('exit', (c) => { clearTimeout(t); fail(new Error(`serve exited ${c}: ${text}`)); });
  });
  return { proc, url };
}

function stop(proc: ChildProcess): Promise<{ code: number | null; out: string }> {
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  return new Promise((ok) => { proc.on('exit', (code) => ok({ code, out })); proc.kill('SIGTERM'); });
}

const EP = (id: string, port: number) => JSON.stringify({ ID: id, HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: port } }] });

test('serve, the CLI round trip, errors and exit codes, then a restart with the same objects', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-daemon-'));
  let { proc, url } = await serve(dir);
  try {
    const u = ['--url', url, '--state-dir', dir];
    const nets = await cli(['network', 'list', ...u]);
    assert.is(nets.code, 0, nets.err);
    assert.match(nets.out, /^ID +TYPE +SUBNETS\nnat +NAT +172\.20\.0\.0\/24\n$/, 'the default NAT network, as a table');
    const created = await cli(['endpoint', 'create', EP('web', 8080), '--json', ...u]);
    assert.is(created.code, 0, created.err);
    const web = JSON.parse(created.out);
    assert.is(web.IpConfigurations[0].IpAddress, '172.20.0.2');
    const again = await cli(['endpoint', 'create', EP('web', 8080), ...u]);
    assert.is(again.code, 0, 'the same create again succeeds');
    const conflict = await cli(['endpoint', 'create', EP('web2', 8080), ...u]);
    assert.is(conflict.code, 1);
    assert.match(conflict.err, /Conflict: Policies\[0\]\.Settings\.ExternalPort: TCP port 8080 is mapped by endpoint web/);
    const bad = await cli(['network', 'create', '{"ID":"x","Type":"Mesh"}', ...u]);
    assert.is(bad.code, 1);
    assert.match(bad.err, /InvalidArgument: Type: must be one of/);
    const missing = await cli(['endpoint', 'get', 'nope', ...u]);
    assert.is(missing.code, 1);
    assert.match(missing.err, /NotFound/);
    const usage = await cli(['frobnicate', ...u]);
    assert.is(usage.code, 2);
    assert.is(usage.err, 'netplane: unknown command "frobnicate"; see netplane help\n', 'one line, not the whole help');
    assert.is((await cli(['endpoint', 'create', '{not json', ...u])).code, 2);
    const inUse = await cli(['network', 'delete', 'nat', ...u]);
    assert.is(inUse.code, 1);
    assert.match(inUse.err, /Conflict: ID: network nat is used by endpoint web;/);
    const eps = await cli(['endpoint', 'list', ...u]);
    assert.match(eps.out, /^ID +NETWORK +MAC +ADDRESS +PORT +TRANSPORT +POLICIES +DHCP\nweb +nat +02:6e:70:01:00:00 +172\.20\.0\.2 +\d+ +PortMapping\n$/, 'with its switch port');
    for (const view of ['mac', 'ct', 'stats']) {
      const v = await cli([view, '--json', ...u]);
      assert.is(v.code, 0, `${view}: ${v.err}`);
      JSON.parse(v.out);
    }
  } finally {
    const s = await stop(proc);
    assert.is(s.code, 0);
    assert.match(s.out, /stopped; state saved/);
  }
  ({ proc, url } = await serve(dir));
  try {
    const eps = await cli(['endpoint', 'get', 'web', '--json', '--url', url, '--state-dir', dir]);
    assert.is(eps.code, 0, eps.err);
    assert.is(JSON.parse(eps.out).MacAddress, '02:6e:70:01:00:00', 'restored as it was');
    const del = await cli(['endpoint', 'delete', 'web', '--state-dir', dir]);
    assert.match(del.out, /deleted web/);
  } finally {
    await stop(proc);
  }
});

test('an endpoint with a UDP transport: frames flow; a transport that cannot open undoes the change', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-daemon-tr-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const d = new Daemon({ stateDir: dir, listen: { port: 0, socket: false }, defaults: { network: true } });
  await d.listen();
  const api = (method: string, path: string, body?: unknown) => fetch(`http://127.0.0.1:${d.port}${path}`, {
    method, body: body ? JSON.stringify(body) : undefined, headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/json' },
  }).then(async (r) => ({ status: r.status, value: await r.json() }));
  const vm = createSocket('udp4');
  try {
    const ep = await api('POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } });
    assert.is(ep.status, 201, JSON.stringify(ep.value));
    // The VM (QEMU -netdev dgram, here a UDP socket) pings its gateway: an ARP request goes in, the
    // gateway's ARP reply comes back to the VM.
    const got: Buffer[] = [];
    vm.on('message', (m) => got.push(m));
    await new Promise<void>((ok) => vm.bind(0, '127.0.0.1', () => ok()));
    const mac = (ep.value as { MacAddress: string }).MacAddress;
    const req = ethernet({ src: mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: mac, senderIp: '172.20.0.2', targetIp: '172.20.0.1' }) });
    vm.send(req, free, '127.0.0.1');
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.is(got.length, 1, 'the gateway answered over the transport');
    assert.is(dissect(new Uint8Array(got[0])).arp!.op, 2);
    const clash = await api('POST', '/endpoints', { ID: 'vm2', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } });
    assert.is(clash.status, 400);
    assert.is((clash.value as { error: { field: string } }).error.field, 'Transport.Bind');
    assert.is((await api('GET', '/endpoints/vm2')).status, 404, 'the refused endpoint is not there');
    assert.is((await api('GET', '/endpoints')).value.length, 1);
  } finally {
    vm.close();
    await d.close();
  }
});

test('DHCP through the daemon: an endpoint created without addresses gets its static lease over its transport; a dynamic lease is a read-only endpoint, kept across a restart and renewed; refusals in stats', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-daemon-dhcp-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const STRANGER = '02:00:00:00:0c:0c';
  let d = new Daemon({ stateDir: dir, listen: { port: 0, socket: false }, defaults: { network: true } });
  await d.listen();
  const api = (method: string, path: string, body?: unknown) => fetch(`http://127.0.0.1:${d.port}${path}`, {
    method, body: body ? JSON.stringify(body) : undefined, headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/json' },
  }).then(async (r) => ({ status: r.status, value: await r.json() }));
  const u = () => ['--url', `http://127.0.0.1:${d.port}`, '--state-dir', dir];
  // A guest on a port of the daemon's switch that is no endpoint's (so no spoof guard): frames in,
  // what the switch sends to it out.
  const stranger = async (f: Uint8Array) => {
    const port = [...d.host.sw.ports.values()].find((p) => p.spec.network === d.host.compiler.networkOf('nat') && d.host.compiler.endpointAt(p.id) === undefined && p.spec.learning !== false)
      ?? d.host.sw.addPort({ network: d.host.compiler.networkOf('nat')! });
    port.receive();
    d.host.sw.inject([[port.id, f]]);
    await new Promise((r) => setImmediate(r));
    return port.receive().map(parseReply);
  };
  const vm = createSocket('udp4');
  try {
    const created = await cli(['endpoint', 'create', JSON.stringify({ ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } }), ...u()]);
    assert.is(created.code, 0, created.err);
    const got = await cli(['endpoint', 'get', 'vm', ...u()]);
    const mac = JSON.parse(got.out.slice(0, got.out.indexOf('\n}\n') + 3)).MacAddress;
    assert.is(mac, '02:6e:70:01:00:00');
    assert.match(got.out, new RegExp(`-device virtio-net-pci,netdev=[^ ]*,mac=${mac}`), 'the guest command line carries the assigned MAC');
    // The VM (a UDP socket, as QEMU -netdev dgram) asks for an address with that MAC: its static lease.
    const replies: Buffer[] = [];
    vm.on('message', (m) => replies.push(m));
    await new Promise<void>((ok) => vm.bind(0, '127.0.0.1', () => ok()));
    vm.send(dhcpFrame({ type: DISCOVER, mac, broadcast: true }), free, '127.0.0.1');
    for (let i = 0; i < 100 && replies.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const offer = parseReply(new Uint8Array(replies[0]));
    assert.equal([offer.type, offer.yiaddr, offer.ipSrc], [OFFER, '172.20.0.2', '172.20.0.1']);

    // An unknown MAC: a dynamic lease, listed as an endpoint (read only), in the CLI's list too.
    assert.is((await stranger(dhcpFrame({ type: DISCOVER, mac: STRANGER })))[0].yiaddr, '172.20.0.128');
    assert.is((await stranger(dhcpFrame({ type: REQUEST, mac: STRANGER, requested: '172.20.0.128', server: '172.20.0.1' })))[0].type, ACK);
    const id = `dhcp:nat:${STRANGER}`;
    const list = (await api('GET', '/endpoints')).value as Array<{ ID: string; IpConfigurations: Array<{ IpAddress: string }>; Status: { Dhcp?: { Lease: string } } }>;
    assert.equal(list.map((e) => [e.ID, e.IpConfigurations[0].IpAddress, e.Status.Dhcp?.Lease]), [['vm', '172.20.0.2', undefined], [id, '172.20.0.128', 'Dynamic']]);
    assert.is((await api('GET', `/endpoints/${encodeURIComponent(id)}`)).value.MacAddress, STRANGER);
    const del = await api('DELETE', `/endpoints/${encodeURIComponent(id)}`);
    assert.equal([del.status, del.value.error.field], [409, 'ID']);
    const cliList = await cli(['endpoint', 'list', ...u()]);
    assert.match(cliList.out, new RegExp(`^dhcp:nat:${STRANGER} +nat +${STRANGER} +172\\.20\\.0\\.128 +dynamic until \\d{4}-`, 'm'));

    // A restart: the lease is back, and the client's renewal keeps its address.
    await d.close();
    d = new Daemon({ stateDir: dir, listen: { port: 0, socket: false }, defaults: { network: true } });
    await d.listen();
    assert.ok(((await api('GET', '/endpoints')).value as Array<{ ID: string }>).some((e) => e.ID === id), 'the lease is an endpoint again');
    const gw = d.host.sw.router.interfaces.get(d.host.compiler.gatewayInterfaceOf('nat')!)!.mac;
    const [renew] = await stranger(dhcpFrame({ type: REQUEST, mac: STRANGER, ciaddr: '172.20.0.128' }, { mac: gw, ip: '172.20.0.1' }));
    assert.equal([renew.type, renew.yiaddr], [ACK, '172.20.0.128']);

    // Refuse: unknown clients get nothing, counted in stats.
    const nat = (await api('GET', '/networks/nat')).value;
    assert.is((await api('PUT', '/networks/nat', { ...nat, Dhcp: { UnknownClients: 'Refuse' } })).status, 200);
    assert.equal(await stranger(dhcpFrame({ type: DISCOVER, mac: '02:00:00:00:0d:0d' })), []);
    const stats = await cli(['stats', ...u()]);
    assert.match(stats.out, /^DHCP NETWORK +RECEIVED +OFFERS +ACKS +NAKS +RELEASES +DECLINES +REFUSED/m);
    assert.match(stats.out, /^nat +2 +0 +1 +0 +0 +0 +1 /m, 'after the restart: the renewal acked, one refused');
  } finally {
    vm.close();
    await d.close();
  }
});

test('no daemon: exit code 3 and a message that says what to do', async () => {
  const r = await cli(['network', 'list', '--url', 'http://127.0.0.1:9']);
  assert.is(r.code, 3);
  assert.match(r.err, /cannot reach the netplane daemon.*netplane serve/);
});

test.run();
