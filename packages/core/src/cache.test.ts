import { afterEach, describe, expect, it, vi } from 'vitest'
import { type Cache, createCache } from './cache.js'
import { CacheError, isCacheError } from './errors.js'
import { memoryStore } from './stores/memory.js'
import { deferred, manualClock, rejection } from './test-helpers.js'
import type { CacheEvents, LoaderContext, Store, StoredEntry } from './types.js'

const caches: Cache[] = []
function make(options: Parameters<typeof createCache>[0] = {}): Cache {
  const cache = createCache(options)
  caches.push(cache)
  return cache
}
afterEach(async () => {
  vi.useRealTimers()
  await Promise.all(caches.splice(0).map((c) => c.close()))
})

describe('get / set / has / delete', () => {
  it('round-trips values, including null and falsy ones', async () => {
    const cache = make()
    await cache.set('a', { n: 1 })
    await cache.set('null', null)
    await cache.set('zero', 0)
    await cache.set('empty', '')
    expect(await cache.get('a')).toEqual({ n: 1 })
    expect(await cache.get('null')).toBeNull()
    expect(await cache.get('zero')).toBe(0)
    expect(await cache.get('empty')).toBe('')
    expect(await cache.get('absent')).toBeUndefined()
    expect(await cache.has('null')).toBe(true)
    expect(await cache.has('absent')).toBe(false)
  })

  it('concurrent reads each get their own value (the memory store’s hot path shares one view object)', async () => {
    const cache = make()
    await cache.setMany([
      { key: 'a', value: 'A' },
      { key: 'b', value: 'B' },
    ])
    const reads = await Promise.all([
      cache.get('a'),
      cache.get('b'),
      cache.has('a'),
      cache.getOrSet('a', () => 'x'),
      cache.get('a'),
      cache.getOrSet('b', () => 'y'),
    ])
    expect(reads).toEqual(['A', 'B', true, 'A', 'A', 'B'])
    // A listener that reads the cache while a hit is being answered does not change that answer.
    const seen: unknown[] = []
    cache.on('hit', ({ key }) => {
      if (key === 'a') void cache.get('b').then((v) => seen.push(v))
    })
    expect(await cache.get('a')).toBe('A')
    expect(await cache.getOrSet('a', () => 'x')).toBe('A')
    await Promise.resolve()
    expect(seen).toEqual(['B', 'B'])
  })

  it('delete reports whether something was there', async () => {
    const cache = make()
    await cache.set('k', 1)
    expect(await cache.delete('k')).toBe(true)
    expect(await cache.delete('k')).toBe(false)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('expires after ttl; get does not return stale values', async () => {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '1s', grace: '1m' })
    await cache.set('k', 'v')
    clock.advance(999)
    expect(await cache.get('k')).toBe('v')
    clock.advance(2)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.has('k')).toBe(false)
  })

  it('accepts per-call ttl as a string or ms', async () => {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }) })
    await cache.set('a', 1, { ttl: '5m' })
    await cache.set('b', 2, { ttl: 100 })
    clock.advance(101)
    expect(await cache.get('a')).toBe(1)
    expect(await cache.get('b')).toBeUndefined()
  })

  it('getMany / setMany / deleteMany', async () => {
    const cache = make()
    await cache.setMany([
      { key: 'a', value: 1 },
      { key: 'b', value: 2, ttl: '1m' },
    ])
    expect(await cache.getMany(['a', 'x', 'b'])).toEqual([1, undefined, 2])
    expect(await cache.deleteMany(['a', 'x'])).toBe(1)
    expect(await cache.getMany(['a', 'b'])).toEqual([undefined, 2])
  })

  it('setMany checks every item before writing any', async () => {
    const cache = make()
    const err = await rejection(
      cache.setMany([
        { key: 'ok', value: 1 },
        { key: '', value: 2 },
      ]),
    )
    expect(err.code).toBe('E_INVALID_KEY')
    expect(await cache.get('ok')).toBeUndefined()
    const err2 = await rejection(
      cache.setMany([
        { key: 'ok', value: 1 },
        { key: 'u', value: undefined },
      ]),
    )
    expect(err2.code).toBe('E_INVALID_VALUE')
    expect(await cache.get('ok')).toBeUndefined()
  })
})

