// The WebSocket client transport (src/transports/wsclient.ts) under Node.js, with ws's WebSocket class
// in place of a browser's, against a plain ws server that plays the daemon: the bounded queue while
// not connected, reconnecting, what is refused on the way in. test/browser.test.ts runs it in
// Chromium against a real daemon.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { Switch, WebSocketClientTransport, ethernet, type WebSocketClass } from '../src/index.js';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const frame = (src: string) => ethernet({ src, dst: 'ff:ff:ff:ff:ff:ff', ethertype: 0x88b5, payload: new Uint8Array(46) });
const Socket = WebSocket as unknown as WebSocketClass;

function freePort(): Promise<number> {
  return new Promise((ok) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => ok(p)); }); });
}

async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (ok()) return;
    await wait(20);
  }
  assert.unreachable(`timed out waiting for ${what}`);
}

function setup() {
  const sw = new Switch({ maxPorts: 8, macEntries: 64 });
  const vm = sw.addPort({ network: 1 });
  const up = sw.addPort({ network: 1 });
  return { sw, vm, up };
}

test('frames wait in a bounded queue until the socket opens; the extra ones are counted dropped', async () => {
  const { sw, vm, up } = setup();
  const port = await freePort();
  const t = new WebSocketClientTransport(sw, up, { url: `ws://127.0.0.1:${port}/`, WebSocket: Socket, queueLimit: 3, reconnect: { delayMs: 30, maxDelayMs: 60 }, log: () => {} });
  for (let i = 0; i < 5; i++) vm.send(frame(`02:00:00:00:00:0${i}`));
  sw.flush();
  assert.is(t.queued, 3);
  assert.is(t.stats.txDropped, 2);
  await until(() => t.stats.refusals >= 1, 'a failed attempt');
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  const got: Buffer[] = [];
  server.on('connection', (ws) => ws.on('message', (m: Buffer) => got.push(m)));
  try {
    await until(() => got.length === 3, 'the queued frames');
    assert.is(t.state, 'open');
    assert.equal(got.map((m) => m.length), [60, 60, 60]);
    assert.equal([...got[0].subarray(6, 12)], [2, 0, 0, 0, 0, 0], 'in order, oldest first');
    assert.is(t.stats.txFrames, 3);
    assert.is(t.stats.connects, 1);
  } finally {
    t.close();
    await new Promise((ok) => server.close(ok));
  }
  assert.is(t.state, 'closed');
});

test('messages in are frames into the switch; text and runts are refused; a lost connection reconnects', async () => {
  const { sw, vm, up } = setup();
  const port = await freePort();
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  const clients: WebSocket[] = [];
  server.on('connection', (ws) => clients.push(ws));
  const t = await WebSocketClientTransport.connect(sw, up, { url: `ws://127.0.0.1:${port}/`, WebSocket: Socket, reconnect: { delayMs: 30 }, log: () => {} });
  const states: string[] = [];
  t.onstatechange = (s) => states.push(s);
  try {
    await until(() => clients.length === 1, 'the server to see the client');
    clients[0].send(frame('02:00:00:00:00:aa'));
    clients[0].send('a text message');
    clients[0].send(new Uint8Array(5));
    await until(() => t.stats.rxFrames === 1 && t.stats.rxRefused === 2, 'one frame and two refusals');
    await until(() => vm.receive().length === 1, 'the frame on the vm port');
    clients[0].terminate();
    await until(() => t.state === 'open' && clients.length === 2, 'a reconnect');
    assert.equal(states, ['waiting', 'connecting', 'open']);
    assert.is(t.stats.connects, 2);
    vm.send(frame('02:00:00:00:00:bb'));
    sw.flush();
    const got: Buffer[] = [];
    clients[1].on('message', (m: Buffer) => got.push(m));
    await until(() => got.length === 1, 'a frame over the new connection');
    assert.match(t.disconnects[0].reason, /closed by the daemon \(1006/);
  } finally {
    t.close();
    await new Promise((ok) => server.close(ok));
  }
});

test('without reconnect, connect() to nothing rejects and says why; the port is left to itself', async () => {
  const { sw, vm, up } = setup();
  const port = await freePort();
  const err = await WebSocketClientTransport.connect(sw, up, { url: `ws://127.0.0.1:${port}/`, WebSocket: Socket, log: () => {} }).then(() => undefined, (e: Error) => e);
  assert.ok(err, 'rejected');
  assert.match(err!.message, /could not connect/);
  vm.send(frame('02:00:00:00:00:cc'));
  sw.flush();
  assert.is(up.receive().length, 1, 'the port queues for receive() again: the transport let go of it');
  assert.throws(() => new WebSocketClientTransport(sw, up, { url: 'ws://x/', WebSocket: Socket, queueLimit: -1 }), /queueLimit/);
});

test.run();
