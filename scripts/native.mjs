#!/usr/bin/env node
// The optional native TAP helper (native/tap.c, Linux): built with node-gyp into
// native/build/Release/netplane_tap.node, apart from build/ (the WebAssembly modules and the bundled
// SDK), so no npm lifecycle that cleans one can break the other.
//
// It is optional, so this never fails: without a compiler, make, python or Node's headers it says in
// one line that the helper was not built and exits 0; src/transports/tap.ts then reports the native
// TAP transport as unavailable and the UDP, stream and WebSocket transports work as before.
//
// It runs as the package's `install` script (so an installed tarball builds the helper where there is
// a compiler), from scripts/build.mjs (a source checkout), and as `npm run build:native` (`--verbose`:
// node-gyp's whole output when it fails). A stamp in native/build records the last attempt, made or
// failed, so a build with nothing changed costs a few stat calls, not a node-gyp run.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'native');
export const nativeOutput = join(dir, 'build/Release/netplane_tap.node');
const stampFile = join(dir, 'build/netplane-native.json');
const inputs = ['tap.c', 'binding.gyp'].map((f) => join(dir, f));

// npm tells its scripts where its own node-gyp is; outside npm, look beside this node's npm, then PATH.
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return [process.execPath, [c]];
  return ['node-gyp', []];
}

function readStamp() {
  try {
    return { ...JSON.parse(readFileSync(stampFile, 'utf8')), mtimeMs: statSync(stampFile).mtimeMs };
  } catch {
    return null;
  }
}

// What the last attempt left: 'built', 'failed' (and inputs unchanged since), or null (try).
export function nativeState() {
  if (process.platform !== 'linux') return 'unsupported';
  if (!inputs.every((f) => existsSync(f))) return 'no-source';
  const stamp = readStamp();
  if (!stamp || stamp.platform !== process.platform || stamp.arch !== process.arch) return null;
  if (inputs.some((f) => statSync(f).mtimeMs > stamp.mtimeMs)) return null;
  if (stamp.ok) return existsSync(nativeOutput) ? 'built' : null;
  return 'failed';
}

function run(cmd, args, opts) {
  return new Promise((resolve) => {
    let out = '';
    let child;
    try {
      child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ code: -1, out: String(e) });
      return;
    }
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', (e) => { out += `${e.message}\n`; });
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

// The one line that says why node-gyp failed: a compiler error, gyp's exception, or node-gyp's reason.
function reason(out) {
  const lines = out.split('\n').map((l) => l.trim()).filter(Boolean);
  const compiler = lines.find((l) => /\berror:/.test(l) && !l.startsWith('gyp'));
  if (compiler) return compiler;
  const python = lines.findLast((l) => /^[A-Z]\w*Error: /.test(l));   // the end of gyp's traceback
  if (python) return python;
  const gyp = lines.find((l) => /^gyp ERR! (stack )?(Error|find)/.test(l)) ?? lines.find((l) => l.startsWith('gyp ERR!'));
  if (gyp) return gyp.replace(/^gyp ERR! (stack )?/, '');
  return lines.at(-1) ?? 'node-gyp could not run';
}

// Builds the helper unless the last attempt still stands (retryFailed: try again after a failure;
// force: rebuild from clean even after a success). Resolves to 'built', 'up-to-date', 'failed',
// 'unsupported' or 'no-source'; never rejects.
export async function buildNative({ retryFailed = false, force = false, verbose = false, log = (m) => console.error(m) } = {}) {
  const state = nativeState();
  if (state === 'unsupported' || state === 'no-source') return state;
  if (state === 'built' && !force) return 'up-to-date';
  if (state === 'failed' && !retryFailed) return 'failed';
  const started = Date.now();
  const [cmd, pre] = nodeGyp();
  // npm passes its nodedir setting on; run by hand, use the headers installed beside this node (as
  // Debian's and nodejs.org's builds have them) rather than downloading them.
  const headers = resolve(dirname(process.execPath), '..');
  const nodedir = !process.env.npm_config_nodedir && existsSync(join(headers, 'include/node/node_api.h')) ? [`--nodedir=${headers}`] : [];
  const commands = force ? ['rebuild'] : ['configure', 'build'];   // rebuild: clean first
  const r = await run(cmd, [...pre, '--directory', dir, ...commands, '--loglevel=error', ...nodedir], { cwd: root });
  const ok = r.code === 0 && existsSync(nativeOutput);
  mkdirSync(dirname(stampFile), { recursive: true });
  writeFileSync(stampFile, JSON.stringify({ ok, platform: process.platform, arch: process.arch, node: process.version }) + '\n');
  // The stamp is dated when the attempt began: a source saved during the build is newer, so rebuilt.
  utimesSync(stampFile, started / 1000, started / 1000);
  if (ok) return 'built';
  if (verbose) log(r.out.trimEnd());
  log(`netplane: the optional native TAP helper was not built (${reason(r.out)}); the UDP, stream and ` +
    'WebSocket transports work without it. `npm run build:native` tries again and shows why.');
  return 'failed';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const verbose = process.argv.includes('--verbose');
  await buildNative({ retryFailed: true, verbose });
}
