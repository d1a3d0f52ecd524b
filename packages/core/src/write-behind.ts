// Write-behind: writes land in the cache at once and reach the system of record (the `flush` sink) later, in
// batches, through a WriteQueue. The queue decides how durable a queued write is: `memoryQueue()` (the default) lives
// in this process; `redisQueue()` (in @cache/core/redis) keeps writes in a Redis Stream, so a process that dies
// between `writeBehind()` and the flush loses nothing: another process claims its writes and flushes them.
//
// Delivery is at-least-once. A write is acknowledged only after the sink resolved; a process that dies (or an ack
// that fails) in between means the same write is flushed again, so the sink must be idempotent (an upsert).
// Ordering: within a batch, writes of the same namespace+key are coalesced to the latest; across batches, writes are
// flushed in queue order, except that a retried write goes behind the writes queued meanwhile (a newer write of the
// same key held by this process supersedes it). Across processes or after a crash an older write may still reach the
// sink after a newer one: `item.queuedAt` is there for a sink that must compare versions.

import { type Duration, parseDuration } from './duration.js'
import { CacheError, describe } from './errors.js'
import { MAX_TIMER_MS } from './stores/deadline.js'
import type { DeadLetter, TakenWrite, WriteBehindItem, WriteQueue } from './types.js'

export interface WriteBehindOptions {
  /**
   * Writes a batch to the system of record. Must be idempotent: a write may be delivered more than once (after a
   * crash, a failed acknowledgement or a takeover). A batch holds at most one item per namespace+key (the latest).
   * Reject to have the whole batch retried with backoff; `signal` aborts when `flushTimeout` passes.
   */
  flush: (batch: WriteBehindItem[], ctx: { signal: AbortSignal }) => Promise<void>
  /** Most items per flush; a full batch is flushed without waiting for `interval`. Default 100. */
  batchSize?: number
  /** The longest a write waits before its batch is flushed (also how often the queue is polled). Default '1s'. */
  interval?: Duration
  /** Flushes tried per item before it is dead-lettered (the first try included). Default 5. */
  maxAttempts?: number
  /** Wait before the first retry, doubled per attempt, with jitter, capped at 30 s. Default '500ms'. */
  backoff?: Duration
  /** Where writes wait. Default: the cache's store's durable queue if it has one, else `memoryQueue()`. */
  queue?: WriteQueue
  /**
   * How long an item taken by a process may stay unacknowledged and unrenewed before another process takes it over.
   * A live process renews its items every third of this, even while its flush runs, so only the items of a dead (or
   * frozen) process are taken over. Default '30s'.
   */
  claimAfter?: Duration
  /** One flush call may take this long; then its signal aborts and it counts as a failed attempt. Default '30s'. */
  flushTimeout?: Duration
}

export interface WriteBehindHooks {
  /** An item gave up after its last attempt (or could not be read back from the queue). */
  deadLetter(item: WriteBehindItem, error: Error): void
  /** A failure handled in the background: a failed flush attempt, or a queue that did not answer. */
  error(err: Error): void
}

const MAX_BACKOFF = 30_000
/** Items a consumer holds at most (in flight or waiting for their backoff), in batches. */
const HELD_BATCHES = 4

interface Held {
  readonly id: string
  readonly item: WriteBehindItem
  readonly notBefore: number
}

interface Settings {
  flush: WriteBehindOptions['flush']
  batchSize: number
  interval: number
  maxAttempts: number
  backoff: number
  claimAfter: number
  flushTimeout: number
}

function invalid(message: string): CacheError {
  return new CacheError('E_INVALID_OPTION', `writeBehind: ${message}`)
}

function positiveInteger(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(`${option} must be an integer >= 1 (got ${describe(value)})`)
  }
  return value
}

function timerDuration(value: Duration | undefined, option: string, fallback: Duration, min: number): number {
  const ms = parseDuration(value ?? fallback, `writeBehind: ${option}`)
  if (ms < min || ms > MAX_TIMER_MS) {
    throw invalid(`${option} must be ${min > 0 ? '> 0' : '>= 0'} and at most ${MAX_TIMER_MS} ms (got ${ms})`)
  }
  return ms
}

/** Checks write-behind options; `E_INVALID_OPTION` naming the first bad one. */
export function parseWriteBehindOptions(options: WriteBehindOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw invalid(`options must be an object with a flush function (got ${describe(options)})`)
  }
  if (typeof options.flush !== 'function') {
    throw invalid(`flush must be a function (batch, { signal }) => Promise<void> (got ${describe(options.flush)})`)
  }
  const queue = options.queue as unknown
  if (queue !== undefined && (typeof queue !== 'object' || queue === null || !isQueue(queue))) {
    throw invalid(`queue must be a WriteQueue, e.g. memoryQueue() or redisQueue(…) (got ${describe(queue)})`)
  }
  return {
    flush: options.flush,
    batchSize: positiveInteger(options.batchSize, 'batchSize', 100),
    maxAttempts: positiveInteger(options.maxAttempts, 'maxAttempts', 5),
    interval: timerDuration(options.interval, 'interval', '1s', 1),
    backoff: timerDuration(options.backoff, 'backoff', '500ms', 0),
    claimAfter: timerDuration(options.claimAfter, 'claimAfter', '30s', 1),
    flushTimeout: timerDuration(options.flushTimeout, 'flushTimeout', '30s', 1),
  }
}

