// A circuit breaker for a remote tier. Every store call already has a deadline (E_STORE_UNAVAILABLE after it), but
// while the server is down or paused each call would still wait for that deadline; the breaker notices the failure
// rate, then fails calls at once (without touching the client) until a probe shows the server answers again.

import { type Duration, parseDuration } from './duration.js'
import { CacheError, describe, isCacheError } from './errors.js'
import type { BreakerState, Store, StoreLock, WriteQueue } from './types.js'

export type { BreakerState } from './types.js'

export interface BreakerOptions {
  /**
   * Opens the circuit when failures / calls in the window reach this fraction (0..1; 0 = any failure opens once
   * `minCalls` is reached). Default 0.5.
   */
  failureRate?: number
  /** Fewer calls than this in the window never open the circuit, whatever their failure rate. Default 10. */
  minCalls?: number
  /**
   * The rolling window the failure rate is measured over. It is kept as 10 buckets of `window / 10`, so a failure
   * ages out between 0.9 × and 1 × `window` after it happened. Default '10s'.
   */
  window?: Duration
  /**
   * How long the circuit stays open before the next call is let through as a probe. Each failed probe doubles it,
   * up to `maxOpenFor`; a successful probe resets it. Default '5s'.
   */
  openFor?: Duration
  /** The cap of `openFor` growing after failed probes. Default '60s' (or `openFor`, when that is longer). */
  maxOpenFor?: Duration
  /** Calls let through at once while half-open (the probes); the others fail fast. Default 1. */
  halfOpenProbes?: number
  /** Milliseconds from any origin, for tests. Default `performance.now()` (monotonic: a wall-clock jump is harmless). */
  clock?: () => number
}

/** Called once per transition, with why it happened (for logs and the cache's `breaker` event). */
export type BreakerListener = (state: BreakerState, reason: string) => void

export interface BreakerStats {
  state: BreakerState
  /** Calls that settled in the current window (calls failed fast by the breaker are not calls). */
  calls: number
  /** Of those, the ones that failed for lack of availability. */
  failures: number
  /** Times the circuit went to 'open' (from closed or from a failed probe). */
  timesOpened: number
  /** Calls rejected at once because the circuit was open (or half-open with every probe taken). */
  rejected: number
  /** How long the circuit stays (or would next stay) open, in ms: `openFor`, grown by failed probes. */
  openForMs: number
}

const BUCKETS = 10
const DEFAULT_MAX_OPEN_FOR = 60_000

/** What one settled call says about the server. */
type Outcome = 'success' | 'failure' | 'neutral'

/**
 * Only availability counts against the server: E_STORE_UNAVAILABLE (deadline passed, connection refused or reset)
 * and anything that is not a CacheError (the client itself threw). Data errors (E_DESERIALIZE, E_VALUE_TOO_LARGE,
 * E_SERIALIZE, E_INVALID_*, E_UNSUPPORTED) mean the server answered, or was never needed: a success. E_CLOSED (the
 * store was closed here) says nothing about the server either way: neutral.
 */
function outcomeOf(err: unknown): Outcome {
  if (!isCacheError(err)) return 'failure'
  if (err.code === 'E_STORE_UNAVAILABLE') return 'failure'
  return err.code === 'E_CLOSED' ? 'neutral' : 'success'
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function positiveInteger(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new CacheError('E_INVALID_OPTION', `${option} must be an integer >= 1 (got ${describe(value)})`)
  }
  return value
}

/**
 * A circuit breaker: closed (calls go through, outcomes are counted in a rolling window) → open when the failure
 * rate reaches `failureRate` over at least `minCalls` calls (calls reject at once with E_STORE_UNAVAILABLE) →
 * half-open when a call arrives `openFor` later (up to `halfOpenProbes` calls go through as probes) → closed when a
 * probe succeeds, open again (for longer) when one fails.
 *
 * `fn` must settle: stores guarantee it with their deadline. A probe that never settled would keep its slot.
 *
 * @example
 * const breaker = new CircuitBreaker('redis', { failureRate: 0.5, openFor: '5s' }, (state, reason) =>
 *   console.warn(`redis circuit ${state}: ${reason}`),
 * )
 * const entry = await breaker.run(() => store.get('user:1'))
 */