describe('getOrSet', () => {
  it('loads once on a miss and caches the value', async () => {
    const cache = make()
    const loader = vi.fn(async () => 'v')
    expect(await cache.getOrSet('k', loader)).toBe('v')
    expect(await cache.getOrSet('k', loader)).toBe('v')
    expect(loader).toHaveBeenCalledTimes(1)
    const stats = cache.stats()
    expect(stats).toMatchObject({ hits: 1, misses: 1, loads: 1, sets: 1, size: 1 })
    expect(stats.hitRate).toBe(0.5)
  })

  it('single-flight: 1 000 concurrent callers share one loader run', async () => {
    const cache = make()
    const gate = deferred<string>()
    const loader = vi.fn(() => gate.promise)
    const calls = Array.from({ length: 1000 }, () => cache.getOrSet('cold', loader))
    gate.resolve('value')
    const values = await Promise.all(calls)
    expect(loader).toHaveBeenCalledTimes(1)
    expect(new Set(values)).toEqual(new Set(['value']))
    expect(cache.stats()).toMatchObject({ misses: 1000, coalesced: 999, loads: 1 })
  })

  it('different keys load independently', async () => {
    const cache = make()
    const loader = vi.fn(async ({ key }: LoaderContext<string>) => key.toUpperCase())
    expect(await Promise.all([cache.getOrSet('a', loader), cache.getOrSet('b', loader)])).toEqual(['A', 'B'])
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('caches null but never undefined', async () => {
    const cache = make()
    const nullLoader = vi.fn(async () => null)
    expect(await cache.getOrSet('n', nullLoader)).toBeNull()
    expect(await cache.getOrSet('n', nullLoader)).toBeNull()
    expect(nullLoader).toHaveBeenCalledTimes(1)
    const undefLoader = vi.fn(async () => undefined)
    expect(await cache.getOrSet('u', undefLoader)).toBeUndefined()
    expect(await cache.getOrSet('u', undefLoader)).toBeUndefined()
    expect(undefLoader).toHaveBeenCalledTimes(2)
    expect(await cache.has('u')).toBe(false)
  })

  it('a loader error rejects every waiter with the error as cause, and caches nothing', async () => {
    const cache = make()
    const boom = new Error('db down')
    const gate = deferred<string>()
    const loader = vi.fn(() => gate.promise)
    const a = cache.getOrSet('k', loader)
    const b = cache.getOrSet('k', loader)
    gate.reject(boom)
    for (const p of [a, b]) {
      const err = await rejection(p)
      expect(err.code).toBe('E_LOADER_ERROR')
      expect(err.cause).toBe(boom)
      expect(err.message).toContain('db down')
    }
    expect(loader).toHaveBeenCalledTimes(1)
    expect(await cache.has('k')).toBe(false)
    expect(cache.stats()).toMatchObject({ loadErrors: 1, errors: 1 })
    // the next call tries again
    expect(await cache.getOrSet('k', async () => 'ok')).toBe('ok')
  })

  it('a loader that throws a non-Error (sync or async) gets a clear CacheError', async () => {
    const cache = make()
    const sync = await rejection(
      cache.getOrSet('a', () => {
        throw 'just a string'
      }),
    )
    expect(sync.code).toBe('E_LOADER_ERROR')
    expect(sync.cause).toBe('just a string')
    expect(sync.message).toContain('non-Error')
    const asyncErr = await rejection(cache.getOrSet('b', async () => Promise.reject({ status: 500 })))
    expect(asyncErr.code).toBe('E_LOADER_ERROR')
    expect(asyncErr.cause).toEqual({ status: 500 })
    expect(await cache.getOrSet('a', () => 'recovered')).toBe('recovered')
  })

  it('ctx.skip() returns the value without caching it', async () => {
    const cache = make()
    let n = 0
    const loader = (ctx: LoaderContext<number>) => {
      ctx.skip()
      return ++n
    }
    expect(await cache.getOrSet('k', loader)).toBe(1)
    expect(await cache.getOrSet('k', loader)).toBe(2)
    expect(await cache.has('k')).toBe(false)
  })

  it('ctx.ttl and ctx.tags shape the entry from the value', async () => {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '1h' })
    await cache.getOrSet('k', (ctx) => {
      ctx.ttl = '10s'
      ctx.tags.push('from-value')
      return 'v'
    })
    clock.advance(9_000)
    expect(await cache.get('k')).toBe('v')
    await cache.invalidateTags(['from-value'])
    expect(await cache.get('k')).toBeUndefined()

    await cache.getOrSet('k2', (ctx) => {
      ctx.ttl = '10s'
      return 'v2'
    })
    clock.advance(10_001)
    expect(await cache.get('k2')).toBeUndefined()
  })

  it('ctx carries the key, an AbortSignal and no stale value on a cold load', async () => {
    const cache = make({ namespace: 'ns' })
    let seen: LoaderContext<string> | undefined
    await cache.getOrSet<string>('user:1', (ctx) => {
      seen = ctx
      return 'x'
    })
    expect(seen?.key).toBe('user:1')
    expect(seen?.signal).toBeInstanceOf(AbortSignal)
    expect(seen?.signal.aborted).toBe(false)
    expect(seen?.stale).toBeUndefined()
  })
})

