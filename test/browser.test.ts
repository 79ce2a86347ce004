// The browser entry (build/dist/web.js, `netplane/web`) in a real browser: Debian's chromium, headless,
// driven by playwright-core. A tiny static server on 127.0.0.1 serves the built bundle and the .wasm of
// the build under test (NETPLANE_BUILD), as a web server would; the page imports the bundle, builds
// switches and reports back through page.evaluate. Then a page's switch joins a real daemon's network
// through the WebSocket client transport and talks to its gateway.
//
// No Chromium is a failure that says how to install it, never a skip: this is the test that says the
// SDK runs in a browser.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Daemon } from '../src/daemon.js';
import type * as Web from '../src/web.ts';
import type { HostComputeEndpoint } from '../src/model/types.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'build', 'dist');
const build: 'debug' | 'release' = process.env.NETPLANE_BUILD === 'debug' ? 'debug' : 'release';
const CHROMIUM = process.env.NETPLANE_CHROMIUM ?? '/usr/bin/chromium';
const HOW_TO_INSTALL = `install Debian's chromium: \`sudo apt-get install -y chromium\` (scripts/install-test-deps.sh does it), or set NETPLANE_CHROMIUM to a Chromium binary`;

// ---- the static server: the bundle, the two .wasm files, and an empty page --------------------------

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.map': 'application/json', '.wasm': 'application/wasm', '.html': 'text/html' };
const served: string[] = [];

function serve(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    served.push(path);
    let file: string | undefined, type: string | undefined;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><meta charset="utf-8"><title>netplane in the browser</title>');
      return;
    }
    if (path.startsWith('/dist/')) file = resolve(dist, path.slice(6));
    const wasm = /^\/(untyped\/)?(netplane\.(debug|release)\.wasm)$/.exec(path);
    if (wasm) {
      file = join(root, 'build', wasm[2]);
      // /untyped/ is a server that does not know .wasm: the loader must not need application/wasm.
      if (wasm[1]) type = 'application/octet-stream';
    }
    if (!file || !(file.startsWith(dist + sep) || wasm) || !existsSync(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': type ?? TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    const a = server.address() as { port: number };
    ok({ server, origin: `http://127.0.0.1:${a.port}` });
  }));
}

// ---- the browser ----------------------------------------------------------------------------------------

let browser: BrowserContext | undefined;
let profile: string | undefined;
let site: { server: Server; origin: string } | undefined;

async function page(): Promise<Page> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: ${HOW_TO_INSTALL}`);
  for (const f of [join(dist, 'web.js'), join(root, 'build', `netplane.${build}.wasm`)]) {
    if (!existsSync(f)) throw new Error(`${f} is not built: run \`npm run build\``);
  }
  site ??= await serve();
  // A fresh profile (--user-data-dir) each run: playwright passes it, with the flags below.
  profile ??= mkdtempSync(join(tmpdir(), 'netplane-chromium-'));
  browser ??= await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  }).catch((e: Error) => { throw new Error(`Chromium at ${CHROMIUM} did not start: ${e.message}\n(${HOW_TO_INSTALL})`); });
  const p = await browser.newPage();
  const errors: string[] = [];
  p.on('pageerror', (e) => errors.push(e.message));
  // tsx names functions with an __name helper that the page does not have; the page functions below
  // are written here in TypeScript and sent as source.
  await p.addInitScript('globalThis.__name = (f) => f;');
  await p.goto(`${site.origin}/`);
  return p;
}

// Runs fn in the page with the web bundle's module, as a page script would import it.
function inPage<A, R>(p: Page, fn: (web: typeof Web, arg: A) => Promise<R>, arg: A): Promise<R> {
  return p.evaluate(`import('/dist/web.js').then((web) => (${fn.toString()})(web, ${JSON.stringify(arg)}))`) as Promise<R>;
}

function freeTcpPort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createTcpServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address() as { port: number }; s.close(() => ok(port)); });
  });
}

// ---- the bundle ---------------------------------------------------------------------------------------

