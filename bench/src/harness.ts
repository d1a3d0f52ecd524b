/**
 * A small interleaved A/B harness. Contenders run side by side in one process: after a warm-up, each round runs one
 * timed batch per contender, in an order rotated every round, so drift on a noisy machine (other processes, CPU
 * frequency, GC state) lands on every contender instead of on whoever happened to run last. Ratios are taken per
 * round, between batches that ran seconds apart, then summarised.
 */

export type Kind = 'ours' | 'anchor' | 'reference'

export interface Contender {
  name: string
  kind: Kind
  /**
   * Runs `passes` passes over data prepared beforehand and returns a count (hits, writes) that the harness checks
   * against `expectPerPass`: a benchmark of hits that silently missed would measure the wrong thing.
   * Each contender writes its own loop, so V8 optimises each call site for one receiver.
   */
  batch(passes: number): number | Promise<number>
  /** What one pass must count. */
  expectPerPass: number
}

export interface Pair {
  ours: string
  anchor: string
  /** Target for ours/anchor (higher is better); omitted for rows shown for information. */
  target?: number
}

export interface ThroughputSpec {
  id: string
  title: string
  /** Operations in one pass over the prepared data. */
  opsPerPass: number
  contenders: Contender[]
  pairs: Pair[]
  /** Lines printed under the table (what exactly was configured). */
  notes?: string[]
}

export interface Stats {
  median: number
  min: number
  max: number
}

export interface ContenderResult {
  name: string
  kind: Kind
  passesPerBatch: number
  opsPerBatch: number
  /** One figure per round. */
  opsPerSec: number[]
  stats: Stats
}

export interface PairResult {
  ours: string
  anchor: string
  target: number | null
  /** ours/anchor per round. */
  perRound: number[]
  stats: Stats
  /** Median ratio at or above target; null without a target. */
  met: boolean | null
}

export interface ThroughputResult {
  type: 'throughput'
  id: string
  title: string
  rounds: number
  batchMs: number
  contenders: ContenderResult[]
  pairs: PairResult[]
  notes: string[]
}

export interface HarnessOptions {
  rounds: number
  /** Aimed duration of one timed batch. */
  batchMs: number
  /** Warm-up per contender before calibration. */
  warmupMs: number
}

export function harnessOptions(env: NodeJS.ProcessEnv = process.env): HarnessOptions {
  return {
    rounds: positiveInt(env.BENCH_ROUNDS, 7, 'BENCH_ROUNDS'),
    batchMs: positiveInt(env.BENCH_BATCH_MS, 150, 'BENCH_BATCH_MS'),
    warmupMs: positiveInt(env.BENCH_WARMUP_MS, 300, 'BENCH_WARMUP_MS'),
  }
}

export function positiveInt(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be an integer >= 1 (got '${raw}')`)
  return n
}

const gc: (() => void) | undefined = typeof globalThis.gc === 'function' ? globalThis.gc : undefined

/** True when the process runs with --expose-gc (the harness then collects between batches). */
export const gcExposed = gc !== undefined

/** Collects garbage, then lets pending timers and I/O run, so neither lands inside the next timed batch. */
async function settle(): Promise<void> {
  gc?.()
  await new Promise<void>((resolve) => setImmediate(resolve))
}

async function timeBatch(c: Contender, passes: number): Promise<number> {
  const start = performance.now()
  const out = c.batch(passes)
  const count = typeof out === 'number' ? out : await out
  const elapsed = performance.now() - start
  const expected = c.expectPerPass * passes
  if (count !== expected) {
    throw new Error(`[bench] ${c.name}: a batch of ${passes} passes counted ${count}, expected ${expected}`)
  }
  return elapsed
}

export async function runThroughput(spec: ThroughputSpec, opts: HarnessOptions): Promise<ThroughputResult> {
  const { contenders } = spec
  const names = new Set(contenders.map((c) => c.name))
  for (const pair of spec.pairs) {
    if (!names.has(pair.ours) || !names.has(pair.anchor)) throw new Error(`[bench] ${spec.id}: unknown pair`)
  }

  // Warm-up, which also measures a rate to size each contender's batches to about batchMs.
  const passes = new Map<Contender, number>()
  for (const c of contenders) {
    let n = 1
    let spent = 0
    let rate = 0
    while (spent < opts.warmupMs) {
      await settle()
      const ms = await timeBatch(c, n)
      spent += ms
      rate = n / Math.max(ms, 0.001)
      if (ms < opts.warmupMs / 8) n *= 2
    }
    passes.set(c, Math.max(1, Math.round(rate * opts.batchMs)))
  }
  // One untimed interleaved round at full size, so the first timed round is not the first big batch.
  for (const c of contenders) {
    await settle()
    await timeBatch(c, passes.get(c)!)
  }

  const opsPerSec = new Map<Contender, number[]>(contenders.map((c) => [c, []]))
  for (let round = 0; round < opts.rounds; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + round) % contenders.length]!
      const n = passes.get(c)!
      await settle()
      const ms = await timeBatch(c, n)
      opsPerSec.get(c)!.push((n * spec.opsPerPass) / (ms / 1000))
    }
  }

  const byName = new Map(contenders.map((c) => [c.name, opsPerSec.get(c)!]))
  return {
    type: 'throughput',
    id: spec.id,
    title: spec.title,
    rounds: opts.rounds,
    batchMs: opts.batchMs,
    contenders: contenders.map((c) => ({
      name: c.name,
      kind: c.kind,
      passesPerBatch: passes.get(c)!,
      opsPerBatch: passes.get(c)! * spec.opsPerPass,
      opsPerSec: opsPerSec.get(c)!,
      stats: summarise(opsPerSec.get(c)!),
    })),
    pairs: spec.pairs.map((pair) => {
      const ours = byName.get(pair.ours)!
      const anchor = byName.get(pair.anchor)!
      const perRound = ours.map((v, i) => v / anchor[i]!)
      const stats = summarise(perRound)
      return {
        ours: pair.ours,
        anchor: pair.anchor,
        target: pair.target ?? null,
        perRound,
        stats,
        met: pair.target === undefined ? null : stats.median >= pair.target,
      }
    }),
    notes: spec.notes ?? [],
  }
}

export function summarise(values: readonly number[]): Stats {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN }
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! }
}

/**
 * Runs `op(n)` for n in [0, total) with `concurrency` calls in flight (each lane takes the next n when its call
 * settles); resolves to how many calls returned true.
 */
export async function inLanes(
  total: number,
  concurrency: number,
  op: (n: number) => Promise<boolean>,
): Promise<number> {
  let next = 0
  let hits = 0
  const lane = async (): Promise<void> => {
    while (next < total) if (await op(next++)) hits++
  }
  await Promise.all(Array.from({ length: concurrency }, lane))
  return hits
}

/** Nearest-rank percentiles of latencies (ms): the shape S2 and BUS report. */
export interface Percentiles {
  n: number
  p50: number
  p99: number
  max: number
}

export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { n: 0, p50: Number.NaN, p99: Number.NaN, max: Number.NaN }
  const sorted = [...values].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
  return { n: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1]! }
}
