// Review of memcachedStore on a real memcached: regressions for the bugs it found (now fixed) and edge cases worth pinning.
import { type MemcachedServer, startMemcached } from '@cache/testing'
import * as memjs from 'memjs'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { createCache } from '../cache.js'
import { defaultCodec } from '../codec.js'
import { isCacheError } from '../errors.js'
import { liveEntry, caught as rejection } from '../test-helpers.js'
import type { StoredEntry } from '../types.js'
import { type MemcachedClient, type MemcachedStore, memcachedKey, memcachedStore } from './memcached.js'

const HOUR = 3_600_000

let server: MemcachedServer
let raw: MemcachedClient
const stores: MemcachedStore[] = []
const clients: MemcachedClient[] = []
let run = 0

beforeAll(async () => {
  server = await startMemcached()
  raw = memjs.Client.create(server.address, { retries: 1, logger: { log: () => {} } }) as MemcachedClient
})
afterEach(() => {
  vi.restoreAllMocks()
})
afterAll(async () => {
  for (const s of stores) await s.close()
  for (const c of clients) c.close()
  raw?.close()
  await server?.stop()
})

function makeStore(options: Partial<Parameters<typeof memcachedStore>[0]> = {}): MemcachedStore {
  const s = memcachedStore({ servers: server.address, commandTimeout: '5s', ...options } as Parameters<
    typeof memcachedStore
  >[0])
  stores.push(s)
  return s
}

function ns(): string {
  return `r${process.pid}x${Date.now().toString(36)}x${run++}`
}

const entry = (value: unknown, fields: Partial<Omit<StoredEntry, 'value'>> = {}) => liveEntry(value, fields, HOUR)

/** The generation token of the (single-level) namespace in a physical key `<g>|<ns>#<gen>:<rest>`. */
function nsGen(physical: string): string {
  const m = /^[^|]+\|[^:]*#([^#:]+):/.exec(physical)
  if (!m) throw new Error(`unexpected physical key ${physical}`)
  return m[1]!
}

