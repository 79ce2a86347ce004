// The socket underlay (src/transports/underlay.ts) against the real kernel: a VXLAN datagram sent to
// the provider address reaches the switch as a whole outer frame (zero MACs, an IPv4 header from the
// sender to the PA with a valid checksum, TTL 64, the UDP header with the sender's port), the payload
// byte for byte; and an outer IPv4/UDP frame the switch hands the underlay port leaves by one of the
// transport's UDP sockets and arrives at a UDP socket as the datagram it carries, a run of equal
// datagrams of one flow as one UDP GSO send that arrives as its datagrams. Loopback stands in for the
// underlay (the transport binds what it is given; the compiler checks the PA). Needs the native
// helper: without it it fails with the reason.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { Switch } from '../src/dataplane.js';
import { UnderlayTransport, UNDERLAY_RCVBUF } from '../src/transports/underlay.js';
import { readFileSync } from 'node:fs';
import { nativeTapAvailable } from '../src/transports/tap.js';
import { ethernet, ipv4, udp, dissect, verifyChecksums } from '../src/frames.js';

const missing = nativeTapAvailable() ? undefined : 'the underlay test needs the native helper (node scripts/native.mjs)';
const PORT = 40000 + (process.pid % 20000);

test('the requirements are there: the native helper', () => {
  if (missing) assert.unreachable(missing);
});

