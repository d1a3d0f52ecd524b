import { exactNow, nowNear } from './clock.js'
import { type Duration, parseDuration, parseOptionalDuration } from './duration.js'
import { CacheError, describe, isCacheError } from './errors.js'
import { Metrics } from './metrics.js'
import { MAX_TIMER_MS } from './stores/deadline.js'
import { memoryStore } from './stores/memory.js'
import { isDataError, isStore, Tier, type TierInput } from './tiers.js'
import type {
  Bus,
  BusMessage,
  CacheEventName,
  CacheEvents,
  CacheStats,
  EntryOptions,
  GetOrSetOptions,
  Loader,
  LoaderContext,
  LockOptions,
  Store,
  StoredEntry,
  StoreLock,
  WriteBehindItem,
} from './types.js'
import { memoryQueue, parseWriteBehindOptions, WriteBehind, type WriteBehindOptions } from './write-behind.js'

export interface CacheOptions {
  /**
   * Where entries live. Default: `memoryStore()` (LRU, at most 10 000 entries and an eighth of the V8 heap limit in
   * bytes). Give `store` or `tiers`, not both.
   */
  store?: Store
  /**
   * Several stores, fastest first: `[memoryStore(), redisStore({ client })]`. Reads go down the tiers until one has
   * a live entry and copy it into the faster ones (keeping its remaining TTL); writes and invalidations reach all.
   * A tier may be `{ store, maxTtl, local }` (see `TierOptions`).
   */
  tiers?: readonly TierInput[]
  /**
   * Tells other instances what this one wrote or invalidated, and drops what they did from this instance's local
   * tiers (see `redisBus` in `@cache/core/redis`). Needed as soon as several processes keep an in-process tier over
   * a shared one. The cache subscribes at creation and unsubscribes on `close()`.
   */
  bus?: Bus
  /**
   * Default of getOrSet's `lock` (cross-process stampede protection through the first shared tier that can lock,
   * e.g. Redis). Default false.
   */
  lock?: boolean | LockOptions
  /**
   * Read-through: the loader `get` (and `getMany`) use on a miss, so callers need not pass one. Namespaces inherit
   * it unless they set their own (`cache.namespace(name, { loader })`).
   */
  loader?: ReadThroughLoader<unknown>
  /**
   * Every key and tag of this cache is prefixed with it, so `clear()` only ever touches this cache's keys, even in
   * a shared Redis. Default 'cache'.
   */
  namespace?: string
  /** Default freshness. Default '1h'. */
  ttl?: Duration
  /** Default time a stale entry may still be served after `ttl`. Default 0 (no grace). */
  grace?: Duration
  /** Default TTL randomisation, a fraction 0..1 (± that much). Default 0. */
  jitter?: number
  /** Default soft timeout of getOrSet (see `GetOrSetOptions.timeout`). Default 0. */
  timeout?: Duration
  /** Default hard timeout of getOrSet loaders. Default: none. */
  hardTimeout?: Duration
  /** Default probabilistic early refresh of getOrSet. Default false. */
  earlyRefresh?: boolean | number
  /**
   * Write-behind (`cache.writeBehind()`): where queued writes go, in batches, with retries. The queue is durable
   * when a shared tier can keep one (Redis: a stream), else in memory; `writeBehind.queue` overrides it.
   */
  writeBehind?: WriteBehindOptions
  /** Longest key accepted, in UTF-16 code units (namespace not included). Default 1024. */
  maxKeyLength?: number
  /** Time source (ms since epoch). Default `Date.now`. */
  clock?: () => number
}

/** A read-through loader: the key (as given, without namespace) and the usual loader context. */
export type ReadThroughLoader<T> = (key: string, ctx: LoaderContext<T>) => T | Promise<T>

export interface NamespaceOptions {
  /** Read-through loader of this namespace (and its children), replacing the parent's. */
  loader?: ReadThroughLoader<unknown>
}

export interface WarmValueItem extends EntryOptions {
  key: string
  value: unknown
}
export interface WarmLoaderItem extends GetOrSetOptions {
  key: string
  loader: Loader<unknown>
}
export type WarmItem = WarmValueItem | WarmLoaderItem
/** The items to warm, or a function giving them (called on every scheduled run). */
export type WarmItems = readonly WarmItem[] | (() => readonly WarmItem[] | Promise<readonly WarmItem[]>)

export interface WarmOptions {
  /** Loaders running at once. Default 4. */
  concurrency?: number
  /** Called after each item. */
  onProgress?: (progress: { done: number; total: number; key: string; ok: boolean }) => void
  /** Run loaders even for keys that are fresh already. Default false. */
  force?: boolean
  /** Run again on this schedule (until close() or `signal`). Default: once. */
  every?: Duration
  /** Stops the run (remaining items are left) and the schedule. */
  signal?: AbortSignal
}

export interface WarmReport {
  total: number
  done: number
  /** Items stored (a value set, or a loader run and cached). */
  stored: number
  /** Loader items already fresh (not run). */
  skipped: number
  failed: number
  errors: { key: string; error: Error }[]
}

export interface SetManyItem<T = unknown> extends EntryOptions {
  key: string
  value: T
}

export interface WrapOptions<A extends unknown[]> extends GetOrSetOptions {
  /** Builds the cache key from the call's arguments. Required: a key derived implicitly is a collision waiting. */
  key: (...args: A) => string
}

/** Options of one call, checked and resolved against the cache's defaults (which are a plan too). */
interface Plan {
  ttl: number
  grace: number
  jitter: number
  timeout: number
  hardTimeout: number | undefined
  earlyRefresh: number
  /** Namespaced. */
  tags: readonly string[] | undefined
  lock: { ttl: number; wait: number } | undefined
}

/** What a namespace shares with its root: the tiers, the in-flight loads, the counters and listeners. */
interface Shared {
  /** Every tier, fastest first. */
  tiers: Tier[]
  /** The first tier, when it answers synchronously (in-process): the hot path reads it without a promise. */
  l1: Tier | undefined
  /** The tiers read asynchronously, in order (all tiers after `l1`). */
  remote: Tier[]
  /** Tiers written first (in parallel), then `local`: a shared tier refusing a value keeps it out of L1 too. */
  shared: Tier[]
  /** Tiers private to this process: dropped on bus messages. */
  local: Tier[]
  /** The first shared tier that can lock, for `lock: true`. */
  lockTier: Tier | undefined
  /** The cache made the store (the default memory store), so closing the cache closes it. */
  ownsStore: boolean
  /** L1's synchronous path, `(namespace prefix, key)`, when it has one (in-process stores). */
  getIn: ((space: string, key: string) => StoredEntry | undefined) | undefined
  setIn: ((space: string, key: string, entry: StoredEntry) => void) | undefined
  /**
   * Bumped by every write and invalidation, local or from the bus: a read of a slower tier copies its entry up only
   * if nothing changed while it was in flight (else it could bring back what was just invalidated).
   */
  epoch: number
  bus: Bus | undefined
  /** Resolves to the bus's unsubscribe once subscribed. */
  busSubscription: Promise<(() => Promise<void>) | undefined> | undefined
  /** Callers waiting for another process's load of a key (woken by the bus, or by polling). */
  waiters: Map<string, Set<() => void>>
  /** Scheduled refreshes and warm-ups, stopped by close(). */
  timers: Set<NodeJS.Timeout>
  writeBehind: WriteBehind | undefined
  /** Called by close(), to end waits that have no timer left. */
  onClose: (() => void)[]
  /**
   * Writes between their shared tiers and their local ones. An invalidation of the key meanwhile (a delete, a tag,
   * a clear, another instance's write) marks them: the local copy is then dropped rather than written.
   */
  writing: Set<PendingWrite>
  /** Exact time, for new entries and deadlines. */
  clock: () => number
  /** A time good enough to compare with one deadline: the hot path's clock (see clock.ts). */
  clockNear: (deadline: number) => number
  defaults: Plan
  maxKeyLength: number
  metrics: Metrics
  flights: Map<string, Flight>
  /** Loads still running, including those detached from `flights` by an invalidation. */
  running: Set<Flight>
  /** The tags of each tag invalidation made while loads were running (see `Flight.logStart`). */
  log: (readonly string[])[]
  closed: boolean
  unsubscribe: () => void
}

/** The first error of a call made on several tiers, and every tier that failed. */
interface Failure {
  error: unknown
  tiers: Tier[]
}

interface PendingWrite {
  full: string
  tags: readonly string[] | undefined
  touched: boolean
}

interface Flight {
  /** The store key being loaded. */
  full: string
  /** Tags known when the load started (the call's, namespaced) plus those the loader has pushed so far. */
  callTags: readonly string[] | undefined
  /** The namespace prefix of the cache that started the load (to namespace `ctx.tags`). */
  prefix: string
  ctx: Context<unknown>
  promise: Promise<unknown>
  controller: AbortController
  /** Index in `Shared.log` when the load started: a tag invalidation after it may make the result outdated. */
  logStart: number
  /** A write or invalidation touched the key after the load started: its result is returned, never cached. */
  overtaken: boolean
  /** The value came from a shared tier (another process loaded it while this one waited on the lock). */
  fromShared: StoredEntry | undefined
  /** The cross-process lock this load holds, released once its result is written (or the load fails). */
  lock: StoreLock | undefined
  /** Waiting for another process's load: a bus message about the key is its wake-up, not an overtaking write. */
  waiting: boolean
}

type Invalidation = { kind: 'key'; key: string } | { kind: 'prefix'; prefix: string } | { kind: 'tags'; tags: string[] }

