// `npm run bench`: runs every suite and writes bench/results/<suite>.json. `-- --quick` for a smoke run.
import { l2Suite } from './l2.js';
import { writeResults } from './harness.js';

const file = writeResults('l2', l2Suite());
console.log(`wrote ${file}`);
