// The conformance suite of every HTTP adapter, three ways: over @hono/node-server on loopback, through app.request()
// with no server (how hono runs off Node: no background revalidation), and over a memory L1 + Redis L2 cache.
import { createCache, memoryStore } from '@cache/core'
import { redisStore } from '@cache/core/redis'
import { httpAdapterSuite } from '@cache/core/testing'
import { type RedisServer, startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { bindinglessHarness, fetchHarness, nodeHarness } from './fixtures/harness.js'

httpAdapterSuite(nodeHarness)

httpAdapterSuite(fetchHarness, { groups: ['basics', 'coalescing', 'stale', 'tags', 'leaks', 'keys'] })

// The wire-level groups whose path changes without `detached` (HEAD, stale, bodies and streams).
httpAdapterSuite(bindinglessHarness, {
  groups: ['basics', 'head', 'conditional', 'stale', 'body', 'streaming', 'safety'],
})

let redis: RedisServer | undefined
const clients: Redis[] = []
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  for (const client of clients.splice(0)) client.disconnect()
  await redis?.stop()
})

let run = 0
httpAdapterSuite(
  { ...nodeHarness, name: 'hono on @hono/node-server, memory L1 + Redis L2' },
  {
    groups: ['basics', 'coalescing', 'tags', 'safety', 'streaming'],
    createCache: () => {
      if (!redis) throw new Error('Redis is not started')
      const client = new Redis(redis.port, redis.host, { maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      clients.push(client)
      return createCache({ namespace: `hono-${process.pid}-${run++}`, tiers: [memoryStore(), redisStore({ client })] })
    },
  },
)
