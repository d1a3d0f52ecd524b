// Adversarial review of cacheMiddleware over a real standalone tRPC server and a real @trpc/client: inputs that
// hash alike, users in concurrent batches, output validation errors, subscriptions and mutations.
import { type Cache, createCache } from '@cache/core'
import { createTRPCClient, httpBatchLink } from '@trpc/client'
import { initTRPC } from '@trpc/server'
import superjson from 'superjson'
import { afterEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type AppRouter, type Ctx, createApp, type Served, serve } from './fixtures/app.js'
import { cacheMiddleware } from './index.js'

const caches: Cache[] = []
const servers: Served[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
  await Promise.all(caches.splice(0).map((c) => c.close()))
})

function newCache(): Cache {
  const cache = createCache()
  caches.push(cache)
  return cache
}

async function setup() {
  const app = createApp(newCache())
  const served = await serve(app.router)
  servers.push(served)
  const client = (user?: string) =>
    createTRPCClient<AppRouter>({
      links: [
        httpBatchLink({
          url: served.url,
          transformer: superjson,
          headers: user === undefined ? {} : { 'x-user': user },
        }),
      ],
    })
  return { ...app, client }
}

describe('cacheMiddleware review', () => {
  it('inputs that superjson tells apart get their own outputs (-0 and 0)', async () => {
    // Control: on a cold cache the resolver does see -0 (superjson carries it).
    const cold = (await (await setup()).client().echo.query({ n: -0 })) as { input: { n: number } }
    expect(Object.is(cold.input.n, -0)).toBe(true)
    const { client, calls } = await setup()
    const api = client()
    const zero = (await api.echo.query({ n: 0 })) as { input: { n: number } }
    expect(Object.is(zero.input.n, 0)).toBe(true)
    const negative = (await api.echo.query({ n: -0 })) as { input: { n: number } }
    // The resolver would have answered -0; a cached 0 is another input's output.
    expect(calls.echo).toBe(2)
    expect(Object.is(negative.input.n, -0)).toBe(true)
  })

  it('inputs differing only by an undefined property vs a missing one', async () => {
    const cold = (await (await setup()).client().echo.query({ a: undefined })) as { input: Record<string, unknown> }
    expect('a' in cold.input).toBe(true)
    const { client, calls } = await setup()
    const api = client()
    const missing = (await api.echo.query({})) as { input: Record<string, unknown> }
    expect('a' in missing.input).toBe(false)
    const present = (await api.echo.query({ a: undefined })) as { input: Record<string, unknown> }
    expect(calls.echo).toBe(2)
    expect('a' in present.input).toBe(true)
  })

  it('concurrent batches of different users never receive each other’s scoped output', async () => {
    const { client, calls } = await setup()
    const users = ['alice', 'bob', 'carol']
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => {
        const user = users[i % users.length]!
        return Promise.all([client(user).me.query(), client(user).me.query()]).then((out) => ({ user, out }))
      }),
    )
    for (const { user, out } of results) for (const one of out) expect(one.secret).toBe(`secret of ${user}`)
    expect(calls.me).toBe(3)
    // No user at all: bypassed, never served someone's copy.
    expect((await client().me.query()).user).toBeUndefined()
  })

  it('an output that fails its .output() validator is an error every time, never cached', async () => {
    const t = initTRPC.context<Ctx>().create({ transformer: superjson })
    let good = false
    let calls = 0
    const router = t.router({
      item: t.procedure
        .use(cacheMiddleware(newCache()))
        .output(z.object({ n: z.number() }))
        .query(() => {
          calls++
          return (good ? { n: 1 } : { n: 'not a number' }) as { n: number }
        }),
    })
    const served = await serve(router)
    servers.push(served)
    const api = createTRPCClient<typeof router>({ links: [httpBatchLink({ url: served.url, transformer: superjson })] })
    await expect(api.item.query()).rejects.toThrow()
    await expect(api.item.query()).rejects.toThrow()
    good = true
    expect(await api.item.query()).toEqual({ n: 1 })
    expect(await api.item.query()).toEqual({ n: 1 })
    expect(calls).toBe(3)
  })

  it('subscriptions and mutations behind the middleware run every time', async () => {
    const t = initTRPC.context<Ctx>().create({ transformer: superjson })
    const cached = t.procedure.use(cacheMiddleware(newCache()))
    let runs = 0
    const router = t.router({
      ticks: cached.subscription(async function* () {
        runs++
        yield runs
      }),
      bump: cached.mutation(() => ++runs),
    })
    const caller = router.createCaller({ user: undefined })
    for (let i = 0; i < 2; i++) {
      const iterable = await caller.ticks()
      for await (const value of iterable) expect(typeof value).toBe('number')
    }
    expect(await caller.bump()).toBe(3)
    expect(await caller.bump()).toBe(4)
  })
})
