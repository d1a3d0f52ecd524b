import { afterEach, describe, expect, it, vi } from 'vitest'
import { coarseNow, exactNow, GUARD_MS, nowNear } from './clock.js'

/** Spins without yielding to the event loop until `ms` have passed on the system clock. */
function busyWait(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // Nothing: no timer can run, so the shared coarse reading stays where it was.
  }
}

/** Lets the event loop turn once (timers, then the check phase). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

afterEach(() => {
  vi.useRealTimers()
})

describe('exactNow', () => {
  it('reads the system clock', () => {
    for (let i = 0; i < 1000; i++) {
      const before = Date.now()
      const now = exactNow()
      const after = Date.now()
      expect(now).toBeGreaterThanOrEqual(before)
      expect(now).toBeLessThanOrEqual(after)
    }
  })

  it('sees time pass during synchronous work', () => {
    const first = exactNow()
    busyWait(5)
    expect(exactNow()).toBeGreaterThanOrEqual(first + 5)
  })
})

describe('coarseNow', () => {
  it('never runs ahead of Date.now()', async () => {
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 1000; i++) expect(coarseNow()).toBeLessThanOrEqual(Date.now())
      busyWait(2)
      expect(coarseNow()).toBeLessThanOrEqual(Date.now())
      await turn()
    }
  })

  it('stands still during synchronous work (no timer can refresh it)', () => {
    const coarse = coarseNow()
    busyWait(5)
    expect(coarseNow()).toBe(coarse)
    expect(coarseNow()).toBeLessThan(Date.now())
  })

  it('is refreshed once the event loop turns past its timer', async () => {
    coarseNow()
    const mark = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(coarseNow()).toBeGreaterThanOrEqual(mark)
    expect(coarseNow()).toBeLessThanOrEqual(Date.now())
  })

  it('an exact reading is shared: coarseNow() returns it afterwards', () => {
    coarseNow()
    busyWait(2)
    const exact = exactNow()
    expect(coarseNow()).toBe(exact)
  })

  it('keeps being refreshed under fake timers installed after the clock module loaded', async () => {
    // Only the timer functions are faked (Date stays real): the clock's own timer was captured at load.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    coarseNow()
    const mark = Date.now()
    while (Date.now() < mark + 5) await turn()
    // One more turn, so the timers phase has run with the loop time past the deadline.
    await turn()
    await turn()
    expect(coarseNow()).toBeGreaterThanOrEqual(mark + 5)
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('nowNear', () => {
  it('GUARD_MS is a positive number of milliseconds', () => {
    expect(GUARD_MS).toBeGreaterThan(0)
    expect(Number.isFinite(GUARD_MS)).toBe(true)
  })

  it('reads the clock when the deadline is within GUARD_MS: a deadline passed during synchronous work is seen', () => {
    const coarse = coarseNow()
    busyWait(5)
    const deadline = Date.now() - 1
    // The shared reading is stale and still before the deadline: only a fresh reading sees it passed.
    expect(coarseNow()).toBe(coarse)
    expect(coarse).toBeLessThan(deadline)
    expect(nowNear(deadline)).toBeGreaterThanOrEqual(deadline)
  })

  it('reads the clock for a deadline still ahead but within GUARD_MS', () => {
    coarseNow()
    busyWait(5)
    const before = Date.now()
    const now = nowNear(before + GUARD_MS / 2)
    expect(now).toBeGreaterThanOrEqual(before)
    expect(now).toBeLessThanOrEqual(Date.now())
  })

  it('reads the clock at exactly GUARD_MS from the shared reading', () => {
    const coarse = coarseNow()
    busyWait(5)
    const before = Date.now()
    expect(nowNear(coarse + GUARD_MS)).toBeGreaterThanOrEqual(before)
  })

  it('may answer with the stale shared reading when the deadline is far, but never one ahead of the clock', () => {
    const coarse = coarseNow()
    busyWait(5)
    const far = nowNear(Date.now() + 10 * GUARD_MS)
    expect(far).toBeGreaterThanOrEqual(coarse)
    expect(far).toBeLessThanOrEqual(Date.now())
    expect(nowNear(Number.POSITIVE_INFINITY)).toBeLessThanOrEqual(Date.now())
  })

  it('never answers a time before a passed deadline, however the calls interleave', () => {
    for (let round = 0; round < 20; round++) {
      coarseNow()
      busyWait(1)
      const deadline = Date.now()
      expect(nowNear(deadline)).toBeGreaterThanOrEqual(deadline)
      expect(nowNear(deadline + 2 * GUARD_MS)).toBeLessThanOrEqual(Date.now())
    }
  })
})
