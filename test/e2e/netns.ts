// Real Linux hosts for the end-to-end tests: network namespaces with a TAP device each, attached to a
// netplane switch port through `socat TUN,tun-type=tap ... UDP:...` (the TAP is created in the root
// namespace by socat, then moved into the host's namespace; socat keeps its descriptor). Everything is
// named `np-<run>-<name>` and torn down by `teardown()`, also after a failure.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Switch } from '../../src/dataplane.js';
import { UdpTransport } from '../../src/transports/udp.js';
import { TapTransport, nativeTapAvailable } from '../../src/transports/tap.js';
import { IoWorker, type IoTap } from '../../src/worker/io.js';

export function requirements(): string | undefined {
  if (process.getuid?.() !== 0) return 'the end-to-end tests need root (network namespaces, TAP devices)';
  if (!existsSync('/dev/net/tun')) return 'the end-to-end tests need /dev/net/tun';
  for (const tool of ['ip', 'socat', 'ping', 'nc', 'busybox']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch { return `the end-to-end tests need ${tool} (apt-get install socat iproute2 iputils-ping netcat-openbsd busybox)`; }
  }
  return undefined;
}

// The native helper (native/, npm run build:native), which the TAP, ring and worker tests need: in
// CI its absence fails the test; elsewhere the test says loudly what did not run and returns false.
export function nativeOr(didNotRun: string, available = nativeTapAvailable()): boolean {
  if (available) return true;
  if (process.env.CI) throw new Error('the native TAP helper was not built (npm run build:native)');
  console.error(`NOTE: the native TAP helper is not built here: ${didNotRun}`);
  return false;
}

const run = `${process.pid % 10000}`;
const made: { netns: string[]; procs: ChildProcess[]; transports: UdpTransport[]; taps: TapTransport[]; workers: IoWorker[] } = { netns: [], procs: [], transports: [], taps: [], workers: [] };

// A last sweep when the test process exits, whatever teardown() managed: every namespace named for
// this process (np-<run>-*) is deleted and every helper process group it spawned is killed, so a
// test that failed or was cut short inside teardown leaves nothing behind on the machine.
const spawned: ChildProcess[] = [];
process.on('exit', () => {
  for (const p of spawned) { try { if (p.pid && p.exitCode === null) process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }
  let names: string[] = [];
  try { names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]); } catch { /* no ip */ }
  for (const ns of names) if (ns.startsWith(`np-${run}-`)) { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } }
});
const track = (p: ChildProcess): void => { made.procs.push(p); spawned.push(p); };

export function sh(cmd: string[], opts: { ns?: string; input?: string } = {}): string {
  const argv = opts.ns ? ['ip', 'netns', 'exec', opts.ns, ...cmd] : cmd;
  return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', input: opts.input, stdio: ['pipe', 'pipe', 'pipe'] });
}

// Runs a command in a namespace without blocking the event loop (the switch runs in this process).
export function exec(ns: string, cmd: string, timeoutMs = 30000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((ok) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', cmd]);
    let out = '', err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => { clearTimeout(t); ok({ code: code ?? -1, out, err }); });
  });
}

// A namespace of this test process's (np-<run>-<name>, its loopback up), deleted at teardown.
export function namespace(name: string): string {
  const ns = `np-${run}-${name}`;
  sh(['ip', 'netns', 'add', ns]);
  made.netns.push(ns);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  return ns;
}

// A device name for this test process (np<run><name>, at most 15 characters).
export const devName = (name: string): string => `np${run}${name}`.slice(0, 15);

// Starts a background command in a namespace (a server); killed at teardown.
export function background(ns: string, cmd: string): ChildProcess {
  // Its own process group, so that teardown ends the whole pipeline, not only the shell.
  const p = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', `exec ${cmd}`], { stdio: 'ignore', detached: true });
  track(p);
  return p;
}

export interface LinuxHost { ns: string; dev: string; transport: UdpTransport; port: number }

