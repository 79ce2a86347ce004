// The `netplane` command. Today it has the demo that `npm start` runs: a real switch (the release
// WebAssembly build) driven with generated traffic, narrated step by step, ending with the MAC table and
// the counters. Nothing in it is canned: every line it prints is read back from the dataplane.
import { Switch, type SwitchPort } from '../dataplane.js';
import { arp, ethernet, ipv4, udp, tcp, icmp, dissect } from '../frames.js';

const HELP = `netplane — a software-defined host network in WebAssembly

usage: netplane <command>

commands:
  demo      run the L2 switch on generated traffic and show what it did (npm start)
  help      this text
`;

export async function main(argv: string[]): Promise<number> {
  const cmd = argv[0] ?? 'help';
  if (cmd === 'demo') return demo();
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP);
    return 0;
  }
  process.stderr.write(`netplane: unknown command "${cmd}"\n\n${HELP}`);
  return 2;
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
