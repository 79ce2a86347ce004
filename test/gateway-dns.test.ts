// The DNS server of a network's gateway in the model (src/compile/services.ts, src/model/dns.ts): a
// Host compiles a NAT network whose gateway punts DNS and runs a DnsServer whose table is the
// network's endpoints; queries are frames built here (the test's own DNS encoder and parser) sent
// from a port of the network to the gateway, and answers are read from what the switch sends back.
// Then the daemon: /stats carries the servers' counters; and end to end, busybox nslookup in a
// network namespace behind socat on a daemon endpoint resolves endpoints' names through the gateway.
//
//   port C  client 10.0.0.200 / fd00::200 ── network "n" ── gateway 10.0.0.1 / fd00::1 (punt dhcp, dns)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../src/host.js';
import { Daemon } from '../src/daemon.js';
import { ethernet, ipv4, ipv6, udp, dissect, verifyChecksums } from '../src/index.js';
import { DEFAULT_DOMAIN } from '../src/model/dns.js';
import { requirements, socatHost, exec, sh, teardown } from './e2e/netns.js';

const A = 1, AAAA = 28;
const NOERROR = 0, NXDOMAIN = 3;
const CLIENT = { mac: '02:00:00:00:02:00', ip: '10.0.0.200', ip6: 'fd00::200' };

const wireName = (n: string): number[] => [...n.split('.').flatMap((l) => [l.length, ...Buffer.from(l, 'latin1')]), 0];
const query = (name: string, type: number, id: number): Uint8Array =>
  Uint8Array.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...wireName(name), type >> 8, type & 255, 0, 1]);
// id, rcode, and the answers as [type, address text].
function answers(b: Uint8Array): { id: number; rcode: number; an: Array<[number, string]> } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 12;
  const skipName = () => { while (b[off] !== 0) { if ((b[off] & 0xc0) === 0xc0) { off += 2; return; } off += 1 + b[off]; } off++; };
  for (let i = 0; i < v.getUint16(4); i++) { skipName(); off += 4; }
  const an: Array<[number, string]> = [];
  for (let i = 0; i < v.getUint16(6); i++) {
    skipName();
    const type = v.getUint16(off), len = v.getUint16(off + 8), d = b.subarray(off + 10, off + 10 + len);
    an.push([type, type === A ? [...d].join('.') : Array.from({ length: 8 }, (_, k) => ((d[2 * k] << 8) | d[2 * k + 1]).toString(16)).join(':')]);
    off += 10 + len;
  }
  return { id: v.getUint16(0), rcode: v.getUint16(2) & 15, an };
}

const NET = {
  ID: 'n', Type: 'NAT',
  Ipams: [{ Subnets: [{ IpAddressPrefix: '10.0.0.0/24' }, { IpAddressPrefix: 'fd00::/64' }] }],
};

// A Host with network n, and a client port in n's domain that asks the gateway.
function setup(resolv = 'nameserver 192.0.2.53\n') {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-gwdns-'));
  writeFileSync(join(dir, 'resolv.conf'), resolv);
  const host = new Host({ resolvConf: join(dir, 'resolv.conf'), log: () => {} });
  host.store.create('network', NET);
  const sw = host.sw;
  const client = sw.addPort({ network: host.compiler.networkOf('n')!, learning: true }).id;
  const out: Uint8Array[] = [];
  sw.onFrame((f, p) => { if (p === client) out.push(f.slice()); });
  const gw = () => sw.router.interfaces.get(host.compiler.gatewayInterfaceOf('n')!)!;
  let id = 1;
  // Sends a query over IPv4 (or IPv6) to the gateway and returns the answer, or undefined.
  const ask = async (name: string, type = A, v6 = false) => {
    out.length = 0;
    const q = query(name, type, ++id);
    const u = udp({ srcPort: 40000 + id, dstPort: 53, payload: q });
    const l3 = v6 ? ipv6({ src: CLIENT.ip6, dst: 'fd00::1', payload: u }) : ipv4({ src: CLIENT.ip, dst: '10.0.0.1', payload: u });
    sw.inject([[client, ethernet({ src: CLIENT.mac, dst: gw().mac, payload: l3 })]]);
    for (let i = 0; i < 200 && !out.some((f) => dissect(f).udp?.srcPort === 53); i++) await new Promise((r) => setTimeout(r, 5));
    const f = out.find((x) => dissect(x).udp?.srcPort === 53);
    if (!f) return undefined;
    assert.ok(verifyChecksums(f));
    const d = dissect(f);
    assert.equal([d.src, d.dst, d.udp?.dstPort], [gw().mac, CLIENT.mac, 40000 + id]);
    if (v6) assert.equal([d.ipv6?.src, d.ipv6?.dst], ['fd00::1', CLIENT.ip6]); else assert.equal([d.ipv4?.src, d.ipv4?.dst], ['10.0.0.1', CLIENT.ip]);
    const m = answers(f.subarray(14 + (v6 ? 40 : 20) + 8));
    assert.is(m.id, id);
    return m;
  };
  return { host, sw, ask, dir, gw };
}

