// Adversarial review of @cache/redis-lock against real redis-server processes (no mocks).
// 'guarantees' pins what must keep holding; 'findings' are bugs found in review: each fails until it is fixed.
import { setTimeout as sleep } from 'node:timers/promises'
import { type RedisCluster, type RedisServer, startRedisCluster, startRedises } from '@cache/testing'
import { Cluster, Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createRedlock, type Lock, LockError, setIfFresher } from './index.js'

let servers: RedisServer[]
let clients: Redis[]
let n = 0
/** A resource name no other test uses. */
const res = (name = 'r') => `rv${process.pid}-${++n}-${name}`

// The recommended settings: fail fast while a node is down instead of queueing commands for it.
async function connect(s: RedisServer): Promise<Redis> {
  const c = new Redis({ host: s.host, port: s.port, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  c.on('error', () => {}) // reconnection errors while a node is down are expected
  await new Promise((resolve) => c.once('ready', resolve))
  return c
}

/** A client of a node that is down: every command fails at once. */
function deadClient(s: RedisServer): Redis {
  const c = new Redis({
    host: s.host,
    port: s.port,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  c.on('error', () => {})
  return c
}

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled)
  servers = await startRedises(5)
  clients = await Promise.all(servers.map(connect))
})
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled)
  for (const c of clients) c.disconnect()
  await Promise.all(servers.map((s) => s.stop()))
})
afterEach(async () => {
  // A test that killed nodes gives them back (with an empty data set: no persistence here).
  for (const [i, s] of servers.entries()) {
    if (!s.running) await s.restart()
    if (clients[i]!.status !== 'ready') {
      clients[i]!.disconnect()
      clients[i] = await connect(s)
    }
  }
})

