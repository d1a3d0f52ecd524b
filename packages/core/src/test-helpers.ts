// Helpers shared by this package's tests (not part of the published API).
import { expect } from 'vitest'
import { CacheError, type CacheErrorCode } from './errors.js'
import type { StoredEntry } from './types.js'

/** A promise with its resolve and reject functions, to settle a loader when the test says so. */
export function deferred<T>() {
  let resolve!: (value: T) => void
  let reject!: (err: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** A clock the test moves by hand; real timers still run (used for soft/hard timeouts only). */
export function manualClock(start = 1_700_000_000_000) {
  let now = start
  return {
    now: () => now,
    advance(ms: number) {
      now += ms
    },
  }
}

/** The CacheError a promise rejects with; fails the test if it resolves or rejects with something else. */
export async function rejection(promise: Promise<unknown>): Promise<CacheError> {
  try {
    await promise
  } catch (err) {
    expect(err).toBeInstanceOf(CacheError)
    return err as CacheError
  }
  throw new Error('expected a rejection')
}

/** The CacheError a function throws; fails the test if it throws nothing or something else. */
export function errorOf(fn: () => unknown): CacheError {
  try {
    fn()
  } catch (err) {
    if (err instanceof CacheError) return err
    throw err
  }
  throw new Error('expected a CacheError, but nothing was thrown')
}

export function expectCode(fn: () => unknown, code: CacheErrorCode, message?: RegExp): void {
  const err = errorOf(fn)
  expect(err.code).toBe(code)
  if (message) expect(err.message).toMatch(message)
}

/** Deterministic PRNG (mulberry32), so randomized checks are reproducible. */
export function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const HOUR = 3_600_000

/** A live entry written now: fresh for `freshMs`, gone after `staleMs` (default: as soon as it is stale). */
export function liveEntry(
  value: unknown,
  fields: Partial<Omit<StoredEntry, 'value'>> = {},
  freshMs = HOUR,
  staleMs = freshMs,
): StoredEntry {
  const now = Date.now()
  return { value, createdAt: now, freshUntil: now + freshMs, staleUntil: now + staleMs, ...fields }
}

/** What a promise rejects with, whatever it is; fails the test if it resolves. */
export async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

/** Liveness: polls `check` every `everyMs` until it answers true; whether it did within `timeoutMs`. */
export async function pollUntil(check: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** Liveness: whether `op` stops throwing within `timeoutMs`. */
export function recovers(op: () => Promise<unknown>, timeoutMs = 5000): Promise<boolean> {
  return pollUntil(
    () =>
      op().then(
        () => true,
        () => false,
      ),
    timeoutMs,
  )
}
