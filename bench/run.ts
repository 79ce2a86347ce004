// `npm run bench`: runs every suite, writes bench/results/<suite>.json, run.json (when, on what, how
// long), report.md and chart.svg. A full run takes about two minutes on a 2-core VM (109 s idle).
// `npm run bench -- --quick` is a smoke run (smaller tables, shorter samples, about 30 s).
// `npm run bench -- --report` only remakes report.md and chart.svg from the JSON files of the last run.
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { l2Suite } from './l2.js';
import { l3Suite } from './l3.js';
import { policySuite } from './policy.js';
import { ioSuite } from './io.js';
import { gsoSuite } from './gso.js';
import { vxlanSuite } from './vxlan.js';
import { writeResults, quick, NOISY, type BenchRecord } from './harness.js';
import { writeReport, machine, describeMachine, type RunInfo } from './report.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
const suites: Array<[string, () => BenchRecord[] | Promise<BenchRecord[]>]> = [['l2', l2Suite], ['l3', l3Suite], ['policy', policySuite], ['gso', gsoSuite], ['vxlan', vxlanSuite], ['io', ioSuite]];
const results: Record<string, BenchRecord[]> = {};

if (process.argv.includes('--report')) {
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
  for (const [i, [suite, go]] of suites.entries()) {
    console.log(`[${i + 1}/${suites.length}] ${suite}, ${((performance.now() - t0) / 1000).toFixed(0)} s so far`);
    results[suite] = await go();
    console.log(`wrote ${writeResults(suite, results[suite])}\n`);
  }
  run.seconds = Math.round((performance.now() - t0) / 100) / 10;
  run.load![1] = loadavg()[0];
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'run.json'), JSON.stringify(run, null, 2) + '\n');
  const noisy = Object.values(results).flat().filter((r) => (r.spread?.rme ?? 0) > NOISY);
  if (noisy.length) console.log(`warning: ${noisy.length} figure(s) with a spread above ±${NOISY} %: ${noisy.map((r) => r.name).join(', ')}`);
  console.log(`wrote ${writeReport(dir, results, run)} and chart.svg; the run took ${run.seconds.toFixed(0)} s`);
}