describe('grace: stale-while-revalidate and stale-if-error', () => {
  function graceCache() {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '1m', grace: '10m' })
    return { cache, clock }
  }

  it('serves the stale value at once and refreshes once in the background', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    const gate = deferred<string>()
    const loader = vi.fn((ctx: LoaderContext<string>) => {
      expect(ctx.stale).toBe('v1')
      return gate.promise
    })
    const answers = await Promise.all(Array.from({ length: 50 }, () => cache.getOrSet('k', loader)))
    expect(new Set(answers)).toEqual(new Set(['v1']))
    expect(loader).toHaveBeenCalledTimes(1)
    gate.resolve('v2')
    await vi.waitFor(async () => expect(await cache.get('k')).toBe('v2'))
    expect(await cache.getOrSet('k', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
    expect(cache.stats().staleHits).toBe(50)
  })

  it('stale-if-error: a failing refresh keeps the stale value and counts the error', async () => {
    const { cache, clock } = graceCache()
    const errors: CacheEvents['error'][] = []
    cache.on('error', (e) => errors.push(e))
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    const failing = vi.fn(async () => {
      throw new Error('origin down')
    })
    expect(await cache.getOrSet('k', failing)).toBe('v1')
    await vi.waitFor(() => expect(errors).toHaveLength(1))
    expect(errors[0]?.operation).toBe('load')
    expect(errors[0]?.error).toBeInstanceOf(CacheError)
    expect(cache.stats().loadErrors).toBe(1)
    // still served while in grace
    expect(await cache.getOrSet('k', failing)).toBe('v1')
  })

  it('stale-if-error with a soft timeout: the error answers with the stale value', async () => {
    const { cache, clock } = graceCache()
    const stale: string[] = []
    cache.on('stale', (e) => stale.push(e.reason))
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    const value = await cache.getOrSet(
      'k',
      async () => {
        throw new Error('nope')
      },
      { timeout: '5s' },
    )
    expect(value).toBe('v1')
    expect(stale).toEqual(['error'])
  })

  it('past grace the entry is gone: the caller waits for the loader', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000 + 600_000)
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v2')
  })

  it('soft timeout: a fast refresh answers fresh, a slow one answers stale and finishes behind', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    expect(await cache.getOrSet('k', async () => 'v2', { timeout: '2s' })).toBe('v2')

    clock.advance(61_000)
    const gate = deferred<string>()
    const slow = vi.fn(() => gate.promise)
    const reasons: string[] = []
    cache.on('stale', (e) => reasons.push(e.reason))
    expect(await cache.getOrSet('k', slow, { timeout: 20 })).toBe('v2')
    expect(reasons).toEqual(['timeout'])
    gate.resolve('v3')
    await vi.waitFor(async () => expect(await cache.get('k')).toBe('v3'))
  })
})

