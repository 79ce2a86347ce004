#!/usr/bin/env node
// The `netplane` command: the bundled CLI in build/dist (built by `npm install` / `npm run build`).
import { main } from '../build/dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code ?? 0),
  (err) => {
    console.error(`netplane: ${err && err.message ? err.message : err}`);
    process.exit(1);
  },
);
