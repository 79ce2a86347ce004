// The package as its users get it. `npm pack`, the tarball installed into a fresh project (as
// `npm install ./netplane-0.1.0.tgz` does it: the install script, the dependencies from the npm cache
// or the registry), and there: the README's TypeScript examples compiled by the project's own
// `tsc --strict` (no skipLibCheck; without lib "dom" as @tsconfig/node20 has it, and with it) and run by node, require('netplane') from CommonJS
// typed through index.d.cts, and the `netplane` command from node_modules/.bin.
//
// Packing and installing cost about 15 s, so that part runs once, in the release pass of
// test/run.js (NETPLANE_BUILD=release); in the debug pass one test says, by its name, that it ran
// there. What the tarball holds and the build layout are checked in both passes (they are cheap).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const release = process.env.NETPLANE_BUILD === 'release';

// npm run from `npm test` passes its own settings down as npm_* variables (the package's directory,
// the lifecycle event...); the npm commands here run as a user's would, without them.
const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

function run(cmd: string, args: string[], opts: SpawnSyncOptions & { cwd: string }) {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 180_000, ...opts });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.is(r.status, 0, `${cmd} ${args.join(' ')} (in ${opts.cwd}) exited ${r.status ?? r.signal}:\n${out}${r.error ? r.error.message : ''}`);
  return out;
}

// The files the package is made of; anything else in the tarball is a stray.
const shipped = [
  /^package\.json$/, /^README\.md$/, /^LICENSE$/, /^bin\/netplane\.js$/,
  /^build\/netplane\.(debug|release)\.wasm$/,
  /^build\/dist\/[\w-]+\.(js|cjs|d\.ts|d\.cts|js\.map)$/,
  /^docs\/[\w.-]+\.(md|json)$/,
  /^native\/(tap\.c|binding\.gyp)$/, /^scripts\/native\.mjs$/,
];

test('build layout: no binding.gyp at the package root (npm would add `install: node-gyp rebuild`, which deletes build/)', () => {
  assert.not.ok(existsSync(join(root, 'binding.gyp')), 'binding.gyp at the root');
  assert.ok(existsSync(join(root, 'native/binding.gyp')));
  assert.is(pkg.gypfile, false);
  assert.is(pkg.scripts.install, 'node scripts/native.mjs');
  assert.ok(!/node-gyp (re)?build|rm -rf build/.test(JSON.stringify(pkg.scripts)), 'no script cleans build/');
});

test('the package declares MIT and ships a LICENSE that says so', () => {
  assert.is(pkg.license, 'MIT');
  const license = readFileSync(join(root, 'LICENSE'), 'utf8');
  assert.match(license, /^MIT License/);
  assert.match(license, /netplane authors/);
});

test('npm pack --dry-run: only the package\'s own files, every build/dist chunk used by an entry', () => {
  const out = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
  const files: string[] = JSON.parse(out.slice(out.indexOf('[')))[0].files.map((f: { path: string }) => f.path);
  const strays = files.filter((f) => !shipped.some((re) => re.test(f)));
  assert.equal(strays, [], `stray files in the tarball: ${strays.join(', ')}`);
  for (const f of ['LICENSE', 'bin/netplane.js', 'build/dist/index.js', 'build/dist/index.cjs', 'build/dist/index.d.ts',
    'build/dist/index.d.cts', 'build/dist/cli.js', 'build/netplane.release.wasm', 'native/tap.c', 'scripts/native.mjs']) {
    assert.ok(files.includes(f), `${f} is not in the tarball`);
  }
  // Chunk names carry a content hash: a chunk no shipped file imports is left from an older build.
  const js = files.filter((f) => /^build\/dist\/.*\.js$/.test(f));
  const entries = new Set(['build/dist/index.js', 'build/dist/cli.js', 'build/dist/web.js']);
  const text = js.map((f) => readFileSync(join(root, f), 'utf8')).join('\n');
  for (const f of js) {
    if (entries.has(f)) continue;
    const name = f.slice('build/dist/'.length);
    assert.ok(text.includes(`./${name}'`) || text.includes(`./${name}"`), `${f} is imported by nothing: a stale chunk`);
  }
});

