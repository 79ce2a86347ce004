// The daemon as a process, attacked the way a web page in the user's browser and a local user would:
// cross-origin and rebinding requests, requests without the token, paths outside netplane's
// directories, symlinks and files planted where netplane writes, its own files as targets, addresses
// it must not bind, a thousand concurrent changes racing for the same transport, a second daemon on
// the same state directory, kill -9 in the middle of changes, a second client for a port, and an
// oversized WebSocket message. Each attack must be refused with an error that says why, and nothing
// may change: not the live state, not state.json, not the files it was aimed at.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { request, Agent } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync, symlinkSync, statSync, lstatSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect } from 'node:net';
import WebSocket from 'ws';
import { ethernet, arp, dissect } from '../src/frames.js';
import { loadOrCreateToken } from '../src/confine.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/netplane.js');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Daemon { proc: ChildProcess; port: number; socket: string; dir: string; token: string; out: () => string }

async function serve(dir: string, config?: Record<string, unknown>): Promise<Daemon> {
  const args = ['serve', '--state-dir', dir, '--port', '0'];
  if (config) {
    const file = join(dir, '..', `config-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify({ stateDir: dir, defaults: { network: true }, ...config }));
    args.push('--config', file);
  }
  const proc = spawn(process.execPath, [bin, ...args], { cwd: root });
  let text = '';
  proc.stdout!.on('data', (d) => (text += d));
  proc.stderr!.on('data', (d) => (text += d));
  const port = await new Promise<number>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`no banner: ${text}`)), 20000);
    proc.stdout!.on('data', () => {
      const m = /api: +http:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
      if (m) { clearTimeout(t); ok(Number(m[1])); }
    });
    proc.on('exit', (c) => { clearTimeout(t); fail(new Error(`serve exited ${c}: ${text}`)); });
  });
  return { proc, port, dir, socket: join(dir, 'netplane.sock'), token: readFileSync(join(dir, 'token'), 'utf8').trim(), out: () => text };
}

// Stops the daemon; one that does not exit within 15 s of SIGTERM is killed and the test fails.
function stop(d: Daemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return Promise.resolve(d.proc.exitCode);
  return new Promise((ok, fail) => {
    const t = setTimeout(() => { d.proc.kill('SIGKILL'); fail(new Error(`the daemon did not exit on ${signal}: ${d.out()}`)); }, 15000);
    d.proc.on('exit', (code) => { clearTimeout(t); ok(code); });
    d.proc.kill(signal);
  });
}

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: any }

// One raw HTTP request, every header as given (a browser's, an attacker's).
function raw(d: Daemon, o: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer; via?: 'tcp' | 'unix'; agent?: Agent }): Promise<Reply> {
  return new Promise((ok, fail) => {
    const req = request({
      method: o.method ?? 'GET', path: o.path, headers: o.headers, agent: o.agent,
      ...(o.via === 'unix' ? { socketPath: d.socket } : { host: '127.0.0.1', port: d.port }),
    }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (s += c));
      res.on('end', () => { let body: unknown = s; try { body = JSON.parse(s); } catch { /* not JSON */ } ok({ status: res.statusCode!, headers: res.headers, body }); });
    });
    req.on('error', fail);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

// The API as the CLI uses it: the token and JSON.
const api = (d: Daemon, method: string, path: string, value?: unknown, agent?: Agent) => raw(d, {
  method, path, agent, body: value === undefined ? undefined : JSON.stringify(value),
  headers: { authorization: `Bearer ${d.token}`, ...(value === undefined ? {} : { 'content-type': 'application/json' }) },
});

const freeUdp = () => new Promise<number>((ok) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
const stateOf = (dir: string) => readFileSync(join(dir, 'state.json'), 'utf8');
const newDir = () => join(mkdtempSync(join(tmpdir(), 'netplane-sec-')), 'state');

test('a web page cannot drive the API: foreign Origin, rebinding Host, text/plain, preflight; the TCP API needs the token', async () => {
  const d = await serve(newDir());
  try {
    const before = stateOf(d.dir);
    // fetch(..., { mode: 'no-cors', method: 'POST', body }) from https://evil.example: text/plain and an Origin.
    const page = await raw(d, { method: 'POST', path: '/networks', headers: { origin: 'https://evil.example', 'content-type': 'text/plain' }, body: '{"ID":"x","Type":"NAT"}' });
    assert.is(page.status, 403);
    assert.is(page.body.error.field, 'Origin');
    // The same even with the token (a page never has it, but the Origin alone must suffice).
    const withToken = await raw(d, { method: 'DELETE', path: '/networks/nat', headers: { origin: 'https://evil.example', authorization: `Bearer ${d.token}` } });
    assert.is(withToken.status, 403);
    // DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends Host: evil.example.
    for (const method of ['GET', 'DELETE']) {
      const r = await raw(d, { method, path: '/networks/nat', headers: { host: `evil.example:${d.port}`, authorization: `Bearer ${d.token}` } });
      assert.is(r.status, 403, `${method} with a rebinding Host`);
      assert.is(r.body.error.field, 'Host');
    }
    // A CORS preflight is refused for its Origin; without one, OPTIONS is 405 with Allow.
    const pre = await raw(d, { method: 'OPTIONS', path: '/networks', headers: { origin: 'https://evil.example', 'access-control-request-method': 'PUT' } });
    assert.is(pre.status, 403);
    assert.not.ok(pre.headers['access-control-allow-origin']);
    const opt = await raw(d, { method: 'OPTIONS', path: '/networks', headers: { authorization: `Bearer ${d.token}` } });
    assert.is(opt.status, 405);
    assert.is(opt.headers.allow, 'GET, POST');
    const odd = await raw(d, { method: 'PATCH', path: '/networks/nat', headers: { authorization: `Bearer ${d.token}` } });
    assert.is(odd.status, 405);
    assert.is(odd.headers.allow, 'GET, PUT, DELETE');
    // A body that is not JSON-typed, with the token and no Origin: still refused.
    const plain = await raw(d, { method: 'POST', path: '/networks', headers: { authorization: `Bearer ${d.token}`, 'content-type': 'text/plain' }, body: '{"ID":"x","Type":"NAT"}' });
    assert.is(plain.status, 403);
    assert.is(plain.body.error.field, 'Content-Type');
    // The token: none, a wrong one, the right one.
    const none = await raw(d, { path: '/networks' });
    assert.is(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /Bearer/);
    assert.is((await raw(d, { path: '/networks', headers: { authorization: `Bearer ${'x'.repeat(d.token.length)}` } })).status, 401);
    assert.is((await api(d, 'GET', '/networks')).status, 200);
    // The unix socket needs no token: its mode says who may connect (0660), in a 0700 directory.
    assert.is((await raw(d, { path: '/networks', via: 'unix' })).status, 200);
    assert.is(lstatSync(d.socket).mode & 0o777, 0o660);
    assert.is(statSync(d.dir).mode & 0o777, 0o700);
    assert.is(statSync(join(d.dir, 'token')).mode & 0o777, 0o600);
    assert.is(stateOf(d.dir), before, 'nothing changed');
  } finally {
    await stop(d);
  }
});

test('the token is 64 hex digits, 0600, and read back as written: never a "-" first for the CLI to take as an option', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'np-token-'));
    const t = loadOrCreateToken(dir);
    assert.match(t, /^[0-9a-f]{64}$/);
    assert.is(statSync(join(dir, 'token')).mode & 0o777, 0o600);
    assert.is(loadOrCreateToken(dir), t, 'the second start reads it');
    seen.add(t);
  }
  assert.is(seen.size, 200, 'each one new');
});

test('HTTP hygiene: malformed escapes are 400, unknown paths 404, bodies over 1 MiB 413', async () => {
  const d = await serve(newDir());
  try {
    const bad = await api(d, 'GET', '/endpoints/%E0%A4%A');
    assert.is(bad.status, 400);
    assert.is(bad.body.error.field, 'path');
    assert.is((await api(d, 'GET', '/nothing')).status, 404);
    const big = await raw(d, { method: 'POST', path: '/networks', headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/json' }, body: Buffer.alloc((1 << 20) + 10, 0x20) });
    assert.is(big.status, 413);
    assert.is(big.body.error.code, 'PayloadTooLarge');
    assert.is((await api(d, 'GET', '/networks')).status, 200, 'the daemon goes on');
  } finally {
    await stop(d);
  }
});

test('paths: captures and unix sockets stay in netplane\'s directories; planted files, symlinks and netplane\'s own files are never touched', async () => {
  const dir = newDir();
  const outside = join(dir, '..', 'victim');
  writeFileSync(outside, 'precious\n');
  const d = await serve(dir, { socketDir: dir });   // sockets beside the state file: its own files must still be safe
  try {
    const before = stateOf(dir);
    const ep = (x: Record<string, unknown>) => api(d, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', ...x });
    const refused = async (x: Record<string, unknown>, field: string, reason: RegExp) => {
      const r = await ep(x);
      assert.is(r.status, 400, JSON.stringify(x));
      assert.is(r.body.error.field, field, JSON.stringify(r.body));
      assert.match(r.body.error.reason, reason);
    };
    await refused({ Capture: outside }, 'Capture', /file name in the capture directory/);
    await refused({ Capture: '../victim' }, 'Capture', /no "\/"/);
    await refused({ Capture: '..' }, 'Capture', /leading "\."/);
    await refused({ Transport: { Type: 'stream', Listen: `unix:${outside}` } }, 'Transport.Listen', /file name in the sockets directory/);
    for (const own of ['state.json', 'token', 'lock', 'netplane.sock', 'owned.json']) {
      await refused({ Transport: { Type: 'stream', Listen: `unix:${own}` } }, 'Transport.Listen', /netplane's own file/);
    }
    // A symlink planted in the capture directory, and a regular file netplane did not make.
    symlinkSync(outside, join(dir, 'captures', 'trap.pcap'));
    await refused({ Capture: 'trap.pcap' }, 'Capture', /netplane did not create it \(a symbolic link\)/);
    writeFileSync(join(dir, 'captures', 'theirs.pcap'), 'not ours');
    await refused({ Capture: 'theirs.pcap' }, 'Capture', /netplane did not create it \(a regular file\)/);
    // A unix listen path at an existing regular file.
    writeFileSync(join(dir, 'planted'), 'keep me');
    await refused({ Transport: { Type: 'stream', Listen: 'unix:planted' } }, 'Transport.Listen', /netplane did not create it \(a regular file\)/);
    assert.is(readFileSync(outside, 'utf8'), 'precious\n');
    assert.is(readFileSync(join(dir, 'captures', 'theirs.pcap'), 'utf8'), 'not ours');
    assert.is(readFileSync(join(dir, 'planted'), 'utf8'), 'keep me');
    assert.is(stateOf(dir), before, 'no refused change reached state.json');
    assert.is((await api(d, 'GET', '/endpoints')).body.length, 0);
    assert.is((await api(d, 'GET', '/networks')).status, 200, 'the API socket and state are as they were');
    // What netplane makes itself is fine: a capture (0600) and a socket; deleting the endpoint
    // removes the socket it made, and the capture (the user's data) stays.
    const ok = await ep({ Capture: 'vm.pcap', Transport: { Type: 'stream', Listen: 'unix:vm.sock' } });
    assert.is(ok.status, 201, JSON.stringify(ok.body));
    assert.is(ok.body.Status.Transport, 'up');
    assert.is(ok.body.Status.Address, `unix:${join(dir, 'vm.sock')}`);
    assert.is(statSync(join(dir, 'captures', 'vm.pcap')).mode & 0o777, 0o600);
    assert.ok(lstatSync(join(dir, 'vm.sock')).isSocket());
    assert.is((await api(d, 'DELETE', '/endpoints/vm')).status, 200);
    assert.not.ok(existsSync(join(dir, 'vm.sock')));
    assert.ok(existsSync(join(dir, 'captures', 'vm.pcap')));
  } finally {
    await stop(d);
  }
});

test('binding policy: loopback only, no wildcard, no privileged port, unless the config allows them', async () => {
  const dir = newDir();
  const d = await serve(dir);
  const p = await freeUdp();
  try {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ Type: 'udp', Bind: `0.0.0.0:${p}` }, 'Transport.Bind', /every interface.*allowWildcard/],
      [{ Type: 'udp', Bind: `[::]:${p}` }, 'Transport.Bind', /every interface/],
      [{ Type: 'udp', Bind: `10.1.2.3:${p}` }, 'Transport.Bind', /not a loopback address.*allowAddresses/],
      [{ Type: 'udp', Bind: 'example.com:5000' }, 'Transport.Bind', /IP address or localhost/],
      [{ Type: 'udp', Bind: '127.0.0.1:80' }, 'Transport.Bind', /privileged port.*allowPrivilegedPorts/],
      [{ Type: 'udp', Bind: `127.0.0.1:${p}`, Peer: '192.0.2.1:5000' }, 'Transport.Peer', /not a loopback address/],
      [{ Type: 'stream', Listen: 'tcp:0.0.0.0:5555' }, 'Transport.Listen', /every interface/],
      [{ Type: 'websocket', Listen: '127.0.0.1:443' }, 'Transport.Listen', /privileged/],
      [{ Type: 'websocket', Listen: '127.0.0.1:8765', AllowedOrigins: ['*'] }, 'Transport.AllowedOrigins[0]', /must be an origin/],
    ];
    for (const [t, field, reason] of cases) {
      const r = await api(d, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: t });
      assert.is(r.status, 400, JSON.stringify(t));
      assert.is(r.body.error.field, field, JSON.stringify(r.body));
      assert.match(r.body.error.reason, reason);
    }
    assert.is((await api(d, 'GET', '/endpoints')).body.length, 0);
  } finally {
    await stop(d);
  }
  // The config can allow a privileged port (and the change then goes through).
  const d2 = await serve(dir, { transports: { allowPrivilegedPorts: true } });
  try {
    const r = await api(d2, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: '127.0.0.1:999' } });
    assert.is(r.status, 201, JSON.stringify(r.body));
  } finally {
    await stop(d2);
  }
});

test('create is idempotent only for the same body: otherwise 409 naming the first differing field', async () => {
  const d = await serve(newDir());
  try {
    const web = { ID: 'web', HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] };
    assert.is((await api(d, 'POST', '/endpoints', web)).status, 201);
    const same = await api(d, 'POST', '/endpoints', web);
    assert.is(same.status, 201);
    assert.equal(same.body.Policies, web.Policies);
    const other = await api(d, 'POST', '/endpoints', { ID: 'web', HostComputeNetwork: 'nat' });
    assert.is(other.status, 409);
    assert.equal([other.body.error.code, other.body.error.field], ['AlreadyExists', 'Policies']);
  } finally {
    await stop(d);
  }
});

test('1000 concurrent mixed requests with conflicting transports: one writer, state.json equals the live state, and it restarts', async () => {
  const dir = newDir();
  let d = await serve(dir);
  const ports = await Promise.all([freeUdp(), freeUdp(), freeUdp(), freeUdp()]);
  const agent = new Agent({ keepAlive: true, maxSockets: 48 });
  try {
    const reqs: Array<Promise<Reply>> = [];
    for (let i = 0; i < 1000; i++) {
      const id = `e${i % 40}`;
      const kind = i % 5;
      if (kind === 0) reqs.push(api(d, 'POST', '/endpoints', { ID: id, HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${ports[i % ports.length]}` } }, agent));
      else if (kind === 1) reqs.push(api(d, 'POST', '/endpoints', { ID: id, HostComputeNetwork: 'nat', Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 9000 + (i % 7) } }] }, agent));
      else if (kind === 2) reqs.push(api(d, 'DELETE', `/endpoints/${id}`, undefined, agent));
      else if (kind === 3) reqs.push(api(d, 'PUT', `/endpoints/${id}`, { ID: id, HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${ports[(i + 1) % ports.length]}` } }, agent));
      else reqs.push(api(d, 'GET', i % 2 ? '/endpoints' : '/stats', undefined, agent));
    }
    const replies = await Promise.all(reqs);
    const statuses = new Map<number, number>();
    for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    assert.ok([...statuses.keys()].every((s) => [200, 201, 400, 404, 409].includes(s)), JSON.stringify([...statuses]));
    assert.ok((statuses.get(201) ?? 0) > 0 && (statuses.get(400) ?? 0) > 0, `some created, some refused: ${JSON.stringify([...statuses])}`);
    const live = (await api(d, 'GET', '/endpoints', undefined, agent)).body as Array<Record<string, any>>;
    const saved = JSON.parse(stateOf(dir)).endpoints as Array<Record<string, unknown>>;
    assert.equal(saved, live.map(({ Status: _s, ...e }) => e), 'state.json is the live state');
    const bound = live.filter((e) => e.Transport).map((e) => e.Transport.Bind);
    assert.is(new Set(bound).size, bound.length, 'no two endpoints hold one address');
    assert.ok(live.every((e) => !e.Transport || e.Status.Transport === 'up'), JSON.stringify(live.map((e) => e.Status)));
    agent.destroy();
    assert.is(await stop(d), 0);
    d = await serve(dir);
    const again = (await api(d, 'GET', '/endpoints')).body as Array<Record<string, any>>;
    assert.equal(again.map(({ Status: _s, ...e }) => e), saved, 'the same objects after a restart');
    assert.ok(again.every((e) => !e.Transport || e.Status.Transport === 'up'), JSON.stringify(again.map((e) => e.Status)));
  } finally {
    agent.destroy();
    await stop(d);
  }
});

test('one daemon per state directory: a second one is refused with the first one\'s pid, and touches nothing', async () => {
  const d = await serve(newDir());
  try {
    const second = spawn(process.execPath, [bin, 'serve', '--state-dir', d.dir, '--port', '0'], { cwd: root });
    let err = '';
    second.stderr!.on('data', (c) => (err += c));
    const code = await new Promise<number | null>((ok) => second.on('exit', ok));
    assert.is(code, 1);
    assert.match(err, new RegExp(`another netplane daemon \\(pid ${d.proc.pid}\\) is serving`));
    assert.ok(lstatSync(d.socket).isSocket(), 'the first one\'s socket is still there');
    assert.is((await raw(d, { path: '/networks', via: 'unix' })).status, 200, 'and it still answers');
  } finally {
    await stop(d);
  }
});

test('kill -9 in a loop while a client makes changes: every acknowledged change is there after each restart, no temporary file is left', async () => {
  const dir = newDir();
  const acknowledged = new Set<string>();
  for (let round = 0; round < 5; round++) {
    const d = await serve(dir);
    const left = readdirSync(dir).filter((f) => f.endsWith('.tmp'));
    assert.equal(left, [], `round ${round}: no temporary file after the start`);
    const live = new Set(((await api(d, 'GET', '/endpoints')).body as Array<{ ID: string }>).map((e) => e.ID));
    for (const id of acknowledged) assert.ok(live.has(id), `round ${round}: ${id} was acknowledged and is there`);
    let stopAt = 8 + round * 3, n = 0;
    const client = (async () => {
      for (;;) {
        const id = `r${round}-${n++}`;
        try {
          const r = await raw(d, { method: 'POST', path: '/endpoints', via: 'unix', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ID: id, HostComputeNetwork: 'nat' }) });
          if (r.status === 201) acknowledged.add(id);
        } catch { return; }
        if (--stopAt === 0) d.proc.kill('SIGKILL');
      }
    })();
    await client;
    await stop(d, 'SIGKILL');
  }
  const d = await serve(dir);
  try {
    const live = new Set(((await api(d, 'GET', '/endpoints')).body as Array<{ ID: string }>).map((e) => e.ID));
    assert.ok(acknowledged.size >= 40, `${acknowledged.size} acknowledged`);
    for (const id of acknowledged) assert.ok(live.has(id), `${id} was acknowledged and is there`);
  } finally {
    await stop(d);
  }
});

const gatewayArp = (mac: string) => ethernet({ src: mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: mac, senderIp: '172.20.0.2', targetIp: '172.20.0.1' }) });
const framed = (f: Uint8Array) => { const b = Buffer.alloc(4 + f.length); b.writeUInt32BE(f.length); b.set(f, 4); return b; };

test('a stream port has one client: a second one is refused and the first keeps its port', async () => {
  const d = await serve(newDir());
  try {
    const ep = await api(d, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'stream', Listen: 'unix:vm.sock' } });
    assert.is(ep.status, 201, JSON.stringify(ep.body));
    const path = join(d.dir, 'sockets', 'vm.sock');
    const first = connect(path);
    const got: Buffer[] = [];
    first.on('data', (c) => got.push(c));
    await new Promise((r) => first.once('connect', r));
    first.write(framed(gatewayArp(ep.body.MacAddress)));
    for (let i = 0; i < 100 && got.length === 0; i++) await wait(20);
    assert.ok(got.length > 0, 'the gateway answered the first client');
    const second = connect(path);
    const closed = await new Promise<boolean>((ok) => { second.on('close', () => ok(true)); second.on('error', () => {}); setTimeout(() => ok(false), 15000); });
    assert.ok(closed, 'the second client was disconnected');
    got.length = 0;
    first.write(framed(gatewayArp(ep.body.MacAddress)));
    for (let i = 0; i < 100 && got.length === 0; i++) await wait(20);
    assert.ok(got.length > 0, 'the first client still has its port');
    assert.is(dissect(new Uint8Array(got[0].subarray(4))).arp!.op, 2);
    const stats = (await api(d, 'GET', '/stats')).body;
    const t = stats.transports.find((x: { endpoint: string }) => x.endpoint === 'vm');
    assert.is(t.refusals, 1);
    assert.is(t.connects, 1);
    first.destroy();
  } finally {
    await stop(d);
  }
});

test('WebSocket: an oversized message closes the client, a foreign Origin is refused, allowed ones connect', async () => {
  const d = await serve(newDir());
  const port = await freeUdp();   // a free number; TCP on it is almost surely free too
  try {
    const ep = await api(d, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'websocket', Listen: `127.0.0.1:${port}`, AllowedOrigins: ['https://vm.example'] } });
    assert.is(ep.status, 201, JSON.stringify(ep.body));
    const url = `ws://127.0.0.1:${port}/`;
    const refusedStatus = await new Promise<number>((ok) => {
      const ws = new WebSocket(url, { origin: 'https://evil.example' });
      ws.on('unexpected-response', (_req, res) => ok(res.statusCode!));
      ws.on('error', () => {});
      ws.on('open', () => ok(101));
    });
    assert.is(refusedStatus, 403);
    const ws = new WebSocket(url, { origin: 'https://vm.example' });
    await new Promise((ok, fail) => { ws.on('open', ok); ws.on('error', fail); });
    const code = await new Promise<number>((ok) => { ws.on('close', (c) => ok(c)); ws.send(Buffer.alloc(70000)); });
    assert.is(code, 1009, 'message too big');
    const t = (await api(d, 'GET', '/stats')).body.transports.find((x: { endpoint: string }) => x.endpoint === 'vm');
    assert.is(t.refusals, 1);
    assert.ok(t.rxRefused >= 1);
    assert.is(t.rxFrames, 0, 'nothing of it reached the switch');
  } finally {
    await stop(d);
  }
});

