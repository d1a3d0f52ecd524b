import { getHeapStatistics } from 'node:v8'
import { coarseNow, exactNow, nowNear } from '../clock.js'
import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { Store, StoredEntry, StoreListener, StoreRemovalReason, StoreStats } from '../types.js'
import { type EvictionPolicy, fifo, lru, NO_SLOT, type PolicyFactory } from './policy.js'

export interface MemoryStoreOptions {
  /**
   * Most entries kept; the least valuable is evicted beyond it. Default 10 000, unless `maxBytes` is given as a
   * finite number: then the entry count is unbounded (the bytes bound the store). Both bounds apply when both are set.
   */
  maxEntries?: number
  /**
   * Most bytes kept, as measured by `sizeOf`; the least valuable entries are evicted beyond it. Default: an eighth of
   * the V8 heap limit (`v8.getHeapStatistics().heap_size_limit / 8`, read once per process; about 512 MiB under a
   * 4 GiB heap), on top of the default `maxEntries`. `Infinity` turns the byte bound off (entries are still
   * measured and counted in `stats().bytes`, and `maxEntries` keeps its default). The bound in force is
   * `store.maxBytes`.
   */
  maxBytes?: number
  /** Largest single entry, in `sizeOf` bytes; a bigger value is refused with `E_VALUE_TOO_LARGE`. Default `maxBytes`. */
  maxEntrySize?: number
  /**
   * Measures an entry; called on every write, so `stats().bytes` is always the running total of what is kept.
   * Default `estimateSize`: an estimate of the heap a value holds (strings 2 bytes a char, objects walked, a buffer
   * or typed array 64 + its own `byteLength`; see `estimateSize` about slices of a larger buffer).
   */
  sizeOf?: (value: unknown, key: string) => number
  /** Which entry to evict: `'lru'` (default), `'fifo'`, or a factory for your own `EvictionPolicy`. */
  policy?: 'lru' | 'fifo' | PolicyFactory
  /**
   * Expired entries are dropped when read and by one background sweep (a single unref'd timer for the whole store,
   * never one per key) that checks a slice of the entries each interval. `false` turns the sweep off. Default '30s'.
   */
  sweepInterval?: Duration | false
  /** Name in stats and events. Default 'memory'. */
  name?: string
  /** Time source (ms since epoch); tests pass a fake one. Default: the system clock, read at most once per ms. */
  clock?: () => number
}

const DEFAULT_MAX_ENTRIES = 10_000
const SWEEP_SLICE = 10_000
const INITIAL_SLOTS = 1024
const EMPTY = new Map<string, number>()
/** The default `maxBytes` when the runtime reports no heap limit (V8 always does). */
const FALLBACK_MAX_BYTES = 256 * 1024 * 1024
let defaultMaxBytesValue: number | undefined

/** The default `maxBytes`: an eighth of the V8 heap limit, read once per process. */
export function defaultMaxBytes(): number {
  if (defaultMaxBytesValue === undefined) {
    const limit = getHeapStatistics().heap_size_limit
    defaultMaxBytesValue = limit > 0 && Number.isFinite(limit) ? Math.floor(limit / 8) : FALLBACK_MAX_BYTES
  }
  return defaultMaxBytesValue
}

/**
 * What the cache's hot path reads: a window on one slot of the store's columns. One object per store, pointed at
 * another slot by every `getSyncIn`, so a hit allocates nothing and copies nothing. Its fields read the columns
 * live: it is valid only until the next call into the store (which may write, evict or reuse the slot).
 */
class EntryView implements StoredEntry {
  slot = 0
  constructor(private readonly store: MemoryStore) {}
  get value(): unknown {
    return this.store.values[this.slot]
  }
  get createdAt(): number {
    return this.store.created[this.slot]!
  }
  get freshUntil(): number {
    return this.store.fresh[this.slot]!
  }
  get staleUntil(): number {
    return this.store.stale[this.slot]!
  }
  get tags(): readonly string[] | undefined {
    return this.store.tagsOf[this.slot]
  }
  get cost(): number | undefined {
    const cost = this.store.costs[this.slot]!
    return Number.isNaN(cost) ? undefined : cost
  }
}

