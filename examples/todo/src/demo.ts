import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { stripVTControlCharacters as stripAnsi } from 'node:util'
import { type LoadOptions, type LoadResult, runLoad } from './load.js'

// `pnpm demo`: the same Todo API twice, once straight on its slow repository and once behind
// `createCache({ store: memoryStore({ maxEntries: 10_000 }) })`, under the same scripted load. Each server runs in a
// process of its own (src/server.ts, on 127.0.0.1 and an ephemeral port), so the load generator in this process does
// not compete with it for an event loop. Everything is bounded and stops by itself within seconds.

const LATENCY_MS = '5-15'
const LOAD: Omit<LoadOptions, 'baseUrl'> = {
  users: 20,
  requests: 4000,
  concurrency: 20,
  writeRatio: 0.1,
  maxDurationMs: 8000,
  seed: 42,
}
/** A short run first, not measured, so the JIT and the connection pool are warm for the measured one. */
const WARMUP: Omit<LoadOptions, 'baseUrl'> = { ...LOAD, requests: 400, userPrefix: 'warmup-', seed: 7 }
const SERVER = fileURLToPath(new URL('./server.ts', import.meta.url))

const tty = process.stdout.isTTY === true && process.env.NO_COLOR === undefined
const paint = (code: string) => (text: string) => (tty ? `\x1b[${code}m${text}\x1b[0m` : text)
const bold = paint('1')
const dim = paint('2')
const green = paint('32')
const red = paint('31')
const cyan = paint('36')

interface Scenario {
  label: string
  result: LoadResult
}