function isQueue(value: object): boolean {
  const q = value as Record<string, unknown>
  return ['push', 'take', 'ack', 'retry', 'dead', 'deadLetters', 'size'].every((m) => typeof q[m] === 'function')
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(`non-Error thrown: ${describe(err)}`)
}

function identity(item: WriteBehindItem): string {
  // A separator no namespace path or key can make ambiguous: the lengths say where each part ends.
  return `${item.namespace.length}:${item.namespace}${item.key}`
}

/**
 * Queues writes and flushes them in batches to a sink, with retries, backoff and dead letters. Used by the Cache
 * (`createCache({ writeBehind })`); every background failure goes to `hooks`, never to an unhandled rejection.
 *
 * `flush()` drains what is queued, retrying failed items at once (without their backoff, still counting attempts),
 * so it ends: each item is flushed, superseded or dead-lettered within `maxAttempts` rounds.
 */
export class WriteBehind {
  readonly queue: WriteQueue
  private readonly settings: Settings
  private readonly hooks: WriteBehindHooks
  /** What this consumer took and has not settled yet, in queue order. */
  private readonly held = new Map<string, Held>()
  /** Rounds run one at a time: this is the last one queued. */
  private tail: Promise<unknown> = Promise.resolve()
  private backgroundQueued = false
  private pushedSinceRound = 0
  private closed = false
  private closing: Promise<void> | undefined
  private readonly poller: NodeJS.Timeout
  private readonly renewer: NodeJS.Timeout

  constructor(options: WriteBehindOptions, queue: WriteQueue, hooks: WriteBehindHooks) {
    this.settings = parseWriteBehindOptions(options)
    if (typeof queue !== 'object' || queue === null || !isQueue(queue)) {
      throw invalid(`queue must be a WriteQueue (got ${describe(queue)})`)
    }
    this.queue = queue
    this.hooks = hooks
    // Polling (not only reacting to local writes) is what picks up writes of other processes, retries whose backoff
    // ended and the items of dead consumers.
    this.poller = setInterval(() => this.background(), this.settings.interval)
    this.poller.unref()
    this.renewer = setInterval(() => this.renew(), Math.max(1, Math.floor(this.settings.claimAfter / 3)))
    this.renewer.unref()
  }

  /** Queues writes; resolves once they are queued as durably as the queue is. `E_CLOSED` after `close()`. */
  async enqueue(items: readonly { namespace: string; key: string; value: unknown }[]): Promise<void> {
    if (this.closed) throw new CacheError('E_CLOSED', 'writeBehind: closed, the write was not queued')
    if (items.length === 0) return
    const queuedAt = Date.now()
    await this.queue.push(items.map(({ namespace, key, value }) => ({ namespace, key, value, attempts: 0, queuedAt })))
    this.pushedSinceRound += items.length
    if (this.pushedSinceRound >= this.settings.batchSize) this.background()
  }

  /**
   * Flushes everything queued up to now that this process can take (not the items another live process holds),
   * retrying failures at once. Resolves when the queue has nothing left to take; rejects when the queue fails.
   */
  flush(): Promise<void> {
    return this.serial(() => this.drain())
  }

  /** The dead letters the queue keeps, oldest first. */
  deadLetters(): Promise<DeadLetter[]> {
    return this.queue.deadLetters()
  }

  /** Writes queued and not yet flushed (taken or not; an estimate for a queue shared by several processes). */
  size(): Promise<number> {
    return this.queue.size()
  }

  /**
   * Flushes what is left, stops the timers and closes the queue. Bounded: each item is tried at most `maxAttempts`
   * times, each try at most `flushTimeout`. Idempotent; rejects with the queue's error if the final flush failed.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true
      clearInterval(this.poller)
      try {
        await this.flush()
      } finally {
        clearInterval(this.renewer)
        this.held.clear()
        await this.queue.close?.()
      }
    })()
    return this.closing
  }

  // -------------------------------------------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn)
    this.tail = run.catch(() => {})
    return run
  }

  /** Queues one background pass (unless one is already waiting): rounds while full batches keep coming. */
  private background(): void {
    if (this.backgroundQueued || this.closed) return
    this.backgroundQueued = true
    this.serial(async () => {
      this.backgroundQueued = false
      let progress = this.settings.batchSize
      while (!this.closed && progress >= this.settings.batchSize) progress = await this.round(false)
    }).catch((err: unknown) => this.report(err))
  }

