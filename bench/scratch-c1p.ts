import { createCache, memoryStore } from '@cache/core'
import { makeKeys } from './src/data.js'

const keys = makeKeys(1000)
const c = createCache({ store: memoryStore() })
const loader = () => ({ id: 1 })
for (const k of keys) await c.getOrSet(k, loader)
let h = 0
for (let p = 0; p < 3000; p++)
  for (let i = 0; i < 1000; i++) if ((await c.getOrSet(keys[i]!, loader)) !== undefined) h++
console.log(h)
