// Review of redisStore (packages/core/src/stores/redis.ts) against real servers: regressions for the bugs it found
// (each `// Regression` comment says what went wrong; all fixed), and pins for edge cases that must keep working.

import { clusterCommand, type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '@cache/testing'
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultCodec } from '../codec.js'
import type { StoredEntry } from '../types.js'
import { keySlot, redisStore } from './redis.js'

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

const now = () => Date.now()
const entry = (value: unknown, fields: Partial<StoredEntry> = {}): StoredEntry => ({
  value,
  createdAt: now(),
  freshUntil: now() + 60_000,
  staleUntil: now() + 120_000,
  ...fields,
})
let n = 0
const uniq = (s: string) => `rv${process.pid}:${n++}:${s}`
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('tag index and entries without expiry (staleUntil = Infinity)', () => {
  it('an entry without expiry keeps its tag index alive when a shorter entry with the same tag is written after it', async () => {
    // Regression (found in review, fixed): TAG_SCRIPT treats PTTL -1 ("no expiry") as a TTL shorter than any finite one (`-1 < ttl`), so writing a
    // 300 ms entry with tag t PEXPIREs the tag set that indexes an entry living forever. After 300 ms the set is
    // gone and invalidateTags(t) no longer finds the immortal entry: it is served after it should be gone.
    // Fix: in TAG_SCRIPT, `if ttl == -1 then return 1 end` (never shorten a persistent set), and when ARGV[1] is -1
    // call PERSIST on the set.
    const store = redisStore({ client })
    const tag = uniq('tag-inf-first')
    const forever = uniq('forever')
    const short = uniq('short')
    await store.set(forever, entry('forever', { staleUntil: Number.POSITIVE_INFINITY, tags: [tag] }))
    await store.set(short, entry('short', { staleUntil: now() + 300, tags: [tag] }))
    await sleep(450)
    expect(await store.deleteTagged([tag])).toBe(1)
    expect(await client.exists(forever)).toBe(0)
  })

  it('an entry without expiry makes its tag set persistent when the set already had a TTL', async () => {
    // Regression (found in review, fixed): with ARGV[1] = -1 (entry without expiry), `ttl < -1` is never true, so a tag set that already had a TTL
    // (from an earlier finite entry) keeps it and expires while the immortal entry lives on: invalidateTags misses it.
    // Fix: in TAG_SCRIPT, `if ARGV[1] == '-1' then redis.call('PERSIST', KEYS[1])`.
    const store = redisStore({ client })
    const tag = uniq('tag-inf-second')
    const forever = uniq('forever')
    const short = uniq('short')
    await store.set(short, entry('short', { staleUntil: now() + 300, tags: [tag] }))
    await store.set(forever, entry('forever', { staleUntil: Number.POSITIVE_INFINITY, tags: [tag] }))
    expect(await client.pttl(`%tag:${tag}`)).toBe(-1)
    await sleep(450)
    expect(await store.deleteTagged([tag])).toBe(1)
    expect(await client.exists(forever)).toBe(0)
  })

  it('pins: an entry without expiry is written without a TTL and its (new) tag set too; invalidation deletes it', async () => {
    const store = redisStore({ client })
    const tag = uniq('tag-inf-only')
    const k = uniq('inf')
    await store.set(k, entry('v', { staleUntil: Number.POSITIVE_INFINITY, tags: [tag, tag] }))
    expect(await client.pttl(k)).toBe(-1)
    expect(await client.pttl(`%tag:${tag}`)).toBe(-1)
    expect((await store.get(k))?.staleUntil).toBe(Number.POSITIVE_INFINITY)
    expect(await store.deleteTagged([tag, tag])).toBe(1)
    expect(await client.exists(k, `%tag:${tag}`)).toBe(0)
  })
})

