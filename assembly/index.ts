// The ABI: the only exports of the module (docs/ABI.md is their reference). Numbers and addresses
// only, so any WebAssembly host can drive the switch: write frames and rx descriptors into the rx
// areas, call process() once per batch, read tx descriptors. Configuration goes through the port_* and
// mac_* calls; counters and the MAC table are read straight from linear memory.
//
// One module instance is one switch; a process runs as many switches as it instantiates modules.
// Configuration calls return 0 or a negative Error; they check every argument before changing anything,
// so a refused call leaves the switch exactly as it was.
import { Reason, reasonName } from "./reasons";
import { Stat, statName, allocCounters, dropBase, statBase } from "./counters";
import * as counters from "./counters";
import * as arena from "./arena";
import * as ports from "./ports";
import * as mac from "./tables/mac";
import * as tx from "./tx";
import * as punt from "./punt";
import * as l2forward from "./nodes/l2forward";
import * as pipeline from "./pipeline";
import * as checksum from "./wire/checksum";
import { meta, resetMeta } from "./packet";
import * as packet from "./packet";
import { parse } from "./nodes/parse";
import * as router from "./router";
import * as lpm from "./tables/lpm";
import * as neighbor from "./tables/neighbor";
import * as flow from "./tables/flow";
import * as natrules from "./tables/natrules";
import * as eim from "./tables/eim";
import * as addr6 from "./tables/addr6";
import * as frag from "./tables/frag";
import * as acl from "./tables/acl";
import * as hashing from "./tables/hash";
import * as aclnode from "./nodes/acl";
import * as trace from "./trace";
import * as ct from "./nodes/ct";
import * as gro from "./nodes/gro";
import { icmpErrors, arpRequests, initBuckets } from "./ratelimit";
import * as overlay from "./overlay";

export { abortMessage, abortFile, abortLine, abortColumn } from "./abort";

const enum Error {
  Ok = 0,
  AlreadyCreated = -1,
  NotCreated = -2,
  BadArgument = -3,
  BadPort = -4,
  BadVlan = -5,
  BadNetwork = -6,
  TableFull = -7,
  NotFound = -8,
  BadMac = -9,
  NoL3 = -10,
  BadInterface = -11,
  BadZone = -12,
  BadPrefix = -13,
  TooLarge = -14,     // create/create_l3: the tables do not fit in wasm32 memory, or the host refused to grow it
}

export const ABI_VERSION: u32 = 2;

let created = false;

// The ranges of create's and create_l3's arguments: each is the most that could fit in wasm32
// memory on its own (docs/ABI.md). Together they may not fit: that is checked on the sum (TooLarge).
const MAX_MAC_ENTRIES: u32 = 1 << 26;      // 2^27 slots of 16 B = 2 GiB
const MAX_BATCH: u32 = 65536;
const MAX_RX_BYTES: u32 = 1 << 30;        // the tx area is twice this
const MAX_ROUTES: u32 = 1 << 24;
const MAX_NEIGHBORS: u32 = 1 << 24;
const MAX_CONNECTIONS: u32 = 1 << 24;
const MAX_MAPPINGS: u32 = 1 << 20;
const MAX_ADDRS6: u32 = 1 << 24;

// The bytes the tables of the last create or create_l3 call need (0 when it refused an argument
// before adding them up; set when it refused with TooLarge, so a host can say how far over it was).
let neededBytes: u64 = 0;
export function create_needed_bytes(): f64 { return <f64>neededBytes; }

// The tx area: flooding can send each frame to every other port (at most 64 descriptors a frame),
// and a VLAN rewrite needs at most two copies of a frame (one untagged, one tagged), each at most
// 4 bytes longer, rounded to 8.
function txDescriptors(maxPorts: u32, batch: u32): u32 {
  return <u32>min<u64>(<u64>batch * <u64>(maxPorts < 64 ? maxPorts : 64), 1 << 20);
}
function txBytes(batch: u32, rxBytes: u32): u32 { return rxBytes * 2 + batch * 24; }

// Keys the hashes of the tables whose keys a guest or a remote host picks (tables/hash.ts `seed`) with
// 64 secret bits (lo, hi). Before create() only, so that no table holds a key hashed with another
// seed: afterwards it returns -1 (already created) and changes nothing. A host that never calls it
// gets seed 0: the tables work, but anyone can compute keys that collide in them. The Node.js and
// browser entries pass 64 random bits (DataplaneOptions.hashSeed).
export function set_hash_seed(lo: u32, hi: u32): i32 {
  if (created) return Error.AlreadyCreated;
  hashing.setSeed((<u64>hi << 32) | <u64>lo);
  return Error.Ok;
}

// Creates the switch's tables. Called once per instance, before anything else. Returns 0, -3 for an
// argument out of its range, -14 when the tables together do not fit (nothing is changed then).
//   maxPorts:    port numbers 0 .. maxPorts-1 (1 .. 61440)
//   macEntries:  MAC table capacity (1 .. 2^26; the table has the next power of two >= 2x slots)
//   batch:       most frames per process() call (1 .. 65536)
//   rxBytes:     size of the rx buffer that frames are written into (64 .. 2^30)
export function create(maxPorts: u32, macEntries: u32, batch: u32, rxBytes: u32): i32 {
  if (created) return Error.AlreadyCreated;
  neededBytes = 0;
  if (maxPorts == 0 || maxPorts > overlay.TUNNEL_PORT) return Error.BadArgument;
  if (macEntries == 0 || macEntries > MAX_MAC_ENTRIES) return Error.BadArgument;
  if (batch == 0 || batch > MAX_BATCH) return Error.BadArgument;
  if (rxBytes < 64 || rxBytes > MAX_RX_BYTES) return Error.BadArgument;
  // One term per table; a new table adds its term here and its alloc below.
  neededBytes = counters.bytes() + ports.bytes(maxPorts) + l2forward.groupFwdBytes() + acl.bytes(maxPorts) +
                trace.bytes() + mac.bytes(macEntries) + pipeline.bytes(batch, rxBytes) + packet.bytes(batch) +
                tx.bytes(txDescriptors(maxPorts, batch), txBytes(batch, rxBytes));
  if (!arena.reserve(neededBytes)) return Error.TooLarge;
  created = true;
  allocCounters();
  ports.alloc(maxPorts);
  l2forward.allocGroupFwd();
  acl.alloc(maxPorts);
  trace.alloc();
  mac.alloc(macEntries);
  pipeline.alloc(batch, rxBytes);
  packet.alloc(batch);
  tx.alloc(txDescriptors(maxPorts, batch), txBytes(batch, rxBytes));
  return Error.Ok;
}

// ---- batch ----------------------------------------------------------------------------------------

