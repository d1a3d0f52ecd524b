import { defaultCodec, redisStore } from '@cache/core/redis'
import { startRedis } from '@cache/testing'
import { Redis, type RedisOptions } from 'ioredis'
import { makeKeys, makeValues } from './data.js'
import { type HarnessOptions, inLanes, runThroughput, type ThroughputResult } from './harness.js'

const KEYS = 1_000
const CONCURRENCY = 100
const HOUR_MS = 3_600_000

/**
 * R1: `redisStore.get` on a hit against the fair baseline, raw ioredis `getBuffer` + `defaultCodec.decode` of the
 * same bytes, at concurrency 1 (sequential awaits) and 100 (100 calls in flight). A redis-server on loopback,
 * started here (@cache/testing) and stopped at the end.
 */
export async function r1(opts: HarnessOptions): Promise<ThroughputResult> {
  const server = await startRedis()
  // Identical options for both clients: ioredis defaults (enableAutoPipelining off), one connection each.
  const clientOptions: RedisOptions = { host: server.host, port: server.port }
  const oursClient = new Redis(clientOptions)
  const rawClient = new Redis(clientOptions)
  try {
    const keys = makeKeys(KEYS, 'cache:user:')
    const values = makeValues(KEYS)
    const store = redisStore({ client: oursClient })
    const now = Date.now()
    for (let i = 0; i < KEYS; i++) {
      await store.set(keys[i]!, {
        value: values[i],
        createdAt: now,
        freshUntil: now + HOUR_MS,
        staleUntil: now + HOUR_MS,
      })
    }
    // Both read the same keys, so the same bytes: the baseline decodes exactly what the store decodes.
    const probe = defaultCodec.decode((await rawClient.getBuffer(keys[7]!))!) as unknown[]
    if (!Array.isArray(probe) || (probe[5] as { id: number }).id !== 7) throw new Error('[bench] R1: bad probe')

    const result = await runThroughput(
      {
        id: 'R1',
        title: 'redisStore.get hit vs ioredis getBuffer + defaultCodec.decode, 1 000 keys, loopback',
        opsPerPass: KEYS,
        contenders: [
          {
            name: 'ours redisStore.get (c=1)',
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
            name: 'ioredis getBuffer + decode (c=1)',
            kind: 'anchor',
            expectPerPass: KEYS,
            async batch(passes) {
              let hits = 0
              for (let p = 0; p < passes; p++) {
                for (let i = 0; i < KEYS; i++) {
                  const bytes = await rawClient.getBuffer(keys[i]!)
                  if (bytes !== null && defaultCodec.decode(bytes) !== undefined) hits++
                }
              }
              return hits
            },
          },
          {
            name: `ours redisStore.get (c=${CONCURRENCY})`,
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
            name: `ioredis getBuffer + decode (c=${CONCURRENCY})`,
            kind: 'anchor',
            expectPerPass: KEYS,
            async batch(passes) {
              return inLanes(passes * KEYS, CONCURRENCY, async (n) => {
                const i = n % KEYS
                const bytes = await rawClient.getBuffer(keys[i]!)
                return bytes !== null && defaultCodec.decode(bytes) !== undefined
              })
            },
          },
        ],
        pairs: [
          { ours: 'ours redisStore.get (c=1)', anchor: 'ioredis getBuffer + decode (c=1)', target: 0.95 },
          {
            ours: `ours redisStore.get (c=${CONCURRENCY})`,
            anchor: `ioredis getBuffer + decode (c=${CONCURRENCY})`,
            target: 0.95,
          },
        ],
        notes: [
          `redis-server ${server.address} (loopback, started by the bench); two ioredis clients, each new Redis({ host, port }) ` +
            'with ioredis defaults (enableAutoPipelining off), one connection each',
          'ours: redisStore({ client }) (defaultCodec, commandTimeout 500ms); await store.get(key)',
          'baseline: await client.getBuffer(key), then defaultCodec.decode(bytes): the same bytes, the same decode',
          `values: small objects { id, name, active } stored as entries (${KEYS} keys 'cache:user:<i>'); every call must hit`,
          `c=${CONCURRENCY}: ${CONCURRENCY} async lanes pull the next index from a shared counter, so ${CONCURRENCY} calls stay in flight`,
        ],
      },
      opts,
    )
    await store.close()
    return result
  } finally {
    oursClient.disconnect()
    rawClient.disconnect()
    await server.stop()
  }
}
