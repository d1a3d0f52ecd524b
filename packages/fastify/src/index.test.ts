import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { type Cache, createCache, isCacheError, memoryStore } from '@cache/core'
import type { HttpCacheOptions } from '@cache/core/http'
import { redisStore } from '@cache/core/redis'
import {
  type HttpAdapterHarness,
  httpAdapterSuite,
  type SuiteCacheOptions,
  type SuiteRequest,
  type SuiteRoute,
} from '@cache/core/testing'
import { type RedisServer, startRedis } from '@cache/testing'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import fastifyCache from './index.js'

function suiteRequest(request: FastifyRequest): SuiteRequest {
  const headers: Record<string, string | undefined> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  const query = request.query as Record<string, unknown>
  return { method: request.method, url: request.url, headers, host: request.hostname, query }
}

function adapt(options: SuiteCacheOptions): HttpCacheOptions<FastifyRequest> {
  const { key, tags, invalidateTags, ...rest } = options
  return {
    ...rest,
    ...(key && { key: (req: FastifyRequest) => key(suiteRequest(req)) }),
    ...(tags && { tags: (req: FastifyRequest) => tags(suiteRequest(req)) }),
    ...(invalidateTags && { invalidateTags: (req: FastifyRequest) => invalidateTags(suiteRequest(req)) }),
  }
}

