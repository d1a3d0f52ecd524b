import { getHeapStatistics } from 'node:v8'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { CacheError } from '../errors.js'
import { expectCode } from '../test-helpers.js'
import { storeSuite } from '../testing/index.js'
import type { StoredEntry, StoreRemovalReason } from '../types.js'
import { estimateSize, type MemoryStore, type MemoryStoreOptions, memoryStore } from './memory.js'
import { type EvictionPolicy, FifoPolicy, LruPolicy, NO_SLOT } from './policy.js'

storeSuite('memoryStore (conformance)', {
  create: () => memoryStore(),
  capabilities: { objectValues: true },
})

storeSuite('memoryStore with maxBytes (conformance)', {
  // An explicit byte bound must behave the same; 1 MiB chars take about 2 MiB.
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

  it('measures every entry with no option: stats().bytes is the running total of estimateSize', async () => {
    const store = make({ maxEntries: 3 })
    const total = (keys: string[]) => keys.reduce((sum, k) => sum + estimateSize(store.peek(k)?.value, k), 0)
    store.setSync('k', live('x'.repeat(10_000)))
    expect(store.stats().bytes).toBe(estimateSize('x'.repeat(10_000), 'k'))
    expect(store.stats().bytes).toBeGreaterThan(20_000)
    store.setSync('user:1', live({ id: 1, name: 'Ada', tags: ['a', 'b'], at: new Date(0) }))
    store.setSync('bytes', live(new Uint8Array(4096)))
    expect(store.stats().bytes).toBe(total(['k', 'user:1', 'bytes']))
    // A rewrite replaces the old size; a delete, an eviction and a clear take it away.
    store.setSync('k', live('short'))
    expect(store.stats().bytes).toBe(total(['k', 'user:1', 'bytes']))
    store.deleteSync('user:1')
    expect(store.stats().bytes).toBe(total(['k', 'bytes']))
    store.setSync('n:1', live(1))
    store.setSync('n:2', live(2))
    // 'bytes' is the least recently used ('k' was rewritten after it).
    expect(present(store, ['k', 'bytes', 'n:1', 'n:2'])).toEqual(['k', 'n:1', 'n:2'])
    expect(store.stats()).toMatchObject({ size: 3, evictions: 1, bytes: total(['k', 'n:1', 'n:2']) })
    await store.clear('n:')
    expect(store.stats().bytes).toBe(total(['k']))
    await store.clear()
    expect(store.stats()).toMatchObject({ size: 0, bytes: 0 })
  })

  it('counts bytes through the split-key path (getSyncIn / setSyncIn) the same as through the joined key', () => {
    const joined = make()
    const split = make()
    const value = { id: 7, name: 'x'.repeat(300), nested: { list: [1, 2, 3] } }
    joined.setSync('app:user:7', live(value))
    split.setSyncIn('app:', 'user:7', live(value))
    expect(split.stats().bytes).toBe(joined.stats().bytes)
    expect(split.stats().bytes).toBe(estimateSize(value, 'app:user:7'))
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

  it('uses a custom policy factory, with the initial slot count min(1024, maxEntries)', () => {
    const calls: string[] = []
    const capacities: number[] = []
    // Most recently used goes first: the opposite of LRU, so the outcome shows that this policy decided.
    class MruPolicy implements EvictionPolicy {
      readonly name = 'mru'
      private order: number[] = []
      grow(capacity: number): void {
        calls.push(`grow ${capacity}`)
      }
      insert(slot: number): void {
        calls.push(`insert ${slot}`)
        this.order.push(slot)
      }
      touch(slot: number): void {
        calls.push(`touch ${slot}`)
        this.order = this.order.filter((s) => s !== slot)
        this.order.push(slot)
      }
      update(slot: number): void {
        this.touch(slot)
      }
      remove(slot: number): void {
        calls.push(`remove ${slot}`)
        this.order = this.order.filter((s) => s !== slot)
      }
      victim(): number {
        return this.order.at(-1) ?? NO_SLOT
      }
      *slots(): IterableIterator<number> {
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
    // The bound is crossed before 'c' goes in, so the policy's victim is 'a' (read last); 'c' takes its slot.
    expect(present(store, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    expect(store.stats()).toMatchObject({ size: 2, evictions: 1 })
    expect(calls).toEqual(['insert 0', 'insert 1', 'touch 0', 'remove 0', 'insert 0'])
    expect(store.getSync('c')?.value).toBe(3)
    expect(calls.at(-1)).toBe('touch 0')
  })

  it('a factory gets 1024 slots at most, and is told to grow() before a slot beyond them is used', () => {
    const capacities: number[] = []
    const grown: number[] = []
    let outOfRange = 0
    class Watched extends FifoPolicy {
      private capacity: number
      constructor(capacity: number) {
        super(capacity)
        this.capacity = capacity
      }
      override grow(capacity: number): void {
        expect(capacity).toBeGreaterThan(this.capacity)
        grown.push(capacity)
        this.capacity = capacity
        super.grow(capacity)
      }
      override insert(slot: number): void {
        if (!(slot >= 0 && slot < this.capacity)) outOfRange++
        super.insert(slot)
      }
    }
    const store = make({
      maxEntries: 5000,
      policy: (capacity) => {
        capacities.push(capacity)
        return new Watched(capacity)
      },
    })
    expect(capacities).toEqual([1024])
    const now = Date.now()
    for (let i = 0; i < 1024; i++) store.setSync(`k${i}`, live(i, now))
    expect(grown).toEqual([])
    store.setSync('k1024', live(1024, now))
    expect(grown).toHaveLength(1)
    for (let i = 1025; i < 6000; i++) store.setSync(`k${i}`, live(i, now))
    expect(outOfRange).toBe(0)
    // Never more slots than maxEntries: the store evicts and reuses beyond it.
    expect(grown.at(-1)).toBe(5000)
    expect(store.stats()).toMatchObject({ size: 5000, evictions: 1000 })
    expect(store.getSync('k999')).toBeUndefined()
    expect(store.getSync('k1000')?.value).toBe(1000)
    expect(store.getSync('k5999')?.value).toBe(5999)
  })

  it('a factory gets 1024 slots when only bytes bound the store, and grows past them', () => {
    const capacities: number[] = []
    const grown: number[] = []
    class Watched extends FifoPolicy {
      override grow(capacity: number): void {
        grown.push(capacity)
        super.grow(capacity)
      }
    }
    const store = make({
      maxBytes: 1_000_000,
      sizeOf: () => 1,
      policy: (capacity) => {
        capacities.push(capacity)
        return new Watched(capacity)
      },
    })
    expect(capacities).toEqual([1024])
    for (let i = 0; i < 3000; i++) store.setSync(`k${i}`, live(i))
    expect(grown.length).toBeGreaterThan(0)
    expect(grown.every(Number.isFinite)).toBe(true)
    expect(grown.at(-1)).toBeGreaterThanOrEqual(3000)
    expect(store.stats()).toMatchObject({ size: 3000, bytes: 3000, evictions: 0 })
    expect(store.getSync('k0')?.value).toBe(0)
    expect(store.getSync('k2999')?.value).toBe(2999)
  })

  it("a policy's admit() can refuse a newcomer: the victim stays, nothing is evicted", () => {
    const asked: [string, number][] = []
    class Picky extends LruPolicy implements EvictionPolicy {
      admit(key: string, victim: number): boolean {
        // The slot offered is the one victim() names.
        expect(victim).toBe(this.victim())
        asked.push([key, victim])
        return key.startsWith('vip')
      }
    }
    const store = make({ maxEntries: 2, policy: (capacity) => new Picky(capacity) })
    const removals = recordRemovals(store)
    store.setSync('a', live(1))
    store.setSync('b', live(2))
    store.setSync('c', live(3))
    expect(present(store, ['a', 'b', 'c'])).toEqual(['a', 'b'])
    expect(store.stats()).toMatchObject({ size: 2, evictions: 0 })
    store.setSync('vip', live(4))
    expect(present(store, ['a', 'b', 'vip'])).toEqual(['b', 'vip'])
    // 'a' went in first, into slot 0 of a fresh store, and stayed the victim.
    expect(asked).toEqual([
      ['c', 0],
      ['vip', 0],
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

  it('is bounded by bytes by default: an eighth of the V8 heap limit, and maxEntrySize with it', () => {
    const store = make()
    const expected = Math.floor(getHeapStatistics().heap_size_limit / 8)
    expect(store.maxBytes).toBe(expected)
    expect(store.maxEntrySize).toBe(expected)
    expect(store.maxEntries).toBe(10_000)
    // Read once per process: every store gets the same bound.
    expect(make({ maxEntries: 5 }).maxBytes).toBe(expected)
  })

  it('a flood of large values stays under the default byte bound', () => {
    const store = make()
    const mib = 1024 * 1024
    // One 1 MiB buffer shared by every entry: each entry counts 1 MiB, but the test allocates only one.
    const body = new Uint8Array(mib)
    const perEntry = estimateSize(body, 'flood:0000000')
    const fit = Math.floor(store.maxBytes / perEntry)
    // Enough entries to go past the bound, yet fewer than maxEntries, so the bytes are what evicts.
    const count = fit + 20
    expect(count).toBeLessThan(store.maxEntries)
    for (let i = 0; i < count; i++) {
      store.setSync(`flood:${String(i).padStart(7, '0')}`, live(body))
      expect(store.stats().bytes).toBeLessThanOrEqual(store.maxBytes)
    }
    expect(store.stats()).toMatchObject({ size: fit, bytes: fit * perEntry, evictions: 20 })
  })

  it('maxBytes: Infinity turns the byte bound off; entries are still measured, and maxEntries stays 10 000', () => {
    const store = make({ maxBytes: Number.POSITIVE_INFINITY })
    expect(store.maxBytes).toBe(Number.POSITIVE_INFINITY)
    expect(store.maxEntrySize).toBe(Number.POSITIVE_INFINITY)
    expect(store.maxEntries).toBe(10_000)
    const body = new Uint8Array(1024 * 1024)
    const perEntry = estimateSize(body, 'big:0000000')
    // More counted bytes than the default bound would allow (and fewer entries than maxEntries).
    const count = Math.floor(make().maxBytes / perEntry) + 20
    expect(count).toBeLessThan(10_000)
    for (let i = 0; i < count; i++) store.setSync(`big:${String(i).padStart(7, '0')}`, live(body))
    expect(store.stats()).toMatchObject({ size: count, bytes: count * perEntry, evictions: 0 })
    expect(store.stats().bytes).toBeGreaterThan(make().maxBytes)
  })

  it('with maxEntries and maxBytes both given, whichever is reached first evicts', () => {
    const store = make({ maxEntries: 3, maxBytes: 1000 })
    const removals = recordRemovals(store)
    for (const k of ['a', 'b', 'c', 'd']) store.setSync(k, live(k))
    expect(removals).toEqual([['evict', 'a']])
    store.setSync('big', live('x'.repeat(400)))
    expect(store.stats().bytes).toBeLessThanOrEqual(1000)
    expect(present(store, ['b', 'c', 'd', 'big'])).toEqual(['c', 'd', 'big'])
    store.setSync('big2', live('y'.repeat(400)))
    // 2 x ~820 bytes: over 1000, so the bytes evict what the entry count would have kept.
    expect(present(store, ['c', 'd', 'big', 'big2'])).toEqual(['big2'])
    expect(store.stats().bytes).toBe(estimateSize('y'.repeat(400), 'big2'))
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

  it('the byte bound in force is store.maxBytes: explicit, Infinity, or the default', () => {
    expect(make({ maxBytes: 1000 }).maxBytes).toBe(1000)
    expect(make({ maxBytes: Number.POSITIVE_INFINITY }).maxBytes).toBe(Number.POSITIVE_INFINITY)
    expect(make({ maxEntries: 5 }).maxBytes).toBe(Math.floor(getHeapStatistics().heap_size_limit / 8))
    expect(make({ maxBytes: Number.POSITIVE_INFINITY, maxEntries: Number.POSITIVE_INFINITY }).maxEntries).toBe(
      Number.POSITIVE_INFINITY,
    )
    expect(make({ maxEntrySize: 100 }).maxEntrySize).toBe(100)
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

/** The fields of an entry, read one by one (a shared view has getters, not own properties). */
function fieldsOf(entry: StoredEntry | undefined) {
  if (entry === undefined) return undefined
  const { value, createdAt, freshUntil, staleUntil, tags, cost } = entry
  return { value, createdAt, freshUntil, staleUntil, tags, cost }
}

/** Spins without yielding to the event loop until `ms` have passed on the system clock. */
function busyWait(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // Nothing: no timer can run, so the shared coarse reading stays where it was.
  }
}

describe('memoryStore: slots', () => {
  it('grows past its first 1024 slots: 5 000 entries under maxEntries 10 000 are all kept and readable', () => {
    const store = make({ maxEntries: 10_000 })
    const now = Date.now()
    for (let i = 0; i < 5000; i++) {
      store.setSync(`k${i}`, live(i, now, { cost: i, tags: [`t${i % 7}`] }))
    }
    expect(store.stats()).toMatchObject({ size: 5000, evictions: 0, expirations: 0 })
    for (let i = 0; i < 5000; i++) {
      const entry = store.getSync(`k${i}`)
      expect(entry?.value).toBe(i)
      expect(entry?.cost).toBe(i)
      expect(entry?.staleUntil).toBe(now + HOUR)
      expect(entry?.tags).toEqual([`t${i % 7}`])
    }
  })

  it('entries written before a growth keep every field (the columns are copied, not reset)', () => {
    const store = make({ maxEntries: 3000 })
    const now = Date.now()
    store.setSync('first', live('v', now, { freshUntil: now + 5, staleUntil: now + HOUR + 7, cost: 2.5, tags: ['x'] }))
    for (let i = 0; i < 2500; i++) store.setSync(`k${i}`, live(i, now))
    expect(fieldsOf(store.getSync('first'))).toEqual({
      value: 'v',
      createdAt: now,
      freshUntil: now + 5,
      staleUntil: now + HOUR + 7,
      tags: ['x'],
      cost: 2.5,
    })
  })

  it('reuses the slots of deleted entries: sizes, presence and LRU order stay right', async () => {
    const store = make({ maxEntries: 2000 })
    const removals = recordRemovals(store)
    const now = Date.now()
    const old = Array.from({ length: 2000 }, (_, i) => `k${i}`)
    for (const k of old) store.setSync(k, live(k, now, { cost: 1, tags: ['old'] }))
    // Delete every other entry (1 000 of them), scattered over the slots.
    const deleted = old.filter((_, i) => i % 2 === 0)
    const kept = old.filter((_, i) => i % 2 === 1)
    for (const k of deleted) expect(store.deleteSync(k)).toBe(true)
    expect(store.stats()).toMatchObject({ size: 1000, evictions: 0 })

    const fresh = Array.from({ length: 1000 }, (_, i) => `n${i}`)
    for (const k of fresh) store.setSync(k, live(k, now))
    expect(store.stats()).toMatchObject({ size: 2000, evictions: 0 })
    expect(present(store, deleted)).toEqual([])
    expect(present(store, kept)).toEqual(kept)
    expect(present(store, fresh)).toEqual(fresh)
    // A reused slot carries nothing of its former entry.
    for (const k of fresh) {
      const entry = store.peek(k)
      expect(entry?.value).toBe(k)
      expect(entry?.tags).toBeUndefined()
      expect(entry?.cost).toBeUndefined()
    }
    expect(await store.deleteTagged(['old'])).toBe(1000)
    expect(store.stats().size).toBe(1000)
    for (const k of kept) store.setSync(k, live(k, now))

    // LRU order: the surviving old keys (now rewritten) after the new ones; a read moves one to the end.
    expect(store.getSync('n0')?.value).toBe('n0')
    for (let i = 0; i < 1002; i++) store.setSync(`x${i}`, live(i, now))
    expect(removals.map(([, key]) => key)).toEqual([...fresh.slice(1), ...kept.slice(0, 3)])
    expect(removals.every(([reason]) => reason === 'evict')).toBe(true)
    expect(store.getSync('n0')?.value).toBe('n0')
    expect(store.stats()).toMatchObject({ size: 2000, evictions: 1002 })
  })

  it('after clear(), slots start over and the store still grows and evicts in order', async () => {
    const store = make({ maxEntries: 1500 })
    const now = Date.now()
    for (let i = 0; i < 1500; i++) store.setSync(`a${i}`, live(i, now))
    await store.clear()
    expect(store.stats()).toMatchObject({ size: 0, bytes: 0 })
    const removals = recordRemovals(store)
    for (let i = 0; i < 1501; i++) store.setSync(`b${i}`, live(i, now))
    expect(store.stats()).toMatchObject({ size: 1500 })
    expect(removals).toEqual([['evict', 'b0']])
    expect(store.getSync('a5')).toBeUndefined()
    expect(store.getSync('b1500')?.value).toBe(1500)
  })

  it('after clear(), the old eviction order is forgotten', async () => {
    const store = make({ maxEntries: 3 })
    for (const k of ['a', 'b', 'c']) store.setSync(k, live(k))
    store.getSync('a')
    await store.clear()
    const removals = recordRemovals(store)
    for (const k of ['x', 'y', 'z', 'w']) store.setSync(k, live(k))
    expect(removals).toEqual([['evict', 'x']])
    expect(present(store, ['a', 'b', 'c', 'x', 'y', 'z', 'w'])).toEqual(['y', 'z', 'w'])
  })
})

describe('memoryStore: the space -> key index', () => {
  // Keys that split into spaces differently; a lossy index would mix some of them up.
  const keys = [
    '',
    'plain',
    ':',
    '::',
    ':lead',
    ':a:b',
    'a',
    'a:',
    'a::',
    'a:b',
    'a:b:',
    'a::b',
    'a:bc',
    'a:b:c',
    'ab',
    'ab:',
    'ab:c',
    'abc',
  ]

  it('keeps every key apart, whether it has no ":", a leading ":" or several', () => {
    const store = make()
    for (const [i, k] of keys.entries()) store.setSync(k, live(i))
    expect(store.stats().size).toBe(keys.length)
    for (const [i, k] of keys.entries()) expect(store.getSync(k)?.value).toBe(i)
    // Deleting one leaves its neighbours in the same and other spaces alone.
    expect(store.deleteSync('a:b')).toBe(true)
    expect(store.deleteSync('a:b')).toBe(false)
    for (const [i, k] of keys.entries()) expect(store.getSync(k)?.value).toBe(k === 'a:b' ? undefined : i)
    expect(store.stats().size).toBe(keys.length - 1)
  })

  it('getSyncIn(space, key) finds what setSync(space + key) stored, and the other way round', () => {
    const store = make()
    for (const [i, k] of keys.entries()) store.setSync(k, live(i))
    for (const k of keys) {
      const cut = k.indexOf(':') + 1
      expect(fieldsOf(store.getSyncIn(k.slice(0, cut), k.slice(cut)))).toEqual(fieldsOf(store.getSync(k)))
    }
    expect(store.getSyncIn('a:', 'b:c')?.value).toBe(keys.indexOf('a:b:c'))
    expect(store.getSyncIn('', 'plain')?.value).toBe(keys.indexOf('plain'))
    expect(store.getSyncIn(':', 'lead')?.value).toBe(keys.indexOf(':lead'))
    expect(store.getSyncIn(':', '')?.value).toBe(keys.indexOf(':'))
    expect(store.getSyncIn('', '')?.value).toBe(keys.indexOf(''))

    store.setSyncIn('a:', 'b:c', live('in'))
    expect(store.getSync('a:b:c')?.value).toBe('in')
    store.setSyncIn('', 'plain', live('in2'))
    expect(store.getSync('plain')?.value).toBe('in2')
    expect(store.stats().size).toBe(keys.length)
  })

  it('a miss in one space is a miss, whichever space was looked at before', () => {
    const store = make()
    store.setSync('a:x', live(1))
    store.setSync('b:x', live(2))
    expect(store.getSyncIn('a:', 'x')?.value).toBe(1)
    expect(store.getSyncIn('c:', 'x')).toBeUndefined()
    expect(store.getSyncIn('b:', 'x')?.value).toBe(2)
    expect(store.getSyncIn('c:', 'x')).toBeUndefined()
    // A space emptied and filled again.
    expect(store.deleteSync('a:x')).toBe(true)
    expect(store.getSyncIn('a:', 'x')).toBeUndefined()
    store.setSyncIn('a:', 'x', live(3))
    expect(store.getSyncIn('a:', 'x')?.value).toBe(3)
    expect(store.getSync('a:x')?.value).toBe(3)
    store.setSyncIn('c:', 'x', live(4))
    expect(store.getSyncIn('c:', 'x')?.value).toBe(4)
    expect(store.getSyncIn('a:', 'x')?.value).toBe(3)
    expect(store.getSync('b:x')?.value).toBe(2)
    expect(store.stats().size).toBe(3)
  })

  it('onRemove reports the whole key, space included', () => {
    const clock = fakeClock()
    const store = make({ clock: clock.read, maxEntries: 2 })
    const removals = recordRemovals(store)
    store.setSync(':lead', live(1, clock.now))
    store.setSync('a:b:c', live(2, clock.now, { staleUntil: clock.now + 10 }))
    store.setSync('plain', live(3, clock.now))
    clock.now += 10
    expect(store.getSyncIn('a:', 'b:c')).toBeUndefined()
    expect(removals).toEqual([
      ['evict', ':lead'],
      ['expire', 'a:b:c'],
    ])
    store.setSync('x:y', live(4, clock.now, { staleUntil: clock.now + 10 }))
    clock.now += 10
    expect(store.sweep()).toBe(1)
    expect(removals.at(-1)).toEqual(['expire', 'x:y'])
  })

  describe('clear(prefix) across spaces', () => {
    const cases: [string, string | undefined][] = [
      ['shorter than a space', 'a'],
      ['exactly a space', 'a:'],
      ['longer than a space', 'a:b'],
      ['a space and a key', 'a:b:'],
      ['in the space without ":"', 'pl'],
      ['that is ":"', ':'],
      ['matching nothing', 'zz'],
      ['empty (everything)', ''],
      ['undefined (everything)', undefined],
    ]
    for (const [label, prefix] of cases) {
      it(`prefix ${label}: ${JSON.stringify(prefix)}`, async () => {
        const store = make({ maxEntries: keys.length })
        for (const [i, k] of keys.entries()) store.setSync(k, live(i, Date.now(), { tags: ['all'] }))
        await store.clear(prefix)
        const survivors = prefix === undefined ? [] : keys.filter((k) => !k.startsWith(prefix))
        expect(present(store, keys)).toEqual(survivors)
        expect(store.stats().size).toBe(survivors.length)
        for (const [i, k] of keys.entries()) expect(store.getSync(k)?.value).toBe(survivors.includes(k) ? i : undefined)

        // The policy and the tag index forgot the cleared entries too: refilling evicts exactly one survivor, the
        // oldest, and the tag still finds every survivor.
        const removals = recordRemovals(store)
        const refill = keys.length - survivors.length + 1
        for (let i = 0; i < refill; i++) store.setSync(`new:${i}`, live(i))
        expect(store.stats().size).toBe(keys.length)
        expect(removals).toEqual(survivors.length > 0 ? [['evict', survivors[0]]] : [['evict', 'new:0']])
        expect(await store.deleteTagged(['all'])).toBe(Math.max(0, survivors.length - 1))
      })
    }
  })
})

describe('memoryStore: what reads return', () => {
  it('getSyncIn returns one shared view: the next call overwrites the previous result (read it at once)', () => {
    const store = make()
    const now = Date.now()
    store.setSync('a:1', live('one', now, { cost: 1, tags: ['t1'] }))
    store.setSync('b:2', live('two', now + 1, { cost: 2 }))
    const first = store.getSyncIn('a:', '1')
    expect(first?.value).toBe('one')
    expect(first?.cost).toBe(1)
    expect(first?.tags).toEqual(['t1'])
    const second = store.getSyncIn('b:', '2')
    // The same object, now showing the second entry.
    expect(second).toBe(first)
    expect(fieldsOf(first)).toEqual(fieldsOf(store.peek('b:2')))
    expect(first?.value).toBe('two')
    expect(first?.createdAt).toBe(now + 1)
    expect(first?.tags).toBeUndefined()
  })

  it('getSync returns an independent copy that later reads and writes do not change', () => {
    const store = make()
    const now = Date.now()
    store.setSync('a:1', live('one', now, { cost: 1, tags: ['t1'] }))
    store.setSync('b:2', live('two', now + 1, { cost: 2 }))
    const first = store.getSync('a:1')
    const second = store.getSync('b:2')
    expect(second).not.toBe(first)
    store.getSyncIn('b:', '2')
    store.setSync('a:1', live('changed', now + 2))
    expect(first).toEqual({
      value: 'one',
      createdAt: now,
      freshUntil: now + HOUR,
      staleUntil: now + HOUR,
      tags: ['t1'],
      cost: 1,
    })
    expect(second?.value).toBe('two')
    expect(store.getSync('a:1')?.value).toBe('changed')
  })

  it('cost round-trips: a number, 0 and undefined, through every read, and is reset by a rewrite', () => {
    const store = make()
    store.setSync('s:zero', live(0, Date.now(), { cost: 0 }))
    store.setSync('s:none', live(1))
    store.setSync('s:some', live(2, Date.now(), { cost: 12.5 }))
    store.setSync('s:undef', live(3, Date.now(), { cost: undefined }))
    const expected: [string, number | undefined][] = [
      ['zero', 0],
      ['none', undefined],
      ['some', 12.5],
      ['undef', undefined],
    ]
    for (const [key, cost] of expected) {
      expect(store.getSync(`s:${key}`)?.cost).toBe(cost)
      expect(store.getSyncIn('s:', key)?.cost).toBe(cost)
      expect(store.peek(`s:${key}`)?.cost).toBe(cost)
    }
    store.setSync('s:some', live(4))
    expect(store.getSync('s:some')?.cost).toBeUndefined()
    store.setSync('s:some', live(5, Date.now(), { cost: 0 }))
    expect(store.getSyncIn('s:', 'some')?.cost).toBe(0)
  })
})

describe('memoryStore: the default clock near a deadline', () => {
  it('an entry whose staleUntil passes during synchronous work is not returned (no event-loop turn)', () => {
    const store = make()
    let start = 0
    // A pause of 3 ms right after reading the clock would store nothing and prove nothing: retry until both went in.
    for (let attempt = 0; attempt < 20 && store.stats().size < 2; attempt++) {
      start = Date.now()
      store.setSync('near', live('n', start, { staleUntil: start + 3 }))
      store.setSync('ns:near', live('n', start, { staleUntil: start + 3 }))
    }
    expect(store.stats().size).toBe(2)
    store.setSync('far', live('f', start))
    // Reading a far-off entry takes the shared coarse reading, which no timer can refresh during the busy-wait.
    expect(store.getSync('far')?.value).toBe('f')
    busyWait(5)
    expect(Date.now()).toBeGreaterThan(start + 3)
    expect(store.getSync('near')).toBeUndefined()
    expect(store.getSyncIn('ns:', 'near')).toBeUndefined()
    expect(store.getSync('far')?.value).toBe('f')
    expect(store.stats()).toMatchObject({ size: 1, expirations: 2 })
  })

  it('setSync with a staleUntil that passed during synchronous work stores nothing', () => {
    const store = make()
    const start = Date.now()
    store.setSync('far', live('f', start))
    store.getSync('far')
    busyWait(5)
    store.setSync('gone', live('g', start, { staleUntil: start + 3 }))
    expect(store.peek('gone')).toBeUndefined()
    expect(store.stats().size).toBe(1)
  })
})

describe('memoryStore: the default clock under fake timers', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('expires entries when a test moves fake time past their TTL (no real event-loop turn needed)', () => {
    vi.useFakeTimers()
    const store = memoryStore({ sweepInterval: false })
    const now = Date.now()
    const hour = 3_600_000
    store.setSync('k', { value: 1, createdAt: now, freshUntil: now + hour, staleUntil: now + hour })
    expect(store.getSync('k')?.value).toBe(1)
    vi.advanceTimersByTime(2 * hour)
    expect(store.getSync('k')).toBeUndefined()
    expect(store.stats().expirations).toBe(1)
  })

  it('follows setSystemTime too', () => {
    vi.useFakeTimers()
    const store = memoryStore({ sweepInterval: false })
    const now = Date.now()
    store.setSync('k', { value: 1, createdAt: now, freshUntil: now + 10_000, staleUntil: now + 10_000 })
    vi.setSystemTime(now + 20_000)
    expect(store.getSync('k')).toBeUndefined()
  })
})

describe('memoryStore: a policy that names no victim', () => {
  it('is refused with a clear error when the store is full, and the store stays consistent', () => {
    const lazy: EvictionPolicy = Object.assign(new LruPolicy(2), { victim: () => NO_SLOT })
    const store = memoryStore({ maxEntries: 2, policy: () => lazy, sweepInterval: false })
    const far = Date.now() + 60_000
    const entry = (value: number): StoredEntry => ({ value, createdAt: 0, freshUntil: far, staleUntil: far })
    store.setSync('a', entry(1))
    store.setSync('b', entry(2))
    expect(() => store.setSync('c', entry(3))).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
    expect(store.stats().size).toBe(2)
    expect(store.getSync('a')?.value).toBe(1)
    expect(store.getSync('c')).toBeUndefined()
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

  it('counts a view by its own length, not by the buffer behind it', () => {
    const big = new Uint8Array(1024 * 1024)
    const slice = big.subarray(0, 10)
    expect(estimateSize(slice)).toBe(64 + 10)
    // A copy of the slice is counted the same, and keeps only its own 10 bytes alive.
    expect(estimateSize(new Uint8Array(slice))).toBe(estimateSize(slice))
    expect(estimateSize(new DataView(big.buffer, 0, 100))).toBe(64 + 100)
  })

  it('measures plain objects and arrays (the fast path) as it measures the same shapes anywhere else', () => {
    class Point {
      x = 1
      label = 'p'
    }
    const flat = { x: 1, label: 'p' }
    expect(estimateSize(flat)).toBe(estimateSize(new Point()))
    expect(estimateSize(Object.assign(Object.create(null), flat))).toBe(estimateSize(flat))
    // Nested, the same object and array count the same as on their own, plus one slot and the key.
    const list = [1, 'two', true, null, undefined, 3n]
    expect(estimateSize({ a: list }) - estimateSize({ a: null })).toBe(estimateSize(list))
    expect(estimateSize({ a: flat }) - estimateSize({ a: null })).toBe(estimateSize(flat))
    expect(estimateSize([flat]) - estimateSize([null])).toBe(estimateSize(flat))
  })

  it('counts shared objects once however many there are, and walks very deep values', () => {
    const shared = { text: 'z'.repeat(1000) }
    const many = Array.from({ length: 100 }, (_, i) => ({ i, shared }))
    const alone = Array.from({ length: 100 }, (_, i) => ({ i }))
    const sharedSize = estimateSize(shared)
    // Each of the 100 references adds a slot and its key; the shared object itself counts once.
    expect(estimateSize(many) - estimateSize(alone)).toBe(100 * (8 + 'shared'.length * 2) + sharedSize)

    let deep: { next: unknown } = { next: null }
    for (let i = 0; i < 100_000; i++) deep = { next: deep }
    expect(estimateSize(deep)).toBe(100_001 * (16 + 8 + 'next'.length * 2))
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
