// Model-based randomized test of the memory store: a naive reference model (an array of entries, next victim
// first) and the real store run the same seeded sequence of operations and are compared after every step.
// To rerun one failing case: MODEL_SEED=<seed> npx vitest run src/stores/memory.model.test.ts -t '<config>'
import { describe, it } from 'vitest'
import { CacheError } from '../errors.js'
import { random } from '../test-helpers.js'
import type { StoredEntry, StoreRemovalReason } from '../types.js'
import { defaultMaxBytes, estimateSize, type MemoryStore, memoryStore } from './memory.js'

type Event = readonly [StoreRemovalReason, string]

interface Config {
  name: string
  policy: 'lru' | 'fifo'
  maxEntries?: number
  maxBytes?: number
  maxEntrySize?: number
  /** Pass `sizeOf = value.length`; otherwise the store measures with its default, `estimateSize`. */
  sized: boolean
  /** Extra keys `n0 .. n{extraKeys-1}` in every space, to make the store grow its columns. */
  extraKeys?: number
  /** Compare every key's entry every this many steps (stats, results and events are compared on every step). */
  fullCheckEvery?: number
  /** Longest time to live of a new entry, ms. Default 400 (the clock moves about 2 ms a step). */
  maxTtl?: number
  /** Relative weights of the operations; see DEFAULT_WEIGHTS. */
  weights?: Weights
  /** The store's columns must have grown to at least this many slots by the end. */
  growTo?: number
  steps: number
}

type OpName = 'set' | 'get' | 'peek' | 'delete' | 'deleteTagged' | 'clear' | 'sweep' | 'sweepSome' | 'advance'
type Weights = Record<OpName, number>

const DEFAULT_WEIGHTS: Weights = {
  set: 40,
  get: 28,
  peek: 3,
  delete: 5,
  deleteTagged: 1.5,
  clear: 1,
  sweep: 1.5,
  sweepSome: 1.5,
  advance: 12,
}

const START = 1_000_000
const SPACES = ['', 'a:', 'b:', 'a.b:']
const LOCALS = ['x', 'y', 'z', 'a1', 'b', 'k:1', 'k:2', 'x:y']
const TAGS = ['t1', 't2', 't3']
// '' and undefined (everything), a whole space, part of a space, a space plus part of a key, keys of the '' space.
const PREFIXES = [
  undefined,
  '',
  'a',
  'a:',
  'a.',
  'a.b:',
  'b',
  'b:',
  'a:k',
  'a:k:',
  'b:x',
  'a:x:y',
  'x',
  'k:',
  ':',
  'zz',
]

/** Every key an operation may name. Keys of the '' space have no ':' (else their space would be another). */
function universe(config: Config): string[] {
  const locals = [...LOCALS]
  for (let i = 0; i < (config.extraKeys ?? 0); i++) locals.push(`n${i}`)
  const keys: string[] = []
  for (const space of SPACES) {
    for (const local of locals) if (space !== '' || !local.includes(':')) keys.push(space + local)
  }
  return keys
}

/** The store's split of a joined key: the space is everything up to and including the first ':'. */
function split(key: string): [string, string] {
  const cut = key.indexOf(':') + 1
  return [key.slice(0, cut), key.slice(cut)]
}

interface Item {
  key: string
  entry: StoredEntry
  size: number
}

/** What `peek`/`get` should give back for a stored entry: empty tags read as none, a missing cost as undefined. */
function expected(entry: StoredEntry): StoredEntry {
  return {
    value: entry.value,
    createdAt: entry.createdAt,
    freshUntil: entry.freshUntil,
    staleUntil: entry.staleUntil,
    tags: entry.tags !== undefined && entry.tags.length > 0 ? entry.tags : undefined,
    cost: entry.cost,
  }
}

/**
 * The reference. `items` holds every entry physically present (expired ones too, until something removes them),
 * next victim first: an insert goes to the end; under LRU a read or an overwrite moves the entry to the end.
 * An entry is expired when `staleUntil <= now`. Removals the store makes on its own (eviction, expiry) are counted
 * and reported; the ones a caller asks for (delete, deleteTagged, clear, overwrite) are not.
 */
class Model {
  items: Item[] = []
  evictions = 0
  expirations = 0
  events: Event[] = []
  readonly maxEntries: number
  readonly maxBytes: number
  readonly maxEntrySize: number