describe('guarantees', () => {
  it('a grant that arrives after the validity is not counted, and the attempt is undone on every node', async () => {
    // driftFactor 0.5 leaves a wide gap between the end of the validity (ttl/2) and the keys' expiry (ttl).
    const redlock = createRedlock(clients, { retryCount: 0, driftFactor: 0.5, nodeTimeout: 5_000 })
    const r = res()
    await Promise.all(servers.slice(0, 3).map((s) => s.pause()))
    const attempt = redlock.acquire(r, 1_000).catch((e: unknown) => e)
    await sleep(600)
    await Promise.all(servers.slice(0, 3).map((s) => s.resume()))
    const failed = await attempt
    expect(failed).toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED' })
    // Every node granted (late), yet the lock was not held; it was then freed everywhere.
    expect((failed as LockError).nodes.every((node) => node.outcome === 'granted')).toBe(true)
    expect(await Promise.all(clients.map((c) => c.exists(`lock:r:${r}`)))).toEqual([0, 0, 0, 0, 0])
  })

  it('an extension confirmed after the validity ended is not counted, and the signal aborted before it', async () => {
    // A wide abortMargin keeps 'before the validity ends' true on a loaded box (timers can fire late).
    const redlock = createRedlock(clients, { retryCount: 0, driftFactor: 0.5, nodeTimeout: 5_000, abortMargin: 300 })
    const lock = await redlock.acquire(res(), 1_000)
    let abortedAt = 0
    let expiresAtAbort = 0
    lock.signal.addEventListener('abort', () => {
      abortedAt = Date.now()
      expiresAtAbort = lock.expiresAt
    })
    await Promise.all(servers.slice(0, 3).map((s) => s.pause()))
    const extension = lock.extend().catch((e: unknown) => e)
    // The keys live until ~1000 ms on every node; the validity ended at ~500 ms.
    await sleep(700)
    await Promise.all(servers.slice(0, 3).map((s) => s.resume()))
    const failed = await extension
    expect(failed).toMatchObject({ code: 'E_LOCK_EXTEND_FAILED' })
    expect(lock.signal.aborted).toBe(true)
    expect(abortedAt).toBeGreaterThan(0)
    expect(abortedAt).toBeLessThan(expiresAtAbort)
    await lock.release()
  })

  it('a holder whose process stalled past its validity reads signal.aborted as true before overdue timers run', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const lock = await redlock.acquire(res(), 200)
    // A stall of the whole process (GC, SIGSTOP, a busy loop): no timer can run meanwhile.
    const until = performance.now() + 250
    while (performance.now() < until) {}
    const aborted = lock.signal.aborted
    await lock.release()
    expect(aborted).toBe(true)
  })

  it('a refused attempt frees what it was granted, on every node', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const r = res()
    // Someone else holds the resource on 3 of 5 nodes.
    await Promise.all(clients.slice(0, 3).map((c) => c.set(`lock:r:${r}`, 'someone-else', 'PX', 5_000)))
    const failed = await redlock.acquire(r, '5s').catch((e: unknown) => e)
    expect(failed).toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED' })
    expect((failed as LockError).nodes.map((node) => node.outcome)).toEqual([
      'held',
      'held',
      'held',
      'granted',
      'granted',
    ])
    expect(await Promise.all(clients.map((c) => c.get(`lock:r:${r}`)))).toEqual([
      'someone-else',
      'someone-else',
      'someone-else',
      null,
      null,
    ])
  })

  it('a node dying during using(): the signal aborts before the validity ends, nothing is left unhandled', async () => {
    const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout: 50 })
    const before = unhandled.length
    const seen: { at: number; expiresAt: number; reason: unknown }[] = []
    const result = await redlock.using(res(), 600, async (signal, lock) => {
      // Three of five die: the automatic extension cannot find a quorum.
      await Promise.all(servers.slice(0, 3).map((s) => s.kill()))
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      seen.push({ at: Date.now(), expiresAt: lock.expiresAt, reason: signal.reason })
      return 'stopped'
    })
    expect(result).toBe('stopped')
    expect(seen[0]!.at).toBeLessThan(seen[0]!.expiresAt)
    expect(seen[0]!.reason).toMatchObject({ code: 'E_LOCK_EXTEND_FAILED' })
    // The release on dead nodes failed quietly too.
    await sleep(20)
    expect(unhandled.slice(before)).toEqual([])
  })

  it('using() rejects with what the routine threw, even when the release cannot reach the nodes', async () => {
    const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout: 50 })
    const before = unhandled.length
    const failure = await redlock
      .using(res(), '2s', async () => {
        await Promise.all(servers.map((s) => s.kill()))
        throw new Error('routine failed')
      })
      .catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(Error)
    expect((failure as Error).message).toBe('routine failed')
    await sleep(20)
    expect(unhandled.slice(before)).toEqual([])
  })

  it('leaves no timer behind after release or using()', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((t) => t === 'Timeout').length
    const redlock = createRedlock(clients, { retryCount: 0 })
    const before = timers()
    const lock = await redlock.acquire(res(), '5s')
    await lock.extend()
    await lock.release()
    await redlock.using(res(), 200, () => sleep(150))
    await sleep(0)
    expect(timers()).toBeLessThanOrEqual(before)
  })

  it('fencing tokens rise per resource across single- and multi-resource locks, also with 2 of 5 nodes down', async () => {
    const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout: 50 })
    const [a, b] = [res('a'), res('b')]
    const take = async (rs: string[]) => {
      const lock = await redlock.acquire(rs, '2s')
      await lock.release()
      return lock.fencingToken
    }
    // Push b's counter well above a's, so a multi-resource token jumps for a.
    for (let i = 0; i < 5; i++) await take([b])
    const a1 = await take([a])
    const ab = await take([a, b])
    expect(ab).toBeGreaterThan(a1)
    const a2 = await take([a])
    expect(a2).toBeGreaterThan(ab)
    await Promise.all([servers[0]!.kill(), servers[4]!.kill()])
    const b2 = await take([b])
    expect(b2).toBeGreaterThan(ab)
    const ab2 = await take([b, a])
    expect(ab2).toBeGreaterThan(Math.max(a2, b2))
  })

  it('contended: no two validity windows overlap, and tokens rise in grant order (fencing check accepts all)', async () => {
    const contenders = 4
    const rounds = 25
    const r = res()
    const record: { from: number; to: number; token: number }[] = []
    const own = await Promise.all(Array.from({ length: contenders }, () => Promise.all(servers.map(connect))))
    try {
      await Promise.all(
        own.map(async (cs) => {
          const redlock = createRedlock(cs, { retryCount: Number.POSITIVE_INFINITY, retryDelay: 5, retryJitter: 5 })
          for (let i = 0; i < rounds; i++) {
            const lock = await redlock.acquire(r, '2s', { signal: AbortSignal.timeout(15_000) })
            const from = performance.now()
            const validUntil = from + (lock.expiresAt - Date.now())
            expect(await setIfFresher(cs[0]!, `${r}:doc`, `w${lock.fencingToken}`, lock.fencingToken)).toBe(true)
            const to = Math.min(validUntil, performance.now())
            record.push({ from, to, token: lock.fencingToken })
            await lock.release()
          }
        }),
      )
    } finally {
      for (const cs of own) for (const c of cs) c.disconnect()
    }
    expect(record).toHaveLength(contenders * rounds)
    record.sort((x, y) => x.from - y.from)
    for (let i = 1; i < record.length; i++) {
      expect(record[i]!.from).toBeGreaterThanOrEqual(record[i - 1]!.to)
      expect(record[i]!.token).toBeGreaterThan(record[i - 1]!.token)
    }
  })

  it('an acquireTimeout ends a wait on a held resource with E_LOCK_NOT_ACQUIRED (no hang)', async () => {
    const redlock = createRedlock(clients, {
      retryCount: Number.POSITIVE_INFINITY,
      retryDelay: 20,
      retryJitter: 5,
      acquireTimeout: 150,
    })
    const r = res()
    const held = await redlock.acquire(r, '5s')
    await expect(redlock.acquire(r, '5s')).rejects.toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED' })
    await held.release()
  })
})

