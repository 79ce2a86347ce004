// The packet-rate cases that bench/ab.ts and bench/icount.ts run one at a time in a process of their
// own, by name, from a checkout's bench files (so two checkouts can be set side by side).
// l2-* (bench/l2.ts), nat-* (bench/l3.ts, established; nat-new: SYNs through SNAT into a table of
// 512k, flushed outside the timed rounds), vxlan-encap|decap|both-1k|100k (bench/vxlan.ts).
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BATCH = 256;

export const sizes: Record<string, number> = {
  'l2-1k': 1 << 10, 'l2-64k': 1 << 16, 'l2-1M': 1 << 20,
  'nat-1k': 1000, 'nat-10k': 10_000, 'nat-100k': 100_000, 'nat-1M': 1 << 20, 'nat-new': 1 << 19,
};
for (const kind of ['encap', 'decap', 'both']) { sizes[`vxlan-${kind}-1k`] = 1000; sizes[`vxlan-${kind}-100k`] = 100_000; }

// One batch a call; `prepare(k)` readies the next k calls outside the measurement (nat-new's flush).
export type Run = (() => void) & { prepare?: (k: number) => void };

export async function setup(tree: string, name: string): Promise<Run> {
  if (!(name in sizes)) throw new Error(`unknown case ${name}: one of ${Object.keys(sizes).join(', ')}`);
  const dir = resolve(tree);
  if (name.startsWith('l2-')) return (await import(`${dir}/bench/l2.ts`)).l2Setup(sizes[name]);
  if (name.startsWith('vxlan-')) return (await import(`${dir}/bench/vxlan.ts`)).vxlanSetup(name.split('-')[1], sizes[name]);
  if (name === 'nat-new') return (await import(`${dir}/bench/l3.ts`)).newConnectionsSetup(sizes[name]);
  return (await import(`${dir}/bench/l3.ts`)).establishedSetup(sizes[name]);
}

// For the two tools that count instructions under valgrind (bench/icount.ts, bench/icount-lines.ts):
// V8 without the heuristics that read the time or run beside the main thread, TurboFan only and fixed
// seeds (bench/icount.ts says why each), so that a run's count does not move from one process to
// the next.
export const COUNTED_V8_FLAGS = ['--single-threaded', '--predictable', '--no-liftoff', '--hash-seed=1', '--random-seed=1'];

// Node's arguments after the flags for this checkout's bench/icount.ts child running case `name` of
// checkout `tree` (an older checkout need not have the child).
export function countedChild(tree: string, name: string): string[] {
  return [...process.execArgv, fileURLToPath(new URL('./icount.ts', import.meta.url)), '--child', tree, name];
}

// The case once without valgrind, before it is counted: the first process to load a checkout's
// TypeScript compiles it (tsx keeps the result for the next), and it did that in one of the two
// counted processes (a fresh checkout read 2071 against 1592 for the same code).
export function warm(tree: string, name: string): void {
  const r = spawnSync(process.execPath, [...countedChild(tree, name), '0'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name} (${tree}) failed: ${r.stderr.split('\n').slice(-8).join('\n')}`);
}
