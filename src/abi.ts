// What every other module of the SDK needs from the ABI, and nothing that loads the module: the raw
// exports' names and types, the error codes configuration calls return, the SDK's one error type,
// argument checks, and reading a string out of the module's memory. It imports nothing, so the
// switch, the router and the ACLs can all use it without importing one another (no import cycle),
// and it is the same in Node.js and in a browser.

export type Build = 'release' | 'debug';

// The raw exports (docs/ABI.md).
export interface NetplaneExports {
  memory: WebAssembly.Memory;
  set_hash_seed(lo: number, hi: number): number;
  create(maxPorts: number, macEntries: number, batch: number, rxBytes: number): number;
  rx_descriptors(): number;
  rx_buffer(): number;
  rx_buffer_size(): number;
  max_batch(): number;
  tx_descriptors(): number;
  tx_capacity(): number;
  rx_offloads(): number;
  tx_offloads(): number;
  port_set_offload(p: number, caps: number): number;
  port_offload(p: number): number;
  process(n: number, now: number): number;
  port_configure(p: number, network: number, mode: number, vlan: number, flags: number, learnLimit: number): number;
  port_allow_vlan(p: number, vlan: number, allowed: number): number;
  port_clear_vlans(p: number): number;
  port_set_guard_mac(p: number, macHi: number, macLo: number): number;
  port_set_up(p: number, up: number): number;
  port_remove(p: number): number;
  port_record(p: number): number;
  port_record_size(): number;
  port_drops(p: number): number;
  max_ports(): number;
  network_set_group_fwd_mask(network: number, mask: number): number;
  network_group_fwd_mask(network: number): number;
  mac_add_static(network: number, vlan: number, macHi: number, macLo: number, p: number, now: number): number;
  mac_remove(network: number, vlan: number, macHi: number, macLo: number): number;
  mac_flush_port(p: number): number;
  mac_flush(): number;
  mac_set_aging(ms: number): number;
  batch_set_touch_above(bytes: number): number;
  batch_touch_above(): number;
  mac_aging(): number;
  mac_age(now: number, slots: number): number;
  mac_table(): number;
  mac_table_slots(): number;
  mac_count(): number;
  mac_capacity(): number;
  drops(): number;
  reason_count(): number;
  reason_name(r: number): number;
  stats(): number;
  stat_count(): number;
  stat_name(i: number): number;
  frame_parse(addr: number, len: number): number;
  parse_result(): number;
  inet_checksum(addr: number, len: number): number;
  inet_checksum_adjust16(check: number, old: number, now: number): number;
  inet_checksum_adjust32(check: number, old: number, now: number): number;
  abi_version(): number;
  create_l3(routes: number, neighbors: number, conns: number, mappings: number, addrs6: number): number;
  create_needed_bytes(): number;
  addr6_table(): number;
  iface_configure(i: number, zone: number, network: number, vlan: number, macHi: number, macLo: number, flags: number): number;
  iface_set_ipv4(i: number, addr: number, prefixLen: number): number;
  iface_remove(i: number): number;
  iface_set_mtu(i: number, mtu: number): number;
  iface_set_mss_clamp(i: number, mss: number): number;
  frag_set_timeout(ms: number): number;
  frag_timeout(): number;
  frag_capacity(): number;
  frag_hold_slots(): number;
  frag_count(): number;
  iface_record(i: number): number;
  iface_set_ipv6(i: number, a0: number, a1: number, a2: number, a3: number, prefixLen: number): number;
  iface_set_silent(i: number, silent: number): number;
  iface_set_punt(i: number, mask: number): number;
  punt_descriptors(): number;
  punt_capacity(): number;
  punt_count(): number;
  punt_set_offload(caps: number): number;
  route_add6(zone: number, a0: number, a1: number, a2: number, a3: number, len: number, ifIndex: number, n0: number, n1: number, n2: number, n3: number, flags: number): number;
  route_remove6(zone: number, a0: number, a1: number, a2: number, a3: number, len: number): number;
  neighbor_set6(zone: number, a0: number, a1: number, a2: number, a3: number, macHi: number, macLo: number, ifIndex: number, now: number): number;
  neighbor_remove6(zone: number, a0: number, a1: number, a2: number, a3: number): number;
  route_add4(zone: number, prefix: number, len: number, ifIndex: number, nextHop: number, flags: number): number;
  route_remove4(zone: number, prefix: number, len: number): number;
  route_table(): number;
  route_slots(): number;
  neighbor_set4(zone: number, addr: number, macHi: number, macLo: number, ifIndex: number, now: number): number;
  neighbor_remove4(zone: number, addr: number): number;
  neighbor_table(): number;
  neighbor_slots(): number;
  neighbor_set_reachable(ms: number): number;
  snat_set(i: number, zone: number, prefix: number, len: number, ifIndex: number, ext: number, portLo: number, portHi: number, flags: number): number;
  snat_clear(i: number): number;
  snat_exception_set(i: number, zone: number, prefix: number, len: number): number;
  snat_exception_clear(i: number): number;
  port_mapping_add(zone: number, proto: number, vip: number, extPort: number, intAddr: number, intPort: number): number;
  port_mapping_remove(zone: number, proto: number, vip: number, extPort: number): number;
  ct_table(): number;
  ct_record_size(): number;
  ct_capacity(): number;
  ct_index_slots(): number;
  ct_index(): number;
  ct_count(): number;
  ct_flush(zone: number): number;
  ct_state_count(): number;
  ct_state_name(s: number): number;
  ct_set_timeout(state: number, ms: number): number;
  ct_timeout(state: number): number;
  ct_zone_set_tcp(zone: number, flags: number): number;
  ct_zone_tcp(zone: number): number;
  ratelimit_set(which: number, perSecond: number, burst: number): number;
  lb_set(zone: number, proto: number, vip: number, extPort: number, intPort: number, dist: number, flags: number): number;
  lb_backend_add(zone: number, proto: number, vip: number, extPort: number, addr: number): number;
  lb_backend_remove(zone: number, proto: number, vip: number, extPort: number, addr: number): number;
  trace_frame(p: number, len: number, now: number): number;
  trace_buffer(): number;
  tx_count(): number;
  acl_alloc(bytes: number): number;
  acl_free(blob: number): void;
  acl_bind(p: number, dir: number, blob: number, size: number, defaultAction: number): number;
  acl_unbind(p: number, dir: number): number;
  overlay_create(remotes: number, members: number): number;
  overlay_set_underlay(p: number, pa: number, udpPort: number, mtu: number): number;
  overlay_clear_underlay(): number;
  overlay_underlay_port(): number;
  overlay_set_vni(network: number, vlan: number, vni: number): number;
  overlay_remove_vni(network: number, vlan: number): number;
  overlay_vni(network: number, vlan: number): number;
  overlay_member_add(vni: number, pa: number): number;
  overlay_member_remove(vni: number, pa: number): number;
  overlay_member_table(): number;
  overlay_member_high(): number;
  overlay_member_count(): number;
  overlay_remote_add(network: number, vlan: number, macHi: number, macLo: number, pa: number, now: number): number;
  overlay_remote_address4(i: number, a: number): number;
  overlay_remote_address6(i: number, a0: number, a1: number, a2: number, a3: number): number;
  overlay_remote_remove(network: number, vlan: number, macHi: number, macLo: number): number;
  overlay_remote_table(): number;
  overlay_remote_count(): number;
  overlay_remote_capacity(): number;
  acl_generation(): number;
  abortLine: { readonly value: number };   // a WebAssembly.Global (i32), typed by its shape: the declarations must not need lib "dom" (rollup.config.js)
  __getString(ptr: number): string;
}

