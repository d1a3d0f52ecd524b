import { type RedisServer, startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../cache.js'
import { defaultCodec } from '../codec.js'
import { isCacheError } from '../errors.js'
import { storeSuite } from '../testing/store-suite.js'
import type { StoredEntry } from '../types.js'
import { escapeGlob, keySlot, redisStore } from './redis.js'

let server: RedisServer
let client: Redis

beforeAll(async () => {
  server = await startRedis()
  client = new Redis(server.url)
})

afterAll(async () => {
  client?.disconnect()
  await server?.stop()
})

storeSuite('redisStore (standalone)', {
  create: () => redisStore({ client, commandTimeout: '5s' }),
  // The client is shared by the suite; the store must not close it.
  cleanup: async (store) => store.close(),
  keyPrefix: `redis-suite-${process.pid}`,
})

const now = () => Date.now()
const entry = (value: unknown, fields: Partial<StoredEntry> = {}): StoredEntry => ({
  value,
  createdAt: now(),
  freshUntil: now() + 60_000,
  staleUntil: now() + 120_000,
  ...fields,
})
let n = 0
const uniq = (s: string) => `t${process.pid}:${n++}:${s}`

describe('redisStore basics', () => {
  it('never closes a client it was given', async () => {
    const store = redisStore({ client })
    await store.close()
    expect(client.status).toBe('ready')
    expect(await client.ping()).toBe('PONG')
  })

  it('makes, uses and quits its own client from a URL', async () => {
    const store = redisStore({ redis: server.url })
    const k = uniq('own')
    await store.set(k, entry(new Uint8Array([1, 2, 3])))
    expect((await store.get(k))?.value).toEqual(new Uint8Array([1, 2, 3]))
    await store.close()
    expect(store.client.status).toBe('end')
    await expect(store.get(k)).rejects.toMatchObject({ code: 'E_CLOSED' })
  })

  it('rejects bad options', () => {
    expect(() => redisStore({} as never)).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }))
    expect(() => redisStore({ client, commandTimeout: 0 })).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION' }),
    )
  })

  it('writes SET … PX with the time left until staleUntil, and DEL for an entry already past it', async () => {
    const store = redisStore({ client })
    const k = uniq('ttl')
    await store.set(k, entry(new Uint8Array([1]), { staleUntil: now() + 10_000 }))
    const pttl = await client.pttl(k)
    expect(pttl).toBeGreaterThan(9_000)
    expect(pttl).toBeLessThanOrEqual(10_000)
    await store.set(k, entry(new Uint8Array([1]), { freshUntil: now() - 2, staleUntil: now() - 1 }))
    expect(await client.exists(k)).toBe(0)
  })

  it('stores one codec value per entry: [createdAt, freshUntil, staleUntil, cost, tags, value]', async () => {
    const store = redisStore({ client })
    const k = uniq('shape')
    const e = entry({ a: new Date(5), b: 2n }, { cost: 7, tags: ['x'] })
    await store.set(k, e)
    const raw = await client.getBuffer(k)
    expect(defaultCodec.decode(raw!)).toEqual([e.createdAt, e.freshUntil, e.staleUntil, 7, ['x'], e.value])
    expect((await store.get(k))?.value).toEqual({ a: new Date(5), b: 2n })
  })

  it('a tag set lives at least as long as its longest entry', async () => {
    const store = redisStore({ client })
    const tag = uniq('tag')
    await store.set(uniq('long'), entry(new Uint8Array([1]), { staleUntil: now() + 50_000, tags: [tag] }))
    await store.set(uniq('short'), entry(new Uint8Array([1]), { staleUntil: now() + 5_000, tags: [tag] }))
    expect(await client.pttl(`%tag:${tag}`)).toBeGreaterThan(40_000)
  })

  it('deleteTagged never deletes an entry rewritten without the tag, even when the tag set still names it', async () => {
    const store = redisStore({ client })
    const [tag, k] = [uniq('t'), uniq('k')]
    await store.set(k, entry(new Uint8Array([1]), { tags: [tag] }))
    await store.set(k, entry(new Uint8Array([2]), { tags: [] }))
    expect(await client.sismember(`%tag:${tag}`, k)).toBe(1)
    expect(await store.deleteTagged([tag])).toBe(0)
    expect((await store.get(k))?.value).toEqual(new Uint8Array([2]))
    // The stale member is forgotten.
    expect(await client.exists(`%tag:${tag}`)).toBe(0)
  })

  it('setMany with an entry already expired deletes it', async () => {
    const store = redisStore({ client })
    const [a, b] = [uniq('a'), uniq('b')]
    await client.set(b, 'old')
    await store.setMany([
      [a, entry(new Uint8Array([1]))],
      [b, entry(new Uint8Array([2]), { freshUntil: now() - 2, staleUntil: now() - 1 })],
    ])
    expect(await store.get(a)).toBeDefined()
    expect(await client.exists(b)).toBe(0)
  })

  it('escapes glob characters for SCAN MATCH', () => {
    expect(escapeGlob('a*b?[c]\\d')).toBe('a\\*b\\?\\[c\\]\\\\d')
  })
})