describe('timeouts', () => {
  it('hardTimeout rejects with E_LOADER_TIMEOUT and aborts the loader signal', async () => {
    const cache = make()
    let signal: AbortSignal | undefined
    const never = (ctx: LoaderContext<string>) => {
      signal = ctx.signal
      return new Promise<string>(() => {})
    }
    const err = await rejection(cache.getOrSet('k', never, { hardTimeout: 30 }))
    expect(err.code).toBe('E_LOADER_TIMEOUT')
    expect(signal?.aborted).toBe(true)
    expect(isCacheError(signal?.reason, 'E_LOADER_TIMEOUT')).toBe(true)
    // consistent afterwards: nothing cached, the next load runs
    expect(await cache.has('k')).toBe(false)
    expect(await cache.getOrSet('k', () => 'ok', { hardTimeout: 1000 })).toBe('ok')
  })

  it('a cache-level hardTimeout applies to every getOrSet', async () => {
    const cache = make({ hardTimeout: 20 })
    const err = await rejection(cache.getOrSet('k', () => new Promise(() => {})))
    expect(err.code).toBe('E_LOADER_TIMEOUT')
  })

  it('a late result after the hard timeout is not cached', async () => {
    const cache = make()
    const gate = deferred<string>()
    await rejection(cache.getOrSet('k', () => gate.promise, { hardTimeout: 10 }))
    gate.resolve('late')
    await new Promise((r) => setTimeout(r, 10))
    expect(await cache.has('k')).toBe(false)
  })
})

describe('jitter and early refresh', () => {
  it('jitter spreads the TTL within ± the fraction', async () => {
    const clock = manualClock()
    const store = memoryStore({ clock: clock.now })
    const cache = make({ clock: clock.now, store, ttl: 100_000, jitter: 0.2, namespace: 'j' })
    for (let i = 0; i < 200; i++) await cache.set(`k${i}`, i)
    const ttls = Array.from({ length: 200 }, (_, i) => {
      const e = store.peek(`j:k${i}`) as StoredEntry
      return e.freshUntil - e.createdAt
    })
    expect(Math.min(...ttls)).toBeGreaterThanOrEqual(80_000)
    expect(Math.max(...ttls)).toBeLessThanOrEqual(120_000)
    expect(new Set(ttls).size).toBeGreaterThan(100)
  })

  it('earlyRefresh refreshes a fresh entry in the background as expiry nears', async () => {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '10s' })
    let n = 0
    // A loader that costs ~20 ms of real time: XFetch weighs the distance to expiry against that cost.
    const loader = vi.fn(() => new Promise<number>((r) => setTimeout(() => r(++n), 20)))
    expect(await cache.getOrSet('k', loader, { earlyRefresh: true })).toBe(1)
    // 9 s before expiry the chance is e^(-9000/20): never in practice.
    clock.advance(1_000)
    const early = await Promise.all(
      Array.from({ length: 50 }, () => cache.getOrSet('k', loader, { earlyRefresh: true })),
    )
    expect(new Set(early)).toEqual(new Set([1]))
    expect(loader).toHaveBeenCalledTimes(1)
    // 1 ms before expiry each call refreshes with ~95% chance; callers still get the fresh value at once.
    clock.advance(8_999)
    const values: number[] = []
    for (let i = 0; i < 50 && loader.mock.calls.length < 2; i++) {
      values.push(await cache.getOrSet('k', loader, { earlyRefresh: true }))
    }
    expect(values.every((v) => v === 1)).toBe(true)
    expect(loader).toHaveBeenCalledTimes(2)
    await vi.waitFor(async () => expect(await cache.get('k')).toBe(2))
    // without earlyRefresh nothing is refreshed before expiry
    const plain = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '10s' })
    const plainLoader = vi.fn(async () => 'x')
    await plain.getOrSet('k', plainLoader)
    clock.advance(9_999)
    for (let i = 0; i < 50; i++) await plain.getOrSet('k', plainLoader)
    expect(plainLoader).toHaveBeenCalledTimes(1)
  })
})

