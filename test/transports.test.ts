// Transports over loopback: UDP datagrams (QEMU dgram, socat), QEMU's length-prefixed stream over TCP
// and a unix socket (frames split and joined across reads, bad prefixes disconnected, reconnects get
// their port back, slow readers bounded), WebSocket binary messages, and pcap capture per port.
// Each transport is also attacked the way a local user or a web page could: a second client or
// sender for a port that has one, a foreign Origin, an oversized message, a file where a unix socket
// would go, a port id reused by another endpoint.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Switch, type SwitchPort, UdpTransport, nativeTapAvailable, StreamTransport, StreamServer, WebSocketTransport, readPcap } from '../src/index.js';
import { UDP_RCVBUF } from '../src/transports/udp.js';
import { execFileSync } from 'node:child_process';
import { ethernet, ipv4, udp } from '../src/frames.js';

const A = '02:00:00:00:00:0a', B = '02:00:00:00:00:0b', BC = 'ff:ff:ff:ff:ff:ff';
const frame = (src: string, dst: string, n = 1) => ethernet({ src, dst, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: n, dstPort: 9, payload: new Uint8Array(20).fill(n & 255) }) }) });
const until = async (cond: () => boolean, ms = 3000) => {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('UDP: one frame per datagram both ways; the peer is learned; non-frames refused and counted', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const ta = await UdpTransport.open(sw, pa.id, { bind: { port: 0 } });
  const tb = await UdpTransport.open(sw, pb.id, { bind: { port: 0 } });
  const hostA = createSocket('udp4'), hostB = createSocket('udp4');
  await Promise.all([new Promise<void>((r) => hostA.bind(0, '127.0.0.1', () => r())), new Promise<void>((r) => hostB.bind(0, '127.0.0.1', () => r()))]);
  const gotA: Buffer[] = [], gotB: Buffer[] = [];
  hostA.on('message', (m) => gotA.push(m));
  hostB.on('message', (m) => gotB.push(m));
  try {
    // B speaks first so its transport learns where B is; then A's broadcast reaches B.
    hostB.send(frame(B, BC, 1), tb.address().port, '127.0.0.1');
    await until(() => sw.counters().stats.rx_packets === 1);
    hostA.send(frame(A, BC, 2), ta.address().port, '127.0.0.1');
    await until(() => gotB.length === 1);
    assert.equal(new Uint8Array(gotB[0]), frame(A, BC, 2));
    hostB.send(frame(B, A, 3), tb.address().port, '127.0.0.1');
    await until(() => gotA.length === 1);
    assert.equal(new Uint8Array(gotA[0]), frame(B, A, 3));
    hostA.send(Buffer.from('junk'), ta.address().port, '127.0.0.1');
    await until(() => ta.stats.rxRefused === 1);
    assert.equal({ rx: ta.stats.rxFrames, tx: ta.stats.txFrames }, { rx: 1, tx: 1 });
  } finally {
    hostA.close(); hostB.close();
    await ta.close(); await tb.close();
  }
});

const udpHost = async () => {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  return { s, got, port: () => s.address().port };
};

for (const native of [true, false]) {
  test(`UDP ${native ? 'through the native helper (recvmmsg/sendmmsg)' : "on Node's dgram (native: false)"}: 64 frames sent at once all cross, in order${native ? ', in a few batched calls' : ''}`, async () => {
    const sw = new Switch({ maxPorts: 4 });
    const pa = sw.addPort(), pb = sw.addPort();
    const ta = await UdpTransport.open(sw, pa.id, { bind: { port: 0 }, native });
    const tb = await UdpTransport.open(sw, pb.id, { bind: { port: 0 }, native });
    const hostA = await udpHost(), hostB = await udpHost();
    try {
      assert.is(ta.batched, native && nativeTapAvailable(), 'the native helper batches the UDP transport wherever it is built');
      hostA.s.send(frame(A, B, 0), ta.address().port, '127.0.0.1');
      hostB.s.send(frame(B, A, 0), tb.address().port, '127.0.0.1');
      await until(() => hostA.got.length === 1 && hostB.got.length === 1);
      // Sent in one synchronous loop: all 64 are in the socket's queue before the transport reads.
      for (let i = 1; i <= 64; i++) hostA.s.send(frame(A, B, i), ta.address().port, '127.0.0.1');
      await until(() => hostB.got.length === 65);
      assert.equal(hostB.got.slice(1).map((f) => f[43]), Array.from({ length: 64 }, (_, i) => i + 1));
      assert.is(ta.stats.rxFrames, 65);
      assert.is(tb.stats.txFrames, 65);
      if (ta.batched) {
        const rx = ta.batches!.rx, tx = tb.batches!.tx;
        assert.ok(rx < 20, `64 datagrams read in ${rx} recvmmsg calls`);
        assert.ok(tx < 20, `65 frames sent in ${tx} sendmmsg calls`);
      }
    } finally {
      hostA.s.close(); hostB.s.close();
      await ta.close(); await tb.close();
    }
  });
}

