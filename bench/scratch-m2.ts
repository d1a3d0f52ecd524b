import { memoryStore, type StoredEntry } from '@cache/core'
import { LRUCache } from 'lru-cache'
import { FAR_FUTURE, makeKeys, makeValues } from './src/data.js'

const CAP = 10_000,
  K = 100_000
const keys = makeKeys(K)
const values = makeValues(K)
const now = Date.now()
const entries: StoredEntry[] = values.map((value) => ({
  value,
  createdAt: now,
  freshUntil: FAR_FUTURE,
  staleUntil: FAR_FUTURE,
}))
const real = memoryStore({ maxEntries: CAP })
const constClock = memoryStore({ maxEntries: CAP, clock: () => now })
const lru = new LRUCache<string, object>({ max: CAP })
const map = new Map<string, object>()
const runs: Record<string, () => number> = {
  real: () => {
    let h = 0
    for (let i = 0; i < K; i++) {
      real.setSync(keys[i]!, entries[i]!)
      h++
    }
    return h
  },
  constClock: () => {
    let h = 0
    for (let i = 0; i < K; i++) {
      constClock.setSync(keys[i]!, entries[i]!)
      h++
    }
    return h
  },
  lru: () => {
    let h = 0
    for (let i = 0; i < K; i++) {
      lru.set(keys[i]!, values[i]!)
      h++
    }
    return h
  },
  // Map insert + delete of the key CAP back: a floor for any Map-based bounded store
  mapFloor: () => {
    let h = 0
    for (let i = 0; i < K; i++) {
      map.set(keys[i]!, values[i]!)
      map.delete(keys[(i + K - CAP) % K]!)
      h++
    }
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
