import { exactNow, nowNear } from './clock.js'
import { type Duration, parseDuration, parseOptionalDuration } from './duration.js'
import { CacheError, describe, isCacheError } from './errors.js'
import { Metrics } from './metrics.js'
import { MAX_TIMER_MS } from './stores/deadline.js'
import { memoryStore } from './stores/memory.js'
import type {
  CacheEventName,
  CacheEvents,
  CacheStats,
  EntryOptions,
  GetOrSetOptions,
  Loader,
  LoaderContext,
  Store,
  StoredEntry,
} from './types.js'

export interface CacheOptions {
  /** Where entries live. Default: `memoryStore()` (LRU, 10 000 entries). */
  store?: Store
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
  /** Longest key accepted, in UTF-16 code units (namespace not included). Default 1024. */
  maxKeyLength?: number
  /** Time source (ms since epoch). Default `Date.now`. */
  clock?: () => number
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
}

/** What a namespace shares with its root: the store, the in-flight loads, the counters and listeners. */
interface Shared {
  store: Store
  /** The cache made the store (the default memory store), so closing the cache closes it. */
  ownsStore: boolean
  /** The store's synchronous path, `(namespace prefix, key)`, when it has one (in-process stores). */
  getIn: ((space: string, key: string) => StoredEntry | undefined) | undefined
  setIn: ((space: string, key: string, entry: StoredEntry) => void) | undefined
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
}

type Invalidation = { kind: 'key'; key: string } | { kind: 'prefix'; prefix: string } | { kind: 'tags'; tags: string[] }

const DEFAULT_NAMESPACE = 'cache'
/** Tag invalidations kept for running loads; past this, the oldest loads give up caching their result. */
const MAX_LOG = 1024
const DEFAULT_MAX_KEY_LENGTH = 1024
const noop = () => {}

/**
 * Creates a cache. All options are optional; durations are checked here, so a typo fails at start-up.
 *
 * @example
 * const cache = createCache({ store: memoryStore({ maxEntries: 10_000 }), namespace: 'app', ttl: '5m', grace: '1h' })
 * const user = await cache.getOrSet(`users:${id}`, ({ signal }) => db.user(id, { signal }), { tags: [`user:${id}`] })
 */
