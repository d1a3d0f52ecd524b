import { afterEach, describe, expect, it, vi } from 'vitest'
import { CacheError, type CacheErrorCode } from '../errors.js'
import { storeSuite } from '../testing/index.js'
import type { StoredEntry, StoreRemovalReason } from '../types.js'
import { estimateSize, type MemoryStore, type MemoryStoreOptions, memoryStore } from './memory.js'
import { type EvictionPolicy, FifoPolicy, LruPolicy, type PolicyNode } from './policy.js'

storeSuite('memoryStore (conformance)', {
  create: () => memoryStore(),
  capabilities: { objectValues: true },
})

storeSuite('memoryStore with maxBytes (conformance)', {
  // The sized path (estimateSize on every write) must behave the same; 1 MiB chars take about 2 MiB.
  create: () => memoryStore({ maxBytes: 64 * 1024 * 1024, name: 'sized' }),
  capabilities: { objectValues: true },
})

const HOUR = 3_600_000

/** A fake time source: tests move it by hand, so expiry is exact and instant. */
function fakeClock(start = 1_000_000) {
  const clock = { now: start, read: () => clock.now }
  return clock
}

function live(value: unknown, now = Date.now(), fields: Partial<Omit<StoredEntry, 'value'>> = {}): StoredEntry {
  const staleUntil = fields.staleUntil ?? now + HOUR
  return { value, createdAt: now, freshUntil: Math.min(now + HOUR, staleUntil), staleUntil, ...fields }
}

/** Keys present, without touching the policy or expiring anything. */
function present(store: MemoryStore, keys: readonly string[]): string[] {
  return keys.filter((k) => store.peek(k) !== undefined)
}

function recordRemovals(store: MemoryStore): [StoreRemovalReason, string][] {
  const seen: [StoreRemovalReason, string][] = []
  store.onRemove((reason, key) => seen.push([reason, key]))
  return seen
}

function errorOf(fn: () => unknown): CacheError {
  try {
    fn()
  } catch (err) {
    if (err instanceof CacheError) return err
    throw err
  }
  throw new Error('expected a CacheError, but nothing was thrown')
}

function expectCode(fn: () => unknown, code: CacheErrorCode, message?: RegExp): void {
  const err = errorOf(fn)
  expect(err.code).toBe(code)
  if (message) expect(err.message).toMatch(message)
}

const stores: MemoryStore[] = []
/** Every store made here is closed after its test, so no sweep timer outlives it. */
function make(options: MemoryStoreOptions = {}): MemoryStore {
  const store = memoryStore({ sweepInterval: false, ...options })
  stores.push(store)
  return store
}

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

describe('memoryStore: basics', () => {
  it('keeps values by reference', async () => {
    const store = make()
    const value = { nested: { n: 1 } }
    store.setSync('k', live(value))
    expect(store.getSync('k')?.value).toBe(value)
    expect((await store.get('k'))?.value).toBe(value)
  })

  it('is named memory unless told otherwise', () => {
    expect(make().name).toBe('memory')
    expect(make({ name: 'l1' }).name).toBe('l1')
  })

  it('does not measure values unless a byte bound or sizeOf asks for it', () => {
    const store = make()
    store.setSync('k', live('x'.repeat(10_000)))
    expect(store.stats().bytes).toBe(0)
    expect(store.maxBytes).toBe(Number.POSITIVE_INFINITY)
  })

  it('peek() neither expires nor promotes', () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read, maxEntries: 2 })
    store.setSync('a', live(1, clock.now, { staleUntil: clock.now + 10 }))
    store.setSync('b', live(2, clock.now))
    clock.now += 20
    expect(store.peek('a')?.value).toBe(1)
    expect(store.stats()).toMatchObject({ size: 2, expirations: 0 })
    store.setSync('c', live(3, clock.now))
    // 'a' was peeked, not read: it stayed the LRU victim.
    expect(present(store, ['a', 'b', 'c'])).toEqual(['b', 'c'])
  })

  it('the async methods agree with the sync ones', async () => {
    const store = make()
    await store.set('a', live(1))
    expect(store.getSync('a')?.value).toBe(1)
    store.setSync('b', live(2))
    expect((await store.get('b'))?.value).toBe(2)
    expect(store.deleteSync('a')).toBe(true)
    expect(await store.delete('a')).toBe(false)
  })
})

