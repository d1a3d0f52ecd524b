import type { Duration } from './duration.js'

/** What a tier keeps for one key. Times are ms since the epoch. */
export interface StoredEntry {
  /** The cached value: the object itself in memory tiers; bytes (through the codec) in remote tiers. */
  readonly value: unknown
  /** When the value was produced. */
  readonly createdAt: number
  /** Until then the entry is fresh; after it, stale (servable only within grace). */
  readonly freshUntil: number
  /** After this the entry is gone: `freshUntil + grace`. Stores expire the entry at this time. */
  readonly staleUntil: number
  /** Tags (already namespaced by the cache) that `invalidateTags` matches. */
  readonly tags?: readonly string[] | undefined
  /** How long the loader took to produce the value, in ms (the `delta` of probabilistic early refresh). */
  readonly cost?: number | undefined
}

/** What a store reports about itself; every field is a running total or a current size. */
export interface StoreStats {
  size: number
  bytes: number
  evictions: number
  expirations: number
}

/** Why a store dropped an entry without being asked to. */
export type StoreRemovalReason = 'evict' | 'expire'
export type StoreListener = (reason: StoreRemovalReason, key: string) => void

/**
 * The contract every store implements. Five required methods; the rest are optional capabilities the cache uses
 * when present (batch calls, tags, a synchronous fast path for in-process stores).
 */
export interface Store {
  readonly name: string
  get(key: string): Promise<StoredEntry | undefined>
  /** Stores the entry; the store expires it at `entry.staleUntil`. */
  set(key: string, entry: StoredEntry): Promise<void>
  delete(key: string): Promise<boolean>
  /** Drops every key starting with `prefix`, or everything the store holds when no prefix is given. */
  clear(prefix?: string): Promise<void>
  getMany?(keys: readonly string[]): Promise<(StoredEntry | undefined)[]>
  setMany?(entries: readonly (readonly [string, StoredEntry])[]): Promise<void>
  deleteMany?(keys: readonly string[]): Promise<number>
  /** Drops every entry carrying one of the tags; resolves to how many were dropped. */
  deleteTagged?(tags: readonly string[]): Promise<number>
  close?(): Promise<void>
  stats?(): StoreStats
  /** Subscribes to evictions and expirations; returns the unsubscribe function. */
  onRemove?(listener: StoreListener): () => void
  /**
   * In-process stores answer synchronously; the cache uses these to skip a promise per call. Sync reads return only
   * live entries (before `staleUntil`): the cache does not check that again on its hot path.
   */
  getSync?(key: string): StoredEntry | undefined
  setSync?(key: string, entry: StoredEntry): void
  deleteSync?(key: string): boolean
  /**
   * The cache's hot path, for in-process stores: `getSync(space + key)` without joining the strings, where `space`
   * is the joined key up to and including its first ':' (the cache's namespace prefix). The result may be an
   * object the store reuses: it is valid until the next call into the store, so read it at once.
   */
  getSyncIn?(space: string, key: string): StoredEntry | undefined
  /** `setSync(space + key, entry)`, with `space` as for `getSyncIn`. */
  setSyncIn?(space: string, key: string, entry: StoredEntry): void
}

/** Options that shape how long an entry lives. */
export interface EntryOptions {
  /** How long the entry is fresh. Default: the cache's `ttl` (1h unless set). */
  ttl?: Duration
  /** How long after `ttl` a stale entry may still be served (stale-while-revalidate, stale-if-error). Default 0. */
  grace?: Duration
  /** Tags for `invalidateTags`. */
  tags?: readonly string[]
}

export interface GetOrSetOptions extends EntryOptions {
  /**
   * Soft timeout. With a stale value at hand, wait at most this long for the loader, then answer with the stale
   * value and let the loader finish in the background. Default 0: a stale value is returned at once.
   */
  timeout?: Duration
  /** Reject with `E_LOADER_TIMEOUT` and abort the loader's signal after this long. Default: none. */
  hardTimeout?: Duration
  /** Randomise the TTL by ± this fraction (0..1) so keys written together do not expire together. */
  jitter?: number
  /**
   * Probabilistic early refresh (XFetch): refresh a fresh entry in the background before it expires, with a
   * probability that rises as expiry nears and with the loader's cost. `true` = beta 1; a number sets beta.
   */
  earlyRefresh?: boolean | number
}

/** Passed to a loader: how to cancel, the stale value if any, and knobs to shape what gets cached. */
export interface LoaderContext<T = unknown> {
  /** The key as the caller gave it (without namespace). */
  readonly key: string
  /** Aborted when `hardTimeout` elapses or the cache closes. */
  readonly signal: AbortSignal
  /** The stale value being refreshed, when there is one. */
  readonly stale: T | undefined
  /** Do not cache this result (it is still returned to the callers). */
  skip(): void
  /** Overrides the TTL for this result. */
  ttl: Duration | undefined
  /** Overrides the grace for this result. */
  grace: Duration | undefined
  /** Tags for this result, added to the call's `tags`. */
  tags: string[]
}

export type Loader<T> = (ctx: LoaderContext<T>) => T | Promise<T>

export interface CacheStats {
  hits: number
  misses: number
  /** hits / (hits + misses), 0 when there were no reads. */
  hitRate: number
  /** Stale values served (within grace). Counted in `hits` too. */
  staleHits: number
  /** Misses that joined a load already running for the key (single-flight) instead of starting one. */
  coalesced: number
  sets: number
  deletes: number
  evictions: number
  expirations: number
  errors: number
  loads: number
  loadErrors: number
  /** Total time spent in loaders, ms. */
  loadTimeMs: number
  size: number
  bytes: number
  tiers: ({ name: string } & StoreStats)[]
}

export interface CacheEvents {
  hit: { key: string; namespace: string; stale: boolean }
  miss: { key: string; namespace: string }
  set: { key: string; namespace: string }
  delete: { key: string; namespace: string }
  /** `key` is the store's key (namespace included): stores drop entries outside of any call. */
  evict: { key: string; tier: string }
  expire: { key: string; tier: string }
  error: { key?: string; namespace: string; operation: string; error: Error }
  stale: { key: string; namespace: string; reason: 'grace' | 'error' | 'timeout' }
  load: { key: string; namespace: string; durationMs: number; ok: boolean; background: boolean }
}
export type CacheEventName = keyof CacheEvents