// The working-set size above which a batch runs in three passes (pipeline.ts): bytes, default 1 MiB.
export function batch_set_touch_above(bytes: u32): i32 { pipeline.touchAbove = bytes; return 0; }
export function batch_touch_above(): u32 { return <u32>pipeline.touchAbove; }
export function rx_descriptors(): usize { return pipeline.rxDescBase; }
export function rx_buffer(): usize { return pipeline.rxBufBase; }
export function rx_buffer_size(): u32 { return pipeline.rxBufSize; }
export function max_batch(): u32 { return pipeline.maxBatch; }
export function tx_descriptors(): usize { return tx.descBase; }
export function tx_capacity(): u32 { return tx.descMax; }
// The vnet headers (12 bytes each, docs/ABI.md "Offloads"): rx record i belongs to rx descriptor i
// (read only when its port has offloads), tx record i to tx descriptor i (written only when its port
// has offloads).
export function rx_offloads(): usize { return pipeline.rxOffBase; }
export function tx_offloads(): usize { return tx.offBase; }

// Processes rx descriptors 0 .. n-1 at time `now` (milliseconds, any monotonic origin). Returns the
// number of tx descriptors written.
export function process(n: u32, now: f64): u32 {
  if (!created) return 0;
  return pipeline.process(n, now);
}

// ---- ports ----------------------------------------------------------------------------------------

// Configures (or reconfigures) port `p`. mode: 0 access, 1 trunk. vlan: the access VLAN or the trunk's
// native VLAN (0 = untagged domain). flags: 1 spoof guard, 2 no learning, 4 trunk drops untagged.
// learnLimit: 0xffffffff for none. A reconfigured port keeps its counters; its learned MACs are
// forgotten if its network or VLANs changed.
export function port_configure(p: u32, network: u32, mode: u32, vlan: u32, flags: u32, learnLimit: u32): i32 {
  if (!created) return Error.NotCreated;
  if (p >= ports.maxPorts) return Error.BadPort;
  if (network > 0xffff) return Error.BadNetwork;
  if (mode > 1) return Error.BadArgument;
  if (vlan >= 4095) return Error.BadVlan;
  if (flags & ~<u32>ports.PORT_FLAGS_ALL) return Error.BadArgument;
  let pt = ports.port(p);
  let fresh = pt.state == ports.STATE_FREE;
  if (!fresh && (<u32>pt.network != network || <u32>pt.vlan != vlan || <u32>pt.mode != mode)) mac.flushPort(p);
  let keep = fresh ? 0 : pt.flags & (ports.PORT_ACL | ports.PORT_CAPS);
  if (fresh) {
    memory.fill(changetype<usize>(pt), 0, ports.PORT_SIZE);
    memory.fill(ports.portDropBase + <usize>p * <usize>Reason.Count * 8, 0, <usize>Reason.Count * 8);
    ports.clearVlans(p);
    pt.state = ports.STATE_UP;
  }
  pt.network = <u16>network;
  pt.mode = <u8>mode;
  pt.vlan = <u16>vlan;
  pt.flags = <u16>(flags | <u32>keep);
  pt.learnLimit = learnLimit;
  if (p == overlay.underlayPort) pt.flags |= ports.PORT_NO_LEARN;
  if (p >= ports.highPort) ports.highPort = p + 1;
  return Error.Ok;
}

// Adds (allowed=1) or removes (allowed=0) VLAN `vlan` from a trunk port's allowed list.
export function port_allow_vlan(p: u32, vlan: u32, allowed: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (vlan == 0 || vlan >= 4095) return Error.BadVlan;
  ports.setVlanAllowed(p, vlan, allowed != 0);
  if (!allowed) mac.flushPort(p);
  return Error.Ok;
}

// Empties a trunk port's allowed VLAN list (the MACs it learned in them are forgotten).
export function port_clear_vlans(p: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (ports.hasVlans(p)) {
    ports.clearVlans(p);
    mac.flushPort(p);
  }
  return Error.Ok;
}

// Sets the MAC the spoof guard checks: macHi = bytes 0-1, macLo = bytes 2-5 (big-endian values, so
// 02:00:00:00:00:01 is macHi 0x0200, macLo 0x00000001).
export function port_set_guard_mac(p: u32, macHi: u32, macLo: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (macHi > 0xffff) return Error.BadMac;
  ports.port(p).guardMac = macFromParts(macHi, macLo);
  return Error.Ok;
}

// Administratively up (1) or down (0): a down port neither receives nor sends.
export function port_set_up(p: u32, up: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  ports.port(p).state = up ? (p == overlay.underlayPort ? ports.STATE_UNDERLAY : ports.STATE_UP) : ports.STATE_DOWN;
  return Error.Ok;
}

// Removes a port: its MACs are forgotten, its counters cleared.
export function port_remove(p: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (p == overlay.underlayPort) overlay.setUnderlay(overlay.NO_PORT, 0, overlay.DEFAULT_UDP_PORT, 1500);
  mac.flushPort(p);
  let pt = ports.port(p);
  if (pt.flags & ports.PORT_ACL) {
    acl.unbind(p, acl.DIR_OUT);
    acl.unbind(p, acl.DIR_IN);
    if (l3) flow.flush(aclnode.ZONE_BASE + p);
  }
  memory.fill(changetype<usize>(pt), 0, ports.PORT_SIZE);
  memory.fill(ports.portDropBase + <usize>p * <usize>Reason.Count * 8, 0, <usize>Reason.Count * 8);
  ports.clearVlans(p);
  gro.recount();
  return Error.Ok;
}

// Sets port p's offload capabilities (1 checksum, 2 TSO4, 4 TSO6, 8 TSO ECN, 16 USO; 0 = a plain
// port, the default). A port with capabilities exchanges a vnet header with every frame through
// rx_offloads() and tx_offloads(). As Linux's TUNSETOFFLOAD, segmentation needs checksum offload and
// TSO ECN needs TSO4 or TSO6.
export function port_set_offload(p: u32, caps: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (caps & ~ports.OFFLOAD_ALL) return Error.BadArgument;
  if ((caps & ~ports.OFFLOAD_CSUM) != 0 && (caps & ports.OFFLOAD_CSUM) == 0) return Error.BadArgument;
  if ((caps & ports.OFFLOAD_TSO_ECN) != 0 && (caps & (ports.OFFLOAD_TSO4 | ports.OFFLOAD_TSO6)) == 0) return Error.BadArgument;
  let pt = ports.port(p);
  pt.flags = <u16>((<u32>pt.flags & ~<u32>ports.PORT_CAPS) | (caps << ports.PORT_CAPS_SHIFT));
  gro.recount();
  return Error.Ok;
}
export function port_offload(p: u32): u32 {
  return checkPort(p) ? 0 : ports.capsOf(ports.port(p).flags);
}

export function port_record(p: u32): usize {
  return p < ports.maxPorts ? changetype<usize>(ports.port(p)) : 0;
}
export function port_record_size(): u32 { return <u32>ports.PORT_SIZE; }
export function port_drops(p: u32): usize {
  return p < ports.maxPorts ? ports.portDropBase + <usize>p * <usize>Reason.Count * 8 : 0;
}
export function max_ports(): u32 { return ports.maxPorts; }