describe('tags', () => {
  it('invalidateTags drops every entry carrying one of the tags, and only those', async () => {
    const cache = make()
    await cache.set('t1', 1, { tags: ['user:1'] })
    await cache.set('t2', 2, { tags: ['user:1', 'list'] })
    await cache.set('t3', 3, { tags: ['user:2'] })
    await cache.set('t4', 4)
    expect(await cache.invalidateTags(['user:1'])).toBe(2)
    expect(await cache.getMany(['t1', 't2', 't3', 't4'])).toEqual([undefined, undefined, 3, 4])
    expect(await cache.invalidateTags(['nothing'])).toBe(0)
  })

  it('an invalidated entry is not served in grace either', async () => {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '1m', grace: '1h' })
    await cache.getOrSet('k', () => 'old', { tags: ['t'] })
    clock.advance(61_000)
    await cache.invalidateTags(['t'])
    expect(await cache.getOrSet('k', () => 'new', { tags: ['t'] })).toBe('new')
  })

  it('a load in flight during an invalidation does not cache its (outdated) result', async () => {
    const cache = make()
    const gate = deferred<string>()
    const pending = cache.getOrSet('k', () => gate.promise, { tags: ['t'] })
    await cache.invalidateTags(['t'])
    gate.resolve('read before the invalidation')
    expect(await pending).toBe('read before the invalidation')
    expect(await cache.has('k')).toBe(false)
  })

  it('a delete or set during a load wins over the load', async () => {
    const cache = make()
    const gate = deferred<string>()
    const pending = cache.getOrSet('k', () => gate.promise)
    await cache.set('k', 'written meanwhile')
    gate.resolve('loaded')
    await pending
    expect(await cache.get('k')).toBe('written meanwhile')

    const gate2 = deferred<string>()
    const pending2 = cache.getOrSet('k2', () => gate2.promise)
    await cache.delete('k2')
    gate2.resolve('loaded')
    await pending2
    expect(await cache.has('k2')).toBe(false)
  })

  describe('read-your-writes: a caller arriving after a write never joins a load that started before it', () => {
    // The origin changes, then the cache is told; a load already running read the old origin.
    function origin() {
      let db = 'v0'
      const gates: ReturnType<typeof deferred<void>>[] = []
      const loader = vi.fn(async (ctx: LoaderContext<string>) => {
        const seen = db
        const gate = deferred<void>()
        gates.push(gate)
        await gate.promise
        if (ctx.key.endsWith('late-tag')) ctx.tags.push('t')
        return seen
      })
      return {
        loader,
        write(value: string) {
          db = value
        },
        releaseAll() {
          for (const gate of gates) gate.resolve()
        },
      }
    }

    it.each([
      ['invalidateTags', (c: Cache) => c.invalidateTags(['t'])],
      ['delete', (c: Cache) => c.delete('k')],
      ['clear', (c: Cache) => c.clear()],
      ['set', (c: Cache) => c.set('k', 'v1')],
    ])('after %s', async (_name, invalidate) => {
      const cache = make()
      const o = origin()
      const before = cache.getOrSet('k', o.loader, { tags: ['t'] })
      await Promise.resolve()
      o.write('v1')
      await invalidate(cache)
      const after = cache.getOrSet('k', o.loader, { tags: ['t'] })
      o.releaseAll()
      expect(await before).toBe('v0') // it started before the write: either answer is honest
      expect(await after).toBe('v1')
      expect(await cache.get('k')).toBe('v1')
    })

    it('after invalidateTags of a tag the loader pushed on ctx.tags before the invalidation', async () => {
      const cache = make()
      const gate = deferred<string>()
      let db = 'v0'
      const loader = vi.fn((ctx: LoaderContext<string>) => {
        ctx.tags.push('t')
        const seen = db
        return gate.promise.then(() => seen)
      })
      const before = cache.getOrSet('k', loader)
      db = 'v1'
      await cache.invalidateTags(['t'])
      const after = cache.getOrSet('k', loader)
      gate.resolve('')
      expect([await before, await after]).toEqual(['v0', 'v1'])
      expect(await cache.get('k')).toBe('v1')
    })

    it('an invalidation of another key or tag leaves the load shared', async () => {
      const cache = make()
      const gate = deferred<string>()
      const loader = vi.fn(() => gate.promise)
      const a = cache.getOrSet('k', loader, { tags: ['t'] })
      await cache.invalidateTags(['other'])
      await cache.delete('other-key')
      await cache.namespace('elsewhere').clear()
      const b = cache.getOrSet('k', loader, { tags: ['t'] })
      gate.resolve('v')
      expect([await a, await b]).toEqual(['v', 'v'])
      expect(loader).toHaveBeenCalledTimes(1)
      expect(await cache.get('k')).toBe('v')
    })

    it('a detached load that finishes first does not let a later one cache outdated data', async () => {
      const cache = make()
      const first = deferred<string>()
      const second = deferred<string>()
      const loads = [first, second]
      const loader = vi.fn(() => loads[loader.mock.calls.length - 1]!.promise)
      const a = cache.getOrSet('k', loader, { tags: ['t'] })
      await cache.invalidateTags(['t'])
      const b = cache.getOrSet('k', loader, { tags: ['t'] })
      second.resolve('new')
      expect(await b).toBe('new')
      first.resolve('old')
      expect(await a).toBe('old')
      expect(await cache.get('k')).toBe('new')
    })
  })

  it('tags are scoped to their namespace', async () => {
    const cache = make()
    const a = cache.namespace('a')
    const b = cache.namespace('b')
    await a.set('k', 1, { tags: ['t'] })
    await b.set('k', 2, { tags: ['t'] })
    await a.invalidateTags(['t'])
    expect(await a.get('k')).toBeUndefined()
    expect(await b.get('k')).toBe(2)
  })
})

