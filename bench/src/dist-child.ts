/**
 * One instance of a fleet, for S2 and BUS: its own tiered cache (memory over one shared Redis, with a redisBus),
 * driven by JSON lines on stdin, one JSON reply per line on stdout. Run by `Child` (distributed.ts) as
 * `node --import tsx --conditions=@cache/source src/dist-child.ts <host> <port>`.
 */
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Bus, createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { Redis } from 'ioredis'
import { busReady, sharedNow } from './distributed.js'

const [host, port] = process.argv.slice(2)
const client = new Redis({ host: host!, port: Number(port) })
const l1 = memoryStore({ maxEntries: 100_000 })

/** BUS: when each key's bus message was applied here, and whether it took an L1 copy away. */
const drops = new Map<string, { at: number; dropped: boolean }>()
let recording = false

// The bus, wrapped so that the receiving side can time each message right after the cache has applied it (the
// cache drops L1 copies synchronously in its handler).
const inner = redisBus({ client })
const bus: Bus = {
  name: inner.name,
  publish: (message) => inner.publish(message),
  subscribe: (handlers) =>
    inner.subscribe({
      message(message) {
        if (!recording || message.kind !== 'keys') return handlers.message(message)
        const had = message.keys.map((key) => l1.peek(key) !== undefined)
        handlers.message(message)
        const at = sharedNow()
        message.keys.forEach((key, i) => {
          if (!drops.has(key)) drops.set(key, { at, dropped: had[i]! && l1.peek(key) === undefined })
        })
      },
      gap: () => handlers.gap(),
    }),
}
const cache = createCache({ tiers: [l1, redisStore({ client })], bus })

interface Stampede {
  cmd: 'stampede'
  key: string
  lock: boolean
  callers: number
  loaderMs: number
  /** Shared-clock time at which every process fires its calls (the barrier). */
  at: number
}

type Request = { cmd: 'ready' } | Stampede | { cmd: 'warm'; keys: string[] } | { cmd: 'arm' } | { cmd: 'collect' }

async function stampede(r: Stampede): Promise<object> {
  let loaderCalls = 0
  let loaderStart = 0
  let loaderEnd = 0
  const token = r.key
  const loader = async () => {
    loaderCalls++
    loaderStart = sharedNow()
    await sleep(r.loaderMs)
    loaderEnd = sharedNow()
    return { token }
  }
  const options = { lock: r.lock }
  const answeredAt = new Array<number>(r.callers).fill(0)
  let gotValue = 0
  const wait = r.at - sharedNow()
  if (wait > 0) await sleep(wait)
  const calledAt = sharedNow()
  const calls: Promise<void>[] = []
  for (let i = 0; i < r.callers; i++) {
    calls.push(
      cache.getOrSet(r.key, loader, options).then((value) => {
        answeredAt[i] = sharedNow()
        if (value?.token === token) gotValue++
      }),
    )
  }
  await Promise.all(calls)
  return { loaderCalls, loaderStart, loaderEnd, calledAt, answeredAt, gotValue, late: calledAt - r.at }
}

async function handle(r: Request): Promise<object> {
  switch (r.cmd) {
    case 'ready':
      await busReady(bus)
      return { pid: process.pid }
    case 'stampede':
      return stampede(r)
    case 'warm': {
      // Reads each key through the cache: a miss in L1, a hit in Redis, copied into L1.
      let inL1 = 0
      for (const key of r.keys) {
        await cache.get(key)
        if (l1.peek(cache.storePrefix + key) !== undefined) inL1++
      }
      return { inL1 }
    }
    case 'arm':
      drops.clear()
      recording = true
      return {}
    case 'collect':
      recording = false
      return { drops: [...drops] }
  }
}

// Requests are answered one at a time, in order.
let queue = Promise.resolve()
createInterface({ input: process.stdin })
  .on('line', (line) => {
    queue = queue.then(async () => {
      let reply: object
      try {
        reply = await handle(JSON.parse(line) as Request)
      } catch (err) {
        reply = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) }
      }
      process.stdout.write(`${JSON.stringify(reply)}\n`)
    })
  })
  .on('close', () => {
    queue.then(async () => {
      await cache.close()
      client.disconnect()
    })
  })
