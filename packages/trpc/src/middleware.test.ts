// cacheMiddleware and cacheInvalidator over real servers: tRPC's standalone adapter on loopback, a real @trpc/client
// (httpLink and httpBatchLink, superjson), and a real Redis for the tier test.
import { type Cache, createCache, isCacheError, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { type RedisServer, startRedis } from '@cache/testing'
import { createTRPCClient, httpBatchLink, httpBatchStreamLink, httpLink, TRPCClientError } from '@trpc/client'
import { initTRPC, TRPCError } from '@trpc/server'
import { Redis } from 'ioredis'
import superjson from 'superjson'
import { afterAll, afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { type AppRouter, createApp, type Served, serve } from './fixtures/app.js'
import { type CacheInvalidator, cacheInvalidator, cacheMiddleware, type QueryPath, trpcCacheKey } from './index.js'

const caches: Cache[] = []
const servers: Served[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
  await Promise.all(caches.splice(0).map((c) => c.close()))
})

type Link = 'http' | 'batch'

function hold(knobs: { gate: Promise<void> | undefined }): () => void {
  let open!: () => void
  knobs.gate = new Promise<void>((resolve) => {
    open = resolve
  })
  return () => {
    knobs.gate = undefined
    open()
  }
}

function client(served: Served, link: Link = 'batch', user?: string) {
  const options = { url: served.url, transformer: superjson, headers: user === undefined ? {} : { 'x-user': user } }
  return createTRPCClient<AppRouter>({ links: [link === 'batch' ? httpBatchLink(options) : httpLink(options)] })
}

async function setup(options: Parameters<typeof createApp>[1] = {}, cache = createCache()) {
  caches.push(cache)
  const app = createApp(cache, options)
  const served = await serve(app.router)
  servers.push(served)
  return { ...app, cache, served, api: client(served), http: client(served, 'http') }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (err) {
    expect(err).toBeInstanceOf(TRPCClientError)
    return (err as TRPCClientError<AppRouter>).data?.code
  }
  throw new Error('expected the call to fail')
}

describe('cacheMiddleware', () => {
  it('misses once, then hits, per input', async () => {
    const { api, http, calls, cache } = await setup()
    const first = await api.todo.list.query({ page: 1 })
    expect(await http.todo.list.query({ page: 1 })).toEqual(first)
    expect(await api.todo.list.query({ page: 1 })).toEqual(first)
    expect(calls['todo.list']).toBe(1)
    await api.todo.list.query({ page: 2 })
    expect(calls['todo.list']).toBe(2)
    const stats = cache.stats()
    expect(stats.misses).toBe(2)
    expect(stats.hits).toBe(2)
  })

  it('hashes the input stably: key order does not matter, values do', async () => {
    const { api, calls } = await setup()
    await api.echo.query({ a: 1, b: { c: [1, 2], d: 'x' } })
    await api.echo.query({ b: { d: 'x', c: [1, 2] }, a: 1 })
    expect(calls.echo).toBe(1)
    await api.echo.query({ a: 1, b: { c: [2, 1], d: 'x' } })
    await api.echo.query({ a: '1', b: { c: [1, 2], d: 'x' } })
    expect(calls.echo).toBe(3)
    expect(trpcCacheKey('echo', { a: 1, b: 2 })).toBe(trpcCacheKey('echo', { b: 2, a: 1 }))
    expect(trpcCacheKey('a:b', 1)).not.toBe(trpcCacheKey('a', 1, 'b'))
  })

  it('keeps one copy per scope and never leaks one user’s output to another', async () => {
    const { served, calls, cache } = await setup()
    const alice = client(served, 'batch', 'alice')
    const bob = client(served, 'http', 'bob')
    expect((await alice.me.query()).secret).toBe('secret of alice')
    expect((await bob.me.query()).secret).toBe('secret of bob')
    expect((await alice.me.query()).secret).toBe('secret of alice')
    expect((await bob.me.query()).secret).toBe('secret of bob')
    expect(calls.me).toBe(2)
    // No user: scope() returns undefined, so every call runs the resolver and nothing is stored.
    const anonymous = client(served, 'http')
    expect((await anonymous.me.query()).user).toBeUndefined()
    expect((await anonymous.me.query()).user).toBeUndefined()
    expect(calls.me).toBe(4)
    // A user's own mutation drops their copy only.
    await alice.forget.mutate()
    await alice.me.query()
    await bob.me.query()
    expect(calls.me).toBe(5)
    // By path for one scope, then everything of one scope.
    const invalidate = cacheInvalidator<AppRouter>(cache)
    expect(await invalidate.path('me', { scope: 'bob' })).toBe(1)
    await alice.me.query()
    await bob.me.query()
    expect(calls.me).toBe(6)
    expect(await invalidate.scope('alice')).toBe(1)
    await alice.me.query()
    await bob.me.query()
    expect(calls.me).toBe(7)
  })

  it('never caches mutations, even behind the middleware', async () => {
    const { api, calls } = await setup()
    await api.todo.add.mutate({ id: 3, title: 'a' })
    await api.todo.add.mutate({ id: 3, title: 'a' })
    expect(calls['todo.add']).toBe(2)
  })

  it('invalidates from mutations by query + input, by path and by tag', async () => {
    const { api, calls, dropped } = await setup()
    // By query + input: only that input's entry goes.
    await api.todo.byId.query({ id: 1 })
    await api.todo.byId.query({ id: 2 })
    await api.todo.rename.mutate({ id: 1, title: 'write more tests' })
    expect((await api.todo.byId.query({ id: 1 })).title).toBe('write more tests')
    expect((await api.todo.byId.query({ id: 2 })).title).toBe('ship')
    expect(calls['todo.byId']).toBe(3)
    // By path: every input goes.
    await api.todo.list.query({ page: 1 })
    await api.todo.list.query({ page: 2, filter: { done: true } })
    await api.todo.add.mutate({ id: 3, title: 'celebrate' })
    expect((await api.todo.list.query({ page: 1 })).items).toContain('celebrate')
    expect((await api.todo.list.query({ page: 2, filter: { done: true } })).items).toContain('celebrate')
    expect(calls['todo.list']).toBe(4)
    // By tag (the middleware's `tags`).
    await api.todo.all.query()
    await api.todo.all.query()
    expect(calls['todo.all']).toBe(1)
    await api.todo.reset.mutate()
    await api.todo.all.query()
    expect(calls['todo.all']).toBe(2)
    expect(dropped).toEqual([true, 1])
  })

  it('runs the resolver once for 200 concurrent identical queries, one by one or in one batch', async () => {
    for (const link of ['http', 'batch'] as const) {
      const { served, calls, knobs, cache } = await setup()
      const open = hold(knobs)
      const api = client(served, link)
      const pending = Array.from({ length: 200 }, () => api.slow.query(7))
      // The resolver is held until every other call has joined its run.
      await expect.poll(() => cache.stats().coalesced, { timeout: 10_000 }).toBe(199)
      open()
      const results = await Promise.all(pending)
      expect(new Set(results.map((r) => JSON.stringify(r))).size).toBe(1)
      expect(calls.slow, link).toBe(1)
      // httpBatchLink sent the 200 calls as one HTTP request; httpLink as 200.
      expect(served.requests).toBe(link === 'batch' ? 1 : 200)
    }
  })

  it('passes the resolver’s error through with its code, and caches nothing of it', async () => {
    const { api, http, calls, knobs, cache } = await setup()
    knobs.fail = new TRPCError({ code: 'FORBIDDEN', message: 'no' })
    expect(await codeOf(api.flaky.query())).toBe('FORBIDDEN')
    expect(await codeOf(http.flaky.query())).toBe('FORBIDDEN')
    expect(await codeOf(api.todo.byId.query({ id: 99 }))).toBe('NOT_FOUND')
    expect(calls.flaky).toBe(2)
    // Coalesced callers all get the one failure, with its code.
    const open = hold(knobs)
    const codes = Promise.all(Array.from({ length: 5 }, () => codeOf(http.flaky.query('x'))))
    await expect.poll(() => cache.stats().coalesced).toBe(4)
    open()
    expect(await codes).toEqual(Array(5).fill('FORBIDDEN'))
    expect(calls.flaky).toBe(3)
    knobs.fail = new Error('plain')
    expect(await codeOf(api.flaky.query())).toBe('INTERNAL_SERVER_ERROR')
    knobs.fail = undefined
    expect(await api.flaky.query()).toEqual({ version: 1 })
    expect(await api.flaky.query()).toEqual({ version: 1 })
    // Four failed calls, then one stored and hit: none of the failures was cached.
    expect(calls.flaky).toBe(5)
    expect(calls['todo.byId']).toBe(1)
    await codeOf(api.todo.byId.query({ id: 99 }))
    expect(calls['todo.byId']).toBe(2)
  })

  it('serves stale while one background call revalidates', async () => {
    const { api, calls, knobs } = await setup({ ttl: 300, staleWhileRevalidate: '5s' })
    expect((await api.todo.list.query({ page: 1 })).version).toBe(1)
    knobs.version = 2
    await sleep(400)
    expect((await api.todo.list.query({ page: 1 })).version).toBe(1)
    await expect.poll(() => calls['todo.list']).toBe(2)
    await expect.poll(async () => (await api.todo.list.query({ page: 1 })).version).toBe(2)
    expect(calls['todo.list']).toBe(2)
  })

  it('serves stale if the refresh fails (stale-if-error), waiting for it without stale-while-revalidate', async () => {
    const { api, calls, knobs, cache } = await setup({ ttl: 300, staleIfError: '5s' })
    expect((await api.flaky.query()).version).toBe(1)
    await sleep(400)
    knobs.version = 2
    // The caller waits for the refresh: it succeeds, so it gets the new output.
    expect((await api.flaky.query()).version).toBe(2)
    await sleep(400)
    knobs.version = 3
    knobs.fail = new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'down' })
    expect((await api.flaky.query()).version).toBe(2)
    expect(calls.flaky).toBe(3)
    expect(cache.stats().staleHits).toBeGreaterThanOrEqual(1)
    // Beyond the window nothing stale is left: the error reaches the caller.
    const short = await setup({ ttl: 200, staleIfError: 300 })
    await short.api.flaky.query()
    await sleep(700)
    short.knobs.fail = new TRPCError({ code: 'BAD_GATEWAY', message: 'down' })
    expect(await codeOf(short.api.flaky.query())).toBe('BAD_GATEWAY')
  })

  it('never caches nor shares a streamed output (an async iterable is read once)', async () => {
    const { served, calls } = await setup()
    const api = createTRPCClient<AppRouter>({
      links: [httpBatchStreamLink({ url: served.url, transformer: superjson })],
    })
    const collect = async (iterable: AsyncIterable<number>) => {
      const out: number[] = []
      for await (const n of iterable) out.push(n)
      return out
    }
    const both = await Promise.all([api.ticks.query(), api.ticks.query()])
    expect(await Promise.all(both.map(collect))).toEqual([
      [1, 2, 3],
      [1, 2, 3],
    ])
    expect(await collect(await api.ticks.query())).toEqual([1, 2, 3])
    expect(calls.ticks).toBe(3)
  })

  it('bypasses the cache for inputs it cannot hash', async () => {
    const { api, calls } = await setup()
    await api.echo.query(new Map([['a', 1]]))
    await api.echo.query(new Map([['a', 1]]))
    expect(calls.echo).toBe(2)
  })

  it('refuses bad options with E_INVALID_OPTION', () => {
    const cache = createCache()
    caches.push(cache)
    const bad = [{ ttl: 'soon' }, { staleIfError: -1 }, { keyPrefix: '' }, { scope: 'user' }, { tags: ['a'] }] as const
    for (const options of bad) {
      let error: unknown
      try {
        cacheMiddleware(cache, options as never)
      } catch (err) {
        error = err
      }
      expect(isCacheError(error, 'E_INVALID_OPTION'), JSON.stringify(options)).toBe(true)
    }
    expect(() => cacheInvalidator(cache, { keyPrefix: 1 as never })).toThrow(/keyPrefix/)
  })

  it('types the invalidator from the router: query paths and their inputs only', () => {
    type Paths = QueryPath<AppRouter>
    expectTypeOf<Paths>().toEqualTypeOf<
      'todo.list' | 'todo.byId' | 'todo.all' | 'me' | 'slow' | 'flaky' | 'rich' | 'ticks' | 'echo'
    >()
    const inv = {} as CacheInvalidator<AppRouter>
    expectTypeOf(inv.query<'todo.byId'>)
      .parameter(1)
      .toEqualTypeOf<{ id: number }>()
    // @ts-expect-error a mutation is not a cached query
    void (() => inv.path('todo.add'))
    // @ts-expect-error the input must match the procedure's
    void (() => inv.query('todo.byId', { id: 'one' }))
    expectTypeOf(cacheInvalidator(createCache()).path).parameter(0).toEqualTypeOf<string>()
    // The context type of scope() is inferred from the procedure builder it is used on.
    const t = initTRPC.context<{ user: { id: string } | null }>().create()
    t.procedure.use(
      cacheMiddleware(createCache(), {
        scope: ({ ctx }) => {
          expectTypeOf(ctx).toEqualTypeOf<{ user: { id: string } | null }>()
          return ctx.user?.id
        },
      }),
    )
  })
})

