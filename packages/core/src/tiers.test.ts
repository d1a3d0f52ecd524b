// Tiers over real servers: a memory L1 over a real Redis L2, two "instances" (two caches, two L1s, two buses) in
// this process sharing that Redis. Multi-process cases are in distributed.test.ts.
import { type RedisServer, startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type Cache, type CacheOptions, createCache } from './cache.js'
import { isCacheError } from './errors.js'
import { memoryStore } from './stores/memory.js'
import { redisStore } from './stores/redis.js'
import { redisBus } from './stores/redis-bus.js'
import { deferred, pollUntil, rejection } from './test-helpers.js'
import type { BusMessage } from './types.js'

let server: RedisServer
const clients: Redis[] = []
const caches: Cache[] = []

beforeAll(async () => {
  server = await startRedis()
})

afterEach(async () => {
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
})

afterAll(async () => {
  for (const client of clients.splice(0)) client.disconnect()
  await server?.stop()
})

function client(): Redis {
  const c = new Redis(server.port, server.host, { maxRetriesPerRequest: 1, lazyConnect: false })
  c.on('error', () => {})
  clients.push(c)
  return c
}

let run = 0
/** One app instance: its own memory L1, the shared Redis L2, its own bus connection. */
function instance(namespace: string, extra: Partial<CacheOptions> = {}, withBus = true) {
  const l1 = memoryStore()
  const redis = client()
  const cache = createCache({
    namespace,
    tiers: [l1, redisStore({ client: redis })],
    ...(withBus ? { bus: redisBus({ client: redis }) } : {}),
    ...extra,
  })
  caches.push(cache)
  return { cache, l1, redis }
}
const ns = (name: string) => `${name}-${process.pid}-${run++}`

/** Waits until both instances' buses are subscribed: a message from `a` reaches `b`. */
async function linked(a: Cache, b: Cache): Promise<void> {
  const probe = `probe-${run++}`
  await b.set(probe, 'old')
  await b.get(probe) // now in b's L1
  await a.set(probe, 'new')
  expect(await pollUntil(async () => (await b.get(probe)) === 'new', 5000, 20)).toBe(true)
}

