// Instructions a packet takes, counted by valgrind: the cost of a packet-rate case in a measure that
// does not move with the machine. This 2-vCPU VM's speed moves by 2-3x from one hour to the next and
// by ±30 % between two processes of the same build a minute apart (docs/performance.md), so a change
// worth 5 % cannot be told from noise by time, not even by bench/ab.ts's alternated pairs; its vCPUs
// expose no performance counters (`perf stat` says "not supported"). Valgrind's cachegrind without
// its cache simulation counts every instruction the process executes, JIT-compiled WebAssembly
// included.
//
// Method: the case (bench/cases.ts) runs in two processes under valgrind, the same setup in each, then
// N1 batches in one and N2 in the other; the difference of their instruction totals over
// (N2 - N1) x 256 packets is the instructions a packet takes, the harness's copies of the frames into
// the rx buffer and its one call a batch included (as in `npm run bench`). V8 runs with
// --single-threaded (no compiler or GC threads whose work would land in one run and not the other),
// --predictable (none of its heuristics that read the time: nat-10k moved by 1.5 % without it),
// --no-liftoff (every function compiled by TurboFan from the start: what the hot loop runs after
// tier-up anyway, without a tier-up that depends on timing) and fixed hash and random seeds, and the
// clock the cases read is a virtual one (below). The setup still varies by a few million
// instructions from one process to the next, so the default counts 8000 batches (2 M packets): the
// figure is good to about 3 instructions a packet.
//
// What it does not show: cache misses and their overlap, the cost of the 1M-entry cases beyond their
// instructions. Those still need the clock (`npm run bench`, bench/ab.ts).
//
//   node --import tsx bench/icount.ts [case ...]        (default: l2-1k l2-1M nat-10k nat-1M)
//   A=<checkout> B=. node --import tsx bench/icount.ts nat-10k    (both, and B - A)
//   ICOUNT_BATCHES=400,8400 (N1,N2)
//
// Needs valgrind (scripts/install-bench-deps.sh installs it). A few minutes a case and checkout.
import { execFileSync, spawnSync } from 'node:child_process';
import { BATCH, COUNTED_V8_FLAGS, countedChild, sizes, setup, warm } from './cases.js';

if (process.argv[2] === '--child') {
  // The cases take `now` from performance.now() once a batch. Under valgrind a batch takes a
  // millisecond or more, so a long run could cross timeouts that a timed run never reaches (the next
  // hop's MAC entry ages out after 300 s, and its packets are flooded from then on): each call here
  // is 20 us of virtual time instead, about a batch at full speed, the same in every run.
  let virtual = 0;
  performance.now = () => (virtual += 0.02);
  const run = await setup(process.argv[3], process.argv[4]);
  if (run.prepare) throw new Error(`${process.argv[4]} prepares its batches outside the measurement: not counted here`);
  const n = Number(process.argv[5]);
  if (process.env.ICOUNT_WAIT) {
    // For bench/icount-lines.ts: says it is set up, then waits for a line on stdin (callgrind counts from then on).
    await new Promise<void>((go) => { process.stdin.once('data', () => go()); process.stderr.write('icount: ready\n'); });
    process.stdin.destroy();
  }
  for (let i = 0; i < n; i++) run();
} else {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('bench/icount.ts needs valgrind: apt-get install valgrind (scripts/install-bench-deps.sh)');
    process.exit(1);
  }
  const cases = process.argv.slice(2).length ? process.argv.slice(2) : ['l2-1k', 'l2-1M', 'nat-10k', 'nat-1M'];
  for (const c of cases) if (!(c in sizes) || c === 'nat-new') throw new Error(`unknown case ${c}: one of ${Object.keys(sizes).filter((k) => k !== 'nat-new').join(', ')}`);
  const [n1, n2] = (process.env.ICOUNT_BATCHES ?? '400,8400').split(',').map(Number);
  if (!(n2 > n1 && n1 >= 0)) throw new Error('ICOUNT_BATCHES: N1,N2 with N2 > N1 >= 0');
  const trees = process.env.A ? [process.env.A, process.env.B ?? '.'] : [process.env.B ?? '.'];

  // The instructions of one process: the case set up, then n batches.
  const total = (tree: string, name: string, n: number): number => {
    const r = spawnSync('valgrind', ['--tool=cachegrind', '--cache-sim=no', '--cachegrind-out-file=/dev/null',
      process.execPath, ...COUNTED_V8_FLAGS, ...countedChild(tree, name), String(n)],
    { encoding: 'utf8', maxBuffer: 1 << 26 });
    const m = /I\s+refs:\s+([\d,]+)/.exec(r.stderr);
    if (r.status !== 0 || !m) throw new Error(`valgrind ${name} (${tree}, ${n} batches) failed: ${r.stderr.split('\n').slice(-8).join('\n')}`);
    return Number(m[1].replace(/,/g, ''));
  };

  console.log(`instructions a packet (valgrind, ${n2 - n1} batches of ${BATCH} counted)`);
  for (const name of cases) {
    const per = trees.map((tree) => {
      warm(tree, name);
      return (total(tree, name, n2) - total(tree, name, n1)) / ((n2 - n1) * BATCH);
    });
    const line = trees.length === 2
      ? `A ${per[0].toFixed(0)}, B ${per[1].toFixed(0)}, B - A ${(per[1] - per[0]).toFixed(0)} (B/A ${(per[1] / per[0]).toFixed(3)})`
      : per[0].toFixed(0);
    console.log(`  ${name.padEnd(10)} ${line}`);
  }
}