// A UDP socket's receive buffer as the kernel reports it (ss's skmem rb), for the socket bound to port.
function udpReceiveBuffer(port: number): number {
  const out = execFileSync('ss', ['-uamnH', `sport = :${port}`], { encoding: 'utf8' });
  const m = /rb(\d+)/.exec(out);
  if (!m) throw new Error(`no socket on udp port ${port}: ${out}`);
  return Number(m[1]);
}

test('UDP: the socket asks for a 1 MiB receive buffer (the default holds about 90 frames), native helper and dgram alike', async () => {
  const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
  // The kernel doubles what it is asked for, after capping the request at rmem_max.
  const want = 2 * Math.min(UDP_RCVBUF, rmemMax);
  const sw = new Switch({ maxPorts: 4 });
  for (const native of [true, false]) {
    const p = sw.addPort();
    const t = await UdpTransport.open(sw, p.id, { bind: { port: 0 }, native });
    try {
      assert.is(t.batched, native && nativeTapAvailable());
      assert.is(udpReceiveBuffer(t.address().port), want, `native ${native}`);
    } finally { await t.close(); }
  }
});

test('UDP: a learned peer keeps its port against other senders until it has been silent for peerIdleMs', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const ta = await UdpTransport.open(sw, pa.id, { bind: { port: 0 }, peerIdleMs: 200 });
  const tb = await UdpTransport.open(sw, pb.id, { bind: { port: 0 } });
  const vm = await udpHost(), intruder = await udpHost(), hostB = await udpHost();
  const toA = ta.address().port;
  try {
    hostB.s.send(frame(B, BC, 1), tb.address().port, '127.0.0.1');
    await until(() => sw.counters().stats.rx_packets === 1);
    vm.s.send(frame(A, BC, 2), toA, '127.0.0.1');
    await until(() => hostB.got.length === 1);
    assert.is(ta.stats.connects, 1);
    // Another sender, while the peer is fresh: refused, not delivered.
    intruder.s.send(frame(A, BC, 3), toA, '127.0.0.1');
    await until(() => ta.stats.refusals === 1);
    vm.s.send(frame(A, BC, 4), toA, '127.0.0.1');
    await until(() => hostB.got.length === 2);
    assert.equal(hostB.got.map((f) => f[43]), [2, 4]);
    // Frames out still go to the first peer.
    hostB.s.send(frame(B, A, 5), tb.address().port, '127.0.0.1');
    await until(() => vm.got.length === 1);
    assert.is(vm.got[0][43], 5);
    assert.is(intruder.got.length, 0);
    // After peerIdleMs of silence, a new sender (a restarted socat) takes the port over.
    await new Promise((r) => setTimeout(r, 250));
    intruder.s.send(frame(A, BC, 6), toA, '127.0.0.1');
    await until(() => hostB.got.length === 3);
    assert.is(hostB.got[2][43], 6);
    assert.is(ta.stats.connects, 2);
    hostB.s.send(frame(B, A, 7), tb.address().port, '127.0.0.1');
    await until(() => intruder.got.length === 1);
    assert.is(intruder.got[0][43], 7);
    assert.is(vm.got.length, 1);
    // And now the old peer is the stranger.
    vm.s.send(frame(A, BC, 8), toA, '127.0.0.1');
    await until(() => ta.stats.refusals === 2);
    assert.is(ta.stats.rxFrames, 3);
  } finally {
    vm.s.close(); intruder.s.close(); hostB.s.close();
    await ta.close(); await tb.close();
  }
});