describe('fencing counters across restarts (3 nodes, quorum 2)', () => {
  // Node A and B grant three locks while C is down; then B restarts, C comes back and A dies: the next quorum {B, C}
  // overlaps the earlier one {A, B} only in B, the node that restarted. Its counter alone carries the tokens forward.
  async function scenario(nodes: RedisServer[]): Promise<[number, number]> {
    const [A, B, C] = nodes as [RedisServer, RedisServer, RedisServer]
    const r = res()
    await C.kill()
    let cs = [await connect(A), await connect(B), deadClient(C)]
    let redlock = createRedlock(cs, { retryCount: 0, nodeTimeout: 50 })
    let last = 0
    for (let i = 0; i < 3; i++) {
      const lock = await redlock.acquire(r, '2s')
      last = lock.fencingToken
      await lock.release()
    }
    for (const c of cs) c.disconnect()
    await B.kill()
    await Promise.all([B.restart(), C.restart()])
    await A.kill()
    cs = [deadClient(A), await connect(B), await connect(C)]
    try {
      redlock = createRedlock(cs, { retryCount: 0, nodeTimeout: 50 })
      const next = await redlock.acquire(r, '2s')
      await next.release()
      return [last, next.fencingToken]
    } finally {
      for (const c of cs) c.disconnect()
    }
  }

  it('with AOF (appendfsync always), a kill -9 and restart keeps the token rising', async () => {
    const nodes = await startRedises(3, { appendonly: true, appendfsync: 'always' })
    try {
      const [before, after] = await scenario(nodes)
      expect(after).toBeGreaterThan(before)
    } finally {
      await Promise.all(nodes.map((s) => s.stop()))
    }
  })

  it('without persistence the token goes back: the documented assumption, shown', async () => {
    const [before, after] = await scenario(servers.slice(0, 3))
    expect(after).toBeLessThanOrEqual(before)
  })
})

describe('Redis Cluster (one vote per cluster)', () => {
  let cluster: RedisCluster
  let client: Cluster

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    client = new Cluster(cluster.startupNodes, {
      enableOfflineQueue: false,
      redisOptions: { maxRetriesPerRequest: 0 },
    })
    client.on('error', () => {})
    await new Promise((resolve) => client.once('ready', resolve))
  }, 60_000)
  afterAll(async () => {
    client?.disconnect()
    await cluster?.stop()
  })

  it('a multi-resource lock never meets CROSSSLOT, excludes each resource, and its token rises', async () => {
    const redlock = createRedlock([client], { retryCount: 0 })
    expect(redlock.quorum).toBe(1)
    // Names chosen to fall on different slots without a hash tag.
    const names = Array.from({ length: 8 }, (_, i) => res(`c${i}`))
    const lock = await redlock.acquire(names, '5s')
    await expect(redlock.acquire(names[3]!, '5s')).rejects.toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED' })
    await lock.extend()
    await lock.release()
    const again = await redlock.acquire([names[3]!, names[5]!], '5s')
    expect(again.fencingToken).toBeGreaterThan(lock.fencingToken)
    await again.release()
  })

  // Finding: with keyPrefix '' every key starts with `{}`, an empty hash tag, so Redis hashes the whole key.
  it('a multi-resource lock with keyPrefix "" does not fail with CROSSSLOT either', async () => {
    const redlock = createRedlock([client], { retryCount: 0, keyPrefix: '' })
    const names = Array.from({ length: 8 }, (_, i) => res(`e${i}`))
    const got = await redlock.acquire(names, '5s').catch((e: unknown) => e)
    if (!(got instanceof Error)) await (got as Lock).release()
    expect((got as LockError).nodes?.[0]?.error ?? '').not.toMatch(/CROSSSLOT/)
    expect(got).not.toBeInstanceOf(Error)
  })
})

