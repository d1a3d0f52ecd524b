/**
 * Time for the hot path. Reading the system clock costs 50–200 ns on virtual machines — more than a whole cache
 * hit — so hits share one reading per millisecond: `coarseNow()` returns the last reading, which a real (unref'd)
 * timer drops a millisecond later. A synchronous stretch of code therefore sees time stand still, which is why
 * anything close to a deadline asks `nowNear(deadline)` instead: far from the deadline the shared reading is good
 * enough (it can only lag, and a lag of less than `GUARD_MS` cannot cross the deadline); near it, the clock is read.
 * Expiry stays exact unless the event loop is blocked for more than `GUARD_MS` in one go.
 */
let cached = 0
// Captured at load: fake timers installed by a test later must not freeze the library's clock. And when a test
// replaces Date.now (fake timers, setSystemTime), every reading goes to it: fake time moves without the event loop.
const realSetTimeout = globalThis.setTimeout
const realDateNow = Date.now
const forget = () => {
  cached = 0
}

/** Closer than this to a deadline, the clock is read rather than the shared reading used. */
export const GUARD_MS = 1000

/** The shared reading (at most a millisecond old while the event loop turns). */
export function coarseNow(): number {
  return cached === 0 || Date.now !== realDateNow ? exactNow() : cached
}

/** Reads the clock, and shares the reading with `coarseNow()`. */
export function exactNow(): number {
  const now = Date.now()
  if (cached === 0) realSetTimeout(forget, 1).unref()
  cached = now
  return now
}

/** A time good enough to compare with `deadline`: the shared reading when far from it, else the clock. */
export function nowNear(deadline: number): number {
  if (cached === 0 || Date.now !== realDateNow) return exactNow()
  return deadline - cached > GUARD_MS ? cached : exactNow()
}