describe('TTL math', () => {
  it('an entry with a very far (finite) staleUntil is stored, not rejected', async () => {
    // Regression (found in review, fixed): writeOps sends `PX Math.ceil(staleUntil - now)` whatever its size. For staleUntil = 1e20 (or
    // Number.MAX_VALUE, or anything past ~9.2e18 ms) Redis answers "ERR value is not an integer or out of range" /
    // "invalid expire time", so set() rejects with E_STORE_UNAVAILABLE and the entry is lost (through the cache:
    // a huge ttl/grace never caches anything). The tag script also fails after its SADD, leaving the member behind.
    // Fix: treat any ttl that is not a safe integer (or > ~2^53) like Infinity (SET without PX, tag set persistent),
    // or clamp it to a maximum such as Number.MAX_SAFE_INTEGER - Date.now().
    const store = redisStore({ client })
    for (const staleUntil of [1e20, Number.MAX_VALUE]) {
      const k = uniq('far')
      await expect(store.set(k, entry('far', { staleUntil }))).resolves.toBeUndefined()
      expect((await store.get(k))?.value).toBe('far')
    }
  })

  it('setMany (standalone pipeline) with one far-future entry writes the others and does not reject', async () => {
    // Regression (found in review, fixed): same as above through the pipeline: the SET of the far entry fails, the other entries of the batch ARE
    // written, and setMany rejects — a partial write reported as a total failure. Fix: as above (no PX for a ttl
    // beyond what Redis accepts).
    const store = redisStore({ client })
    const a = uniq('a')
    const far = uniq('far')
    const b = uniq('b')
    await expect(
      store.setMany([
        [a, entry('a')],
        [far, entry('far', { staleUntil: 1e20 })],
        [b, entry('b')],
      ]),
    ).resolves.toBeUndefined()
    expect((await store.getMany([a, far, b])).map((e) => e?.value)).toEqual(['a', 'far', 'b'])
  })

  it('pins: fractional times are rounded up (never a PX 0 for an entry still live)', async () => {
    const store = redisStore({ client })
    const k = uniq('frac')
    await store.set(k, entry('v', { staleUntil: now() + 0.4 }))
    // Either already gone or with a PX of at least 1: never an error.
    expect(await client.pttl(k)).toBeLessThanOrEqual(1)
    const k2 = uniq('frac2')
    await store.set(k2, entry('v', { staleUntil: now() + 5_000.3 }))
    const pttl = await client.pttl(k2)
    expect(pttl).toBeGreaterThan(4_000)
    expect(pttl).toBeLessThanOrEqual(5_001)
  })

  it('pins: NaN staleUntil does not write an entry that can never be read back', async () => {
    const store = redisStore({ client })
    const k = uniq('nan')
    await store.set(k, entry('v', { staleUntil: Number.NaN }))
    expect(await client.exists(k)).toBe(0)
  })
})

describe('deadline', () => {
  it('a commandTimeout beyond setTimeout’s 2^31-1 ms limit is refused, never a 1 ms deadline', async () => {
    // Regression (found in review, fixed): deadline() passes this.timeout straight to setTimeout. parseDuration accepts '30d' (2 592 000 000 ms) and
    // the constructor only checks > 0, but Node clamps delays above 2^31-1 ms to 1 ms (TimeoutOverflowWarning): every
    // call then rejects with "got no answer within 2592000000ms" after ~1 ms. Fix: reject such values in the
    // constructor (E_INVALID_OPTION), or clamp the timer delay to 2^31-1 (or skip the timer for huge deadlines).
    // A 30 ms proxy latency makes the outcome deterministic (the 1 ms timer always fires first).
    // Fixed by refusing it: a deadline that long is no deadline, and a timer cannot hold it.
    const client = new Redis(server.port, server.host)
    try {
      expect(() => redisStore({ client, commandTimeout: '30d' })).toThrow(
        expect.objectContaining({ code: 'E_INVALID_OPTION', message: expect.stringContaining('commandTimeout') }),
      )
      // The longest a timer can wait is still accepted.
      expect(() => redisStore({ client, commandTimeout: 2 ** 31 - 1 })).not.toThrow()
    } finally {
      client.disconnect()
    }
  })
})