describe('memoryStore: eviction policy', () => {
  it('LRU (the default): a read protects an entry from eviction', () => {
    const store = make({ maxEntries: 3 })
    for (const k of ['a', 'b', 'c']) store.setSync(k, live(k))
    store.getSync('a')
    store.setSync('d', live('d'))
    expect(present(store, ['a', 'b', 'c', 'd'])).toEqual(['a', 'c', 'd'])
    store.getSync('c')
    store.setSync('e', live('e'))
    expect(present(store, ['a', 'c', 'd', 'e'])).toEqual(['c', 'd', 'e'])
  })

  it('LRU: rewriting an entry protects it too', () => {
    const store = make({ maxEntries: 3 })
    for (const k of ['a', 'b', 'c']) store.setSync(k, live(k))
    store.setSync('a', live('a2'))
    store.setSync('d', live('d'))
    expect(present(store, ['a', 'b', 'c', 'd'])).toEqual(['a', 'c', 'd'])
  })

  it('FIFO: reads and rewrites do not change the order', () => {
    const store = make({ maxEntries: 3, policy: 'fifo' })
    for (const k of ['a', 'b', 'c']) store.setSync(k, live(k))
    store.getSync('a')
    store.setSync('b', live('b2'))
    store.setSync('d', live('d'))
    expect(present(store, ['a', 'b', 'c', 'd'])).toEqual(['b', 'c', 'd'])
    store.setSync('e', live('e'))
    expect(present(store, ['b', 'c', 'd', 'e'])).toEqual(['c', 'd', 'e'])
    expect(store.getSync('c')?.value).toBe('c')
  })

  it('FIFO under maxBytes: growing the oldest entry evicts the next one, never the entry being written', () => {
    // The oldest entry is the FIFO victim; the store must pass over it rather than stop over its byte bound.
    const store = make({ policy: 'fifo', maxBytes: 100, sizeOf: (v) => v as number })
    store.setSync('a', live(30))
    store.setSync('b', live(30))
    store.setSync('c', live(30))
    store.setSync('a', live(60))
    expect(store.stats()).toMatchObject({ size: 2, bytes: 90, evictions: 1 })
    expect(present(store, ['a', 'b', 'c'])).toEqual(['a', 'c'])
    expect(store.getSync('a')?.value).toBe(60)
  })

  it('uses a custom policy factory, with the store capacity', () => {
    const calls: string[] = []
    const capacities: number[] = []
    // Most recently used goes first: the opposite of LRU, so the outcome shows that this policy decided.
    class MruPolicy implements EvictionPolicy {
      readonly name = 'mru'
      private order: PolicyNode[] = []
      insert(node: PolicyNode): void {
        calls.push(`insert ${node.key}`)
        this.order.push(node)
      }
      touch(node: PolicyNode): void {
        calls.push(`touch ${node.key}`)
        this.remove(node)
        this.order.push(node)
      }
      update(node: PolicyNode): void {
        this.touch(node)
      }
      remove(node: PolicyNode): void {
        this.order = this.order.filter((n) => n !== node)
      }
      victim(): PolicyNode | undefined {
        return this.order.at(-1)
      }
      *[Symbol.iterator](): Iterator<PolicyNode> {
        yield* [...this.order].reverse()
      }
      clear(): void {
        this.order = []
      }
    }
    const store = make({
      maxEntries: 2,
      policy: (capacity) => {
        capacities.push(capacity)
        return new MruPolicy()
      },
    })
    store.setSync('a', live(1))
    store.setSync('b', live(2))
    store.getSync('a')
    store.setSync('c', live(3))
    expect(capacities).toEqual([2])
    // 'c' is the most recent when the bound is crossed, but the entry being written is never its own victim: the
    // next one in the policy's order ('a', read last) goes.
    expect(present(store, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    expect(store.stats()).toMatchObject({ size: 2, evictions: 1 })
    expect(calls).toEqual(['insert a', 'insert b', 'touch a', 'insert c'])
  })

  it('a factory gets Infinity as capacity when only bytes bound the store', () => {
    const capacities: number[] = []
    make({
      maxBytes: 1000,
      policy: (capacity) => {
        capacities.push(capacity)
        return new FifoPolicy()
      },
    })
    expect(capacities).toEqual([Number.POSITIVE_INFINITY])
  })

  it("a policy's admit() can refuse a newcomer: the victim stays, nothing is evicted", () => {
    const asked: [string, string][] = []
    class Picky extends LruPolicy implements EvictionPolicy {
      admit(key: string, victim: PolicyNode): boolean {
        asked.push([key, victim.key])
        return key.startsWith('vip')
      }
    }
    const store = make({ maxEntries: 2, policy: () => new Picky() })
    const removals = recordRemovals(store)
    store.setSync('a', live(1))
    store.setSync('b', live(2))
    store.setSync('c', live(3))
    expect(present(store, ['a', 'b', 'c'])).toEqual(['a', 'b'])
    expect(store.stats()).toMatchObject({ size: 2, evictions: 0 })
    store.setSync('vip', live(4))
    expect(present(store, ['a', 'b', 'vip'])).toEqual(['b', 'vip'])
    expect(asked).toEqual([
      ['c', 'a'],
      ['vip', 'a'],
    ])
    expect(removals).toEqual([['evict', 'a']])
    // Rewriting a key already present is not an admission.
    store.setSync('b', live(5))
    expect(asked).toHaveLength(2)
    expect(store.getSync('b')?.value).toBe(5)
  })
})

describe('memoryStore: bounds', () => {
  it('never holds more than maxEntries, counts evictions and reports them', () => {
    const store = make({ maxEntries: 10 })
    const removals = recordRemovals(store)
    for (let i = 0; i < 100; i++) {
      store.setSync(`k${i}`, live(i))
      expect(store.stats().size).toBeLessThanOrEqual(10)
    }
    expect(store.stats()).toMatchObject({ size: 10, evictions: 90, expirations: 0 })
    expect(removals).toEqual(Array.from({ length: 90 }, (_, i) => ['evict', `k${i}`]))
    expect(store.getSync('k99')?.value).toBe(99)
    expect(store.getSync('k89')).toBeUndefined()
  })

  it('an unsubscribed listener hears nothing more', () => {
    const store = make({ maxEntries: 1 })
    const heard: string[] = []
    const off = store.onRemove((_, key) => heard.push(key))
    store.setSync('a', live(1))
    store.setSync('b', live(2))
    off()
    store.setSync('c', live(3))
    expect(heard).toEqual(['a'])
    expect(store.stats().evictions).toBe(2)
  })

  it('is bounded by default: 10 000 entries', () => {
    const store = make()
    expect(store.maxEntries).toBe(10_000)
    const now = Date.now()
    for (let i = 0; i < 10_500; i++) store.setSync(`k${i}`, live(i, now))
    expect(store.stats()).toMatchObject({ size: 10_000, evictions: 500 })
    expect(store.getSync('k499')).toBeUndefined()
    expect(store.getSync('k500')?.value).toBe(500)
    expect(store.getSync('k10499')?.value).toBe(10_499)
  })

  it('maxBytes with the default estimator: bytes stay within the bound and match estimateSize', () => {
    const store = make({ maxBytes: 10_000 })
    const value = (i: number) => `${i}`.padEnd(1000, '.')
    for (let i = 0; i < 20; i++) {
      store.setSync(`key${i}`, live(value(i)))
      expect(store.stats().bytes).toBeLessThanOrEqual(10_000)
    }
    const keys = Array.from({ length: 20 }, (_, i) => `key${i}`)
    const kept = present(store, keys)
    // Each value is about 2 KB, so only a handful fit, and they are the most recent ones.
    expect(kept.length).toBeGreaterThan(1)
    expect(kept.length).toBeLessThan(10)
    expect(kept).toEqual(keys.slice(20 - kept.length))
    const expected = kept.reduce((sum, k) => sum + estimateSize(store.peek(k)?.value, k), 0)
    expect(store.stats()).toMatchObject({ size: kept.length, bytes: expected, evictions: 20 - kept.length })
  })

  it('maxBytes with a custom sizeOf, which receives the key', () => {
    const seen: string[] = []
    const store = make({
      maxBytes: 100,
      sizeOf: (value, key) => {
        seen.push(key)
        return (value as { weight: number }).weight
      },
    })
    store.setSync('a', live({ weight: 40 }))
    store.setSync('b', live({ weight: 40 }))
    expect(store.stats().bytes).toBe(80)
    store.setSync('c', live({ weight: 40 }))
    expect(store.stats()).toMatchObject({ size: 2, bytes: 80, evictions: 1 })
    expect(present(store, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    expect(seen).toEqual(['a', 'b', 'c'])

    store.setSync('b', live({ weight: 10 }))
    expect(store.stats().bytes).toBe(50)
    store.deleteSync('b')
    store.deleteSync('c')
    expect(store.stats()).toMatchObject({ size: 0, bytes: 0 })
  })

  it('a sizeOf that answers nonsense is an E_INVALID_OPTION, and changes nothing', () => {
    let answer = 5
    const store = make({ sizeOf: () => answer })
    store.setSync('k', live('old'))
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      answer = bad
      expectCode(() => store.setSync('k', live('new')), 'E_INVALID_OPTION', /sizeOf/)
    }
    expect(store.getSync('k')?.value).toBe('old')
    expect(store.stats()).toMatchObject({ size: 1, bytes: 5 })
  })

  describe('maxEntrySize', () => {
    const sized = { sizeOf: (v: unknown) => (v as string).length }

    it('refuses a larger value with E_VALUE_TOO_LARGE and evicts nothing for it', async () => {
      const store = make({ ...sized, maxEntrySize: 10, maxBytes: 25 })
      const removals = recordRemovals(store)
      store.setSync('a', live('aaaaaaaa'))
      store.setSync('b', live('bbbbbbbb'))
      const before = store.stats()

      expectCode(() => store.setSync('big', live('x'.repeat(11))), 'E_VALUE_TOO_LARGE', /maxEntrySize of 10/)
      await expect(store.set('big', live('x'.repeat(11)))).rejects.toMatchObject({
        name: 'CacheError',
        code: 'E_VALUE_TOO_LARGE',
      })

      expect(store.stats()).toEqual(before)
      expect(present(store, ['a', 'b', 'big'])).toEqual(['a', 'b'])
      expect(removals).toEqual([])
    })

    it('drops the older value of the same key (the caller meant to replace it)', async () => {
      const store = make({ ...sized, maxEntrySize: 10 })
      store.setSync('a', live('aaaa'))
      store.setSync('k', live('small'))
      await expect(store.set('k', live('y'.repeat(20)))).rejects.toBeInstanceOf(CacheError)
      expect(store.getSync('k')).toBeUndefined()
      expect(store.getSync('a')?.value).toBe('aaaa')
      expect(store.stats()).toMatchObject({ size: 1, bytes: 4, evictions: 0 })
    })

    it('defaults to maxBytes', () => {
      const store = make({ ...sized, maxBytes: 20 })
      expect(store.maxEntrySize).toBe(20)
      store.setSync('a', live('a'.repeat(15)))
      expectCode(() => store.setSync('b', live('b'.repeat(21))), 'E_VALUE_TOO_LARGE')
      expect(store.getSync('a')?.value).toBe('a'.repeat(15))
      expect(store.stats().evictions).toBe(0)
    })

    it('uses the default estimator when no sizeOf is given', () => {
      const store = make({ maxEntrySize: 1000 })
      store.setSync('small', live('x'.repeat(100)))
      expectCode(() => store.setSync('big', live('x'.repeat(1000))), 'E_VALUE_TOO_LARGE')
      expect(present(store, ['small', 'big'])).toEqual(['small'])
    })

    it('setMany stores the entries that fit and rejects with the first error', async () => {
      const store = make({ ...sized, maxEntrySize: 5 })
      const result = store.setMany([
        ['a', live('aa')],
        ['big', live('toolarge')],
        ['b', live('bb')],
      ])
      await expect(result).rejects.toMatchObject({ code: 'E_VALUE_TOO_LARGE' })
      expect(present(store, ['a', 'big', 'b'])).toEqual(['a', 'b'])
    })
  })
})

describe('memoryStore: options', () => {
  const invalid: [string, MemoryStoreOptions][] = [
    ['maxEntries: 0', { maxEntries: 0 }],
    ['maxEntries: -1', { maxEntries: -1 }],
    ['maxEntries: NaN', { maxEntries: Number.NaN }],
    ['maxEntries: a string', { maxEntries: '10' as unknown as number }],
    ['maxBytes: 0', { maxBytes: 0 }],
    ['maxBytes: -5', { maxBytes: -5 }],
    ['maxEntrySize: NaN', { maxEntrySize: Number.NaN }],
    ["policy: 'nope'", { policy: 'nope' as 'lru' }],
    ['policy: 42', { policy: 42 as unknown as 'lru' }],
    ['sweepInterval: -1', { sweepInterval: -1 }],
    ["sweepInterval: 'soon'", { sweepInterval: 'soon' as '1s' }],
  ]
  for (const [label, options] of invalid) {
    it(`rejects ${label} with E_INVALID_OPTION`, () => {
      expectCode(() => memoryStore({ sweepInterval: false, ...options }), 'E_INVALID_OPTION')
    })
  }

  it('names the option in the message', () => {
    expectCode(() => memoryStore({ maxEntries: 0 }), 'E_INVALID_OPTION', /maxEntries/)
    expectCode(() => memoryStore({ policy: 'nope' as 'lru' }), 'E_INVALID_OPTION', /policy/)
  })

  it('with only maxBytes, the entry count is unbounded', () => {
    expect(make({ maxBytes: 1000 }).maxEntries).toBe(Number.POSITIVE_INFINITY)
    expect(make({ maxBytes: 1000, maxEntries: 5 }).maxEntries).toBe(5)
  })
})

describe('memoryStore: expiry', () => {
  it('an expired entry is dropped when read, counted and reported', async () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read })
    const removals = recordRemovals(store)
    store.setSync('k', live('v', clock.now, { freshUntil: clock.now + 50, staleUntil: clock.now + 100 }))
    clock.now += 99
    // Stale (past freshUntil) but not expired: still served.
    expect(store.getSync('k')?.value).toBe('v')
    clock.now += 1
    expect(store.getSync('k')).toBeUndefined()
    expect(await store.get('k')).toBeUndefined()
    expect(store.stats()).toMatchObject({ size: 0, expirations: 1, evictions: 0 })
    expect(removals).toEqual([['expire', 'k']])
  })

  it('an entry that is already expired is not stored, and replaces the live one', () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read })
    store.setSync('k', live('live', clock.now))
    store.setSync('k', live('dead', clock.now, { staleUntil: clock.now }))
    expect(store.peek('k')).toBeUndefined()
    expect(store.stats().size).toBe(0)
  })

  it('deleting an expired entry answers false, as it was already gone', async () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read })
    store.setSync('a', live(1, clock.now, { staleUntil: clock.now + 10 }))
    store.setSync('b', live(2, clock.now, { staleUntil: clock.now + 10 }))
    clock.now += 10
    expect(store.deleteSync('a')).toBe(false)
    expect(await store.deleteMany(['b'])).toBe(0)
    expect(store.stats().size).toBe(0)
  })

  it('sweep() removes the expired entries, counts and reports them', () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read })
    const removals = recordRemovals(store)
    for (const k of ['a', 'b', 'c']) store.setSync(k, live(k, clock.now, { staleUntil: clock.now + 100 }))
    for (const k of ['d', 'e']) store.setSync(k, live(k, clock.now, { staleUntil: clock.now + 1000 }))
    expect(store.sweep()).toBe(0)
    clock.now += 200
    expect(store.sweep()).toBe(3)
    expect(store.stats()).toMatchObject({ size: 2, expirations: 3, evictions: 0 })
    expect(removals.map(([reason, key]) => `${reason} ${key}`).sort()).toEqual(['expire a', 'expire b', 'expire c'])
    expect(present(store, ['a', 'b', 'c', 'd', 'e'])).toEqual(['d', 'e'])
  })

  it('sweep(limit) looks at that many entries per call and continues where it stopped', () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read })
    for (let i = 0; i < 10; i++) store.setSync(`k${i}`, live(i, clock.now, { staleUntil: clock.now + 10 }))
    clock.now += 10
    expect(store.sweep(4)).toBe(4)
    expect(store.stats().size).toBe(6)
    expect(store.sweep(4)).toBe(4)
    expect(store.sweep(4)).toBe(2)
    expect(store.stats()).toMatchObject({ size: 0, expirations: 10 })
  })

  it('an expired entry pushed out by the bound counts as an expiration, not an eviction', () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read, maxEntries: 2 })
    const removals = recordRemovals(store)
    store.setSync('old', live(1, clock.now, { staleUntil: clock.now + 100 }))
    store.setSync('b', live(2, clock.now))
    clock.now += 200
    store.setSync('c', live(3, clock.now))
    expect(store.stats()).toMatchObject({ size: 2, expirations: 1, evictions: 0 })
    expect(removals).toEqual([['expire', 'old']])
    store.setSync('d', live(4, clock.now))
    expect(store.stats()).toMatchObject({ expirations: 1, evictions: 1 })
    expect(removals).toEqual([
      ['expire', 'old'],
      ['evict', 'b'],
    ])
  })

  it('deleteTagged does not count entries that had already expired', async () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read })
    store.setSync('short', live(1, clock.now, { staleUntil: clock.now + 10, tags: ['t'] }))
    store.setSync('long', live(2, clock.now, { tags: ['t'] }))
    clock.now += 10
    expect(await store.deleteTagged(['t'])).toBe(1)
    expect(store.stats().size).toBe(0)
  })
})

