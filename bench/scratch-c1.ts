import { createCache, memoryStore } from '@cache/core'
import { makeKeys } from './src/data.js'

const keys = makeKeys(1000)
const now = Date.now()
const variants = {
  real: createCache({ store: memoryStore() }),
  fixedClock: createCache({ store: memoryStore({ clock: () => now }), clock: () => now }),
}
const loader = () => ({ id: 1 })
for (const c of Object.values(variants)) for (const k of keys) await c.getOrSet(k, loader)
const res: Record<string, number[]> = {}
for (let r = 0; r < 9; r++)
  for (const [name, c] of Object.entries(variants)) {
    globalThis.gc?.()
    const t = performance.now()
    let h = 0
    for (let p = 0; p < 200; p++)
      for (let i = 0; i < 1000; i++) if ((await c.getOrSet(keys[i]!, loader)) !== undefined) h++
    const ms = performance.now() - t
    if (r >= 2) (res[name] ??= []).push(h / ms / 1000)
  }
// floor: an awaited already-resolved promise per op
const p0 = Promise.resolve(1)
{
  const t = performance.now()
  let h = 0
  for (let i = 0; i < 2_000_000; i++) if ((await p0) !== undefined) h++
  console.log('await floor', (h / (performance.now() - t) / 1000).toFixed(2), 'M/s')
}
const m = new Map(keys.map((k) => ['cache:' + k, k]))
{
  const t = performance.now()
  let h = 0
  for (let p = 0; p < 2000; p++) for (let i = 0; i < 1000; i++) if (m.get('cache:' + keys[i]!) !== undefined) h++
  console.log('concat+get', (h / (performance.now() - t) / 1000).toFixed(2), 'M/s')
}
{
  const t = performance.now()
  let h = 0
  for (let p = 0; p < 2000; p++) for (let i = 0; i < 1000; i++) if (m.get(keys[i]!) === undefined) h++
  console.log('get (no concat, miss)', (h / (performance.now() - t) / 1000).toFixed(2), 'M/s')
}
for (const [k, v] of Object.entries(res)) {
  v.sort((a, b) => a - b)
  console.log(k.padEnd(12), v[v.length >> 1]!.toFixed(2), 'M ops/s  ', (1000 / v[v.length >> 1]!).toFixed(0), 'ns/op')
}
