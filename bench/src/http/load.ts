/**
 * The HTTP benchmarks' runner: servers in child processes (app.ts), autocannon in this process, contenders
 * interleaved round by round like the in-process harness, every response checked. The result is a
 * `ThroughputResult`, so the tables and the summary are the same as the other benchmarks'.
 */
import { type ChildProcess, fork } from 'node:child_process'
import type { EventEmitter } from 'node:events'
import { existsSync } from 'node:fs'
import { get } from 'node:http'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import autocannon, { type ResponseHead } from 'autocannon'
import { type Kind, type Pair, positiveInt, summarise, type ThroughputResult } from '../harness.js'
import type { AppName, BeginReply, EndReply, ReadyMessage, Request, Route } from './protocol.js'

export interface HttpOptions {
  rounds: number
  /** Duration of one timed batch (one autocannon run). */
  batchMs: number
  /** Duration of each contender's warm-up batch. */
  warmupMs: number
  connections: number
}

/**
 * BENCH_ROUNDS (default 5 here, not 7: an HTTP batch lasts over a second, not 150 ms), BENCH_HTTP_MS (1200),
 * BENCH_HTTP_WARMUP_MS (800), BENCH_HTTP_CONNECTIONS (50). The defaults keep P1–P5 together within ~3 minutes.
 */
export function httpOptions(env: NodeJS.ProcessEnv = process.env): HttpOptions {
  return {
    rounds: positiveInt(env.BENCH_ROUNDS, 5, 'BENCH_ROUNDS'),
    batchMs: positiveInt(env.BENCH_HTTP_MS, 1200, 'BENCH_HTTP_MS'),
    warmupMs: positiveInt(env.BENCH_HTTP_WARMUP_MS, 800, 'BENCH_HTTP_WARMUP_MS'),
    connections: positiveInt(env.BENCH_HTTP_CONNECTIONS, 50, 'BENCH_HTTP_CONNECTIONS'),
  }
}

/** A server under test: `src/http/app.ts <app>` in its own node process, driven over IPC. */
/**
 * The servers load `@cache/*` as users get it, from each package's built `dist/` (`pnpm build`; `pnpm bench` builds
 * first through turbo). Sources run through tsx carry its per-function helpers, which would be measured too. Without a
 * build they fall back to the sources, and the notes say so.
 */
const FROM_DIST = ['core', 'express', 'fastify', 'hono', 'trpc'].every((name) =>
  existsSync(fileURLToPath(new URL(`../../../packages/${name}/dist/index.js`, import.meta.url))),
)

export class AppProcess {
  readonly name: AppName
  private readonly proc: ChildProcess
  private readonly pending = new Map<number, (reply: object) => void>()
  private nextId = 0
  private stderr = ''
  private readonly exited: Promise<number | null>
  readonly ready: Promise<ReadyMessage>

  constructor(name: AppName) {
    this.name = name
    const script = fileURLToPath(new URL('./app.ts', import.meta.url))
    const cwd = fileURLToPath(new URL('../..', import.meta.url))
    this.proc = fork(script, [name], {
      cwd,
      execArgv: ['--import', 'tsx', ...(FROM_DIST ? [] : ['--conditions=@cache/source']), '--expose-gc'],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    })
    this.proc.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString()
    })
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)))
    this.ready = new Promise<ReadyMessage>((resolve, reject) => {
      this.proc.on('message', (message: ReadyMessage | BeginReply | EndReply) => {
        if ('ready' in message) return resolve(message)
        const reply = this.pending.get(message.id)
        this.pending.delete(message.id)
        reply?.(message)
      })
      this.exited.then((code) => {
        const error = new Error(`[bench] server '${name}' exited (${code}): ${this.stderr.trim().slice(-2000)}`)
        reject(error)
        for (const reply of this.pending.values()) reply({ error })
        this.pending.clear()
      })
    })
  }

  async url(path: string): Promise<string> {
    const { port } = await this.ready
    return `http://127.0.0.1:${port}${path}`
  }

  private async request<T>(cmd: Request['cmd']): Promise<T> {
    const id = this.nextId++
    const reply = await new Promise<object>((resolve) => {
      this.pending.set(id, resolve)
      this.proc.send({ id, cmd } satisfies Request)
    })
    if ('error' in reply) throw reply.error
    return reply as T
  }

  begin(): Promise<BeginReply> {
    return this.request('begin')
  }

  end(): Promise<EndReply> {
    return this.request('end')
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    if (this.proc.connected) this.proc.disconnect()
    const timer = setTimeout(() => this.proc.kill(), 5_000)
    await this.exited
    clearTimeout(timer)
  }
}

