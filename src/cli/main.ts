// The `netplane` command: `serve` runs the daemon (src/daemon.ts); the object and view commands are
// its client, printing human tables or, with --json, the API's JSON; `demo` drives a real switch (the
// release WebAssembly build) with generated traffic, narrated step by step. Nothing is canned: every
// line comes from the dataplane or the daemon.
//
// Arguments are parsed strictly (node:util parseArgs): an unknown option, an option of another
// command, or an option without its value is a usage error, said in one line with where to look
// (exit 2), never a guess. Views name things the way the user named them (network and endpoint IDs,
// "(gateway)", "(uplink)"), not by the dataplane's numbers.
import { Switch, type SwitchPort } from '../dataplane.js';
import { arp, ethernet, ipv4, udp, tcp, icmp, dissect } from '../frames.js';
import { Daemon, readConfig, DEFAULT_PORT, type DaemonConfig } from '../daemon.js';
import { connectCommands } from '../connect.js';
import { parseFlow, FLOW_SYNTAX } from '../flow.js';
import { request as httpRequest } from 'node:http';
import { readFileSync, lstatSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LockedError, API_SOCKET, TOKEN_FILE } from '../confine.js';
import { version } from '../version.js';

const CLIENT_OPTIONS = '[--json] [--state-dir DIR | --socket PATH | --url URL [--token T]]';

const HELP = `netplane — a software-defined host network in WebAssembly

usage: netplane <command> [arguments] ${CLIENT_OPTIONS}

daemon:
  serve [--config FILE] [--state-dir DIR] [--port N] [--socket PATH] [--no-default-network]
                         run the host network and its management API (npm start runs this
                         with an embedded default: one NAT network with a gateway)
objects (HCN-shaped; JSON is inline, @file, or - for standard input):
  network   list | get ID | create JSON | modify ID JSON | delete ID
  endpoint  list | get ID | create JSON | modify ID JSON | delete ID
                         (get also prints the QEMU, socat or v86 command line for its Transport)
  namespace list | get ID | create JSON | delete ID
  lb        list | get ID | create JSON | modify ID JSON | delete ID
views:
  mac                    the MAC table, by network and endpoint
  ct                     the connection table (like conntrack -L)
  stats                  counters, drops by reason, ports and transports
  cluster status         the etcd cluster: members and their leases, what this host publishes,
                         the remote endpoints programmed, the last sync, the connection
  trace --endpoint ID FLOW
                         every stage's decision for one packet (nothing changes), e.g.
                         trace --endpoint web tcp 172.20.0.2:40000 '>' 1.1.1.1:80 syn
  trace --port N --frame HEX
                         the same for a frame given in hex (endpoint list shows the ports)
other:
  demo                   the switch and the NAT mode on generated traffic, narrated
  help [COMMAND]         this text, or a command's
  --version              the version

The client talks to the daemon through the unix socket of its state directory (--state-dir, default
.netplane), or --socket PATH, or over TCP at --url (default http://127.0.0.1:${DEFAULT_PORT}) with the
token from the state directory (or --token / NETPLANE_TOKEN).
Exit codes: 0 done, 1 refused by the daemon (the error names the field), 2 usage, 3 no daemon.
`;