test('a NAT network\'s gateway answers its endpoints\' names (<ID>.<domain>, <Name>.<domain>, both families), following every change', async () => {
  const { host, ask } = setup();
  try {
    host.store.create('endpoint', { ID: 'web', Name: 'Frontend', HostComputeNetwork: 'n', IpConfigurations: [{ IpAddress: '10.0.0.5' }, { IpAddress: 'fd00::5' }] });
    host.store.create('endpoint', { ID: 'db', Name: 'not a label', HostComputeNetwork: 'n', IpConfigurations: [{ IpAddress: '10.0.0.6' }] });
    host.store.create('endpoint', { ID: 'cache', Name: 'web', HostComputeNetwork: 'n', IpConfigurations: [{ IpAddress: '10.0.0.7' }] });
    assert.equal(host.compiler.services.dnsServer('n')?.upstreams(), [{ address: '192.0.2.53', port: 53 }], 'no ServerList: the host\'s resolvers');
    let m = await ask(`web.${DEFAULT_DOMAIN}`);
    assert.equal([m?.rcode, m?.an], [NOERROR, [[A, '10.0.0.5']]], 'the ID, not shadowed by another endpoint\'s Name');
    m = await ask(`frontend.${DEFAULT_DOMAIN}`, AAAA, true);
    assert.equal(m?.an, [[AAAA, 'fd00:0:0:0:0:0:0:5']], 'the Name, AAAA, asked over IPv6');
    m = await ask(`db.${DEFAULT_DOMAIN}`);
    assert.equal(m?.an, [[A, '10.0.0.6']]);
    m = await ask(`cache.${DEFAULT_DOMAIN}`);
    assert.equal(m?.an, [[A, '10.0.0.7']]);
    // A modified address, a deleted endpoint, a new one: the next query sees it.
    host.store.modify('endpoint', 'db', { ID: 'db', HostComputeNetwork: 'n', IpConfigurations: [{ IpAddress: '10.0.0.66' }] });
    assert.equal((await ask(`db.${DEFAULT_DOMAIN}`))?.an, [[A, '10.0.0.66']]);
    host.store.delete('endpoint', 'cache');
    assert.is((await ask(`cache.${DEFAULT_DOMAIN}`))?.rcode, NXDOMAIN);
    host.store.create('endpoint', { ID: 'late', HostComputeNetwork: 'n' });
    const late = host.store.get('endpoint', 'late').IpConfigurations[0].IpAddress;
    assert.equal((await ask(`late.${DEFAULT_DOMAIN}`))?.an, [[A, late]], 'an assigned address');
    const c = host.compiler.services.dnsCounters();
    assert.equal(c.map((x) => [x.network, x.local, x.nxdomain]), [['n', 7, 1]]);
    // The network's Dns.Domain: names move there; the counters carry on.
    host.store.modify('network', 'n', { ...NET, Dns: { Domain: 'lab.example' } });
    assert.equal((await ask('web.lab.example'))?.an, [[A, '10.0.0.5']]);
    assert.is(host.compiler.services.dnsCounters()[0].local, 8);
    // Switched off: the gateway no longer punts DNS, nothing answers.
    const punted = host.sw.counters().stats.punted;
    host.store.modify('network', 'n', { ...NET, DnsProxy: { Enabled: false } });
    assert.is(await ask('web.lab.example'), undefined);
    assert.is(host.sw.counters().stats.punted, punted, 'not punted');
    assert.equal(host.compiler.services.dnsCounters(), []);
  } finally {
    host.compiler.services.close();
  }
});