function addRoute(app: FastifyInstance, route: SuiteRoute): void {
  app.route({
    method: [...(route.methods ?? ['GET'])],
    url: route.path,
    config: { cache: adapt(route.cache) },
    handler: async (request, reply) => {
      const out = await route.handler(suiteRequest(request))
      if (out.throws) throw out.throws
      reply.code(out.status ?? 200)
      for (const [name, value] of Object.entries(out.headers ?? {})) reply.header(name, value)
      // Readable.from destroys the stream with the iterator's error, which aborts the response.
      if (out.stream) return reply.send(Readable.from(out.stream, { objectMode: false }))
      return reply.send(out.body === undefined ? undefined : Buffer.from(out.body))
    },
  })
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

const harness: HttpAdapterHarness = {
  name: 'fastify',
  capabilities: { trustProxy: true },
  async start(cache, routes, setup) {
    const app = Fastify({ trustProxy: setup?.trustProxy === true })
    // The routes' earlier middleware: an onRequest hook added before the plugin's runs before it.
    app.addHook('onRequest', (request, reply, done) => {
      const route = routes.find((r) => r.path === request.routeOptions.url)
      for (const [name, value] of Object.entries(route?.before ?? {})) reply.header(name, value)
      done()
    })
    await app.register(fastifyCache, { cache })
    // The routes' late headers: an onSend hook added after the plugin's runs after it (as @fastify/cookie's does).
    app.addHook('onSend', (request, reply, payload, done) => {
      const route = routes.find((r) => r.path === request.routeOptions.url)
      for (const [name, value] of Object.entries(route?.late ?? {})) reply.header(name, value)
      done(null, payload)
    })
    for (const route of routes) addRoute(app, route)
    const url = await listen(app)
    return { url, close: () => app.close() }
  },
}

httpAdapterSuite(harness)

/** The Cache-Status member's name and parameters (RFC 9211), e.g. { name: 'cache', hit: true, ttl: '30' }. */
function cacheStatus(res: Response): Record<string, string | true> | undefined {
  const header = res.headers.get('cache-status')
  if (header === null) return undefined
  const [name, ...params] = header.split(';').map((part) => part.trim())
  const out: Record<string, string | true> = { name: name ?? '' }
  for (const param of params) {
    const eq = param.indexOf('=')
    if (eq < 0) out[param] = true
    else out[param.slice(0, eq)] = param.slice(eq + 1)
  }
  return out
}

describe('fastify plugin', () => {
  const apps: FastifyInstance[] = []
  const caches: Cache[] = []
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
    await Promise.all(caches.splice(0).map((cache) => cache.close()))
  })

  async function app(defaults: Omit<Parameters<typeof fastifyCache>[1], 'cache'> = {}) {
    const cache = createCache()
    caches.push(cache)
    const instance = Fastify()
    apps.push(instance)
    await instance.register(fastifyCache, { cache, ttl: '1m', ...defaults })
    return instance
  }

  it('applies the registered defaults to `cache: true` routes and merges route options over them', async () => {
    const server = await app({ ttl: '20s', cacheStatus: 'edge' })
    let calls = 0
    server.get('/defaults', { config: { cache: true } }, async () => `call ${++calls}`)
    server.get('/merged', { config: { cache: { ttl: '5s' } } }, async () => `call ${++calls}`)
    const base = await listen(server)

    const miss = await fetch(`${base}/defaults`)
    expect(await miss.text()).toBe('call 1')
    const first = cacheStatus(miss)
    expect(first).toMatchObject({ name: 'edge', fwd: 'miss', stored: true })
    expect(Number(first?.ttl)).toBeGreaterThan(5)
    expect(Number(first?.ttl)).toBeLessThanOrEqual(20)
    const hit = await fetch(`${base}/defaults`)
    expect(await hit.text()).toBe('call 1')
    expect(cacheStatus(hit)).toMatchObject({ name: 'edge', hit: true })

    const merged = await fetch(`${base}/merged`)
    await merged.text()
    expect(cacheStatus(merged)).toMatchObject({ name: 'edge', fwd: 'miss', stored: true })
    expect(Number(cacheStatus(merged)?.ttl)).toBeLessThanOrEqual(5)
  })

  it('leaves routes without config.cache alone', async () => {
    const server = await app()
    let calls = 0
    server.get('/plain', async () => `call ${++calls}`)
    server.get('/off', { config: { cache: false } }, async () => `call ${++calls}`)
    const base = await listen(server)
    for (const path of ['/plain', '/plain', '/off', '/off']) {
      const res = await fetch(base + path)
      await res.text()
      expect(res.headers.get('cache-status')).toBeNull()
      expect(res.headers.get('age')).toBeNull()
    }
    expect(calls).toBe(4)
  })

  it('caches what reply.send serialises (objects as JSON)', async () => {
    const server = await app()
    let calls = 0
    server.get('/todos', { config: { cache: true } }, async (_request, reply) => {
      calls++
      return reply.send({ todos: [{ id: 1, title: 'café ☕' }], calls })
    })
    server.get('/returned', { config: { cache: true } }, async () => ({ returned: true, calls: ++calls }))
    const base = await listen(server)

    const miss = await fetch(`${base}/todos`)
    expect(await miss.json()).toEqual({ todos: [{ id: 1, title: 'café ☕' }], calls: 1 })
    const hit = await fetch(`${base}/todos`)
    expect(hit.headers.get('content-type')).toMatch(/^application\/json/)
    expect(cacheStatus(hit)).toMatchObject({ hit: true })
    expect(await hit.json()).toEqual({ todos: [{ id: 1, title: 'café ☕' }], calls: 1 })

    await (await fetch(`${base}/returned`)).text()
    const again = await fetch(`${base}/returned`)
    expect(await again.json()).toEqual({ returned: true, calls: 2 })
    expect(cacheStatus(again)).toMatchObject({ hit: true })
  })

  it('answers HEAD from the stored GET, with its content-length and no body', async () => {
    const server = await app()
    let calls = 0
    server.get('/doc', { config: { cache: true } }, async (_request, reply) => {
      calls++
      return reply.type('text/plain').send('x'.repeat(1234))
    })
    const base = await listen(server)
    await (await fetch(`${base}/doc`)).text()

    const head = await fetch(`${base}/doc`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe('1234')
    expect(head.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await head.text()).toBe('')
    expect(cacheStatus(head)).toMatchObject({ hit: true })
    expect(calls).toBe(1)
  })

  it('works under app.inject (no socket), streams included', async () => {
    const server = await app()
    let calls = 0
    server.get('/injected', { config: { cache: true } }, async () => ({ calls: ++calls }))
    server.get('/streamed', { config: { cache: true } }, async (_request, reply) => {
      calls++
      return reply.type('text/plain').send(Readable.from([Buffer.from('str'), Buffer.from('eam')]))
    })
    for (const url of ['/injected', '/streamed']) {
      const miss = await server.inject({ url })
      // A stream's length is unknown when the header leaves: it says streamed, and is stored once it ended within the cap.
      expect(miss.headers['cache-status']).toMatch(
        url === '/streamed' ? /fwd=miss; detail=streamed/ : /fwd=miss; stored/,
      )
      const hit = await server.inject({ url })
      expect(hit.body).toBe(miss.body)
      expect(hit.headers['cache-status']).toMatch(/; hit;/)
    }
    expect(calls).toBe(2)
  })

  it('keeps the engine status and headers on a 304', async () => {
    const server = await app()
    server.get('/etag', { config: { cache: true } }, async () => 'tagged')
    const base = await listen(server)
    await (await fetch(`${base}/etag`)).text()
    // The ETag is the stored copy's (computed when stored): the hit carries it.
    const hit = await fetch(`${base}/etag`)
    await hit.text()
    const etag = hit.headers.get('etag')
    expect(etag).toBeTruthy()
    const res = await fetch(`${base}/etag`, { headers: { 'if-none-match': etag ?? '' } })
    expect(res.status).toBe(304)
    expect(await res.text()).toBe('')
    expect(res.headers.get('etag')).toBe(etag)
    expect(cacheStatus(res)).toMatchObject({ hit: true })
  })

  it('rejects a registration without a cache, and route options that are not options', async () => {
    const bare = Fastify()
    apps.push(bare)
    // biome-ignore lint/suspicious/noExplicitAny: the wrong call under test
    await expect(bare.register(fastifyCache, {} as any)).rejects.toSatisfy((err) =>
      isCacheError(err, 'E_INVALID_OPTION'),
    )

    const server = await app()
    // biome-ignore lint/suspicious/noExplicitAny: the wrong option under test
    expect(() => server.get('/bad', { config: { cache: 'yes' as any } }, async () => 'x')).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION' }),
    )
    expect(() => server.get('/bad-ttl', { config: { cache: { ttl: 'soon' as '1s' } } }, async () => 'x')).toThrow()
  })
})

describe('fastify plugin over a Redis tier', () => {
  let redis: RedisServer
  const clients: Redis[] = []
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(async () => {
    for (const client of clients.splice(0)) client.disconnect()
    await redis?.stop()
  })

  let run = 0
  httpAdapterSuite(harness, {
    groups: ['basics', 'coalescing', 'tags', 'safety', 'streaming'],
    createCache: () => {
      const client = new Redis(redis.port, redis.host, { maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      clients.push(client)
      return createCache({
        namespace: `fastify-${process.pid}-${run++}`,
        tiers: [memoryStore(), redisStore({ client })],
      })
    },
  })
})