function checkPort(p: u32): i32 {
  if (!created) return Error.NotCreated;
  if (p >= ports.maxPorts || ports.port(p).state == ports.STATE_FREE) return Error.BadPort;
  return Error.Ok;
}

function macFromParts(hi: u32, lo: u32): u64 {
  // Wire order packed little-endian: byte 0 is the low byte.
  let b0 = <u64>(hi >> 8) & 0xff, b1 = <u64>hi & 0xff;
  let b2 = <u64>(lo >> 24) & 0xff, b3 = <u64>(lo >> 16) & 0xff, b4 = <u64>(lo >> 8) & 0xff, b5 = <u64>lo & 0xff;
  return b0 | (b1 << 8) | (b2 << 16) | (b3 << 24) | (b4 << 32) | (b5 << 40);
}

// Which reserved link-local group addresses 01:80:c2:00:00:00-0f network `network` forwards: bit n
// for 01:80:c2:00:00:0n, as the Linux bridge's group_fwd_mask. Bits 0-2 (STP, PAUSE, LACP) are
// refused (-3), as Linux refuses them; 00 is flooded anyway (there is no STP), 01 and 02 never are.
export function network_set_group_fwd_mask(network: u32, mask: u32): i32 {
  if (!created) return Error.NotCreated;
  if (network > 0xffff) return Error.BadNetwork;
  if (mask > 0xffff || (mask & l2forward.GROUP_FWD_RESTRICTED)) return Error.BadArgument;
  l2forward.setGroupFwdMask(network, mask);
  return Error.Ok;
}
// The network's mask (0 by default), or 0 for a network out of range.
export function network_group_fwd_mask(network: u32): u32 {
  if (!created || network > 0xffff) return 0;
  return l2forward.groupFwdMask(network);
}

// ---- MAC table ------------------------------------------------------------------------------------

export function mac_add_static(network: u32, vlan: u32, macHi: u32, macLo: u32, p: u32, now: f64): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  if (macHi > 0xffff) return Error.BadMac;
  let m = macFromParts(macHi, macLo);
  if (m & 1) return Error.BadMac; // a group address is never a station
  if (m == 0) return Error.BadMac; // nor is 00:00:00:00:00:00 (its frames are dropped as l2_zero_source)
  return mac.addStatic(mac.key(m, vlan), network, p, <u32><u64>now) ? Error.Ok : Error.TableFull;
}

export function mac_remove(network: u32, vlan: u32, macHi: u32, macLo: u32): i32 {
  if (!created) return Error.NotCreated;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  if (macHi > 0xffff) return Error.BadMac;
  return mac.remove(mac.key(macFromParts(macHi, macLo), vlan), network) ? Error.Ok : Error.NotFound;
}

export function mac_flush_port(p: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  return <i32>mac.flushPort(p);
}
export function mac_flush(): i32 {
  if (!created) return Error.NotCreated;
  return <i32>mac.flushLearned();
}
export function mac_set_aging(ms: u32): i32 {
  if (ms == 0 || ms > 0x7fffffff) return Error.BadArgument;
  mac.agingMs = ms;
  return Error.Ok;
}
export function mac_aging(): u32 { return mac.agingMs; }
// Removes aged entries among the next `slots` slots of the table; returns how many it removed.
export function mac_age(now: f64, slots: u32): u32 {
  if (!created) return 0;
  return mac.sweep(<u32><u64>now, slots);
}
export function mac_table(): usize { return mac.base; }
export function mac_table_slots(): u32 { return mac.slots; }
export function mac_count(): u32 { return mac.count; }
export function mac_capacity(): u32 { return mac.capacity; }

// ---- counters -------------------------------------------------------------------------------------

export function drops(): usize { return dropBase; }
export function reason_count(): u32 { return <u32>Reason.Count; }
export function reason_name(r: u32): usize { return changetype<usize>(reasonName(r)); }
export function stats(): usize { return statBase; }
export function stat_count(): u32 { return <u32>Stat.Count; }
export function stat_name(i: u32): usize { return changetype<usize>(statName(i)); }

// ---- utilities ------------------------------------------------------------------------------------

// Parses `len` bytes at `addr` (inside the rx buffer) as the pipeline would and returns the reason it
// is malformed (0 if well formed); the dissected offsets are in the record at parse_result().
export function frame_parse(addr: usize, len: u32): u32 {
  if (!created) return <u32>Reason.RxBadDescriptor;
  let b = pipeline.rxBufBase;
  if (addr < b || <u64>(addr - b) + <u64>len > <u64>pipeline.rxBufSize) return <u32>Reason.RxBadDescriptor;
  let m = meta(0);
  resetMeta(m, addr, len, 0xffff);
  return <u32>parse(m);
}
export function parse_result(): usize { return packet.metaBase; }

// The Internet checksum of `len` bytes at `addr`, and its incremental update (RFC 1624).
export function inet_checksum(addr: usize, len: u32): u32 { return checksum.compute(addr, len); }
export function inet_checksum_adjust16(check: u32, old: u32, now: u32): u32 { return checksum.adjust16(check, old, now); }
export function inet_checksum_adjust32(check: u32, old: u32, now: u32): u32 { return checksum.adjust32(check, old, now); }
export function abi_version(): u32 { return ABI_VERSION; }

// ---- L3: router interfaces, routes, neighbours, conntrack, NAT -------------------------------------

let l3 = false;

// Creates the L3 tables, once, after create(): `routes` routes, `neighbors` neighbour entries, `conns`
// tracked connections, `mappings` port mappings (DNAT) and load balancers, `addrs6` distinct IPv6
// addresses in tracked connections. Returns 0, -3 for an argument out of its range, -14 when the
// tables together do not fit (nothing is changed then). docs/ABI.md has the bytes per entry;
// the fragment table is sized from `conns` (tables/frag.ts datagramsFor).
export function create_l3(routes: u32, neighbors: u32, conns: u32, mappings: u32, addrs6: u32): i32 {
  if (!created) return Error.NotCreated;
  if (l3) return Error.AlreadyCreated;
  neededBytes = 0;
  if (routes == 0 || routes > MAX_ROUTES || neighbors == 0 || neighbors > MAX_NEIGHBORS) return Error.BadArgument;
  if (conns == 0 || conns > MAX_CONNECTIONS || mappings == 0 || mappings > MAX_MAPPINGS) return Error.BadArgument;
  if (addrs6 == 0 || addrs6 > MAX_ADDRS6) return Error.BadArgument;
  // One term per table; a new table adds its term here and its alloc below.
  neededBytes = router.bytes() + lpm.bytes(routes) + neighbor.bytes(neighbors) + flow.bytes(conns) +
                addr6.bytes(addrs6) + eim.bytes(conns, natrules.MAX_SNAT_RULES) + natrules.bytes(mappings) +
                ct.timeoutBytes() + ct.zoneBytes() + frag.bytes(frag.datagramsFor(conns)) + punt.bytes(pipeline.maxBatch, pipeline.rxBufSize);
  if (!arena.reserve(neededBytes)) return Error.TooLarge;
  l3 = true;
  router.alloc();
  lpm.alloc(routes);
  neighbor.alloc(neighbors);
  flow.alloc(conns);
  addr6.alloc(addrs6);
  eim.alloc(conns, natrules.MAX_SNAT_RULES);
  natrules.alloc(mappings);
  frag.alloc(frag.datagramsFor(conns));
  punt.alloc(pipeline.maxBatch, pipeline.rxBufSize);
  ct.allocTimeouts();
  ct.allocZones();
  initBuckets();
  return Error.Ok;
}

