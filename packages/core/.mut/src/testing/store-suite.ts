import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Store, StoredEntry } from '../types.js'

/** What a store can do; each flag switches one group of the suite on or off. */
export interface StoreCapabilities {
  /** `getMany`, `setMany` and `deleteMany` are implemented. Default true. */
  batch: boolean
  /** `deleteTagged` is implemented. Default true. */
  tags: boolean
  /** `clear(prefix)` drops only the keys starting with `prefix`. Default true. */
  clearPrefix: boolean
  /**
   * `clear()` without a prefix may run: it empties the whole store. Turn it off when the store under test shares
   * its server with data that must survive (other suites running at the same time). Default true.
   */
  clearAll: boolean
  /** The store drops an entry by itself once `staleUntil` has passed (waits in real time). Default true. */
  expiry: boolean
  /** Values of `maxValueBytes` round-trip. Default true. */
  largeValues: boolean
  /** Keys with emoji, CJK, combining marks, spaces, colons and newlines round-trip and stay distinct. Default true. */
  unicodeKeys: boolean
  /**
   * The store keeps JavaScript objects as values (in-process stores). When false (the default) every value the
   * suite writes is a `Uint8Array`, as remote stores receive them from the codec, and must come back byte for byte
   * (a `Buffer` is fine).
   */
  objectValues: boolean
}

export interface StoreSuiteOptions<S extends Store = Store> {
  /** Makes the store for one test; called before each test. */
  create: () => S | Promise<S>
  /**
   * Disposes of the store after each test, once the suite has deleted the keys the test wrote. Default:
   * `store.close()` when the store has it. Pass your own to close a client you own, or to keep a shared one open.
   */
  cleanup?: (store: S) => Promise<void>
  /** Switch off what the store lacks; anything left out is on, except `objectValues` (off). */
  capabilities?: Partial<StoreCapabilities>
  /**
   * Multiplies every TTL and wait of the expiry tests. Raise it for stores whose expiry is coarse (Memcached counts
   * seconds: use about 10). Default 1: entries live 300 ms.
   */
  timeScale?: number
  /** Size of the value in the large-value test, in bytes (characters for `objectValues`). Default 1 MiB. */
  maxValueBytes?: number
  /**
   * Every key (and tag) the suite writes starts with this, followed by a per-run id and a per-test number, so
   * several runs can share one server. Default 'store-suite'.
   */
  keyPrefix?: string
}

const DEFAULT_CAPABILITIES: StoreCapabilities = {
  batch: true,
  tags: true,
  clearPrefix: true,
  clearAll: true,
  expiry: true,
  largeValues: true,
  unicodeKeys: true,
  objectValues: false,
}

const MIB = 1024 * 1024
// Far enough ahead that no test outlives it, near enough to be a plausible TTL.
const HOUR = 3_600_000

/**
 * Registers the conformance suite every `Store` must pass, as a vitest `describe` block named `name`. It uses only
 * the asynchronous `Store` methods, so remote stores run it unchanged. Each test gets a fresh store from `create`,
 * writes under its own key prefix, and deletes what it wrote before `cleanup` runs.
 *
 * Values are `Uint8Array`s unless `capabilities.objectValues` is true (then plain JS objects, strings, numbers and
 * `null`), matching what a remote store receives from the codec versus what an in-process store keeps.
 *
 * @example
 * // redis.test.ts
 * import { storeSuite } from '@cache/core/testing'
 *
 * storeSuite('redisStore', {
 *   create: () => redisStore({ client: new Redis(url) }),
 *   cleanup: (store) => store.close(),
 *   capabilities: { clearAll: false },
 * })
 */
