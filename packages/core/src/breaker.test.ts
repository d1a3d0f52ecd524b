// The circuit breaker: its state machine on a manual clock, breakerStore's shape, and a real Redis killed and
// paused under load (fail-fast proven by counting the commands that reach the ioredis client).
import { type RedisServer, startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type BreakerOptions, type BreakerState, breakerStore, CircuitBreaker } from './breaker.js'
import { CacheError, type CacheErrorCode, isCacheError } from './errors.js'
import { memoryStore } from './stores/memory.js'
import { redisStore } from './stores/redis.js'
import { caught, deferred, expectCode, liveEntry, manualClock, pollUntil, rejection } from './test-helpers.js'
import type { Store, StoreLock, WriteQueue } from './types.js'

const unavailable = () => new CacheError('E_STORE_UNAVAILABLE', 'redis: GET timed out')
const fail = (err: unknown) => () => Promise.reject(err)
const ok = () => Promise.resolve('ok')

function setup(options: BreakerOptions = {}) {
  const clock = manualClock()
  const changes: [BreakerState, string][] = []
  const breaker = new CircuitBreaker(
    'redis',
    { failureRate: 0.5, minCalls: 4, window: '10s', openFor: '5s', ...options, clock: clock.now },
    (state, reason) => changes.push([state, reason]),
  )
  /** Runs `fn` and swallows its outcome (the breaker records it either way). */
  const call = (fn: () => Promise<unknown>) => breaker.run(fn).catch(() => undefined)
  /** Opens the circuit with `minCalls` failures. */
  const trip = async () => {
    for (let i = 0; i < (options.minCalls ?? 4); i++) await call(fail(unavailable()))
    expect(breaker.state).toBe('open')
  }
  return { clock, changes, breaker, call, trip }
}