describe('calls after close()', () => {
  it('delete/deleteMany after close() on a store over a client you own do not delete anything', async () => {
    // Regression (found in review, fixed): only clear(), deleteTagged() and writeOps() call checkOpen() before sending commands. get, delete,
    // getMany and deleteMany send their command first and only deadline() notices `closed` — with a client the
    // store does not own (it stays open) the UNLINK really runs, and then the call rejects with E_CLOSED: the
    // caller is told nothing happened while the keys are gone. Fix: call this.checkOpen() at the top of get, delete,
    // getMany, deleteMany (before touching the client), as clear() does.
    const store = redisStore({ client })
    const a = uniq('closed-a')
    const b = uniq('closed-b')
    await client.set(a, 'x')
    await client.set(b, 'x')
    await store.close()
    await expect(store.delete(a)).rejects.toMatchObject({ code: 'E_CLOSED' })
    await expect(store.deleteMany([b])).rejects.toMatchObject({ code: 'E_CLOSED' })
    expect(await client.exists(a, b)).toBe(2)
  })

  it('pins: set/setMany/clear/deleteTagged after close() reject with E_CLOSED and write nothing; the client stays open', async () => {
    const store = redisStore({ client })
    await store.close()
    await store.close()
    const k = uniq('closed-set')
    await expect(store.set(k, entry('v', { tags: ['t'] }))).rejects.toMatchObject({ code: 'E_CLOSED' })
    await expect(store.setMany([[k, entry('v')]])).rejects.toMatchObject({ code: 'E_CLOSED' })
    await expect(store.clear(k)).rejects.toMatchObject({ code: 'E_CLOSED' })
    await expect(store.deleteTagged(['t'])).rejects.toMatchObject({ code: 'E_CLOSED' })
    expect(await client.exists(k)).toBe(0)
    expect(client.status).toBe('ready')
  })

  it('pins: an owned client is quit by close(); later calls reject E_CLOSED (no unhandled rejection)', async () => {
    const store = redisStore({ redis: server.url })
    await store.set(uniq('own'), entry('v'))
    await store.close()
    expect(store.client.status).toBe('end')
    await expect(store.get('x')).rejects.toMatchObject({ code: 'E_CLOSED' })
    await expect(store.getMany(['x', 'y'])).rejects.toMatchObject({ code: 'E_CLOSED' })
    await expect(store.delete('x')).rejects.toMatchObject({ code: 'E_CLOSED' })
  })
})

describe('huge batches', () => {
  it('deleteMany of 150 000 keys works (no argument-spread RangeError)', async () => {
    // Regression (found in review, fixed): deleteMany calls `this.client.unlink(...keys)` — a JS spread of the whole batch (per slot). Past ~120 000
    // arguments V8 throws "RangeError: Maximum call stack size exceeded", synchronously, before deadline() is
    // entered, so the caller gets a raw RangeError (not a CacheError) and nothing is deleted. deleteTagged's
    // `srem(tag, ...members)` has the same limit for big tag sets. Fix: pass an array (`unlink(keys)`, ioredis
    // flattens arrays) and split into chunks of e.g. 1 000–10 000 keys per command.
    const store = redisStore({ client, commandTimeout: '10s' })
    const base = uniq('huge')
    const keys = Array.from({ length: 150_000 }, (_, i) => `${base}:${i}`)
    await client.set(keys[0]!, 'x')
    await client.set(keys[149_999]!, 'x')
    await expect(store.deleteMany(keys)).resolves.toBe(2)
  })

  it('pins: getMany of 20 000 keys (one MGET) keeps order', async () => {
    const store = redisStore({ client, commandTimeout: '10s' })
    const base = uniq('many')
    const keys = Array.from({ length: 20_000 }, (_, i) => `${base}:${i}`)
    await store.setMany([
      [keys[0]!, entry(0)],
      [keys[19_999]!, entry(19_999)],
    ])
    const got = await store.getMany(keys)
    expect(got).toHaveLength(20_000)
    expect(got[0]?.value).toBe(0)
    expect(got[19_999]?.value).toBe(19_999)
    expect(got.filter((e) => e !== undefined)).toHaveLength(2)
  })
})