/**
 * An in-process store: bounded by entries and by bytes (by default 10 000 entries and an eighth of the V8 heap
 * limit), LRU by default, with lazy expiry. Every entry is measured, so `stats().bytes` is always the running total.
 * It keeps values by reference: a value read back is the object that was stored, not a copy.
 *
 * @example
 * const cache = createCache({ store: memoryStore({ maxEntries: 50_000, maxBytes: 64 * 1024 * 1024 }) })
 */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStore(options)
}

/**
 * Entries live in numbered slots: one column per field (typed arrays for the numbers), a free list, and a two-level
 * index `space -> key -> slot`, where `space` is the key up to its first ':' (the cache's namespace). The split
 * lets the cache look up `(namespace, key)` without building the joined string on every hit, and it is lossless for
 * any key, so the plain `get(key)` API works the same.
 */
export class MemoryStore implements Store {
  readonly name: string
  readonly maxEntries: number
  readonly maxBytes: number
  readonly maxEntrySize: number
  private readonly index = new Map<string, Map<string, number>>()
  private readonly policy: EvictionPolicy
  /** The `sizeOf` option, if any; without it entries are measured by `estimateSize` (inlined in `setSyncIn`). */
  private readonly sizeOf: ((value: unknown, key: string) => number) | undefined
  /** Exact time, for writes, sweeps and deletes. */
  private readonly clock: () => number
  /** The `clock` option, if any; without it the hot path calls `nowNear` directly (see clock.ts). */
  private readonly userClock: (() => number) | undefined
  /** Rough time, only to tell an expiration from an eviction in the counters. */
  private readonly clockRough: () => number
  private readonly tagIndex = new Map<string, Set<number>>()
  private listeners: readonly StoreListener[] = []
  private readonly view = new EntryView(this)
  private lastSpace: string | undefined = undefined
  private lastKeys: Map<string, number> = EMPTY

  // Columns, indexed by slot. `keys[slot] === undefined` marks a free slot.
  /** @internal */
  keys: (string | undefined)[] = []
  /** @internal */
  spaces: string[] = []
  /** @internal */
  values: unknown[] = []
  /** @internal */
  created: Float64Array
  /** @internal */
  fresh: Float64Array
  /** @internal */
  stale: Float64Array
  /** @internal */
  costs: Float64Array
  /** @internal */
  sizes: Float64Array
  /** @internal */
  tagsOf: (readonly string[] | undefined)[] = []
  private free: number[] = []
  /** Slots `0 .. used - 1` have been handed out at least once. */
  private used = 0
  private count = 0

  private bytes = 0
  private evictions = 0
  private expirations = 0
  private sweepTimer: NodeJS.Timeout | undefined
  private sweepCursor = 0

  constructor(options: MemoryStoreOptions = {}) {
    this.name = options.name ?? 'memory'
    const maxBytes = checkBound(options.maxBytes, 'maxBytes')
    let maxEntries = checkBound(options.maxEntries, 'maxEntries')
    if (maxEntries === undefined) {
      // A finite byte bound given by the caller replaces the entry bound; the default one, or none (Infinity), does not.
      const bytesOnly = maxBytes !== undefined && maxBytes !== Number.POSITIVE_INFINITY
      maxEntries = bytesOnly ? Number.POSITIVE_INFINITY : DEFAULT_MAX_ENTRIES
    }
    this.maxEntries = maxEntries
    this.maxBytes = maxBytes ?? defaultMaxBytes()
    const maxEntrySize = checkBound(options.maxEntrySize, 'maxEntrySize')
    this.maxEntrySize = Math.min(maxEntrySize ?? Number.POSITIVE_INFINITY, this.maxBytes)
    this.sizeOf = options.sizeOf
    const clock = options.clock
    this.clock = clock ?? exactNow
    this.userClock = clock
    this.clockRough = clock ?? coarseNow

    const slots = Math.ceil(Math.min(INITIAL_SLOTS, maxEntries))
    this.created = new Float64Array(slots)
    this.fresh = new Float64Array(slots)
    this.stale = new Float64Array(slots)
    this.costs = new Float64Array(slots)
    this.sizes = new Float64Array(slots)
    const policy = options.policy ?? 'lru'
    if (policy === 'lru') this.policy = lru(slots)
    else if (policy === 'fifo') this.policy = fifo(slots)
    else if (typeof policy === 'function') this.policy = policy(slots)
    else throw new CacheError('E_INVALID_OPTION', `policy must be 'lru', 'fifo' or a factory (got ${describe(policy)})`)

    const sweep = options.sweepInterval ?? '30s'
    if (sweep !== false) {
      const every = parseDuration(sweep, 'sweepInterval')
      if (every > 0) {
        this.sweepTimer = setInterval(() => this.sweep(SWEEP_SLICE), every)
        this.sweepTimer.unref()
      }
    }
  }

