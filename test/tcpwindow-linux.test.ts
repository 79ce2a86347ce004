// TCP window tracking against the Linux kernel: the same crafted segments go through a Linux router (a
// network namespace between two others, nft `ct state invalid counter drop` in its forward hook) and
// through netplane routing the same addresses, and every segment's verdict (passed or invalid) and the
// connection's state after it must agree. The end namespaces drop TCP at their input, so their own
// stacks never answer; segments are sent as raw IP by socat (IP4-SENDTO) with checksums from
// src/frames.ts.
//
// Needs root, ip, nft and socat; fails loudly without them (no silent skip).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { Switch } from '../src/dataplane.js';
import { ethernet, ipv4, tcp, parseIPv4 } from '../src/frames.js';
import { requirements } from './e2e/netns.js';

const missing = requirements() ?? (() => {
  try { execFileSync('sh', ['-c', 'command -v nft'], { stdio: 'ignore' }); return undefined; } catch { return 'this test needs nft (apt-get install nftables)'; }
})();
const tag = `tw${process.pid % 100000}`;
const [C, R, S] = ['c', 'r', 's'].map((n) => `${tag}-${n}`);
const CIP = '10.9.1.2', SIP = '10.9.2.2';

const run = (argv: string[], input?: Buffer | string) => execFileSync(argv[0], argv.slice(1), { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
const inNs = (ns: string, argv: string[], input?: Buffer | string) => run(['ip', 'netns', 'exec', ns, ...argv], input);

function linuxRouter(): void {
  for (const ns of [C, R, S]) run(['ip', 'netns', 'add', ns]);
  run(['ip', 'link', 'add', `${tag}a`, 'type', 'veth', 'peer', 'name', `${tag}b`]);
  run(['ip', 'link', 'add', `${tag}c`, 'type', 'veth', 'peer', 'name', `${tag}d`]);
  run(['ip', 'link', 'set', `${tag}a`, 'netns', C]);
  run(['ip', 'link', 'set', `${tag}b`, 'netns', R]);
  run(['ip', 'link', 'set', `${tag}c`, 'netns', R]);
  run(['ip', 'link', 'set', `${tag}d`, 'netns', S]);
  const up = (ns: string, dev: string, addr: string, gw?: string) => {
    inNs(ns, ['ip', 'addr', 'add', addr, 'dev', dev]);
    inNs(ns, ['ip', 'link', 'set', dev, 'up']);
    inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
    if (gw) inNs(ns, ['ip', 'route', 'add', 'default', 'via', gw]);
  };
  up(C, `${tag}a`, `${CIP}/24`, '10.9.1.1');
  up(R, `${tag}b`, '10.9.1.1/24');
  up(R, `${tag}c`, '10.9.2.1/24');
  up(S, `${tag}d`, `${SIP}/24`, '10.9.2.1');
  inNs(R, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  inNs(R, ['nft', '-f', '-'], 'table inet tw { chain fw { type filter hook forward priority 0; policy accept; ct state invalid counter drop; }; }\n');
  for (const ns of [C, S]) inNs(ns, ['nft', '-f', '-'], 'table inet tw { chain in { type filter hook input priority 0; policy accept; meta l4proto tcp drop; }; }\n');
}

function cleanup(): void {
  for (const ns of [C, R, S]) { try { run(['ip', 'netns', 'del', ns]); } catch { /* not made */ } }
}

// Linux's verdict on one segment, and the state of the connection of client port `sport` after it.
function linuxSend(fromClient: boolean, sport: number, l4: ReturnType<typeof tcp>): { passed: boolean; state: string } {
  const invalid = () => Number(/counter packets (\d+)/.exec(inNs(R, ['nft', 'list', 'chain', 'inet', 'tw', 'fw']))![1]);
  const before = invalid();
  const [src, dst, ns] = fromClient ? [CIP, SIP, C] : [SIP, CIP, S];
  inNs(ns, ['socat', '-u', '-', `IP4-SENDTO:${dst}:6`], Buffer.from(l4.build(parseIPv4(src), parseIPv4(dst))));
  const passed = invalid() === before;
  const line = inNs(R, ['cat', '/proc/net/nf_conntrack']).split('\n').find((l) => l.includes(' tcp ') && l.includes(`sport=${sport} `));
  return { passed, state: line ? line.split(/\s+/)[5] : 'NONE' };
}

// netplane routing the same two subnets.
function netplane() {
  let now = 1000;
  const sw = new Switch({ maxPorts: 4, macEntries: 64, clock: () => now });
  const out: number[] = [];
  sw.onFrame((_f, p) => out.push(p));
  sw.addPort({ network: 1 });
  sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.9.1.1/24', mac: '02:6e:70:00:00:01' });
  rt.addInterface({ network: 2, address: '10.9.2.1/24', mac: '02:6e:70:00:00:02' });
  rt.setNeighbor({ address: CIP, mac: '02:00:00:00:00:0c', interface: 0 });
  rt.setNeighbor({ address: SIP, mac: '02:00:00:00:00:05', interface: 1 });
  return (fromClient: boolean, sport: number, l4: ReturnType<typeof tcp>) => {
    out.length = 0;
    const [src, dst, port, mac, gw] = fromClient ? [CIP, SIP, 0, '02:00:00:00:00:0c', '02:6e:70:00:00:01'] : [SIP, CIP, 1, '02:00:00:00:00:05', '02:6e:70:00:00:02'];
    sw.inject([[port, ethernet({ src: mac, dst: gw, payload: ipv4({ src, dst, payload: l4 }) })]], ++now);
    const c = rt.connections().find((x) => x.original.sport === sport || x.original.dport === sport);
    return { passed: out.length === 1, state: c?.state ?? 'NONE' };
  };
}

const D = new Uint8Array(100).fill(120);
const WS7 = new Uint8Array([1, 3, 3, 7]);
type Step = [label: string, fromClient: boolean, flags: string, seq: number, ack?: number, opts?: { options?: Uint8Array; data?: boolean }];
// Client port, then its segments; ISNs 1000 (client) and 5000 (server), windows 1000.
const hs = (o: Uint8Array | undefined = undefined, so: Uint8Array | undefined = undefined): Step[] => [
  ['SYN', true, 'S', 1000, 0, { options: o }], ['SYN-ACK', false, 'SA', 5000, 1001, { options: so }], ['ACK', true, 'A', 1001, 5001]];
const CASES: Array<[number, Step[]]> = [
  [40001, [['SYN', true, 'S', 1000], ['SYN-ACK acking past the SYN', false, 'SA', 5000, 9999], ['SYN-ACK acking far below', false, 'SA', 5000, 1000 - 100_000], ['SYN-ACK', false, 'SA', 5000, 1001]]],
  [40002, [...hs(), ['server data in window', false, 'PA', 5001, 1001, { data: true }], ['server data 100000 beyond', false, 'PA', 5101 + 100_000, 1001, { data: true }],
    ['server data acking unsent', false, 'PA', 5101, 1001 + 50_000, { data: true }], ['client data in window', true, 'PA', 1001, 5101, { data: true }],
    ['client data 3000000 beyond', true, 'PA', 1001 + 3_000_000, 5101, { data: true }], ['client old retransmission', true, 'PA', 1001 - 100_000, 5101, { data: true }]]],
  [40003, [...hs(WS7, WS7), ['scaled both ways: server data 100000 ahead', false, 'PA', 5001 + 100_000, 1001, { data: true }]]],
  [40004, [...hs(WS7), ['client scales alone: server data 100000 ahead', false, 'PA', 5001 + 100_000, 1001, { data: true }]]],
  [40005, [...hs(), ['server data', false, 'PA', 5001, 1001, { data: true }], ['client ACK', true, 'A', 1001, 5101],
    ['RST below the ACK', false, 'R', 5050], ['RST far beyond', false, 'R', 5101 + 1_000_000], ['RST in window, not exact', false, 'R', 5601], ['RST exact', false, 'R', 5101]]],
  [40006, [['new: RST', true, 'R', 1001], ['new: FIN-ACK', true, 'FA', 1001, 5001], ['new: SYN-FIN', true, 'SF', 1000],
    ['new: data (pickup)', true, 'PA', 1001, 5001, { data: true }], ['picked up: server ACK', false, 'A', 5001, 1101],
    ['picked up: server data 200000 beyond', false, 'PA', 5001 + 200_000, 1101, { data: true }]]],
  [40007, [...hs(), ['SYN-FIN on a connection', true, 'SF', 1001, 5001], ['no flags on a connection', true, '', 1001]]],
];

test.before(() => { if (!missing) { cleanup(); linuxRouter(); } });
test.after(() => { if (!missing) cleanup(); });

test('the requirements are there: root, ip, socat, nft', () => {
  if (missing) assert.unreachable(`${missing}; run the tests as root with them installed`);
});

test('every crafted segment: the same verdict and the same state after it as the Linux router', () => {
  if (missing) return;
  const np = netplane();
  const diffs: string[] = [];
  let invalid = 0;
  for (const [sport, steps] of CASES) {
    for (const [label, fromClient, flags, seq, ack, o] of steps) {
      const l4 = () => tcp({ srcPort: fromClient ? sport : 443, dstPort: fromClient ? 443 : sport, flags, seq: seq >>> 0, ack: (ack ?? 0) >>> 0, window: 1000, options: o?.options, payload: o?.data ? D : undefined });
      const linux = linuxSend(fromClient, sport, l4());
      const ours = np(fromClient, sport, l4());
      if (!linux.passed) invalid++;
      if (linux.passed !== ours.passed || linux.state !== ours.state) {
        diffs.push(`${sport} ${label}: Linux ${linux.passed ? 'passed' : 'invalid'} ${linux.state}, netplane ${ours.passed ? 'passed' : 'dropped'} ${ours.state}`);
      }
    }
  }
  assert.equal(diffs, []);
  assert.ok(invalid >= 10, `Linux marked ${invalid} segments invalid: the cases must exercise the checks`);
});

test.run();