describe('batches: duplicates, empties, serialize failures', () => {
  it('pins: getMany with duplicate keys answers every position', async () => {
    const store = redisStore({ client })
    const a = uniq('dup-a')
    const b = uniq('dup-b')
    await store.set(a, entry('A'))
    const got = await store.getMany([a, b, a, a])
    expect(got.map((e) => e?.value)).toEqual(['A', undefined, 'A', 'A'])
  })

  it('pins: getMany with a duplicated corrupt key deletes it and reports E_DESERIALIZE', async () => {
    const store = redisStore({ client })
    const bad = uniq('dup-bad')
    await client.set(bad, Buffer.from([0xff, 0x00, 0x13]))
    await expect(store.getMany([bad, bad])).rejects.toMatchObject({ code: 'E_DESERIALIZE' })
    expect(await client.exists(bad)).toBe(0)
  })

  it('pins: setMany with a duplicate key: the last one wins', async () => {
    const store = redisStore({ client })
    const k = uniq('dup-set')
    await store.setMany([
      [k, entry('first')],
      [k, entry('second')],
    ])
    expect((await store.get(k))?.value).toBe('second')
  })

  it('pins: empty tag arrays: set with tags [] round-trips, deleteTagged([]) is 0', async () => {
    const store = redisStore({ client })
    const k = uniq('notags')
    await store.set(k, entry('v', { tags: [] }))
    expect((await store.get(k))?.tags).toEqual([])
    expect(await store.deleteTagged([])).toBe(0)
    expect(await store.getMany([])).toEqual([])
    expect(await store.deleteMany([])).toBe(0)
    await store.setMany([])
  })

  it('pins: an unencodable value rejects E_SERIALIZE and writes nothing (set and setMany, tags included)', async () => {
    const store = redisStore({ client })
    const tag = uniq('ser-tag')
    const ok = uniq('ser-ok')
    const bad = uniq('ser-bad')
    const unencodable = { f: () => 1 }
    await expect(store.set(bad, entry(unencodable, { tags: [tag] }))).rejects.toMatchObject({ code: 'E_SERIALIZE' })
    await expect(
      store.setMany([
        [ok, entry('ok', { tags: [tag] })],
        [bad, entry(unencodable, { tags: [tag] })],
      ]),
    ).rejects.toMatchObject({ code: 'E_SERIALIZE' })
    expect(await client.exists(ok, bad, `%tag:${tag}`)).toBe(0)
  })
})

describe('clear(prefix) glob escaping', () => {
  it('pins: prefixes with * ? [ ] \\ match literally', async () => {
    const store = redisStore({ client })
    const base = uniq('glob')
    const prefix = `${base}:a*b?c[d]e\\f^-:`
    const inside = [`${prefix}1`, `${prefix}`, `${prefix}[x]`]
    const outside = [
      `${base}:aXbYc[d]e\\f^-:1`,
      `${base}:a*bYcde\\f^-:1`,
      `${base}:a*b?cde\\f^-:1`,
      `${base}:a*b?c[d]ef^-:1`,
    ]
    for (const k of [...inside, ...outside]) await client.set(k, 'x')
    await store.clear(prefix)
    expect(await client.exists(...inside)).toBe(0)
    expect(await client.exists(...outside)).toBe(outside.length)
  })

  it('pins: unicode prefix', async () => {
    const store = redisStore({ client })
    const prefix = `${uniq('uni')}:é{ü}😀:`
    await client.set(`${prefix}1`, 'x')
    await client.set(`${prefix.slice(0, -2)}:1`, 'x')
    await store.clear(prefix)
    expect(await client.exists(`${prefix}1`)).toBe(0)
    expect(await client.exists(`${prefix.slice(0, -2)}:1`)).toBe(1)
  })
})

