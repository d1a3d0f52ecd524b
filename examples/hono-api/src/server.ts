// Starts the example: memory cache by default; with REDIS_URL, a memory L1 over a Redis L2, and a Redis bus so every
// instance's L1 drops what another instance invalidates.
import { type Cache, createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { serve } from '@hono/node-server'
import { Redis } from 'ioredis'
import { createApp } from './app.js'

function makeCache(): Cache {
  const url = process.env.REDIS_URL
  if (!url) return createCache({ namespace: 'hono-api', store: memoryStore({ maxEntries: 10_000 }) })
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', (error) => console.error('redis:', error.message))
  return createCache({
    namespace: 'hono-api',
    tiers: [memoryStore({ maxEntries: 10_000 }), redisStore({ client })],
    bus: redisBus({ client }),
  })
}

const cache = makeCache()
const port = Number(process.env.PORT ?? 3000)
const server = serve({ fetch: createApp(cache).fetch, port, hostname: process.env.HOST ?? '127.0.0.1' }, (info) => {
  console.log(`hono-api on http://127.0.0.1:${info.port} (${process.env.REDIS_URL ? 'memory + redis' : 'memory'})`)
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close()
    void cache.close().finally(() => process.exit(0))
  })
}