  private async drain(): Promise<void> {
    // Each round settles at least one item or finds nothing; the bound only matters when other processes keep
    // pushing as fast as this one flushes: then flush() returns and the background goes on.
    const queued = await this.queue.size()
    const limit = (Math.ceil(queued / this.settings.batchSize) + 1) * (this.settings.maxAttempts + 1) + HELD_BATCHES
    for (let i = 0; i < limit; i++) {
      if ((await this.round(true)) === 0) return
    }
  }

  /**
   * Takes what it can, then flushes one batch of the held items that are due (all of them when `force`). Resolves to
   * how many items it took or settled (0: nothing to do). Rejects only when the queue fails to hand items over.
   */
  private async round(force: boolean): Promise<number> {
    this.pushedSinceRound = 0
    const { batchSize, claimAfter } = this.settings
    let progress = 0
    const room = batchSize * HELD_BATCHES - this.held.size
    if (room > 0) {
      const taken = await this.queue.take(Math.min(batchSize, room), claimAfter)
      progress += taken.length
      await this.accept(taken)
    }
    progress += await this.supersede()
    const now = Date.now()
    const due: Held[] = []
    for (const held of this.held.values()) {
      if (force || held.notBefore <= now) due.push(held)
      if (due.length === batchSize) break
    }
    if (due.length === 0) return progress
    await this.flushBatch(due)
    return progress + due.length
  }

  private async accept(taken: readonly TakenWrite[]): Promise<void> {
    const unreadable: Promise<void>[] = []
    for (const t of taken) {
      if (t.error !== undefined) {
        // Bytes that do not decode will never decode: dead-letter them now rather than hand them around forever.
        unreadable.push(this.kill({ id: t.id, item: t.item, notBefore: 0 }, t.item, t.error))
      } else if (!this.held.has(t.id)) {
        // Already held: the queue handed back an item of ours it thought abandoned; keep the one we have.
        this.held.set(t.id, { id: t.id, item: t.item, notBefore: t.notBefore })
      }
    }
    await Promise.all(unreadable)
  }

  /**
   * Of several held writes of one namespace+key, only the latest (by queuedAt, then queue order) is flushed; the
   * others are acknowledged unflushed. A retry waiting for its backoff is thus replaced by a newer write of its key.
   */
  private async supersede(): Promise<number> {
    const latest = new Map<string, Held>()
    const stale: Held[] = []
    for (const held of this.held.values()) {
      const id = identity(held.item)
      const other = latest.get(id)
      if (other === undefined) latest.set(id, held)
      else if (held.item.queuedAt >= other.item.queuedAt) {
        stale.push(other)
        latest.set(id, held)
      } else stale.push(held)
    }
    if (stale.length === 0) return 0
    for (const held of stale) this.held.delete(held.id)
    try {
      await this.queue.ack(stale.map((h) => h.id))
    } catch (err) {
      // Unacknowledged, they come back after claimAfter and are flushed then: a duplicate, not a loss.
      this.report(err)
    }
    return stale.length
  }

  private async flushBatch(due: readonly Held[]): Promise<void> {
    let failure: Error | undefined
    try {
      await this.callSink(due.map((h) => h.item))
    } catch (err) {
      failure = asError(err)
    }
    if (failure === undefined) {
      for (const held of due) this.held.delete(held.id)
      try {
        await this.queue.ack(due.map((h) => h.id))
      } catch (err) {
        // Flushed but still queued: redelivered after claimAfter (at-least-once).
        this.report(err)
      }
      return
    }
    this.report(failure)
    const now = Date.now()
    await Promise.all(
      due.map((held) => {
        const item = { ...held.item, attempts: held.item.attempts + 1 }
        if (item.attempts >= this.settings.maxAttempts) return this.kill(held, item, failure)
        this.held.delete(held.id)
        return this.queue.retry(held.id, item, now + this.delay(item.attempts)).catch((err: unknown) => {
          // Left unacknowledged under its old attempts: it comes back after claimAfter.
          this.report(err)
        })
      }),
    )
  }

  private async kill(held: Held, item: WriteBehindItem, error: Error): Promise<void> {
    this.held.delete(held.id)
    try {
      await this.queue.dead(held.id, item, error.message)
    } catch (err) {
      this.report(err)
      return // still queued: it is tried again after claimAfter, and dead-lettered then
    }
    try {
      this.hooks.deadLetter(item, error)
    } catch (err) {
      this.report(err)
    }
  }

