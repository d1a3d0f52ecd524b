// httpAdapterSuite over the thinnest adapter there is: plain node:http, `nodeExchange` and `createHttpCache`. It is
// the engine's own end-to-end test, once over the memory store and once over a memory L1 + a real Redis L2.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type RedisServer, startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe } from 'vitest'
import { createCache } from '../cache.js'
import { redisStore } from '../redis.js'
import { memoryStore } from '../stores/memory.js'
import {
  type HttpAdapterHarness,
  httpAdapterSuite,
  type SuiteCacheOptions,
  type SuiteReply,
  type SuiteRequest,
  type SuiteRoute,
  type SuiteServer,
} from '../testing/index.js'
import type { Store } from '../types.js'
import { createHttpCache, forwardDetached, type HttpCacheOptions, isDetached, nodeExchange } from './index.js'

function suiteRequest(req: IncomingMessage): SuiteRequest {
  const headers: Record<string, string | undefined> = {}
  for (const [name, value] of Object.entries(req.headers))
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  const url = req.url ?? '/'
  const query = Object.fromEntries(new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : ''))
  return { method: req.method ?? 'GET', url, headers, host: headers.host?.replace(/:\d*$/, ''), query }
}

function adaptOptions(options: SuiteCacheOptions): HttpCacheOptions<IncomingMessage> {
  const { key, tags, invalidateTags, ...rest } = options
  return {
    ...rest,
    key: key && ((req) => key(suiteRequest(req))),
    tags: tags && ((req) => tags(suiteRequest(req))),
    invalidateTags: invalidateTags && ((req) => invalidateTags(suiteRequest(req))),
  }
}

/** Writes a SuiteReply to `res` as a hand-written node:http handler would. */
async function answer(route: SuiteRoute, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let reply: SuiteReply
  try {
    reply = await route.handler(suiteRequest(req))
  } catch (err) {
    reply = { throws: err instanceof Error ? err : new Error(String(err)) }
  }
  if (reply.throws) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error')
    return
  }
  res.statusCode = reply.status ?? 200
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value)
  if (reply.stream) {
    try {
      for await (const chunk of reply.stream) {
        if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')])
      }
      res.end()
    } catch {
      res.destroy()
    }
    return
  }
  const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : (reply.body ?? new Uint8Array(0))
  if (res.statusCode !== 204 && res.statusCode !== 304) res.setHeader('content-length', body.byteLength)
  res.end(body)
}

/** Adds `headers` when the response's headers go out, as on-headers (express-session) does: a writeHead wrapper. */
function addLate(res: ServerResponse, headers: Readonly<Record<string, string>> | undefined): void {
  if (headers === undefined) return
  const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    for (const [name, value] of Object.entries(headers)) this.setHeader(name, value)
    return writeHead.apply(this, args)
  } as ServerResponse['writeHead']
}

/** A server whose routes run behind the engine; without `detached`, the engine must revalidate while clients wait. */
async function start(
  cache: Parameters<HttpAdapterHarness['start']>[0],
  routes: readonly SuiteRoute[],
  detached = true,
) {
  const table = new Map(
    routes.map((route) => [route.path, { route, http: createHttpCache(cache, adaptOptions(route.cache)) }]),
  )
  const server = createServer((req, res) => {
    const entry = table.get((req.url ?? '/').split('?')[0] ?? '/')
    if (entry === undefined) {
      res.writeHead(404).end()
      return
    }
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET')
    if (!(entry.route.methods ?? ['GET']).includes(method as 'GET')) {
      res.writeHead(405).end()
      return
    }
    // The route's earlier middleware: it sets its headers before the cache runs (on detached refreshes too).
    for (const [name, value] of Object.entries(entry.route.before ?? {})) res.setHeader(name, value)
    addLate(res, entry.route.late)
    const run = () => void answer(entry.route, req, res)
    if (isDetached(req)) return forwardDetached(res, run)
    const exchange = nodeExchange(req, res, run, req)
    entry.http.handle(detached ? exchange : { ...exchange, detached: undefined }).catch(() => {
      if (res.headersSent) res.destroy()
      else res.writeHead(500).end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
    },
  } satisfies SuiteServer
}

const harness: HttpAdapterHarness = { name: 'node:http', start: (cache, routes) => start(cache, routes) }

httpAdapterSuite(harness)

// What a data-level adapter (tRPC) runs: only `call`, which sees status and body, and no background revalidation.
httpAdapterSuite({
  name: 'node:http as a data-level adapter without detached runs',
  start: (cache, routes) => start(cache, routes, false),
  async call(server, path, init = {}) {
    const res = await fetch(server.url + path, { method: init.method ?? 'GET', headers: init.headers ?? {} })
    return { status: res.status, headers: new Headers(), body: await res.text() }
  },
  capabilities: { http: false, backgroundRevalidation: false },
})

describe('over a Redis tier', () => {
  let redis: RedisServer
  let client: Redis
  const stores: Store[] = []
  let n = 0

  beforeAll(async () => {
    redis = await startRedis()
    client = new Redis(redis.port, redis.host, { maxRetriesPerRequest: 1 })
  })
  // After the suite's own afterEach (which closed the cache): the stores it was given are ours to close.
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close?.()))
  })
  afterAll(async () => {
    client?.disconnect()
    await redis?.stop()
  })

  httpAdapterSuite(
    { ...harness, name: 'node:http, memory L1 + Redis L2' },
    {
      groups: ['basics', 'coalescing', 'tags', 'body', 'stale', 'safety', 'streaming'],
      createCache: () => {
        const tiers = [memoryStore(), redisStore({ client })]
        stores.push(...tiers)
        return createCache({ namespace: `http-suite-${process.pid}-${n++}`, tiers })
      },
    },
  )
})