function checkL3(): i32 { return !created ? Error.NotCreated : (!l3 ? Error.NoL3 : Error.Ok); }
function checkZone(z: u32): i32 { return z < lpm.MAX_ZONES ? Error.Ok : Error.BadZone; }
function checkIface(i: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (i >= router.MAX_INTERFACES || router.iface(i).state == router.IF_FREE) return Error.BadInterface;
  return Error.Ok;
}

// Creates or reconfigures router interface i: compartment `zone`, in broadcast domain (network, vlan),
// with gateway MAC (macHi, macLo). flags: 1 external (the uplink SNAT translates to); 2 TCP liberal
// and 4 no TCP pickup for the connections routed in or out through it (as the zone flags of
// ct_zone_set_tcp, for one network's traffic in a compartment several networks share).
export function iface_configure(i: u32, zone: u32, network: u32, vlan: u32, macHi: u32, macLo: u32, flags: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (i >= router.MAX_INTERFACES) return Error.BadInterface;
  if (checkZone(zone)) return Error.BadZone;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  if (macHi > 0xffff) return Error.BadMac;
  if (flags & ~<u32>(router.IF_EXTERNAL | router.IF_TCP_LIBERAL | router.IF_TCP_NO_PICKUP)) return Error.BadArgument;
  let m = macFromParts(macHi, macLo);
  if (m & 1) return Error.BadMac;
  let other = router.ifaceOfDomain(network, vlan);
  if (other >= 0 && <u32>other != i) return Error.BadArgument; // one interface per broadcast domain
  let f = router.iface(i);
  if (f.state != router.IF_FREE) {
    mac.remove(mac.key(f.mac, <u32>f.vlan), <u32>f.network);
    if (<u32>f.zone != zone && f.ipv4 != 0) lpm.remove(<u32>f.zone, 4, <u32>f.prefixLen4, 0, <u64>f.ipv4);
    if (<u32>f.zone != zone && (f.ipv6a | f.ipv6b) != 0) lpm.remove(<u32>f.zone, 6, f.prefixLen6, f.ipv6a, f.ipv6b);
  }
  if (!mac.addStatic(mac.key(m, vlan), network, router.ROUTER_PORT + i, 0)) return Error.TableFull;
  let oldZone = <u32>f.zone, hadAddr = f.state != router.IF_FREE && f.ipv4 != 0;
  let had6 = f.state != router.IF_FREE && (f.ipv6a | f.ipv6b) != 0;
  if (f.state == router.IF_FREE) f.mtu = router.DEFAULT_MTU;
  let silent = f.state != router.IF_FREE ? f.flags & router.IF_SILENT : 0; // kept across reconfiguration
  f.state = router.IF_UP;
  f.zone = <u16>zone;
  f.network = <u16>network;
  f.vlan = <u16>vlan;
  f.mac = m;
  f.flags = <u16>flags | silent;
  if (i >= router.ifCount) router.ifCount = i + 1;
  router.rebuildDomains();
  if (hadAddr && oldZone != zone) lpm.add(zone, 4, <u32>f.prefixLen4, 0, <u64>f.ipv4, i, 0, 0, 0, 0);
  if (had6 && oldZone != zone) lpm.add(zone, 6, f.prefixLen6, f.ipv6a, f.ipv6b, i, 0, 0, 0, 0);
  router.bumpEpoch();
  return Error.Ok;
}

// Sets interface i's gateway IPv4 address and on-link prefix (addr 0 removes it); installs the
// connected route (prefix -> i, on-link) in its compartment.
export function iface_set_ipv4(i: u32, addr: u32, prefixLen: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  if (prefixLen > 32 || (addr != 0 && prefixLen == 0)) return Error.BadPrefix;
  let f = router.iface(i);
  if (f.ipv4 != 0) lpm.remove(<u32>f.zone, 4, <u32>f.prefixLen4, 0, <u64>f.ipv4);
  f.ipv4 = addr;
  f.prefixLen4 = <u16>prefixLen;
  if (addr != 0 && !lpm.add(<u32>f.zone, 4, prefixLen, 0, <u64>addr, i, 0, 0, 0, 0)) {
    f.ipv4 = 0;
    return Error.TableFull;
  }
  router.bumpEpoch();
  return Error.Ok;
}

// Sets interface i's MTU: the largest IP packet (header included) it sends, 68 .. 65535 (default
// 1500). A larger routed packet is fragmented (IPv4 without DF) or refused with ICMP fragmentation
// needed / Packet Too Big (nodes/mtu.ts).
export function iface_set_mtu(i: u32, mtu: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  if (mtu < router.MIN_MTU || mtu > 65535) return Error.BadArgument;
  router.iface(i).mtu = mtu;
  return Error.Ok;
}

// TCP MSS clamping for the SYNs and SYN-ACKs routed in or out through interface i (nodes/mss.ts): 0
// off (the default), 536-65495 the largest MSS they may carry, 0xffff the smaller of the ingress and
// egress MTUs less 40 (IPv4) or 60 (IPv6) bytes of headers (nft's `rt mtu`). An MSS option is only ever
// lowered; the smaller of the two interfaces' limits wins.
export function iface_set_mss_clamp(i: u32, mss: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  if (mss != 0 && mss != <u32>router.MSS_CLAMP_MTU && (mss < router.MIN_MSS_CLAMP || mss > router.MAX_MSS_CLAMP)) return Error.BadArgument;
  router.iface(i).mssClamp = <u16>mss;
  return Error.Ok;
}

// Host replies for traffic that came in by interface i to a router address and that nothing handles
// (nodes/hostreply.ts): 0 answers as a Linux host does (TCP RST, ICMP port / protocol unreachable, the
// default), 1 stays silent. The request is counted as a drop either way.
export function iface_set_silent(i: u32, silent: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  if (silent > 1) return Error.BadArgument;
  let f = router.iface(i);
  f.flags = silent ? f.flags | router.IF_SILENT : f.flags & ~router.IF_SILENT;
  return Error.Ok;
}