test('upstream: Dns.ServerList without the gateway itself; when it names only the gateway, the host\'s resolvers', async () => {
  // A fake resolver on port 53 of a loopback address of this process's own.
  const addr = `127.53.${(process.pid >> 8) & 255}.${(process.pid & 255) || 1}`;
  const sock: Socket = createSocket('udp4');
  sock.on('message', (q, r) => {
    const b = Buffer.from(q);
    b[2] |= 0x80; b[3] = 0x80;   // a response, NOERROR, no answer... plus one A record below
    const rec = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 99]);
    b.writeUInt16BE(1, 6);
    sock.send(Buffer.concat([b, rec]), r.port, r.address);
  });
  await new Promise<void>((ok) => sock.bind(53, addr, ok));
  const { host, ask } = setup();
  try {
    host.store.modify('network', 'n', { ...NET, Dns: { ServerList: ['10.0.0.1', addr] } });
    assert.equal(host.compiler.services.dnsServer('n')?.upstreams(), [{ address: addr, port: 53 }], 'the gateway left out');
    const m = await ask('far.example.org');
    assert.equal([m?.rcode, m?.an], [NOERROR, [[A, '192.0.2.99']]], 'forwarded and relayed');
    assert.is(host.compiler.services.dnsCounters()[0].relayed, 1);
    host.store.modify('network', 'n', { ...NET, Dns: { ServerList: ['10.0.0.1'] } });
    assert.equal(host.compiler.services.dnsServer('n')?.upstreams(), [{ address: '192.0.2.53', port: 53 }]);
    // A Dns.Domain the server cannot serve refuses the change, naming the field.
    assert.throws(() => host.store.modify('network', 'n', { ...NET, Dns: { Domain: 'bad..domain' } }), (e: any) => e.field === 'Dns.Domain');
    assert.equal(host.compiler.services.dnsServer('n')?.upstreams(), [{ address: '192.0.2.53', port: 53 }], 'the refused change left the server');
  } finally {
    host.compiler.services.close();
    sock.close();
  }
});

test('an Internal network with only an IPv6 subnet runs a DNS server (no DHCP); Private networks none', async () => {
  const host = new Host({ log: () => {} });
  host.store.create('network', { ID: 'v6', Type: 'Internal', Ipams: [{ Subnets: [{ IpAddressPrefix: 'fd01::/64' }] }] });
  host.store.create('network', { ID: 'p', Type: 'Private', Ipams: [{ Subnets: [{ IpAddressPrefix: '10.9.0.0/24' }] }] });
  const f = host.sw.router.interfaces.get(host.compiler.gatewayInterfaceOf('v6')!)!;
  assert.ok(f.punt.includes('dns') && !f.punt.includes('dhcp'), f.punt.join());
  assert.equal(host.compiler.services.dnsCounters().map((c) => c.network), ['v6']);
  host.compiler.services.close();
});

const missing = requirements();

test('daemon: /stats has the DNS counters; e2e: busybox nslookup behind socat resolves endpoints through the gateway, again after a restart', async () => {
  if (missing) throw new Error(missing);
  const state = mkdtempSync(join(tmpdir(), 'netplane-gwdns-daemon-'));
  const free = await new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const start = async () => { const d = new Daemon({ stateDir: state, listen: { port: 0, socket: false }, defaults: { network: true } }); await d.listen(); return d; };
  let d = await start();
  try {
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${free}` } } });
    const web = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'web', Name: 'www', HostComputeNetwork: 'nat' } });
    const h = await socatHost('gd', { host: '127.0.0.1', port: free }, ep.MacAddress);
    sh(['ip', 'addr', 'add', `${ep.IpConfigurations[0].IpAddress}/24`, 'dev', h.dev], { ns: h.ns });
    const look = async (name: string, want: string) => {
      const r = await exec(h.ns, `busybox nslookup ${name} 172.20.0.1`, 30000);
      assert.is(r.code, 0, `nslookup ${name}: ${r.out} ${r.err}`);
      assert.match(r.out, new RegExp(`Address:\\s+${want.replace(/\./g, '\\.')}`));
    };
    await look(`web.${DEFAULT_DOMAIN}`, web.IpConfigurations[0].IpAddress);
    await look(`www.${DEFAULT_DOMAIN}`, web.IpConfigurations[0].IpAddress);
    await look(`vm.${DEFAULT_DOMAIN}`, ep.IpConfigurations[0].IpAddress);
    const stats = await (await fetch(`http://127.0.0.1:${d.port}/stats`, { headers: { authorization: `Bearer ${d.token}` } })).json() as any;
    assert.is(stats.dns.length, 1);
    assert.is(stats.dns[0].network, 'nat');
    assert.ok(stats.dns[0].local >= 3, JSON.stringify(stats.dns));
    await d.close();
    d = await start();
    await look(`web.${DEFAULT_DOMAIN}`, web.IpConfigurations[0].IpAddress);
  } finally {
    await teardown();
    await d.close();
  }
});

test.run();