describe('memoryStore: sweep timer', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('sweepInterval: false creates no timer', () => {
    vi.useFakeTimers()
    make({ sweepInterval: false })
    expect(vi.getTimerCount()).toBe(0)
  })

  it('one unref-ed timer per store (none per key) sweeps expired entries without any read', () => {
    vi.useFakeTimers()
    const spy = vi.spyOn(globalThis, 'setInterval')
    const store = memoryStore({ sweepInterval: '1s' })
    stores.push(store)
    const removals = recordRemovals(store)
    const now = Date.now()
    for (let i = 0; i < 50; i++) store.setSync(`k${i}`, live(i, now, { staleUntil: now + 500 }))
    expect(vi.getTimerCount()).toBe(1)
    expect(spy).toHaveBeenCalledTimes(1)
    const timer = spy.mock.results[0]?.value as NodeJS.Timeout
    // An unref-ed timer does not keep the process alive.
    expect(timer.hasRef()).toBe(false)
    spy.mockRestore()

    vi.advanceTimersByTime(1000)
    expect(store.stats()).toMatchObject({ size: 0, expirations: 50 })
    expect(removals).toHaveLength(50)
  })

  it('close() stops the timer and empties the store', async () => {
    vi.useFakeTimers()
    const store = memoryStore({ sweepInterval: 1000 })
    store.setSync('k', live(1))
    expect(vi.getTimerCount()).toBe(1)
    await expect(store.close()).resolves.toBeUndefined()
    expect(vi.getTimerCount()).toBe(0)
    expect(store.stats().size).toBe(0)
    expect(store.getSync('k')).toBeUndefined()
  })

  it('sweepInterval: 0 also means no timer', () => {
    vi.useFakeTimers()
    make({ sweepInterval: 0 })
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('memoryStore: tags', () => {
  it('rewriting an entry with other tags moves it in the tag index', async () => {
    const store = make()
    store.setSync('a', live(1, Date.now(), { tags: ['t1', 't2'] }))
    store.setSync('a', live(2, Date.now(), { tags: ['t3'] }))
    expect(await store.deleteTagged(['t1', 't2'])).toBe(0)
    expect(store.getSync('a')?.value).toBe(2)
    expect(await store.deleteTagged(['t3'])).toBe(1)
    expect(store.getSync('a')).toBeUndefined()
  })

  it('rewriting without tags removes the entry from the index', async () => {
    const store = make()
    store.setSync('a', live(1, Date.now(), { tags: ['t'] }))
    store.setSync('a', live(2))
    expect(await store.deleteTagged(['t'])).toBe(0)
    expect(store.getSync('a')?.value).toBe(2)
  })

  it('evicted, expired and cleared entries leave the index', async () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read, maxEntries: 3 })
    store.setSync('evicted', live(1, clock.now, { tags: ['t'] }))
    store.setSync('expiring', live(2, clock.now, { tags: ['t'], staleUntil: clock.now + 10 }))
    store.setSync('p:cleared', live(3, clock.now, { tags: ['t'] }))
    store.setSync('kept', live(4, clock.now, { tags: ['t'] }))
    clock.now += 10
    store.getSync('expiring')
    await store.clear('p:')
    expect(store.stats()).toMatchObject({ size: 1, evictions: 1, expirations: 1 })
    expect(await store.deleteTagged(['t'])).toBe(1)
    expect(store.stats().size).toBe(0)
  })

  it('an empty tag list is no tag at all', async () => {
    const store = make()
    store.setSync('a', live(1, Date.now(), { tags: [] }))
    expect(store.getSync('a')?.tags).toBeUndefined()
    expect(await store.deleteTagged([])).toBe(0)
  })
})

