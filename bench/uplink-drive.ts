// The socket uplink alone, for profiling: the same setup as `npm run bench:e2e -- --uplinks`'s netplane
// case (a client namespace whose TAP is bridged to netplane's stream transport by bench/tap-stream.mjs,
// an iperf3 server on the host's loopback reached at the gateway address), one iperf3 run, its Gbit/s.
// Run it under the profiler to see where the netplane process spends its time:
//   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/uplink-drive.ts [--up] [--seconds N]
// (default: download, host -> guest, iperf3 -R, 5 s). Needs root, /dev/net/tun, iperf3 and the native
// helper (node scripts/native.mjs). The same drive serves the other peers of the bench, so that one
// script alternates them in one run: --passt (passt behind the same client), --native (netplane with
// the client's TAP attached natively with offloads), --pasta (pasta's own TAP). Each run prints the
// CPU of the peer, the client bridge and the iperf3 server, the machine's idle time and the load
// average; --ss adds, every 500 ms, the client's `ss -ti` of the data connection and netplane's flow
// (bytes in flight, queued, the guest's window, cwnd, paused, srtt). UPLINK_TCP='{...}' passes
// TcpEngineOptions to netplane's engine (an A/B of sndBuf, say).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamTransport } from '../src/transports/stream.js';
import { TapTransport } from '../src/transports/tap.js';
import { IoWorker } from '../src/worker/io.js';
import { exec, sh } from '../test/e2e/netns.js';
import { uplinkSwitch, hostDefault, startPasst, startPasta, threadCpu, threadCpuSince } from './uplink-peers.js';

const args = process.argv.slice(2);
const up = args.includes('--up');
// Who serves the client: netplane behind the stream client (default), passt behind the same client
// (--passt), netplane with the client's TAP attached natively with offloads (--native), pasta (--pasta).
const viaPasst = args.includes('--passt');
const viaWorker = args.includes('--worker');
const viaNative = args.includes('--native') || viaWorker;
const viaPasta = args.includes('--pasta');
const other = viaPasst || viaPasta;   // not netplane
const sample = args.includes('--ss');        // the client's `ss -ti` and the engine's flow state every 500 ms
const si = args.indexOf('--seconds');
const seconds = si >= 0 ? Number(args[si + 1]) : 5;
const mi = args.indexOf('--mtu');
const mtu = mi >= 0 ? Number(args[mi + 1]) : undefined;
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

