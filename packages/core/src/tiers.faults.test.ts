// The tiered cache (memory L1 over a Redis L2 behind its circuit breaker, with a Redis bus) against real Redis
// processes that die (SIGKILL), freeze (SIGSTOP) and come back, under a steady bounded load. No mocks, and no
// duration is ever asserted: "does not wait on Redis" is shown by counting (breaker rejections, commands the real
// client was asked to send) and by calls that all complete while the server is still frozen. The only time limits
// here are liveness bounds (how long we wait for something that must happen at all).
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type HostPort,
  type RedisServer,
  redisCommand,
  startFaultProxy,
  startRedis,
  startRedisCluster,
} from '@cache/testing'
import { Cluster, type Command, Redis } from 'ioredis'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { BreakerOptions } from './breaker.js'
import { type Cache, createCache } from './cache.js'
import type { Duration } from './duration.js'
import { isCacheError } from './errors.js'
import { type MemoryStore, memoryStore } from './stores/memory.js'
import { keySlot, redisStore } from './stores/redis.js'
import { redisBus } from './stores/redis-bus.js'
import { deferred, pollUntil, recovers } from './test-helpers.js'
import type { BreakerState } from './types.js'

const COMMAND_TIMEOUT = '150ms'
/** Small: the circuit opens after a handful of failures and probes again soon (failed probes wait at most 400 ms). */
const BREAKER: BreakerOptions = { minCalls: 5, failureRate: 0.5, window: '2s', openFor: '200ms', maxOpenFor: '400ms' }
/** Liveness bound: how long we wait for something that must happen at all. Never a measured duration. */
const LIVE = 10_000

let run = 0
const ns = (name: string) => `faults-${name}-${process.pid}-${run++}`
const value = (key: string) => `v:${key}`

// ---- per-test resources and unhandled rejections ----

const cleanups: (() => unknown)[] = []
const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason)
}

beforeEach(() => {
  unhandled.length = 0
  process.on('unhandledRejection', onUnhandled)
})

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup()
    } catch {
      // best effort: the next cleanup still runs
    }
  }
  process.off('unhandledRejection', onUnhandled)
})

/** Node reports an unhandled rejection once the microtask queue has drained: let a few turns pass, then look. */
async function expectNoUnhandledRejection(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  expect(unhandled.map(String)).toEqual([])
}

async function redis(): Promise<RedisServer> {
  const server = await startRedis()
  cleanups.push(() => server.stop())
  return server
}

/** An ioredis client as an application would make it (defaults: offline queue, reconnects forever). */
function redisClient(server: HostPort): Redis {
  const client = new Redis(server.port, server.host)
  client.on('error', () => {})
  cleanups.push(() => client.disconnect())
  return client
}

/**
 * Counts the commands the real client is asked to send (offline-queued ones included), by name. Nothing is
 * changed: every call goes on to the client as is.
 */
function tally(client: Redis) {
  const counts = new Map<string, number>()
  const send = client.sendCommand.bind(client) as (command: Command, stream?: unknown) => unknown
  ;(client as unknown as { sendCommand: (command: Command, stream?: unknown) => unknown }).sendCommand = (
    command,
    stream,
  ) => {
    counts.set(command.name, (counts.get(command.name) ?? 0) + 1)
    return send(command, stream)
  }
  const sum = (keep: (name: string) => boolean) => {
    let n = 0
    for (const [name, count] of counts) if (keep(name)) n += count
    return n
  }
  return {
    /** The store's commands: everything but the bus's PUBLISH and the client's own ready check. */
    store: () => sum((name) => name !== 'publish' && name !== 'info'),
    publish: () => sum((name) => name === 'publish'),
  }
}

interface Instance {
  cache: Cache
  l1: MemoryStore
  client: Redis
  sent: ReturnType<typeof tally>
  namespace: string
  /** Every breaker state the cache reported, in order. */
  states: BreakerState[]
  /** The operation of every error event. */
  errors: string[]
}

/** One app instance: its own L1, its own client to the shared Redis (store and bus on it), the breaker above. */
function instance(server: HostPort, namespace: string, { bus = true } = {}): Instance {
  const l1 = memoryStore()
  const client = redisClient(server)
  const sent = tally(client)
  const cache = createCache({
    namespace,
    tiers: [l1, { store: redisStore({ client, commandTimeout: COMMAND_TIMEOUT }), breaker: BREAKER }],
    ...(bus ? { bus: redisBus({ client, commandTimeout: COMMAND_TIMEOUT }) } : {}),
  })
  cleanups.push(() => cache.close())
  const states: BreakerState[] = []
  const errors: string[] = []
  cache.on('breaker', ({ state }) => {
    states.push(state)
  })
  cache.on('error', ({ operation }) => {
    errors.push(operation)
  })
  return { cache, l1, client, sent, namespace, states, errors }
}