const DEFAULT_NAMESPACE = 'cache'
/** Tag invalidations kept for running loads; past this, the oldest loads give up caching their result. */
const MAX_LOG = 1024
const DEFAULT_MAX_KEY_LENGTH = 1024
const DEFAULT_LOCK = { ttl: 10_000, wait: 10_000 }
/** Polling of a shared tier while another process holds a load's lock: from this, doubling, up to the max. */
const LOCK_POLL_MS = 5
const LOCK_POLL_MAX_MS = 100
/** Retries of a failed bus subscription: from this, doubling, up to the max. */
const BUS_RETRY_MS = 500
const BUS_RETRY_MAX_MS = 30_000
const noop = () => {}

/**
 * Creates a cache. All options are optional; durations are checked here, so a typo fails at start-up.
 *
 * @example
 * const cache = createCache({ store: memoryStore({ maxEntries: 10_000 }), namespace: 'app', ttl: '5m', grace: '1h' })
 * const user = await cache.getOrSet(`users:${id}`, ({ signal }) => db.user(id, { signal }), { tags: [`user:${id}`] })
 */
export function createCache(options: CacheOptions = {}): Cache {
  if (options.store !== undefined && options.tiers !== undefined) {
    throw new CacheError('E_INVALID_OPTION', 'give either `store` or `tiers`, not both')
  }
  if (options.tiers !== undefined && (!Array.isArray(options.tiers) || options.tiers.length === 0)) {
    throw new CacheError(
      'E_INVALID_OPTION',
      `tiers must be a non-empty array of stores (got ${describe(options.tiers)})`,
    )
  }
  if (options.store !== undefined && !isStore(options.store)) {
    throw new CacheError('E_INVALID_OPTION', `store must implement the Store contract (got ${describe(options.store)})`)
  }
  // The default store shares the cache's clock, so a test clock drives both.
  const inputs = options.tiers ?? [options.store ?? memoryStore(options.clock ? { clock: options.clock } : {})]
  const metrics = new Metrics()
  const tiers = inputs.map(
    (input, i) =>
      new Tier(input, i, (tier, state, reason) => {
        if (metrics.has('breaker')) metrics.emit('breaker', { tier, state, reason })
      }),
  )
  if (new Set(inputs.map((input) => (isStore(input) ? input : input?.store))).size !== tiers.length) {
    throw new CacheError('E_INVALID_OPTION', 'the same store appears twice in tiers')
  }
  const bus = options.bus
  if (bus !== undefined && (typeof bus?.publish !== 'function' || typeof bus.subscribe !== 'function')) {
    throw new CacheError('E_INVALID_OPTION', `bus must implement the Bus contract (got ${describe(bus)})`)
  }
  if (options.loader !== undefined && typeof options.loader !== 'function') {
    throw new CacheError('E_INVALID_OPTION', `loader must be a function (got ${describe(options.loader)})`)
  }
  const jitter = options.jitter ?? 0
  checkJitter(jitter)
  const maxKeyLength = options.maxKeyLength ?? DEFAULT_MAX_KEY_LENGTH
  if (!Number.isInteger(maxKeyLength) || maxKeyLength < 1) {
    throw new CacheError('E_INVALID_OPTION', `maxKeyLength must be an integer >= 1 (got ${describe(maxKeyLength)})`)
  }
  const first = tiers[0]!
  const l1 = syncGetter(first.store) !== undefined ? first : undefined
  const shared: Shared = {
    tiers,
    l1,
    remote: l1 === undefined ? tiers : tiers.slice(1),
    shared: tiers.filter((tier) => !tier.local),
    local: tiers.filter((tier) => tier.local),
    lockTier: tiers.find((tier) => !tier.local && typeof tier.store.lock === 'function'),
    ownsStore: options.store === undefined && options.tiers === undefined,
    getIn: l1 && syncGetter(l1.store),
    setIn: l1 && syncSetter(l1.store),
    epoch: 0,
    bus,
    busSubscription: undefined,
    waiters: new Map(),
    timers: new Set(),
    writeBehind: undefined,
    onClose: [],
    writing: new Set(),
    clock: options.clock ?? exactNow,
    clockNear: options.clock ? () => (options.clock as () => number)() : nowNear,
    defaults: {
      ttl: parseDuration(options.ttl ?? '1h', 'ttl'),
      grace: parseDuration(options.grace ?? 0, 'grace'),
      jitter,
      timeout: parseDuration(options.timeout ?? 0, 'timeout'),
      hardTimeout: parseOptionalDuration(options.hardTimeout, 'hardTimeout'),
      earlyRefresh: parseBeta(options.earlyRefresh),
      tags: undefined,
      lock: parseLock(options.lock, undefined),
    },
    maxKeyLength,
    metrics,
    flights: new Map(),
    running: new Set(),
    log: [],
    closed: false,
    unsubscribe: noop,
  }
  const unsubscribes: (() => void)[] = []
  for (const tier of tiers) {
    const store = tier.store
    if (!store.onRemove) continue
    unsubscribes.push(
      store.onRemove((reason, key) => {
        if (metrics.has(reason)) metrics.emit(reason, { key, tier: tier.name })
      }),
    )
  }
  shared.unsubscribe = () => {
    for (const off of unsubscribes) off()
  }
  const root = new Cache(shared, [options.namespace ?? DEFAULT_NAMESPACE], options.loader)
  if (options.writeBehind !== undefined) {
    parseWriteBehindOptions(options.writeBehind)
    const name = `%wb:${root.storePrefix}`
    const queue =
      options.writeBehind.queue ??
      tiers.find((tier) => !tier.local && tier.store.writeQueue)?.store.writeQueue?.(name) ??
      memoryQueue()
    shared.writeBehind = new WriteBehind(options.writeBehind, queue, {
      deadLetter: (item, error) => {
        if (metrics.has('deadLetter')) {
          metrics.emit('deadLetter', { key: item.key, namespace: item.namespace, attempts: item.attempts, error })
        }
      },
      error: (error) => {
        metrics.errors++
        if (metrics.has('error'))
          metrics.emit('error', { namespace: root.namespaceName, operation: 'writeBehind', error })
      },
    })
  }
  if (bus !== undefined) root.attachBus(bus)
  return root
}

/**
 * The cache facade. Get one from `createCache()`; `namespace()` gives views that share its store, in-flight loads,
 * counters and listeners, with keys and tags scoped to the namespace.
 */
export class Cache {
  /** The namespace path, e.g. 'app' or 'app.tenant:42'. */
  readonly namespaceName: string
  private readonly s: Shared
  private readonly path: readonly string[]
  /** Every key of this namespace starts with it; no key of another namespace does (see `encodeSegment`). */
  private readonly prefix: string
  /** Child namespaces start with it. */
  private readonly childPrefix: string
  /** Read-through loader of this namespace, if any. */
  private readonly loader: ReadThroughLoader<unknown> | undefined

  /** Use `createCache()`; a namespace view comes from `namespace()`. */
  constructor(shared: Shared, path: readonly string[], loader?: ReadThroughLoader<unknown>) {
    for (const name of path) {
      if (typeof name !== 'string' || name.length === 0) {
        throw new CacheError('E_INVALID_OPTION', `namespace must be a non-empty string (got ${describe(name)})`)
      }
    }
    this.s = shared
    this.path = path
    this.loader = loader
    this.namespaceName = path.join('.')
    const encoded = path.map(encodeSegment).join('.')
    this.prefix = `${encoded}:`
    this.childPrefix = `${encoded}.`
  }

  /** Every store key of this namespace starts with it (`<escaped namespace path>:`). */
  get storePrefix(): string {
    return this.prefix
  }