export class CircuitBreaker {
  /** The tier's name, in messages. */
  readonly tier: string
  private current: BreakerState = 'closed'
  private readonly failureRate: number
  private readonly minCalls: number
  private readonly bucketMs: number
  private readonly baseOpenMs: number
  private readonly maxOpenMs: number
  private readonly maxProbes: number
  private readonly clock: () => number
  private readonly listener: BreakerListener | undefined
  // The rolling window: bucket i holds the calls of time slot `epochs[i]` (slot = floor(now / bucketMs)); a bucket
  // whose slot is older than BUCKETS slots is stale and reset on its next use. Constant memory, whatever the load.
  private readonly epochs = new Float64Array(BUCKETS).fill(-1)
  private readonly calls = new Uint32Array(BUCKETS)
  private readonly failures = new Uint32Array(BUCKETS)
  // Bumped on every transition: a call started under an earlier state (a slow call that settles after the circuit
  // opened, a probe that settles after another probe decided) must not drive the new state.
  private generation = 0
  private openedAt = 0
  private openMs: number
  private probes = 0
  private opened = 0
  private rejectedCalls = 0
  private lastFailure: unknown

  constructor(tier: string, options: BreakerOptions = {}, onChange?: BreakerListener) {
    if (typeof tier !== 'string' || tier === '') {
      throw new CacheError(
        'E_INVALID_OPTION',
        `CircuitBreaker: tier must be a non-empty string (got ${describe(tier)})`,
      )
    }
    if (typeof options !== 'object' || options === null) {
      throw new CacheError('E_INVALID_OPTION', `${tier} breaker: options must be an object (got ${describe(options)})`)
    }
    if (onChange !== undefined && typeof onChange !== 'function') {
      throw new CacheError('E_INVALID_OPTION', `${tier} breaker: onChange must be a function`)
    }
    const o = `${tier} breaker:`
    const rate = options.failureRate ?? 0.5
    if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) {
      throw new CacheError('E_INVALID_OPTION', `${o} failureRate must be a number from 0 to 1 (got ${describe(rate)})`)
    }
    this.failureRate = rate
    this.minCalls = positiveInteger(options.minCalls, `${o} minCalls`, 10)
    this.maxProbes = positiveInteger(options.halfOpenProbes, `${o} halfOpenProbes`, 1)
    const windowMs = parseDuration(options.window ?? '10s', `${o} window`)
    if (!(windowMs > 0)) throw new CacheError('E_INVALID_OPTION', `${o} window must be > 0 (got ${windowMs})`)
    this.bucketMs = windowMs / BUCKETS
    this.baseOpenMs = parseDuration(options.openFor ?? '5s', `${o} openFor`)
    if (options.maxOpenFor === undefined) {
      this.maxOpenMs = Math.max(DEFAULT_MAX_OPEN_FOR, this.baseOpenMs)
    } else {
      this.maxOpenMs = parseDuration(options.maxOpenFor, `${o} maxOpenFor`)
      if (this.maxOpenMs < this.baseOpenMs) {
        throw new CacheError('E_INVALID_OPTION', `${o} maxOpenFor must be >= openFor (${this.baseOpenMs} ms)`)
      }
    }
    this.openMs = this.baseOpenMs
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new CacheError('E_INVALID_OPTION', `${o} clock must be a function`)
    }
    this.clock = options.clock ?? (() => performance.now())
    this.tier = tier
    this.listener = onChange
  }

  /** 'open' until a call arrives `openFor` after opening: that call moves it to 'half-open'. */
  get state(): BreakerState {
    return this.current
  }

  /**
   * Runs `fn` unless the circuit is open. While open (or half-open with every probe slot taken) rejects at once
   * with E_STORE_UNAVAILABLE, without calling `fn`. Resolves or rejects with exactly what `fn` did.
   *
   * @example
   * await breaker.run(() => store.set(key, entry))
   */
  run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.current === 'open') {
      const waited = this.clock() - this.openedAt
      if (waited < this.openMs) return this.reject(`failing fast for ${Math.ceil(this.openMs - waited)} ms more`)
      this.transition('half-open', `${Math.round(waited)} ms since it opened: probing`)
    }
    if (this.current === 'half-open') {
      if (this.probes >= this.maxProbes) return this.reject('half-open, a probe is in flight')
      this.probes++
      return this.settle(fn, this.generation, true)
    }
    return this.settle(fn, this.generation, false)
  }

  /** The state and the counts of the current window. */
  stats(): BreakerStats {
    const oldest = Math.floor(this.clock() / this.bucketMs) - BUCKETS + 1
    let calls = 0
    let failures = 0
    for (let i = 0; i < BUCKETS; i++) {
      if (this.epochs[i]! >= oldest) {
        calls += this.calls[i]!
        failures += this.failures[i]!
      }
    }
    return {
      state: this.current,
      calls,
      failures,
      timesOpened: this.opened,
      rejected: this.rejectedCalls,
      openForMs: this.openMs,
    }
  }

  private reject<T>(why: string): Promise<T> {
    this.rejectedCalls++
    return Promise.reject(
      new CacheError('E_STORE_UNAVAILABLE', `${this.tier} circuit open: ${why}`, { cause: this.lastFailure }),
    )
  }

  private settle<T>(fn: () => Promise<T>, generation: number, probe: boolean): Promise<T> {
    let work: Promise<T>
    try {
      work = fn()
    } catch (err) {
      // A synchronous throw is a rejection like any other (and counted as one).
      work = Promise.reject(err)
    }
    return work.then(
      (value) => {
        this.record('success', undefined, generation, probe)
        return value
      },
      (err: unknown) => {
        this.record(outcomeOf(err), err, generation, probe)
        throw err
      },
    )
  }

  private record(outcome: Outcome, err: unknown, generation: number, probe: boolean): void {
    if (generation !== this.generation) return
    if (probe) {
      this.probes--
      if (outcome === 'success') {
        this.openMs = this.baseOpenMs
        this.transition('closed', 'a probe succeeded')
      } else if (outcome === 'failure') {
        this.lastFailure = err
        // Each failed probe waits longer: a server that stays down gets one probe per (growing) interval.
        this.openMs = Math.min(this.openMs * 2, this.maxOpenMs)
        this.open(`a probe failed (${message(err)}); next probe in ${this.openMs} ms`)
      }
      return
    }
    if (outcome === 'neutral') return
    const slot = Math.floor(this.clock() / this.bucketMs)
    const i = slot % BUCKETS
    if (this.epochs[i] !== slot) {
      this.epochs[i] = slot
      this.calls[i] = 0
      this.failures[i] = 0
    }
    this.calls[i]!++
    if (outcome === 'failure') {
      this.failures[i]!++
      this.lastFailure = err
    }
    // Checked after every call, as the call that reaches `minCalls` may be a success. Never without a failure (with
    // failureRate 0, 0 / n would otherwise open it).
    const { calls, failures } = this.stats()
    if (failures > 0 && calls >= this.minCalls && failures / calls >= this.failureRate) {
      this.open(`${failures} of ${calls} calls failed in the window (last: ${message(this.lastFailure)})`)
    }
  }

  private open(reason: string): void {
    this.openedAt = this.clock()
    this.opened++
    this.transition('open', reason)
  }

  private transition(state: BreakerState, reason: string): void {
    this.current = state
    this.generation++
    this.probes = 0
    // A closed circuit starts from a clean window: failures from before the outage must not reopen it at once.
    if (state === 'closed') this.epochs.fill(-1)
    try {
      this.listener?.(state, reason)
    } catch {
      // A failing listener must not fail the store call that caused the transition.
    }
  }
}