test('UDP: with a configured peer, every other sender is refused, however long the peer is silent', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const vm = await udpHost(), intruder = await udpHost();
  const ta = await UdpTransport.open(sw, pa.id, { bind: { port: 0 }, peer: { host: '127.0.0.1', port: vm.port() }, peerIdleMs: 0 });
  const toA = ta.address().port;
  try {
    intruder.s.send(frame(A, BC, 1), toA, '127.0.0.1');
    await until(() => ta.stats.refusals === 1);
    vm.s.send(frame(A, BC, 2), toA, '127.0.0.1');
    await until(() => ta.stats.rxFrames === 1);
    await until(() => pb.receive().length === 1);
    intruder.s.send(frame(A, BC, 3), toA, '127.0.0.1');
    await until(() => ta.stats.refusals === 2);
    sw.flush();
    assert.is(pb.receive().length, 0, 'the stranger\'s frame went nowhere');
    pb.send(frame(B, A, 4));
    sw.flush();
    await until(() => vm.got.length === 1);
    assert.is(vm.got[0][43], 4);
    assert.is(intruder.got.length, 0);
    assert.is(ta.stats.connects, 0);
    // A frame longer than a UDP datagram can be is a counted drop, not a crash.
    pb.send(ethernet({ src: B, dst: A, ethertype: 0x88b5, payload: new Uint8Array(65535 - 14) }));
    sw.flush();
    await until(() => ta.stats.txDropped === 1);
    assert.is(ta.stats.txFrames, 1);
  } finally {
    vm.s.close(); intruder.s.close();
    await ta.close();
  }
  let err: Error | undefined;
  try { await UdpTransport.open(sw, pa.id, { bind: { port: 0 }, peer: { host: 'localhost', port: 1 } }); } catch (e) { err = e as Error; }
  assert.match(err?.message ?? '', /numeric IP address/);
});

function framed(frames: Uint8Array[]): Buffer {
  return Buffer.concat(frames.map((f) => { const b = Buffer.alloc(4 + f.length); b.writeUInt32BE(f.length); b.set(f, 4); return b; }));
}

function reader(s: Socket) {
  const frames: Buffer[] = [];
  let pending = Buffer.alloc(0);
  s.on('data', (c) => {
    pending = Buffer.concat([pending, c]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      const n = pending.readUInt32BE(0);
      frames.push(pending.subarray(4, 4 + n));
      pending = pending.subarray(4 + n);
    }
  });
  return frames;
}

for (const kind of ['tcp', 'unix'] as const) {
  test(`QEMU stream over ${kind}: frames split and joined across reads, bad prefixes disconnected, reconnect keeps the port`, async () => {
    const sw = new Switch({ maxPorts: 4 });
    const pa = sw.addPort(), pb = sw.addPort();
    const dir = mkdtempSync(join(tmpdir(), 'netplane-stream-'));
    const logs: string[] = [];
    const opts = (n: string) => kind === 'tcp' ? { tcp: { port: 0 }, log: (m: string) => logs.push(m) } : { unix: join(dir, `${n}.sock`), log: (m: string) => logs.push(m) };
    const ta = await StreamTransport.listen(sw, pa.id, opts('a'));
    const tb = await StreamTransport.listen(sw, pb.id, opts('b'));
    const dial = (t: StreamTransport) => new Promise<Socket>((ok) => { const a = t.address(); const s = typeof a === 'string' ? connect(a) : connect(a.port, a.host); s.once('connect', () => ok(s)); });
    const a = await dial(ta), b = await dial(tb);
    const fromB = reader(b);
    try {
      // Two frames in one write, then one frame in three pieces.
      a.write(framed([frame(A, BC, 1), frame(A, BC, 2)]));
      const third = framed([frame(A, BC, 3)]);
      a.write(third.subarray(0, 3));
      await new Promise((r) => setTimeout(r, 20));
      a.write(third.subarray(3, 30));
      await new Promise((r) => setTimeout(r, 20));
      a.write(third.subarray(30));
      await until(() => fromB.length === 3);
      assert.equal(fromB.map((f) => f[42 + 1]), [1, 2, 3], 'in order, whole');
      assert.equal(new Uint8Array(fromB[2]), frame(A, BC, 3));
      // A bad length prefix: the client goes, the switch stays.
      const bad = Buffer.alloc(4); bad.writeUInt32BE(1 << 20);
      a.write(bad);
      await until(() => ta.disconnects.length === 1);
      assert.match(logs[0], /port 0: client disconnected: bad length prefix 1048576/);
      // The client reconnects and is port 0 again.
      const a2 = await dial(ta);
      a2.write(framed([frame(A, BC, 4)]));
      await until(() => fromB.length === 4);
      assert.is(fromB[3][43], 4);
      a2.destroy();
    } finally {
      a.destroy(); b.destroy();
      await ta.close(); await tb.close();
    }
  });
}

