import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Cache, createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { Redis } from 'ioredis'
import { createApp } from './app.js'

// `pnpm start`: the API on 127.0.0.1:$PORT (default 3000). With REDIS_URL set, the cache has two tiers, a memory L1
// in front of Redis, and a Redis bus so that every instance's L1 drops what another instance invalidates: start two
// of them on two ports and a POST to one is seen by the other.

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`PORT must be a port number (got ${process.env.PORT})`)
  process.exit(1)
}

let redis: Redis | undefined
let cache: Cache
if (process.env.REDIS_URL) {
  redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 })
  // The cache keeps answering from L1 and the handlers while Redis is away; say so once per outage, not per command.
  let down = false
  redis.on('error', (err: Error) => {
    if (!down) console.error(`redis: ${err.message} (serving from memory until it is back)`)
    down = true
  })
  redis.on('ready', () => {
    down = false
  })
  cache = createCache({
    namespace: 'express-api',
    tiers: [memoryStore({ maxEntries: 10_000 }), redisStore({ client: redis })],
    bus: redisBus({ client: redis }),
  })
} else {
  cache = createCache({ namespace: 'express-api', store: memoryStore({ maxEntries: 10_000 }) })
}

const server: Server = createApp(cache).listen(port, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  console.log(`Todo API on ${url} (cache: ${redis ? 'memory + Redis' : 'memory'}). Ctrl-C stops it.

  curl -i ${url}/todos
  curl -X POST ${url}/todos -H 'content-type: application/json' -d '{"title":"buy milk"}'
  curl ${url}/stats`)
})
server.on('error', (err) => {
  console.error(err.message)
  process.exit(1)
})

let stopping = false
function stop(): void {
  if (stopping) process.exit(1) // a second Ctrl-C: do not wait
  stopping = true
  server.close()
  server.closeIdleConnections()
  cache
    .close()
    .then(() => redis?.quit())
    .then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err)
        process.exit(1)
      },
    )
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