// What interface i hands to the host through the punt area instead of handling it (nodes/punt.ts):
// a mask of 1 DHCPv4 to a server (UDP port 67, broadcast in its domain or to its gateway address), 2
// DNS to its gateway addresses (UDP and TCP port 53), 4 uplink (everything routed out of it, instead
// of neighbour resolution and L2), 8 host (other TCP and UDP to its gateway addresses), 16 ICMPv6
// router solicitations (to ff02::2 or a gateway address), 32 DHCPv6 to a server (UDP port 547 at
// ff02::1:2 or a gateway address). 0, the default, punts nothing. Uplink changes where connections
// leave, so cached egress is re-resolved.
export function iface_set_punt(i: u32, mask: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  if (mask & ~<u32>router.PUNT_ALL) return Error.BadArgument;
  let f = router.iface(i);
  if ((f.punt ^ <u8>mask) & router.PUNT_UPLINK) router.bumpEpoch();
  f.punt = <u8>mask;
  router.refreshPunt();
  return Error.Ok;
}

// The punt area (assembly/punt.ts, docs/ABI.md): descriptors of the frames the last process() or
// trace_frame() punted, and how many fit per batch (0 before create_l3).
export function punt_descriptors(): usize { return punt.descBase; }
export function punt_capacity(): u32 { return punt.descMax; }
export function punt_count(): u32 { return punt.count; }

// The TCP super-frames the host takes whole in its uplink and host punts (2 TSO4, 4 TSO6, as
// port_set_offload's bits; 0, the default, none): such a frame is punted as it is, its checksum partial,
// with its vnet header in the 12 bytes before it and bit 15 of the descriptor's reason set, instead of
// as its segments. A socket uplink that writes the payload to a host socket then takes one 64 KiB
// segment where it took 45. -3 for other bits.
export function punt_set_offload(caps: u32): i32 {
  if (caps & ~(ports.OFFLOAD_TSO4 | ports.OFFLOAD_TSO6)) return Error.BadArgument;
  punt.takes = caps;
  return Error.Ok;
}

// IPv6 addresses cross the ABI as four u32 words, most significant first (2001:db8::1 is
// 0x20010db8, 0, 0, 1).
@inline function v6hi(a0: u32, a1: u32): u64 { return (<u64>a0 << 32) | <u64>a1; }
@inline function v6lo(a2: u32, a3: u32): u64 { return (<u64>a2 << 32) | <u64>a3; }

// Sets interface i's gateway IPv6 address and on-link prefix (all zero removes it), with its
// connected route. The interface also answers for its link-local address (fe80:: + EUI-64 of its MAC).
export function iface_set_ipv6(i: u32, a0: u32, a1: u32, a2: u32, a3: u32, prefixLen: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  let hi = v6hi(a0, a1), lo = v6lo(a2, a3);
  if (prefixLen > 128 || ((hi | lo) != 0 && prefixLen == 0)) return Error.BadPrefix;
  let f = router.iface(i);
  if ((f.ipv6a | f.ipv6b) != 0) lpm.remove(<u32>f.zone, 6, f.prefixLen6, f.ipv6a, f.ipv6b);
  f.ipv6a = hi;
  f.ipv6b = lo;
  f.prefixLen6 = <u16>prefixLen;
  if ((hi | lo) != 0 && !lpm.add(<u32>f.zone, 6, prefixLen, hi, lo, i, 0, 0, 0, 0)) {
    f.ipv6a = 0;
    f.ipv6b = 0;
    return Error.TableFull;
  }
  router.bumpEpoch();
  return Error.Ok;
}

export function route_add6(zone: u32, a0: u32, a1: u32, a2: u32, a3: u32, len: u32, ifIndex: u32,
                           n0: u32, n1: u32, n2: u32, n3: u32, flags: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (len > 128) return Error.BadPrefix;
  if (flags & ~<u32>lpm.ROUTE_BLACKHOLE) return Error.BadArgument;
  if (!(flags & lpm.ROUTE_BLACKHOLE) && checkIface(ifIndex)) return Error.BadInterface;
  if (!lpm.add(zone, 6, len, v6hi(a0, a1), v6lo(a2, a3), ifIndex, v6hi(n0, n1), v6lo(n2, n3), flags, 0)) return Error.TableFull;
  router.bumpEpoch();
  return Error.Ok;
}
export function route_remove6(zone: u32, a0: u32, a1: u32, a2: u32, a3: u32, len: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (len > 128) return Error.BadPrefix;
  if (!lpm.remove(zone, 6, len, v6hi(a0, a1), v6lo(a2, a3))) return Error.NotFound;
  router.bumpEpoch();
  return Error.Ok;
}
export function neighbor_set6(zone: u32, a0: u32, a1: u32, a2: u32, a3: u32, macHi: u32, macLo: u32, ifIndex: u32, now: f64): i32 {
  let e = checkIface(ifIndex);
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (macHi > 0xffff) return Error.BadMac;
  let m = macFromParts(macHi, macLo);
  if (m & 1) return Error.BadMac;
  return neighbor.update(zone, 6, v6hi(a0, a1), v6lo(a2, a3), m, ifIndex, neighbor.STATIC, <u32><u64>now) ? Error.Ok : Error.TableFull;
}
export function neighbor_remove6(zone: u32, a0: u32, a1: u32, a2: u32, a3: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  return neighbor.remove(zone, 6, v6hi(a0, a1), v6lo(a2, a3)) ? Error.Ok : Error.NotFound;
}

export function iface_remove(i: u32): i32 {
  let e = checkIface(i);
  if (e) return e;
  let f = router.iface(i);
  mac.remove(mac.key(f.mac, <u32>f.vlan), <u32>f.network);
  if (f.ipv4 != 0) lpm.remove(<u32>f.zone, 4, <u32>f.prefixLen4, 0, <u64>f.ipv4);
  if ((f.ipv6a | f.ipv6b) != 0) lpm.remove(<u32>f.zone, 6, f.prefixLen6, f.ipv6a, f.ipv6b);
  memory.fill(changetype<usize>(f), 0, router.IFACE_SIZE);
  router.rebuildDomains();
  router.bumpEpoch();
  return Error.Ok;
}
export function iface_record(i: u32): usize { return i < router.MAX_INTERFACES && l3 ? changetype<usize>(router.iface(i)) : 0; }
export function iface_record_size(): u32 { return <u32>router.IFACE_SIZE; }

// Adds or replaces the IPv4 route prefix/len -> interface, via nextHop (0 = on-link). flags: 1 blackhole.
export function route_add4(zone: u32, prefix: u32, len: u32, ifIndex: u32, nextHop: u32, flags: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (len > 32) return Error.BadPrefix;
  if (flags & ~<u32>lpm.ROUTE_BLACKHOLE) return Error.BadArgument;
  if (!(flags & lpm.ROUTE_BLACKHOLE) && checkIface(ifIndex)) return Error.BadInterface;
  if (!lpm.add(zone, 4, len, 0, <u64>prefix, ifIndex, 0, <u64>nextHop, flags, 0)) return Error.TableFull;
  router.bumpEpoch();
  return Error.Ok;
}
export function route_remove4(zone: u32, prefix: u32, len: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (len > 32) return Error.BadPrefix;
  if (!lpm.remove(zone, 4, len, 0, <u64>prefix)) return Error.NotFound;
  router.bumpEpoch();
  return Error.Ok;
}
export function route_table(): usize { return lpm.base; }
export function route_slots(): u32 { return lpm.slots; }