export function createCache(options: CacheOptions = {}): Cache {
  // The default store shares the cache's clock, so a test clock drives both.
  const store = options.store ?? memoryStore(options.clock ? { clock: options.clock } : {})
  if (typeof store?.get !== 'function' || typeof store.set !== 'function') {
    throw new CacheError('E_INVALID_OPTION', `store must implement the Store contract (got ${describe(store)})`)
  }
  const jitter = options.jitter ?? 0
  checkJitter(jitter)
  const maxKeyLength = options.maxKeyLength ?? DEFAULT_MAX_KEY_LENGTH
  if (!Number.isInteger(maxKeyLength) || maxKeyLength < 1) {
    throw new CacheError('E_INVALID_OPTION', `maxKeyLength must be an integer >= 1 (got ${describe(maxKeyLength)})`)
  }
  const metrics = new Metrics()
  const shared: Shared = {
    store,
    ownsStore: options.store === undefined,
    getIn: syncGetter(store),
    setIn: syncSetter(store),
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
    },
    maxKeyLength,
    metrics,
    flights: new Map(),
    running: new Set(),
    log: [],
    closed: false,
    unsubscribe: noop,
  }
  if (store.onRemove) {
    shared.unsubscribe = store.onRemove((reason, key) => {
      if (metrics.has(reason)) metrics.emit(reason, { key, tier: store.name })
    })
  }
  return new Cache(shared, [options.namespace ?? DEFAULT_NAMESPACE])
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

  /** Use `createCache()`; a namespace view comes from `namespace()`. */
  constructor(shared: Shared, path: readonly string[]) {
    for (const name of path) {
      if (typeof name !== 'string' || name.length === 0) {
        throw new CacheError('E_INVALID_OPTION', `namespace must be a non-empty string (got ${describe(name)})`)
      }
    }
    this.s = shared
    this.path = path
    this.namespaceName = path.join('.')
    const encoded = path.map(encodeSegment).join('.')
    this.prefix = `${encoded}:`
    this.childPrefix = `${encoded}.`
  }

  /**
   * Returns the fresh value, or `undefined` on a miss (stale entries are not returned; use `getOrSet` for grace).
   *
   * @example
   * const user = await cache.get<User>('users:42')
   */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    this.checkKey(key)
    // No await between reading an in-process entry and using it: it may be the store's shared view.
    const entry = this.s.getIn !== undefined ? this.readNow(key) : await this.read(key)
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
    await this.write(entry, key, true)
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
    if (this.s.getIn !== undefined) return this.answer(key, this.readNow(key), loader, options)
    return this.read(key).then((entry) => this.answer(key, entry, loader, options))
  }

  /** Fresh entry present? Counts nothing. */
  async has(key: string): Promise<boolean> {
    this.checkKey(key)
    const entry = this.s.getIn !== undefined ? this.readNow(key) : await this.read(key)
    return entry !== undefined && this.s.clockNear(entry.freshUntil) < entry.freshUntil
  }

  /** Deletes one key; resolves to whether a live entry was there. */
  async delete(key: string): Promise<boolean> {
    const full = this.fullKey(key)
    this.overtake({ kind: 'key', key: full })
    const store = this.s.store
    let existed: boolean
    try {
      existed = store.deleteSync ? store.deleteSync(full) : await store.delete(full)
    } catch (err) {
      this.error('delete', err, key)
      throw err
    }
    this.s.metrics.deletes++
    if (this.s.metrics.has('delete')) this.s.metrics.emit('delete', { key, namespace: this.namespaceName })
    return existed
  }

  /** Fresh values for several keys, in order (`undefined` for each miss). */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const fulls = this.fullKeys(keys)
    let entries: (StoredEntry | undefined)[]
    try {
      entries = this.s.store.getMany
        ? await this.s.store.getMany(fulls)
        : await Promise.all(fulls.map((full) => this.s.store.get(full)))
    } catch (err) {
      this.error('getMany', err)
      entries = []
    }
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
    if (this.s.store.setMany) {
      try {
        await this.s.store.setMany(writes.map(([full, entry]) => [full, entry] as const))
      } catch (err) {
        // Some items may be stored, some not: the error says so, and none is counted as set.
        this.error('setMany', err)
        throw err
      }
      this.s.metrics.sets += writes.length
      if (this.s.metrics.has('set'))
        for (const [, , key] of writes) this.s.metrics.emit('set', { key, namespace: this.namespaceName })
      return
    }
    for (const [, entry, key] of writes) await this.write(entry, key, true)
  }

  /** Deletes several keys; resolves to how many live entries were dropped. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    const fulls = this.fullKeys(keys)
    for (const full of fulls) this.overtake({ kind: 'key', key: full })
    const store = this.s.store
    let count = 0
    try {
      if (store.deleteMany) count = await store.deleteMany(fulls)
      else for (const full of fulls) if (await store.delete(full)) count++
    } catch (err) {
      this.error('deleteMany', err)
      throw err
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
    const store = this.s.store
    if (!store.deleteTagged) {
      throw new CacheError('E_UNSUPPORTED', `store '${store.name}' does not support tags (no deleteTagged)`)
    }
    this.overtake({ kind: 'tags', tags: full })
    return store.deleteTagged(full)
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
  namespace(name: string): Cache {
    return new Cache(this.s, [...this.path, name])
  }

  /** Drops every key of this namespace and of its child namespaces; nothing outside it. */
  async clear(): Promise<void> {
    this.checkOpen()
    this.overtake({ kind: 'prefix', prefix: this.prefix })
    this.overtake({ kind: 'prefix', prefix: this.childPrefix })
    await this.s.store.clear(this.prefix)
    await this.s.store.clear(this.childPrefix)
  }

  /** Counters since creation, shared by all namespaces of this cache, plus each tier's own. */
  stats(): CacheStats {
    return this.s.metrics.snapshot([this.s.store])
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
    const closed = new CacheError('E_CLOSED', 'the cache was closed while this loader ran')
    for (const flight of [...s.running]) flight.controller.abort(closed)
    s.flights.clear()
    if (s.ownsStore) await s.store.close?.()
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
  private readNow(key: string): StoredEntry | undefined {
    try {
      return this.s.getIn!(this.prefix, key)
    } catch (err) {
      this.error('get', err, key)
      return undefined
    }
  }

  /** Reads one entry from the store; a failing store counts as a miss (fail-open) and is reported as an error. */
  private async read(key: string): Promise<StoredEntry | undefined> {
    try {
      const entry = await this.s.store.get(this.prefix + key)
      if (entry !== undefined && this.s.clockNear(entry.staleUntil) >= entry.staleUntil) return undefined
      return entry
    } catch (err) {
      this.error('get', err, key)
      return undefined
    }
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
            if (!s.flights.has(full)) this.load(key, full, loader, this.plan(options), value, true).catch(noop)
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
    const ctx = new Context<T>(key, controller.signal, stale)
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
    }

    const run = new Promise<T>((resolve, reject) => {
      // Aborting (hard timeout, close) settles the callers at once, whether or not the loader honours the signal.
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true })
      if (plan.hardTimeout !== undefined) {
        const ms = plan.hardTimeout
        timer = startTimer(() => controller.abort(loaderTimeout(key, ms)), ms)
      }
      try {
        Promise.resolve(loader(ctx)).then(resolve, (err) => reject(loaderError(key, err)))
      } catch (err) {
        reject(loaderError(key, err))
      }
    })

    const finish = () => {
      if (timer !== undefined) clearTimeout(timer)
      if (s.flights.get(full) === flight) s.flights.delete(full)
      s.running.delete(flight)
      // The log serves running loads only: empty it with the last one, and keep it short while loads overlap.
      if (s.running.size === 0) s.log.length = 0
      else if (s.log.length > MAX_LOG) this.compactLog()
    }
    const promise = run.then(
      async (value) => {
        const durationMs = performance.now() - started
        this.loaded(key, durationMs, true, background)
        if (value !== undefined && !ctx.skipped && !s.closed && !this.invalidatedSince(flight)) {
          try {
            const entry = this.makeEntry(value, plan, ctx, durationMs)
            if (!this.invalidatedSince(flight, entry.tags)) await this.write(entry, key, false)
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

  private async write(entry: StoredEntry, key: string, rethrow: boolean): Promise<void> {
    try {
      if (this.s.setIn !== undefined) this.s.setIn(this.prefix, key, entry)
      else await this.s.store.set(this.prefix + key, entry)
    } catch (err) {
      this.error('set', err, key)
      if (rethrow) throw err
      return
    }
    this.s.metrics.sets++
    if (this.s.metrics.has('set')) this.s.metrics.emit('set', { key, namespace: this.namespaceName })
  }

  /**
   * A write or invalidation overtakes the loads of the keys it touches: their results (read before it) must not be
   * cached, and callers arriving after it must not join them (read-your-writes), so they are marked and detached
   * from `flights`. A detached load still answers the callers that joined it before the change. Loads detached
   * earlier are already marked, so only the current load of each key needs looking at.
   */
  private overtake(invalidation: Invalidation): void {
    const s = this.s
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
