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
  /**
   * Cross-process mutual exclusion for one load (`getOrSet(…, { lock: true })`): tries once to take a lock named
   * `key` for `ttlMs`. Resolves to the held lock, or `undefined` when another holder has it. Rejects when the store
   * cannot answer (the cache then falls back to its in-process single-flight).
   */
  lock?(key: string, ttlMs: number): Promise<StoreLock | undefined>
  /**
   * A durable queue for write-behind, kept in this store (Redis: a stream with a consumer group), or `undefined`
   * when the store cannot keep one. `name` is unique per cache namespace.
   */
  writeQueue?(name: string): WriteQueue | undefined
}

/** A lock taken through `Store.lock`. */
export interface StoreLock {
  /** Releases the lock if this holder still has it (compare-and-delete); never throws. */
  release(): Promise<void>
}

/**
 * What one cache instance tells the others through a bus. Keys, tags and prefixes are the stores' (namespace
 * included). Values are never sent: a receiver drops its in-process copies and reads the shared tier again.
 */
export type BusMessage =
  /** These keys were written or deleted. */
  | { readonly kind: 'keys'; readonly keys: readonly string[] }
  /** Entries carrying any of these tags were invalidated. */
  | { readonly kind: 'tags'; readonly tags: readonly string[] }
  /** Every key starting with `prefix` was cleared ('' = everything). */
  | { readonly kind: 'clear'; readonly prefix: string }

export interface BusHandlers {
  /** A message from another instance (never one this bus published itself). */
  message(message: BusMessage): void
  /**
   * Messages may have been lost (the subscription dropped, or came back after a gap): the receiver cannot know what
   * changed, so it must drop every in-process copy it keeps. Called when the loss is detected and again once the
   * subscription is back.
   */
  gap(): void
}

/**
 * Carries invalidations between cache instances (see `redisBus` in `@cache/core/redis`). One bus may serve several
 * caches of a process; each `subscribe` returns its own unsubscribe, and the bus frees its connection after the last.
 */
export interface Bus {
  readonly name: string
  /** Sends to every other subscribed instance. Rejects when the message could not be sent. */
  publish(message: BusMessage): Promise<void>
  /** Resolves once subscribed, to the unsubscribe function. */
  subscribe(handlers: BusHandlers): Promise<() => Promise<void>>
}

/** One write waiting for the write-behind flush. */
export interface WriteBehindItem {
  /** The cache's namespace path ('app' or 'app.tenant:42'). */
  readonly namespace: string
  /** The key as the caller gave it (without namespace). */
  readonly key: string
  readonly value: unknown
  /** Flushes tried and failed so far. */
  readonly attempts: number
  /** When `writeBehind` queued it, ms since the epoch. */
  readonly queuedAt: number
}

/** A queue of write-behind items; ids are the queue's own. */
export interface WriteQueue {
  readonly name: string
  /** Resolves once the items are durably queued (as durable as the queue is). */
  push(items: readonly WriteBehindItem[]): Promise<void>
  /**
   * Takes up to `max` items for this consumer, including items other consumers took and left unacknowledged for
   * longer than the queue's claim time (their process died). Resolves to [] when nothing is ready.
   */
  take(max: number): Promise<{ id: string; item: WriteBehindItem }[]>
  /** The items are done (flushed, or moved elsewhere): remove them. */
  ack(ids: readonly string[]): Promise<void>
  /** Puts an item back for a later attempt (attempts already incremented) and acks `id`. */
  retry(id: string, item: WriteBehindItem, notBefore: number): Promise<void>
  /** Moves an item to the dead-letter list and acks `id`. */
  dead(id: string, item: WriteBehindItem, error: string): Promise<void>
  deadLetters(): Promise<{ item: WriteBehindItem; error: string }[]>
  /** Items queued and not yet acknowledged (an estimate for remote queues). */
  size(): Promise<number>
  close?(): Promise<void>
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
  /** A remote tier's circuit breaker changed state. */
  breaker: { tier: string; state: BreakerState; reason: string }
  /** A write-behind item gave up after its last attempt and went to the dead-letter list. */
  deadLetter: { key: string; namespace: string; attempts: number; error: Error }
}
export type BreakerState = 'closed' | 'open' | 'half-open'
export type CacheEventName = keyof CacheEvents
