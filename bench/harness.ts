// Shared benchmark plumbing: runs a function under benchmark.js until its timing is stable and turns
// its rate into packets per second, keeping the spread it measured (benchmark.js's relative margin of
// error and the slowest and fastest sample) so that the report can draw error bars and say which
// figures are too noisy to trust; and writes a suite's records to bench/results/<suite>.json.
import Benchmark from 'benchmark';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// What a figure counts. A record carries exactly one, so a memory figure can never be read as a
// packet rate: 'Mpps' (millions of packets per second through a packet path), 'Mconn/s' (millions of
// new connections per second), 'bytes/conn' (memory per tracked connection).
export type Unit = 'Mpps' | 'Mconn/s' | 'bytes/conn';

// The spread of a timed figure, in the figure's own unit. `rme` is the relative margin of error of
// the mean at 95 % confidence (benchmark.js's "±x %": Student's t over the samples' standard error),
// computed the same way for cases timed in rounds; `min` and `max` are the slowest and fastest
// sample; `of` says whether the figure is the samples' mean or the best round.
export interface Spread {
  rme: number;
  min: number;
  max: number;
  samples: number;
  of: 'mean' | 'best';
}

export interface BenchRecord {
  name: string;
  unit: Unit;
  value: number;
  // The table size the case ran at (MACs, connections, rules, backends), and what it counts.
  entries: number;
  entriesOf: string;
  spread?: Spread;
  // The figure of each process the case was measured in, when more than one (run.ts).
  processes?: number[];
  [extra: string]: unknown;
}

export const quick = process.argv.includes('--quick');

// A suite: the line that introduces it and its cases. run.ts measures every case in a process of its
// own, so no case runs in a heap, an address space or JIT feedback that an earlier case left behind
// (two setups in one process favoured the one loaded second by 5-20 % at 1M entries; bench/ab.ts).
export type Case = () => BenchRecord | BenchRecord[] | Promise<BenchRecord | BenchRecord[]>;
// `processes`: how many fresh processes each case is measured in (a full run; a quick run takes one).
// The cases take turns, one process each per pass, so a minute in which this VM runs slow falls on
// different cases in different passes; each case's figure is then the median of its processes' figures,
// and the record keeps all of them (`processes`).
export interface Suite { title: string; processes?: number; cases(): Case[] }

export interface Measurement { mpps: number; spread: Spread }

// Runs fn (which moves `packetsPerCall` packets) and returns millions of packets per second, with
// its spread.
export function measure(name: string, packetsPerCall: number, fn: () => void): Measurement {
  const b = new Benchmark(name, fn, { minSamples: quick ? 5 : 20, maxTime: quick ? 1 : 4, initCount: 1 });
  b.run();
  if (b.error) throw b.error;
  const mpps = (b.hz * packetsPerCall) / 1e6;
  // Each sample is the mean time of one call over one benchmark.js cycle, in seconds.
  const rates = b.stats.sample.map((s) => packetsPerCall / s / 1e6);
  const spread: Spread = { rme: b.stats.rme, min: Math.min(...rates), max: Math.max(...rates), samples: rates.length, of: 'mean' };
  console.log(`  ${name.padEnd(44)} ${mpps.toFixed(2).padStart(7)} Mpps  ±${spread.rme.toFixed(1)}%  (${spread.samples} samples, ${spread.min.toFixed(2)}–${spread.max.toFixed(2)})${spread.rme > NOISY ? '  NOISY' : ''}`);
  return { mpps, spread };
}

// A figure whose margin of error is above this (in %) is flagged in the console and the report.
export const NOISY = 20;

// Student's t, two-tailed 95 %, by degrees of freedom (the table benchmark.js uses).
const T95 = [NaN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

// The spread of a case timed in rounds (each round moving `perRound` items in `ms[i]` milliseconds)
// whose figure is the best round, in millions per second. With a single round the margin is unknown
// and reported as 0.
export function roundsSpread(perRound: number, ms: number[]): Spread {
  const rates = ms.map((t) => perRound / (t / 1000) / 1e6);
  const n = ms.length, mean = ms.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(ms.reduce((a, t) => a + (t - mean) ** 2, 0) / (n - 1)) : 0;
  const rme = n > 1 ? ((T95[n - 1] ?? 1.96) * sd / Math.sqrt(n) / mean) * 100 : 0;
  return { rme, min: Math.min(...rates), max: Math.max(...rates), samples: n, of: 'best' };
}

// Rounds a figure and its spread to two decimals (three significant digits below 1) for the JSON files.
export function record(name: string, unit: Unit, value: number, entries: number, entriesOf: string, spread?: Spread, extra: Record<string, unknown> = {}): BenchRecord {
  const r2 = (v: number) => (Math.abs(v) >= 1 ? Math.round(v * 100) / 100 : Number(v.toPrecision(3)));
  return { name, unit, value: r2(value), entries, entriesOf, ...(spread ? { spread: { ...spread, rme: r2(spread.rme), min: r2(spread.min), max: r2(spread.max) } } : {}), ...extra };
}

export function writeResults(suite: string, records: readonly object[]): string {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${suite}.json`);
  writeFileSync(file, JSON.stringify(records, null, 2) + '\n');
  return file;
}

// The median of a list (the upper of the two middle values when the count is even).
export function median(v: readonly number[]): number { const s = [...v].sort((a, b) => a - b); return s[s.length >> 1]; }

// The tables' hash seed in the benchmarks (DataplaneOptions.hashSeed; a switch otherwise takes 64 random
// bits): fixed, as the traffic is, so that every run puts the same keys in the same slots and
// bench:icount's counts repeat to the instruction. Any seed gives the same probe lengths on average.
export const HASH_SEED = 0x6e6574706c616e65n;

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
