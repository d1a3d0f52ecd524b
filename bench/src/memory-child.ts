/**
 * Run in a fresh process by `memory.ts`: `node --expose-gc memory-child.ts <contender> <entries>`. Prints one JSON
 * line with the heap the contender's store added for <entries> entries.
 */
import { memoryStore } from '@cache/core'
import { LRUCache } from 'lru-cache'
import { FAR_FUTURE } from './data.js'

interface Small {
  id: number
}

const [contender, entriesArg] = process.argv.slice(2)
const entries = Number(entriesArg)
const gc = globalThis.gc
if (gc === undefined) throw new Error('[bench] memory-child needs --expose-gc')
if (!Number.isInteger(entries) || entries < 1) throw new Error(`[bench] bad entry count '${entriesArg}'`)

function settle(): NodeJS.MemoryUsage {
  // A few full collections: the first may only promote what the second frees.
  for (let i = 0; i < 4; i++) gc!()
  return process.memoryUsage()
}

// Keys and values exist before the baseline and stay alive to the end, so they count for no contender.
const keys = new Array<string>(entries)
const values = new Array<Small>(entries)
for (let i = 0; i < entries; i++) {
  keys[i] = `k${i}`
  values[i] = { id: i }
}

const before = settle()
let size: () => number
if (contender === 'ours') {
  // Built after the baseline: what a store allocates up front is part of its cost.
  const store = memoryStore({ maxEntries: entries })
  const now = Date.now()
  for (let i = 0; i < entries; i++) {
    store.setSync(keys[i]!, { value: values[i], createdAt: now, freshUntil: FAR_FUTURE, staleUntil: FAR_FUTURE })
  }
  size = () => store.stats().size
} else if (contender === 'lru-cache') {
  const lru = new LRUCache<string, Small>({ max: entries })
  for (let i = 0; i < entries; i++) lru.set(keys[i]!, values[i]!)
  size = () => lru.size
} else if (contender === 'Map') {
  const map = new Map<string, Small>()
  for (let i = 0; i < entries; i++) map.set(keys[i]!, values[i]!)
  size = () => map.size
} else {
  throw new Error(`[bench] unknown memory contender '${contender}'`)
}
const after = settle()

if (size() !== entries) throw new Error(`[bench] ${contender} holds ${size()} entries, expected ${entries}`)
// Reading the inputs here keeps them alive through the second measurement.
if (keys.length !== values.length) throw new Error('unreachable')
process.stdout.write(
  `${JSON.stringify({
    contender,
    entries,
    heapUsed: after.heapUsed - before.heapUsed,
    arrayBuffers: after.arrayBuffers - before.arrayBuffers,
    external: after.external - before.external,
  })}\n`,
)
