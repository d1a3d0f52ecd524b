import { coarseNow, exactNow, nowNear } from '../clock.js'
import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { Store, StoredEntry, StoreListener, StoreRemovalReason, StoreStats } from '../types.js'
import { type EvictionPolicy, fifo, lru, NO_SLOT, type PolicyFactory } from './policy.js'

export interface MemoryStoreOptions {
  /** Most entries kept; the least valuable is evicted beyond it. Default 10 000 when `maxBytes` is not set. */
  maxEntries?: number
  /** Most bytes kept, as measured by `sizeOf`. Default: unbounded by bytes (bounded by `maxEntries`). */
  maxBytes?: number
  /** Largest single entry, in `sizeOf` bytes; a bigger value is refused with `E_VALUE_TOO_LARGE`. Default `maxBytes`. */
  maxEntrySize?: number
  /**
   * Measures an entry. Sizes are only computed when `maxBytes`, `maxEntrySize` or `sizeOf` is given; the default
   * estimates the heap a value holds (strings 2 bytes a char, buffers their length, objects walked).
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
 * An in-process store: bounded (by entries and/or bytes), LRU by default, with lazy expiry.
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
  /** @internal Empty unless the store measures sizes. */
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
    if (maxEntries === undefined) maxEntries = maxBytes === undefined ? DEFAULT_MAX_ENTRIES : Number.POSITIVE_INFINITY
    this.maxEntries = maxEntries
    this.maxBytes = maxBytes ?? Number.POSITIVE_INFINITY
    const maxEntrySize = checkBound(options.maxEntrySize, 'maxEntrySize')
    this.maxEntrySize = Math.min(maxEntrySize ?? Number.POSITIVE_INFINITY, this.maxBytes)
    const sized = options.sizeOf !== undefined || maxBytes !== undefined || maxEntrySize !== undefined
    this.sizeOf = sized ? (options.sizeOf ?? estimateSize) : undefined
    const clock = options.clock
    this.clock = clock ?? exactNow
    this.userClock = clock
    this.clockRough = clock ?? coarseNow

    const slots = Math.ceil(Math.min(INITIAL_SLOTS, maxEntries))
    this.created = new Float64Array(slots)
    this.fresh = new Float64Array(slots)
    this.stale = new Float64Array(slots)
    this.costs = new Float64Array(slots)
    this.sizes = new Float64Array(this.sizeOf === undefined ? 0 : slots)
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
    let size = 0
    if (this.sizeOf !== undefined) {
      size = this.sizeOf(entry.value, space + key)
      if (!(size >= 0) || !Number.isFinite(size)) {
        throw new CacheError('E_INVALID_OPTION', `sizeOf returned ${describe(size)} for key ${describe(space + key)}`)
      }
      if (size > this.maxEntrySize) {
        // The caller meant to replace the value: keep no outdated copy, and evict nothing else for it.
        if (slot !== undefined) this.removeSlot(slot, undefined)
        throw new CacheError(
          'E_VALUE_TOO_LARGE',
          `value for key ${describe(space + key)} is ${size} bytes, over this store's maxEntrySize of ${this.maxEntrySize}`,
        )
      }
    }
    if (slot !== undefined) {
      if (this.tagsOf[slot] !== undefined) this.untag(slot)
      if (this.sizeOf !== undefined) this.bytes += size - this.sizes[slot]!
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
    if (this.sizeOf !== undefined) this.sizes[slot] = size
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
    if (this.sizeOf !== undefined) this.sizes = widen(this.sizes)
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
    if (this.sizeOf !== undefined) this.bytes -= this.sizes[slot]!
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
 */
export function estimateSize(value: unknown, key = ''): number {
  return key.length * 2 + sizeOfValue(value, new Set())
}

function sizeOfValue(value: unknown, seen: Set<object>): number {
  switch (typeof value) {
    case 'string':
      return 12 + value.length * 2
    case 'number':
      return 8
    case 'boolean':
      return 4
    case 'bigint':
      return 16
    case 'undefined':
    case 'symbol':
    case 'function':
      return 0
  }
  if (value === null) return 0
  const obj = value as object
  if (seen.has(obj)) return 0
  seen.add(obj)
  if (ArrayBuffer.isView(obj)) return 64 + obj.byteLength
  if (obj instanceof ArrayBuffer) return 32 + obj.byteLength
  if (obj instanceof Date) return 24
  let size = 16
  if (Array.isArray(obj)) {
    for (const item of obj) size += 8 + sizeOfValue(item, seen)
    return size
  }
  if (obj instanceof Map) {
    for (const [k, v] of obj) size += 16 + sizeOfValue(k, seen) + sizeOfValue(v, seen)
    return size
  }
  if (obj instanceof Set) {
    for (const v of obj) size += 8 + sizeOfValue(v, seen)
    return size
  }
  for (const k of Object.keys(obj)) {
    size += 8 + k.length * 2 + sizeOfValue((obj as Record<string, unknown>)[k], seen)
  }
  return size
}
