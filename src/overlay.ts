// The VXLAN overlay of a switch (`sw.overlay`): the underlay port and this host's provider address
// (PA), which broadcast domain is which VXLAN segment (VNI), the hosts that may send each VNI, and the
// remote endpoints (stations of an overlay network that live on another host). The per-packet work
// is the dataplane's (assembly/overlay.ts, assembly/nodes/vxlan.ts; docs/ABI.md "VXLAN overlay");
// this class checks arguments, names the one it refuses, and keeps the remote endpoints' addresses
// for remotes() (the dataplane keeps only what the packet path needs).
//
// The dataplane's overlay tables are created on first use, sized by the switch's `maxRemotes` and
// `maxOverlayMembers` options, so a switch that never uses the overlay pays nothing for it.
import { NetplaneError, check, abi, type DataplaneView } from './abi.js';
import { parseIPv4, parseIPv6, parseMac, formatIPv4, formatIPv6 } from './frames.js';

export interface UnderlaySpec {
  port: number;        // the switch port the underlay transport is attached to
  address: string;     // this host's provider address (IPv4)
  udpPort?: number;    // the VXLAN UDP port (default 4789, IANA's)
  mtu?: number;        // the underlay's IP MTU (default 1500): inner IP packets up to mtu - 50 fit
}

export interface RemoteEndpointSpec {
  network: number;
  vlan?: number;
  mac: string;
  addresses: string[];        // IPv4 and/or IPv6: ARP and ND for them are answered with `mac`
  providerAddress: string;    // the PA of the host that holds it
}

export interface RemoteEndpoint { network: number; vlan: number; mac: string; addresses: string[]; providerAddress: string }

export const OVERLAY_DEFAULTS = { maxRemotes: 16384, maxOverlayMembers: 4096 };

export class Overlay {
  private created = false;
  private readonly remoteList = new Map<string, RemoteEndpoint>();
  private readonly addressOwner = new Map<string, string>();   // network/vlan/address -> remote key
  private underlay?: Required<UnderlaySpec>;

  constructor(private readonly dp: DataplaneView, private readonly sizes: { maxRemotes: number; maxOverlayMembers: number },
              private readonly now: () => number, private readonly hasPort: (id: number) => boolean) {}

  private x() {
    const x = this.dp.exports;
    if (!this.created) {
      abi('maxRemotes', x.overlay_create(this.sizes.maxRemotes, this.sizes.maxOverlayMembers));
      this.created = true;
      this.dp.views();
    }
    return x;
  }

  setUnderlay(spec: UnderlaySpec): void {
    const udpPort = spec.udpPort ?? 4789, mtu = spec.mtu ?? 1500;
    check('port', spec.port, 0, 0xefff);
    if (!this.hasPort(spec.port)) throw new NetplaneError('port', `no port ${spec.port}`);
    const pa = ipv4Arg('address', spec.address);
    if (pa === 0 || (pa >>> 28) >= 0xe) throw new NetplaneError('address', `${spec.address} is not a unicast address`);
    check('udpPort', udpPort, 1, 65535);
    check('mtu', mtu, 118, 65535);
    abi('port', this.x().overlay_set_underlay(spec.port, pa, udpPort, mtu));
    this.underlay = { port: spec.port, address: spec.address, udpPort, mtu };
  }

  clearUnderlay(): void {
    abi('underlay', this.x().overlay_clear_underlay());
    this.underlay = undefined;
  }

  // The underlay as set, or undefined.
  underlaySpec(): Required<UnderlaySpec> | undefined { return this.underlay ? { ...this.underlay } : undefined; }

  setVni(network: number, vni: number, vlan = 0): void {
    check('network', network, 0, 65535);
    check('vni', vni, 1, 0xffffff);
    check('vlan', vlan, 0, 4094);
    const r = this.x().overlay_set_vni(network, vlan, vni);
    if (r === -3) throw new NetplaneError('vni', `VNI ${vni} is already another domain's`);
    abi('vni', r);
  }

  removeVni(network: number, vlan = 0): void {
    check('network', network, 0, 65535);
    check('vlan', vlan, 0, 4094);
    const r = this.x().overlay_remove_vni(network, vlan);
    if (r === -8) return;
    abi('network', r);
  }

