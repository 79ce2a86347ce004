// Transports over loopback: UDP datagrams (QEMU dgram, socat), QEMU's length-prefixed stream over TCP
// and a unix socket (frames split and joined across reads, bad prefixes disconnected, reconnects get
// their port back, slow readers bounded), WebSocket binary messages, and pcap capture per port.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Switch, UdpTransport, StreamTransport, StreamServer, WebSocketTransport, readPcap } from '../src/index.js';
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
