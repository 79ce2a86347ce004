// `npm run bench`: runs every suite and writes bench/results/<suite>.json. `-- --quick` for a smoke run.
import { l2Suite } from './l2.js';
import { l3Suite } from './l3.js';
import { policySuite } from './policy.js';
import { ioSuite } from './io.js';
import { writeResults } from './harness.js';

for (const [suite, run] of [['l2', l2Suite], ['l3', l3Suite], ['policy', policySuite]] as const) {
  const file = writeResults(suite, run());
  console.log(`wrote ${file}\n`);
}
console.log(`wrote ${writeResults('io', await ioSuite())}`);