// A static neighbour: addr in zone is at MAC (macHi, macLo) behind interface ifIndex.
export function neighbor_set4(zone: u32, addr: u32, macHi: u32, macLo: u32, ifIndex: u32, now: f64): i32 {
  let e = checkIface(ifIndex);
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (macHi > 0xffff) return Error.BadMac;
  let m = macFromParts(macHi, macLo);
  if (m & 1) return Error.BadMac;
  return neighbor.update(zone, 4, 0, <u64>addr, m, ifIndex, neighbor.STATIC, <u32><u64>now) ? Error.Ok : Error.TableFull;
}
export function neighbor_remove4(zone: u32, addr: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  return neighbor.remove(zone, 4, 0, <u64>addr) ? Error.Ok : Error.NotFound;
}
export function neighbor_table(): usize { return neighbor.base; }
export function neighbor_slots(): u32 { return neighbor.slots; }
export function neighbor_set_reachable(ms: u32): i32 {
  if (ms == 0 || ms > 0x7fffffff) return Error.BadArgument;
  neighbor.reachableMs = ms;
  return Error.Ok;
}

// SNAT rule slot i (0 .. 255): traffic of `zone` from prefix/len leaving through interface ifIndex takes
// address ext (0 = the interface's address) and a port in [portLo, portHi]. flags: 1 endpoint-
// independent mapping (RFC 4787): an internal endpoint keeps one external port for every destination;
// 2 port class: no range was configured, a port keeps its class as with Linux's masquerade (the range
// is then ignored).
export function snat_set(i: u32, zone: u32, prefix: u32, len: u32, ifIndex: u32, ext: u32, portLo: u32, portHi: u32, flags: u32): i32 {
  let e = checkIface(ifIndex);
  if (e) return e;
  if (i >= natrules.MAX_SNAT_RULES) return Error.BadArgument;
  if (checkZone(zone)) return Error.BadZone;
  if (len > 32) return Error.BadPrefix;
  if (portLo == 0 || portLo > portHi || portHi > 65535) return Error.BadArgument;
  if (flags & ~<u32>(natrules.SNAT_EIM | natrules.SNAT_PORT_CLASS)) return Error.BadArgument;
  if (flags & natrules.SNAT_EIM) eim.prepareRule(i);
  natrules.setSnat(i, zone, prefix, len, ifIndex, portLo, portHi, ext, flags);
  return Error.Ok;
}
export function snat_clear(i: u32): i32 {
  if (i >= natrules.MAX_SNAT_RULES) return Error.BadArgument;
  let e = checkL3();
  if (e) return e;
  memory.fill(natrules.snatRule(i), 0, natrules.SNAT_SIZE);
  return Error.Ok;
}
// Exception slot i (0 .. 1023): traffic of `zone` to prefix/len is never source-translated.
export function snat_exception_set(i: u32, zone: u32, prefix: u32, len: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (i >= natrules.MAX_EXCEPTIONS) return Error.BadArgument;
  if (checkZone(zone)) return Error.BadZone;
  if (len > 32) return Error.BadPrefix;
  natrules.setException(i, zone, prefix, len);
  return Error.Ok;
}
export function snat_exception_clear(i: u32): i32 {
  if (i >= natrules.MAX_EXCEPTIONS) return Error.BadArgument;
  let e = checkL3();
  if (e) return e;
  memory.fill(natrules.exception(i), 0, natrules.EXCEPTION_SIZE);
  return Error.Ok;
}

// Port mapping (DNAT): `proto` (6 or 17) traffic of `zone` to vip:extPort (vip 0 = any router
// address of the zone) goes to intAddr:intPort.
export function port_mapping_add(zone: u32, proto: u32, vip: u32, extPort: u32, intAddr: u32, intPort: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (proto != 6 && proto != 17) return Error.BadArgument;
  if (extPort == 0 || extPort > 65535 || intPort == 0 || intPort > 65535 || intAddr == 0) return Error.BadArgument;
  return natrules.addMapping(zone, proto, extPort, vip, intAddr, intPort) ? Error.Ok : Error.TableFull;
}
export function port_mapping_remove(zone: u32, proto: u32, vip: u32, extPort: u32): i32 {
  let e = checkL3();
  if (e) return e;
  return natrules.removeMapping(zone, proto, extPort, vip) ? Error.Ok : Error.NotFound;
}

// Connection tracking: the records are read directly (docs/ABI.md); timeouts per state in ms.
export function ct_table(): usize { return flow.recBase; }
export function ct_record_size(): u32 { return <u32>flow.RECORD_SIZE; }
export function ct_capacity(): u32 { return flow.capacity; }
export function ct_index_slots(): u32 { return flow.idxSlots; }
// The index (8 bytes a slot: u32 key hash, 0 = empty, u32 (record << 1 | direction) + 1), read-only.
export function ct_index(): usize { return flow.idxBase; }
// IPv6 connections store address ids: id n is the 16 bytes at addr6_table() + (n - 1) * 24.
export function addr6_table(): usize { return addr6.recBase; }
export function ct_count(): u32 { return flow.count; }
export function ct_flush(zone: u32): i32 {
  let e = checkL3();
  if (e) return e;
  return <i32>flow.flush(zone);
}
export function ct_state_count(): u32 { return <u32>ct.State.Count; }
export function ct_state_name(s: u32): usize { return changetype<usize>(ct.stateName(s)); }
export function ct_set_timeout(state: u32, ms: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (state == 0 || state >= <u32>ct.State.Count || ms == 0 || ms > 0x7fffffff) return Error.BadArgument;
  store<u32>(ct.timeoutBase + (<usize>state << 2), ms);
  return Error.Ok;
}
export function ct_timeout(state: u32): u32 {
  return l3 && state < <u32>ct.State.Count ? load<u32>(ct.timeoutBase + (<usize>state << 2)) : 0;
}

// TCP tracking of conntrack zone `zone` (0-0x7fff: a compartment, or 1024 + a port's ACL zone):
// flags 1 liberal (segments outside the window pass; only the RST check stays, as Linux's
// nf_conntrack_tcp_be_liberal), 2 no pickup (only a SYN starts a connection; Linux's
// nf_conntrack_tcp_loose = 0). 0, the default, is Linux's default. Applies to the zone's IPv4 and IPv6
// connections, from their next packet.
export function ct_zone_set_tcp(zone: u32, flags: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (zone >= ct.ZONES) return Error.BadZone;
  if (flags > <u32>(ct.ZONE_LIBERAL | ct.ZONE_NO_PICKUP)) return Error.BadArgument;
  store<u8>(ct.zoneBase + <usize>zone, <u8>flags);
  return Error.Ok;
}
export function ct_zone_tcp(zone: u32): u32 {
  return l3 && zone < ct.ZONES ? ct.zoneFlags(zone) : 0;
}

