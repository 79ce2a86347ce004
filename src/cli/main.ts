// The `netplane` command: `serve` runs the daemon (src/daemon.ts); the object and view commands are
// its client, printing human tables or, with --json, the API's JSON; `demo` drives a real switch (the
// release WebAssembly build) with generated traffic, narrated step by step. Nothing is canned: every
// line comes from the dataplane or the daemon.
import { Switch, type SwitchPort } from '../dataplane.js';
import { arp, ethernet, ipv4, udp, tcp, icmp, dissect } from '../frames.js';
import { Daemon, readConfig, DEFAULT_PORT, type DaemonConfig } from '../daemon.js';
import { request as httpRequest } from 'node:http';
import { readFileSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { LockedError } from '../confine.js';

const HELP = `netplane — a software-defined host network in WebAssembly

usage: netplane <command> [arguments] [--json] [--state-dir DIR | --socket PATH | --url URL [--token T]]

daemon:
  serve [--config FILE] [--state-dir DIR] [--port N] [--socket PATH]
                         run the host network and its management API (npm start runs this
                         with an embedded default: one NAT network with a gateway)
objects (HCN-shaped; JSON is inline, @file, or - for standard input):
  network   list | get ID | create JSON | modify ID JSON | delete ID
  endpoint  list | get ID | create JSON | modify ID JSON | delete ID
  namespace list | get ID | create JSON | delete ID
  lb        list | get ID | create JSON | modify ID JSON | delete ID
views:
  mac                    the MAC table
  ct                     the connection table (like conntrack -L)
  stats                  counters and drops by reason
  trace --port N --frame HEX
                         every stage's decision for one frame (nothing changes)
other:
  demo                   the switch and the NAT mode on generated traffic, narrated
  help                   this text

The client talks to the daemon through the unix socket of its state directory (--state-dir, default
.netplane), or --socket PATH, or over TCP at --url (default http://127.0.0.1:${DEFAULT_PORT}) with the
token from the state directory (or --token / NETPLANE_TOKEN).
Exit codes: 0 done, 1 refused by the daemon (the error names the field), 2 usage, 3 no daemon.
`;

const OBJECTS: Record<string, string> = { network: 'networks', endpoint: 'endpoints', namespace: 'namespaces', lb: 'loadbalancers' };

export async function main(argv: string[]): Promise<number> {
  const { args, flags } = parseArgs(argv);
  const cmd = args[0] ?? 'help';
  try {
    if (cmd === 'demo') return demo();
    if (cmd === 'serve') return await serve(flags);
    if (cmd === 'help' || flags.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (OBJECTS[cmd]) return await objectCommand(cmd, args.slice(1), flags);
    if (cmd === 'mac' || cmd === 'ct' || cmd === 'stats' || cmd === 'trace') return await viewCommand(cmd, flags);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`netplane: ${e.message}\n\n${HELP}`);
      return 2;
    }
    if (e instanceof NoDaemon) {
      process.stderr.write(`netplane: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
  process.stderr.write(`netplane: unknown command "${cmd}"\n\n${HELP}`);
  return 2;
}

class UsageError extends Error {}
class NoDaemon extends Error {}

type Flags = Record<string, string | boolean>;

function parseArgs(argv: string[]): { args: string[]; flags: Flags } {
  const args: string[] = [];
  const flags: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') flags.help = true;
    else if (a === '--json') flags.json = true;
    else if (a === '--no-default-network') flags['no-default-network'] = true;
    else if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2);
      flags[k] = v ?? argv[++i] ?? '';
    } else args.push(a);
  }
  return { args, flags };
}

async function serve(flags: Flags): Promise<number> {
  const base: DaemonConfig = typeof flags.config === 'string' ? readConfig(flags.config) : { stateDir: '.netplane', defaults: { network: true } };
  const config: DaemonConfig = {
    ...base,
    stateDir: typeof flags['state-dir'] === 'string' ? flags['state-dir'] : base.stateDir,
    listen: {
      ...base.listen,
      ...(typeof flags.port === 'string' ? { port: Number(flags.port) } : {}),
      ...(typeof flags.socket === 'string' ? { socket: flags.socket } : {}),
    },
    defaults: { network: !flags['no-default-network'] && (base.defaults?.network ?? false) },
  };
  let d: Daemon;
  try {
    d = new Daemon(config);
    await d.listen();
  } catch (e) {
    process.stderr.write(`netplane: ${e instanceof LockedError ? e.message : `cannot serve: ${(e as Error).message}`}\n`);
    return 1;
  }
  const nets = d.host.store.list('network').map((n) => `${n.ID} (${n.Type})`).join(', ') || 'none';
  process.stdout.write(`netplane serving\n  state:    ${d.stateDir}\n  socket:   ${d.socketPath ?? 'off'}\n  api:      http://127.0.0.1:${d.port}/  (token in ${join(d.stateDir, 'token')})\n  networks: ${nets}\n` +
    `try:       npx netplane network list` + (d.socketPath ? `   (or: curl --unix-socket ${d.socketPath} http://localhost/networks)` : '') + `\nstop with Ctrl-C\n`);
  await new Promise<void>((done) => {
    // Every change is saved when it is made, so a shutdown that hangs (a client that will not let go)
    // loses nothing by being cut short.
    const stop = () => {
      setTimeout(() => { process.stderr.write('netplane: shutdown took over 5 s; exiting anyway (the state was saved with each change)\n'); done(); }, 5000).unref();
      d.close().then(done, done);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  process.stdout.write('netplane stopped; state saved\n');
  return 0;
}

// ---- the client ----------------------------------------------------------------------------------

// Where the daemon is and how to prove who we are: --socket (or NETPLANE_SOCKET) or --url (or
// NETPLANE_URL) when given; otherwise the unix socket of the state directory (--state-dir,
// NETPLANE_STATE_DIR, or .netplane as `npm start` uses) when it is there, else loopback TCP. Over TCP
// the token comes from --token, NETPLANE_TOKEN, or the state directory's token file, which only the
// daemon's user can read.
function endpointOf(flags: Flags): { socket?: string; url: URL; token?: string } {
  const stateDir = typeof flags['state-dir'] === 'string' ? flags['state-dir'] : process.env.NETPLANE_STATE_DIR ?? '.netplane';
  const url = new URL(typeof flags.url === 'string' ? flags.url : process.env.NETPLANE_URL ?? `http://127.0.0.1:${DEFAULT_PORT}`);
  let socket = typeof flags.socket === 'string' ? flags.socket : process.env.NETPLANE_SOCKET;
  if (!socket && typeof flags.url !== 'string' && !process.env.NETPLANE_URL) {
    const p = join(stateDir, 'netplane.sock');
    try { if (lstatSync(p).isSocket()) socket = p; } catch { /* not there: TCP */ }
  }
  let token = typeof flags.token === 'string' ? flags.token : process.env.NETPLANE_TOKEN;
  if (!token && !socket) {
    try { token = readFileSync(join(stateDir, 'token'), 'utf8').trim(); } catch { /* not readable: the daemon will say 401 */ }
  }
  return { socket, url, token };
}

function request(flags: Flags, method: string, path: string, body?: unknown): Promise<{ status: number; value: unknown }> {
  const { socket, url, token } = endpointOf(flags);
  const data = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string | number> = data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {};
  if (token) headers.authorization = `Bearer ${token}`;
  return new Promise((ok, fail) => {
    const req = httpRequest({
      method, socketPath: socket, host: socket ? undefined : url.hostname, port: socket ? undefined : url.port, path: url.pathname.replace(/\/$/, '') + path, headers,
    }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (s += c));
      res.on('end', () => {
        try { ok({ status: res.statusCode ?? 0, value: JSON.parse(s) }); } catch { fail(new Error(`the daemon answered ${res.statusCode} with something that is not JSON`)); }
      });
    });
    req.on('error', (e) => fail(new NoDaemon(`cannot reach the netplane daemon at ${socket ?? url.origin}: ${e.message} (is \`netplane serve\` running?)`)));
    if (data) req.write(data);
    req.end();
  });
}

function readJsonArg(a: string | undefined): unknown {
  if (a === undefined) throw new UsageError('missing the object as JSON (inline, @file, or - for standard input)');
  const text = a === '-' ? readFileSync(0, 'utf8') : a.startsWith('@') ? readFileSync(a.slice(1), 'utf8') : a;
  try { return JSON.parse(text); } catch (e) { throw new UsageError(`not valid JSON: ${(e as Error).message}`); }
}

function refused(value: unknown): number {
  const err = (value as { error?: { code: string; field?: string; reason: string } }).error;
  process.stderr.write(`netplane: ${err ? `${err.code}: ${err.field ? `${err.field}: ` : ''}${err.reason}` : JSON.stringify(value)}\n`);
  if (err?.code === 'Unauthorized') process.stderr.write('netplane: run this as the user who runs the daemon, from its directory, or give --state-dir DIR, --token or NETPLANE_TOKEN\n');
  return 1;
}

async function objectCommand(obj: string, args: string[], flags: Flags): Promise<number> {
  const path = `/${OBJECTS[obj]}`;
  const verb = args[0] ?? 'list';
  let r;
  if (verb === 'list') r = await request(flags, 'GET', path);
  else if (verb === 'get') r = await request(flags, 'GET', `${path}/${encodeURIComponent(need(args[1], 'ID'))}`);
  else if (verb === 'create') r = await request(flags, 'POST', path, readJsonArg(args[1]));
  else if (verb === 'modify') r = await request(flags, 'PUT', `${path}/${encodeURIComponent(need(args[1], 'ID'))}`, readJsonArg(args[2]));
  else if (verb === 'delete') r = await request(flags, 'DELETE', `${path}/${encodeURIComponent(need(args[1], 'ID'))}`);
  else throw new UsageError(`unknown ${obj} verb "${verb}" (list, get, create, modify, delete)`);
  if (r.status >= 300) return refused(r.value);
  if (flags.json) process.stdout.write(JSON.stringify(r.value, null, 2) + '\n');
  else if (verb === 'list') table((r.value as Array<Record<string, unknown>>).map((o) => summary(obj, o)));
  else if (verb === 'delete') process.stdout.write(`deleted ${args[1]}\n`);
  else process.stdout.write(JSON.stringify(r.value, null, 2) + '\n');
  return 0;
}

function need(v: string | undefined, what: string): string {
  if (!v) throw new UsageError(`missing ${what}`);
  return v;
}

function summary(obj: string, o: Record<string, any>): Record<string, string> {
  if (obj === 'network') return { ID: o.ID, TYPE: o.Type, SUBNETS: (o.Ipams ?? []).flatMap((i: any) => i.Subnets.map((s: any) => s.IpAddressPrefix)).join(',') };
  if (obj === 'endpoint') return { ID: o.ID, NETWORK: o.HostComputeNetwork, MAC: o.MacAddress ?? '', ADDRESS: (o.IpConfigurations ?? []).map((c: any) => c.IpAddress).join(','), POLICIES: (o.Policies ?? []).map((p: any) => p.Type).join(',') };
  if (obj === 'lb') return { ID: o.ID, VIPS: (o.FrontendVIPs ?? []).join(',') || '(all)', PORTS: o.PortMappings.map((p: any) => `${p.ExternalPort}->${p.InternalPort}`).join(','), BACKENDS: o.HostComputeEndpoints.join(',') };
  return { ID: o.ID, TYPE: o.Type ?? '' };
}

function table(rows: Array<Record<string, string | number>>): void {
  if (rows.length === 0) { process.stdout.write('(none)\n'); return; }
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: Array<string | number>) => cells.map((v, i) => String(v).padEnd(width[i])).join('  ').trimEnd() + '\n';
  process.stdout.write(line(cols));
  for (const r of rows) process.stdout.write(line(cols.map((c) => r[c])));
}

async function viewCommand(cmd: string, flags: Flags): Promise<number> {
  let r;
  if (cmd === 'trace') {
    const port = Number(flags.port);
    if (!Number.isInteger(port) || typeof flags.frame !== 'string') throw new UsageError('trace needs --port N and --frame HEX');
    r = await request(flags, 'POST', '/trace', { port, frame: flags.frame });
  } else {
    r = await request(flags, 'GET', cmd === 'mac' ? '/mac' : cmd === 'ct' ? '/connections' : '/stats');
  }
  if (r.status >= 300) return refused(r.value);
  const v = r.value as any;
  if (flags.json) process.stdout.write(JSON.stringify(v, null, 2) + '\n');
  else if (cmd === 'mac') table(v.map((e: any) => ({ NETWORK: e.network, VLAN: e.vlan, MAC: e.mac, PORT: e.port, TYPE: e.static ? 'static' : 'learned' })));
  else if (cmd === 'ct') table(v.map((c: any) => ({ PROTO: c.protocol, STATE: c.state, ORIGINAL: `${c.original.src}:${c.original.sport} -> ${c.original.dst}:${c.original.dport}`, REPLY: `${c.reply.src}:${c.reply.sport} -> ${c.reply.dst}:${c.reply.dport}`, NAT: [c.snat ? 'SNAT' : '', c.dnat ? 'DNAT' : ''].filter(Boolean).join(',') })));
  else if (cmd === 'stats') {
    table(Object.entries(v.stats).filter(([, n]) => n).map(([k, n]) => ({ STAT: k, VALUE: n as number })));
    const drops = Object.entries(v.drops);
    if (drops.length) { process.stdout.write('\n'); table(drops.map(([k, n]) => ({ DROP: k, COUNT: n as number }))); }
    if (v.transports?.length) {
      process.stdout.write('\n');
      table(v.transports.map((t: any) => ({
        ENDPOINT: t.endpoint, TYPE: t.type, STATE: t.Transport, ADDRESS: t.Address ?? '', CONNECTS: t.connects ?? 0, REFUSALS: t.refusals ?? 0,
        RX: t.rxFrames ?? 0, TX: t.txFrames ?? 0, 'TX DROPPED': t.txDropped ?? 0, 'RX REFUSED': t.rxRefused ?? 0, REASON: t.Reason ?? '',
      })));
    }
  } else process.stdout.write(v.text + '\n' + (v.output.length ? v.output.map((o: any) => `out port ${o.port}: ${o.frame.length / 2} bytes`).join('\n') + '\n' : ''));
  return 0;
}

function demo(): number {
  let t = 1_000;
  const sw = new Switch({ build: 'release', maxPorts: 16, macEntries: 1024, clock: () => t });
  const out = (s = '') => process.stdout.write(s + '\n');

  out('netplane demo: one switch, two networks, a VLAN trunk, real frames through the WebAssembly dataplane\n');
  const ports: Record<string, SwitchPort> = {
    web: sw.addPort({ network: 1, mac: '02:00:00:00:01:01' }),
    db: sw.addPort({ network: 1, mac: '02:00:00:00:01:02' }),
    cache: sw.addPort({ network: 1, mac: '02:00:00:00:01:03', learnLimit: 1 }),
    other: sw.addPort({ network: 2 }),
    voice: sw.addPort({ network: 1, vlan: 20 }),
    uplink: sw.addPort({ network: 1, mode: 'trunk', allowedVlans: [20] }),
  };
  const name = (id: number) => Object.entries(ports).find(([, p]) => p.id === id)?.[0] ?? `port ${id}`;
  for (const [n, p] of Object.entries(ports)) {
    const s = p.spec;
    out(`  port ${p.id} ${n.padEnd(6)} network ${s.network} ${s.mode}${s.mode === 'trunk' ? ` native 0, tagged ${s.allowedVlans?.join(',')}` : ` vlan ${s.vlan}`}${s.mac ? `, spoof guard ${s.mac}` : ''}${s.learnLimit !== undefined ? `, learn limit ${s.learnLimit}` : ''}`);
  }
  out();

  const ip = (h: number) => `10.0.0.${h}`;
  const mac = (h: number) => `02:00:00:00:01:0${h}`;
  const step = (title: string, frames: Array<[SwitchPort, Uint8Array]>) => {
    t += 10;
    const delivered: string[] = [];
    sw.onFrame((f, p) => {
      const d = dissect(f);
      delivered.push(`${name(p)}${d.vlan ? ` (tagged vlan ${d.vlan.vid})` : ''}`);
    });
    const before = sw.counters().drops;
    sw.inject(frames.map(([p, f]) => [p.id, f]));
    const after = sw.counters().drops;
    const dropped = Object.entries(after).filter(([k, v]) => v !== (before[k] ?? 0)).map(([k, v]) => `${k} x${v - (before[k] ?? 0)}`);
    out(`* ${title}`);
    out(`    delivered to: ${delivered.length ? delivered.join(', ') : 'nobody'}${dropped.length ? `; dropped: ${dropped.join(', ')}` : ''}`);
  };

  step('web asks "who has 10.0.0.2?" (ARP broadcast): flooded to network 1 untagged, not to network 2', [
    [ports.web, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: mac(1), payload: arp({ op: 'request', senderMac: mac(1), senderIp: ip(1), targetIp: ip(2) }) })],
  ]);
  step('db answers web (unicast): web was learned, so only web gets it', [
    [ports.db, ethernet({ dst: mac(1), src: mac(2), payload: arp({ op: 'reply', senderMac: mac(2), senderIp: ip(2), targetMac: mac(1), targetIp: ip(1) }) })],
  ]);
  const dgram = (from: number, to: string, toMac: string, vlan?: number) =>
    ethernet({ dst: toMac, src: mac(from), vlan, payload: ipv4({ src: ip(from), dst: to, payload: udp({ srcPort: 5000, dstPort: 53, payload: new TextEncoder().encode('hello') }) }) });
  step('web sends UDP to db: known unicast', [[ports.web, dgram(1, ip(2), mac(2))]]);
  step('web sends to a MAC nobody has used yet: unknown unicast is flooded', [[ports.web, dgram(1, ip(9), '02:00:00:00:01:09')]]);
  step('a VLAN 20 phone broadcasts: reaches the trunk tagged 20, no untagged port', [
    [ports.voice, ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:20:01', payload: arp({ op: 'request', senderMac: '02:00:00:00:20:01', senderIp: '10.20.0.1', targetIp: '10.20.0.2' }) })],
  ]);
  step('the trunk sends a VLAN 20 frame to the phone: the tag is popped on the access port', [
    [ports.uplink, ethernet({ dst: '02:00:00:00:20:01', src: '02:00:00:00:20:02', vlan: 20, payload: ipv4({ src: '10.20.0.2', dst: '10.20.0.1', payload: udp({ srcPort: 5060, dstPort: 5060 }) }) })],
  ]);
  step('db forges web\'s MAC as its source: the spoof guard drops it', [[ports.db, dgram(1, ip(3), mac(3))]]);
  step('a truncated IPv4 header arrives on cache: dropped with a reason, never parsed further', [
    [ports.cache, ethernet({ dst: mac(1), src: mac(3), ethertype: 0x0800, payload: new Uint8Array([0x45, 0, 0, 20]) })],
  ]);
  t += 400_000;
  sw.ageMacs();
  out('* 400 s pass with no traffic: learned MACs age out (default aging 300 s)');
  out(`    MAC table entries now: ${sw.macTable().length}`);
  step('web speaks again and is learned again', [[ports.web, dgram(1, ip(2), mac(2))]]);

  out('\nMAC table');
  out('  network  vlan  mac                port  type');
  for (const e of sw.macTable()) out(`  ${String(e.network).padEnd(8)} ${String(e.vlan).padEnd(5)} ${e.mac}  ${name(e.port).padEnd(5)} ${e.static ? 'static' : 'learned'}`);

  const c = sw.counters();
  out('\nswitch counters');
  for (const [k, v] of Object.entries(c.stats)) if (v) out(`  ${k.padEnd(16)} ${v}`);
  out('drops by reason');
  for (const [k, v] of Object.entries(c.drops)) out(`  ${k.padEnd(24)} ${v}`);
  out('\nper port        rx pkts  tx pkts  dropped');
  for (const [n, p] of Object.entries(ports)) {
    const pc = p.counters();
    out(`  ${n.padEnd(12)} ${String(pc.rxPackets).padStart(8)} ${String(pc.txPackets).padStart(8)} ${String(pc.dropped).padStart(8)}`);
  }
  natDemo(out);
  out('\nNext: `npm test` runs the test suites against both builds; `npm run bench` measures Mpps.');
  return 0;
}

// The NAT mode of a container host: an internal network behind a gateway, masquerade to an uplink,
// a published port, and the connection table that makes it work.
function natDemo(out: (s?: string) => void): void {
  let t = 1_000;
  const sw = new Switch({ build: 'release', maxPorts: 8, clock: () => t });
  const rt = sw.router;
  const web = sw.addPort({ network: 1, mac: '02:00:00:00:00:0a' });
  const db = sw.addPort({ network: 1, mac: '02:00:00:00:00:0b' });
  const uplink = sw.addPort({ network: 2 });
  rt.addInterface({ network: 1, address: '10.0.0.1/24' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.addPortMapping({ protocol: 'tcp', externalPort: 8080, internalAddress: '10.0.0.3', internalPort: 80 });
  rt.setNeighbor({ address: '10.0.0.2', mac: '02:00:00:00:00:0a', interface: 0 });
  rt.setNeighbor({ address: '10.0.0.3', mac: '02:00:00:00:00:0b', interface: 0 });
  const R = '02:00:00:00:00:fe';
  const names = new Map([[web.id, 'web'], [db.id, 'db'], [uplink.id, 'uplink']]);
  const show = (f: Uint8Array) => {
    const d = dissect(f);
    const ip = d.ipv4, l4 = d.tcp ?? d.udp;
    if (d.arp) return `ARP ${d.arp.op === 1 ? 'who-has' : 'reply'} ${d.arp.targetIp} from ${d.arp.senderIp}`;
    if (!ip) return 'non-IP frame';
    const ports = l4 ? `:${l4.srcPort} -> ${ip.dst}:${l4.dstPort}` : ` -> ${ip.dst}`;
    return `${ip.src}${ports}${d.icmp ? ` ICMP type ${d.icmp.type}` : ''}${d.tcp ? ` [${d.tcp.flagString}]` : ''} ttl ${ip.ttl}`;
  };
  const step = (title: string, port: SwitchPort, f: Uint8Array) => {
    t += 10;
    const got: string[] = [];
    sw.onFrame((g, p) => got.push(`${names.get(p)}: ${show(g)}`));
    const before = sw.counters().drops;
    sw.inject([[port.id, f]]);
    const dropped = Object.entries(sw.counters().drops).filter(([k, v]) => v !== (before[k] ?? 0)).map(([k]) => k);
    out(`* ${title}`);
    out(`    in  ${names.get(port.id)}: ${show(f)}`);
    for (const g of got) out(`    out ${g}`);
    if (dropped.length) out(`    dropped: ${dropped.join(', ')}`);
  };

  out('\nNAT mode: network 1 (10.0.0.0/24, gateway 10.0.0.1) masqueraded to the uplink 192.168.1.1');
  step('the uplink router answers "who has 192.168.1.254?" so the gateway learns it', uplink,
    ethernet({ dst: '02:6e:70:00:00:01', src: R, payload: arp({ op: 'reply', senderMac: R, senderIp: '192.168.1.254', targetMac: '02:6e:70:00:00:01', targetIp: '192.168.1.1' }) }));
  step('db pings its gateway (and so the switch learns where db is)', db, ethernet({ dst: '02:6e:70:00:00:00', src: '02:00:00:00:00:0b', payload: ipv4({ src: '10.0.0.3', dst: '10.0.0.1', payload: icmp({ type: 8, id: 1, seq: 1 }) }) }));
  step('web pings its gateway', web, ethernet({ dst: '02:6e:70:00:00:00', src: '02:00:00:00:00:0a', payload: ipv4({ src: '10.0.0.2', dst: '10.0.0.1', payload: icmp({ type: 8, id: 1, seq: 1 }) }) }));
  step('web opens a TCP connection to 93.184.216.34:443: it leaves as 192.168.1.1', web,
    ethernet({ dst: '02:6e:70:00:00:00', src: '02:00:00:00:00:0a', payload: ipv4({ src: '10.0.0.2', dst: '93.184.216.34', payload: tcp({ srcPort: 40000, dstPort: 443, flags: 'S' }) }) }));
  step('the server answers 192.168.1.1: conntrack sends it back to web', uplink,
    ethernet({ dst: '02:6e:70:00:00:01', src: R, payload: ipv4({ src: '93.184.216.34', dst: '192.168.1.1', payload: tcp({ srcPort: 443, dstPort: 40000, flags: 'SA' }) }) }));
  step('a client outside reaches the published port 8080: it lands on db:80', uplink,
    ethernet({ dst: '02:6e:70:00:00:01', src: R, payload: ipv4({ src: '203.0.113.7', dst: '192.168.1.1', payload: tcp({ srcPort: 51000, dstPort: 8080, flags: 'S' }) }) }));
  step('web reaches the same published port by the external address (hairpin)', web,
    ethernet({ dst: '02:6e:70:00:00:00', src: '02:00:00:00:00:0a', payload: ipv4({ src: '10.0.0.2', dst: '192.168.1.1', payload: tcp({ srcPort: 40001, dstPort: 8080, flags: 'S' }) }) }));
  step('a datagram with TTL 1: the gateway says time exceeded', web,
    ethernet({ dst: '02:6e:70:00:00:00', src: '02:00:00:00:00:0a', payload: ipv4({ src: '10.0.0.2', dst: '8.8.8.8', ttl: 1, payload: udp({ srcPort: 5000, dstPort: 53 }) }) }));

  out('\nconnections (like conntrack -L)');
  for (const c of rt.connections()) {
    const o = c.original, r = c.reply;
    out(`  ${c.protocol === 6 ? 'tcp' : c.protocol === 17 ? 'udp' : c.protocol} ${c.state.padEnd(12)} ${o.src}:${o.sport} -> ${o.dst}:${o.dport}  reply ${r.src}:${r.sport} -> ${r.dst}:${r.dport}${c.snat ? ' [SNAT]' : ''}${c.dnat ? ' [DNAT]' : ''}`);
  }
}
