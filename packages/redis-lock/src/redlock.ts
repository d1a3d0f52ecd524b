import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Duration, parseDuration } from '@cache/core'

import type { Cluster, Redis } from 'ioredis'
import { ACQUIRE, EXTEND, RAISE, RELEASE, SET_IF_FRESHER } from './scripts.js'

/** One of the N independent masters: a standalone client, or a Cluster (one vote for the whole cluster). */
export type RedlockClient = Redis | Cluster

export type LockErrorCode = 'E_LOCK_NOT_ACQUIRED' | 'E_LOCK_LOST' | 'E_LOCK_EXTEND_FAILED' | 'E_INVALID_OPTION'

/** What one node answered in the last attempt. */
export interface NodeOutcome {
  /** The client's index in the list given to `createRedlock`. */
  readonly node: number
  readonly outcome: 'granted' | 'held' | 'timeout' | 'error'
  /** The error's message, for 'error'. */
  readonly error?: string | undefined
}

/** Errors of `@cache/redis-lock`, with a stable `code`. */
export class LockError extends Error {
  override readonly name = 'LockError'
  readonly code: LockErrorCode
  /** Per-node answers of the last attempt (acquire, extend). */
  readonly nodes: readonly NodeOutcome[]
  /** Attempts made (acquire). */
  readonly attempts: number

  constructor(code: LockErrorCode, message: string, details: { nodes?: NodeOutcome[]; attempts?: number } = {}) {
    super(`[@cache/redis-lock] ${message}`)
    this.code = code
    this.nodes = details.nodes ?? []
    this.attempts = details.attempts ?? 0
  }
}

export interface RedlockOptions {
  /** Retries after the first attempt (`Infinity` for no limit). @default 10 */
  retryCount?: number
  /** Wait between attempts. @default '200ms' */
  retryDelay?: Duration
  /** Random ± added to each wait, so contenders do not retry in step. @default '100ms' */
  retryJitter?: Duration
  /** Clock drift allowed, as a fraction of the ttl (plus 2 ms). @default 0.01 */
  driftFactor?: number
  /** How long one node may take to answer; much smaller than the ttl. @default ttl / 20, between 5 ms and 500 ms */
  nodeTimeout?: Duration
  /** Give up acquiring after this long in all (besides `retryCount`). @default none */
  acquireTimeout?: Duration
  /** Extensions allowed per lock (`extend` and `using`'s automatic ones). @default Infinity */
  maxExtensions?: number
  /** `lock.signal` aborts this long before the validity ends unless an extension was confirmed. @default ttl / 10, at least 5 ms */
  abortMargin?: Duration
  /** Prefix of every key written. @default 'lock:' */
  keyPrefix?: string
}

export interface AcquireOptions {
  /** Stops waiting for the lock (rejects with the signal's reason). */
  signal?: AbortSignal | undefined
}

interface Resolved {
  retryCount: number
  retryDelay: number
  retryJitter: number
  driftFactor: number
  nodeTimeout: number | undefined
  acquireTimeout: number | undefined
  maxExtensions: number
  abortMargin: number | undefined
  keyPrefix: string
}

interface Node {
  readonly index: number
  readonly client: RedlockClient
  readonly cluster: boolean
}

type Reply = { ok: true; value: unknown } | { ok: false; outcome: 'timeout' | 'error'; error?: string }

const sha = (script: string) => createHash('sha1').update(script).digest('hex')
const SHAS = new Map([ACQUIRE, RAISE, RELEASE, EXTEND, SET_IF_FRESHER].map((s) => [s, sha(s)]))

/** Runs a script by its SHA, loading it on a NOSCRIPT; never rejects. */
function run(node: Node, script: string, keys: readonly string[], args: readonly (string | number)[]) {
  return new Promise<Reply>((resolve) => {
    const client = node.client
    client.evalsha(SHAS.get(script)!, keys.length, ...keys, ...args).then(
      (value) => resolve({ ok: true, value }),
      (err: Error) => {
        if (!String(err?.message).startsWith('NOSCRIPT')) {
          return resolve({ ok: false, outcome: 'error', error: err?.message })
        }
        client.eval(script, keys.length, ...keys, ...args).then(
          (value) => resolve({ ok: true, value }),
          (e: Error) => resolve({ ok: false, outcome: 'error', error: e?.message }),
        )
      },
    )
  })
}

