import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { Store, StoredEntry, StoreListener, StoreRemovalReason, StoreStats } from '../types.js'
import { type EvictionPolicy, fifo, lru, type PolicyFactory, type PolicyNode } from './policy.js'

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
  /** Time source (ms since epoch); tests pass a fake one. Default `Date.now`. */
  clock?: () => number
}

const DEFAULT_MAX_ENTRIES = 10_000
const SWEEP_SLICE = 10_000

/** One entry: the stored fields plus the policy's links, in one object so a hit allocates nothing. */
class Node implements PolicyNode, StoredEntry {
  prev: PolicyNode | undefined = undefined
  next: PolicyNode | undefined = undefined
  constructor(
    readonly key: string,
    public value: unknown,
    public createdAt: number,
    public freshUntil: number,
    public staleUntil: number,
    public tags: readonly string[] | undefined,
    public cost: number | undefined,
    public size: number,
  ) {}
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

export class MemoryStore implements Store {
  readonly name: string
  readonly maxEntries: number
  readonly maxBytes: number
  readonly maxEntrySize: number
  private readonly map = new Map<string, Node>()
  private readonly policy: EvictionPolicy
  private readonly sizeOf: ((value: unknown, key: string) => number) | undefined
  private readonly clock: () => number
  private readonly tagIndex = new Map<string, Set<Node>>()
  private listeners: readonly StoreListener[] = []
  private bytes = 0
  private evictions = 0
  private expirations = 0
  private sweepTimer: NodeJS.Timeout | undefined
  private sweepCursor: Iterator<Node> | undefined

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
    this.clock = options.clock ?? Date.now
    const policy = options.policy ?? 'lru'
    if (policy === 'lru') this.policy = lru(maxEntries)
    else if (policy === 'fifo') this.policy = fifo(maxEntries)
    else if (typeof policy === 'function') this.policy = policy(maxEntries)
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

  getSync(key: string): StoredEntry | undefined {
    const node = this.map.get(key)
    if (node === undefined) return undefined
    if (node.staleUntil <= this.clock()) {
      this.removeNode(node, 'expire')
      return undefined
    }
    this.policy.touch(node)
    return node
  }

  /** Reads without touching the policy or expiring anything (for inspection and tests). */
  peek(key: string): StoredEntry | undefined {
    return this.map.get(key)
  }

  setSync(key: string, entry: StoredEntry): void {
    const existing = this.map.get(key)
    if (entry.staleUntil <= this.clock()) {
      // Already gone: storing it would only take the place of something live.
      if (existing) this.removeNode(existing, undefined)
      return
    }
    let size = 0
    if (this.sizeOf !== undefined) {
      size = this.sizeOf(entry.value, key)
      if (!(size >= 0) || !Number.isFinite(size)) {
        throw new CacheError('E_INVALID_OPTION', `sizeOf returned ${describe(size)} for key ${describe(key)}`)
      }
      if (size > this.maxEntrySize) {
        // The caller meant to replace the value: keep no outdated copy, and evict nothing else for it.
        if (existing) this.removeNode(existing, undefined)
        throw new CacheError(
          'E_VALUE_TOO_LARGE',
          `value for key ${describe(key)} is ${size} bytes, over this store's maxEntrySize of ${this.maxEntrySize}`,
        )
      }
    }
    const tags = entry.tags !== undefined && entry.tags.length > 0 ? entry.tags : undefined
    let node: Node
    if (existing !== undefined) {
      node = existing
      if (node.tags !== undefined) this.untag(node)
      this.bytes += size - node.size
      node.value = entry.value
      node.createdAt = entry.createdAt
      node.freshUntil = entry.freshUntil
      node.staleUntil = entry.staleUntil
      node.tags = tags
      node.cost = entry.cost
      node.size = size
      this.policy.update(node)
    } else {
      if (this.policy.admit !== undefined && this.map.size >= this.maxEntries) {
        const victim = this.policy.victim()
        if (victim !== undefined && !this.policy.admit(key, victim)) return
      }
      node = new Node(key, entry.value, entry.createdAt, entry.freshUntil, entry.staleUntil, tags, entry.cost, size)
      this.map.set(key, node)
      this.bytes += size
      this.policy.insert(node)
    }
    if (tags !== undefined) this.tag(node, tags)
    if (this.map.size > this.maxEntries || this.bytes > this.maxBytes) this.evict(node)
  }

