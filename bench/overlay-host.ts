// One host of bench:e2e's overlay case, run inside that host's namespace (`ip netns exec`): a switch
// with one guest on the native TAP attach (with offloads, as the best attachment) and the VXLAN
// underlay on this namespace's own sockets (src/transports/underlay.ts), the other host's guest as a
// remote endpoint. The TAP is made here, in this namespace, and moved into the guest's namespace by
// the caller. Prints "ready" when up; on SIGTERM prints its counters as JSON and exits.
// Usage: overlay-host.ts '{"pa","peerPa","vni","tap","remoteMac","remoteIp","mtu"}'
import { Switch } from '../src/index.js';
import { TapTransport } from '../src/transports/tap.js';
import { UnderlayTransport } from '../src/transports/underlay.js';

const a = JSON.parse(process.argv[2]) as { pa: string; peerPa: string; vni: number; tap: string; remoteMac: string; remoteIp: string };
const sw = new Switch({ maxPorts: 4 });
const ul = sw.addPort({ network: 100 });
const guest = sw.addPort({ network: 1 });
const underlay = UnderlayTransport.open(sw, ul.id, { address: a.pa });
sw.overlay.setUnderlay({ port: ul.id, address: a.pa });
sw.overlay.setVni(1, a.vni);
sw.overlay.addRemote({ network: 1, mac: a.remoteMac, addresses: [a.remoteIp], providerAddress: a.peerPa });
const tap = new TapTransport(sw, guest.id, a.tap, { offload: true });
const cpu0 = process.cpuUsage();
process.on('SIGTERM', () => {
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ cpuMs: Math.round((cpu.user + cpu.system) / 1000), underlay: underlay.stats, tap: tap.stats, counters: sw.counters() })}\n`);
  process.exit(0);
});
process.stdout.write('ready\n');
