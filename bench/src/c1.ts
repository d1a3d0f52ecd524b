import { createCache, memoryStore } from '@cache/core'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { createCache as createCacheManager } from 'cache-manager'
import { clockTag, fixedClock, makeKeys, makeValues, type Value } from './data.js'
import { type HarnessOptions, runThroughput, type ThroughputResult } from './harness.js'

const KEYS = 1_000
const HOUR_MS = 3_600_000

/** C1: `getOrSet` on a hit, memory only, sequential awaited calls over 1 000 pre-populated keys. */
export async function c1(opts: HarnessOptions): Promise<ThroughputResult> {
  const keys = makeKeys(KEYS)
  const values = makeValues(KEYS)

  // Every contender gets the same TTL (1 h, ours' default) so no entry expires during the run.
  const ours =
    fixedClock === undefined
      ? createCache({ store: memoryStore() })
      : createCache({ store: memoryStore({ clock: fixedClock }), clock: fixedClock })
  // Bentocache's documented memory-only setup: one store with an L1 memory driver (serialize defaults to true).
  const bento = new BentoCache({
    default: 'memory',
    ttl: HOUR_MS,
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, maxSize: '10mb' })) },
  })
  // The same, with serialization off (documented, with caveats): the fastest bentocache can be configured.
  const bentoRaw = new BentoCache({
    default: 'memory',
    ttl: HOUR_MS,
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, serialize: false })) },
  })
  // cache-manager v7's default: a Keyv in-memory store.
  const manager = createCacheManager({ ttl: HOUR_MS })

  for (let i = 0; i < KEYS; i++) {
    const value = values[i]!
    const key = keys[i]!
    await ours.getOrSet(key, () => value)
    await bento.getOrSet({ key, factory: () => value })
    await bentoRaw.getOrSet({ key, factory: () => value })
    await manager.wrap(key, () => value)
  }

  // The timed loops must only hit: their loader counts the calls it should never get.
  let loaderCalls = 0
  const loader = (): Value => {
    loaderCalls++
    return values[0]!
  }
  // Bentocache takes an options object per call; they are built here (it does not mutate them), not in the loop.
  const bentoOptions = keys.map((key) => ({ key, factory: loader }))

  const result = await runThroughput(
    {
      id: 'C1',
      title: 'cache.getOrSet on a hit, memory only, 1 000 keys cycled',
      opsPerPass: KEYS,
      contenders: [
        {
          name: `ours cache.getOrSet${clockTag}`,
          kind: 'ours',
          expectPerPass: KEYS,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < KEYS; i++) if ((await ours.getOrSet(keys[i]!, loader)) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'bentocache.getOrSet',
          kind: 'anchor',
          expectPerPass: KEYS,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < KEYS; i++) if ((await bento.getOrSet(bentoOptions[i]!)) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'bentocache.getOrSet (serialize: false)',
          kind: 'anchor',
          expectPerPass: KEYS,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < KEYS; i++) if ((await bentoRaw.getOrSet(bentoOptions[i]!)) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'cache-manager.wrap',
          kind: 'anchor',
          expectPerPass: KEYS,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < KEYS; i++) if ((await manager.wrap(keys[i]!, loader)) !== undefined) hits++
            }
            return hits
          },
        },
      ],
      pairs: [
        { ours: `ours cache.getOrSet${clockTag}`, anchor: 'bentocache.getOrSet', target: 2 },
        { ours: `ours cache.getOrSet${clockTag}`, anchor: 'bentocache.getOrSet (serialize: false)' },
        { ours: `ours cache.getOrSet${clockTag}`, anchor: 'cache-manager.wrap', target: 5 },
      ],
      notes: [
        `ours: createCache({ store: memoryStore() }) (namespace 'cache', ttl 1h default)${fixedClock ? ', fixed clock' : ''}; ` +
          'await cache.getOrSet(key, loader)',
        "bentocache: new BentoCache({ default: 'memory', ttl: 3_600_000, stores: { memory: bentostore().useL1Layer(" +
          "memoryDriver({ maxItems: 10_000, maxSize: '10mb' })) } }); await bento.getOrSet({ key, factory })",
        'bentocache (serialize: false): the same driver with { maxItems: 10_000, serialize: false }',
        'cache-manager: createCache({ ttl: 3_600_000 }) (default Keyv in-memory store); await cache.wrap(key, fn)',
        'values are small objects { id, name, active }; every call must hit (checked, and no loader call allowed)',
      ],
    },
    opts,
  )
  if (loaderCalls !== 0) throw new Error(`[bench] C1: a loader ran ${loaderCalls} times during hit-only batches`)
  await ours.close()
  await bento.disconnectAll()
  await bentoRaw.disconnectAll()
  await manager.disconnect()
  return result
}
