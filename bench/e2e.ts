// `npm run bench:e2e`: TCP throughput (iperf3) and ping latency between two Linux hosts (network
// namespaces) through three switches on the same topology, in one run: netplane (each host's TAP
// attached by socat over UDP to a UdpTransport, or by the native TAP attach with and without the
// kernel's offloads), vde_switch (vde_plug2tap), and the Linux kernel
// bridge (veth). Then the socket uplinks, egress without root: a client namespace reaches an iperf3
// server on the host's loopback (the gateway address mapped to it, as passt and slirp do) through
// netplane's socket uplink, through passt, and through slirp4netns, TCP both ways and ping RTT, in the
// same run. netplane and passt get the same client: a TAP bridged to their unix socket in QEMU's stream
// framing by bench/tap-stream.mjs in its own process; slirp4netns makes its own TAP in the namespace
// (MTU 1500 like the others). The same client again at passt's MTU, 65520 (its TAP, and netplane's
// guest interface): at 1500 the client's kernel, taking 1500-byte frames, bounds both tools alike.
// Then each tool with its best client attachment: netplane's uplink with the
// client's TAP attached natively with offloads (TSO super-frames both ways), passt's namespace mode
// pasta (its own TAP, MTU 65520), slirp4netns with --mtu=65520.
// Needs root, /dev/net/tun, iproute2, socat, iperf3, vde2, passt and slirp4netns:
// `sudo scripts/install-bench-deps.sh`. Last, two real QEMU guests (TCG) moving TCP between them through
// netplane and through QEMU's own stream netdev (bench/qemu-guests.ts; needs qemu-system-x86 and the
// test guest). Then VXLAN between two hosts on an underlay bridge: netplane's overlay (two switches,
// each with a guest on the native TAP and the socket underlay) against Linux vxlan devices with a
// bridge, iperf3 between the guests, in the same run. Last, issue 14's per-packet targets: this tree
// against the code of the day they were set, A/B on this machine (bench/goals.ts). `-- --uplinks`
// runs only the socket uplinks, `-- --qemu` only the QEMU guests, `-- --overlay` only the VXLAN case,
// `-- --per-packet` only the per-packet targets. Writes bench/results/e2e.json.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { Switch, nativeTapAvailable } from '../src/index.js';
import { StreamTransport } from '../src/transports/stream.js';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { linuxHost, nativeHost, workerHost, exec, teardown, requirements, sh } from '../test/e2e/netns.js';
import { writeResults, quick, median } from './harness.js';
import { qemuCases, qemuMissing, type PathResult } from './qemu-guests.js';
import { perPacketGoals, perPacketMissing } from './goals.js';
import { sizes } from './cases.js';
import { uplinkSwitch, hostDefault, startPasst, startPasta, threadCpu, threadCpuSince } from './uplink-peers.js';

const seconds = quick ? 2 : 5;
const procs: ChildProcess[] = [];
const extraNs: string[] = [];

const onlyQemu = process.argv.includes('--qemu');
const onlyOverlay = process.argv.includes('--overlay');
const onlyPerPacket = process.argv.includes('--per-packet');

function need(): string | undefined {
  if (onlyQemu) return qemuMissing();
  if (onlyPerPacket) return perPacketMissing();
  const r = requirements();
  if (r) return r;
  for (const t of ['iperf3', 'vde_switch', 'vde_plug2tap', 'passt', 'slirp4netns']) {
    try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); } catch { return `bench:e2e needs ${t}: sudo scripts/install-bench-deps.sh`; }
  }
  return undefined;
}

// One iperf3 run's figure and its spread: the receiver's rate over the whole run, and the slowest and
// fastest of its one-second intervals after the first (slow start), from iperf3's JSON.
interface Rate { gbps: number; min: number; max: number }
function rateOf(json: string): Rate {
  try {
    const j = JSON.parse(json);
    const each = (j.intervals as Array<{ sum: { bits_per_second: number } }>).slice(1).map((i) => i.sum.bits_per_second / 1e9);
    const gbps = j.end.sum_received.bits_per_second / 1e9;
    return { gbps, min: each.length ? Math.min(...each) : gbps, max: each.length ? Math.max(...each) : gbps };
  } catch { return { gbps: 0, min: 0, max: 0 }; }
}
const r3 = (v: number) => Math.round(v * 1000) / 1000;
const spreadOf = (r: Rate) => ({ min: r3(r.min), max: r3(r.max), of: '1-s intervals after the first' });

async function measure(client: string, server: string, serverIp: string): Promise<Rate & { rttMs: number }> {
  const srv = spawn('ip', ['netns', 'exec', server, 'iperf3', '-s', '-1'], { stdio: 'ignore', detached: true });
  procs.push(srv);
  await new Promise((r) => setTimeout(r, 500));
  const ping = await exec(client, `ping -c 20 -i 0.05 -W 2 ${serverIp}`, 20000);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.out);
  const run = await exec(client, `iperf3 -c ${serverIp} -t ${seconds} -J`, (seconds + 20) * 1000);
  return { ...rateOf(run.out), rttMs: rtt ? Number(rtt[1]) : NaN };
}

