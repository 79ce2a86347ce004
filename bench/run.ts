// `npm run bench`: runs every suite, writes bench/results/<suite>.json, report.md and chart.svg.
// `npm run bench -- --quick` is a smoke run (smaller tables, shorter samples).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { l2Suite } from './l2.js';
import { l3Suite } from './l3.js';
import { policySuite } from './policy.js';
import { ioSuite } from './io.js';
import { writeResults, quick, type BenchRecord } from './harness.js';
import { writeReport, machine } from './report.js';

const suites: Array<[string, () => BenchRecord[] | Promise<BenchRecord[]>]> = [['l2', l2Suite], ['l3', l3Suite], ['policy', policySuite], ['io', ioSuite]];
const results: Record<string, BenchRecord[]> = {};
const t0 = performance.now();
console.log(`netplane benchmarks${quick ? ' (quick)' : ''} on ${machine()}\n`);
for (const [i, [suite, run]] of suites.entries()) {
  console.log(`[${i + 1}/${suites.length}] ${suite}, ${((performance.now() - t0) / 1000).toFixed(0)} s so far`);
  results[suite] = await run();
  console.log(`wrote ${writeResults(suite, results[suite])}\n`);
}
console.log(`wrote ${writeReport(join(dirname(fileURLToPath(import.meta.url)), 'results'), results, quick)} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
