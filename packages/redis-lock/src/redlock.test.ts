import { type RedisServer, startRedises } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createRedlock, type Lock, LockError, setIfFresher } from './index.js'

let servers: RedisServer[]
let clients: Redis[]
let n = 0
/** A resource name no other test uses. */
const res = (name = 'r') => `t${process.pid}-${++n}-${name}`

// Fail fast while a node is down: a command queued for a dead node would only come back after the lock's ttl.
async function client(s: RedisServer): Promise<Redis> {
  const c = new Redis({ host: s.host, port: s.port, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  c.on('error', () => {}) // reconnection errors while a node is down are expected
  await new Promise((resolve) => c.once('ready', resolve))
  return c
}

beforeAll(async () => {
  servers = await startRedises(5)
  clients = await Promise.all(servers.map(client))
})
afterAll(async () => {
  for (const c of clients) c.disconnect()
  await Promise.all(servers.map((s) => s.stop()))
})
afterEach(async () => {
  // A test that killed or paused nodes gives them back.
  for (const [i, s] of servers.entries()) {
    if (!s.running) {
      await s.restart()
      clients[i]!.disconnect()
      clients[i] = await client(s)
    }
  }
})

describe('acquire and release', () => {
  it('locks on a quorum, excludes a second holder until released, and frees every node', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const r = res()
    const lock = await redlock.acquire(r, '5s')
    expect(lock.resources).toEqual([r])
    expect(lock.expiresAt).toBeGreaterThan(Date.now())
    expect(lock.expiresAt).toBeLessThanOrEqual(Date.now() + 5000)
    const held = await Promise.all(clients.map((c) => c.get(`lock:r:${r}`)))
    expect(held.every((v) => v === lock.value)).toBe(true)
    const second = await redlock.acquire(r, '5s').catch((e: unknown) => e)
    expect(second).toBeInstanceOf(LockError)
    expect((second as LockError).code).toBe('E_LOCK_NOT_ACQUIRED')
    expect((second as LockError).nodes.every((node) => node.outcome === 'held')).toBe(true)
    await lock.release()
    expect(lock.signal.aborted).toBe(true)
    expect(await Promise.all(clients.map((c) => c.exists(`lock:r:${r}`)))).toEqual([0, 0, 0, 0, 0])
    const again = await redlock.acquire(r, '5s')
    expect(again.fencingToken).toBeGreaterThan(lock.fencingToken)
    await again.release()
  })

  it('a multi-resource lock excludes each of its resources, and a lock on any of them excludes it', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const [a, b] = [res('a'), res('b')]
    const both = await redlock.acquire([a, b], '5s')
    await expect(redlock.acquire(b, '5s')).rejects.toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED' })
    await both.release()
    const one = await redlock.acquire(a, '5s')
    await expect(redlock.acquire([b, a], '5s')).rejects.toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED' })
    // The refused attempt took nothing: b is free.
    const other = await redlock.acquire(b, '5s')
    await Promise.all([one.release(), other.release()])
  })

  it('await using releases at the end of the block', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const r = res()
    {
      await using lock = await redlock.acquire(r, '5s')
      expect(lock.signal.aborted).toBe(false)
    }
    const next = await redlock.acquire(r, '5s')
    await next.release()
  })

  it('waits for a holder with retries, and an abort signal stops the wait with its reason', async () => {
    const redlock = createRedlock(clients, { retryCount: 50, retryDelay: 20, retryJitter: 5 })
    const r = res()
    const first = await redlock.acquire(r, '5s')
    setTimeout(() => void first.release(), 100)
    const second = await redlock.acquire(r, '5s')
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken)
    const stop = new AbortController()
    setTimeout(() => stop.abort(new Error('enough')), 60)
    await expect(redlock.acquire(r, '5s', { signal: stop.signal })).rejects.toThrow('enough')
    await second.release()
  })

  it('refuses bad input clearly', () => {
    expect(() => createRedlock([])).toThrow(/at least one ioredis client/)
    const redlock = createRedlock(clients)
    expect(redlock.quorum).toBe(3)
    return Promise.all([
      expect(redlock.acquire([], '1s')).rejects.toMatchObject({ code: 'E_INVALID_OPTION' }),
      expect(redlock.acquire('x', 0)).rejects.toMatchObject({ code: 'E_INVALID_OPTION' }),
      expect(redlock.acquire('x', 'soon' as never)).rejects.toThrow(/ttl/),
    ])
  })
})