  /**
   * Returns the fresh value, or `undefined` on a miss (stale entries are not returned; use `getOrSet` for grace).
   *
   * @example
   * const user = await cache.get<User>('users:42')
   */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    this.checkKey(key)
    const loader = this.loader
    if (loader !== undefined) return this.getOrSet<T>(key, (ctx) => loader(key, ctx as LoaderContext<unknown>) as T)
    // No await between reading an in-process entry and using it: it may be the store's shared view.
    let entry = this.s.getIn !== undefined ? this.readNow(key) : undefined
    if (entry === undefined && this.s.remote.length > 0) entry = await this.read(key)
    if (entry !== undefined && this.s.clockNear(entry.freshUntil) < entry.freshUntil) {
      const value = entry.value as T
      this.hit(key, false)
      return value
    }
    this.miss(key)
    return undefined
  }

  /**
   * Stores a value. `undefined` is refused (`E_INVALID_VALUE`): it means "nothing", so it is never cached; `null` is.
   *
   * @example
   * await cache.set('users:42', user, { ttl: '5m', tags: ['user:42'] })
   */
  async set<T>(key: string, value: T, options?: EntryOptions): Promise<void> {
    const full = this.fullKey(key)
    if (value === undefined) {
      throw new CacheError('E_INVALID_VALUE', `value for key ${describe(key)} is undefined; cache null instead`)
    }
    const entry = this.makeEntry(value, this.plan(options), undefined, undefined)
    this.overtake({ kind: 'key', key: full })
    await this.write(entry, key, true, undefined)
  }

  /**
   * Returns the cached value, or runs `loader` once (per key, per process) and caches what it returns. Stale values
   * within grace are served at once while one background refresh runs; see `GetOrSetOptions` for timeouts.
   *
   * @example
   * const todos = await cache.getOrSet(`todos:${userId}`, ({ signal }) => db.todos(userId, { signal }), {
   *   ttl: '30s', grace: '10m', tags: [`user:${userId}`],
   * })
   */
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    try {
      this.checkKey(key)
      if (typeof loader !== 'function') {
        throw new CacheError('E_INVALID_OPTION', `loader for key ${describe(key)} must be a function`)
      }
    } catch (err) {
      return Promise.reject(err)
    }
    // The hot path: no promise, no joined key, no allocation until the answer itself.
    if (this.s.getIn !== undefined) {
      const entry = this.readNow(key)
      if (entry !== undefined || this.s.remote.length === 0) return this.answer(key, entry, loader, options)
    }
    // A load that finished while this read was in flight wrote L1: look there again before starting another.
    return this.read(key).then((entry) =>
      this.answer(key, entry ?? (this.s.getIn !== undefined ? this.readNow(key, false) : undefined), loader, options),
    )
  }

  /** Fresh entry present? Counts nothing. */
  async has(key: string): Promise<boolean> {
    this.checkKey(key)
    let entry = this.s.getIn !== undefined ? this.readNow(key, false) : undefined
    if (entry === undefined && this.s.remote.length > 0) entry = await this.read(key, false)
    return entry !== undefined && this.s.clockNear(entry.freshUntil) < entry.freshUntil
  }

  /** Deletes one key from every tier; resolves to whether a live entry was there. */
  async delete(key: string): Promise<boolean> {
    const full = this.fullKey(key)
    this.overtake({ kind: 'key', key: full })
    let existed = false
    const failure = await this.everyTier((tier) => {
      const store = tier.store
      if (store.deleteSync) {
        existed = store.deleteSync(full) || existed
        return undefined
      }
      return store.delete(full).then((found) => {
        existed = found || existed
      })
    })
    await this.publish({ kind: 'keys', keys: [full] }, failure)
    if (failure !== undefined) {
      this.error('delete', failure.error, key)
      throw failure.error
    }
    this.s.metrics.deletes++
    if (this.s.metrics.has('delete')) this.s.metrics.emit('delete', { key, namespace: this.namespaceName })
    return existed
  }

  /** Fresh values for several keys, in order (`undefined` for each miss). With a read-through loader, misses load. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const fulls = this.fullKeys(keys)
    if (this.loader !== undefined) return Promise.all(keys.map((key) => this.get<T>(key)))
    const entries = await this.readMany(keys, fulls)
    const now = this.s.clock()
    return keys.map((key, i) => {
      const entry = entries[i]
      if (entry !== undefined && now < entry.freshUntil) {
        this.hit(key, false)
        return entry.value as T
      }
      this.miss(key)
      return undefined
    })
  }

  /**
   * Stores several values. Every item is checked before any is written, so a bad item stores nothing.
   *
   * @example
   * await cache.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 2, ttl: '1m' }])
   */
  async setMany<T>(items: readonly SetManyItem<T>[], options?: EntryOptions): Promise<void> {
    if (!Array.isArray(items)) {
      throw new CacheError('E_INVALID_VALUE', `setMany takes an array of { key, value } (got ${describe(items)})`)
    }
    const writes: [string, StoredEntry, string][] = items.map((item) => {
      const full = this.fullKey(item?.key)
      if (item.value === undefined) {
        throw new CacheError('E_INVALID_VALUE', `value for key ${describe(item.key)} is undefined; cache null instead`)
      }
      const merged = { ...options, ...stripUndefined(item) }
      return [full, this.makeEntry(item.value, this.plan(merged), undefined, undefined), item.key]
    })
    for (const [full] of writes) this.overtake({ kind: 'key', key: full })
    const now = this.s.clock()
    const write = async (tier: Tier) => {
      const store = tier.store
      const capped = writes.map(([full, entry]) => [full, tier.cap(entry, now)] as const)
      if (store.setMany) await store.setMany(capped)
      else for (const [full, entry] of capped) await store.set(full, entry)
    }
    // Shared tiers first: a value they refuse (too large, not serialisable) must not reach L1 either.
    const pending = writes.map(([full, entry]): PendingWrite => ({ full, tags: entry.tags, touched: false }))
    for (const token of pending) this.s.writing.add(token)
    let failure: Failure | undefined
    try {
      failure = await this.tiersOf(this.s.shared, write)
    } finally {
      for (const token of pending) this.s.writing.delete(token)
    }
    const sharedFailure = failure
    // Keys invalidated while the shared tiers were written are dropped locally, not written.
    const touched = pending.filter((token) => token.touched)
    for (const token of touched) this.dropLocalKey(token.full, token.full)
    if (failure === undefined || !isDataError(failure.error)) {
      const untouched = touched.length === 0 ? writes : writes.filter((_, i) => !pending[i]!.touched)
      const local = async (tier: Tier) => {
        const capped = untouched.map(([full, entry]) => [full, tier.cap(entry, now)] as const)
        try {
          if (tier.store.setMany) await tier.store.setMany(capped)
          else for (const [full, entry] of capped) await tier.store.set(full, entry)
        } catch (err) {
          for (const [full] of capped) this.localFailed(tier, full)
          throw err
        }
      }
      failure = (await this.tiersOf(this.s.local, local)) ?? failure
    }
    await this.publish({ kind: 'keys', keys: writes.map(([full]) => full) }, sharedFailure)
    if (failure !== undefined) {
      // Some items may be stored, some not: the error says so, and none is counted as set.
      this.error('setMany', failure.error)
      throw failure.error
    }
    this.s.metrics.sets += writes.length
    if (this.s.metrics.has('set'))
      for (const [, , key] of writes) this.s.metrics.emit('set', { key, namespace: this.namespaceName })
  }

  /** Deletes several keys; resolves to how many live entries were dropped. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    const fulls = this.fullKeys(keys)
    for (const full of fulls) this.overtake({ kind: 'key', key: full })
    let count = 0
    const failure = await this.everyTier(async (tier) => {
      const store = tier.store
      let dropped = 0
      if (store.deleteMany) dropped = await store.deleteMany(fulls)
      else for (const full of fulls) if (await store.delete(full)) dropped++
      // An entry may live in several tiers: the deepest count is the one that says what existed.
      count = Math.max(count, dropped)
    })
    await this.publish({ kind: 'keys', keys: fulls }, failure)
    if (failure !== undefined) {
      this.error('deleteMany', failure.error)
      throw failure.error
    }
    this.s.metrics.deletes += keys.length
    if (this.s.metrics.has('delete'))
      for (const key of keys) this.s.metrics.emit('delete', { key, namespace: this.namespaceName })
    return count
  }

  /**
   * Wraps a function so its results are cached by `options.key(...args)`.
   *
   * @example
   * const getUser = cache.wrap((id: string) => db.user(id), { key: (id) => `users:${id}`, ttl: '5m' })
   * await getUser('42')
   */
  wrap<A extends unknown[], R>(
    fn: (...args: A) => R | Promise<R>,
    options: WrapOptions<A>,
  ): (...args: A) => Promise<R> {
    if (typeof fn !== 'function') throw new CacheError('E_INVALID_OPTION', 'wrap needs a function to wrap')
    if (typeof options?.key !== 'function') {
      throw new CacheError('E_INVALID_OPTION', 'wrap needs options.key: (...args) => string, to build each call’s key')
    }
    const { key, ...rest } = options
    return (...args: A) => {
      let built: string
      try {
        built = key(...args)
      } catch (err) {
        return Promise.reject(err)
      }
      return this.getOrSet<R>(built, () => fn(...args), rest)
    }
  }

  /**
   * Write-through: writes `value` to the system of record with `write`, then to the cache (every tier, every
   * instance). A failed `write` rejects with `E_WRITE_FAILED` (its error as `cause`) and leaves the cache untouched.
   * If the source took the value but the cache could not, the key is deleted from every tier that answers and the
   * cache's error is thrown; a shared tier that cannot be reached then (down, circuit open) may keep its old copy
   * until that copy's TTL: keep TTLs bounded where a source write must never be shadowed.
   *
   * @example
   * await cache.writeThrough(`users:${id}`, user, (u) => db.users.update(id, u), { tags: [`user:${id}`] })
   */
  async writeThrough<T>(
    key: string,
    value: T,
    write: (value: T, key: string) => unknown,
    options?: EntryOptions,
  ): Promise<void> {
    this.fullKey(key)
    if (value === undefined) {
      throw new CacheError('E_INVALID_VALUE', `value for key ${describe(key)} is undefined; cache null instead`)
    }
    if (typeof write !== 'function') {
      throw new CacheError('E_INVALID_OPTION', 'writeThrough needs a write function: (value, key) => Promise')
    }
    const plan = this.plan(options)
    // A cache that cannot take the value now must not let the source move on without it.
    const open = this.s.shared.find((tier) => tier.breaker?.state === 'open')
    if (open !== undefined) {
      throw new CacheError(
        'E_STORE_UNAVAILABLE',
        `writeThrough of key ${describe(key)}: tier '${open.name}' is unavailable (circuit open); the source was not written`,
      )
    }
    try {
      await write(value, key)
    } catch (err) {
      const detail = err instanceof Error ? err.message : describe(err)
      throw new CacheError('E_WRITE_FAILED', `write-through of key ${describe(key)} failed: ${detail}`, { cause: err })
    }
    const entry = this.makeEntry(value, plan, undefined, undefined)
    this.overtake({ kind: 'key', key: this.prefix + key })
    try {
      await this.write(entry, key, true, undefined)
    } catch (err) {
      await this.delete(key).catch(noop)
      throw err
    }
  }

  /**
   * Write-behind: stores `value` in the cache now and queues it for the cache's `writeBehind.flush`, which writes
   * batches to the system of record later (retried with backoff, then dead-lettered; see `deadLetters()`). With a
   * Redis tier the queue is a Redis Stream, so a process that dies before the flush loses no write: another instance
   * flushes it. Needs `createCache({ writeBehind: { flush } })`.
   *
   * @example
   * const cache = createCache({ tiers, writeBehind: { flush: (batch) => db.upsertMany(batch) } })
   * await cache.writeBehind(`views:${id}`, count)
   */
  async writeBehind<T>(key: string, value: T, options?: EntryOptions): Promise<void> {
    const runner = this.s.writeBehind
    if (runner === undefined) {
      this.checkKey(key)
      throw new CacheError('E_INVALID_OPTION', 'writeBehind needs createCache({ writeBehind: { flush } })')
    }
    try {
      await this.set(key, value, options)
    } catch (err) {
      // Not queued either: no tier may claim a value the source will never get (L1 may have taken it).
      if (!isDataError(err)) await this.delete(key).catch(noop)
      throw err
    }
    try {
      await runner.enqueue([{ namespace: this.namespaceName, key, value }])
    } catch (err) {
      // Not queued: the source will never get it, so the cache must not claim it either.
      await this.delete(key).catch(noop)
      this.error('writeBehind', err, key)
      throw err
    }
  }

  /** Flushes the write-behind queue now (everything this process can take); resolves when it is drained. */
  async flush(): Promise<void> {
    this.checkOpen()
    await this.s.writeBehind?.flush()
  }

  /** Write-behind items that failed every attempt, oldest first (kept by the queue, e.g. a Redis stream). */
  async deadLetters(): Promise<{ item: WriteBehindItem; error: string }[]> {
    return (await this.s.writeBehind?.deadLetters()) ?? []
  }

  /**
   * Refresh-ahead for a named key: loads it now and again every `every`, in the background, so readers always find
   * it fresh (keep `every` below the TTL). A failed refresh keeps the current value (reported as an `error` event).
   * Each instance refreshes on its own schedule. Returns the function that stops it; `close()` stops all.
   *
   * @example
   * const stop = cache.refresh('config', () => db.config(), { every: '30s', ttl: '1m' })
   */
  refresh<T>(key: string, loader: Loader<T>, options: GetOrSetOptions & { every: Duration }): () => void {
    const full = this.fullKey(key)
    if (typeof loader !== 'function') throw new CacheError('E_INVALID_OPTION', 'refresh needs a loader function')
    const every = parseDuration(options?.every, 'every')
    if (!(every > 0) || every > MAX_TIMER_MS) {
      throw new CacheError('E_INVALID_OPTION', `refresh: every must be > 0 and at most ${MAX_TIMER_MS} ms`)
    }
    const { every: _, ...rest } = options
    // A scheduled refresh replaces a fresh value on purpose: another process's copy must not stand in for it.
    const plan = { ...this.plan(rest), lock: undefined }
    const s = this.s
    let timer: NodeJS.Timeout | undefined
    let stopped = false
    const run = () => {
      if (timer !== undefined) s.timers.delete(timer)
      if (stopped || s.closed) return
      if (!s.flights.has(full)) this.load(key, full, loader, plan, undefined, true).catch(noop)
      timer = setTimeout(run, every)
      timer.unref()
      s.timers.add(timer)
    }
    run()
    return () => {
      stopped = true
      if (timer !== undefined) {
        clearTimeout(timer)
        s.timers.delete(timer)
      }
    }
  }

  /**
   * Warms the cache: stores the given values and runs the given loaders (`concurrency` at a time), reporting
   * progress. Items with a loader are skipped when already fresh unless `force`. With `every`, it runs again on that
   * schedule until `close()` or `signal` aborts (items may then be a function, called on each run). Resolves to
   * the first run's report; failures are in the report, never thrown.
   *
   * @example
   * await cache.warm(top100.map((id) => ({ key: `product:${id}`, loader: () => db.product(id) })), {
   *   concurrency: 8, onProgress: ({ done, total }) => log.info(`warm ${done}/${total}`),
   * })
   */
  async warm(items: WarmItems, options: WarmOptions = {}): Promise<WarmReport> {
    this.checkOpen()
    const concurrency = options.concurrency ?? 4
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new CacheError(
        'E_INVALID_OPTION',
        `warm: concurrency must be an integer >= 1 (got ${describe(concurrency)})`,
      )
    }
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
      throw new CacheError('E_INVALID_OPTION', 'warm: onProgress must be a function')
    }
    const every = options.every === undefined ? undefined : parseDuration(options.every, 'every')
    if (every !== undefined && (!(every > 0) || every > MAX_TIMER_MS)) {
      throw new CacheError('E_INVALID_OPTION', `warm: every must be > 0 and at most ${MAX_TIMER_MS} ms`)
    }
    const first = await this.warmOnce(items, concurrency, options)
    if (every !== undefined) {
      const s = this.s
      const signal = options.signal
      let timer: NodeJS.Timeout | undefined
      const stop = () => {
        if (timer === undefined) return
        clearTimeout(timer)
        s.timers.delete(timer)
      }
      signal?.addEventListener('abort', stop, { once: true })
      const again = () => {
        if (s.closed || signal?.aborted) return
        timer = setTimeout(() => {
          s.timers.delete(timer!)
          if (s.closed || signal?.aborted) return
          this.warmOnce(items, concurrency, options)
            .catch((err: unknown) => this.error('warm', err))
            .finally(again)
        }, every)
        timer.unref()
        s.timers.add(timer)
      }
      again()
    }
    return first
  }

  private async warmOnce(items: WarmItems, concurrency: number, options: WarmOptions): Promise<WarmReport> {
    const list = typeof items === 'function' ? await items() : items
    if (!Array.isArray(list)) {
      throw new CacheError('E_INVALID_VALUE', `warm takes an array of { key, value } or { key, loader } items`)
    }
    const report: WarmReport = { total: list.length, done: 0, stored: 0, skipped: 0, failed: 0, errors: [] }
    let next = 0
    const one = async (item: WarmItem): Promise<void> => {
      let outcome: 'stored' | 'skipped' | Error
      try {
        if (item === null || typeof item !== 'object') {
          throw new CacheError(
            'E_INVALID_VALUE',
            `warm item must be { key, value } or { key, loader } (got ${describe(item)})`,
          )
        }
        if ('loader' in item && typeof item.loader === 'function') {
          const { key, loader, ...rest } = item
          if (!options.force && (await this.has(key))) outcome = 'skipped'
          else {
            const full = this.fullKey(key)
            const running = this.s.flights.get(full)
            // Forced: replaces a fresh value, so no lock (its double-check would take the old value as done).
            const plan = options.force ? { ...this.plan(rest), lock: undefined } : this.plan(rest)
            await (running?.promise ?? this.load(key, full, loader, plan, undefined, true))
            outcome = 'stored'
          }
        } else {
          const { key, value, ...rest } = item as WarmValueItem
          await this.set(key, value, rest)
          outcome = 'stored'
        }
      } catch (err) {
        outcome = err instanceof Error ? err : new CacheError('E_LOADER_ERROR', describe(err), { cause: err })
      }
      report.done++
      const key = String((item as WarmItem | null)?.key)
      if (outcome instanceof Error) {
        report.failed++
        report.errors.push({ key, error: outcome })
      } else report[outcome]++
      options.onProgress?.({ done: report.done, total: report.total, key, ok: !(outcome instanceof Error) })
    }
    const lanes = Array.from({ length: Math.min(concurrency, list.length) }, async () => {
      while (next < list.length && !options.signal?.aborted && !this.s.closed) await one(list[next++]!)
    })
    await Promise.all(lanes)
    return report
  }

  /**
   * Drops every entry of this namespace carrying one of the tags. Tags are scoped to the namespace that wrote them.
   *
   * @example
   * await cache.invalidateTags([`user:${id}`])
   */
  async invalidateTags(tags: readonly string[]): Promise<number> {
    this.checkOpen()
    if (!Array.isArray(tags)) throw new CacheError('E_INVALID_VALUE', `tags must be an array (got ${describe(tags)})`)
    const full = this.fullTags(tags)
    if (full.length === 0) return 0
    const lacking = this.s.tiers.find((tier) => typeof tier.store.deleteTagged !== 'function')
    if (lacking !== undefined) {
      throw new CacheError('E_UNSUPPORTED', `store '${lacking.name}' does not support tags (no deleteTagged)`)
    }
    this.overtake({ kind: 'tags', tags: full })
    let count = 0
    const failure = await this.everyTier(async (tier) => {
      count = Math.max(count, await tier.store.deleteTagged!(full))
    })
    await this.publish({ kind: 'tags', tags: full }, failure)
    if (failure !== undefined) {
      this.error('invalidateTags', failure.error)
      throw failure.error
    }
    return count
  }

  /**
   * A view of this cache whose keys and tags live in a child namespace. `clear()` on it drops only its keys (and
   * those of its own children). Names may contain any character: they are escaped, so no name or key can reach into
   * another namespace.
   *
   * @example
   * const tenant = cache.namespace(`tenant:${tenantId}`)
   * await tenant.clear() // the whole tenant, nothing else
   */
  namespace(name: string, options?: NamespaceOptions): Cache {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new CacheError('E_INVALID_OPTION', `namespace options must be an object (got ${describe(options)})`)
    }
    const loader = options?.loader
    if (loader !== undefined && typeof loader !== 'function') {
      throw new CacheError('E_INVALID_OPTION', `namespace loader must be a function (got ${describe(loader)})`)
    }
    return new Cache(this.s, [...this.path, name], loader ?? this.loader)
  }

  /**
   * Drops every key of this namespace and of its child namespaces, in every tier and (through the bus) every
   * instance; nothing outside it. On a tenant's namespace this deletes the tenant.
   */
  async clear(): Promise<void> {
    this.checkOpen()
    this.overtake({ kind: 'prefix', prefix: this.prefix })
    this.overtake({ kind: 'prefix', prefix: this.childPrefix })
    const failure = await this.everyTier(async (tier) => {
      await tier.store.clear(this.prefix)
      await tier.store.clear(this.childPrefix)
    })
    await this.publish({ kind: 'clear', prefix: this.prefix }, failure)
    await this.publish({ kind: 'clear', prefix: this.childPrefix }, failure)
    if (failure !== undefined) {
      this.error('clear', failure.error)
      throw failure.error
    }
  }

  /** Counters since creation, shared by all namespaces of this cache, plus each tier's own. */
  stats(): CacheStats {
    return this.s.metrics.snapshot(this.s.tiers.map((tier) => tier.stats()))
  }

  /**
   * Subscribes to an event; returns the unsubscribe function. Events are emitted synchronously; a listener that
   * throws is reported as a process warning and does not affect the call.
   *
   * @example
   * const off = cache.on('miss', ({ key }) => log.debug({ key }, 'cache miss'))
   */
  on<E extends CacheEventName>(event: E, listener: (payload: CacheEvents[E]) => void): () => void {
    return this.s.metrics.on(event, listener)
  }

  /**
   * Closes the cache (the root and every namespace of it): loaders still running are aborted (their callers get
   * `E_CLOSED`), and later calls reject with `E_CLOSED`. The default memory store, which the cache made, is closed
   * too; a store you passed in is yours to close, as other caches may share it. Closing twice is harmless.
   */
  async close(): Promise<void> {
    const s = this.s
    if (s.closed) return
    s.closed = true
    s.unsubscribe()
    for (const timer of s.timers) clearTimeout(timer)
    s.timers.clear()
    for (const done of s.onClose.splice(0)) done()
    // Queued writes reach the sink before anything else stops; a failure is reported, and close goes on.
    if (s.writeBehind !== undefined) {
      try {
        await s.writeBehind.close()
      } catch (err) {
        this.error('writeBehind', err)
      }
    }
    const closed = new CacheError('E_CLOSED', 'the cache was closed while this loader ran')
    for (const flight of [...s.running]) flight.controller.abort(closed)
    s.flights.clear()
    for (const wake of [...s.waiters.values()].flatMap((set) => [...set])) wake()
    const unsubscribe = await s.busSubscription
    if (unsubscribe !== undefined) {
      try {
        await unsubscribe()
      } catch (err) {
        this.error('close', err)
      }
    }
    if (s.ownsStore) await s.tiers[0]!.store.close?.()
  }

  /**
   * Resolves once the cache is subscribed to its bus (at once without a bus), so that writes of other instances
   * are heard from then on. Never rejects: a subscription that keeps failing is retried and reported as `error`
   * events, and `ready()` resolves when it stands (or when the cache closes).
   *
   * @example
   * const cache = createCache({ tiers, bus: redisBus({ client }) })
   * await cache.ready()
   */
  async ready(): Promise<void> {
    await this.s.busSubscription
  }

  /**
   * Subscribes the cache to the bus: what other instances write or invalidate is dropped from the local tiers.
   * Until the subscription stands, and after any gap in it, the local tiers may hold what another instance has
   * since invalidated: they are cleared of this cache's keys at both edges.
   * @internal
   */
  attachBus(bus: Bus): void {
    const s = this.s
    const handlers = {
      message: (message: BusMessage) => this.received(message),
      gap: () => this.dropLocal(),
    }
    // Until subscribed this instance cannot hear invalidations: each failure is reported, and it tries again (the
    // local tiers are dropped once it succeeds, like after any gap).
    const attempt = async (delay: number): Promise<(() => Promise<void>) | undefined> => {
      while (!s.closed) {
        try {
          const unsubscribe = await bus.subscribe(handlers)
          this.dropLocal()
          if (!s.closed) return unsubscribe
          await unsubscribe().catch((err: unknown) => this.error('close', err))
          return undefined
        } catch (err) {
          this.error('subscribe', err)
        }
        await new Promise<void>((resolve) => {
          // Ends on the timer, or on close() (which clears the timers), so the loop always finishes.
          const done = () => {
            clearTimeout(timer)
            s.timers.delete(timer)
            const at = s.onClose.indexOf(done)
            if (at >= 0) s.onClose.splice(at, 1)
            resolve()
          }
          const timer = setTimeout(done, delay)
          timer.unref()
          s.timers.add(timer)
          s.onClose.push(done)
        })
        delay = Math.min(delay * 2, BUS_RETRY_MAX_MS)
      }
      return undefined
    }
    s.busSubscription = attempt(BUS_RETRY_MS)
  }

  // ---- internals ----

  private checkKey(key: string): void {
    if (typeof key !== 'string' || key.length === 0 || key.length > this.s.maxKeyLength) {
      throw invalidKey(key, this.s.maxKeyLength)
    }
    if (this.s.closed) throw new CacheError('E_CLOSED', 'the cache is closed')
  }

  private fullKey(key: string): string {
    this.checkKey(key)
    return this.prefix + key
  }

  private fullKeys(keys: readonly string[]): string[] {
    if (!Array.isArray(keys)) throw new CacheError('E_INVALID_KEY', `keys must be an array (got ${describe(keys)})`)
    return keys.map((key) => this.fullKey(key))
  }

  private fullTags(tags: readonly string[]): string[] {
    if (!Array.isArray(tags)) throw new CacheError('E_INVALID_VALUE', `tags must be an array (got ${describe(tags)})`)
    return tags.map((tag) => {
      if (typeof tag !== 'string' || tag.length === 0 || tag.length > this.s.maxKeyLength) {
        throw new CacheError('E_INVALID_VALUE', `tags must be non-empty strings (got ${describe(tag)})`)
      }
      return this.prefix + tag
    })
  }

  private checkOpen(): void {
    if (this.s.closed) throw new CacheError('E_CLOSED', 'the cache is closed')
  }

  /**
   * Reads one entry from an in-process store. The result may be the store's shared view, valid until the next call
   * into the store: use it before anything else runs (no await, no listener in between).
   */
  private readNow(key: string, count = true): StoredEntry | undefined {
    const l1 = this.s.l1!
    try {
      const entry = this.s.getIn!(this.prefix, key)
      if (count) {
        if (entry === undefined) l1.misses++
        else l1.hits++
      }
      return entry
    } catch (err) {
      l1.errors++
      this.error('get', err, key)
      return undefined
    }
  }

  /**
   * Reads one entry from the asynchronous tiers, in order, and copies a live one into the tiers above. A failing
   * tier counts as a miss there (fail-open): it is reported as an error and the next tier is asked.
   */
  private async read(key: string, count = true): Promise<StoredEntry | undefined> {
    const s = this.s
    const full = this.prefix + key
    const epoch = s.epoch
    for (let i = 0; i < s.remote.length; i++) {
      const tier = s.remote[i]!
      let entry: StoredEntry | undefined
      try {
        entry = await tier.store.get(full)
      } catch (err) {
        tier.errors++
        this.error('get', err, key)
        continue
      }
      if (entry !== undefined && s.clockNear(entry.staleUntil) < entry.staleUntil) {
        if (count) tier.hits++
        if (s.epoch === epoch && !s.closed) this.backfill(full, key, entry, i)
        return entry
      }
      if (count) tier.misses++
    }
    return undefined
  }

  /** Copies an entry found in `remote[found]` into every faster tier, keeping its times (its remaining TTL). */
  private backfill(full: string, key: string, entry: StoredEntry, found: number): void {
    const s = this.s
    const now = s.clock()
    if (s.l1 !== undefined) {
      try {
        s.setIn!(this.prefix, key, s.l1.cap(entry, now))
      } catch (err) {
        s.l1.errors++
        this.error('backfill', err, key)
      }
    }
    for (let i = 0; i < found; i++) {
      const tier = s.remote[i]!
      tier.store.set(full, tier.cap(entry, now)).catch((err: unknown) => {
        tier.errors++
        this.error('backfill', err, key)
      })
    }
  }

  /** `read` for several keys: each tier is asked (in one batch call when it can) only for what the faster missed. */
  private async readMany(keys: readonly string[], fulls: string[]): Promise<(StoredEntry | undefined)[]> {
    const s = this.s
    const entries: (StoredEntry | undefined)[] = new Array(fulls.length).fill(undefined)
    let missing = fulls.map((_, i) => i)
    const epoch = s.epoch
    for (let t = 0; t < s.tiers.length && missing.length > 0; t++) {
      const tier = s.tiers[t]!
      const store = tier.store
      const wanted = missing.map((i) => fulls[i]!)
      let found: (StoredEntry | undefined)[]
      try {
        found = store.getMany ? await store.getMany(wanted) : await Promise.all(wanted.map((full) => store.get(full)))
      } catch (err) {
        tier.errors++
        this.error('getMany', err)
        continue
      }
      const now = s.clock()
      const still: number[] = []
      missing.forEach((index, j) => {
        const entry = found[j]
        if (entry !== undefined && now < entry.staleUntil) {
          entries[index] = entry
          tier.hits++
        } else {
          tier.misses++
          still.push(index)
        }
      })
      if (t > 0 && s.epoch === epoch && !s.closed) {
        for (const index of missing) {
          const entry = entries[index]
          if (entry !== undefined) this.backfillAbove(t, fulls[index]!, keys[index]!, entry)
        }
      }
      missing = still
    }
    return entries
  }

  /** `backfill` from `tiers[t]` (an index in all tiers, not only the remote ones). */
  private backfillAbove(t: number, full: string, key: string, entry: StoredEntry): void {
    const found = this.s.l1 !== undefined ? t - 1 : t
    this.backfill(full, key, entry, found)
  }

  /**
   * Checks and resolves the per-call options once, before any loader runs: a bad option is a rejection of the call,
   * never a loader started and then abandoned.
   */
  private plan(options: GetOrSetOptions | undefined): Plan {
    const d = this.s.defaults
    if (options === undefined) return d
    if (options === null || typeof options !== 'object') {
      throw new CacheError('E_INVALID_OPTION', `options must be an object (got ${describe(options)})`)
    }
    return {
      ttl: options.ttl === undefined ? d.ttl : parseDuration(options.ttl, 'ttl'),
      grace: options.grace === undefined ? d.grace : parseDuration(options.grace, 'grace'),
      jitter: options.jitter === undefined ? d.jitter : checkJitter(options.jitter),
      timeout: options.timeout === undefined ? d.timeout : parseDuration(options.timeout, 'timeout'),
      hardTimeout:
        options.hardTimeout === undefined ? d.hardTimeout : parseDuration(options.hardTimeout, 'hardTimeout'),
      earlyRefresh: options.earlyRefresh === undefined ? d.earlyRefresh : parseBeta(options.earlyRefresh),
      tags: options.tags === undefined ? undefined : this.fullTags(options.tags),
      lock: options.lock === undefined ? d.lock : parseLock(options.lock, d.lock),
    }
  }

  /** `entry` may be the store's reused view object: it is read before anything else runs. */
  private answer<T>(
    key: string,
    entry: StoredEntry | undefined,
    loader: Loader<T>,
    options: GetOrSetOptions | undefined,
  ): Promise<T> {
    const s = this.s
    try {
      if (entry !== undefined) {
        const now = s.clockNear(entry.freshUntil)
        if (now < entry.freshUntil) {
          const value = entry.value as T
          // The fresh hit: options matter only for early refresh, so only that one is read here.
          const beta = options?.earlyRefresh === undefined ? s.defaults.earlyRefresh : parseBeta(options.earlyRefresh)
          if (beta > 0 && refreshEarly(entry, now, beta)) {
            const full = this.prefix + key
            // No cross-process lock: its double-check would find this very entry, still fresh, and skip the load.
            const plan = { ...this.plan(options), lock: undefined }
            if (!s.flights.has(full)) this.load(key, full, loader, plan, value, true).catch(noop)
          }
          this.hit(key, false)
          return Promise.resolve(value)
        }
        if (now < entry.staleUntil) {
          const stale = entry.value as T
          return this.answerStale(key, this.prefix + key, stale, loader, this.plan(options))
        }
      }
      const full = this.prefix + key
      const plan = this.plan(options)
      this.miss(key)
      const flight = s.flights.get(full)
      if (flight === undefined) return this.load(key, full, loader, plan, undefined, false)
      s.metrics.coalesced++
      // A caller with its own hard timeout gets it even when joining a load another caller started.
      if (options?.hardTimeout === undefined) return flight.promise as Promise<T>
      return this.join(key, flight.promise as Promise<T>, plan.hardTimeout)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Waits for a shared load, at most `hardTimeout` ms; the load itself goes on for its other callers. */
  private join<T>(key: string, shared: Promise<T>, hardTimeout: number | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = startTimer(() => reject(loaderTimeout(key, hardTimeout!)), hardTimeout)
      shared.then(
        (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        (err) => {
          clearTimeout(timer)
          reject(err)
        },
      )
    })
  }

  /** Stale within grace: serve it (at once, or after the soft timeout) while one refresh runs. */
  private answerStale<T>(key: string, full: string, stale: T, loader: Loader<T>, plan: Plan): Promise<T> {
    const running = this.s.flights.get(full)
    const refresh = (running?.promise as Promise<T> | undefined) ?? this.load(key, full, loader, plan, stale, true)
    if (!(plan.timeout > 0)) {
      refresh.catch(noop)
      this.serveStale(key, 'grace')
      return Promise.resolve(stale)
    }
    return new Promise<T>((resolve) => {
      // One answer per call, and one count: whichever of the timer and the refresh comes first.
      let settled = false
      const settle = (value: T, reason: CacheEvents['stale']['reason'] | undefined) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (reason === undefined) this.hit(key, false)
        else this.serveStale(key, reason)
        resolve(value)
      }
      const timer = startTimer(() => settle(stale, 'timeout'), plan.timeout)
      refresh.then(
        (value) => settle(value, undefined),
        // stale-if-error: the refresh failed (already counted and reported), the stale value still stands.
        () => settle(stale, 'error'),
      )
    })
  }

  /** Starts the one load of `full`; callers that arrive while it runs share its promise. */
  private load<T>(
    key: string,
    full: string,
    loader: Loader<T>,
    plan: Plan,
    stale: T | undefined,
    background: boolean,
  ): Promise<T> {
    const s = this.s
    const controller = new AbortController()
    const ctx = new Context<T>(this.namespaceName, key, controller.signal, stale)
    const started = performance.now()
    let timer: NodeJS.Timeout | undefined
    const flight: Flight = {
      full,
      callTags: plan.tags,
      prefix: this.prefix,
      ctx: ctx as Context<unknown>,
      promise: undefined as unknown as Promise<T>,
      controller,
      logStart: s.log.length,
      overtaken: false,
      fromShared: undefined,
      lock: undefined,
      waiting: false,
    }

    const run = new Promise<T>((resolve, reject) => {
      // Aborting (hard timeout, close) settles the callers at once, whether or not the loader honours the signal.
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true })
      if (plan.hardTimeout !== undefined) {
        const ms = plan.hardTimeout
        timer = startTimer(() => controller.abort(loaderTimeout(key, ms)), ms)
      }
      const lockTier = plan.lock === undefined ? undefined : s.lockTier
      const work =
        lockTier === undefined
          ? callLoader(key, loader, ctx)
          : this.lockedLoad(key, full, loader, ctx, plan.lock!, lockTier, flight)
      work.then(resolve, reject)
    })

    const finish = () => {
      if (timer !== undefined) clearTimeout(timer)
      if (s.flights.get(full) === flight) s.flights.delete(full)
      s.running.delete(flight)
      // The log serves running loads only: empty it with the last one, and keep it short while loads overlap.
      if (s.running.size === 0) s.log.length = 0
      else if (s.log.length > MAX_LOG) this.compactLog()
      // Released only now, after the write: a waiter in another process must find the value, not a free lock.
      flight.lock?.release().catch(noop)
    }
    const promise = run.then(
      async (value) => {
        if (flight.fromShared !== undefined) {
          // Another process loaded it (and lockedLoad copied it up): nothing ran here.
          finish()
          return value
        }
        const durationMs = performance.now() - started
        this.loaded(key, durationMs, true, background)
        if (value !== undefined && !ctx.skipped && !s.closed && !this.invalidatedSince(flight)) {
          try {
            const entry = this.makeEntry(value, plan, ctx, durationMs)
            if (!this.invalidatedSince(flight, entry.tags)) await this.write(entry, key, false, flight)
          } catch (err) {
            // The value is good, only caching it failed (too large, bad ctx.ttl, store down): callers still get it.
            this.error('set', err, key)
          }
        }
        finish()
        return value
      },
      (err: CacheError) => {
        finish()
        this.loaded(key, performance.now() - started, false, background)
        this.error('load', err, key)
        throw err
      },
    )
    // Background refreshes may have no caller left to observe a failure; it is reported through `error`.
    promise.catch(noop)
    flight.promise = promise
    s.flights.set(full, flight)
    s.running.add(flight)
    return promise
  }

  /** An entry for `value`: the plan's ttl, grace, jitter and tags, overridden by what the loader set on `ctx`. */
  private makeEntry(
    value: unknown,
    plan: Plan,
    ctx: Context<unknown> | undefined,
    cost: number | undefined,
  ): StoredEntry {
    let ttl = ctx?.ttl === undefined ? plan.ttl : parseDuration(ctx.ttl, 'ctx.ttl')
    const grace = ctx?.grace === undefined ? plan.grace : parseDuration(ctx.grace, 'ctx.grace')
    if (plan.jitter > 0) ttl = Math.max(0, ttl * (1 + plan.jitter * (Math.random() * 2 - 1)))
    let tags = plan.tags
    if (ctx !== undefined && ctx.tags.length > 0) tags = [...new Set([...(tags ?? []), ...this.fullTags(ctx.tags)])]
    const now = this.s.clock()
    return { value, createdAt: now, freshUntil: now + ttl, staleUntil: now + ttl + grace, tags, cost }
  }

  /**
   * Writes an entry to every tier: the shared ones first (in parallel), then the local ones, so a value a shared
   * tier refuses (too large, not serialisable) reaches no tier. When a shared tier is unreachable the local tiers
   * still get the value (this process keeps answering), and the failure is reported (and thrown when `rethrow`).
   * A load's write stops before the local tiers when a newer write overtook it meanwhile.
   */
  private async write(entry: StoredEntry, key: string, rethrow: boolean, flight: Flight | undefined): Promise<void> {
    const s = this.s
    const full = this.prefix + key
    let failure: { error: unknown } | undefined
    /** Did the value reach a shared tier (so other instances may read it, and must drop their copies)? */
    let shared = false
    if (s.shared.length > 0) {
      const pending: PendingWrite = { full, tags: entry.tags, touched: false }
      s.writing.add(pending)
      let sharedFailure: Failure | undefined
      try {
        const now = s.clock()
        sharedFailure = await this.tiersOf(s.shared, (tier) => tier.store.set(full, tier.cap(entry, now)))
      } finally {
        s.writing.delete(pending)
      }
      failure = sharedFailure
      shared = sharedFailure === undefined || sharedFailure.tiers.length < s.shared.length
      if (pending.touched || flight?.overtaken === true) {
        // Invalidated while in flight: whatever the local tiers hold for the key is outdated, this value included.
        this.dropLocalKey(full, key)
      } else if (failure === undefined || !isDataError(failure.error)) {
        failure = this.writeLocal(full, key, entry, 'set') ?? failure
      }
    } else {
      failure = this.writeLocal(full, key, entry, 'set')
    }
    if (s.bus !== undefined && shared) {
      // An explicit write resolves once the other instances have been told; a load's callers need not wait for it.
      const told = this.publish({ kind: 'keys', keys: [full] })
      if (rethrow) await told
    }
    if (failure !== undefined) {
      this.error('set', failure.error, key)
      if (rethrow) throw failure.error
      return
    }
    s.metrics.sets++
    if (s.metrics.has('set')) s.metrics.emit('set', { key, namespace: this.namespaceName })
  }

  /**
   * Writes the local tiers; resolves to the first failure. A tier that refuses the value (too large) has the key
   * dropped, so it never answers with the value this write replaced.
   */
  private writeLocal(
    full: string,
    key: string,
    entry: StoredEntry,
    operation: 'set' | 'backfill',
  ): { error: unknown } | undefined {
    const s = this.s
    let failure: { error: unknown } | undefined
    const now = s.clock()
    for (const tier of s.local) {
      try {
        if (tier === s.l1) s.setIn!(this.prefix, key, tier.cap(entry, now))
        else
          tier.store.set(full, tier.cap(entry, now)).catch((err: unknown) => {
            this.localFailed(tier, full)
            this.error(operation, err, key)
          })
      } catch (err) {
        this.localFailed(tier, full)
        failure ??= { error: err }
      }
    }
    return failure
  }

  /**
   * A local tier failed to take a value: count it and, when a shared tier holds the new value, drop the key there
   * so the old value is not served. (A cache with local tiers only keeps its old value, as before the call.)
   */
  private localFailed(tier: Tier, full: string): void {
    tier.errors++
    if (this.s.shared.length === 0) return
    // The store failed twice if this fails too: nothing more this write can do; its error is reported by the caller.
    dropKey(tier.store, full, noop)
  }

  /** Drops one key from the local tiers (best effort). */
  private dropLocalKey(full: string, key: string): void {
    for (const tier of this.s.local) dropKey(tier.store, full, (err) => this.error('delete', err, key))
  }

  /** Copies an entry another process stored into the local tiers (no publish: nothing changed in shared ones). */
  private copyUp(full: string, key: string, entry: StoredEntry): void {
    const failure = this.writeLocal(full, key, entry, 'backfill')
    if (failure !== undefined) this.error('backfill', failure.error, key)
  }

  /**
   * Runs `call` on every tier at once; resolves (never rejects) to the first failure, after all have settled. A
   * failing tier's error count goes up.
   */
  private everyTier(call: (tier: Tier) => Promise<unknown> | undefined): Promise<Failure | undefined> {
    return this.tiersOf(this.s.tiers, call)
  }

  private async tiersOf(
    tiers: readonly Tier[],
    call: (tier: Tier) => Promise<unknown> | undefined,
  ): Promise<Failure | undefined> {
    let failure: Failure | undefined
    const pending: Promise<unknown>[] = []
    for (const tier of tiers) {
      const fail = (err: unknown) => {
        tier.errors++
        failure ??= { error: err, tiers: [] }
        failure.tiers.push(tier)
      }
      try {
        const result = call(tier)
        if (result !== undefined) pending.push(result.catch(fail))
      } catch (err) {
        fail(err)
      }
    }
    // Each call's failure is caught above: this waits for all of them and never rejects.
    if (pending.length > 0) await Promise.all(pending)
    return failure
  }

  /**
   * Tells the other instances; never rejects (a failure is reported as an `error` event: those instances keep
   * their copies until their own TTL, or until their bus reports a gap).
   */
  private async publish(message: BusMessage, failure?: { tiers?: Tier[] }): Promise<void> {
    const bus = this.s.bus
    if (bus === undefined) return
    // No shared tier took the change: the other instances read nothing new, and Redis (bus included) is likely down
    // (their own bus reports the gap, and they drop their copies).
    const failed = failure?.tiers
    if (failed !== undefined && this.s.shared.every((tier) => failed.includes(tier))) return
    try {
      await bus.publish(message)
    } catch (err) {
      this.error('publish', err)
    }
  }

  /** A message from another instance: drop the local copies and overtake the loads it makes outdated. */
  private received(message: BusMessage): void {
    const s = this.s
    if (s.closed) return
    s.epoch++
    for (const tier of s.local) {
      const store = tier.store
      const fail = (err: unknown) => {
        tier.errors++
        this.error('bus', err)
      }
      try {
        if (message.kind === 'keys') {
          for (const key of message.keys) dropKey(store, key, fail)
        } else if (message.kind === 'tags') {
          store.deleteTagged?.(message.tags).catch(fail)
        } else {
          store.clear(message.prefix === '' ? undefined : message.prefix).catch(fail)
        }
      } catch (err) {
        fail(err)
      }
    }
    if (message.kind === 'keys') {
      for (const key of message.keys) {
        // A waiting flight only ever answers with what it reads after this message (it loads nothing older).
        if (s.flights.get(key)?.waiting !== true) this.overtake({ kind: 'key', key })
        else s.epoch++
        const waiting = s.waiters.get(key)
        if (waiting !== undefined) for (const wake of [...waiting]) wake()
      }
    } else if (message.kind === 'tags') {
      this.overtake({ kind: 'tags', tags: [...message.tags] })
    } else {
      this.overtake({ kind: 'prefix', prefix: message.prefix })
    }
  }

  /**
   * The bus may have lost messages: every local copy of this cache's keys may be outdated, so all are dropped, and
   * running loads are overtaken (their results may predate what was missed).
   */
  private dropLocal(): void {
    const s = this.s
    if (s.closed) return
    s.epoch++
    for (const tier of s.local) {
      for (const prefix of [this.prefix, this.childPrefix]) {
        tier.store.clear(prefix).catch((err: unknown) => {
          tier.errors++
          this.error('bus', err)
        })
      }
    }
    this.overtake({ kind: 'prefix', prefix: this.prefix })
    this.overtake({ kind: 'prefix', prefix: this.childPrefix })
  }

  /**
   * A load under a cross-process lock. The holder double-checks the shared tier (another process may have just
   * finished), then loads; its lock is released after the write (see `finish`). A caller that finds the lock taken
   * waits for the value to appear in the shared tier — woken by the bus, or by polling — and tries the lock again
   * (its holder may have died), until `wait` runs out; then it loads by itself. A tier that cannot lock (down, open
   * breaker) leaves the in-process single-flight as the only protection.
   */
  private async lockedLoad<T>(
    key: string,
    full: string,
    loader: Loader<T>,
    ctx: Context<T>,
    lock: { ttl: number; wait: number },
    tier: Tier,
    flight: Flight,
  ): Promise<T> {
    const giveUpAt = performance.now() + lock.wait
    let delay = LOCK_POLL_MS
    for (;;) {
      let held: StoreLock | undefined
      try {
        held = await tier.store.lock!(full, lock.ttl)
      } catch (err) {
        tier.errors++
        this.error('lock', err, key)
        if (ctx.signal.aborted) throw ctx.signal.reason
        return callLoader(key, loader, ctx)
      }
      if (held !== undefined) {
        // Aborted meanwhile (hard timeout, close): the flight has finished, so the lock is released here.
        if (ctx.signal.aborted) {
          held.release().catch(noop)
          throw ctx.signal.reason
        }
        // Released by the flight's finish, after the write.
        flight.lock = held
        const done = await this.fromShared(tier, full, key, flight)
        if (done !== undefined) return done.value as T
        if (ctx.signal.aborted) throw ctx.signal.reason
        return callLoader(key, loader, ctx)
      }
      // Closing aborts the signal; a wait that ends after it must not start the loader.
      if (ctx.signal.aborted) throw ctx.signal.reason
      const left = giveUpAt - performance.now()
      if (left <= 0) return callLoader(key, loader, ctx)
      flight.waiting = true
      try {
        await this.waitForKey(full, Math.min(delay, left), ctx.signal)
        if (ctx.signal.aborted) throw ctx.signal.reason
        delay = Math.min(delay * 2, LOCK_POLL_MAX_MS)
        const done = await this.fromShared(tier, full, key, flight)
        if (done !== undefined) return done.value as T
      } finally {
        flight.waiting = false
      }
    }
  }

  /**
   * A fresh entry another process stored in the lock's tier, or undefined (missing, stale, or the tier failed). It
   * is copied into the local tiers unless something was invalidated while it was read. (The bus message that woke
   * this waiter overtook its flight; the entry read after that message is the newer value, so the flight's mark
   * does not apply to it.)
   */
  private async fromShared(tier: Tier, full: string, key: string, flight: Flight): Promise<StoredEntry | undefined> {
    const s = this.s
    const epoch = s.epoch
    let entry: StoredEntry | undefined
    try {
      entry = await tier.store.get(full)
    } catch (err) {
      tier.errors++
      this.error('get', err, key)
      return undefined
    }
    if (entry === undefined || !(s.clock() < entry.freshUntil)) return undefined
    flight.fromShared = entry
    if (s.epoch === epoch && !s.closed) this.copyUp(full, key, entry)
    return entry
  }

  /** Resolves after `ms`, or earlier when the bus says the key was written, or the signal aborts. */
  private waitForKey(full: string, ms: number, signal: AbortSignal): Promise<void> {
    const s = this.s
    return new Promise<void>((resolve) => {
      let set = s.waiters.get(full)
      if (set === undefined) {
        set = new Set()
        s.waiters.set(full, set)
      }
      const waiters = set
      const wake = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', wake)
        waiters.delete(wake)
        if (waiters.size === 0 && s.waiters.get(full) === waiters) s.waiters.delete(full)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      signal.addEventListener('abort', wake, { once: true })
      waiters.add(wake)
    })
  }

  /**
   * A write or invalidation overtakes the loads of the keys it touches: their results (read before it) must not be
   * cached, and callers arriving after it must not join them (read-your-writes), so they are marked and detached
   * from `flights`. A detached load still answers the callers that joined it before the change. Loads detached
   * earlier are already marked, so only the current load of each key needs looking at.
   */
  private overtake(invalidation: Invalidation): void {
    const s = this.s
    s.epoch++
    for (const pending of s.writing) {
      if (pending.touched) continue
      if (invalidation.kind === 'key') pending.touched = pending.full === invalidation.key
      else if (invalidation.kind === 'prefix') pending.touched = pending.full.startsWith(invalidation.prefix)
      else pending.touched = pending.tags?.some((tag) => invalidation.tags.includes(tag)) === true
    }
    // Only running loads can be overtaken; with none, nothing needs remembering.
    if (s.running.size === 0) return
    if (invalidation.kind === 'key') {
      const flight = s.flights.get(invalidation.key)
      if (flight !== undefined) detach(s, flight)
      return
    }
    for (const flight of s.flights.values()) {
      const hit =
        invalidation.kind === 'prefix'
          ? flight.full.startsWith(invalidation.prefix)
          : flightHasTag(flight, invalidation.tags)
      if (hit) detach(s, flight)
    }
    // A loader may push a tag on ctx.tags after this invalidation, for data it read before it: tag invalidations
    // stay in the log until the loads that were running have finished.
    if (invalidation.kind === 'tags') {
      s.log.push(invalidation.tags)
      if (s.log.length > 2 * MAX_LOG) this.compactLog()
    }
  }

  /** Was this load overtaken, or does one of its final tags appear in a tag invalidation since it started? */
  private invalidatedSince(flight: Flight, tags?: readonly string[]): boolean {
    if (flight.overtaken) return true
    if (tags === undefined) return false
    const log = this.s.log
    for (let i = flight.logStart; i < log.length; i++) {
      const invalidated = log[i]!
      if (tags.some((tag) => invalidated.includes(tag))) return true
    }
    return false
  }

  /**
   * Drops the log records no running load needs. A load that would pin more than MAX_LOG records is marked
   * overtaken (its result will not be cached): a bounded log is worth one uncached result.
   */
  private compactLog(): void {
    const s = this.s
    const log = s.log
    const cut = log.length - MAX_LOG
    let keep = log.length
    for (const flight of s.running) {
      if (flight.logStart < cut) flight.overtaken = true
      else if (!flight.overtaken && flight.logStart < keep) keep = flight.logStart
    }
    if (keep === 0) return
    log.splice(0, keep)
    for (const flight of s.running) flight.logStart = Math.max(0, flight.logStart - keep)
  }

  private hit(key: string, stale: boolean): void {
    const m = this.s.metrics
    m.hits++
    if (m.has('hit')) m.emit('hit', { key, namespace: this.namespaceName, stale })
  }

  private serveStale(key: string, reason: CacheEvents['stale']['reason']): void {
    this.hit(key, true)
    const m = this.s.metrics
    m.staleHits++
    if (m.has('stale')) m.emit('stale', { key, namespace: this.namespaceName, reason })
  }

  private miss(key: string): void {
    const m = this.s.metrics
    m.misses++
    if (m.has('miss')) m.emit('miss', { key, namespace: this.namespaceName })
  }

  private loaded(key: string, durationMs: number, ok: boolean, background: boolean): void {
    const m = this.s.metrics
    m.loads++
    m.loadTimeMs += durationMs
    if (!ok) m.loadErrors++
    if (m.has('load')) m.emit('load', { key, namespace: this.namespaceName, durationMs, ok, background })
  }

  private error(operation: string, err: unknown, key?: string): void {
    const m = this.s.metrics
    m.errors++
    if (!m.has('error')) return
    const error = err instanceof Error ? err : new CacheError('E_STORE_UNAVAILABLE', String(err), { cause: err })
    m.emit('error', { key, namespace: this.namespaceName, operation, error })
  }
}

