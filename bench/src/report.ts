import type { BusResult } from './bus.js'
import type { Percentiles, Stats, ThroughputResult } from './harness.js'
import type { MemoryResult } from './memory.js'
import type { StampedeResult } from './s1.js'
import type { S2Result } from './s2.js'

export type BenchResult = ThroughputResult | StampedeResult | MemoryResult | S2Result | BusResult

export interface Machine {
  cpu: string
  cores: number
  ramGiB: number
  node: string
  platform: string
  /** 1-minute load average at start and end: other work on the machine shows here. */
  loadavgStart: number
  loadavgEnd: number
}

export interface RunReport {
  date: string
  command: string
  machine: Machine
  gcExposed: boolean
  /** BENCH_FIXED_CLOCK diagnostic run: ours read a fixed clock instead of Date.now. */
  fixedClock: boolean
  rounds: number
  batchMs: number
  durationS: number
  results: BenchResult[]
}

export function ops(n: number): string {
  if (!Number.isFinite(n)) return 'n/a'
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`
  return n.toFixed(0)
}

export function ratio(s: Stats): string {
  return `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})`
}

function opsRange(s: Stats): string {
  return `${ops(s.min)} – ${ops(s.max)}`
}

function bytes(s: Stats): string {
  return `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`
}

/** `1.2 / 3.4 / 5.6 ms` (p50 / p99 / max), or `n/a` without samples. */
function latency(p: Percentiles): string {
  if (p.n === 0) return 'n/a'
  return `${p.p50.toFixed(2)} / ${p.p99.toFixed(2)} / ${p.max.toFixed(2)}`
}

function counts(s: Stats): string {
  return s.min === s.max ? String(s.min) : `${s.median} (${s.min}–${s.max})`
}

function verdict(met: boolean | null): string {
  if (met === null) return '—'
  return met ? 'met' : 'MISSED'
}

type Table = { head: string[]; rows: string[][] }

/** The tables of one result, shared by the console and the markdown renderings. */
function tables(result: BenchResult): Table[] {
  if (result.type === 'throughput') {
    return [
      {
        head: ['contender', 'kind', 'median ops/s', 'min – max ops/s', 'ops/batch'],
        rows: result.contenders.map((c) => [
          c.name,
          c.kind,
          ops(c.stats.median),
          opsRange(c.stats),
          ops(c.opsPerBatch),
        ]),
      },
      {
        head: ['ratio', 'median (min–max)', 'target', 'verdict'],
        rows: result.pairs.map((p) => [
          `${p.ours} / ${p.anchor}`,
          ratio(p.stats),
          p.target === null ? '—' : `≥ ${p.target}×`,
          verdict(p.met),
        ]),
      },
    ]
  }
  if (result.type === 'stampede') {
    return [
      {
        head: ['contender', 'kind', 'loader calls', 'callers with the value', 'wall ms (info)'],
        rows: result.rows.map((r) => [
          r.name,
          r.kind,
          String(r.loaderCalls),
          `${r.gotValue} / ${r.callers}`,
          r.ms.toFixed(0),
        ]),
      },
    ]
  }
  if (result.type === 'cross-stampede') {
    return [
      {
        head: [
          'mode',
          'loader calls per round median (min–max)',
          'callers with the value',
          'waiters: added ms p50 / p99 / max (n)',
          "waiters: ms after the holder's loader returned p50 / p99 / max",
          'holder process: added ms p50 / p99 / max (n)',
          'barrier skew ms max',
        ],
        rows: result.rows.map((r) => [
          r.name,
          counts(r.loaderStats),
          `${r.gotValue} / ${r.callers}`,
          r.waiters.n === 0 ? 'n/a' : `${latency(r.waiters)} (${r.waiters.n})`,
          latency(r.afterLoad),
          `${latency(r.holders)} (${r.holders.n})`,
          r.skew.max.toFixed(1),
        ]),
      },
    ]
  }
  if (result.type === 'bus') {
    return [
      {
        head: [
          'case',
          'messages',
          'received',
          'L1 copies dropped',
          'from set(): ms p50 / p99 / max',
          'from publish(): ms p50 / p99 / max',
        ],
        rows: result.rows.map((r) => [
          r.name,
          String(r.messages),
          String(r.received),
          String(r.dropped),
          latency(r.fromSet),
          latency(r.fromPublish),
        ]),
      },
    ]
  }
  return [
    {
      head: ['contender', 'kind', 'bytes/entry heap+arrayBuffers median (min–max)', 'bytes/entry heapUsed only'],
      rows: result.rows.map((r) => [r.name, r.kind, bytes(r.total), bytes(r.heap)]),
    },
    {
      head: ['ratio (lower is better)', 'median (min–max)'],
      rows: [[`${result.ratio.ours} / ${result.ratio.anchor}`, ratio(result.ratio.stats)]],
    },
  ]
}

function textTable(t: Table): string {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [line(t.head), line(widths.map((w) => '-'.repeat(w))), ...t.rows.map(line)].join('\n')
}

function markdownTable(t: Table): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(t.head), line(t.head.map(() => '---')), ...t.rows.map(line)].join('\n')
}

export function renderText(result: BenchResult): string {
  const head = `== ${result.id}: ${result.title}`
  const notes = result.notes.map((n) => `   ${n}`).join('\n')
  return [head, ...tables(result).map(textTable), notes].join('\n\n')
}

export function renderMarkdown(report: RunReport): string {
  const m = report.machine
  const out = [
    ...(report.fixedClock
      ? ['**Diagnostic run (BENCH_FIXED_CLOCK=1): ours read a fixed clock, not Date.now.**', '']
      : []),
    `Run ${report.date} · \`${report.command}\` · ${report.rounds} interleaved rounds, ~${report.batchMs} ms batches, ` +
      `gc between batches: ${report.gcExposed ? 'yes' : 'no'} · ${report.durationS.toFixed(0)} s`,
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB.toFixed(0)} GiB RAM, Node ${m.node} (${m.platform}); ` +
      `load average ${m.loadavgStart.toFixed(2)} at start, ${m.loadavgEnd.toFixed(2)} at end`,
  ]
  for (const result of report.results) {
    out.push('', `### ${result.id}: ${result.title}`, '')
    out.push(tables(result).map(markdownTable).join('\n\n'))
    out.push('', ...result.notes.map((n) => `- ${n}`))
  }
  return `${out.join('\n')}\n`
}

