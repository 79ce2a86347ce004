// The packet-rate cases that bench/ab.ts and bench/icount.ts run one at a time in a process of their
// own, by name, from a checkout's bench files (so two checkouts can be set side by side).
// l2-* (bench/l2.ts), nat-* (bench/l3.ts, established; nat-new: SYNs through SNAT into a table of
// 512k, flushed outside the timed rounds), vxlan-encap|decap|both-1k|100k (bench/vxlan.ts).
import { resolve } from 'node:path';

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