describe('tiers: read, backfill, write', () => {
  it('reads L2 on an L1 miss and copies the entry up with its remaining TTL', async () => {
    const name = ns('backfill')
    const a = instance(name, {}, false)
    const b = instance(name, {}, false)
    await a.cache.set('k', { n: 1 }, { ttl: '10m', grace: '1m', tags: ['t'] })
    const stored = await a.l1.get(`${name}:k`)
    expect(await b.l1.get(`${name}:k`)).toBeUndefined()
    expect(await b.cache.get('k')).toEqual({ n: 1 })
    const copied = await b.l1.get(`${name}:k`)
    expect(copied?.freshUntil).toBe(stored?.freshUntil)
    expect(copied?.staleUntil).toBe(stored?.staleUntil)
    expect(copied?.tags).toEqual([`${name}:t`])
    const stats = b.cache.stats()
    expect(stats.tiers.map((t) => [t.name, t.hits, t.misses])).toEqual([
      ['memory', 0, 1],
      ['redis', 1, 0],
    ])
    // The next read is served by L1.
    expect(await b.cache.get('k')).toEqual({ n: 1 })
    expect(b.cache.stats().tiers[0]!.hits).toBe(1)
  })

  it('three tiers: a hit in L3 is copied into L2 and L1; writes reach all three', async () => {
    const name = ns('three')
    const l1 = memoryStore()
    const l2 = memoryStore({ name: 'memory-l2' })
    const redis = client()
    const cache = createCache({ namespace: name, tiers: [l1, l2, redisStore({ client: redis })] })
    caches.push(cache)
    const other = createCache({ namespace: name, tiers: [memoryStore(), redisStore({ client: redis })] })
    caches.push(other)
    await other.set('k', 'from-another-instance', { ttl: '10m' })
    expect(await cache.get('k')).toBe('from-another-instance')
    await pollUntil(async () => (await l2.get(`${name}:k`)) !== undefined, 2000, 5)
    expect((await l1.get(`${name}:k`))?.value).toBe('from-another-instance')
    expect((await l2.get(`${name}:k`))?.value).toBe('from-another-instance')
    expect(cache.stats().tiers.map((t) => [t.name, t.hits, t.misses])).toEqual([
      ['memory', 0, 1],
      ['memory-l2', 0, 1],
      ['redis', 1, 0],
    ])
    await cache.set('w', 1)
    expect((await l1.get(`${name}:w`))?.value).toBe(1)
    expect((await l2.get(`${name}:w`))?.value).toBe(1)
    expect(await redis.exists(`${name}:w`)).toBe(1)
  })

  it('caps an entry in a tier with maxTtl, and the cap never makes it fresher', async () => {
    const name = ns('cap')
    const l1 = memoryStore()
    const cache = createCache({
      namespace: name,
      tiers: [{ store: l1, maxTtl: '2s' }, redisStore({ client: client() })],
    })
    caches.push(cache)
    const before = Date.now()
    await cache.set('k', 1, { ttl: '1h' })
    const inL1 = await l1.get(`${name}:k`)
    expect(inL1!.staleUntil).toBeLessThanOrEqual(Date.now() + 2000)
    expect(inL1!.staleUntil).toBeGreaterThanOrEqual(before + 2000)
    expect(inL1!.freshUntil).toBeLessThanOrEqual(inL1!.staleUntil)
    const inRedis = await cache.stats()
    expect(inRedis.tiers).toHaveLength(2)
  })

  it('getOrSet loads once on a miss in every tier and writes to all of them', async () => {
    const name = ns('load')
    const a = instance(name, {}, false)
    let calls = 0
    const values = await Promise.all(
      Array.from({ length: 50 }, () =>
        a.cache.getOrSet('k', async () => {
          calls++
          return 'v'
        }),
      ),
    )
    expect(new Set(values)).toEqual(new Set(['v']))
    expect(calls).toBe(1)
    expect(await a.l1.get(`${name}:k`)).toBeDefined()
    const raw = await a.redis.exists(`${name}:k`)
    expect(raw).toBe(1)
  })

  it('a value Redis refuses (not serialisable) reaches no tier and set rejects', async () => {
    const name = ns('refused')
    const a = instance(name, {}, false)
    await a.cache.set('k', 'old')
    const err = await rejection(a.cache.set('k', { f: () => 1 }))
    expect(err.code).toBe('E_SERIALIZE')
    // Nothing half-written: both tiers still answer the old value.
    expect(await a.cache.get('k')).toBe('old')
    expect((await a.l1.get(`${name}:k`))?.value).toBe('old')
  })

  it('getMany asks each tier only for what the faster missed, and copies hits up', async () => {
    const name = ns('many')
    const a = instance(name, {}, false)
    const b = instance(name, {}, false)
    await a.cache.setMany([
      { key: 'x', value: 1 },
      { key: 'y', value: 2 },
    ])
    await b.cache.set('z', 3)
    await b.cache.get('x') // x in b's L1 now
    expect(await b.cache.getMany(['x', 'y', 'z', 'w'])).toEqual([1, 2, 3, undefined])
    expect((await b.l1.get(`${name}:y`))?.value).toBe(2)
  })

  it('delete, deleteMany and clear reach every tier', async () => {
    const name = ns('drop')
    const a = instance(name, {}, false)
    await a.cache.setMany([
      { key: 'x', value: 1 },
      { key: 'y', value: 2 },
      { key: 'z', value: 3 },
    ])
    expect(await a.cache.delete('x')).toBe(true)
    expect(await a.cache.deleteMany(['y'])).toBe(1)
    expect(await a.redis.exists(`${name}:x`, `${name}:y`)).toBe(0)
    expect(await a.l1.get(`${name}:x`)).toBeUndefined()
    await a.cache.clear()
    expect(await a.redis.exists(`${name}:z`)).toBe(0)
    expect(await a.cache.get('z')).toBeUndefined()
  })

  it('rejects bad tier options clearly', () => {
    const store = memoryStore()
    expect(() => createCache({ tiers: [] })).toThrow(/non-empty array/)
    expect(() => createCache({ tiers: [store, store] })).toThrow(/twice/)
    expect(() => createCache({ store, tiers: [store] })).toThrow(/not both/)
    expect(() => createCache({ tiers: [{ store, maxTtl: 'soon' as never }] })).toThrow(/maxTtl/)
    expect(() => createCache({ tiers: [{} as never] })).toThrow(/tiers\[0\]/)
    expect(() => createCache({ bus: {} as never })).toThrow(/Bus contract/)
  })
})