/** Runs one call per node at once; a node that has not answered after `ms` counts as 'timeout'. One timer for all. */
function runAll(nodes: readonly Node[], call: (node: Node) => Promise<Reply>, ms: number): Promise<Reply[]> {
  return new Promise((resolve) => {
    const replies: (Reply | undefined)[] = new Array(nodes.length)
    let left = nodes.length
    const finish = () => {
      clearTimeout(timer)
      resolve(Array.from(replies, (r) => r ?? TIMEOUT))
    }
    const timer = setTimeout(finish, ms)
    nodes.forEach((node, i) => {
      call(node).then((reply) => {
        replies[i] = reply
        if (--left === 0) finish()
      })
    })
  })
}

const TIMEOUT: Reply = { ok: false, outcome: 'timeout' }
/** `lock.signal.reason` once the holder released the lock. */
const RELEASED = new LockError('E_LOCK_LOST', 'the lock was released by its holder')

/**
 * Redlock (the algorithm of the Redis docs) over N independent Redis masters, with fencing tokens.
 *
 * @example
 * const redlock = createRedlock([a, b, c, d, e])
 * await using lock = await redlock.acquire(['invoice:42'], '10s')
 * await db.write(invoice, { fencingToken: lock.fencingToken, signal: lock.signal })
 */
export function createRedlock(clients: readonly RedlockClient[], options: RedlockOptions = {}): Redlock {
  return new Redlock(clients, options)
}

export class Redlock {
  /** How many nodes must agree: ⌊N/2⌋ + 1. */
  readonly quorum: number
  private readonly nodes: readonly Node[]
  private readonly o: Resolved

  constructor(clients: readonly RedlockClient[], options: RedlockOptions = {}) {
    if (!Array.isArray(clients) || clients.length === 0) {
      throw new LockError('E_INVALID_OPTION', 'createRedlock(clients): give at least one ioredis client (5 is usual)')
    }
    clients.forEach((client, i) => {
      if (typeof (client as Redis)?.evalsha !== 'function') {
        throw new LockError('E_INVALID_OPTION', `clients[${i}] is not an ioredis client`)
      }
    })
    if (new Set(clients).size !== clients.length) {
      throw new LockError('E_INVALID_OPTION', 'the same client is given twice: each node must be its own Redis master')
    }
    this.nodes = clients.map((client, index) => ({ index, client, cluster: (client as Redis).isCluster === true }))
    this.quorum = Math.floor(clients.length / 2) + 1
    this.o = resolve(options)
  }