describe('CircuitBreaker: closed → open', () => {
  it('fewer calls than minCalls never open it, whatever the failure rate', async () => {
    const { breaker, call, changes } = setup({ minCalls: 4 })
    for (let i = 0; i < 3; i++) await call(fail(unavailable()))
    expect(breaker.state).toBe('closed')
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 3, failures: 3, timesOpened: 0 })
    expect(changes).toEqual([])
    // The fourth call reaches minCalls: 3 of 4 failed ≥ 0.5, even though this call succeeded.
    await call(ok)
    expect(breaker.state).toBe('open')
    expect(breaker.stats()).toMatchObject({ state: 'open', timesOpened: 1 })
  })

  it('opens at the failure rate threshold, not below it', async () => {
    const { breaker, call } = setup({ minCalls: 10, failureRate: 0.5 })
    for (let i = 0; i < 6; i++) await call(ok)
    for (let i = 0; i < 4; i++) await call(fail(unavailable()))
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 10, failures: 4 })
    await call(fail(unavailable())) // 5 of 11: below 0.5
    expect(breaker.state).toBe('closed')
    await call(fail(unavailable())) // 6 of 12 = 0.5
    expect(breaker.state).toBe('open')
  })

  it('failureRate 0: one failure opens it once minCalls is reached, successes alone never do', async () => {
    const { breaker, call } = setup({ minCalls: 3, failureRate: 0 })
    for (let i = 0; i < 5; i++) await call(ok)
    expect(breaker.state).toBe('closed')
    await call(fail(new Error('ECONNRESET')))
    expect(breaker.state).toBe('open')
  })

  it('the window rolls: failures older than the window age out', async () => {
    const { breaker, call, clock } = setup({ minCalls: 4, window: '10s' })
    for (let i = 0; i < 3; i++) await call(fail(unavailable()))
    clock.advance(5_000)
    await call(ok)
    expect(breaker.stats()).toMatchObject({ calls: 4, failures: 3 })
    expect(breaker.state).toBe('open') // 3 of 4 within 10 s
  })

  it('the window rolls bucket by bucket', async () => {
    const { breaker, call, clock } = setup({ minCalls: 6, window: '10s' })
    for (let i = 0; i < 3; i++) await call(fail(unavailable()))
    clock.advance(6_000)
    await call(ok)
    await call(ok)
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 5, failures: 3 })
    // 10 s after the failures they have aged out; the successes (6 s younger) have not.
    clock.advance(4_000)
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 2, failures: 0 })
    await call(fail(unavailable()))
    await call(ok)
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 4, failures: 1 })
    clock.advance(60_000)
    expect(breaker.stats()).toMatchObject({ calls: 0, failures: 0 })
    // Five new failures over an empty window: below minCalls, closed; the sixth opens it.
    for (let i = 0; i < 5; i++) await call(fail(unavailable()))
    expect(breaker.state).toBe('closed')
    await call(fail(unavailable()))
    expect(breaker.state).toBe('open')
  })

  it('data errors mean the server answered: they count as successes and never open it', async () => {
    const { breaker } = setup({ minCalls: 4 })
    const codes: CacheErrorCode[] = [
      'E_DESERIALIZE',
      'E_VALUE_TOO_LARGE',
      'E_SERIALIZE',
      'E_INVALID_KEY',
      'E_INVALID_VALUE',
      'E_INVALID_OPTION',
      'E_UNSUPPORTED',
    ]
    for (let round = 0; round < 3; round++) {
      for (const code of codes) {
        const err = new CacheError(code, 'bad bytes')
        // The caller gets the store's own error, untouched.
        expect(await caught(breaker.run(fail(err)))).toBe(err)
      }
    }
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 21, failures: 0 })
  })

  it('non-CacheError errors (from the client) are failures; E_CLOSED is not counted at all', async () => {
    const { breaker, call } = setup({ minCalls: 4 })
    for (let i = 0; i < 5; i++) await call(fail(new CacheError('E_CLOSED', 'closed')))
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 0, failures: 0 })
    await call(fail(new Error('Connection is closed.')))
    await call(fail(new TypeError('boom')))
    await call(() => {
      throw new Error('thrown synchronously')
    })
    expect(breaker.state).toBe('closed')
    await call(ok)
    expect(breaker.state).toBe('open') // 3 of 4
  })

  it('a call started while closed that settles after it opened does not change the state', async () => {
    const { breaker, call, trip } = setup({ minCalls: 4 })
    const slow = deferred<string>()
    const pending = breaker.run(() => slow.promise)
    await trip()
    slow.resolve('late')
    expect(await pending).toBe('late')
    expect(breaker.state).toBe('open')
    await call(ok) // fails fast; still open
    expect(breaker.state).toBe('open')
  })
})

