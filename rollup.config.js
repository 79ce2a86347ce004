// Bundles the SDK (src/) into build/dist/: one ESM file with its declarations beside it. The
// WebAssembly modules stay separate files in build/ and are loaded at run time.
import typescript from '@rollup/plugin-typescript';
import { dts } from 'rollup-plugin-dts';

const external = (id) => id.startsWith('node:') || id === '@assemblyscript/loader' || id === 'ws';

export default [
  {
    input: { index: 'src/index.ts', cli: 'src/cli/main.ts' },
    output: { dir: 'build/dist', format: 'es', sourcemap: true },
    external,
    plugins: [typescript({ tsconfig: './tsconfig.json', compilerOptions: { noEmit: false, declaration: false, allowImportingTsExtensions: false, outDir: 'build/dist' }, include: ['src/**/*.ts'] })],
  },
  {
    input: 'src/index.ts',
    output: { file: 'build/dist/index.d.ts', format: 'es' },
    external,
    plugins: [dts()],
  },
];
