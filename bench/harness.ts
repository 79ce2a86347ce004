// Shared benchmark plumbing: runs a function under benchmark.js until its timing is stable and turns
// its rate into packets per second, and writes a suite's records to bench/results/<suite>.json.
import Benchmark from 'benchmark';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchRecord {
  name: string;
  mpps: number;
  entries: number;
  [extra: string]: unknown;
}

export const quick = process.argv.includes('--quick');

// Runs fn (which moves `packetsPerCall` packets) and returns millions of packets per second.
export function measure(name: string, packetsPerCall: number, fn: () => void): number {
  const b = new Benchmark(name, fn, { minSamples: quick ? 5 : 20, maxTime: quick ? 1 : 4, initCount: 1 });
  b.run();
  if (b.error) throw b.error;
  const mpps = (b.hz * packetsPerCall) / 1e6;
  const rme = b.stats.rme.toFixed(1);
  console.log(`  ${name.padEnd(44)} ${mpps.toFixed(2).padStart(7)} Mpps  ±${rme}%  (${b.stats.sample.length} samples)`);
  return mpps;
}

export function writeResults(suite: string, records: BenchRecord[]): string {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${suite}.json`);
  writeFileSync(file, JSON.stringify(records, null, 2) + '\n');
  return file;
}

// A small deterministic PRNG (xorshift32) so every run builds the same traffic.
export function rng(seed = 0x2545f491): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
}
