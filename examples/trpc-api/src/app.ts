// A small todo API on tRPC. Queries are cached by @cache/trpc (one line per procedure builder); mutations invalidate
// what they change with a typed invalidator: by procedure + input, by procedure (every input), or per user.
import { createServer as createNodeServer, type Server } from 'node:http'
import type { Cache } from '@cache/core'
import { type CacheInvalidator, cacheInvalidator, cacheMiddleware } from '@cache/trpc'
import { initTRPC, TRPCError } from '@trpc/server'
import { createHTTPHandler } from '@trpc/server/adapters/standalone'
import superjson from 'superjson'
import { z } from 'zod'

export interface Context {
  /** Who is calling: the `x-user` header (a stand-in for real authentication). */
  user: string | undefined
}

interface Todo {
  id: number
  title: string
  done: boolean
  createdAt: Date
}

/** The router over `cache`: any cache from `createCache()` (memory, or memory over Redis). */
export function createAppRouter(cache: Cache) {
  const todos = new Map<number, Todo>([
    [1, { id: 1, title: 'Read the README', done: true, createdAt: new Date('2025-01-01T09:00:00Z') }],
    [2, { id: 2, title: 'Cache a tRPC query in one line', done: false, createdAt: new Date('2025-01-02T09:00:00Z') }],
  ])
  const favorites = new Map<string, Set<number>>()
  let nextId = 3

  const t = initTRPC.context<Context>().create({ transformer: superjson })
  // Shared by everyone: fresh for 30 s, then served stale for a minute while one call refreshes it.
  const cached = t.procedure.use(cacheMiddleware(cache, { ttl: '30s', staleWhileRevalidate: '1m' }))
  // One copy per user; anonymous calls are not cached at all.
  const perUser = t.procedure.use(cacheMiddleware(cache, { ttl: '5m', scope: ({ ctx }) => ctx.user }))
  const signedIn = t.procedure.use(({ ctx, next }) => {
    if (ctx.user === undefined) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'send an x-user header' })
    return next({ ctx: { user: ctx.user } })
  })
  // Typed by this very router: only its query paths, with their inputs. Resolvers await it (and do not return
  // what it resolves to, which would make the router's type depend on itself).
  const invalidate: CacheInvalidator<typeof router> = cacheInvalidator(cache)

  const router = t.router({
    todo: t.router({
      list: cached
        .input(z.object({ done: z.boolean() }).optional())
        .query(({ input }) =>
          [...todos.values()].filter((todo) => input?.done === undefined || todo.done === input.done),
        ),
      byId: cached.input(z.object({ id: z.number().int() })).query(({ input }) => {
        const todo = todos.get(input.id)
        // Errors are never cached: the next call runs the resolver again.
        if (todo === undefined) throw new TRPCError({ code: 'NOT_FOUND', message: `no todo ${input.id}` })
        return todo
      }),
      add: t.procedure.input(z.object({ title: z.string().min(1) })).mutation(async ({ input }) => {
        const todo = { id: nextId++, title: input.title, done: false, createdAt: new Date() }
        todos.set(todo.id, todo)
        await invalidate.path('todo.list') // every cached list, whatever its filter
        return todo
      }),
      toggle: t.procedure.input(z.object({ id: z.number().int() })).mutation(async ({ input }) => {
        const todo = todos.get(input.id)
        if (todo === undefined) throw new TRPCError({ code: 'NOT_FOUND', message: `no todo ${input.id}` })
        todo.done = !todo.done
        await Promise.all([invalidate.query('todo.byId', { id: input.id }), invalidate.path('todo.list')])
        return todo
      }),
    }),
    me: t.router({
      favorites: perUser.query(({ ctx }) => [...(favorites.get(ctx.user ?? '') ?? [])]),
      addFavorite: signedIn.input(z.object({ id: z.number().int() })).mutation(async ({ ctx, input }) => {
        const mine = favorites.get(ctx.user) ?? new Set<number>()
        favorites.set(ctx.user, mine.add(input.id))
        await invalidate.query('me.favorites', undefined, { scope: ctx.user }) // this user's copy only
        return [...mine]
      }),
    }),
    // Never cached: what the cache has seen.
    stats: t.procedure.query(() => {
      const { hits, misses, hitRate, staleHits, coalesced, size } = cache.stats()
      return { hits, misses, hitRate, staleHits, coalesced, size }
    }),
  })
  return router
}

export type AppRouter = ReturnType<typeof createAppRouter>

/** An HTTP server (not listening yet) serving the router under /trpc, as tRPC clients expect. */
export function createServer(cache: Cache): Server {
  const handler = createHTTPHandler({
    router: createAppRouter(cache),
    basePath: '/trpc/',
    createContext: ({ req }): Context => ({ user: (req.headers['x-user'] as string | undefined) || undefined }),
  })
  return createNodeServer((req, res) => {
    if (req.url?.startsWith('/trpc/')) return handler(req, res)
    res.writeHead(404, { 'content-type': 'text/plain' }).end('tRPC lives under /trpc\n')
  })
}
