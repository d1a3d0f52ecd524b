import { createCache } from '@cache/core'
import { redisStore } from '@cache/core/redis'
import { startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { makeKeys, makeValues, type Value } from './data.js'
import { type HarnessOptions, inLanes, runThroughput, type ThroughputResult } from './harness.js'

const KEYS = 1_000
const CONCURRENCY = 100

/**
 * R2: `cache.getOrSet` hits over a redisStore alone (no memory tier in front), 100 calls in flight, with ioredis
 * `enableAutoPipelining` on and off. Information only: the ratio on/off.
 */
export async function r2(opts: HarnessOptions): Promise<ThroughputResult> {
  const server = await startRedis()
  const onClient = new Redis({ host: server.host, port: server.port, enableAutoPipelining: true })
  const offClient = new Redis({ host: server.host, port: server.port, enableAutoPipelining: false })
  const on = createCache({ store: redisStore({ client: onClient }) })
  const off = createCache({ store: redisStore({ client: offClient }) })
  try {
    const keys = makeKeys(KEYS)
    const values = makeValues(KEYS)
    for (let i = 0; i < KEYS; i++) {
      const value = values[i]!
      await on.getOrSet(keys[i]!, () => value)
    }
    // Both caches share the namespace and the server, so `off` reads the entries `on` wrote.
    const check = await off.get<Value>(keys[3]!)
    if (check?.id !== 3) throw new Error('[bench] R2: off does not see the entries')

    let loaderCalls = 0
    const loader = (): Value => {
      loaderCalls++
      return values[0]!
    }

    const result = await runThroughput(
      {
        id: 'R2',
        title: `cache.getOrSet hit over redisStore (no memory tier), ${CONCURRENCY} in flight, autopipelining on vs off`,
        opsPerPass: KEYS,
        contenders: [
          {
            name: 'getOrSet, enableAutoPipelining: true',
            kind: 'ours',
            expectPerPass: KEYS,
            async batch(passes) {
              return inLanes(passes * KEYS, CONCURRENCY, async (n) => {
                const i = n % KEYS
                return (await on.getOrSet(keys[i]!, loader)) !== undefined
              })
            },
          },
          {
            name: 'getOrSet, enableAutoPipelining: false',
            kind: 'anchor',
            expectPerPass: KEYS,
            async batch(passes) {
              return inLanes(passes * KEYS, CONCURRENCY, async (n) => {
                const i = n % KEYS
                return (await off.getOrSet(keys[i]!, loader)) !== undefined
              })
            },
          },
        ],
        pairs: [{ ours: 'getOrSet, enableAutoPipelining: true', anchor: 'getOrSet, enableAutoPipelining: false' }],
        notes: [
          `redis-server ${server.address} (loopback, started by the bench); two ioredis clients new Redis({ host, port, ` +
            'enableAutoPipelining }), otherwise defaults, one connection each',
          'each: createCache({ store: redisStore({ client }) }) (namespace cache, ttl 1h); await cache.getOrSet(key, loader)',
          `${KEYS} keys written once before timing; every call must hit (checked, and no loader call allowed)`,
          `${CONCURRENCY} async lanes pull the next index from a shared counter`,
        ],
      },
      opts,
    )
    if (loaderCalls !== 0) throw new Error(`[bench] R2: a loader ran ${loaderCalls} times during hit-only batches`)
    return result
  } finally {
    await on.close()
    await off.close()
    onClient.disconnect()
    offClient.disconnect()
    await server.stop()
  }
}
