import type { Duration } from './duration.js'
import type { TierStats } from './tiers.js'

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
  /**
   * When `writeBehind` queued it, ms since the epoch. Also the write's version: a sink that must never let an older
   * write overwrite a newer one (possible after a retry or a crash, see `WriteQueue`) can compare it.
   */
  readonly queuedAt: number
}

/** An item `WriteQueue.take` handed to a consumer, which must `ack`, `retry` or `dead` it by `id`. */
export interface TakenWrite {
  /** The queue's id for this delivery (a stream entry id on Redis). */
  readonly id: string
  readonly item: WriteBehindItem
  /**
   * Not to be flushed before this time, ms since the epoch: the backoff of a retried item (0 for a fresh one).
   * `take` hands items over in queue order whatever this says; the consumer holds them until then.
   */
  readonly notBefore: number
  /**
   * Set when the queued bytes cannot be read back (a corrupted entry): `item` then carries what could be recovered
   * (its `value` is the raw bytes) and the consumer dead-letters it with this error instead of flushing it.
   */
  readonly error?: Error | undefined
}

/** An item that gave up: its last attempt's error, and when. */
export interface DeadLetter {
  readonly item: WriteBehindItem
  readonly error: string
  /** ms since the epoch. */
  readonly diedAt: number
}

/**
 * A queue of write-behind items with at-least-once delivery: an item stays in the queue, owned by the consumer that
 * took it, until it is acknowledged (`ack`, `retry`, `dead`). An owner that stops renewing its items (`touch`) for
 * `claimAfter` ms is presumed dead and its items go to the next consumer that calls `take`, so an item may be
 * delivered more than once, and after a retry or a takeover an older write may come after a newer one.
 */
export interface WriteQueue {
  readonly name: string
  /** Resolves once the items are queued, as durably as the queue is (in process memory for `memoryQueue`). */
  push(items: readonly WriteBehindItem[]): Promise<void>
  /**
   * Takes up to `max` items for this consumer, oldest first: first items other consumers took and left
   * unacknowledged and untouched for longer than `claimAfterMs` (default: the queue's own setting), then items
   * never taken. Resolves to [] when there are none. Items are handed over whatever their `notBefore`.
   */
  take(max: number, claimAfterMs?: number): Promise<TakenWrite[]>
  /** Renews this consumer's hold on items it took (resets their idle time), so no other consumer claims them. */
  touch?(ids: readonly string[]): Promise<void>
  /** The items are done (flushed, or superseded by a newer write of the same key): remove them. */
  ack(ids: readonly string[]): Promise<void>
  /** Queues `item` again (attempts already incremented), not to be flushed before `notBefore`, and acks `id`. */
  retry(id: string, item: WriteBehindItem, notBefore: number): Promise<void>
  /** Moves an item to the dead-letter list and acks `id`. */
  dead(id: string, item: WriteBehindItem, error: string): Promise<void>
  /** The dead letters kept (the most recent ones, up to the queue's cap), oldest first. */
  deadLetters(): Promise<DeadLetter[]>
  /** Items queued and not yet acknowledged, taken or not. */
  size(): Promise<number>
  /** Stops the queue; it does not close a client it was given. */
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
  /**
   * Cross-process stampede protection: on a miss, take a lock in the first shared tier that can lock (Redis), so
   * one process in the whole fleet runs the loader while the others wait for its value (woken by the bus, else by
   * short polling) and load by themselves only after `wait`. When the tier cannot answer, the in-process
   * single-flight still applies. `true` = `{ ttl: '10s', wait: '10s' }`. Default: the cache's `lock` (false).
   */
  lock?: boolean | LockOptions
}

/** Cross-process lock of one load (see `GetOrSetOptions.lock`). */
export interface LockOptions {
  /**
   * How long the lock is held at most; it expires by itself if its holder dies. Keep it above the loader's usual
   * time: a load outliving it may be repeated by another process. Default '10s'.
   */
  ttl?: Duration
  /** Longest a caller waits for another process's load before it loads by itself. Default '10s'. */
  wait?: Duration
}

/** Passed to a loader: how to cancel, the stale value if any, and knobs to shape what gets cached. */
export interface LoaderContext<T = unknown> {
  /** The key as the caller gave it (without namespace). */
  readonly key: string
  /**
   * The namespace path of the cache that started the load ('app' or 'app.tenant:42'). A read-through loader shared
   * by several namespaces (tenants) must use it: the key alone does not say whose data to load.
   */
  readonly namespace: string
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
  /** Each tier's store stats plus its own hits, misses and errors (and breaker state for remote tiers). */
  tiers: TierStats[]
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