/** The ratio lines alone, as one markdown table: the summary RESULTS.md leads with. */
export function renderSummary(report: RunReport): string {
  const rows: string[][] = []
  for (const result of report.results) {
    if (result.type === 'throughput') {
      for (const p of result.pairs) {
        rows.push([
          result.id,
          `${p.ours} / ${p.anchor}`,
          ratio(p.stats),
          p.target === null ? '—' : `≥ ${p.target}×`,
          verdict(p.met),
        ])
      }
    } else if (result.type === 'stampede') {
      for (const r of result.rows) {
        const ok = r.loaderCalls === 1 && r.gotValue === r.callers
        rows.push([
          result.id,
          `${r.name}: loader calls`,
          String(r.loaderCalls),
          '= 1',
          r.kind === 'ours' ? verdict(ok) : '—',
        ])
      }
    } else if (result.type === 'cross-stampede') {
      for (const r of result.rows) {
        const ok = r.loaderStats.max === 1 && r.gotValue === r.callers
        rows.push([
          result.id,
          `${r.name}: loader calls per round across processes`,
          counts(r.loaderStats),
          r.lock ? '= 1' : '—',
          r.lock ? verdict(ok) : '—',
        ])
        if (r.waiters.n > 0) {
          rows.push([result.id, `${r.name}: waiters' added ms p50 / p99 / max`, latency(r.waiters), '—', '—'])
        }
      }
    } else if (result.type === 'bus') {
      for (const r of result.rows) {
        rows.push([
          result.id,
          `${r.name}: ms from set() to the L1 drop elsewhere, p50 / p99 / max (${r.received}/${r.messages} heard)`,
          latency(r.fromSet),
          '—',
          '—',
        ])
        rows.push([
          result.id,
          `${r.name}: ms from publish() to the L1 drop elsewhere`,
          latency(r.fromPublish),
          '—',
          '—',
        ])
      }
    } else {
      rows.push([
        result.id,
        `${result.ratio.ours} / ${result.ratio.anchor} bytes/entry`,
        ratio(result.ratio.stats),
        '—',
        '—',
      ])
    }
  }
  return markdownTable({ head: ['bench', 'ratio', 'median (min–max)', 'target', 'verdict'], rows })
}
