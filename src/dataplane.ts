// The switch for Node.js: src/switch.ts with the module read from the package's own files, so that
// `new Switch()` and `new Dataplane()` are synchronous, and captures may name a file. Everything else
// (ports, batches, MAC table, counters, router, ACLs, trace) is src/switch.ts, shared with the browser
// bundle (src/web.ts), which loads the module with fetch instead. Here the tables can also have huge
// pages (the native helper's madvise; DataplaneOptions.hugePages).
import { readFileSync } from 'node:fs';
import { Dataplane as CoreDataplane, Switch as CoreSwitch, defaultBuild, type Build, type DataplaneOptions, type SwitchOptions, type WasmSource } from './switch.js';
import { PcapWriter, type PcapSink } from './pcap.js';
import { loadNative } from './transports/native.js';

export * from './switch.js';

const modules = new Map<Build, WebAssembly.Module>();

function wasmCandidates(build: Build): URL[] {
  const file = `netplane.${build}.wasm`;
  // From src/ (tests, tsx) the module is in ../build/; from the bundle in build/dist/ it is in ../.
  return [new URL(`../build/${file}`, import.meta.url), new URL(`../${file}`, import.meta.url)];
}

// Compiles (once per build per process) the WebAssembly module.
export function loadModule(build: Build = 'release'): WebAssembly.Module {
  let m = modules.get(build);
  if (m) return m;
  let bytes: Buffer | undefined;
  const tried: string[] = [];
  for (const url of wasmCandidates(build)) {
    try {
      bytes = readFileSync(url);
      break;
    } catch {
      tried.push(url.pathname);
    }
  }
  if (!bytes) throw new Error(`netplane: the ${build} WebAssembly module is not built (looked in ${tried.join(', ')}); run \`npm run build\``);
  m = new WebAssembly.Module(new Uint8Array(bytes));
  modules.set(build, m);
  return m;
}

function withModule<T extends DataplaneOptions>(opts: T): T {
  const build = opts.build ?? defaultBuild();
  const native = loadNative();
  return { ...opts, build, module: opts.module ?? loadModule(build), adviseHugePages: typeof native?.hugePages === 'function' ? (mem) => native.hugePages(mem) : undefined };
}

export class Dataplane extends CoreDataplane {
  constructor(opts: DataplaneOptions = {}) { super(withModule(opts)); }
}

export class Switch extends CoreSwitch {
  constructor(opts: SwitchOptions = {}) { super(withModule(opts)); }

  // Switch.create() with nothing to load from reads the package's file, as the constructor does.
  static defaultWasm(build: Build): WasmSource { return loadModule(build); }

  protected openCapture(path: string): PcapSink { return new PcapWriter(path); }
}
