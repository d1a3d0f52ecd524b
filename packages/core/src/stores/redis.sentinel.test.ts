// redisStore through Redis Sentinel (ioredis' own `sentinels` + `name` options) on real processes: a master, a
// replica and three sentinels. The master is killed; once Sentinel has promoted the replica, the store works again.
import { type RedisSentinel, startRedisSentinel } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isCacheError } from '../errors.js'
import { liveEntry } from '../test-helpers.js'
import { type RedisStore, redisStore } from './redis.js'

const DEADLINE = 300
/** A call that has not settled this long after its deadline hangs. */
const HANG = 10 * DEADLINE

let setup: RedisSentinel

beforeAll(async () => {
  setup = await startRedisSentinel({ replicas: 1, sentinels: 3, masterName: 'mymaster' })
}, 60_000)

afterAll(async () => {
  await setup?.stop()
})

const entry = (value: unknown) => liveEntry(value, {}, 60_000, 120_000)
let n = 0
const key = (s: string) => `s${process.pid}:${n++}:${s}`

/** The call's outcome: 'ok' or 'unavailable' (E_STORE_UNAVAILABLE); anything else, or no settling, fails the test. */
async function outcome(call: Promise<unknown>): Promise<'ok' | 'unavailable'> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`a store call did not settle within ${HANG}ms`)), HANG)
  })
  try {
    await Promise.race([call, hung])
    return 'ok'
  } catch (err) {
    if (isCacheError(err, 'E_STORE_UNAVAILABLE')) return 'unavailable'
    throw err
  } finally {
    clearTimeout(timer)
  }
}

async function roundTrip(store: RedisStore, value: number): Promise<'ok' | 'unavailable'> {
  const k = key('rt')
  if ((await outcome(store.set(k, entry(value)))) !== 'ok') return 'unavailable'
  const got = store.get(k)
  if ((await outcome(got)) !== 'ok') return 'unavailable'
  expect((await got)?.value).toBe(value)
  return 'ok'
}

/** Polls a set/get round trip until it succeeds (each call settled or failed with E_STORE_UNAVAILABLE). */
async function untilWorking(store: RedisStore, ms: number): Promise<{ failures: number }> {
  const until = Date.now() + ms
  let failures = 0
  for (;;) {
    if ((await roundTrip(store, failures)) === 'ok') return { failures }
    failures++
    if (Date.now() > until) throw new Error(`the store still fails after ${ms}ms (${failures} failed round trips)`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('redisStore through Redis Sentinel', () => {
  let store: RedisStore
  let userClient: Redis
  let userStore: RedisStore

  beforeAll(() => {
    // The store makes the client from ioredis' Sentinel options (and quits it on close()).
    store = redisStore({
      redis: {
        sentinels: setup.sentinels,
        name: setup.masterName,
        sentinelRetryStrategy: (times) => Math.min(times * 50, 500),
      },
      commandTimeout: DEADLINE,
    })
    // A Sentinel client the user made: the store's deadline protects it too.
    userClient = new Redis({
      sentinels: setup.sentinels,
      name: setup.masterName,
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 50, 500),
      sentinelRetryStrategy: (times) => Math.min(times * 50, 500),
    })
    userClient.on('error', () => {})
    userStore = redisStore({ client: userClient, commandTimeout: DEADLINE })
  })

  afterAll(async () => {
    await store?.close()
    userClient?.disconnect()
  })

  it('finds the master through the sentinels and runs set/get', async () => {
    await untilWorking(store, 5_000)
    await untilWorking(userStore, 5_000)
    const k = key('shared')
    await store.set(k, entry('through sentinel'))
    expect((await userStore.get(k))?.value).toBe('through sentinel')
    // The writes landed on the master Sentinel reports.
    const master = await setup.waitForMaster()
    expect(master).toBe(setup.master)
    const direct = new Redis({ host: master.host, port: master.port, lazyConnect: true })
    try {
      expect(await direct.exists(k)).toBe(1)
    } finally {
      direct.disconnect()
    }
  })

  it('after the master is killed and the replica promoted, the store works again; no call hangs meanwhile', async () => {
    const k = key('before')
    await store.set(k, entry('kept'))
    // Wait until the write reached the replica, so it survives the failover.
    const direct = new Redis({ host: setup.master.host, port: setup.master.port, lazyConnect: true })
    try {
      expect(await direct.wait(1, 5_000)).toBe(1)
    } finally {
      direct.disconnect()
    }

    await setup.master.kill()
    // While the master is down: every call settles, each with a value or E_STORE_UNAVAILABLE.
    const during = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        outcome(i % 2 === 0 ? store.set(key('during'), entry(i)) : userStore.get(key('during'))),
      ),
    )
    expect(during.every((o) => o === 'ok' || o === 'unavailable')).toBe(true)

    const promoted = await setup.waitForMaster(20_000)
    expect(promoted).toBe(setup.replicas[0])
    await untilWorking(store, 10_000)
    await untilWorking(userStore, 10_000)
    expect((await store.get(k))?.value).toBe('kept')
    expect((await userStore.get(k))?.value).toBe('kept')
  }, 45_000)
})