  constructor(
    readonly config: Config,
    readonly clock: { now: number },
  ) {
    // Documented defaults: an eighth of the heap limit; 10 000 entries unless a finite maxBytes is given.
    this.maxBytes = config.maxBytes ?? defaultMaxBytes()
    const bytesOnly = config.maxBytes !== undefined && config.maxBytes !== Number.POSITIVE_INFINITY
    this.maxEntries = config.maxEntries ?? (bytesOnly ? Number.POSITIVE_INFINITY : 10_000)
    // Documented default: maxBytes. And no single entry may be bigger than the whole store.
    this.maxEntrySize = Math.min(config.maxEntrySize ?? Number.POSITIVE_INFINITY, this.maxBytes)
  }

  bytes(): number {
    let bytes = 0
    for (const item of this.items) bytes += item.size
    return bytes
  }

  expired(item: Item): boolean {
    return item.entry.staleUntil <= this.clock.now
  }

  find(key: string): number {
    return this.items.findIndex((item) => item.key === key)
  }

  /** The store dropped it on its own: an expired entry counts as an expiration, a live one as an eviction. */
  pushOut(index: number): void {
    const item = this.items[index]!
    this.items.splice(index, 1)
    if (this.expired(item)) {
      this.expirations++
      this.events.push(['expire', item.key])
    } else {
      this.evictions++
      this.events.push(['evict', item.key])
    }
  }

  /** Returns the error code the store must throw, if any. */
  set(key: string, entry: StoredEntry): string | undefined {
    const index = this.find(key)
    if (entry.staleUntil <= this.clock.now) {
      // Already expired: not stored, and the old value goes.
      if (index >= 0) this.items.splice(index, 1)
      return undefined
    }
    const size = this.config.sized ? (entry.value as string).length : estimateSize(entry.value, key)
    if (size > this.maxEntrySize) {
      // Refused: the old value goes too, nothing else is evicted.
      if (index >= 0) this.items.splice(index, 1)
      return 'E_VALUE_TOO_LARGE'
    }
    const item = { key, entry, size }
    if (index >= 0) {
      if (this.config.policy === 'lru') {
        this.items.splice(index, 1)
        this.items.push(item)
      } else {
        this.items[index] = item
      }
    } else {
      if (this.items.length >= this.maxEntries) this.pushOut(0)
      this.items.push(item)
    }
    // Over the byte bound: push out others, next victim first, never the entry just written.
    while (this.bytes() > this.maxBytes) {
      const victim = this.items.findIndex((other) => other.key !== key)
      if (victim < 0) break
      this.pushOut(victim)
    }
    return undefined
  }

  get(key: string): StoredEntry | undefined {
    const index = this.find(key)
    if (index < 0) return undefined
    const item = this.items[index]!
    if (this.expired(item)) {
      this.pushOut(index)
      return undefined
    }
    if (this.config.policy === 'lru') {
      this.items.splice(index, 1)
      this.items.push(item)
    }
    return expected(item.entry)
  }

  peek(key: string): StoredEntry | undefined {
    const item = this.items[this.find(key)]
    return item === undefined ? undefined : expected(item.entry)
  }

  /** True when a reader could still have seen it. */
  delete(key: string): boolean {
    const index = this.find(key)
    if (index < 0) return false
    const live = !this.expired(this.items[index]!)
    this.items.splice(index, 1)
    return live
  }

  deleteTagged(tags: readonly string[]): number {
    const hit = (item: Item) => (item.entry.tags ?? []).some((tag) => tags.includes(tag))
    const count = this.items.filter((item) => hit(item) && !this.expired(item)).length
    this.items = this.items.filter((item) => !hit(item))
    return count
  }

  clear(prefix: string | undefined): void {
    this.items = this.items.filter((item) => !item.key.startsWith(prefix ?? ''))
  }

  sweep(): number {
    const before = this.items.length
    for (let i = this.items.length - 1; i >= 0; i--) if (this.expired(this.items[i]!)) this.pushOut(i)
    return before - this.items.length
  }
}

type Op =
  | { op: 'set'; key: string; split: boolean; entry: StoredEntry }
  | { op: 'get'; key: string; split: boolean }
  | { op: 'peek'; key: string }
  | { op: 'delete'; key: string }
  | { op: 'deleteTagged'; tags: string[] }
  | { op: 'clear'; prefix: string | undefined }
  | { op: 'sweep'; limit: number | undefined }
  | { op: 'advance'; ms: number }

