import { type Cache, createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { Redis } from 'ioredis'
import { buildApp } from './app.js'

// `pnpm start` serves the API on PORT (default 3000). The cache lives in memory unless REDIS_URL is set; then it has
// a memory L1 in front of Redis, and a Redis bus so that a POST on one instance clears every instance's L1.

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`PORT must be a port number (got ${process.env.PORT})`)
  process.exit(1)
}

let redis: Redis | undefined
let cache: Cache
if (process.env.REDIS_URL) {
  redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 })
  // The cache counts and survives Redis errors (it answers from L1 or the handler); keep them off stderr.
  redis.on('error', () => {})
  cache = createCache({
    namespace: 'books-api',
    tiers: [memoryStore({ maxEntries: 10_000 }), redisStore({ client: redis })],
    bus: redisBus({ client: redis }),
  })
} else {
  cache = createCache({ namespace: 'books-api', store: memoryStore({ maxEntries: 10_000 }) })
}

const app = await buildApp(cache)
const address = await app.listen({ host: process.env.HOST ?? '127.0.0.1', port })
console.log(`books API on ${address} (cache: ${redis ? 'memory + Redis' : 'memory'})`)
console.log(`try: curl -i ${address}/books`)

async function shutdown(): Promise<void> {
  await app.close()
  await cache.close()
  await redis?.quit()
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err)
        process.exit(1)
      },
    )
  })
}
