import { afterEach, describe, expect, it, vi } from 'vitest'
import { type Cache, createCache } from './cache.js'
import { CacheError, isCacheError } from './errors.js'
import { memoryStore } from './stores/memory.js'
import { deferred, manualClock, rejection } from './test-helpers.js'
import type { CacheEvents, LoaderContext, Store, StoredEntry } from './types.js'

// Edge cases and regressions from a review of cache.ts. Each `// Regression:` comment says what used to go wrong
// (and how it was fixed); the other tests pin edge cases that cache.test.ts does not cover.

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

function graceCache(extra: Parameters<typeof createCache>[0] = {}) {
  const clock = manualClock()
  const store = memoryStore({ clock: clock.now })
  const cache = make({ clock: clock.now, store, ttl: '1m', grace: '10m', ...extra })
  return { cache, clock, store }
}

/** Settles `p` against a sentinel timer; timers fire in expiry order, so this is ordering, not a duration check. */
function raceWith<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))])
}

const tick = () => new Promise((r) => setImmediate(r))

// ---------------------------------------------------------------------------------------------------------------
// Bugs
// ---------------------------------------------------------------------------------------------------------------

describe('review: soft timeout counts one call once', () => {
  // Regression: answerStale() resolves with the stale value when the soft-timeout timer fires, but the refresh's
  // then-handlers still run later and count the same call again: hit() on success, serveStale('error') (hits,
  // staleHits and a second 'stale' event) on failure. Fix: keep a `settled` flag in answerStale and return early from
  // the refresh handlers once the timer has answered.
  it('a refresh that succeeds after the soft timeout does not count a second hit', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => 'v1') // miss
    clock.advance(61_000)
    const gate = deferred<string>()
    const hits: CacheEvents['hit'][] = []
    cache.on('hit', (e) => hits.push(e))
    expect(await cache.getOrSet('k', () => gate.promise, { timeout: 10 })).toBe('v1')
    gate.resolve('v2')
    await tick()
    expect(await cache.get('k')).toBe('v2') // one more (fresh) hit from get()
    expect(hits.map((h) => h.stale)).toEqual([true, false])
    expect(cache.stats()).toMatchObject({ hits: 2, staleHits: 1, misses: 1 })
  })

  // Regression: same race, failing refresh: one caller is counted as two stale hits and gets two 'stale' events.
  it('a refresh that fails after the soft timeout does not count a second stale hit', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    const gate = deferred<string>()
    const reasons: string[] = []
    const errors: string[] = []
    cache.on('stale', (e) => reasons.push(e.reason))
    cache.on('error', (e) => errors.push(e.operation))
    expect(await cache.getOrSet('k', () => gate.promise, { timeout: 10 })).toBe('v1')
    gate.reject(new Error('late failure'))
    await vi.waitFor(() => expect(errors).toEqual(['load']))
    await tick()
    expect(reasons).toEqual(['timeout'])
    expect(cache.stats()).toMatchObject({ hits: 1, staleHits: 1, loadErrors: 1 })
  })
})