const dialStream = (t: StreamTransport) => new Promise<Socket>((ok) => { const a = t.address(); const s = typeof a === 'string' ? connect(a) : connect(a.port, a.host); s.once('connect', () => ok(s)); });
const closed = (s: Socket) => until(() => s.destroyed);

test('stream: a second client is refused while the first is alive, and accepted once it has gone', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const logs: string[] = [];
  const ta = await StreamTransport.listen(sw, pa.id, { tcp: { port: 0 }, log: (m) => logs.push(m) });
  const tb = await StreamTransport.listen(sw, pb.id, { tcp: { port: 0 } });
  const a = await dialStream(ta), b = await dialStream(tb);
  const fromA = reader(a), fromB = reader(b);
  let intruder: Socket | undefined, a2: Socket | undefined;
  try {
    intruder = await dialStream(ta);
    intruder.on('error', () => {});
    intruder.write(framed([frame(A, BC, 9)]));
    await closed(intruder);
    assert.is(ta.stats.refusals, 1);
    assert.is(ta.stats.connects, 1);
    assert.equal(ta.disconnects, [{ reason: 'port 0 already has a client' }]);
    assert.match(logs[0], /port 0 already has a client; refused/);
    // The first client still has its port, both ways, and nothing the intruder wrote got in.
    a.write(framed([frame(A, BC, 1)]));
    await until(() => fromB.length === 1);
    b.write(framed([frame(B, A, 2)]));
    await until(() => fromA.length === 1);
    assert.equal(fromB.map((f) => f[43]), [1]);
    assert.is(fromA[0][43], 2);
    assert.is(ta.stats.rxFrames, 1);
    // The first client goes; the next one (a restarted QEMU) gets the port.
    a.destroy();
    await closed(a);
    await new Promise((r) => setTimeout(r, 50));
    a2 = await dialStream(ta);
    const fromA2 = reader(a2);
    await until(() => ta.stats.connects === 2);
    a2.write(framed([frame(A, BC, 3)]));
    await until(() => fromB.length === 2);
    assert.is(fromB[1][43], 3);
    b.write(framed([frame(B, A, 4)]));
    await until(() => fromA2.length === 1);
    assert.is(fromA2[0][43], 4);
    assert.is(ta.stats.refusals, 1);
  } finally {
    intruder?.destroy(); a.destroy(); a2?.destroy(); b.destroy();
    await ta.close(); await tb.close();
  }
});

test('unix stream: an existing file is not replaced (EADDRINUSE, same content); the socket gets its mode and goes at close', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort();
  const dir = mkdtempSync(join(tmpdir(), 'netplane-unix-'));
  const taken = join(dir, 'taken.sock');
  writeFileSync(taken, 'not netplane\'s');
  let err: NodeJS.ErrnoException | undefined;
  try { await (await StreamTransport.listen(sw, pa.id, { unix: taken })).close(); } catch (e) { err = e as NodeJS.ErrnoException; }
  assert.is(err?.code, 'EADDRINUSE');
  assert.ok(lstatSync(taken).isFile(), 'still a regular file');
  assert.is(readFileSync(taken, 'utf8'), 'not netplane\'s');
  assert.is(pa.handler, undefined, 'a failed listen leaves the port alone');

  const path = join(dir, 'a.sock');
  const ta = await StreamTransport.listen(sw, pa.id, { unix: path, mode: 0o600 });
  try {
    assert.ok(lstatSync(path).isSocket());
    assert.is(lstatSync(path).mode & 0o777, 0o600);
  } finally {
    await ta.close();
  }
  assert.not.ok(existsSync(path), 'the socket netplane made is gone');
});