describe('generations', () => {
  it('a bump racing an eviction (add fails, then the key is gone) must not restart the generation at 0', async () => {
    // Regression (found in review, fixed): bump() does `add`, else `client.increment(wire, 1)`. memjs sends the binary INCR with expiration 0 and
    // initial 0, so when the generation key disappears between the failed `add` and the `incr` (LRU eviction, or
    // another operator's delete), memcached CREATES it with value 0 — far below every generation ever used (they
    // start at Date.now()). Generations then count 0, 1, 2, ... again, and a second such race lands on values already
    // used, so entries cleared earlier come back. Fix: never let INCR create the key — send expiration 0xffffffff
    // (binary protocol: "fail with NOT_FOUND if missing"; memjs needs the raw request or a patched increment since its
    // `initial` is 32-bit) and on NOT_FOUND loop back to `add(Date.now())`; or replace incr with a fresh unique value
    // (e.g. `set` of Date.now()*1000+random / a random token), which also removes the clock-reuse problem below.
    const real = memjs.Client.create(server.address, { retries: 1, logger: { log: () => {} } }) as MemcachedClient
    clients.push(real)
    let evictOnFailedAdd = false
    const client = new Proxy(real, {
      get(target, prop) {
        if (prop === 'add') {
          return async (key: string, value: string, opts: { expires?: number }) => {
            const r = await target.add(key, value, opts)
            if (!r && evictOnFailedAdd && key.startsWith('@o:')) await target.delete(key) // the eviction
            return r
          }
        }
        const v = Reflect.get(target, prop, target)
        return typeof v === 'function' ? v.bind(target) : v
      },
    }) as MemcachedClient
    const store = memcachedStore({ client, commandTimeout: '5s' })
    stores.push(store)
    const a = ns()
    const k = `${a}:k`
    await store.set(k, entry('first'))
    const before = nsGen(await store.physicalKey(k))

    evictOnFailedAdd = true
    await store.clear(`${a}:`)
    evictOnFailedAdd = false
    const after = nsGen(await store.physicalKey(k))
    expect(after, 'a bumped generation must differ from the one it replaced').not.toBe(before)

    // Now show the consequence: an entry written under the restarted generation, cleared, then the same race again.
    await store.set(k, entry('cleared'))
    await store.clear(`${a}:`)
    expect(await store.get(k)).toBeUndefined()
    evictOnFailedAdd = true
    await store.clear(`${a}:`)
    evictOnFailedAdd = false
    expect(await store.get(k), 'a cleared entry came back').toBeUndefined()
  })

  it('an evicted generation recreated by an instance whose clock is a few ms behind reuses an old value', async () => {
    // Regression (found in review, fixed): readGen()/bump() recreate a missing generation as String(Date.now()). That is only "above any value it
    // held before" if every instance's clock is ahead of the clock that created it plus one ms per bump since. With
    // several hosts a few ms of skew (or a burst of more than one bump per ms — `clear`/`deleteTagged` in a loop) the
    // recreated value is at or below old ones, and after a few more bumps it equals a generation whose entries were
    // cleared: they are served again. Fix: make recreated/bumped generations unique rather than clock-ordered, e.g.
    // store a random 64-bit token (or `${Date.now()}${random}`) and compare by equality only (keys and tag checks
    // already only need equality), bumping with `set` of a new token (concurrent bumps then still both invalidate).
    const [s1, s2] = [makeStore(), makeStore()]
    const a = ns()
    const k = `${a}:k`
    await s1.set(k, entry('old'))
    const created = nsGen(await s1.physicalKey(k))
    await s1.clear(`${a}:`) // old is cleared: a new generation
    expect(await s1.get(k)).toBeUndefined()
    await raw.delete(`@o:${a}`) // LRU evicts the generation key
    // Instance 2 on a host whose clock is behind by (now - created + 1) ms — a few ms.
    const skewed = vi.spyOn(Date, 'now').mockReturnValue(Date.now() - 5)
    expect(await s2.get(k)).toBeUndefined() // recreates the generation
    skewed.mockRestore()
    await s2.clear(`${a}:`)
    expect(nsGen(await s2.physicalKey(k))).not.toBe(created)
    expect(await s1.get(k), 'a cleared entry came back').toBeUndefined()
  })

  it('concurrent clears by two instances on a missing generation both take effect (pin)', async () => {
    const [s1, s2] = [makeStore(), makeStore()]
    const a = ns()
    await s1.set(`${a}:k`, entry('v'))
    await raw.delete(`@o:${a}`)
    await s1.set(`${a}:k`, entry('v2'))
    const g0 = nsGen(await s1.physicalKey(`${a}:k`))
    await Promise.all([s1.clear(`${a}:`), s2.clear(`${a}:`), s1.clear(`${a}:`)])
    expect(nsGen(await s2.physicalKey(`${a}:k`))).not.toBe(g0)
    expect(await s2.get(`${a}:k`)).toBeUndefined()
  })

  it('tag generations: invalidation across instances and an evicted tag generation only invalidates more (pin)', async () => {
    const [s1, s2] = [makeStore(), makeStore()]
    const a = ns()
    const tag = `${a}:tag:x`
    await s1.set(`${a}:k`, entry('v', { tags: [tag, tag] }))
    expect((await s2.get(`${a}:k`))?.value).toBe('v')
    await raw.delete(`@t:${tag}`)
    expect(await s2.get(`${a}:k`)).toBeUndefined()
    await s1.set(`${a}:k`, entry('v2', { tags: [tag] }))
    await s2.deleteTagged([tag, tag])
    expect(await s1.get(`${a}:k`)).toBeUndefined()
  })
})

