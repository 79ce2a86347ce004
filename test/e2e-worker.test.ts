// The dataplane off the I/O thread, on real hosts: two namespaces whose TAPs an I/O worker
// (src/worker/io.ts) reads and writes on its own thread while the switch runs on this one, frames
// crossing in SharedArrayBuffer rings. Ping, a 20 MB TCP transfer byte for byte, the counters of
// both threads, and a detached TAP gone with its descriptor. Needs root and /dev/net/tun (fails
// loudly without), and the native TAP helper (CI builds it).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Switch } from '../src/index.js';
import { requirements, eventually, workerHost, nativeOr, exec, background, teardown } from './e2e/netns.js';

const missing = requirements();
const work = mkdtempSync(join(tmpdir(), 'netplane-e2e-worker-'));
const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.after(async () => {
  await teardown();
  rmSync(work, { recursive: true, force: true });
});

test('the requirements are there: root, /dev/net/tun, ip, socat, ping', () => {
  if (missing) assert.unreachable(`${missing}; ${process.env.CI ? 'CI must install them' : 'run the tests as root with them installed'}`);
});

test('the dataplane off the I/O thread: two hosts on TAPs served by an I/O worker ping and move 20 MB over TCP, byte for byte', async () => {
  if (missing) return;
  if (!nativeOr('the I/O worker test did not run')) return;
  const sw = new Switch({ maxPorts: 4 });
  const p = sw.addPort(), q = sw.addPort();
  const x = await workerHost(sw, p.id, 'wx', { mac: '02:00:00:00:0f:01', address: '10.67.0.1/24' });
  const y = await workerHost(sw, q.id, 'wy', { mac: '02:00:00:00:0f:02', address: '10.67.0.2/24' });
  assert.is(x.io, y.io, 'one I/O thread serves both TAPs');
  const ping = await exec(x.ns, 'ping -c 3 -i 0.2 -W 2 10.67.0.2');
  assert.match(ping.out, /3 received/, ping.out + ping.err);
  const size = 20 * 1024 * 1024;
  const data = join(work, 'wdata'), recv = join(work, 'wrecv');
  writeFileSync(data, randomBytes(size));
  background(y.ns, `socat -u TCP-LISTEN:5003,reuseaddr OPEN:${recv},creat,trunc`);
  await wait(300);
  const send = await exec(x.ns, `socat -u OPEN:${data} TCP:10.67.0.2:5003,retry=20,interval=0.2`, 60000);
  assert.is(send.code, 0, send.err);
  await eventually(() => existsSync(recv) && readFileSync(recv).length === size, 20000);
  assert.is(sha(recv), sha(data));
  // The frames went through the worker's rings: read there, switched here, written there.
  // (Fewer than 20 MB / 1500 bytes where the helper has offloads: the TAPs carry 64 KiB segments.)
  assert.ok(x.tap.stats.rxFrames > 300 && y.tap.stats.txFrames > 300, `${x.tap.stats.rxFrames} ${y.tap.stats.txFrames}`);
  assert.ok(x.tap.deviceCounters.read >= x.tap.stats.rxFrames);
  assert.ok(y.tap.deviceCounters.written > 300);
  assert.is(x.tap.deviceCounters.readRefused, 0);
  // With the helper's offloads the port takes super-frames: fewer frames than 1448-byte segments.
  if (x.tap.caps) assert.ok(x.tap.stats.rxFrames < size / 1448, `${x.tap.stats.rxFrames} frames for ${size} bytes`);
  assert.is(x.io.ringDrops.rx + x.io.ringDrops.tx, 0, 'nothing dropped at the rings');
  assert.ok(q.counters().txPackets >= y.tap.stats.txFrames);
  // Detaching one TAP closes its descriptor in the worker: the device is gone with it.
  await y.tap.close();
  const gone = await exec(y.ns, `ip link show ${y.dev}`);
  assert.is.not(gone.code, 0, 'the TAP device went away with its last descriptor');
});

test.run();