describe('namespaces', () => {
  it('scope keys: the same key in two namespaces holds two values', async () => {
    const cache = make()
    const t1 = cache.namespace('tenant:1')
    const t2 = cache.namespace('tenant:2')
    await t1.set('k', 'one')
    await t2.set('k', 'two')
    await cache.set('k', 'root')
    expect([await t1.get('k'), await t2.get('k'), await cache.get('k')]).toEqual(['one', 'two', 'root'])
  })

  it('no crafted name or key reaches another namespace', async () => {
    const store = memoryStore()
    const cache = make({ store })
    const pairs: [Cache, string][] = [
      [cache.namespace('a'), 'b:c'],
      [cache.namespace('a:b'), 'c'],
      [cache.namespace('a').namespace('b'), 'c'],
      [cache.namespace('a.b'), 'c'],
      [cache.namespace('a'), 'b.c'],
      [cache, 'a:b:c'],
      [cache, 'a.b:c'],
      [cache.namespace('a%3Ab'), 'c'],
    ]
    for (const [i, [ns, key]] of pairs.entries()) await ns.set(key, i)
    for (const [i, [ns, key]] of pairs.entries()) expect(await ns.get(key)).toBe(i)
    expect(store.stats().size).toBe(pairs.length)
  })

  it('clear() of a namespace drops it and its children, and nothing outside it', async () => {
    const cache = make()
    const tenant = cache.namespace('t1')
    const child = tenant.namespace('sessions')
    const other = cache.namespace('t10')
    await tenant.set('k', 1)
    await child.set('k', 2)
    await other.set('k', 3)
    await cache.set('t1', 4)
    await cache.set('t1:k', 5)
    await tenant.clear()
    expect(await tenant.get('k')).toBeUndefined()
    expect(await child.get('k')).toBeUndefined()
    expect(await other.get('k')).toBe(3)
    expect(await cache.get('t1')).toBe(4)
    expect(await cache.get('t1:k')).toBe(5)
  })

  it('clear() of the root drops only this cache’s namespace in a shared store', async () => {
    const store = memoryStore()
    const app = make({ store, namespace: 'app' })
    const other = createCache({ store, namespace: 'other' })
    await app.set('k', 1)
    await other.set('k', 2)
    await app.clear()
    expect(await app.get('k')).toBeUndefined()
    expect(await other.get('k')).toBe(2)
  })

  it('rejects empty or non-string namespace names', () => {
    const cache = make()
    for (const bad of ['', 42, undefined]) {
      expect(() => cache.namespace(bad as string)).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
    }
    expect(() => createCache({ namespace: '' })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
  })
})

describe('wrap', () => {
  it('caches a function by the key built from its arguments', async () => {
    const cache = make()
    const fn = vi.fn(async (a: number, b: number) => a + b)
    const add = cache.wrap(fn, { key: (a, b) => `add:${a}:${b}`, ttl: '1m' })
    expect(await add(1, 2)).toBe(3)
    expect(await add(1, 2)).toBe(3)
    expect(await add(2, 2)).toBe(4)
    expect(fn).toHaveBeenCalledTimes(2)
  })

  it('needs a key function', () => {
    const cache = make()
    expect(() => cache.wrap(async () => 1, {} as never)).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
  })
})

describe('events and stats', () => {
  it('emits hit, miss, set, delete, load, stale, evict and expire; on() returns an unsubscribe', async () => {
    const clock = manualClock()
    const cache = make({
      clock: clock.now,
      store: memoryStore({ clock: clock.now, maxEntries: 2 }),
      ttl: '1m',
      grace: '1m',
    })
    const seen: string[] = []
    const names = ['hit', 'miss', 'set', 'delete', 'load', 'stale', 'evict', 'expire'] as const
    const offs = names.map((name) => cache.on(name, () => seen.push(name)))
    await cache.getOrSet('a', () => 1) // miss, load, set
    await cache.getOrSet('a', () => 1) // hit
    clock.advance(61_000)
    await cache.getOrSet('a', () => 2) // hit (stale), stale, then load + set behind
    await vi.waitFor(() => expect(seen.filter((n) => n === 'load')).toHaveLength(2))
    await cache.delete('a') // delete
    await cache.set('b', 1)
    await cache.set('c', 1)
    await cache.set('d', 1) // evicts b
    clock.advance(200_000)
    await cache.get('c') // expire, miss
    for (const name of names) expect(seen, name).toContain(name)
    for (const off of offs) off()
    const before = seen.length
    await cache.get('zzz')
    expect(seen.length).toBe(before)
    const stats = cache.stats()
    expect(stats).toMatchObject({ evictions: 1, expirations: 1, deletes: 1, staleHits: 1 })
    expect(stats.tiers[0]?.name).toBe('memory')
  })

  it('bytes: the memory tier measures every entry by default, and cache.stats() reports it', async () => {
    const store = memoryStore()
    const cache = make({ store })
    expect(cache.stats()).toMatchObject({ bytes: 0, size: 0 })
    const body = 'x'.repeat(50_000)
    await cache.set('page', { body })
    await cache.getOrSet('user', () => ({ id: 1, name: 'Ada' }))
    const stats = cache.stats()
    expect(stats.bytes).toBeGreaterThan(100_000)
    expect(stats.bytes).toBe(store.stats().bytes)
    expect(stats.tiers[0]?.bytes).toBe(stats.bytes)
    await cache.delete('page')
    expect(cache.stats().bytes).toBeGreaterThan(0)
    expect(cache.stats().bytes).toBeLessThan(1000)
    await cache.clear()
    expect(cache.stats()).toMatchObject({ bytes: 0, size: 0 })
  })

  it('a throwing listener does not break the call', async () => {
    const cache = make()
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    cache.on('miss', () => {
      throw new Error('listener bug')
    })
    expect(await cache.getOrSet('k', () => 1)).toBe(1)
    expect(warn).toHaveBeenCalled()
    warn.mockRestore()
  })

  it('counts load time', async () => {
    const cache = make()
    await cache.getOrSet('k', () => new Promise((r) => setTimeout(() => r(1), 5)))
    expect(cache.stats().loadTimeMs).toBeGreaterThan(0)
  })
})

describe('bad input gets a clear error and leaves the cache consistent', () => {
  const badKeys: unknown[] = ['', 42, null, undefined, {}, ['a'], 'x'.repeat(1025)]

  it.each(badKeys.map((k) => [k]))('key %j -> E_INVALID_KEY on every method', async (key) => {
    const cache = make()
    await cache.set('keep', 'me')
    const k = key as string
    const calls = [
      () => cache.get(k),
      () => cache.set(k, 1),
      () => cache.getOrSet(k, () => 1),
      () => cache.has(k),
      () => cache.delete(k),
      () => cache.getMany([k]),
      () => cache.deleteMany([k]),
    ]
    for (const call of calls) {
      const err = await rejection(call())
      expect(err.code).toBe('E_INVALID_KEY')
      expect(err.message).toMatch(/^\[@cache\/core\] key/)
    }
    expect(await cache.get('keep')).toBe('me')
    expect(cache.stats().size).toBe(1)
  })

  it('maxKeyLength is configurable', async () => {
    const cache = make({ maxKeyLength: 4 })
    await cache.set('abcd', 1)
    expect((await rejection(cache.set('abcde', 1))).code).toBe('E_INVALID_KEY')
  })

  it('undefined values are refused', async () => {
    const cache = make()
    await cache.set('k', 'kept')
    const err = await rejection(cache.set('k', undefined))
    expect(err.code).toBe('E_INVALID_VALUE')
    expect(err.message).toContain('null')
    expect(await cache.get('k')).toBe('kept')
  })

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, '5 parsecs', '', '-5s', 'ms'])(
    'duration %s -> E_INVALID_OPTION at creation and per call',
    async (bad) => {
      for (const option of ['ttl', 'grace', 'timeout', 'hardTimeout'] as const) {
        expect(() => createCache({ [option]: bad as never })).toThrow(
          expect.objectContaining({ code: 'E_INVALID_OPTION', message: expect.stringContaining(option) }),
        )
      }
      const cache = make()
      expect((await rejection(cache.set('k', 1, { ttl: bad as never }))).code).toBe('E_INVALID_OPTION')
      expect((await rejection(cache.getOrSet('k', () => 1, { hardTimeout: bad as never }))).code).toBe(
        'E_INVALID_OPTION',
      )
      expect(await cache.has('k')).toBe(false)
    },
  )

  it('bad jitter, earlyRefresh and maxKeyLength are refused at creation', () => {
    for (const options of [{ jitter: -0.1 }, { jitter: 2 }, { earlyRefresh: -1 }, { maxKeyLength: 0 }]) {
      expect(() => createCache(options)).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
    }
  })

  it('a loader that is not a function is refused', async () => {
    const cache = make()
    expect((await rejection(cache.getOrSet('k', 'nope' as never))).code).toBe('E_INVALID_OPTION')
  })

  it('a value over maxEntrySize: E_VALUE_TOO_LARGE from set, nothing evicted; getOrSet still answers', async () => {
    const store = memoryStore({ maxEntries: 3, maxEntrySize: 1_000 })
    const cache = make({ store })
    await cache.set('a', 'small')
    await cache.set('b', 'small')
    const err = await rejection(cache.set('big', 'x'.repeat(10_000)))
    expect(err.code).toBe('E_VALUE_TOO_LARGE')
    expect(await cache.getMany(['a', 'b'])).toEqual(['small', 'small'])
    expect(store.stats()).toMatchObject({ size: 2, evictions: 0 })

    const errors: string[] = []
    cache.on('error', (e) => errors.push((e.error as CacheError).code))
    expect(await cache.getOrSet('big2', () => 'y'.repeat(10_000))).toHaveLength(10_000)
    expect(errors).toEqual(['E_VALUE_TOO_LARGE'])
    expect(store.stats()).toMatchObject({ size: 2, evictions: 0 })
  })

  it('tags must be non-empty strings', async () => {
    const cache = make()
    expect((await rejection(cache.set('k', 1, { tags: [''] }))).code).toBe('E_INVALID_VALUE')
    expect((await rejection(cache.invalidateTags([42 as never]))).code).toBe('E_INVALID_VALUE')
    expect(await cache.has('k')).toBe(false)
  })
})