/**
 * Wraps a remote store so every call goes through `breaker`. The result has the store's `name` and exactly the
 * optional methods the store has; `stats`, `onRemove` and `close` pass straight through (no round trip to guard, or
 * one that must happen anyway). Synchronous reads are never exposed: they are for in-process stores.
 *
 * @example
 * const breaker = new CircuitBreaker('redis', { openFor: '5s' })
 * const l2 = breakerStore(redisStore({ client }), breaker)
 * const cache = createCache({ tiers: [memoryStore(), l2] })
 */
export function breakerStore(store: Store, breaker: CircuitBreaker): Store {
  const out: Store = {
    name: store.name,
    get: (key) => breaker.run(() => store.get(key)),
    set: (key, entry) => breaker.run(() => store.set(key, entry)),
    delete: (key) => breaker.run(() => store.delete(key)),
    clear: (prefix) => breaker.run(() => store.clear(prefix)),
  }
  if (store.getMany) out.getMany = (keys) => breaker.run(() => store.getMany!(keys))
  if (store.setMany) out.setMany = (entries) => breaker.run(() => store.setMany!(entries))
  if (store.deleteMany) out.deleteMany = (keys) => breaker.run(() => store.deleteMany!(keys))
  if (store.deleteTagged) out.deleteTagged = (tags) => breaker.run(() => store.deleteTagged!(tags))
  if (store.lock) {
    out.lock = async (key, ttlMs) => {
      const lock = await breaker.run(() => store.lock!(key, ttlMs))
      return lock === undefined ? undefined : guardedLock(lock, breaker)
    }
  }
  // Synchronous: making the queue object needs no round trip; its calls do, and go through the breaker.
  if (store.writeQueue) out.writeQueue = (name) => guardedQueue(store.writeQueue!(name), breaker)
  if (store.stats) out.stats = () => store.stats!()
  if (store.onRemove) out.onRemove = (listener) => store.onRemove!(listener)
  if (store.close) out.close = () => store.close!()
  return out
}

