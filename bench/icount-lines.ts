// Where a case's instructions go, by AssemblyScript source line: bench/icount.ts counts how many a
// packet takes, this says which lines take them. It is how the counts of 2026-12-01 were taken apart
// (docs/performance.md, "fewer instructions a packet").
//
// Method: the case (bench/cases.ts) runs under callgrind with per-instruction counts, V8 printing
// the TurboFan code of every WebAssembly function (--print-wasm-code: each instruction's address and,
// for each memory access, its byte offset in the function's body, the "source positions"). The
// release build is compiled once more with `asc --sourceMap` into a temporary directory; that module
// is the checkout's own byte for byte but for the source map's URL at its end (checked), and its map
// turns a body offset into a source line. Each instruction is charged to the line of the last memory
// access before it in its function, so lines are approximate where arithmetic follows a load, and
// files and functions are exact.
//
//   node --import tsx bench/icount-lines.ts <case> [batches=2000] [lines=40]
//   ICOUNT_SHOW=mac.ts:70,bytes.ts:9 node --import tsx bench/icount-lines.ts ...   (and those lines' code)
// It also lists the compares V8 turned into a 0/1 value that it then tests (set<cc>, movzx, test),
// by line: a `&&` or `||` that became an if yielding a value, which nested ifs avoid.
//
// Counts are per packet of the counted batches: callgrind starts counting once the case is set up
// (callgrind_control). Needs valgrind. A few minutes a case.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BATCH, COUNTED_V8_FLAGS, countedChild, sizes, warm } from './cases.js';