const breakerOf = (cache: Cache) => cache.stats().tiers[1]!.breaker!
const count = <T>(list: readonly T[], item: T, from = 0) => list.slice(from).filter((x) => x === item).length

/** Whether `promise` settles within `ms` (a liveness bound: a hang fails the test with a clear message). */
async function settles(promise: Promise<unknown>, ms = LIVE): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const settled = promise.then(
    () => true,
    () => true,
  )
  const result = await Promise.race([
    settled,
    new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false))),
  ])
  clearTimeout(timer)
  return result
}

// ---- the load ----

interface Load {
  started: number
  settled: number
  /** getOrSet answers (each checked to be the key's value). */
  answered: number
  /** Loader runs. */
  loads: number
  /** `set` rejected with E_STORE_UNAVAILABLE (expected while Redis is down), per key. */
  setsRejected: Map<string, number>
  /** Wrong values, unexpected rejections. */
  wrong: string[]
  /** Ends the load: the workers stop after their current call; resolves when all have. */
  stop(): Promise<void>
  /** Resolves when every worker has finished (stopped, or out of iterations). */
  done: Promise<void>
}

/**
 * A few concurrent workers doing getOrSet / get / set over a small key set, each for at most `iterations` calls,
 * with a short breather between calls. Every key always has the same value, so any answer can be checked.
 */
function steadyLoad(cache: Cache, keys: readonly string[], { workers = 4, iterations = 2000 } = {}): Load {
  let stopped = false
  const one = async (key: string, op: number): Promise<void> => {
    if (op === 0) {
      const got = await cache.getOrSet(key, () => {
        load.loads++
        return value(key)
      })
      if (got !== value(key)) load.wrong.push(`getOrSet(${key}) answered ${String(got)}`)
      load.answered++
    } else if (op === 1) {
      const got = await cache.get(key)
      if (got !== undefined && got !== value(key)) load.wrong.push(`get(${key}) answered ${String(got)}`)
    } else {
      try {
        await cache.set(key, value(key))
      } catch (err) {
        if (!isCacheError(err, 'E_STORE_UNAVAILABLE')) throw err
        load.setsRejected.set(key, (load.setsRejected.get(key) ?? 0) + 1)
      }
    }
  }
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; i < iterations && !stopped; i++) {
      const key = keys[(w * 5 + i) % keys.length]!
      load.started++
      try {
        await one(key, (w + i) % 3)
      } catch (err) {
        load.wrong.push(`${key}: ${String(err)}`)
      }
      load.settled++
      await sleep(2)
    }
  }
  const load: Load = {
    started: 0,
    settled: 0,
    answered: 0,
    loads: 0,
    setsRejected: new Map(),
    wrong: [],
    stop: async () => {
      stopped = true
      await load.done
    },
    done: Promise.resolve(),
  }
  load.done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w))).then(() => {})
  cleanups.push(() => load.stop())
  return load
}

/** Whether Redis holds every one of these keys of the namespace. */
async function inRedis(server: RedisServer, namespace: string, keys: readonly string[]): Promise<boolean> {
  return (await redisCommand(server, ['EXISTS', ...keys.map((key) => `${namespace}:${key}`)])) === keys.length
}

