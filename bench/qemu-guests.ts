// bench:e2e's QEMU case: TCP throughput between two real QEMU guests (scripts/build-test-guest.sh:
// Debian's kernel and busybox; TCG, since the bench machine may have no KVM), with netplane between
// them and, in the same run, with QEMU's own stream netdev between the same two guests (one guest
// listens, `server=on`, the other connects): the goal is netplane at >= 80 % of QEMU direct.
//
// busybox has no iperf3, so the sending guest times `dd if=/dev/zero bs=64k count=N | nc PEER 5001`
// against the receiver's `nc -l -p 5001 > /dev/null`. busybox nc shuts its write side down at the end
// of its input and exits when the receiver closes, so the time includes the last byte's delivery, not
// just its hand-over to the socket. The clock is the guest's /proc/uptime (centiseconds: busybox's date
// has no %N); each run lasts about `seconds` (the first, short, run only sizes N and is left out), and
// the figure is the median of the runs, with their spread.
//
// netplane runs in this process, so its CPU time (user + system, process.cpuUsage) over the timed runs
// divided by the megabytes moved is its cost per MB: on a machine whose cores are shared by two TCG
// guests and the switch, CPU per frame is what decides the throughput.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Switch } from '../src/index.js';
import { StreamTransport } from '../src/transports/stream.js';
import { UdpTransport } from '../src/transports/udp.js';
import { median } from './harness.js';

export const GUEST = process.env.NETPLANE_GUEST_DIR ?? '/tmp/np-guest';
const QEMU = 'qemu-system-x86_64';

export function qemuMissing(): string | undefined {
  if (spawnSync(QEMU, ['--version']).status !== 0) return `the QEMU case needs ${QEMU} (apt-get install qemu-system-x86)`;
  if (!existsSync(join(GUEST, 'vmlinuz'))) return `the QEMU case needs the test guest in ${GUEST}: bash scripts/build-test-guest.sh ${GUEST}`;
  return undefined;
}

export interface PathResult {
  mbps: number;              // median of the timed runs, Mbit/s
  runs: number[];            // each timed run, Mbit/s, in round order
  ofDirect?: number[];       // each round's run over this path / the same round's run over QEMU direct
  mbMoved: number;           // megabytes over the timed runs
  netplaneCpuMsPerMB?: number;
}

interface Guest { proc: ChildProcess; screen: () => string; seen: (re: RegExp, ms: number) => Promise<void> }

// A path between the two guests: a NIC in each, on its own subnet (10.0.<index>.0/24).
interface Path { name: string; netplane: boolean; rx: string; tx: string }