/**
 * What every response of a contender must look like. `cacheStatus`: 'hit' = a `Cache-Status` header with the `hit`
 * member; 'miss' = a `Cache-Status` header without it (the engine saw the request and forwarded it); 'none' = no
 * such header. `servedBy`: 'cache' = no handler call during the batch; 'handler' = one call per response.
 */
export interface Expect {
  cacheStatus: 'hit' | 'miss' | 'none'
  servedBy: 'cache' | 'handler'
}

export interface HttpContender {
  name: string
  kind: Kind
  app: AppName
  /** Path and query. */
  path: string
  /** The handler whose calls are counted (`hello` for tRPC's procedure). */
  route: Route
  expect: Expect
}

export interface HttpSpec {
  id: string
  title: string
  contenders: HttpContender[]
  pairs: Pair[]
  notes?: string[]
}

interface Batch {
  reqPerSec: number
  requests: number
  /** CPU of the server process and of this process (the load generator), in % of one core over the batch. */
  serverCpu: number
  clientCpu: number
  /** Server CPU per response, µs: less sensitive to other processes than req/s (though not immune). */
  serverUs: number
  latencyP99: number
}

const HIT = /(?:^|;)\s*hit\s*(?:;|$)/

/** Checks each response head as it arrives; cheap, and the same cost for every contender. */
class Checker {
  seen = 0
  bad = 0
  first = ''

  constructor(private readonly expect: Expect['cacheStatus']) {}

  readonly head = (head: ResponseHead): void => {
    this.seen++
    let status: string | undefined
    const h = head.headers
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!
      if (name.length === 12 && name.toLowerCase() === 'cache-status') status = h[i + 1]
    }
    const ok =
      head.statusCode === 200 &&
      (this.expect === 'none'
        ? status === undefined
        : this.expect === 'hit'
          ? status !== undefined && HIT.test(status)
          : status !== undefined && !HIT.test(status))
    if (!ok) {
      this.bad++
      if (this.first === '') this.first = `status ${head.statusCode}, cache-status ${JSON.stringify(status ?? null)}`
    }
  }
}

async function settle(): Promise<void> {
  globalThis.gc?.()
  await new Promise<void>((resolve) => setImmediate(resolve))
}

/** One autocannon run against one contender, checked; throws when anything about it is off. */
async function batch(
  spec: HttpSpec,
  c: HttpContender,
  server: AppProcess,
  ms: number,
  opts: HttpOptions,
): Promise<Batch> {
  const url = await server.url(c.path)
  const checker = new Checker(c.expect.cacheStatus)
  await settle()
  await server.begin()
  const cpu = process.cpuUsage()
  const started = performance.now()
  const result = await autocannon({
    url,
    connections: opts.connections,
    pipelining: 1,
    duration: ms / 1000,
    // The run ends on the first sample after `duration`: sample often, so a batch lasts what was asked.
    sampleInt: 100,
    timeout: 10,
    setupClient: (client: EventEmitter) => client.on('headers', checker.head),
  })
  const wall = performance.now() - started
  const used = process.cpuUsage(cpu)
  const end = await server.end()
  const where = `[bench] ${spec.id} ${c.name} (${c.app} GET ${c.path})`
  const total = result.requests.total
  if (total === 0) throw new Error(`${where}: no response at all`)
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0 || result.resets > 0) {
    throw new Error(
      `${where}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx, ` +
        `${result.resets} resets in ${total} responses`,
    )
  }
  if (checker.bad > 0) {
    throw new Error(
      `${where}: ${checker.bad} of ${checker.seen} responses were not as expected (first: ${checker.first})`,
    )
  }
  if (checker.seen < total) throw new Error(`${where}: checked ${checker.seen} responses of ${total}`)
  const calls = end.calls[c.route]
  if (c.expect.servedBy === 'cache' && calls > 0) {
    throw new Error(`${where}: the handler ran ${calls} times in a batch that should be all cache hits`)
  }
  // Requests still in flight when autocannon stopped reached the handler without being counted here.
  if (c.expect.servedBy === 'handler' && (calls < total || calls > total + opts.connections)) {
    throw new Error(`${where}: the handler ran ${calls} times for ${total} responses`)
  }
  return {
    reqPerSec: total / result.duration,
    requests: total,
    serverCpu: (end.cpuMs / wall) * 100,
    clientCpu: ((used.user + used.system) / 1000 / wall) * 100,
    serverUs: (end.cpuMs * 1000) / total,
    latencyP99: result.latency.p99,
  }
}

/**
 * Two requests before any load, sent like autocannon's (no Accept-Encoding, nothing but Host): the first stores a
 * cached route, the second must look like every response of the batches. A misconfigured contender fails here, with
 * what it answered in the message.
 */