  /**
   * The cache's hot path: the live entry of `space + key`, where `space` is everything up to and including the first
   * ':' of the joined key (or '' when it has none). The returned object is shared and valid only until the next
   * call into the store: read it at once.
   */
  getSyncIn(space: string, key: string): StoredEntry | undefined {
    const slot = this.live(space, key)
    if (slot === NO_SLOT) return undefined
    this.view.slot = slot
    return this.view
  }

  /** Same as `setSync(space + key, entry)`; see `getSyncIn` for `space`. */
  setSyncIn(space: string, key: string, entry: StoredEntry): void {
    let slot = this.keysIn(space).get(key)
    const staleUntil = entry.staleUntil
    if (staleUntil <= (this.userClock === undefined ? nowNear(staleUntil) : this.userClock())) {
      // Already gone: storing it would only take the place of something live.
      if (slot !== undefined) this.removeSlot(slot, undefined)
      return
    }
    let size: number
    const sizeOf = this.sizeOf
    if (sizeOf === undefined) {
      // estimateSize(value, space + key), without joining the key.
      size = (space.length + key.length) * 2 + valueSize(entry.value)
    } else {
      size = sizeOf(entry.value, space + key)
      if (!(size >= 0) || !Number.isFinite(size)) {
        throw new CacheError('E_INVALID_OPTION', `sizeOf returned ${describe(size)} for key ${describe(space + key)}`)
      }
    }
    if (size > this.maxEntrySize) {
      // The caller meant to replace the value: keep no outdated copy, and evict nothing else for it.
      if (slot !== undefined) this.removeSlot(slot, undefined)
      throw new CacheError(
        'E_VALUE_TOO_LARGE',
        `value for key ${describe(space + key)} is ${size} bytes, over this store's maxEntrySize of ${this.maxEntrySize}`,
      )
    }
    if (slot !== undefined) {
      if (this.tagsOf[slot] !== undefined) this.untag(slot)
      this.bytes += size - this.sizes[slot]!
      this.policy.update(slot)
    } else {
      if (this.count >= this.maxEntries) {
        // Evict first, then reuse the victim's slot: no growth, no garbage.
        const victim = this.policy.victim()
        if (victim === NO_SLOT) {
          throw new CacheError('E_INVALID_OPTION', `policy '${this.policy.name}' named no victim in a full store`)
        }
        if (this.policy.admit !== undefined && !this.policy.admit(space + key, victim)) return
        this.removeSlot(victim, this.stale[victim]! <= this.clockRough() ? 'expire' : 'evict')
      }
      slot = this.allocate()
      this.keys[slot] = key
      this.spaces[slot] = space
      let keys = this.keysIn(space)
      if (keys === EMPTY) {
        keys = new Map()
        this.index.set(space, keys)
        this.lastSpace = undefined
      }
      keys.set(key, slot)
      this.count++
      this.bytes += size
      this.policy.insert(slot)
    }
    this.values[slot] = entry.value
    this.created[slot] = entry.createdAt
    this.fresh[slot] = entry.freshUntil
    this.stale[slot] = entry.staleUntil
    this.costs[slot] = entry.cost ?? Number.NaN
    this.sizes[slot] = size
    const tags = entry.tags !== undefined && entry.tags.length > 0 ? entry.tags : undefined
    this.tagsOf[slot] = tags
    if (tags !== undefined) this.tag(slot, tags)
    if (this.bytes > this.maxBytes) this.evictBytes(slot)
  }

  getSync(key: string): StoredEntry | undefined {
    const cut = key.indexOf(':') + 1
    const slot = this.live(this.spaceOf(key, cut), key.slice(cut))
    return slot === NO_SLOT ? undefined : this.entryAt(slot)
  }

  setSync(key: string, entry: StoredEntry): void {
    const cut = key.indexOf(':') + 1
    this.setSyncIn(this.spaceOf(key, cut), key.slice(cut), entry)
  }

  deleteSync(key: string): boolean {
    const slot = this.find(key)
    if (slot === undefined) return false
    const live = this.stale[slot]! > this.clock()
    this.removeSlot(slot, undefined)
    return live
  }