describe('review: close()', () => {
  // Regression: close() aborts only the loads still in `flights`. A load detached by a write/delete/clear/invalidateTags
  // (overtake) keeps running: its signal is never aborted, its callers never get E_CLOSED (they hang if the
  // loader ignores the signal) and its hardTimeout timer stays armed. Fix: keep every running load in a Set (added in
  // load(), removed in finish()) and abort that Set in close(), not `flights`.
  it('aborts loads detached by an invalidation too', async () => {
    const cache = createCache()
    let signal: AbortSignal | undefined
    const pending = cache.getOrSet('k', (ctx) => {
      signal = ctx.signal
      return new Promise<string>(() => {})
    })
    pending.catch(() => {})
    await cache.delete('k') // detaches the load from `flights`
    await cache.close()
    expect(signal?.aborted).toBe(true)
    const outcome = await raceWith(
      pending.then(
        () => 'resolved',
        (err) => (isCacheError(err, 'E_CLOSED') ? 'E_CLOSED' : String(err)),
      ),
      50,
    )
    expect(outcome).toBe('E_CLOSED')
  })

  // Regression: close() calls store.close() unconditionally, and MemoryStore.close() clears the *whole* store and stops its
  // sweep. README and cache.test.ts share one store between caches of different namespaces; closing one of them
  // wipes the others' entries. Fix: only close a store the cache created itself (the default), or clear(prefix) and
  // leave a user-supplied store open (or ref-count it).
  it('closing one cache does not wipe another cache sharing the store', async () => {
    const store = memoryStore()
    const app = createCache({ store, namespace: 'app' })
    const other = make({ store, namespace: 'other' })
    await other.set('k', 2)
    await app.close()
    expect(await other.get('k')).toBe(2)
  })

  it('passes: closing aborts a background refresh; its stale caller already had its answer', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    let signal: AbortSignal | undefined
    const value = await cache.getOrSet('k', (ctx) => {
      signal = ctx.signal
      return new Promise<string>(() => {})
    })
    expect(value).toBe('v1')
    await cache.close()
    expect(signal?.aborted).toBe(true)
    expect(isCacheError(signal?.reason, 'E_CLOSED')).toBe(true)
  })

  it('passes: a result arriving after close is not written to the (closed) store', async () => {
    const store = memoryStore()
    const set = vi.spyOn(store, 'setSync')
    const cache = createCache({ store })
    const gate = deferred<string>()
    const pending = cache.getOrSet('k', () => gate.promise)
    await cache.close()
    gate.resolve('late')
    expect((await rejection(pending)).code).toBe('E_CLOSED')
    await tick()
    expect(set).not.toHaveBeenCalled()
  })
})

describe('review: the invalidation log', () => {
  // Regression: `log` is only emptied when `running` drops to 0. On a busy cache some load is (almost) always running, so
  // every set/delete/clear/invalidateTags is appended forever: memory grows without bound and invalidatedSince()
  // scans an ever longer array. Fix: drop the log prefix older than the oldest running load's logStart (keep running
  // loads in an ordered Set), or mark overtaken loads directly instead of logging.
  it('does not grow forever while loads overlap', async () => {
    const cache = make()
    const gates: ReturnType<typeof deferred<number>>[] = []
    const loads: Promise<number>[] = []
    const start = (i: number) => {
      const gate = deferred<number>()
      gates.push(gate)
      loads.push(cache.getOrSet(`load:${i}`, () => gate.promise))
    }
    start(0)
    for (let i = 1; i <= 500; i++) {
      start(i) // the next load starts before the previous one ends: `running` never reaches 0
      gates[i - 1]!.resolve(i - 1)
      await loads[i - 1]
      await cache.set(`written:${i}`, i)
    }
    // Only load 500 runs now; it started just before the last write, so at most that one record still matters.
    // Reaching into the internals is the only way to see the leak without a heap snapshot.
    const log = (cache as unknown as { s: { log: unknown[] } }).s.log
    expect(log.length).toBeLessThanOrEqual(1)
    gates[500]!.resolve(500)
    await loads[500]
    expect(log).toHaveLength(0)
  })
})

