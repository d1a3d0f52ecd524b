import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  // One copy of shared modules (CacheError, ...) across entry points, so `instanceof` holds in CJS too.
  splitting: true,
  target: 'node20',
  external: ['vitest'],
})