  /** Reads without touching the policy or expiring anything (for inspection and tests). */
  peek(key: string): StoredEntry | undefined {
    const slot = this.find(key)
    return slot === undefined ? undefined : this.entryAt(slot)
  }

  get(key: string): Promise<StoredEntry | undefined> {
    return Promise.resolve(this.getSync(key))
  }

  set(key: string, entry: StoredEntry): Promise<void> {
    try {
      this.setSync(key, entry)
      return Promise.resolve()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  delete(key: string): Promise<boolean> {
    return Promise.resolve(this.deleteSync(key))
  }

  async getMany(keys: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    return keys.map((key) => this.getSync(key))
  }

  async setMany(entries: readonly (readonly [string, StoredEntry])[]): Promise<void> {
    // All or nothing would need a rollback; instead every valid entry is stored and the first error is reported.
    let failure: unknown
    for (const [key, entry] of entries) {
      try {
        this.setSync(key, entry)
      } catch (err) {
        failure ??= err
      }
    }
    if (failure !== undefined) throw failure
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    let count = 0
    for (const key of keys) if (this.deleteSync(key)) count++
    return count
  }

  async deleteTagged(tags: readonly string[]): Promise<number> {
    const now = this.clock()
    let count = 0
    for (const tag of tags) {
      const slots = this.tagIndex.get(tag)
      if (slots === undefined) continue
      for (const slot of slots) {
        // Count what a reader could still have seen, like delete() does.
        if (this.stale[slot]! > now) count++
        this.removeSlot(slot, undefined)
      }
    }
    return count
  }

  async clear(prefix?: string): Promise<void> {
    if (prefix === undefined || prefix === '') {
      this.index.clear()
      this.lastSpace = undefined
      this.tagIndex.clear()
      this.policy.clear()
      this.keys = []
      this.spaces = []
      this.values = []
      this.tagsOf = []
      this.free = []
      this.used = 0
      this.count = 0
      this.bytes = 0
      this.sweepCursor = 0
      return
    }
    for (const [space, keys] of this.index) {
      if (space.startsWith(prefix)) {
        for (const slot of keys.values()) this.removeSlot(slot, undefined)
      } else if (prefix.startsWith(space)) {
        const rest = prefix.slice(space.length)
        for (const [key, slot] of keys) if (key.startsWith(rest)) this.removeSlot(slot, undefined)
      }
    }
  }

  stats(): StoreStats {
    return { size: this.count, bytes: this.bytes, evictions: this.evictions, expirations: this.expirations }
  }

  onRemove(listener: StoreListener): () => void {
    // Copy on write: a listener that unsubscribes while being called does not make its neighbour miss the event.
    this.listeners = [...this.listeners, listener]
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener)
    }
  }

  /**
   * Drops expired entries among the next `limit` slots, continuing where the last sweep stopped and wrapping around
   * once; with no limit, one full pass.
   */
  sweep(limit = Number.POSITIVE_INFINITY): number {
    const now = this.clock()
    const span = Math.min(limit, this.used)
    let removed = 0
    for (let seen = 0; seen < span; seen++) {
      if (this.sweepCursor >= this.used) this.sweepCursor = 0
      const slot = this.sweepCursor++
      if (this.keys[slot] !== undefined && this.stale[slot]! <= now) {
        this.removeSlot(slot, 'expire')
        removed++
      }
    }
    return removed
  }

