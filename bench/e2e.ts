// `npm run bench:e2e`: TCP throughput (iperf3) and ping latency between two Linux hosts (network
// namespaces) through three switches on the same topology, in one run: netplane (each host's TAP
// attached by socat over UDP to a UdpTransport), vde_switch (vde_plug2tap), and the Linux kernel
// bridge (veth). Needs root, /dev/net/tun, iproute2, socat, iperf3 and vde2:
// `sudo scripts/install-bench-deps.sh`. Writes bench/results/e2e.json.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { Switch, nativeTapAvailable } from '../src/index.js';
import { linuxHost, nativeHost, exec, teardown, requirements, sh } from '../test/e2e/netns.js';
import { writeResults, quick } from './harness.js';

const seconds = quick ? 2 : 5;
const procs: ChildProcess[] = [];
const extraNs: string[] = [];

function need(): string | undefined {
  const r = requirements();
  if (r) return r;
  for (const t of ['iperf3', 'vde_switch', 'vde_plug2tap']) {
    try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); } catch { return `bench:e2e needs ${t}: sudo scripts/install-bench-deps.sh`; }
  }
  return undefined;
}

async function measure(client: string, server: string, serverIp: string): Promise<{ gbps: number; rttMs: number }> {
  const srv = spawn('ip', ['netns', 'exec', server, 'iperf3', '-s', '-1'], { stdio: 'ignore', detached: true });
  procs.push(srv);
  await new Promise((r) => setTimeout(r, 500));
  const ping = await exec(client, `ping -c 20 -i 0.05 -W 2 ${serverIp}`, 20000);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.out);
  const run = await exec(client, `iperf3 -c ${serverIp} -t ${seconds} -J`, (seconds + 20) * 1000);
  let gbps = 0;
  try { gbps = JSON.parse(run.out).end.sum_received.bits_per_second / 1e9; } catch { /* reported as 0 */ }
  return { gbps, rttMs: rtt ? Number(rtt[1]) : NaN };
}

function netns(name: string): string {
  const ns = `npb-${process.pid % 10000}-${name}`;
  sh(['ip', 'netns', 'add', ns]);
  extraNs.push(ns);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  return ns;
}

async function viaNetplane() {
  const sw = new Switch({ maxPorts: 4 });
  const a = sw.addPort(), b = sw.addPort();
  const c = await linuxHost(sw, a.id, 'c', { mac: '02:00:00:00:00:0c', address: '10.77.0.1/24' });
  const s = await linuxHost(sw, b.id, 's', { mac: '02:00:00:00:00:0d', address: '10.77.0.2/24' });
  return measure(c.ns, s.ns, '10.77.0.2');
}

async function viaNetplaneNative() {
  const sw = new Switch({ maxPorts: 4 });
  const a = sw.addPort(), b = sw.addPort();
  const c = await nativeHost(sw, a.id, 'nc', { mac: '02:00:00:00:00:1c', address: '10.76.0.1/24' });
  const s = await nativeHost(sw, b.id, 'ns', { mac: '02:00:00:00:00:1d', address: '10.76.0.2/24' });
  return measure(c.ns, s.ns, '10.76.0.2');
}

async function viaVde() {
  const ctl = `/tmp/npb-vde-${process.pid}`;
  procs.push(spawn('vde_switch', ['-s', ctl, '-n', '8'], { stdio: ['pipe', 'ignore', 'ignore'], detached: true }));
  for (let i = 0; i < 50 && !existsSync(ctl); i++) await new Promise((r) => setTimeout(r, 50));
  const hosts: string[] = [];
  for (const [i, name] of ['vc', 'vs'].entries()) {
    const ns = netns(name);
    const dev = `npbv${process.pid % 1000}${i}`;
    procs.push(spawn('vde_plug2tap', ['-s', ctl, dev], { stdio: 'ignore', detached: true }));
    for (let k = 0; k < 50; k++) { try { execFileSync('ip', ['link', 'show', dev], { stdio: 'ignore' }); break; } catch { await new Promise((r) => setTimeout(r, 50)); } }
    sh(['ip', 'link', 'set', dev, 'netns', ns]);
    sh(['ip', 'addr', 'add', `10.78.0.${i + 1}/24`, 'dev', dev], { ns });
    sh(['ip', 'link', 'set', dev, 'up'], { ns });
    hosts.push(ns);
  }
  return measure(hosts[0], hosts[1], '10.78.0.2');
}

async function viaBridge() {
  const br = netns('br');
  sh(['ip', 'link', 'add', 'br0', 'type', 'bridge'], { ns: br });
  sh(['ip', 'link', 'set', 'br0', 'up'], { ns: br });
  const hosts: string[] = [];
  for (const [i, name] of ['bc', 'bs'].entries()) {
    const ns = netns(name);
    sh(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', br]);
    sh(['ip', 'link', 'set', `p${i}`, 'master', 'br0'], { ns: br });
    sh(['ip', 'link', 'set', `p${i}`, 'up'], { ns: br });
    sh(['ip', 'addr', 'add', `10.79.0.${i + 1}/24`, 'dev', 'eth0'], { ns });
    sh(['ip', 'link', 'set', 'eth0', 'up'], { ns });
    hosts.push(ns);
  }
  return measure(hosts[0], hosts[1], '10.79.0.2');
}

const missing = need();
if (missing) {
  console.error(`netplane bench:e2e: ${missing}`);
  process.exit(1);
}
try {
  console.log(`TCP throughput (iperf3, ${seconds} s) and ping RTT between two namespaces`);
  const results: Record<string, { gbps: number; rttMs: number }> = {};
  const cases: Array<[string, () => Promise<{ gbps: number; rttMs: number }>]> = [['netplane (socat UDP)', viaNetplane]];
  if (nativeTapAvailable()) cases.push(['netplane (native TAP)', viaNetplaneNative]);
  else console.log('  (the native TAP helper is not built: npm run build:native)');
  cases.push(['vde_switch', viaVde], ['kernel bridge', viaBridge]);
  for (const [name, run] of cases) {
    results[name] = await run();
    console.log(`  ${name.padEnd(22)} ${results[name].gbps.toFixed(3).padStart(8)} Gbit/s   RTT ${results[name].rttMs.toFixed(3)} ms`);
  }
  const best = results['netplane (native TAP)'] ?? results['netplane (socat UDP)'];
  const ratio = (b: string) => (results[b].gbps ? best.gbps / results[b].gbps : 0);
  console.log(`  netplane (best attach) / vde_switch: ${ratio('vde_switch').toFixed(2)}x   / kernel bridge: ${ratio('kernel bridge').toFixed(2)}x`);
  console.log(`wrote ${writeResults('e2e', Object.entries(results).map(([name, r]) => ({ name, mpps: 0, entries: 2, gbps: Math.round(r.gbps * 1000) / 1000, rttMs: r.rttMs })))}`);
} finally {
  for (const p of procs) { try { if (p.pid) process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const ns of extraNs) { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } }
  rmSync(`/tmp/npb-vde-${process.pid}`, { recursive: true, force: true });
  await teardown();
  process.exit(0);
}