// Every option any command takes; which command takes which is in COMMANDS.
const OPTIONS = {
  json: { type: 'boolean' },
  url: { type: 'string' },
  socket: { type: 'string' },
  'state-dir': { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string' },
  port: { type: 'string' },
  'no-default-network': { type: 'boolean' },
  endpoint: { type: 'string' },
  frame: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

type Flags = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean };

const CLIENT = ['json', 'url', 'socket', 'state-dir', 'token'];
const OBJECT_ABOUT = 'JSON is inline, @file, or - for standard input; --json prints the API\'s JSON instead of a table.';
const COMMANDS: Record<string, { usage: string; options: string[]; about: string }> = {
  serve: {
    usage: 'serve [--config FILE] [--state-dir DIR] [--port N] [--socket PATH] [--no-default-network]',
    options: ['config', 'state-dir', 'port', 'socket', 'no-default-network'],
    about: `Runs the host network and its API: a unix socket in the state directory (default .netplane) and
loopback TCP on --port (default ${DEFAULT_PORT}; 0 picks a free one) with a bearer token. On an empty state
it creates the NAT network "nat" unless --no-default-network. --config FILE is a JSON config
(docs/model.md); the options given here override it.`,
  },
  network: { usage: `network list | get ID | create JSON | modify ID JSON | delete ID ${CLIENT_OPTIONS}`, options: CLIENT, about: `HostComputeNetwork objects. ${OBJECT_ABOUT}` },
  endpoint: {
    usage: `endpoint list | get ID | create JSON | modify ID JSON | delete ID ${CLIENT_OPTIONS}`, options: CLIENT,
    about: `HostComputeEndpoint objects; list shows each one's switch PORT (for trace --port). get prints, for an
endpoint with a Transport, the QEMU (or socat, or v86) command line that connects a VM to it, MAC
included. ${OBJECT_ABOUT}`,
  },
  namespace: { usage: `namespace list | get ID | create JSON | delete ID ${CLIENT_OPTIONS}`, options: CLIENT, about: `HostComputeNamespace objects (compartments). ${OBJECT_ABOUT}` },
  lb: { usage: `lb list | get ID | create JSON | modify ID JSON | delete ID ${CLIENT_OPTIONS}`, options: CLIENT, about: `HostComputeLoadBalancer objects. ${OBJECT_ABOUT}` },
  mac: { usage: `mac ${CLIENT_OPTIONS}`, options: CLIENT, about: 'The MAC table: network, VLAN, MAC, the endpoint (or "(gateway)", "(uplink)") and static or learned.' },
  ct: { usage: `ct ${CLIENT_OPTIONS}`, options: CLIENT, about: 'The connection table, like conntrack -L: original and reply tuples, state, SNAT/DNAT.' },
  stats: { usage: `stats ${CLIENT_OPTIONS}`, options: CLIENT, about: 'Switch counters, drops by reason, every port with its endpoint and counters, each endpoint transport\'s state, each network\'s DHCP server (refused: unknown clients not given a lease), and the cluster membership\'s counters when there is one.' },
  trace: {
    usage: `trace --endpoint ID FLOW | --endpoint ID --frame HEX | --port N --frame HEX ${CLIENT_OPTIONS}`,
    options: [...CLIENT, 'endpoint', 'port', 'frame'],
    about: `Runs one packet through the pipeline as if the endpoint (or port N) sent it, and prints every
stage's decision and what would leave where; nothing changes (no learning, no connection, no counter).
A FLOW is built into a frame by the daemon, from the endpoint's MAC to its next hop's:
  ${FLOW_SYNTAX}.
Examples (quote the > for the shell):
  netplane trace --endpoint web tcp 172.20.0.2:40000 '>' 1.1.1.1:80 syn
  netplane trace --endpoint web udp '>' 8.8.8.8:53            (the source is the endpoint's own)
  netplane trace --endpoint web icmp 172.20.0.2 '>' 172.20.0.1 echo-request`,
  },
  cluster: {
    usage: `cluster status ${CLIENT_OPTIONS}`, options: CLIENT,
    about: `The daemon's cluster membership (its config's cluster setting; docs/cluster.md): the etcd connection
(connected, or reconnecting since when and why), the members with their provider address, lease and
time left, this host's published endpoints, the other hosts' endpoints programmed here (and those
refused, with why), conflicts, and the last sync.`,
  },
  demo: { usage: 'demo', options: [], about: 'The switch and the NAT mode on generated traffic, narrated; needs no daemon.' },
  help: { usage: 'help [COMMAND]', options: [], about: 'The commands, or one command\'s usage.' },
  version: { usage: 'version  (or --version, -V)', options: [], about: 'Prints the version of netplane.' },
};

const OBJECTS: Record<string, string> = { network: 'networks', endpoint: 'endpoints', namespace: 'namespaces', lb: 'loadbalancers' };

class UsageError extends Error {}
class NoDaemon extends Error {}

export async function main(argv: string[]): Promise<number> {
  // Until the arguments are parsed, the command is the first word that names one (for the hint).
  let cmd: string | undefined = argv.find((a) => !a.startsWith('-') && COMMANDS[a]);
  try {
    const { values: flags, positionals } = parse(argv);
    const word = positionals[0];
    cmd = word !== undefined && COMMANDS[word] ? word : undefined;
    if (flags.version || word === 'version') {
      if (word === 'version' && positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
      process.stdout.write(`netplane ${version()}\n`);
      return 0;
    }
    if (word === undefined || word === 'help') {
      const about = positionals[1];
      if (about !== undefined && !COMMANDS[about]) throw new UsageError(`no command "${about}"`);
      process.stdout.write(about ? commandHelp(about) : HELP);
      return 0;
    }
    if (!cmd) throw new UsageError(`unknown command "${word}"`);
    if (flags.help) {
      process.stdout.write(commandHelp(cmd));
      return 0;
    }
    for (const k of Object.keys(flags)) {
      if (!COMMANDS[cmd].options.includes(k)) throw new UsageError(`--${k} is not an option of ${cmd}`);
    }
    const args = positionals.slice(1);
    if (cmd === 'demo' || cmd === 'serve') {
      if (args.length) throw new UsageError(`unexpected argument "${args[0]}"`);
      return cmd === 'demo' ? demo() : await serve(flags);
    }
    if (OBJECTS[cmd]) return await objectCommand(cmd, args, flags);
    if (cmd === 'cluster') return await clusterCommand(args, flags);
    return await viewCommand(cmd, args, flags);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`netplane: ${e.message}; see ${cmd && cmd !== 'help' ? `netplane ${cmd} --help` : 'netplane help'}\n`);
      return 2;
    }
    if (e instanceof NoDaemon) {
      process.stderr.write(`netplane: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
}

// parseArgs in strict mode, its errors said in one line.
function parse(argv: string[]): { values: Flags; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true });
    return { values: r.values as Flags, positionals: r.positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    const opt = /'(-[^' ]+)/.exec(err.message)?.[1] ?? '';
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${opt}`);
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      if (/ambiguous/.test(err.message)) throw new UsageError(`${opt} needs a value (for a value that starts with "-", write ${opt}=VALUE)`);
      if (/missing/.test(err.message)) throw new UsageError(`${opt} needs a value`);
      if (/does not take an argument/.test(err.message)) throw new UsageError(`${opt} takes no value`);
    }
    throw new UsageError(err.message.split('\n')[0]);
  }
}