  async close(): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
    await this.clear()
  }

  /** The slot of a live entry, touched as read; an expired one is dropped. */
  private live(space: string, key: string): number {
    const slot = this.keysIn(space).get(key)
    if (slot === undefined) return NO_SLOT
    const staleUntil = this.stale[slot]!
    if (staleUntil <= (this.userClock === undefined ? nowNear(staleUntil) : this.userClock())) {
      this.removeSlot(slot, 'expire')
      return NO_SLOT
    }
    this.policy.touch(slot)
    return slot
  }

  /**
   * The space part of a joined key. When it is the remembered space, that very string is returned: the hot path
   * then keeps comparing one string with itself, not two equal strings character by character.
   */
  private spaceOf(key: string, cut: number): string {
    const space = key.slice(0, cut)
    return space === this.lastSpace ? this.lastSpace : space
  }

  /** The keys of one space (`EMPTY` when none). Most stores serve one or two namespaces: the last is remembered. */
  private keysIn(space: string): Map<string, number> {
    if (space === this.lastSpace) return this.lastKeys
    const keys = this.index.get(space) ?? EMPTY
    this.lastSpace = space
    this.lastKeys = keys
    return keys
  }

  private find(key: string): number | undefined {
    const cut = key.indexOf(':') + 1
    return this.keysIn(this.spaceOf(key, cut)).get(key.slice(cut))
  }

  private entryAt(slot: number): StoredEntry {
    const cost = this.costs[slot]!
    return {
      value: this.values[slot],
      createdAt: this.created[slot]!,
      freshUntil: this.fresh[slot]!,
      staleUntil: this.stale[slot]!,
      tags: this.tagsOf[slot],
      cost: Number.isNaN(cost) ? undefined : cost,
    }
  }

  private allocate(): number {
    const reused = this.free.pop()
    if (reused !== undefined) return reused
    const slot = this.used++
    if (slot >= this.fresh.length) this.grow(Math.ceil(Math.min(this.fresh.length * 2, this.maxEntries)))
    return slot
  }

  private grow(capacity: number): void {
    const widen = (column: Float64Array) => {
      const wider = new Float64Array(capacity)
      wider.set(column)
      return wider
    }
    this.created = widen(this.created)
    this.fresh = widen(this.fresh)
    this.stale = widen(this.stale)
    this.costs = widen(this.costs)
    this.sizes = widen(this.sizes)
    this.policy.grow(capacity)
  }

  /** Over `maxBytes` after writing `keep`: evict in policy order, never the entry just written. */
  private evictBytes(keep: number): void {
    const now = this.clockRough()
    while (this.bytes > this.maxBytes) {
      let victim = this.policy.victim()
      if (victim === keep) {
        victim = NO_SLOT
        for (const slot of this.policy.slots()) {
          if (slot !== keep) {
            victim = slot
            break
          }
        }
      }
      if (victim === NO_SLOT) break
      this.removeSlot(victim, this.stale[victim]! <= now ? 'expire' : 'evict')
    }
  }

  private removeSlot(slot: number, reason: StoreRemovalReason | undefined): void {
    const key = this.keys[slot]
    // A slot can be reached twice in one loop (two tags of one entry): only the first removal counts.
    if (key === undefined) return
    const space = this.spaces[slot]!
    const keys = this.keysIn(space)
    keys.delete(key)
    if (keys.size === 0 && keys !== EMPTY) {
      this.index.delete(space)
      this.lastSpace = undefined
    }
    this.policy.remove(slot)
    this.bytes -= this.sizes[slot]!
    if (this.tagsOf[slot] !== undefined) this.untag(slot)
    this.keys[slot] = undefined
    this.values[slot] = undefined
    this.tagsOf[slot] = undefined
    this.free.push(slot)
    this.count--
    if (reason === undefined) return
    if (reason === 'evict') this.evictions++
    else this.expirations++
    if (this.listeners.length === 0) return
    const fullKey = space + key
    for (const listener of this.listeners) {
      try {
        listener(reason, fullKey)
      } catch (err) {
        // A listener bug must not stop an eviction half-way and leave the store over its bounds.
        process.emitWarning(`[@cache/core] an onRemove listener threw: ${String(err)}`, 'CacheListenerWarning')
      }
    }
  }

  private tag(slot: number, tags: readonly string[]): void {
    for (const tag of tags) {
      let slots = this.tagIndex.get(tag)
      if (slots === undefined) {
        slots = new Set()
        this.tagIndex.set(tag, slots)
      }
      slots.add(slot)
    }
  }

  private untag(slot: number): void {
    for (const tag of this.tagsOf[slot]!) {
      const slots = this.tagIndex.get(tag)
      if (slots === undefined) continue
      slots.delete(slot)
      if (slots.size === 0) this.tagIndex.delete(tag)
    }
  }
}

function checkBound(value: number | undefined, option: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
    throw new CacheError('E_INVALID_OPTION', `${option} must be a number > 0 (got ${describe(value)})`)
  }
  return value
}

/**
 * Estimates the bytes a value keeps alive. Not exact (V8 does not say), but monotonic in what matters: string
 * length, buffer length, number of properties. Shared sub-objects and cycles are counted once.
 *
 * A `Buffer`, typed array or `DataView` counts 64 + its own `byteLength`: the length of the view, not of the
 * `ArrayBuffer` behind it. A small slice of a big buffer (a `subarray`, a small `Buffer` from Node's shared pool)
 * keeps the whole big buffer alive but is counted at its own length; store a copy of it (`new Uint8Array(slice)`)
 * for the count to be true.
 */
