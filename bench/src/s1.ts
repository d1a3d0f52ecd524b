import { setTimeout as sleep } from 'node:timers/promises'
import { createCache, memoryStore } from '@cache/core'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { createCache as createCacheManager } from 'cache-manager'
import type { Kind } from './harness.js'

export const CALLERS = 1_000
export const LOADER_MS = 50

/** What one stampede produced. */
export interface StampedeOutcome {
  loaderCalls: number
  callers: number
  /** Callers whose result carried the loader's value. */
  gotValue: number
  /** Wall time of the whole stampede, for information only (never asserted). */
  ms: number
  results: unknown[]
}

export interface StampedeRow {
  name: string
  kind: Kind
  loaderCalls: number
  callers: number
  gotValue: number
  ms: number
}

export interface StampedeResult {
  type: 'stampede'
  id: 'S1'
  title: string
  rows: StampedeRow[]
  notes: string[]
}

/** A `getOrSet` as each library spells it. */
export type GetOrSet = (key: string, loader: () => Promise<{ token: string }>) => Promise<unknown>

/**
 * Fires `callers` concurrent `getOrSet` calls on one cold key, with a loader that takes `loaderMs`. A cache with
 * single-flight runs the loader once and hands its value to every caller.
 */
export async function stampede(getOrSet: GetOrSet, callers = CALLERS, loaderMs = LOADER_MS): Promise<StampedeOutcome> {
  const token = `s1-${process.hrtime.bigint()}`
  const key = `stampede:${token}`
  let loaderCalls = 0
  const loader = async () => {
    loaderCalls++
    await sleep(loaderMs)
    return { token }
  }
  const start = performance.now()
  const calls: Promise<unknown>[] = []
  for (let i = 0; i < callers; i++) calls.push(getOrSet(key, loader))
  const results = await Promise.all(calls)
  const ms = performance.now() - start
  // Some libraries hand waiters a deserialized copy, so the value is recognised by content, not identity.
  const gotValue = results.filter((r) => (r as { token?: unknown } | undefined)?.token === token).length
  return { loaderCalls, callers, gotValue, ms, results }
}

/** S1: ours, then bentocache and cache-manager for comparison. */
export async function s1(): Promise<StampedeResult> {
  const rows: StampedeRow[] = []

  const ours = createCache({ store: memoryStore() })
  rows.push(row('ours cache.getOrSet', 'ours', await stampede((key, loader) => ours.getOrSet(key, loader))))
  await ours.close()

  const bento = new BentoCache({
    default: 'memory',
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, maxSize: '10mb' })) },
  })
  rows.push(row('bentocache.getOrSet', 'anchor', await stampede((key, factory) => bento.getOrSet({ key, factory }))))
  await bento.disconnectAll()

  const manager = createCacheManager()
  rows.push(row('cache-manager.wrap', 'anchor', await stampede((key, loader) => manager.wrap(key, loader))))
  await manager.disconnect()

  return {
    type: 'stampede',
    id: 'S1',
    title: `${CALLERS} concurrent getOrSet on one cold key, ${LOADER_MS} ms loader`,
    rows,
    notes: ['target: exactly 1 loader call and every caller gets the value (ours is also asserted in test/s1.test.ts)'],
  }
}

function row(name: string, kind: Kind, outcome: StampedeOutcome): StampedeRow {
  const { loaderCalls, callers, gotValue, ms } = outcome
  return { name, kind, loaderCalls, callers, gotValue, ms }
}