const [name, batchesArg, linesArg] = process.argv.slice(2);
if (!name || !(name in sizes) || name === 'nat-new') throw new Error(`usage: icount-lines.ts <case> [batches] [lines]; cases: ${Object.keys(sizes).filter((k) => k !== 'nat-new').join(', ')}`);
const batches = Number(batchesArg ?? 2000), top = Number(linesArg ?? 40);
const tree = resolve('.');
const tmp = mkdtempSync(join(tmpdir(), 'netplane-lines-'));
try {
  // 1. The source map, from a module that is the build's own.
  execFileSync(process.execPath, [join(tree, 'node_modules/assemblyscript/bin/asc.js'), 'assembly/index.ts', '--target', 'release',
    '--sourceMap', '-o', join(tmp, 'm.wasm')], { cwd: tree, stdio: 'inherit' });
  const built = readFileSync(join(tree, 'build/netplane.release.wasm'));
  const mapped = readFileSync(join(tmp, 'm.wasm'));
  if (mapped.length < built.length || !mapped.subarray(0, built.length).equals(built)) {
    throw new Error('build/netplane.release.wasm is not the module asc makes from this checkout: run `node scripts/build.mjs wasm` first');
  }
  const map = JSON.parse(readFileSync(join(tmp, 'm.wasm.map'), 'utf8')) as { sources: string[]; mappings: string };

  // 2. The run: the case's setup once without valgrind (tsx compiles the checkout), then under callgrind.
  warm(tree, name);
  const child = countedChild(tree, name);
  // Callgrind counts nothing until the case is set up (the child says so and waits), then the batches.
  const out = join(tmp, 'cg.out');
  // V8's listing goes to a file: through a pipe the last functions compiled came cut short.
  const listingFd = openSync(join(tmp, 'listing.txt'), 'w');
  const vg = spawn('valgrind', ['--tool=callgrind', '--dump-instr=yes', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath,
    ...COUNTED_V8_FLAGS, '--print-wasm-code', ...child, String(batches)],
  { env: { ...process.env, ICOUNT_WAIT: '1' }, stdio: ['pipe', listingFd, 'pipe'] });
  let errors = '';
  vg.stderr!.setEncoding('utf8').on('data', (d: string) => {
    errors += d;
    if (d.includes('icount: ready')) {
      execFileSync('callgrind_control', ['--instr=on', String(vg.pid)], { stdio: 'ignore' });
      vg.stdin!.end('go\n');
    }
  });
  const status = await new Promise<number | null>((done) => vg.on('close', (code, signal) => done(code ?? (signal ? -1 : null))));
  if (status !== 0) throw new Error(`valgrind failed: ${errors.split('\n').slice(-8).join('\n')}`);
  closeSync(listingFd);
  const run = { stdout: readFileSync(join(tmp, 'listing.txt'), 'utf8') };

  // 3. V8's listing: each function's instructions (address, offset in its code) and source positions.
  type Fn = { index: number; addrs: number[]; offsets: number[]; text: string[]; positions: [number, number][] };
  const fns: Fn[] = [];
  let fn: Fn | null = null, mode = 0;
  for (const l of run.stdout.split('\n')) {
    const n = /^name: wasm-function\[(\d+)\]/.exec(l);
    if (n) { fn = { index: Number(n[1]), addrs: [], offsets: [], text: [], positions: [] }; fns.push(fn); mode = 0; continue; }
    if (!fn) continue;
    if (l.startsWith('Instructions')) { mode = 1; continue; }
    if (l.startsWith('Source positions')) { mode = 2; continue; }
    if (l.startsWith('Safepoints') || l.startsWith('RelocInfo') || l.startsWith('--- End code')) { mode = 0; continue; }
    if (mode === 1) {
      const m = /^0x([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(.*)$/.exec(l);
      if (m) { fn.addrs.push(parseInt(m[1], 16)); fn.offsets.push(parseInt(m[2], 16)); fn.text.push(m[3]); }
    } else if (mode === 2) {
      const m = /^\s+([0-9a-f]+)\s+(\d+)/.exec(l);
      if (m) fn.positions.push([parseInt(m[1], 16), Number(m[2])]);
    }
  }

  // 4. Callgrind's counts by instruction address (self cost; a call's inclusive line is skipped).
  const cost = new Map<number, number>();
  let last = 0, inCall = false;
  for (const l of readFileSync(out, 'utf8').split('\n')) {
    if (l.startsWith('calls=')) { inCall = true; continue; }
    const m = /^(0x[0-9a-f]+|\+\d+|-\d+|\*)\s+\S+\s+(\d+)/.exec(l);
    if (!m) continue;
    const a = m[1] === '*' ? last : m[1].startsWith('0x') ? parseInt(m[1], 16) : last + Number(m[1]);
    last = a;
    if (inCall) { inCall = false; continue; }
    cost.set(a, (cost.get(a) ?? 0) + Number(m[2]));
  }

  // 5. Each function body's offset in the module (imports count in the function index space).
  const bodies = new Map<number, number>();
  {
    const b = built;
    let p = 8, imports = 0;
    const leb = (): number => { let r = 0, s = 0, x: number; do { x = b[p++]; r += (x & 0x7f) * 2 ** s; s += 7; } while (x & 0x80); return r; };
    while (p < b.length) {
      const id = b[p++]; const size = leb(); const end = p + size;
      if (id === 2) {
        for (let n = leb(); n > 0; n--) {
          p += leb(); p += leb();
          const kind = b[p++];
          if (kind === 0) { leb(); imports++; } else if (kind === 1) { p++; const f = leb(); leb(); if (f & 1) leb(); } else if (kind === 2) { const f = leb(); leb(); if (f & 1) leb(); } else { p += 2; }
        }
      } else if (id === 10) {
        for (let n = leb(), k = 0; k < n; k++) { const sz = leb(); bodies.set(imports + k, p); p += sz; }
      }
      p = end;
    }
  }

  // 6. The source map's first line: generated column = module offset.
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const cols: number[] = [], where: string[] = [];
  {
    let col = 0, src = 0, line = 0;
    for (const seg of map.mappings.split(';')[0].split(',')) {
      if (!seg) continue;
      const f: number[] = [];
      let v = 0, sh = 0;
      for (const c of seg) {
        const d = B64.indexOf(c);
        v += (d & 31) << sh;
        if (d & 32) sh += 5; else { f.push(v & 1 ? -(v >>> 1) : v >>> 1); v = 0; sh = 0; }
      }
      col += f[0];
      if (f.length >= 4) { src += f[1]; line += f[2]; cols.push(col); where.push(`${map.sources[src].replace('~lib/', 'lib/')}:${line + 1}`); }
    }
  }
  const below = (xs: number[], x: number): number => { let lo = 0, hi = xs.length - 1, r = -1; while (lo <= hi) { const m = (lo + hi) >> 1; if (xs[m] <= x) { r = m; lo = m + 1; } else hi = m - 1; } return r; };

  // 7. Charge and print.
  const packets = batches * BATCH;
  const perFn: [number, number][] = [];
  const byLine = new Map<string, number>(), byFile = new Map<string, number>();
  // ICOUNT_SHOW=file:line[,file:line]: those lines' instructions, each with its count a packet.
  const showLines = (process.env.ICOUNT_SHOW ?? '').split(',').filter(Boolean), shown: string[] = [];
  // Compares V8 made into a 0/1 value (set<cc>; then a movzx, and mostly a test: three instructions a
  // branch could have saved), by line: where a `&&` or `||` condition became an if that yields a value.
  const materialized = new Map<string, number>();
  for (const f of fns) {
    let total = 0;
    const body = bodies.get(f.index);
    const pcs = f.positions.map((q) => q[0]).sort((x, y) => x - y);
    const pos = [...f.positions].sort((x, y) => x[0] - y[0]);
    for (let i = 0; i < f.addrs.length; i++) {
      const c = cost.get(f.addrs[i]);
      if (!c) continue;
      total += c;
      const k = below(pcs, f.offsets[i]);
      const j = k >= 0 && body !== undefined ? below(cols, body + pos[k][1]) : -1;
      const at = j >= 0 ? where[j] : `wasm-function[${f.index}]`;
      if (showLines.some((w) => at.endsWith(w))) shown.push(`${(c / packets).toFixed(2).padStart(7)}  ${at.padEnd(32)} ${f.text[i]}`);
      if (/^set[a-z]+ /.test(f.text[i])) materialized.set(at, (materialized.get(at) ?? 0) + c);
      byLine.set(at, (byLine.get(at) ?? 0) + c);
      const file = at.split(':')[0];
      byFile.set(file, (byFile.get(file) ?? 0) + c);
    }
    if (total) perFn.push([f.index, total]);
  }
  const show = (title: string, m: Iterable<[string | number, number]>, n: number) => {
    console.log(title);
    for (const [k, v] of [...m].sort((x, y) => y[1] - x[1]).slice(0, n)) console.log(`  ${(v / packets).toFixed(1).padStart(8)}  ${k}`);
  };
  console.log(`${name}: instructions a packet of ${batches} batches of ${BATCH}, WebAssembly code only`);
  show('by function (wasm-function index)', perFn.map(([i, v]) => [`wasm-function[${i}]`, v] as [string, number]), 10);
  show('by file', byFile, 20);
  show('by line', byLine, top);
  const tested = [...materialized.values()].reduce((a, b) => a + b, 0);
  show(`compares made a value (set<cc>): ${(tested / packets).toFixed(1)} a packet, by line`, materialized, 30);
  if (shown.length) console.log(`the instructions of ${showLines.join(', ')}, in code order\n${shown.join('\n')}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