function netns(name: string): string {
  const ns = `npb-${process.pid % 10000}-${name}`;
  sh(['ip', 'netns', 'add', ns]);
  extraNs.push(ns);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  return ns;
}

// A client and a server on two ports of a fresh switch, attached by `attach`: named <tag>c and <tag>s,
// MACs 02:00:00:00:00:<m>c and <m>d, addresses 10.<net>.0.1 and .2/24 (each case its own subnet).
type Attach<H> = (sw: Switch, port: number, name: string, o: { mac: string; address: string }) => Promise<H>;
async function twoHosts<H extends { ns: string }>(attach: Attach<H>, tag: string, m: string, net: number): Promise<{ c: H; s: H; serverIp: string }> {
  const sw = new Switch({ maxPorts: 4 });
  const a = sw.addPort(), b = sw.addPort();
  const c = await attach(sw, a.id, `${tag}c`, { mac: `02:00:00:00:00:${m}c`, address: `10.${net}.0.1/24` });
  const s = await attach(sw, b.id, `${tag}s`, { mac: `02:00:00:00:00:${m}d`, address: `10.${net}.0.2/24` });
  return { c, s, serverIp: `10.${net}.0.2` };
}

async function viaNetplane() {
  const { c, s, serverIp } = await twoHosts(linuxHost, '', '0', 77);
  return measure(c.ns, s.ns, serverIp);
}

// The native TAP attach, with the kernel's offloads (TSO super-frames through the switch) or plain.
async function viaNetplaneNative(offload: boolean) {
  const { c, s, serverIp } = await twoHosts((sw, p, n, o) => nativeHost(sw, p, n, { ...o, offload }), `n${offload ? 'o' : 'p'}`, '1', 76);
  const r = await measure(c.ns, s.ns, serverIp);
  const st = c.tap.stats;
  console.log(`    (client TAP: caps ${c.tap.caps}, ${st.rxFrames} frames read in ${st.rxBatches} calls, ${st.rxSuperFrames} super-frames; server TAP: ${s.tap.stats.txFrames} written in ${s.tap.stats.txBatches} calls, ${s.tap.stats.txDropped} dropped)`);
  return r;
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

// ---- the dataplane off the I/O thread: `-- --tap-ab[=N]` -------------------------------------------
// The native TAP attach on one thread against the same TAPs served by an I/O worker (src/worker/io.ts:
// read() and write() on a worker thread, the switch on this one, frames in SharedArrayBuffer rings),
// alternated N times (default 3) because the machine is noisy, each run printed with the CPU seconds
// of this process's threads (where the time goes), then the range and median of each.

async function measureCpu(client: string, server: string, serverIp: string) {
  const before = threadCpu();
  const r = await measure(client, server, serverIp);
  const used = threadCpuSince(before, 50);
  console.log(`    CPU seconds by thread over the ping and the ${seconds} s run: ${used.map(([n, v]) => `${n} ${(v / 1000).toFixed(2)}`).join(', ')}`);
  return r;
}

async function viaTapOneThread() {
  const { c, s, serverIp } = await twoHosts(nativeHost, 't', '4', 74);
  return measureCpu(c.ns, s.ns, serverIp);
}

async function viaTapWorker() {
  const { c, s, serverIp } = await twoHosts(workerHost, 'w', '3', 75);
  try {
    return await measureCpu(c.ns, s.ns, serverIp);
  } finally {
    await c.io.close();
  }
}

async function tapAb(runs: number): Promise<void> {
  console.log(`The native TAP on one thread against an I/O worker (iperf3, ${seconds} s, ${runs} alternated runs)`);
  const pair = [['native TAP, one thread', viaTapOneThread], ['native TAP, I/O worker', viaTapWorker]] as const;
  const seen: Record<string, number[]> = {};
  const records = [];
  for (let i = 0; i < runs; i++) {
    for (const [name, run] of i % 2 ? [...pair].reverse() : pair) {
      const r = await run();
      (seen[name] ??= []).push(r.gbps);
      records.push({ name: `${name} (run ${i + 1})`, mpps: 0, entries: 2, gbps: Math.round(r.gbps * 1000) / 1000, rttMs: r.rttMs });
      console.log(`  run ${i + 1} ${name.padEnd(24)} ${r.gbps.toFixed(3).padStart(8)} Gbit/s   RTT ${r.rttMs.toFixed(3)} ms`);
      await teardown();
    }
  }
  for (const [name, v] of Object.entries(seen)) {
    v.sort((x, y) => x - y);
    console.log(`  ${name.padEnd(30)} ${v[0].toFixed(3)}..${v[v.length - 1].toFixed(3)} Gbit/s, median ${v[v.length >> 1].toFixed(3)}`);
  }
  console.log(`wrote ${writeResults('e2e-worker', records)}`);
}

// ---- socket uplinks: egress without root ------------------------------------------------------------

interface UplinkResult { upGbps: number; downGbps: number; rttMs: number; up?: Rate; down?: Rate }
const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'npb-uplink-'));