function boot(name: string, cmd: string, nics: string[], macBase: number): Guest {
  const nicArgs = nics.flatMap((netdev, i) => ['-device', `virtio-net-pci,netdev=n${i},mac=02:00:00:00:${macBase.toString(16)}:${(i + 1).toString(16).padStart(2, '0')},romfile=`, '-netdev', `${netdev},id=n${i}`]);
  const proc = spawn(QEMU, ['-accel', 'tcg', '-m', '256', '-nographic', '-no-reboot', '-name', name,
    '-kernel', join(GUEST, 'vmlinuz'), '-initrd', join(GUEST, 'initrd.cpio.gz'),
    '-append', `console=ttyS0 quiet np.cmd=${Buffer.from(cmd).toString('base64')}`, ...nicArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  proc.stdout!.on('data', (d) => (text += d));
  proc.stderr!.on('data', (d) => (text += d));
  const seen = (re: RegExp, ms: number) => new Promise<void>((ok, fail) => {
    const done = () => { clearTimeout(t); proc.stdout!.off('data', check); proc.off('exit', gone); };
    const check = () => { if (re.test(text)) { done(); ok(); } };
    const gone = () => { done(); fail(new Error(`${name} exited before printing ${re}: ${text.slice(-2000)}`)); };
    const t = setTimeout(() => { done(); fail(new Error(`${name} did not print ${re} in ${ms} ms: ${text.slice(-2000)}`)); }, ms);
    proc.stdout!.on('data', check);
    proc.on('exit', gone);
    check();
  });
  return { proc, screen: () => text, seen };
}

// Boots the receiving guest, then the sending one once the receiver listens. The sender sizes N with
// one short run on the last path, then runs `rounds` rounds, each path once a round in an order that
// turns each round, so load from elsewhere on the machine falls on every path alike.
async function transfer(paths: Path[], seconds: number, rounds: number): Promise<Record<string, PathResult>> {
  const addrs = (host: number) => paths.map((_, i) => `ip link set eth${i} up; ip addr add 10.0.${i}.${host}/24 dev eth${i}`).join('; ');
  const receiver = `${addrs(2)}; while :; do nc -l -p 5001 > /dev/null; done`;
  const last = paths.length - 1;
  const sender = [
    addrs(1),
    ...paths.map((_, i) => `k=0; until ping -c 1 -W 1 10.0.${i}.2 >/dev/null 2>&1; do k=$((k+1)); [ $k -gt 60 ] && exit 3; done`),
    'up() { cut -d" " -f1 /proc/uptime | tr -d .; }',
    'run() { echo "NPGUEST START $1 $2"; t0=$(up); dd if=/dev/zero bs=64k count=$3 2>/dev/null | nc 10.0.$2.2 5001; t1=$(up); echo "NPGUEST RUN $1 $2 $(($3*65536)) $((t1-t0))"; sleep 1; }',
    `n=256; t0=$(up); dd if=/dev/zero bs=64k count=$n 2>/dev/null | nc 10.0.${last}.2 5001; t1=$(up); d=$((t1-t0)); [ $d -lt 1 ] && d=1; n=$((n*${seconds * 100}/d))`,
    'sleep 1',
    `r=0; while [ $r -lt ${rounds} ]; do`,
    `  j=0; while [ $j -lt ${paths.length} ]; do run $r $(((r+j)%${paths.length})) $n; j=$((j+1)); done`,
    '  r=$((r+1))',
    'done',
  ].join('\n');
  const a = boot('np-bench-rx', receiver, paths.map((p) => p.rx), 0xb2);
  let b: Guest | undefined;
  try {
    await a.seen(/NPGUEST READY/, 120_000);
    b = boot('np-bench-tx', sender, paths.map((p) => p.tx), 0xb1);
    // netplane's CPU time over each of its runs: sampled at the sender's START and RUN lines.
    const cpuMs: number[] = paths.map(() => 0);
    let at: { path: number; cpu: NodeJS.CpuUsage } | undefined;
    let line = '';
    b.proc.stdout!.on('data', (d) => {
      line += d;
      let k;
      while ((k = line.indexOf('\n')) >= 0) {
        const l = line.slice(0, k);
        line = line.slice(k + 1);
        const m = /NPGUEST (START|RUN) \d+ (\d+)/.exec(l);
        if (!m) continue;
        if (m[1] === 'START') at = { path: Number(m[2]), cpu: process.cpuUsage() };
        else if (at) { const c = process.cpuUsage(at.cpu); cpuMs[at.path] += (c.user + c.system) / 1000; at = undefined; }
      }
    });
    await b.seen(/NPGUEST DONE/, rounds * paths.length * (seconds * 4 + 5) * 1000 + 180_000);
    if (process.env.NPB_DEBUG) console.log(b.screen());
    const out: Record<string, PathResult> = {};
    paths.forEach((p, i) => {
      const runs: number[] = [];
      let bytes = 0;
      for (const m of b!.screen().matchAll(/NPGUEST RUN \d+ (\d+) (\d+) (\d+)/g)) {
        if (Number(m[1]) !== i) continue;
        bytes += Number(m[2]);
        runs.push((Number(m[2]) * 8) / (Number(m[3]) / 100) / 1e6);
      }
      if (runs.length !== rounds) throw new Error(`the sender did not finish its runs on ${p.name}: ${b!.screen().slice(-2000)}`);
      const mbMoved = bytes / 1e6;
      out[p.name] = { mbps: median(runs), runs, mbMoved, ...(p.netplane ? { netplaneCpuMsPerMB: cpuMs[i] / mbMoved } : {}) };
    });
    if (!/NPGUEST DONE rc=0/.test(b.screen())) throw new Error(`the sender failed: ${b.screen().slice(-2000)}`);
    // The machine's load drifts between rounds; within a round the paths ran back to back, so the
    // ratio to the reference is taken round by round.
    const ref = paths.find((p) => !p.netplane);
    if (ref) for (const p of paths) if (p.netplane) out[p.name].ofDirect = out[p.name].runs.map((x, r) => x / out[ref.name].runs[r]);
    return out;
  } finally {
    a.proc.kill('SIGKILL');
    b?.proc.kill('SIGKILL');
  }
}

const freeUdp = (): Promise<number> => new Promise((ok) => {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); });
});