const keySet = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`)

/**
 * While the circuit is open: lets `calls` more calls of the load settle and checks that the breaker, not Redis,
 * answered the tier's share of them: its rejections rise, and the client is asked for no store command beyond the
 * probes let through meanwhile. Also checks the bus (same Redis, same client) sent nothing either.
 */
async function expectFailFastWhileOpen(a: Instance, load: Load, calls: number): Promise<void> {
  const at = {
    rejected: breakerOf(a.cache).rejected,
    store: a.sent.store(),
    publish: a.sent.publish(),
    settled: load.settled,
    answered: load.answered,
    states: a.states.length,
  }
  expect(await pollUntil(async () => load.settled >= at.settled + calls, LIVE, 10)).toBe(true)
  const probes = count(a.states, 'half-open', at.states)
  expect(breakerOf(a.cache).rejected - at.rejected).toBeGreaterThan(0)
  expect(a.sent.store() - at.store, `store commands sent with ${probes} probes`).toBeLessThanOrEqual(probes)
  // getOrSet kept answering (from L1 or the loader).
  expect(load.answered).toBeGreaterThan(at.answered)
  expect
    .soft(a.sent.publish() - at.publish, 'PUBLISH commands sent to the failed Redis while its circuit was open')
    .toBe(0)
}

describe('tiered cache over a real Redis that fails', () => {
  it('killed under load: every call settles, getOrSet keeps answering, the circuit opens; restarted: it closes after a probe and writes reach Redis again', async () => {
    const server = await redis()
    const a = instance(server, ns('kill'))
    const keys = keySet(8)
    const load = steadyLoad(a.cache, keys)
    // Up and running: the load's keys are in Redis.
    expect(
      await pollUntil(async () => load.settled >= 40 && (await inRedis(server, a.namespace, keys)), LIVE, 10),
    ).toBe(true)
    expect(a.states).toEqual([])

    await server.kill()
    expect(await pollUntil(async () => a.states.includes('open'), LIVE, 10)).toBe(true)
    await expectFailFastWhileOpen(a, load, 60)
    // Failed reads were reported (fail-open: a miss there), and sets were refused.
    expect(a.errors).toContain('get')
    expect([...load.setsRejected.values()].reduce((x, y) => x + y, 0)).toBeGreaterThan(0)

    const opened = a.states.lastIndexOf('open')
    await server.restart()
    expect(await pollUntil(async () => breakerOf(a.cache).state === 'closed', LIVE, 10)).toBe(true)
    // Closed by a probe: open → half-open → closed.
    const after = a.states.slice(opened)
    expect(after.at(-1)).toBe('closed')
    expect(after.at(-2)).toBe('half-open')

    // Written after the recovery: in Redis again (the restarted server started empty).
    expect(await recovers(() => a.cache.set('after', 'x'), LIVE)).toBe(true)
    expect(await redisCommand(server, ['EXISTS', `${a.namespace}:after`])).toBe(1)
    expect(await pollUntil(() => inRedis(server, a.namespace, keys), LIVE, 20)).toBe(true)

    expect(await settles(load.stop()), 'the load finished (no call hangs)').toBe(true)
    expect(load.settled).toBe(load.started)
    expect(load.wrong).toEqual([])
    await expectNoUnhandledRejection()
  })

  it('paused (SIGSTOP) past the deadline: calls complete while it is frozen, the circuit opens; resumed: it recovers', async () => {
    const server = await redis()
    const a = instance(server, ns('pause'))
    const keys = keySet(8)
    const load = steadyLoad(a.cache, keys)
    // Up and running: the load's keys are in Redis.
    expect(
      await pollUntil(async () => load.settled >= 40 && (await inRedis(server, a.namespace, keys)), LIVE, 10),
    ).toBe(true)

    await server.pause()
    let resumed = false
    cleanups.push(() => (resumed ? undefined : server.resume()))
    expect(await pollUntil(async () => a.states.includes('open'), LIVE, 10)).toBe(true)
    await expectFailFastWhileOpen(a, load, 60)
    // Every call started so far completes while Redis is still frozen: none can have waited for its answer.
    expect(await settles(load.stop()), 'the load finished while Redis was frozen').toBe(true)
    expect(load.settled).toBe(load.started)
    expect(load.wrong).toEqual([])

    await server.resume()
    resumed = true
    // The next call after `openFor` is the probe; once it answers, the circuit closes and writes reach Redis.
    expect(await recovers(() => a.cache.set('after', 'x'), LIVE)).toBe(true)
    expect(breakerOf(a.cache).state).toBe('closed')
    expect(await redisCommand(server, ['EXISTS', `${a.namespace}:after`])).toBe(1)
    expect(await a.cache.getOrSet('k0', () => 'reloaded')).toBe(value('k0'))
    await expectNoUnhandledRejection()
  })

  it('a Redis Cluster tier with one of 3 masters killed: the other masters still serve their keys, the cache answers every key', async () => {
    const cluster = await startRedisCluster({ masters: 3, args: ['--cluster-require-full-coverage', 'no'] })
    cleanups.push(() => cluster.stop())
    const client = new Cluster(cluster.startupNodes)
    client.on('error', () => {})
    cleanups.push(() => client.disconnect())
    const namespace = ns('cluster')

    // Four keys on each master.
    const slots = (await redisCommand(cluster.nodes[0]!, ['CLUSTER', 'SLOTS'])) as [number, number, [string, number]][]
    const portOf = (key: string) => {
      const slot = keySlot(`${namespace}:${key}`)
      return Number(slots.find(([from, to]) => slot >= from && slot <= to)![2][1])
    }
    const byPort = new Map<number, string[]>()
    for (let i = 0; [...byPort.values()].flat().length < 12; i++) {
      const key = `k${i}`
      const list = byPort.get(portOf(key)) ?? []
      if (list.length < 4) list.push(key)
      byPort.set(portOf(key), list)
    }
    expect(byPort.size).toBe(3)
    const victim = cluster.nodes[0]!
    const deadKeys = byPort.get(victim.port)!
    const liveKeys = [...byPort.entries()].filter(([port]) => port !== victim.port).flatMap(([, keys]) => keys)
    const keys = [...deadKeys, ...liveKeys]

    const tier = (l1: MemoryStore, maxTtl?: Duration) =>
      createCache({
        namespace,
        // A short-lived L1 copy: reads keep reaching the cluster, so the dead master's keys keep failing there.
        tiers: [
          { store: l1, ...(maxTtl ? { maxTtl } : {}) },
          { store: redisStore({ client, commandTimeout: COMMAND_TIMEOUT }), breaker: { ...BREAKER, failureRate: 0.9 } },
        ],
      })
    const a = tier(memoryStore(), '100ms')
    const b = tier(memoryStore())
    // (One breaker guards the whole cluster tier: the dead master's failures count against every key, and a
    // getOrSet of one of its keys fails twice (read, write) where a healthy key's costs at most one call, so with
    // failureRate 0.5 the circuit may open for all keys, as seen here. This test is about the masters, so its
    // tier tolerates that share of failures.)
    cleanups.push(() => a.close())
    cleanups.push(() => b.close())
    for (const key of keys) await a.set(key, value(key))

    await victim.kill()
    const load = steadyLoad(a, keys, { workers: 4, iterations: 40 })
    expect(await settles(load.done, 20_000), 'the load finished (no call hangs)').toBe(true)
    expect(load.settled).toBe(load.started)
    expect(load.wrong).toEqual([])
    expect(load.answered).toBeGreaterThan(0)
    // The dead master's keys failed in the tier (and were answered from L1 or the loader all the same).
    expect(a.stats().tiers[1]!.errors).toBeGreaterThan(0)
    for (const key of deadKeys) expect(await a.getOrSet(key, () => value(key))).toBe(value(key))
    // Writes of keys on the healthy masters were never refused (one dead master does not take down the others).
    const refusedLive = liveKeys.reduce((n, key) => n + (load.setsRejected.get(key) ?? 0), 0)
    expect(refusedLive, `sets of healthy masters' keys refused (circuit opened ${breakerOf(a).timesOpened}×)`).toBe(0)

    // The healthy masters still serve their keys through the tier: written by a, read from Redis by b (empty L1).
    for (const key of liveKeys) expect(await recovers(() => a.set(key, `new:${key}`), LIVE)).toBe(true)
    for (const key of liveKeys) expect(await b.get(key)).toBe(`new:${key}`)
    expect(b.stats().tiers[1]!.hits).toBe(liveKeys.length)
    await expectNoUnhandledRejection()
  })

  it('the bus connection drops (Redis killed): L1 is dropped at the gap and again once back, so nothing invalidated meanwhile is served from it', async () => {
    const server = await redis()
    const name = ns('bus')
    const a = instance(server, name)
    const b = instance(server, name)
    const full = (key: string) => `${name}:${key}`
    // Both buses subscribed: a message from a reaches b.
    await b.cache.set('probe', 'old')
    await b.cache.get('probe')
    await a.cache.set('probe', 'new')
    expect(await pollUntil(async () => (await b.cache.get('probe')) === 'new', LIVE, 20)).toBe(true)

    await a.cache.set('k', 'old')
    // b reads it into its L1 (a read racing a's own bus message is, rightly, not copied up: retry until it is).
    const inL1 = async () => (await b.cache.get('k')) === 'old' && b.l1.peek(full('k'))?.value === 'old'
    expect(await pollUntil(inL1, LIVE, 10)).toBe(true)

    await server.kill()
    // The gap: b's L1 no longer holds this cache's keys.
    expect(await pollUntil(async () => b.l1.peek(full('k')) === undefined, LIVE, 10)).toBe(true)
    const seen: unknown[] = []
    const read = async () => {
      const got = await b.cache.get('k')
      seen.push(got)
      return got
    }
    // During the outage a writes a newer value it cannot store in Redis nor publish; b keeps answering, from the
    // loader, and fills its L1 with what it loads.
    const err = await a.cache.set('k', 'mid').then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isCacheError(err, 'E_STORE_UNAVAILABLE'), String(err)).toBe(true)
    expect(await read()).toBeUndefined()
    expect(await b.cache.getOrSet('k2', () => 'loaded in the outage')).toBe('loaded in the outage')
    expect(b.l1.peek(full('k2'))?.value).toBe('loaded in the outage')

    await server.restart()
    // Back: b's L1 is dropped again (what it holds may predate invalidations it could not hear).
    expect(await pollUntil(async () => b.l1.peek(full('k2')) === undefined, LIVE, 10)).toBe(true)
    expect(await recovers(() => a.cache.set('k', 'new'), LIVE)).toBe(true)
    expect(await pollUntil(async () => (await read()) === 'new', LIVE, 20)).toBe(true)
    for (let i = 0; i < 5; i++) expect(await read()).toBe('new')
    expect(seen).not.toContain('old')
    await expectNoUnhandledRejection()
  })

  it('lock: true with Redis killed falls back to the in-process single flight: 50 callers, one loader run, no hang', async () => {
    const server = await redis()
    const a = instance(server, ns('lock'), { bus: false })
    expect(await a.cache.getOrSet('warm', () => 1, { lock: true })).toBe(1)
    await server.kill()

    // Several keys in turn, so the circuit opens along the way: both a lock call that fails at its deadline and
    // one the breaker refuses at once must leave the in-process single flight in charge.
    for (let round = 0; round < 8; round++) {
      const key = `cold${round}`
      const gate = deferred<string>()
      let calls = 0
      const callers = Array.from({ length: 50 }, () =>
        a.cache.getOrSet(
          key,
          () => {
            calls++
            return gate.promise
          },
          { lock: true },
        ),
      )
      expect(await pollUntil(async () => calls > 0, LIVE, 5)).toBe(true)
      gate.resolve(`v${round}`)
      expect(await settles(Promise.all(callers)), 'every caller settled').toBe(true)
      expect(new Set(await Promise.all(callers))).toEqual(new Set([`v${round}`]))
      expect(calls).toBe(1)
    }
    expect(a.states).toContain('open')
    expect(a.errors).toContain('lock')
    expect(breakerOf(a.cache).rejected).toBeGreaterThan(0)
    await expectNoUnhandledRejection()
  })

  it('a set refused while one instance is cut off from Redis is not applied later, over a newer write', async () => {
    const server = await redis()
    const proxy = await startFaultProxy({ target: server })
    cleanups.push(() => proxy.close())
    const name = ns('zombie')
    // a reaches Redis through the proxy (its own network path), b directly.
    const a = instance(proxy, name)
    const b = instance(server, name)
    await a.cache.set('k', 'v1')
    expect(await b.cache.get('k')).toBe('v1')

    // a's link breaks (connections reset, new ones accepted but going nowhere): a's client is reconnecting.
    proxy.blackhole()
    proxy.cutAll()
    expect(await pollUntil(async () => a.client.status !== 'ready', LIVE, 5)).toBe(true)
    const refused = await a.cache.set('k', 'mid').then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(isCacheError(refused, 'E_STORE_UNAVAILABLE'), String(refused)).toBe(true)
    // Afterwards, b writes a newer value, and it is acknowledged.
    await b.cache.set('k', 'newer')

    // a's link heals and its client is connected again; one round trip through it.
    proxy.blackhole(false)
    expect(await pollUntil(async () => a.client.status === 'ready', LIVE, 10)).toBe(true)
    // Anything a's client had queued is sent before this PING, and answered before it.
    await a.client.ping()
    // The write that was refused must not land now, over the newer one; nor may any instance serve it.
    const c = createCache({ namespace: name, tiers: [redisStore({ client: redisClient(server) })] })
    cleanups.push(() => c.close())
    expect.soft(await c.get('k'), 'Redis holds').toBe('newer')
    expect(await b.cache.get('k'), 'b answers').toBe('newer')
    await expectNoUnhandledRejection()
  })
})
