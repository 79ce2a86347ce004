#!/usr/bin/env node
// `npm run build`: builds what changed since the last build, and only that, so a build with nothing
// changed costs a few hundred stat calls instead of 30 s of asc, rollup and node-gyp.
//
//   node scripts/build.mjs [native] [wasm] [ts] [--force] [--quiet]
//
// Three steps, each with its inputs and a stamp dated when its last successful run began (a file
// saved during a build is newer than the stamp, so the next build takes it):
//   native  native/tap.c -> native/build/Release/netplane_tap.node (optional; scripts/native.mjs)
//   wasm    assembly/**, asconfig.json, asc's version -> build/netplane.{debug,release}.wasm
//   ts      src/**, rollup.config.js, tsconfig.json, package.json, rollup's and tsc's versions
//           -> build/dist/ (rollup)
// wasm and ts run at the same time (the two asc targets one after the other, rollup beside them).
// The tools' progress lines are not shown; their warnings and errors are. A failed native helper is
// not retried by a build of everything until native/ changes (`npm run build:native` retries).
// One build at a time per checkout: a second waits for the first (build/.build.lock), then finds
// most of its work done.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildNative, nativeState } from './native.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const at = (p) => join(root, p);
const bin = (pkg, file) => at(`node_modules/${pkg}/${file}`);

const steps = {
  wasm: {
    inputs: ['assembly', 'asconfig.json'],
    tools: ['assemblyscript'],
    outputs: ['build/netplane.debug.wasm', 'build/netplane.release.wasm'],
    stamp: 'build/.stamp-wasm',
    async run() {
      const shown = [];
      for (const target of ['debug', 'release']) {
        const r = await tool(process.execPath, [bin('assemblyscript', 'bin/asc.js'), 'assembly/index.ts', '--target', target]);
        if (r.code !== 0) return r;
        if (r.shown) shown.push(`asc (${target}):\n${r.shown}`);
      }
      return { code: 0, shown: shown.join('\n') };
    },
  },
  ts: {
    inputs: ['src', 'rollup.config.js', 'tsconfig.json', 'package.json'],
    tools: ['rollup', 'typescript', '@rollup/plugin-typescript', 'rollup-plugin-dts'],
    outputs: ['build/dist/index.js', 'build/dist/index.d.ts', 'build/dist/cli.js', 'build/dist/io-thread.js'],
    stamp: 'build/.stamp-ts',
    async run(started) {
      // rollup's progress lines ("src/index.ts → build/dist...", "created ...") are noise; its
      // warnings ("(!) ...") and errors are not.
      const r = await tool(process.execPath, [bin('rollup', 'dist/bin/rollup'), '-c', 'rollup.config.js'],
        (line) => !/^(\S.* → .*\.\.\.|created .* in .*)$/.test(line));
      // rollup rewrites every output; whatever in build/dist predates this run is a chunk of an
      // older build (chunk names carry a content hash) and would be packed as a stray file.
      if (r.code === 0) removeOlder(at('build/dist'), started);
      return r;
    },
  },
};

function newest(path) {
  let st;
  try { st = statSync(path); } catch { return 0; }
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;                        // a deleted file shows as its directory's mtime
  for (const e of readdirSync(path)) m = Math.max(m, newest(join(path, e)));
  return m;
}

function removeOlder(dir, before) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isFile() && statSync(p).mtimeMs < before) rmSync(p);
  }
}

// The compilers' versions, kept in the stamp: npm dates the files it installs in 1985, so an upgraded
// compiler shows in its version, not in an mtime.
function toolVersions(step) {
  return step.tools.map((t) => {
    try { return `${t}@${JSON.parse(readFileSync(at(`node_modules/${t}/package.json`), 'utf8')).version}`; } catch { return `${t}@none`; }
  }).join(' ');
}

function stale(step) {
  let stamp;
  try { stamp = statSync(at(step.stamp)).mtimeMs; } catch { return 'never built'; }
  if (readFileSync(at(step.stamp), 'utf8').trim() !== toolVersions(step)) return 'the compilers changed';
  const missing = step.outputs.find((o) => !existsSync(at(o)));
  if (missing) return `${missing} is missing`;
  const changed = step.inputs.find((i) => newest(at(i)) > stamp);
  return changed ? `${changed} changed` : null;
}

const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');