test('an attached guest stays attached while its endpoint and its network are modified through the API', async () => {
  const d = await serve(newDir());
  const port = await freeUdp();
  const vm = createSocket('udp4');
  try {
    const ep = await api(d, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${port}` } });
    assert.is(ep.status, 201, JSON.stringify(ep.body));
    const got: Buffer[] = [];
    vm.on('message', (m) => got.push(m));
    await new Promise<void>((ok) => vm.bind(0, '127.0.0.1', () => ok()));
    const answered = async (what: string) => {
      got.length = 0;
      vm.send(gatewayArp(ep.body.MacAddress), port, '127.0.0.1');
      for (let i = 0; i < 150 && got.length === 0; i++) await wait(20);
      assert.ok(got.length > 0, `the gateway answered ${what}`);
      assert.is(dissect(new Uint8Array(got[0])).arp!.op, 2);
    };
    await answered('before any change');
    const since = ep.body.Status.Since;
    const pm = await api(d, 'PUT', '/endpoints/vm', { ...ep.body, Policies: [{ Type: 'PortMapping', Settings: { Protocol: 6, InternalPort: 80, ExternalPort: 8080 } }] });
    assert.is(pm.status, 200, JSON.stringify(pm.body));
    await answered('after the endpoint got a port mapping');
    const net = (await api(d, 'GET', '/networks/nat')).body;
    const acl = await api(d, 'PUT', '/networks/nat', { ...net, Policies: [{ Type: 'NetworkACL', Settings: { Action: 'Allow', Direction: 'In', Priority: 100 } }] });
    assert.is(acl.status, 200, JSON.stringify(acl.body));
    await answered('after the network got an ACL');
    const after = (await api(d, 'GET', '/endpoints/vm')).body;
    assert.is(after.Status.Transport, 'up');
    assert.is(after.Status.Since, since, 'the transport was never reopened');
  } finally {
    vm.close();
    await stop(d);
  }
});

test('degraded, not dead: an endpoint whose port is taken at start leaves the host running, says why, and attaches when the port is free', async () => {
  const dir = newDir();
  const port = await freeUdp();
  let d = await serve(dir);
  let squatter: UdpSocket | undefined;
  try {
    assert.is((await api(d, 'POST', '/endpoints', { ID: 'vm', HostComputeNetwork: 'nat', Transport: { Type: 'udp', Bind: `127.0.0.1:${port}` } })).status, 201);
    assert.is((await api(d, 'POST', '/endpoints', { ID: 'other', HostComputeNetwork: 'nat' })).status, 201);
    await stop(d);
    squatter = createSocket('udp4');
    await new Promise<void>((ok) => squatter!.bind(port, '127.0.0.1', () => ok()));
    d = await serve(dir);
    const vm = (await api(d, 'GET', '/endpoints/vm')).body;
    assert.is(vm.Status.Transport, 'degraded');
    assert.match(vm.Status.Reason, /Transport\.Bind: .*EADDRINUSE/);
    assert.match(d.out(), /endpoint vm: degraded/);
    assert.is((await api(d, 'GET', '/endpoints/other')).status, 200, 'the rest of the host runs');
    const t = (await api(d, 'GET', '/stats')).body.transports.find((x: { endpoint: string }) => x.endpoint === 'vm');
    assert.is(t.Transport, 'degraded');
    await new Promise<void>((ok) => squatter!.close(() => ok()));
    squatter = undefined;
    let status = '';
    for (let i = 0; i < 60 && status !== 'up'; i++) { await wait(250); status = (await api(d, 'GET', '/endpoints/vm')).body.Status.Transport; }
    assert.is(status, 'up', 'retried and attached');
  } finally {
    squatter?.close();
    await stop(d);
  }
});

test('the TCP API stays on loopback: a config asking for another address is refused before anything is made', async () => {
  const dir = newDir();
  for (const host of ['0.0.0.0', '::', '192.0.2.1']) {
    const file = join(dir, '..', `wide-${host.replace(/[^0-9a-z]/g, '_')}.json`);
    writeFileSync(file, JSON.stringify({ stateDir: dir, listen: { host } }));
    const p = spawn(process.execPath, [bin, 'serve', '--config', file], { cwd: root });
    let err = '';
    p.stderr!.on('data', (c) => (err += c));
    assert.is(await new Promise((ok) => p.on('exit', ok)), 1, host);
    assert.match(err, /listen\.host: the API listens on loopback only/);
  }
  assert.not.ok(existsSync(dir), 'no state directory was made');
});

test('start: a missing state directory is made 0700; a world-writable one is refused with the reason', async () => {
  const base = mkdtempSync(join(tmpdir(), 'netplane-sec-'));
  const dir = join(base, 'a', 'b');
  const d = await serve(dir);
  assert.is(statSync(dir).mode & 0o777, 0o700);
  await stop(d);
  const open = join(base, 'open');
  const { mkdirSync, chmodSync } = await import('node:fs');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const p = spawn(process.execPath, [bin, 'serve', '--state-dir', open, '--port', '0'], { cwd: root });
  let err = '';
  p.stderr!.on('data', (c) => (err += c));
  assert.is(await new Promise((ok) => p.on('exit', ok)), 1);
  assert.match(err, /can be written by other users/);
  assert.equal(readdirSync(open), [], 'nothing was written there');
});

test.run();
