// A real etcd for the cluster tests and the convergence bench: its own data directory and free
// loopback ports, stopped (SIGSTOP), resumed, killed and restarted on the same data at will, and
// killed when the process exits. Without the etcd binary: undefined from etcdMissing()'s check, so a
// suite can say why; under CI=true the caller fails instead (scripts/install-test-deps.sh installs it).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function etcdMissing(): string | undefined {
  try { execFileSync('sh', ['-c', 'command -v etcd'], { stdio: 'ignore' }); } catch { return 'the cluster tests need etcd (apt-get install etcd-server etcd-client; scripts/install-test-deps.sh)'; }
  return undefined;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', () => ok()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

const running = new Set<ChildProcess>();
process.on('exit', () => { for (const p of running) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

export class Etcd {
  private proc?: ChildProcess;
  private log = '';
  private constructor(readonly dir: string, readonly clientPort: number, readonly peerPort: number) {}
  get url(): string { return `http://127.0.0.1:${this.clientPort}`; }

  static async start(): Promise<Etcd> {
    const e = new Etcd(mkdtempSync(join(tmpdir(), 'np-etcd-')), await freePort(), await freePort());
    await e.run();
    return e;
  }

  private async run(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const p = spawn('etcd', ['--name', 'np', '--data-dir', join(this.dir, 'data'), '--listen-client-urls', this.url, '--advertise-client-urls', this.url,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `np=${peer}`, '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    running.add(p);
    p.on('exit', () => running.delete(p));
    p.stdout!.on('data', (d) => { this.log = (this.log + d).slice(-4000); });
    p.stderr!.on('data', (d) => { this.log = (this.log + d).slice(-4000); });
    const t = Date.now();
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`etcd exited (${p.exitCode ?? p.signalCode}): ${this.log}`);
      try {
        const r = await fetch(`${this.url}/health`);
        if (r.ok && ((await r.json()) as { health?: string }).health === 'true') return;
      } catch { /* not yet */ }
      if (Date.now() - t > 20000) throw new Error(`etcd did not become healthy in 20 s: ${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  pause(): void { this.proc?.kill('SIGSTOP'); }
  resume(): void { this.proc?.kill('SIGCONT'); }

  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGCONT');
    p.kill('SIGKILL');
    await new Promise((ok) => p.once('exit', ok));
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.run();
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