/**
 * `release()` never throws, so running it through the breaker would count every release as a success, even when
 * the server is down (and a release could then close a half-open circuit). Instead it only asks the breaker: while
 * the circuit is not closed the release is skipped at once (the lock expires at its ttl), else it runs uncounted,
 * bounded by the store's own deadline.
 */
function guardedLock(lock: StoreLock, breaker: CircuitBreaker): StoreLock {
  return {
    release: async () => {
      if (breaker.state !== 'closed') return
      try {
        await lock.release()
      } catch {
        // release() never throws; this guards a store that breaks that promise.
      }
    },
  }
}

function guardedQueue(queue: WriteQueue | undefined, breaker: CircuitBreaker): WriteQueue | undefined {
  if (queue === undefined) return undefined
  const out: WriteQueue = {
    name: queue.name,
    push: (items) => breaker.run(() => queue.push(items)),
    take: (max, claimAfterMs) => breaker.run(() => queue.take(max, claimAfterMs)),
    ack: (ids) => breaker.run(() => queue.ack(ids)),
    retry: (id, item, notBefore) => breaker.run(() => queue.retry(id, item, notBefore)),
    dead: (id, item, error) => breaker.run(() => queue.dead(id, item, error)),
    deadLetters: () => breaker.run(() => queue.deadLetters()),
    size: () => breaker.run(() => queue.size()),
  }
  if (queue.touch) out.touch = (ids) => breaker.run(() => queue.touch!(ids))
  // No round trip to guard: the queue must stop whatever the circuit says.
  if (queue.close) out.close = () => queue.close!()
  return out
}