test('unix stream: the client\'s socket gets a 4 MiB send buffer (SO_SNDBUF, capped by net.core.wmem_max and doubled by the kernel), as passt asks for its own; TCP clients keep the kernel\'s autotuning', async () => {
  assert.ok(nativeTapAvailable(), 'the native helper is built (node scripts/native.mjs)');
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const dir = mkdtempSync(join(tmpdir(), 'netplane-unix-'));
  const ta = await StreamTransport.listen(sw, pa.id, { unix: join(dir, 'a.sock') });
  const tb = await StreamTransport.listen(sw, pb.id, { tcp: { host: '127.0.0.1', port: 0 } });
  const ca = connect(join(dir, 'a.sock')), cb = connect((tb.address() as { port: number }).port, '127.0.0.1');
  try {
    assert.is(ta.sendBuffer, 0, 'no client yet');
    await until(() => ta.sendBuffer > 0);
    const wmemMax = Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
    assert.is(ta.sendBuffer, 2 * Math.min(4 * 1024 * 1024, wmemMax));
    await until(() => tb.stats.connects === 1);
    assert.is(tb.sendBuffer, 0, 'a TCP client: left to the kernel');
  } finally {
    ca.destroy(); cb.destroy();
    await ta.close(); await tb.close();
  }
});

test('a transport keeps the port object it attached to: a port id reused by another endpoint is not its', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const ta = await UdpTransport.open(sw, pa.id, { bind: { port: 0 } });
  const host = createSocket('udp4');
  await new Promise<void>((r) => host.bind(0, '127.0.0.1', () => r()));
  let other: SwitchPort | undefined;
  const theirs = () => {};
  try {
    host.send(frame(A, BC, 1), ta.address().port, '127.0.0.1');
    await until(() => pb.receive().length === 1);
    sw.removePort(pa.id);
    other = sw.addPort({ id: pa.id });
    other.onFrame(theirs);
    const before = sw.counters().stats.rx_packets;
    host.send(frame(A, BC, 2), ta.address().port, '127.0.0.1');
    await until(() => ta.stats.rxRefused === 1);
    sw.flush();
    assert.is(sw.counters().stats.rx_packets, before, 'nothing entered as the new port');
    assert.is(ta.stats.rxFrames, 1);
  } finally {
    host.close();
    await ta.close();
  }
  assert.is(other?.handler, theirs, 'close left the new endpoint\'s handler alone');
  // A transport replaced on the same port object (the endpoint's transport changed) leaves the
  // newer one's handler when it closes.
  const pc = sw.addPort();
  const older = await UdpTransport.open(sw, pc.id, { bind: { port: 0 } });
  const newer = await UdpTransport.open(sw, pc.id, { bind: { port: 0 } });
  const newers = pc.handler;
  await older.close();
  try {
    assert.ok(newers !== undefined && pc.handler === newers, 'the newer transport still sends for the port');
  } finally {
    await newer.close();
  }
  assert.is(pc.handler, undefined);
});

test('one stream listener, several clients, each its own port; a reconnecting client gets its port back', async () => {
  const sw = new Switch({ maxPorts: 8 });
  const server = await StreamServer.listen(sw, { tcp: { port: 0 }, newPort: () => sw.addPort({ network: 1 }).id });
  const addr = server.address() as { host: string; port: number };
  const dial = () => new Promise<Socket>((ok) => { const s = connect(addr.port, addr.host); s.once('connect', () => ok(s)); });
  const a = await dial(), b = await dial();
  const fromA = reader(a), fromB = reader(b);
  try {
    a.write(framed([frame(A, BC, 1)]));
    await until(() => server.portOf(A) !== undefined && fromB.length === 0 && sw.counters().stats.rx_packets === 1);
    b.write(framed([frame(B, A, 2)]));
    await until(() => fromA.length === 1);
    assert.is(fromA[0][43], 2, 'B reached A through the switch');
    const portA = server.portOf(A), portB = server.portOf(B);
    assert.ok(portA !== undefined && portB !== undefined && portA !== portB, 'each client its own port');
    // Another connection claiming A's MAC while A is connected does not get A's port.
    const dup = await dial();
    dup.on('error', () => {});
    dup.write(framed([frame(A, BC, 9)]));
    await until(() => dup.destroyed);
    assert.equal({ refusals: server.stats.refusals, connects: server.stats.connects }, { refusals: 1, connects: 2 });
    assert.match(server.disconnects[0].reason, new RegExp(`port ${portA} \\(${A}\\) already has a client; refused`));
    a.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const a2 = await dial();
    const fromA2 = reader(a2);
    a2.write(framed([frame(A, BC, 3)]));
    await until(() => fromB.length === 1);
    assert.is(server.portOf(A), portA, 'the same port again');
    b.write(framed([frame(B, A, 4)]));
    await until(() => fromA2.length === 1);
    assert.is(fromA2[0][43], 4, 'and what the switch learned about A still holds');
    a2.destroy();
  } finally {
    a.destroy(); b.destroy();
    await server.close();
  }
});