describe('expiry', () => {
  it('staleUntil = Infinity (never expires) is stored, not a RangeError', async () => {
    // Regression (found in review, fixed): writeOne: ms = Infinity → seconds = Infinity > 30 days → expires = Math.ceil(Infinity) + 1 = Infinity, and
    // memjs' makeExpiration does buf.writeUInt32BE(Infinity) → RangeError, surfaced as E_STORE_UNAVAILABLE; the
    // entry is never written (and the previous value stays). Fix: when staleUntil is not finite, send expires 0
    // (memcached's "never").
    const store = makeStore()
    const k = `${ns()}:forever`
    const e = entry('forever', { freshUntil: Number.POSITIVE_INFINITY, staleUntil: Number.POSITIVE_INFINITY })
    await store.set(k, e)
    expect(await store.get(k)).toEqual(e)
  })

  it('a TTL reaching past 2106 (unix seconds > 2^32 - 1) is stored, not a RangeError', async () => {
    // Regression (found in review, fixed): the absolute expiry Math.ceil(staleUntil / 1000) + 1 overflows memcached's 32-bit exptime for staleUntil
    // after 2106-02-07 (a TTL of ~81 years or more, e.g. Cache ttl '30000d'); memjs throws RangeError from
    // writeUInt32BE and set() rejects with E_STORE_UNAVAILABLE. Fix: clamp — send 0 ("never", reads still stop at
    // staleUntil) when the absolute time exceeds 0xffffffff.
    const store = makeStore()
    const k = `${ns()}:far`
    const far = Date.now() + 30_000 * 24 * HOUR
    const e = entry('far', { freshUntil: far, staleUntil: far })
    await store.set(k, e)
    expect(await store.get(k)).toEqual(e)
  })

  it('exactly 2592000 s (relative) and 2592001 s (absolute) are both kept by memcached (pin)', async () => {
    const store = makeStore()
    const a = ns()
    const now = Date.now()
    // ceil(ms / 1000) + 1 = 2_592_000 → still relative (memcached: absolute only when > 30 days).
    const rel = entry('rel', { staleUntil: now + 2_591_999_000 - 400, freshUntil: now + 1000 })
    // ceil(ms / 1000) + 1 = 2_592_001 → absolute.
    const abs = entry('abs', { staleUntil: now + 2_592_000_000 - 400, freshUntil: now + 1000 })
    await store.set(`${a}:rel`, rel)
    await store.set(`${a}:abs`, abs)
    expect((await raw.get(await store.physicalKey(`${a}:rel`))).value).not.toBeNull()
    expect((await raw.get(await store.physicalKey(`${a}:abs`))).value).not.toBeNull()
    expect((await store.get(`${a}:rel`))?.value).toBe('rel')
    expect((await store.get(`${a}:abs`))?.value).toBe('abs')
  })
})

describe('keys', () => {
  it('keys differing only in lone surrogates stay distinct', async () => {
    // Regression (found in review, fixed): memcachedKey() returns such keys unchanged, and both memjs (Buffer.from(key), UTF-8) and the SHA-256 path
    // (hash.update(string), UTF-8) replace every lone surrogate with U+FFFD, so 'ns:\uD800', 'ns:\uDBFF' and
    // 'ns:\uFFFD' are the same memcached key: one key's set overwrites / is read as the other's (a memory store keeps
    // them apart). Fix: when the key is not well-formed UTF-16 (/[\uD800-\uDFFF]/ not in a valid pair, or
    // !key.isWellFormed()), hash it over an encoding that keeps code units (Buffer.from(key, 'utf16le')).
    const store = makeStore()
    const a = ns()
    const keys = [`${a}:\uD800`, `${a}:\uDBFF`, `${a}:\uFFFD`]
    for (const [i, k] of keys.entries()) await store.set(k, entry(i))
    const got = await store.getMany(keys)
    expect(got.map((e) => e?.value)).toEqual([0, 1, 2])
  })

  it("'@', '#', '|' and '.' look-alikes never share a memcached key or a generation (pin)", async () => {
    const store = makeStore()
    const a = ns()
    const keys = [
      `${a}:x`,
      `${a}#1:x`,
      `${a}:#1:x`,
      `${a}|x`,
      `${a}:x|y`,
      `@o:${a}`,
      `@g`,
      `${a}#1.b:x`,
      `${a}.b#1:x`,
      `${a}.b:x`,
      `1|${a}#1:x`,
      `h:${a}`,
    ]
    for (const [i, k] of keys.entries()) await store.set(k, entry(i))
    const wires = await Promise.all(keys.map((k) => store.physicalKey(k)))
    expect(new Set(wires).size).toBe(keys.length)
    expect((await store.getMany(keys)).map((e) => e?.value)).toEqual(keys.map((_, i) => i))
    await store.clear(`${a}:`)
    const alive = (await store.getMany(keys)).map((e) => e?.value)
    expect(alive).toEqual([undefined, 1, undefined, 3, undefined, 5, 6, 7, 8, 9, 10, 11])
  })

  it("keys without ':' (the '' space) survive namespace clears and go with clear() (pin)", async () => {
    const own = await startMemcached()
    const store = memcachedStore({ servers: own.address, commandTimeout: '5s' })
    try {
      await store.set('plain', entry('p'))
      await store.set('ns:k', entry('n'))
      await store.clear('ns:')
      await store.clear(':')
      await store.clear('.')
      expect((await store.get('plain'))?.value).toBe('p')
      await store.clear()
      expect(await store.get('plain')).toBeUndefined()
    } finally {
      await store.close()
      await own.stop()
    }
  })

  it('a 250-byte physical key is kept; 251 bytes is hashed, readable, and cleared with its namespace (pin)', async () => {
    const store = makeStore()
    const a = ns()
    const probe = await store.physicalKey(`${a}:`)
    const k250 = `${a}:${'k'.repeat(250 - probe.length)}`
    const k251 = `${k250}k`
    await store.set(k250, entry(250))
    await store.set(k251, entry(251))
    expect(await store.physicalKey(k250)).toHaveLength(250)
    expect(await store.physicalKey(k251)).toMatch(/^h:/)
    expect((await store.getMany([k250, k251])).map((e) => e?.value)).toEqual([250, 251])
    await store.clear(`${a}:`)
    expect(await store.getMany([k250, k251])).toEqual([undefined, undefined])
    expect(memcachedKey(`@t:${'x'.repeat(300)}`)).toMatch(/^h:/)
  })
})

