// The socket uplink's download path in one process, without the kernel: CPU per byte of what netplane
// itself does for host -> guest TCP (the TCP engine, the uplink's injection, the switch), which the
// end-to-end bench (bench:e2e -- --uplinks) cannot separate from the kernel, iperf3 and the client on a
// busy machine. A gateway service of the uplink (`services`, the engine's in-memory host side) writes
// `--mb` MB in 64 KiB chunks to a guest written here, on a plain switch port: it checks that each
// segment is the next in order, and ACKs once per delivered batch or every 8 segments (Linux's guest
// ACKs about one in several with GRO), advertising 4 MiB. Prints MB/s and CPU ms per 100 MB.
//   node --import tsx bench/uplink-loop.ts [--mb 200] [--1460] [--verify]
// --1460: one MSS per packet even where the switch has offloads (the engine's path before super-
// segments). --verify: the guest also checks every TCP checksum (costs the guest's time, not netplane's).
// Run it under `node --cpu-prof` to see where the time goes.
import type { Duplex } from 'node:stream';
import { Switch } from '../src/index.js';
import { SocketUplink } from '../src/uplink/index.js';
import { Pump } from '../src/transports/pump.js';
import { ethernet, ipv4, tcp, onesComplementSum } from '../src/frames.js';

const args = process.argv.slice(2);
const mbAt = args.indexOf('--mb');
const total = (mbAt >= 0 ? Number(args[mbAt + 1]) : 200) * 1e6;
const plain = args.includes('--1460');
const verify = args.includes('--verify');

const GUEST_MAC = '02:00:00:00:00:2c', GUEST = '10.0.2.15', GW = '10.0.2.2', PORT = 5201;
const sw = new Switch({ maxPorts: 8 });
const guestPort = sw.addPort({ network: 2 });
sw.router.addInterface({ id: 0, network: 2, address: `${GW}/24` });
sw.router.addInterface({ id: 1, network: 5, address: '100.64.0.1/24', mtu: 65535 });
sw.router.addRoute({ destination: '0.0.0.0/0', interface: 1 });
const gwMac = sw.router.interfaces.get(0)!.mac;
const pump = Pump.of(sw);

let host: Duplex | undefined;
let written = 0;
const chunk = Buffer.alloc(65536, 0x5a);
const uplink = SocketUplink.attach(sw, {
  interface: 1, host: [0], superSegments: !plain,
  services: { [PORT]: (s) => { host = s; s.on('data', () => {}); } },
});

// The guest's end.
const ISN = 1000, WS = 7, WINDOW = 4 << 20;
let rcvNxt = 0, got = 0, duplicates = 0, segments = 0, packets = 0, unacked = 0, ackQueued = false, established = false;
let t0 = 0, cpu0 = process.cpuUsage();
let done: () => void;
const finished = new Promise<void>((r) => { done = r; });

function send(flags: string, seq: number, ack: number, options?: number[]) {
  const f = ethernet({ dst: gwMac, src: GUEST_MAC, payload: ipv4({ src: GUEST, dst: GW, payload: tcp({
    srcPort: 40000, dstPort: PORT, seq, ack, flags, window: flags.includes('S') ? 65535 : Math.min(0xffff, WINDOW >> WS),
    options: options ? new Uint8Array(options) : undefined,
  }) }) });
  pump.receive(guestPort, f);
}
// ACKs from a template (the guest's own cost stays small next to netplane's): ack number and
// checksum patched (RFC 1624 would do; the sum of 40 bytes is cheap enough).
let ackFrame: Uint8Array | undefined;
function ackNow() {
  ackQueued = false; unacked = 0;
  if (!ackFrame) {
    ackFrame = ethernet({ dst: gwMac, src: GUEST_MAC, payload: ipv4({ src: GUEST, dst: GW, payload: tcp({
      srcPort: 40000, dstPort: PORT, seq: ISN + 1, ack: 0, flags: 'A', window: Math.min(0xffff, WINDOW >> WS) }) }) });
  }
  const f = ackFrame, th = 34;
  f[th + 8] = rcvNxt >>> 24; f[th + 9] = rcvNxt >>> 16; f[th + 10] = rcvNxt >>> 8; f[th + 11] = rcvNxt;
  f[th + 16] = f[th + 17] = 0;
  const c = ~onesComplementSum(f.subarray(th, th + 20), onesComplementSum(f.subarray(26, 34), 6 + 20)) & 0xffff;
  f[th + 16] = c >> 8; f[th + 17] = c;
  pump.receive(guestPort, f);
}
function feed() {
  while (host && written < total && written - got < 8 << 20) { host.write(chunk); written += chunk.length; }
}

