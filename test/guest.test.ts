// What `npm start` gives a real VM, end to end: the daemon on its embedded default configuration (the
// NAT network "nat", the socket uplink, DHCP and DNS on the gateway), run as an unprivileged user
// (nobody) so that nothing of it can lean on root, and the tiny test guest (scripts/build-test-guest.sh:
// Debian's kernel and busybox) started with the -netdev/-device line `endpoint get` prints and no
// address of its own. The guest must get its address by DHCP, resolve its own endpoint name through
// the gateway, fetch a file from a service on the host's loopback (the gateway address is the host,
// as slirp's 10.0.2.2 and passt's gateway), and serve a connection that arrives on a forwarded host
// port. The VM runs once, in the release pass; without QEMU or the guest it fails in CI (where
// scripts/install-test-deps.sh provides both) and elsewhere says in its name that it did not run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, existsSync, chmodSync, rmSync, cpSync, mkdirSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { createServer as httpServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/netplane.js');
const GUEST = process.env.NETPLANE_GUEST_DIR ?? '/tmp/np-guest';
const QEMU = 'qemu-system-x86_64';
const haveGuest = existsSync(join(GUEST, 'vmlinuz')) && spawnSync(QEMU, ['--version']).status === 0;
const vmRuns = process.env.NETPLANE_BUILD !== 'debug' && (haveGuest || !!process.env.CI);
const NOBODY = 65534;

const freeTcp = () => new Promise<number>((ok) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => ok(p)); }); });

function cli(args: string[], dir: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((ok) => execFile(process.execPath, [bin, ...args, '--state-dir', dir], { cwd: root }, (e, out, err) => ok({ code: e ? (e as { code?: number }).code ?? 1 : 0, out, err })));
}

