// A/B of one packet-rate case between two checkouts, for a machine shared with other work, where whole
// runs move by more than a change is worth. Each measurement is a process of its own with one setup
// (two setups in one process favour the one loaded second by 5-20 % at 1M entries), A and B alternate
// A, B, B, A, ..., and every pair gives a ratio B/A by CPU time: a neighbour that slows the machine for
// a while slows both sides of the pairs it falls on. CPU=n pins every process to that CPU with taskset
// (this VM's two vCPUs differ by up to 1.5x at l2-1M; docs/performance.md).
//
//   node --import tsx bench/ab.ts <case> [pairs] [seconds per process]   (A, B: checkout directories)
//   A=/tmp/base B=. CPU=1 node --import tsx bench/ab.ts nat-1M 7 3
//
// A checkout needs its own build (`node scripts/build.mjs wasm`) and node_modules; its bench/ must
// export the setup the case names (a checkout older than a setup can take this tree's bench file).
// Cases: bench/cases.ts. Where the machine's speed moves too much for a time A/B, bench/icount.ts
// counts the instructions a packet takes instead.
// Prints each side's median Mpps with its range and the median ratio with its range. bench/goals.ts
// runs the same pairs (abPairs) for issue 14's per-packet targets inside `npm run bench:e2e`.
import { loadavg } from 'node:os';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './harness.js';
import { BATCH, sizes, setup } from './cases.js';

const ROUND = 100;  // batches a timed round

// The child: one setup, warmed up, then timed rounds for `seconds`; prints the median Mpps.
async function child(tree: string, name: string, seconds: number): Promise<void> {
  const run = await setup(tree, name);
  for (let i = 0; i < 2000; i++) run();
  const rounds: number[] = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end || rounds.length < 5) {
    run.prepare?.(ROUND);
    const c0 = process.cpuUsage();
    for (let i = 0; i < ROUND; i++) run();
    const c = process.cpuUsage(c0);
    rounds.push((ROUND * BATCH) / ((c.user + c.system) / 1e6) / 1e6);
  }
  console.log(JSON.stringify({ mpps: median(rounds) }));
}

export interface Pairs { a: number[]; b: number[]; ratio: number[] }

// `pairs` pairs of processes, A and B taking turns (A B, B A, ...), each measuring `name` for
// `seconds` of CPU time; CPU pins them with taskset.
export function abPairs(a: string, b: string, name: string, pairs: number, seconds: number, cpu?: string): Pairs {
  if (!(name in sizes)) throw new Error(`unknown case ${name}: one of ${Object.keys(sizes).join(', ')}`);
  const measure = (tree: string): number => {
    const argv = [...process.execArgv, fileURLToPath(import.meta.url), '--child', tree, name, String(seconds)];
    const out = cpu !== undefined
      ? execFileSync('taskset', ['-c', cpu, process.execPath, ...argv], { encoding: 'utf8' })
      : execFileSync(process.execPath, argv, { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!).mpps;
  };
  const r: Pairs = { a: [], b: [], ratio: [] };
  for (let p = 0; p < pairs; p++) {
    let x: number, y: number;
    if (p & 1) { y = measure(b); x = measure(a); } else { x = measure(a); y = measure(b); }
    r.a.push(x); r.b.push(y); r.ratio.push(y / x);
  }
  return r;
}

export const showRange = (v: number[]): string => `${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`;

const main = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (main && process.argv[2] === '--child') {
  await child(process.argv[3], process.argv[4], Number(process.argv[5]));
} else if (main) {
  const [name = 'nat-10k', pairsArg, secondsArg] = process.argv.slice(2);
  const pairs = Number(pairsArg ?? 7);   // odd: the median is one of the pairs
  const seconds = Number(secondsArg ?? 3);
  const cpu = process.env.CPU;
  const r = abPairs(process.env.A ?? '.', process.env.B ?? '.', name, pairs, seconds, cpu);
  console.log(`${name}: A ${showRange(r.a)} Mpps, B ${showRange(r.b)} Mpps, B/A ${showRange(r.ratio)} over ${pairs} pairs of processes, ${seconds} s each${cpu !== undefined ? ` on CPU ${cpu}` : ''}; load ${loadavg()[0].toFixed(1)}`);
}
