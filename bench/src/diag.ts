/**
 * Diagnostics for the core team, not product rows: each runs our code twice, once as shipped and once with a fixed
 * clock (`clock: () => now`, an existing option), to show what reading the time costs on each hot path.
 * Opt-in (`pnpm bench D1 D2 D3`) and never in the default run: a second clock makes the store's `this.clock()` call
 * site polymorphic, which would perturb the M/C rows if they ran after it in the same process.
 */
import { createCache, memoryStore, type StoredEntry } from '@cache/core'
import { FAR_FUTURE, makeKeys, makeValues, shuffled } from './data.js'
import { type HarnessOptions, runThroughput, type ThroughputResult } from './harness.js'

const NOTE = 'fixed clock: clock: () => now on the store (and on the cache for D3); everything else identical'

/** D1: M1's get-hit, shipped vs fixed clock. */
export async function d1(opts: HarnessOptions): Promise<ThroughputResult> {
  const size = 100_000
  const keys = makeKeys(size)
  const values = makeValues(size)
  const order = shuffled(keys, 0x5eed1)
  const now = Date.now()
  const shipped = memoryStore({ maxEntries: size })
  const fixed = memoryStore({ maxEntries: size, clock: () => now })
  for (let i = 0; i < size; i++) {
    const entry = { value: values[i], createdAt: now, freshUntil: FAR_FUTURE, staleUntil: FAR_FUTURE }
    shipped.setSync(keys[i]!, entry)
    fixed.setSync(keys[i]!, entry)
  }
  const result = await runThroughput(
    {
      id: 'D1',
      title: 'diagnostic: memoryStore.getSync hit (as M1), shipped vs fixed clock',
      opsPerPass: size,
      contenders: [
        {
          name: 'getSync, Date.now clock',
          kind: 'ours',
          expectPerPass: size,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) for (let i = 0; i < size; i++) if (shipped.getSync(order[i]!)) hits++
            return hits
          },
        },
        {
          name: 'getSync, fixed clock',
          kind: 'reference',
          expectPerPass: size,
          batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) for (let i = 0; i < size; i++) if (fixed.getSync(order[i]!)) hits++
            return hits
          },
        },
      ],
      pairs: [{ ours: 'getSync, fixed clock', anchor: 'getSync, Date.now clock' }],
      notes: [NOTE],
    },
    opts,
  )
  await shipped.close()
  await fixed.close()
  return result
}

/** D2: M2's set with eviction, shipped vs fixed clock. */
export async function d2(opts: HarnessOptions): Promise<ThroughputResult> {
  const capacity = 10_000
  const count = 100_000
  const keys = makeKeys(count)
  const now = Date.now()
  const entries: StoredEntry[] = makeValues(count).map((value) => ({
    value,
    createdAt: now,
    freshUntil: FAR_FUTURE,
    staleUntil: FAR_FUTURE,
  }))
  const shipped = memoryStore({ maxEntries: capacity })
  const fixed = memoryStore({ maxEntries: capacity, clock: () => now })
  const result = await runThroughput(
    {
      id: 'D2',
      title: 'diagnostic: memoryStore.setSync with eviction (as M2), shipped vs fixed clock',
      opsPerPass: count,
      contenders: [
        {
          name: 'setSync, Date.now clock',
          kind: 'ours',
          expectPerPass: count,
          batch(passes) {
            for (let p = 0; p < passes; p++) for (let i = 0; i < count; i++) shipped.setSync(keys[i]!, entries[i]!)
            return passes * count
          },
        },
        {
          name: 'setSync, fixed clock',
          kind: 'reference',
          expectPerPass: count,
          batch(passes) {
            for (let p = 0; p < passes; p++) for (let i = 0; i < count; i++) fixed.setSync(keys[i]!, entries[i]!)
            return passes * count
          },
        },
      ],
      pairs: [{ ours: 'setSync, fixed clock', anchor: 'setSync, Date.now clock' }],
      notes: [NOTE],
    },
    opts,
  )
  await shipped.close()
  await fixed.close()
  return result
}

/** D3: C1's getOrSet hit, shipped vs fixed clock. */
export async function d3(opts: HarnessOptions): Promise<ThroughputResult> {
  const count = 1_000
  const keys = makeKeys(count)
  const values = makeValues(count)
  const now = Date.now()
  const shipped = createCache({ store: memoryStore() })
  const fixed = createCache({ store: memoryStore({ clock: () => now }), clock: () => now })
  for (let i = 0; i < count; i++) {
    const value = values[i]!
    await shipped.getOrSet(keys[i]!, () => value)
    await fixed.getOrSet(keys[i]!, () => value)
  }
  const loader = (): never => {
    throw new Error('[bench] D3: the loader ran during a hit-only batch')
  }
  const result = await runThroughput(
    {
      id: 'D3',
      title: 'diagnostic: cache.getOrSet hit (as C1), shipped vs fixed clock',
      opsPerPass: count,
      contenders: [
        {
          name: 'getOrSet, Date.now clock',
          kind: 'ours',
          expectPerPass: count,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < count; i++) if ((await shipped.getOrSet(keys[i]!, loader)) !== undefined) hits++
            }
            return hits
          },
        },
        {
          name: 'getOrSet, fixed clock',
          kind: 'reference',
          expectPerPass: count,
          async batch(passes) {
            let hits = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < count; i++) if ((await fixed.getOrSet(keys[i]!, loader)) !== undefined) hits++
            }
            return hits
          },
        },
      ],
      pairs: [{ ours: 'getOrSet, fixed clock', anchor: 'getOrSet, Date.now clock' }],
      notes: [NOTE],
    },
    opts,
  )
  await shipped.close()
  await fixed.close()
  return result
}