// IP fragments (tables/frag.ts): how long a datagram's fragments are awaited (default 30 s), and the
// table's size (datagrams in reassembly, hold slots for fragments before their first).
export function frag_set_timeout(ms: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (ms == 0 || ms > 0x7fffffff) return Error.BadArgument;
  frag.timeoutMs = ms;
  return Error.Ok;
}
export function frag_timeout(): u32 { return frag.timeoutMs; }
export function frag_capacity(): u32 { return frag.capacity; }
export function frag_hold_slots(): u32 { return frag.holdSlots; }
export function frag_count(): u32 { return frag.count; }

// Rate limits of what the router originates: which 0 = ICMP errors, 1 = ARP requests.
export function ratelimit_set(which: u32, perSecond: u32, burst: u32): i32 {
  if (which > 1 || perSecond == 0 || burst == 0 || burst > 1_000_000) return Error.BadArgument;
  (which == 0 ? icmpErrors : arpRequests).set(perSecond, burst);
  return Error.Ok;
}

// ---- ACLs ---------------------------------------------------------------------------------------

// Room for a compiled rule set of `bytes` bytes (src/compile/acl.ts writes it), or 0.
export function acl_alloc(bytes: u32): usize {
  if (!created || bytes < 56 || bytes > (1 << 28) || !arena.heapCanGrow(bytes)) return 0;
  let p = heap.alloc(bytes);
  memory.fill(p, 0, bytes);
  return p;
}
export function acl_free(blob: usize): void {
  if (blob != 0) heap.free(blob);
}

// Binds port p's direction dir (0 Out: from the endpoint, 1 In: to it) to a compiled rule set
// (blob 0: none) and a default action (0 block, 1 allow). The blob is checked first; a refused one
// changes nothing. Every binding change starts a new policy generation: established connections of
// every port are classified again on their next packet.
export function acl_bind(p: u32, dir: u32, blob: usize, size: u32, defaultAction: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (!l3) return Error.NoL3;
  if (p > aclnode.MAX_ACL_PORT || dir > 1 || defaultAction > 1) return Error.BadArgument;
  if (blob != 0 && !acl.valid(blob, size)) return Error.BadArgument;
  acl.bind(p, dir, blob, defaultAction);
  ports.port(p).flags |= ports.PORT_ACL;
  return Error.Ok;
}

export function acl_unbind(p: u32, dir: u32): i32 {
  let e = checkPort(p);
  if (e) return e;
  if (dir > 1) return Error.BadArgument;
  acl.unbind(p, dir);
  if (!acl.bound(p, acl.DIR_OUT) && !acl.bound(p, acl.DIR_IN)) {
    ports.port(p).flags &= ~ports.PORT_ACL;
    if (l3) flow.flush(aclnode.ZONE_BASE + p);
  }
  return Error.Ok;
}

export function acl_generation(): u32 { return acl.generation; }

// ---- load balancers -----------------------------------------------------------------------------

// A load balancer (HCN LoadBalancer port mapping): `proto` traffic of `zone` to vip:extPort (vip 0 =
// any gateway address of the zone: NodePort style) is spread over backends, to intPort (0 = extPort).
// dist: 0 per connection (5-tuple), 1 per source address and protocol, 2 per source address.
// flags: 1 direct server return. Keeps the backends of an existing balancer.
export function lb_set(zone: u32, proto: u32, vip: u32, extPort: u32, intPort: u32, dist: u32, flags: u32): i32 {
  let e = checkL3();
  if (e) return e;
  if (checkZone(zone)) return Error.BadZone;
  if (proto != 6 && proto != 17) return Error.BadArgument;
  if (extPort == 0 || extPort > 65535 || intPort > 65535 || dist > 2 || flags > 1) return Error.BadArgument;
  if ((flags & natrules.LB_DSR) && intPort != 0 && intPort != extPort) return Error.BadArgument; // DSR cannot change ports
  return natrules.setBalancer(zone, proto, extPort, vip, intPort, dist, flags) != 0 ? Error.Ok : Error.TableFull;
}
export function lb_backend_add(zone: u32, proto: u32, vip: u32, extPort: u32, addr: u32): i32 {
  let e = checkL3();
  if (e) return e;
  let s = natrules.findBalancer(zone, proto, extPort, vip);
  if (s == 0) return Error.NotFound;
  if (addr == 0) return Error.BadArgument;
  let r = natrules.addBackend(s, addr);
  return r == 0 ? Error.Ok : r == 1 ? Error.BadArgument : Error.TableFull;
}
export function lb_backend_remove(zone: u32, proto: u32, vip: u32, extPort: u32, addr: u32): i32 {
  let e = checkL3();
  if (e) return e;
  let s = natrules.findBalancer(zone, proto, extPort, vip);
  if (s == 0) return Error.NotFound;
  return natrules.removeBackend(s, addr) ? Error.Ok : Error.NotFound;
}

// ---- trace --------------------------------------------------------------------------------------

// Runs one frame (already written at the start of the rx buffer) through the pipeline as received on
// port p, recording every stage's decision. Returns the number of trace records at trace_buffer();
// the tx descriptors are those of the traced frame. The dataplane's state changes as for any frame:
// a host that wants a trace without effects snapshots the memory first and restores it afterwards.
export function trace_frame(p: u32, len: u32, now: f64): u32 {
  if (!created || len > pipeline.rxBufSize || p > 0xffff) return 0;
  store<u32>(pipeline.rxDescBase, 0);
  store<u16>(pipeline.rxDescBase, <u16>len, 4);
  store<u16>(pipeline.rxDescBase, <u16>p, 6);
  trace.start();
  pipeline.process(1, now);
  trace.stop();
  // The frames that leave, from the tx descriptors (noting them here keeps the per-packet path free).
  for (let i: u32 = 0; i < tx.count; i++) {
    let d = tx.descBase + <usize>i * tx.DESCRIPTOR_SIZE;
    trace.record(trace.Step.Egress, <u32>load<u16>(d, 6), <u32>load<u16>(d, 4), 0, 0);
  }
  return trace.count;
}
export function trace_buffer(): usize { return trace.base; }
// The number of tx descriptors the last process() or trace_frame() wrote.
export function tx_count(): u32 { return tx.count; }

// ---- VXLAN overlay (overlay.ts, nodes/vxlan.ts; docs/ABI.md "VXLAN overlay") ----------------------

const MAX_REMOTES: u32 = 1 << 24;
const MAX_MEMBERS: u32 = 1 << 20;