describe('batches', () => {
  it('getMany with duplicate keys answers each position; deleteMany counts distinct keys (pin)', async () => {
    const store = makeStore()
    const a = ns()
    await store.set(`${a}:1`, entry(1))
    expect((await store.getMany([`${a}:1`, `${a}:2`, `${a}:1`])).map((e) => e?.value)).toEqual([1, undefined, 1])
    expect(await store.deleteMany([`${a}:1`, `${a}:1`, `${a}:2`])).toBe(1)
    expect(await store.delete(`${a}:1`)).toBe(false)
  })
})

describe('value size', () => {
  it('an encoded entry of exactly maxValueBytes (default) under a 250-byte key is stored; one byte more is refused (pin)', async () => {
    const store = makeStore()
    const a = ns()
    const probe = await store.physicalKey(`${a}:`)
    const key = `${a}:${'k'.repeat(250 - probe.length)}`
    expect(await store.physicalKey(key)).toHaveLength(250)
    const max = 1024 * 1024 - 1024
    const sized = (target: number): StoredEntry => {
      const base = entry(null)
      let n = target - 40
      for (;;) {
        const e = { ...base, value: new Uint8Array(n).fill(1) }
        const len = defaultCodec.encode([e.createdAt, e.freshUntil, e.staleUntil, null, null, e.value]).byteLength
        if (len === target) return e
        n += target - len
      }
    }
    const exact = sized(max)
    await store.set(key, exact)
    const stored = await store.get(key)
    expect(stored).toBeDefined()
    expect((stored!.value as Uint8Array).byteLength).toBe((exact.value as Uint8Array).byteLength)
    const err = await rejection(store.set(key, sized(max + 1)))
    expect(isCacheError(err, 'E_VALUE_TOO_LARGE')).toBe(true)
    expect(await store.get(key)).toBeUndefined()
  })
})

describe('through a Cache', () => {
  it('Cache.clear() of a nested namespace with look-alike names (pin)', async () => {
    const store = makeStore()
    const root = createCache({ store, namespace: ns() })
    const t = root.namespace('t#1')
    const u = root.namespace('t')
    const tu = u.namespace('1')
    for (const c of [t, u, tu]) await c.set('k', c.namespaceName)
    await u.clear()
    expect(await u.get('k')).toBeUndefined()
    expect(await tu.get('k')).toBeUndefined()
    expect(await t.get('k')).toBe(t.namespaceName)
    await root.close()
  })
})
