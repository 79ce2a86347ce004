#!/usr/bin/env node
// Runs the uvu suites twice, against the debug build (assertions on) and the release build
// (-O3, --noAssert), and ends with one line "N passed, M failed" over both runs.
// NETPLANE_TEST_BUILDS=debug (or release) runs one; a pattern argument narrows the files.
// The failures' headings (uvu's " FAIL  suite "name"" lines, with the first lines of what they
// said) are repeated at the very end with their build, so a log cut to its tail names what failed.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const builds = (process.env.NETPLANE_TEST_BUILDS || 'debug,release').split(',');
const pattern = process.argv[2] || '\\.test\\.ts$';
let passed = 0, failed = 0, ran = 0;
const failures = [];
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
  if (r.status !== 0 && total === ok) { failed += 1; failures.push(`${build}: exit ${r.status} outside the counted tests`); } // a crash before or after them
  const lines = `${r.stdout}\n${r.stderr}`.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
  let file = '';
  lines.forEach((line, i) => {
    if (/^\S+\.test\.ts$/.test(line)) file = line;
    if (!/^\s*FAIL\s/.test(line)) return;
    const why = lines.slice(i + 1, i + 12).map((l) => l.trim()).filter((l) => l && !l.startsWith('at ')).slice(0, 3);
    failures.push(`${build}: ${file}: ${line.trim()}${why.map((w) => `\n      ${w}`).join('')}`);
  });
}
if (failures.length) console.log(`\nfailed:\n${failures.map((f) => `  ${f}`).join('\n')}`);
console.log(`\ntests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && ran > 0 ? 0 : 1);