describe('review: per-call getOrSet options are checked up front, on every path', () => {
  // Regression: load() builds `run` (which calls the loader and arms the hardTimeout timer) before it namespaces
  // `options.tags`; a bad tag then returns Promise.reject(...) but the loader has already run, the timer stays armed,
  // and when `run` settles with an error nobody handles it (unhandled rejection). Fix: compute callTags (and parse
  // every per-call option) before creating `run`, ideally once at the top of getOrSet.
  it('a bad tag rejects without calling the loader or arming a timer', async () => {
    vi.useFakeTimers()
    const cache = make()
    // The store's own sweep timer exists from creation; the call must add none.
    const timers = vi.getTimerCount()
    const loader = vi.fn(() => new Promise<string>(() => {}))
    const err = await rejection(cache.getOrSet('k', loader, { tags: [''], hardTimeout: 1000 }))
    expect(err.code).toBe('E_INVALID_VALUE')
    expect(loader).not.toHaveBeenCalled()
    expect(vi.getTimerCount()).toBe(timers)
  })

  // Regression: on the synchronous (memory-store) path getOrSet calls answer() outside any try, and answer() parses
  // `earlyRefresh` on a fresh hit: a bad value makes getOrSet *throw synchronously* instead of returning a rejected
  // promise (and on a miss the same bad value is silently accepted). Fix: validate options before the fast path, or
  // wrap the sync path in try/catch -> Promise.reject.
  it('a bad earlyRefresh is a rejection, not a synchronous throw, and is refused on a miss too', async () => {
    const cache = make()
    await cache.set('k', 1)
    let p: Promise<unknown> | undefined
    expect(() => {
      p = cache.getOrSet('k', () => 2, { earlyRefresh: -1 })
    }).not.toThrow()
    expect((await rejection(p!)).code).toBe('E_INVALID_OPTION')
    const loader = vi.fn(() => 3)
    expect((await rejection(cache.getOrSet('miss', loader, { earlyRefresh: -1 }))).code).toBe('E_INVALID_OPTION')
    expect(loader).not.toHaveBeenCalled()
  })

  // Regression: a bad per-call ttl/grace/jitter is only parsed in makeEntry() after the loader ran; the failure is swallowed
  // as a 'set' error and the caller gets a value that silently was not cached. cache.set() rejects the same input
  // with E_INVALID_OPTION. Fix: parse ttl/grace/jitter in getOrSet before loading.
  it.each([
    ['ttl', { ttl: -1 }],
    ['grace', { grace: '5 parsecs' }],
    ['jitter', { jitter: 2 }],
  ])('a bad %s is refused before the loader runs', async (_name, options) => {
    const cache = make()
    const loader = vi.fn(() => 'v')
    expect((await rejection(cache.getOrSet('k', loader, options as never))).code).toBe('E_INVALID_OPTION')
    expect(loader).not.toHaveBeenCalled()
  })

  // Regression: hardTimeout (and timeout) are parsed only when a load starts; a fresh hit accepts any garbage, and on a
  // stale entry the rejected load is taken for a loader failure and the stale value is served (stale-if-error).
  // A fresh hit reads only `earlyRefresh` (documented: the hot path does not parse options it does not use); a stale
  // entry starts a refresh, so its options are checked first.
  it('a bad hardTimeout is refused on a stale entry (before the refresh) and on a miss', async () => {
    const { cache, clock } = graceCache()
    await cache.set('k', 'v1')
    expect((await rejection(cache.getOrSet('miss', () => 'x', { hardTimeout: -5 }))).code).toBe('E_INVALID_OPTION')
    clock.advance(61_000)
    expect((await rejection(cache.getOrSet('k', () => 'x', { hardTimeout: -5 }))).code).toBe('E_INVALID_OPTION')
  })

  // Regression: makeEntry iterates `options.tags` with for..of without checking it is an array, so a string is split into
  // one tag per character (set('k', v, { tags: 'user' }) tags the entry 'u','s','e','r'); invalidateTags checks
  // Array.isArray, set/setMany/getOrSet do not (getOrSet rejects with a raw TypeError after running the loader).
  // Fix: `if (tags !== undefined && !Array.isArray(tags)) throw new CacheError('E_INVALID_VALUE', ...)`.
  it('tags that are not an array are refused by set and getOrSet', async () => {
    const cache = make()
    expect((await rejection(cache.set('k', 1, { tags: 'user' as never }))).code).toBe('E_INVALID_VALUE')
    const loader = vi.fn(() => 1)
    expect((await rejection(cache.getOrSet('k2', loader, { tags: 'user' as never }))).code).toBe('E_INVALID_VALUE')
    expect(loader).not.toHaveBeenCalled()
  })
})