// Errors returned by configuration calls (negative numbers), by name.
export const ABI_ERRORS: Record<number, string> = {
  [-1]: 'already created',
  [-2]: 'not created',
  [-3]: 'bad argument',
  [-4]: 'no such port',
  [-5]: 'VLAN out of range (0-4094)',
  [-6]: 'network out of range (0-65535)',
  [-7]: 'MAC table full',
  [-8]: 'not found',
  [-9]: 'bad MAC address',
  [-10]: 'L3 tables not created',
  [-11]: 'no such interface',
  [-12]: 'compartment out of range (0-1023)',
  [-13]: 'bad prefix length',
  [-14]: 'the tables do not fit in wasm32 memory (4 GiB), or the host refused to grow it',
};

// The ranges of the create and create_l3 arguments (assembly/index.ts, docs/ABI.md): each is the most
// that fits in wasm32 memory alone; together they must fit too (-14).
export const CREATE_LIMITS = {
  maxPorts: [1, 0xefff], macEntries: [1, 2 ** 26], batch: [1, 65536], rxBytes: [64, 2 ** 30],
  routes: [1, 2 ** 24], neighbors: [1, 2 ** 24], connections: [1, 2 ** 24], portMappings: [1, 2 ** 20],
  ipv6Addresses: [1, 2 ** 24],
} as const satisfies Record<string, readonly [number, number]>;