test('the web bundle imports nothing but its own chunks: no node: module, no ws, no package', () => {
  const seen = new Set<string>();
  const specifiers: string[] = [];
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const code = readFileSync(join(dist, file), 'utf8');
    for (const m of code.matchAll(/(?:^|[;\s])(?:import|export)\s*(?:[\w${},*\s]+?\s*from\s*)?['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      specifiers.push(`${file}: ${spec}`);
      if (spec.startsWith('./')) walk(spec.slice(2));
    }
    assert.not.match(code, /['"]node:[a-z_/]+['"]/, `${file} names a node: module`);
  };
  walk('web.js');
  assert.ok(seen.size >= 2, `web.js and its chunks: ${[...seen].join(', ')}`);
  const foreign = specifiers.filter((s) => !s.split(': ')[1].startsWith('./'));
  assert.equal(foreign, [], 'only relative imports of the bundle\'s own chunks');
  const types = readFileSync(join(dist, 'web.d.ts'), 'utf8');
  assert.not.match(types, /from\s*['"](node:|ws['"])|reference types="node"/, 'web.d.ts refers to no node: module nor ws');
  for (const name of ['Switch', 'createSwitch', 'compileModule', 'WebSocketClientTransport', 'PcapRecorder', 'readPcap', 'dissect', 'compileAcl']) {
    assert.match(types, new RegExp(`\\b${name}\\b`), `web.d.ts declares ${name}`);
  }
});

// ---- (a) a page's switch ------------------------------------------------------------------------------

test('a page builds a switch with the web entry: learning, flooding, the spoof guard, the gateway, a capture', async () => {
  const p = await page();
  served.length = 0;
  const r = await inPage(p, async (web, build) => {
    const { Switch, ethernet, ipv4, udp, arp, dissect, compileModule, PcapRecorder, readPcap } = web;
    const out: Record<string, unknown> = { process: typeof (globalThis as { process?: unknown }).process };
    try { new Switch({ build }); } catch (e) { out.withoutModule = (e as Error).message; }
    const sw = await Switch.create({ build });   // the package's own module, fetched from beside the bundle
    out.build = sw.dp.build;
    const a = sw.addPort({ network: 1, mac: '02:00:00:00:00:0a' });
    const b = sw.addPort({ network: 1 });
    const c = sw.addPort({ network: 1 });
    const other = sw.addPort({ network: 2 });
    const rec = new PcapRecorder();
    const stop = sw.capture(b.id, rec);
    const frame = (src: string, dst: string) => ethernet({ src, dst, payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1000, dstPort: 2000, payload: new Uint8Array(18) }) }) });
    const got = () => ({ a: a.receive().length, b: b.receive().length, c: c.receive().length, other: other.receive().length });
    a.send(frame('02:00:00:00:00:0a', 'ff:ff:ff:ff:ff:ff'));
    sw.flush(1000);
    out.broadcast = got();
    b.send(frame('02:00:00:00:00:0b', '02:00:00:00:00:0a'));
    sw.flush(1001);
    out.learned = got();
    c.send(frame('02:00:00:00:00:0c', '02:00:00:00:00:99'));
    sw.flush(1002);
    out.unknown = got();
    a.send(frame('02:00:00:00:00:ee', 'ff:ff:ff:ff:ff:ff'));
    sw.flush(1003);
    out.spoofed = got();
    out.macTable = sw.macTable().map((e) => `${e.mac} net ${e.network} port ${e.port}`);
    out.drops = sw.counters().drops;
    out.portA = a.counters();
    sw.router.addInterface({ network: 1, address: '10.0.0.254/24' });
    a.send(ethernet({ src: '02:00:00:00:00:0a', dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: '02:00:00:00:00:0a', senderIp: '10.0.0.1', targetIp: '10.0.0.254' }) }));
    sw.flush(1004);
    out.arpReply = a.receive().map((f) => dissect(f).arp);
    out.trace = sw.trace(b.id, frame('02:00:00:00:00:0b', '02:00:00:00:00:0a'), 1005).output.map((o) => o.port);
    stop();
    out.capture = readPcap(rec.bytes()).records.map((x) => dissect(x.data).src);
    // One compiled module, many switches; bytes; a server that does not say application/wasm.
    const module = await compileModule(`/untyped/netplane.${build}.wasm`);
    const s2 = new Switch({ module, build });
    const bytes = await (await fetch(`/netplane.${build}.wasm`)).arrayBuffer();
    const s3 = await web.createSwitch({ wasm: bytes, build });
    out.independent = [s2.macTable().length, s3.macTable().length, sw.macTable().length];
    return out;
  }, build);
  assert.is(r.process, 'undefined', 'a browser, not Node');
  assert.match(String(r.withoutModule), /module: .*Switch\.create/, 'new Switch() without a module says what to use');
  assert.is(r.build, build);
  assert.ok(served.includes(`/netplane.${build}.wasm`), `the ${build} module was fetched: ${served.join(' ')}`);
  assert.ok(!served.includes(`/netplane.${build === 'debug' ? 'release' : 'debug'}.wasm`), 'and not the other one');
  assert.equal(r.broadcast, { a: 0, b: 1, c: 1, other: 0 }, 'a broadcast floods its network, not back, not across');
  assert.equal(r.learned, { a: 1, b: 0, c: 0, other: 0 }, 'a learned MAC is forwarded to its port only');
  assert.equal(r.unknown, { a: 1, b: 1, c: 0, other: 0 }, 'an unknown unicast floods');
  assert.equal(r.spoofed, { a: 0, b: 0, c: 0, other: 0 }, 'a foreign source MAC on a guarded port goes nowhere');
  assert.equal(r.macTable, ['02:00:00:00:00:0a net 1 port 0', '02:00:00:00:00:0b net 1 port 1', '02:00:00:00:00:0c net 1 port 2']);
  assert.is((r.drops as Record<string, number>).mac_spoof, 1);
  assert.is((r.portA as { rxPackets: number }).rxPackets, 2);
  const reply = (r.arpReply as Array<{ op: number; senderIp: string; targetMac: string }>)[0];
  assert.ok(reply && reply.op === 2 && reply.senderIp === '10.0.0.254' && reply.targetMac === '02:00:00:00:00:0a', `the gateway answered ARP: ${JSON.stringify(r.arpReply)}`);
  assert.equal(r.trace, [0], 'trace: to the learned port');
  assert.equal(r.capture, ['02:00:00:00:00:0a', '02:00:00:00:00:0b', '02:00:00:00:00:0c', '02:00:00:00:00:0a'], 'the in-memory capture of port b, both directions');
  assert.equal(r.independent, [0, 0, 4], 'switches from one module share nothing (the first has 3 MACs and its gateway)');
  assert.ok(served.includes(`/untyped/netplane.${build}.wasm`));
});