class Context<T> implements LoaderContext<T> {
  skipped = false
  ttl: Duration | undefined = undefined
  grace: Duration | undefined = undefined
  tags: string[] = []
  constructor(
    readonly namespace: string,
    readonly key: string,
    readonly signal: AbortSignal,
    readonly stale: T | undefined,
  ) {}
  skip(): void {
    this.skipped = true
  }
}

/**
 * Namespace names may hold any character. '%', ':' and '.' are escaped, so a name never contains the ':' that ends
 * the namespace part of a key, nor the '.' that joins nested names: 'a' + key 'b:c' is 'a:b:c', namespace 'a:b' +
 * key 'c' is 'a%3Ab:c', and namespace 'a' > 'b' + key 'c' is 'a.b:c'. All differ.
 */
function encodeSegment(name: string): string {
  return /[%:.]/.test(name) ? name.replace(/[%:.]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) : name
}

function detach(s: Shared, flight: Flight): void {
  flight.overtaken = true
  if (s.flights.get(flight.full) === flight) s.flights.delete(flight.full)
}

/** setTimeout, unless the delay is too long for a timer (then: none; the wait is effectively forever). */
function startTimer(fn: () => void, ms: number | undefined): NodeJS.Timeout | undefined {
  if (ms === undefined || ms > MAX_TIMER_MS) return undefined
  return setTimeout(fn, ms)
}

