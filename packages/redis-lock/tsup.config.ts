import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  target: 'node20',
  // The framework and the core are peer dependencies: never bundled.
  external: ['ioredis', '@cache/core'],
})