guestPort.onFrame((fr) => {
  const ip = 14, th = ip + (fr[ip] & 15) * 4;
  const ipEnd = ip + ((fr[ip + 2] << 8) | fr[ip + 3]);
  const flags = fr[th + 13];
  const seq = ((fr[th + 4] << 24) | (fr[th + 5] << 16) | (fr[th + 6] << 8) | fr[th + 7]) >>> 0;
  const data = ipEnd - th - (fr[th + 12] >> 4) * 4;
  packets++;
  if (verify) {
    const sum = onesComplementSum(fr.subarray(th, ipEnd), onesComplementSum(fr.subarray(ip + 12, ip + 20), 6 + ipEnd - th));
    if (sum !== 0xffff) throw new Error(`bad TCP checksum on segment ${packets}`);
  }
  if (ipEnd - ip > 1500) throw new Error(`a ${ipEnd - ip}-byte packet to a guest port with MTU 1500`);
  if ((flags & 0x12) === 0x12) {
    rcvNxt = (seq + 1) >>> 0;
    established = true;
    ackNow();
    setImmediate(() => { t0 = performance.now(); cpu0 = process.cpuUsage(); feed(); });
    return;
  }
  if (!established || data <= 0) return;
  // Old data again (a timeout on a starved machine sends from the last ACK again): re-ACK.
  if (((seq - rcvNxt) | 0) < 0) { duplicates++; ackNow(); return; }
  if (seq !== rcvNxt) {
    const c = sw.counters();
    const u = uplink.stats();
    throw new Error(`out of order: ${seq} after ${rcvNxt} (lost segments); timeouts ${u.tcp_timeouts} fast retransmits ${u.tcp_fast_retransmits} retransmits ${u.tcp_retransmits}; switch drops ${JSON.stringify(Object.fromEntries(Object.entries(c.drops).filter(([, v]) => v)))}`);
  }
  rcvNxt = (rcvNxt + data) >>> 0;
  got += data;
  segments++;
  if (got >= total) { ackNow(); done(); return; }
  if (++unacked >= 8) ackNow();
  else if (!ackQueued) { ackQueued = true; queueMicrotask(() => { if (ackQueued) ackNow(); }); }
  feed();
});

send('S', ISN, 0, [2, 4, 1460 >> 8, 1460 & 255, 1, 3, 3, WS]);
await finished;
const wall = performance.now() - t0, cpu = process.cpuUsage(cpu0);
const ms = (cpu.user + cpu.system) / 1000;
console.log(`uplink loop ${plain ? '(1460) ' : ''}${(got / 1e6).toFixed(0)} MB: ${(got / 1e6 / (wall / 1000)).toFixed(0)} MB/s (${(got * 8 / 1e9 / (wall / 1000)).toFixed(2)} Gbit/s), ` +
  `CPU ${(ms / (got / 1e8)).toFixed(0)} ms per 100 MB; ${segments} segments to the guest, ` +
  `${uplink.stats().injected} packets injected, ${uplink.stats().tcp_retransmits ?? 0} retransmitted, ${duplicates} duplicates`);
uplink.close();
process.exit(0);