describe('estimateSize', () => {
  it('grows with string length, about 2 bytes a character', () => {
    const short = estimateSize('a'.repeat(10))
    const long = estimateSize('a'.repeat(1010))
    expect(long - short).toBe(2000)
  })

  it('grows with buffer length', () => {
    expect(estimateSize(Buffer.alloc(10_010)) - estimateSize(Buffer.alloc(10))).toBe(10_000)
    expect(estimateSize(new Uint8Array(1000))).toBeGreaterThanOrEqual(1000)
    expect(estimateSize(new ArrayBuffer(1000))).toBeGreaterThanOrEqual(1000)
    expect(estimateSize(new Float64Array(100))).toBeGreaterThanOrEqual(800)
  })

  it('grows with the number of properties and elements', () => {
    const sizes = [{}, { a: 1 }, { a: 1, b: 2 }, { a: 1, b: 2, c: 3 }].map((o) => estimateSize(o))
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]).toBeGreaterThan(sizes[i - 1]!)
    expect(estimateSize([1, 2, 3, 4])).toBeGreaterThan(estimateSize([1, 2]))
    expect(estimateSize(new Map([[1, 'a']]))).toBeLessThan(
      estimateSize(
        new Map([
          [1, 'a'],
          [2, 'b'],
        ]),
      ),
    )
    expect(estimateSize(new Set([1]))).toBeLessThan(estimateSize(new Set([1, 2])))
    expect(estimateSize({ longPropertyName: 1 })).toBeGreaterThan(estimateSize({ p: 1 }))
  })

  it('walks nested values', () => {
    const inner = 'x'.repeat(500)
    expect(estimateSize({ a: { b: [inner] } })).toBeGreaterThan(1000)
  })

  it('counts the key', () => {
    expect(estimateSize('v', 'abcd') - estimateSize('v')).toBe(8)
  })

  it('handles cycles and counts shared objects once', () => {
    const node: { self?: unknown; list: unknown[] } = { list: [] }
    node.self = node
    node.list.push(node, node)
    const size = estimateSize(node)
    expect(Number.isFinite(size)).toBe(true)
    expect(size).toBeGreaterThan(0)

    const big = { text: 'y'.repeat(5000) }
    const once = estimateSize({ a: big })
    const twice = estimateSize({ a: big, b: big })
    expect(twice - once).toBeLessThan(100)
  })

  it('gives small finite sizes to primitives and nothing to what holds no data', () => {
    for (const value of [0, true, 10n, null, undefined, Symbol('s'), () => 1, new Date()]) {
      const size = estimateSize(value)
      expect(Number.isFinite(size)).toBe(true)
      expect(size).toBeGreaterThanOrEqual(0)
      expect(size).toBeLessThan(64)
    }
  })
})