// A Linux host on switch port `port`: its namespace, its TAP with `mac`, `address` and default route.
// native: false keeps the UdpTransport on Node's dgram (no recvmmsg/sendmmsg batches).
export async function linuxHost(sw: Switch, port: number, name: string, opts: { mac: string; address: string; gateway?: string; udpPort?: number; native?: boolean }): Promise<LinuxHost> {
  const ns = `np-${run}-${name}`;
  const dev = `np${run}${name}`.slice(0, 15);
  sh(['ip', 'netns', 'add', ns]);
  made.netns.push(ns);
  const transport = await UdpTransport.open(sw, port, { bind: { host: '127.0.0.1', port: opts.udpPort ?? 0 }, native: opts.native });
  made.transports.push(transport);
  // An unconnected UDP socket on socat's side: a moment without the switch (a restart) yields no
  // ICMP error that would end socat and take the TAP with it.
  const socat = spawn('socat', ['-b65536', `TUN,tun-type=tap,tun-name=${dev},iff-no-pi,iff-up`, `UDP-DATAGRAM:127.0.0.1:${transport.address().port}`], { stdio: 'ignore', detached: true });
  track(socat);
  // Wait for the TAP, then move it into the namespace and configure it there.
  for (let i = 0; i < 100 && !exists(dev); i++) await new Promise((r) => setTimeout(r, 20));
  if (!exists(dev)) throw new Error(`socat did not create ${dev}`);
  configure(ns, dev, opts);
  // socat learns nothing until the TAP speaks; the transport learns socat's port from its first
  // datagram: make the host speak once (an IPv6 router solicitation or ARP follows link-up anyway).
  await exec(ns, `ping -c 1 -W 1 ${opts.gateway ?? opts.address.split('/')[0]} >/dev/null 2>&1; true`, 5000);
  return { ns, dev, transport, port };
}

// A Linux host whose TAP socat connects to a UDP address (a daemon endpoint's udp Transport), with
// `mac` and no address: what a guest booting with DHCP looks like.
export async function socatHost(name: string, udp: { host: string; port: number }, mac: string): Promise<{ ns: string; dev: string }> {
  const ns = `np-${run}-${name}`;
  const dev = `np${run}${name}`.slice(0, 15);
  sh(['ip', 'netns', 'add', ns]);
  made.netns.push(ns);
  const socat = spawn('socat', ['-b65536', `TUN,tun-type=tap,tun-name=${dev},iff-no-pi,iff-up`, `UDP-DATAGRAM:${udp.host}:${udp.port}`], { stdio: 'ignore', detached: true });
  track(socat);
  for (let i = 0; i < 100 && !exists(dev); i++) await new Promise((r) => setTimeout(r, 20));
  if (!exists(dev)) throw new Error(`socat did not create ${dev}`);
  sh(['ip', 'link', 'set', dev, 'netns', ns]);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  sh(['ip', 'link', 'set', dev, 'address', mac], { ns });
  sh(['ip', 'link', 'set', dev, 'up'], { ns });
  return { ns, dev };
}

// The same host attached by netplane's native TAP helper instead of socat and UDP.
// offload: false opens a plain TAP (no vnet header, no super-frames); by default it takes offloads.
export async function nativeHost(sw: Switch, port: number, name: string, opts: { mac: string; address: string; gateway?: string; offload?: boolean; mtu?: number }): Promise<{ ns: string; dev: string; tap: TapTransport }> {
  const ns = `np-${run}-${name}`;
  const dev = `np${run}${name}`.slice(0, 15);
  sh(['ip', 'netns', 'add', ns]);
  made.netns.push(ns);
  const tap = new TapTransport(sw, port, dev, { offload: opts.offload });
  made.taps.push(tap);
  configure(ns, dev, opts);
  return { ns, dev, tap };
}

// The same host with its TAP served from an I/O worker thread (src/worker/io.ts): the switch stays on
// this thread, the TAP's read() and write() run on `io`'s (one worker per switch when not given).
export async function workerHost(sw: Switch, port: number, name: string, opts: { mac: string; address: string; gateway?: string; io?: IoWorker }): Promise<{ ns: string; dev: string; tap: IoTap; io: IoWorker }> {
  const ns = `np-${run}-${name}`;
  const dev = `np${run}${name}`.slice(0, 15);
  sh(['ip', 'netns', 'add', ns]);
  made.netns.push(ns);
  let io = opts.io ?? made.workers.find((w) => w.sw === sw);
  if (!io) { io = new IoWorker(sw); made.workers.push(io); }
  const tap = io.tap(port, dev);
  configure(ns, dev, opts);
  await io.ready;
  return { ns, dev, tap, io };
}

// Moves a TAP created in the root namespace into `ns` and gives it its MAC, address and route.
function configure(ns: string, dev: string, opts: { mac: string; address: string; gateway?: string; mtu?: number }): void {
  sh(['ip', 'link', 'set', dev, 'netns', ns]);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  sh(['ip', 'link', 'set', dev, 'address', opts.mac], { ns });
  if (opts.mtu) sh(['ip', 'link', 'set', dev, 'mtu', String(opts.mtu)], { ns });
  sh(['ip', 'addr', 'add', opts.address, 'dev', dev], { ns });
  sh(['ip', 'link', 'set', dev, 'up'], { ns });
  if (opts.gateway) sh(['ip', 'route', 'add', 'default', 'via', opts.gateway], { ns });
}