test('in: a datagram becomes a whole outer frame, the payload not copied twice and intact; out: an outer frame leaves as its packet', async () => {
  if (missing) return;
  const sw = new Switch({ maxPorts: 4 });
  const under = sw.addPort({ network: 0 });
  const other = sw.addPort({ network: 0 });
  const got: Uint8Array[] = [];
  const send = sw.send.bind(sw);
  (sw as { send: typeof sw.send }).send = (port, frame, vnet) => { if (port === under.id) got.push(frame.slice()); else send(port, frame, vnet); };
  const t = UnderlayTransport.open(sw, under.id, { address: '127.0.0.1', udpPort: PORT });
  // Its receive buffer: what it asked for, as far as rmem_max lets it (the kernel doubles it).
  assert.is(t.receiveBuffer, 2 * Math.min(UNDERLAY_RCVBUF, Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'))));
  const peer = createSocket('udp4');
  await new Promise<void>((ok) => peer.bind(0, '127.0.0.1', () => ok()));
  try {
    const payloads = [randomBytes(8 + 50), randomBytes(1400), randomBytes(8)];
    for (const p of payloads) peer.send(p, PORT, '127.0.0.1');
    for (let i = 0; i < 100 && got.length < payloads.length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(got.length, payloads.length);
    got.forEach((f, i) => {
      const d = dissect(f);
      assert.is(d.dst, '00:00:00:00:00:00');
      assert.is(d.src, '00:00:00:00:00:00');
      assert.is(d.ipv4?.src, '127.0.0.1');
      assert.is(d.ipv4?.dst, '127.0.0.1');
      assert.is(d.ipv4?.ttl, 64);
      assert.is(d.udp?.srcPort, peer.address().port);
      assert.is(d.udp?.dstPort, PORT);
      assert.is(f.length, 42 + payloads[i].length);
      const firstDiff = f.subarray(42).findIndex((x, k) => x !== payloads[i][k]);
      assert.is(firstDiff, -1, `payload ${i} differs at ${firstDiff}`);
      assert.ok(d.ipv4?.checksumOk, 'a valid IPv4 header checksum');
      assert.ok(verifyChecksums(f), 'UDP checksum 0 (none) is valid');
    });
    assert.is(t.stats.rxFrames, 3);

    // Out: a broadcast outer frame from the other port floods to the underlay port, which sends its
    // UDP datagram to the peer.
    const heard: Buffer[] = [];
    peer.on('message', (m) => heard.push(m));
    const body = randomBytes(300);
    const frame = ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01', payload: ipv4({ src: '127.0.0.1', dst: '127.0.0.1', payload: udp({ srcPort: PORT, dstPort: peer.address().port, payload: body }) }) });
    sw.inject([[other.id, frame]]);
    for (let i = 0; i < 100 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(heard.length, 1, JSON.stringify(t.stats));
    assert.equal(new Uint8Array(heard[0]), new Uint8Array(body));
    assert.is(t.stats.txFrames, 1);
    assert.ok(t.stats.txBatches >= 1);
    assert.is(t.stats.txRuns, 0);

    // A run: five datagrams of one flow in one batch, four of 1000 bytes and a last of 300, leave as
    // one UDP GSO send and arrive as the five datagrams, in order; a sixth to another port, and an
    // outer packet that is not UDP (refused: only UDP leaves), do not join it.
    heard.length = 0;
    const out = (dport: number, body: Uint8Array, protocol?: number) => ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01',
      payload: ipv4({ src: '127.0.0.1', dst: '127.0.0.1', protocol, payload: protocol === undefined ? udp({ srcPort: 50000, dstPort: dport, payload: body }) : body }) });
    const run = [1000, 1000, 1000, 1000, 300].map((n) => randomBytes(n));
    const other2 = createSocket('udp4');
    await new Promise<void>((ok) => other2.bind(0, '127.0.0.1', () => ok()));
    const heard2: Buffer[] = [];
    other2.on('message', (m) => heard2.push(m));
    try {
      sw.inject([...run.map((b) => [other.id, out(peer.address().port, b)] as [number, Uint8Array]), [other.id, out(other2.address().port, randomBytes(20))], [other.id, out(peer.address().port, randomBytes(20), 132)]]);
      for (let i = 0; i < 100 && (heard.length < 5 || heard2.length < 1); i++) await new Promise((r) => setTimeout(r, 10));
      assert.is(heard.length, 5, JSON.stringify(t.stats));
      heard.forEach((m, i) => assert.equal(new Uint8Array(m), new Uint8Array(run[i]), `datagram ${i} of the run`));
      assert.is(heard2.length, 1);
      assert.is(t.stats.txRuns, 1, 'the five went as one UDP GSO send');
      assert.is(t.stats.txFrames, 1 + 6);
      assert.is(t.stats.txDropped, 1, 'the outer packet that is not UDP');
    } finally {
      other2.close();
    }
  } finally {
    t.close();
    peer.close();
  }
});

test('underlay to underlay: a run leaves as one UDP GSO send and reaches the other underlay (UDP_GRO) as one message, handed to its switch as its datagrams, each with its outer headers', async () => {
  if (missing) return;
  const mk = () => {
    const sw = new Switch({ maxPorts: 4 });
    const under = sw.addPort({ network: 0 }), other = sw.addPort({ network: 0 });
    const got: Uint8Array[] = [];
    const send = sw.send.bind(sw);
    (sw as { send: typeof sw.send }).send = (port, frame, vnet) => { if (port === under.id) got.push(frame.slice()); else send(port, frame, vnet); };
    return { sw, under, other, got };
  };
  const a = mk(), b = mk();
  const ta = UnderlayTransport.open(a.sw, a.under.id, { address: '127.0.0.1', udpPort: PORT + 1 });
  const tb = UnderlayTransport.open(b.sw, b.under.id, { address: '127.0.0.1', udpPort: PORT + 2 });
  try {
    assert.ok(tb.gro, 'this kernel has UDP_GRO (Linux 5.0)');
    assert.ok(ta.gso, 'and UDP GSO (Linux 4.18)');
    const run = [1200, 1200, 1200, 1200, 1200, 1200, 700].map((n) => randomBytes(n));
    a.sw.inject(run.map((body) => [a.other.id, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01',
      payload: ipv4({ src: '127.0.0.1', dst: '127.0.0.1', payload: udp({ srcPort: 50001, dstPort: PORT + 2, payload: body }) }) })] as [number, Uint8Array]));
    for (let i = 0; i < 100 && b.got.length < run.length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(ta.stats.txRuns, 1);
    assert.is(b.got.length, run.length, JSON.stringify(tb.stats));
    assert.is(tb.stats.rxRuns, 1, 'the kernel kept the run whole to the receiving socket');
    b.got.forEach((f, i) => {
      const d = dissect(f);
      assert.is(d.udp?.dstPort, PORT + 2);
      assert.is(d.ipv4?.totalLength, 28 + run[i].length, `datagram ${i}: its own lengths`);
      assert.ok(d.ipv4?.checksumOk);
      assert.equal(f.subarray(42), new Uint8Array(run[i]), `datagram ${i} byte for byte`);
    });
  } finally {
    ta.close();
    tb.close();
  }
});

test('more datagrams in one delivery than the send queue holds: the queue is sent when full and the rest after, every datagram sent; a datagram too long for a frame is counted, not delivered', async () => {
  if (missing) return;
  const sw = new Switch({ maxPorts: 4, batch: 2048 });
  const under = sw.addPort({ network: 0 });
  const other = sw.addPort({ network: 0 });
  const t = UnderlayTransport.open(sw, under.id, { address: '127.0.0.1', udpPort: PORT + 3 });
  try {
    // 1100 datagrams to 1100 ports (none joins another's run): more messages than one send takes.
    const frames = Array.from({ length: 1100 }, (_, i) => [other.id, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01',
      payload: ipv4({ src: '127.0.0.1', dst: '127.0.0.1', payload: udp({ srcPort: 50002, dstPort: 20000 + i, payload: randomBytes(20) }) }) })] as [number, Uint8Array]);
    sw.inject(frames);
    assert.is(t.stats.txFrames, 1100, JSON.stringify(t.stats));
    assert.is(t.stats.txDropped, 0);
    assert.ok(t.stats.txBatches >= 2, 'sent in two sends at least');
    // In: a datagram whose frame would be longer than 65535 bytes.
    const peer = createSocket('udp4');
    await new Promise<void>((ok) => peer.bind(0, '127.0.0.1', () => ok()));
    try {
      peer.send(randomBytes(65507), PORT + 3, '127.0.0.1');
      for (let i = 0; i < 100 && t.stats.rxTooLong === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.is(t.stats.rxTooLong, 1);
      assert.is(t.stats.rxFrames, 0);
    } finally {
      peer.close();
    }
  } finally {
    t.close();
  }
});

