// The daemon's socket uplink (src/compile/host.ts with src/uplink/): with no uplink configured, the
// daemon's NAT network reaches the world through the daemon's own sockets, without masquerade. End to
// end: a Linux network namespace behind socat on a daemon endpoint (no route of its own but the
// gateway) fetches bytes over TCP from a server on the host's loopback through the gateway address
// (the 'host' path: 172.20.0.1:PORT -> 127.0.0.1:PORT), sends DNS over TCP to the gateway (the TCP
// engine into the network's DnsServer), and `netplane ct`'s view names the host socket of the flow.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { createServer, connect, type AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../src/daemon.js';
import { DEFAULT_DOMAIN } from '../src/model/dns.js';
import { requirements, socatHost, exec, sh, teardown } from './e2e/netns.js';

test('config: no uplink = the socket uplink (default routes to it, no masquerade); uplink.socket settings are checked naming the field', async () => {
  const state = mkdtempSync(join(tmpdir(), 'netplane-su-'));
  const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false }, defaults: { network: true } });
  try {
    const c = d.host.compiler;
    assert.ok(c.socketUplink, 'a socket uplink');
    const up = [...d.host.sw.router.interfaces.values()].find((f) => c.interfaceOwner(f.id) && 'uplink' in c.interfaceOwner(f.id)!)!;
    assert.equal(up.punt, ['uplink']);
    assert.ok(d.host.sw.router.removeRoute({ destination: '0.0.0.0/0' }) && d.host.sw.router.removeRoute({ destination: '::/0' }), 'both default routes were there');
    const gw = d.host.sw.router.interfaces.get(c.gatewayInterfaceOf('nat')!)!;
    assert.ok(gw.punt.includes('host') && gw.punt.includes('dns'), gw.punt.join());
  } finally { await d.close(); }
  for (const [u, field] of [[{ socket: { limits: { tcp: -1 } } }, 'uplink.socket.limits.tcp'], [{ socket: { hostLoopback: 'yes' } }, 'uplink.socket.hostLoopback'], [{ socket: {}, address: '10.0.0.1/24' }, 'uplink.address'], [{ socket: { port: 1 } }, 'uplink.socket.port']] as const) {
    assert.throws(() => new Daemon({ stateDir: mkdtempSync(join(tmpdir(), 'netplane-su-')), listen: { port: 0, socket: false }, uplink: u as any }), (e: Error) => e.message.startsWith(field), field);
  }
  const none = new Daemon({ stateDir: mkdtempSync(join(tmpdir(), 'netplane-su-')), listen: { port: 0, socket: false }, uplink: false });
  assert.is(none.host.compiler.socketUplink, undefined, 'uplink: false: none');
  await none.close();
});

const missing = requirements();

test('e2e: through the daemon\'s default socket uplink, a namespace fetches from the host\'s loopback via the gateway (sha256), asks DNS over TCP, and ct names the host socket', async () => {
  if (missing) throw new Error(missing);
  const data = randomBytes(300_000);
  const server = createServer((s) => { s.end(data); });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  const state = mkdtempSync(join(tmpdir(), 'netplane-su-daemon-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false }, defaults: { network: true } });
  await d.listen();
  try {
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } } });
    const h = await socatHost('su', { host: '127.0.0.1', port: free }, ep.MacAddress);
    sh(['ip', 'addr', 'add', `${ep.IpConfigurations[0].IpAddress}/24`, 'dev', h.dev], { ns: h.ns });
    sh(['ip', 'route', 'add', 'default', 'via', '172.20.0.1'], { ns: h.ns });
    const r = await exec(h.ns, `nc -w 5 172.20.0.1 ${port} < /dev/null | sha256sum`, 30000);
    assert.is(r.code, 0, r.out + r.err);
    assert.is(r.out.split(' ')[0], createHash('sha256').update(data).digest('hex'), 'the bytes through the host path');
    // DNS over TCP to the gateway: a length-prefixed A query for vm.<domain>.
    const q = Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0x76, 0x6d, ...DEFAULT_DOMAIN.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]), 0, 0, 1, 0, 1]);
    const framed = Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q]);
    const hex = [...framed].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join('');
    const t = await exec(h.ns, `printf '${hex}' | nc -w 3 172.20.0.1 53 | od -An -v -tx1`, 30000);
    const bytes = t.out.trim().split(/\s+/).filter(Boolean).map((x) => parseInt(x, 16));
    assert.ok(bytes.length > 14, `a TCP answer: ${t.out} ${t.err} ${JSON.stringify(d.host.compiler.services.dnsCounters())} ${JSON.stringify(d.host.compiler.socketUplink?.stats())}`);
    const a = ep.IpConfigurations[0].IpAddress.split('.').map(Number);
    assert.equal(bytes.slice(-4), a, 'the answer ends with the endpoint\'s address');
    assert.ok(d.host.compiler.services.dnsCounters()[0].streams >= 1);
    // A connection to the world (the host's own non-loopback address, routed out of the uplink) held
    // open: ct shows it with its host socket, not masqueraded.
    const outside = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    assert.ok(outside, 'the host needs a non-loopback IPv4 address for this test');
    // The held connection is reset when the daemon closes its flow: expected, not an error of the test.
    const hold = createServer((c) => c.on('error', () => {}));
    await new Promise<void>((ok) => hold.listen(0, outside, ok));
    const hp = (hold.address() as AddressInfo).port;
    const bg = exec(h.ns, `sleep 3 | nc -w 5 ${outside} ${hp}`, 30000);
    let ct: any[] = [];
    for (let i = 0; i < 100 && !ct.some((c) => c.uplink); i++) {
      await new Promise((res) => setTimeout(res, 50));
      ct = await (await fetch(`http://127.0.0.1:${d.port}/connections`, { headers: { authorization: `Bearer ${d.token}` } })).json() as any[];
    }
    const c = ct.find((x) => x.uplink && x.original.dport === hp);
    assert.ok(c, JSON.stringify(ct));
    assert.is(c.uplink.via, 'uplink');
    assert.is(c.snat, false, 'not masqueraded');
    assert.is(c.original.src, ep.IpConfigurations[0].IpAddress);
    assert.is(c.uplink.peer, `${outside}:${hp}`);
    hold.close();
    await bg;
  } finally {
    await teardown();
    await d.close();
    server.close();
  }
});

