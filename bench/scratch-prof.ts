import { memoryStore, type StoredEntry } from '@cache/core'
import { FAR_FUTURE, makeKeys, makeValues, shuffled } from './src/data.js'

const which = process.argv[2]
const now = Date.now()
if (which === 'm2') {
  const CAP = 10_000,
    K = 100_000
  const keys = makeKeys(K)
  const values = makeValues(K)
  const entries: StoredEntry[] = values.map((value) => ({
    value,
    createdAt: now,
    freshUntil: FAR_FUTURE,
    staleUntil: FAR_FUTURE,
  }))
  const s = memoryStore({ maxEntries: CAP })
  let h = 0
  for (let p = 0; p < 60; p++)
    for (let i = 0; i < K; i++) {
      s.setSync(keys[i]!, entries[i]!)
      h++
    }
  console.log(h)
} else {
  const SIZE = 100_000
  const keys = makeKeys(SIZE)
  const values = makeValues(SIZE)
  const order = shuffled(keys, 1)
  const s = memoryStore({ maxEntries: SIZE })
  for (let i = 0; i < SIZE; i++)
    s.setSync(keys[i]!, { value: values[i], createdAt: now, freshUntil: FAR_FUTURE, staleUntil: FAR_FUTURE })
  let h = 0
  for (let p = 0; p < 40; p++) for (let i = 0; i < SIZE; i++) if (s.getSync(order[i]!) !== undefined) h++
  console.log(h)
}
