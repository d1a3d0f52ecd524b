import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { type Kind, type Stats, summarise } from './harness.js'

const run = promisify(execFile)

export const MEMORY_ENTRIES = 1_000_000

export interface MemoryRow {
  name: string
  kind: Kind
  /** Bytes per entry from `heapUsed` alone, one figure per run. */
  heapPerEntry: number[]
  /** Bytes per entry from `heapUsed + arrayBuffers` (lru-cache keeps its typed arrays off the V8 heap). */
  totalPerEntry: number[]
  heap: Stats
  total: Stats
}

export interface MemoryResult {
  type: 'memory'
  id: 'MEM'
  title: string
  entries: number
  runs: number
  rows: MemoryRow[]
  /** ours / lru-cache of total bytes per entry, per run (lower is better). */
  ratio: { ours: string; anchor: string; perRound: number[]; stats: Stats }
  notes: string[]
}

const CONTENDERS: { id: string; name: string; kind: Kind }[] = [
  { id: 'ours', name: 'ours memoryStore', kind: 'ours' },
  { id: 'lru-cache', name: 'lru-cache', kind: 'anchor' },
  { id: 'Map', name: 'Map', kind: 'reference' },
]

interface ChildReport {
  heapUsed: number
  arrayBuffers: number
}

/** Heap per entry at 1 M entries, each measurement in a fresh child process, contenders alternating. */
export async function memory(runs: number): Promise<MemoryResult> {
  const child = fileURLToPath(new URL('./memory-child.ts', import.meta.url))
  // The child inherits this process' flags: the tsx loader and the @cache/source condition.
  const execArgv = process.execArgv.includes('--expose-gc') ? process.execArgv : [...process.execArgv, '--expose-gc']
  const reports = new Map<string, ChildReport[]>(CONTENDERS.map((c) => [c.id, []]))
  for (let r = 0; r < runs; r++) {
    for (const c of CONTENDERS) {
      const { stdout } = await run(process.execPath, [...execArgv, child, c.id, String(MEMORY_ENTRIES)], {
        maxBuffer: 1 << 20,
      })
      reports.get(c.id)!.push(JSON.parse(stdout.trim().split('\n').pop()!) as ChildReport)
    }
  }
  const rows: MemoryRow[] = CONTENDERS.map((c) => {
    const list = reports.get(c.id)!
    const heapPerEntry = list.map((x) => x.heapUsed / MEMORY_ENTRIES)
    const totalPerEntry = list.map((x) => (x.heapUsed + x.arrayBuffers) / MEMORY_ENTRIES)
    return {
      name: c.name,
      kind: c.kind,
      heapPerEntry,
      totalPerEntry,
      heap: summarise(heapPerEntry),
      total: summarise(totalPerEntry),
    }
  })
  const ours = rows[0]!
  const lru = rows[1]!
  const perRound = ours.totalPerEntry.map((v, i) => v / lru.totalPerEntry[i]!)
  return {
    type: 'memory',
    id: 'MEM',
    title: `bytes per entry at ${MEMORY_ENTRIES / 1_000_000} M entries (lower is better)`,
    entries: MEMORY_ENTRIES,
    runs,
    rows,
    ratio: { ours: ours.name, anchor: lru.name, perRound, stats: summarise(perRound) },
    notes: [
      "keys ('k<i>') and values ({ id: i }, one object per entry, same shape for all) are created and kept alive " +
        'before the baseline, so only what the store adds is counted; the store itself is constructed after it',
      'ours: memoryStore({ maxEntries: 1_000_000 }).setSync(key, { value, createdAt, freshUntil, staleUntil })',
      'lru-cache: new LRUCache({ max: 1_000_000 }).set(key, value); it preallocates typed arrays outside the V8 heap, ' +
        'hence the heap + arrayBuffers column (the ratio uses it)',
      'each figure: process.memoryUsage() after 4 forced GCs, before vs after, in a fresh `node --expose-gc` child',
    ],
  }
}