describe('the bus: L1 coherence between instances', () => {
  it('a set on one instance drops the key from the other L1s', async () => {
    const name = ns('bus-set')
    const a = instance(name)
    const b = instance(name)
    await linked(a.cache, b.cache)
    await a.cache.set('k', 1)
    expect(await b.cache.get('k')).toBe(1)
    await a.cache.set('k', 2)
    expect(await pollUntil(async () => (await b.cache.get('k')) === 2, 5000, 10)).toBe(true)
    await a.cache.delete('k')
    expect(await pollUntil(async () => (await b.cache.get('k')) === undefined, 5000, 10)).toBe(true)
  })

  it('invalidateTags on one instance: no instance serves an entry written before it, not even in grace', async () => {
    const name = ns('bus-tags')
    const a = instance(name)
    const b = instance(name)
    await linked(a.cache, b.cache)
    await a.cache.set('u', 'before', { ttl: 100, grace: '1h', tags: ['user:1'] })
    // b reads it into L1 (a read racing a's own bus message is, rightly, not copied up: retry until it is).
    const inL1 = async () => (await b.cache.get('u')) === 'before' && (await b.l1.get(`${name}:u`)) !== undefined
    expect(await pollUntil(inL1, 5000, 10)).toBe(true)
    // Now b holds it in L1, stale and within grace: getOrSet would serve it.
    await new Promise((resolve) => setTimeout(resolve, 120))
    expect((await b.l1.get(`${name}:u`))?.value).toBe('before')
    await a.cache.invalidateTags(['user:1'])
    await pollUntil(async () => (await b.l1.get(`${name}:u`)) === undefined, 5000, 10)
    let loads = 0
    const after = await b.cache.getOrSet('u', () => {
      loads++
      return 'after'
    })
    expect(after).toBe('after')
    expect(loads).toBe(1)
    expect(await a.cache.getOrSet('u', () => 'again')).toBe('after')
  })

  it("clear() on a tenant's namespace drops the tenant everywhere and nothing else", async () => {
    const name = ns('bus-tenant')
    const a = instance(name)
    const b = instance(name)
    await linked(a.cache, b.cache)
    const t42a = a.cache.namespace('tenant:42')
    const t42b = b.cache.namespace('tenant:42')
    const t4 = b.cache.namespace('tenant:4')
    await t42a.set('doc', 'secret')
    await t4.set('doc', 'other')
    expect(await t42b.get('doc')).toBe('secret')
    await t42a.clear()
    expect(await pollUntil(async () => (await t42b.get('doc')) === undefined, 5000, 10)).toBe(true)
    expect(await t4.get('doc')).toBe('other')
    // No crafted id reaches another tenant.
    expect(await b.cache.namespace('tenant').get('42:doc')).toBeUndefined()
  })

  it('a versioned namespace makes every old key unreachable at once', async () => {
    const name = ns('bus-version')
    const a = instance(name)
    const v1 = a.cache.namespace('v1')
    await v1.set('k', 'old')
    const v2 = a.cache.namespace('v2')
    expect(await v2.get('k')).toBeUndefined()
    expect(await v2.getOrSet('k', () => 'new')).toBe('new')
  })

  it('a load overtaken by another instance’s write is returned but not cached over it', async () => {
    const name = ns('bus-overtake')
    const a = instance(name)
    const b = instance(name)
    await linked(a.cache, b.cache)
    const gate = deferred<string>()
    const loading = b.cache.getOrSet('k', () => gate.promise)
    await new Promise((resolve) => setTimeout(resolve, 20))
    await a.cache.set('k', 'newer')
    const heard = await pollUntil(async () => (await b.l1.get(`${name}:k`)) === undefined, 2000, 10)
    expect(heard).toBe(true)
    // Give the message time to overtake b's load, then let the load finish with its older value.
    await new Promise((resolve) => setTimeout(resolve, 50))
    gate.resolve('older')
    expect(await loading).toBe('older')
    expect(await b.cache.get('k')).toBe('newer')
    expect(await a.cache.get('k')).toBe('newer')
  })

  it('a gap in the bus drops the local tier (this instance may have missed invalidations)', async () => {
    const name = ns('bus-gap')
    const messages: BusMessage[] = []
    let gap: (() => void) | undefined
    const fakeBus = {
      name: 'manual',
      publish: async (m: BusMessage) => {
        messages.push(m)
      },
      subscribe: async (h: { message(m: BusMessage): void; gap(): void }) => {
        gap = h.gap
        return async () => {}
      },
    }
    const l1 = memoryStore()
    const cache = createCache({ namespace: name, tiers: [l1, redisStore({ client: client() })], bus: fakeBus })
    caches.push(cache)
    await pollUntil(async () => gap !== undefined, 1000, 5)
    await cache.set('k', 1)
    expect(messages).toContainEqual({ kind: 'keys', keys: [`${name}:k`] })
    expect(await l1.get(`${name}:k`)).toBeDefined()
    gap!()
    expect(await l1.get(`${name}:k`)).toBeUndefined()
    // Still served, from Redis.
    expect(await cache.get('k')).toBe(1)
  })
})