describe('deleteTagged', () => {
  it('pins: deletes only entries still carrying the tag, counts them, and empties the tag set', async () => {
    const store = redisStore({ client })
    const tag = uniq('t')
    const other = uniq('o')
    const a = uniq('a')
    const b = uniq('b')
    const c = uniq('c')
    await store.setMany([
      [a, entry('a', { tags: [tag] })],
      [b, entry('b', { tags: [tag, other] })],
      [c, entry('c', { tags: [other] })],
    ])
    await store.set(a, entry('a2', { tags: [other] }))
    expect(await store.deleteTagged([tag, tag])).toBe(1)
    expect(await client.exists(a, b, c)).toBe(2)
    expect(await client.exists(`%tag:${tag}`)).toBe(0)
    expect(await store.deleteTagged([other])).toBe(2)
  })
})

describe('cluster', () => {
  let cluster: RedisCluster
  let cc: Cluster

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    cc = new Cluster(cluster.startupNodes)
  }, 30_000)

  afterAll(async () => {
    cc?.disconnect()
    await cluster?.stop()
  })

  it('pins: keySlot agrees with CLUSTER KEYSLOT for unicode, emoji, lone surrogates and odd hash tags', async () => {
    const keys = [
      'é',
      '{é}a',
      '{😀}x',
      'x{😀}',
      '{}é',
      '{é',
      'é}{a}',
      '{{a}}',
      '\u{d800}',
      '{\u{dc00}}z',
      'a{\u00a0}b',
      '日本{語}',
    ]
    for (const key of keys) {
      expect(keySlot(key), JSON.stringify(key)).toBe(
        Number(await clusterCommand(cluster.startupNodes, ['CLUSTER', 'KEYSLOT', key])),
      )
    }
    const bin = Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x00, 0x80])
    expect(keySlot(bin)).toBe(await cc.cluster('KEYSLOT', bin as never))
  })

  it('pins: getMany/deleteMany/setMany over unicode hash-tagged and duplicate keys: no CROSSSLOT', async () => {
    const store = redisStore({ client: cc, commandTimeout: '5s' })
    const base = uniq('cl')
    const keys = [
      `{é}${base}:1`,
      `{é}${base}:2`,
      `{😀}${base}:3`,
      `${base}:ü:4`,
      `${base}:\u{d800}:5`,
      `{${base}}:6`,
      `{${base}}:7`,
    ]
    await store.setMany(keys.map((k, i) => [k, entry(i, { tags: [`${base}-t`] })] as const))
    const got = await store.getMany([...keys, keys[0]!, keys[2]!])
    expect(got.map((e) => e?.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 0, 2])
    expect(await store.deleteTagged([`${base}-t`])).toBe(keys.length)
    await store.setMany(keys.map((k, i) => [k, entry(i)] as const))
    expect(await store.deleteMany([...keys, keys[1]!])).toBe(keys.length)
  })

  it('pins: clear(prefix) with glob characters on every master', async () => {
    const store = redisStore({ client: cc, commandTimeout: '5s' })
    const prefix = `${uniq('clg')}:[*]?:`
    const inside = Array.from({ length: 30 }, (_, i) => `${prefix}${i}`)
    const outside = Array.from({ length: 30 }, (_, i) => `${prefix.replace('[*]', 'X')}${i}`)
    for (const k of [...inside, ...outside]) await cc.set(k, 'x')
    await store.clear(prefix)
    let left = 0
    for (const k of inside) left += await cc.exists(k)
    let kept = 0
    for (const k of outside) kept += await cc.exists(k)
    expect(left).toBe(0)
    expect(kept).toBe(outside.length)
  })
})

// Sanity check: the stored bytes are the codec's 6-tuple.
it('pins: the stored bytes decode with the default codec to the 6-tuple', async () => {
  const store = redisStore({ client })
  const k = uniq('shape')
  await store.set(k, entry('v', { cost: 3, tags: ['x'] }))
  const decoded = defaultCodec.decode((await client.getBuffer(k))!) as unknown[]
  expect(decoded).toHaveLength(6)
  expect(decoded[3]).toBe(3)
  expect(decoded[4]).toEqual(['x'])
  expect(decoded[5]).toBe('v')
})
