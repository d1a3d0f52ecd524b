/**
 * Runs the benchmarks: all of them, or those named on the command line (`pnpm bench M1 C1`).
 * Prints tables, writes .results/latest.json and .results/latest.md (paste the latter into RESULTS.md).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { bus } from './bus.js'
import { c1 } from './c1.js'
import { codec } from './codec.js'
import { fixedClock } from './data.js'
import { gcExposed, harnessOptions } from './harness.js'
import { p1, p2, p3, p4, p5 } from './http/benches.js'
import { httpOptions } from './http/load.js'
import { k1 } from './k1.js'
import { l1 } from './l1.js'
import { l2 } from './l2.js'
import { m1 } from './m1.js'
import { m2 } from './m2.js'
import { memory } from './memory.js'
import { r1 } from './r1.js'
import { r2 } from './r2.js'
import { r3 } from './r3.js'
import { r4 } from './r4.js'
import { type BenchResult, type RunReport, renderMarkdown, renderSummary, renderText } from './report.js'
import { s1 } from './s1.js'
import { s2 } from './s2.js'

const opts = harnessOptions()
const http = httpOptions()
const memRuns = Number(process.env.BENCH_MEM_RUNS ?? 3)
if (!Number.isInteger(memRuns) || memRuns < 1) throw new Error('BENCH_MEM_RUNS must be an integer >= 1')

const BENCHES: Record<string, () => Promise<BenchResult>> = {
  M1: () => m1(opts),
  M2: () => m2(opts),
  C1: () => c1(opts),
  S1: () => s1(),
  MEM: () => memory(memRuns),
  R1: () => r1(opts),
  R2: () => r2(opts),
  R3: () => r3(opts),
  R4: () => r4(opts),
  S2: () => s2(),
  BUS: () => bus(),
  K1: () => k1(opts),
  L1: () => l1(opts),
  L2: () => l2(opts),
  CODEC: () => codec(opts),
  P1: () => p1(http),
  P2: () => p2(http),
  P3: () => p3(http),
  P4: () => p4(http),
  P5: () => p5(http),
}

const asked = process.argv.slice(2).map((a) => a.toUpperCase())
for (const name of asked) {
  if (!(name in BENCHES)) {
    console.error(`[bench] unknown benchmark '${name}'; choose among ${Object.keys(BENCHES).join(', ')}`)
    process.exit(2)
  }
}
const selected = asked.length > 0 ? Object.keys(BENCHES).filter((n) => asked.includes(n)) : Object.keys(BENCHES)

if (fixedClock !== undefined) {
  console.warn(
    '[bench] BENCH_FIXED_CLOCK is set: ours reads a fixed clock. A diagnostic, not the shipped configuration.',
  )
}
if (!gcExposed) console.warn('[bench] global.gc is not exposed: run node with --expose-gc for steadier numbers')
const started = performance.now()
const startedAt = new Date().toISOString()
const loadavgStart = os.loadavg()[0]!
console.log(
  `[bench] ${selected.join(' ')} · ${opts.rounds} rounds · ~${opts.batchMs} ms batches · Node ${process.version} · ` +
    `${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.availableParallelism()} · load ${loadavgStart.toFixed(2)}`,
)

const results: BenchResult[] = []
for (const name of selected) {
  const result = await BENCHES[name]!()
  results.push(result)
  console.log(`\n${renderText(result)}`)
}

const report: RunReport = {
  date: startedAt,
  command: `pnpm --filter @cache/bench bench${asked.length > 0 ? ` ${asked.join(' ')}` : ''}`,
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    ramGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    platform: `${process.platform} ${os.release()}`,
    loadavgStart,
    loadavgEnd: os.loadavg()[0]!,
  },
  gcExposed,
  fixedClock: fixedClock !== undefined,
  rounds: opts.rounds,
  batchMs: opts.batchMs,
  durationS: (performance.now() - started) / 1000,
  results,
}

const dir = new URL('../.results/', import.meta.url)
await mkdir(dir, { recursive: true })
await writeFile(new URL('latest.json', dir), `${JSON.stringify(report, null, 2)}\n`)
const markdown = `${renderSummary(report)}\n\n${renderMarkdown(report)}`
await writeFile(new URL('latest.md', dir), markdown)
console.log(`\n== summary\n\n${renderSummary(report)}`)
console.log(`\n[bench] ${report.durationS.toFixed(0)} s · wrote bench/.results/latest.json and latest.md`)