describe('CircuitBreaker: open, half-open', () => {
  it('open: rejects at once with E_STORE_UNAVAILABLE without calling fn', async () => {
    const { breaker, trip } = setup()
    await trip()
    const fn = vi.fn(ok)
    for (let i = 0; i < 20; i++) {
      const err = await rejection(breaker.run(fn))
      expect(err.code).toBe('E_STORE_UNAVAILABLE')
      expect(err.message).toMatch(/redis circuit open/)
      expect(isCacheError(err.cause, 'E_STORE_UNAVAILABLE')).toBe(true) // the last real failure
    }
    expect(fn).not.toHaveBeenCalled()
    expect(breaker.stats()).toMatchObject({ state: 'open', rejected: 20 })
  })

  it('stays open until openFor has passed, then the next call moves it to half-open', async () => {
    const { breaker, trip, clock } = setup({ openFor: '5s' })
    await trip()
    clock.advance(4_999)
    const fn = vi.fn(ok)
    await caught(breaker.run(fn))
    expect(fn).not.toHaveBeenCalled()
    clock.advance(1)
    // Time alone moves nothing: the transition happens when a call arrives.
    expect(breaker.state).toBe('open')
    const probe = deferred<string>()
    const pending = breaker.run(() => probe.promise)
    expect(breaker.state).toBe('half-open')
    probe.resolve('back')
    expect(await pending).toBe('back')
    expect(breaker.state).toBe('closed')
  })

  it('half-open lets exactly halfOpenProbes calls through at once; the others fail fast', async () => {
    const { breaker, trip, clock } = setup({ halfOpenProbes: 2 })
    await trip()
    clock.advance(5_000)
    const probes = [deferred<string>(), deferred<string>(), deferred<string>()]
    let started = 0
    const calls = Array.from({ length: 6 }, () =>
      breaker.run(() => {
        started++
        return probes[started - 1]!.promise
      }),
    )
    expect(started).toBe(2)
    expect(breaker.state).toBe('half-open')
    const settled = await Promise.allSettled(calls.slice(2))
    for (const r of settled) {
      expect(r.status).toBe('rejected')
      expect(isCacheError((r as PromiseRejectedResult).reason, 'E_STORE_UNAVAILABLE')).toBe(true)
    }
    // The first probe to answer decides; the other's outcome (settling later) changes nothing.
    probes[1]!.resolve('b')
    expect(await calls[1]).toBe('b')
    expect(breaker.state).toBe('closed')
    probes[0]!.reject(unavailable())
    await caught(calls[0]!)
    expect(breaker.state).toBe('closed')
    expect(breaker.stats()).toMatchObject({ calls: 0, failures: 0 })
  })

  it('a successful probe closes it with a clean window', async () => {
    const { breaker, trip, clock, call } = setup({ minCalls: 4 })
    await trip()
    clock.advance(5_000)
    await call(ok)
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 0, failures: 0, timesOpened: 1 })
    // The failures from before the outage do not count: three more failures stay below minCalls.
    for (let i = 0; i < 3; i++) await call(fail(unavailable()))
    expect(breaker.state).toBe('closed')
  })

  it('a data error from a probe means the server answered: it closes', async () => {
    const { breaker, trip, clock, call } = setup()
    await trip()
    clock.advance(5_000)
    await call(fail(new CacheError('E_DESERIALIZE', 'garbage')))
    expect(breaker.state).toBe('closed')
  })

  it('a failed probe reopens it, for twice as long each time, up to maxOpenFor; success resets that', async () => {
    const { breaker, trip, clock, call } = setup({ openFor: '5s', maxOpenFor: '15s' })
    await trip()
    const probe = vi.fn(fail(unavailable()))
    clock.advance(5_000)
    await call(probe)
    expect(probe).toHaveBeenCalledTimes(1)
    expect(breaker.stats()).toMatchObject({ state: 'open', timesOpened: 2, openForMs: 10_000 })
    clock.advance(9_999)
    await call(probe)
    expect(probe).toHaveBeenCalledTimes(1)
    clock.advance(1)
    await call(probe)
    expect(probe).toHaveBeenCalledTimes(2)
    expect(breaker.stats()).toMatchObject({ state: 'open', timesOpened: 3, openForMs: 15_000 })
    clock.advance(15_000)
    await call(probe)
    expect(breaker.stats()).toMatchObject({ state: 'open', timesOpened: 4, openForMs: 15_000 })
    clock.advance(15_000)
    await call(ok)
    expect(breaker.stats()).toMatchObject({ state: 'closed', openForMs: 5_000 })
  })

  it('onChange is called once per transition, with a reason', async () => {
    const { breaker, trip, clock, call, changes } = setup()
    await trip()
    await call(ok) // fails fast: no transition
    clock.advance(5_000)
    await call(fail(new Error('ECONNREFUSED')))
    clock.advance(10_000)
    await call(ok)
    expect(changes.map(([state]) => state)).toEqual(['open', 'half-open', 'open', 'half-open', 'closed'])
    expect(changes[0]![1]).toMatch(/4 of 4 calls failed.*timed out/)
    expect(changes[2]![1]).toMatch(/probe failed.*ECONNREFUSED/)
    expect(changes[4]![1]).toMatch(/probe succeeded/)
    expect(breaker.state).toBe('closed')
  })

  it('a throwing onChange does not fail the call', async () => {
    const clock = manualClock()
    const breaker = new CircuitBreaker('redis', { minCalls: 1, clock: clock.now }, () => {
      throw new Error('listener bug')
    })
    const err = unavailable()
    expect(await caught(breaker.run(fail(err)))).toBe(err)
    expect(breaker.state).toBe('open')
  })

  it('validates its options', () => {
    const make =
      (options: unknown, tier: unknown = 'redis', onChange?: unknown) =>
      () =>
        new CircuitBreaker(tier as string, options as BreakerOptions, onChange as undefined)
    for (const failureRate of [-0.1, 1.5, Number.NaN, '0.5']) {
      expectCode(make({ failureRate }), 'E_INVALID_OPTION', /redis breaker: failureRate/)
    }
    for (const minCalls of [0, 1.5, -1, '10']) expectCode(make({ minCalls }), 'E_INVALID_OPTION', /minCalls/)
    for (const halfOpenProbes of [0, 2.5]) {
      expectCode(make({ halfOpenProbes }), 'E_INVALID_OPTION', /halfOpenProbes/)
    }
    for (const window of [0, '0s', 'soon', -5]) expectCode(make({ window }), 'E_INVALID_OPTION', /window/)
    expectCode(make({ openFor: -1 }), 'E_INVALID_OPTION', /openFor/)
    expectCode(make({ openFor: '10s', maxOpenFor: '5s' }), 'E_INVALID_OPTION', /maxOpenFor/)
    expectCode(make({ clock: 42 }), 'E_INVALID_OPTION', /clock/)
    expectCode(make(null), 'E_INVALID_OPTION', /options must be an object/)
    expectCode(make({}, ''), 'E_INVALID_OPTION', /tier/)
    expectCode(make({}, 'redis', 'nope'), 'E_INVALID_OPTION', /onChange/)
    // Defaults: valid, closed.
    const breaker = new CircuitBreaker('redis')
    expect(breaker.stats()).toEqual({
      state: 'closed',
      calls: 0,
      failures: 0,
      timesOpened: 0,
      rejected: 0,
      openForMs: 5_000,
    })
    // openFor longer than the default cap: the cap follows it.
    expect(new CircuitBreaker('redis', { openFor: '2m' }).stats().openForMs).toBe(120_000)
  })
})