function loaderTimeout(key: string, ms: number): CacheError {
  return new CacheError('E_LOADER_TIMEOUT', `loader for key ${describe(key)} took over ${ms} ms`)
}

/** Tags a load is known to carry while it runs: the call's, and any the loader pushed already (namespaced late). */
function flightHasTag(flight: Flight, tags: readonly string[]): boolean {
  if (flight.callTags?.some((tag) => tags.includes(tag))) return true
  if (flight.ctx.tags.length === 0) return false
  const prefix = flight.prefix
  return flight.ctx.tags.some((tag) => tags.includes(prefix + tag))
}

/** Deletes one key now: synchronously where the store can, else in the background; failures go to `onError`. */
function dropKey(store: Store, full: string, onError: (err: unknown) => void): void {
  try {
    if (store.deleteSync) store.deleteSync(full)
    else store.delete(full).catch(onError)
  } catch (err) {
    onError(err)
  }
}

/** Runs a loader; whatever it throws (synchronously or not) becomes `E_LOADER_ERROR` with the cause. */
function callLoader<T>(key: string, loader: Loader<T>, ctx: LoaderContext<T>): Promise<T> {
  try {
    return Promise.resolve(loader(ctx)).catch((err: unknown) => {
      throw loaderError(key, err)
    })
  } catch (err) {
    return Promise.reject(loaderError(key, err))
  }
}

