import { createCache, memoryStore } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { CALLERS, stampede } from '../src/s1.js'

describe('S1: stampede on one cold key', () => {
  it(`runs the loader once for ${CALLERS} concurrent getOrSet calls and gives every caller its value`, async () => {
    const cache = createCache({ store: memoryStore() })
    try {
      const outcome = await stampede((key, loader) => cache.getOrSet(key, loader))
      expect(outcome.loaderCalls).toBe(1)
      expect(outcome.gotValue).toBe(CALLERS)
      expect(outcome.results).toHaveLength(CALLERS)
      // In process, every caller gets the very object the loader returned.
      const first = outcome.results[0]
      expect(outcome.results.every((r) => r === first)).toBe(true)
    } finally {
      await cache.close()
    }
  })
})
