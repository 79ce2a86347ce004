// The socket uplink alone, for profiling: the same setup as `npm run bench:e2e -- --uplinks`'s netplane
// case (a client namespace whose TAP is bridged to netplane's stream transport by bench/tap-stream.mjs,
// an iperf3 server on the host's loopback reached at the gateway address), one iperf3 run, its Gbit/s.
// Run it under the profiler to see where the netplane process spends its time:
//   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/uplink-drive.ts [--up] [--seconds N]
// (default: download, host -> guest, iperf3 -R, 5 s). Needs root, /dev/net/tun, iperf3 and the native
// helper (node scripts/native.mjs).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Switch } from '../src/index.js';
import { SocketUplink } from '../src/uplink/index.js';
import { StreamTransport } from '../src/transports/stream.js';
import { exec, sh } from '../test/e2e/netns.js';

const args = process.argv.slice(2);
const up = args.includes('--up');
const si = args.indexOf('--seconds');
const seconds = si >= 0 ? Number(args[si + 1]) : 5;
const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'npd-'));
const ns = `npd-${process.pid % 10000}`;
const dev = `npd${process.pid % 10000}`;
const procs: ChildProcess[] = [];

// ms of CPU (user + system) process `pid` has used, from /proc.
function cpuOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

// CPU ms of this process's threads by name (main = the switch's thread), from /proc.
function tasks(): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const st = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const name = t === String(process.pid) ? 'main' : /\((.*)\)/.exec(st)![1];
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * 10);
    } catch { /* the thread ended */ }
  }
  return out;
}
function threadCpu(before: Map<string, number>): string {
  return [...tasks()].map(([n, v]) => [n, v - (before.get(n) ?? 0)] as const).filter(([, v]) => v >= 20).sort((x, y) => y[1] - x[1]).map(([n, v]) => `${n} ${v} ms`).join(', ');
}

const sw = new Switch({ maxPorts: 8 });
const guest = sw.addPort({ network: 2 });
sw.router.addInterface({ id: 0, network: 2, address: '10.0.2.2/24' });
sw.router.addInterface({ id: 1, network: 5, address: '100.64.0.1/24', mtu: 65535 });
sw.router.addRoute({ destination: '0.0.0.0/0', interface: 1 });
const tcpOptions = process.env.UPLINK_TCP ? JSON.parse(process.env.UPLINK_TCP) : undefined;   // A/B of engine options, e.g. '{"sndBuf":1048576}'
const uplink = SocketUplink.attach(sw, { interface: 1, host: [0], tcpOptions });
const socket = join(tmp, 'netplane.sock');
const st = await StreamTransport.listen(sw, guest.id, { unix: socket });
let code = 0;
try {
  sh(['ip', 'netns', 'add', ns]);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  const server = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(5300 + (process.pid % 1000))], { stdio: 'ignore', detached: true });
  procs.push(server);
  const p = spawn(process.execPath, [join(here, 'tap-stream.mjs'), dev, socket], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  procs.push(p);
  await new Promise<void>((ok, fail) => {
    p.stdout!.on('data', (d) => { if (String(d).includes('connected')) ok(); });
    p.on('exit', (c) => fail(new Error(`tap-stream exited with ${c}`)));
  });
  sh(['ip', 'link', 'set', dev, 'netns', ns]);
  sh(['ip', 'link', 'set', dev, 'address', '02:00:00:00:00:2c'], { ns });
  sh(['ip', 'addr', 'add', '10.0.2.15/24', 'dev', dev], { ns });
  sh(['ip', 'link', 'set', dev, 'up'], { ns });
  sh(['ip', 'route', 'add', 'default', 'via', '10.0.2.2'], { ns });
  await new Promise((r) => setTimeout(r, 300));
  const task0 = tasks();
  const cpu0 = process.cpuUsage(), t0 = performance.now(), tap0 = cpuOf(p.pid!);
  const run = await exec(ns, `iperf3 -c 10.0.2.2 -p ${5300 + (process.pid % 1000)} -t ${seconds} -J${up ? '' : ' -R'}`, (seconds + 20) * 1000);
  let gbps = 0, bytes = 0;
  try { const end = JSON.parse(run.out).end; gbps = end.sum_received.bits_per_second / 1e9; bytes = end.sum_received.bytes; } catch { console.error(run.out.slice(0, 400), run.err.slice(0, 400)); code = 1; }
  const cpu = process.cpuUsage(cpu0), wall = performance.now() - t0, tap = cpuOf(p.pid!) - tap0;
  console.log(`netplane socket uplink ${up ? 'up' : 'down'} ${gbps.toFixed(3)} Gbit/s; CPU over the run: netplane ${(100 * (cpu.user + cpu.system) / 1000 / wall).toFixed(0)} %, tap-stream ${(100 * tap / wall).toFixed(0)} %; CPU ms per 100 MB: netplane ${((cpu.user + cpu.system) / 1000 / (bytes / 1e8)).toFixed(0)}, tap-stream ${(tap / (bytes / 1e8)).toFixed(0)}`);
  console.log(`netplane CPU ms per 100 MB: user ${(cpu.user / 1000 / (bytes / 1e8)).toFixed(0)}, system ${(cpu.system / 1000 / (bytes / 1e8)).toFixed(0)}; by thread: ${threadCpu(task0)}`);
  const s = uplink.stats();
  console.log(Object.entries(s).filter(([k, v]) => v && /^tcp_|^inject|frames/.test(k)).map(([k, v]) => `${k}=${v}`).join(' '));
} finally {
  for (const c of procs) { try { if (c.pid) process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ } }
  try { sh(['ip', 'netns', 'del', ns]); } catch { /* gone */ }
  await st.close();
  uplink.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