function parseLock(input: boolean | LockOptions | undefined, fallback: Plan['lock']): Plan['lock'] {
  if (input === undefined) return fallback
  if (input === false) return undefined
  if (input === true) return DEFAULT_LOCK
  if (input === null || typeof input !== 'object') {
    throw new CacheError('E_INVALID_OPTION', `lock must be a boolean or { ttl?, wait? } (got ${describe(input)})`)
  }
  const ttl = parseDuration(input.ttl ?? DEFAULT_LOCK.ttl, 'lock.ttl')
  const wait = parseDuration(input.wait ?? DEFAULT_LOCK.wait, 'lock.wait')
  if (!(ttl > 0) || ttl > MAX_TIMER_MS) {
    throw new CacheError('E_INVALID_OPTION', `lock.ttl must be > 0 and at most ${MAX_TIMER_MS} ms (got ${ttl})`)
  }
  return { ttl, wait }
}

function syncGetter(store: Store): Shared['getIn'] {
  if (store.getSyncIn) return store.getSyncIn.bind(store)
  const getSync = store.getSync?.bind(store)
  return getSync && ((space, key) => getSync(space + key))
}

function syncSetter(store: Store): Shared['setIn'] {
  if (store.setSyncIn) return store.setSyncIn.bind(store)
  const setSync = store.setSync?.bind(store)
  return setSync && ((space, key, entry) => setSync(space + key, entry))
}