  deleteSync(key: string): boolean {
    const node = this.map.get(key)
    if (node === undefined) return false
    this.removeNode(node, undefined)
    return node.staleUntil > this.clock()
  }

  get(key: string): Promise<StoredEntry | undefined> {
    try {
      return Promise.resolve(this.getSync(key))
    } catch (err) {
      return Promise.reject(err)
    }
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
      const nodes = this.tagIndex.get(tag)
      if (nodes === undefined) continue
      for (const node of nodes) {
        this.removeNode(node, undefined)
        // Like `delete`: an entry already past its staleUntil was gone, so dropping it now does not count.
        if (node.staleUntil > now) count++
      }
    }
    return count
  }

  async clear(prefix?: string): Promise<void> {
    if (prefix === undefined || prefix === '') {
      this.map.clear()
      this.tagIndex.clear()
      this.policy.clear()
      this.bytes = 0
      this.sweepCursor = undefined
      return
    }
    for (const node of this.map.values()) {
      if (node.key.startsWith(prefix)) this.removeNode(node, undefined)
    }
  }

  stats(): StoreStats {
    return { size: this.map.size, bytes: this.bytes, evictions: this.evictions, expirations: this.expirations }
  }

  onRemove(listener: StoreListener): () => void {
    // Copy on write: a listener that unsubscribes while being called does not make its neighbour miss the event.
    this.listeners = [...this.listeners, listener]
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener)
    }
  }

  /** Drops expired entries among the next `limit` entries (continuing where the last sweep stopped). */
  sweep(limit = Number.POSITIVE_INFINITY): number {
    const now = this.clock()
    let removed = 0
    let seen = 0
    this.sweepCursor ??= this.map.values()
    while (seen < limit) {
      const step = this.sweepCursor.next()
      if (step.done) {
        this.sweepCursor = undefined
        break
      }
      seen++
      const node = step.value
      if (node.staleUntil <= now) {
        this.removeNode(node, 'expire')
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

  private evict(keep: Node): void {
    const now = this.clock()
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      let victim = this.policy.victim() as Node | undefined
      // A policy that leaves a rewritten entry where it was (FIFO) can name it: evict the next one instead.
      if (victim === keep) victim = this.victimOtherThan(keep)
      if (victim === undefined) break
      this.removeNode(victim, victim.staleUntil <= now ? 'expire' : 'evict')
    }
  }

  private victimOtherThan(keep: Node): Node | undefined {
    for (const node of this.policy) if (node !== keep) return node as Node
    return undefined
  }

  private removeNode(node: Node, reason: StoreRemovalReason | undefined): void {
    // A node can be reached twice in one loop (a tag index and the map): only the first removal counts.
    if (this.map.get(node.key) !== node) return
    this.map.delete(node.key)
    this.policy.remove(node)
    this.bytes -= node.size
    if (node.tags !== undefined) this.untag(node)
    if (reason === undefined) return
    if (reason === 'evict') this.evictions++
    else this.expirations++
    for (const listener of this.listeners) {
      try {
        listener(reason, node.key)
      } catch (err) {
        // A listener bug must not stop an eviction half-way and leave the store over its bounds.
        process.emitWarning(`[@cache/core] an onRemove listener threw: ${String(err)}`, 'CacheListenerWarning')
      }
    }
  }

  private tag(node: Node, tags: readonly string[]): void {
    for (const tag of tags) {
      let set = this.tagIndex.get(tag)
      if (set === undefined) {
        set = new Set()
        this.tagIndex.set(tag, set)
      }
      set.add(node)
    }
  }

  private untag(node: Node): void {
    for (const tag of node.tags!) {
      const set = this.tagIndex.get(tag)
      if (set === undefined) continue
      set.delete(node)
      if (set.size === 0) this.tagIndex.delete(tag)
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