  vni(network: number, vlan = 0): number {
    check('network', network, 0, 65535);
    check('vlan', vlan, 0, 4094);
    return this.x().overlay_vni(network, vlan);
  }

  addMember(vni: number, providerAddress: string): void {
    check('vni', vni, 1, 0xffffff);
    const pa = ipv4Arg('providerAddress', providerAddress);
    abi('providerAddress', this.x().overlay_member_add(vni, pa));
  }

  removeMember(vni: number, providerAddress: string): void {
    check('vni', vni, 1, 0xffffff);
    const pa = ipv4Arg('providerAddress', providerAddress);
    const r = this.x().overlay_member_remove(vni, pa);
    if (r === -8) return;
    abi('providerAddress', r);
  }

  // The members of each VNI: explicit (addMember) and implicit (PAs holding remote endpoints there).
  members(): Array<{ vni: number; providerAddress: string; explicit: boolean; remotes: number }> {
    const x = this.x();
    this.dp.views();
    const base = x.overlay_member_table(), n = x.overlay_member_high(), dv = this.dp.dv;
    const out: Array<{ vni: number; providerAddress: string; explicit: boolean; remotes: number }> = [];
    for (let i = 0; i < n; i++) {
      const r = base + i * 16;
      const vni = dv.getUint32(r, true);
      if (!vni) continue;
      const pa = dv.getUint32(r + 4, true);
      out.push({ vni, providerAddress: formatIPv4(new Uint8Array([pa >>> 24, (pa >>> 16) & 255, (pa >>> 8) & 255, pa & 255])),
                 explicit: dv.getUint32(r + 8, true) !== 0, remotes: dv.getUint32(r + 12, true) });
    }
    return out.sort((a, b) => a.vni - b.vni || a.providerAddress.localeCompare(b.providerAddress));
  }

  // Adds a remote endpoint, or replaces the one with the same (network, vlan, mac). All arguments are
  // checked first; a refused call changes nothing.
  addRemote(spec: RemoteEndpointSpec): void {
    const network = spec.network, vlan = spec.vlan ?? 0;
    check('network', network, 0, 65535);
    check('vlan', vlan, 0, 4094);
    const m = macArg(spec.mac);
    if (m[0] & 1) throw new NetplaneError('mac', `${spec.mac} is a group address, not a station`);
    if (m.every((b) => b === 0)) throw new NetplaneError('mac', '00:00:00:00:00:00 is not a station');
    const pa = ipv4Arg('providerAddress', spec.providerAddress);
    if (pa === 0 || (pa >>> 28) >= 0xe) throw new NetplaneError('providerAddress', `${spec.providerAddress} is not a unicast address`);
    if (this.underlay && spec.providerAddress === this.underlay.address) throw new NetplaneError('providerAddress', `${spec.providerAddress} is this host's own`);
    if (!Array.isArray(spec.addresses)) throw new NetplaneError('addresses', 'must be an array of IPv4 / IPv6 addresses');
    const addrs = spec.addresses.map((a, i) => addressArg(`addresses[${i}]`, a));
    const key = remoteKey(network, vlan, m);
    for (const a of addrs) {
      const owner = this.addressOwner.get(`${network}/${vlan}/${a.text}`);
      if (owner !== undefined && owner !== key) throw new NetplaneError('addresses', `${a.text} is already remote endpoint ${this.remoteList.get(owner)!.mac}'s`);
    }
    const x = this.x();
    const hi = (m[0] << 8) | m[1], lo = macLo(m);
    const old = this.remoteList.get(key);
    const idx = x.overlay_remote_add(network, vlan, hi, lo, pa, this.now());
    if (idx === -9) throw new NetplaneError('mac', `${spec.mac} is a static MAC of another port in network ${network} (a gateway or a pinned endpoint)`);
    if (idx === -7) throw new NetplaneError('mac', `table full: ${x.overlay_remote_count()} remote endpoints (maxRemotes ${this.sizes.maxRemotes}) or the MAC table`);
    abi('remote', idx);
    for (const a of addrs) {
      const r = a.v6 ? x.overlay_remote_address6(idx, a.words[0], a.words[1], a.words[2], a.words[3]) : x.overlay_remote_address4(idx, a.words[0]);
      if (r < 0) {
        // Leave the switch as it was: the old remote, or none.
        if (old) this.reinstall(old);
        else x.overlay_remote_remove(network, vlan, hi, lo);
        if (r === -7) throw new NetplaneError('addresses', `the remote address table is full (${2 * this.sizes.maxRemotes})`);
        throw new NetplaneError('addresses', `${a.text} is already another remote endpoint's in network ${network}`);
      }
    }
    if (old) for (const t of old.addresses) this.addressOwner.delete(`${network}/${vlan}/${t}`);
    for (const a of addrs) this.addressOwner.set(`${network}/${vlan}/${a.text}`, key);
    this.remoteList.set(key, { network, vlan, mac: canonMac(m), addresses: addrs.map((a) => a.text), providerAddress: spec.providerAddress });
  }

