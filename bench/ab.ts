// A/B of one packet-rate case between two checkouts, for a machine shared with other work, where whole
// runs move by more than a change is worth: both checkouts' setups are loaded into one process (each
// imports its own bench/ and src/, so each loads its own build/netplane.release.wasm), then timed
// rounds alternate A, B, B, A, ... and every pair gives a ratio B/A by CPU time. A neighbour that
// slows the machine for a while slows both sides of the pairs it falls on.
//
//   node --import tsx bench/ab.ts <case> [pairs] [batches per round]   (A, B: checkout directories)
//   A=/tmp/base B=. node --import tsx bench/ab.ts nat-1M 40 50
//
// A checkout needs its own build (`node scripts/build.mjs wasm`) and node_modules. Cases: l2-1k,
// l2-64k, l2-1M (bench/l2.ts), nat-1k, nat-10k, nat-100k, nat-1M (bench/l3.ts, established), nat-new
// (bench/l3.ts, SYNs through SNAT into a table of 512k, flushed outside the timed rounds; a checkout
// older than that setup can take this tree's bench/l3.ts).
// Prints each side's median Mpps (with the quartiles) and the median ratio with its quartiles.
import { resolve } from 'node:path';
import { loadavg } from 'node:os';

const [name = 'nat-10k', pairsArg, roundArg] = process.argv.slice(2);
const pairs = Number(pairsArg ?? 40);
const batches = Number(roundArg ?? 100);
const BATCH = 256;
const sizes: Record<string, number> = {
  'l2-1k': 1 << 10, 'l2-64k': 1 << 16, 'l2-1M': 1 << 20,
  'nat-1k': 1000, 'nat-10k': 10_000, 'nat-100k': 100_000, 'nat-1M': 1 << 20, 'nat-new': 1 << 19,
};
if (!(name in sizes)) throw new Error(`unknown case ${name}: one of ${Object.keys(sizes).join(', ')}`);

type Run = (() => void) & { prepare?: (k: number) => void };

async function setup(tree: string): Promise<Run> {
  const dir = resolve(tree);
  if (name.startsWith('l2-')) return (await import(`${dir}/bench/l2.ts`)).l2Setup(sizes[name]);
  if (name === 'nat-new') return (await import(`${dir}/bench/l3.ts`)).newConnectionsSetup(sizes[name]);
  return (await import(`${dir}/bench/l3.ts`)).establishedSetup(sizes[name]);
}

const a = await setup(process.env.A ?? '.');
const b = await setup(process.env.B ?? '.');
for (let i = 0; i < 1000; i++) { a(); b(); }

function round(run: Run): number {
  run.prepare?.(batches);
  const c0 = process.cpuUsage();
  for (let i = 0; i < batches; i++) run();
  const c = process.cpuUsage(c0);
  return (batches * BATCH) / ((c.user + c.system) / 1e6) / 1e6;
}

const ra: number[] = [], rb: number[] = [], ratio: number[] = [];
for (let p = 0; p < pairs; p++) {
  let x: number, y: number;
  if (p & 1) { y = round(b); x = round(a); } else { x = round(a); y = round(b); }
  ra.push(x); rb.push(y); ratio.push(y / x);
}
const q = (v: number[], f: number) => { const s = [...v].sort((m, n) => m - n); return s[Math.min(s.length - 1, Math.floor(f * s.length))]; };
const show = (v: number[]) => `${q(v, 0.5).toFixed(2)} (${q(v, 0.25).toFixed(2)}-${q(v, 0.75).toFixed(2)})`;
console.log(`${name}: A ${show(ra)} Mpps, B ${show(rb)} Mpps, B/A ${show(ratio)} over ${pairs} pairs of ${batches} batches; load ${loadavg()[0].toFixed(1)}`);
