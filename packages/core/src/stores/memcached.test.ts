import { Buffer } from 'node:buffer'
import { type MemcachedServer, startMemcached } from '@cache/testing'
import * as memjs from 'memjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../cache.js'
import { defaultCodec } from '../codec.js'
import { isCacheError } from '../errors.js'
import { liveEntry, pollUntil, caught as rejection } from '../test-helpers.js'
import type { StoredEntry } from '../types.js'
import { type MemcachedClient, type MemcachedStore, memcachedKey, memcachedStore } from './memcached.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR

let server: MemcachedServer
let raw: MemcachedClient
const stores: MemcachedStore[] = []
let run = 0

beforeAll(async () => {
  server = await startMemcached()
  raw = memjs.Client.create(server.address, { retries: 1, logger: { log: () => {} } }) as MemcachedClient
})
afterAll(async () => {
  for (const s of stores) await s.close()
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

/** A namespace of its own for each test. */
function ns(): string {
  return `t${process.pid}x${Date.now().toString(36)}x${run++}`
}

const entry = (value: unknown, fields: Partial<Omit<StoredEntry, 'value'>> = {}) => liveEntry(value, fields, HOUR)

describe('keys', () => {
  it('memcachedKey keeps short safe keys and hashes the others', () => {
    expect(memcachedKey('app:users:1')).toBe('app:users:1')
    expect(memcachedKey('日本:キー')).toBe('日本:キー')
    for (const k of ['x'.repeat(251), 'a b', 'a\nb', 'a\u0000b', 'a\tb', 'a\u007fb', '日'.repeat(84)]) {
      const h = memcachedKey(k)
      expect(h, JSON.stringify(k)).toMatch(/^h:[A-Za-z0-9_-]{43}$/)
    }
    expect(memcachedKey('x'.repeat(250))).toBe('x'.repeat(250))
    expect(memcachedKey('a b')).not.toBe(memcachedKey('a  b'))
  })

  it('long, spaced, control-character and unicode keys round-trip and stay distinct', async () => {
    const store = makeStore()
    const n = ns()
    const suffixes = [
      'x'.repeat(300),
      `${'x'.repeat(299)}y`,
      'a b',
      'a  b',
      'a\nb',
      'a\u0000b',
      'ключ 😀',
      '日'.repeat(120),
    ]
    const keys = suffixes.map((s) => `${n}:${s}`)
    for (const [i, k] of keys.entries()) await store.set(k, entry(i))
    for (const [i, k] of keys.entries()) expect((await store.get(k))?.value, JSON.stringify(k)).toBe(i)
    expect(await store.physicalKey(keys[0]!)).toMatch(/^h:/)
    expect(await store.delete(keys[2]!)).toBe(true)
    expect(await store.get(keys[2]!)).toBeUndefined()
    expect((await store.get(keys[3]!))?.value).toBe(3)
    // A hashed key is still cleared with its namespace.
    await store.clear(`${n}:`)
    for (const k of keys) expect(await store.get(k)).toBeUndefined()
  })
})

describe('expiry', () => {
  it('a 300 ms TTL is whole seconds rounded up, never 0 ("forever"): the item is gone within a few seconds', async () => {
    const store = makeStore()
    const k = `${ns()}:short`
    const start = Date.now()
    await store.set(k, entry('v', { freshUntil: start + 300, staleUntil: start + 300 }))
    const wire = await store.physicalKey(k)
    expect((await raw.get(wire)).value).not.toBeNull()
    // Never served past staleUntil, whatever memcached still holds.
    await new Promise((r) => setTimeout(r, Math.max(0, start + 350 - Date.now())))
    expect(await store.get(k)).toBeUndefined()
    // memcached itself drops it: ceil(0.3 s) + 1 s of margin for its one-second clock.
    expect(await pollUntil(async () => (await raw.get(wire)).value === null, 6000)).toBe(true)
  }, 15_000)

  it('a 31-day TTL is sent as an absolute time and the entry stays readable', async () => {
    const store = makeStore()
    const k = `${ns()}:long`
    const e = entry('long', { staleUntil: Date.now() + 31 * DAY, freshUntil: Date.now() + 31 * DAY })
    await store.set(k, e)
    expect(await store.get(k)).toEqual(e)
    expect((await raw.get(await store.physicalKey(k))).value).not.toBeNull()
  })

  it('an entry already past staleUntil deletes the live one instead of being written', async () => {
    const store = makeStore()
    const k = `${ns()}:past`
    await store.set(k, entry('live'))
    const now = Date.now()
    await store.set(k, entry('dead', { createdAt: now - 5000, freshUntil: now - 2000, staleUntil: now - 1000 }))
    expect(await store.get(k)).toBeUndefined()
    expect((await raw.get(await store.physicalKey(k))).value).toBeNull()
  })
})

describe('value size', () => {
  it('E_VALUE_TOO_LARGE over maxValueBytes, and the old value is deleted', async () => {
    const store = makeStore({ maxValueBytes: 1000 })
    const k = `${ns()}:big`
    await store.set(k, entry('small'))
    const err = await rejection(store.set(k, entry(new Uint8Array(2000))))
    expect(isCacheError(err, 'E_VALUE_TOO_LARGE')).toBe(true)
    expect(await store.get(k)).toBeUndefined()
  })

  it("the server's own refusal (over its -I item size) is E_VALUE_TOO_LARGE too", async () => {
    const store = makeStore({ maxValueBytes: 4 * 1024 * 1024 })
    const k = `${ns()}:huge`
    await store.set(k, entry('small'))
    const err = await rejection(store.set(k, entry(new Uint8Array(1536 * 1024).fill(7))))
    expect(isCacheError(err, 'E_VALUE_TOO_LARGE')).toBe(true)
    expect((err as Error).cause).toBeInstanceOf(Error)
    expect(await store.get(k)).toBeUndefined()
    // The store still works.
    await store.set(k, entry('again'))
    expect((await store.get(k))?.value).toBe('again')
  })
})

describe('clear', () => {
  it("clear('a:') drops a's own keys, clear('a.') its children's, nothing outside", async () => {
    const store = makeStore()
    const a = ns()
    const keys = {
      own: `${a}:1`,
      ownDeep: `${a}:x:y`,
      child: `${a}.b:1`,
      grandchild: `${a}.b.c:1`,
      lookalike: `${a}b:1`,
      other: `${a}z.${a}:1`,
    }
    const write = () => Promise.all(Object.values(keys).map((k) => store.set(k, entry(k))))
    const alive = async () => {
      const out: string[] = []
      for (const [name, k] of Object.entries(keys)) if ((await store.get(k))?.value === k) out.push(name)
      return out.sort()
    }
    await write()
    await store.clear(`${a}:`)
    expect(await alive()).toEqual(['child', 'grandchild', 'lookalike', 'other'])
    await write()
    await store.clear(`${a}.`)
    expect(await alive()).toEqual(['lookalike', 'other', 'own', 'ownDeep'])
    await write()
    await store.clear(`${a}.b.`)
    expect(await alive()).toEqual(['child', 'lookalike', 'other', 'own', 'ownDeep'])
    await store.clear(`${a}.b:`)
    expect(await alive()).toEqual(['lookalike', 'other', 'own', 'ownDeep'])
    // Keys written after a clear are readable.
    await write()
    expect(await alive()).toEqual(Object.keys(keys).sort())
  })

  it('a clear made by one instance is seen by another on the same server', async () => {
    const [s1, s2] = [makeStore(), makeStore()]
    const a = ns()
    await s1.set(`${a}:k`, entry(1))
    expect((await s2.get(`${a}:k`))?.value).toBe(1)
    await s2.clear(`${a}:`)
    expect(await s1.get(`${a}:k`)).toBeUndefined()
  })

  it('with generationCacheTime, its own clears are seen at once', async () => {
    const store = makeStore({ generationCacheTime: '1m' })
    const a = ns()
    await store.set(`${a}:k`, entry(1))
    await store.clear(`${a}:`)
    expect(await store.get(`${a}:k`)).toBeUndefined()
  })

  it('prefixes that are not namespace boundaries reject with E_UNSUPPORTED', async () => {
    const store = makeStore()
    for (const p of ['ap', 'app:users:', 'a:b.', 'app.x:y']) {
      expect(isCacheError(await rejection(store.clear(p)), 'E_UNSUPPORTED'), p).toBe(true)
    }
  })

  it('Cache.clear() of a namespace drops it and its children only', async () => {
    const store = makeStore()
    const root = createCache({ store, namespace: ns() })
    const tenant = root.namespace('tenant:1')
    const child = tenant.namespace('sub')
    const other = root.namespace('tenant:2')
    for (const c of [root, tenant, child, other]) await c.set('k', c.namespaceName)
    await tenant.clear()
    expect(await tenant.get('k')).toBeUndefined()
    expect(await child.get('k')).toBeUndefined()
    expect(await root.get('k')).toBe(root.namespaceName)
    expect(await other.get('k')).toBe(other.namespaceName)
    await root.close()
  })
})

describe('tags', () => {
  it('deleteTagged invalidates across two instances (generations are shared) and resolves 0', async () => {
    const [s1, s2] = [makeStore(), makeStore()]
    const a = ns()
    const [red, blue] = [`${a}:tag:red`, `${a}:tag:blue`]
    await s1.set(`${a}:r`, entry('r', { tags: [red] }))
    await s1.set(`${a}:rb`, entry('rb', { tags: [red, blue] }))
    await s1.set(`${a}:b`, entry('b', { tags: [blue] }))
    await s1.set(`${a}:plain`, entry('plain'))
    expect((await s2.get(`${a}:rb`))?.tags?.slice().sort()).toEqual([blue, red].sort())
    expect(await s2.deleteTagged([red])).toBe(0)
    const got = await s1.getMany([`${a}:r`, `${a}:rb`, `${a}:b`, `${a}:plain`])
    expect(got.map((e) => e?.value)).toEqual([undefined, undefined, 'b', 'plain'])
    // Written after the invalidation: visible.
    await s2.set(`${a}:r`, entry('r2', { tags: [red] }))
    expect((await s1.get(`${a}:r`))?.value).toBe('r2')
  })

  it('Cache.invalidateTags works over memcached', async () => {
    const store = makeStore()
    const cache = createCache({ store, namespace: ns() })
    await cache.set('u1', 'one', { tags: ['user:1'] })
    await cache.set('u2', 'two', { tags: ['user:2'] })
    await cache.invalidateTags(['user:1'])
    expect(await cache.get('u1')).toBeUndefined()
    expect(await cache.get('u2')).toBe('two')
    await cache.close()
  })
})

describe('corrupted bytes', () => {
  it('garbage or foreign bytes: E_DESERIALIZE with a cause, and the key is deleted', async () => {
    const store = makeStore()
    const a = ns()
    for (const bytes of [Buffer.from('not ours'), Buffer.from(defaultCodec.encode({ foreign: true }))]) {
      const k = `${a}:bad`
      await store.set(k, entry('good'))
      const wire = await store.physicalKey(k)
      await raw.set(wire, bytes, { expires: 60 })
      const err = await rejection(store.get(k))
      expect(isCacheError(err, 'E_DESERIALIZE')).toBe(true)
      expect((err as Error).cause).toBeDefined()
      expect(await pollUntil(async () => (await raw.get(wire)).value === null, 2000)).toBe(true)
      expect(await store.get(k)).toBeUndefined()
    }
  })

  it('through createCache: getOrSet answers from the loader and emits an error event', async () => {
    const store = makeStore()
    const name = ns()
    const cache = createCache({ store, namespace: name })
    await cache.set('k', 'cached')
    await raw.set(await store.physicalKey(`${name}:k`), Buffer.from([0xc1, 1, 2, 3, 4, 5, 6, 7]), { expires: 60 })
    const errors: Error[] = []
    cache.on('error', ({ error }) => errors.push(error))
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded')
    expect(errors.some((e) => isCacheError(e, 'E_DESERIALIZE'))).toBe(true)
    expect(await cache.get('k')).toBe('loaded')
    await cache.close()
  })
})

describe('clients', () => {
  it("a client passed in is the user's: close() leaves it open", async () => {
    const client = memjs.Client.create(server.address, { logger: { log: () => {} } }) as MemcachedClient
    const store = memcachedStore({ client })
    const k = `${ns()}:k`
    await store.set(k, entry(1))
    await store.close()
    expect(isCacheError(await rejection(store.get(k)), 'E_CLOSED')).toBe(true)
    expect((await client.get(await makeStore().physicalKey(k))).value).not.toBeNull()
    client.close()
  })

  it('rejects bad options', () => {
    expect(() => memcachedStore({} as never)).toThrow(/client|servers/)
    expect(() => memcachedStore({ servers: 'x:1', commandTimeout: 0 })).toThrow(/commandTimeout/)
    // Longer than a timer can wait would become a 1 ms deadline: refused, like redisStore's.
    expect(() => memcachedStore({ servers: 'x:1', commandTimeout: '30d' })).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION', message: expect.stringContaining('commandTimeout') }),
    )
    expect(() => memcachedStore({ servers: 'x:1', maxValueBytes: -1 })).toThrow(/maxValueBytes/)
  })
})
