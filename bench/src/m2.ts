import { memoryStore, type StoredEntry } from '@cache/core'
import { LRUCache } from 'lru-cache'
import { clockTag, FAR_FUTURE, fixedClock, makeKeys, makeValues, type Value } from './data.js'
import { type HarnessOptions, runThroughput, type ThroughputResult } from './harness.js'

const CAPACITY = 10_000
const KEYS = 100_000

/**
 * M2: set with eviction. 100 k distinct keys cycle through a 10 k store, so once the store is full (during warm-up)
 * every set inserts a key that was evicted long ago and evicts the least recently used one.
 */
export async function m2(opts: HarnessOptions): Promise<ThroughputResult> {
  const keys = makeKeys(KEYS)
  const values = makeValues(KEYS)
  // The cache calls the store as setSyncIn(namespace, key, entry): the 'user:' part is the space, split off in advance.
  const space = 'user:'
  const ids = keys.map((key) => key.slice(space.length))
  const now = Date.now()
  // Entries are prepared too: the benchmark times the store, not building its input.
  const entries: StoredEntry[] = values.map((value) => ({
    value,
    createdAt: now,
    freshUntil: FAR_FUTURE,
    staleUntil: FAR_FUTURE,
  }))

  const ours =
    fixedClock === undefined
      ? memoryStore({ maxEntries: CAPACITY })
      : memoryStore({ maxEntries: CAPACITY, clock: fixedClock })
  const lru = new LRUCache<string, Value>({ max: CAPACITY })

  const result = await runThroughput(
    {
      id: 'M2',
      title: 'set with eviction, capacity 10 k, 100 k distinct keys',
      opsPerPass: KEYS,
      contenders: [
        {
          name: `ours memoryStore.setSyncIn${clockTag}`,
          kind: 'ours',
          expectPerPass: KEYS,
          batch(passes) {
            let writes = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < KEYS; i++) {
                ours.setSyncIn(space, ids[i]!, entries[i]!)
                writes++
              }
            }
            return writes
          },
        },
        {
          name: 'lru-cache.set',
          kind: 'anchor',
          expectPerPass: KEYS,
          batch(passes) {
            let writes = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < KEYS; i++) {
                lru.set(keys[i]!, values[i]!)
                writes++
              }
            }
            return writes
          },
        },
      ],
      pairs: [{ ours: `ours memoryStore.setSyncIn${clockTag}`, anchor: 'lru-cache.set', target: 1 }],
      notes: [
        "ours: memoryStore({ maxEntries: 10_000 }).setSyncIn(space, key, entry) (the cache's call) with StoredEntry objects prepared per key",
        'anchor: new LRUCache({ max: 10_000 }).set(key, value) with values prepared per key',
      ],
    },
    opts,
  )
  const stats = ours.stats()
  if (stats.size !== CAPACITY || lru.size !== CAPACITY || stats.evictions === 0) {
    throw new Error(`[bench] M2: expected both stores full at ${CAPACITY} after evicting`)
  }
  await ours.close()
  return result
}