describe('with a Redis tier', () => {
  let redis: RedisServer | undefined
  const clients: Redis[] = []

  afterAll(async () => {
    for (const c of clients.splice(0)) c.disconnect()
    await redis?.stop()
  })

  async function instance(namespace: string) {
    redis ??= await startRedis()
    const make = () => {
      const c = new Redis(redis!.port, redis!.host, { maxRetriesPerRequest: 1 })
      c.on('error', () => {})
      clients.push(c)
      return c
    }
    return createCache({
      namespace,
      tiers: [memoryStore(), redisStore({ client: make() })],
      bus: redisBus({ client: make() }),
    })
  }

  it('round-trips Date, Map, Set and BigInt through the codec, across instances, and invalidates both', async () => {
    const namespace = `trpc-${process.pid}-${Date.now()}`
    const one = await setup({}, await instance(namespace))
    const two = await setup({}, await instance(namespace))
    await Promise.all([one.cache.ready(), two.cache.ready()])
    const expected = {
      at: new Date('2024-05-06T07:08:09.010Z'),
      map: new Map([['a', 1]]),
      set: new Set(['x', 'y']),
      big: 2n ** 70n,
      version: 1,
    }
    expect(await one.api.rich.query()).toEqual(expected)
    // The second instance has an empty L1: its answer comes out of Redis, decoded by the codec.
    const fromRedis = await two.http.rich.query()
    expect(fromRedis).toEqual(expected)
    expect(fromRedis.at).toBeInstanceOf(Date)
    expect(fromRedis.map).toBeInstanceOf(Map)
    expect(two.calls.rich).toBeUndefined()
    expect(one.calls.rich).toBe(1)
    // A mutation on one instance drops the entry on both (Redis and the other's L1, through the bus).
    await one.api.todo.list.query({ page: 1 })
    await two.api.todo.list.query({ page: 1 })
    expect(two.calls['todo.list']).toBeUndefined()
    await one.api.todo.add.mutate({ id: 9, title: 'x' })
    await expect
      .poll(async () => {
        await two.api.todo.list.query({ page: 1 })
        return two.calls['todo.list']
      })
      .toBe(1)
  })
})
