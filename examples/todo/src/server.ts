import { createCache, memoryStore } from '@cache/core'
import { createApp } from './app.js'
import type { Latency } from './repository.js'

// The Todo API alone, on 127.0.0.1. `pnpm start` runs it on $PORT (default 3000); CACHE=off runs it without a cache;
// LATENCY_MS=10 or LATENCY_MS=5-15 sets the repository's simulated round trip. Started by the demo through `fork`,
// it reports its URL over IPC instead of printing it, and stops when the demo disconnects.

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65_535) fail(`PORT must be a port number (got ${process.env.PORT})`)
const latencyMs = parseLatency(process.env.LATENCY_MS ?? '5-15')
const withCache = process.env.CACHE !== 'off'

const cache = withCache ? createCache({ store: memoryStore({ maxEntries: 10_000 }) }) : null
const app = createApp({ cache, latencyMs })
const url = await app.listen(port, '127.0.0.1')

let stopping = false
const stop = (why: string) => {
  if (stopping) process.exit(1) // a second Ctrl-C: do not wait
  stopping = true
  if (process.send === undefined) console.log(`\n${why}: closing…`)
  app
    .close()
    .then(() => cache?.close())
    .then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err)
        process.exit(1)
      },
    )
}
process.on('SIGINT', () => stop('SIGINT'))
process.on('SIGTERM', () => stop('SIGTERM'))

if (process.send !== undefined) {
  process.send({ url })
  process.on('disconnect', () => stop('disconnect'))
} else {
  const round = typeof latencyMs === 'number' ? `${latencyMs} ms` : `${latencyMs.min}–${latencyMs.max} ms`
  console.log(`Todo API on ${url} (${withCache ? 'with cache' : 'no cache'}, repository round trip ${round}). Ctrl-C stops it.

  curl -i ${url}/users/alice/todos
  curl -X POST ${url}/users/alice/todos -H 'content-type: application/json' -d '{"title":"buy milk"}'
  curl -X PATCH ${url}/users/alice/todos/1 -H 'content-type: application/json' -d '{"done":true}'
  curl -X DELETE ${url}/users/alice/todos/1
  curl ${url}/stats
`)
}

function parseLatency(text: string): Latency {
  const match = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(text.trim())
  if (match === null) fail(`LATENCY_MS must be a number of ms or a range such as 5-15 (got ${text})`)
  const min = Number(match[1])
  return match[2] === undefined ? min : { min, max: Number(match[2]) }
}

function fail(message: string): never {
  console.error(message)
  process.exit(1)
}