  /** Calls the sink with a deadline; a sink that throws synchronously counts as a failed attempt too. */
  private async callSink(batch: WriteBehindItem[]): Promise<void> {
    const { flushTimeout } = this.settings
    const controller = new AbortController()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new CacheError('E_STORE_UNAVAILABLE', `writeBehind: flush gave no answer within ${flushTimeout}ms`)
        controller.abort(err)
        reject(err)
      }, flushTimeout)
    })
    try {
      const work = Promise.resolve().then(() => this.settings.flush(batch, { signal: controller.signal }))
      work.catch(() => {}) // once the deadline won, a late rejection must not be unhandled
      await Promise.race([work, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Backoff before attempt `attempts + 1`: doubling from `backoff`, capped, half of it random (no thundering herd). */
  private delay(attempts: number): number {
    const full = Math.min(MAX_BACKOFF, this.settings.backoff * 2 ** Math.min(attempts - 1, 30))
    return full / 2 + Math.random() * (full / 2)
  }

  /** Keeps other consumers off the items this one holds, including those of a flush still running. */
  private renew(): void {
    const touch = this.queue.touch
    if (touch === undefined || this.held.size === 0) return
    touch.call(this.queue, [...this.held.keys()]).catch((err: unknown) => this.report(err))
  }

  private report(err: unknown): void {
    try {
      this.hooks.error(asError(err))
    } catch {
      // A throwing error hook has nowhere left to report to.
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The in-process queue

export interface MemoryQueueOptions {
  /** Name in errors and stats. Default 'memory'. */
  name?: string
  /** Dead letters kept (the oldest are dropped first). Default 1000. */
  maxDeadLetters?: number
  /** Default claim time for `take` when the caller passes none. Default 30 000 ms. */
  claimAfter?: Duration
}

interface MemoryEntry {
  item: WriteBehindItem
  notBefore: number
  /** When a consumer took or last touched it; undefined while untaken. */
  takenAt: number | undefined
}

/**
 * The default write-behind queue: in this process's memory, so NOT durable. Writes queued and not yet flushed are
 * lost if the process dies (a `close()` flushes them first). Use `redisQueue` from `@cache/core/redis` for writes
 * that must survive a crash.
 *
 * @example
 * import { createCache, memoryQueue } from '@cache/core'
 * const cache = createCache({ writeBehind: { flush: (batch) => db.bulkUpsert(batch), queue: memoryQueue() } })
 */
export function memoryQueue(options: MemoryQueueOptions = {}): WriteQueue {
  const name = options.name ?? 'memory'
  const maxDead = options.maxDeadLetters ?? 1000
  if (!Number.isSafeInteger(maxDead) || maxDead < 0) {
    throw new CacheError('E_INVALID_OPTION', `memoryQueue: maxDeadLetters must be an integer >= 0 (got ${maxDead})`)
  }
  const defaultClaim = parseDuration(options.claimAfter ?? 30_000, 'memoryQueue: claimAfter')
  const entries = new Map<string, MemoryEntry>()
  const dead: DeadLetter[] = []
  let next = 0
  let closed = false

  const check = () => {
    if (closed) throw new CacheError('E_CLOSED', `memoryQueue '${name}' is closed`)
  }
  const add = (item: WriteBehindItem, notBefore: number) => {
    entries.set(String(++next), { item, notBefore, takenAt: undefined })
  }

  return {
    name,
    async push(items) {
      check()
      for (const item of items) add(item, 0)
    },
    async take(max, claimAfterMs = defaultClaim) {
      check()
      const now = Date.now()
      const out: TakenWrite[] = []
      // Abandoned items first (oldest first, like XAUTOCLAIM), then untaken ones: Map order is queue order.
      for (const pass of [true, false]) {
        for (const [id, entry] of entries) {
          if (out.length >= max) break
          const abandoned = entry.takenAt !== undefined && now - entry.takenAt >= claimAfterMs
          if (pass ? abandoned : entry.takenAt === undefined) {
            entry.takenAt = now
            out.push({ id, item: entry.item, notBefore: entry.notBefore })
          }
        }
      }
      return out
    },
    async touch(ids) {
      check()
      const now = Date.now()
      for (const id of ids) {
        const entry = entries.get(id)
        if (entry?.takenAt !== undefined) entry.takenAt = now
      }
    },
    async ack(ids) {
      check()
      for (const id of ids) entries.delete(id)
    },
    async retry(id, item, notBefore) {
      check()
      entries.delete(id)
      add(item, notBefore)
    },
    async dead(id, item, error) {
      check()
      entries.delete(id)
      dead.push({ item, error, diedAt: Date.now() })
      if (dead.length > maxDead) dead.splice(0, dead.length - maxDead)
    },
    async deadLetters() {
      return dead.slice()
    },
    async size() {
      check()
      return entries.size
    },
    async close() {
      closed = true
    },
  }
}