function describeOp(op: Op, now: number): string {
  switch (op.op) {
    case 'set': {
      const { value, staleUntil, tags } = op.entry
      const call = op.split ? `setSyncIn(${split(op.key).map(quote).join(', ')}` : `setSync(${quote(op.key)}`
      const len = (value as string).length
      const tagText = tags === undefined ? '' : `, tags [${tags.join(', ')}]`
      return `${call}, value ${quote(value as string)} (len ${len}), staleUntil now${signed(staleUntil - now)}${tagText})`
    }
    case 'get':
      return op.split ? `getSyncIn(${split(op.key).map(quote).join(', ')})` : `getSync(${quote(op.key)})`
    case 'peek':
      return `peek(${quote(op.key)})`
    case 'delete':
      return `deleteSync(${quote(op.key)})`
    case 'deleteTagged':
      return `deleteTagged([${op.tags.join(', ')}])`
    case 'clear':
      return `clear(${op.prefix === undefined ? '' : quote(op.prefix)})`
    case 'sweep':
      return `sweep(${op.limit ?? ''})`
    case 'advance':
      return `clock += ${op.ms} (now = ${now + op.ms - START} after start)`
  }
}

function quote(text: string): string {
  return `'${text}'`
}

function signed(n: number): string {
  return n >= 0 ? `+${n}` : `${n}`
}

function show(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v === undefined ? '<undefined>' : v))
}

/** Field by field; `entry` may be the store's shared view, so it is read at once. */
function snapshot(entry: StoredEntry | undefined): StoredEntry | undefined {
  if (entry === undefined) return undefined
  const { value, createdAt, freshUntil, staleUntil, tags, cost } = entry
  return { value, createdAt, freshUntil, staleUntil, tags, cost }
}

function sameEntry(a: StoredEntry | undefined, b: StoredEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return (
    a.value === b.value &&
    a.createdAt === b.createdAt &&
    a.freshUntil === b.freshUntil &&
    a.staleUntil === b.staleUntil &&
    a.cost === b.cost &&
    sameList(a.tags, b.tags)
  )
}

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function sameEvents(a: readonly Event[], b: readonly Event[]): boolean {
  return a.length === b.length && a.every((event, i) => event[0] === b[i]![0] && event[1] === b[i]![1])
}

function sortEvents(events: readonly Event[]): Event[] {
  return [...events].sort((x, y) => (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0))
}

/** The random operation for this step; it may look at the model (the store must agree with it anyway). */
function nextOp(next: () => number, config: Config, model: Model, keys: readonly string[], step: number): Op {
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!
  // Many reads and writes go to a present key, so hits, touches and overwrites are common.
  const key = (present = 0.5) => (model.items.length > 0 && next() < present ? pick(model.items).key : pick(keys))
  const weights = config.weights ?? DEFAULT_WEIGHTS
  let roll = next() * Object.values(weights).reduce((a, b) => a + b, 0)
  let name: OpName = 'advance'
  for (const [op, weight] of Object.entries(weights) as [OpName, number][]) {
    if (roll < weight) {
      name = op
      break
    }
    roll -= weight
  }
  switch (name) {
    case 'set': {
      const now = model.clock.now
      const roll = next()
      const staleUntil = roll < 0.08 ? now - int(0, 20) : roll < 0.1 ? now : now + int(1, config.maxTtl ?? 400)
      let length: number
      if (!config.sized || (config.maxEntrySize === undefined && config.maxBytes === undefined)) length = int(1, 20)
      else if (next() < 0.15) length = int(model.maxEntrySize + 1, model.maxEntrySize + 30)
      else length = int(0, model.maxEntrySize)
      // Unique while long enough; its length is the size (sizeOf = value.length), at least the step's digits.
      const value = length === 0 ? '' : `v${step}`.padEnd(length, '.')
      const tagRoll = next()
      const tags =
        tagRoll < 0.25 ? undefined : tagRoll < 0.35 ? [] : tagRoll < 0.4 ? [pick(TAGS), pick(TAGS)] : [pick(TAGS)]
      const cost = next() < 0.5 ? undefined : int(0, 50)
      const freshUntil = Math.min(now + int(0, 150), staleUntil)
      const entry: StoredEntry = { value, createdAt: now, freshUntil, staleUntil, tags, cost }
      return { op: 'set', key: key(0.35), split: next() < 0.5, entry }
    }
    case 'get':
      return { op: 'get', key: key(), split: next() < 0.5 }
    case 'peek':
      return { op: 'peek', key: key() }
    case 'delete':
      return { op: 'delete', key: key() }
    case 'deleteTagged':
      return { op: 'deleteTagged', tags: next() < 0.7 ? [pick(TAGS)] : [pick(TAGS), pick([...TAGS, 't9'])] }
    case 'clear':
      return { op: 'clear', prefix: pick(PREFIXES) }
    case 'sweep':
      return { op: 'sweep', limit: undefined }
    case 'sweepSome':
      return { op: 'sweep', limit: int(1, 6) }
    case 'advance':
      return { op: 'advance', ms: int(0, 40) }
  }
}

