import { defaultCodec, type MemcachedClient, memcachedStore } from '@cache/core/memcached'
import { startMemcached } from '@cache/testing'
import * as memjs from 'memjs'
import { makeKeys, makeValues } from './data.js'
import { type HarnessOptions, inLanes, runThroughput, type ThroughputResult } from './harness.js'

const KEYS = 1_000
const CONCURRENCY = 100
const HOUR_MS = 3_600_000

/**
 * K1: `memcachedStore.get` on a hit against raw memjs `client.get` of the same physical key + `defaultCodec.decode`,
 * at concurrency 1 and 100; the store both with its default (generations read on every call) and with
 * `generationCacheTime: '1s'`. A memcached on loopback, started here (@cache/testing) and stopped at the end.
 */
export async function k1(opts: HarnessOptions): Promise<ThroughputResult> {
  const server = await startMemcached()
  // Identical options for the three clients: those memcachedStore({ servers }) would use (timeout = its deadline).
  const clientOptions = { retries: 1, timeout: 0.5, logger: { log: () => {} } }
  const oursClient = memjs.Client.create(server.address, clientOptions) as MemcachedClient
  const cachedClient = memjs.Client.create(server.address, clientOptions) as MemcachedClient
  const rawClient = memjs.Client.create(server.address, clientOptions) as MemcachedClient
  try {
    const keys = makeKeys(KEYS, 'cache:user:')
    const values = makeValues(KEYS)
    const store = memcachedStore({ client: oursClient })
    const cached = memcachedStore({ client: cachedClient, generationCacheTime: '1s' })
    const now = Date.now()
    for (let i = 0; i < KEYS; i++) {
      await store.set(keys[i]!, {
        value: values[i],
        createdAt: now,
        freshUntil: now + HOUR_MS,
        staleUntil: now + HOUR_MS,
      })
    }
    // The raw client reads the keys memcached holds the entries under (generations resolved once, beforehand).
    const physical: string[] = []
    for (let i = 0; i < KEYS; i++) physical.push(await store.physicalKey(keys[i]!))
    const probe = defaultCodec.decode((await rawClient.get(physical[7]!)).value!) as unknown[]
    if (!Array.isArray(probe) || (probe[5] as { id: number }).id !== 7) throw new Error('[bench] K1: bad probe')
    if ((await cached.get(keys[7]!)) === undefined) throw new Error('[bench] K1: the second store misses')

    const c1 = ' (c=1)'
    const cN = ` (c=${CONCURRENCY})`
    const ours = 'ours memcachedStore.get'
    const oursCached = "ours memcachedStore.get, generationCacheTime '1s'"
    const raw = 'memjs get + decode'

    const result = await runThroughput(
      {
        id: 'K1',
        title: 'memcachedStore.get hit vs memjs get + defaultCodec.decode, 1 000 keys, loopback',
        opsPerPass: KEYS,
        contenders: [
          {
            name: ours + c1,
            kind: 'ours',
            expectPerPass: KEYS,
            async batch(passes) {
              let hits = 0
              for (let p = 0; p < passes; p++) {
                for (let i = 0; i < KEYS; i++) if ((await store.get(keys[i]!)) !== undefined) hits++
              }
              return hits
            },
          },
          {
            name: oursCached + c1,
            kind: 'ours',
            expectPerPass: KEYS,
            async batch(passes) {
              let hits = 0
              for (let p = 0; p < passes; p++) {
                for (let i = 0; i < KEYS; i++) if ((await cached.get(keys[i]!)) !== undefined) hits++
              }
              return hits
            },
          },
          {
            name: raw + c1,
            kind: 'anchor',
            expectPerPass: KEYS,
            async batch(passes) {
              let hits = 0
              for (let p = 0; p < passes; p++) {
                for (let i = 0; i < KEYS; i++) {
                  const { value } = await rawClient.get(physical[i]!)
                  if (value !== null && defaultCodec.decode(value) !== undefined) hits++
                }
              }
              return hits
            },
          },
          {
            name: ours + cN,
            kind: 'ours',
            expectPerPass: KEYS,
            async batch(passes) {
              return inLanes(passes * KEYS, CONCURRENCY, async (n) => {
                const i = n % KEYS
                return (await store.get(keys[i]!)) !== undefined
              })
            },
          },
          {
            name: oursCached + cN,
            kind: 'ours',
            expectPerPass: KEYS,
            async batch(passes) {
              return inLanes(passes * KEYS, CONCURRENCY, async (n) => {
                const i = n % KEYS
                return (await cached.get(keys[i]!)) !== undefined
              })
            },
          },
          {
            name: raw + cN,
            kind: 'anchor',
            expectPerPass: KEYS,
            async batch(passes) {
              return inLanes(passes * KEYS, CONCURRENCY, async (n) => {
                const i = n % KEYS
                const { value } = await rawClient.get(physical[i]!)
                return value !== null && defaultCodec.decode(value) !== undefined
              })
            },
          },
        ],
        pairs: [
          { ours: ours + c1, anchor: raw + c1, target: 0.95 },
          { ours: oursCached + c1, anchor: raw + c1, target: 0.95 },
          { ours: ours + cN, anchor: raw + cN, target: 0.95 },
          { ours: oursCached + cN, anchor: raw + cN, target: 0.95 },
        ],
        notes: [
          `memcached ${server.address} (loopback, -m 64, started by the bench); three memjs clients, each ` +
            'memjs.Client.create(address, { retries: 1, timeout: 0.5, logger: silent }) (what the store itself would create)',
          "ours: memcachedStore({ client }) (defaultCodec, commandTimeout 500ms); keys 'cache:user:<i>' (namespace 'cache'), " +
            'so each get reads generations @g and @o:cache (two gets, in parallel) and then the entry: 3 commands, 2 round trips',
          "ours, generationCacheTime '1s': the same with generations reused for 1 s in this process: 1 command, 1 round trip most of the time",
          'baseline: await client.get(physicalKey) (resolved once, before timing), then defaultCodec.decode(value)',
          `values: small objects { id, name, active }; every call must hit. c=${CONCURRENCY}: ${CONCURRENCY} async lanes`,
        ],
      },
      opts,
    )
    await store.close()
    await cached.close()
    return result
  } finally {
    oursClient.close()
    cachedClient.close()
    rawClient.close()
    await server.stop()
  }
}