test(`npm start's default network: a VM with no address of its own gets DHCP, resolves its name, reaches the host and is reachable on a forwarded port, the daemon not root${vmRuns ? '' : process.env.NETPLANE_BUILD === 'debug' ? ' (runs in the release pass)' : ` (NOT RUN: needs QEMU and the guest in ${GUEST}: sudo bash scripts/install-test-deps.sh)`}`, async () => {
  if (!vmRuns) return;
  if (!haveGuest) assert.unreachable(`QEMU (${QEMU}) or the test guest (${GUEST}/vmlinuz) is missing; CI must provide them: bash scripts/install-test-deps.sh`);
  // A state directory nobody may write; the daemon runs as nobody, with no capabilities at all.
  const base = mkdtempSync(join(tmpdir(), 'netplane-guest-'));
  chmodSync(base, 0o755);
  const dir = join(base, 'state');
  // What nobody runs: a copy of the built package (its command, bundle, modules and runtime
  // dependency), since the checkout may sit below a directory only root may enter (CI's mktemp, /root).
  const pkg = join(base, 'netplane');
  for (const part of ['package.json', 'bin', 'build/dist', 'build/netplane.release.wasm', 'build/netplane.debug.wasm', 'node_modules/ws']) {
    mkdirSync(join(pkg, part, '..'), { recursive: true });
    cpSync(join(root, part), join(pkg, part), { recursive: true });
  }
  spawnSync('install', ['-d', '-o', String(NOBODY), '-g', String(NOBODY), '-m', '0700', dir]);
  // The host's service the guest fetches from, on loopback only.
  const file = randomBytes(256 * 1024);
  const web = httpServer((_, res) => { res.end(file); });
  await new Promise<void>((ok) => web.listen(0, '127.0.0.1', ok));
  const webPort = (web.address() as { port: number }).port;
  const forwarded = await freeTcp();
  let daemon: ChildProcess | undefined;
  let vm: ChildProcess | undefined;
  try {
    daemon = spawn('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--inh-caps=-all', '--bounding-set=-all',
      process.execPath, join(pkg, 'bin/netplane.js'), 'serve', '--state-dir', dir, '--port', '0'], { cwd: pkg, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    await new Promise<void>((ok, fail) => {
      const t = setTimeout(() => fail(new Error(`no banner: ${text}`)), 20000);
      daemon!.stdout!.on('data', (d) => { text += d; if (/stop with Ctrl-C/.test(text)) { clearTimeout(t); ok(); } });
      daemon!.stderr!.on('data', (d) => (text += d));
      daemon!.on('exit', (c) => { clearTimeout(t); fail(new Error(`serve exited ${c}: ${text}`)); });
    });
    const ep = { ID: 'vm1', HostComputeNetwork: 'nat', Transport: { Type: 'stream', Listen: 'unix:vm1.sock' },
      Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 8080, ExternalPort: forwarded } }] };
    const made = await cli(['endpoint', 'create', JSON.stringify(ep), '--json'], dir);
    assert.is(made.code, 0, made.err);
    const ip = JSON.parse(made.out).IpConfigurations[0].IpAddress as string;
    const get = await cli(['endpoint', 'get', 'vm1'], dir);
    const line = get.out.split('\n').find((l) => /^-netdev stream,/.test(l));
    assert.ok(line, get.out);
    assert.match(line!, /mac=/, 'the line carries the endpoint\'s MAC, so the lease is the endpoint\'s');

    const script = [
      'udhcpc -i eth0 -O mtu -n -q -t 5 -T 2 || exit 11',
      'nslookup vm1.netplane.internal || exit 12',
      `wget -q -O /tmp/f http://172.20.0.1:${webPort}/ || exit 13`,
      'echo "NPGUEST MD5 $(md5sum /tmp/f)"',
      'echo NPGUEST LISTEN',
      'echo guest-says-hello | nc -l -p 8080 || exit 14',
    ].join('; ');
    const args = line!.split(' ').map((a) => a.startsWith('virtio-net-pci,') ? `${a},romfile=` : a);
    vm = spawn(QEMU, ['-accel', 'tcg', '-m', '256', '-nographic', '-no-reboot', '-kernel', join(GUEST, 'vmlinuz'), '-initrd', join(GUEST, 'initrd.cpio.gz'),
      '-append', `console=ttyS0 quiet np.cmd=${Buffer.from(script).toString('base64')}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let screen = '';
    const seen = (re: RegExp, ms: number) => new Promise<void>((ok, fail) => {
      const check = () => { if (re.test(screen)) { clearTimeout(t); vm!.stdout!.off('data', check); ok(); } };
      const t = setTimeout(() => fail(new Error(`the guest did not print ${re}: ${screen.slice(-3000)}`)), ms);
      vm!.stdout!.on('data', check);
      check();
    });
    vm.stdout!.on('data', (c) => (screen += c));
    vm.stderr!.on('data', (c) => (screen += c));
    await seen(/NPGUEST LISTEN|NPGUEST DONE/, 120_000);
    assert.match(screen, new RegExp(`NPGUEST DHCP ${ip.replace(/\./g, '\\.')}/24 router=172\\.20\\.0\\.1 dns=172\\.20\\.0\\.1`), `the static lease of vm1 by DHCP: ${screen.slice(-3000)}`);
    assert.match(screen, new RegExp(`Address:? *(1: )?${ip.replace(/\./g, '\\.')}`), `vm1.netplane.internal resolves to its address: ${screen.slice(-3000)}`);
    assert.match(screen, new RegExp(`NPGUEST MD5 ${createHash('md5').update(file).digest('hex')}`), `the host's file arrives whole: ${screen.slice(-3000)}`);
    // The forwarded port: a connection to the host's 127.0.0.1 reaches the guest's nc.
    const answer = await new Promise<string>((ok, fail) => {
      // One attempt at a time: 'close' follows 'error', so only 'close' tries again (both did once, and
      // every failed attempt started two more: thousands of connects a second by the twentieth).
      const tryOnce = (left: number) => {
        let got = '';
        let err: Error | undefined;
        const c = connect(forwarded, '127.0.0.1');
        c.on('data', (d) => { got += d; if (got.includes('\n')) { c.end(); ok(got); } });
        c.on('error', (e) => { err = e; });
        c.on('close', () => {
          if (got.includes('\n')) return;
          if (left > 0) setTimeout(() => tryOnce(left - 1), 500);
          else fail(err ?? new Error(`no answer on the forwarded port: ${JSON.stringify(got)}`));
        });
      };
      tryOnce(20);
    });
    assert.is(answer.trim(), 'guest-says-hello');
    await seen(/NPGUEST DONE rc=0/, 60_000);
    const uid = spawnSync('ps', ['-o', 'uid=', '-p', String(daemon.pid)]).stdout.toString().trim();
    assert.is(uid, String(NOBODY), 'the daemon ran as nobody');
  } finally {
    vm?.kill('SIGKILL');
    daemon?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    await new Promise<void>((ok) => (web as Server).close(() => ok()));
    rmSync(base, { recursive: true, force: true });
  }
});

test.run();