test('a client that does not read costs dropped frames, not memory', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const tb = await StreamTransport.listen(sw, pb.id, { tcp: { port: 0 }, maxQueuedBytes: 64 * 1024 });
  const addr = tb.address() as { host: string; port: number };
  const b = await new Promise<Socket>((ok) => { const s = connect(addr.port, addr.host); s.once('connect', () => ok(s)); });
  b.pause();
  try {
    const big = ethernet({ src: A, dst: BC, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(1400) }) }) });
    for (let i = 0; i < 20000; i++) pa.send(big);
    sw.flush();
    assert.ok(tb.stats.txDropped > 0, 'frames were dropped');
    assert.ok(tb.stats.txFrames * 1446 < 64 * 1024 + 8 * 1024 * 1024, 'what was queued stayed bounded');
  } finally {
    b.destroy();
    await tb.close();
  }
});

test('WebSocket: one binary message per frame; a text message disconnects the client', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const logs: string[] = [];
  const ta = await WebSocketTransport.listen(sw, pa.id, { port: 0, log: (m) => logs.push(m) });
  const tb = await WebSocketTransport.listen(sw, pb.id, { port: 0 });
  const open = (t: WebSocketTransport) => new Promise<WebSocket>((ok) => { const ws = new WebSocket(`ws://127.0.0.1:${t.address().port}`); ws.once('open', () => ok(ws)); });
  const a = await open(ta), b = await open(tb);
  const got: Buffer[] = [];
  b.on('message', (m) => got.push(m as Buffer));
  try {
    a.send(frame(A, BC, 7));
    await until(() => got.length === 1);
    assert.equal(new Uint8Array(got[0]), frame(A, BC, 7));
    a.send('hello');
    await until(() => ta.disconnects.length === 1);
    assert.match(logs[0], /text message/);
  } finally {
    a.terminate(); b.terminate();
    await ta.close(); await tb.close();
  }
});

test('WebSocket: the frames of one delivery leave in one socket write, each its own message, in order', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const tb = await WebSocketTransport.listen(sw, pb.id, { port: 0 });
  const b = await new Promise<WebSocket>((ok) => { const ws = new WebSocket(`ws://127.0.0.1:${tb.address().port}`); ws.once('open', () => ok(ws)); });
  const got: Buffer[] = [];
  b.on('message', (m) => got.push(m as Buffer));
  try {
    // The server side of the client's connection, its writes counted (one _writev for a corked batch;
    // a write per frame without the cork).
    const socket = (tb as unknown as { socket: Socket }).socket;
    let writes = 0;
    for (const k of ['_write', '_writev'] as const) {
      const f = (socket as any)[k];
      (socket as any)[k] = function (this: Socket, ...args: unknown[]) { writes++; return f.apply(this, args); };
    }
    const frames = Array.from({ length: 16 }, (_, i) => frame(A, BC, 100 + i));
    for (const f of frames) pa.send(f);
    sw.flush();
    await until(() => got.length === 16);
    assert.equal(got.map((m) => new Uint8Array(m)), frames);
    assert.is(writes, 1, 'one write for the delivery\'s 16 frames');
    assert.is(tb.stats.txFrames, 16);
  } finally {
    b.terminate();
    await tb.close();
  }
});

