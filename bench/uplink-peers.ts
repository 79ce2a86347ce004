// What bench:e2e's egress cases (bench/e2e.ts) and the drive that profiles them one at a time
// (bench/uplink-drive.ts) both set up, so the two measure the same thing: netplane's switch with the
// socket uplink, passt and pasta started the same way, and the CPU of this process's threads.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Switch } from '../src/index.js';
import { SocketUplink } from '../src/uplink/index.js';
import type { TcpEngineOptions } from '../src/uplink/tcp.js';
import { sh } from '../test/e2e/netns.js';

// A switch with the guest's port behind gateway 10.0.2.2 and the socket uplink as its default route
// (the gateway reaches the host's loopback).
export function uplinkSwitch(tcpOptions?: TcpEngineOptions, mtu?: number) {
  const sw = new Switch({ maxPorts: 8 });
  const guest = sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ id: 0, network: 2, address: '10.0.2.2/24', ...(mtu ? { mtu } : {}) });
  rt.addInterface({ id: 1, network: 5, address: '100.64.0.1/24', mtu: 65535 });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1 });
  return { sw, guest, up: SocketUplink.attach(sw, { interface: 1, host: [0], tcpOptions }) };
}

// Debian's passt (0.0~git20230309) starts passt.avx2 where the CPU has AVX2, and that build segfaults
// on its first TCP connection here; a copy of the generic binary named `name` (passt or pasta: the
// name decides the mode), away from its .avx2 sibling, runs the generic code.
function passtCopy(dir: string, name: 'passt' | 'pasta'): string {
  const bin = join(dir, name);
  sh(['cp', sh(['sh', '-c', 'command -v passt']).trim(), bin]);
  return bin;
}

// The host's default IPv4 gateway and the address of its interface: what passt and pasta hand the
// guest, their gateway mapped to the host's loopback.
export function hostDefault(): { gateway: string; address: string } {
  const route = sh(['ip', '-4', 'route', 'show', 'default']);
  const gateway = /via (\S+)/.exec(route)?.[1];
  const address = /inet (\S+)/.exec(sh(['ip', '-4', 'addr', 'show', 'dev', /dev (\S+)/.exec(route)?.[1] ?? 'lo']))?.[1];
  if (!gateway || !address) throw new Error('passt and pasta need the host to have a default IPv4 route');
  return { gateway, address };
}

// passt listening on the unix socket `socket` in `dir`, once the socket is there. passt drops to
// nobody: the directory must let it in. -f: in the foreground (killed at the end).
export async function startPasst(dir: string, socket: string): Promise<ChildProcess> {
  sh(['chmod', '0777', dir]);
  const p = spawn(passtCopy(dir, 'passt'), ['-f', '-q', '-s', socket], { stdio: 'ignore', detached: true });
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
  return p;
}

// pasta with its own TAP (MTU 65520) in namespace ns, once it has set the default route there. Root
// would make it drop to nobody before joining the namespace (and fail): --runas 0:0.
export async function startPasta(dir: string, ns: string, gateway: string): Promise<ChildProcess> {
  const p = spawn(passtCopy(dir, 'pasta'), ['-q', '-f', '--runas', '0:0', '--config-net', '--netns', ns], { stdio: 'ignore', detached: true });
  for (let i = 0; i < 100; i++) {
    try { if (sh(['ip', '-4', 'route', 'show', 'default'], { ns }).includes(gateway)) break; } catch { /* not made yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  return p;
}

// CPU milliseconds (user + system) of this process's threads by name, from /proc: the main thread
// (the switch's) and the others (the I/O worker's, libuv's pool, V8's helpers).
export function threadCpu(): Map<string, number> {
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

// The threads' CPU milliseconds since `before`, at least `least` each, largest first.
export function threadCpuSince(before: Map<string, number>, least: number): Array<readonly [string, number]> {
  return [...threadCpu()].map(([n, v]) => [n, v - (before.get(n) ?? 0)] as const).filter(([, v]) => v >= least).sort((x, y) => y[1] - x[1]);
}
