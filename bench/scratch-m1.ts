import { fifo, memoryStore } from '@cache/core'
import { LRUCache } from 'lru-cache'
import { FAR_FUTURE, makeKeys, makeValues, shuffled } from './src/data.js'

const SIZE = 100_000
const keys = makeKeys(SIZE)
const values = makeValues(SIZE)
const order = shuffled(keys, 1)
const now = Date.now()
const mk = (o: Parameters<typeof memoryStore>[0]) => {
  const s = memoryStore(o)
  for (let i = 0; i < SIZE; i++)
    s.setSync(keys[i]!, { value: values[i], createdAt: now, freshUntil: FAR_FUTURE, staleUntil: FAR_FUTURE })
  return s
}
const real = mk({ maxEntries: SIZE })
const constClock = mk({ maxEntries: SIZE, clock: () => now })
const fifoS = mk({ maxEntries: SIZE, policy: 'fifo' })
const fifoConst = mk({ maxEntries: SIZE, policy: 'fifo', clock: () => now })
const lru = new LRUCache<string, object>({ max: SIZE })
for (let i = 0; i < SIZE; i++) lru.set(keys[i]!, values[i]!)
const map = new Map<string, object>()
for (let i = 0; i < SIZE; i++) map.set(keys[i]!, values[i]!)
const n = order.length
const runs: Record<string, () => number> = {
  real: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (real.getSync(order[i]!) !== undefined) h++
    return h
  },
  constClock: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (constClock.getSync(order[i]!) !== undefined) h++
    return h
  },
  fifo: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (fifoS.getSync(order[i]!) !== undefined) h++
    return h
  },
  fifoConst: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (fifoConst.getSync(order[i]!) !== undefined) h++
    return h
  },
  lru: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (lru.get(order[i]!) !== undefined) h++
    return h
  },
  map: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (map.get(order[i]!) !== undefined) h++
    return h
  },
  dateNow: () => {
    let h = 0
    for (let i = 0; i < n; i++) if (Date.now() > 0) h++
    return h
  },
}
const res: Record<string, number[]> = {}
for (let r = 0; r < 9; r++)
  for (const [name, f] of Object.entries(runs)) {
    globalThis.gc?.()
    const t = performance.now()
    let c = 0
    for (let p = 0; p < 5; p++) c += f()
    const ms = performance.now() - t
    if (r >= 2) (res[name] ??= []).push(c / ms / 1000)
  }
for (const [k, v] of Object.entries(res)) {
  v.sort((a, b) => a - b)
  console.log(k.padEnd(12), v[v.length >> 1]!.toFixed(2), 'M ops/s  ', (1000 / v[v.length >> 1]!).toFixed(0), 'ns/op')
}
