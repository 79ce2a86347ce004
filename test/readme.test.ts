// The README's examples run as written (against the bundled package, as a user imports it), so the
// quick start cannot drift from the code. Examples that need files they do not create are skipped
// by name, and the test says which.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

test('the README has TypeScript examples', () => {
  assert.ok(blocks.length >= 3, `found ${blocks.length}`);
});

blocks.forEach((code, i) => {
  const needsFiles = code.includes("readFileSync('in.pcap')");
  test(`README example ${i + 1} ${needsFiles ? '(reads in.pcap: run with a capture written first)' : 'runs'}`, () => {
    const dir = `${root}build/readme`;
    mkdirSync(dir, { recursive: true });
    let body = code;
    if (needsFiles) {
      // Give it the capture it reads: one broadcast frame, written with the package's own pcap writer.
      body = `import { writePcap as __w, ethernet as __e } from 'netplane';\n` +
        `import { writeFileSync as __wf } from 'node:fs';\n` +
        `__wf('in.pcap', __w([{ timestamp: 0, data: __e({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01', ethertype: 0x88b5, payload: new Uint8Array(46) }) }]));\n` + body;
    }
    const file = `${dir}/example-${i + 1}.ts`;
    writeFileSync(file, body);
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: dir, encoding: 'utf8', env: { ...process.env, NETPLANE_BUILD: process.env.NETPLANE_BUILD ?? 'release' } });
    assert.is(r.status, 0, `example ${i + 1} failed:\n${r.stderr}`);
  });
});

test.run();
