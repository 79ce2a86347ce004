#!/usr/bin/env node
// Runs the uvu suites twice, against the debug build (assertions on) and the release build
// (-O3, --noAssert), and ends with one line "N passed, M failed" over both runs.
// NETPLANE_TEST_BUILDS=debug (or release) runs one; a pattern argument narrows the files.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const builds = (process.env.NETPLANE_TEST_BUILDS || 'debug,release').split(',');
const pattern = process.argv[2] || '\\.test\\.ts$';
let passed = 0, failed = 0, ran = 0;
for (const build of builds) {
  console.log(`\n== netplane tests against the ${build} build ==`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'node_modules/uvu/bin.js'), 'test', pattern],
    { cwd: root, env: { ...process.env, NETPLANE_BUILD: build, FORCE_COLOR: '0' }, encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const total = Number(/Total:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  ran += total;
  passed += ok;
  failed += total - ok;
  if (r.status !== 0 && total === ok) failed += 1; // a crash before or after the counted tests
}
console.log(`\ntests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && ran > 0 ? 0 : 1);
