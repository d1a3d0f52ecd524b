import { defineConfig } from 'vitest/config'

// `vitest run` at the root runs every package's project and prints one summary.
export default defineConfig({
  test: {
    projects: ['packages/*', 'examples/*', 'bench'],
  },
})