export function storeSuite<S extends Store>(name: string, options: StoreSuiteOptions<S>): void {
  const caps: StoreCapabilities = { ...DEFAULT_CAPABILITIES, ...options.capabilities }
  const scale = options.timeScale ?? 1
  const largeSize = options.maxValueBytes ?? MIB
  if (!(scale > 0) || !Number.isFinite(scale)) throw new TypeError(`storeSuite: timeScale must be > 0 (got ${scale})`)
  if (!Number.isInteger(largeSize) || largeSize <= 0) {
    throw new TypeError(`storeSuite: maxValueBytes must be a positive integer (got ${largeSize})`)
  }
  // Distinct per run so that concurrent runs against one server never see each other's keys.
  const runId = `${options.keyPrefix ?? 'store-suite'}:${process.pid}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`
  const values = valueMaker(caps.objectValues)
  let testNo = 0

  describe(name, () => {
    let store: S
    let prefix = ''
    let written = new Set<string>()

    /** A key of this test; remembered so that it is deleted afterwards. */
    const key = (suffix: string): string => {
      const k = `${prefix}${suffix}`
      written.add(k)
      return k
    }
    const tag = (suffix: string): string => `${prefix}tag:${suffix}`

    beforeEach(async () => {
      testNo++
      prefix = `${runId}:${testNo}:`
      written = new Set()
      store = await options.create()
    })

    afterEach(async () => {
      try {
        // Removing by key works for every store; clear(prefix) also catches keys a failed test wrote indirectly.
        await Promise.all([...written].map((k) => store.delete(k)))
        if (caps.clearPrefix) await store.clear(prefix)
      } finally {
        if (options.cleanup) await options.cleanup(store)
        else await store.close?.()
      }
    })

    describe('get / set / delete', () => {
      it('has a name', () => {
        expect(typeof store.name).toBe('string')
        expect(store.name.length).toBeGreaterThan(0)
      })

      it('answers undefined for a key never written', async () => {
        expect(await store.get(key('absent'))).toBeUndefined()
      })

      it('reads back what was written', async () => {
        const k = key('round-trip')
        const e = entry(values.make(1))
        await store.set(k, e)
        const got = await store.get(k)
        expectEntry(got, e)
        values.expectSame(got?.value, values.make(1))
      })

      it('delete() answers true for a live key, then false', async () => {
        const k = key('doomed')
        await store.set(k, entry(values.make(2)))
        expect(await store.delete(k)).toBe(true)
        expect(await store.get(k)).toBeUndefined()
        expect(await store.delete(k)).toBe(false)
        expect(await store.delete(key('never-written'))).toBe(false)
      })

      it('delete() leaves the other keys alone', async () => {
        const [a, b] = [key('a'), key('b')]
        await store.set(a, entry(values.make(1)))
        await store.set(b, entry(values.make(2)))
        await store.delete(a)
        values.expectSame((await store.get(b))?.value, values.make(2))
      })

      it('set() replaces the whole entry of an existing key', async () => {
        const k = key('overwritten')
        const now = Date.now()
        await store.set(k, entry(values.make(1), { createdAt: now - 50, tags: [tag('old')], cost: 3 }))
        const second = entry(values.make(2), { createdAt: now, freshUntil: now + HOUR, staleUntil: now + 2 * HOUR })
        await store.set(k, second)
        const got = await store.get(k)
        expectEntry(got, second)
        values.expectSame(got?.value, values.make(2))
      })

      it('a key can be written again after delete()', async () => {
        const k = key('reborn')
        await store.set(k, entry(values.make(1)))
        await store.delete(k)
        await store.set(k, entry(values.make(3)))
        values.expectSame((await store.get(k))?.value, values.make(3))
      })

      it('keeps empty and falsy values as entries, not as misses', async () => {
        const samples = values.empties()
        const keys = samples.map((_, i) => key(`empty:${i}`))
        await Promise.all(keys.map((k, i) => store.set(k, entry(samples[i]))))
        for (const [i, k] of keys.entries()) {
          const got = await store.get(k)
          expect(got, `entry for sample ${i}`).toBeDefined()
          values.expectSame(got?.value, samples[i])
        }
      })

      it('keeps the keys apart: distinct keys hold distinct values', async () => {
        const keys = Array.from({ length: 20 }, (_, i) => key(`distinct:${i}`))
        for (const [i, k] of keys.entries()) await store.set(k, entry(values.make(i)))
        for (const [i, k] of keys.entries()) values.expectSame((await store.get(k))?.value, values.make(i))
      })
    })

    describe('entry fields', () => {
      it('preserves createdAt, freshUntil, staleUntil, tags and cost', async () => {
        const k = key('fields')
        const now = Date.now()
        const e: StoredEntry = {
          value: values.make(7),
          createdAt: now - 1234,
          freshUntil: now + 60_000,
          staleUntil: now + 90_000,
          tags: [tag('a'), tag('b:c'), tag('ünï')],
          cost: 42,
        }
        await store.set(k, e)
        expectEntry(await store.get(k), e)
      })

      it('an entry without tags or cost reads back without them', async () => {
        const k = key('bare')
        const now = Date.now()
        await store.set(k, { value: values.make(1), createdAt: now, freshUntil: now + HOUR, staleUntil: now + HOUR })
        const got = await store.get(k)
        expect(got).toBeDefined()
        expect(got?.tags ?? []).toEqual([])
        expect(got?.cost).toBeUndefined()
      })

      it('serves an entry past freshUntil until staleUntil (stale entries are kept)', async () => {
        const k = key('stale')
        const now = Date.now()
        const e = entry(values.make(5), { createdAt: now - 120_000, freshUntil: now - 60_000, staleUntil: now + HOUR })
        await store.set(k, e)
        expectEntry(await store.get(k), e)
      })

      it('keeps an entry that lives longer than 30 days', async () => {
        // Memcached reads an expiry over 30 days as a timestamp; a store must not turn that into "already expired".
        const k = key('long-lived')
        const now = Date.now()
        const e = entry(values.make(6), { freshUntil: now + 40 * 24 * HOUR, staleUntil: now + 45 * 24 * HOUR })
        await store.set(k, e)
        expectEntry(await store.get(k), e)
      })
    })

    if (caps.clearPrefix) {
      describe('clear(prefix)', () => {
        it('drops the keys starting with the prefix and nothing else', async () => {
          const gone = [key('users:1'), key('users:2'), key('users:')]
          const kept = [key('posts:users:1'), key('user'), key('Users:1'), key('users'), key('xusers:1')]
          await Promise.all([...gone, ...kept].map((k, i) => store.set(k, entry(values.make(i)))))
          await store.clear(`${prefix}users:`)
          for (const k of gone) expect(await store.get(k), k).toBeUndefined()
          for (const k of kept) expect(await store.get(k), k).toBeDefined()
        })

        it('treats the prefix literally, not as a pattern', async () => {
          // Glob characters, as a SCAN MATCH built without escaping would read them.
          const gone = [key('a*b?[c]\\:1'), key('a*b?[c]\\:2')]
          const kept = [key('aXbY[c]\\:1'), key('axxb?c\\:1'), key('a*b?[c]:1'), key('a*b?c\\:1'), key('a%b_[c]\\:1')]
          await Promise.all([...gone, ...kept].map((k, i) => store.set(k, entry(values.make(i)))))
          await store.clear(`${prefix}a*b?[c]\\:`)
          for (const k of gone) expect(await store.get(k), k).toBeUndefined()
          for (const k of kept) expect(await store.get(k), k).toBeDefined()
        })

        it('a prefix that matches nothing changes nothing', async () => {
          const keys = [key('one'), key('two')]
          await Promise.all(keys.map((k, i) => store.set(k, entry(values.make(i)))))
          await store.clear(`${prefix}nothing-here:`)
          for (const [i, k] of keys.entries()) values.expectSame((await store.get(k))?.value, values.make(i))
        })

        it('clears many keys (more than one batch of a scan)', async () => {
          const gone = Array.from({ length: 1200 }, (_, i) => key(`bulk:${i}`))
          const kept = key('bulk-survivor')
          await Promise.all(gone.map((k, i) => store.set(k, entry(values.make(i)))))
          await store.set(kept, entry(values.make(-1)))
          await store.clear(`${prefix}bulk:`)
          const left = await Promise.all(gone.map((k) => store.get(k)))
          expect(left.filter((e) => e !== undefined)).toHaveLength(0)
          values.expectSame((await store.get(kept))?.value, values.make(-1))
        }, 60_000)

        it('the store keeps working after a clear', async () => {
          const k = key('after-clear')
          await store.set(k, entry(values.make(1)))
          await store.clear(prefix)
          expect(await store.get(k)).toBeUndefined()
          await store.set(k, entry(values.make(2)))
          values.expectSame((await store.get(k))?.value, values.make(2))
        })
      })
    }

    if (caps.clearAll) {
      describe('clear()', () => {
        it('drops every key', async () => {
          const keys = [key('x'), key('y:z'), key('😀')]
          await Promise.all(keys.map((k, i) => store.set(k, entry(values.make(i)))))
          await store.clear()
          for (const k of keys) expect(await store.get(k), k).toBeUndefined()
          await store.set(keys[0]!, entry(values.make(9)))
          values.expectSame((await store.get(keys[0]!))?.value, values.make(9))
        })
      })
    }

    if (caps.batch) {
      describe('batch operations', () => {
        it('implements getMany, setMany and deleteMany', () => {
          expect(typeof store.getMany).toBe('function')
          expect(typeof store.setMany).toBe('function')
          expect(typeof store.deleteMany).toBe('function')
        })

        it('getMany answers in the order asked, with undefined for missing keys', async () => {
          const [a, b, c] = [key('a'), key('b'), key('c')]
          await store.set(a, entry(values.make(1)))
          await store.set(c, entry(values.make(3)))
          const got = await store.getMany!([c, b, a, key('d'), a])
          expect(got).toHaveLength(5)
          values.expectSame(got[0]?.value, values.make(3))
          expect(got[1]).toBeUndefined()
          values.expectSame(got[2]?.value, values.make(1))
          expect(got[3]).toBeUndefined()
          values.expectSame(got[4]?.value, values.make(1))
        })

        it('setMany stores every entry with its own fields', async () => {
          const now = Date.now()
          const items = Array.from({ length: 25 }, (_, i): [string, StoredEntry] => [
            key(`many:${i}`),
            entry(values.make(i), { createdAt: now - i, tags: [tag(`t${i % 3}`)], cost: i }),
          ])
          await store.setMany!(items)
          for (const [k, e] of items) expectEntry(await store.get(k), e)
          const got = await store.getMany!(items.map(([k]) => k))
          for (const [i, e] of got.entries()) expectEntry(e, items[i]![1])
        })

        it('setMany overwrites existing keys', async () => {
          const k = key('replaced')
          await store.set(k, entry(values.make(1)))
          await store.setMany!([[k, entry(values.make(2))]])
          values.expectSame((await store.get(k))?.value, values.make(2))
        })

        it('deleteMany answers how many live keys it deleted', async () => {
          const [a, b, c] = [key('a'), key('b'), key('c')]
          await store.setMany!([
            [a, entry(values.make(1))],
            [b, entry(values.make(2))],
            [c, entry(values.make(3))],
          ])
          expect(await store.deleteMany!([a, key('missing'), c])).toBe(2)
          expect(await store.get(a)).toBeUndefined()
          expect(await store.get(c)).toBeUndefined()
          values.expectSame((await store.get(b))?.value, values.make(2))
          expect(await store.deleteMany!([a, c])).toBe(0)
        })

        it('accepts empty batches', async () => {
          expect(await store.getMany!([])).toEqual([])
          await expect(store.setMany!([])).resolves.toBeUndefined()
          expect(await store.deleteMany!([])).toBe(0)
        })
      })
    }

    if (caps.expiry) {
      describe('expiry', () => {
        it('does not return an entry whose staleUntil has passed', async () => {
          const k = key('expired')
          const now = Date.now()
          await store.set(
            k,
            entry(values.make(1), { createdAt: now - 10_000, freshUntil: now - 5000, staleUntil: now - 1000 }),
          )
          expect(await store.get(k)).toBeUndefined()
        })

        it('writing an expired entry over a live one leaves nothing to read', async () => {
          const k = key('expired-overwrite')
          const now = Date.now()
          await store.set(k, entry(values.make(1)))
          await store.set(
            k,
            entry(values.make(2), { createdAt: now - 10_000, freshUntil: now - 5000, staleUntil: now - 1 }),
          )
          expect(await store.get(k)).toBeUndefined()
        })

        it(
          'drops entries once staleUntil has passed, and keeps the ones rewritten with a later one',
          async () => {
            const ttl = 300 * scale
            const [short, renewed, long] = [key('short'), key('renewed'), key('long')]
            const start = Date.now()
            const shortEntry = entry(values.make(1), { createdAt: start, freshUntil: start, staleUntil: start + ttl })
            await store.set(short, shortEntry)
            await store.set(renewed, entry(values.make(2), { staleUntil: start + ttl }))
            await store.set(renewed, entry(values.make(3), { staleUntil: start + HOUR }))
            await store.set(long, entry(values.make(4), { staleUntil: start + HOUR }))
            const read = await store.get(short)
            // Only meaningful while the entry is surely alive; a slow machine may already be past it.
            if (Date.now() < start + ttl - 100 * scale) expectEntry(read, shortEntry)

            await sleep(start + ttl + 400 * scale - Date.now())
            expect(await store.get(short)).toBeUndefined()
            values.expectSame((await store.get(renewed))?.value, values.make(3))
            values.expectSame((await store.get(long))?.value, values.make(4))
          },
          20_000 + 2000 * scale,
        )

        if (caps.batch) {
          it(
            'setMany gives each entry its own expiry',
            async () => {
              const ttl = 300 * scale
              const [short, long] = [key('batch-short'), key('batch-long')]
              const start = Date.now()
              await store.setMany!([
                [short, entry(values.make(1), { staleUntil: start + ttl })],
                [long, entry(values.make(2), { staleUntil: start + HOUR })],
              ])
              await sleep(start + ttl + 400 * scale - Date.now())
              const [a, b] = await store.getMany!([short, long])
              expect(a).toBeUndefined()
              values.expectSame(b?.value, values.make(2))
            },
            20_000 + 2000 * scale,
          )
        }
      })
    }

    if (caps.largeValues) {
      describe('large values', () => {
        it(`round-trips a value of ${largeSize} bytes intact`, async () => {
          const k = key('large')
          const big = values.large(largeSize)
          await store.set(k, entry(big))
          values.expectSame((await store.get(k))?.value, big)
        }, 60_000)

        it('a large value can be replaced by a small one and the other way round', async () => {
          const k = key('large-small')
          const big = values.large(largeSize)
          await store.set(k, entry(big))
          await store.set(k, entry(values.make(1)))
          values.expectSame((await store.get(k))?.value, values.make(1))
          await store.set(k, entry(big))
          values.expectSame((await store.get(k))?.value, big)
        }, 60_000)
      })
    }

    if (caps.unicodeKeys) {
      describe('unusual keys', () => {
        // Pairs that must not collide: NFC/NFD forms, case, an escape and what it stands for, separators.
        const suffixes = [
          '😀',
          '😀😀',
          '👩‍👩‍👧‍👦',
          '日本語のキー',
          '中文键',
          '한국어',
          'ключ',
          'مفتاح',
          '\u00e9',
          'e\u0301',
          'Key',
          'key',
          'a b',
          'a  b',
          'a%20b',
          'a:b',
          'a::b',
          'a\nb',
          'a\r\nb',
          'a\tb',
          'a\\nb',
          'a\u0000b',
          'trailing ',
          ' leading',
          '"quoted"',
          "it's",
          '{braces}',
          'x'.repeat(200),
        ]

        it('round-trips every key and keeps them distinct', async () => {
          const keys = suffixes.map((s) => key(`u:${s}`))
          expect(new Set(keys).size).toBe(keys.length)
          for (const [i, k] of keys.entries()) await store.set(k, entry(values.make(i)))
          for (const [i, k] of keys.entries()) {
            const got = await store.get(k)
            expect(got, JSON.stringify(k)).toBeDefined()
            values.expectSame(got?.value, values.make(i))
          }
        })

        it('deletes one unusual key without touching its look-alikes', async () => {
          const [nfc, nfd, spaced, escaped] = [key('u:\u00e9'), key('u:e\u0301'), key('u:a b'), key('u:a%20b')]
          await Promise.all([nfc, nfd, spaced, escaped].map((k, i) => store.set(k, entry(values.make(i)))))
          expect(await store.delete(nfd)).toBe(true)
          expect(await store.delete(spaced)).toBe(true)
          expect(await store.get(nfd)).toBeUndefined()
          expect(await store.get(spaced)).toBeUndefined()
          values.expectSame((await store.get(nfc))?.value, values.make(0))
          values.expectSame((await store.get(escaped))?.value, values.make(3))
        })

        if (caps.clearPrefix) {
          it('clears by a non-ASCII prefix', async () => {
            const gone = [key('日本:1'), key('日本:😀')]
            const kept = [key('日本語'), key('日:本')]
            await Promise.all([...gone, ...kept].map((k, i) => store.set(k, entry(values.make(i)))))
            await store.clear(`${prefix}日本:`)
            for (const k of gone) expect(await store.get(k), k).toBeUndefined()
            for (const k of kept) expect(await store.get(k), k).toBeDefined()
          })
        }
      })
    }

    describe('concurrent callers', () => {
      it('50 concurrent writers of one key leave one of their entries, whole', async () => {
        const k = key('contended')
        const base = Date.now()
        // Every field encodes the writer, so a mix of two writes is detectable.
        const writes = Array.from({ length: 50 }, (_, i) =>
          entry(values.make(i), {
            createdAt: base + i,
            freshUntil: base + HOUR + i,
            staleUntil: base + 2 * HOUR + i,
            tags: [tag(`writer:${i}`)],
            cost: i,
          }),
        )
        await Promise.all(writes.map((e) => store.set(k, e)))
        const got = await store.get(k)
        expect(got).toBeDefined()
        const i = (got?.createdAt ?? Number.NaN) - base
        expect(i).toBeGreaterThanOrEqual(0)
        expect(i).toBeLessThan(50)
        expectEntry(got, writes[i]!)
        values.expectSame(got?.value, values.make(i))
      })

      it('readers racing writers and deletes only ever see a whole entry or nothing', async () => {
        const k = key('race')
        const base = Date.now()
        const ops: Promise<unknown>[] = []
        const reads: Promise<StoredEntry | undefined>[] = []
        for (let i = 0; i < 60; i++) {
          if (i % 10 === 9) ops.push(store.delete(k))
          else ops.push(store.set(k, entry(values.make(i), { createdAt: base + i, cost: i })))
          reads.push(store.get(k))
        }
        await Promise.all(ops)
        for (const got of await Promise.all(reads)) {
          if (got === undefined) continue
          const i = got.createdAt - base
          expect(got.cost).toBe(i)
          values.expectSame(got.value, values.make(i))
        }
      })

      it('500 concurrent writes to distinct keys are all readable', async () => {
        const keys = Array.from({ length: 500 }, (_, i) => key(`parallel:${i}`))
        await Promise.all(keys.map((k, i) => store.set(k, entry(values.make(i)))))
        const got = await Promise.all(keys.map((k) => store.get(k)))
        for (const [i, e] of got.entries()) values.expectSame(e?.value, values.make(i))
      }, 60_000)
    })

    if (caps.tags) {
      describe('tags', () => {
        it('implements deleteTagged', () => {
          expect(typeof store.deleteTagged).toBe('function')
        })

        it('deleteTagged drops exactly the tagged entries and counts them', async () => {
          const [red, blue] = [tag('red'), tag('blue')]
          const redKeys = [key('r1'), key('r2'), key('r3')]
          const both = key('both')
          const blueKey = key('b1')
          const plain = key('plain')
          for (const k of redKeys) await store.set(k, entry(values.make(1), { tags: [red] }))
          await store.set(both, entry(values.make(2), { tags: [blue, red] }))
          await store.set(blueKey, entry(values.make(3), { tags: [blue] }))
          await store.set(plain, entry(values.make(4)))

          expect(await store.deleteTagged!([red])).toBe(4)
          for (const k of [...redKeys, both]) expect(await store.get(k), k).toBeUndefined()
          values.expectSame((await store.get(blueKey))?.value, values.make(3))
          values.expectSame((await store.get(plain))?.value, values.make(4))
          expect(await store.deleteTagged!([red])).toBe(0)
        })

        it('counts an entry carrying several of the tags once', async () => {
          const [a, b] = [tag('a'), tag('b')]
          await store.set(key('ab'), entry(values.make(1), { tags: [a, b] }))
          await store.set(key('b'), entry(values.make(2), { tags: [b] }))
          expect(await store.deleteTagged!([a, b])).toBe(2)
          expect(await store.get(key('ab'))).toBeUndefined()
          expect(await store.get(key('b'))).toBeUndefined()
        })

        it('an unknown tag deletes nothing', async () => {
          await store.set(key('kept'), entry(values.make(1), { tags: [tag('known')] }))
          expect(await store.deleteTagged!([tag('unknown')])).toBe(0)
          expect(await store.deleteTagged!([])).toBe(0)
          expect(await store.get(key('kept'))).toBeDefined()
        })

        it('only the current tags of a rewritten entry count', async () => {
          const [before, after] = [tag('before'), tag('after')]
          const k = key('retagged')
          await store.set(k, entry(values.make(1), { tags: [before] }))
          await store.set(k, entry(values.make(2), { tags: [after] }))
          expect(await store.deleteTagged!([before])).toBe(0)
          values.expectSame((await store.get(k))?.value, values.make(2))
          expect(await store.deleteTagged!([after])).toBe(1)
          expect(await store.get(k)).toBeUndefined()
        })

        it('a deleted entry is not counted again by its tag', async () => {
          const t = tag('gone')
          const [a, b] = [key('a'), key('b')]
          await store.set(a, entry(values.make(1), { tags: [t] }))
          await store.set(b, entry(values.make(2), { tags: [t] }))
          await store.delete(a)
          expect(await store.deleteTagged!([t])).toBe(1)
        })

        it('tags with separators and non-ASCII characters are matched exactly', async () => {
          const tags = [tag('a:b'), tag('a'), tag('ä'), tag('a b'), tag('a*')]
          const keys = tags.map((_, i) => key(`tagged:${i}`))
          await Promise.all(keys.map((k, i) => store.set(k, entry(values.make(i), { tags: [tags[i]!] }))))
          expect(await store.deleteTagged!([tags[0]!, tags[4]!])).toBe(2)
          expect(await store.get(keys[0]!)).toBeUndefined()
          expect(await store.get(keys[4]!)).toBeUndefined()
          for (const i of [1, 2, 3]) expect(await store.get(keys[i]!), tags[i]).toBeDefined()
        })
      })
    }
  })
}

