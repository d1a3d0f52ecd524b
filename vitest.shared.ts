// Tests read the TypeScript sources, never dist/: workspace packages export them under this condition.
const SOURCE = '@cache/source'

// Vite's own defaults follow ours (setting `conditions` replaces them).
export const sharedTestConfig = {
  resolve: { conditions: [SOURCE, 'module', 'node', 'development|production'] },
  ssr: { resolve: { conditions: [SOURCE, 'module', 'node', 'development|production'] } },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
}