async function iperf(ns: string, server: string, reverse: boolean): Promise<Rate> {
  const run = await exec(ns, `iperf3 -c ${server} -t ${seconds} -J${reverse ? ' -R' : ''}`, (seconds + 20) * 1000);
  return rateOf(run.out);
}

// The server is one iperf3 on the host's loopback; each client reaches it at its gateway address.
async function measureUplink(ns: string, gateway: string): Promise<UplinkResult> {
  const ping = await exec(ns, `ping -c 20 -i 0.05 -W 2 ${gateway}`, 20000);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.out);
  const up = await iperf(ns, gateway, false), down = await iperf(ns, gateway, true);
  return { upGbps: up.gbps, downGbps: down.gbps, up, down, rttMs: rtt ? Number(rtt[1]) : NaN };
}

// A TAP in a fresh namespace, bridged to a QEMU-stream unix socket by bench/tap-stream.mjs.
async function streamClient(name: string, socket: string, address: string, gateway: string, mtu?: number): Promise<string> {
  const ns = netns(name);
  const dev = `npbu${process.pid % 1000}${name}`.slice(0, 15);
  const p = spawn(process.execPath, [join(here, 'tap-stream.mjs'), dev, socket, ...(mtu ? [String(mtu)] : [])], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  procs.push(p);
  await new Promise<void>((ok, fail) => {
    p.stdout!.on('data', (d) => { if (String(d).includes('connected')) ok(); });
    p.on('exit', (c) => fail(new Error(`tap-stream exited with ${c}`)));
  });
  sh(['ip', 'link', 'set', dev, 'netns', ns]);
  sh(['ip', 'link', 'set', dev, 'address', '02:00:00:00:00:2c'], { ns });
  sh(['ip', 'addr', 'add', address, 'dev', dev], { ns });
  if (mtu) sh(['ip', 'link', 'set', dev, 'mtu', String(mtu)], { ns });
  sh(['ip', 'link', 'set', dev, 'up'], { ns });
  sh(['ip', 'route', 'add', 'default', 'via', gateway], { ns });
  return ns;
}

// mtu: the client's TAP and netplane's guest interface (passt's own is 65520 whatever the client's).
async function viaUplinkNetplane(mtu?: number): Promise<UplinkResult> {
  const { sw, guest, up } = uplinkSwitch(undefined, mtu);
  const socket = join(tmp, 'netplane.sock');
  const st = await StreamTransport.listen(sw, guest.id, { unix: socket });
  try {
    const ns = await streamClient('un', socket, '10.0.2.15/24', '10.0.2.2', mtu);
    return await measureUplink(ns, '10.0.2.2');
  } finally {
    await st.close();
    up.close();
  }
}

async function viaPasst(mtu?: number): Promise<UplinkResult> {
  const socket = join(tmp, 'passt.sock');
  // passt hands the guest the host's own address and gateway; the gateway is the host's loopback.
  const { gateway, address } = hostDefault();
  procs.push(await startPasst(tmp, socket));
  const ns = await streamClient('up', socket, address, gateway, mtu);
  return measureUplink(ns, gateway);
}

async function viaSlirp(mtu: number): Promise<UplinkResult> {
  const ns = netns(`us${mtu}`);
  const holder = spawn('ip', ['netns', 'exec', ns, 'sleep', 'infinity'], { stdio: 'ignore', detached: true });
  procs.push(holder);
  await new Promise((r) => setTimeout(r, 200));
  const pid = sh(['ip', 'netns', 'pids', ns]).trim().split('\n')[0];
  procs.push(spawn('slirp4netns', ['--configure', `--mtu=${mtu}`, pid, 'tap0'], { stdio: 'ignore', detached: true }));
  for (let i = 0; i < 100; i++) {
    try { if (/10\.0\.2\.100/.test(sh(['ip', 'addr', 'show', 'tap0'], { ns }))) break; } catch { /* not made yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  return measureUplink(ns, '10.0.2.2');
}

// ---- each tool with its best client attachment ----
// netplane: the client's TAP attached natively with the kernel's offloads (TapTransport, vnet headers):
// the uplink's TCP super-segments reach the client kernel as TSO super-frames and the client's TSO
// super-frames reach the uplink whole (the TAP's MTU stays 1500; no per-segment work in netplane).
async function viaUplinkNetplaneTap(): Promise<UplinkResult> {
  const { sw, guest, up } = uplinkSwitch();
  try {
    const c = await nativeHost(sw, guest.id, 'uo', { mac: '02:00:00:00:00:2d', address: '10.0.2.15/24', gateway: '10.0.2.2', offload: true });
    const r = await measureUplink(c.ns, '10.0.2.2');
    const st = c.tap.stats;
    console.log(`    (client TAP: caps ${c.tap.caps}, ${st.rxFrames} frames read, ${st.rxSuperFrames} super-frames; ${st.txFrames} written in ${st.txBatches} calls)`);
    return r;
  } finally {
    up.close();
  }
}

// passt's own namespace mode, pasta: it makes its own TAP (MTU 65520) in the namespace and maps the
// gateway address to the host's loopback.
async function viaPasta(): Promise<UplinkResult> {
  const ns = netns('pa');
  const { gateway } = hostDefault();
  procs.push(await startPasta(tmp, ns, gateway));
  return measureUplink(ns, gateway);
}

// The two pairs the issue's goal compares (netplane against passt behind the same client, and each
// with its best attachment against pasta) run in alternating rounds, netplane first in one round and
// the peer first in the next, so that a neighbour's load drifting over the minutes of the run falls on
// both sides; each round gives a download ratio. The other peers run once.
const UPLINK_ROUNDS = quick ? 1 : 3;
interface Uplinks { results: Record<string, UplinkResult>; downRatios: Record<string, number[]> }

async function uplinks(): Promise<Uplinks> {
  // Ping sockets for the peers that carry echo on them (passt, slirp4netns): allowed for the run,
  // then the host's setting is put back.
  const groups = readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8').trim();
  writeFileSync('/proc/sys/net/ipv4/ping_group_range', '0 2147483647');
  const server = spawn('iperf3', ['-s', '-B', '127.0.0.1'], { stdio: 'ignore', detached: true });
  procs.push(server);
  await new Promise((r) => setTimeout(r, 500));
  const out: Record<string, UplinkResult> = {};
  const downRatios: Record<string, number[]> = {};
  type Case = readonly [string, () => Promise<UplinkResult>];
  const tables: Array<[string, Case[]]> = [
    ['The same client (a TAP bridged to the peer\'s unix socket by bench/tap-stream.mjs, MTU 1500):',
      [['netplane socket uplink', () => viaUplinkNetplane()], ['passt', () => viaPasst()], ['slirp4netns', () => viaSlirp(1500)]]],
    ['The same client at passt\'s MTU, 65520 (the client\'s TAP, and netplane\'s guest interface):',
      [['netplane socket uplink (MTU 65520)', () => viaUplinkNetplane(65520)], ['passt (MTU 65520)', () => viaPasst(65520)]]],
    ['Each with its best client attachment:',
      [['netplane, native TAP offloads', viaUplinkNetplaneTap], ['pasta (MTU 65520)', viaPasta], ['slirp4netns (MTU 65520)', () => viaSlirp(65520)]]],
  ];
  const by = (x?: Rate) => (x ? ` (${x.min.toFixed(2)}-${x.max.toFixed(2)})` : '');
  const show = (name: string, r: UplinkResult) =>
    console.log(`  ${name.padEnd(30)} up ${r.upGbps.toFixed(3).padStart(7)} Gbit/s${by(r.up)}   down ${r.downGbps.toFixed(3).padStart(7)} Gbit/s${by(r.down)}   RTT ${r.rttMs.toFixed(3)} ms`);
  // Each case's processes, namespaces and native TAP host are gone before the next starts (a case
  // runs up to three times, and its names and its copy of the passt binary are fixed).
  const attempt = async ([name, run]: Case): Promise<UplinkResult> => {
    const procsFrom = procs.length, nsFrom = extraNs.length;
    try { return await run(); } catch (e) { console.log(`  ${name}: failed: ${(e as Error).message}`); return { upGbps: 0, downGbps: 0, rttMs: NaN }; } finally {
      const gone = procs.splice(procsFrom).map((p) => new Promise<void>((ok) => {
        if (p.exitCode !== null || p.signalCode !== null) return ok();
        p.once('exit', () => ok());
        try { if (p.pid) process.kill(-p.pid, 'SIGKILL'); } catch { ok(); }
      }));
      await Promise.race([Promise.all(gone), new Promise((r) => setTimeout(r, 3000))]);
      for (const ns of extraNs.splice(nsFrom)) { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } }
      await teardown();
    }
  };
  try {
    for (const [title, cases] of tables) {
      console.log(`  ${title}`);
      if (cases[0][0].includes('native') && !nativeTapAvailable()) {
        for (const c of cases.slice(1)) { out[c[0]] = await attempt(c); show(c[0], out[c[0]]); }
        continue;
      }
      // netplane and its peer, round by round; each keeps the round with its median download.
      const [np, peer] = cases;
      const got: Record<string, UplinkResult[]> = { [np[0]]: [], [peer[0]]: [] };
      const ratios: number[] = [];
      for (let r = 0; r < UPLINK_ROUNDS; r++) {
        const order = r & 1 ? [peer, np] : [np, peer];
        const round: Record<string, UplinkResult> = {};
        for (const c of order) {
          round[c[0]] = await attempt(c);
          got[c[0]].push(round[c[0]]);
          show(`${c[0]}${UPLINK_ROUNDS > 1 ? ` [${r + 1}]` : ''}`, round[c[0]]);
        }
        if (round[peer[0]].downGbps) ratios.push(round[np[0]].downGbps / round[peer[0]].downGbps);
      }
      for (const [name, rs] of Object.entries(got)) out[name] = [...rs].sort((a, b) => a.downGbps - b.downGbps)[rs.length >> 1];
      downRatios[np[0]] = ratios;
      if (UPLINK_ROUNDS > 1) console.log(`  ${np[0]} / ${peer[0]}, download round by round: ${ratios.map((x) => x.toFixed(2)).join(', ')}`);
      for (const c of cases.slice(2)) { out[c[0]] = await attempt(c); show(c[0], out[c[0]]); }
    }
  } finally {
    writeFileSync('/proc/sys/net/ipv4/ping_group_range', groups.replace(/\s+/, ' '));
  }
  return { results: out, downRatios };
}

// VXLAN between two hosts (issue 15): two host namespaces on an underlay bridge, each with one guest
// namespace; the guests' traffic crosses the underlay encapsulated. Linux: a vxlan device (VNI 43,
// nolearning, an all-zero fdb entry to the other host) and a bridge in each host, the guest on a veth
// (MTU 1450). netplane: bench/overlay-host.ts in each host (a switch, the guest on the native TAP with
// offloads, the socket underlay), the other guest as a remote endpoint. Same iperf3 between guests.
function underlayPair(tag: string, net: number): { a: string; b: string; pa: string[] } {
  const ul = netns(`${tag}u`), a = netns(`${tag}a`), b = netns(`${tag}b`);
  const dev = (x: string) => `npb${process.pid % 10000}${tag}${x}`.slice(0, 15);
  sh(['ip', 'link', 'add', dev('br'), 'type', 'bridge'], { ns: ul });
  sh(['ip', 'link', 'set', dev('br'), 'up'], { ns: ul });
  const pa = [`10.${net}.0.1`, `10.${net}.0.2`];
  for (const [i, h] of [a, b].entries()) {
    sh(['ip', 'link', 'add', dev(`v${i}`), 'netns', h, 'type', 'veth', 'peer', 'name', dev(`u${i}`), 'netns', ul]);
    sh(['ip', 'link', 'set', dev(`u${i}`), 'master', dev('br')], { ns: ul });
    sh(['ip', 'link', 'set', dev(`u${i}`), 'up'], { ns: ul });
    sh(['ip', 'addr', 'add', `${pa[i]}/24`, 'dev', dev(`v${i}`)], { ns: h });
    sh(['ip', 'link', 'set', dev(`v${i}`), 'up'], { ns: h });
  }
  return { a, b, pa };
}

async function viaOverlayLinux(): Promise<Rate & { rttMs: number }> {
  const { a, b, pa } = underlayPair('ovl', 97);
  const guests: string[] = [];
  for (const [i, h] of [a, b].entries()) {
    const g = netns(`ovlg${i}`);
    const d = (x: string) => `npb${process.pid % 10000}ol${x}${i}`.slice(0, 15);
    sh(['ip', 'link', 'add', d('vx'), 'type', 'vxlan', 'id', '43', 'dstport', '4789', 'local', pa[i], 'nolearning'], { ns: h });
    sh(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', d('vx'), 'dst', pa[1 - i]], { ns: h });
    sh(['ip', 'link', 'add', d('br'), 'type', 'bridge'], { ns: h });
    sh(['ip', 'link', 'set', d('vx'), 'master', d('br')], { ns: h });
    sh(['ip', 'link', 'add', d('h'), 'type', 'veth', 'peer', 'name', d('g'), 'netns', g], { ns: h });
    sh(['ip', 'link', 'set', d('h'), 'master', d('br')], { ns: h });
    for (const x of ['vx', 'br', 'h']) sh(['ip', 'link', 'set', d(x), 'up'], { ns: h });
    sh(['ip', 'link', 'set', d('g'), 'mtu', '1450'], { ns: g });
    sh(['ip', 'addr', 'add', `10.241.0.${i + 1}/24`, 'dev', d('g')], { ns: g });
    sh(['ip', 'link', 'set', d('g'), 'up'], { ns: g });
    guests.push(g);
  }
  return measure(guests[0], guests[1], '10.241.0.2');
}

async function viaOverlayNetplane(): Promise<Rate & { rttMs: number; cpuMs: number[] }> {
  const { a, b, pa } = underlayPair('ovn', 96);
  const macs = ['02:00:00:00:0a:01', '02:00:00:00:0b:01'];
  const hosts: ChildProcess[] = [];
  const guests: string[] = [];
  for (const [i, h] of [a, b].entries()) {
    const tap = `npb${process.pid % 10000}on${i}`.slice(0, 15);
    const arg = JSON.stringify({ pa: pa[i], peerPa: pa[1 - i], vni: 43, tap, remoteMac: macs[1 - i], remoteIp: `10.242.0.${2 - i}` });
    const p = spawn('ip', ['netns', 'exec', h, process.execPath, '--import', 'tsx', join(here, 'overlay-host.ts'), arg], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    procs.push(p);
    hosts.push(p);
    await new Promise<void>((ok, fail) => {
      let out = '';
      const t = setTimeout(() => fail(new Error(`overlay host ${i} did not start`)), 30000);
      p.stdout!.on('data', (d) => { out += d; if (out.includes('ready')) { clearTimeout(t); ok(); } });
      p.on('exit', (c) => { clearTimeout(t); fail(new Error(`overlay host ${i} exited (${c})`)); });
    });
    const g = netns(`ovng${i}`);
    sh(['ip', 'link', 'set', tap, 'netns', g], { ns: h });
    sh(['ip', 'link', 'set', tap, 'address', macs[i]], { ns: g });
    sh(['ip', 'link', 'set', tap, 'mtu', '1450'], { ns: g });
    sh(['ip', 'addr', 'add', `10.242.0.${i + 1}/24`, 'dev', tap], { ns: g });
    sh(['ip', 'link', 'set', tap, 'up'], { ns: g });
    guests.push(g);
  }
  const r = await measure(guests[0], guests[1], '10.242.0.2');
  const cpuMs: number[] = [];
  for (const p of hosts) {
    const done = new Promise<string>((ok) => { let out = ''; p.stdout!.on('data', (d) => (out += d)); p.on('exit', () => ok(out)); });
    // The host's own node process is the child of `ip netns exec`, which execs it: same pid.
    try { process.kill(p.pid!, 'SIGTERM'); } catch { /* gone */ }
    const line = (await done).split('\n').find((l) => l.startsWith('{'));
    if (!line) continue;
    const h = JSON.parse(line);
    cpuMs.push(h.cpuMs);
    const st = h.counters.stats;
    console.log(`    (host ${cpuMs.length}: to its guest ${st.gro_segments} segments coalesced into ${st.gro_frames} super-frames; from it ${st.gso_frames} super-frames cut into ${st.gso_segments} segments; vxlan encap ${st.vxlan_encap}, decap ${st.vxlan_decap}; underlay rx ${h.underlay.rxFrames} tx ${h.underlay.txFrames})`);
  }
  return { ...r, cpuMs };
}

function qemuRecord(name: string, r: PathResult) {
  const mbps = (v: number) => Math.round(v * 10) / 10;
  return {
    name: `qemu: ${name}`, mpps: 0, entries: 2, mbps: mbps(r.mbps),
    spread: { min: mbps(Math.min(...r.runs)), max: mbps(Math.max(...r.runs)), samples: r.runs.length, of: 'median' },
    runs: r.runs.map(mbps), mbMoved: Math.round(r.mbMoved),
    ...(r.netplaneCpuMsPerMB !== undefined ? { netplaneCpuMsPerMB: Math.round(r.netplaneCpuMsPerMB * 100) / 100 } : {}),
    ...(r.ofDirect ? { ofDirect: { median: Math.round(median(r.ofDirect) * 100) / 100, min: Math.round(Math.min(...r.ofDirect) * 100) / 100, max: Math.round(Math.max(...r.ofDirect) * 100) / 100 } } : {}),
  };
}

const missing = need();
if (missing) {
  console.error(`netplane bench:e2e: ${missing}`);
  process.exit(1);
}
const ab = process.argv.find((a) => a.startsWith('--tap-ab'));
if (ab) {
  if (!nativeTapAvailable()) { console.error('netplane bench:e2e --tap-ab: the native TAP helper is not built (npm run build:native)'); process.exit(1); }
  try { await tapAb(Number(ab.split('=')[1] ?? 3)); } finally { await teardown(); }
  process.exit(0);
}
let failed: unknown;
try {
  // --tap: only the native TAP cases (with and without offloads) and the kernel bridge, into e2e-tap.json.
  const tapOnly = process.argv.includes('--tap');
  const records: object[] = [];
  // The issue's goals, each a ratio of two figures of this run (a full run only).
  const goals: Array<{ goal: string; ratio: number; target: number; spread?: { min: number; max: number } }> = [];
  if (!onlyQemu && !onlyOverlay && !onlyPerPacket) {
    console.log(`TCP throughput (iperf3, ${seconds} s) and ping RTT between two namespaces`);
    const results: Record<string, Rate & { rttMs: number }> = {};
    const cases: Array<[string, () => Promise<Rate & { rttMs: number }>]> = [['netplane (socat UDP)', viaNetplane]];
    if (nativeTapAvailable()) cases.push(['netplane (native TAP)', () => viaNetplaneNative(true)], ['netplane (native TAP, plain)', () => viaNetplaneNative(false)]);
    else console.log('  (the native TAP helper is not built: npm run build:native)');
    cases.push(['vde_switch', viaVde], ['kernel bridge', viaBridge]);
    // --uplinks: only the socket uplinks' section; --tap: only the native TAP cases and the kernel bridge.
    if (process.argv.includes('--uplinks')) cases.length = 0;
    if (tapOnly) cases.splice(0, cases.length, ...cases.filter(([n]) => n.includes('native') || n === 'kernel bridge'));
    for (const [name, run] of cases) {
      results[name] = await run();
      const r = results[name];
      console.log(`  ${name.padEnd(22)} ${r.gbps.toFixed(3).padStart(8)} Gbit/s (${r.min.toFixed(2)}-${r.max.toFixed(2)} by second)   RTT ${r.rttMs.toFixed(3)} ms`);
    }
    const best = results['netplane (native TAP)'] ?? results['netplane (socat UDP)'];
    const ratio = (b: string) => (results[b]?.gbps ? best.gbps / results[b].gbps : 0);
    if (best) console.log(`  netplane (best attach) / vde_switch: ${ratio('vde_switch').toFixed(2)}x   / kernel bridge: ${ratio('kernel bridge').toFixed(2)}x`);
    const bridge = results['kernel bridge'], tap = results['netplane (native TAP)'];
    if (tap && bridge?.gbps) goals.push({ goal: 'native TAP / kernel bridge (iperf3)', ratio: tap.gbps / bridge.gbps, target: 0.4, spread: { min: tap.min / bridge.max, max: tap.max / bridge.min } });
    const up: Record<string, UplinkResult> = {};
    if (!tapOnly) {
      console.log(`Egress without root: TCP both ways (iperf3, ${seconds} s) and ping RTT to the gateway, from a namespace to the host's loopback`);
      const { results: upResults, downRatios } = await uplinks();
      Object.assign(up, upResults);
      const np = up['netplane socket uplink'];
      const vs = (b: string, k: 'upGbps' | 'downGbps') => (up[b][k] ? np[k] / up[b][k] : 0);
      console.log(`  netplane / passt: up ${vs('passt', 'upGbps').toFixed(2)}x down ${vs('passt', 'downGbps').toFixed(2)}x   netplane / slirp4netns: up ${vs('slirp4netns', 'upGbps').toFixed(2)}x down ${vs('slirp4netns', 'downGbps').toFixed(2)}x`);
      const nt = up['netplane, native TAP offloads'];
      const vb = (b: string, k: 'upGbps' | 'downGbps') => (nt && up[b]?.[k] ? nt[k] / up[b][k] : 0);
      const pa = up['passt'];
      // The uplink goals: the median of the rounds' download ratios, their range as the spread.
      const roundsGoal = (goal: string, rs?: number[]) => {
        if (rs?.length) goals.push({ goal: `${goal}${rs.length > 1 ? ` (median of ${rs.length} rounds)` : ''}`, ratio: median(rs), target: 1, spread: { min: Math.min(...rs), max: Math.max(...rs) } });
      };
      if (np && pa) roundsGoal('socket uplink / passt, download, same client', downRatios['netplane socket uplink']);
      if (up['passt (MTU 65520)']) roundsGoal('socket uplink / passt, download, same client at MTU 65520', downRatios['netplane socket uplink (MTU 65520)']);
      roundsGoal('socket uplink / pasta, download, best attachments', downRatios['netplane, native TAP offloads']);
      if (nt) console.log(`  best attachments: netplane / pasta: up ${vb('pasta (MTU 65520)', 'upGbps').toFixed(2)}x down ${vb('pasta (MTU 65520)', 'downGbps').toFixed(2)}x   netplane / slirp4netns: up ${vb('slirp4netns (MTU 65520)', 'upGbps').toFixed(2)}x down ${vb('slirp4netns (MTU 65520)', 'downGbps').toFixed(2)}x`);
    }
    records.push(
      ...Object.entries(results).map(([name, r]) => ({ name, mpps: 0, entries: 2, gbps: r3(r.gbps), spread: spreadOf(r), rttMs: r.rttMs })),
      ...Object.entries(up).map(([name, r]) => ({
        name: `uplink: ${name}`, mpps: 0, entries: 1, gbps: r3(r.upGbps), downGbps: r3(r.downGbps), rttMs: r.rttMs,
        ...(r.up && r.down ? { spread: spreadOf(r.up), downSpread: spreadOf(r.down) } : {}),
      })),
    );
  }
  // The QEMU guests: their own section, last, so a machine without QEMU still gets the rest.
  const missingQemu = tapOnly || onlyOverlay || onlyPerPacket ? undefined : qemuMissing();
  if (missingQemu && !process.argv.includes('--uplinks')) console.log(`QEMU guest to guest: skipped: ${missingQemu}`);
  else if (!process.argv.includes('--uplinks') && !tapOnly && !onlyOverlay && !onlyPerPacket) {
    const rounds = quick ? 2 : 7;
    console.log(`QEMU guest to guest (TCG): TCP, busybox dd | nc, ${rounds} rounds of about ${seconds} s per path, the paths taking turns`);
    const q = await qemuCases(seconds, rounds, console.log);
    for (const [name, r] of Object.entries(q)) {
      if (r.ofDirect) console.log(`  ${name} / QEMU direct, round by round: median ${median(r.ofDirect).toFixed(2)}x (${Math.min(...r.ofDirect).toFixed(2)}-${Math.max(...r.ofDirect).toFixed(2)})`);
      if (r.ofDirect) goals.push({ goal: `QEMU guest to guest: ${name} / QEMU direct (median of rounds)`, ratio: median(r.ofDirect), target: 0.8, spread: { min: Math.min(...r.ofDirect), max: Math.max(...r.ofDirect) } });
      records.push(qemuRecord(name, r));
    }
  }
  // VXLAN across two hosts (issue 15): netplane against Linux's vxlan devices, in this run.
  if (!onlyQemu && !tapOnly && !onlyPerPacket && !process.argv.includes('--uplinks') && nativeTapAvailable()) {
    console.log(`VXLAN between two hosts: TCP between a guest of each (iperf3, ${seconds} s), inner MTU 1450`);
    const lx = await viaOverlayLinux();
    const np = await viaOverlayNetplane();
    for (const [name, r] of [['Linux vxlan + bridge', lx], ['netplane (native TAP, socket underlay)', np]] as const) {
      console.log(`  ${name.padEnd(40)} ${r.gbps.toFixed(3).padStart(8)} Gbit/s (${r.min.toFixed(2)}-${r.max.toFixed(2)} by second)   RTT ${r.rttMs.toFixed(3)} ms`);
      records.push({ name: `overlay: ${name}`, mpps: 0, entries: 2, gbps: r3(r.gbps), spread: spreadOf(r), rttMs: r.rttMs, ...('cpuMs' in r ? { cpuMs: r.cpuMs } : {}) });
    }
    console.log(`  netplane / Linux: ${(np.gbps / lx.gbps).toFixed(2)}x (${(np.min / lx.max).toFixed(2)}-${(np.max / lx.min).toFixed(2)}); netplane CPU per host ${np.cpuMs.join(' and ')} ms over the run`);
    records.push({ name: 'ratio: VXLAN netplane / Linux vxlan (iperf3)', mpps: 0, entries: 0, ratio: Math.round((np.gbps / lx.gbps) * 100) / 100, spread: { min: Math.round((np.min / lx.max) * 100) / 100, max: Math.round((np.max / lx.min) * 100) / 100 } });
  }
  // The per-packet targets (bench/goals.ts): this tree against the issue's base, on this machine.
  if (!onlyQemu && !onlyOverlay && !tapOnly && !process.argv.includes('--uplinks')) {
    console.log('Per packet, 64-byte frames: this tree against the code of the day issue 14 set its targets (bench/goals.ts)');
    const missingBase = perPacketMissing();
    if (missingBase) console.log(`  skipped: ${missingBase}`);
    else {
      for (const g of perPacketGoals(console.log, quick ? 3 : 7, quick ? 1 : 3)) {
        goals.push({ goal: `per packet: ${g.what}, this tree / the issue's base`, ratio: g.ratio, target: g.need, spread: g.spread });
        records.push({ name: `per-packet: ${g.name}`, mpps: r3(median(g.mpps)), entries: sizes[g.name], baseMpps: r3(median(g.baseMpps)), runs: g.mpps.map(r3), baseRuns: g.baseMpps.map(r3), ratio: r3(g.ratio), spread: { min: r3(g.spread.min), max: r3(g.spread.max) }, need: g.need, then: g.then, target: g.target });
      }
    }
  }
  if (goals.length) {
    console.log('Issue 14 goals, from this run (ratio, its spread, the target):');
    const f = (v: number) => v.toFixed(2);
    for (const g of goals) console.log(`  ${g.goal.padEnd(62)} ${f(g.ratio)}x (${g.spread ? `${f(g.spread.min)}-${f(g.spread.max)}` : '-'})  target >= ${g.target}  ${g.ratio >= g.target ? 'met' : 'NOT met'}`);
    records.push(...goals.map((g) => ({ name: `goal: ${g.goal}`, mpps: 0, entries: 0, ratio: Math.round(g.ratio * 100) / 100, target: g.target, met: g.ratio >= g.target, ...(g.spread ? { spread: { min: Math.round(g.spread.min * 100) / 100, max: Math.round(g.spread.max * 100) / 100 } } : {}) })));
  }
  // A run of one section (--qemu, --uplinks) keeps the other sections' last figures in the file.
  if (onlyQemu || onlyOverlay || onlyPerPacket || process.argv.includes('--uplinks')) {
    const file = join(here, 'results', 'e2e.json');
    const fresh = new Set(records.map((r) => (r as { name: string }).name));
    const section = onlyQemu ? (n: string) => n.startsWith('qemu: ') : onlyPerPacket ? (n: string) => n.startsWith('per-packet: ') : onlyOverlay ? (n: string) => n.startsWith('overlay: ') || n.startsWith('ratio: VXLAN') : (n: string) => n.startsWith('uplink: ');
    try { for (const r of JSON.parse(readFileSync(file, 'utf8'))) if (!fresh.has(r.name) && !section(r.name)) records.push(r); } catch { /* no earlier run */ }
  }
  console.log(`wrote ${writeResults(tapOnly ? 'e2e-tap' : 'e2e', records)}`);
} catch (e) {
  // Said, and the exit code says it: the finally below exits the process, which would otherwise end a
  // failed run with code 0 and no word (a QEMU case that threw once ended a full run that way).
  failed = e;
  console.error(`netplane bench:e2e: failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
} finally {
  for (const p of procs) { try { if (p.pid) process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const ns of extraNs) { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } }
  rmSync(`/tmp/npb-vde-${process.pid}`, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
  await teardown();
  process.exit(failed === undefined ? 0 : 1);
}