export function estimateSize(value: unknown, key = ''): number {
  return key.length * 2 + valueSize(value)
}

/**
 * `estimateSize` without the key. Primitives, and plain objects or arrays whose items are all primitives, are
 * measured without allocating; anything else is walked with an explicit stack (no recursion, so no depth limit).
 */
function valueSize(value: unknown): number {
  if (typeof value !== 'object') return primitiveSize(value)
  if (value === null) return 0
  // `constructor`, not Object.getPrototypeOf: a property load V8 caches, where getPrototypeOf is a call.
  const ctor = (value as { constructor?: unknown }).constructor
  if (ctor === Object) return plainObjectSize(value as Record<string, unknown>)
  if (ctor === Array && Array.isArray(value)) return arraySize(value)
  return walk([value], undefined)
}

function primitiveSize(value: unknown): number {
  // `typeof x === '...'` tests, not a switch on typeof: V8 compiles these to a direct type check.
  if (typeof value === 'string') return 12 + value.length * 2
  if (typeof value === 'number') return 8
  if (typeof value === 'boolean') return 4
  if (typeof value === 'bigint') return 16
  // undefined, symbol, function
  return 0
}

/** A plain object's own size and its primitive properties; any object property is handed to `walk`. */
function plainObjectSize(obj: Record<string, unknown>): number {
  let size = 16
  let pending: object[] | undefined
  // for-in, not Object.keys: no array to allocate. It also lists inherited enumerable keys, which a plain object
  // (whose prototype is Object.prototype) has none of.
  for (const k in obj) {
    const v = obj[k]
    size += 8 + k.length * 2
    if (typeof v !== 'object' || v === null) size += primitiveSize(v)
    else if (pending === undefined) pending = [v]
    else pending.push(v)
  }
  return pending === undefined ? size : size + walk(pending, obj)
}

/** The same for a plain array. */
function arraySize(array: unknown[]): number {
  let size = 16
  let pending: object[] | undefined
  for (const item of array) {
    size += 8
    if (typeof item !== 'object' || item === null) size += primitiveSize(item)
    else if (pending === undefined) pending = [item]
    else pending.push(item)
  }
  return pending === undefined ? size : size + walk(pending, array)
}

/** Up to this many objects in a value, `walk` remembers what it counted in an array rather than a `Set`. */
const FEW = 16

/**
 * The size of the objects in `pending` and of everything they reach, except `parent` (already counted). Every
 * object counts once, for its own part (header, one slot per item or property, primitive items); every reference
 * counts its slot. The total does not depend on the order of the walk.
 */
function walk(pending: object[], parent: object | undefined): number {
  // What was counted: a short list while the value is small (most are), a set beyond that.
  const few: object[] = parent === undefined ? [] : [parent]
  let many: Set<object> | undefined
  let size = 0
  while (pending.length > 0) {
    const obj = pending.pop()!
    if (many === undefined) {
      if (few.includes(obj)) continue
      if (few.length < FEW) few.push(obj)
      else many = new Set(few).add(obj)
    } else {
      if (many.has(obj)) continue
      many.add(obj)
    }
    if (ArrayBuffer.isView(obj)) {
      size += 64 + obj.byteLength
    } else if (obj instanceof ArrayBuffer) {
      size += 32 + obj.byteLength
    } else if (obj instanceof Date) {
      size += 24
    } else if (Array.isArray(obj)) {
      size += 16
      for (const v of obj) size += 8 + sizeOrPush(v, pending)
    } else if (obj instanceof Map) {
      size += 16
      for (const [k, v] of obj) size += 16 + sizeOrPush(k, pending) + sizeOrPush(v, pending)
    } else if (obj instanceof Set) {
      size += 16
      for (const v of obj) size += 8 + sizeOrPush(v, pending)
    } else {
      size += 16
      for (const k of Object.keys(obj)) {
        size += 8 + k.length * 2 + sizeOrPush((obj as Record<string, unknown>)[k], pending)
      }
    }
  }
  return size
}

/** A primitive's size; an object is left in `pending` for `walk`, and counts 0 here. */
function sizeOrPush(value: unknown, pending: object[]): number {
  if (typeof value === 'object' && value !== null) {
    pending.push(value)
    return 0
  }
  return primitiveSize(value)
}