describe('breakerStore', () => {
  it('keeps the name and exactly the optional async methods of the store; never sync ones', async () => {
    const inner = memoryStore({ name: 'l2' } as never)
    const store = breakerStore(inner, new CircuitBreaker('l2'))
    expect(store.name).toBe(inner.name)
    expect(Object.keys(store).sort()).toEqual(
      [
        'name',
        'get',
        'set',
        'delete',
        'clear',
        'getMany',
        'setMany',
        'deleteMany',
        'deleteTagged',
        'stats',
        'onRemove',
        'close',
      ].sort(),
    )
    await store.set('k', liveEntry('v'))
    expect((await store.get('k'))?.value).toBe('v')
    expect(await store.getMany!(['k', 'x'])).toMatchObject([{ value: 'v' }, undefined])

    const minimal: Store = {
      name: 'm',
      get: async () => undefined,
      set: async () => {},
      delete: async () => false,
      clear: async () => {},
    }
    expect(Object.keys(breakerStore(minimal, new CircuitBreaker('m'))).sort()).toEqual(
      ['clear', 'delete', 'get', 'name', 'set'].sort(),
    )
  })

  it('routes every call through the breaker; stats, onRemove and close pass through while open', async () => {
    const clock = manualClock()
    const breaker = new CircuitBreaker('fake', { minCalls: 2, clock: clock.now })
    let reached = 0
    let released = 0
    const down = async () => {
      reached++
      throw unavailable()
    }
    const queue: WriteQueue = {
      name: 'q',
      push: down,
      take: down,
      touch: down,
      ack: down,
      retry: down,
      dead: down,
      deadLetters: down,
      size: down,
    }
    const lock: StoreLock = {
      release: async () => {
        released++
      },
    }
    const inner: Store = {
      name: 'fake',
      get: down,
      set: down,
      delete: down,
      clear: down,
      getMany: down,
      setMany: down,
      deleteMany: down,
      deleteTagged: down,
      lock: async () => lock,
      writeQueue: () => queue,
      stats: () => ({ size: 1, bytes: 2, evictions: 0, expirations: 0 }),
      onRemove: () => () => {},
      close: async () => {},
    }
    const store = breakerStore(inner, breaker)
    const held = await store.lock!('k', 1000)
    const q = store.writeQueue!('wb')!
    expect(q.name).toBe('q')
    await caught(store.get('a'))
    await caught(q.push([]))
    expect(breaker.state).toBe('open')
    const before = reached
    const rejectedBefore = breaker.stats().rejected
    const calls: Promise<unknown>[] = [
      store.get('a'),
      store.set('a', liveEntry(1)),
      store.delete('a'),
      store.clear(),
      store.getMany!(['a']),
      store.setMany!([['a', liveEntry(1)]]),
      store.deleteMany!(['a']),
      store.deleteTagged!(['t']),
      store.lock!('k', 1000),
      q.push([]),
      q.take(1),
      q.touch!([]),
      q.ack([]),
      q.retry('1', { namespace: 'n', key: 'k', value: 1, attempts: 1, queuedAt: 0 }, 0),
      q.dead('1', { namespace: 'n', key: 'k', value: 1, attempts: 1, queuedAt: 0 }, 'e'),
      q.deadLetters(),
      q.size(),
    ]
    for (const r of await Promise.allSettled(calls)) {
      expect(r.status).toBe('rejected')
      expect((r as PromiseRejectedResult).reason.message).toMatch(/fake circuit open/)
    }
    expect(reached).toBe(before)
    expect(breaker.stats().rejected - rejectedBefore).toBe(calls.length)
    // A lock's release never throws and never waits on an open circuit: skipped (the lock expires at its ttl).
    await held!.release()
    expect(released).toBe(0)
    expect(store.stats!()).toEqual({ size: 1, bytes: 2, evictions: 0, expirations: 0 })
    expect(typeof store.onRemove!(() => {})).toBe('function')
    await store.close!()
    // Closed again: release goes to the store.
    clock.advance(5_000)
    inner.get = async () => undefined
    await store.get('a')
    expect(breaker.state).toBe('closed')
    await held!.release()
    expect(released).toBe(1)
    // Every argument reaches the queue.
    queue.take = async (...args) => {
      expect(args).toEqual([5, 30_000])
      return []
    }
    expect(await q.take(5, 30_000)).toEqual([])
    expect(Object.keys(q).sort()).toEqual(Object.keys(queue).sort())
  })
})

