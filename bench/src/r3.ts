import { createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { makeKeys, makeValues, type Value } from './data.js'
import { busReady, commandsDuring, describeDelta } from './distributed.js'
import { type HarnessOptions, inLanes, runThroughput, type ThroughputResult } from './harness.js'

const KEYS = 1_000
const CONCURRENCY = 100

/**
 * R3: what the memory tier buys. A tiered `cache.get` (memory over Redis, with the bus) answered from L1, against a
 * raw ioredis `GET` (`getBuffer`, no decode) of the same keys on the same server, at concurrency 1 and 100.
 */
export async function r3(opts: HarnessOptions): Promise<ThroughputResult> {
  const server = await startRedis()
  // Identical options for both clients: ioredis defaults, one connection each (the bus adds its own subscriber).
  const oursClient = new Redis({ host: server.host, port: server.port })
  const rawClient = new Redis({ host: server.host, port: server.port })
  const admin = new Redis({ host: server.host, port: server.port })
  const bus = redisBus({ client: oursClient })
  const cache = createCache({ tiers: [memoryStore(), redisStore({ client: oursClient })], bus })
  try {
    await busReady(bus)
    const keys = makeKeys(KEYS)
    const values = makeValues(KEYS)
    // The store keys: the cache's namespace ('cache:') + key. The raw GETs read exactly what the cache wrote.
    const storeKeys = keys.map((key) => `${cache.storePrefix}${key}`)
    for (let i = 0; i < KEYS; i++) await cache.set(keys[i]!, values[i]!)
    const probe = await rawClient.getBuffer(storeKeys[7]!)
    if (probe === null || (await cache.get<Value>(keys[7]!))?.id !== 7) throw new Error('[bench] R3: bad probe')

    const oursName = (c: number) => `ours tiered cache.get, L1 hit (c=${c})`
    const rawName = (c: number) => `ioredis GET (getBuffer) (c=${c})`
    const oursSequential = async (passes: number): Promise<number> => {
      let hits = 0
      for (let p = 0; p < passes; p++) {
        for (let i = 0; i < KEYS; i++) if ((await cache.get(keys[i]!)) !== undefined) hits++
      }
      return hits
    }
    const oursInLanes = (passes: number): Promise<number> =>
      inLanes(passes * KEYS, CONCURRENCY, async (n) => (await cache.get(keys[n % KEYS]!)) !== undefined)
    const result = await runThroughput(
      {
        id: 'R3',
        title: 'tiered cache.get served from L1 (memory over Redis) vs a raw ioredis GET of the same keys, loopback',
        opsPerPass: KEYS,
        contenders: [
          {
            name: oursName(1),
            kind: 'ours',
            expectPerPass: KEYS,
            batch: oursSequential,
          },
          {
            name: rawName(1),
            kind: 'anchor',
            expectPerPass: KEYS,
            async batch(passes) {
              let hits = 0
              for (let p = 0; p < passes; p++) {
                for (let i = 0; i < KEYS; i++) if ((await rawClient.getBuffer(storeKeys[i]!)) !== null) hits++
              }
              return hits
            },
          },
          {
            name: oursName(CONCURRENCY),
            kind: 'ours',
            expectPerPass: KEYS,
            batch: oursInLanes,
          },
          {
            name: rawName(CONCURRENCY),
            kind: 'anchor',
            expectPerPass: KEYS,
            batch(passes) {
              return inLanes(
                passes * KEYS,
                CONCURRENCY,
                async (n) => (await rawClient.getBuffer(storeKeys[n % KEYS]!)) !== null,
              )
            },
          },
        ],
        pairs: [
          { ours: oursName(1), anchor: rawName(1), target: 100 },
          { ours: oursName(CONCURRENCY), anchor: rawName(CONCURRENCY), target: 100 },
        ],
        notes: [
          `redis-server ${server.address} (loopback, started by the bench); two ioredis clients new Redis({ host, port }), ` +
            'ioredis defaults (enableAutoPipelining off), one connection each',
          'ours: createCache({ tiers: [memoryStore(), redisStore({ client })], bus: redisBus({ client }) }), ' +
            `${KEYS} keys set through the cache (so in both tiers) after the bus subscription stood; await cache.get(key)`,
          "baseline: await client.getBuffer('cache:' + key): the GET of the entry the cache wrote, bytes only (no decode)",
          `c=${CONCURRENCY}: ${CONCURRENCY} async lanes pull the next index from a shared counter`,
        ],
      },
      opts,
    )
    // Were the tiered reads really served by L1? One more batch of each of ours, with Redis' command counts around it.
    for (const [name, batch] of [
      [oursName(1), oursSequential],
      [oursName(CONCURRENCY), oursInLanes],
    ] as const) {
      const c = result.contenders.find((x) => x.name === name)!
      let hits = 0
      const delta = await commandsDuring(admin, async () => {
        hits = await batch(c.passesPerBatch)
      })
      if (hits !== c.opsPerBatch) throw new Error(`[bench] R3: ${name} missed in the check batch`)
      result.notes.push(
        `${name}: Redis commands during one extra batch of ${c.opsPerBatch} gets (INFO commandstats): ${describeDelta(delta)}`,
      )
    }
    const tier = cache.stats().tiers
    result.notes.push(`tier hits over the whole run: ${tier.map((t) => `${t.name} ${t.hits}`).join(', ')}`)
    return result
  } finally {
    await cache.close()
    oursClient.disconnect()
    rawClient.disconnect()
    admin.disconnect()
    await server.stop()
  }
}