if (!release) {
  test('npm pack → a fresh project → tsc --strict and node: runs once, in the release pass (NETPLANE_BUILD=release), not in this debug pass', () => {
    assert.ok(true);
  });
} else {
  const tmp = mkdtempSync(join(tmpdir(), 'netplane-pack-'));
  const app = join(tmp, 'app');
  const typesNode = JSON.parse(readFileSync(join(root, 'node_modules/@types/node/package.json'), 'utf8')).version;
  const tsc = join(root, 'node_modules/typescript/bin/tsc');

  test('release pass: npm pack, then npm install of the tarball into a fresh project', () => {
    const out = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: root });
    const tarball = join(tmp, JSON.parse(out.slice(out.indexOf('[')))[0].filename);
    assert.ok(existsSync(tarball), tarball);
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'netplane-consumer', version: '1.0.0', private: true, type: 'module' }, null, 2));
    // A TypeScript user brings @types/node (the SDK's Node transports are typed with it); typescript
    // itself is used from this repository by path.
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, `@types/node@${typesNode}`], { cwd: app });
    const installed = join(app, 'node_modules/netplane');
    assert.ok(existsSync(join(installed, 'build/dist/index.js')));
    assert.ok(!existsSync(join(installed, 'binding.gyp')));
  });

  test('release pass: the install script built the native TAP helper in the installed package (where this checkout could)', () => {
    const here = join(root, 'native/build/Release/netplane_tap.node');
    const there = join(app, 'node_modules/netplane/native/build/Release/netplane_tap.node');
    if (process.platform !== 'linux') assert.not.ok(existsSync(there));
    else if (existsSync(here)) assert.ok(existsSync(there), 'built in the checkout, but not by the tarball\'s install script');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', "import { nativeTapAvailable } from 'netplane'; process.stdout.write(JSON.stringify(nativeTapAvailable()))"], { cwd: app, env, encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout, JSON.stringify(existsSync(there) && process.platform === 'linux'), `nativeTapAvailable() in the installed package: ${r.stdout} ${r.stderr}`);
  });

  test(`release pass: the README's ${examples.length} TypeScript examples and a CommonJS consumer compile with tsc --strict (no skipLibCheck; without and with lib DOM)`, () => {
    assert.ok(examples.length >= 3, `found ${examples.length}`);
    const dir = join(app, 'src');
    mkdirSync(dir, { recursive: true });
    examples.forEach((code, i) => {
      let body = code;
      if (code.includes("readFileSync('in.pcap')")) {
        // The example reads a capture; give it one, written with the package's own pcap writer.
        body = `import { writePcap as __w, ethernet as __e } from 'netplane';\n` +
          `import { writeFileSync as __wf } from 'node:fs';\n` +
          `__wf('in.pcap', __w([{ timestamp: 0, data: __e({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01', ethertype: 0x88b5, payload: new Uint8Array(46) }) }]));\n` + body;
      }
      writeFileSync(join(dir, `example-${i + 1}.ts`), body);
    });
    writeFileSync(join(dir, 'commonjs.cts'), [
      "import netplane = require('netplane');",
      'const sw = new netplane.Switch();',
      'const a = sw.addPort({ network: 1 }), b = sw.addPort({ network: 1 });',
      "a.send(netplane.ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01', ethertype: 0x88b5, payload: new Uint8Array(46) }));",
      'sw.flush();',
      "if (b.receive().length !== 1) throw new Error('the flooded frame did not reach port b');",
      "console.log('commonjs ok');",
      '',
    ].join('\n'));
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, target: 'ES2022', lib: ['ES2022'], module: 'NodeNext', moduleResolution: 'NodeNext',
        types: ['node'], outDir: 'out', rootDir: 'src',
      },
      include: ['src'],
    }, null, 2));
    run(process.execPath, [tsc, '-p', '.'], { cwd: app });
    // And where lib "dom" is present, the package's WebAssembly declarations merge with it.
    run(process.execPath, [tsc, '-p', '.', '--noEmit', '--lib', 'ES2022,DOM'], { cwd: app });
  });

  test('release pass: the compiled README examples and the CommonJS consumer run with node', () => {
    examples.forEach((_, i) => run(process.execPath, [join(app, `out/example-${i + 1}.js`)], { cwd: app }));
    assert.match(run(process.execPath, [join(app, 'out/commonjs.cjs')], { cwd: app }), 'commonjs ok');
  });

  test('release pass: the installed `netplane` command: npx netplane --help, and node_modules/.bin/netplane demo', () => {
    assert.match(run('npx', ['--no-install', 'netplane', '--help'], { cwd: app }), /netplane/);
    assert.match(run(process.execPath, [join(app, 'node_modules/.bin/netplane'), 'demo'], { cwd: app }), /\S/);
  });

  test('release pass: clean up the temporary project', () => {
    rmSync(tmp, { recursive: true, force: true });
  });
}

test.run();