// The same two guests with three NICs each: netplane with both guests on unix stream sockets,
// netplane with both on UDP datagrams (each pair on its own switch network), and QEMU direct (stream
// over a unix socket, the receiver's QEMU listening).
export async function qemuCases(seconds: number, rounds: number, log: (line: string) => void): Promise<Record<string, PathResult>> {
  const dir = mkdtempSync(join(tmpdir(), 'npb-qemu-'));
  const sw = new Switch({ maxPorts: 8 });
  const opened: Array<{ close(): Promise<void> }> = [];
  try {
    const sa = sw.addPort({ network: 1 }), sb = sw.addPort({ network: 1 });
    const ua = sw.addPort({ network: 2 }), ub = sw.addPort({ network: 2 });
    const sock = (n: string) => join(dir, `${n}.sock`);
    opened.push(await StreamTransport.listen(sw, sa.id, { unix: sock('a') }), await StreamTransport.listen(sw, sb.id, { unix: sock('b') }));
    const uta = await UdpTransport.open(sw, ua.id, { bind: { port: 0 } }), utb = await UdpTransport.open(sw, ub.id, { bind: { port: 0 } });
    opened.push(uta, utb);
    const dgram = (local: number, remote: number) => `dgram,local.type=inet,local.host=127.0.0.1,local.port=${local},remote.type=inet,remote.host=127.0.0.1,remote.port=${remote}`;
    const paths: Path[] = [
      { name: 'netplane (stream, unix)', netplane: true, rx: `stream,server=off,addr.type=unix,addr.path=${sock('a')}`, tx: `stream,server=off,addr.type=unix,addr.path=${sock('b')}` },
      { name: 'netplane (dgram, UDP)', netplane: true, rx: dgram(await freeUdp(), uta.address().port), tx: dgram(await freeUdp(), utb.address().port) },
      { name: 'QEMU direct (stream, unix)', netplane: false, rx: `stream,server=on,addr.type=unix,addr.path=${sock('direct')}`, tx: `stream,server=off,addr.type=unix,addr.path=${sock('direct')}` },
    ];
    const out = await transfer(paths, seconds, rounds);
    // What was lost on the way, if anything: a drop in the switch or a frame a transport could not hand
    // on shows up in the guests' TCP as a retransmission, and here.
    const drops = Object.entries(sw.counters().drops).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`);
    const lost = opened.map((t) => (t as unknown as { stats: { txDropped: number; rxRefused: number } }).stats).map((st, i) => `${['stream a', 'stream b', 'udp a', 'udp b'][i]}: txDropped ${st.txDropped} rxRefused ${st.rxRefused}`);
    log(`  netplane drops: ${drops.join(', ') || 'none'}; ${lost.join('; ')}`);
    for (const [name, r] of Object.entries(out)) {
      log(`  ${name.padEnd(30)} ${r.mbps.toFixed(0).padStart(5)} Mbit/s  (runs ${r.runs.map((x) => x.toFixed(0)).join(' ')})${r.netplaneCpuMsPerMB !== undefined ? `  netplane CPU ${r.netplaneCpuMsPerMB.toFixed(2)} ms/MB` : ''}`);
    }
    return out;
  } finally {
    for (const t of opened) await t.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