async function run(config: Config, seed: number): Promise<void> {
  const clock = { now: START }
  const sizedKeys: string[] = []
  const store: MemoryStore = memoryStore({
    policy: config.policy,
    maxEntries: config.maxEntries,
    maxBytes: config.maxBytes,
    maxEntrySize: config.maxEntrySize,
    sizeOf: config.sized
      ? (value, key) => {
          sizedKeys.push(key)
          return (value as string).length
        }
      : undefined,
    sweepInterval: false,
    clock: () => clock.now,
  })
  const model = new Model(config, clock)
  const keys = universe(config)
  const storeEvents: Event[] = []
  store.onRemove((reason, key) => storeEvents.push([reason, key]))
  const next = random(seed)
  const history: string[] = []
  let step = 0

  const fail = (what: string, actual: unknown, wanted: unknown): never => {
    throw new Error(
      [
        `memory store and model disagree on ${what}`,
        `  config '${config.name}', seed ${seed}, step ${step} (MODEL_SEED=${seed} reruns only this seed)`,
        `  store: ${show(actual)}`,
        `  model: ${show(wanted)}`,
        '  last operations:',
        ...history.slice(-12).map((line) => `    ${line}`),
        `  model after this step, next victim first (now = ${clock.now - START} after start):`,
        ...model.items.map(({ key, entry, size }) => {
          const tags = entry.tags === undefined ? '' : ` [${entry.tags.join(', ')}]`
          return `    '${key}' size ${size}, staleUntil now${signed(entry.staleUntil - clock.now)}${tags}`
        }),
      ].join('\n'),
    )
  }

  try {
    for (step = 1; step <= config.steps; step++) {
      const op = nextOp(next, config, model, keys, step)
      history.push(`#${step} ${describeOp(op, clock.now)}`)
      storeEvents.length = 0
      model.events = []
      let events = model.events
      switch (op.op) {
        case 'set': {
          let thrown: string | undefined
          sizedKeys.length = 0
          try {
            if (op.split) store.setSyncIn(...split(op.key), op.entry)
            else store.setSync(op.key, op.entry)
          } catch (err) {
            thrown = err instanceof CacheError ? err.code : String(err)
          }
          const wanted = model.set(op.key, op.entry)
          if (thrown !== wanted) fail('the error thrown', thrown, wanted)
          if (sizedKeys.some((key) => key !== op.key)) fail('the key given to sizeOf', sizedKeys, op.key)
          break
        }
        case 'get': {
          const got = snapshot(op.split ? store.getSyncIn(...split(op.key)) : store.getSync(op.key))
          const wanted = model.get(op.key)
          if (!sameEntry(got, wanted)) fail(`the entry read for '${op.key}'`, got, wanted)
          break
        }
        case 'peek': {
          const got = store.peek(op.key)
          const wanted = model.peek(op.key)
          if (!sameEntry(got, wanted)) fail(`the entry peeked for '${op.key}'`, got, wanted)
          break
        }
        case 'delete': {
          const got = store.deleteSync(op.key)
          const wanted = model.delete(op.key)
          if (got !== wanted) fail(`deleteSync('${op.key}')`, got, wanted)
          break
        }
        case 'deleteTagged': {
          const got = await store.deleteTagged(op.tags)
          const wanted = model.deleteTagged(op.tags)
          if (got !== wanted) fail('the count deleteTagged returned', got, wanted)
          break
        }
        case 'clear':
          await store.clear(op.prefix)
          model.clear(op.prefix)
          break
        case 'sweep': {
          if (op.limit === undefined) {
            // A full pass removes every expired entry, in slot order (which the model does not know).
            const got = store.sweep()
            const wanted = model.sweep()
            if (got !== wanted) fail('the count sweep() returned', got, wanted)
            events = sortEvents(model.events)
            storeEvents.sort((x, y) => (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0))
          } else {
            // Which slots a partial sweep visits is the store's business: check that it only took expired
            // entries, once each, and reported them; then the model drops the same ones.
            const got = store.sweep(op.limit)
            if (got !== storeEvents.length) fail('the count sweep(limit) returned vs its events', got, storeEvents)
            for (const [reason, key] of storeEvents) {
              const index = model.find(key)
              const item = model.items[index]
              if (reason !== 'expire' || item === undefined || !model.expired(item)) {
                fail('what sweep(limit) removed (only present, expired entries)', storeEvents, 'expired entries')
              }
              model.pushOut(index)
            }
          }
          break
        }
        case 'advance':
          clock.now += op.ms
          break
      }
      if (!sameEvents(storeEvents, events)) fail('the onRemove events', storeEvents, events)
      const stats = store.stats()
      const wanted = {
        size: model.items.length,
        bytes: model.bytes(),
        evictions: model.evictions,
        expirations: model.expirations,
      }
      if (
        stats.size !== wanted.size ||
        stats.bytes !== wanted.bytes ||
        stats.evictions !== wanted.evictions ||
        stats.expirations !== wanted.expirations
      ) {
        fail('stats()', stats, wanted)
      }
      if (step % (config.fullCheckEvery ?? 1) === 0 || step === config.steps) {
        for (const key of keys) {
          const got = store.peek(key)
          const wanted = model.peek(key)
          if (!sameEntry(got, wanted)) fail(`peek('${key}') (the entries present)`, got, wanted)
        }
      }
    }
  } finally {
    await store.close()
  }
  // The run must have exercised what it claims to check.
  if (config.maxEntries !== undefined && config.maxEntries < keys.length && model.evictions === 0) {
    throw new Error(`config '${config.name}', seed ${seed}: no eviction happened`)
  }
  if (config.maxBytes !== undefined && model.evictions === 0) {
    throw new Error(`config '${config.name}', seed ${seed}: no eviction happened`)
  }
  if (config.growTo !== undefined && store.fresh.length < config.growTo) {
    throw new Error(`config '${config.name}', seed ${seed}: the columns did not grow (${store.fresh.length} slots)`)
  }
  if (model.expirations === 0) throw new Error(`config '${config.name}', seed ${seed}: no expiration happened`)
}