describe('a failing store', () => {
  function brokenStore(): Store {
    const fail = () => Promise.reject(new CacheError('E_STORE_UNAVAILABLE', 'store is down'))
    return { name: 'broken', get: fail, set: fail, delete: fail, clear: fail }
  }

  it('getOrSet fails open: answers from the loader and counts the errors', async () => {
    const cache = make({ store: brokenStore() })
    const ops: string[] = []
    cache.on('error', (e) => ops.push(e.operation))
    expect(await cache.getOrSet('k', () => 'from origin')).toBe('from origin')
    expect(ops).toEqual(['get', 'set'])
    expect(cache.stats().errors).toBe(2)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('set surfaces the store error', async () => {
    const cache = make({ store: brokenStore() })
    expect((await rejection(cache.set('k', 1))).code).toBe('E_STORE_UNAVAILABLE')
  })

  it('invalidateTags on a store without tag support says so', async () => {
    const cache = make({ store: brokenStore() })
    expect((await rejection(cache.invalidateTags(['t']))).code).toBe('E_UNSUPPORTED')
  })

  it('a store that does not implement the contract is refused', () => {
    expect(() => createCache({ store: {} as Store })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
  })
})

describe('close', () => {
  it('aborts loaders in flight, rejects later calls, and is idempotent', async () => {
    const cache = createCache()
    let signal: AbortSignal | undefined
    const pending = cache.getOrSet('k', (ctx) => {
      signal = ctx.signal
      return new Promise(() => {})
    })
    await cache.close()
    expect((await rejection(pending)).code).toBe('E_CLOSED')
    expect(signal?.aborted).toBe(true)
    expect((await rejection(cache.get('k'))).code).toBe('E_CLOSED')
    expect((await rejection(cache.getOrSet('k', () => 1))).code).toBe('E_CLOSED')
    await cache.close()
  })
})