// A handshake's outcome: the open client, or the HTTP status it was refused with.
const handshake = (t: WebSocketTransport, origin?: string) => new Promise<{ ws?: WebSocket; status?: number }>((ok) => {
  const ws = new WebSocket(`ws://127.0.0.1:${t.address().port}`, { ...(origin === undefined ? {} : { origin }), handshakeTimeout: 3000 });
  ws.once('open', () => ok({ ws }));
  ws.once('error', (e) => ok({ status: Number(/Unexpected server response: (\d+)/.exec(e.message)?.[1]) }));
});
const wsClosed = (ws: WebSocket) => new Promise<number>((ok, fail) => {
  const timer = setTimeout(() => fail(new Error('timed out')), 3000);
  ws.once('close', (code) => { clearTimeout(timer); ok(code); });
});

test('WebSocket: a foreign Origin gets 403, a second client 409, an oversized message 1009; the port goes on', async () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const logs: string[] = [];
  const ta = await WebSocketTransport.listen(sw, pa.id, { port: 0, allowedOrigins: ['https://vm.example'], log: (m) => logs.push(m) });
  const tb = await WebSocketTransport.listen(sw, pb.id, { port: 0 });
  const b = (await handshake(tb)).ws!;
  const got: Buffer[] = [];
  b.on('message', (m) => got.push(m as Buffer));
  const open: WebSocket[] = [b];
  try {
    const foreign = await handshake(ta, 'https://evil.example');
    assert.is(foreign.status, 403);
    assert.is(ta.stats.refusals, 1);
    assert.is(ta.stats.connects, 0);
    assert.match(logs[0], /Origin "https:\/\/evil\.example" is not allowed/);
    // A listed Origin is let in, and its frames reach the switch.
    const allowed = await handshake(ta, 'https://vm.example');
    assert.ok(allowed.ws, 'the listed Origin is accepted');
    open.push(allowed.ws!);
    assert.is(ta.stats.connects, 1);
    allowed.ws!.send(frame(A, BC, 1));
    await until(() => got.length === 1);
    // While it is open, nobody else gets the port, with or without an Origin.
    assert.is((await handshake(ta)).status, 409);
    assert.is(ta.stats.refusals, 2);
    assert.match(logs[1], /port already has a client/);
    allowed.ws!.close();
    await wsClosed(allowed.ws!);
    // No Origin (websockproxy, node): accepted once the port is free.
    const plain = (await handshake(ta)).ws!;
    open.push(plain);
    assert.is(ta.stats.connects, 2);
    // A message longer than any frame ends the client with 1009, and none of it reaches the switch.
    const rxBefore = sw.counters().stats.rx_packets;
    const closing = wsClosed(plain);
    plain.send(Buffer.alloc(70000, 1));
    assert.is(await closing, 1009);
    await until(() => ta.stats.rxRefused === 1);
    await new Promise((r) => setTimeout(r, 20));
    sw.flush();
    assert.is(sw.counters().stats.rx_packets, rxBefore);
    assert.is(ta.stats.rxFrames, 1);
    assert.is(got.length, 1);
    assert.match(ta.disconnects[ta.disconnects.length - 1].reason, /over 65535 bytes/);
    // The next client has the port, both ways.
    const next = (await handshake(ta)).ws!;
    open.push(next);
    const toNext: Buffer[] = [];
    next.on('message', (m) => toNext.push(m as Buffer));
    next.send(frame(A, BC, 2));
    await until(() => got.length === 2);
    assert.is(got[1][43], 2);
    b.send(frame(B, A, 3));
    await until(() => toNext.length === 1);
    assert.equal(new Uint8Array(toNext[0]), frame(B, A, 3));
    assert.is(ta.stats.refusals, 2);
  } finally {
    for (const ws of open) ws.terminate();
    await ta.close(); await tb.close();
  }
});

test('pcap capture per port: what the port received and what it sent, readable as pcap', () => {
  const sw = new Switch({ maxPorts: 4 });
  const pa = sw.addPort(), pb = sw.addPort();
  const file = join(mkdtempSync(join(tmpdir(), 'netplane-cap-')), 'a.pcap');
  const stopCapture = sw.capture(pa.id, file);
  pa.send(frame(A, BC, 1));
  pb.send(frame(B, A, 2));
  sw.flush();
  stopCapture();
  pa.send(frame(A, BC, 3));
  sw.flush();
  const cap = readPcap(readFileSync(file));
  assert.is(cap.linkType, 1);
  assert.equal(cap.records.map((r) => new Uint8Array(r.data)), [frame(A, BC, 1), frame(B, A, 2)], 'rx then tx, nothing after the stop');
});

test.run();
