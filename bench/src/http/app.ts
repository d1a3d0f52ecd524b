/**
 * One HTTP server under test (P1–P5), in a process of its own: `node --import tsx --conditions=@cache/source
 * --expose-gc src/http/app.ts <app>`, forked by `AppProcess` (load.ts) with an IPC channel. It listens on
 * 127.0.0.1:0, reports its port over IPC, then answers `begin` / `end` around each batch with what its handlers did
 * and the CPU it spent, so the parent can check that a hit benchmark was served from the cache.
 *
 * Every app has the same three routes, the same handlers and the same bodies; the cached variants differ from the
 * plain ones only by the middleware (or plugin) in front of them:
 * - GET /hello: `{"hello":"world"}`
 * - GET /big: a ~50 KB JSON document, serialised by the framework on every call the handler answers
 * - GET /nostore: `{"hello":"world"}` with `Cache-Control: no-store` (nothing to store: the miss path)
 * The tRPC apps have one query procedure, `hello`, instead.
 */
import type { AddressInfo } from 'node:net'
import { createCache } from '@cache/core'
import type { FastifyContextConfig } from 'fastify'
import { APPS, type AppName, type BeginReply, type EndReply, type ReadyMessage, type Request } from './protocol.js'

const name = process.argv[2] as AppName
if (!APPS.includes(name)) throw new Error(`[bench] unknown app '${name}'`)

/** Handler calls per route since the process started. */
const calls = { hello: 0, big: 0, nostore: 0 }
const HELLO = { hello: 'world' }
const TTL = '1h'
/** 280 records of about 180 bytes: what a list endpoint returns. Built once; serialised on every uncached call. */
const BIG = {
  items: Array.from({ length: 280 }, (_, i) => ({
    id: i,
    name: `user ${i}`,
    email: `user${i}@example.com`,
    active: i % 3 !== 0,
    score: Math.round(((i * 7919) % 1000) * 1.37) / 100,
    tags: ['alpha', 'beta', 'gamma'].slice(0, (i % 3) + 1),
    address: { street: `${i} Main Street`, city: 'Springfield', zip: String(10_000 + i) },
  })),
}

async function start(): Promise<number> {
  switch (name) {
    case 'express':
    case 'express-cache':
    case 'express-apicache':
      return startExpress()
    case 'fastify':
    case 'fastify-cache':
      return startFastify()
    case 'hono':
    case 'hono-cache':
      return startHono()
    case 'trpc':
    case 'trpc-cache':
      return startTrpc()
  }
}

async function startExpress(): Promise<number> {
  const { default: express } = await import('express')
  type Handler = import('express').RequestHandler
  const app = express()
  app.disable('x-powered-by')
  let mw: Handler[] = []
  if (name === 'express-cache') {
    const { cacheResponse } = await import('@cache/express')
    mw = [cacheResponse(createCache(), { ttl: TTL })]
  } else if (name === 'express-apicache') {
    const { default: apicache } = await import('apicache')
    mw = [apicache.middleware('1 hour')]
  }
  app.get('/hello', ...mw, (_req, res) => {
    calls.hello++
    res.json(HELLO)
  })
  app.get('/big', ...mw, (_req, res) => {
    calls.big++
    res.json(BIG)
  })
  app.get('/nostore', ...mw, (_req, res) => {
    calls.nostore++
    res.set('Cache-Control', 'no-store').json(HELLO)
  })
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1', (err?: Error) => {
      if (err) reject(err)
      else resolve((server.address() as AddressInfo).port)
    })
  })
}

async function startFastify(): Promise<number> {
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false })
  const cached = name === 'fastify-cache'
  if (cached) {
    const { fastifyCache } = await import('@cache/fastify')
    await app.register(fastifyCache, { cache: createCache(), ttl: TTL })
  }
  const config: FastifyContextConfig = cached ? { cache: true } : {}
  app.get('/hello', { config }, async () => {
    calls.hello++
    return HELLO
  })
  app.get('/big', { config }, async () => {
    calls.big++
    return BIG
  })
  app.get('/nostore', { config }, async (_req, reply) => {
    calls.nostore++
    reply.header('Cache-Control', 'no-store')
    return HELLO
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}

async function startHono(): Promise<number> {
  const { Hono } = await import('hono')
  const { serve } = await import('@hono/node-server')
  type Context = import('hono').Context
  const app = new Hono()
  let route = (path: string, handler: (c: Context) => Response) => app.get(path, handler)
  if (name === 'hono-cache') {
    const { cacheResponse } = await import('@cache/hono')
    const mw = cacheResponse(createCache(), { ttl: TTL })
    route = (path, handler) => app.get(path, mw, handler)
  }
  route('/hello', (c) => {
    calls.hello++
    return c.json(HELLO)
  })
  route('/big', (c) => {
    calls.big++
    return c.json(BIG)
  })
  route('/nostore', (c) => {
    calls.nostore++
    c.header('Cache-Control', 'no-store')
    return c.json(HELLO)
  })
  return new Promise((resolve) => {
    serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info) => resolve(info.port))
  })
}

async function startTrpc(): Promise<number> {
  const { initTRPC } = await import('@trpc/server')
  const { createHTTPServer } = await import('@trpc/server/adapters/standalone')
  const t = initTRPC.create()
  let procedure = t.procedure
  if (name === 'trpc-cache') {
    const { cacheMiddleware } = await import('@cache/trpc')
    procedure = procedure.use(cacheMiddleware(createCache(), { ttl: TTL })) as unknown as typeof procedure
  }
  const router = t.router({
    hello: procedure
      .input((raw) => raw as { id: number })
      .query(({ input }) => {
        calls.hello++
        return { hello: 'world', id: input.id }
      }),
  })
  const server = createHTTPServer({ router })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
  })
}

let snapshot = { ...calls }
let cpu = process.cpuUsage()

process.on('message', (message: Request) => {
  if (message.cmd === 'begin') {
    globalThis.gc?.()
    // A turn of the event loop, so that what the collection freed (and any timer due) is dealt with before timing.
    setImmediate(() => {
      snapshot = { ...calls }
      cpu = process.cpuUsage()
      process.send!({ id: message.id } satisfies BeginReply)
    })
  } else {
    const used = process.cpuUsage(cpu)
    process.send!({
      id: message.id,
      calls: {
        hello: calls.hello - snapshot.hello,
        big: calls.big - snapshot.big,
        nostore: calls.nostore - snapshot.nostore,
      },
      cpuMs: (used.user + used.system) / 1000,
    } satisfies EndReply)
  }
})
// The parent went away (or stopped us): nothing left to serve.
process.on('disconnect', () => process.exit(0))

const port = await start()
process.send!({
  ready: true,
  port,
  bigBytes: Buffer.byteLength(JSON.stringify(BIG)),
} satisfies ReadyMessage)