function commandHelp(cmd: string): string {
  const c = COMMANDS[cmd];
  return `usage: netplane ${c.usage}\n\n${c.about}\n`;
}

function portNumber(v: string, what: string, lo: number): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) < lo || Number(v) > 65535) throw new UsageError(`${what} must be a number from ${lo} to 65535, got "${v}"`);
  return Number(v);
}

async function serve(flags: Flags): Promise<number> {
  const port = flags.port === undefined ? undefined : portNumber(flags.port, '--port', 0);
  let base: DaemonConfig;
  try {
    base = flags.config !== undefined ? readConfig(flags.config) : { stateDir: '.netplane', defaults: { network: true } };
  } catch (e) {
    process.stderr.write(`netplane: cannot serve: ${(e as Error).message}\n`);
    return 1;
  }
  const config: DaemonConfig = {
    ...base,
    stateDir: flags['state-dir'] ?? base.stateDir,
    listen: {
      ...base.listen,
      ...(port !== undefined ? { port } : {}),
      ...(flags.socket !== undefined ? { socket: flags.socket } : {}),
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
  // The try line works from where the daemon was started: it names the state directory unless it
  // is the default one there.
  const dirFlag = d.stateDir === resolve('.netplane') ? '' : ` --state-dir ${d.stateDir}`;
  const up = d.config.uplink === undefined || (d.config.uplink && d.config.uplink.socket) ? 'socket (egress through this process\'s sockets; a gateway address reaches 127.0.0.1)' : d.config.uplink ? `tap ${d.config.uplink.address}` : 'none';
  process.stdout.write(`netplane serving\n  state:    ${d.stateDir}\n  uplink:   ${up}\n  socket:   ${d.socketPath ?? 'off'}\n  api:      http://127.0.0.1:${d.port}/  (token in ${join(d.stateDir, TOKEN_FILE)})\n  networks: ${nets}\n` +
    `try:       npx netplane network list${dirFlag}` + (d.socketPath ? `   (or: curl --unix-socket ${d.socketPath} http://localhost/networks)` : '') + `\nstop with Ctrl-C\n`);
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
  const stateDir = flags['state-dir'] ?? process.env.NETPLANE_STATE_DIR ?? '.netplane';
  const given = flags.url ?? process.env.NETPLANE_URL;
  const from = flags.url !== undefined ? '--url' : 'NETPLANE_URL';
  let url: URL;
  try { url = new URL(given ?? `http://127.0.0.1:${DEFAULT_PORT}`); } catch {
    throw new UsageError(`${from}: ${JSON.stringify(given)} is not a URL (like http://127.0.0.1:${DEFAULT_PORT})`);
  }
  if (url.protocol !== 'http:') throw new UsageError(`${from}: ${JSON.stringify(given)} is not an http:// URL (the API is HTTP on loopback)`);
  let socket = flags.socket ?? process.env.NETPLANE_SOCKET;
  if (!socket && given === undefined) {
    const p = join(stateDir, API_SOCKET);
    try { if (lstatSync(p).isSocket()) socket = p; } catch { /* not there: TCP */ }
  }
  let token = flags.token ?? process.env.NETPLANE_TOKEN;
  if (!token && !socket) {
    try { token = readFileSync(join(stateDir, TOKEN_FILE), 'utf8').trim(); } catch { /* not readable: the daemon will say 401 */ }
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

function readJsonArg(a: string): unknown {
  let text: string;
  try { text = a === '-' ? readFileSync(0, 'utf8') : a.startsWith('@') ? readFileSync(a.slice(1), 'utf8') : a; } catch (e) {
    throw new UsageError(`cannot read ${a === '-' ? 'standard input' : a.slice(1)}: ${(e as Error).message}`);
  }
  try { return JSON.parse(text); } catch (e) { throw new UsageError(`not valid JSON: ${(e as Error).message}`); }
}

function refused(value: unknown): number {
  const err = (value as { error?: { code: string; field?: string; reason: string } }).error;
  process.stderr.write(`netplane: ${err ? `${err.code}: ${err.field ? `${err.field}: ` : ''}${err.reason}` : JSON.stringify(value)}\n`);
  if (err?.code === 'Unauthorized') process.stderr.write('netplane: run this as the user who runs the daemon, from its directory, or give --state-dir DIR, --token or NETPLANE_TOKEN\n');
  return 1;
}

const VERBS: Record<string, string[]> = { list: [], get: ['ID'], create: ['JSON'], modify: ['ID', 'JSON'], delete: ['ID'] };

async function objectCommand(obj: string, args: string[], flags: Flags): Promise<number> {
  const path = `/${OBJECTS[obj]}`;
  const [verb = 'list', ...rest] = args;
  const want = VERBS[verb];
  if (!want) throw new UsageError(`unknown ${obj} verb "${verb}" (list, get, create, modify, delete)`);
  if (rest.length < want.length) throw new UsageError(`${obj} ${verb} needs ${want.slice(rest.length).join(' and ')}${want[rest.length] === 'JSON' ? ' (inline, @file, or - for standard input)' : ''}`);
  if (rest.length > want.length) throw new UsageError(`unexpected argument "${rest[want.length]}"`);
  const id = want[0] === 'ID' ? `${path}/${encodeURIComponent(rest[0])}` : path;
  let r;
  if (verb === 'list') r = await request(flags, 'GET', path);
  else if (verb === 'get') r = await request(flags, 'GET', id);
  else if (verb === 'create') r = await request(flags, 'POST', path, readJsonArg(rest[0]));
  else if (verb === 'modify') r = await request(flags, 'PUT', id, readJsonArg(rest[1]));
  else r = await request(flags, 'DELETE', id);
  if (r.status >= 300) return refused(r.value);
  if (flags.json) process.stdout.write(JSON.stringify(r.value, null, 2) + '\n');
  else if (verb === 'list') table((r.value as Array<Record<string, unknown>>).map((o) => summary(obj, o)));
  else if (verb === 'delete') process.stdout.write(`deleted ${rest[0]}\n`);
  else {
    process.stdout.write(JSON.stringify(r.value, null, 2) + '\n');
    // An endpoint with a Transport: how to connect a VM to it.
    const ep = r.value as Record<string, any>;
    if (obj === 'endpoint' && ep.Transport) {
      const net = await request(flags, 'GET', `/networks/${encodeURIComponent(ep.HostComputeNetwork)}`).catch(() => undefined);
      process.stdout.write('\n' + connectCommands(ep as any, ep.Status, net && net.status < 300 ? net.value as any : undefined).join('\n') + '\n');
    }
  }
  return 0;
}

function summary(obj: string, o: Record<string, any>): Record<string, string> {
  if (obj === 'network') return { ID: o.ID, TYPE: o.Type, SUBNETS: (o.Ipams ?? []).flatMap((i: any) => i.Subnets.map((s: any) => s.IpAddressPrefix)).join(',') };
  if (obj === 'endpoint') {
    return {
      ID: o.ID, NETWORK: o.HostComputeNetwork, MAC: o.MacAddress ?? '', ADDRESS: (o.IpConfigurations ?? []).map((c: any) => c.IpAddress).join(','),
      PORT: o.Status?.Port ?? '',
      TRANSPORT: o.IsRemoteEndpoint ? `remote ${(o.Policies ?? []).find((p: any) => p.Type === 'ProviderAddress')?.Settings.ProviderAddress ?? ''}${o.Status?.Host ? ` (${o.Status.Host})` : ''}` : o.Transport ? `${o.Transport.Type} ${o.Status?.Transport ?? ''}`.trim() : '', POLICIES: (o.Policies ?? []).map((p: any) => p.Type).join(','),
      DHCP: o.Status?.Dhcp ? `${o.Status.Dhcp.Lease.toLowerCase()} until ${o.Status.Dhcp.Expires}` : '',
    };
  }
  if (obj === 'lb') return { ID: o.ID, VIPS: (o.FrontendVIPs ?? []).join(',') || '(all)', PORTS: o.PortMappings.map((p: any) => `${p.ExternalPort}->${p.InternalPort}`).join(','), BACKENDS: o.HostComputeEndpoints.join(',') };
  return { ID: o.ID, TYPE: o.Type ?? '' };
}

function table(rows: Array<Record<string, string | number>>, empty = '(none)'): void {
  if (rows.length === 0) { process.stdout.write(`${empty}\n`); return; }
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: Array<string | number>) => cells.map((v, i) => String(v).padEnd(width[i])).join('  ').trimEnd() + '\n';
  process.stdout.write(line(cols));
  for (const r of rows) process.stdout.write(line(cols.map((c) => r[c])));
}

// Who is behind a port, as the daemon names it: an endpoint, a network's gateway, the uplink.
function portLabel(p: { port: number; kind?: string; endpoint?: string }): string {
  if (p.endpoint) return p.endpoint;
  if (p.kind === 'gateway') return '(gateway)';
  if (p.kind === 'uplink') return '(uplink)';
  return `port ${p.port}`;
}

// One line for a frame, tcpdump style.
function frameLine(hex: string): string {
  const d = dissect(Buffer.from(hex, 'hex'));
  const ip = d.ipv4 ?? d.ipv6, l4 = d.tcp ?? d.udp, ic = d.icmp ?? d.icmpv6;
  if (d.arp) return `ARP ${d.arp.op === 1 ? `who-has ${d.arp.targetIp} tell ${d.arp.senderIp}` : `${d.arp.senderIp} is-at ${d.arp.senderMac}`}`;
  if (!ip) return `${d.src} > ${d.dst} ethertype 0x${(d.ethertype ?? 0).toString(16)}`;
  const at = (a: string, p: number) => a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`;
  if (l4) return `${d.tcp ? 'tcp' : 'udp'} ${at(ip.src, l4.srcPort)} > ${at(ip.dst, l4.dstPort)}${d.tcp ? ` [${d.tcp.flagString}]` : ''}`;
  if (ic) return `${d.icmp ? 'icmp' : 'icmp6'} ${ip.src} > ${ip.dst} type ${ic.type} code ${ic.code}`;
  return `${ip.src} > ${ip.dst} protocol ${d.ipv4 ? d.ipv4.protocol : d.ipv6!.nextHeader}`;
}

async function viewCommand(cmd: string, args: string[], flags: Flags): Promise<number> {
  let r;
  if (cmd === 'trace') r = await request(flags, 'POST', '/trace', traceRequest(args, flags));
  else {
    if (args.length) throw new UsageError(`unexpected argument "${args[0]}"`);
    r = await request(flags, 'GET', cmd === 'mac' ? '/mac' : cmd === 'ct' ? '/connections' : '/stats');
  }
  if (r.status >= 300) return refused(r.value);
  const v = r.value as any;
  const out = (s = '') => process.stdout.write(s + '\n');
  if (flags.json) out(JSON.stringify(v, null, 2));
  else if (cmd === 'mac') {
    table(v.map((e: any) => ({ NETWORK: e.networkId ?? e.network, VLAN: e.vlan, MAC: e.mac, ENDPOINT: portLabel(e), TYPE: e.static ? 'static' : 'learned' })), 'the MAC table is empty');
  } else if (cmd === 'ct') {
    table(v.map((c: any) => ({ PROTO: c.protocol, STATE: c.state, ORIGINAL: `${c.original.src}:${c.original.sport} -> ${c.original.dst}:${c.original.dport}`, REPLY: `${c.reply.src}:${c.reply.sport} -> ${c.reply.dst}:${c.reply.dport}`, NAT: [c.snat ? 'SNAT' : '', c.dnat ? 'DNAT' : ''].filter(Boolean).join(','), 'HOST SOCKET': c.uplink ? `${c.uplink.via} ${c.uplink.local ?? '?'} -> ${c.uplink.peer ?? '?'}` : '' })), 'no connections');
  } else if (cmd === 'stats') {
    // Every counter, zero or not: a zero is an answer.
    table(Object.entries(v.stats).map(([k, n]) => ({ STAT: k, VALUE: n as number })));
    out();
    table(Object.entries(v.drops).map(([k, n]) => ({ DROP: k, COUNT: n as number })), 'no drops');
    if (v.ports?.length) {
      out();
      table(v.ports.map((p: any) => ({
        PORT: p.port, ENDPOINT: portLabel(p), NETWORK: p.networkId ?? '', 'RX PKTS': p.rxPackets, 'TX PKTS': p.txPackets, DROPPED: p.dropped,
        'DROPS BY REASON': Object.entries(p.drops ?? {}).map(([k, n]) => `${k} ${n}`).join(', '),
      })));
    }
    if (v.transports?.length) {
      out();
      table(v.transports.map((t: any) => ({
        ENDPOINT: t.endpoint, TYPE: t.type, STATE: t.Transport, ADDRESS: t.Address ?? '', CONNECTS: t.connects ?? 0, REFUSALS: t.refusals ?? 0,
        RX: t.rxFrames ?? 0, TX: t.txFrames ?? 0, 'TX DROPPED': t.txDropped ?? 0, 'RX REFUSED': t.rxRefused ?? 0, REASON: t.Reason ?? '',
      })));
    }
    if (v.underlay) {
      // The overlay's socket underlay (VXLAN in on the UDP socket, outer packets out by the raw one).
      const u = v.underlay;
      out();
      table([{ UNDERLAY: 'socket', RX: u.rxFrames, TX: u.txFrames, 'TX DROPPED': u.txDropped, 'RX REFUSED': u.rxRefused, 'RX TOO LONG': u.rxTooLong, 'RX BATCHES': u.rxBatches, 'TX BATCHES': u.txBatches }]);
    }
    if (v.dhcp?.length) {
      // Refused: unknown clients on a network whose Dhcp.UnknownClients is "Refuse" (or with no pool).
      out();
      table(v.dhcp.map((d: any) => ({
        'DHCP NETWORK': d.network, RECEIVED: d.received, OFFERS: d.offers, ACKS: d.acks, NAKS: d.naks, RELEASES: d.releases, DECLINES: d.declines,
        REFUSED: d.dropped.unknown_client, 'NO ADDRESS': d.dropped.no_address,
        'OTHER DROPS': Object.entries(d.dropped).filter(([k, n]) => n && k !== 'unknown_client' && k !== 'no_address').map(([k, n]) => `${k} ${n}`).join(', '),
      })));
    }
    if (v.ra?.length || v.dhcp6?.length) {
      // IPv6 autoconfiguration: router advertisements and the DHCPv6 server, per network.
      out();
      const d6 = new Map((v.dhcp6 ?? []).map((d: any) => [d.network, d]));
      const ids = [...new Set([...(v.ra ?? []).map((r: any) => r.network), ...d6.keys()])];
      table(ids.map((id) => {
        const r = (v.ra ?? []).find((x: any) => x.network === id) ?? {};
        const d: any = d6.get(id) ?? {};
        return {
          'IPV6 NETWORK': id, SOLICITATIONS: r.solicitations ?? '', 'RA SOLICITED': r.solicited ?? '', 'RA PERIODIC': r.unsolicited ?? '',
          'DHCP6 RECEIVED': d.received ?? '', REPLIES: d.replies ?? '', ADVERTISES: d.advertises ?? '',
          DROPS: [...Object.entries(r.dropped ?? {}), ...Object.entries(d.dropped ?? {})].filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', '),
        };
      }));
    }
    if (v.dns?.length) {
      // Local: answered from the endpoints' names; forwarded/relayed: to and from the upstream resolvers.
      out();
      table(v.dns.map((d: any) => ({
        'DNS NETWORK': d.network, QUERIES: d.queries, LOCAL: d.local, NXDOMAIN: d.nxdomain, FORWARDED: d.forwarded, RELAYED: d.relayed,
        TIMEOUTS: d.timeouts, SERVFAIL: d.servfail, TCP: d.streams,
        DROPS: Object.entries(d.dropped).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', '),
      })));
    }
    if (v.cluster) {
      // The etcd membership (netplane cluster status has the members and endpoints).
      out();
      table(Object.entries(v.cluster).map(([k, n]) => ({ CLUSTER: k, VALUE: String(n ?? '') })));
    }
  } else {
    out(`trace: ${v.flow ?? `${v.frame.length / 2}-byte frame, ${frameLine(v.frame)}`}, ${v.endpoint ? `sent by endpoint ${v.endpoint} (port ${v.port})` : `arriving on port ${v.port}`}`);
    out(v.text);
    for (const o of v.output) out(`out ${portLabel(o)} (port ${o.port}): ${frameLine(o.frame)}, ${o.frame.length / 2} bytes`);
    if (!v.output.length) out(v.dropped ? `dropped: ${v.dropped}` : 'nothing leaves');
  }
  return 0;
}

async function clusterCommand(args: string[], flags: Flags): Promise<number> {
  const [verb = 'status', ...rest] = args;
  if (verb !== 'status') throw new UsageError(`unknown cluster verb "${verb}" (status)`);
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const r = await request(flags, 'GET', '/cluster');
  if (r.status >= 300) return refused(r.value);
  const v = r.value as any;
  const out = (s = '') => process.stdout.write(s + '\n');
  if (flags.json) { out(JSON.stringify(v, null, 2)); return 0; }
  out(`cluster ${v.prefix} at ${v.etcd.join(', ')}, this host ${v.host}`);
  out(`state:     ${v.state} since ${v.since}${v.lastError ? ` (${v.lastError})` : ''}`);
  out(`lease:     ${v.lease ?? '(none)'}, TTL ${v.leaseTtl} s`);
  out(`last sync: ${v.lastSync ?? 'never'}; remotes last applied ${v.lastApply ?? 'never'}`);
  out();
  table(v.members.map((m: any) => ({
    MEMBER: m.self ? `${m.host} (this host)` : m.host, 'PROVIDER ADDRESS': m.providerAddress, LEASE: m.lease,
    'TTL LEFT': m.ttl === undefined ? '?' : `${m.ttl} s`, SINCE: m.since, VERSION: m.version,
  })), 'no members known');
  out();
  out(`published here (${v.published.length}): ${v.published.join(', ') || 'none'}`);
  out(`remote endpoints: ${v.remotes} in the cluster, ${v.programmed} programmed, ${v.refused.length} refused`);
  if (v.refused.length) { out(); table(v.refused.map((x: any) => ({ 'REFUSED REMOTE': x.ID, REASON: x.reason }))); }
  const conflicts = [...v.conflicts.endpoints.map((x: any) => ({ CONFLICT: `endpoint ${x.ID}`, REASON: x.reason })), ...v.conflicts.networks.map((x: any) => ({ CONFLICT: `network ${x.ID}`, REASON: x.reason }))];
  if (conflicts.length) { out(); table(conflicts); }
  return 0;
}

// What POST /trace gets: { endpoint, flow } for a flow description, else a frame in hex on the
// endpoint's port or on --port N.
function traceRequest(args: string[], flags: Flags): Record<string, unknown> {
  const port = flags.port === undefined ? undefined : portNumber(flags.port, '--port', 0);
  if (port !== undefined && flags.endpoint !== undefined) throw new UsageError('give --endpoint ID or --port N, not both');
  if (flags.frame !== undefined) {
    if (args.length) throw new UsageError('give --frame HEX or a flow, not both');
    if (flags.endpoint === undefined && port === undefined) throw new UsageError('--frame needs --endpoint ID or --port N, where the frame arrives');
    return flags.endpoint !== undefined ? { endpoint: flags.endpoint, frame: flags.frame } : { port, frame: flags.frame };
  }
  if (!args.length) throw new UsageError('trace needs --endpoint ID and a flow (e.g. tcp 172.20.0.2:40000 \'>\' 1.1.1.1:80 syn), or --port N --frame HEX');
  if (flags.endpoint === undefined) throw new UsageError(port !== undefined ? 'a flow comes from --endpoint ID (--port N goes with --frame HEX)' : 'a flow needs --endpoint ID, the endpoint that sends it');
  try {
    return { endpoint: flags.endpoint, flow: parseFlow(args) };
  } catch (e) {
    throw new UsageError(`flow: ${(e as Error).message}`);
  }
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