async function probe(spec: HttpSpec, c: HttpContender, server: AppProcess): Promise<void> {
  const url = await server.url(c.path)
  let head: ResponseHead = { statusCode: 0, headers: [] }
  for (let i = 0; i < 2; i++) {
    head = await new Promise<ResponseHead>((resolve, reject) => {
      get(url, { agent: false }, (res) => {
        res.resume()
        res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.rawHeaders }))
        res.on('error', reject)
      }).on('error', reject)
    })
  }
  const checker = new Checker(c.expect.cacheStatus)
  checker.head(head)
  if (checker.bad > 0) {
    throw new Error(
      `[bench] ${spec.id} ${c.name} (${c.app} GET ${c.path}): expected cache-status ${c.expect.cacheStatus}, ` +
        `got ${checker.first}`,
    )
  }
}

function median(values: readonly number[]): number {
  return summarise(values).median
}

/**
 * Runs one HTTP benchmark: starts one process per app its contenders use (stopped at the end, also on failure),
 * probes every contender, warms each up with one batch, then runs `rounds` rounds of one batch per contender in an
 * order rotated every round. Ratios are taken per round, as in the in-process harness.
 */
export async function runHttp(spec: HttpSpec, opts: HttpOptions): Promise<ThroughputResult> {
  const names = new Set(spec.contenders.map((c) => c.name))
  for (const pair of spec.pairs) {
    if (!names.has(pair.ours) || !names.has(pair.anchor)) throw new Error(`[bench] ${spec.id}: unknown pair`)
  }
  const servers = new Map<AppName, AppProcess>()
  for (const c of spec.contenders) if (!servers.has(c.app)) servers.set(c.app, new AppProcess(c.app))
  try {
    const ready = new Map<AppName, ReadyMessage>()
    for (const [name, server] of servers) ready.set(name, await server.ready)
    for (const c of spec.contenders) await probe(spec, c, servers.get(c.app)!)
    for (const c of spec.contenders) await batch(spec, c, servers.get(c.app)!, opts.warmupMs, opts)

    const batches = new Map<HttpContender, Batch[]>(spec.contenders.map((c) => [c, []]))
    const n = spec.contenders.length
    for (let round = 0; round < opts.rounds; round++) {
      for (let i = 0; i < n; i++) {
        const c = spec.contenders[(i + round) % n]!
        batches.get(c)!.push(await batch(spec, c, servers.get(c.app)!, opts.batchMs, opts))
      }
    }

    const byName = new Map(spec.contenders.map((c) => [c.name, batches.get(c)!.map((b) => b.reqPerSec)]))
    const bigBytes = [...ready.values()][0]!.bigBytes
    const bigNote = spec.contenders.some((c) => c.route === 'big')
      ? `. /big body: ${(bigBytes / 1024).toFixed(1)} KiB`
      : ''
    const cpuLine = spec.contenders
      .map((c) => {
        const b = batches.get(c)!
        const server = median(b.map((x) => x.serverCpu)).toFixed(0)
        const client = median(b.map((x) => x.clientCpu)).toFixed(0)
        const us = median(b.map((x) => x.serverUs)).toFixed(0)
        const p99 = median(b.map((x) => x.latencyP99)).toFixed(0)
        return `${c.name} ${us} µs, ${server}% / ${client}%, p99 ${p99} ms`
      })
      .join('; ')
    return {
      type: 'throughput',
      id: spec.id,
      title: spec.title,
      rounds: opts.rounds,
      batchMs: opts.batchMs,
      contenders: spec.contenders.map((c) => {
        const b = batches.get(c)!
        return {
          name: c.name,
          kind: c.kind,
          passesPerBatch: 1,
          opsPerBatch: median(b.map((x) => x.requests)),
          opsPerSec: b.map((x) => x.reqPerSec),
          stats: summarise(b.map((x) => x.reqPerSec)),
        }
      }),
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
      notes: [
        ...(spec.notes ?? []),
        `req/s; ops/batch = responses in one batch (median). ${opts.rounds} interleaved rounds of one ` +
          `${opts.batchMs} ms autocannon batch per contender (order rotated every round), after one ` +
          `${opts.warmupMs} ms warm-up batch each; autocannon ${opts.connections} connections, pipelining 1, ` +
          `in this process; each app in its own process, @cache/* loaded from ${FROM_DIST ? "the packages' built dist/" : 'the TypeScript sources (no build found)'}, on ` +
          `127.0.0.1:0${bigNote}`,
        `every response checked: status 200, Cache-Status as expected (hit / miss / absent), no error or timeout; ` +
          'the handler ran 0 times in a hit batch and once per response otherwise (counted in the server)',
        `${os.availableParallelism()} cores shared by the load generator and the server. Per contender, medians: ` +
          'server CPU per response; CPU over a batch in % of one core, server / client (a server well under 100% ' +
          `waited for the client or other processes); autocannon's p99 latency: ${cpuLine}`,
      ],
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()))
  }
}
