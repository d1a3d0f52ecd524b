/**
 * Inputs shared by the benchmarks. Everything here runs before a timed loop, never inside one.
 */

/** A small value, the same shape for every contender. */
export interface Value {
  id: number
  name: string
  active: boolean
}

/** An expiry no benchmark reaches: ten years from now. */
export const FAR_FUTURE = Date.now() + 10 * 365 * 24 * 3600 * 1000

/**
 * `user:<i>` for i in [0, n). At most 11 characters, so V8 builds each as a flat string (concatenations of 13+
 * characters start as rope strings): every contender gets the same flat key objects.
 */
export function makeKeys(n: number, prefix = 'user:'): string[] {
  const keys = new Array<string>(n)
  for (let i = 0; i < n; i++) keys[i] = `${prefix}${i}`
  return keys
}

export function makeValues(n: number): Value[] {
  const values = new Array<Value>(n)
  for (let i = 0; i < n; i++) values[i] = { id: i, name: `user-${i}`, active: i % 2 === 0 }
  return values
}

/** mulberry32: a tiny seeded PRNG, so every run shuffles the same way. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A Fisher–Yates shuffled copy. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice()
  const random = prng(seed)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = out[i]!
    out[i] = out[j]!
    out[j] = tmp
  }
  return out
}

/**
 * Diagnostic switch: with BENCH_FIXED_CLOCK=1, ours gets `clock: () => <start time>` (an existing option) in M1, M2
 * and C1, to show what reading Date.now() costs on each hot path. It is process-wide on purpose: a second clock in
 * the same process would make the store's `this.clock()` call site polymorphic and slow both variants down.
 */
export const fixedClock: (() => number) | undefined = (() => {
  const flag = process.env.BENCH_FIXED_CLOCK
  if (flag === undefined || flag === '' || flag === '0') return undefined
  const start = Date.now()
  return () => start
})()

/** Suffix for the names of our rows in a fixed-clock run. */
export const clockTag = fixedClock === undefined ? '' : ' [fixed clock]'
