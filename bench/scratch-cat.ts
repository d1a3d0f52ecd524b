import { makeKeys } from './src/data.js'

const keys = makeKeys(1000)
const full = keys.map((k) => `cache:${k}`)
const m = new Map(full.map((k) => [k, k]))
const res: Record<string, number[]> = {}
const runs: Record<string, () => number> = {
  precomputed: () => {
    let h = 0
    for (let p = 0; p < 1000; p++) for (let i = 0; i < 1000; i++) if (m.get(full[i]!) !== undefined) h++
    return h
  },
  concat: () => {
    let h = 0
    for (let p = 0; p < 1000; p++) for (let i = 0; i < 1000; i++) if (m.get('cache:' + keys[i]!) !== undefined) h++
    return h
  },
  dateNow: () => {
    let h = 0
    for (let p = 0; p < 1000; p++) for (let i = 0; i < 1000; i++) if (Date.now() > 0) h++
    return h
  },
  perfNow: () => {
    let h = 0
    for (let p = 0; p < 1000; p++) for (let i = 0; i < 1000; i++) if (performance.now() > 0) h++
    return h
  },
}
for (let r = 0; r < 7; r++)
  for (const [name, f] of Object.entries(runs)) {
    const t = performance.now()
    const h = f()
    if (r >= 2) (res[name] ??= []).push(h / (performance.now() - t) / 1000)
  }
for (const [k, v] of Object.entries(res)) {
  v.sort((a, b) => a - b)
  console.log(k.padEnd(12), v[v.length >> 1]!.toFixed(2), 'M ops/s  ', (1000 / v[v.length >> 1]!).toFixed(0), 'ns/op')
}
