import type { TierStats } from './tiers.js'
import type { CacheEventName, CacheEvents, CacheStats, StoreStats } from './types.js'

type Listener<E extends CacheEventName> = (payload: CacheEvents[E]) => void

/** Counters and listeners shared by a cache and all its namespaces. */
export class Metrics {
  hits = 0
  misses = 0
  staleHits = 0
  coalesced = 0
  sets = 0
  deletes = 0
  errors = 0
  loads = 0
  loadErrors = 0
  loadTimeMs = 0
  private readonly listeners: { [E in CacheEventName]?: Listener<E>[] } = {}

  /** Cheap check before building an event payload on a hot path. */
  has(event: CacheEventName): boolean {
    const list = this.listeners[event]
    return list !== undefined && list.length > 0
  }

  on<E extends CacheEventName>(event: E, listener: Listener<E>): () => void {
    const list = (this.listeners[event] ?? []) as Listener<E>[]
    // Copy on write, so a listener that unsubscribes while an event is being emitted does not skip its neighbour.
    this.listeners[event] = [...list, listener] as never
    return () => {
      const current = (this.listeners[event] ?? []) as Listener<E>[]
      this.listeners[event] = current.filter((l) => l !== listener) as never
    }
  }

  emit<E extends CacheEventName>(event: E, payload: CacheEvents[E]): void {
    const list = this.listeners[event] as Listener<E>[] | undefined
    if (list === undefined) return
    for (const listener of list) {
      try {
        listener(payload)
      } catch (err) {
        // A broken listener must not break the cache call that emitted the event.
        process.emitWarning(`[@cache/core] a '${event}' listener threw: ${String(err)}`, 'CacheListenerWarning')
      }
    }
  }

  snapshot(tiers: TierStats[]): CacheStats {
    const reads = this.hits + this.misses
    return {
      hits: this.hits,
      misses: this.misses,
      hitRate: reads === 0 ? 0 : this.hits / reads,
      staleHits: this.staleHits,
      coalesced: this.coalesced,
      sets: this.sets,
      deletes: this.deletes,
      evictions: sum(tiers, 'evictions'),
      expirations: sum(tiers, 'expirations'),
      errors: this.errors,
      loads: this.loads,
      loadErrors: this.loadErrors,
      loadTimeMs: this.loadTimeMs,
      size: tiers[0]?.size ?? 0,
      bytes: tiers[0]?.bytes ?? 0,
      tiers,
    }
  }
}

function sum(tiers: StoreStats[], field: keyof StoreStats): number {
  let total = 0
  for (const tier of tiers) total += tier[field]
  return total
}