/** An entry alive for an hour unless `fields` say otherwise. */
function entry(value: unknown, fields: Partial<Omit<StoredEntry, 'value'>> = {}): StoredEntry {
  const now = Date.now()
  const staleUntil = fields.staleUntil ?? now + HOUR
  return { value, createdAt: now, freshUntil: Math.min(now + HOUR, staleUntil), staleUntil, ...fields }
}

/** Compares the metadata; the value is compared by the value maker, which knows bytes from objects. */
function expectEntry(actual: StoredEntry | undefined, expected: StoredEntry): void {
  expect(actual).toBeDefined()
  if (actual === undefined) return
  expect(actual.createdAt).toBe(expected.createdAt)
  expect(actual.freshUntil).toBe(expected.freshUntil)
  expect(actual.staleUntil).toBe(expected.staleUntil)
  // Order of tags carries no meaning; stores may keep them in a set.
  expect([...(actual.tags ?? [])].sort()).toEqual([...(expected.tags ?? [])].sort())
  expect(actual.cost).toBe(expected.cost)
}

interface ValueMaker {
  /** A small value that differs for every `seed`. */
  make(seed: number): unknown
  /** Empty and falsy values that must still be entries. */
  empties(): unknown[]
  /** A value of `size` bytes (characters for objects) whose content detects truncation and reordering. */
  large(size: number): unknown
  expectSame(actual: unknown, expected: unknown): void
}

