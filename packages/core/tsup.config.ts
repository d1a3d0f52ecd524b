import { defineConfig, type Options } from 'tsup'

// Members marked @internal (the memory store's columns) stay out of the published types.
const shared: Options = {
  dts: { compilerOptions: { stripInternal: true } },
  sourcemap: true,
  target: 'node20',
  external: ['vitest', 'ioredis', 'memjs', 'http-cache-semantics'],
}

export default defineConfig([
  // The library: ESM and CommonJS.
  // splitting: one copy of shared modules (CacheError) across entry points, so `instanceof` holds in CJS too.
  {
    ...shared,
    entry: {
      index: 'src/index.ts',
      codec: 'src/codec-entry.ts',
      redis: 'src/redis.ts',
      memcached: 'src/memcached.ts',
      http: 'src/http/index.ts',
    },
    format: ['esm', 'cjs'],
    splitting: true,
  },
  // The conformance suite runs inside vitest, which is ESM-only: a CommonJS build could never load it.
  { ...shared, entry: { 'testing/index': 'src/testing/index.ts' }, format: ['esm'] },
])
