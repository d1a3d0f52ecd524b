import { memoryStore } from '@cache/core'
import { LRUCache } from 'lru-cache'
import { clockTag, FAR_FUTURE, fixedClock, makeKeys, makeValues, shuffled, type Value } from './data.js'
import { type HarnessOptions, runThroughput, type ThroughputResult } from './harness.js'

const SIZE = 100_000

/** M1: memory store get-hit over 100 k string keys, in a shuffled order prepared in advance. */
export async function m1(opts: HarnessOptions): Promise<ThroughputResult> {
  const keys = makeKeys(SIZE)
  const values = makeValues(SIZE)
  const order = shuffled(keys, 0x5eed1)
  // The cache calls the store as getSyncIn(namespace, key): the 'user:' part is the space, split off in advance.
  // Like lru-cache, which is filled and read with the same key objects, ours is filled and read with the same ids.
  const space = 'user:'
  const ids = keys.map((key) => key.slice(space.length))
  const idOf = new Map(keys.map((key, i) => [key, ids[i]!]))
  const orderIds = order.map((key) => idOf.get(key)!)
  const now = Date.now()

  const ours =
    fixedClock === undefined ? memoryStore({ maxEntries: SIZE }) : memoryStore({ maxEntries: SIZE, clock: fixedClock })
  for (let i = 0; i < SIZE; i++) {
    ours.setSyncIn(space, ids[i]!, { value: values[i], createdAt: now, freshUntil: FAR_FUTURE, staleUntil: FAR_FUTURE })
  }
  const lru = new LRUCache<string, Value>({ max: SIZE })
  for (let i = 0; i < SIZE; i++) lru.set(keys[i]!, values[i]!)
  // Every entry of ours has an expiry, so every hit checks it; lru-cache only does that when given a TTL.
  const lruTtl = new LRUCache<string, Value>({ max: SIZE, ttl: 3_600_000 })
  for (let i = 0; i < SIZE; i++) lruTtl.set(keys[i]!, values[i]!)
  const map = new Map<string, Value>()
  for (let i = 0; i < SIZE; i++) map.set(keys[i]!, values[i]!)
  if (ours.stats().size !== SIZE || lru.size !== SIZE || map.size !== SIZE) throw new Error('[bench] M1: bad fill')

  const n = order.length
  const result = await runThroughput(
    {
      id: 'M1',
      title: 'memory store get-hit, 100 k string keys, shuffled order',
      opsPerPass: n,
      contenders: [
        {
          name: `ours memoryStore.getSyncIn${clockTag}`,
          kind: 'ours',
          expectPerPass: n,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              // Read the value, as the cache does and as lru-cache.get must: the view alone would skip that load.
              for (let i = 0; i < n; i++) if (ours.getSyncIn(space, orderIds[i]!)?.value !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: `ours memoryStore.getSync${clockTag}`,
          kind: 'ours',
          expectPerPass: n,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < n; i++) if (ours.getSync(order[i]!) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: `ours memoryStore.get (await)${clockTag}`,
          kind: 'ours',
          expectPerPass: n,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < n; i++) if ((await ours.get(order[i]!)) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'lru-cache.get',
          kind: 'anchor',
          expectPerPass: n,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < n; i++) if (lru.get(order[i]!) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'lru-cache.get (ttl 1h)',
          kind: 'reference',
          expectPerPass: n,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < n; i++) if (lruTtl.get(order[i]!) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'Map.get',
          kind: 'reference',
          expectPerPass: n,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < n; i++) if (map.get(order[i]!) !== undefined) hits++
            }
            return hits
          },
        },
      ],
      pairs: [
        { ours: `ours memoryStore.getSyncIn${clockTag}`, anchor: 'lru-cache.get', target: 1 },
        { ours: `ours memoryStore.getSync${clockTag}`, anchor: 'lru-cache.get' },
        { ours: `ours memoryStore.get (await)${clockTag}`, anchor: 'lru-cache.get' },
        { ours: `ours memoryStore.getSyncIn${clockTag}`, anchor: 'lru-cache.get (ttl 1h)' },
        { ours: 'Map.get', anchor: 'lru-cache.get' },
      ],
      notes: [
        'ours: memoryStore({ maxEntries: 100_000 }) (LRU, default options), entries with far-future expiry',
        'anchor: new LRUCache({ max: 100_000 }) (no TTL); references: the same with ttl: 3_600_000 (every hit then checks expiry, as every hit of ours does), and a bare Map',
        'each pass reads all 100 k keys in one fixed shuffled order; every read must hit (checked)',
      ],
    },
    opts,
  )
  await ours.close()
  return result
}