describe('review: timers longer than setTimeout can hold', () => {
  // Regression: parseDuration accepts '30d' (2.6e9 ms) but setTimeout caps at 2^31-1 ms and fires after 1 ms instead
  // (TimeoutOverflowWarning): hardTimeout '30d' times out every async loader at once, timeout '30d' serves stale at
  // once. Fix: clamp (Math.min(ms, 2 ** 31 - 1)) or treat longer durations as "no timer".
  it('hardTimeout of 30 days does not abort a 5 ms loader', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    try {
      const cache = make()
      const value = cache.getOrSet('k', () => new Promise<string>((r) => setTimeout(() => r('v'), 5)), {
        hardTimeout: '30d',
      })
      await expect(value).resolves.toBe('v')
    } finally {
      warn.mockRestore()
    }
  })

  it('soft timeout of 30 days waits for the refresh', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    try {
      const { cache, clock } = graceCache()
      await cache.set('k', 'v1')
      clock.advance(61_000)
      const value = cache.getOrSet('k', () => new Promise<string>((r) => setTimeout(() => r('v2'), 5)), {
        timeout: '30d',
      })
      await expect(value).resolves.toBe('v2')
    } finally {
      warn.mockRestore()
    }
  })
})

describe('review: the clock option', () => {
  // Regression: createCache({ clock }) builds the default store with `memoryStore()`, which keeps Date.now. Entries are
  // stamped with the cache's clock but expired with the wall clock: with a clock behind real time every write is
  // "already expired" and dropped at once; with one ahead, nothing ever expires. Fix:
  // `options.store ?? memoryStore({ clock: options.clock })`.
  it('the default store uses the cache clock', async () => {
    const clock = manualClock(1_000)
    const cache = make({ clock: clock.now, ttl: '1m' })
    await cache.set('k', 'v')
    expect(await cache.get('k')).toBe('v')
    expect(await cache.getOrSet('k2', () => 'loaded')).toBe('loaded')
    expect(await cache.has('k2')).toBe(true)
  })
})

describe('review: setMany through store.setMany', () => {
  // Regression: with a store that has setMany, a store failure is rethrown without error() (no `errors` count, no 'error'
  // event) and the items that *were* stored are not counted in `sets` nor emitted; set() and the per-item fallback
  // count both. Fix: wrap store.setMany in try/catch, this.error('setMany', err), then rethrow.
  it('counts and reports a store failure like set() does', async () => {
    const store = memoryStore({ maxEntrySize: 100 })
    const cache = make({ store })
    const errors: string[] = []
    cache.on('error', (e) => errors.push(e.operation))
    const err = await rejection(
      cache.setMany([
        { key: 'small', value: 'x' },
        { key: 'big', value: 'x'.repeat(1000) },
      ]),
    )
    expect(err.code).toBe('E_VALUE_TOO_LARGE')
    expect(errors).toHaveLength(1)
    expect(cache.stats().errors).toBe(1)
  })
})

describe('review: hardTimeout of a caller joining a running load', () => {
  // Regression: a caller that joins an in-flight load gets `flight.promise` as is; its own `hardTimeout` is ignored, so it
  // waits as long as the first caller's loader takes (forever if that caller set none). Fix: in answer(), when
  // joining, race flight.promise with a per-caller timer that rejects E_LOADER_TIMEOUT (without aborting the shared
  // loader), cleared when the flight settles.
  it('applies to the joiner', async () => {
    const cache = make()
    const gate = deferred<string>()
    const first = cache.getOrSet('k', () => gate.promise)
    const second = cache.getOrSet('k', () => 'unused', { hardTimeout: 10 })
    second.catch(() => {})
    const outcome = await raceWith(
      second.then(
        () => 'resolved',
        (err) => (isCacheError(err, 'E_LOADER_TIMEOUT') ? 'E_LOADER_TIMEOUT' : String(err)),
      ),
      50,
    )
    gate.resolve('v')
    expect(await first).toBe('v')
    expect(outcome).toBe('E_LOADER_TIMEOUT')
  })
})