// Runs a tool, keeping its output; `show` picks the lines worth showing when it succeeds.
function tool(cmd, args, show = () => true) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', (e) => { out += `${e.message}\n`; });
    child.on('close', (code) => {
      const text = strip(out);
      const shown = text.split('\n').filter((l) => l.trim() && show(l)).join('\n');
      resolve({ code: code ?? 1, out: text, shown });
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function lock(log) {
  const file = at('build/.build.lock');
  mkdirSync(dirname(file), { recursive: true });
  let told = false;
  for (;;) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      const release = () => { try { if (readFileSync(file, 'utf8') === String(process.pid)) unlinkSync(file); } catch { /* gone */ } };
      process.once('exit', release);
      return release;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    const pid = Number(readFileSync(file, 'utf8'));
    let alive = false;
    try { process.kill(pid, 0); alive = pid > 0; } catch (e) { alive = e.code === 'EPERM'; }
    if (!alive) { try { unlinkSync(file); } catch { /* another waiter took it */ } continue; }
    if (!told) { log(`netplane build: waiting for the build already running (pid ${pid})`); told = true; }
    await sleep(200);
  }
}

// Builds the named steps that are out of date. Resolves to true when everything asked for is built
// (a missing native helper is not a failure: it is optional); prints the failing tool's output.
// retryNative: try the native helper again even if the last attempt failed with native/ unchanged.
export async function build({ targets = ['native', 'wasm', 'ts'], force = false, quiet = false, retryNative = false } = {}) {
  const log = (m) => console.error(m);
  const t0 = performance.now();
  const todo = (names) => names.filter((n) => steps[n] && targets.includes(n)).filter((n) => force || stale(steps[n]));
  const nativeTodo = targets.includes('native') && (force || nativeState() === null || (retryNative && nativeState() === 'failed'));
  if (!nativeTodo && todo(['wasm', 'ts']).length === 0) {
    if (!quiet) log(`netplane build: up to date (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
    return true;
  }
  const release = await lock(log);
  try {
    const work = todo(['wasm', 'ts']);          // again: a build we waited for may have done it
    if (!work.length && !nativeTodo) {
      if (!quiet) log('netplane build: up to date (built by the build waited for)');
      return true;
    }
    if (quiet && (work.length || nativeTodo)) log(`netplane: building ${[...(nativeTodo ? ['native'] : []), ...work].join(', ')} (sources changed since the last build)...`);
    const timed = async (name, fn) => {
      const s = performance.now();
      const r = await fn();
      return { name, ...r, seconds: (performance.now() - s) / 1000 };
    };
    const jobs = work.map((name) => timed(name, async () => {
      const started = Date.now();
      const r = await steps[name].run(started);
      if (r.code === 0) {
        const stamp = at(steps[name].stamp);
        writeFileSync(stamp, `${toolVersions(steps[name])}\n`);
        utimesSync(stamp, started / 1000, started / 1000);
      }
      return r;
    }));
    if (nativeTodo) jobs.push(timed('native', async () => ({ code: 0, result: await buildNative({ retryFailed: force || retryNative, force, log }) })));
    const results = await Promise.all(jobs);
    let ok = true;
    for (const r of results) {
      if (r.code !== 0) {
        ok = false;
        log(`netplane build: ${r.name} failed:\n${r.out.trimEnd()}`);
      } else if (r.shown) {
        log(r.shown);
      }
    }
    if (!quiet || !ok) {
      const parts = results.map((r) => `${r.name} ${r.code !== 0 ? 'FAILED' : r.result === 'failed' ? 'not built (optional)' : r.result === 'up-to-date' ? 'up to date' : `${r.seconds.toFixed(1)} s`}`);
      log(`netplane build: ${parts.join(', ')} (${((performance.now() - t0) / 1000).toFixed(1)} s in all)`);
    }
    return ok;
  } finally {
    release();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const targets = args.filter((a) => !a.startsWith('--'));
  const unknown = targets.filter((t) => !['native', 'wasm', 'ts'].includes(t));
  if (unknown.length) {
    console.error(`netplane build: unknown step ${unknown.join(', ')} (steps: native, wasm, ts)`);
    process.exit(2);
  }
  const ok = await build({
    targets: targets.length ? targets : undefined, force: args.includes('--force'), quiet: args.includes('--quiet'),
    retryNative: targets.includes('native'),
  });
  process.exit(ok ? 0 : 1);
}