// Checks the arguments of a create call against CREATE_LIMITS, then makes it; on -14 (the sum of the
// tables does not fit) the error names the argument nearest its maximum, with the bytes needed.
export function createCall(exports: NetplaneExports, call: string, args: Record<string, number>,
                           run: (...a: number[]) => number): void {
  for (const [k, v] of Object.entries(args)) {
    const [lo, hi] = CREATE_LIMITS[k as keyof typeof CREATE_LIMITS];
    check(k, v, lo, hi);
  }
  const code = run(...Object.values(args));
  if (code === 0) return;
  if (code !== -14) throw new NetplaneError(call, ABI_ERRORS[code] ?? `error ${code}`);
  const worst = Object.entries(args).sort(([a, x], [b, y]) =>
    y / CREATE_LIMITS[b as keyof typeof CREATE_LIMITS][1] - x / CREATE_LIMITS[a as keyof typeof CREATE_LIMITS][1])[0][0];
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
  const left = 2 ** 32 - exports.memory.buffer.byteLength;
  const all = Object.entries(args).map(([k, v]) => `${k} ${v}`).join(', ');
  throw new NetplaneError(worst, `${call}: with ${all} the tables need ${gib(exports.create_needed_bytes())}, ` +
    `more than the ${gib(left)} wasm32 memory has left (or the host refused to grow memory); lower ${worst}`);
}

export class NetplaneError extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'NetplaneError';
  }
}

// What the router, the ACLs and the trace read of a Dataplane (src/switch.ts), named here so that they
// need not import the switch that imports them.
export interface DataplaneView {
  readonly exports: NetplaneExports;
  readonly reasons: string[];
  readonly ctStates: string[];
  u8: Uint8Array;
  dv: DataView;
  rxBuffer: Uint8Array;
  txDescriptors: DataView;
  puntDescriptors: DataView;
  views(): void;
}

// The punt area's reasons (assembly/punt.ts PuntReason; docs/ABI.md), by number, and the classes an
// interface may punt (iface_set_punt's mask bits, by name).
export const PUNT_REASONS = ['', 'dhcp', 'dns', 'uplink', 'host', 'rs', 'dhcp6'] as const;
export type PuntClass = 'dhcp' | 'dns' | 'uplink' | 'host' | 'rs' | 'dhcp6';
export const PUNT_CLASSES: Record<PuntClass, number> = { dhcp: 1, dns: 2, uplink: 4, host: 8, rs: 16, dhcp6: 32 };

// Throws unless v is an integer in [lo, hi], naming the field.
export function check(field: string, v: number, lo: number, hi: number): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new NetplaneError(field, `must be an integer from ${lo} to ${hi}, got ${v}`);
}

// An optional flag: absent, or true or false.
export function checkFlag(field: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw new NetplaneError(field, `expected true or false, got ${JSON.stringify(v)}`);
}

// Throws on a configuration call's negative return, with the error's name.
export function abi(field: string, code: number): void {
  if (code < 0) throw new NetplaneError(field, ABI_ERRORS[code] ?? `error ${code}`);
}

// A string the module returns (reason_name, stat_name, ...): UTF-16LE code units starting at `addr`,
// their byte length in the u32 at addr - 4 (docs/ABI.md).
export function abiString(memory: WebAssembly.Memory, addr: number): string {
  if (!addr) return '';
  const buf = memory.buffer;
  const bytes = new DataView(buf).getUint32(addr - 4, true);
  const units = new Uint16Array(buf, addr, bytes >>> 1);
  let s = '';
  for (let i = 0; i < units.length; i += 4096) s += String.fromCharCode(...units.subarray(i, i + 4096));
  return s;
}

// Instantiates a compiled module (it imports nothing) and returns its exports with __getString.
// The exports that return an address. WebAssembly gives JavaScript an i32, so an address at or above
// 2 GiB (tables that large are allowed) would come out negative: these are read as unsigned.
const ADDRESS_EXPORTS = ['rx_descriptors', 'rx_buffer', 'tx_descriptors', 'rx_offloads', 'tx_offloads', 'port_record', 'port_drops', 'mac_table',
  'drops', 'reason_name', 'stats', 'stat_name', 'parse_result', 'iface_record', 'route_table', 'neighbor_table',
  'ct_table', 'ct_index', 'addr6_table', 'ct_state_name', 'acl_alloc', 'trace_buffer', 'punt_descriptors',
  'overlay_member_table', 'overlay_remote_table'] as const;

export function instantiate(module: WebAssembly.Module): NetplaneExports {
  const raw = new WebAssembly.Instance(module, {}).exports as unknown as Record<string, unknown>;
  const memory = raw.memory as WebAssembly.Memory;
  const unsigned: Record<string, (...a: number[]) => number> = {};
  for (const name of ADDRESS_EXPORTS) {
    const f = raw[name] as (...a: number[]) => number;
    unsigned[name] = (...a: number[]) => f(...a) >>> 0;
  }
  return { ...raw, ...unsigned, __getString: (addr: number) => abiString(memory, addr) } as unknown as NetplaneExports;
}
