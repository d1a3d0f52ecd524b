import { setTimeout as sleep } from 'node:timers/promises'
import { type Bus, createCache, memoryStore } from '@cache/core'
import { redisBus, redisStore } from '@cache/core/redis'
import { startRedis } from '@cache/testing'
import { Redis } from 'ioredis'
import { makeKeys, makeValues } from './data.js'
import { busReady, Child, sharedNow } from './distributed.js'
import { type Percentiles, percentiles } from './harness.js'

const MESSAGES = 1_000
/** Pause between two paced sets (a timer: in practice 1–2 ms more). */
const PACE_MS = 2
const SETTLE_MS = 300

export interface BusRow {
  name: string
  messages: number
  /** Messages the receiver heard (its handler ran). */
  received: number
  /** Of those, messages that took a copy out of the receiver's L1 (it held one before, not after). */
  dropped: number
  /** From the sender's `cache.set()` call to the receiver's L1 drop, ms. */
  fromSet: Percentiles
  /** From the sender's `bus.publish()` call (inside set, after the Redis write) to the drop, ms. */
  fromPublish: Percentiles
}

export interface BusResult {
  type: 'bus'
  id: 'BUS'
  title: string
  rows: BusRow[]
  notes: string[]
}

/**
 * BUS: how long until another process' L1 copy is gone. This process (A) sets keys through its tiered cache; a
 * child process (B), whose L1 holds every key, timestamps each bus message right after its cache applied it.
 */
export async function bus(): Promise<BusResult> {
  const server = await startRedis()
  const receiver = new Child([server.host, String(server.port)])
  const client = new Redis({ host: server.host, port: server.port })
  // The sender's bus, wrapped to time each publish (the cache publishes after its Redis write).
  const inner = redisBus({ client })
  const publishedAt = new Map<string, number>()
  const bus: Bus = {
    name: inner.name,
    publish(message) {
      if (message.kind === 'keys') {
        const at = sharedNow()
        for (const key of message.keys) if (!publishedAt.has(key)) publishedAt.set(key, at)
      }
      return inner.publish(message)
    },
    subscribe: (handlers) => inner.subscribe(handlers),
  }
  const cache = createCache({ tiers: [memoryStore({ maxEntries: 100_000 }), redisStore({ client })], bus })
  try {
    await Promise.all([receiver.request({ cmd: 'ready' }), busReady(bus)])
    const paced = makeKeys(MESSAGES, 'p:')
    const burst = makeKeys(MESSAGES, 'b:')
    const values = makeValues(MESSAGES)
    for (let i = 0; i < MESSAGES; i++) {
      await cache.set(paced[i]!, values[i]!)
      await cache.set(burst[i]!, values[i]!)
    }
    // Let the population's own messages reach B before B fills its L1 (a late one would empty it again).
    await sleep(SETTLE_MS)
    const { inL1 } = await receiver.request<{ inL1: number }>({ cmd: 'warm', keys: [...paced, ...burst] })
    if (inL1 !== 2 * MESSAGES) throw new Error(`[bench] BUS: the receiver's L1 holds ${inL1} of ${2 * MESSAGES} keys`)

    const measure = async (name: string, keys: string[], send: (setAt: number[]) => Promise<void>) => {
      publishedAt.clear()
      await receiver.request({ cmd: 'arm' })
      const setAt = new Array<number>(keys.length).fill(0)
      await send(setAt)
      await sleep(SETTLE_MS)
      const { drops } = await receiver.request<{ drops: [string, { at: number; dropped: boolean }][] }>({
        cmd: 'collect',
      })
      const heard = new Map(drops)
      const fromSet: number[] = []
      const fromPublish: number[] = []
      let dropped = 0
      keys.forEach((key, i) => {
        const full = cache.storePrefix + key
        const drop = heard.get(full)
        if (drop === undefined) return
        if (drop.dropped) dropped++
        fromSet.push(drop.at - setAt[i]!)
        fromPublish.push(drop.at - publishedAt.get(full)!)
      })
      return {
        name,
        messages: keys.length,
        received: fromSet.length,
        dropped,
        fromSet: percentiles(fromSet),
        fromPublish: percentiles(fromPublish),
      }
    }

    const rows: BusRow[] = [
      await measure(`paced: one set every ~${PACE_MS} ms`, paced, async (setAt) => {
        for (let i = 0; i < MESSAGES; i++) {
          setAt[i] = sharedNow()
          await cache.set(paced[i]!, values[i]!)
          await sleep(PACE_MS)
        }
      }),
      await measure(`burst: ${MESSAGES} sets at once`, burst, async (setAt) => {
        const calls: Promise<void>[] = []
        for (let i = 0; i < MESSAGES; i++) {
          setAt[i] = sharedNow()
          calls.push(cache.set(burst[i]!, values[i]!))
        }
        await Promise.all(calls)
      }),
    ]
    return {
      type: 'bus',
      id: 'BUS',
      title: 'bus propagation: a set in process A until process B has dropped its L1 copy, over one Redis',
      rows,
      notes: [
        `redis-server ${server.address} (loopback, started by the bench); A: this process, B: a child process ` +
          '(src/dist-child.ts); each createCache({ tiers: [memoryStore(), redisStore({ client })], bus: redisBus({ client }) })',
        `B read every key first (so its L1 held all ${2 * MESSAGES}); it timestamps a message right after its cache's ` +
          'bus handler ran (the L1 drop is synchronous there) and checks that the copy is gone',
        'timestamps: performance.timeOrigin + performance.now() in each process, one machine, one system clock',
        "from set: A's cache.set() call (Redis SET, then PUBLISH) to B's drop; from publish: A's bus.publish() call to B's drop",
        `paced: sequential awaited sets with a ${PACE_MS} ms timer between them; burst: ${MESSAGES} sets started in one ` +
          'synchronous loop, so their SETs and PUBLISHes queue behind one another',
      ],
    }
  } finally {
    await cache.close()
    client.disconnect()
    await receiver.stop()
    await server.stop()
  }
}