/** Forks src/server.ts (with this process's tsx loader and conditions) and waits for the URL it listens on. */
async function startServer(cache: boolean): Promise<{ child: ChildProcess; url: string }> {
  const child = fork(SERVER, {
    env: { ...process.env, PORT: '0', CACHE: cache ? 'on' : 'off', LATENCY_MS },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server did not start within 30 s')), 30_000)
      child.once('message', (message: { url?: string }) => {
        clearTimeout(timer)
        if (typeof message?.url === 'string') resolve(message.url)
        else reject(new Error(`unexpected message from the server: ${JSON.stringify(message)}`))
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the server exited with code ${code} before listening`))
      })
    })
    return { child, url }
  } catch (err) {
    child.kill()
    throw err
  }
}

/** Disconnecting makes the server close and exit; if it has not within 10 s, it is killed. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  if (child.connected) child.disconnect()
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

async function measure(label: string, cache: boolean): Promise<Scenario> {
  const { child, url } = await startServer(cache)
  process.stdout.write(`  ${label.padEnd(11)} ${dim(url)} … `)
  try {
    await runLoad({ ...WARMUP, baseUrl: url })
    const result = await runLoad({ ...LOAD, baseUrl: url })
    console.log(`${result.requests} requests in ${(result.durationMs / 1000).toFixed(2)} s`)
    return { label, result }
  } finally {
    await stopServer(child)
  }
}

function ms(value: number): string {
  return `${value < 1 ? value.toFixed(3) : value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`
}

/** How many times better `after` is than `before` (both "lower is better"). */
function speedup(before: number | undefined, after: number | undefined): string {
  if (before === undefined || after === undefined || !(before > 0 && after > 0)) return ''
  const ratio = before / after
  return cyan(`${ratio < 10 ? ratio.toFixed(1) : Math.round(ratio).toLocaleString('en-US')}×`)
}

/** Columns padded to their widest cell; widths ignore ANSI codes, so coloured cells line up. */
function table(rows: string[][], align: ('l' | 'r')[]): string[] {
  const visible = (text: string) => stripAnsi(text).length
  const widths = align.map((_, i) => Math.max(...rows.map((row) => visible(row[i] ?? ''))))
  return rows.map((row) =>
    row
      .map((text, i) => {
        const pad = ' '.repeat(widths[i]! - visible(text))
        return align[i] === 'r' ? pad + text : text + pad
      })
      .join('   ')
      .trimEnd(),
  )
}

async function main(): Promise<number> {
  const writes = Math.round(LOAD.writeRatio! * 100)
  console.log(bold('\n@cache/core demo: a multi-user Todo API on a slow repository, without and with a cache\n'))
  console.log(
    dim(
      `  ${LOAD.users} users · ${LOAD.requests} requests: ~${100 - writes}% list reads, ~${writes}% writes · ` +
        `concurrency ${LOAD.concurrency}\n  repository round trip ${LATENCY_MS.replace('-', '–')} ms · ` +
        'lists cached 30 s per user, tag-invalidated by that user’s writes\n',
    ),
  )

  const plain = await measure('no cache', false)
  const cached = await measure('with cache', true)
  const a = plain.result
  const b = cached.result

  const failures = (r: LoadResult) => {
    const text = `${r.errors} / ${r.violations}`
    return r.errors + r.violations === 0 ? green(text) : red(text)
  }
  const lines = table(
    [
      ['', plain.label, cached.label, 'speedup'].map(bold),
      ['requests', String(a.requests), String(b.requests), ''],
      ['cache hit rate', dim('n/a'), b.cache === null ? dim('n/a') : `${(b.cache.hitRate * 100).toFixed(1)} %`, ''],
      // Misses that joined a load already running for the same list: they cost the repository nothing.
      ['misses coalesced', dim('n/a'), b.cache === null ? dim('n/a') : String(b.cache.coalesced), ''],
      [
        'repository reads',
        String(a.origin.reads),
        String(b.origin.reads),
        b.origin.reads < a.origin.reads ? `${speedup(a.origin.reads, b.origin.reads)} fewer` : '',
      ],
      ['latency, median', ms(a.latency.median), ms(b.latency.median), speedup(a.latency.median, b.latency.median)],
      ['latency, p99', ms(a.latency.p99), ms(b.latency.p99), speedup(a.latency.p99, b.latency.p99)],
      [
        'server time, median',
        a.serverTime ? ms(a.serverTime.median) : '',
        b.serverTime ? ms(b.serverTime.median) : '',
        speedup(a.serverTime?.median, b.serverTime?.median),
      ],
      [
        'server time, p99',
        a.serverTime ? ms(a.serverTime.p99) : '',
        b.serverTime ? ms(b.serverTime.p99) : '',
        speedup(a.serverTime?.p99, b.serverTime?.p99),
      ],
      [
        'throughput',
        `${Math.round(a.throughput).toLocaleString('en-US')} req/s`,
        `${Math.round(b.throughput).toLocaleString('en-US')} req/s`,
        speedup(1 / a.throughput, 1 / b.throughput),
      ],
      ['errors / stale reads', failures(a), failures(b), ''],
    ],
    ['l', 'r', 'r', 'r'],
  )
  const rule = dim('─'.repeat(Math.max(...lines.map((line) => stripAnsi(line).length))))
  const [head, ...body] = lines
  console.log(`\n${[head, rule, ...body, rule].map((line) => `  ${line}`).join('\n')}`)

  let failed = false
  for (const { label, result: r } of [plain, cached]) {
    const ok = r.violations === 0 && r.errors === 0
    failed ||= !ok
    console.log(
      `  ${`${label}:`.padEnd(12)}${ok ? green('ok') : red('FAILED')}  ${r.checkedReads} reads checked, ` +
        `${r.violations} stale or impossible, ${r.errors} failed requests` +
        (r.timedOut ? dim(` (stopped at the ${LOAD.maxDurationMs} ms limit)`) : ''),
    )
    for (const sample of r.samples) console.log(`      ${red('•')} ${sample}`)
  }
  console.log(
    dim(
      '\n  latency: as the client saw it, fetch included (the client shares this machine with the server).' +
        '\n  server time: in the server, from its server-timing header. p99 is set by writes and cache misses,' +
        '\n  which still go to the repository. Stale read: a list read sent after a write was answered that does' +
        '\n  not show that write (every read is checked).\n',
    ),
  )
  return failed ? 1 : 0
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  },
)
