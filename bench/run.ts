// `npm run bench`: runs every suite, writes bench/results/<suite>.json, run.json (when, on what, how
// long), report.md and chart.svg. A full run takes about seven minutes on a 2-core VM (395 s idle).
// `npm run bench -- --quick` is a smoke run (smaller tables, shorter samples, about 30 s).
// `npm run bench -- --report` only remakes report.md and chart.svg from the JSON files of the last run.
//
// Every case runs in a process of its own (`--case <suite> <i>`, started here with this process's
// flags), as a switch runs in a daemon of its own: in one process the cases of a suite measured the
// heap, the address space and the JIT feedback the earlier ones left behind, and the later, larger
// tables read lower for it (nat-established-1M 5.4 Mpps in one process, 8.2 in a fresh one, the same
// build and hour; docs/performance.md). The table-size suites (l2, l3) measure each case in three
// processes, in three passes over the suite, and keep the median (Suite.processes in harness.ts):
// this VM has minutes in which one vCPU runs a third slower, and one process can fall in one.
import { existsSync, readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { l2Suite } from './l2.js';
import { l3Suite } from './l3.js';
import { policySuite } from './policy.js';
import { ioSuite } from './io.js';
import { gsoSuite } from './gso.js';
import { vxlanSuite } from './vxlan.js';
import { writeResults, quick, median, NOISY, type BenchRecord, type Suite } from './harness.js';
import { writeReport, machine, describeMachine, type RunInfo } from './report.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
const suites: Array<[string, Suite]> = [['l2', l2Suite], ['l3', l3Suite], ['policy', policySuite], ['gso', gsoSuite], ['vxlan', vxlanSuite], ['io', ioSuite]];

// Measures case i of a suite in a fresh process; its records come back through a file (its console
// lines go straight to ours).
function inChild(suite: string, i: number, dir: string): BenchRecord[] {
  const out = join(dir, `${suite}-${i}.json`);
  const argv = [...process.execArgv, fileURLToPath(import.meta.url), '--case', suite, String(i), out, ...(quick ? ['--quick'] : [])];
  const r = spawnSync(process.execPath, argv, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`bench case ${suite} #${i} failed (${r.signal ?? `exit ${r.status}`})`);
  return JSON.parse(readFileSync(out, 'utf8'));
}
const results: Record<string, BenchRecord[]> = {};

// One case's records from several processes: the one with the median figure, with every figure.
function medianRecord(recs: BenchRecord[]): BenchRecord {
  if (recs.length === 1) return recs[0];
  const figures = recs.map((r) => r.value), m = median(figures);
  return { ...recs.find((r) => r.value === m)!, processes: figures };
}

const caseAt = process.argv.indexOf('--case');
if (caseAt >= 0) {
  const [suite, i, out] = process.argv.slice(caseAt + 1);
  const found = suites.find(([name]) => name === suite);
  if (!found) throw new Error(`no suite ${suite}`);
  const got = await found[1].cases()[Number(i)]();
  writeFileSync(out, JSON.stringify(Array.isArray(got) ? got : [got]));
} else if (process.argv.includes('--report')) {
  const runFile = join(dir, 'run.json');
  if (!existsSync(runFile)) throw new Error(`no ${runFile}: run the benchmarks first`);
  const saved = JSON.parse(readFileSync(runFile, 'utf8'));
  const run: RunInfo = { ...saved, date: new Date(saved.date) };
  for (const [suite] of suites) {
    const f = join(dir, `${suite}.json`);
    if (existsSync(f)) results[suite] = JSON.parse(readFileSync(f, 'utf8'));
  }
  console.log(`wrote ${writeReport(dir, results, run)} from the run of ${saved.date}`);
} else {
  const run: RunInfo = { machine: machine(), date: new Date(), quick, load: [loadavg()[0], 0] };
  const t0 = performance.now();
  console.log(`netplane benchmarks${quick ? ' (quick)' : ''} on ${describeMachine(run.machine)}\n`);
  const tmp = mkdtempSync(join(tmpdir(), 'netplane-bench-'));
  try {
    for (const [i, [suite, { title, cases, processes }]] of suites.entries()) {
      console.log(`[${i + 1}/${suites.length}] ${suite}, ${((performance.now() - t0) / 1000).toFixed(0)} s so far\n${title}`);
      const count = cases().length, passes = quick ? 1 : (processes ?? 1);
      const runs: BenchRecord[][][] = Array.from({ length: count }, () => []);
      for (let p = 0; p < passes; p++) {
        if (passes > 1) console.log(`  (pass ${p + 1} of ${passes}: every case in a fresh process)`);
        for (let k = 0; k < count; k++) runs[k].push(inChild(suite, k, tmp));
      }
      results[suite] = runs.flatMap((byPass) => byPass[0].map((_, j) => medianRecord(byPass.map((recs) => recs[j]))));
      console.log(`wrote ${writeResults(suite, results[suite])}\n`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  run.seconds = Math.round((performance.now() - t0) / 100) / 10;
  run.load![1] = loadavg()[0];
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'run.json'), JSON.stringify(run, null, 2) + '\n');
  const noisy = Object.values(results).flat().filter((r) => (r.spread?.rme ?? 0) > NOISY);
  if (noisy.length) console.log(`warning: ${noisy.length} figure(s) with a spread above ±${NOISY} %: ${noisy.map((r) => r.name).join(', ')}`);
  console.log(`wrote ${writeReport(dir, results, run)} and chart.svg; the run took ${run.seconds.toFixed(0)} s`);
}