describe('the bus subscription', () => {
  it('a subscription refused at start-up (Redis down) is retried, reported, and drops L1 once it stands', async () => {
    const name = ns('bus-retry')
    let tries = 0
    const bus = {
      name: 'flaky',
      publish: async () => {},
      subscribe: async () => {
        tries++
        if (tries < 2) throw new Error('redis down')
        return async () => {}
      },
    }
    const l1 = memoryStore()
    const cache = createCache({ namespace: name, tiers: [l1, redisStore({ client: client() })], bus })
    caches.push(cache)
    const errors: string[] = []
    cache.on('error', ({ operation }) => errors.push(operation))
    await l1.set(`${name}:k`, {
      value: 'stale',
      createdAt: 0,
      freshUntil: Date.now() + 60_000,
      staleUntil: Date.now() + 60_000,
    })
    expect(await pollUntil(async () => tries >= 2, 5000, 20)).toBe(true)
    expect(await pollUntil(async () => (await l1.get(`${name}:k`)) === undefined, 2000, 10)).toBe(true)
    expect(errors).toContain('subscribe')
  })

  it('close() during the retries ends them', async () => {
    let tries = 0
    const bus = {
      name: 'down',
      publish: async () => {},
      subscribe: async (): Promise<() => Promise<void>> => {
        tries++
        throw new Error('redis down')
      },
    }
    const cache = createCache({ namespace: ns('bus-down'), bus })
    await pollUntil(async () => tries >= 1, 1000, 5)
    await cache.close()
    const at = tries
    await new Promise((resolve) => setTimeout(resolve, 700))
    expect(tries).toBe(at)
  })
})

describe('cross-instance stampede lock (one process, two caches)', () => {
  it('two instances missing together run the loader once', async () => {
    const name = ns('lock')
    const a = instance(name, { lock: true })
    const b = instance(name, { lock: true })
    await linked(a.cache, b.cache)
    let calls = 0
    const loader = async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 100))
      return 'v'
    }
    const results = await Promise.all([
      ...Array.from({ length: 20 }, () => a.cache.getOrSet('cold', loader)),
      ...Array.from({ length: 20 }, () => b.cache.getOrSet('cold', loader)),
    ])
    expect(new Set(results)).toEqual(new Set(['v']))
    expect(calls).toBe(1)
    // The waiter's value landed in its own L1 too.
    expect((await b.l1.get(`${name}:cold`))?.value).toBe('v')
  })

  it('a waiter loads by itself after `wait` when the holder never finishes', async () => {
    const name = ns('lock-wait')
    const a = instance(name)
    const b = instance(name)
    const never = deferred<string>()
    const held = a.cache.getOrSet('k', () => never.promise, { lock: { ttl: '30s', wait: '10s' } })
    await pollUntil(async () => (await a.redis.exists(`%lock:${name}:k`)) === 1, 2000, 10)
    expect(await b.cache.getOrSet('k', () => 'mine', { lock: { ttl: '30s', wait: 200 } })).toBe('mine')
    never.resolve('late')
    await held
  })

  it('bad lock options are refused before anything runs', async () => {
    const a = instance(ns('lock-bad'), {}, false)
    let ran = false
    const err = await rejection(
      a.cache.getOrSet(
        'k',
        () => {
          ran = true
          return 1
        },
        { lock: { ttl: 'forever' as never } },
      ),
    )
    expect(err.code).toBe('E_INVALID_OPTION')
    expect(ran).toBe(false)
  })
})

