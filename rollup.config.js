// Bundles the SDK (src/) into build/dist/: one ESM file, a CommonJS copy of it, and their
// declarations. The WebAssembly modules stay separate files in build/ and are loaded at run time.
import typescript from '@rollup/plugin-typescript';
import { dts } from 'rollup-plugin-dts';

// etcd3 (the cluster's etcd client) is loaded by a dynamic import in src/cluster only, never by the SDK or the browser bundle.
const external = (id) => id.startsWith('node:') || id === 'ws' || id === 'etcd3';

// An import cycle is a build error, not a warning to scroll past.
const onwarn = (warning, warn) => {
  if (warning.code === 'CIRCULAR_DEPENDENCY') throw new Error(`import cycle in src/: ${warning.ids?.join(' -> ') ?? warning.message}`);
  warn(warning);
};

// The browser entry (web.js) shares chunks with index.js and cli.js; what it loads, followed chunk
// by chunk, must import nothing outside the bundle: no node: module, no ws, no other package.
const browserSafe = {
  name: 'netplane-browser-safe',
  generateBundle(_, bundle) {
    const seen = new Set();
    const walk = (file) => {
      if (seen.has(file)) return;
      seen.add(file);
      const chunk = bundle[file];
      for (const id of [...chunk.imports, ...chunk.dynamicImports]) {
        if (bundle[id]) { walk(id); continue; }
        const by = chunk.moduleIds.filter((m) => this.getModuleInfo(m)?.importedIds.includes(id) || this.getModuleInfo(m)?.dynamicallyImportedIds.includes(id));
        this.error(`the browser bundle imports ${id} (in ${file}, from ${by.join(', ') || 'unknown'}); src/web.ts's graph must stay free of node: modules and packages`);
      }
      if (/\bimport\s*\(?\s*['"]node:|\bfrom\s*['"]node:/.test(chunk.code)) this.error(`${file} (loaded by web.js) has a node: import`);
    };
    walk('web.js');
  },
};

// The declarations name WebAssembly.Module and WebAssembly.Memory, which TypeScript declares in lib
// "dom" only; a Node.js project's lib often has no DOM (@tsconfig/node20's has not). Declared empty
// here, they merge with lib "dom"'s full ones where it is present and still resolve where it is not.
const wasmTypes = 'declare global { namespace WebAssembly { interface Module {} interface Memory {} } }';

export default [
  {
    // io-thread: the body of an IoWorker's thread (src/worker/io.ts starts it from beside the bundle).
    input: { index: 'src/index.ts', cli: 'src/cli/main.ts', web: 'src/web.ts', 'io-thread': 'src/worker/io-thread.ts' },
    output: { dir: 'build/dist', format: 'es', sourcemap: true },
    external,
    onwarn,
    plugins: [browserSafe, typescript({ tsconfig: './tsconfig.json', compilerOptions: { noEmit: false, declaration: false, allowImportingTsExtensions: false, outDir: 'build/dist' }, include: ['src/**/*.ts'] })],
  },
  {
    // The CommonJS build for require('netplane'): made from the ES bundle just written (plain
    // JavaScript, so no second TypeScript pass); rollup turns import.meta.url into __filename's URL.
    input: 'build/dist/index.js',
    output: { file: 'build/dist/index.cjs', format: 'cjs', inlineDynamicImports: true },
    external,
  },
  {
    // The same declarations twice: index.d.cts types the require condition (TypeScript reads a .d.ts
    // in a "type": "module" package as ES module declarations).
    input: 'src/index.ts',
    output: [{ file: 'build/dist/index.d.ts', format: 'es', banner: wasmTypes }, { file: 'build/dist/index.d.cts', format: 'es', banner: wasmTypes }],
    external,
    plugins: [dts()],
  },
  {
    input: 'src/web.ts',
    output: { file: 'build/dist/web.d.ts', format: 'es' },
    onwarn,
    plugins: [dts()],
  },
];