  /**
   * Takes the lock on every resource, or rejects with `E_LOCK_NOT_ACQUIRED` (its `nodes` say why). The lock is held
   * only if a quorum granted it and time is left of its validity (ttl − elapsed − drift, on a monotonic clock).
   */
  async acquire(resources: string | readonly string[], ttl: Duration, options: AcquireOptions = {}): Promise<Lock> {
    const list = resourceList(resources)
    const ttlMs = positive(ms(ttl, 'ttl'), 'ttl')
    const o = this.o
    const nodeTimeout = o.nodeTimeout ?? Math.min(500, Math.max(5, ttlMs / 20))
    const signal = options.signal
    const value = randomBytes(16).toString('base64url')
    const giveUp = o.acquireTimeout === undefined ? Number.POSITIVE_INFINITY : performance.now() + o.acquireTimeout
    let attempts = 0
    for (;;) {
      signal?.throwIfAborted()
      attempts++
      const start = performance.now()
      const replies = await runAll(
        this.nodes,
        (node) => {
          const keys = this.keys(node, list)
          return run(node, ACQUIRE, [...keys.locks, ...keys.fences], [value, ttlMs])
        },
        nodeTimeout,
      )
      const outcomes: NodeOutcome[] = replies.map((reply, node) => {
        if (!reply.ok) return { node, outcome: reply.outcome, error: reply.error }
        return { node, outcome: (reply.value as number[])[0] === 1 ? 'granted' : 'held' }
      })
      const granted = outcomes.filter((n) => n.outcome === 'granted').map((n) => n.node)
      const drift = ttlMs * o.driftFactor + 2
      if (granted.length >= this.quorum && ttlMs - (performance.now() - start) - drift > 0) {
        // The token is above every counter any answering node has seen: those that granted counted one up, those
        // that refused report theirs (+1). A restarted node that lost its counters is outvoted that way, as long as
        // one node of the last holder's quorum answers (a minority of nodes down or restarted).
        let token = 0
        for (const reply of replies) {
          if (!reply.ok) continue
          const [grantedHere, seen] = reply.value as number[]
          token = Math.max(token, Number(seen) + (grantedHere === 1 ? 0 : 1))
        }
        // Before handing the token out, a quorum must have every counter of these resources at the token or above:
        // any later quorum overlaps this one, so its token counts from above. Nodes that granted with all their
        // counters there already need nothing (the usual, uncontended case: no extra round trip).
        let atToken = 0
        const behind: Node[] = []
        replies.forEach((reply, i) => {
          if (!reply.ok) return
          const [grantedHere, , low] = reply.value as number[]
          if (grantedHere === 1 && Number(low) >= token) atToken++
          else behind.push(this.nodes[i]!)
        })
        const raise = (node: Node) => run(node, RAISE, this.keys(node, list).fences, [token])
        let confirmed = atToken
        if (atToken >= this.quorum) {
          // Raised anyway, in the background, so lagging nodes catch up; never waited for, never rejects.
          for (const node of behind) void raise(node)
        } else if (behind.length > 0) {
          const raised = await runAll(behind, raise, nodeTimeout)
          confirmed += raised.filter((r) => r.ok).length
        }
        const validUntil = start + ttlMs - drift
        if (confirmed >= this.quorum && validUntil > performance.now() && signal?.aborted !== true) {
          return new Lock(this, list, value, token, ttlMs, validUntil)
        }
      }
      // Not held: free whatever was granted, on every node at once (a node that timed out may still have set it).
      await this.releaseValue(list, value, nodeTimeout)
      signal?.throwIfAborted()
      const wait = o.retryDelay + (Math.random() * 2 - 1) * o.retryJitter
      if (attempts > o.retryCount || performance.now() + wait > giveUp) {
        const summary = outcomes.map((n) => `${n.node}: ${n.outcome}${n.error ? ` (${n.error})` : ''}`).join(', ')
        throw new LockError(
          'E_LOCK_NOT_ACQUIRED',
          `could not lock ${list.join(', ')} on ${this.quorum} of ${this.nodes.length} nodes after ${attempts} attempts (${summary})`,
          { nodes: outcomes, attempts },
        )
      }
      try {
        await sleep(Math.max(0, wait), undefined, { signal })
      } catch (err) {
        // Aborted while waiting: reject with the caller's own reason, as `throwIfAborted` does.
        signal?.throwIfAborted()
        throw err
      }
    }
  }

  /**
   * Runs `routine` under the lock, extending it ahead of expiry, then releases it. `signal` aborts before the
   * validity ends if an extension could not be confirmed: the routine must stop then. Resolves with what the routine
   * returns (or rejects with what it throws); never leaves a rejection unhandled.
   *
   * @example
   * await redlock.using(['report'], '5s', async (signal) => {
   *   for (const page of pages) { signal.throwIfAborted(); await render(page) }
   * })
   */
  async using<T>(
    resources: string | readonly string[],
    ttl: Duration,
    routine: (signal: AbortSignal, lock: Lock) => T | Promise<T>,
    options: AcquireOptions = {},
  ): Promise<T> {
    if (typeof routine !== 'function')
      throw new LockError('E_INVALID_OPTION', 'using(resources, ttl, routine): routine must be a function')
    const lock = await this.acquire(resources, ttl, options)
    lock.autoExtend()
    try {
      return await routine(lock.signal, lock)
    } finally {
      await lock.release()
    }
  }

