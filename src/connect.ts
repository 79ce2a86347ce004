// The command lines that connect a VM (or a TAP device, or a browser VM) to an endpoint's Transport,
// MAC included: `netplane endpoint get` prints them, docs/connect.md explains them. A guest that
// sends from another MAC is dropped by the spoof guard (`mac_spoof` in `netplane stats`), so every
// line carries the endpoint's.
//
// The mapping that trips people up: for a udp Transport, netplane's `Bind` is where QEMU sends
// (QEMU's `remote.*`) and netplane's `Peer` is where QEMU listens (QEMU's `local.*`).
import type { HostComputeEndpoint, HostComputeNetwork, EndpointStatus } from './model/types.js';
import { hostPort } from './model/validate.js';
import { gatewayOf, contains } from './model/store.js';

const NETDEV = 'n0';

// Lines to print: comments start with "# ", the rest are commands or options to paste. Empty when
// the endpoint has no Transport. `status` is what the daemon reports (its Address holds a unix
// socket's full path); `network` adds the guest's address configuration.
export function connectCommands(ep: HostComputeEndpoint, status?: EndpointStatus, network?: HostComputeNetwork): string[] {
  const t = ep.Transport;
  if (!t) return [];
  const mac = ep.MacAddress ?? '<MAC>';
  const out: string[] = [`# connect a VM to endpoint ${ep.ID}: its MAC must be ${mac} (frames from any other source MAC are dropped as mac_spoof)`];
  if (status?.Transport === 'degraded') out.push(`# the transport is degraded now (${status.Reason ?? 'see netplane stats'}); netplane retries it`);
  const device = `-device virtio-net-pci,netdev=${NETDEV},mac=${mac}`;
  if (t.Type === 'stream') {
    const addr = status?.Address ?? t.Listen;
    if (addr.startsWith('unix:')) {
      const path = addr.slice(5);
      out.push(`# QEMU 7.2 or later, over the unix socket${status?.Address ? '' : ` (${path} is a name in the daemon's socket directory)`}: add to the VM's command line`);
      out.push(`-netdev stream,id=${NETDEV},server=off,addr.type=unix,addr.path=${path} ${device}`);
    } else {
      const { host, port } = reachable(hostPort(addr.replace(/^tcp:/, ''), 'Transport.Listen'));
      out.push('# QEMU 7.2 or later, over TCP: add to the VM\'s command line');
      out.push(`-netdev stream,id=${NETDEV},server=off,addr.type=inet,addr.host=${host},addr.port=${port} ${device}`);
      out.push('# QEMU before 7.2 (the same framing):');
      out.push(`-netdev socket,id=${NETDEV},connect=${bracket(host)}:${port} ${device}`);
    }
    out.push('# a stream guest does not come back by itself after a daemon restart; QEMU 8.0 to 9.1 can: add ,reconnect=1 to -netdev (9.2 and later: ,reconnect-ms=1000)');
  } else if (t.Type === 'udp') {
    const bind = reachable(hostPort(status?.Address ?? t.Bind, 'Transport.Bind'));
    const peer = t.Peer ? hostPort(t.Peer, 'Transport.Peer') : { host: bind.host, port: bind.port < 65535 ? bind.port + 1 : bind.port - 1 };
    out.push('# QEMU 7.2 or later: add to the VM\'s command line (QEMU\'s local is netplane\'s Peer, QEMU\'s remote is netplane\'s Bind)');
    if (!t.Peer) out.push(`# the Transport has no Peer: netplane takes the first sender as its peer, so any free local port will do (${peer.port} is a suggestion); set Transport.Peer to pin it`);
    out.push(`-netdev dgram,id=${NETDEV},local.type=inet,local.host=${peer.host},local.port=${peer.port},remote.type=inet,remote.host=${bind.host},remote.port=${bind.port} ${device}`);
    out.push('# QEMU before 7.2:');
    out.push(`-netdev socket,id=${NETDEV},udp=${bracket(bind.host)}:${bind.port},localaddr=${bracket(peer.host)}:${peer.port} ${device}`);
    out.push(...guestConfig(ep, network, 'eth0', '# in the guest'));
    const tap = `np-${ep.ID}`.slice(0, 15);
    const six = bind.host.includes(':');
    out.push('# or a TAP device on this host, through socat (as root), given the endpoint\'s MAC and addresses:');
    out.push(`socat TUN,tun-type=tap,tun-name=${tap},iff-no-pi,iff-up UDP${six ? '6' : ''}-DATAGRAM:${bracket(bind.host)}:${bind.port}${t.Peer ? `,bind=${bracket(peer.host)}:${peer.port}` : ''} &`);
    out.push(`ip link set ${tap} address ${mac}`);
    return out.concat(guestConfig(ep, network, tap, '', false).slice(1));
  } else {
    const url = status?.Address ?? `ws://${t.Listen}/`;
    const origins = t.AllowedOrigins ?? [];
    out.push(`# v86 in a web page: the page's origin must be in Transport.AllowedOrigins (${origins.length ? origins.join(', ') : 'none yet: every page is refused'})`);
    out.push(`new V86({ /* ... */ network_relay_url: "${url}" })`);
    out.push(`# v86 picks its own MAC: in the guest, before anything else, ip link set eth0 address ${mac}`);
  }
  return out.concat(guestConfig(ep, network, 'eth0', '# in the guest'));
}

// The guest's addresses: netplane serves no DHCP, so a guest is configured by hand. (A TAP device on
// the host gets no default route: it would take the host's.)
function guestConfig(ep: HostComputeEndpoint, network: HostComputeNetwork | undefined, dev: string, title: string, defaultRoute = true): string[] {
  const configs = ep.IpConfigurations ?? [];
  if (configs.length === 0) return [];
  const subnets = (network?.Ipams ?? []).flatMap((i) => i.Subnets);
  const lines = [`${title} (netplane serves no DHCP):`];
  const cmds: string[] = [];
  let gateway: string | undefined;
  for (const c of configs) {
    const subnet = subnets.find((s) => contains(s.IpAddressPrefix, c.IpAddress));
    const len = c.PrefixLength ?? (subnet ? Number(subnet.IpAddressPrefix.split('/')[1]) : c.IpAddress.includes(':') ? 64 : 24);
    cmds.push(`ip addr add ${c.IpAddress}/${len} dev ${dev}`);
    if (!gateway && subnet && !c.IpAddress.includes(':') && network?.Type !== 'Private') gateway = gatewayOf(subnet);
  }
  cmds.push(`ip link set ${dev} up`);
  if (gateway && defaultRoute) cmds.push(`ip route add default via ${gateway}`);
  lines.push(cmds.join(' && '));
  return lines;
}

// An address a client can reach: a wildcard listener is reached on loopback from this host.
function reachable(a: { host: string; port: number }): { host: string; port: number } {
  if (a.host === '0.0.0.0') return { host: '127.0.0.1', port: a.port };
  if (a.host === '::') return { host: '::1', port: a.port };
  return a;
}

function bracket(host: string): string { return host.includes(':') ? `[${host}]` : host; }