test('e2e: a PortMapping on the socket uplink listens on 127.0.0.1:ExternalPort and reaches a server in the endpoint\'s namespace, again after a daemon restart', async () => {
  if (missing) throw new Error(missing);
  const state = mkdtempSync(join(tmpdir(), 'netplane-fwd-daemon-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const ext = await new Promise<number>((ok) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => ok(p)); }); });
  const start = async () => { const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false }, defaults: { network: true } }); await d.listen(); return d; };
  let d = await start();
  const fetchFrom = () => new Promise<string>((ok, fail) => {
    let got = '';
    const c = connect({ host: '127.0.0.1', port: ext });
    c.on('data', (b) => { got += b; });
    c.on('end', () => ok(got));
    c.on('error', fail);
    c.setTimeout(10000, () => { c.destroy(); ok(got); });
  });
  try {
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` },
      Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 8080, ExternalPort: ext } }] } });
    const h = await socatHost('pf', { host: '127.0.0.1', port: free }, ep.MacAddress);
    sh(['ip', 'addr', 'add', `${ep.IpConfigurations[0].IpAddress}/24`, 'dev', h.dev], { ns: h.ns });
    sh(['ip', 'route', 'add', 'default', 'via', '172.20.0.1'], { ns: h.ns });
    const server = exec(h.ns, 'timeout 40 socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:"echo hello-from-guest"', 60000);
    await new Promise((r) => setTimeout(r, 300));
    const diag = () => { const k = d.host.sw.counters(); return JSON.stringify({ flows: d.host.compiler.socketUplink?.flows(), drops: Object.fromEntries(Object.entries(k.drops).filter(([, v]) => v)), stats: Object.fromEntries(Object.entries(k.stats).filter(([, v]) => v)) }); };
    assert.is((await fetchFrom()).trim(), 'hello-from-guest', `through the host port ${diag()}`);
    await d.close();
    // The listener is gone with the daemon, and back with it.
    assert.ok(await fetchFrom().then(() => false, () => true), 'refused while the daemon is down');
    d = await start();
    assert.is((await fetchFrom()).trim(), 'hello-from-guest', `after the restart ${diag()}`);
    // A PortMapping whose port is taken on the host refuses the change, naming the field.
    const busy = createServer();
    await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok));
    const bp = (busy.address() as AddressInfo).port;
    const err = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'other', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: bp } }] } }).then(() => undefined, (e) => e);
    assert.is(err?.field, 'Policies[0].Settings.ExternalPort', String(err));
    busy.close();
    // The forward's port is the binding policy's to allow: a privileged port is refused (the daemon is
    // root; an endpoint's policy must not open port 22 on the host), and the change leaves nothing.
    const before = d.host.store.list('endpoint').length;
    const priv = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'priv', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 22, ExternalPort: 22 } }] } }).then(() => undefined, (e) => e);
    assert.is(priv?.field, 'Policies[0].Settings.ExternalPort', String(priv));
    assert.match(String(priv?.message ?? priv), /privileged/);
    assert.is(d.host.store.list('endpoint').length, before, 'the refused endpoint is not stored');
    void server;
  } finally {
    await teardown();
    await d.close();
  }
});

test('e2e: a UDP PortMapping on the socket uplink binds 127.0.0.1:ExternalPort; two host peers reach a UDP echo in the endpoint\'s namespace, each gets its own answers, again after a daemon restart', async () => {
  if (missing) throw new Error(missing);
  const state = mkdtempSync(join(tmpdir(), 'netplane-ufwd-daemon-'));
  const freeUdp = () => new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const free = await freeUdp(), ext = await freeUdp();
  const start = async () => { const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false }, defaults: { network: true } }); await d.listen(); return d; };
  let d = await start();
  // A host peer: sends `tag` every 300 ms until its echo comes back (the first may wait for ARP);
  // everything it ever hears is kept, to show no peer hears another's answers.
  const peer = async () => {
    const c = createSocket('udp4');
    const heard: string[] = [];
    c.on('message', (m) => heard.push(m.toString().trim()));
    await new Promise<void>((ok) => c.bind(0, '127.0.0.1', ok));
    const ask = async (tag: string) => {
      for (let i = 0; i < 40 && !heard.includes(`echo-${tag}`); i++) {
        c.send(`${tag}\n`, ext, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 300));
      }
      return heard.includes(`echo-${tag}`);
    };
    return { c, ask, heard };
  };
  const [p1, p2] = [await peer(), await peer()];
  try {
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` },
      Policies: [{ Type: 'PortMapping', Settings: { Protocol: 17, InternalPort: 5353, ExternalPort: ext } }] } });
    const h = await socatHost('uf', { host: '127.0.0.1', port: free }, ep.MacAddress);
    sh(['ip', 'addr', 'add', `${ep.IpConfigurations[0].IpAddress}/24`, 'dev', h.dev], { ns: h.ns });
    sh(['ip', 'route', 'add', 'default', 'via', '172.20.0.1'], { ns: h.ns });
    // The echo: each datagram answered to its sender, prefixed.
    const server = exec(h.ns, 'timeout 60 socat -T 1 UDP4-RECVFROM:5353,fork SYSTEM:"sed -u s/^/echo-/"', 90000);
    await new Promise((r) => setTimeout(r, 300));
    const diag = () => JSON.stringify({ up: d.host.compiler.socketUplink!.stats(), ct: d.host.sw.router.connections() });
    assert.ok(await p1.ask('one'), `the first host peer ${diag()}`);
    assert.ok(await p2.ask('two'), 'the second host peer');
    assert.ok(await p1.ask('one-again'), 'the first again');
    const flows = d.host.compiler.socketUplink!.flows().filter((f) => f.via === 'forward');
    assert.is(flows.length, 2, JSON.stringify(flows));
    assert.ok(flows.every((f) => f.local === `127.0.0.1:${ext}` && f.replied), JSON.stringify(flows));
    // ct names the host peer of the forwarded flow.
    const ct = await (await fetch(`http://127.0.0.1:${d.port}/connections`, { headers: { authorization: `Bearer ${d.token}` } })).json() as any[];
    const c = ct.find((x) => x.uplink?.via === 'forward' && x.uplink.peer === `127.0.0.1:${p1.c.address().port}`);
    assert.ok(c && c.dnat && c.original.dport === ext, JSON.stringify(ct));
    await d.close();
    assert.equal(await new Promise<boolean>((ok) => { const s = createSocket('udp4'); s.once('error', () => ok(false)); s.bind(ext, '127.0.0.1', () => s.close(() => ok(true))); }), true, 'the port is free while the daemon is down');
    d = await start();
    assert.ok(await p2.ask('two-after'), 'after the restart');
    assert.ok(await p1.ask('one-after'), 'after the restart, the other peer');
    assert.ok(p1.heard.every((h) => h.startsWith('echo-one')) && p2.heard.every((h) => h.startsWith('echo-two')), `each peer its own answers: ${p1.heard} | ${p2.heard}`);
    // A UDP PortMapping whose port is taken on the host refuses the change, naming the field.
    const busy = createSocket('udp4');
    await new Promise<void>((ok) => busy.bind(0, '127.0.0.1', ok));
    const err = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'other', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 17, InternalPort: 80, ExternalPort: busy.address().port } }] } }).then(() => undefined, (e) => e);
    assert.is(err?.field, 'Policies[0].Settings.ExternalPort', String(err));
    busy.close();
    void server;
  } finally {
    p1.c.close(); p2.c.close();
    await teardown();
    await d.close();
  }
});

test.run();