// A Linux router in namespaces, the reference netplane is compared with: client -- router -- server
// over veth pairs, the router forwarding with nft masquerade on its outside (conntrack on, so the
// kernel reassembles fragments for it and fragments again on the way out). `prefix` names the three
// namespaces; addresses: client 10.<net>.0.2/24 (gateway .1), server 192.168.<net>.2/24, the router's
// outside address 192.168.<net>.1.
export function linuxRouter(name: string, net: number): { client: string; router: string; server: string; outside: string } {
  const ns = (n: string) => `np-${run}-${name}${n}`;
  const [client, router, server] = [ns('c'), ns('r'), ns('s')];
  for (const n of [client, router, server]) {
    sh(['ip', 'netns', 'add', n]);
    made.netns.push(n);
    sh(['ip', 'link', 'set', 'lo', 'up'], { ns: n });
  }
  const dev = (x: string) => `np${run}${name}${x}`.slice(0, 15);
  sh(['ip', 'link', 'add', dev('c'), 'netns', client, 'type', 'veth', 'peer', 'name', dev('rc'), 'netns', router]);
  sh(['ip', 'link', 'add', dev('s'), 'netns', server, 'type', 'veth', 'peer', 'name', dev('rs'), 'netns', router]);
  const up = (n: string, d: string, addr: string) => {
    sh(['ip', 'addr', 'add', addr, 'dev', d], { ns: n });
    sh(['ip', 'link', 'set', d, 'up'], { ns: n });
  };
  up(client, dev('c'), `10.${net}.0.2/24`);
  up(router, dev('rc'), `10.${net}.0.1/24`);
  up(router, dev('rs'), `192.168.${net}.1/24`);
  up(server, dev('s'), `192.168.${net}.2/24`);
  sh(['ip', 'route', 'add', 'default', 'via', `10.${net}.0.1`], { ns: client });
  sh(['sysctl', '-qw', 'net.ipv4.ip_forward=1'], { ns: router });
  sh(['nft', '-f', '-'], { ns: router, input: `table ip nat {\n chain post {\n type nat hook postrouting priority srcnat;\n oifname "${dev('rs')}" masquerade\n }\n}\n` });
  return { client, router, server, outside: `192.168.${net}.1` };
}

// A server outside the virtual network: a namespace joined to the root namespace (where this process
// and its sockets are) by a veth pair, 198.18.<n>.1/24 and 2001:db8:18:<n>::1/64 on the root side,
// .2 and ::2 inside (RFC 2544 benchmarking space and documentation space: routed nowhere else).
// <n> comes from the process id, so parallel runs do not collide.
export function outsideServer(name: string): { ns: string; address: string; address6: string } {
  const ns = `np-${run}-${name}`;
  const n = process.pid % 250 + 1;
  sh(['ip', 'netns', 'add', ns]);
  made.netns.push(ns);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  const dev = `np${run}${name}`.slice(0, 13);
  sh(['ip', 'link', 'add', `${dev}o`, 'type', 'veth', 'peer', 'name', `${dev}i`, 'netns', ns]);
  sh(['ip', 'addr', 'add', `198.18.${n}.1/24`, 'dev', `${dev}o`]);
  sh(['ip', '-6', 'addr', 'add', `2001:db8:18:${n}::1/64`, 'dev', `${dev}o`, 'nodad']);
  sh(['ip', 'link', 'set', `${dev}o`, 'up']);
  sh(['ip', 'addr', 'add', `198.18.${n}.2/24`, 'dev', `${dev}i`], { ns });
  sh(['ip', '-6', 'addr', 'add', `2001:db8:18:${n}::2/64`, 'dev', `${dev}i`, 'nodad'], { ns });
  sh(['ip', 'link', 'set', `${dev}i`, 'up'], { ns });
  return { ns, address: `198.18.${n}.2`, address6: `2001:db8:18:${n}::2` };
}

// Sets a sysctl of the root namespace for a test; the returned function restores the old value.
export function setSysctl(key: string, value: string): () => void {
  const old = sh(['sysctl', '-n', key]).trim().replace(/\s+/g, ' ');
  sh(['sysctl', '-qw', `${key}=${value}`]);
  return () => { sh(['sysctl', '-qw', `${key}=${old}`]); };
}

function exists(dev: string): boolean {
  try { execFileSync('ip', ['link', 'show', dev], { stdio: 'ignore' }); return true; } catch { return false; }
}

export async function teardown(): Promise<void> {
  for (const p of made.procs.splice(0)) {
    try { if (p.pid) process.kill(-p.pid, 'SIGKILL'); } catch { p.kill('SIGKILL'); }
  }
  for (const t of made.transports.splice(0)) await t.close().catch(() => {});
  for (const t of made.taps.splice(0)) t.close();
  for (const w of made.workers.splice(0)) await w.close();
  for (const ns of made.netns.splice(0)) { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ } }
}

// Waits until cond() holds (polled every 100 ms), or throws after `ms`.
export async function eventually(cond: () => boolean | Promise<boolean>, ms = 10000): Promise<void> {
  const t = Date.now();
  while (!(await cond())) {
    if (Date.now() - t > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}
