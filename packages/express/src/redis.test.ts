// The adapter over a real Redis tier: part of the conformance suite with a memory L1 in front of Redis, and two app
// instances sharing that Redis (each with its own L1 and bus), as the express-api example runs in production.
import { type Cache, createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { httpAdapterSuite } from '@cache/core/testing'
import { type RedisServer, startRedis } from '@cache/testing'
import express from 'express'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { expressHarness, listen } from './fixtures/harness.js'
import { outcome, rawCall } from './fixtures/http.js'
import { cacheResponse } from './index.js'

let server: RedisServer
const clients: Redis[] = []
let run = 0

beforeAll(async () => {
  server = await startRedis()
})

afterAll(async () => {
  for (const client of clients.splice(0)) client.disconnect()
  await server?.stop()
})

function client(): Redis {
  const c = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
  c.on('error', () => {})
  clients.push(c)
  return c
}

/** A namespace of its own per cache, so tests never see each other's entries in the shared Redis. */
const namespace = () => `express-${process.pid}-${run++}`

httpAdapterSuite(expressHarness('express 5, memory L1 + Redis L2', express), {
  createCache: () => createCache({ namespace: namespace(), tiers: [memoryStore(), redisStore({ client: client() })] }),
  groups: ['basics', 'coalescing', 'tags', 'safety', 'streaming'],
})

describe('two instances over one Redis', () => {
  const caches: Cache[] = []
  const servers: { close(): Promise<void> }[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()))
    await Promise.all(caches.splice(0).map((c) => c.close()))
  })

  it('one instance stores, the other hits; a POST on either invalidates both', async () => {
    const ns = namespace()
    let version = 0
    const urls: string[] = []
    for (let i = 0; i < 2; i++) {
      const redis = client()
      const cache = createCache({
        namespace: ns,
        tiers: [memoryStore(), redisStore({ client: redis })],
        bus: redisBus({ client: redis }),
      })
      caches.push(cache)
      const app = express()
      const cached = cacheResponse(cache, { ttl: '30s' })
      app.get('/todos', cached, (_req, res) => {
        res.json({ version })
      })
      app.post('/todos', cached, (_req, res) => {
        version++
        res.status(201).end()
      })
      const s = await listen(app)
      servers.push(s)
      urls.push(s.url)
    }
    const [a = '', b = ''] = urls
    // Both instances are reached under one name, as behind a load balancer: the Host header is part of the key.
    const call = (url: string, method = 'GET') => rawCall(`${url}/todos`, { method, headers: { host: 'api.test' } })

    expect(outcome((await call(a)).headers)).toBe('miss')
    const fromL2 = await call(b)
    expect(outcome(fromL2.headers)).toBe('hit')
    expect(JSON.parse(fromL2.text)).toEqual({ version: 0 })
    expect(outcome((await call(a)).headers)).toBe('hit')

    expect((await call(b, 'POST')).status).toBe(201)
    // A's L1 learns of the invalidation through the bus; poll briefly rather than assume its delivery time.
    let after = await call(a)
    for (let i = 0; i < 50 && outcome(after.headers) !== 'miss'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      after = await call(a)
    }
    expect(outcome(after.headers)).toBe('miss')
    expect(JSON.parse(after.text)).toEqual({ version: 1 })
  })
})