describe('strategies', () => {
  it('read-through: get and getMany load through the configured loader; namespaces may override it', async () => {
    const name = ns('rt')
    const seen: string[] = []
    const a = instance(
      name,
      {
        loader: async (key) => {
          seen.push(key)
          return `v:${key}`
        },
      },
      false,
    )
    expect(await a.cache.get('x')).toBe('v:x')
    expect(await a.cache.get('x')).toBe('v:x')
    expect(await a.cache.getMany(['x', 'y'])).toEqual(['v:x', 'v:y'])
    expect(seen).toEqual(['x', 'y'])
    const users = a.cache.namespace('users', { loader: (id) => ({ id }) })
    expect(await users.get('7')).toEqual({ id: '7' })
    expect(await a.cache.namespace('other').get('z')).toBe('v:z')
  })

  it('write-through: source first; a failed source write leaves the cache untouched', async () => {
    const name = ns('wt')
    const a = instance(name, {}, false)
    const db = new Map<string, unknown>()
    await a.cache.writeThrough('k', 1, (v, key) => {
      db.set(key, v)
    })
    expect(db.get('k')).toBe(1)
    expect(await a.cache.get('k')).toBe(1)
    const err = await rejection(
      a.cache.writeThrough('k', 2, () => {
        throw new Error('db down')
      }),
    )
    expect(err.code).toBe('E_WRITE_FAILED')
    expect((err.cause as Error).message).toBe('db down')
    expect(await a.cache.get('k')).toBe(1)
    expect(db.get('k')).toBe(1)
    // A value the cache refuses after the source took it: no tier keeps the old value.
    await expect(a.cache.writeThrough('k', { f: () => 1 }, (v) => db.set('k', v))).rejects.toSatisfy((e: unknown) =>
      isCacheError(e, 'E_SERIALIZE'),
    )
    expect(await a.cache.get('k')).toBeUndefined()
  })

  it('write-behind over a Redis tier: queued in a stream, flushed in batches, drained by close()', async () => {
    const name = ns('wb')
    const flushed: { key: string; value: unknown }[] = []
    const a = instance(
      name,
      {
        writeBehind: {
          interval: '50ms',
          flush: async (batch) => {
            for (const { key, value } of batch) flushed.push({ key, value })
          },
        },
      },
      false,
    )
    for (let i = 0; i < 10; i++) await a.cache.writeBehind(`k${i}`, i)
    expect(await a.cache.get('k3')).toBe(3)
    expect(await a.redis.exists(`%wb:${name}:`)).toBe(1)
    await a.cache.flush()
    expect(flushed.map((f) => f.key).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`).sort())
    await a.cache.writeBehind('last', 'x')
    await a.cache.close()
    expect(flushed.at(-1)).toEqual({ key: 'last', value: 'x' })
  })

  it('write-behind without a flush option is refused clearly', async () => {
    const a = instance(ns('wb-none'), {}, false)
    expect((await rejection(a.cache.writeBehind('k', 1))).code).toBe('E_INVALID_OPTION')
  })

  it('refresh keeps a named key fresh on a schedule until stopped', async () => {
    const name = ns('refresh')
    const a = instance(name, {}, false)
    let n = 0
    const stop = a.cache.refresh('cfg', () => ++n, { every: 50, ttl: 200 })
    expect(await pollUntil(async () => ((await a.cache.get<number>('cfg')) ?? 0) >= 3, 5000, 10)).toBe(true)
    stop()
    const after = n
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect(n).toBeLessThanOrEqual(after + 1)
    expect(() => a.cache.refresh('cfg', () => 1, { every: 0 })).toThrow(/every/)
  })

  it('warm: values and loaders, bounded concurrency, progress, failures in the report', async () => {
    const name = ns('warm')
    const a = instance(name, {}, false)
    let running = 0
    let most = 0
    const progress: number[] = []
    await a.cache.set('fresh', 'already')
    const report = await a.cache.warm(
      [
        { key: 'v', value: 1 },
        ...Array.from({ length: 8 }, (_, i) => ({
          key: `l${i}`,
          loader: async () => {
            running++
            most = Math.max(most, running)
            await new Promise((resolve) => setTimeout(resolve, 10))
            running--
            return i
          },
        })),
        { key: 'fresh', loader: () => 'not run' },
        {
          key: 'bad',
          loader: () => {
            throw new Error('nope')
          },
        },
      ],
      { concurrency: 3, onProgress: ({ done }) => progress.push(done) },
    )
    expect(report).toMatchObject({ total: 11, done: 11, stored: 9, skipped: 1, failed: 1 })
    expect(report.errors[0]!.key).toBe('bad')
    expect(most).toBeLessThanOrEqual(3)
    expect(progress).toEqual(Array.from({ length: 11 }, (_, i) => i + 1))
    expect(await a.cache.get('l7')).toBe(7)
    expect(await a.cache.get('fresh')).toBe('already')
  })

  it('warm on a schedule runs again until the signal aborts', async () => {
    const a = instance(ns('warm-every'), {}, false)
    let runs = 0
    const controller = new AbortController()
    await a.cache.warm(
      () => {
        runs++
        return [{ key: 'k', value: runs }]
      },
      { every: 30, signal: controller.signal },
    )
    expect(await pollUntil(async () => runs >= 3, 5000, 10)).toBe(true)
    controller.abort()
    const at = runs
    await new Promise((resolve) => setTimeout(resolve, 120))
    expect(runs).toBeLessThanOrEqual(at + 1)
  })
})