describe('review: wrap', () => {
  // Regression: wrap's function calls `key(...args)` before getOrSet, outside any promise: a key function that throws makes
  // the wrapped async function throw synchronously. Fix: `async (...args) => this.getOrSet(key(...args), ...)` or a
  // try/catch returning Promise.reject.
  it('a throwing key function gives a rejected promise, not a synchronous throw', async () => {
    const cache = make()
    const wrapped = cache.wrap(async (n: number) => n, {
      key: () => {
        throw new Error('bad key fn')
      },
    })
    let p: Promise<number> | undefined
    expect(() => {
      p = wrapped(1)
    }).not.toThrow()
    await expect(p).rejects.toThrow('bad key fn')
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Gap tests (pass today)
// ---------------------------------------------------------------------------------------------------------------

describe('review gaps: single-flight and invalidation during load', () => {
  it('namespaced views share one flight for the same namespaced key, not for different namespaces', async () => {
    const cache = make()
    const gate = deferred<string>()
    const loader = vi.fn(() => gate.promise)
    const a1 = cache.namespace('a').getOrSet('k', loader)
    const a2 = cache.namespace('a').getOrSet('k', loader)
    const b = cache.namespace('b').getOrSet('k', loader)
    gate.resolve('v')
    expect(await Promise.all([a1, a2, b])).toEqual(['v', 'v', 'v'])
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('clear() of a parent detaches a child namespace load and its result is not cached', async () => {
    const cache = make()
    const child = cache.namespace('t1')
    const gate = deferred<string>()
    const before = child.getOrSet('k', () => gate.promise)
    await cache.clear()
    const after = child.getOrSet('k', async () => 'new')
    gate.resolve('old')
    expect(await before).toBe('old')
    expect(await after).toBe('new')
    expect(await child.get('k')).toBe('new')
  })

  it('clear() of a sibling namespace does not detach the load', async () => {
    const cache = make()
    const gate = deferred<string>()
    const loader = vi.fn(() => gate.promise)
    const a = cache.namespace('t1').getOrSet('k', loader)
    await cache.namespace('t10').clear()
    const b = cache.namespace('t1').getOrSet('k', loader)
    gate.resolve('v')
    expect([await a, await b]).toEqual(['v', 'v'])
    expect(loader).toHaveBeenCalledTimes(1)
    expect(await cache.namespace('t1').get('k')).toBe('v')
  })

  it('invalidateTags of a tag pushed on ctx.tags *after* the invalidation still keeps the result out', async () => {
    const cache = make()
    const gate = deferred<void>()
    const pending = cache.getOrSet('k', async (ctx) => {
      await gate.promise
      ctx.tags.push('t')
      return 'read before the invalidation'
    })
    await cache.invalidateTags(['t'])
    gate.resolve()
    expect(await pending).toBe('read before the invalidation')
    expect(await cache.has('k')).toBe(false)
  })

  it('a tag invalidation in another namespace does not overtake the load', async () => {
    const cache = make()
    const gate = deferred<string>()
    const pending = cache.namespace('a').getOrSet('k', () => gate.promise, { tags: ['t'] })
    await cache.namespace('b').invalidateTags(['t'])
    await cache.invalidateTags(['t']) // the root's 't' is not the namespace's 't'
    gate.resolve('v')
    expect(await pending).toBe('v')
    expect(await cache.namespace('a').get('k')).toBe('v')
  })

  it('the flight is removed after success, failure and hard timeout (the next call loads again)', async () => {
    const cache = make()
    const loader = vi.fn(async () => {
      throw new Error('x')
    })
    await rejection(cache.getOrSet('a', loader))
    await rejection(cache.getOrSet('a', loader))
    expect(loader).toHaveBeenCalledTimes(2)
    await rejection(cache.getOrSet('b', () => new Promise(() => {}), { hardTimeout: 5 }))
    expect(await cache.getOrSet('b', () => 'ok')).toBe('ok')
    const s = (cache as unknown as { s: { flights: Map<string, unknown>; running: Set<unknown>; log: unknown[] } }).s
    expect(s.flights.size).toBe(0)
    expect(s.running.size).toBe(0)
    expect(s.log).toHaveLength(0)
  })

  it('a hard timeout clears the loader signal with E_LOADER_TIMEOUT as reason and the late value is dropped', async () => {
    const cache = make()
    const gate = deferred<string>()
    let signal: AbortSignal | undefined
    const errors: string[] = []
    cache.on('error', (e) => errors.push((e.error as CacheError).code))
    const err = await rejection(
      cache.getOrSet(
        'k',
        (ctx) => {
          signal = ctx.signal
          return gate.promise
        },
        { hardTimeout: 5 },
      ),
    )
    expect(err.code).toBe('E_LOADER_TIMEOUT')
    expect(errors).toEqual(['E_LOADER_TIMEOUT'])
    gate.resolve('late')
    await tick()
    expect(await cache.has('k')).toBe(false)
    expect(isCacheError(signal?.reason, 'E_LOADER_TIMEOUT')).toBe(true)
    expect(cache.stats()).toMatchObject({ loads: 1, loadErrors: 1 })
  })
})

describe('review gaps: grace and stale', () => {
  it('a hard timeout during a background refresh serves stale (stale-if-error) and keeps the entry', async () => {
    const { cache, clock } = graceCache()
    await cache.set('k', 'v1')
    clock.advance(61_000)
    const reasons: string[] = []
    cache.on('stale', (e) => reasons.push(e.reason))
    expect(await cache.getOrSet('k', () => new Promise<string>(() => {}), { timeout: 40, hardTimeout: 5 })).toBe('v1')
    expect(reasons).toEqual(['error'])
    expect(await cache.getOrSet('k', () => 'v2', { timeout: 40 })).toBe('v2')
  })

  it('ctx.stale carries the stale value and the refresh may skip() caching', async () => {
    const { cache, clock } = graceCache()
    await cache.set('k', 'v1')
    clock.advance(61_000)
    const seen: unknown[] = []
    const loader = (ctx: LoaderContext<string>) => {
      seen.push(ctx.stale)
      ctx.skip()
      return 'v2'
    }
    expect(await cache.getOrSet('k', loader, { timeout: 40 })).toBe('v2')
    expect(seen).toEqual(['v1'])
    // skipped: still the stale entry
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.getOrSet('k', () => 'v3')).toBe('v1')
  })

  it('ctx.grace overrides the grace of the result', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', (ctx) => {
      ctx.grace = 0
      return 'v1'
    })
    clock.advance(61_000)
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v2') // no grace: a plain miss
  })

  it('null is a cached value in grace too', async () => {
    const { cache, clock } = graceCache()
    await cache.getOrSet('k', () => null)
    clock.advance(61_000)
    expect(await cache.getOrSet('k', () => 'refreshed')).toBeNull()
  })

  it('stale hit events carry stale: true and the namespace', async () => {
    const { cache, clock } = graceCache({ namespace: 'app' })
    const t = cache.namespace('t1')
    await t.set('k', 'v1')
    clock.advance(61_000)
    const hits: CacheEvents['hit'][] = []
    const stale: CacheEvents['stale'][] = []
    cache.on('hit', (e) => hits.push(e))
    cache.on('stale', (e) => stale.push(e))
    expect(await t.getOrSet('k', () => new Promise<string>(() => {}))).toBe('v1')
    expect(hits).toEqual([{ key: 'k', namespace: 'app.t1', stale: true }])
    expect(stale).toEqual([{ key: 'k', namespace: 'app.t1', reason: 'grace' }])
  })

  it('the load event of a background refresh says background: true', async () => {
    const { cache, clock } = graceCache()
    const loads: CacheEvents['load'][] = []
    cache.on('load', (e) => loads.push(e))
    await cache.getOrSet('k', () => 'v1')
    clock.advance(61_000)
    await cache.getOrSet('k', () => 'v2')
    await vi.waitFor(() => expect(loads).toHaveLength(2))
    expect(loads.map((l) => [l.ok, l.background])).toEqual([
      [true, false],
      [true, true],
    ])
  })
})

describe('review gaps: stats and events', () => {
  it('counters are shared by namespaces; has() counts nothing', async () => {
    const cache = make()
    const t = cache.namespace('t')
    await t.set('k', 1)
    await cache.has('k')
    await t.has('k')
    await t.get('k')
    await cache.get('k')
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, sets: 1, hitRate: 0.5 })
    expect(t.stats()).toEqual(cache.stats())
  })

  it('a read error counts as a miss and an error; the value is still loaded', async () => {
    const inner = memoryStore()
    const store: Store = {
      name: 'flaky',
      get: () => Promise.reject(new Error('read down')),
      set: (k, e) => inner.set(k, e),
      delete: (k) => inner.delete(k),
      clear: (p) => inner.clear(p),
    }
    const cache = make({ store })
    const errors: CacheEvents['error'][] = []
    cache.on('error', (e) => errors.push(e))
    expect(await cache.getOrSet('k', () => 'v')).toBe('v')
    expect(errors.map((e) => [e.operation, e.key])).toEqual([['get', 'k']])
    expect(cache.stats()).toMatchObject({ misses: 1, errors: 1, loads: 1, sets: 1 })
  })

  it('a non-Error thrown by a store is wrapped for the error event', async () => {
    const store: Store = {
      name: 'weird',
      get: () => Promise.reject('just a string'),
      set: async () => {},
      delete: async () => false,
      clear: async () => {},
    }
    const cache = make({ store })
    const errors: Error[] = []
    cache.on('error', (e) => errors.push(e.error))
    expect(await cache.get('k')).toBeUndefined()
    expect(errors[0]).toBeInstanceOf(CacheError)
    expect(errors[0]?.cause).toBe('just a string')
  })

  it('evict/expire events carry the store key and tier name', async () => {
    const clock = manualClock()
    const cache = make({
      clock: clock.now,
      store: memoryStore({ clock: clock.now, maxEntries: 1, name: 'l1' }),
      namespace: 'app',
      ttl: '1s',
    })
    const events: [string, CacheEvents['evict']][] = []
    cache.on('evict', (e) => events.push(['evict', e]))
    cache.on('expire', (e) => events.push(['expire', e]))
    await cache.set('a', 1)
    await cache.set('b', 2)
    clock.advance(1_001)
    await cache.get('b')
    expect(events).toEqual([
      ['evict', { key: 'app:a', tier: 'l1' }],
      ['expire', { key: 'app:b', tier: 'l1' }],
    ])
  })

  it('close() unsubscribes from the store: no events after it', async () => {
    const store = memoryStore({ maxEntries: 1 })
    const cache = createCache({ store })
    const evicts: string[] = []
    cache.on('evict', (e) => evicts.push(e.key))
    const other = make({ store, namespace: 'other' })
    await cache.close()
    await other.set('a', 1)
    await other.set('b', 2)
    expect(evicts).toEqual([])
  })
})