describe('findings', () => {
  it("a ttl longer than 2^31-1 ms (~24.8 days) is refused, or does not abort the lock's signal at once", async () => {
    // Node runs a setTimeout whose delay is above 2^31-1 ms after 1 ms: an abort timer that long fires immediately.
    const redlock = createRedlock(clients, { retryCount: 0 })
    const got = await redlock.acquire(res(), '30d').catch((e: unknown) => e)
    if (got instanceof Error) {
      expect(got).toMatchObject({ code: 'E_INVALID_OPTION' })
      return
    }
    const lock = got as Lock
    await sleep(50)
    const aborted = lock.signal.aborted
    await lock.release()
    expect(aborted).toBe(false)
  })

  it('an acquire whose signal aborts during an attempt rejects with the reason instead of handing out a lock', async () => {
    const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout: 400 })
    const r = res()
    await servers[4]!.pause()
    const stop = new AbortController()
    setTimeout(() => stop.abort(new Error('caller gave up')), 50)
    const got = await redlock.acquire(r, '5s', { signal: stop.signal }).catch((e: unknown) => e)
    await servers[4]!.resume()
    if (!(got instanceof Error)) await (got as Lock).release()
    expect(got).toBeInstanceOf(Error)
    expect((got as Error).message).toBe('caller gave up')
  })

  it('extend() with a fractional ttl neither aborts a healthy lock nor fails on every node', async () => {
    // SET PX / PEXPIRE take whole milliseconds: 1000.5 makes every node answer an error.
    const redlock = createRedlock(clients, { retryCount: 0 })
    const lock = await redlock.acquire(res(), '5s')
    const got = await lock.extend(1000.5).catch((e: unknown) => e)
    const aborted = lock.signal.aborted
    await lock.release()
    if (got !== undefined) expect(got).toMatchObject({ code: 'E_INVALID_OPTION' })
    expect(aborted).toBe(false)
  })

  it('acquire() with a fractional ttl is rounded or refused as E_INVALID_OPTION, not E_LOCK_NOT_ACQUIRED', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const got = await redlock.acquire(res(), 1000.5).catch((e: unknown) => e)
    if (!(got instanceof Error)) await (got as Lock).release()
    else expect(got).toMatchObject({ code: 'E_INVALID_OPTION' })
  })

  it('using() with an abortMargin above ttl/2 extends before the margin instead of aborting healthy locks', async () => {
    // The automatic extension runs at ttl/2; the signal aborts at validity − abortMargin, here earlier.
    const redlock = createRedlock(clients, { retryCount: 0, abortMargin: 300 })
    const aborted = await redlock.using(res(), 400, async (signal) => {
      await sleep(350)
      return signal.aborted
    })
    expect(aborted).toBe(false)
  })

  it('the same client given twice does not count as two votes', async () => {
    // createRedlock([a, a, a, b, c]): the three calls on a all confirm an extension, so one live server is a quorum.
    const [a, b, c] = clients as [Redis, Redis, Redis]
    let redlock: ReturnType<typeof createRedlock>
    try {
      redlock = createRedlock([a, a, a, b, c], { retryCount: 0, nodeTimeout: 50 })
    } catch (err) {
      expect(err).toMatchObject({ code: 'E_INVALID_OPTION' })
      return
    }
    const lock = await redlock.acquire(res(), '5s')
    await Promise.all([servers[1]!.kill(), servers[2]!.kill()])
    const extended = await lock.extend().then(
      () => true,
      () => false,
    )
    await lock.release()
    expect(extended).toBe(false)
  })

  it('a bad duration rejects with a LockError (E_INVALID_OPTION), like every other input error', async () => {
    const redlock = createRedlock(clients)
    await expect(redlock.acquire('x', 'soon' as never)).rejects.toBeInstanceOf(LockError)
    expect(() => createRedlock(clients, { retryDelay: -1 })).toThrow(LockError)
  })
})
