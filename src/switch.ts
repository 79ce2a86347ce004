// The switch, shared by every entry of the SDK (Node.js: src/index.ts, browsers: src/web.ts): makes the
// typed-array views of one module instance once, and moves frames in and out in batches. Nothing here
// runs per packet inside WebAssembly calls: send() only copies a frame into the rx buffer and writes
// its descriptor; flush() makes one call to process() for the whole batch, then hands each tx
// descriptor's bytes to the egress port's consumer.
//
// The Dataplane class is the raw ABI with names (for hosts that batch frames themselves, like the
// benchmarks); Switch adds ports, frame delivery, and readable views of the MAC table and counters.
//
// Loading the module is the one thing that differs between runtimes, so it is not done here: these
// classes take a compiled WebAssembly.Module (`module`), and `Switch.create` / `compileModule` get one
// from a URL (fetch + compileStreaming), bytes or a Module with nothing but the web platform's
// globals. src/dataplane.ts gives Node.js its synchronous `new Switch()` by reading the file; this file
// imports no `node:` module and must not (the browser bundle is built from it).
import { formatMac, parseMac } from './frames.js';
import { Router } from './router.js';
import { Acls } from './acl.js';
import { Overlay, OVERLAY_DEFAULTS } from './overlay.js';
import { traceFrame, type TraceResult } from './trace.js';
import type { PcapSink } from './pcap-format.js';
import { NetplaneError, ABI_ERRORS, PUNT_REASONS, check, checkFlag, abi, instantiate, createCall, type Build, type NetplaneExports, type DataplaneView } from './abi.js';

export { NetplaneError, ABI_ERRORS, PUNT_REASONS, type PuntClass, type Build, type NetplaneExports, type DataplaneView } from './abi.js';

// Where a module can come from: a URL (fetched, compiled while it downloads), a fetch Response, the
// bytes, or a module compiled already (compile once, instantiate many: each switch is one instance).
export type WasmSource = string | URL | Response | PromiseLike<Response> | ArrayBuffer | ArrayBufferView | WebAssembly.Module;

// The package's own module, beside the bundle: build/dist/<entry>.js -> build/netplane.<build>.wasm.
// Two literal `new URL(..., import.meta.url)` so bundlers (Vite, webpack, esbuild, Parcel) see and
// copy the file.
export function wasmUrl(build: Build = 'release'): URL {
  return build === 'debug' ? new URL('../netplane.debug.wasm', import.meta.url) : new URL('../netplane.release.wasm', import.meta.url);
}

