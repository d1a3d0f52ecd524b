// Failure tests on real processes: a Redis killed mid-load, paused (SIGSTOP), restarted, black-holed by a proxy.
import { type FaultProxy, freePort, type RedisServer, startFaultProxy, startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../cache.js'
import { isCacheError } from '../errors.js'
import { liveEntry } from '../test-helpers.js'
import { type RedisStore, redisStore } from './redis.js'

const DEADLINE = 250

let server: RedisServer
let proxy: FaultProxy

beforeAll(async () => {
  server = await startRedis()
  proxy = await startFaultProxy({ target: server })
})

afterAll(async () => {
  await proxy?.close()
  await server?.stop()
})

const entry = (value: unknown) => liveEntry(value, {}, 60_000, 120_000)
const bytes = (i: number) => new Uint8Array([i & 0xff, (i >> 8) & 0xff])
let n = 0
const key = (s: string) => `f${process.pid}:${n++}:${s}`

/** Every settled call either succeeded or failed with E_STORE_UNAVAILABLE (nothing else, nothing pending). */
function expectFailFast(results: PromiseSettledResult<unknown>[]): { ok: number; unavailable: number } {
  let ok = 0
  let unavailable = 0
  for (const r of results) {
    if (r.status === 'fulfilled') ok++
    else {
      expect(isCacheError(r.reason, 'E_STORE_UNAVAILABLE'), String(r.reason)).toBe(true)
      expect((r.reason as Error).cause).toBeDefined()
      unavailable++
    }
  }
  return { ok, unavailable }
}

/** Liveness: polls `op` until it succeeds, for at most `ms`. */
async function eventually(op: () => Promise<unknown>, ms = 3000): Promise<void> {
  const until = Date.now() + ms
  let last: unknown
  while (Date.now() < until) {
    try {
      await op()
      return
    } catch (err) {
      last = err
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  throw new Error(`still failing after ${ms}ms: ${String(last)}`)
}

async function roundTrip(store: RedisStore): Promise<void> {
  const k = key('alive')
  await store.set(k, entry(bytes(7)))
  expect((await store.get(k))?.value).toEqual(bytes(7))
}

/** Mixed load: `count` concurrent gets and sets (and a batch call now and then). */
function load(store: RedisStore, count: number): Promise<unknown>[] {
  return Array.from({ length: count }, (_, i) => {
    const k = key(`load:${i % 20}`)
    if (i % 50 === 0) return store.getMany([k, key('other')])
    return i % 2 === 0 ? store.set(k, entry(bytes(i))) : store.get(k)
  })
}

describe('redisStore when the server fails', () => {
  it('paused beyond the deadline: calls reject with E_STORE_UNAVAILABLE; resumed: they succeed again', async () => {
    const store = redisStore({ redis: server.url, commandTimeout: DEADLINE })
    // A client the user owns (ioredis defaults): the store's deadline protects it too.
    const userClient = new Redis(server.url)
    const userStore = redisStore({ client: userClient, commandTimeout: DEADLINE })
    try {
      await roundTrip(store)
      await roundTrip(userStore)
      await server.pause()
      try {
        const results = await Promise.allSettled([...load(store, 50), ...load(userStore, 50), store.clear('x:')])
        const { unavailable, ok } = expectFailFast(results)
        expect(ok).toBe(0)
        expect(unavailable).toBe(101)
      } finally {
        await server.resume()
      }
      await eventually(() => roundTrip(store))
      await eventually(() => roundTrip(userStore))
    } finally {
      await store.close()
      userClient.disconnect()
    }
  })

  it('killed during 200 concurrent calls: every call settles, then restarted: calls succeed again', async () => {
    const store = redisStore({ redis: server.url, commandTimeout: DEADLINE })
    try {
      await roundTrip(store)
      const first = load(store, 100)
      const killed = server.kill()
      const second = load(store, 100)
      await killed
      const third = load(store, 50)
      const results = await Promise.allSettled([...first, ...second, ...third])
      const { unavailable } = expectFailFast(results)
      expect(unavailable).toBeGreaterThan(0)
      // While it is down, calls keep failing fast.
      const down = await Promise.allSettled(load(store, 20))
      expect(expectFailFast(down).ok).toBe(0)
      await server.restart()
      await eventually(() => roundTrip(store))
    } finally {
      await store.close()
    }
  })

  it('black-holed by a proxy: calls reject with E_STORE_UNAVAILABLE; healed: they succeed again', async () => {
    const store = redisStore({ redis: proxy.url!, commandTimeout: DEADLINE })
    try {
      await eventually(() => roundTrip(store))
      proxy.blackhole()
      try {
        const results = await Promise.allSettled(load(store, 40))
        const { ok, unavailable } = expectFailFast(results)
        expect(ok).toBe(0)
        expect(unavailable).toBe(40)
      } finally {
        proxy.blackhole(false)
      }
      await eventually(() => roundTrip(store))
    } finally {
      await store.close()
    }
  })

  it('connections cut by the proxy: calls settle, and the store reconnects by itself', async () => {
    const store = redisStore({ redis: proxy.url!, commandTimeout: DEADLINE })
    try {
      await eventually(() => roundTrip(store))
      const pending = load(store, 60)
      proxy.cutAll()
      expectFailFast(await Promise.allSettled(pending))
      await eventually(() => roundTrip(store))
    } finally {
      await store.close()
    }
  })

  it('a Cache over a dead store answers from the loader and counts the errors', async () => {
    const port = await freePort()
    const store = redisStore({ redis: { host: '127.0.0.1', port }, commandTimeout: DEADLINE })
    const cache = createCache({ store })
    const errors: string[] = []
    cache.on('error', ({ error }) => {
      errors.push((error as { code?: string }).code ?? error.message)
    })
    try {
      expect(await cache.getOrSet('user:1', () => ({ id: 1 }))).toEqual({ id: 1 })
      expect(await cache.getOrSet('user:2', async () => 'two')).toBe('two')
      expect(cache.stats().errors).toBeGreaterThan(0)
      expect(errors).toContain('E_STORE_UNAVAILABLE')
    } finally {
      await cache.close()
      await store.close()
    }
  })
})