// /proc/net/udp's rx_queue and drops of the IPv4 UDP socket bound to 127.0.0.1:port.
function udpSocketQueue(port: number): { rxQueue: number; drops: number } | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local) return { rxQueue: parseInt(f[4].split(':')[1], 16), drops: Number(f[12]) };
  }
  return undefined;
}

test('the send sockets take nothing in: datagrams sent to their ports are dropped by the kernel, none queued', async () => {
  if (missing) return;
  const sw = new Switch({ maxPorts: 2 });
  const under = sw.addPort({ network: 0 });
  const t = UnderlayTransport.open(sw, under.id, { address: '127.0.0.1', udpPort: PORT + 4 });
  const peer = createSocket('udp4');
  try {
    assert.is(t.txPorts.length, 16);
    await new Promise<void>((ok) => peer.bind(0, '127.0.0.1', () => ok()));
    const target = t.txPorts.slice(0, 2);
    for (const p of target) for (let i = 0; i < 200; i++) peer.send(randomBytes(1400), p, '127.0.0.1');
    let q = target.map(udpSocketQueue);
    for (let i = 0; i < 100 && q.some((x) => (x?.drops ?? 0) < 200); i++) {
      await new Promise((r) => setTimeout(r, 10));
      q = target.map(udpSocketQueue);
    }
    for (const x of q) {
      assert.ok(x, 'the send socket is in /proc/net/udp');
      assert.is(x!.rxQueue, 0, 'nothing queued');
      assert.is(x!.drops, 200, 'every datagram dropped and counted');
    }
    assert.is(t.stats.rxFrames, 0);
  } finally {
    peer.close();
    t.close();
  }
});

test('a PA the host does not have is refused with the errno\'s name', () => {
  if (missing) return;
  const sw = new Switch({ maxPorts: 2 });
  const p = sw.addPort({ network: 0 });
  assert.throws(() => UnderlayTransport.open(sw, p.id, { address: '192.0.2.123', udpPort: PORT }), /bind: .*\(EADDRNOTAVAIL\)/);
});

test.run();