// Compiles a module from any source. A URL or Response is compiled while it streams when the server
// says application/wasm, and from the whole body otherwise (a static server that does not know the
// type still works).
export async function compileModule(source?: WasmSource, build: Build = 'release'): Promise<WebAssembly.Module> {
  source ??= wasmUrl(build);
  if (source instanceof WebAssembly.Module) return source;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return WebAssembly.compile(source as BufferSource);
  const where = typeof source === 'string' || source instanceof URL ? String(source) : undefined;
  let res: Response;
  try {
    res = typeof source === 'string' || source instanceof URL ? await fetch(source) : await source;
  } catch (e) {
    throw new Error(`netplane: cannot fetch the WebAssembly module${where ? ` from ${where}` : ''}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new Error(`netplane: cannot fetch the WebAssembly module from ${res.url || where}: HTTP ${res.status}`);
  const type = res.headers.get('content-type') ?? '';
  if (typeof WebAssembly.compileStreaming === 'function' && /^application\/wasm\b/i.test(type)) return WebAssembly.compileStreaming(res);
  return WebAssembly.compile(await res.arrayBuffer());
}

// The build the tests and tools use when not told otherwise: NETPLANE_BUILD=debug|release.
export function defaultBuild(): Build {
  const b = typeof process !== 'undefined' ? process.env.NETPLANE_BUILD : undefined;
  return b === 'debug' ? 'debug' : 'release';
}

export interface DataplaneOptions {
  build?: Build;                 // which module Node.js reads, or Switch.create fetches, when not given one
  module?: WebAssembly.Module;   // the compiled module (required here; the Node.js entry reads it when absent)
  maxPorts?: number;
  macEntries?: number;
  batch?: number;
  rxBytes?: number;
  routes?: number;
  neighbors?: number;
  connections?: number;
  portMappings?: number;
  ipv6Addresses?: number;
  maxRemotes?: number;          // VXLAN remote endpoints (sw.overlay), 1 .. 2^24; default 16384
  maxOverlayMembers?: number;   // (VNI, provider address) pairs, 1 .. 2^20; default 4096
  // Node.js on Linux with the native helper: ask the kernel to back the tables with 2 MiB pages
  // (madvise MADV_HUGEPAGE; default true). Elsewhere there is nothing to ask and it is ignored.
  hugePages?: boolean;
  // What asks for them: set by the Node.js entry (src/dataplane.ts), not by users. Returns 0 or an errno.
  adviseHugePages?: (mem: Uint8Array) => number;
  // The secret that keys the hashes of the tables whose keys guests and remote hosts pick (conntrack,
  // MAC, fragments, IPv6 addresses, mappings, neighbours; docs/ABI.md set_hash_seed), 0 .. 2^64-1.
  // Default: 64 random bits from crypto.getRandomValues, different for every switch. Give one only to
  // repeat a run exactly (the benchmarks do); a seed others know lets them flood a table's probe runs.
  hashSeed?: bigint;
}

export const DEFAULTS = {
  maxPorts: 256, macEntries: 65536, batch: 256, rxBytes: 256 * 2048,
  routes: 4096, neighbors: 16384, connections: 65536, portMappings: 4096, ipv6Addresses: 16384,
};

// One instance of the module: one switch. Views are remade if the memory ever grows.
export class Dataplane implements DataplaneView {
  readonly exports: NetplaneExports;
  readonly build: Build;
  readonly maxPorts: number;
  readonly batch: number;
  readonly reasons: string[];
  readonly statNames: string[];
  readonly ctStates: string[];
  // Whether the tables' memory was advised for huge pages (DataplaneOptions.hugePages): false where
  // that was not asked, not possible (no native helper, not Linux) or refused by the kernel.
  get hugePages(): boolean { return this.advised; }
  private advised = false;
  private readonly advise?: (mem: Uint8Array) => number;
  private buffer!: ArrayBuffer;
  u8!: Uint8Array;
  dv!: DataView;
  rxBuffer!: Uint8Array;       // the rx buffer, for writing frames
  rxDescriptors!: DataView;    // batch x 8 bytes: u32 offset, u16 length, u16 port
  txDescriptors!: DataView;    // tx_capacity x 8 bytes: u32 address, u16 length, u16 port
  puntDescriptors!: DataView;  // punt_capacity x 16 bytes (docs/ABI.md "The punt area")
  rxOffloads!: Uint8Array;     // batch x 12 bytes: the vnet header of rx descriptor i (docs/ABI.md "Offloads")
  txOffloads!: Uint8Array;     // tx_capacity x 12 bytes: the vnet header of tx descriptor i

  constructor(opts: DataplaneOptions = {}) {
    this.build = opts.build ?? defaultBuild();
    if (!(opts.module instanceof WebAssembly.Module)) {
      throw new NetplaneError('module', 'no compiled WebAssembly module given: here it is loaded asynchronously, so use `await Switch.create({ wasm })` or pass `module: await compileModule(url)`');
    }
    checkFlag('hugePages', opts.hugePages);
    const seed = hashSeed(opts.hashSeed);
    this.exports = instantiate(opts.module);
    abi('hashSeed', this.exports.set_hash_seed(Number(seed & 0xffffffffn), Number(seed >> 32n)));
    const maxPorts = opts.maxPorts ?? DEFAULTS.maxPorts;
    const macEntries = opts.macEntries ?? DEFAULTS.macEntries;
    const batch = opts.batch ?? DEFAULTS.batch;
    const rxBytes = opts.rxBytes ?? Math.max(DEFAULTS.rxBytes, batch * 2048);
    createCall(this.exports, 'create', { maxPorts, macEntries, batch, rxBytes }, this.exports.create);
    const routes = opts.routes ?? DEFAULTS.routes;
    const neighbors = opts.neighbors ?? DEFAULTS.neighbors;
    const conns = opts.connections ?? DEFAULTS.connections;
    const mappings = opts.portMappings ?? DEFAULTS.portMappings;
    const addrs6 = opts.ipv6Addresses ?? DEFAULTS.ipv6Addresses;
    createCall(this.exports, 'create_l3', { routes, neighbors, connections: conns, portMappings: mappings, ipv6Addresses: addrs6 },
               this.exports.create_l3);
    if (opts.hugePages !== false) this.advise = opts.adviseHugePages;
    this.maxPorts = maxPorts;
    this.batch = batch;
    this.ctStates = names(this.exports.ct_state_count(), (i) => this.exports.__getString(this.exports.ct_state_name(i)));
    this.reasons = names(this.exports.reason_count(), (i) => this.exports.__getString(this.exports.reason_name(i)));
    this.statNames = names(this.exports.stat_count(), (i) => this.exports.__getString(this.exports.stat_name(i)));
    this.views();
  }

  // (Re)makes the typed-array views; cheap to call, does nothing if the memory did not grow.
  views(): void {
    const buf = this.exports.memory.buffer;
    if (buf === this.buffer) return;
    this.buffer = buf;
    // Memory grew: first for the tables of create and create_l3, later for the overlay's
    // (overlay_create) and the heap. Its new pages are advised before any table uses them: those
    // calls grow memory for their tables and write none of the large ones (the region is zero as
    // grown, tables/flow.ts takes records in order), and the advice only changes how pages not yet
    // touched are backed. A large switch's tables (160 MiB for 1M connections) then take a few
    // hundred TLB entries instead of tens of thousands (docs/performance.md).
    if (this.advise) this.advised = this.advise(new Uint8Array(buf)) === 0;
    this.u8 = new Uint8Array(buf);
    this.dv = new DataView(buf);
    const x = this.exports;
    this.rxBuffer = new Uint8Array(buf, x.rx_buffer(), x.rx_buffer_size());
    this.rxDescriptors = new DataView(buf, x.rx_descriptors(), x.max_batch() * 8);
    this.txDescriptors = new DataView(buf, x.tx_descriptors(), x.tx_capacity() * 8);
    this.puntDescriptors = new DataView(buf, x.punt_descriptors(), x.punt_capacity() * 16);
    this.rxOffloads = new Uint8Array(buf, x.rx_offloads(), x.max_batch() * VNET_HDR_LEN);
    this.txOffloads = new Uint8Array(buf, x.tx_offloads(), x.tx_capacity() * VNET_HDR_LEN);
  }

  process(n: number, now: number): number {
    try {
      return this.exports.process(n, now);
    } catch (err) {
      const line = Number(this.exports.abortLine?.value ?? 0);
      if (line) throw new Error(`netplane dataplane assertion failed at line ${line}: ${(err as Error).message}`);
      throw err;
    }
  }

  u64(addr: number): number {
    return Number(this.dv.getBigUint64(addr, true));
  }
}

// The seed given (checked), or 64 random bits.
function hashSeed(v: unknown): bigint {
  if (v === undefined) {
    const r = crypto.getRandomValues(new Uint32Array(2));
    return (BigInt(r[1]) << 32n) | BigInt(r[0]);
  }
  if (typeof v !== 'bigint' || v < 0n || v >= 1n << 64n) {
    throw new NetplaneError('hashSeed', `must be a bigint from 0 to 2^64-1, got ${typeof v === 'bigint' ? `${v}n` : JSON.stringify(v)}`);
  }
  return v;
}

function names(n: number, get: (i: number) => string): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(get(i));
  return out;
}

// ---- the switch -----------------------------------------------------------------------------------

export type PortMode = 'access' | 'trunk';

export interface PortSpec {
  id?: number;               // port number; the lowest free one when absent
  network?: number;          // the network (broadcast domain without VLANs) the port belongs to; 0
  mode?: PortMode;           // 'access' (default) or 'trunk'
  vlan?: number;             // access VLAN, or the trunk's native VLAN; 0 = the untagged domain
  allowedVlans?: number[];   // trunk: the tagged VLANs it carries
  dropUntagged?: boolean;    // trunk: drop untagged frames instead of putting them in the native VLAN
  mac?: string;              // endpoint MAC: turns the spoof guard on
  learning?: boolean;        // learn source MACs (default true)
  learnLimit?: number;       // most MACs learned on the port (default: no limit)
  queueLimit?: number;       // frames kept for receive() before the oldest are dropped (default 4096)
}

export interface PortCounters {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  dropped: number;
  drops: Record<string, number>;
  hostQueueDrops: number;
}

export interface MacEntry {
  mac: string;
  network: number;
  vlan: number;
  port: number;
  static: boolean;
  lastSeen: number; // the `now` (ms, modulo 2^32) of the last frame from this MAC
}

// `vnet` is the frame's 12-byte vnet header (Linux's virtio_net_hdr_v1), a view valid during the call,
// given only for ports with offloads (setOffload). A port with offloads needs a handler: the frames
// queued for receive() carry no vnet header.
export type FrameHandler = (frame: Uint8Array, port: number, vnet?: Uint8Array) => void;
// A plain port's frames of one delivery in one call (SwitchPort.onBatch), for a transport that gathers
// them into one write anyway (the stream transports): frame i lies at mem[frames[2i] .. frames[2i] +
// frames[2i + 1]), in the order they left; mem is the module's memory, valid during the call. No
// per-frame call or view: the transport copies them out in its own loop.
export type BatchHandler = (mem: Uint8Array, frames: Uint32Array, n: number, port: number) => void;

// A port's offload capabilities (Switch.setOffload), as a TAP's TUNSETOFFLOAD: what the port's peer
// takes and sends. 0 (the default) is a plain port: complete checksums, frames within the MTU, no
// vnet headers. Segmentation needs CSUM; TSO_ECN needs TSO4 or TSO6.
export const Offload = { CSUM: 1, TSO4: 2, TSO6: 4, TSO_ECN: 8, USO: 16 } as const;
// The vnet header's length: struct virtio_net_hdr_v1 (flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset, num_buffers), little-endian.
export const VNET_HDR_LEN = 12;

// A punted frame's origin: its ingress port, why it was punted ('dhcp', 'dns', 'uplink', 'host'), the router interface
// and compartment it was for, and the VLAN of its broadcast domain.
// `vnet`: for a TCP super-frame punted whole (Switch.setPuntOffload), its 12-byte vnet header (the
// frame's checksum is partial, as for a port with offloads); absent for a plain frame.
export interface PuntInfo { port: number; reason: string; interface: number; compartment: number; vlan: number; vnet?: Uint8Array }
export type PuntHandler = (frame: Uint8Array, info: PuntInfo) => void;

const FLAG_GUARD = 1, FLAG_NO_LEARN = 2, FLAG_DROP_UNTAGGED = 4;
const PUNT_VNET = 0x8000;   // a punt descriptor's reason bit: the frame's vnet header is the 12 bytes before it
const NO_LIMIT = 0xffffffff;

export interface SwitchOptions extends DataplaneOptions {
  macAgingMs?: number;
  clock?: () => number;
}

export interface SwitchCreateOptions extends SwitchOptions {
  wasm?: WasmSource;   // where the module comes from when `module` is absent (default: the package's own)
}

export class SwitchPort {
  readonly queue: Uint8Array[] = [];
  handler?: FrameHandler;
  hostQueueDrops = 0;
  constructor(readonly sw: Switch, readonly id: number, readonly spec: Required<Pick<PortSpec, 'network' | 'mode' | 'vlan' | 'queueLimit'>> & PortSpec) {}
  send(frame: Uint8Array, vnet?: Uint8Array): void { this.sw.send(this.id, frame, vnet); }
  setOffload(caps: number): void { this.sw.setOffload(this.id, caps); }
  // Frames that left the switch on this port since the last call (when no handler is set).
  receive(): Uint8Array[] { return this.queue.splice(0); }
  onFrame(h: FrameHandler | undefined): void { this.handler = h; }
  // Takes the port's frames a batch at a time instead (for a plain port: one with offloads still gets
  // them one by one through its frame handler). While set, it is used instead of the frame handler.
  batchHandler?: BatchHandler;
  batch = new Uint32Array(0);   // (address, length) of the frames of the delivery under way
  batchN = 0;
  onBatch(h: BatchHandler | undefined): void { this.batchHandler = h; }
  counters(): PortCounters { return this.sw.portCounters(this.id); }
}

// memcpy of all of src into dst at `at` (the native helper's copy(), src/worker/ring.ts says why).
export type BulkCopy = (dst: Uint8Array, at: number, src: Uint8Array) => void;
// From this many bytes up a bulk copier is used where one is set; below it, the call costs more than it saves.
export const BULK_COPY_MIN = 1024;
// Copies src into dst at `at`: with `bulk` when one is given and src is long enough, else TypedArray.set.
export function copyInto(dst: Uint8Array, at: number, src: Uint8Array, bulk: BulkCopy | undefined): void {
  if (bulk !== undefined && src.length >= BULK_COPY_MIN) bulk(dst, at, src);
  else dst.set(src, at);
}

export class Switch {
  readonly dp: Dataplane;
  // Copies frames into the module's rx buffer when set (an IoWorker sets it): V8 copies out of a
  // SharedArrayBuffer, where the worker's rx ring hands frames over, a word at a time (3.6 µs for a
  // 64 KiB super-frame; memcpy 0.7).
  bulkCopy?: BulkCopy;
  readonly router: Router;
  readonly acls: Acls;
  readonly overlay: Overlay;
  readonly ports = new Map<number, SwitchPort>();
  private clock: () => number;
  private pending = 0;
  private rxUsed = 0;
  // While flush() hands out what left (tx frames, punts), those are views into the module's memory
  // (a forwarded frame is handed out where it lies in the rx buffer) that the next send() or
  // process() overwrites; a handler that answers by sending into the switch (a punt service, a
  // transport looping back) must touch neither. What it sends waits here, copied, and goes in once
  // the delivery is over.
  private delivering = false;
  private deferred: Array<[number, Uint8Array, Uint8Array?]> = [];
  private anyHandler?: FrameHandler;
  private puntHandler?: PuntHandler;
  private readonly puntHandlers = new Map<string, PuntHandler>();
  private captures = new Map<number, PcapSink>();
  // Each port's offload capabilities (setOffload), so send() knows whose rx vnet record to write.
  private offloads: Uint8Array;

  constructor(opts: SwitchOptions = {}) {
    this.dp = new Dataplane(opts);
    this.offloads = new Uint8Array(this.dp.maxPorts);
    this.clock = opts.clock ?? (() => performance.now());
    this.router = new Router(this.dp, () => this.clock());
    this.acls = new Acls(this.dp, (id) => this.ports.get(id)?.spec.network,
      (network) => [...this.ports.values()].filter((p) => p.spec.network === network).map((p) => p.id));
    const maxRemotes = opts.maxRemotes ?? OVERLAY_DEFAULTS.maxRemotes, maxOverlayMembers = opts.maxOverlayMembers ?? OVERLAY_DEFAULTS.maxOverlayMembers;
    check('maxRemotes', maxRemotes, 1, 2 ** 24);
    check('maxOverlayMembers', maxOverlayMembers, 1, 2 ** 20);
    this.overlay = new Overlay(this.dp, { maxRemotes, maxOverlayMembers }, () => this.clock(), (id) => this.ports.has(id));
    if (opts.macAgingMs !== undefined) this.setMacAging(opts.macAgingMs);
  }

  // A switch whose module is loaded asynchronously: in a browser, `await Switch.create()` fetches the
  // package's own module (or `wasm`: a URL, a Response, bytes or a compiled Module).
  static async create<T extends Switch>(this: SwitchClass<T>, opts: SwitchCreateOptions = {}): Promise<T> {
    const build = opts.build ?? defaultBuild();
    const module = opts.module ?? await compileModule(opts.wasm ?? this.defaultWasm(build), build);
    return new this({ ...opts, build, module });
  }

  // Where create() takes the module from when told nothing: the package's own file, fetched.
  static defaultWasm(build: Build): WasmSource { return wasmUrl(build); }

  get reasons(): string[] { return this.dp.reasons; }

  // Frames sent but not yet processed (they go with the next flush).
  get pendingFrames(): number { return this.pending; }

  addPort(spec: PortSpec = {}): SwitchPort {
    const id = spec.id ?? this.freePort();
    check('id', id, 0, this.dp.maxPorts - 1);
    if (this.ports.has(id)) throw new NetplaneError('id', `port ${id} already exists`);
    const full = { network: 0, mode: 'access' as PortMode, vlan: 0, queueLimit: 4096, ...spec, id };
    const applied = this.configure(id, full);
    const port = new SwitchPort(this, id, applied);
    this.ports.set(id, port);
    this.acls.portAdded(id);
    return port;
  }

  // Changes a port's configuration. Every field is validated before anything changes.
  modifyPort(id: number, changes: Omit<PortSpec, 'id'>): SwitchPort {
    const old = this.port(id);
    const full = { ...old.spec, ...changes, id };
    const applied = this.configure(id, full);
    Object.assign(old.spec, applied);
    this.acls.portAdded(id);
    return old;
  }

  private configure(id: number, s: PortSpec & { network: number; mode: PortMode; vlan: number; queueLimit: number }) {
    check('network', s.network, 0, 65535);
    if (s.mode !== 'access' && s.mode !== 'trunk') throw new NetplaneError('mode', `must be "access" or "trunk", got ${JSON.stringify(s.mode)}`);
    check('vlan', s.vlan, 0, 4094);
    const allowed = s.allowedVlans ?? [];
    if (allowed.length && s.mode !== 'trunk') throw new NetplaneError('allowedVlans', 'only a trunk port carries tagged VLANs');
    allowed.forEach((v, i) => check(`allowedVlans[${i}]`, v, 1, 4094));
    if (s.dropUntagged && s.mode !== 'trunk') throw new NetplaneError('dropUntagged', 'only applies to a trunk port');
    if (s.learnLimit !== undefined) check('learnLimit', s.learnLimit, 0, NO_LIMIT - 1);
    check('queueLimit', s.queueLimit, 0, 1 << 24);
    let mac: Uint8Array | undefined;
    if (s.mac !== undefined) {
      try { mac = parseMac(s.mac); } catch (e) { throw new NetplaneError('mac', (e as Error).message); }
      if (mac[0] & 1) throw new NetplaneError('mac', `${s.mac} is a group address, not a station`);
    }
    const flags = (mac ? FLAG_GUARD : 0) | (s.learning === false ? FLAG_NO_LEARN : 0) | (s.dropUntagged ? FLAG_DROP_UNTAGGED : 0);
    const x = this.dp.exports;
    abi('port', x.port_configure(id, s.network, s.mode === 'trunk' ? 1 : 0, s.vlan, flags, s.learnLimit ?? NO_LIMIT));
    abi('allowedVlans', x.port_clear_vlans(id));
    for (const v of allowed) abi('allowedVlans', x.port_allow_vlan(id, v, 1));
    if (mac) abi('mac', x.port_set_guard_mac(id, (mac[0] << 8) | mac[1], ((mac[2] << 24) | (mac[3] << 16) | (mac[4] << 8) | mac[5]) >>> 0));
    return s;
  }

  removePort(id: number): void {
    this.port(id);
    this.flush();
    this.acls.portRemoved(id);
    abi('port', this.dp.exports.port_remove(id));
    this.offloads[id] = 0;
    this.ports.delete(id);
  }

  setPortUp(id: number, up: boolean): void {
    this.port(id);
    abi('port', this.dp.exports.port_set_up(id, up ? 1 : 0));
  }

  port(id: number): SwitchPort {
    const p = this.ports.get(id);
    if (!p) throw new NetplaneError('port', `no port ${id}`);
    return p;
  }

  private freePort(): number {
    for (let i = 0; i < this.dp.maxPorts; i++) if (!this.ports.has(i)) return i;
    throw new NetplaneError('id', `all ${this.dp.maxPorts} ports are in use`);
  }

  // Sets port `id`'s offload capabilities (a sum of Offload flags; 0 = a plain port). A port with
  // capabilities sends and receives a vnet header with every frame (send's `vnet`, the handler's).
  setOffload(id: number, caps: number): void {
    this.port(id);
    check('caps', caps, 0, 31);
    this.flush();
    abi('caps', this.dp.exports.port_set_offload(id, caps));
    this.offloads[id] = caps;
  }

  // The TCP super-frames the punt handlers of 'uplink' and 'host' take whole (Offload.TSO4, TSO6; 0,
  // the default: every punt is a plain frame): such a frame comes with PuntInfo.vnet and a partial
  // checksum instead of as its segments (docs/ABI.md "The punt area").
  setPuntOffload(caps: number): void {
    if (caps !== 0 && caps !== Offload.TSO4 && caps !== Offload.TSO6 && caps !== (Offload.TSO4 | Offload.TSO6)) {
      throw new NetplaneError('caps', `punts take only Offload.TSO4 and Offload.TSO6, got ${caps}`);
    }
    this.flush();
    abi('caps', this.dp.exports.punt_set_offload(caps));
  }

  offload(id: number): number {
    this.port(id);
    return this.offloads[id];
  }

  // Every frame leaving any port goes to this handler (in addition to the port's own handler/queue).
  onFrame(h: FrameHandler | undefined): void { this.anyHandler = h; }

  // Queues a frame received on `port`. The batch is processed when it is full or on flush().
  // `vnet`: the frame's 12-byte vnet header (copied; absent = zeros), read only for a port with offloads.
  send(port: number, frame: Uint8Array, vnet?: Uint8Array): void {
    const dp = this.dp;
    if (frame.length > 65535) throw new NetplaneError('frame', `${frame.length} bytes is longer than 65535`);
    if (frame.length > dp.rxBuffer.length) throw new NetplaneError('frame', `${frame.length} bytes does not fit the rx buffer`);
    if (vnet !== undefined && vnet.length < VNET_HDR_LEN) throw new NetplaneError('vnet', `a vnet header is ${VNET_HDR_LEN} bytes, got ${vnet.length}`);
    if (this.delivering) { this.deferred.push([port, frame.slice(), vnet?.slice(0, VNET_HDR_LEN)]); return; }
    // A loop: the frames handlers sent during a flush's delivery are queued at its end, and may
    // have filled the batch again.
    while (this.pending === dp.batch || this.rxUsed + frame.length > dp.rxBuffer.length) this.flush();
    if (this.captures.size) this.captures.get(port)?.write(frame, Date.now());
    dp.views();
    const off = this.rxUsed;
    copyInto(dp.rxBuffer, off, frame, this.bulkCopy);
    const d = this.pending * 8;
    dp.rxDescriptors.setUint32(d, off, true);
    dp.rxDescriptors.setUint16(d + 4, frame.length, true);
    dp.rxDescriptors.setUint16(d + 6, port, true);
    if (this.offloads[port]) {
      const r = this.pending * VNET_HDR_LEN;
      if (vnet) dp.rxOffloads.set(vnet.subarray(0, VNET_HDR_LEN), r);
      else dp.rxOffloads.fill(0, r, r + VNET_HDR_LEN);
    }
    this.pending++;
    // Keep frames 8-byte aligned in the rx buffer.
    this.rxUsed = (off + frame.length + 7) & ~7;
  }

  // Processes the queued frames at time `now` (ms) and delivers what leaves. Returns the tx count.
  flush(now: number = this.clock()): number {
    const dp = this.dp;
    const n = this.pending;
    this.pending = 0;
    this.rxUsed = 0;
    const tx = dp.process(n, now);
    dp.views();
    this.delivering = true;
    try {
      this.deliver(tx);
    } finally {
      this.delivering = false;
    }
    while (this.deferred.length) {
      const later = this.deferred;
      this.deferred = [];
      for (const [port, frame, vnet] of later) this.send(port, frame, vnet);
    }
    return tx;
  }

  private deliver(tx: number): void {
    const dp = this.dp;
    const td = dp.txDescriptors;
    const watched = this.captures.size > 0 || this.anyHandler !== undefined;
    const batched = this.batched;
    for (const p of batched) p.batchN = 0;   // (left over only if a batch handler threw)
    batched.length = 0;
    for (let i = 0; i < tx; i++) {
      const addr = td.getUint32(i * 8, true);
      const len = td.getUint16(i * 8 + 4, true);
      const out = td.getUint16(i * 8 + 6, true);
      const caps = this.offloads[out];
      const p = this.ports.get(out);
      if (p?.batchHandler && !caps && !watched) {
        // Gathered for the port's one call after the loop: no view, no call per frame.
        let k = p.batchN;
        if (k === 0) batched.push(p);
        if (2 * k === p.batch.length) { const grown = new Uint32Array(Math.max(64, 2 * p.batch.length)); grown.set(p.batch); p.batch = grown; }
        p.batch[2 * k] = addr; p.batch[2 * k + 1] = len;
        p.batchN = k + 1;
        continue;
      }
      const view = dp.u8.subarray(addr, addr + len);
      const vnet = caps ? dp.txOffloads.subarray(i * VNET_HDR_LEN, (i + 1) * VNET_HDR_LEN) : undefined;
      if (this.captures.size) this.captures.get(out)?.write(view, Date.now());
      this.anyHandler?.(view, out, vnet);
      if (!p) continue;
      if (p.batchHandler && !caps) {
        // Watched (a capture, an any-port handler): this frame goes to the port's batch handler alone.
        if (p.batch.length < 2) p.batch = new Uint32Array(64);
        p.batch[0] = addr; p.batch[1] = len;
        p.batchHandler(dp.u8, p.batch, 1, out);
      } else if (p.handler) p.handler(view, out, vnet);
      else if (p.spec.queueLimit > 0) {
        if (p.queue.length >= p.spec.queueLimit) {
          p.queue.shift();
          p.hostQueueDrops++;
        }
        p.queue.push(view.slice());
      }
    }
    for (let j = 0; j < batched.length; j++) {
      const p = batched[j], n = p.batchN;
      p.batchN = 0;
      if (n) p.batchHandler?.(dp.u8, p.batch, n, p.id);
    }
    batched.length = 0;
    if (this.puntHandler || this.puntHandlers.size) this.deliverPunts();
    for (const h of this.deliveredHooks) h();
  }
  private readonly batched: SwitchPort[] = [];   // ports with frames gathered in the delivery under way

  // Runs h at the end of every delivery, after the last tx frame and punt of the batch was handed
  // out and while their views are still valid: a transport that queued the batch's frames writes them
  // out in one call (the native TAP's writev loop). Returns the function that removes h.
  onDelivered(h: () => void): () => void {
    this.deliveredHooks.push(h);
    return () => {
      const i = this.deliveredHooks.indexOf(h);
      if (i >= 0) this.deliveredHooks.splice(i, 1);
    };
  }
  private deliveredHooks: Array<() => void> = [];

  // Frames the dataplane handed to the host instead of handling them (an interface's punt classes,
  // Router.setPunt): `h` gets each one after every batch, with why and where it came from. The frame
  // is a view valid during the call. The host answers by sending frames into the switch like any
  // other (docs/ABI.md "The punt area").
  // onPunt(reason, h) sets the one handler of a reason ('dhcp', 'dns', ...): each service owns its
  // reason and dispatches further itself (by interface). onPunt(h) sets the handler of every reason
  // that has none of its own. undefined clears.
  // A service of one router interface (the DHCP, DHCPv6, DNS servers, the router advertiser): the
  // reason's one handler, shared by the services of all interfaces, dispatches by interface. A second
  // handler for the same reason and interface is refused (`what` names the service in the error).
  // Returns detach, which says whether it detached (false once another handler took the interface).
  onInterfacePunt(reason: string, iface: number, h: PuntHandler, what: string): () => boolean {
    let byIface = this.interfacePunts.get(reason);
    if (byIface?.has(iface)) throw new NetplaneError('interface', `interface ${iface} already has ${what} attached`);
    if (!byIface) {
      const m = new Map<number, PuntHandler>();
      this.interfacePunts.set(reason, (byIface = m));
      this.onPunt(reason, (frame, info) => m.get(info.interface)?.(frame, info));
    }
    const map = byIface;
    map.set(iface, h);
    return () => {
      if (map.get(iface) !== h) return false;
      map.delete(iface);
      if (map.size === 0 && this.interfacePunts.get(reason) === map) { this.interfacePunts.delete(reason); this.onPunt(reason, undefined); }
      return true;
    };
  }
  private interfacePunts = new Map<string, Map<number, PuntHandler>>();

  onPunt(h: PuntHandler | undefined): void;
  onPunt(reason: string, h: PuntHandler | undefined): void;
  onPunt(a: string | PuntHandler | undefined, h?: PuntHandler): void {
    if (typeof a !== 'string') { this.puntHandler = a; return; }
    if (h) this.puntHandlers.set(a, h);
    else this.puntHandlers.delete(a);
  }

  private deliverPunts(): void {
    const dp = this.dp;
    const n = dp.exports.punt_count();
    const pd = dp.puntDescriptors;
    for (let i = 0; i < n; i++) {
      const d = i * 16;
      const addr = pd.getUint32(d, true), len = pd.getUint16(d + 4, true);
      const r = pd.getUint16(d + 8, true), reason = r & ~PUNT_VNET;
      const info: PuntInfo = {
        port: pd.getUint16(d + 6, true),
        reason: PUNT_REASONS[reason] ?? `reason ${reason}`,
        interface: pd.getUint16(d + 10, true),
        compartment: pd.getUint16(d + 12, true),
        vlan: pd.getUint16(d + 14, true),
      };
      if (r & PUNT_VNET) info.vnet = dp.u8.subarray(addr - VNET_HDR_LEN, addr);
      (this.puntHandlers.get(info.reason) ?? this.puntHandler)?.(dp.u8.subarray(addr, addr + len), info);
    }
  }

  // Captures every frame a port receives and sends into a classic pcap file (tcpdump, Wireshark): a
  // path (Node.js), or any sink such as a PcapWriter or an in-memory PcapRecorder.
  // Returns the function that stops the capture and closes the sink.
  capture(port: number, target: string | PcapSink): () => void {
    this.port(port);
    if (this.captures.has(port)) throw new NetplaneError('port', `port ${port} is already being captured`);
    const w = typeof target === 'string' ? this.openCapture(target) : target;
    this.captures.set(port, w);
    return () => {
      if (this.captures.get(port) !== w) return;
      this.captures.delete(port);
      w.close();
    };
  }

  // Opens a capture file by path; only where there is a file system (the Node.js entry's Switch).
  protected openCapture(path: string): PcapSink {
    throw new NetplaneError('target', `cannot open ${JSON.stringify(path)}: no file system here; capture into a PcapRecorder (or any { write, close }) instead`);
  }

  // Sends one batch of frames and processes it: convenience for tests and tools.
  inject(frames: Array<[port: number, frame: Uint8Array, vnet?: Uint8Array]>, now?: number): number {
    for (const [p, f, v] of frames) this.send(p, f, v);
    return this.flush(now);
  }

  // Runs one frame through the pipeline as if received on `port`, without changing anything, and
  // returns every stage's decision (src/trace.ts).
  trace(port: number, frame: Uint8Array, now: number = this.clock()): TraceResult {
    return traceFrame(this, port, frame, now);
  }

  // ---- MAC table ----

  macTable(): MacEntry[] {
    const dp = this.dp;
    dp.views();
    const x = dp.exports;
    const base = x.mac_table();
    const slots = x.mac_table_slots();
    const out: MacEntry[] = [];
    const u8 = dp.u8, v = dp.dv;
    for (let i = 0; i < slots; i++) {
      const s = base + i * 16;
      const flags = v.getUint16(s + 6, true);
      if (!(flags & 0x8000)) continue;
      out.push({
        mac: formatMac(u8, s),
        vlan: flags & 0x0fff,
        static: (flags & 0x4000) !== 0,
        network: v.getUint16(s + 8, true),
        port: v.getUint16(s + 10, true),
        lastSeen: v.getUint32(s + 12, true),
      });
    }
    out.sort((a, b) => a.network - b.network || a.vlan - b.vlan || a.mac.localeCompare(b.mac));
    return out;
  }

  // Which reserved link-local group addresses 01:80:c2:00:00:00-0f a network forwards: bit n for
  // 01:80:c2:00:00:0n, as the Linux bridge's group_fwd_mask (e.g. 1 << 0xe relays LLDP, 1 << 3 EAPOL
  // for 802.1X passthrough). By default (0) frames to 01-0f are dropped as l2_reserved_group and 00
  // (STP BPDUs) is flooded, as by a Linux bridge with STP off. Bits 0-2 (STP, PAUSE, LACP) are
  // refused, as Linux refuses them.
  setGroupFwdMask(network: number, mask: number): void {
    check('network', network, 0, 65535);
    check('groupFwdMask', mask, 0, 0xffff);
    if (mask & 0x7) throw new NetplaneError('groupFwdMask', 'bits 0-2 (STP, PAUSE, LACP: 01:80:c2:00:00:00-02) can never be forwarded');
    abi('groupFwdMask', this.dp.exports.network_set_group_fwd_mask(network, mask));
  }

  groupFwdMask(network = 0): number {
    check('network', network, 0, 65535);
    return this.dp.exports.network_group_fwd_mask(network);
  }

  addStaticMac(e: { mac: string; port: number; network?: number; vlan?: number }): void {
    this.port(e.port);
    const m = macArg(e.mac);
    const network = e.network ?? 0, vlan = e.vlan ?? 0;
    check('network', network, 0, 65535);
    check('vlan', vlan, 0, 4094);
    if (m[0] & 1) throw new NetplaneError('mac', `${e.mac} is a group address, not a station`);
    if (m.every((b) => b === 0)) throw new NetplaneError('mac', '00:00:00:00:00:00 is not a station');
    abi('mac', this.dp.exports.mac_add_static(network, vlan, (m[0] << 8) | m[1], macLo(m), e.port, this.clock()));
  }

  removeMac(e: { mac: string; network?: number; vlan?: number }): boolean {
    const m = macArg(e.mac);
    const r = this.dp.exports.mac_remove(e.network ?? 0, e.vlan ?? 0, (m[0] << 8) | m[1], macLo(m));
    if (r === -8) return false;
    abi('mac', r);
    return true;
  }

  flushMacs(port?: number): number {
    if (port === undefined) return this.dp.exports.mac_flush();
    this.port(port);
    return this.dp.exports.mac_flush_port(port);
  }

  setMacAging(ms: number): void {
    check('macAgingMs', ms, 1, 0x7fffffff);
    abi('macAgingMs', this.dp.exports.mac_set_aging(ms));
  }

  // Removes aged MAC entries now (the dataplane also does this a little every batch).
  ageMacs(now: number = this.clock()): number {
    return this.dp.exports.mac_age(now, this.dp.exports.mac_table_slots());
  }

  // ---- counters ----

  counters(): { stats: Record<string, number>; drops: Record<string, number> } {
    const dp = this.dp;
    dp.views();
    const x = dp.exports;
    const stats: Record<string, number> = {};
    dp.statNames.forEach((n, i) => (stats[n] = dp.u64(x.stats() + i * 8)));
    return { stats, drops: readDrops(dp, x.drops()) };
  }

  portCounters(id: number): PortCounters {
    const p = this.port(id);
    const dp = this.dp;
    dp.views();
    const r = dp.exports.port_record(id);
    return {
      rxPackets: dp.u64(r + 24),
      rxBytes: dp.u64(r + 32),
      txPackets: dp.u64(r + 40),
      txBytes: dp.u64(r + 48),
      dropped: dp.u64(r + 56),
      drops: readDrops(dp, dp.exports.port_drops(id)),
      hostQueueDrops: p.hostQueueDrops,
    };
  }
}

// What Switch.create needs of the class it is called on (Switch or a subclass).
export interface SwitchClass<T extends Switch> {
  new (opts: SwitchOptions): T;
  defaultWasm(build: Build): WasmSource;
}

// Non-zero drop counters by reason name.
function readDrops(dp: Dataplane, base: number): Record<string, number> {
  const out: Record<string, number> = {};
  dp.reasons.forEach((name, i) => {
    if (i === 0) return;
    const c = dp.u64(base + i * 8);
    if (c) out[name] = c;
  });
  return out;
}

function macArg(s: string): Uint8Array {
  try { return parseMac(s); } catch (e) { throw new NetplaneError('mac', (e as Error).message); }
}

function macLo(m: Uint8Array): number {
  return ((m[2] << 24) | (m[3] << 16) | (m[4] << 8) | m[5]) >>> 0;
}
