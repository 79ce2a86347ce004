// Issue 14's per-packet targets, measured inside `npm run bench:e2e` (or alone: `-- --per-packet`).
//
// The issue set them as Mpps on the machine of the day it was written: L2 with 1M MACs 15 Mpps (14.7
// that day), established NAT with 10k connections 15 (14.2) and with 1M 6 (4.4). As absolute figures
// they hold only on a machine as fast as that one; this project's VMs have read the same build from
// 8 to 33 Mpps at l2-1k on different days. What the targets ask is machine-independent: today's code
// faster than that day's code by target / that day's figure (15 / 14.7 = 1.021 for L2 at 1M MACs).
// So the run checks out that day's code (BASE, the last commit before the issue's work), builds it,
// and measures both trees on this machine in the same minutes: A/B pairs of fresh processes, A and B
// taking turns, pinned to one CPU (bench/ab.ts says why each). The median of the pairs' ratios (an
// odd number of pairs, so that it is one of them) is the figure, their range the spread; it also
// prints what the ratio makes of that day's figure. That the ratio carries over to that day's
// machine is an assumption docs/performance.md discusses: an instruction cut does, a gain from
// hiding memory latency may carry over less.
//
// Needs a git clone with history (the npm package has none): without BASE the section says so and
// is skipped. The checkout is a detached worktree in a temporary directory, removed afterwards.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, existsSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './harness.js';
import { abPairs, showRange } from './ab.js';

export const BASE = 'c4b9e4379aeb93a1cc647b77aaf5d7afbc8251c5';

export const TARGETS = [
  { name: 'l2-1M', what: 'L2 learn + forward, 1M MACs', then: 14.7, target: 15 },
  { name: 'nat-10k', what: 'NAT established, 10k connections', then: 14.2, target: 15 },
  { name: 'nat-1M', what: 'NAT established, 1M connections', then: 4.4, target: 6 },
] as const;

export interface PerPacketGoal {
  name: string; what: string;
  ratio: number; spread: { min: number; max: number };
  need: number;          // target / that day's figure, rounded up to 3 places
  baseMpps: number[]; mpps: number[];
  then: number; target: number;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const git = (...args: string[]) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

// Why the section cannot run here, or undefined.
export function perPacketMissing(): string | undefined {
  try { git('cat-file', '-e', `${BASE}^{commit}`); } catch { return `needs a git clone with the issue's base commit ${BASE.slice(0, 7)} in its history`; }
  if (!existsSync(join(root, 'node_modules', 'assemblyscript'))) return 'needs node_modules (npm ci)';
  return undefined;
}

// The CPU every process is pinned to: CPU, or the last of several when taskset is there.
function pinTo(): string | undefined {
  if (process.env.CPU !== undefined) return process.env.CPU;
  if (cpus().length < 2) return undefined;
  try { execFileSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }); } catch { return undefined; }
  return String(cpus().length - 1);
}

export function perPacketGoals(log: (line: string) => void, pairs = 7, seconds = 3): PerPacketGoal[] {
  const tree = mkdtempSync(join(tmpdir(), 'netplane-base-'));   // empty: git checks out into it
  git('worktree', 'add', '--detach', tree, BASE);
  try {
    symlinkSync(join(root, 'node_modules'), join(tree, 'node_modules'));
    execFileSync(process.execPath, ['scripts/build.mjs', 'wasm', '--quiet'], { cwd: tree, stdio: 'inherit' });
    const cpu = pinTo();
    log(`  A: ${BASE.slice(0, 7)} (the issue's base), B: this tree; ${pairs} pairs of processes per case, ${seconds} s each${cpu !== undefined ? `, pinned to CPU ${cpu}` : ''}`);
    const goals: PerPacketGoal[] = [];
    for (const t of TARGETS) {
      const r = abPairs(tree, root, t.name, pairs, seconds, cpu);
      const g: PerPacketGoal = {
        name: t.name, what: t.what, ratio: median(r.ratio), spread: { min: Math.min(...r.ratio), max: Math.max(...r.ratio) },
        need: Math.ceil((t.target / t.then) * 1000) / 1000, baseMpps: r.a, mpps: r.b, then: t.then, target: t.target,
      };
      goals.push(g);
      log(`  ${t.what.padEnd(34)} A ${median(r.a).toFixed(2)} Mpps, B ${median(r.b).toFixed(2)} Mpps here; B/A ${showRange(r.ratio)}, needs ${g.need} (${t.target} / ${t.then}); that day's ${t.then} Mpps x ${g.ratio.toFixed(2)} = ${(t.then * g.ratio).toFixed(1)}`);
    }
    return goals;
  } finally {
    try { git('worktree', 'remove', '--force', tree); } catch { rmSync(tree, { recursive: true, force: true }); git('worktree', 'prune'); }
  }
}
