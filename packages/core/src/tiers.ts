// The tiers of one cache: L1 (usually in-process) down to Ln (usually shared). Reads go down until a tier has a live
// entry and copy it back up into the faster tiers; writes and invalidations go to every tier. The Cache keeps the
// semantics (freshness, grace, loads, events); this file only knows where entries live.

import { type BreakerOptions, type BreakerStats, breakerStore, CircuitBreaker } from './breaker.js'
import { type Duration, parseOptionalDuration } from './duration.js'
import { CacheError, describe, isCacheError } from './errors.js'
import type { BreakerState, Store, StoredEntry, StoreStats } from './types.js'

/** One tier with its own settings. A bare `Store` in `tiers` is the same as `{ store }`. */
export interface TierOptions {
  store: Store
  /**
   * Longest an entry lives in this tier, counted from when it is written here (fresh and stale time together). Use it
   * to keep L1 copies short-lived, e.g. '30s' in memory over '1h' in Redis. Default: no cap.
   */
  maxTtl?: Duration
  /**
   * Is this tier private to the process (dropped on bus messages, written last)? Default: true for stores with a
   * synchronous path (in-process stores), false otherwise (shared by every instance).
   */
  local?: boolean
  /**
   * The circuit breaker of a shared tier: past a failure rate it stops calling the tier for a while (calls fail at
   * once, so the cache answers from the other tiers or the loader), then lets a probe through. `false` turns it off.
   * Local tiers have none. Default: `BreakerOptions`' defaults (50 % of ≥ 10 calls in 10 s, open for 5 s).
   */
  breaker?: BreakerOptions | false
}

export type TierInput = Store | TierOptions

/** Per-tier counters, on top of the store's own stats. */
export interface TierStats extends StoreStats {
  name: string
  /** Reads this tier answered with a live entry. */
  hits: number
  /** Reads this tier could not answer (and passed to the next tier, or to the loader). */
  misses: number
  /** Calls to this tier that failed. */
  errors: number
  /** The circuit breaker of a shared tier. */
  breaker?: BreakerStats
}

export class Tier {
  readonly name: string
  readonly local: boolean
  readonly maxTtl: number | undefined
  hits = 0
  misses = 0
  errors = 0
  /** The store, behind the breaker for shared tiers. */
  readonly store: Store
  readonly breaker: CircuitBreaker | undefined

  constructor(
    input: TierInput,
    index: number,
    onBreaker?: (tier: string, state: BreakerState, reason: string) => void,
  ) {
    const options: TierOptions = isStore(input) ? { store: input } : (input as TierOptions)
    const store = options?.store
    if (!isStore(store)) {
      throw new CacheError(
        'E_INVALID_OPTION',
        `tiers[${index}] must be a Store or { store, maxTtl?, local? } (got ${describe(input)})`,
      )
    }
    this.name = store.name
    this.local = options.local ?? typeof store.getSync === 'function'
    if (!this.local && options.breaker !== false) {
      const name = this.name
      this.breaker = new CircuitBreaker(name, options.breaker ?? {}, (state, reason) =>
        onBreaker?.(name, state, reason),
      )
      this.store = breakerStore(store, this.breaker)
    } else {
      this.breaker = undefined
      this.store = store
    }
    this.maxTtl = parseOptionalDuration(options.maxTtl, `tiers[${index}].maxTtl`)
    if (this.maxTtl !== undefined && !(this.maxTtl > 0)) {
      throw new CacheError('E_INVALID_OPTION', `tiers[${index}].maxTtl must be > 0 (got ${describe(options.maxTtl)})`)
    }
  }

  /** The entry as this tier should keep it: within its `maxTtl` from `now`. */
  cap(entry: StoredEntry, now: number): StoredEntry {
    if (this.maxTtl === undefined) return entry
    const until = now + this.maxTtl
    if (entry.staleUntil <= until) return entry
    return { ...entry, freshUntil: Math.min(entry.freshUntil, until), staleUntil: until }
  }

  stats(): TierStats {
    const own = this.store.stats?.() ?? { size: 0, bytes: 0, evictions: 0, expirations: 0 }
    const stats: TierStats = { name: this.name, ...own, hits: this.hits, misses: this.misses, errors: this.errors }
    if (this.breaker !== undefined) stats.breaker = this.breaker.stats()
    return stats
  }
}

export function isStore(value: unknown): value is Store {
  const store = value as Store | undefined
  return typeof store?.get === 'function' && typeof store.set === 'function'
}

/**
 * A failure that says the data was refused (not that the tier is unreachable): the write is not attempted on the
 * other tiers either, so no tier holds a value another one refused.
 */
export function isDataError(err: unknown): boolean {
  return (
    isCacheError(err, 'E_SERIALIZE') || isCacheError(err, 'E_VALUE_TOO_LARGE') || isCacheError(err, 'E_INVALID_VALUE')
  )
}