function valueMaker(objects: boolean): ValueMaker {
  if (objects) {
    return {
      make: (seed) => ({
        id: seed,
        label: `value ${seed}`,
        nested: { list: [seed, -seed, `${seed}`], ok: seed % 2 === 0 },
      }),
      empties: () => [null, 0, '', false, [], {}],
      large: (size) => patternString(size),
      expectSame: (actual, expected) => expect(actual).toEqual(expected),
    }
  }
  const encoder = new TextEncoder()
  return {
    make: (seed) => encoder.encode(`value ${seed} ${'·'.repeat(Math.abs(seed) % 7)}`),
    empties: () => [new Uint8Array(0), new Uint8Array([0]), new Uint8Array([0, 0, 0])],
    large: (size) => {
      const bytes = new Uint8Array(size)
      // Not one repeated byte: a dropped or shifted chunk changes the content, not only the length.
      for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >>> 8) + (i >>> 16)) & 0xff
      return bytes
    },
    expectSame: (actual, expected) => {
      expect(actual).toBeInstanceOf(Uint8Array)
      const a = actual as Uint8Array
      const b = expected as Uint8Array
      expect(a.byteLength).toBe(b.byteLength)
      // Buffer.equals compares natively; toEqual walks a 1 MiB array element by element.
      const same = Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
        Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      )
      expect(same, 'bytes differ').toBe(true)
    },
  }
}

function patternString(size: number): string {
  const parts: string[] = []
  let length = 0
  for (let i = 0; length < size; i++) {
    const part = `${i.toString(36)}|`
    parts.push(part)
    length += part.length
  }
  return parts.join('').slice(0, size)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}
