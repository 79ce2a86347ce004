#!/usr/bin/env node
// `npm start`: build what changed (silently when nothing did), then run `netplane serve` in this very
// process. The script is `exec node scripts/start.mjs`: npm runs scripts through `sh -c`, and
// Debian's dash does not exec a lone command, so without the `exec` a SIGTERM to npm would reach
// the shell only and leave the daemon orphaned. With it, and with no second node process, the
// SIGINT or SIGTERM npm passes on reaches the daemon, which closes its listeners and exits.
// Arguments after `npm start --` go to `netplane serve` (`npm start -- --port 7080`).
import { build } from './build.mjs';

if (!(await build({ quiet: true }))) process.exit(1);
process.argv.splice(2, 0, 'serve');
await import('../bin/netplane.js');
