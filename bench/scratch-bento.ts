import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'

const bento = new BentoCache({
  default: 'memory',
  ttl: 3_600_000,
  stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, maxSize: '10mb' })) },
})
const keys = Array.from({ length: 1000 }, (_, i) => `user:${i}`)
for (const k of keys) await bento.getOrSet({ key: k, factory: () => ({ id: 1, name: 'x', active: true }) })
const opts = keys.map((key) => ({
  key,
  factory: () => {
    throw new Error('miss')
  },
}))
for (let r = 0; r < 5; r++) {
  const t = performance.now()
  let n = 0
  for (let p = 0; p < 50; p++) for (let i = 0; i < 1000; i++) if ((await bento.getOrSet(opts[i]!)) !== undefined) n++
  console.log(n, ((n / (performance.now() - t)) * 1000).toFixed(0), 'ops/s')
}
await bento.disconnectAll()
