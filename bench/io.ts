// Frame I/O suite: packets per second through one UDP transport pair, as QEMU's `-netdev dgram` or
// socat would drive it. The switch and its two UDP transports run in this process; a child process
// sends 64-byte frames as fast as it can to transport A and counts what arrives from transport B
// (the switch forwards A -> B by a learned MAC). Reported: frames/s delivered end to end, and the share
// of the sent frames that arrived (the rest were dropped by the kernel's socket buffers).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Switch, UdpTransport } from '../src/index.js';
import { quick, record, type BenchRecord } from './harness.js';

export async function ioSuite(): Promise<BenchRecord[]> {
  console.log('Frame I/O: one UDP transport in, one out, 64-byte frames');
  const sw = new Switch({ build: 'release', maxPorts: 4 });
  const a = sw.addPort(), b = sw.addPort();
  const ta = await UdpTransport.open(sw, a.id, { bind: { port: 0 }, maxQueued: 4096 });
  const tb = await UdpTransport.open(sw, b.id, { bind: { port: 0 }, maxQueued: 4096 });
  const seconds = quick ? 1 : 3;
  const child = fork(fileURLToPath(new URL('./io-peer.mjs', import.meta.url)), [String(ta.address().port), String(tb.address().port), String(seconds)]);
  const result = await new Promise<{ sent: number; received: number; ms: number }>((ok) => child.on('message', (m) => ok(m as never)));
  await ta.close();
  await tb.close();
  const pps = result.received / (result.ms / 1000);
  console.log(`  ${'udp transport, 64-byte frames'.padEnd(44)} ${(pps / 1e6).toFixed(3).padStart(7)} Mpps  (${((100 * result.received) / result.sent).toFixed(0)} % of ${result.sent} sent)`);
  return [record('udp-transport-64', 'Mpps', pps / 1e6, 1, 'transport pair', undefined, { sent: result.sent, received: result.received })];
}