  /** @internal */
  keys(node: Node, resources: readonly string[]): { locks: string[]; fences: string[] } {
    // On a Cluster every key of this library shares one hash tag: a multi-resource script never meets CROSSSLOT.
    const p = node.cluster ? `${this.o.keyPrefix}{redlock}` : this.o.keyPrefix
    return { locks: resources.map((r) => `${p}r:${r}`), fences: resources.map((r) => `${p}f:${r}`) }
  }

  /** @internal Deletes the keys holding `value` on every node; resolves with how many nodes freed something. */
  async releaseValue(resources: readonly string[], value: string, timeout: number): Promise<number> {
    const replies = await runAll(
      this.nodes,
      (node) => run(node, RELEASE, this.keys(node, resources).locks, [value]),
      timeout,
    )
    return replies.filter((r) => r.ok && Number(r.value) > 0).length
  }

  /** @internal Extends on every node; resolves with the per-node outcomes. */
  async extendValue(resources: readonly string[], value: string, ttlMs: number, timeout: number) {
    const replies = await runAll(
      this.nodes,
      (node) => run(node, EXTEND, this.keys(node, resources).locks, [value, ttlMs]),
      timeout,
    )
    return replies.map(
      (reply, node): NodeOutcome =>
        reply.ok
          ? { node, outcome: Number(reply.value) === 1 ? 'granted' : 'held' }
          : { node, outcome: reply.outcome, error: reply.error },
    )
  }

  /** @internal */
  get options(): Resolved {
    return this.o
  }
}

/** A held lock. Release it (or `await using` it); its `signal` tells the holder when it must stop. */
export class Lock {
  readonly resources: readonly string[]
  /** The random value that proves ownership on each node. */
  readonly value: string
  /** Strictly increasing per resource across all holders: pass it to what you write, and let that reject older ones. */
  readonly fencingToken: number
  /** Made on first read of `signal` (a holder that never looks at it pays for no controller and no timer). */
  private controller: AbortController | undefined
  /** Why the lock was lost, when that happened before anyone read `signal`. */
  private lost: LockError | undefined
  private validUntil: number
  private extensions = 0
  private released = false
  private abortTimer: NodeJS.Timeout | undefined
  private extendTimer: NodeJS.Timeout | undefined
  private readonly margin: number
  private readonly nodeTimeout: number

  /** @internal */
  constructor(
    private readonly redlock: Redlock,
    resources: readonly string[],
    value: string,
    fencingToken: number,
    private readonly ttlMs: number,
    validUntil: number,
  ) {
    this.resources = resources
    this.value = value
    this.fencingToken = fencingToken
    this.validUntil = validUntil
    const o = redlock.options
    // At most half the ttl: a larger margin would abort a lock that was just extended.
    this.margin = Math.min(o.abortMargin ?? Math.max(5, ttlMs / 10), ttlMs / 2)
    this.nodeTimeout = o.nodeTimeout ?? Math.min(500, Math.max(5, ttlMs / 20))
  }

  /**
   * Aborts before the validity ends when no extension was confirmed (reason: a `LockError`), and on release. Reading
   * it (`aborted`, `reason`, `throwIfAborted`) also checks the clock: a process that was paused (GC, SIGSTOP, a
   * saturated event loop) runs overdue timers in the order they were due, so the abort timer may come after code
   * that reads the signal.
   */
  get signal(): AbortSignal {
    if (this.controller !== undefined) return this.controller.signal
    const controller = new AbortController()
    this.controller = controller
    const signal = controller.signal
    Object.defineProperties(signal, {
      aborted: {
        get: () => {
          this.checkClock()
          return isAborted(signal)
        },
      },
      reason: {
        get: () => {
          this.checkClock()
          return REASON.call(signal)
        },
      },
      throwIfAborted: {
        value: () => {
          this.checkClock()
          AbortSignal.prototype.throwIfAborted.call(signal)
        },
      },
    })
    if (this.lost !== undefined) controller.abort(this.lost)
    else if (this.released) controller.abort(RELEASED)
    else this.armAbort()
    return signal
  }