describe('keySlot (CRC16/XMODEM, hash tags)', () => {
  it('matches the values of the Redis Cluster spec and CLUSTER KEYSLOT', async () => {
    expect(keySlot('123456789')).toBe(12739)
    expect(keySlot('foo')).toBe(12182)
    expect(keySlot('bar')).toBe(5061)
    expect(keySlot('')).toBe(0)
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'))
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'))
    expect(keySlot('foo{}{bar}')).toBe(keySlot('foo{}{bar}'))
    expect(keySlot('{}foo')).not.toBe(keySlot('foo'))
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'))
    expect(keySlot('foo{bar}{zap}')).toBe(keySlot('bar'))
    expect(keySlot(Buffer.from('foo'))).toBe(12182)
  })
})

describe('corrupted bytes planted in Redis', () => {
  const valid = () => Buffer.from(defaultCodec.encode([now(), now() + 60_000, now() + 60_000, null, null, 'ok']))
  const corruptions: [string, () => Buffer][] = [
    ['random bytes', () => Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 97 + 13) & 0xff))],
    ['a JSON string', () => Buffer.from(JSON.stringify({ value: 'x', createdAt: 1 }))],
    ['a truncated valid entry', () => valid().subarray(0, valid().length - 3)],
    [
      'a valid entry with one bit flipped',
      () => {
        const b = Buffer.from(valid())
        b[b.length - 2]! ^= 0x10
        return b
      },
    ],
    ['an empty string', () => Buffer.alloc(0)],
    ['a codec value of another shape', () => Buffer.from(defaultCodec.encode({ not: 'an entry' }))],
  ]

  for (const [what, make] of corruptions) {
    it(`${what}: get throws E_DESERIALIZE and the key is gone`, async () => {
      const store = redisStore({ client })
      const k = uniq('bad')
      await client.set(k, make())
      const err = await store.get(k).catch((e: unknown) => e)
      expect(isCacheError(err, 'E_DESERIALIZE'), String(err)).toBe(true)
      expect(await client.exists(k)).toBe(0)
    })
  }

  it('getMany deletes every undecodable key and reports E_DESERIALIZE', async () => {
    const store = redisStore({ client })
    const [good, bad1, bad2] = [uniq('g'), uniq('b1'), uniq('b2')]
    await store.set(good, entry(new Uint8Array([1])))
    await client.set(bad1, 'garbage')
    await client.set(bad2, Buffer.from([0xc1, 1, 0, 0, 0, 0, 0, 0]))
    await expect(store.getMany([good, bad1, bad2])).rejects.toMatchObject({ code: 'E_DESERIALIZE' })
    expect(await client.exists(bad1, bad2)).toBe(0)
    expect((await store.getMany([good, bad1]))[0]?.value).toEqual(new Uint8Array([1]))
  })

  it('through a Cache: getOrSet answers from the loader and emits an E_DESERIALIZE error event', async () => {
    const cache = createCache({ store: redisStore({ client }), namespace: uniq('ns') })
    const errors: Error[] = []
    cache.on('error', ({ error }) => {
      errors.push(error)
    })
    await cache.set('user', { name: 'a' })
    // Find the key the cache wrote and corrupt it.
    const [key] = (await client.keys(`*user*`)).filter((k) => k.includes('ns'))
    expect(key).toBeDefined()
    await client.set(key!, 'definitely not msgpack')
    expect(await cache.getOrSet('user', () => ({ name: 'from loader' }))).toEqual({ name: 'from loader' })
    expect(errors.some((e) => isCacheError(e, 'E_DESERIALIZE'))).toBe(true)
    // The loader's value replaced the bad bytes.
    expect(await cache.get('user')).toEqual({ name: 'from loader' })
    await cache.close()
    expect(client.status).toBe('ready')
  })
})