describe('extend and the signal', () => {
  it('extend moves the validity; the signal aborts before the validity ends when nothing extends it', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const lock = await redlock.acquire(res(), 300)
    const before = lock.expiresAt
    await new Promise((r) => setTimeout(r, 50))
    await lock.extend(600)
    expect(lock.expiresAt).toBeGreaterThan(before)
    const aborted = new Promise<{ at: number; reason: unknown }>((resolve) =>
      lock.signal.addEventListener('abort', () => resolve({ at: Date.now(), reason: lock.signal.reason })),
    )
    const { at, reason } = await aborted
    expect(at).toBeLessThan(lock.expiresAt)
    expect(reason).toMatchObject({ code: 'E_LOCK_LOST' })
    await lock.release()
  })

  it('using() extends ahead of expiry while the routine runs, then releases', async () => {
    const redlock = createRedlock(clients, { retryCount: 0 })
    const r = res()
    // A ttl of 1 s run for 2.5 s: extended several times, with room for a loaded CI box to stall the event loop for
    // a few hundred ms (a 200 ms ttl was aborted there once when an extension came late).
    const result = await redlock.using(r, 1000, async (signal, lock) => {
      const first = lock.expiresAt
      await new Promise((resolve) => setTimeout(resolve, 2500))
      expect(signal.aborted).toBe(false)
      expect(lock.expiresAt).toBeGreaterThan(first)
      return 'done'
    })
    expect(result).toBe('done')
    const next = await redlock.acquire(r, '1s')
    await next.release()
  })

  it('maxExtensions caps the extensions', async () => {
    const redlock = createRedlock(clients, { retryCount: 0, maxExtensions: 1 })
    const lock = await redlock.acquire(res(), '2s')
    await lock.extend()
    await expect(lock.extend()).rejects.toMatchObject({ code: 'E_LOCK_EXTEND_FAILED' })
    expect(lock.signal.aborted).toBe(true)
    await lock.release()
  })
})

describe('nodes down', () => {
  it('works with 3 of 5 nodes, fails cleanly with 2 of 5, and the fencing token still rises', async () => {
    const redlock = createRedlock(clients, { retryCount: 1, retryDelay: 10, nodeTimeout: 50 })
    const r = res()
    const before: Lock = await redlock.acquire(r, '2s')
    await before.release()
    await servers[0]!.kill()
    await servers[1]!.kill()
    const with3 = await redlock.acquire(r, '2s')
    expect(with3.fencingToken).toBeGreaterThan(before.fencingToken)
    await with3.release()
    await servers[2]!.kill()
    const failed = await redlock.acquire(r, '2s').catch((e: unknown) => e)
    expect(failed).toMatchObject({ code: 'E_LOCK_NOT_ACQUIRED', attempts: 2 })
    expect((failed as LockError).nodes.filter((node) => node.outcome === 'granted')).toHaveLength(2)
  })
})

describe('fencing tokens across restarts', () => {
  it('keep rising when a minority of nodes restarts without its counters', async () => {
    const redlock = createRedlock(clients, { retryCount: 3, retryDelay: 10, nodeTimeout: 50 })
    const r = res()
    let last = 0
    for (let i = 0; i < 5; i++) {
      const lock = await redlock.acquire(r, '2s')
      expect(lock.fencingToken).toBeGreaterThan(last)
      last = lock.fencingToken
      await lock.release()
    }
    // Two nodes come back empty (no persistence): their counters start again from 0.
    for (const i of [0, 1]) {
      await servers[i]!.kill()
      await servers[i]!.restart()
      clients[i]!.disconnect()
      clients[i] = await client(servers[i]!)
    }
    expect(await clients[0]!.exists(`lock:f:${r}`)).toBe(0)
    // The three intact nodes still hold the raised counters: the next token is above everything handed out.
    const fresh = createRedlock(clients, { retryCount: 3, retryDelay: 10, nodeTimeout: 50 })
    const next = await fresh.acquire(r, '2s')
    expect(next.fencingToken).toBeGreaterThan(last)
    await next.release()
  })
})

describe('setIfFresher', () => {
  it('rejects a write with an older fencing token', async () => {
    const key = res('doc')
    expect(await setIfFresher(clients[0]!, key, 'v5', 5)).toBe(true)
    expect(await setIfFresher(clients[0]!, key, 'v4', 4)).toBe(false)
    expect(await setIfFresher(clients[0]!, key, 'v5b', 5)).toBe(true)
    expect(await clients[0]!.hget(key, 'value')).toBe('v5b')
  })
})
