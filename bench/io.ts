// Frame I/O suite: packets per second through one UDP transport pair, as QEMU's `-netdev dgram` or
// socat would drive it. The switch and its two UDP transports run in this process; a child process
// sends 64-byte frames as fast as it can to transport A and counts what arrives from transport B
// (the switch forwards A -> B by a learned MAC). Reported: frames/s delivered end to end, and the share
// of the sent frames that arrived (the rest were dropped by the kernel's socket buffers).
//
// Then the stream transport as two QEMU guests' `-netdev stream` drive it (bench/io-stream-peer.mjs):
// 1514-byte frames one way and a small frame back for every two, paced at the rate two TCG guests
// reach (three frames a millisecond) and flooding. Reported with the frame rate: this process's CPU
// time per MB delivered (user + system, all its threads), which is what the switch takes from the
// guests on a shared machine, and the frames per flush (how much each event-loop turn batches).
//
// Then the WebSocket transport towards one client (bench/io-ws-peer.mjs, a child process, as a browser
// VM would be): the switch floods 1514-byte frames from a host port to it in deliveries of 64, as fast
// as the client's socket drains (the next delivery waits for the event loop's next turn). Reported:
// frames/s the client got and this process's CPU time per MB.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Switch, UdpTransport, StreamTransport, WebSocketTransport } from '../src/index.js';
import { quick, record, type BenchRecord, type Suite } from './harness.js';

const seconds = quick ? 1 : 3;

export const ioSuite: Suite = {
  title: 'Frame I/O: one UDP transport in, one out, 64-byte frames; the stream transport as QEMU guests drive it',
  cases: () => [udpCase, () => streamCase('3', seconds), () => streamCase('flood', seconds), () => webSocketCase(seconds)],
};

async function udpCase(): Promise<BenchRecord> {
  const sw = new Switch({ build: 'release', maxPorts: 4 });
  const a = sw.addPort(), b = sw.addPort();
  const ta = await UdpTransport.open(sw, a.id, { bind: { port: 0 }, maxQueued: 4096 });
  const tb = await UdpTransport.open(sw, b.id, { bind: { port: 0 }, maxQueued: 4096 });
  const child = fork(fileURLToPath(new URL('./io-peer.mjs', import.meta.url)), [String(ta.address().port), String(tb.address().port), String(seconds)]);
  const result = await new Promise<{ sent: number; received: number; ms: number }>((ok) => child.on('message', (m) => ok(m as never)));
  await ta.close();
  await tb.close();
  const pps = result.received / (result.ms / 1000);
  console.log(`  ${'udp transport, 64-byte frames'.padEnd(44)} ${(pps / 1e6).toFixed(3).padStart(7)} Mpps  (${((100 * result.received) / result.sent).toFixed(0)} % of ${result.sent} sent)`);
  return record('udp-transport-64', 'Mpps', pps / 1e6, 1, 'transport pair', undefined, { sent: result.sent, received: result.received });
}

async function streamCase(mode: string, seconds: number): Promise<BenchRecord> {
  const dir = mkdtempSync(join(tmpdir(), 'npb-io-'));
  const sw = new Switch({ build: 'release', maxPorts: 4 });
  const a = sw.addPort(), b = sw.addPort();
  const ta = await StreamTransport.listen(sw, a.id, { unix: join(dir, 'a') });
  const tb = await StreamTransport.listen(sw, b.id, { unix: join(dir, 'b') });
  let flushes = 0, frames = 0;
  const flush = sw.flush.bind(sw);
  sw.flush = (now?: number) => { flushes++; frames += sw.pendingFrames; return flush(now); };
  const child = fork(fileURLToPath(new URL('./io-stream-peer.mjs', import.meta.url)), [join(dir, 'a'), join(dir, 'b'), String(seconds), mode]);
  const message = () => new Promise<Record<string, number>>((ok) => child.once('message', (m) => ok(m as never)));
  await message();
  flushes = frames = 0;
  const cpu0 = process.cpuUsage();
  child.send('go');
  const r = await message();
  const cpu = process.cpuUsage(cpu0);
  await ta.close();
  await tb.close();
  rmSync(dir, { recursive: true, force: true });
  const mb = r.bytes / 1e6, cpuMsPerMB = (cpu.user + cpu.system) / 1000 / mb;
  const pps = r.frames / (r.ms / 1000);
  const name = mode === 'flood' ? 'stream transport, 1514-byte frames, flooding' : `stream transport, 1514-byte frames, ${mode} a ms`;
  console.log(`  ${name.padEnd(44)} ${(pps / 1e6).toFixed(3).padStart(7)} Mpps  ${((r.bytes * 8) / (r.ms / 1000) / 1e6).toFixed(0)} Mbit/s, netplane CPU ${cpuMsPerMB.toFixed(1)} ms/MB, ${(frames / Math.max(1, flushes)).toFixed(1)} frames a flush`);
  return record(mode === 'flood' ? 'stream-transport-1514-flood' : 'stream-transport-1514-paced', 'Mpps', pps / 1e6, 1, 'transport pair', undefined,
    { cpuMsPerMB: Math.round(cpuMsPerMB * 100) / 100, framesPerFlush: Math.round((frames / Math.max(1, flushes)) * 10) / 10, sent: r.sent, received: r.frames });
}

async function webSocketCase(seconds: number): Promise<BenchRecord> {
  const sw = new Switch({ build: 'release', maxPorts: 4 });
  const host = sw.addPort(), vm = sw.addPort();
  const t = await WebSocketTransport.listen(sw, vm.id, { port: 0, maxBufferedBytes: 4 << 20 });
  const child = fork(fileURLToPath(new URL('./io-ws-peer.mjs', import.meta.url)), [`ws://127.0.0.1:${t.address().port}`]);
  const message = () => new Promise<Record<string, number>>((ok) => child.once('message', (m) => ok(m as never)));
  await message();
  // A broadcast frame from the host port: the switch floods it to the client's port (the only other).
  const frame = new Uint8Array(1514);
  frame.fill(0xff, 0, 6); frame.set([2, 0, 0, 0, 0, 0x0a], 6); frame.set([0x88, 0xb5], 12);
  const cpu0 = process.cpuUsage();
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    for (let i = 0; i < 64; i++) host.send(frame);
    sw.flush();
    await new Promise((r) => setImmediate(r));
  }
  const cpu = process.cpuUsage(cpu0);
  child.send('report');
  const r = await message();
  const dropped = t.stats.txDropped;
  await t.close();
  const pps = r.frames / (r.ms / 1000), cpuMsPerMB = (cpu.user + cpu.system) / 1000 / (r.bytes / 1e6);
  console.log(`  ${'websocket transport, 1514-byte frames'.padEnd(44)} ${(pps / 1e6).toFixed(3).padStart(7)} Mpps  ${((r.bytes * 8) / (r.ms / 1000) / 1e6).toFixed(0)} Mbit/s, netplane CPU ${cpuMsPerMB.toFixed(1)} ms/MB, ${dropped} dropped (socket full)`);
  return record('websocket-transport-1514', 'Mpps', pps / 1e6, 1, 'transport and client', undefined,
    { cpuMsPerMB: Math.round(cpuMsPerMB * 100) / 100, received: r.frames, dropped });
}