function invalidKey(key: unknown, max: number): CacheError {
  if (typeof key !== 'string') return new CacheError('E_INVALID_KEY', `key must be a string (got ${describe(key)})`)
  if (key.length === 0) return new CacheError('E_INVALID_KEY', "key must be a non-empty string (got '')")
  return new CacheError('E_INVALID_KEY', `key is ${key.length} chars, over maxKeyLength ${max} (${describe(key)})`)
}

function loaderError(key: string, err: unknown): CacheError {
  if (isCacheError(err, 'E_LOADER_TIMEOUT')) return err
  const detail = err instanceof Error ? err.message : `threw a non-Error: ${describe(err)}`
  return new CacheError('E_LOADER_ERROR', `loader for key ${describe(key)} failed: ${detail}`, { cause: err })
}

function checkJitter(jitter: number): number {
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
    throw new CacheError('E_INVALID_OPTION', `jitter must be a fraction between 0 and 1 (got ${describe(jitter)})`)
  }
  return jitter
}

function parseBeta(input: boolean | number | undefined): number {
  if (input === undefined || input === false) return 0
  if (input === true) return 1
  if (typeof input === 'number' && input >= 0 && Number.isFinite(input)) return input
  throw new CacheError('E_INVALID_OPTION', `earlyRefresh must be a boolean or a number >= 0 (got ${describe(input)})`)
}

/**
 * XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention"): refresh when
 * now - cost * beta * ln(rand) >= expiry. The chance rises as expiry nears and with how long the loader takes.
 */
function refreshEarly(entry: StoredEntry, now: number, beta: number): boolean {
  const cost = Math.max(entry.cost ?? 0, 1)
  return now - cost * beta * Math.log(Math.random()) >= entry.freshUntil
}

function stripUndefined<T extends object>(item: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(item)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}