  /** When the lock's validity ends, in ms since the epoch (measured on a monotonic clock, then converted). */
  get expiresAt(): number {
    return Date.now() + (this.validUntil - performance.now())
  }

  /**
   * Extends the lock to `ttl` (default: its ttl) from now, if a quorum confirms within the validity; else rejects
   * with `E_LOCK_EXTEND_FAILED` and aborts `signal` (the lock may already be gone).
   */
  async extend(ttl?: Duration): Promise<void> {
    const ttlMs = ttl === undefined ? this.ttlMs : positive(ms(ttl, 'ttl'), 'ttl')
    const o = this.redlock.options
    if (this.released) throw new LockError('E_LOCK_LOST', `the lock on ${this.resources.join(', ')} was released`)
    if (this.extensions >= o.maxExtensions) {
      throw this.lose('E_LOCK_EXTEND_FAILED', `no extension left (maxExtensions ${o.maxExtensions})`)
    }
    this.extensions++
    const start = performance.now()
    const outcomes = await this.redlock.extendValue(this.resources, this.value, ttlMs, this.nodeTimeout)
    const granted = outcomes.filter((n) => n.outcome === 'granted').length
    const drift = ttlMs * o.driftFactor + 2
    const now = performance.now()
    // Counted only with a quorum, and only while the old validity still held when the quorum answered.
    if (granted >= this.redlock.quorum && now < this.validUntil && !this.released) {
      this.validUntil = start + ttlMs - drift
      this.armAbort()
      return
    }
    throw this.lose(
      'E_LOCK_EXTEND_FAILED',
      `extension of ${this.resources.join(', ')} confirmed by ${granted} of ${outcomes.length} nodes (needs ${this.redlock.quorum})`,
      outcomes,
    )
  }

  /** Releases the lock on every node (also those that did not grant it); never throws. */
  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    clearTimeout(this.abortTimer)
    clearTimeout(this.extendTimer)
    // One shared reason: building an error (and its stack) on every release costs more than the release itself.
    if (this.controller !== undefined && !isAborted(this.controller.signal)) this.controller.abort(RELEASED)
    await this.redlock.releaseValue(this.resources, this.value, this.nodeTimeout)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release()
  }

  /** @internal Extends ahead of expiry (at half the ttl) until released, the cap is reached or an extension fails. */
  autoExtend(): void {
    const schedule = () => {
      if (this.released) return
      // Halfway to the moment the signal would abort: early enough to retry nothing, late enough to be cheap.
      const due = (this.validUntil - this.margin - performance.now()) / 2
      this.extendTimer = setTimeout(
        () => {
          this.extend().then(schedule, () => {
            // `extend` aborted the signal with the reason; the routine sees it. Nothing is left unhandled.
          })
        },
        Math.max(0, due),
      )
      this.extendTimer.unref?.()
    }
    schedule()
  }

  private checkClock(): void {
    if (this.released || this.lost !== undefined) return
    if (performance.now() >= this.validUntil - this.margin) {
      this.lose('E_LOCK_LOST', `the validity of ${this.resources.join(', ')} ends in ${this.margin} ms or less`)
    }
  }

  private armAbort(): void {
    clearTimeout(this.abortTimer)
    // Nobody holds the signal yet: its getter checks the clock (and arms this) when it is first read.
    if (this.controller === undefined) return
    const due = this.validUntil - this.margin - performance.now()
    this.abortTimer = setTimeout(
      () => {
        this.lose(
          'E_LOCK_LOST',
          `the validity of ${this.resources.join(', ')} ends in ${this.margin} ms and no extension was confirmed`,
        )
      },
      Math.max(0, due),
    )
    this.abortTimer.unref?.()
  }

  private lose(code: LockErrorCode, message: string, nodes?: NodeOutcome[]): LockError {
    const error = new LockError(code, message, { nodes })
    clearTimeout(this.abortTimer)
    this.lost ??= error
    if (this.controller !== undefined && !isAborted(this.controller.signal)) this.controller.abort(error)
    return error
  }
}