describe('breakerStore over a real Redis', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await server?.stop()
  })

  const PREFIX = `brk${process.pid}:`
  const entry = (value: unknown) => liveEntry(value, {}, 60_000, 120_000)
  const bytes = (i: number) => new Uint8Array([i & 0xff, 7])

  /**
   * A breaker on the real time plus a skew the test moves: the circuit's openFor is an hour, so it stays open for
   * as long as the test checks, and the test decides when a probe may go (no timing assumption either way).
   */
  function harness() {
    const client = new Redis(server.url)
    // Reconnect errors reach the callers as E_STORE_UNAVAILABLE; without a listener ioredis logs each one.
    client.on('error', () => {})
    // Every command of this test's keys that enters the client (including ones ioredis queues while offline).
    let sent = 0
    const sendCommand = client.sendCommand.bind(client)
    client.sendCommand = ((command, ...rest) => {
      if (command.args.some((arg) => String(arg).startsWith(PREFIX))) sent++
      return sendCommand(command, ...rest)
    }) as typeof client.sendCommand
    let skew = 0
    const changes: BreakerState[] = []
    const breaker = new CircuitBreaker(
      'redis',
      { minCalls: 5, failureRate: 0.5, window: '10s', openFor: '1h', clock: () => Date.now() + skew },
      (state) => changes.push(state),
    )
    const store = breakerStore(redisStore({ client, commandTimeout: '200ms' }), breaker)

    // Steady, bounded load: 4 workers, each one call at a time with a short pause (fail-fast calls must not spin).
    const counts = { ok: 0, failed: 0, fastFailed: 0, other: 0 }
    let running = true
    const worker = async (w: number) => {
      for (let i = 0; running; i++) {
        const k = `${PREFIX}${w}:${i % 10}`
        try {
          if (i % 3 === 0) await store.set(k, entry(bytes(i)))
          else if (i % 7 === 0) await store.getMany!([k, `${PREFIX}none`])
          else await store.get(k)
          counts.ok++
        } catch (err) {
          if (!isCacheError(err, 'E_STORE_UNAVAILABLE')) counts.other++
          else if (/circuit open/.test(err.message)) counts.fastFailed++
          else counts.failed++
        }
        await new Promise((r) => setTimeout(r, 5))
      }
    }
    const workers = [0, 1, 2, 3].map(worker)
    return {
      client,
      breaker,
      store,
      counts,
      changes,
      sent: () => sent,
      /** Lets the next call probe: jumps past any openFor (grown or not). */
      allowProbe: () => {
        skew += 24 * 3_600_000
      },
      async stop() {
        running = false
        await Promise.all(workers)
        client.disconnect()
      },
    }
  }

  async function downThenBack(h: ReturnType<typeof harness>, outage: () => Promise<void>, back: () => Promise<void>) {
    expect(await pollUntil(async () => h.counts.ok >= 20, 10_000, 20)).toBe(true)
    expect(h.breaker.state).toBe('closed')
    await outage()
    expect(await pollUntil(async () => h.breaker.state === 'open', 10_000, 20)).toBe(true)
    expect(h.counts.failed).toBeGreaterThan(0)

    // Open: the load goes on, and not one of its calls reaches the client.
    const sent = h.sent()
    const fast = h.counts.fastFailed
    expect(await pollUntil(async () => h.counts.fastFailed >= fast + 100, 10_000, 20)).toBe(true)
    expect(h.breaker.state).toBe('open')
    expect(h.sent()).toBe(sent)
    // A caller's own call fails fast too, with the circuit's error.
    const err = await rejection(h.store.get(`${PREFIX}mine`))
    expect(err.code).toBe('E_STORE_UNAVAILABLE')
    expect(err.message).toMatch(/redis circuit open/)
    expect(h.sent()).toBe(sent)

    await back()
    // Probes (by the load) until one succeeds: a probe before ioredis has reconnected fails and reopens it.
    const closed = await pollUntil(
      async () => {
        if (h.breaker.state === 'open') h.allowProbe()
        return h.breaker.state === 'closed'
      },
      15_000,
      50,
    )
    expect(closed).toBe(true)
    expect(h.sent()).toBeGreaterThan(sent)
    const k = `${PREFIX}after`
    await h.store.set(k, entry(bytes(42)))
    expect((await h.store.get(k))?.value).toEqual(bytes(42))
    const okAfter = h.counts.ok
    expect(await pollUntil(async () => h.counts.ok >= okAfter + 20, 10_000, 20)).toBe(true)
    expect(h.counts.other).toBe(0)
    expect(h.changes[0]).toBe('open')
    expect(h.changes.at(-1)).toBe('closed')
    expect(h.changes).toContain('half-open')
  }

  it('killed: opens, fails fast without sending commands; restarted: a probe closes it', async () => {
    const h = harness()
    try {
      await downThenBack(
        h,
        () => server.kill(),
        () => server.restart(),
      )
    } finally {
      await h.stop()
    }
  })

  it('paused (SIGSTOP) past the deadline: opens, fails fast; resumed: a probe closes it', async () => {
    const h = harness()
    try {
      await downThenBack(
        h,
        () => server.pause(),
        () => server.resume(),
      )
    } finally {
      if (h.breaker.state !== 'closed') await server.resume().catch(() => {})
      await h.stop()
    }
  })
})