// Creates the overlay's tables, once, after create(): `remotes` remote endpoints (with twice as many
// addresses), `members` (VNI, provider address) pairs. Returns 0, -3 for an argument out of its
// range, -14 when they do not fit.
export function overlay_create(remotes: u32, members: u32): i32 {
  if (!created) return Error.NotCreated;
  if (overlay.created) return Error.AlreadyCreated;
  neededBytes = 0;
  if (remotes == 0 || remotes > MAX_REMOTES || members == 0 || members > MAX_MEMBERS) return Error.BadArgument;
  neededBytes = overlay.bytes(remotes, members);
  if (!arena.reserve(neededBytes)) return Error.TooLarge;
  overlay.alloc(remotes, members);
  return Error.Ok;
}
function checkOverlay(): i32 { return !created ? Error.NotCreated : (!overlay.created ? Error.NoL3 : Error.Ok); }

// Makes port p the underlay: its frames are decapsulated (never bridged), encapsulated frames leave
// by it. pa: this host's provider address; udpPort: the VXLAN port (4789); mtu: the underlay's IP MTU
// (118 .. 65535: an inner IPv4 minimum of 68 plus 50 bytes of headers). A previous underlay port
// becomes an ordinary port again.
export function overlay_set_underlay(p: u32, pa: u32, udpPort: u32, mtu: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  e = checkPort(p);
  if (e) return e;
  if (pa == 0 || udpPort == 0 || udpPort > 65535 || mtu < 68 + overlay.OVERHEAD || mtu > 65535) return Error.BadArgument;
  overlay_clear_underlay();
  let pt = ports.port(p);
  mac.flushPort(p);
  if (pt.state == ports.STATE_UP) pt.state = ports.STATE_UNDERLAY;
  pt.flags |= ports.PORT_NO_LEARN;
  overlay.setUnderlay(p, pa, udpPort, mtu);
  return Error.Ok;
}
export function overlay_clear_underlay(): i32 {
  let e = checkOverlay();
  if (e) return e;
  let old = overlay.underlayPort;
  if (old != overlay.NO_PORT && old < ports.maxPorts) {
    let pt = ports.port(old);
    if (pt.state == ports.STATE_UNDERLAY) pt.state = ports.STATE_UP;
    pt.flags &= ~ports.PORT_NO_LEARN;
  }
  overlay.setUnderlay(overlay.NO_PORT, 0, overlay.DEFAULT_UDP_PORT, 1500);
  return Error.Ok;
}
export function overlay_underlay_port(): i32 { return overlay.underlayPort == overlay.NO_PORT ? -1 : <i32>overlay.underlayPort; }

// Domain (network, vlan) is VXLAN segment `vni` (1 .. 2^24-1); -3 if another domain has that VNI,
// -7 when 4096 domains already have one.
export function overlay_set_vni(network: u32, vlan: u32, vni: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  if (vni == 0 || vni > 0xffffff) return Error.BadArgument;
  let other = overlay.domainOf(vni);
  if (other != 0 && other != overlay.domainKey(network, vlan)) return Error.BadArgument;
  return overlay.setVni(network, vlan, vni) ? Error.Ok : Error.TableFull;
}
export function overlay_remove_vni(network: u32, vlan: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  return overlay.removeVni(network, vlan) ? Error.Ok : Error.NotFound;
}
export function overlay_vni(network: u32, vlan: u32): u32 {
  return overlay.created && network <= 0xffff && vlan < 4095 ? overlay.vniOf(network, vlan) : 0;
}

// Provider address `pa` may send VNI `vni` (and gets its broadcasts).
export function overlay_member_add(vni: u32, pa: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  if (vni == 0 || vni > 0xffffff || pa == 0) return Error.BadArgument;
  return overlay.addMember(vni, pa) ? Error.Ok : Error.TableFull;
}
export function overlay_member_remove(vni: u32, pa: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  return overlay.removeMember(vni, pa) ? Error.Ok : Error.NotFound;
}
export function overlay_member_table(): usize { return overlay.memberBase; }
export function overlay_member_high(): u32 { return overlay.memberHigh; }
export function overlay_member_count(): u32 { return overlay.memberCount; }

// Adds or replaces the remote endpoint (network, vlan, MAC) at provider address pa: a static MAC
// entry on the tunnel pseudo-port 0xefff. Returns the record index (>= 0; its addresses are added
// with overlay_remote_address4/6, a replaced remote's are cleared), -7 when a table is full, -9 for a
// group or zero MAC or one that is another port's static entry.
export function overlay_remote_add(network: u32, vlan: u32, macHi: u32, macLo: u32, pa: u32, now: f64): i32 {
  let e = checkOverlay();
  if (e) return e;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  if (macHi > 0xffff) return Error.BadMac;
  if (pa == 0) return Error.BadArgument;
  let m = macFromParts(macHi, macLo);
  if ((m & 1) != 0 || m == 0) return Error.BadMac;
  let r = overlay.addRemote(network, vlan, m, pa, <u32><u64>now);
  if (r == -1) return Error.TableFull;
  if (r == -2) return Error.BadMac;
  return r;
}
function checkRemote(i: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  if (i >= overlay.remoteCap || load<u64>(overlay.remote(i)) == 0) return Error.NotFound;
  return Error.Ok;
}
// Adds an IPv4 / IPv6 address to remote record i (ARP / ND for it are answered with the remote's
// MAC). -3 if another remote of the domain has it, -7 when the address table is full.
export function overlay_remote_address4(i: u32, a: u32): i32 {
  let e = checkRemote(i);
  if (e) return e;
  if (a == 0) return Error.BadArgument;
  let r = overlay.addAddress(i, false, 0, <u64>a);
  return r == 0 ? Error.Ok : r == -1 ? Error.TableFull : Error.BadArgument;
}
export function overlay_remote_address6(i: u32, a0: u32, a1: u32, a2: u32, a3: u32): i32 {
  let e = checkRemote(i);
  if (e) return e;
  let hi = v6hi(a0, a1), lo = v6lo(a2, a3);
  if ((hi | lo) == 0 || (hi >> 56) == 0xff) return Error.BadArgument;
  let r = overlay.addAddress(i, true, hi, lo);
  return r == 0 ? Error.Ok : r == -1 ? Error.TableFull : Error.BadArgument;
}
export function overlay_remote_remove(network: u32, vlan: u32, macHi: u32, macLo: u32): i32 {
  let e = checkOverlay();
  if (e) return e;
  if (network > 0xffff) return Error.BadNetwork;
  if (vlan >= 4095) return Error.BadVlan;
  if (macHi > 0xffff) return Error.BadMac;
  return overlay.removeRemote(network, vlan, macFromParts(macHi, macLo)) ? Error.Ok : Error.NotFound;
}
export function overlay_remote_table(): usize { return overlay.remoteBase; }
export function overlay_remote_count(): u32 { return overlay.remoteCount; }
export function overlay_remote_capacity(): u32 { return overlay.remoteCap; }