describe('review gaps: bad input', () => {
  it('invalidateTags / setMany / getMany / deleteMany refuse non-arrays', async () => {
    const cache = make()
    expect((await rejection(cache.invalidateTags('t' as never))).code).toBe('E_INVALID_VALUE')
    expect((await rejection(cache.setMany({} as never))).code).toBe('E_INVALID_VALUE')
    expect((await rejection(cache.getMany('k' as never))).code).toBe('E_INVALID_KEY')
    expect((await rejection(cache.deleteMany('k' as never))).code).toBe('E_INVALID_KEY')
  })

  it('setMany with a null item is E_INVALID_KEY, nothing written', async () => {
    const cache = make()
    expect((await rejection(cache.setMany([{ key: 'a', value: 1 }, null as never]))).code).toBe('E_INVALID_KEY')
    expect(await cache.has('a')).toBe(false)
  })

  it('setMany: item options override batch options, undefined item options do not erase them', async () => {
    const clock = manualClock()
    const cache = make({ clock: clock.now, store: memoryStore({ clock: clock.now }), ttl: '1h' })
    await cache.setMany(
      [
        { key: 'a', value: 1, ttl: undefined },
        { key: 'b', value: 2, ttl: '1h' },
      ],
      { ttl: '1s' },
    )
    clock.advance(1_001)
    expect(await cache.getMany(['a', 'b'])).toEqual([undefined, 2])
  })

  it('a tag longer than maxKeyLength is refused', async () => {
    const cache = make({ maxKeyLength: 8 })
    expect((await rejection(cache.set('k', 1, { tags: ['x'.repeat(9)] }))).code).toBe('E_INVALID_VALUE')
  })

  it('a bad tag pushed by the loader does not fail the caller; it is reported and nothing is cached', async () => {
    const cache = make()
    const errors: string[] = []
    cache.on('error', (e) => errors.push(`${e.operation}:${(e.error as CacheError).code}`))
    expect(
      await cache.getOrSet('k', (ctx) => {
        ctx.tags.push('')
        return 'v'
      }),
    ).toBe('v')
    expect(errors).toEqual(['set:E_INVALID_VALUE'])
    expect(await cache.has('k')).toBe(false)
  })

  it('namespace names are escaped for tags too: no crafted tag reaches another namespace', async () => {
    const cache = make()
    const ab = cache.namespace('a:b')
    const a = cache.namespace('a')
    await ab.set('k', 1, { tags: ['t'] })
    await a.set('k', 2, { tags: ['b:t'] })
    await cache.set('k', 3, { tags: ['a:b:t', 'a.b:t', 'a%3Ab:t'] })
    expect(await a.invalidateTags(['b:t'])).toBe(1)
    expect(await ab.get('k')).toBe(1)
    expect(await cache.invalidateTags(['a:b:t'])).toBe(1)
    expect(await ab.get('k')).toBe(1)
  })

  it('after close every method rejects with E_CLOSED (no sync throw)', async () => {
    const cache = createCache()
    await cache.close()
    for (const call of [
      () => cache.set('k', 1),
      () => cache.has('k'),
      () => cache.delete('k'),
      () => cache.getMany(['k']),
      () => cache.setMany([{ key: 'k', value: 1 }]),
      () => cache.deleteMany(['k']),
      () => cache.invalidateTags(['t']),
      () => cache.clear(),
      () => cache.namespace('x').get('k'),
    ]) {
      expect((await rejection(call())).code).toBe('E_CLOSED')
    }
  })

  it('an entry whose ttl and grace are both 0 is not stored and does not evict anything', async () => {
    const store = memoryStore({ maxEntries: 1 })
    const cache = make({ store })
    await cache.set('keep', 1)
    await cache.set('gone', 2, { ttl: 0 })
    expect(await cache.get('keep')).toBe(1)
    expect(store.stats()).toMatchObject({ size: 1, evictions: 0 })
  })

  it('per-call jitter is bounded and defaults to the cache jitter', async () => {
    const clock = manualClock()
    const store = memoryStore({ clock: clock.now })
    const cache = make({ clock: clock.now, store, ttl: 10_000, jitter: 0.5, namespace: 'j' })
    await cache.getOrSet('nojit', () => 1, { jitter: 0 })
    const e = store.peek('j:nojit') as StoredEntry
    expect(e.freshUntil - e.createdAt).toBe(10_000)
    for (let i = 0; i < 50; i++) await cache.getOrSet(`k${i}`, () => i)
    for (let i = 0; i < 50; i++) {
      const entry = store.peek(`j:k${i}`) as StoredEntry
      const ttl = entry.freshUntil - entry.createdAt
      expect(ttl).toBeGreaterThanOrEqual(5_000)
      expect(ttl).toBeLessThanOrEqual(15_000)
    }
  })
})