  private reinstall(r: RemoteEndpoint): void {
    const m = parseMac(r.mac), x = this.dp.exports;
    const idx = x.overlay_remote_add(r.network, r.vlan, (m[0] << 8) | m[1], macLo(m), ipv4Arg('providerAddress', r.providerAddress), this.now());
    if (idx < 0) return;
    for (const t of r.addresses) {
      const a = addressArg('addresses', t);
      if (a.v6) x.overlay_remote_address6(idx, a.words[0], a.words[1], a.words[2], a.words[3]);
      else x.overlay_remote_address4(idx, a.words[0]);
    }
  }

  removeRemote(spec: { network: number; vlan?: number; mac: string }): boolean {
    const network = spec.network, vlan = spec.vlan ?? 0;
    check('network', network, 0, 65535);
    check('vlan', vlan, 0, 4094);
    const m = macArg(spec.mac);
    const r = this.x().overlay_remote_remove(network, vlan, (m[0] << 8) | m[1], macLo(m));
    const key = remoteKey(network, vlan, m);
    for (const t of this.remoteList.get(key)?.addresses ?? []) this.addressOwner.delete(`${network}/${vlan}/${t}`);
    this.remoteList.delete(key);
    if (r === -8) return false;
    abi('mac', r);
    return true;
  }

  remotes(): RemoteEndpoint[] {
    return [...this.remoteList.values()].map((r) => ({ ...r, addresses: [...r.addresses] }))
      .sort((a, b) => a.network - b.network || a.vlan - b.vlan || a.mac.localeCompare(b.mac));
  }
}

function remoteKey(network: number, vlan: number, m: Uint8Array): string { return `${network}/${vlan}/${canonMac(m)}`; }
function canonMac(m: Uint8Array): string { return [...m].map((b) => b.toString(16).padStart(2, '0')).join(':'); }
function macLo(m: Uint8Array): number { return ((m[2] << 24) | (m[3] << 16) | (m[4] << 8) | m[5]) >>> 0; }
function macArg(s: string): Uint8Array {
  try { return parseMac(s); } catch (e) { throw new NetplaneError('mac', (e as Error).message); }
}
function ipv4Arg(field: string, s: string): number {
  let b: Uint8Array;
  try { b = parseIPv4(s); } catch (e) { throw new NetplaneError(field, (e as Error).message); }
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}
function addressArg(field: string, s: string): { v6: boolean; words: number[]; text: string } {
  if (typeof s !== 'string') throw new NetplaneError(field, `must be an IPv4 or IPv6 address, got ${JSON.stringify(s)}`);
  if (!s.includes(':')) {
    const a = ipv4Arg(field, s);
    if (a === 0 || (a >>> 28) >= 0xe) throw new NetplaneError(field, `${s} is not a unicast address`);
    return { v6: false, words: [a], text: formatIPv4(parseIPv4(s)) };
  }
  let b: Uint8Array;
  try { b = parseIPv6(s); } catch (e) { throw new NetplaneError(field, (e as Error).message); }
  if (b[0] === 0xff || b.every((x) => x === 0)) throw new NetplaneError(field, `${s} is not a unicast address`);
  const w = [0, 4, 8, 12].map((o) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0);
  return { v6: true, words: w, text: formatIPv6(b) };
}
