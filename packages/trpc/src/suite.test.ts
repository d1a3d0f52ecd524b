// The shared conformance suite, data-level part: each GET route becomes a query procedure (input = the query
// parameters, context = the request headers) served by tRPC's standalone adapter, called over HTTP with fetch.
import type { AddressInfo } from 'node:net'
import { type Cache, createCache, memoryStore } from '@cache/core'
import { redisStore } from '@cache/core/redis'
import { httpAdapterSuite, type SuiteRequest, type SuiteRoute, type SuiteServer } from '@cache/core/testing'
import { type RedisServer, startRedis } from '@cache/testing'
import { type AnyTRPCProcedure, initTRPC, TRPCError } from '@trpc/server'
import { createHTTPServer } from '@trpc/server/adapters/standalone'
import { Redis } from 'ioredis'
import { afterAll } from 'vitest'
import { cacheMiddleware, type TrpcCacheOptions } from './index.js'

interface Ctx {
  headers: Record<string, string | undefined>
}

/** '/a/b' → 'a_b': a procedure name without tRPC's path separator. */
const procedureName = (path: string) => path.replace(/^\//, '').replace(/\W/g, '_') || 'root'

function parse(path: string): { name: string; input: Record<string, string> | undefined } {
  const url = new URL(path, 'http://x')
  const input = url.search === '' ? undefined : Object.fromEntries(url.searchParams)
  return { name: procedureName(url.pathname), input }
}

function suiteRequest(ctx: Ctx, path: string, input: unknown): SuiteRequest {
  const query = input === undefined ? '' : `?${new URLSearchParams(input as Record<string, string>)}`
  return { method: 'GET', url: path + query, headers: ctx.headers }
}

function options(route: SuiteRoute): TrpcCacheOptions<Ctx> {
  const { ttl, staleWhileRevalidate, staleIfError, lock, key, tags } = route.cache
  const req = (call: { ctx: Ctx; input: unknown }) => suiteRequest(call.ctx, route.path, call.input)
  return {
    ttl,
    staleWhileRevalidate,
    staleIfError,
    lock,
    scope: key && ((call) => key(req(call))),
    tags: tags && ((call) => tags(req(call))),
  }
}

async function start(cache: Cache, routes: readonly SuiteRoute[]): Promise<SuiteServer> {
  const t = initTRPC.context<Ctx>().create()
  const record: Record<string, AnyTRPCProcedure> = {}
  for (const route of routes) {
    if (!(route.methods ?? ['GET']).includes('GET')) continue
    record[procedureName(route.path)] = t.procedure.use(cacheMiddleware(cache, options(route))).query(async (call) => {
      const reply = await route.handler(suiteRequest(call.ctx, route.path, call.input))
      if (reply.throws !== undefined || (reply.status ?? 200) >= 500) {
        throw new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'handler failed', cause: reply.throws })
      }
      return typeof reply.body === 'string' ? reply.body : new TextDecoder().decode(reply.body ?? new Uint8Array())
    })
  }
  const server = createHTTPServer({
    router: t.router(record),
    createContext: ({ req }) => ({ headers: req.headers as Ctx['headers'] }),
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

async function call(server: SuiteServer, path: string, init: { headers?: Record<string, string> } = {}) {
  const { name, input } = parse(path)
  const query = input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`
  const res = await fetch(`${server.url}/${name}${query}`, { headers: init.headers ?? {} })
  const json = (await res.json()) as { result?: { data: string }; error?: unknown }
  return { status: res.status, headers: res.headers, body: json.result?.data ?? JSON.stringify(json.error) }
}

const harness = { name: 'trpc', start, call, capabilities: { http: false } }
httpAdapterSuite(harness)

// Again over a memory L1 + a real Redis L2, where `lock: true` coalesces through Redis and values go through the codec.
let redis: RedisServer | undefined
const clients: Redis[] = []
afterAll(async () => {
  for (const client of clients.splice(0)) client.disconnect()
  await redis?.stop()
})
httpAdapterSuite(
  { ...harness, name: 'trpc over redis' },
  {
    groups: ['basics', 'coalescing', 'tags', 'leaks'],
    async createCache() {
      redis ??= await startRedis()
      const client = new Redis(redis.port, redis.host, { maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      clients.push(client)
      return createCache({ namespace: `suite-${clients.length}`, tiers: [memoryStore(), redisStore({ client })] })
    },
  },
)
