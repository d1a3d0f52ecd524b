import { createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { startRedis } from '@cache/testing'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis'
import { Redis } from 'ioredis'
import { makeKeys, makeValues, type Value } from './data.js'
import { busReady, commandCalls, commandDelta, commandsDuring, describeDelta } from './distributed.js'
import { type HarnessOptions, runThroughput, type ThroughputResult } from './harness.js'

const KEYS = 1_000
const HOUR_MS = 3_600_000

/**
 * R4: the tiered hit path against bentocache's multi-tier setup (memory L1, Redis L2, Redis bus), both answering from
 * L1: `get` and `getOrSet`, sequential awaited calls over 1 000 keys. Redis' command counts around a check batch
 * of each contender show that no call reached Redis.
 */
export async function r4(opts: HarnessOptions): Promise<ThroughputResult> {
  const server = await startRedis()
  const connection = { host: server.host, port: server.port }
  const oursClient = new Redis(connection)
  const admin = new Redis(connection)
  const bus = redisBus({ client: oursClient })
  const ours = createCache({ tiers: [memoryStore(), redisStore({ client: oursClient })], bus })
  // Bentocache's documented multi-tier setup (bentocache.dev/docs/multi-tier): L1 memory driver, L2 Redis driver,
  // Redis bus, each given the connection options. Same L1 bounds as C1; TTL 1 h (ours' default), in ms.
  const bento = new BentoCache({
    default: 'tiered',
    ttl: HOUR_MS,
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 10_000, maxSize: '10mb' }))
        .useL2Layer(redisDriver({ connection }))
        .useBus(redisBusDriver({ connection })),
    },
  })
  try {
    await busReady(bus)
    const keys = makeKeys(KEYS)
    const values = makeValues(KEYS)
    // The population goes through Redis (and the buses): its command count shows that the counting works.
    const population = await commandsDuring(admin, async () => {
      for (let i = 0; i < KEYS; i++) {
        await ours.set(keys[i]!, values[i]!)
        await bento.set({ key: keys[i]!, value: values[i]! })
      }
    })
    if ((await ours.get<Value>(keys[9]!))?.id !== 9 || (await bento.get<Value>({ key: keys[9]! }))?.id !== 9) {
      throw new Error('[bench] R4: bad probe')
    }

    // Hit-only batches: the loaders count the calls they should never get.
    let loaderCalls = 0
    const loader = (): Value => {
      loaderCalls++
      return values[0]!
    }
    // Bentocache takes an options object per call: built here (it does not mutate them), not in the loop.
    const bentoGet = keys.map((key) => ({ key }))
    const bentoGetOrSet = keys.map((key) => ({ key, factory: loader }))

    const batches: Record<string, (passes: number) => Promise<number>> = {
      'ours tiered cache.get': async (passes) => {
        let hits = 0
        for (let p = 0; p < passes; p++) {
          for (let i = 0; i < KEYS; i++) if ((await ours.get(keys[i]!)) !== undefined) hits++
        }
        return hits
      },
      'bentocache.get (L1+L2+bus)': async (passes) => {
        let hits = 0
        for (let p = 0; p < passes; p++) {
          for (let i = 0; i < KEYS; i++) if ((await bento.get(bentoGet[i]!)) !== undefined) hits++
        }
        return hits
      },
      'ours tiered cache.getOrSet': async (passes) => {
        let hits = 0
        for (let p = 0; p < passes; p++) {
          for (let i = 0; i < KEYS; i++) if ((await ours.getOrSet(keys[i]!, loader)) !== undefined) hits++
        }
        return hits
      },
      'bentocache.getOrSet (L1+L2+bus)': async (passes) => {
        let hits = 0
        for (let p = 0; p < passes; p++) {
          for (let i = 0; i < KEYS; i++) if ((await bento.getOrSet(bentoGetOrSet[i]!)) !== undefined) hits++
        }
        return hits
      },
    }
    const names = Object.keys(batches)

    const before = await commandCalls(admin)
    const result = await runThroughput(
      {
        id: 'R4',
        title: 'tiered get / getOrSet hit served from L1 (memory + Redis + bus) vs bentocache with the same tiers',
        opsPerPass: KEYS,
        contenders: names.map((name) => ({
          name,
          kind: name.startsWith('ours') ? 'ours' : 'anchor',
          expectPerPass: KEYS,
          batch: batches[name]!,
        })),
        pairs: [
          { ours: names[0]!, anchor: names[1]!, target: 1 },
          { ours: names[2]!, anchor: names[3]!, target: 1 },
        ],
        notes: [
          `redis-server ${server.address} (loopback, started by the bench); ${KEYS} keys written through each cache ` +
            '(so in its L1 and in Redis) before timing; sequential awaited calls; every call must hit',
          'ours: createCache({ tiers: [memoryStore(), redisStore({ client })], bus: redisBus({ client }) }) ' +
            '(ttl 1h), client new Redis({ host, port }); keys set after the bus subscription stood',
          "bentocache: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, maxSize: '10mb' }))" +
            '.useL2Layer(redisDriver({ connection })).useBus(redisBusDriver({ connection })), ttl 1h in ms, default ' +
            'serialization; its { key } / { key, factory } objects built before the loop',
        ],
      },
      opts,
    )
    const whole = commandDelta(before, await commandCalls(admin))
    result.notes.push(
      `Redis commands while both caches were populated (${KEYS} sets each, untimed): ${describeDelta(population)}`,
      `Redis commands over the whole timed run (warm-ups and rounds of all four contenders): ${describeDelta(whole)}`,
    )
    if (loaderCalls !== 0) throw new Error(`[bench] R4: a loader ran ${loaderCalls} times during hit-only batches`)
    for (const name of names) {
      const c = result.contenders.find((x) => x.name === name)!
      let hits = 0
      const delta = await commandsDuring(admin, async () => {
        hits = await batches[name]!(c.passesPerBatch)
      })
      if (hits !== c.opsPerBatch) throw new Error(`[bench] R4: ${name} missed in the check batch`)
      result.notes.push(
        `${name}: Redis commands during one extra batch of ${c.opsPerBatch} calls (INFO commandstats): ${describeDelta(delta)}`,
      )
    }
    return result
  } finally {
    await ours.close()
    await bento.disconnectAll()
    oursClient.disconnect()
    admin.disconnect()
    await server.stop()
  }
}
