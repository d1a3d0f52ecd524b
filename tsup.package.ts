import { defineConfig } from 'tsup'

/**
 * The build of a single-entry package (the adapters, the lock): ESM + CJS with declarations. Its peer dependencies
 * (the framework, ioredis, @cache/core) stay external: never bundled.
 */
export function packageConfig(external: string[]) {
  return defineConfig({
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    target: 'node20',
    external,
  })
}