/**
 * Writes `value` to the hash at `key` unless a holder with a higher fencing token already wrote it: the check that
 * makes a lock safe against a holder that paused past its validity. Resolves true when written.
 *
 * @example
 * if (!(await setIfFresher(redis, 'invoice:42', json, lock.fencingToken))) throw new Error('stale holder')
 */
export async function setIfFresher(client: RedlockClient, key: string, value: string, token: number): Promise<boolean> {
  if (!Number.isSafeInteger(token) || token < 0) {
    throw new LockError('E_INVALID_OPTION', `setIfFresher: token must be a non-negative integer (got ${String(token)})`)
  }
  const reply = await client.eval(SET_IF_FRESHER, 1, key, value, token)
  return Number(reply) === 1
}

const ABORTED = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')!.get!
const REASON = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'reason')!.get!
/** The signal's own state, past the clock check a lock's signal does when read. */
const isAborted = (signal: AbortSignal): boolean => ABORTED.call(signal) as boolean

function resourceList(resources: string | readonly string[]): string[] {
  const list = typeof resources === 'string' ? [resources] : Array.isArray(resources) ? [...resources] : undefined
  if (list === undefined || list.length === 0 || list.some((r) => typeof r !== 'string' || r === '')) {
    throw new LockError(
      'E_INVALID_OPTION',
      `resources must be a non-empty string or a list of them (got ${JSON.stringify(resources)})`,
    )
  }
  // Sorted and unique: the same set always makes the same keys.
  return [...new Set(list)].sort()
}

/** A duration in whole ms, refused as E_INVALID_OPTION when it cannot be one (timers and PX need integers). */
function ms(input: Duration, name: string): number {
  let value: number
  try {
    value = parseDuration(input, name)
  } catch (err) {
    throw new LockError('E_INVALID_OPTION', (err as Error).message.replace(/^\[@cache\/core\] /, ''))
  }
  if (value > MAX_MS) throw new LockError('E_INVALID_OPTION', `${name} must be at most ${MAX_MS} ms (~24.8 days)`)
  return Math.round(value)
}

/** The longest a Node timer can wait. */
const MAX_MS = 2_147_483_647

function positive(ms: number, name: string): number {
  if (!(ms > 0)) throw new LockError('E_INVALID_OPTION', `${name} must be more than 0 ms (got ${ms})`)
  return ms
}

function resolve(options: RedlockOptions): Resolved {
  if (options === null || typeof options !== 'object') {
    throw new LockError('E_INVALID_OPTION', 'options must be an object')
  }
  const count = options.retryCount ?? 10
  if (!(count === Number.POSITIVE_INFINITY || (Number.isInteger(count) && count >= 0))) {
    throw new LockError('E_INVALID_OPTION', `retryCount must be a whole number >= 0 or Infinity (got ${count})`)
  }
  const drift = options.driftFactor ?? 0.01
  if (!(drift >= 0 && drift < 1))
    throw new LockError('E_INVALID_OPTION', `driftFactor must be in [0, 1) (got ${drift})`)
  const max = options.maxExtensions ?? Number.POSITIVE_INFINITY
  if (!(max === Number.POSITIVE_INFINITY || (Number.isInteger(max) && max >= 0))) {
    throw new LockError('E_INVALID_OPTION', `maxExtensions must be a whole number >= 0 or Infinity (got ${max})`)
  }
  const optional = (d: Duration | undefined, name: string) =>
    d === undefined ? undefined : positive(ms(d, name), name)
  return {
    retryCount: count,
    retryDelay: ms(options.retryDelay ?? '200ms', 'retryDelay'),
    retryJitter: ms(options.retryJitter ?? '100ms', 'retryJitter'),
    driftFactor: drift,
    nodeTimeout: optional(options.nodeTimeout, 'nodeTimeout'),
    acquireTimeout: optional(options.acquireTimeout, 'acquireTimeout'),
    maxExtensions: max,
    abortMargin: optional(options.abortMargin, 'abortMargin'),
    keyPrefix: options.keyPrefix ?? 'lock:',
  }
}