const tcpOptions = process.env.UPLINK_TCP ? JSON.parse(process.env.UPLINK_TCP) : undefined;   // A/B of engine options, e.g. '{"sndBuf":1048576}'
const { sw, guest, up: uplink } = uplinkSwitch(tcpOptions, mtu);
if (process.env.NO_WHOLE) sw.setPuntOffload(0);
const socket = join(tmp, viaPasst ? 'passt.sock' : 'netplane.sock');
const st = other || viaNative ? undefined : await StreamTransport.listen(sw, guest.id, { unix: socket });
// passt and pasta as bench/e2e.ts runs them, handing the client the host's address and gateway.
const { address, gateway } = other ? hostDefault() : { address: '10.0.2.15/24', gateway: '10.0.2.2' };
if (viaPasst) procs.push(await startPasst(tmp, socket));
const peerPid = () => other ? Number(sh(['sh', '-c', `pgrep -f '^${join(tmp, viaPasta ? 'pasta' : 'passt')}' | head -1`]).trim()) : process.pid;
let code = 0;
let clientTap: TapTransport | undefined;
let io: IoWorker | undefined;
try {
  sh(['ip', 'netns', 'add', ns]);
  sh(['ip', 'link', 'set', 'lo', 'up'], { ns });
  const port = 5300 + (process.pid % 1000);
  const server = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port)], { stdio: 'ignore', detached: true });
  procs.push(server);
  // The client: a TAP bridged by tap-stream.mjs (netplane, passt), attached natively, or pasta's own.
  let p: ChildProcess | undefined;
  if (viaPasta) {
    procs.push(await startPasta(tmp, ns, gateway));
  } else if (viaWorker) {
    io = new IoWorker(sw, process.env.RING ? { ringBytes: Number(process.env.RING) } : {});
    io.tap(guest.id, dev);
    await io.ready;
    sh(['ip', 'link', 'set', dev, 'netns', ns]);
  } else if (viaNative) {
    clientTap = new TapTransport(sw, guest.id, dev, { offload: true });
    sh(['ip', 'link', 'set', dev, 'netns', ns]);
  } else {
    p = spawn(process.execPath, [join(here, 'tap-stream.mjs'), dev, socket, ...(mtu ? [String(mtu)] : [])], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    procs.push(p);
    await new Promise<void>((ok, fail) => {
      p!.stdout!.on('data', (d) => { if (String(d).includes('connected')) ok(); });
      p!.on('exit', (c) => fail(new Error(`tap-stream exited with ${c}`)));
    });
    sh(['ip', 'link', 'set', dev, 'netns', ns]);
  }
  if (!viaPasta) {
    sh(['ip', 'link', 'set', dev, 'address', '02:00:00:00:00:2c'], { ns });
    sh(['ip', 'addr', 'add', address, 'dev', dev], { ns });
    if (mtu) sh(['ip', 'link', 'set', dev, 'mtu', String(mtu)], { ns });
    sh(['ip', 'link', 'set', dev, 'up'], { ns });
    sh(['ip', 'route', 'add', 'default', 'via', gateway], { ns });
  }
  await new Promise((r) => setTimeout(r, 300));
  const pp = peerPid();
  const task0 = threadCpu();
  const cpu0 = process.cpuUsage(), t0 = performance.now(), tap0 = p ? cpuOf(p.pid!) : 0, peer0 = cpuOf(pp), srv0 = cpuOf(server.pid!), idle0 = idle();
  const samples: string[] = [];
  const sampler = sample ? setInterval(() => samples.push(snapshot()), 500) : undefined;
  const run = await exec(ns, `iperf3 -c ${gateway.split('/')[0]} -p ${port} -t ${seconds} -J${up ? '' : ' -R'}`, (seconds + 20) * 1000);
  if (sampler) clearInterval(sampler);
  let gbps = 0, bytes = 0;
  try { const end = JSON.parse(run.out).end; gbps = end.sum_received.bits_per_second / 1e9; bytes = end.sum_received.bytes; } catch { console.error(run.out.slice(0, 400), run.err.slice(0, 400)); code = 1; }
  const cpu = process.cpuUsage(cpu0), wall = performance.now() - t0, tap = p ? cpuOf(p.pid!) - tap0 : 0, peer = cpuOf(pp) - peer0, srv = cpuOf(server.pid!) - srv0;
  const idleFrac = (idle() - idle0) / (wall / 1000 * 100 * 2);
  const per = (ms: number) => (ms / (bytes / 1e8)).toFixed(0);
  const who = viaPasst ? 'passt' : viaPasta ? 'pasta' : 'netplane';
  const name = viaPasst ? 'passt' : viaPasta ? 'pasta' : viaWorker ? 'netplane socket uplink, native TAP on an I/O worker' : viaNative ? 'netplane socket uplink, native TAP' : 'netplane socket uplink';
  console.log(`${name} ${up ? 'up' : 'down'} ${gbps.toFixed(3)} Gbit/s; CPU over the run: ${who} ${(100 * peer / wall).toFixed(0)} %, tap-stream ${(100 * tap / wall).toFixed(0)} %, iperf3 server ${(100 * srv / wall).toFixed(0)} %, machine idle ${(100 * idleFrac).toFixed(0)} % of 2 cores; CPU ms per 100 MB: ${who} ${per(peer)}, tap-stream ${per(tap)}; load ${loadavg()[0].toFixed(2)}`);
  if (!other) {
    console.log(`netplane CPU ms per 100 MB: user ${(cpu.user / 1000 / (bytes / 1e8)).toFixed(0)}, system ${(cpu.system / 1000 / (bytes / 1e8)).toFixed(0)}; by thread: ${threadCpuSince(task0, 20).map(([n, v]) => `${n} ${v} ms`).join(', ')}`);
    const s = uplink.stats();
    console.log(Object.entries(s).filter(([k, v]) => v && /^tcp_|^inject|frames/.test(k)).map(([k, v]) => `${k}=${v}`).join(' '));
    const w = (st as unknown as { writer?: { writes: number } } | undefined)?.writer;
    if (st && w) console.log(`stream transport: ${st.stats.txFrames} frames to the client in ${w.writes} writes (${(bytes / w.writes / 1024).toFixed(0)} KiB a write), ${st.stats.rxFrames} from it, ${st.stats.txDropped} dropped; the client socket's send buffer ${st.sendBuffer || 'not widened'}`);
  }
  if (clientTap) console.log(`client TAP: ${JSON.stringify(clientTap.stats)}`);
  if (io) console.log(`I/O worker: ring drops ${JSON.stringify(io.ringDrops)}, device ${JSON.stringify(io.deviceCounters(guest.id))}`);
  for (const l of samples) console.log(l);
} finally {
  for (const c of procs) { try { if (c.pid) process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ } }
  try { sh(['ip', 'netns', 'del', ns]); } catch { /* gone */ }
  await st?.close();
  clientTap?.close();
  await io?.close();
  uplink.close();
  rmSync(tmp, { recursive: true, force: true });
}

// The machine's idle time, in 1/100 s summed over its cores, from /proc/stat.
function idle(): number { return Number(readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/)[4]); }

// One line per sample: the client's view of the data connection (the one with the most bytes) and,
// for netplane, the engine's flow (in flight, queued, windows).
function snapshot(): string {
  let client = '';
  try {
    const out = sh(['ss', '-tinH', 'state', 'established'], { ns });
    const conns = out.split(/\n(?=\S)/).map((c) => c.replace(/\s+/g, ' '));
    const pick = (c: string) => Number(/bytes_received:(\d+)/.exec(c)?.[1] ?? /bytes_acked:(\d+)/.exec(c)?.[1] ?? 0);
    const c = conns.sort((a, b) => pick(b) - pick(a))[0] ?? '';
    const f = (k: string) => new RegExp(`\\b${k}[: ]([^ ]+)`).exec(c)?.[1] ?? '-';
    client = `rtt ${f('rtt')} rcv_space ${f('rcv_space')} rcv_ssthresh ${f('rcv_ssthresh')} rcv_rtt ${f('rcv_rtt')} Recv-Q ${/^\S+ (\d+)/.exec(c)?.[1] ?? '-'}`;
  } catch { client = 'ss failed'; }
  let engine = '';
  if (!other) {
    const e = (uplink as unknown as { tcpHost: { flowsById: Map<string, Record<string, number>> } }).tcpHost;
    let best: Record<string, number> | undefined;
    for (const fl of e.flowsById.values()) if (!best || fl.toGuest > best.toGuest) best = fl;
    if (best) engine = ` | engine inflight ${(best.sndNxt - best.sndUna) | 0} queued ${best.qBytes} sndWnd ${best.sndWnd} cwnd ${best.cwnd} paused ${best.paused} srtt ${best.srtt}`;
  }
  return `  ${client}${engine}`;
}
process.exit(code);