// ---- (b) a page's switch on a daemon's network --------------------------------------------------------

test('a page\'s switch joins a daemon\'s network over WebSocket: ARP and ping the gateway; a foreign Origin is refused', async () => {
  const p = await page();
  const origin = site!.origin;
  const dir = mkdtempSync(join(tmpdir(), 'netplane-browser-daemon-'));
  const d = new Daemon({ stateDir: dir, listen: { port: 0, socket: false }, defaults: { network: true } });
  try {
    await d.listen();
    const [wsPort, strangerPort] = [await freeTcpPort(), await freeTcpPort()];
    const ep = await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'page', HostComputeNetwork: 'nat', Transport: { Type: 'websocket', Listen: `127.0.0.1:${wsPort}`, AllowedOrigins: [origin] } } }) as HostComputeEndpoint;
    await d.host.change({ op: 'create', kind: 'endpoint', value: { ID: 'stranger', HostComputeNetwork: 'nat', Transport: { Type: 'websocket', Listen: `127.0.0.1:${strangerPort}`, AllowedOrigins: ['https://elsewhere.example'] } } });
    const mac = ep.MacAddress!, ip = ep.IpConfigurations![0].IpAddress;
    const r = await inPage(p, async (web, a) => {
      const { Switch, WebSocketClientTransport, ethernet, arp, ipv4, icmp, dissect } = web;
      const sw = await Switch.create({ build: a.build });
      const vm = sw.addPort({ network: 1, mac: a.mac });        // the page's "guest", with the endpoint's MAC
      const uplink = sw.addPort({ network: 1 });                 // to the daemon
      const got: Uint8Array[] = [];
      vm.onFrame((f) => got.push(f.slice()));
      const states: string[] = [];
      const t = await WebSocketClientTransport.connect(sw, uplink, { url: `ws://127.0.0.1:${a.wsPort}/`, log: () => {} });
      t.onstatechange = (s) => states.push(s);
      const until = async (ok: () => boolean, what: string) => {
        for (let i = 0; i < 250 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
        if (!ok()) throw new Error(`no ${what} in 5 s; transport ${JSON.stringify(t.stats)}, frames ${got.length}`);
      };
      vm.send(ethernet({ src: a.mac, dst: 'ff:ff:ff:ff:ff:ff', payload: arp({ op: 'request', senderMac: a.mac, senderIp: a.ip, targetIp: '172.20.0.1' }) }));
      sw.flush();
      await until(() => got.some((f) => dissect(f).arp?.op === 2), 'ARP reply from the gateway');
      const reply = dissect(got.find((f) => dissect(f).arp?.op === 2)!).arp!;
      vm.send(ethernet({ src: a.mac, dst: reply.senderMac, payload: ipv4({ src: a.ip, dst: '172.20.0.1', payload: icmp({ type: 8, id: 0x4e50, seq: 1, payload: new TextEncoder().encode('netplane in a page') }) }) }));
      sw.flush();
      await until(() => got.some((f) => dissect(f).icmp?.type === 0), 'echo reply from the gateway');
      const echo = dissect(got.find((f) => dissect(f).icmp?.type === 0)!);
      let refused = '';
      try {
        await WebSocketClientTransport.connect(sw, sw.addPort({ network: 3 }), { url: `ws://127.0.0.1:${a.strangerPort}/`, log: () => {} });
      } catch (e) { refused = (e as Error).message; }
      const stats = { ...t.stats };
      t.close();
      return { reply, echo: { src: echo.ipv4!.src, dst: echo.ipv4!.dst, id: echo.icmp!.id, seq: echo.icmp!.seq, payload: new TextDecoder().decode(echo.payload) }, stats, refused, states, state: t.state };
    }, { build, mac, ip, wsPort, strangerPort });
    assert.is(r.reply.senderIp, '172.20.0.1');
    assert.is(r.reply.targetMac, mac.toLowerCase().replace(/-/g, ':'));
    assert.equal(r.echo, { src: '172.20.0.1', dst: ip, id: 0x4e50, seq: 1, payload: 'netplane in a page' }, 'the gateway answered the ping');
    assert.ok(r.stats.txFrames >= 2 && r.stats.rxFrames >= 2 && r.stats.connects === 1 && r.stats.txDropped === 0, `page transport counters: ${JSON.stringify(r.stats)}`);
    assert.match(r.refused, /could not connect/, 'the page hears that the stranger endpoint refused it');
    assert.equal(r.states, ['closed']);
    const stats = d.host.transportStats();
    const mine = stats.find((s) => s.endpoint === 'page') as Record<string, number>;
    const stranger = stats.find((s) => s.endpoint === 'stranger') as Record<string, number>;
    assert.ok(mine.rxFrames >= 2 && mine.txFrames >= 2 && mine.connects === 1, `daemon side: ${JSON.stringify(mine)}`);
    assert.is(stranger.refusals, 1, 'the daemon refused the page\'s Origin');
    assert.is(stranger.connects, 0);
  } finally {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('close the browser', async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await new Promise<void>((ok) => (site ? site.server.close(() => ok()) : ok()));
});

test.run();