const CONFIGS: Config[] = [
  { name: 'lru, maxEntries 8, sized', policy: 'lru', maxEntries: 8, sized: true, steps: 3000 },
  { name: 'fifo, maxEntries 8, unsized', policy: 'fifo', maxEntries: 8, sized: false, steps: 3000 },
  { name: 'lru, maxEntries 1', policy: 'lru', maxEntries: 1, sized: false, steps: 1500 },
  {
    name: 'lru, maxBytes 200, maxEntrySize 60',
    policy: 'lru',
    maxBytes: 200,
    maxEntrySize: 60,
    sized: true,
    steps: 3000,
  },
  {
    name: 'fifo, maxBytes 200, maxEntrySize 60',
    policy: 'fifo',
    maxBytes: 200,
    maxEntrySize: 60,
    sized: true,
    steps: 3000,
  },
  { name: 'lru, maxBytes 120 (maxEntrySize defaults to it)', policy: 'lru', maxBytes: 120, sized: true, steps: 2000 },
  // The default estimator (about 20 to 70 bytes an entry here), under a bound that holds only some of the keys.
  { name: 'lru, maxBytes 400, estimateSize', policy: 'lru', maxBytes: 400, sized: false, steps: 3000 },
  {
    name: 'fifo, maxEntries 6 and maxBytes 250, estimateSize',
    policy: 'fifo',
    maxEntries: 6,
    maxBytes: 250,
    sized: false,
    steps: 3000,
  },
  {
    name: 'lru, maxEntries 6 and maxBytes 150, maxEntrySize 50',
    policy: 'lru',
    maxEntries: 6,
    maxBytes: 150,
    maxEntrySize: 50,
    sized: true,
    steps: 3000,
  },
  {
    name: 'fifo, maxEntries 6 and maxBytes 150, maxEntrySize 50',
    policy: 'fifo',
    maxEntries: 6,
    maxBytes: 150,
    maxEntrySize: 50,
    sized: true,
    steps: 3000,
  },
  // Enough keys to make the columns grow past their first 1024 slots (and the policy with them).
  {
    name: 'lru, maxEntries 1040, columns grow',
    policy: 'lru',
    maxEntries: 1040,
    sized: true,
    extraKeys: 500,
    fullCheckEvery: 500,
    maxTtl: 100_000,
    weights: {
      set: 80,
      get: 15,
      peek: 1,
      delete: 1,
      deleteTagged: 0.05,
      clear: 0,
      sweep: 0.5,
      sweepSome: 1,
      advance: 5,
    },
    growTo: 1040,
    steps: 7000,
  },
]

const SEEDS = process.env.MODEL_SEED !== undefined ? [Number(process.env.MODEL_SEED)] : [1, 2, 3, 0xbeef]

describe('memoryStore against a reference model', () => {
  for (const config of CONFIGS) {
    it(config.name, async () => {
      for (const seed of SEEDS) await run(config, seed)
    })
  }
})
